import unicodedata

from django.db import migrations, models


def name_search_key(name: str) -> str:
    """requests_app.models.name_search_key as it was when this migration was written (a migration must not
    change with the code): case, accents, punctuation and spaces set aside."""
    without_accents = unicodedata.normalize("NFKD", name.casefold())
    return "".join(character for character in without_accents if character.isalnum())


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
