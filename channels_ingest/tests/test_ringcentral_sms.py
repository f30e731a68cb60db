"""SMS in and out through RingCentral (the stand-in): the webhook, replies, opt-out, delivery status."""
import json

import pytest
from django.test import TestCase
from django.urls import reverse

from channels_ingest.base import counted
from channels_ingest.models import PendingNotification
from channels_ingest.ringcentral.tasks import store_notifications
from channels_ingest.ringcentral.sync import sync_messages
from crm.models import CustomerIdentity
from inbox import services
from inbox.errors import CannotReply, ReplyTooLarge
from inbox.models import Message
from tests.factories import make_user

from .conftest import RC_BUSINESS_NUMBER, RC_VERIFICATION_TOKEN

CUSTOMER = "+14155550100"
URL = "/ringcentral/webhook/"


def notify(client, payload, token=RC_VERIFICATION_TOKEN, **headers):
    body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    if token is not None:
        headers["HTTP_VERIFICATION_TOKEN"] = token
    return client.post(URL, data=body, content_type="application/json", **headers)


def text_in(client, ringcentral, text, number=CUSTOMER, **extra):
    record = ringcentral.add_message(from_number=number, text=text, **extra)
    with TestCase.captureOnCommitCallbacks(execute=True):  # the media download queued on commit
        response = notify(client, ringcentral.notification(record))
    assert response.status_code == 200, response.content
    return Message.objects.get(channel="sms", external_id=str(record["id"]))


def send_reply(conversation, capture, text="See you Saturday!", author=None):
    with capture(execute=True):
        message = services.reply(conversation=conversation, author=author or make_user("alice"), text=text,
                                 channel="sms")
    message.refresh_from_db()
    return message


# --- inbound ---------------------------------------------------------------------------

def test_validation_token_handshake_is_echoed_and_stores_nothing(client, db):
    response = client.post(URL, HTTP_VALIDATION_TOKEN="abc123-token")
    assert response.status_code == 200
    assert response["Validation-Token"] == "abc123-token"
    assert response["Content-Type"] == "application/json"
    assert Message.objects.count() == 0


def test_an_inbound_sms_lands_in_the_customers_thread(client, ringcentral):
    message = text_in(client, ringcentral, "Do you cater on Sundays?")
    assert message.text == "Do you cater on Sundays?"
    assert message.direction == "inbound"
    assert message.customer.identities.get().value == CUSTOMER
    assert message.conversation.status == "open"
    assert counted("ringcentral", "accepted") == 1


@pytest.mark.parametrize("token", [None, "", "wrong-token", RC_VERIFICATION_TOKEN + "x"])
def test_notifications_without_the_verification_token_are_refused_and_counted(client, ringcentral, token):
    record = ringcentral.add_message(text="forged")
    response = notify(client, ringcentral.notification(record), token=token)
    assert response.status_code == 403
    assert Message.objects.count() == 0
    assert counted("ringcentral", "refused") == 1


def test_a_replayed_notification_is_stored_once(client, ringcentral):
    text_in(client, ringcentral, "Party of 10 on the 5th")
    record = ringcentral.messages[-1]
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert notify(client, ringcentral.notification(record)).json() == {"queued": 1}
    assert Message.objects.filter(channel="sms").count() == 1
    assert (counted("ringcentral", "accepted"), counted("ringcentral", "duplicates")) == (1, 1)
    assert not PendingNotification.objects.exists()


def test_a_notification_replayed_before_the_first_was_stored_is_stored_once(client, ringcentral):
    payload = ringcentral.notification(ringcentral.add_message(text="Party of 12 on the 6th"))
    assert notify(client, payload).status_code == notify(client, payload).status_code == 200
    assert PendingNotification.objects.count() == 2  # acknowledged, not stored yet
    store_notifications()
    assert Message.objects.filter(channel="sms").count() == 1
    assert (counted("ringcentral", "accepted"), counted("ringcentral", "duplicates")) == (1, 1)


def test_malformed_json_is_a_400_and_counted(client, ringcentral):
    response = notify(client, b'{"body": {"id": ')
    assert response.status_code == 400
    assert b"Unreadable payload" in response.content
    assert counted("ringcentral", "bad_payload") == 1


def test_a_10_mb_notification_is_refused_before_it_is_read(client, ringcentral):
    record = ringcentral.add_message(text="x" * (10 * 1024 * 1024))
    response = notify(client, ringcentral.notification(record))
    assert response.status_code == 413
    assert Message.objects.count() == 0
    assert counted("ringcentral", "too_large") == 1


