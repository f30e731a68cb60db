"""A new channel is one registry entry and one adapter class: this test adds one ("pigeon")
and sends its webhook through the real URL resolver, the base's validation and dispatch,
the inbox, and the ops command's counts."""
import hashlib
import hmac
import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.urls import path

from channels_ingest import base
from crm import identity
from inbox import channels, services
from inbox.models import ConversationActivity, Message

SECRET = "pigeon-shared-secret"


class PigeonWebhook(base.WebhookAdapter):
    """The adapter: a shared-secret header, then an HMAC of the body, then JSON messages."""

    source = "pigeon"

    def validate_request(self, request):
        if not base.secrets_match(request.headers.get("X-Pigeon-Token", ""), SECRET):
            raise base.Refused("wrong token", outcome="refused_token")


class SignedPigeonWebhook(PigeonWebhook):
    def validate_request(self, request):
        expected = hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
        if not base.secrets_match(request.headers.get("X-Pigeon-Signature", ""), expected):
            raise base.Refused("bad signature", status=400, outcome="refused_signature")

    def parse_events(self, request):
        try:
            payload = json.loads(request.body)
            return [base.InboundMessage(channel="pigeon", sender=item["from"], external_id=item["id"],
                                        text=item["text"]) for item in payload["messages"]] + \
                   [base.DeliveryReport(channel="pigeon", external_id=item["id"], status=item["status"])
                    for item in payload.get("reports", [])]
        except (ValueError, KeyError, TypeError) as exc:
            raise base.BadPayload(f"not a pigeon payload ({exc})")


urlpatterns = [path("hooks/pigeon/", SignedPigeonWebhook.as_view())]


@pytest.fixture
def pigeon_channel(settings):
    channels.register(channels.ChannelSpec("pigeon", "Carrier pigeon", identity_kind=identity.PHONE, can_reply=True,
                                           reply_to_kind=identity.PHONE))
    settings.INBOX_SENDERS = {**settings.INBOX_SENDERS, "pigeon": "tests.senders.record"}
    yield
    channels.unregister("pigeon")


def _post(client, payload, *, token=SECRET, sign=True):
    body = json.dumps(payload).encode()
    headers = {"X-Pigeon-Token": token}
    if sign:
        headers["X-Pigeon-Signature"] = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return client.post("/hooks/pigeon/", body, content_type="application/json", headers=headers)


@override_settings(ROOT_URLCONF=__name__)
def test_a_new_channel_is_one_registry_entry_and_one_adapter(db, client, pigeon_channel, agent):
    payload = {"messages": [{"id": "p1", "from": "(415) 555-0142", "text": "Coo! Table for 12?"},
                            {"id": "p1", "from": "(415) 555-0142", "text": "Coo! Table for 12?"}]}
    response = _post(client, payload)
    assert response.status_code == 200
    assert response.json()["accepted"] == 1 and response.json()["duplicates"] == 1

    message = Message.objects.get(channel="pigeon", external_id="p1")
    assert message.customer.identities.get().value == "+14155550142"  # the registry's identity kind
    assert ConversationActivity.objects.filter(message=message, kind="received", channel="pigeon").exists()

    reply = services.reply(conversation=message.conversation, author=agent, text="Coo.", channel="pigeon")
    assert reply.metadata["to"] == "+14155550142"
    Message.objects.filter(pk=reply.pk).update(external_id="out-1")
    assert _post(client, {"messages": [], "reports": [{"id": "out-1", "status": "delivered"}]}).status_code == 200
    reply.refresh_from_db()
    assert reply.delivery_status == "delivered"

    assert base.counted("pigeon", "accepted") == 1 and base.counted("pigeon", "duplicates") == 1
    out = StringIO()
    call_command("channel_counts", "--source", "pigeon", stdout=out)
    assert "pigeon" in out.getvalue() and "accepted" in out.getvalue()


@override_settings(ROOT_URLCONF=__name__)
def test_every_validator_in_the_chain_runs_and_refusals_are_counted(db, client, pigeon_channel):
    payload = {"messages": [{"id": "p2", "from": "+14155550142", "text": "hi"}]}
    assert _post(client, payload, token="guess").status_code == 403  # the parent's check, not skipped
    assert _post(client, payload, sign=False).status_code == 400  # the subclass's own
    assert _post(client, {"messages": "nope"}).status_code == 400
    assert not Message.objects.filter(channel="pigeon").exists()
    assert base.counted("pigeon", "refused_token") == 1
    assert base.counted("pigeon", "refused_signature") == 1
    assert base.counted("pigeon", "bad_payload") == 1


@override_settings(ROOT_URLCONF=__name__)
def test_an_unreadable_sender_is_counted_and_the_rest_stored(db, client, pigeon_channel):
    payload = {"messages": [{"id": "p3", "from": "not a phone", "text": "?"},
                            {"id": "p4", "from": "+14155550143", "text": "ok"}]}
    response = _post(client, payload)
    assert response.status_code == 200 and response.json()["invalid"] == 1 and response.json()["accepted"] == 1
    assert list(Message.objects.filter(channel="pigeon").values_list("external_id", flat=True)) == ["p4"]


def test_an_unknown_channel_is_refused_with_the_known_ones_named(db):
    with pytest.raises(Exception) as info:
        services.receive_message(channel="owl", sender="+14155550142", text="hoot")
    assert "Unknown channel 'owl'" in str(info.value) and "email" in str(info.value)
