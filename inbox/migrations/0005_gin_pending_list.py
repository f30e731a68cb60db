"""Bound the GIN pending list of the search indexes.

With fastupdate (PostgreSQL's default) new rows wait in a pending list that
every search scans linearly until autovacuum merges it; at the default 4 MB
limit that cost ~20 ms per search at a million messages. 256 kB keeps the
cheap inserts and bounds the scan to ~1 ms.
"""
from django.db import migrations

from myhibachi.migration_ops import postgres_only

INDEXES = ("inbox_message_search_vector_gin", "inbox_note_search_vector_gin")


class Migration(migrations.Migration):
    dependencies = [("inbox", "0004_json_encoders")]

    operations = [
        postgres_only(
            "".join(f"ALTER INDEX {name} SET (gin_pending_list_limit = 256);" for name in INDEXES),
            "".join(f"ALTER INDEX {name} RESET (gin_pending_list_limit);" for name in INDEXES),
        ),
    ]
