"""Real-time events: the only module that knows channel-layer group names.

A service calls ``record(...)`` inside its transaction. That stores a numbered
InboxEvent row (the id is the sequence number) and, once the transaction
commits, sends it to the channel-layer group. Browsers that notice a gap in
the numbers, or reconnect, read what they missed from the events API, so a
message dropped by a full channel-layer queue is never lost for good.

Bulk writers (the IMAP poller, the SMS syncs and store runs) wrap their
transactions in ``batched()``: the events committed inside it are published
together when it ends, in one channel-layer round instead of one per event,
up to EVENTS_PER_MESSAGE consecutive events to one group in one
``inbox.events`` message (consumers hand each on in order). Events are still sent only
after their commit, in order, and never when their transaction or savepoint
rolled back.
"""
import contextvars
import logging
from contextlib import contextmanager
from functools import partial

from channels.layers import get_channel_layer
from django.db import transaction

from myhibachi import layer_calls

from . import list_cache, sql
from .models import InboxEvent

logger = logging.getLogger(__name__)

STAFF_GROUP = "inbox.staff"

MESSAGE_CREATED = "message.created"
MESSAGE_UPDATED = "message.updated"
NOTE_CREATED = "note.created"
CONVERSATION_CREATED = "conversation.created"
CONVERSATION_UPDATED = "conversation.updated"
MENTION = "mention"

# This process's totals, readable by ops (/metrics) and tests: events handed to the
# channel layer, and events the layer refused (lost broadcasts, recovered by clients).
published = 0
publish_failures = 0

# Events sent to a group together in one channel-layer message ("inbox.events"), in order.
EVENTS_PER_MESSAGE = 50

# Inside batched(): committed (group, frame) pairs waiting to be published.
_pending = contextvars.ContextVar("inbox_events_pending", default=None)


def user_group(user_id: int) -> str:
    return f"inbox.user.{user_id}"


def presence_group(conversation_id: int) -> str:
    """The sockets watching one conversation (inbox/presence.py): who views it, who types."""
    return f"inbox.presence.{conversation_id}"


def as_message(event: InboxEvent) -> dict:
    return {
        "id": event.id,
        "type": event.type,
        "conversation": event.conversation_id,
        "at": event.created_at.isoformat(),
        "data": event.payload,
    }


def record(type: str, *, conversation=None, payload=None, recipient=None) -> InboxEvent:
    """Store an event now and broadcast it when the surrounding transaction commits."""
    return record_many([(type, conversation, payload)], recipient=recipient)[0]


def record_many(items, *, recipient=None) -> list[InboxEvent]:
    """Several events of one transaction in one INSERT: items are (type, conversation, payload).

    Numbered in the order given; each is broadcast when the transaction commits.
    """
    made = [InboxEvent(type=type, conversation=conversation, payload=payload or {}, recipient=recipient)
            for type, conversation, payload in items]
    sql.insert(made, ("type", "conversation", "recipient", "payload", "created_at"))
    group = user_group(recipient.pk) if recipient is not None else STAFF_GROUP
    if recipient is None:  # what every staff screen is told about can change a list row
        list_cache.changed()
    for event in made:
        # One hook per event: Django drops the hooks of a rolled-back savepoint, so
        # an event whose write was undone is never published.
        transaction.on_commit(partial(_committed, group, event))
    return made


def hint(type: str, payload: dict | None = None) -> None:
    """Tell every staff socket, once the surrounding transaction commits, that something
    outside the inbox changed (a booking, a payment). Not stored and not numbered, so never
    caught up: for pages that only reload figures when told (the analytics dashboard);
    the inbox pages pass unnumbered frames by. A rolled-back write sends nothing."""
    frame = {"type": type, "data": payload or {}}
    transaction.on_commit(lambda: _committed_frame(STAFF_GROUP, frame))


def _committed_frame(group: str, frame: dict) -> None:
    pending = _pending.get()
    if pending is not None:
        pending.append((group, frame))
    else:
        _publish([(group, frame)])


def _committed(group: str, event: InboxEvent) -> None:
    _committed_frame(group, as_message(event))


@contextmanager
def batched():
    """Publish the events committed inside this block together when it ends.

    Nested blocks join the outermost one. Events committed before an error in
    the block are still published when it ends.
    """
    if _pending.get() is not None:
        yield
        return
    pending = []
    token = _pending.set(pending)
    try:
        yield
    finally:
        _pending.reset(token)
        if pending:
            _publish(pending)


def _publish(items: list) -> None:
    """Send (group, frame) pairs in order, in one event-loop round. Never raises."""
    global published, publish_failures
    layer = get_channel_layer()
    if layer is None:
        return
    sent = []
    try:
        layer_calls.run(layer, _send_all, layer, items, sent)
    except Exception:
        # The write is committed; a lost broadcast is recovered by clients
        # through the events API. Log and count, never fail the write.
        logger.exception("could not publish events %s..%s", items[0][1].get("id"), items[-1][1].get("id"))
    published += len(sent)
    publish_failures += len(items) - len(sent)


async def _send_all(layer, items, sent: list) -> None:
    for group, frames in _chunks(items):
        message = ({"type": "inbox.event", "event": frames[0]} if len(frames) == 1 else
                   {"type": "inbox.events", "events": frames})
        try:
            await layer.group_send(group, message)
        except Exception:
            logger.exception("could not publish events %s..%s to %s", frames[0].get("id"), frames[-1].get("id"), group)
        else:
            sent += [frame.get("id") for frame in frames]


def _chunks(items):
    """(group, [frame, ...]) runs of consecutive frames to one group, at most EVENTS_PER_MESSAGE each.

    A batch store commits two events per message: one channel-layer message per
    event cost the storing worker about 0.2 ms of CPU each (a Redis script call),
    and a burst of them overflowed a node's staff channel (channels-redis keeps
    `capacity` messages per channel and drops the rest). Order is kept."""
    run_group, run = None, []
    for group, frame in items:
        if run and (group != run_group or len(run) == EVENTS_PER_MESSAGE):
            yield run_group, run
            run = []
        run_group = group
        run.append(frame)
    if run:
        yield run_group, run
