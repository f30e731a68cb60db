"""Bound the GIN pending list of the customer search index (see inbox 0005)."""
from django.db import migrations

from myhibachi.migration_ops import postgres_only


class Migration(migrations.Migration):
    dependencies = [("crm", "0002_customer_search")]

    operations = [
        postgres_only(
            "ALTER INDEX crm_customer_search_vector_gin SET (gin_pending_list_limit = 256);",
            "ALTER INDEX crm_customer_search_vector_gin RESET (gin_pending_list_limit);",
        ),
    ]
