"""Rows of the inbox list, read lean.

The inbox list is the most requested read in the product: every screen
refresh, every live update and every integration poll asks for a page of 25
rows. Loading those as model instances (select_related through customer,
assignee and last message) and serialising them with DRF's nested
serializers cost several times the SQL itself (see bench/bench_inbox.py).
So rows are read here with `values_list` — one query for the page, one for
the customers' identities, one for the tags — into small slotted objects
that templates read like models, and `as_api()` gives the API's shape.

`ConversationRowSerializer` stays the documented shape (OpenAPI);
tests/test_rows.py holds `as_api()` equal to it for every kind of row.
"""
import functools
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.contrib.auth import get_user_model
from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from crm.models import Customer, CustomerIdentity

from . import channels as channel_registry, dates, text as text_rules
from .models import Conversation, Message, Tag
from .sql import table

STATUS_LABELS = dict(Conversation.Status.choices)

# The page query's columns, in the order _build reads them.
COLUMNS = (
    "id", "status", "subject", "last_activity_at", "is_unread", "created_at", "first_response_at", "resolved_at",
    "customer_id", "customer__first_name", "customer__last_name",
    "assignee_id", "assignee__username", "assignee__first_name", "assignee__last_name",
    "last_message_id", "last_message__channel", "last_message__direction", "last_message__text",
    "last_message__subject", "last_message__created_at", "last_message__delivery_status",
    "last_message__status_reason",
)


@dataclass(slots=True)
class Identity:
    kind: str
    value: str


@dataclass(slots=True)
class RowCustomer:
    id: int
    name: str
    identity_list: list  # of Identity, primary first

    @property
    def pk(self):
        return self.id

    @property
    def contacts(self) -> str:
        """The first email and the first phone, as the row shows them."""
        found = {}
        for item in self.identity_list:
            found.setdefault(item.kind, item.value)
        return " · ".join(found[k] for k in ("email", "phone") if k in found)


@dataclass(slots=True)
class RowUser:
    id: int
    username: str
    name: str

    @property
    def pk(self):
        return self.id


@dataclass(slots=True)
class RowMessage:
    id: int
    channel: str
    direction: str
    text: str
    subject: str
    created_at: object
    delivery_status: str = ""
    status_reason: str = ""

    @property
    def failed(self) -> bool:
        return self.direction == "outbound" and self.delivery_status == "failed"

    @property
    def preview(self) -> str:
        return text_rules.preview(self.text, self.subject)


@dataclass(slots=True)
class ConversationRow:
    id: int
    status: str
    subject: str
    customer: RowCustomer
    assignee: RowUser | None
    last_message: RowMessage | None
    last_activity_at: object
    is_unread: bool
    tags: list
    created_at: object
    first_response_at: object
    resolved_at: object
    # Every channel the conversation has a message on, in the registry's order: what the
    # channel filter matches ("on a channel" = any message on it; docs/architecture.md).
    channels: list = None
    # Set by selectors.page_of_search: why the row matched (search.Hit), shown as its preview.
    hit: object = None

    @property
    def pk(self):
        return self.id

    @property
    def customer_id(self):
        return self.customer.id

    @property
    def assignee_id(self):
        return self.assignee.id if self.assignee else None

    def get_status_display(self):
        return STATUS_LABELS.get(self.status, self.status)

    # For the row template: the same text {% url %} and |date would give, made
    # in Python because the template engine spent more on them than on the
    # rest of the row (bench/bench_screens.py).
    @property
    def url(self) -> str:
        return reverse("inbox:thread", args=[self.id])

    @property
    def activity_iso(self) -> str:
        """last_activity_at in the current time zone, ISO 8601 (as |date:"c")."""
        return timezone.localtime(self.last_activity_at).isoformat()

    @property
    def activity_long(self) -> str:
        """last_activity_at as "Jan 5, 2026, 3:07 PM PST" (as |date:"M j, Y, g:i A T")."""
        return dates.long_time(timezone.localtime(self.last_activity_at))

    def as_api(self) -> dict:
        """The row in the API's shape (ConversationRowSerializer), times already
        written as the serializer writes them."""
        customer, assignee, message = self.customer, self.assignee, self.last_message
        zone = timezone.get_current_timezone()  # once per row, not once per time (a context-local read)
        return {
            "id": self.id,
            "status": self.status,
            "subject": self.subject,
            "customer": {"id": customer.id, "name": customer.name,
                         "identity": customer.identity_list[0].value if customer.identity_list else None},
            "assignee": None if assignee is None else {"id": assignee.id, "username": assignee.username,
                                                       "name": assignee.name},
            "last_message": None if message is None else {
                "id": message.id, "channel": message.channel, "direction": message.direction,
                "preview": message.preview, "created_at": api_time(message.created_at, zone)},
            "last_activity_at": api_time(self.last_activity_at, zone),
            "is_unread": self.is_unread,
            "tags": self.tags,
            "channels": self.channels,
            "created_at": api_time(self.created_at, zone),
            "first_response_at": api_time(self.first_response_at, zone),
            "resolved_at": api_time(self.resolved_at, zone),
        }


