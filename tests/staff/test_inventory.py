import datetime
import html

import pytest
from django.urls import reverse
from django.utils import timezone

from requests_app.models import (
    AuditEvent,
    ConnectorKind,
    ExportPackage,
    ManualTask,
    Recipient,
    ResponseTemplate,
    SourceCategory,
    SourceSystem,
    Team,
    TemplatePurpose,
)
from requests_app.services import handling
from requests_app.staff import forms
from tests.conftest import login_staff
from tests.factories import request_in_status, staff_in_role

SOURCE = {
    "name": "Billing", "slug": "billing", "active": "on", "connector": "sql", "identity_kind": "phone",
    "connection_env": "SOURCE_BILLING_DB_URL", "purposes": "Billing calls", "legal_basis": "contract",
    "retention": "7 years", "origin": "Our network", "http_auth_header": "Authorization",
}


@pytest.fixture
def dpo_client(client, db):
    return login_staff(client, staff_in_role("DPO", username="dpo1"))


@pytest.mark.django_db
def test_the_dpo_records_a_source_its_category_and_recipient(dpo_client):
    assert dpo_client.post(reverse("staff:source_new"), SOURCE).status_code == 302
    source = SourceSystem.objects.get(slug="billing")
    response = dpo_client.post(reverse("staff:category_new"), {
        "source": source.pk, "slug": "invoices", "category": "contact",
        "query": "SELECT * FROM invoices WHERE msisdn IN :identities", "masked_fields": "", "portable": "on",
    })
    assert response.status_code == 302
    dpo_client.post(reverse("staff:recipient_new"), {
        "source": source.pk, "name": "Payment processor", "country": "United States", "third_country": "on",
        "safeguards": "EU standard contractual clauses",
    })
    assert SourceCategory.objects.get(source=source).slug == "invoices"
    assert Recipient.objects.get(source=source).third_country
    page = dpo_client.get(reverse("staff:inventory")).content.decode()
    assert "Billing" in page and "invoices" in page and "Payment processor" in page
    assert AuditEvent.objects.filter(action="source_system_saved").exists()


@pytest.mark.parametrize(
    ("url_name", "data", "field", "message"),
    [
        ("staff:source_new", {**SOURCE, "connection_env": ""}, "connection_url", "needs a database URL"),
        ("staff:source_new", {**SOURCE, "connection_url": "postgresql://app:s3cret@db/billing"}, "connection_url", "environment variable"),
        ("staff:source_new", {**SOURCE, "connection_url": "postgresql://app@db/billing?password=s3cret"}, "connection_url", "environment variable"),
        ("staff:source_new", {**SOURCE, "connector": "http", "connection_url": "https://crm.example/api?token=abc"}, "connection_url", "environment variable"),
        ("staff:source_new", {**SOURCE, "connector": "http", "connection_url": "https://ghp_S3cr3t@crm.example/api"}, "connection_url", "environment variable"),
        ("staff:source_new", {**SOURCE, "connection_url": "postgresql://app@db/billing?sslpassword=s3cret"}, "connection_url", "environment variable"),
        (
            "staff:source_new",
            {**SOURCE, "connection_url": "mssql+pyodbc:///?odbc_connect=DRIVER%3D%7BODBC+Driver+18%7D%3BSERVER%3Ddb%3BUID%3Dapp%3BPWD%3Ds3cret"},
            "connection_url", "environment variable",
        ),
        ("staff:source_new", {**SOURCE, "connector": "http", "connection_url": "ftp://crm.example/api"}, "connection_url", "starts with https://"),
        ("staff:source_new", {**SOURCE, "connector": "http", "connection_url": "crm.example/api"}, "connection_url", "starts with https://"),
        ("staff:source_new", {**SOURCE, "connector": "manual", "connection_env": ""}, "owner", "uploads its extracts"),
    ],
)
@pytest.mark.django_db
def test_bad_sources_are_refused_with_a_clear_error(dpo_client, url_name, data, field, message):
    response = dpo_client.post(reverse(url_name), data)
    assert response.status_code == 200
    assert any(message in error for error in response.context["form"].errors[field])
    assert not SourceSystem.objects.exists()


