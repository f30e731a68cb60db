"""The periodic reads (message-sync, call log), the commands and the subscription, against the stand-in."""
import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import TestCase
from django.urls import reverse
from django.utils import timezone

from channels_ingest.models import AgentPhone, Subscription, SyncState
from channels_ingest.ringcentral.sync import sync_calls, sync_messages
from inbox import services
from inbox.models import Conversation, Message
from tests.factories import make_user

from .conftest import RC_BUSINESS_NUMBER, RC_VERIFICATION_TOKEN

CUSTOMER = "+14155550100"


def run_calls():
    with TestCase.captureOnCommitCallbacks(execute=True):  # recordings are downloaded by a task on commit
        return sync_calls()


# --- SMS sync ----------------------------------------------------------------------------

def test_first_run_is_an_fsync_then_isync_reads_only_whats_new(ringcentral):
    ringcentral.add_message(text="one")
    ringcentral.add_message(text="two")
    first = sync_messages()
    assert (first.fetched, first.stored) == (2, 2)
    token = SyncState.objects.get(feed="sms").sync_token
    assert token

    ringcentral.add_message(text="three")
    second = sync_messages()
    assert (second.fetched, second.stored, second.duplicates) == (1, 1, 0)
    syncs = [path for method, path in ringcentral.requests if path.endswith("/message-sync")]
    assert len(syncs) == 2
    assert Message.objects.filter(channel="sms").count() == 3
    assert [m.text for m in Message.objects.order_by("created_at", "id")] == ["one", "two", "three"]


def test_an_outage_is_caught_up_by_the_next_run_with_nothing_twice(ringcentral):
    ringcentral.add_message(text="before")
    sync_messages()
    ringcentral.add_message(text="during the outage")
    ringcentral.fail_next(503, path_contains="/message-sync")
    failed = sync_messages()
    assert failed.error.startswith("RingCentral GET")
    assert SyncState.objects.get(feed="sms").last_error
    caught_up = sync_messages()
    assert (caught_up.stored, caught_up.error) == (1, "")
    assert Message.objects.filter(text="during the outage").count() == 1
    assert sync_messages().stored == 0


def test_a_sync_token_ringcentral_no_longer_accepts_starts_a_full_sync(ringcentral):
    ringcentral.add_message(text="hello")
    SyncState.objects.create(feed="sms", sync_token="not-a-token")
    stats = sync_messages()
    assert stats.stored == 1 and not stats.error


def test_only_one_sync_runs_at_a_time(ringcentral):
    SyncState.objects.create(feed="sms", locked_until=timezone.now() + timedelta(minutes=5), lock_owner="other")
    assert sync_messages().skipped is True
    assert not [p for m, p in ringcentral.requests if p.endswith("/message-sync")]


def test_sync_sms_command_backfills_and_prints_the_counts(ringcentral):
    old = timezone.now() - timedelta(days=20)
    for n in range(3):
        ringcentral.add_message(text=f"old {n}", created=old + timedelta(minutes=n))
    ringcentral.add_message(text="too old", created=old - timedelta(days=30))
    out = StringIO()
    call_command("sync_sms", "--since", (old - timedelta(days=1)).strftime("%Y-%m-%d"), stdout=out)
    text = out.getvalue()
    assert "3 / 3 records read" in text
    assert "SMS: fetched 3, stored 3, duplicates 0" in text
    out = StringIO()
    call_command("sync_sms", stdout=out)
    assert "stored 0" in out.getvalue()
    assert Message.objects.filter(channel="sms").count() == 3


def test_sync_sms_command_refuses_a_bad_date_and_reports_an_outage(ringcentral):
    with pytest.raises(CommandError, match="use a date"):
        call_command("sync_sms", "--since", "last tuesday")
    ringcentral.fail_next(503, path_contains="/message-sync")
    err = StringIO()
    with pytest.raises(CommandError, match="incomplete"):
        call_command("sync_sms", stdout=StringIO(), stderr=err)
    assert "next run continues" in err.getvalue()


# --- calls -------------------------------------------------------------------------------

def test_calls_become_thread_items_with_their_facts(ringcentral, agent, client):
    ringcentral.add_call(result="Accepted", duration=125, recording=b"ID3-recorded-audio")
    stats = run_calls()
    assert stats.stored == 1
    call = Message.objects.get(channel="call")
    facts = call.metadata["call"]
    assert (facts["direction"], facts["result"], facts["duration"], facts["from"], facts["to"]) == (
        "inbound", "Accepted", 125, CUSTOMER, RC_BUSINESS_NUMBER)
    assert call.customer.identities.get().value == CUSTOMER
    assert facts["recording"]["path"]  # downloaded with our token into storage
    assert "call-back" not in {t.name for t in call.conversation.tags.all()}

    client.force_login(agent)
    page = client.get(reverse("inbox:thread", args=[call.conversation_id])).content.decode()
    assert "Incoming call · Accepted · from +14155550100 to +14155550199 · 2:05" in page
    recording_url = reverse("inbox:recording", args=[call.conversation_id, call.pk])
    assert f'<audio controls preload="none" src="{recording_url}"' in page
    response = client.get(recording_url)
    assert b"".join(response.streaming_content) == b"ID3-recorded-audio"
    assert [p for m, p in ringcentral.requests if "/recording/" in p]  # fetched from RingCentral, authorised


