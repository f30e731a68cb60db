"""The API's hand-written encoders: the documented shapes (serializers.py declares them for the
OpenAPI schema) written from plain rows, without DRF's field machinery, which was the largest
Python cost of the list and the thread. Tests hold every encoder equal to its serializer:
ConversationRow.as_api (inbox/rows.py) to ConversationRowSerializer, thread_item_data to
MessageSerializer / NoteSerializer, customer_data to CustomerSerializer.
"""
from inbox.rows import api_time, in_registry_order
from inbox.sanitize import clean_html


def identities_of(customer) -> list:
    """Primary first: the list loaded with list rows, else the (prefetched) relation."""
    found = getattr(customer, "identity_list", None)
    return found if found is not None else list(customer.identities.all())


def tag_names_of(conversation) -> list[str]:
    found = getattr(conversation, "tag_names", None)
    return found if found is not None else [tag.name for tag in conversation.tags.all()]


def channel_names_of(conversation) -> list[str]:
    """The channels the conversation has messages on, in the registry's order (as list rows carry them)."""
    found = getattr(conversation, "channel_names", None)
    if found is None:
        found = in_registry_order(conversation.messages.order_by().values_list("channel", flat=True).distinct())
    return found


def primary_identity(customer):
    identities = identities_of(customer)
    return identities[0].value if identities else None


def thread_item_data(item) -> dict:
    """ThreadItemSerializer's output for a selectors.ThreadItem, written directly.

    Plain dict building: running 50 items through MessageSerializer and
    NoteSerializer field by field was the largest Python cost of the thread API.
    """
    row = item.row
    author = row["author"]
    author = {"id": author["id"], "username": author["username"], "name": author["name"]} if author else None
    if item.kind == "note":
        body = {"id": row["id"], "conversation": row["conversation_id"], "body": row["body"], "author": author,
                "created_at": api_time(row["created_at"])}
    else:
        body = {"id": row["id"], "conversation": row["conversation_id"], "channel": row["channel"],
                "direction": row["direction"], "subject": row["subject"], "text": row["text"],
                "html": clean_html(row["html"]), "metadata": row["metadata"], "delivery_status": row["delivery_status"],
                "status_reason": row["status_reason"], "author": author,
                "created_at": api_time(row["created_at"])}
    return {"kind": item.kind, "internal": item.kind == "note", "item": body}


def customer_data(customer) -> dict:
    """CustomerSerializer's output, written directly (the thread API's customer):
    no ModelSerializer to build per request, identities as loaded (identities_of)."""
    return {"id": customer.pk, "name": customer.name, "first_name": customer.first_name,
            "last_name": customer.last_name, "preferred_channel": customer.preferred_channel,
            "identities": [{"kind": i.kind, "value": i.value, "is_primary": i.is_primary}
                           for i in identities_of(customer)],
            "created_at": api_time(customer.created_at)}