@pytest.mark.django_db
def test_the_admin_refuses_a_password_in_a_sources_url_as_the_dashboard_does(dpo_client):
    response = dpo_client.post(
        reverse("admin:requests_app_sourcesystem_add"),
        {
            **SOURCE, "connection_url": "postgresql://app:s3cret@db/billing", "connection_env": "SECRET_KEY",
            **{f"{prefix}-{field}": value for prefix in ("categories", "recipients", "holds")
               for field, value in (("TOTAL_FORMS", 0), ("INITIAL_FORMS", 0))},
        },
    )
    assert response.status_code == 200
    errors = str(response.context["adminform"].form.errors)
    assert "Put passwords in the environment variable" in errors and "SOURCE_" in errors
    assert not SourceSystem.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("url", [
    "https://partner:s3cret@partner.example/notices",
    "https://ghp_S3cr3t@partner.example/notices",  # a token as the user name, no password
    "https://partner.example/notices?api_key=abc",
    "https://partner.example/notices?auth_token=abc",
    "https://partner.example/notices?client_secret=abc",
    "https://partner.example/notices?sv=2024&sig=abc",  # a shared-access signature
    "https://partner.example/notices?X-Amz-Signature=abc",
    "https://partner.example/notices?authorization=Bearer%20abc",
    "https://partner.example/notices#access_token=abc",
])
def test_a_password_or_token_in_a_recipients_webhook_address_is_refused(dpo_client, url):
    """The address would show to staff and stay in the audit trail; the notices are signed with a secret of their own."""
    source = SourceSystem.objects.create(slug="crm", name="CRM", connector=ConnectorKind.MANUAL, identity_kind="email")
    response = dpo_client.post(reverse("staff:recipient_new"), {
        "source": source.pk, "name": "Partner", "country": "Belgium", "notification_webhook_url": url,
    })
    assert response.status_code == 200
    assert "Leave passwords and tokens out of the address" in str(response.context["form"].errors["notification_webhook_url"])
    assert not Recipient.objects.exists()


@pytest.mark.django_db
def test_the_admin_refuses_a_password_in_a_recipients_webhook_address_as_the_dashboard_does(dpo_client):
    inlines = {
        f"{prefix}-{field}": value for prefix in ("categories", "recipients", "holds")
        for field, value in (("TOTAL_FORMS", 1 if prefix == "recipients" else 0), ("INITIAL_FORMS", 0))
    }
    recipient = {"recipients-0-name": "Partner", "recipients-0-country": "Belgium",
                 "recipients-0-notification_webhook_url": "https://partner:s3cret@partner.example/notices"}
    response = dpo_client.post(reverse("admin:requests_app_sourcesystem_add"), {**SOURCE, **inlines, **recipient})
    assert response.status_code == 200
    assert "Leave passwords and tokens out of the address" in str(response.context["inline_admin_formsets"][1].formset.errors)
    assert not SourceSystem.objects.exists() and not Recipient.objects.exists()


@pytest.mark.django_db
def test_a_category_query_must_select_by_identities_and_third_countries_need_safeguards(dpo_client):
    source = SourceSystem.objects.create(
        slug="crm", name="CRM", connector=ConnectorKind.SQL, connection_url="sqlite:///x.db", identity_kind="email",
        purposes="p", legal_basis="contract", retention="r", origin="o",
    )
    response = dpo_client.post(reverse("staff:category_new"), {
        "source": source.pk, "slug": "all", "category": "contact", "query": "SELECT * FROM customers",
    })
    assert ":identities" in str(response.context["form"].errors["query"])
    response = dpo_client.post(reverse("staff:recipient_new"), {
        "source": source.pk, "name": "Cloud", "country": "India", "third_country": "on", "safeguards": "",
    })
    assert "transfer safeguard" in str(response.context["form"].errors["safeguards"])
    assert not SourceCategory.objects.exists() and not Recipient.objects.exists()


@pytest.mark.django_db
def test_handlers_cannot_edit_the_inventory(client):
    login_staff(client, staff_in_role("Handler", username="h1"))
    assert client.get(reverse("staff:inventory")).status_code == 403
    assert client.post(reverse("staff:source_new"), SOURCE).status_code == 403
    assert not SourceSystem.objects.exists()


