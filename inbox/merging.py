"""The inbox's part in a customer merge (crm/merge.py), inside the merge's transaction.

One active conversation per customer stays the rule after a merge. When both
customers have an active (open or pending) conversation, the one with the
latest activity stays active; the other is resolved by the merge, with a
status-change history row, and its unread mark moves to the one that stays,
so nothing waiting for an answer drops out of sight. Its messages stay where
they are: the thread shows every conversation of the customer, and a
customer writing again joins the active one. Every conversation of both
customers gets a "merged" history row (from and to customer ids), so both
threads say what happened and when.
"""
from django.utils import timezone

from . import events, history
from .models import Conversation
from .payloads import conversation_summary
from .selectors import status_counts_changed

Status = Conversation.Status
ACTIVE = (Status.OPEN, Status.PENDING)


def on_customer_merging(sender, *, source, into, by=None, context, **kwargs):
    now = timezone.now()
    conversations = list(Conversation.objects.select_for_update()
                         .filter(customer_id__in=[source.pk, into.pk]).order_by("pk"))
    rows = []
    active = [c for c in conversations if c.status in ACTIVE]
    if len(active) > 1:
        keep = max(active, key=lambda c: (c.last_activity_at, c.pk))
        unread = False
        for conversation in active:
            if conversation is keep:
                continue
            rows.append(history.activity(history.Kind.STATUS_CHANGED, conversation, at=now, actor=by,
                                         from_value=conversation.status, to_value=Status.RESOLVED))
            unread = unread or conversation.is_unread
            conversation.status, conversation.resolved_at, conversation.is_unread = Status.RESOLVED, now, False
            conversation.save(update_fields=["status", "resolved_at", "is_unread"])
        if unread and not keep.is_unread:
            keep.is_unread = True
            keep.save(update_fields=["is_unread"])
        status_counts_changed()
    rows += [history.activity(history.Kind.MERGED, conversation, at=now, actor=by, from_value=str(source.pk),
                              to_value=str(into.pk)) for conversation in conversations]
    history.record_many(rows)  # writes nothing for no rows
    context["conversations"] = [c.pk for c in conversations]


def on_customer_merged(sender, *, into, by=None, context, **kwargs):
    """Tell open inbox screens: every conversation of the merged customer changed (its customer, maybe status)."""
    changed = Conversation.objects.filter(pk__in=context.get("conversations", [])).select_related("assignee")
    items = [(events.CONVERSATION_UPDATED, conversation, conversation_summary(conversation, by=by))
             for conversation in changed]
    if items:
        events.record_many(items)


def connect():
    from crm.merge import customer_merged, customer_merging

    customer_merging.connect(on_customer_merging, dispatch_uid="inbox.merging.merging")
    customer_merged.connect(on_customer_merged, dispatch_uid="inbox.merging.merged")