def test_a_call_log_read_twice_stores_each_call_once(ringcentral):
    ringcentral.add_call(result="Missed")
    ringcentral.add_call(result="Voicemail")
    assert run_calls().stored == 2
    assert run_calls().duplicates == 2
    assert Message.objects.filter(channel="call").count() == 2


@pytest.mark.parametrize("result", ["Missed", "Voicemail"])
def test_a_missed_call_reopens_the_conversation_marked_call_back_until_staff_reply(ringcentral, result,
                                                                                   django_capture_on_commit_callbacks):
    ringcentral.add_message(text="hi")
    sync_messages()
    conversation = Conversation.objects.get()
    services.set_status(conversation=conversation, status="resolved", by=make_user("alice"))
    ringcentral.add_call(result=result)
    run_calls()
    conversation.refresh_from_db()
    assert conversation.status == "open"
    assert conversation.is_unread
    assert "call-back" in {t.name for t in conversation.tags.all()}

    with django_capture_on_commit_callbacks(execute=True):
        services.reply(conversation=conversation, author=make_user("bob"), text="Sorry we missed you!",
                       channel="sms")
    assert "call-back" not in {t.name for t in conversation.tags.all()}


def test_an_outgoing_call_joins_the_thread_without_opening_anything(ringcentral):
    ringcentral.add_call(direction="Outbound", from_number=RC_BUSINESS_NUMBER, to_number=CUSTOMER,
                         result="Call connected", duration=30)
    run_calls()
    call = Message.objects.get(channel="call")
    assert call.customer.identities.get().value == CUSTOMER
    assert call.conversation.status == "closed"  # kept, out of the inbox: nobody needs to answer it
    assert call.metadata["call"]["direction"] == "outbound"


def test_a_call_from_an_unreadable_number_is_kept_and_flagged(ringcentral):
    ringcentral.add_call(from_number="Anonymous", result="Missed")
    run_calls()
    call = Message.objects.get(channel="call")
    assert call.metadata["unparsed_number"] is True
    assert call.customer.identities.get().value == "unparsed:Anonymous"


# --- click to call -------------------------------------------------------------------------

@pytest.fixture
def phone_conversation(ringcentral):
    ringcentral.add_message(text="Call me please")
    sync_messages()
    return Conversation.objects.get()


def test_click_to_call_rings_the_agents_own_number_first(ringcentral, phone_conversation, agent, client):
    AgentPhone.objects.create(user=agent, phone_number="(415) 555-0142")
    client.force_login(agent)
    page = client.get(reverse("inbox:thread", args=[phone_conversation.pk])).content.decode()
    assert 'aria-label="Call +14155550100 from your RingCentral phone"' in page
    services.set_call_back(conversation=phone_conversation, needed=True)

    response = client.post(reverse("ringcentral_ringout", args=[phone_conversation.pk]), {"number": CUSTOMER})
    assert response.status_code == 200
    assert "Calling your phone (+14155550142) first, then +14155550100" in response.content.decode()
    assert ringcentral.ringouts == [{"from": {"phoneNumber": "+14155550142"}, "to": {"phoneNumber": CUSTOMER},
                                    "playPrompt": False}]
    assert not phone_conversation.tags.filter(name="call-back").exists()


def test_click_to_call_refuses_without_an_agent_number_or_for_a_stranger(ringcentral, phone_conversation, agent,
                                                                         client):
    client.force_login(agent)
    url = reverse("ringcentral_ringout", args=[phone_conversation.pk])
    no_phone = client.post(url, {"number": CUSTOMER})
    assert no_phone.status_code == 422 and "no RingCentral number" in no_phone.content.decode()
    AgentPhone.objects.create(user=agent, phone_number="+14155550142")
    for number in ["+14155550177", "call me", ""]:
        response = client.post(url, {"number": number})
        assert response.status_code == 422
        assert "Only the phone numbers on this customer&#x27;s record" in response.content.decode()
    assert ringcentral.ringouts == []


def test_click_to_call_is_staff_only_and_post_only(ringcentral, phone_conversation, client):
    url = reverse("ringcentral_ringout", args=[phone_conversation.pk])
    assert client.post(url, {"number": CUSTOMER}).status_code == 302  # to the log-in page
    client.force_login(make_user("outsider", role=None))
    assert client.post(url, {"number": CUSTOMER}).status_code == 403
    assert ringcentral.ringouts == []


