"""SendGrid's tracking and inbound webhooks, posted as SendGrid documents them."""
import base64
import json
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

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
    with django_assert_max_num_queries(15):  # 13 today, 5 of them savepoints; constant per event
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
    raw = mails.reply(mid="<in1@mail.example.com>", in_reply_to="<m1@mail.example.com>", frm="Jane <j2@example.com>")
    form = {"email": raw.decode(), "envelope": json.dumps({"to": ["hello@myhibachi.test"], "from": "j2@example.com"}),
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
