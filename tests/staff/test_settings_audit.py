"""Settings changes in the trail say what changed, before and after: who moved a legal hold's end, pointed a
rule elsewhere, or changed the address a staff invitation goes to must show."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from requests_app.models import AuditEvent, Organisation, ResponseTemplate, Status, Team
from requests_app.templatetags.staff_tags import event_data
from tests.conftest import login_staff
from tests.factories import request_in_status, staff_in_role


@pytest.fixture
def dpo_client(client, db):
    return login_staff(client, staff_in_role("DPO", username="dpo1"))


@pytest.mark.django_db
def test_a_staff_accounts_new_address_and_teams_are_in_the_trail(dpo_client):
    handler = staff_in_role("Handler", username="h1", email="h1@example.com")
    Team.objects.create(name="Erasure desk")
    desk = Team.objects.get(name="Erasure desk")

    dpo_client.post(reverse("staff:user_edit", args=[handler.pk]), {
        "username": "h1", "email": "other@example.net", "role": "Handler", "is_active": "on", "teams": [desk.pk],
    })

    data = AuditEvent.objects.get(action="staff_user_saved").data
    # That the address changed, not what it was or became: the trail is never purged.
    assert data["changes"] == {"email": ["…", "…"], "teams": [[], ["Erasure desk"]]}
    assert event_data(data).startswith("active: True · changes: email … → …; teams — → Erasure desk")


@pytest.mark.django_db
def test_a_staff_accounts_name_and_address_are_in_the_trail_as_changed_never_as_they_are(dpo_client):
    dpo_client.post(reverse("staff:user_new"), {
        "username": "marie", "email": "marie.dupont@private-mail.example", "first_name": "Marie", "last_name": "Dupont",
        "role": "Handler", "is_active": "on", "invitation_language": "en",
    })
    marie = AuditEvent.objects.get(action="staff_user_saved").data
    assert marie["user"] == "marie" and marie["role"] == "Handler"
    assert marie["changes"] == {"username": [None, "marie"], "email": [None, "…"], "first_name": [None, "…"], "last_name": [None, "…"]}

    account = get_user_model().objects.get(username="marie")
    dpo_client.post(reverse("staff:user_edit", args=[account.pk]), {
        "username": "marie", "email": "marie.dupont@private-mail.example", "first_name": "Marie", "last_name": "",
        "role": "Handler", "is_active": "on",
    })
    cleared = AuditEvent.objects.filter(action="staff_user_saved").latest("sequence").data["changes"]
    assert cleared == {"last_name": ["…", ""]}
    assert "Dupont" not in str(list(AuditEvent.objects.values_list("data", flat=True)))


@pytest.mark.django_db
def test_switching_off_someone_with_open_requests_says_so(dpo_client):
    handler = staff_in_role("Handler", username="h1", email="h1@example.com")
    for _ in range(2):
        request = request_in_status(Status.IN_PROGRESS)
        type(request).objects.filter(pk=request.pk).update(assignee=handler)

    response = dpo_client.post(
        reverse("staff:user_edit", args=[handler.pk]), {"username": "h1", "email": "h1@example.com", "role": "Handler"}, follow=True,
    )

    assert "h1 is switched off but still has 2 open requests: assign them to someone else." in response.content.decode()


@pytest.mark.django_db
def test_a_settings_page_records_each_changed_field(dpo_client):
    template = ResponseTemplate.objects.create(purpose="completion", language="en", subject="Done", body="{{ body }}")

    dpo_client.post(reverse("staff:template_edit", args=[template.pk]), {
        "purpose": "completion", "request_type": "", "language": "en", "subject": "Your request is done", "body": "{{ body }}",
    })

    event = AuditEvent.objects.get(action="response_template_saved")
    assert event.data["changes"] == {"subject": ["Done", "Your request is done"]}  # the body did not change


@pytest.mark.django_db
def test_the_admin_records_each_changed_field(dpo_client):
    """Giving an organisation the controller's own systems lets its keys read everyone who objected."""
    operator = Organisation.objects.create(name="OwnSys")

    dpo_client.post(reverse("admin:requests_app_organisation_change", args=[operator.pk]), {"name": "OwnSys", "own_systems": "on"})

    operator.refresh_from_db()
    assert operator.own_systems
    assert AuditEvent.objects.get(action="organisation_saved").data["changes"] == {"own_systems": [False, True]}


@pytest.mark.django_db
def test_a_save_on_top_of_someone_elses_is_refused_until_made_again(dpo_client):
    """Two tabs on one template: the second save, made on the page loaded before the first, silently undid it."""
    import html
    import re

    template = ResponseTemplate.objects.create(purpose="completion", language="en", subject="Done", body="{{ body }}")
    url = reverse("staff:template_edit", args=[template.pk])
    loaded = html.unescape(re.search(r'name="loaded" value="([^"]*)"', dpo_client.get(url).content.decode()).group(1))
    fields = {"purpose": "completion", "request_type": "", "language": "en", "subject": "Done", "body": "{{ body }}"}
    # The other tab saves first.
    assert dpo_client.post(url, {**fields, "subject": "Your request is done", "loaded": loaded}).status_code == 302

    refused = dpo_client.post(url, {**fields, "body": "Thank you.\n\n{{ body }}", "loaded": loaded})

    page = html.unescape(refused.content.decode())
    assert refused.status_code == 200 and "Someone saved this since you opened it, and changed: Subject line." in page
    template.refresh_from_db()
    assert (template.subject, template.body) == ("Your request is done", "{{ body }}")
    loaded_now = re.search(r'name="loaded" value="([^"]*)"', page).group(1)
    assert dpo_client.post(url, {**fields, "body": "Thank you.\n\n{{ body }}", "loaded": loaded_now}).status_code == 302
    template.refresh_from_db()
    assert template.body == "Thank you.\n\n{{ body }}"


@pytest.mark.django_db
def test_a_promotion_records_the_role_and_teams_it_replaced(dpo_client):
    """The form gives the role and teams their first values on its fields, not in its initial data."""
    handler = staff_in_role("Handler", username="h1", email="h1@example.com")
    desk_a, desk_b = Team.objects.create(name="Desk A"), Team.objects.create(name="Desk B")
    handler.privacy_teams.set([desk_a])

    dpo_client.post(reverse("staff:user_edit", args=[handler.pk]), {
        "username": "h1", "email": "h1@example.com", "role": "DPO", "is_active": "on", "teams": [desk_b.pk],
    })

    changes = AuditEvent.objects.get(action="staff_user_saved").data["changes"]
    assert changes == {"role": ["Handler", "DPO"], "teams": [["Desk A"], ["Desk B"]]}


@pytest.mark.django_db
def test_the_trail_keeps_a_urls_parameters_without_their_values(dpo_client):
    """A URL holding a secret is refused when saved, by the names it knows; what a name it does not know carries
    must not reach the trail, which is never purged."""
    from requests_app.models import ConnectorKind, SourceSystem

    source = SourceSystem.objects.create(slug="crm", name="CRM", connector=ConnectorKind.MANUAL, identity_kind="email")
    fields = {"source": source.pk, "name": "Partner", "country": "Belgium"}
    dpo_client.post(reverse("staff:recipient_new"), {**fields, "notification_webhook_url": "https://partner.example/notices?region=eu&x=1"})

    changes = AuditEvent.objects.get(action="recipient_saved").data["changes"]
    assert changes["notification_webhook_url"] == [None, "https://partner.example/notices?region=…&x=…"]
