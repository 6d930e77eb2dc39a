"""A deadline alert records which of its emails went out, so that a try after the failure of one sends only the
others; its re-dispatch reads when it was last queued or tried (queued_at), as the other owed emails' sweep does.

The alerts claimed before have no queued_at: their claim time stands in for it, or they would never be
re-dispatched.
"""

from django.db import migrations, models
from django.db.models import F


def queued_when_claimed(apps, schema_editor):
    SentNotification = apps.get_model("requests_app", "SentNotification")
    SentNotification.objects.filter(kind="deadline_alert", sent_at__isnull=True, queued_at__isnull=True).update(
        queued_at=F("created_at")
    )


class Migration(migrations.Migration):

    dependencies = [
        ('requests_app', '0063_drop_indexes_a_composite_one_covers'),
    ]

    operations = [
        migrations.AddField(
            model_name='sentnotification',
            name='recipients_done',
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.RunPython(queued_when_claimed, migrations.RunPython.noop),
    ]
