from django.db import migrations, models


def count_earlier_questions_to_agents(apps, schema_editor):
    """Before staff could say that a request for information asks the agent for proof of their authority, any of them
    let staff reject an agent's request for the lack of it, and the request page told them to ask for the proof that
    way. The questions already sent to agents on open requests keep counting: staff cannot say now what they asked
    then, and an agent who was asked and gave nothing must not get a second round for it. Few rows: the information
    requests (audit events `information_requested`) on requests an agent filed and still open."""
    AuditEvent = apps.get_model("requests_app", "AuditEvent")
    Message = apps.get_model("requests_app", "Message")
    closed = ["completed", "rejected", "withdrawn", "expired", "forwarded"]
    asked = (
        AuditEvent.objects.filter(action="information_requested", request__agent_capacity__gt="")
        .exclude(request__status__in=closed)
        .values_list("data__message", flat=True)
    )
    Message.objects.filter(public_id__in=[public_id for public_id in asked if public_id]).update(asks_agent_authority=True)


class Migration(migrations.Migration):
    dependencies = [
        ("requests_app", "0083_portability_transmission"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="asks_agent_authority",
            field=models.BooleanField(db_default=False, default=False, editable=False),
        ),
        migrations.RunPython(count_earlier_questions_to_agents, migrations.RunPython.noop),
    ]
