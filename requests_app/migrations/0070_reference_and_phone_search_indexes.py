"""Indexes for staff's search by part of a reference and by phone (selectors._search), so that each reads the
matching rows instead of every request, as 0057's index does for names:

- a trigram index on the reference without its hyphens: "00123" or "2026 00123" is looked for as a substring
  (LIKE '%…%' on REPLACE(reference, '-', ''));
- a B-tree index on the phone number. Digits may be either ("2026 00123" looks like a phone number too), so both
  are looked for at once: PostgreSQL combines two indexes for an OR (a BitmapOr), but with one side unindexed it read
  every request, 1,000,000 in benchmarks/dashboard.py.

The table is then analysed: PostgreSQL keeps statistics on an index's expression (the reference without its hyphens)
only from the next ANALYZE, and until then guessed that "82534" matched 1,600 of 1,000,000 requests (20 did), so it
walked the whole due-date index instead (a second, against 5 ms). Autovacuum would analyse it only after a tenth of
the table changed.

PostgreSQL only, as 0057 (whose migration created the pg_trgm extension); SQLite, on which `make run` keeps a few
demo requests, needs neither. Built CONCURRENTLY, outside a transaction, so that the deploy does not hold off new
requests while it reads the whole table; a failed concurrent build leaves an invalid index behind, which this drops
and builds again.
"""

from django.db import migrations

INDEXES = {
    # The expression must be the search's own, as Django writes it, for the planner to match it.
    "request_reference_trgm_idx": "USING gin ((REPLACE(reference, '-', '')) gin_trgm_ops)",
    "request_phone_idx": "(subject_phone)",
}


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, definition in INDEXES.items():
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("SELECT indisvalid FROM pg_index JOIN pg_class ON pg_class.oid = indexrelid WHERE relname = %s", [name])
            found = cursor.fetchone()
        if found and not found[0]:
            schema_editor.execute(f"DROP INDEX CONCURRENTLY {name}")
        schema_editor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON requests_app_privacyrequest {definition}")
    schema_editor.execute("ANALYZE requests_app_privacyrequest")  # reads a sample; reads and writes go on


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("requests_app", "0069_pseudonym_holds"),
    ]

    operations = [migrations.RunPython(create_indexes, drop_indexes)]
