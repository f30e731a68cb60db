"""The API's inbox list, kept in the cache between changes.

Fifty staff browsers and integrations polling /api/v1/inbox ask for the same
few pages far more often than the inbox changes. A page is stored with the
generation it was read under, and served again only while the generation is
unchanged; every write that can change a list row replaces the generation:

- every numbered event of the staff group (inbox/events.py): new messages,
  status, assignment, tags, reads, merges, delivery status — what the live
  screens are told about;
- saves and deletes of the rows a list row is read from that happen outside
  those services (the admin, crm's customer edits, a user's name):
  Conversation, Message, Customer, CustomerIdentity, Tag, the user model,
  and a conversation's tags.

How the generation keeps pages honest (replaced at once and after the commit,
random rather than counted) is myhibachi/generations.py. Writes that bypass
both (a raw UPDATE, a bulk update in a shell) are caught by the time limit: a
page is never served more than PAGE_SECONDS after it was read. Without a
reachable cache (Redis down) every request reads afresh; a write made while
Redis could not be told is likewise covered by the time limit.

Keys name the user, so a page that depends on who asks ("assignee=me") is
never served to someone else.
"""
import hashlib

from django.core.cache import cache

from myhibachi.generations import Generation

GENERATION = Generation("inbox:list-generation")
PAGE_SECONDS = 10
# In the keys: a node of the next release, storing pages another way, never reads this one's
# (both run side by side during a rolling restart).
FORMAT = 3  # 3: the page as the JSON bytes DRF's JSONRenderer writes, in a Generation.entry


def page_key(user_id: int, params) -> str:
    """The cache key of one user's list page for these query parameters (order-insensitive)."""
    pairs = sorted((name, value) for name, values in params.lists() for value in values)
    digest = hashlib.blake2b(repr(pairs).encode(), digest_size=16).hexdigest()
    return f"inbox:list:{FORMAT}:{user_id}:{digest}"


def lookup(key: str, *extra_keys):
    """(page or None, generation to store a fresh page under, {extra key: value}) in one round trip."""
    found = cache.get_many([GENERATION.key, key, *extra_keys])
    generation = GENERATION.current(found)
    return Generation.valid(found.get(key), generation), generation, {k: found.get(k) for k in extra_keys}


def store(key: str, generation: str, page) -> None:
    cache.set(key, Generation.entry(generation, page), timeout=PAGE_SECONDS)


def changed() -> None:
    """Something a list row shows changed: no stored page is served again (now and after commit)."""
    GENERATION.changed()


def _on_write(sender, **kwargs):
    changed()


def _on_tags(sender, action, **kwargs):
    if action in ("post_add", "post_remove", "post_clear"):
        changed()


def connect() -> None:
    from django.contrib.auth import get_user_model
    from django.db.models.signals import m2m_changed, post_delete, post_save

    from crm.models import Customer, CustomerIdentity

    from .models import Conversation, Message, Tag

    for model in (Conversation, Message, Customer, CustomerIdentity, Tag, get_user_model()):
        uid = f"inbox.list_cache.{model._meta.label_lower}"
        post_save.connect(_on_write, sender=model, dispatch_uid=uid + ".save")
        post_delete.connect(_on_write, sender=model, dispatch_uid=uid + ".delete")
    m2m_changed.connect(_on_tags, sender=Conversation.tags.through, dispatch_uid="inbox.list_cache.tags")