@pytest.mark.django_db
def test_a_manual_source_owner_sees_their_waiting_extract_on_the_home_page(client):
    owner = staff_in_role("Handler", username="owner")
    source = SourceSystem.objects.create(
        slug="paper", name="Paper archive", connector=ConnectorKind.MANUAL, identity_kind="email",
        purposes="p", legal_basis="contract", retention="r", origin="o", owner=owner,
    )
    request = request_in_status("in_progress")
    export = ExportPackage.objects.create(request=request, status="waiting_manual")
    ManualTask.objects.create(export=export, source=source, assignee=owner)
    login_staff(client, owner)
    page = client.get(reverse("staff:home")).content.decode()
    assert "Extracts waiting for you" in page and "Paper archive" in page and request.reference in page


@pytest.mark.django_db
def test_a_team_requests_were_given_to_is_kept_with_a_message_not_a_500(dpo_client):
    team = Team.objects.create(name="Wholesale desk")
    request = request_in_status("in_progress")
    request.__class__.objects.filter(pk=request.pk).update(team=team)

    response = dpo_client.post(reverse("staff:team_edit", args=[team.pk]), {"delete": "1"}, follow=True)
    assert response.status_code == 200
    assert "This cannot be deleted: requests or actions on them refer to it." in response.content.decode()
    assert Team.objects.filter(pk=team.pk).exists()
    assert not AuditEvent.objects.filter(action="team_deleted").exists()


def test_every_configuration_form_labels_its_fields_in_the_readers_language():
    """The models' field names are English: a form showing one would be English on a French page."""
    from django import forms as django_forms
    from django.utils.functional import Promise

    model_forms = [cls for cls in vars(forms).values() if isinstance(cls, type) and issubclass(cls, django_forms.ModelForm)]
    assert len(model_forms) >= 9
    untranslated = [f"{cls.__name__}.{name}" for cls in model_forms for name, field in cls.base_fields.items() if not isinstance(field.label, Promise)]
    assert untranslated == []


@pytest.mark.django_db
def test_the_dpo_edits_a_category_and_a_recipient_each_change_audited(dpo_client):
    dpo_client.post(reverse("staff:source_new"), SOURCE)
    source = SourceSystem.objects.get(slug="billing")
    category = SourceCategory.objects.create(
        source=source, slug="invoices", category="contact", query="SELECT * FROM invoices WHERE msisdn IN :identities"
    )
    recipient = Recipient.objects.create(source=source, name="Payment processor", country="Belgium")

    edit_category = reverse("staff:category_edit", args=[category.pk])
    assert 'value="invoices"' in dpo_client.get(edit_category).content.decode()  # the form shows what is saved
    response = dpo_client.post(edit_category, {
        "source": source.pk, "slug": "invoices", "category": "contact", "masked_fields": "other_party",
        "query": "SELECT * FROM invoices WHERE msisdn IN :identities",
    })
    assert response.status_code == 302
    response = dpo_client.post(reverse("staff:recipient_edit", args=[recipient.pk]), {
        "source": source.pk, "name": "Payment processor", "country": "United States", "third_country": "on",
        "safeguards": "EU standard contractual clauses",
    })
    assert response.status_code == 302

    category.refresh_from_db()
    recipient.refresh_from_db()
    assert category.masked_fields == "other_party"
    assert (recipient.country, recipient.third_country) == ("United States", True)
    saved = list(AuditEvent.objects.filter(action__in=["source_category_saved", "recipient_saved"]).values_list("action", flat=True))
    assert saved == ["source_category_saved", "recipient_saved"]


