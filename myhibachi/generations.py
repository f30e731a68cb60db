"""A cache generation: a random token that every relevant write replaces.

What is cached is stored beside the generation read *before* its rows were
read, and served only while the generation is unchanged. A write replaces it
twice: at once, so the writing request (and a test's, which never commits)
reads its own change; and after the commit, so an entry another request read
before the commit (the old rows, stored under the token of the moment) is
never served again. An entry can therefore be older than its token only if a
write committed after its read, and every such write replaces the token after
its commit.

The token is random, not counted up: a token lost with a flushed or evicted
key cannot come back and match an entry stored long ago. Without a reachable
cache every read goes to the database, and entries also carry a short time
limit, which bounds what a write that bypasses signals (a raw UPDATE) can leave.

Used by the API's inbox list pages (inbox/list_cache.py) and the API token
lookup (myhibachi/auth.py).
"""
import uuid

from django.core.cache import cache
from django.db import transaction


class Generation:
    def __init__(self, key: str):
        self.key = key

    def current(self, found: dict) -> str:
        """The generation from a get_many answer that asked for self.key (a new one if it was missing)."""
        generation = found.get(self.key)
        return generation if generation is not None else self.replace()

    def replace(self) -> str:
        generation = uuid.uuid4().hex
        cache.set(self.key, generation, timeout=None)
        return generation

    def changed(self) -> None:
        """What the entries were read from changed: none stored before is served again, now or after commit."""
        self.replace()
        transaction.on_commit(self.replace)

    @staticmethod
    def valid(stored, generation):
        """The stored entry's value if it was stored under this generation, else None."""
        return stored["value"] if stored and stored["generation"] == generation else None

    @staticmethod
    def entry(generation, value) -> dict:
        return {"generation": generation, "value": value}
