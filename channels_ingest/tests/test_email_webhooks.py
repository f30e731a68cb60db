"""SendGrid's tracking and inbound webhooks, posted as SendGrid documents them."""
import base64
import json
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.files.uploadedfile import SimpleUploadedFile

from channels_ingest.base import counted
from channels_ingest.email.ingest import store_email
from channels_ingest.models import SentEmail, Suppression, TrackingEvent
from inbox import services
from inbox.models import Message
from tests.factories import make_user

from . import mails

TRACKING = "/anymail/sendgrid/tracking/"
INBOUND = "/anymail/sendgrid/inbound/"


def auth(secret):
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(secret.encode()).decode()}


@pytest.fixture
def sent_reply(db, sendgrid, django_capture_on_commit_callbacks):
    conversation = store_email(mails.plain(), source="imap").message.conversation
    with django_capture_on_commit_callbacks(execute=True):
        message = services.reply(conversation=conversation, author=make_user("alice"), text="Confirmed!")
    message.refresh_from_db()
    return message, SentEmail.objects.get(message=message).esp_message_id


def event(kind, anymail_id, n=1, **extra):
    return {"email": "jane@example.com", "timestamp": 1764000000 + n, "event": kind, "anymail_id": anymail_id,
            "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>", "sg_event_id": f"ev-{kind}-{n}",
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0", "category": ["reply"], **extra}


def post(client, events, secret, **headers):
    return client.post(TRACKING, data=json.dumps(events), content_type="application/json", **auth(secret), **headers)


def test_unauthenticated_posts_are_refused_and_store_nothing(client, sent_reply, webhook_secret):
    message, esp_id = sent_reply
    body = json.dumps([event("delivered", esp_id)])
    assert client.post(TRACKING, data=body, content_type="application/json").status_code == 400
    assert client.post(TRACKING, data=body, content_type="application/json",
                       **auth("sendgrid:wrong")).status_code == 400
    assert client.post(INBOUND, data={"email": mails.plain(mid="<x@y.z>").decode()}).status_code == 400
    assert TrackingEvent.objects.count() == 0
    message.refresh_from_db()
    assert message.delivery_status == "sent"
    assert Message.objects.filter(external_id="x@y.z").count() == 0


@pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailInsecureWebhookWarning")
def test_without_a_configured_secret_the_webhooks_are_off(client, sent_reply):
    _, esp_id = sent_reply
    response = client.post(TRACKING, data=json.dumps([event("delivered", esp_id)]), content_type="application/json")
    assert response.status_code == 403 and b"ANYMAIL_WEBHOOK_SECRET" in response.content
    assert TrackingEvent.objects.count() == 0


def test_delivery_progress_is_shown_and_never_goes_back(client, sent_reply, webhook_secret, django_assert_max_num_queries):
    message, esp_id = sent_reply
    # 13, 5 of them savepoints, and counting the outcome (an update; an insert the first time that day)
    with django_assert_max_num_queries(17):
        assert post(client, [event("delivered", esp_id)], webhook_secret).status_code == 200
    message.refresh_from_db()
    assert message.delivery_status == "delivered"
    # Out of order: a click, then a late open and a repeated "delivered".
    post(client, [event("click", esp_id, 3, url="https://myhibachi.test/menu"), event("open", esp_id, 2)],
         webhook_secret)
    post(client, [event("delivered", esp_id, 1), event("delivered", esp_id, 4)], webhook_secret)
    message.refresh_from_db()
    assert message.delivery_status == "clicked"
    assert TrackingEvent.objects.filter(event_type="delivered").count() == 2  # ev-delivered-1 stored once


def test_bounce_marks_the_reply_failed_with_the_reason_and_suppresses(client, sent_reply, webhook_secret):
    message, esp_id = sent_reply
    post(client, [event("bounce", esp_id, reason="550 5.1.1 unknown recipient", status="5.1.1", type="bounce")],
         webhook_secret)
    message.refresh_from_db()
    assert message.delivery_status == "failed" and "550 5.1.1 unknown recipient" in message.status_reason
    assert Suppression.objects.get(email="jane@example.com").reason == "bounced"


def test_dropped_spam_and_unsubscribe_are_recorded(client, sent_reply, webhook_secret):
    message, esp_id = sent_reply
    post(client, [event("spamreport", esp_id), event("unsubscribe", esp_id, 2)], webhook_secret)
    assert Suppression.objects.get(email="jane@example.com").reason == "complained"
    post(client, [event("dropped", esp_id, 3, reason="Bounced Address", status="5.0.0")], webhook_secret)
    message.refresh_from_db()
    assert message.delivery_status == "failed" and "Dropped by SendGrid: Bounced Address" in message.status_reason


def test_signed_event_webhook_is_verified_when_a_key_is_set(client, sent_reply, webhook_secret, settings):
    message, esp_id = sent_reply
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    settings.ANYMAIL = {**settings.ANYMAIL,
                        "SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY": base64.b64encode(public).decode()}
    body = json.dumps([event("delivered", esp_id)]).encode()
    stamp = str(int(time.time()))
    signature = base64.b64encode(private.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    signed = {"HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE": signature,
              "HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP": stamp}
    tampered = body.replace(b"delivered", b"open")
    assert client.post(TRACKING, data=tampered, content_type="application/json", **auth(webhook_secret),
                       **signed).status_code == 400
    assert client.post(TRACKING, data=body, content_type="application/json", **auth(webhook_secret)).status_code == 400
    assert TrackingEvent.objects.count() == 0
    assert client.post(TRACKING, data=body, content_type="application/json", **auth(webhook_secret),
                       **signed).status_code == 200
    message.refresh_from_db()
    assert message.delivery_status == "delivered"


def test_bad_payloads_get_a_4xx_and_bad_events_are_skipped(client, sent_reply, webhook_secret):
    message, esp_id = sent_reply
    for body in (b"not json", b'{"event": "delivered"}', b"\xff\xfe"):
        response = client.post(TRACKING, data=body, content_type="application/json", **auth(webhook_secret))
        assert response.status_code == 400
    mixed = [{"no": "event"}, "junk", event("delivered", esp_id, timestamp="yesterday"), event("open", esp_id, 2)]
    assert post(client, mixed, webhook_secret).status_code == 200
    message.refresh_from_db()
    assert message.delivery_status == "opened"


def test_events_for_unknown_messages_are_kept_but_change_nothing(client, db, webhook_secret):
    assert post(client, [event("delivered", "not-ours")], webhook_secret).status_code == 200
    assert TrackingEvent.objects.get().sent_email is None


def test_inbound_parse_raw_mime_is_stored_threaded_and_deduplicated_with_imap(client, db, webhook_secret):
    first = store_email(mails.plain(), source="imap").message
    raw = mails.reply(mid="<in1@mail.example.com>", in_reply_to="<m1@mail.example.com>", frm="Jane <jane@example.com>")
    form = {"email": raw.decode(), "envelope": json.dumps({"to": ["hello@myhibachi.test"], "from": "jane@example.com"}),
            "charsets": json.dumps({"to": "UTF-8", "subject": "UTF-8", "from": "UTF-8"}), "spam_score": "0.1"}
    assert client.post(INBOUND, data=form, **auth(webhook_secret)).status_code == 200
    assert client.post(INBOUND, data=form, **auth(webhook_secret)).status_code == 200  # SendGrid retried
    stored = Message.objects.get(external_id="in1@mail.example.com")
    assert stored.conversation == first.conversation and stored.metadata["source"] == "sendgrid-inbound"
    # The same email arriving later over IMAP is a duplicate.
    assert store_email(raw, source="imap").status == "duplicate"


def test_inbound_parse_default_fields_are_stored(client, db, webhook_secret):
    form = {"headers": "From: Kim Lee <kim@example.com>\nTo: hello@myhibachi.test\nSubject: Booking for 30\n"
                       "Message-ID: <parsed1@mail.example.com>\n",
            "text": "Can you cater 30 people?", "html": "<p>Can you cater <b>30</b> people?</p>",
            "from": "Kim Lee <kim@example.com>", "to": "hello@myhibachi.test", "subject": "Booking for 30",
            "envelope": json.dumps({"to": ["hello@myhibachi.test"], "from": "kim@example.com"}),
            "charsets": json.dumps({"text": "utf-8", "html": "utf-8"})}
    assert client.post(INBOUND, data=form, **auth(webhook_secret)).status_code == 200
    stored = Message.objects.get(external_id="parsed1@mail.example.com")
    assert stored.text.strip() == "Can you cater 30 people?" and stored.customer.first_name == "Kim"


def test_inbound_without_the_expected_fields_is_a_400(client, db, webhook_secret):
    response = client.post(INBOUND, data={"nothing": "here"}, **auth(webhook_secret))
    assert response.status_code == 400
    assert Message.objects.count() == 0


# --- Only SendGrid's webhooks are ours ---------------------------------------------------------------

OTHER_PROVIDERS = ["/anymail/postmark/inbound/", "/anymail/postmark/tracking/", "/anymail/mailgun/inbound/",
                   "/anymail/mailgun/inbound_mime/", "/anymail/mailgun/tracking/", "/anymail/amazon_ses/inbound/",
                   "/anymail/sparkpost/tracking/", "/anymail/mandrill/"]


@pytest.mark.parametrize("configured", [False, True])
def test_other_providers_webhook_paths_do_not_exist(client, sent_reply, settings, configured):
    message, _ = sent_reply
    if configured:
        settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": "sendgrid:hook-secret-for-tests",
                            "SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY": base64.b64encode(b"k" * 91).decode()}
    inbound_json = {"FromFull": {"Email": "mallory@evil.example.com", "Name": "Jane Customer"},
                    "MessageID": "pm-1", "Subject": "New bank details", "TextBody": "Pay here",
                    "RawEmail": mails.plain(mid="<pm1@evil.example.com>").decode()}
    bounce = {"RecordType": "Bounce", "Type": "HardBounce", "Email": "jane@example.com", "MessageID": "pm-2",
              "ID": 1, "BouncedAt": "2026-11-20T18:30:00Z"}
    complaint = {**bounce, "RecordType": "SpamComplaint", "Type": "SpamComplaint", "ID": 2}
    for path in OTHER_PROVIDERS:
        for body in (inbound_json, bounce, complaint):
            response = client.post(path, data=json.dumps(body), content_type="application/json",
                                   **auth("sendgrid:hook-secret-for-tests"))
            assert response.status_code == 404, path
        assert client.post(path, data={"body-mime": mails.plain(mid="<mg1@evil.example.com>").decode()}
                           ).status_code == 404
    assert Message.objects.filter(direction="inbound").count() == 1  # Jane's own first email only
    assert not Suppression.objects.exists() and not TrackingEvent.objects.exists()
    message.refresh_from_db()
    assert message.delivery_status == "sent"


def test_events_from_another_providers_anymail_view_change_nothing(db, sent_reply):
    from anymail.inbound import AnymailInboundMessage
    from anymail.signals import AnymailInboundEvent, AnymailTrackingEvent, inbound, tracking
    from anymail.webhooks.postmark import PostmarkInboundWebhookView, PostmarkTrackingWebhookView

    message, esp_id = sent_reply
    before = {kind: counted(f"sendgrid-{kind}", "ignored_other_esp") for kind in ("tracking", "inbound")}
    for kind in ("bounced", "complained", "unsubscribed", "delivered"):
        tracking.send(sender=PostmarkTrackingWebhookView, esp_name="Postmark", event=AnymailTrackingEvent(
            event_type=kind, message_id=esp_id, recipient="jane@example.com", event_id=f"pm-{kind}",
            esp_event={"RecordType": "Bounce"}))
    raw = mails.plain(mid="<pm-in@evil.example.com>", frm="Jane Customer <mallory@evil.example.com>")
    inbound.send(sender=PostmarkInboundWebhookView, esp_name="Postmark", event=AnymailInboundEvent(
        event_type="inbound", message=AnymailInboundMessage.parse_raw_mime_bytes(raw), esp_event=None))
    assert not Suppression.objects.exists() and not TrackingEvent.objects.exists()
    assert not Message.objects.filter(external_id="pm-in@evil.example.com").exists()
    message.refresh_from_db()
    assert message.delivery_status == "sent"
    assert counted("sendgrid-tracking", "ignored_other_esp") - before["tracking"] == 4
    assert counted("sendgrid-inbound", "ignored_other_esp") - before["inbound"] == 1


def test_with_email_webhooks_off_sendgrids_paths_are_404_too(client, db, webhook_secret, settings):
    settings.EMAIL_WEBHOOKS = False
    assert client.post(TRACKING, data="[]", content_type="application/json", **auth(webhook_secret)).status_code == 404
    assert client.post(INBOUND, data={"email": mails.plain().decode()}, **auth(webhook_secret)).status_code == 404
    assert client.head(INBOUND).status_code == 404
    assert not Message.objects.exists()


# --- Large inbound mail -----------------------------------------------------------------------------

def _raw_form(raw: bytes) -> dict:
    return {"email": raw.decode(), "envelope": json.dumps({"to": ["hello@myhibachi.test"], "from": "jane@example.com"}),
            "charsets": json.dumps({"to": "UTF-8", "subject": "UTF-8", "from": "UTF-8"}), "spam_score": "0.1"}


@pytest.mark.parametrize("attachment_bytes", [2_200_000, 7_400_000])  # raw MIME of about 3 MB and 10 MB
def test_large_raw_inbound_mail_is_stored_with_its_attachment(client, db, webhook_secret, settings, attachment_bytes):
    raw = mails.with_attachment(attachment_bytes, mid="<big@mail.example.com>")
    assert len(raw) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    response = client.post(INBOUND, data=_raw_form(raw), **auth(webhook_secret))
    assert response.status_code == 200, response.content[:300]
    stored = Message.objects.get(external_id="big@mail.example.com")
    assert stored.text.strip() == "Plan attached."
    [attachment] = stored.metadata["attachments"]
    assert attachment["filename"] == "floor plan.pdf" and attachment["size"] == attachment_bytes
    assert "path" in attachment
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == 2621440  # unchanged for everything else
    assert counted("sendgrid-inbound", "accepted") == 1
    assert client.post(INBOUND, data=_raw_form(raw), **auth(webhook_secret)).status_code == 200
    assert counted("sendgrid-inbound", "duplicates") == 1 and Message.objects.count() == 1


def test_large_inbound_mail_in_sendgrids_parsed_form_keeps_its_attachment(client, db, webhook_secret):
    pdf = SimpleUploadedFile("menu.pdf", b"%PDF-1.4\n" + b"x" * 3_000_000, content_type="application/pdf")
    form = {"headers": "From: Kim Lee <kim@example.com>\nTo: hello@myhibachi.test\nSubject: Menu\n"
                       "Message-ID: <parsed-big@mail.example.com>\n",
            "text": "Our menu, attached.", "from": "Kim Lee <kim@example.com>", "to": "hello@myhibachi.test",
            "subject": "Menu", "attachments": "1", "charsets": json.dumps({"text": "utf-8"}),
            "attachment-info": json.dumps({"attachment1": {"filename": "menu.pdf", "type": "application/pdf"}}),
            "attachment1": pdf}
    assert client.post(INBOUND, data=form, **auth(webhook_secret)).status_code == 200
    stored = Message.objects.get(external_id="parsed-big@mail.example.com")
    [attachment] = stored.metadata["attachments"]
    assert attachment["filename"] == "menu.pdf" and attachment["size"] == 3_000_009


def test_inbound_mail_over_the_limit_is_refused_with_413_and_counted(client, db, webhook_secret, settings):
    settings.EMAIL_MAX_MESSAGE_BYTES = 1_000_000
    before = counted("sendgrid-inbound", "refused_too_large")
    response = client.post(INBOUND, data=_raw_form(mails.with_attachment(2_200_000, mid="<huge@mail.example.com>")),
                           **auth(webhook_secret))
    assert response.status_code == 413 and b"limit" in response.content
    assert counted("sendgrid-inbound", "refused_too_large") == before + 1
    assert not Message.objects.exists()


def test_a_large_post_without_the_secret_is_refused_before_it_is_read(client, db, webhook_secret):
    form = _raw_form(mails.with_attachment(3_000_000, mid="<anon@mail.example.com>"))
    assert client.post(INBOUND, data=form, **auth("sendgrid:wrong")).status_code == 400
    assert not Message.objects.exists()
    assert counted("sendgrid-inbound", "refused_auth") == 1


def test_other_endpoints_keep_djangos_upload_limit(client, db, webhook_secret):
    before = counted("sendgrid-tracking", "refused_too_large")
    big = json.dumps([event("delivered", "x", n, padding="x" * 3_000_000) for n in range(1)])
    assert post_raw(client, big, webhook_secret).status_code == 413
    assert counted("sendgrid-tracking", "refused_too_large") == before + 1
    assert client.post("/admin/login/", data={"username": "a", "password": "x" * 3_000_000}).status_code == 400


def post_raw(client, body, secret):
    return client.post(TRACKING, data=body, content_type="application/json", **auth(secret))


@pytest.mark.parametrize("content_type,body", [
    ("multipart/form-data", b"--x\r\n"),  # no boundary parameter
    ("multipart/form-data; boundary=zz", b"garbage without any boundary"),
    ("multipart/form-data; boundary=zz", b"--zz\r\nContent-Disposition: form-data; name=\"email\"\r\n"
                                         b"Content-Transfer-Encoding: base64\r\n\r\nQUJDR\r\n--zz--\r\n"),
    ("multipart/form-data; boundary=zz", b"--zz\r\nContent-Disposition: form-data; name=\"email\"\r\n" + b"X" * 5000),
    ("application/json", b'{"email": "x"}'),
    ("application/x-www-form-urlencoded", b"nothing=here&envelope=%7B"),
])
def test_unreadable_inbound_forms_get_a_400_and_are_counted(client, db, webhook_secret, content_type, body):
    before = counted("sendgrid-inbound", "bad_payload")
    response = client.post(INBOUND, data=body, content_type=content_type, **auth(webhook_secret))
    assert response.status_code == 400 and b"Unreadable inbound payload" in response.content
    assert counted("sendgrid-inbound", "bad_payload") == before + 1
    assert not Message.objects.exists()
