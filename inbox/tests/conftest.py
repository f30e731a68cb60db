import pytest

from inbox import services
from tests import senders
from tests.factories import make_customer


@pytest.fixture
def customer(db):
    return make_customer("john@example.com", phone="+1 415 555 0100")


@pytest.fixture
def receive(db):
    counter = {"n": 0}

    def _receive(sender="john@example.com", channel="email", text="Hi, I want to book", **extra):
        counter["n"] += 1
        extra.setdefault("external_id", f"ext-{counter['n']}")
        return services.receive_message(channel=channel, sender=sender, text=text, **extra)

    return _receive


@pytest.fixture
def recording_sender(settings):
    senders.sent.clear()
    settings.INBOX_SENDERS = {"email": "tests.senders.record", "sms": "tests.senders.record",
                              "chat": "tests.senders.record"}
    return senders.sent


@pytest.fixture
def media(settings, tmp_path):
    """Stored files (attachments, MMS, recordings) go to a fresh folder."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"
