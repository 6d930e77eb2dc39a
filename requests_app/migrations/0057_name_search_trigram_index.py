"""A trigram index on the folded name, so that staff's name search (a substring: LIKE '%…%', selectors._search) reads
the matching rows instead of every request: at 1,000,000 requests it read them all.

PostgreSQL only (pg_trgm ships with it, and is a trusted extension: the database's owner may create it). SQLite, on
which `make run` keeps a few demo requests, has no such index and needs none.

Built CONCURRENTLY, outside a transaction: a plain build would hold off every new request and every change to one
while it reads the whole table. A concurrent build that failed leaves an invalid index behind, which this drops
and builds again.
"""

from django.db import migrations

INDEX = "request_name_trgm_idx"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT indisvalid FROM pg_index JOIN pg_class ON pg_class.oid = indexrelid WHERE relname = %s", [INDEX])
        found = cursor.fetchone()
    if found and not found[0]:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY {INDEX}")
    schema_editor.execute(
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON requests_app_privacyrequest USING gin (name_for_search gin_trgm_ops)"
    )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")  # the extension may serve others: it stays


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("requests_app", "0056_privacyrequest_pending_secret"),
    ]

    operations = [migrations.RunPython(create_index, drop_index)]
