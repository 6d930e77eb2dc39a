"""Seven foreign keys lose the index of their own that Django gives every foreign key: an index beginning with the
same column serves every lookup by it (a request's rights, identifiers, audit events, emails sent, corrected values
and recipients' notices; a staff member's requests), so each was one more index for every filing, audit event or
email to write, and for the disk to hold.

The indexes are dropped CONCURRENTLY on PostgreSQL, outside a transaction, as 0061 built its own: Django's own
AlterField would also drop and add back each foreign key constraint, and checking it again reads the whole table
(the audit trail is the largest) while holding off writes to it.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

# (table, column, the index Django named for the foreign key)
INDEXES = [
    ("requests_app_auditevent", "request_id", "requests_app_auditevent_request_id_63e1223f"),
    ("requests_app_privacyrequest", "assignee_id", "requests_app_privacyrequest_assignee_id_dde59ce7"),
    ("requests_app_requestedright", "request_id", "requests_app_requestedright_request_id_762a9ead"),
    ("requests_app_subjectidentity", "request_id", "requests_app_subjectidentity_request_id_80296d74"),
    ("requests_app_sentnotification", "request_id", "requests_app_sentnotification_request_id_731e97b7"),
    ("requests_app_rectificationchange", "request_id", "requests_app_rectificationchange_request_id_de45a08e"),
    ("requests_app_recipientnotice", "request_id", "requests_app_recipientnotice_request_id_7fe1465e"),
]


def _concurrently(schema_editor) -> str:
    return "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""


def drop_indexes(apps, schema_editor):
    for _table, _column, index in INDEXES:
        schema_editor.execute(f"DROP INDEX {_concurrently(schema_editor)}IF EXISTS {index}")


def create_indexes(apps, schema_editor):
    for table, column, index in INDEXES:
        schema_editor.execute(f"CREATE INDEX {_concurrently(schema_editor)}IF NOT EXISTS {index} ON {table} ({column})")


class Migration(migrations.Migration):
    atomic = False  # DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("requests_app", "0062_translated_country_and_list_names"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(drop_indexes, create_indexes)],
            state_operations=[
                migrations.AlterField(
                    model_name="auditevent",
                    name="request",
                    field=models.ForeignKey(
                        blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT,
                        related_name="events", to="requests_app.privacyrequest",
                    ),
                ),
                migrations.AlterField(
                    model_name="privacyrequest",
                    name="assignee",
                    field=models.ForeignKey(
                        blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT,
                        related_name="assigned_requests", to=settings.AUTH_USER_MODEL,
                    ),
                ),
                migrations.AlterField(
                    model_name="requestedright",
                    name="request",
                    field=models.ForeignKey(
                        db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="rights",
                        to="requests_app.privacyrequest",
                    ),
                ),
                migrations.AlterField(
                    model_name="subjectidentity",
                    name="request",
                    field=models.ForeignKey(
                        db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="identities",
                        to="requests_app.privacyrequest",
                    ),
                ),
                migrations.AlterField(
                    model_name="sentnotification",
                    name="request",
                    field=models.ForeignKey(
                        db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="notifications",
                        to="requests_app.privacyrequest",
                    ),
                ),
                migrations.AlterField(
                    model_name="rectificationchange",
                    name="request",
                    field=models.ForeignKey(
                        db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="rectification_changes",
                        to="requests_app.privacyrequest",
                    ),
                ),
                migrations.AlterField(
                    model_name="recipientnotice",
                    name="request",
                    field=models.ForeignKey(
                        db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="recipient_notices",
                        to="requests_app.privacyrequest",
                    ),
                ),
            ],
        )
    ]
