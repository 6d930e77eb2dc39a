"""A trigram index on the folded name, so that staff's name search (a substring: LIKE '%…%', selectors._search) reads
the matching rows instead of every request: at 1,000,000 requests it read them all.

PostgreSQL only (pg_trgm ships with it, and is a trusted extension: the database's owner may create it). SQLite, on
which `make run` keeps a few demo requests, has no such index and needs none.
"""

from django.db import migrations

INDEX = "request_name_trgm_idx"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON requests_app_privacyrequest USING gin (name_for_search gin_trgm_ops)"
    )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")  # the extension may serve others: it stays


class Migration(migrations.Migration):
    dependencies = [
        ("requests_app", "0056_privacyrequest_pending_secret"),
    ]

    operations = [migrations.RunPython(create_index, drop_index)]
