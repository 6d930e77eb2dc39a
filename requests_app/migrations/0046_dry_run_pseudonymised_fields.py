from django.db import migrations


def record_pseudonymised_fields(apps, schema_editor):
    """Erasure dry runs now keep the fields their plan replaces with a keyed hash, for the letter. The
    ones made before read them from the inventory as it is now, as the letter did until then."""
    SourceAction = apps.get_model("requests_app", "SourceAction")
    SourceField = apps.get_model("requests_app", "SourceField")
    hashed: dict[int, dict[str, list[str]]] = {}
    for field in SourceField.objects.filter(erase_strategy="hash", category__erase_method="anonymise").select_related("category").order_by("name"):
        hashed.setdefault(field.category.source_id, {}).setdefault(field.category.slug, []).append(field.name)
    for action in SourceAction.objects.filter(kind="erase").exclude(dry_run={}).iterator():
        if "plan" in action.dry_run and "pseudonymised" not in action.dry_run:
            action.dry_run = {**action.dry_run, "pseudonymised": hashed.get(action.source_id, {})}
            action.save(update_fields=["dry_run"])


class Migration(migrations.Migration):
    dependencies = [("requests_app", "0045_source_name_translation")]

    operations = [migrations.RunPython(record_pseudonymised_fields, migrations.RunPython.noop)]
