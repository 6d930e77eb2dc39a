"""Each delivery names the request its event is about, in a column of its own with an index: the moment of a request's
latest event to an endpoint (services.webhooks._event_moment, read under the request's lock at every event) was found
by reading the JSON payload of every delivery to the endpoint since the request was created.

The deliveries already logged get it from their payload, before the index is built.
"""

import uuid

from django.db import migrations, models


def name_the_request(apps, schema_editor):
    WebhookDelivery = apps.get_model("requests_app", "WebhookDelivery")
    batch = []
    for delivery in WebhookDelivery.objects.only("id", "payload").iterator(chunk_size=2000):
        public_id = (delivery.payload or {}).get("request")
        if public_id:
            delivery.request_public_id = uuid.UUID(public_id)
            batch.append(delivery)
    WebhookDelivery.objects.bulk_update(batch, ["request_public_id"], batch_size=2000)


class Migration(migrations.Migration):

    dependencies = [
        ('requests_app', '0089_rejection_ground_unfounded_or_excessive'),
    ]

    operations = [
        migrations.AddField(
            model_name='webhookdelivery',
            name='request_public_id',
            field=models.UUIDField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(name_the_request, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name='webhookdelivery',
            index=models.Index(fields=['endpoint', 'request_public_id', 'occurred_at'], name='webhook_request_events_idx'),
        ),
    ]