@pytest.mark.django_db
def test_editing_a_recipient_keeps_the_secret_issued_while_the_form_was_being_saved(dpo_client, monkeypatch):
    """The signing secret is issued by its own page: an edit saved after it must not write back the old one."""
    source = SourceSystem.objects.create(
        slug="billing", name="Billing", connector=ConnectorKind.MANUAL, identity_kind="email",
        purposes="p", legal_basis="contract", retention="r", origin="o",
    )
    recipient = Recipient.objects.create(source=source, name="Payment processor", country="Belgium")
    old_secret = recipient.webhook_secret
    validate = forms.RecipientForm.clean

    def clean_while_a_new_secret_is_issued(form):
        # By now the view holds the recipient with its old secret.
        assert form.instance.webhook_secret == old_secret
        Recipient.objects.filter(pk=recipient.pk).update(webhook_secret="issued-meanwhile")
        return validate(form)

    monkeypatch.setattr(forms.RecipientForm, "clean", clean_while_a_new_secret_is_issued)
    response = dpo_client.post(reverse("staff:recipient_edit", args=[recipient.pk]), {
        "source": source.pk, "name": "Payment processor", "country": "Netherlands", "safeguards": "",
    })

    assert response.status_code == 302
    recipient.refresh_from_db()
    assert (recipient.country, recipient.webhook_secret) == ("Netherlands", "issued-meanwhile")


@pytest.mark.django_db
def test_editing_a_team_saves_its_name_and_replaces_its_members(dpo_client):
    leaving, joining = staff_in_role("Handler", username="leaving"), staff_in_role("Handler", username="joining")
    team = Team.objects.create(name="Wholesale desk")
    team.members.add(leaving)

    response = dpo_client.post(reverse("staff:team_edit", args=[team.pk]), {"name": "Retail desk", "members": [joining.pk]})

    assert response.status_code == 302
    team.refresh_from_db()
    assert team.name == "Retail desk" and list(team.members.all()) == [joining]


@pytest.mark.django_db
def test_editing_a_response_template_still_stamps_when_it_was_changed(dpo_client):
    template = ResponseTemplate.objects.create(purpose="completion", language="en", subject="Done", body="{{ body }}")
    long_ago = timezone.now() - datetime.timedelta(days=30)
    ResponseTemplate.objects.filter(pk=template.pk).update(updated_at=long_ago)

    response = dpo_client.post(reverse("staff:template_edit", args=[template.pk]), {
        "purpose": "completion", "request_type": "", "language": "en", "subject": "All done", "body": "{{ body }}",
    })

    assert response.status_code == 302
    template.refresh_from_db()
    assert template.subject == "All done" and template.updated_at > long_ago


@pytest.mark.django_db
def test_a_template_that_would_fail_in_every_letter_is_refused_on_its_field(dpo_client):
    """It parses, so it used to be saved; then every letter of its purpose and language was a 500."""
    response = dpo_client.post(reverse("staff:template_new"), {
        "purpose": "completion", "request_type": "", "language": "en", "subject": "Done",
        "body": "{% load log %}{% get_admin_log 50 as L %}{{ body }}",
    })

    assert response.status_code == 200 and not ResponseTemplate.objects.exists()
    assert "Invalid block tag on line 1: &#x27;load&#x27;" in str(response.context["form"].errors["body"])


@pytest.mark.django_db
def test_a_template_with_a_literal_comment_opening_is_refused_saying_how_to_write_it(dpo_client):
    """Django reads "{#" as a comment's start: refused, since an unclosed comment's note would reach the subject,
    but the refusal gives what to type instead, and the letter then reads as the DPO meant."""
    template = {"purpose": "message", "request_type": "", "language": "en", "subject": "Ticket {#123}", "body": "{{ body }}"}

    refused = dpo_client.post(reverse("staff:template_new"), template)

    assert refused.status_code == 200 and not ResponseTemplate.objects.exists()
    error = html.unescape(str(refused.context["form"].errors["subject"]))
    assert "To write “{#” as text, type {% templatetag opencomment %} in its place;" in error

    written_as_told = {**template, "subject": "Ticket {% templatetag opencomment %}123}"}
    assert dpo_client.post(reverse("staff:template_new"), written_as_told).status_code == 302
    request = request_in_status("in_progress")
    assert handling.render_letter(request, TemplatePurpose.MESSAGE, body="Hello.")[0] == "Ticket {#123}"


