"""Staff replies by email, through Anymail's SendGrid backend (to the stand-in) or SMTP."""
import socketserver
import threading

import pytest

from channels_ingest.email.ingest import store_email
from channels_ingest.email.threads import conversation_id_from
from channels_ingest.email.services import suppress
from channels_ingest.models import SentEmail
from inbox import services
from tests.factories import make_user

from . import mails


@pytest.fixture
def conversation(db):
    store_email(mails.plain(mid="<first@mail.example.com>", subject="Party for 12"), source="imap")
    return store_email(mails.reply(mid="<second@mail.example.com>", in_reply_to="<nothing@x>",
                                   references=["<first@mail.example.com>"], subject="Re: Party for 12"),
                       source="imap").message.conversation


def send_reply(conversation, capture, text="Saturday at 6pm works. See you then!"):
    with capture(execute=True):
        message = services.reply(conversation=conversation, author=make_user("alice"), text=text)
    message.refresh_from_db()
    return message


def test_reply_goes_out_through_sendgrid_threaded_under_the_customers_email(
        conversation, sendgrid, django_capture_on_commit_callbacks):
    message = send_reply(conversation, django_capture_on_commit_callbacks)

    assert message.delivery_status == "sent"
    [body] = sendgrid.sent
    assert body["from"]["email"] == "hello@myhibachi.test"
    assert body["personalizations"][0]["to"] == [{"email": "jane@example.com"}]
    assert body["subject"] == "Re: Party for 12"
    assert body["content"][0] == {"type": "text/plain", "value": "Saturday at 6pm works. See you then!"}
    headers = body["headers"]
    assert headers["In-Reply-To"] == "<second@mail.example.com>"
    assert headers["References"] == "<first@mail.example.com> <second@mail.example.com>"
    # Our own Message-ID, carrying the conversation, is the message's external id, so replies find it.
    assert headers["Message-ID"] == f"<{message.external_id}>"
    assert conversation_id_from(message.external_id) == conversation.pk
    sent = SentEmail.objects.get(message=message)
    assert sent.esp_message_id == message.metadata["esp_message_id"]
    assert body["personalizations"][0]["custom_args"]["anymail_id"] == sent.esp_message_id
    assert len(sent.provider_message_id) == 22  # SendGrid's X-Message-Id


def test_the_customers_answer_to_our_reply_comes_back_to_the_same_conversation(
        conversation, sendgrid, django_capture_on_commit_callbacks):
    message = send_reply(conversation, django_capture_on_commit_callbacks)
    answer = store_email(mails.reply(mid="<third@other.example.com>", in_reply_to=f"<{message.external_id}>",
                                     frm="Jane <jane.doe@other.example.com>"), source="imap").message
    assert answer.conversation == conversation


def test_rate_limit_then_success_is_retried_and_sent(conversation, sendgrid, django_capture_on_commit_callbacks):
    sendgrid.fail_next(429)
    sendgrid.fail_next(500)
    message = send_reply(conversation, django_capture_on_commit_callbacks)
    assert message.delivery_status == "sent"
    assert [r["status"] for r in sendgrid.requests] == [429, 500, 202]


def test_sendgrid_down_for_good_marks_the_reply_failed_with_the_reason(
        conversation, sendgrid, django_capture_on_commit_callbacks):
    sendgrid.fail_next(503, times=20)
    message = send_reply(conversation, django_capture_on_commit_callbacks)
    assert message.delivery_status == "failed"
    assert "Gave up after retries" in message.status_reason and "503" in message.status_reason


def test_refused_request_fails_at_once_with_sendgrids_reason(
        conversation, sendgrid, settings, django_capture_on_commit_callbacks):
    settings.ANYMAIL = {**settings.ANYMAIL, "SENDGRID_API_KEY": "SG.wrong"}
    message = send_reply(conversation, django_capture_on_commit_callbacks)
    assert message.delivery_status == "failed"
    assert "401" in message.status_reason and "authorization grant is invalid" in message.status_reason
    assert len(sendgrid.requests) == 0  # the stand-in refuses before recording a send


def test_suppressed_address_is_not_mailed(conversation, sendgrid, django_capture_on_commit_callbacks):
    suppress("jane@example.com", reason="bounced", detail="550 user unknown")
    message = send_reply(conversation, django_capture_on_commit_callbacks)
    assert message.delivery_status == "failed" and "do-not-email list" in message.status_reason
    assert sendgrid.requests == []


class _SMTPHandler(socketserver.StreamRequestHandler):
    def handle(self):
        server = self.server
        self.wfile.write(b"220 standin ESMTP\r\n")
        data_mode, lines = False, []
        while line := self.rfile.readline():
            if data_mode:
                if line in (b".\r\n", b".\n"):
                    server.messages.append(b"".join(lines))
                    data_mode, lines = False, []
                    self.wfile.write(b"250 2.0.0 queued\r\n")
                else:
                    lines.append(line)
                continue
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                self.wfile.write(b"250 standin\r\n")
            elif verb == b"RCPT" and server.refuse_rcpt:
                self.wfile.write(b"550 5.1.1 No such user\r\n")
            elif verb == b"DATA":
                self.wfile.write(b"354 go ahead\r\n")
                data_mode = True
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def smtp_server(settings):
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SMTPHandler)
    server.daemon_threads = True
    server.messages, server.refuse_rcpt = [], False
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.server_address[1]
    settings.EMAIL_USE_TLS, settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = False, "", ""
    yield server
    server.shutdown()
    server.server_close()


def test_smtp_path_still_works_with_the_same_threading_headers(
        conversation, smtp_server, django_capture_on_commit_callbacks):
    message = send_reply(conversation, django_capture_on_commit_callbacks)
    assert message.delivery_status == "sent"
    [raw] = smtp_server.messages
    assert f"Message-ID: <{message.external_id}>".encode() in raw
    assert b"In-Reply-To: <second@mail.example.com>" in raw


def test_smtp_recipient_refused_fails_permanently(conversation, smtp_server, django_capture_on_commit_callbacks):
    smtp_server.refuse_rcpt = True
    message = send_reply(conversation, django_capture_on_commit_callbacks)
    assert message.delivery_status == "failed" and "550" in message.status_reason
