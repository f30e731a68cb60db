"""Smart routing: ordered rules, each a set of conditions and actions.

A rule is two JSON objects, checked by ``validate_rule`` when it is saved:

conditions (all given conditions must hold; an empty object always matches)
    channel              list of channels, e.g. ["sms", "chat"]
    keywords             {"words": ["price", "quote"], "match": "any" | "all"}
                         whole words, case-insensitive, in the message text/subject
    loyalty_tier         list of tiers, e.g. ["gold", "platinum"]
    business_hours       "inside" | "outside"  (settings.BUSINESS_HOURS, business time zone)
    has_upcoming_booking true | false
    handed_off           true | false  (the message is a chatbot transcript that handed the visitor over)

actions
    assign_user          a username
    assign_round_robin   a group name: the next active member in turn
    set_status           "open" | "pending" | "resolved" | "closed"
    add_tags             list of tag names

Rules run in ``order``; the first matching rule wins unless it has
``continue_processing`` set, in which case later rules are evaluated too.
"""
import contextvars
import re
from contextlib import contextmanager
from datetime import datetime, time
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.utils import timezone

from crm.models import Booking, Channel, loyalty_tier, loyalty_tier_names

from . import changes
from .models import Conversation, RoutingRule, Tag

CONDITION_KEYS = {"channel", "keywords", "loyalty_tier", "business_hours", "has_upcoming_booking", "handed_off"}
ACTION_KEYS = {"assign_user", "assign_round_robin", "set_status", "add_tags"}
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def validate_rule(conditions, actions) -> None:
    """Raise ValidationError with every problem found in a rule definition."""
    errors = []
    if not isinstance(conditions, dict):
        raise ValidationError({"conditions": "Conditions must be a JSON object."})
    if not isinstance(actions, dict) or not actions:
        raise ValidationError({"actions": "Actions must be a JSON object with at least one action."})
    for key in sorted(set(conditions) - CONDITION_KEYS):
        errors.append(f"Unknown condition '{key}'. Known: {', '.join(sorted(CONDITION_KEYS))}.")
    for key in sorted(set(actions) - ACTION_KEYS):
        errors.append(f"Unknown action '{key}'. Known: {', '.join(sorted(ACTION_KEYS))}.")

    if "channel" in conditions:
        value = conditions["channel"]
        if not isinstance(value, list) or not value or any(v not in Channel.values for v in value):
            errors.append(f"'channel' must be a non-empty list of: {', '.join(Channel.values)}.")
    if "keywords" in conditions:
        value = conditions["keywords"]
        words = value.get("words") if isinstance(value, dict) else None
        if (
            not isinstance(words, list)
            or not words
            or any(not isinstance(w, str) or not w.strip() for w in words)
            or value.get("match", "any") not in ("any", "all")
        ):
            errors.append("'keywords' must be {\"words\": [non-empty words], \"match\": \"any\" or \"all\"}.")
    if "loyalty_tier" in conditions:
        value = conditions["loyalty_tier"]
        tiers = loyalty_tier_names()
        if not isinstance(value, list) or not value or any(v not in tiers for v in value):
            errors.append(f"'loyalty_tier' must be a non-empty list of: {', '.join(tiers)}.")
    if "business_hours" in conditions and conditions["business_hours"] not in ("inside", "outside"):
        errors.append("'business_hours' must be \"inside\" or \"outside\".")
    if "has_upcoming_booking" in conditions and not isinstance(conditions["has_upcoming_booking"], bool):
        errors.append("'has_upcoming_booking' must be true or false.")
    if "handed_off" in conditions and not isinstance(conditions["handed_off"], bool):
        errors.append("'handed_off' must be true or false.")

    if "assign_user" in actions:
        username = actions["assign_user"]
        if not isinstance(username, str) or not get_user_model().objects.filter(
            username=username, is_active=True
        ).exists():
            errors.append(f"'assign_user': no active user named {username!r}.")
    if "assign_round_robin" in actions:
        name = actions["assign_round_robin"]
        if not isinstance(name, str) or not Group.objects.filter(name=name).exists():
            errors.append(f"'assign_round_robin': no group named {name!r}.")
    if "assign_user" in actions and "assign_round_robin" in actions:
        errors.append("Use either 'assign_user' or 'assign_round_robin', not both.")
    if "set_status" in actions:
        if actions["set_status"] not in Conversation.Status.values:
            errors.append(f"'set_status' must be one of: {', '.join(Conversation.Status.values)}.")
    if "add_tags" in actions:
        tags = actions["add_tags"]
        if not isinstance(tags, list) or not tags or any(
            not isinstance(t, str) or not re.fullmatch(r"[-a-zA-Z0-9_]{1,50}", t) for t in tags
        ):
            errors.append("'add_tags' must be a non-empty list of tag names (letters, digits, - and _).")
    if errors:
        raise ValidationError(errors)


def business_intervals(local_date) -> list:
    """The opening intervals [(open, close) as datetime.time] of a date in the business time zone.

    settings.BUSINESS_HOURS maps "mon".."sun" to one ("09:00", "21:00") pair or
    a list of pairs (a lunch break); a missing day and a date listed in
    settings.BUSINESS_HOLIDAYS are closed.
    """
    if local_date.isoformat() in settings.BUSINESS_HOLIDAYS:
        return []
    hours = settings.BUSINESS_HOURS.get(DAYS[local_date.weekday()]) or []
    if hours and isinstance(hours[0], str):
        hours = [hours]
    return [(time.fromisoformat(start), time.fromisoformat(end)) for start, end in hours]


def within_business_hours(moment: datetime) -> bool:
    local = timezone.localtime(moment, ZoneInfo(settings.BUSINESS_TIME_ZONE))
    return any(start <= local.time() < end for start, end in business_intervals(local.date()))


