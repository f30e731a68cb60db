"""Merging one customer into another: the same person met twice (a chat visitor who
then gave a known email, two records staff found to be one family).

``merge_customers(source=..., into=...)`` moves every row that points at the
source customer (identities, bookings, leads, and whatever the apps above crm
keep per customer: conversations, messages, notes, chatbot sessions ...) to the
target, in one transaction, then deletes the emptied source. crm names none of
those apps' models: it follows Customer's reverse relations, so a table added
later is moved too, and the layering rule (crm imports nothing above it) holds.

The apps above crm take part through two signals sent inside the transaction:
``customer_merging`` before anything moves (the inbox decides which of two
active conversations stays active and writes the history of both threads) and
``customer_merged`` after (the inbox tells open browsers). Both get the same
``context`` dict, to carry what the first learned to the second. A receiver
that raises rolls the whole merge back.
"""
from django.core.exceptions import ValidationError
from django.db import transaction
from django.dispatch import Signal

from .models import Customer, CustomerIdentity

# Sent with sender=Customer, source=, into=, by= (a user or None), context= (a dict).
customer_merging = Signal()
customer_merged = Signal()


class MergeRefused(ValidationError):
    """The merge is not possible (into itself, a one-per-customer row on both sides)."""


def merge_customers(*, source: Customer, into: Customer, by=None) -> Customer:
    """Move everything of `source` to `into` and delete `source`; returns the refreshed `into`.

    Raises MergeRefused for a merge into itself; Customer.DoesNotExist when
    either was deleted meanwhile (e.g. merged away by someone else).
    """
    if source.pk == into.pk:
        raise MergeRefused("A customer cannot be merged into itself.", code="merge_into_self")
    with transaction.atomic():
        # Both rows locked in id order: a message being received for either waits,
        # then finds the identity (moved) on the target.
        rows = {c.pk: c for c in
                Customer.objects.select_for_update().filter(pk__in=[source.pk, into.pk]).order_by("pk")}
        if len(rows) != 2:
            raise Customer.DoesNotExist("One of these customers no longer exists (merged or deleted meanwhile).")
        source, into = rows[source.pk], rows[into.pk]
        context = {}
        customer_merging.send(sender=Customer, source=source, into=into, by=by, context=context)
        # The target keeps its primary identities; the source's become secondary where the target has one.
        primary_kinds = set(CustomerIdentity.objects.filter(customer=into, is_primary=True)
                            .values_list("kind", flat=True))
        CustomerIdentity.objects.filter(customer=source, kind__in=primary_kinds).update(is_primary=False)
        context["moved"] = _move_related(source, into)
        fields = [name for name in ("first_name", "last_name") if not getattr(into, name) and getattr(source, name)]
        for name in fields:
            setattr(into, name, getattr(source, name))
        if fields:
            into.save(update_fields=fields)
        source_id = source.pk
        source.delete()
        customer_merged.send(sender=Customer, source_id=source_id, into=into, by=by, context=context)
    return into


def _move_related(source: Customer, into: Customer) -> dict:
    """Point every row of every model that refers to `source` at `into`; {model label: rows moved}."""
    moved = {}
    # include_hidden: a ForeignKey with related_name="+" (e.g. a campaign's recipients) moves too.
    for relation in Customer._meta.get_fields(include_hidden=True):
        if not (relation.is_relation and relation.auto_created and not relation.concrete) or relation.many_to_many:
            continue
        model, field = relation.related_model, relation.field
        rows = model._default_manager.filter(**{field.name: source})
        if relation.one_to_one and rows.exists() and model._default_manager.filter(**{field.name: into}).exists():
            raise MergeRefused(f"Both customers have a {model._meta.verbose_name}; keep one before merging.",
                               code="merge_conflict")
        moved[model._meta.label_lower] = rows.update(**{field.name: into})
    return moved
