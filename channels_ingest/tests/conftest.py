"""Real parts for the email tests: a Dovecot IMAP server, a SendGrid stand-in."""
import shutil
import tempfile

import pytest

from channels_ingest.email import passwords
from channels_ingest.models import Mailbox

from .dovecot import PASSWORD, USER, Dovecot
from .sendgrid_standin import SendGridStandIn

WEBHOOK_SECRET = "sendgrid:hook-secret-for-tests"


@pytest.fixture(autouse=True)
def _email_media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture(autouse=True)
def _email_webhooks_on(settings):
    """The SendGrid webhooks are routed (off by default unless EMAIL_PROVIDER=sendgrid)."""
    settings.EMAIL_WEBHOOKS = True


@pytest.fixture(autouse=True)
def _plain_text_imap_allowed(settings):
    """The throwaway Dovecot speaks plain text on loopback (ssl = no). Outside DEBUG (pytest-django
    turns it off) TLS "none" is refused unless ops allow it; tests of that refusal turn this off."""
    settings.IMAP_ALLOW_PLAINTEXT = True


@pytest.fixture(scope="session")
def dovecot_server():
    root = tempfile.mkdtemp(prefix="myhibachi-dovecot-")  # not under a 0700 folder: Dovecot runs as nobody
    server = Dovecot(root).start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def make_mailbox(server, **extra) -> Mailbox:
    folder = server.new_folder()
    return Mailbox.objects.create(
        name=folder, host=server.host, port=server.port, tls=Mailbox.Tls.NONE, username=USER,
        password_encrypted=passwords.encrypt(PASSWORD), folder=folder, **extra,
    )


@pytest.fixture
def mailbox(db, dovecot_server):
    return make_mailbox(dovecot_server)


@pytest.fixture(scope="session")
def sendgrid_server():
    server = SendGridStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def sendgrid(settings, sendgrid_server):
    """Django's mail goes through Anymail's SendGrid backend to the stand-in."""
    sendgrid_server.reset()
    settings.EMAIL_BACKEND = "anymail.backends.sendgrid.EmailBackend"
    settings.ANYMAIL = {**settings.ANYMAIL, "SENDGRID_API_KEY": sendgrid_server.api_key,
                        "SENDGRID_API_URL": sendgrid_server.url}
    return sendgrid_server


@pytest.fixture
def webhook_secret(settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": WEBHOOK_SECRET}
    return WEBHOOK_SECRET


# --- RingCentral (SMS and calls) -------------------------------------------------------

RC_VERIFICATION_TOKEN = "rc-verification-token-for-tests"
RC_BUSINESS_NUMBER = "+14155550199"


@pytest.fixture(scope="session")
def ringcentral_server():
    from .ringcentral_standin import RingCentralStandIn

    server = RingCentralStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def ringcentral(settings, ringcentral_server, db):
    """RingCentral configured against the stand-in: SMS replies go out through it."""
    ringcentral_server.reset()
    settings.RINGCENTRAL_SERVER_URL = ringcentral_server.url
    settings.RINGCENTRAL_CLIENT_ID = ringcentral_server.client_id
    settings.RINGCENTRAL_CLIENT_SECRET = ringcentral_server.client_secret
    settings.RINGCENTRAL_JWT = ringcentral_server.jwt
    settings.RINGCENTRAL_CONFIGURED = True
    settings.RINGCENTRAL_SMS_FROM = RC_BUSINESS_NUMBER
    settings.RINGCENTRAL_VERIFICATION_TOKEN = RC_VERIFICATION_TOKEN
    settings.INBOX_SENDERS = {**settings.INBOX_SENDERS, "sms": "channels_ingest.ringcentral.sender.send"}
    return ringcentral_server
