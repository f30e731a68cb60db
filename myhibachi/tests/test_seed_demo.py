import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models import Q
from django.utils import timezone

from analytics import metrics, refresh
from analytics.timebase import Range, local_date
from channels_ingest.chat.chatbot import transcript_text
from channels_ingest.chat.models import ChatbotSession
from channels_ingest.email.models import Campaign, CampaignRecipient, SentEmail, Suppression, TrackingEvent
from crm.models import Booking, Customer, CustomerIdentity, Lead, MarketingSpend
from inbox.models import CannedResponse, Conversation, ConversationActivity, Message, Note, RoutingRule

CALL_WORDS = re.compile(r"\b(call|calls|called|calling|callback|voicemail|rang|ring)\b", re.I)


def seed(customers):
    call_command("seed_demo", customers=customers, stdout=StringIO(), stderr=StringIO())


def _counts():
    counts = {model.__name__: model.objects.count() for model in
              (Customer, CustomerIdentity, Booking, Lead, MarketingSpend, Conversation, Message, Note,
               CannedResponse, RoutingRule, Conversation.tags.through, ConversationActivity, ChatbotSession,
               SentEmail, TrackingEvent, Campaign, CampaignRecipient)}
    counts["campaign figures"] = list(Campaign.objects.order_by("pk").values_list(
        "recipients_count", "sent_count", "delivered_count", "opened_count", "clicked_count", "bounced_count"))
    return counts


def test_seed_demo_twice_creates_nothing_the_second_time(db):
    call_command("seed_demo", customers=30, stdout=StringIO(), stderr=StringIO())
    first = _counts()
    call_command("seed_demo", customers=30, stdout=StringIO(), stderr=StringIO())
    assert _counts() == first
    assert first["Customer"] == 30
    assert first["Conversation"] == 150
    assert set(Message.objects.values_list("channel", flat=True)) == {"email", "sms", "chat", "call"}
    assert not Conversation.objects.filter(last_message__isnull=True).exists()
    # Tagged as the demo pricing rule tags a conversation whose first message asks about price.
    asks_price = {c.pk for c in Conversation.objects.all()
                  if re.search(r"\b(price|quote|cost)\b", c.messages.order_by("created_at", "id").first().text, re.I)}
    assert 0 < len(asks_price) < first["Conversation"]
    assert set(Conversation.objects.filter(tags__name="pricing").values_list("pk", flat=True)) == asks_price


def test_a_larger_scale_adds_only_the_difference(db):
    call_command("seed_demo", customers=10, stdout=StringIO(), stderr=StringIO())
    call_command("seed_demo", customers=25, stdout=StringIO(), stderr=StringIO())
    assert Customer.objects.count() == 25
    assert CustomerIdentity.objects.filter(kind="email").count() == 25
    # The campaigns gained the new customers, and their figures (each recipient once) moved with them.
    assert Campaign.objects.count() == 2
    for campaign in Campaign.objects.all():
        sent = campaign.recipients.all()
        assert sent.count() == campaign.recipients_count == campaign.sent_count > 0
        assert [campaign.delivered_count, campaign.opened_count, campaign.clicked_count, campaign.bounced_count] == [
            sent.filter(**{f"{kind}_at__isnull": False}).count()
            for kind in ("delivered", "opened", "clicked", "bounced")]
        assert campaign.delivered_count > campaign.opened_count > 0


def test_print_logins_gives_working_demo_logins(db, client, settings):
    settings.DEBUG = True
    out = StringIO()
    call_command("seed_demo", customers=1, print_logins=True, stdout=out, stderr=StringIO())
    assert "username: manager" in out.getvalue()
    assert client.login(username="manager", password="hibachi-manager-demo")
    assert client.get("/admin/").status_code == 200


def test_demo_data_agrees_with_itself(db):
    """What a new agent reads in the demo could have happened: calls are the only
    "missed call" lines, only email is ever "opened", nobody @-mentions themselves,
    and bookings have an address for the profile panel."""
    call_command("seed_demo", customers=60, stdout=StringIO())
    assert Message.objects.filter(channel="call").exists()
    assert not Message.objects.filter(text__icontains="missed call").exclude(channel="call").exists()
    assert Message.objects.filter(delivery_status="opened", channel="email").exists()
    assert not Message.objects.filter(delivery_status="opened").exclude(channel="email").exists()
    mentions = [(n.body, n.author.username) for n in Note.objects.select_related("author") if "@" in n.body]
    assert mentions and all(f"@{author} " not in f"{body} " for body, author in mentions)
    assert not Booking.objects.filter(address="").exists()


