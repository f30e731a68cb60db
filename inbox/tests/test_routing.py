from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from crm.models import Booking
from inbox.models import RoutingRule
from tests.factories import make_user

LA = ZoneInfo("America/Los_Angeles")


def rule(name, conditions, actions, order=10, **extra):
    obj = RoutingRule(name=name, order=order, conditions=conditions, actions=actions, **extra)
    obj.full_clean()
    obj.save()
    return obj


def tags_of(conversation):
    return set(conversation.tags.values_list("name", flat=True))


@pytest.mark.parametrize("text, match, tagged", [
    ("What's the PRICE for 50?", "any", True),
    ("priceless evening, thanks", "any", False),  # whole words only
    ("price and quote please", "all", True),
    ("price please", "all", False),
])
def test_keyword_conditions(receive, text, match, tagged):
    rule("pricing", {"keywords": {"words": ["price", "quote"], "match": match}}, {"add_tags": ["pricing"]})
    conversation = receive(text=text).message.conversation
    assert ("pricing" in tags_of(conversation)) is tagged


def test_channel_condition_and_assign_user(receive):
    sarah = make_user("sarah")
    rule("sms to sarah", {"channel": ["sms"]}, {"assign_user": "sarah"})
    sms = receive(sender="+14155550100", channel="sms").message.conversation
    email = receive(sender="mail@example.com").message.conversation
    sms.refresh_from_db()
    email.refresh_from_db()
    assert sms.assignee == sarah and email.assignee is None


def test_loyalty_tier_condition(receive, customer):
    rule("vip", {"loyalty_tier": ["gold", "platinum"]}, {"add_tags": ["vip"]})
    for _ in range(5):
        Booking.objects.create(customer=customer, event_at=timezone.now() - timedelta(days=30), guest_count=10,
                               status="completed", total=Decimal("500"))
    assert tags_of(receive(sender="john@example.com").message.conversation) == {"vip"}
    assert tags_of(receive(sender="new@example.com").message.conversation) == set()


@pytest.mark.parametrize("local_time, inside", [
    (datetime(2026, 11, 25, 12, 0, tzinfo=LA), True),   # Wednesday noon
    (datetime(2026, 11, 25, 23, 30, tzinfo=LA), False),  # Wednesday late night
    (datetime(2026, 11, 29, 9, 30, tzinfo=LA), False),   # Sunday opens at 10
])
def test_business_hours_condition(receive, settings, local_time, inside):
    settings.BUSINESS_TIME_ZONE = "America/Los_Angeles"
    rule("after hours", {"business_hours": "outside"}, {"add_tags": ["after-hours"]})
    conversation = receive(received_at=local_time).message.conversation
    assert ("after-hours" in tags_of(conversation)) is (not inside)


def test_upcoming_booking_condition(receive, customer):
    rule("has event", {"has_upcoming_booking": True}, {"set_status": "pending"})
    Booking.objects.create(customer=customer, event_at=timezone.now() + timedelta(days=5), guest_count=10,
                           status="confirmed", total=Decimal("500"))
    with_booking = receive(sender="john@example.com").message.conversation
    without = receive(sender="nobody@example.com").message.conversation
    with_booking.refresh_from_db()
    without.refresh_from_db()
    assert with_booking.status == "pending" and without.status == "open"


def test_round_robin_is_fair_and_skips_inactive_members(receive):
    a, b, c = make_user("rr_a"), make_user("rr_b"), make_user("rr_c")
    c.is_active = False
    c.save()
    rule("round robin", {}, {"assign_round_robin": "Agent"})
    assignees = []
    for i in range(6):
        conversation = receive(sender=f"rr{i}@example.com").message.conversation
        conversation.refresh_from_db()
        assignees.append(conversation.assignee)
    assert assignees == [a, b, a, b, a, b]


def test_first_matching_rule_wins_unless_it_continues(receive):
    rule("first", {}, {"add_tags": ["first"]}, order=1)
    rule("second", {}, {"add_tags": ["second"]}, order=2)
    assert tags_of(receive(sender="x1@example.com").message.conversation) == {"first"}
    RoutingRule.objects.filter(name="first").update(continue_processing=True)
    assert tags_of(receive(sender="x2@example.com").message.conversation) == {"first", "second"}


