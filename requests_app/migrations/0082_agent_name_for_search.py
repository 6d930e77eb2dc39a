import unicodedata

from django.db import migrations


def name_search_key(name: str) -> str:
    """requests_app.models.name_search_key as it was when this migration was written (a migration must not change
    with the code): case, accents, punctuation and spaces set aside."""
    without_accents = unicodedata.normalize("NFKD", name.casefold())
    return "".join(character for character in without_accents if character.isalnum())


def add_agents_names_for_search(apps, schema_editor):
    """The queue's search finds a request by the name of the agent who filed it too (PrivacyRequest.save does it for
    new ones): their name joins the subject's, one a line. Few rows: those an agent filed, not yet purged."""
    PrivacyRequest = apps.get_model("requests_app", "PrivacyRequest")
    filed_by_agents = PrivacyRequest.objects.exclude(agent_name="").only("id", "subject_name", "agent_name")
    batch = []
    for request in filed_by_agents.iterator(chunk_size=2000):
        request.name_for_search = "\n".join(
            name_search_key(name) for name in (request.subject_name, request.agent_name) if name
        )
        batch.append(request)
    PrivacyRequest.objects.bulk_update(batch, ["name_for_search"], batch_size=2000)


class Migration(migrations.Migration):
    dependencies = [
        ("requests_app", "0081_subject_confirmation_nonce"),
    ]

    operations = [
        migrations.RunPython(add_agents_names_for_search, migrations.RunPython.noop),
    ]