def test_seed_demo_gives_each_customer_one_active_conversation_at_most(db):
    """Demo data once gave Luis Nguyen four open conversations; the inbox showed him four times."""
    from django.db.models import Count

    call_command("seed_demo", customers=60, stdout=StringIO(), stderr=StringIO())
    per_customer = (Conversation.objects.filter(status__in=["open", "pending"]).values("customer")
                    .annotate(n=Count("id")).values_list("n", flat=True))
    assert per_customer and max(per_customer) == 1
    assert Conversation.objects.filter(status__in=["resolved", "closed"]).exists()


@pytest.fixture
def seeded(db):
    seed(60)


def last_twelve_months():
    today = local_date(timezone.now())
    return Range(today - timedelta(days=364), today, "month")


def test_the_dashboard_has_figures_for_every_channel_on_demo_data(seeded):
    """Issues 14/15: the email and chatbot areas were all zeros on the demo data."""
    refresh.refresh_all()  # the rollup-backed figures (inbox) read what the refresh wrote, as the screens do
    year = last_twelve_months()
    email = metrics.email(year)
    assert email["totals"]["sent"] > email["totals"]["delivered"] > email["totals"]["opened"] > 0
    assert email["totals"]["clicked"] > 0 and email["totals"]["bounced"] > 0
    assert len(email["campaigns"]) == 2 and all(c["sent"] and c["opened"] for c in email["campaigns"])
    assert {row["kind"] for row in email["transactional"] if row["sent"]} == {"reply", "confirmation", "reminder"}
    assert sum(1 for row in email["series"] if row["sent"]) >= 6  # spread over the year, not one month

    bot = metrics.chatbot(year)["totals"]
    assert bot["sessions"] > bot["handoffs"] > 0 and 0 < bot["handoff_rate"] < 1
    assert 1 <= bot["satisfaction"] <= 5 and bot["cost_per_session"] > 0
    assert bot["bookings"] > 0 and bot["revenue"] > 0

    inbox = metrics.inbox(year)
    assert inbox["totals"]["received"] > 0
    assert inbox["totals"]["channels"] == ["call", "chat", "email", "sms"]


def test_demo_texts_come_from_and_go_to_the_customers_own_number(seeded):
    phones = {}
    for customer_id, value in CustomerIdentity.objects.filter(kind="phone").values_list("customer_id", "value"):
        phones.setdefault(customer_id, set()).add(value)
    texts = list(Message.objects.filter(channel="sms").values("customer_id", "direction", "metadata"))
    assert {t["direction"] for t in texts} == {"inbound", "outbound"}
    for text in texts:
        number = text["metadata"]["from" if text["direction"] == "inbound" else "to"]
        assert number in phones[text["customer_id"]]
    # Some texts failed, each with RingCentral's reason (a retry button in the thread); none was "opened".
    failed = Message.objects.filter(channel="sms", delivery_status="failed")
    assert failed.exists()
    assert all(re.fullmatch(r"RingCentral: (DeliveryFailed|SendingFailed) \(SMS-[A-Z]+-\d+\)", reason)
               for reason in failed.values_list("status_reason", flat=True))
    assert set(Message.objects.filter(channel="sms", direction="outbound")
               .values_list("delivery_status", flat=True)) == {"sent", "delivered", "failed"}


def test_calls_are_call_items_and_chat_never_talks_of_calls(seeded):
    calls = list(Message.objects.filter(channel="call"))
    assert {c.metadata["call"]["result"] for c in calls} >= {"Missed", "Voicemail", "Accepted", "Call connected"}
    for call in calls:  # as the call-log sync stores them: a thread item with the call's facts
        facts = call.metadata["call"]
        word = "Incoming" if facts["direction"] == "inbound" else "Outgoing"
        assert call.direction == "inbound" and call.text.startswith(f"{word} call · {facts['result']}")
        missed = word == "Incoming" and facts["result"] in ("Missed", "Voicemail")
        assert call.metadata.get("call_back", False) == missed
    assert not Message.objects.filter(metadata__has_key="call").exclude(channel="call").exists()
    chat = Message.objects.filter(channel="chat").values_list("text", flat=True)
    assert chat and not [text for text in chat if CALL_WORDS.search(text)]