def has_words(text: str, words, match: str) -> bool:
    """The keywords condition: whole words, case-insensitive, any or all of them."""
    found = [re.search(r"(?<!\w)" + re.escape(w.strip()) + r"(?!\w)", text, re.IGNORECASE) for w in words]
    return all(found) if match == "all" else any(found)


class _Facts:
    """What conditions look at, computed lazily so a rule set asks only what it needs."""

    def __init__(self, conversation, message):
        self.conversation = conversation
        self.message = message
        self._tier = None
        self._upcoming = None

    @property
    def tier(self):
        if self._tier is None:
            customer = self.conversation.customer
            # A customer that receive_many has planned but not inserted yet has no bookings.
            self._tier = customer.loyalty_tier if customer.pk is not None else loyalty_tier(0)
        return self._tier

    @property
    def has_upcoming_booking(self):
        if self._upcoming is None:
            self._upcoming = Booking.objects.filter(
                customer_id=self.conversation.customer_id,
                event_at__gte=timezone.now(),
                status__in=[Booking.Status.INQUIRY, Booking.Status.QUOTED, Booking.Status.CONFIRMED],
            ).exists()
        return self._upcoming


def matches(conditions: dict, facts: _Facts) -> bool:
    message = facts.message
    if "channel" in conditions and message.channel not in conditions["channel"]:
        return False
    if "keywords" in conditions:
        spec = conditions["keywords"]
        text = f"{message.subject}\n{message.text}"
        if not has_words(text, spec["words"], spec.get("match", "any")):
            return False
    if "business_hours" in conditions:
        inside = within_business_hours(message.created_at)
        if inside != (conditions["business_hours"] == "inside"):
            return False
    if "loyalty_tier" in conditions and facts.tier not in conditions["loyalty_tier"]:
        return False
    if "has_upcoming_booking" in conditions and facts.has_upcoming_booking != conditions["has_upcoming_booking"]:
        return False
    if "handed_off" in conditions and handed_off(message) != conditions["handed_off"]:
        return False
    return True


def handed_off(message) -> bool:
    """A chatbot transcript whose bot handed the visitor over to staff (channels_ingest/chat/chatbot.py)."""
    return bool((message.metadata or {}).get("handed_off"))


def _next_in_turn(rule, group_name):
    """The next active member of the group after the rule's cursor, wrapping around."""
    members = list(
        get_user_model()
        .objects.filter(groups__name=group_name, is_active=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if not members:
        return None
    cursor = rule.round_robin_cursor or 0
    chosen = next((pk for pk in members if pk > cursor), members[0])
    rule.round_robin_cursor = chosen
    rule.save(update_fields=["round_robin_cursor"])
    return get_user_model().objects.get(pk=chosen)


# Inside rules_snapshot(): the active rules, read once for the whole block.
_snapshot = contextvars.ContextVar("routing_rules_snapshot", default=None)


@contextmanager
def rules_snapshot():
    """Read the active rules once for every message handled inside this block.

    For bulk ingest (one IMAP commit group): a rule saved meanwhile applies from
    the next block on. Nested blocks share the outermost snapshot.
    """
    if _snapshot.get() is not None:
        yield
        return
    token = _snapshot.set({})
    try:
        yield
    finally:
        _snapshot.reset(token)


def active_rules(triggers) -> list:
    """Active rules with one of these triggers, in order."""
    snapshot = _snapshot.get()
    if snapshot is None:
        return list(RoutingRule.objects.filter(active=True, trigger__in=triggers).order_by("order", "id"))
    if "rules" not in snapshot:
        snapshot["rules"] = list(RoutingRule.objects.filter(active=True).order_by("order", "id"))
    return [rule for rule in snapshot["rules"] if rule.trigger in triggers]


def _triggers(created: bool) -> list:
    triggers = [RoutingRule.Trigger.EVERY_MESSAGE]
    if created:
        triggers.append(RoutingRule.Trigger.CONVERSATION_CREATED)
    return triggers


def would_act(*, conversation, message, created: bool) -> bool:
    """Whether apply_rules would match a rule for this message. Only reads (the message may be unsaved)."""
    rules = active_rules(_triggers(created))
    if not rules:
        return False
    facts = _Facts(conversation, message)
    return any(matches(rule.conditions, facts) for rule in rules)


def apply_rules(*, conversation, message, created: bool) -> list:
    """Run the active rules for this event; return the names of the rules that matched.

    Runs inside the caller's transaction; rules are row-locked so two workers
    taking turns in a round-robin never pick the same member.
    """
    rules = active_rules(_triggers(created))
    facts = _Facts(conversation, message)
    matched = []
    for rule in rules:
        if not matches(rule.conditions, facts):
            continue
        matched.append(rule.name)
        actions = rule.actions
        assignee = None
        if "assign_user" in actions:
            assignee = get_user_model().objects.filter(username=actions["assign_user"], is_active=True).first()
        elif "assign_round_robin" in actions:
            locked = RoutingRule.objects.select_for_update().get(pk=rule.pk)
            assignee = _next_in_turn(locked, actions["assign_round_robin"])
        if assignee is not None:
            changes.assign(conversation=conversation, assignee=assignee, by=None)
        if "add_tags" in actions:
            for name in actions["add_tags"]:
                tag, _ = Tag.objects.get_or_create(name=name.lower())
                conversation.tags.add(tag)
        if "set_status" in actions:
            # Rules only see open or pending conversations, from which every status is reachable.
            changes.set_status(conversation=conversation, status=actions["set_status"], by=None)
        if not rule.continue_processing:
            break
    return matched