# --- the subscription ----------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_subscribe_command_passes_ringcentrals_validation_call_and_renews(ringcentral, live_server):
    address = live_server.url + "/ringcentral/webhook/"
    out = StringIO()
    call_command("ringcentral_subscribe", "--address", address, stdout=out)
    assert out.getvalue().startswith("Created subscription")
    [(status, echoed)] = ringcentral.validation_answers
    assert status == 200 and echoed  # our webhook echoed RingCentral's Validation-Token
    subscription = Subscription.objects.get()
    assert subscription.address == address
    request = ringcentral.subscriptions[subscription.subscription_id]["_request"]
    assert request["deliveryMode"]["verificationToken"] == RC_VERIFICATION_TOKEN
    assert any("message-store/instant?type=SMS" in f for f in request["eventFilters"])

    Subscription.objects.update(expires_at=timezone.now() + timedelta(hours=2))
    from channels_ingest.ringcentral.tasks import renew_subscription

    assert renew_subscription() == f"renewed {subscription.subscription_id}"
    assert Subscription.objects.get().expires_at > timezone.now() + timedelta(days=6)


def test_subscribe_fails_clearly_when_ringcentral_cannot_reach_us(ringcentral):
    with pytest.raises(CommandError, match="Validation-Token first: is http://127.0.0.1:9/hook reachable"):
        call_command("ringcentral_subscribe", "--address", "http://127.0.0.1:9/hook")
    assert not Subscription.objects.exists()


def test_a_missed_call_notification_reads_the_call_log_at_once(client, ringcentral):
    ringcentral.add_call(result="Missed")
    event = {"uuid": "5f1e", "event": "/restapi/v1.0/account/~/extension/~/telephony/sessions?missedCall=true",
             "timestamp": "2026-11-30T05:00:00.000Z", "subscriptionId": "sub-1",
             "body": {"telephonySessionId": "s-1", "parties": [{"missedCall": True, "direction": "Inbound"}]}}
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = client.post("/ringcentral/webhook/", data=json.dumps(event), content_type="application/json",
                               HTTP_VERIFICATION_TOKEN=RC_VERIFICATION_TOKEN)
    assert response.status_code == 200
    call = Message.objects.get(channel="call")
    assert call.metadata["call"]["result"] == "Missed"
    assert call.conversation.tags.filter(name="call-back").exists()


def test_backfill_and_call_log_follow_every_page(ringcentral, monkeypatch):
    from channels_ingest.ringcentral import sync

    monkeypatch.setattr(sync, "STORE_PAGE", 2)
    monkeypatch.setattr(sync, "CALL_PAGE", 2)
    start = timezone.now() - timedelta(days=3)
    for n in range(5):
        ringcentral.add_message(text=f"backfill {n}", created=start + timedelta(minutes=n))
        ringcentral.add_call(result="Accepted", duration=60, start=start + timedelta(minutes=n),
                             from_number=f"+1415555010{n}")
    out = StringIO()
    call_command("sync_sms", "--since", start.strftime("%Y-%m-%dT%H:%M"), "--calls", stdout=out)
    text = out.getvalue()
    assert ["2 / 5", "4 / 5", "5 / 5"] == [line.split(" records")[0].strip() for line in text.splitlines()
                                            if "records read" in line][:3]
    assert "SMS: fetched 5, stored 5" in text
    assert "calls: fetched 5, stored 5" in text
    pages = [p for m, p in ringcentral.requests if p.endswith("/call-log")]
    assert len(pages) == 3


def test_a_burst_of_store_notifications_queues_one_sync(client, ringcentral):
    ringcentral.add_message(text="status changed")
    event = {"uuid": "a1", "event": "/restapi/v1.0/account/~/extension/~/message-store",
             "body": {"changes": [{"type": "SMS", "newCount": 1, "updatedCount": 0}]}}
    with TestCase.captureOnCommitCallbacks(execute=True):
        for _ in range(3):
            response = client.post("/ringcentral/webhook/", data=json.dumps(event), content_type="application/json",
                                   HTTP_VERIFICATION_TOKEN=RC_VERIFICATION_TOKEN)
            assert response.status_code == 200
    assert len([p for m, p in ringcentral.requests if p.endswith("/message-sync")]) == 1
    assert Message.objects.filter(text="status changed").count() == 1


@pytest.mark.parametrize("model", ["agentphone", "syncstate", "subscription"])
def test_ringcentral_admin_lists_open_for_managers_only(manager_client, manager, model, ringcentral):
    sync_messages()  # a SyncState row to list
    response = manager_client.get(f"/admin/channels_ingest/{model}/")
    assert response.status_code == 200
    manager_client.force_login(make_user("agent-in-admin", role="Agent", is_staff=True))
    assert manager_client.get(f"/admin/channels_ingest/{model}/").status_code in (302, 403)


def test_a_manager_sets_an_agents_number_in_e164(manager_client, agent):
    response = manager_client.post("/admin/channels_ingest/agentphone/add/",
                                   {"user": agent.pk, "phone_number": "(415) 555-0142"})
    assert response.status_code == 302
    assert AgentPhone.objects.get(user=agent).phone_number == "+14155550142"


def test_an_unreadable_agent_number_is_refused_in_the_admin_form(manager_client, agent):
    response = manager_client.post("/admin/channels_ingest/agentphone/add/", {"user": agent.pk,
                                                                              "phone_number": "call me"})
    assert response.status_code == 200
    assert "is not a phone number we can read" in response.content.decode()
    assert not AgentPhone.objects.exists()