def api_time(moment, zone=None) -> str | None:
    """What DRF's DateTimeField writes: ISO 8601 in the current time zone (or zone), UTC as "Z"."""
    if moment is None:
        return None
    text = timezone.localtime(moment, zone).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def full_name(first, last, fallback):
    """The name Customer.name and User.get_full_name() give, else fallback (as get_username())."""
    return f"{first} {last}".strip() or fallback


def in_registry_order(names) -> list:
    """Channel names sorted as the registry lists them (a removed channel last, by name)."""
    order = {name: at for at, (name, _) in enumerate(channel_registry.choices())}
    return sorted(set(names), key=lambda name: (order.get(name, len(order)), name))


def _build(values, identities, tags, channels) -> ConversationRow:
    (pk, status, subject, activity, unread, created, first_response, resolved,
     customer_id, first, last,
     assignee_id, username, a_first, a_last,
     message_id, channel, direction, text, m_subject, m_created, m_status, m_reason) = values
    return ConversationRow(
        id=pk, status=status, subject=subject,
        customer=RowCustomer(customer_id, full_name(first, last, "Unknown customer"), identities[customer_id]),
        assignee=None if assignee_id is None else RowUser(assignee_id, username, full_name(a_first, a_last, username)),
        last_message=None if message_id is None else RowMessage(message_id, channel, direction, text, m_subject,
                                                                 m_created, m_status, m_reason),
        last_activity_at=activity, is_unread=unread, tags=tags[pk], created_at=created,
        first_response_at=first_response, resolved_at=resolved, channels=channels[pk],
    )


def load(qs, *, order=None) -> list[ConversationRow]:
    """The rows of a Conversation queryset (sliced or filtered by the caller).

    order: conversation ids giving the order of the result (search ranking);
    without it the queryset's own order is kept.
    """
    read = _read_postgresql if connection.vendor == "postgresql" else _read_portable
    values, identities, tags, channels = read(qs)
    rows = [_build(v, identities, tags, channels) for v in values]
    if order is not None:
        by_id = {row.id: row for row in rows}
        rows = [by_id[pk] for pk in order if pk in by_id]
    return rows


def _read_postgresql(qs):
    """One statement: the page's ids as the ORM selects them (filters, order,
    cursor) feed a fixed statement that reads each row with its identities
    and tags as arrays, in the ids' order. Letting the ORM compile the whole
    row query (three joins, two array subqueries) cost ~4 ms of CPU per page,
    more than PostgreSQL spends running it."""
    try:
        ids_sql, params = qs.values_list("id", flat=True).query.sql_with_params()
    except EmptyResultSet:  # e.g. pk__in=[]: the ORM knows there is nothing to ask for
        return [], {}, {}, {}
    with connection.cursor() as cursor:
        cursor.execute(_rows_sql() % {"ids": ids_sql}, params)
        found = [_with_times(v) for v in cursor.fetchall()]
    identities = {v[8]: [Identity(*pair.split(":", 1)) for pair in v[-3]] for v in found}  # kinds hold no ":"
    tags = {v[0]: v[-2] for v in found}
    channels = {v[0]: in_registry_order(v[-1]) for v in found}
    return [v[:-3] for v in found], identities, tags, channels