def test_rules_run_on_creation_only_unless_asked_for_every_message(receive):
    rule("new only", {"keywords": {"words": ["urgent"]}}, {"add_tags": ["urgent"]})
    conversation = receive(text="hello").message.conversation
    receive(text="this is urgent")
    assert tags_of(conversation) == set()
    RoutingRule.objects.update(trigger="every_message")
    receive(text="still urgent")
    assert tags_of(conversation) == {"urgent"}


def test_auto_replies_do_not_trigger_rules(receive):
    rule("all", {}, {"add_tags": ["seen"]})
    conversation = receive(text="Out of office", open_new=False).message.conversation
    assert tags_of(conversation) == set()


def test_inactive_rules_are_skipped(receive):
    rule("off", {}, {"add_tags": ["off"]}, active=False)
    assert tags_of(receive().message.conversation) == set()


@pytest.mark.parametrize("conditions, actions, message", [
    ({"weather": "sunny"}, {"add_tags": ["x"]}, "Unknown condition 'weather'"),
    ({}, {}, "at least one action"),
    ({"channel": ["fax"]}, {"add_tags": ["x"]}, "'channel' must be"),
    ({"keywords": {"words": []}}, {"add_tags": ["x"]}, "'keywords' must be"),
    ({"loyalty_tier": ["diamond"]}, {"add_tags": ["x"]}, "'loyalty_tier' must be"),
    ({"business_hours": "maybe"}, {"add_tags": ["x"]}, "'business_hours' must be"),
    ({}, {"assign_user": "ghost"}, "no active user named 'ghost'"),
    ({}, {"assign_round_robin": "Nobody"}, "no group named 'Nobody'"),
    ({}, {"set_status": "deleted"}, "'set_status' must be"),
    ({}, {"add_tags": ["no spaces allowed"]}, "'add_tags' must be"),
    ("not an object", {"add_tags": ["x"]}, "JSON object"),
])
def test_invalid_rules_are_refused_at_save_time(db, conditions, actions, message):
    with pytest.raises(ValidationError) as info:
        RoutingRule(name="bad", conditions=conditions, actions=actions).full_clean()
    assert message in " ".join(info.value.messages)


def test_admin_ignores_raw_json_posted_beside_the_rule_form(manager_client):
    """The admin's form has choices (inbox/tests/test_routing_admin.py); JSON posted
    under the old field names is not on it, so it cannot slip an unchecked rule in."""
    response = manager_client.post("/admin/inbox/routingrule/add/", {
        "name": "bad", "order": 1, "active": "on", "trigger": "conversation_created",
        "conditions": '{"colour": "red"}', "actions": '{"add_tags": ["x"]}', "when_keywords_match": "any",
    })
    assert response.status_code == 200
    assert "Choose at least one thing to do" in response.content.decode()
    assert not RoutingRule.objects.exists()


def test_bulk_receiving_reads_the_rules_once_and_sees_changes_in_the_next_block(receive):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from inbox import services

    rule("tag all", {}, {"add_tags": ["seen"]}, trigger="every_message")
    with services.receiving_in_bulk(), CaptureQueriesContext(connection) as queries:
        first = receive(sender="a@example.com").message.conversation
        second = receive(sender="b@example.com").message.conversation
    assert sum('"inbox_routingrule"' in q["sql"] and q["sql"].startswith("SELECT") for q in queries) == 1
    assert tags_of(first) == tags_of(second) == {"seen"}
    rule("tag more", {}, {"add_tags": ["more"]}, order=1, trigger="every_message", continue_processing=True)
    with services.receiving_in_bulk():
        third = receive(sender="c@example.com").message.conversation
    assert tags_of(third) == {"seen", "more"}


def test_handed_off_condition_must_be_true_or_false(db):
    from django.core.exceptions import ValidationError

    from inbox.routing import validate_rule

    validate_rule({"handed_off": True}, {"set_status": "pending"})
    with pytest.raises(ValidationError) as refused:
        validate_rule({"handed_off": "yes"}, {"set_status": "pending"})
    assert "'handed_off' must be true or false." in refused.value.messages