def test_a_number_like_call_me_is_kept_and_flagged_not_dropped(client, ringcentral):
    message = text_in(client, ringcentral, "hi there", number="call me")
    assert message.metadata["unparsed_number"] is True
    assert message.customer.identities.get().value == "unparsed:call me"
    with pytest.raises(CannotReply, match="no phone number on file"):
        services.reply(conversation=message.conversation, author=make_user("alice"), text="Hello", channel="sms")


def test_webhook_and_sync_never_store_the_same_sms_twice(client, ringcentral):
    first = text_in(client, ringcentral, "Hello from the webhook")
    ringcentral.add_message(text="Only the sync saw this one")
    stats = sync_messages()
    assert (stats.fetched, stats.stored, stats.duplicates) == (2, 1, 1)
    assert Message.objects.filter(channel="sms").count() == 2
    assert Message.objects.filter(pk=first.pk).exists()


def test_mms_pictures_are_downloaded_into_storage_and_served_to_staff_only(client, ringcentral, agent):
    picture = b"\x89PNG\r\n\x1a\n" + b"0" * 100
    message = text_in(client, ringcentral, "Our venue", attachments=[(picture, "image/png", "venue.png"),
                                                                      (b"%PDF-1.4", "application/pdf", "menu.pdf")])
    message.refresh_from_db()
    assert message.metadata["media_pending"] is False
    image, pdf = message.metadata["attachments"]
    assert image["sha256"] and pdf["sha256"]

    url = reverse("inbox:attachment", args=[message.conversation_id, message.pk, 0])
    assert client.get(url).status_code == 302  # signed out: to the log-in page
    client.force_login(agent)
    response = client.get(url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == picture
    assert response["Content-Type"] == "image/png"
    download = client.get(reverse("inbox:attachment", args=[message.conversation_id, message.pk, 1]))
    assert download["Content-Disposition"].startswith("attachment")

    thread = client.get(reverse("inbox:thread", args=[message.conversation_id])).content.decode()
    assert f'<img src="{url}"' in thread
    assert "menu.pdf</a>" in thread


# --- replies ---------------------------------------------------------------------------

def test_a_reply_goes_out_from_the_business_number(client, ringcentral, django_capture_on_commit_callbacks):
    inbound = text_in(client, ringcentral, "Is Saturday free?")
    message = send_reply(inbound.conversation, django_capture_on_commit_callbacks)
    assert message.delivery_status == "sent"
    [body] = ringcentral.sent
    assert body == {"from": {"phoneNumber": RC_BUSINESS_NUMBER}, "to": [{"phoneNumber": CUSTOMER}],
                    "text": "See you Saturday!"}
    assert message.external_id == str(ringcentral.messages[-1]["id"])


def test_a_reply_over_1000_utf16_units_is_refused_before_sending(client, ringcentral):
    inbound = text_in(client, ringcentral, "hi")
    with pytest.raises(ReplyTooLarge, match="limited to 1,000 characters"):
        services.reply(conversation=inbound.conversation, author=make_user("alice"), text="🍤" * 501, channel="sms")
    assert ringcentral.sent == []
    assert not Message.objects.filter(direction="outbound").exists()


def test_an_outage_delays_the_reply_and_it_goes_out_once(client, ringcentral, django_capture_on_commit_callbacks):
    inbound = text_in(client, ringcentral, "hi")
    ringcentral.fail_next(503, times=2, path_contains="/sms")
    message = send_reply(inbound.conversation, django_capture_on_commit_callbacks)
    assert message.delivery_status == "sent"
    assert len(ringcentral.sent) == 1


def test_a_refused_sms_is_marked_failed_with_ringcentrals_reason(client, ringcentral,
                                                                 django_capture_on_commit_callbacks):
    inbound = text_in(client, ringcentral, "hi")
    ringcentral.fail_next(400, path_contains="/sms")
    message = send_reply(inbound.conversation, django_capture_on_commit_callbacks)
    assert message.delivery_status == "failed"
    assert "RingCentral refused the SMS" in message.status_reason
    assert ringcentral.sent == []


def test_delivery_status_only_moves_forward(client, ringcentral, django_capture_on_commit_callbacks):
    inbound = text_in(client, ringcentral, "hi")
    sync_messages()  # the first sync takes its token
    message = send_reply(inbound.conversation, django_capture_on_commit_callbacks)
    ringcentral.set_status(message.external_id, "Delivered")
    sync_messages()
    message.refresh_from_db()
    assert message.delivery_status == "delivered"
    ringcentral.set_status(message.external_id, "Sent")  # late and out of order
    sync_messages()
    message.refresh_from_db()
    assert message.delivery_status == "delivered"


def test_a_failed_delivery_shows_ringcentrals_error_code(client, ringcentral, django_capture_on_commit_callbacks):
    inbound = text_in(client, ringcentral, "hi")
    sync_messages()
    message = send_reply(inbound.conversation, django_capture_on_commit_callbacks)
    ringcentral.set_status(message.external_id, "DeliveryFailed", error_code="SMS-CAR-411")
    sync_messages()
    message.refresh_from_db()
    assert message.delivery_status == "failed"
    assert message.status_reason == "RingCentral: DeliveryFailed (SMS-CAR-411)"


# --- opt-out ---------------------------------------------------------------------------

@pytest.mark.parametrize("word", ["STOP", "stop", "StopAll", "UNSUBSCRIBE", "cancel", "End.", "QUIT"])
def test_stop_words_opt_the_number_out_and_replies_are_refused_saying_why(client, ringcentral, word):
    inbound = text_in(client, ringcentral, word)
    assert inbound.text == word  # the message itself is still stored
    phone = CustomerIdentity.objects.get(value=CUSTOMER)
    assert phone.opted_out_at is not None
    with pytest.raises(CannotReply, match="opted out of SMS by texting .* replies are not sent until they text START"):
        services.reply(conversation=inbound.conversation, author=make_user("alice"), text="But wait", channel="sms")
    assert ringcentral.sent == []


def test_the_composer_says_why_and_the_reply_is_a_422(client, ringcentral, agent):
    inbound = text_in(client, ringcentral, "STOP")
    client.force_login(agent)
    page = client.get(reverse("inbox:thread", args=[inbound.conversation_id])).content.decode()
    assert "opted out of SMS by texting STOP" in page
    response = client.post(reverse("inbox:send", args=[inbound.conversation_id]),
                           {"mode": "reply", "channel": "sms", "text": "Hello?"})
    assert response.status_code == 422
    assert "opted out of SMS" in response.content.decode()


def test_start_resubscribes_and_a_replayed_old_stop_changes_nothing(client, ringcentral,
                                                                    django_capture_on_commit_callbacks):
    stop = ringcentral.add_message(from_number=CUSTOMER, text="STOP")
    notify(client, ringcentral.notification(stop))
    inbound = text_in(client, ringcentral, "START")
    assert CustomerIdentity.objects.get(value=CUSTOMER).opted_out_at is None
    notify(client, ringcentral.notification(stop))  # replayed
    assert CustomerIdentity.objects.get(value=CUSTOMER).opted_out_at is None
    message = send_reply(inbound.conversation, django_capture_on_commit_callbacks, text="Welcome back")
    assert message.delivery_status == "sent"


def test_a_stop_after_the_reply_was_queued_still_stops_it(client, ringcentral, django_capture_on_commit_callbacks):
    inbound = text_in(client, ringcentral, "hi")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.reply(conversation=inbound.conversation, author=make_user("alice"), text="Deal!", channel="sms")
    text_in(client, ringcentral, "STOP")
    for callback in callbacks:
        callback()
    message = Message.objects.get(direction="outbound")
    assert message.delivery_status == "failed"
    assert "opted out of SMS" in message.status_reason
    assert ringcentral.sent == []


def test_an_mms_picture_missed_in_an_outage_is_fetched_after_the_next_sync(client, ringcentral, agent):
    ringcentral.fail_next(503, path_contains="/content/")
    message = text_in(client, ringcentral, "Cake idea", attachments=[(b"GIF89a-cake", "image/gif", "cake.gif")])
    message.refresh_from_db()
    assert message.metadata["media_pending"] is True
    client.force_login(agent)
    page = client.get(reverse("inbox:thread", args=[message.conversation_id])).content.decode()
    assert "cake.gif (downloading…)" in page

    with TestCase.captureOnCommitCallbacks(execute=True):
        stats = sync_messages()
    assert (stats.stored, stats.duplicates) == (0, 1)
    message.refresh_from_db()
    assert message.metadata["media_pending"] is False
    assert message.metadata["attachments"][0]["path"]
