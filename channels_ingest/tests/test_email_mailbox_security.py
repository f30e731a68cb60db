"""A manager configures mailboxes; a mailbox must not become a way to read the
server's secrets (its password_env sends that variable to whatever host the
mailbox points at) or to probe hosts and ports (error texts echoing what
answers there). A tiny IMAP server on loopback records what it is sent."""
import socketserver
import threading

import pytest
from django.contrib.messages import get_messages

from channels_ingest.email.imap import poll
from channels_ingest.email.passwords import PasswordUnavailable, encrypt, password_for
from channels_ingest.models import Mailbox

ADD_URL = "/admin/channels_ingest/mailbox/add/"
LIST_URL = "/admin/channels_ingest/mailbox/"
SECRET = "s3cr3t-value-that-must-stay-home"


class _Handler(socketserver.StreamRequestHandler):
    def handle(self):
        server = self.server
        server.connections += 1
        self.wfile.write(server.greeting)
        while line := self.rfile.readline(65536):
            server.lines.append(line)
            tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
            command = rest.split(b" ", 1)[0].upper()
            if command == b"CAPABILITY":
                self.wfile.write(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
            elif command == b"LOGOUT":
                self.wfile.write(b"* BYE\r\n" + tag + b" OK bye\r\n")
                return
            else:  # LOGIN and anything else: refused, with words only the server knows
                self.wfile.write(tag + b" NO [AUTHENTICATIONFAILED] internal-detail-zz9\r\n")


class FakeImap(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, greeting=b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] banner-7f3a ready\r\n"):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.greeting, self.lines, self.connections = greeting, [], 0

    @property
    def port(self):
        return self.server_address[1]

    def received(self) -> bytes:
        return b"".join(self.lines)


@pytest.fixture
def fake_imap():
    servers = []

    def start(**kwargs):
        server = FakeImap(**kwargs)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def pointed_at(server, **fields) -> Mailbox:
    """A row written directly (not through the admin form): its validators never ran."""
    values = {"name": "probe", "host": "127.0.0.1", "port": server.port, "tls": Mailbox.Tls.NONE,
              "username": "someone", "folder": "INBOX", **fields}
    return Mailbox.objects.create(**values)


def form(**fields) -> dict:
    return {"name": "sales", "host": "imap.example.com", "port": 993, "tls": "implicit",
            "username": "sales@example.com", "folder": "INBOX", "active": "on", **fields}


# --- password_env: only IMAP_PASSWORD_<NAME> ---------------------------------------------

@pytest.mark.parametrize("name", ["SECRET_KEY", "ANYMAIL_WEBHOOK_SECRET", "DATABASE_URL", "SENDGRID_API_KEY",
                                  "imap_password_sales", "IMAP_PASSWORD_", "X_IMAP_PASSWORD_SALES",
                                  "IMAP_PASSWORD_SALES-2"])
def test_the_admin_refuses_a_password_variable_that_is_not_an_imap_password(manager_client, name):
    response = manager_client.post(ADD_URL, form(password_env=name))
    assert response.status_code == 200
    assert b"IMAP_PASSWORD_&lt;NAME&gt;" in response.content  # the form says what is allowed
    assert not Mailbox.objects.exists()


def test_the_admin_accepts_an_imap_password_variable(manager_client):
    response = manager_client.post(ADD_URL, form(password_env="IMAP_PASSWORD_SALES"))
    assert response.status_code == 302, response.content[:2000]
    assert Mailbox.objects.get().password_env == "IMAP_PASSWORD_SALES"


def test_editing_a_mailbox_cannot_switch_it_to_another_secret(manager_client):
    mailbox = Mailbox.objects.create(name="sales", host="imap.example.com", username="sales@example.com",
                                     password_env="IMAP_PASSWORD_SALES")
    response = manager_client.post(f"{LIST_URL}{mailbox.pk}/change/", form(password_env="SECRET_KEY"))
    assert response.status_code == 200 and b"IMAP_PASSWORD_&lt;NAME&gt;" in response.content
    mailbox.refresh_from_db()
    assert mailbox.password_env == "IMAP_PASSWORD_SALES"


@pytest.mark.parametrize("name", ["SECRET_KEY", "ANYMAIL_WEBHOOK_SECRET"])
def test_a_stored_row_naming_another_variable_gives_no_password(db, monkeypatch, name):
    monkeypatch.setenv(name, SECRET)
    mailbox = Mailbox.objects.create(name="old", host="imap.example.com", username="x", password_env=name)
    with pytest.raises(PasswordUnavailable, match="IMAP_PASSWORD_") as refused:
        password_for(mailbox)
    assert SECRET not in str(refused.value)


@pytest.mark.parametrize("name", ["ANYMAIL_WEBHOOK_SECRET", "SECRET_KEY", "DATABASE_URL", "SENDGRID_API_KEY"])
def test_a_mailbox_pointed_at_a_strange_server_never_sends_it_a_server_secret(db, monkeypatch, fake_imap, name):
    monkeypatch.setenv(name, SECRET)
    server = fake_imap()
    mailbox = pointed_at(server, password_env=name)

    stats = poll(mailbox)

    assert SECRET.encode() not in server.received()
    assert server.connections == 0, "refused before connecting: nothing to probe either"
    assert "IMAP_PASSWORD_" in stats.error and SECRET not in stats.error
    mailbox.refresh_from_db()
    assert SECRET not in mailbox.last_error


def test_the_fake_server_does_see_an_allowed_imap_password(db, monkeypatch, fake_imap):
    # The control for the test above: the server records LOGIN, so "not received" means not sent.
    monkeypatch.setenv("IMAP_PASSWORD_SALES", SECRET)
    server = fake_imap()
    poll(pointed_at(server, password_env="IMAP_PASSWORD_SALES"))
    assert any(line.split(b" ")[1].upper() == b"LOGIN" and SECRET.encode() in line for line in server.lines)


# --- no plain-text IMAP in production ------------------------------------------------------

def test_the_admin_refuses_plain_text_imap_outside_debug(manager_client, settings):
    settings.DEBUG, settings.IMAP_ALLOW_PLAINTEXT = False, False
    response = manager_client.post(ADD_URL, form(tls="none", port=143, password="pw"))
    assert response.status_code == 200 and b"Plain-text IMAP" in response.content
    assert not Mailbox.objects.exists()
    settings.IMAP_ALLOW_PLAINTEXT = True  # ops allow it, e.g. for a local IMAP bridge
    assert manager_client.post(ADD_URL, form(tls="none", port=143, password="pw")).status_code == 302


def test_a_plain_text_mailbox_does_not_log_in_outside_debug(db, settings, fake_imap):
    settings.DEBUG, settings.IMAP_ALLOW_PLAINTEXT = False, False
    server = fake_imap()
    mailbox = pointed_at(server, password_encrypted=encrypt(SECRET))
    stats = poll(mailbox)
    assert "Plain-text IMAP" in stats.error
    assert server.connections == 0 and SECRET.encode() not in server.received()
    settings.DEBUG = True  # development: allowed
    poll(mailbox)
    assert SECRET.encode() in server.received()


# --- errors staff see do not echo the host ------------------------------------------------

@pytest.mark.parametrize("greeting", [
    b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] banner-7f3a ready\r\n",  # an IMAP server refusing the login
    b"SSH-2.0-OpenSSH_9.2p1 banner-7f3a\r\n",  # something else listening on that port
], ids=["imap-refuses", "other-service"])
def test_the_poll_now_message_and_last_error_do_not_show_what_answered(
        manager_client, fake_imap, caplog, greeting):
    server = fake_imap(greeting=greeting)
    mailbox = pointed_at(server, password_encrypted=encrypt("pw"))

    with caplog.at_level("WARNING"):
        response = manager_client.post(LIST_URL, {"action": "poll_now", "_selected_action": [mailbox.pk]},
                                       follow=True)

    assert response.status_code == 200
    shown = " ".join(str(m) for m in get_messages(response.wsgi_request)) + response.content.decode()
    mailbox.refresh_from_db()
    for text in (shown, mailbox.last_error, str(mailbox.last_poll_stats)):
        assert "banner-7f3a" not in text and "internal-detail-zz9" not in text and "SSH-2.0" not in text
    assert "Could not connect or log in to the mailbox server" in mailbox.last_error
    assert "Could not connect or log in to the mailbox server" in shown
    # The details are in the server log, for whoever runs the server.
    assert "internal-detail-zz9" in caplog.text or "banner-7f3a" in caplog.text


def test_a_closed_port_and_a_refused_login_read_the_same(db, fake_imap):
    server = fake_imap()
    refused = poll(pointed_at(server, password_encrypted=encrypt("pw"))).error
    server.shutdown()
    server.server_close()  # nothing listens there any more
    closed = pointed_at(server, name="closed", password_encrypted=encrypt("pw"))
    assert poll(closed).error == refused
    closed.refresh_from_db()
    assert "refused" not in closed.last_error.lower() and "errno" not in closed.last_error.lower()
