"""Open CCPA requests to limit the use of sensitive personal information are due within 15 business days
(CCPA Regulations § 7027(g)(1)); those filed before that rule was in the code still carry the 45-day date they
were given at intake. Derive their dates again, as refresh_deadline does, from the same pure functions.

Historical models only, so the live services (which send webhooks and write the audit trail) are not called: a
portal polling with `updated_since` sees the new date, as `updated_at` moves with it.
"""

from django.conf import settings
from django.db import migrations
from django.utils import timezone

from requests_app import deadlines

CCPA_LIMIT_BIT = 1 << 7  # RequestType.LIMIT_USE's position in rights_mask when this migration was written
OPEN_STATUSES = ["awaiting_verification", "new", "identity_check", "in_progress", "awaiting_subject"]


def due_within_fifteen_business_days(apps, schema_editor):
    PrivacyRequest = apps.get_model("requests_app", "PrivacyRequest")
    today = timezone.localdate()
    for request in PrivacyRequest.objects.filter(regime="ccpa", status__in=OPEN_STATUSES).iterator():
        if not request.rights_mask & CCPA_LIMIT_BIT:
            continue
        rights = [deadlines.CCPA_LIMIT_RIGHT]  # the only right whose rule changed
        # No pauses: the CCPA's clock runs while we wait for the subject (deadlines.CLOCK_STOPS_WHILE_WAITING).
        due_on = deadlines.due_date("ccpa", request.received_at, rights=rights, extended=request.extended_at is not None)
        if due_on == request.due_on:
            continue
        original_due_on = deadlines.due_date("ccpa", request.received_at, rights=rights)
        next_alert_on, next_alert_key = (
            (None, "") if request.clock_paused
            else deadlines.alert_to_schedule(due_on, today, settings.DEADLINE_REMINDER_DAYS)
        )
        PrivacyRequest.objects.filter(pk=request.pk).update(
            due_on=due_on, original_due_on=original_due_on, next_alert_on=next_alert_on,
            next_alert_key=next_alert_key, updated_at=timezone.now(),
        )


class Migration(migrations.Migration):

    dependencies = [
        ("requests_app", "0066_fraudulent_limit_request_ground"),
    ]

    operations = [
        migrations.RunPython(due_within_fifteen_business_days, migrations.RunPython.noop),
    ]
