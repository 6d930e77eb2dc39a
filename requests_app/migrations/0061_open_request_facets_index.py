"""An index on the open requests that holds every column the queue's filter counts read (selectors.queue_facets),
so that PostgreSQL counts them from the index alone (an index-only scan) instead of visiting each open request's
table row: at 1,000,000 requests (100,000 open) reading the rows took about half of the counting.

An index-only scan skips the table only for rows on pages that VACUUM has marked all-visible; for any other row it
reads the table, one row at a time, which is slower than the scan it replaces. By default autovacuum waits for a
fifth of the table to change (200,000 rows at 1,000,000 requests), and long before that most open requests' pages
have changed: they are the rows staff work on. Measured at 1,000,000 requests: the count took 60 ms just after a
vacuum, 85 ms after 1,000 open requests changed (the table read for 21,000 index entries), 120 ms after 5,000
(for 88,000), against 105 ms without this index. So this table is vacuumed after every 1,000 changed or new rows
instead; each run reads only the pages changed since the last, and the indexes only when enough rows died.

PostgreSQL only: SQLite, on which `make run` keeps a few demo requests, needs none. Built CONCURRENTLY, outside a
transaction, as 0057's index, so that the deploy does not hold off new requests while it reads the whole table; a
failed concurrent build leaves an invalid index behind, which this drops and builds again.
"""

from django.db import migrations

INDEX = "request_open_facets_idx"
# lifecycle.OPEN_STATUSES: the queue's default scope, and the open part of every scope that includes them.
OPEN_STATUSES = ("awaiting_verification", "new", "identity_check", "in_progress", "awaiting_subject")
# selectors.FACET_COLUMNS and what _due_bucket, _assignee_bucket and the filters' conditions read.
COLUMNS = ("rights_mask", "regime", "channel", "assignee_id", "organisation_id", "clock_paused", "due_on")
AUTOVACUUM = {
    "autovacuum_vacuum_scale_factor": 0,
    "autovacuum_vacuum_threshold": 1000,
    "autovacuum_vacuum_insert_scale_factor": 0,
    "autovacuum_vacuum_insert_threshold": 1000,
}


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT indisvalid FROM pg_index JOIN pg_class ON pg_class.oid = indexrelid WHERE relname = %s", [INDEX])
        found = cursor.fetchone()
    if found and not found[0]:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY {INDEX}")
    statuses = ", ".join(f"'{status}'" for status in OPEN_STATUSES)
    schema_editor.execute(
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON requests_app_privacyrequest (status) "
        f"INCLUDE ({', '.join(COLUMNS)}) WHERE status IN ({statuses})"
    )
    settings = ", ".join(f"{name} = {value}" for name, value in AUTOVACUUM.items())
    schema_editor.execute(f"ALTER TABLE requests_app_privacyrequest SET ({settings})")  # reads and writes go on


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"ALTER TABLE requests_app_privacyrequest RESET ({', '.join(AUTOVACUUM)})")
    schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("requests_app", "0060_restriction_sources"),
    ]

    operations = [migrations.RunPython(create_index, drop_index)]
