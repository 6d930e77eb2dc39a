"""`request.created` is claimed per endpoint (services.webhooks.emit_created), not once per request: an endpoint
added after a request was announced never heard of it, and was sent its changes all the same.

Each claim made per request becomes one per endpoint the event went to (its deliveries say which), so those
endpoints are not told of the request again, and those it never went to are told before its next change.
Historical models only, and the claim's key spelled out here, as the services may change it.
"""

import uuid
from itertools import islice

from django.db import migrations
from django.db.models import Min

CREATED = "request.created"


def _batches(rows, size=1000):
    rows = iter(rows)
    while batch := list(islice(rows, size)):
        yield batch


def _public_id(value) -> str | None:
    try:
        return str(uuid.UUID(value))
    except (TypeError, ValueError, AttributeError):
        return None  # not a request's id: no request to claim for


def claim_per_endpoint(apps, schema_editor):
    PrivacyRequest = apps.get_model("requests_app", "PrivacyRequest")
    SentNotification = apps.get_model("requests_app", "SentNotification")
    WebhookDelivery = apps.get_model("requests_app", "WebhookDelivery")
    # One row per request and endpoint sent the event (a redelivery repeats one), with when it was first queued.
    sent = (
        WebhookDelivery.objects.filter(event=CREATED)
        .values("payload__request", "endpoint__public_id")
        .annotate(first_queued_at=Min("created_at"))
        .order_by()
    )
    for batch in _batches(sent.iterator()):
        for row in batch:
            row["request"] = _public_id(row["payload__request"])
        public_ids = {row["request"] for row in batch} - {None}
        request_ids = {
            str(public_id): pk for public_id, pk in PrivacyRequest.objects.filter(public_id__in=public_ids).values_list("public_id", "pk")
        }
        SentNotification.objects.bulk_create(
            [
                SentNotification(
                    request_id=request_ids[row["request"]],
                    kind="webhook",
                    key=f"{CREATED}:{row['endpoint__public_id']}",
                    sent_at=row["first_queued_at"],
                )
                for row in batch
                if row["request"] in request_ids  # a request since deleted needs no claim
            ],
            ignore_conflicts=True,
        )
    SentNotification.objects.filter(kind="webhook", key=CREATED).delete()


def claim_per_request(apps, schema_editor):
    SentNotification = apps.get_model("requests_app", "SentNotification")
    per_endpoint = SentNotification.objects.filter(kind="webhook", key__startswith=f"{CREATED}:")
    for batch in _batches(per_endpoint.values("request_id").annotate(first_sent_at=Min("sent_at")).order_by().iterator()):
        SentNotification.objects.bulk_create(
            [SentNotification(request_id=row["request_id"], kind="webhook", key=CREATED, sent_at=row["first_sent_at"]) for row in batch],
            ignore_conflicts=True,
        )
    per_endpoint.delete()


class Migration(migrations.Migration):

    dependencies = [
        ("requests_app", "0067_ccpa_limit_requests_due_in_fifteen_business_days"),
    ]

    operations = [
        migrations.RunPython(claim_per_endpoint, claim_per_request),
    ]
