from django.db import migrations, models

from requests_app.models import name_search_key


def fill_names_for_search(apps, schema_editor):
    """Existing requests' names as the search compares them (PrivacyRequest.save does it for new ones)."""
    PrivacyRequest = apps.get_model("requests_app", "PrivacyRequest")
    named = PrivacyRequest.objects.exclude(subject_name="").only("id", "subject_name")
    batch = []
    for request in named.iterator(chunk_size=2000):
        request.name_for_search = name_search_key(request.subject_name)
        batch.append(request)
        if len(batch) == 2000:
            PrivacyRequest.objects.bulk_update(batch, ["name_for_search"])
            batch = []
    PrivacyRequest.objects.bulk_update(batch, ["name_for_search"])


class Migration(migrations.Migration):
    dependencies = [
        ("requests_app", "0039_rolling_holds_and_inventory_translations"),
    ]

    operations = [
        migrations.AddField(
            model_name="privacyrequest",
            name="name_for_search",
            field=models.TextField(blank=True, editable=False),
        ),
        migrations.RunPython(fill_names_for_search, migrations.RunPython.noop),
    ]