# Positions of the five times in a row. They are read as integer microseconds
# since the epoch: Django's time-zone-aware timestamp loader parses each of
# ~125 timestamps per page in Python, which cost more than the rest of the row.
_TIMES = (3, 5, 6, 7, 20)
_EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)


def _with_times(values: tuple) -> tuple:
    values = list(values)
    for at in _TIMES:
        if values[at] is not None:
            values[at] = _EPOCH + timedelta(microseconds=values[at])
    return tuple(values)


@functools.cache
def _rows_sql() -> str:
    """COLUMNS, then the identity pairs ("kind:value", primary first), the
    tag names and the conversation's channels — what _read_portable reads in
    four queries — for the ids the %(ids)s statement returns, in its order.
    The channels come from the (conversation, channel) index alone."""
    def us(column):  # microseconds since the epoch, an exact integer (see _TIMES)
        return f"(EXTRACT(EPOCH FROM {column}) * 1000000)::bigint"

    User = get_user_model()
    return f"""
SELECT c.id, c.status, c.subject, {us("c.last_activity_at")}, c.is_unread, {us("c.created_at")},
       {us("c.first_response_at")}, {us("c.resolved_at")},
       c.customer_id, cu.first_name, cu.last_name,
       c.assignee_id, u.username, u.first_name, u.last_name,
       c.last_message_id, m.channel, m.direction, m.text, m.subject, {us("m.created_at")},
       m.delivery_status, m.status_reason,
       ARRAY(SELECT i.kind || ':' || i.value FROM {table(CustomerIdentity)} AS i
             WHERE i.customer_id = c.customer_id ORDER BY i.is_primary DESC, i.kind, i.id),
       ARRAY(SELECT t.name FROM {table(Conversation.tags.through)} AS ct JOIN {table(Tag)} AS t ON t.id = ct.tag_id
             WHERE ct.conversation_id = c.id ORDER BY t.name),
       ARRAY(SELECT DISTINCT mc.channel FROM {table(Message)} AS mc WHERE mc.conversation_id = c.id)
FROM unnest(ARRAY(%(ids)s)) WITH ORDINALITY AS page (id, position)
JOIN {table(Conversation)} AS c ON c.id = page.id
JOIN {table(Customer)} AS cu ON cu.id = c.customer_id
LEFT JOIN {table(User)} AS u ON u.id = c.assignee_id
LEFT JOIN {table(Message)} AS m ON m.id = c.last_message_id
ORDER BY page.position"""


def _read_portable(qs):
    """Four statements: the rows, then their customers' identities, their tags and their channels."""
    values = list(qs.values_list(*COLUMNS))
    identities, tags, channels = defaultdict(list), defaultdict(list), defaultdict(list)
    if not values:
        return values, identities, tags, channels
    for customer_id, kind, value in (CustomerIdentity.objects.filter(customer_id__in={v[8] for v in values})
                                     .order_by("-is_primary", "kind", "id")
                                     .values_list("customer_id", "kind", "value")):
        identities[customer_id].append(Identity(kind, value))
    for conversation_id, name in (Conversation.tags.through.objects
                                  .filter(conversation_id__in=[v[0] for v in values])
                                  .order_by("tag__name").values_list("conversation_id", "tag__name")):
        tags[conversation_id].append(name)
    found = defaultdict(list)
    for conversation_id, channel in (Message.objects.filter(conversation_id__in=[v[0] for v in values])
                                     .order_by().values_list("conversation_id", "channel").distinct()):
        found[conversation_id].append(channel)
    for conversation_id, names in found.items():
        channels[conversation_id] = in_registry_order(names)
    return values, identities, tags, channels