def test_call_back_marks_exactly_the_calls_nobody_returned(db):
    seed(200)  # what `make run` loads: a handful of its recent conversations still wait for a call back
    tagged = set(Conversation.objects.filter(tags__name="call-back").values_list("pk", flat=True))
    waiting = set()
    for conversation in Conversation.objects.filter(messages__channel="call").distinct():
        pending = False
        for message in conversation.messages.order_by("created_at", "id"):
            ours = message.direction == "outbound" or (message.channel == "call"
                                                      and message.metadata["call"]["direction"] == "outbound")
            pending = bool(message.metadata.get("call_back")) or (pending and not ours)
        if pending:
            waiting.add(conversation.pk)
    assert tagged and tagged == waiting
    # A conversation that is over ended on a call that was answered, not on one nobody returned.
    assert not Conversation.objects.filter(pk__in=tagged, status="closed").exists()


def test_chatbot_sessions_hand_off_into_conversations_and_leave_a_history(seeded):
    handed = ChatbotSession.objects.filter(handed_off=True)
    assert handed.exists() and ChatbotSession.objects.filter(handed_off=False, customer__isnull=False).exists()
    for session in ChatbotSession.objects.filter(customer__isnull=False).select_related("message", "conversation"):
        item = session.message
        assert (item.channel, item.direction, item.metadata["kind"]) == ("chat", "inbound", "chatbot_transcript")
        assert item.conversation_id == session.conversation_id and item.customer_id == session.customer_id
        assert item.created_at == session.ended_at and item.external_id == f"chatbot:{session.session_id}"
        assert item.text == transcript_text(session.transcript)  # the thread shows it as a real one
        assert item.text.startswith("Visitor: ")
    # A hand-off starts the wait for staff (analytics reads it); anonymous sessions stay out of the inbox.
    assert set(ConversationActivity.objects.filter(kind="bot_handoff").values_list("message_id", flat=True)) == set(
        handed.values_list("message_id", flat=True))
    anonymous = ChatbotSession.objects.filter(customer__isnull=True)
    assert anonymous.exists() and not anonymous.filter(Q(message__isnull=False) | Q(handed_off=True)).exists()
    # The history holds every item, transcripts and calls too, as the receive path writes it.
    activity = ConversationActivity.objects
    assert activity.filter(kind="received").count() == Message.objects.filter(direction="inbound").count()
    assert activity.filter(kind="replied").count() == Message.objects.filter(direction="outbound").count()
    assert not Message.objects.exclude(pk__in=activity.filter(message__isnull=False).values("message_id")).exists()
    # Staff answer a chat in the visitor's own session: each chat customer has a visitor identity.
    chatting = set(Message.objects.filter(channel="chat").values_list("customer_id", flat=True))
    assert chatting <= set(CustomerIdentity.objects.filter(kind="visitor").values_list("customer_id", flat=True))


def test_email_records_agree_with_the_thread_and_with_sendgrids_events(seeded):
    replies = Message.objects.filter(channel="email", direction="outbound")
    records = {r.message_id: r for r in SentEmail.objects.filter(kind="reply")}
    assert replies.count() == len(records) > 0
    events = {}
    for sent_id, kind in TrackingEvent.objects.filter(sent_email__isnull=False).values_list("sent_email", "event_type"):
        events.setdefault(sent_id, set()).add(kind)
    for message in replies:
        record, kinds = records[message.pk], events.get(records[message.pk].pk, set())
        assert record.to == message.metadata["to"] and record.created_at == message.created_at
        expected = ("failed" if "bounced" in kinds else "clicked" if "clicked" in kinds else "opened"
                    if "opened" in kinds else "delivered" if "delivered" in kinds else "sent")
        assert message.delivery_status == expected
        assert (record.status == "bounced") == ("bounced" in kinds) == message.status_reason.startswith("Bounced: ")
    # Booking mail went to confirmed bookings only, once each; bounces suppressed nobody who is mailed later.
    confirmed = set(Booking.objects.filter(confirmed_at__isnull=False).values_list("pk", flat=True))
    assert set(SentEmail.objects.filter(kind="confirmation").values_list("booking_id", flat=True)) <= confirmed
    assert SentEmail.objects.filter(kind="reminder").exists()
    assert not Suppression.objects.exists()
