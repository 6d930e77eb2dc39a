from django.db import migrations


def lower_case_email_identities(apps, schema_editor):
    """Identifiers are searched for as normalised_identifier spells them: an email address in lower case. One
    already there in lower case for the same request stays, and its other spelling goes."""
    SubjectIdentity = apps.get_model("requests_app", "SubjectIdentity")
    for identity in SubjectIdentity.objects.filter(kind="email").iterator():
        lower = identity.value.strip().lower()
        if lower == identity.value:
            continue
        twin = SubjectIdentity.objects.filter(request_id=identity.request_id, kind="email", value=lower).first()
        if twin is None:
            identity.value = lower
            identity.save(update_fields=["value"])
        else:
            if identity.verified_at and not twin.verified_at:
                twin.verified_at, twin.verification_method = identity.verified_at, identity.verification_method
                twin.verified_by_id = identity.verified_by_id
                twin.save(update_fields=["verified_at", "verification_method", "verified_by"])
            identity.delete()


class Migration(migrations.Migration):
    dependencies = [("requests_app", "0042_translation_translated_from")]

    operations = [migrations.RunPython(lower_case_email_identities, migrations.RunPython.noop)]