@pytest.mark.django_db
def test_a_template_with_a_comment_is_refused_saying_how_to_write_it_as_text(dpo_client):
    """Closed, "{#123#}" is a comment to Django: the letter read "Ticket " and nobody was told."""
    template = {"purpose": "message", "request_type": "", "language": "en", "subject": "Ticket {#123#}", "body": "{{ body }}"}

    refused = dpo_client.post(reverse("staff:template_new"), template)

    assert refused.status_code == 200 and not ResponseTemplate.objects.exists()
    error = html.unescape(str(refused.context["form"].errors["subject"]))
    assert "To write “{#” as text, type {% templatetag opencomment %} in its place" in error

    written_as_told = {**template, "subject": "Ticket {% templatetag opencomment %}123#}"}
    assert dpo_client.post(reverse("staff:template_new"), written_as_told).status_code == 302
    request = request_in_status("in_progress")
    assert handling.render_letter(request, TemplatePurpose.MESSAGE, body="Hello.")[0] == "Ticket {#123#}"


@pytest.mark.django_db
def test_a_template_saved_with_a_comment_before_it_was_refused_still_sends_as_it_did():
    """Refused when saved, not when a letter is written: a DPO's note to staff, saved before, must not stop every
    letter of its purpose until someone edits it."""
    ResponseTemplate.objects.create(purpose="message", language="en", subject="About {{ reference }}", body="{# note #}{{ body }}")
    request = request_in_status("in_progress")
    assert handling.render_letter(request, TemplatePurpose.MESSAGE, body="Hello.")[1] == "Hello."


@pytest.mark.django_db
def test_a_template_with_a_misspelt_placeholder_is_refused_naming_it(dpo_client):
    """{{ due_date }} for {{ due_on }}: saved, the subject read "Hallo  Wir melden uns bald."."""
    response = dpo_client.post(reverse("staff:template_new"), {
        "purpose": "message", "request_type": "", "language": "de", "subject": "Ihre Anfrage {{ reference }}",
        "body": "Hallo {{ due_date }} {{ body }}",
    })

    assert response.status_code == 200 and not ResponseTemplate.objects.exists()
    error = str(response.context["form"].errors["body"])
    assert "“due_date” is not a placeholder: it would print nothing in the letter." in error
    assert "Use one of reference, due_on, rights" in error


@pytest.mark.django_db
def test_the_admin_refuses_a_template_that_would_fail_in_every_letter(dpo_client):
    response = dpo_client.post(reverse("admin:requests_app_responsetemplate_add"), {
        "purpose": "completion", "request_type": "", "language": "en", "subject": "Done",
        "body": '{% include "missing.html" %}{{ body }}',
    })

    assert response.status_code == 200 and not ResponseTemplate.objects.exists()
    assert "include" in str(response.context["adminform"].form.errors["body"])


@pytest.mark.django_db
def test_a_category_of_a_source_not_on_consent_or_contract_cannot_be_marked_portable(dpo_client):
    """Art. 20(1)(a): call records kept under a legal obligation are not portable, though the subject's calls made them."""
    assert dpo_client.post(reverse("staff:source_new"), {**SOURCE, "legal_basis": "legal_obligation"}).status_code == 302
    source = SourceSystem.objects.get(slug="billing")
    category = {"source": source.pk, "slug": "calls", "category": "electronic_communications", "query": "SELECT * FROM cdrs WHERE caller IN :identities"}

    response = dpo_client.post(reverse("staff:category_new"), {**category, "portable": "on"})

    assert response.status_code == 200
    (error,) = response.context["form"].errors["portable"]
    assert "Only data processed on consent or a contract is portable" in error and "legal obligation (Art. 6(1)(c))" in error
    assert dpo_client.post(reverse("staff:category_new"), category).status_code == 302
    assert not SourceCategory.objects.get(source=source).portable


@pytest.mark.django_db
def test_the_inventory_flags_a_portable_category_whose_source_basis_changed_since(dpo_client):
    dpo_client.post(reverse("staff:source_new"), SOURCE)
    source = SourceSystem.objects.get(slug="billing")
    SourceCategory.objects.create(source=source, slug="invoices", category="contact", query="x :identities", portable=True)
    flag = "Left out of portability packages"
    assert flag not in dpo_client.get(reverse("staff:inventory")).content.decode()

    SourceSystem.objects.filter(pk=source.pk).update(legal_basis="legitimate_interests")

    assert flag in dpo_client.get(reverse("staff:inventory")).content.decode()
