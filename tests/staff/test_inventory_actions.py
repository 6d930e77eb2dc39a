import datetime

import pytest
from django.urls import reverse

from requests_app.models import (
    AuditEvent,
    ConnectorKind,
    EraseStrategy,
    LegalHold,
    SourceCategory,
    SourceField,
    SourceSystem,
)
from tests.conftest import login_staff
from tests.factories import staff_in_role


def sql_source(slug="billing"):
    return SourceSystem.objects.create(
        slug=slug, name=slug.title(), connector=ConnectorKind.SQL, connection_env="SOURCE_DB_URL", identity_kind="phone",
        purposes="p", legal_basis="contract", retention="r", origin="o",
    )


def category_of(source, slug="calls"):
    return SourceCategory.objects.create(
        source=source, slug=slug, category="electronic_communications", query="SELECT * FROM cdrs WHERE caller IN :identities"
    )


@pytest.fixture
def dpo_client(client, db):
    return login_staff(client, staff_in_role("DPO", username="dpo1"))


@pytest.mark.django_db
def test_the_dpo_adds_a_field_to_a_category_and_a_hold_to_a_source(dpo_client):
    category = category_of(sql_source())
    new_field = reverse("staff:field_new", args=[category.pk])
    assert f'value="{category.pk}" selected' in dpo_client.get(new_field).content.decode()

    response = dpo_client.post(new_field, {
        "category": category.pk, "name": "caller_name", "label": "caller's name", "type": "text", "erase_strategy": "fixed",
        "fixed_text": "erased", "rectifiable": "on",
    })
    assert response.status_code == 302
    response = dpo_client.post(reverse("staff:hold_new", args=[category.source.pk]), {
        "source": category.source.pk, "category": category.pk, "ground": "legal_obligation",
        "basis": "Telecom law keeps call records for 12 months", "until": "2027-06-30",
    })
    assert response.status_code == 302

    field = SourceField.objects.get()
    hold = LegalHold.objects.get()
    assert (field.category, field.name, field.label, field.erase_strategy) == (category, "caller_name", "caller's name", "fixed")
    assert (hold.category, hold.until) == (category, datetime.date(2027, 6, 30))
    assert AuditEvent.objects.filter(action__in=["source_field_saved", "legal_hold_saved"]).count() == 2
    page = dpo_client.get(reverse("staff:inventory")).content.decode()
    assert "caller_name" in page and "caller&#x27;s name" in page and "Telecom law keeps call records" in page
    # Letters name the field to subjects in their language: the inventory says which are still untranslated.
    assert reverse("staff:field_translation", args=[field.pk, "fr"]) in page


@pytest.mark.parametrize("name", ["drop table;", "x; DROP TABLE cdrs", "a b", "1abc"])
@pytest.mark.django_db
def test_sql_names_that_are_not_plain_identifiers_are_refused(dpo_client, name):
    source = sql_source()
    response = dpo_client.post(reverse("staff:category_new"), {
        "source": source.pk, "slug": "calls", "category": "contact", "query": "SELECT * FROM cdrs WHERE caller IN :identities",
        "table": name, "identity_field": name, "erase_method": "delete", "restriction_flag": name,
    })
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert {"table", "identity_field", "restriction_flag"} <= set(errors)
    category = category_of(source, slug="other")
    response = dpo_client.post(reverse("staff:field_new", args=[category.pk]), {
        "category": category.pk, "name": name, "type": "text", "erase_strategy": "null",
    })
    assert "name" in response.context["form"].errors
    assert not SourceField.objects.exists() and SourceCategory.objects.count() == 1


@pytest.mark.django_db
def test_a_category_gets_its_table_and_identity_column_together(dpo_client):
    source = sql_source()
    data = {
        "source": source.pk, "slug": "calls", "category": "contact", "query": "SELECT * FROM cdrs WHERE caller IN :identities",
        "erase_method": "anonymise", "table": "cdrs",
    }
    response = dpo_client.post(reverse("staff:category_new"), data)
    assert "identity_field" in response.context["form"].errors
    assert dpo_client.post(reverse("staff:category_new"), {**data, "identity_field": "caller"}).status_code == 302
    assert SourceCategory.objects.get().erase_method == "anonymise"


@pytest.mark.django_db
def test_a_hold_category_must_belong_to_the_source(dpo_client):
    billing, crm = sql_source(), sql_source("crm")
    crm_category = category_of(crm)
    billing_category = category_of(billing, slug="invoices")

    form = dpo_client.get(reverse("staff:hold_new", args=[billing.pk])).context["form"]
    assert list(form.fields["category"].queryset) == [billing_category]
    response = dpo_client.post(reverse("staff:hold_new", args=[billing.pk]), {
        "source": billing.pk, "category": crm_category.pk, "ground": "legal_claims", "basis": "Pending dispute",
        "until": "2027-01-01",
    })
    assert "category of this source" in str(response.context["form"].errors["category"])
    assert not LegalHold.objects.exists()


@pytest.mark.django_db
def test_a_fixed_text_erasure_needs_its_text(dpo_client):
    category = category_of(sql_source())
    response = dpo_client.post(reverse("staff:field_new", args=[category.pk]), {
        "category": category.pk, "name": "note", "type": "text", "erase_strategy": "fixed", "fixed_text": "",
    })
    assert "fixed_text" in response.context["form"].errors


@pytest.mark.django_db
@pytest.mark.parametrize(("type_", "strategy", "refused"), [
    ("integer", "hash", True), ("date", "fixed", True), ("boolean", "hash", True),
    ("integer", "null", False), ("phone", "hash", False), ("email", "fixed", False),
])
def test_only_a_text_field_is_replaced_by_a_text_or_a_hash(dpo_client, type_, strategy, refused):
    """Erasure would write "anon:..." into a number or a date column, which the source refuses at execution."""
    category = category_of(sql_source())
    response = dpo_client.post(reverse("staff:field_new", args=[category.pk]), {
        "category": category.pk, "name": "duration_s", "type": type_, "erase_strategy": strategy, "fixed_text": "erased",
    })
    errors = response.context["form"].errors if response.status_code == 200 else {}
    assert ("erase_strategy" in errors) is refused


@pytest.mark.django_db
def test_names_that_differ_only_in_capitals_are_refused(dpo_client):
    """Two sources' folders would merge in a package opened on Windows or macOS; two teams would read as one."""
    from requests_app.models import Team

    sql_source()  # slug "billing"
    data = {
        "name": "Billing again", "slug": "Billing", "active": "on", "connector": "sql", "identity_kind": "phone",
        "connection_env": "SOURCE_BILLING_DB_URL", "purposes": "p", "legal_basis": "contract", "retention": "r",
        "origin": "o", "http_auth_header": "Authorization",
    }
    response = dpo_client.post(reverse("staff:source_new"), data)
    assert response.context["form"].errors["slug"] == ["Billing is already used with other capitals: choose another."]
    Team.objects.create(name="Erasure desk")
    response = dpo_client.post(reverse("staff:team_new"), {"name": "erasure desk"})
    assert "already used with other capitals" in str(response.context["form"].errors["name"])


@pytest.mark.django_db
def test_restriction_lists_and_webhooks_are_checked_against_the_connector(dpo_client, settings):
    settings.WEBHOOK_ALLOW_HTTP = False
    source = sql_source()
    data = {
        "name": "Billing", "slug": "billing", "active": "on", "connector": "sql", "identity_kind": "phone",
        "connection_env": "SOURCE_BILLING_DB_URL", "purposes": "p", "legal_basis": "contract", "retention": "r",
        "origin": "o", "http_auth_header": "Authorization",
    }
    for value in ("/restrictions", "restricted"):
        response = dpo_client.post(reverse("staff:source_edit", args=[source.pk]), {**data, "restriction_list": value})
        assert "restriction_list" in response.context["form"].errors
    response = dpo_client.post(reverse("staff:source_edit", args=[source.pk]), {**data, "restriction_list": "restricted.msisdn"})
    assert response.status_code == 302
    source.refresh_from_db()
    assert source.restriction_list == "restricted.msisdn"

    recipient = {"source": source.pk, "name": "Partner", "country": "Belgium", "notification_webhook_url": "http://partner.example/notices"}
    response = dpo_client.post(reverse("staff:recipient_new"), recipient)
    assert "HTTPS" in str(response.context["form"].errors["notification_webhook_url"])
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    response = dpo_client.post(reverse("staff:recipient_new"), {**recipient, "notification_webhook_url": "https://10.0.0.5/notices"})
    assert "This address is internal" in str(response.context["form"].errors["notification_webhook_url"])
    response = dpo_client.post(reverse("staff:recipient_new"), {**recipient, "notification_webhook_url": "https://partner.example/notices"})
    assert response.status_code == 302


@pytest.mark.parametrize("role", ["Handler", "Auditor"])
@pytest.mark.django_db
def test_only_the_dpo_edits_fields_and_holds(client, role):
    category = category_of(sql_source())
    login_staff(client, staff_in_role(role, username=f"u-{role}"))

    assert client.post(reverse("staff:field_new", args=[category.pk]), {
        "category": category.pk, "name": "caller", "type": "text", "erase_strategy": "null",
    }).status_code == 403
    assert client.post(reverse("staff:hold_new", args=[category.source.pk]), {
        "source": category.source.pk, "ground": "legal_claims", "basis": "b", "until": "2027-01-01",
    }).status_code == 403
    assert not SourceField.objects.exists() and not LegalHold.objects.exists()


@pytest.mark.django_db
def test_a_new_field_is_emptied_on_erasure_unless_the_dpo_chooses_otherwise(dpo_client):
    """A field left unconfigured was kept, and the letter said it no longer identified the subject."""
    category = category_of(sql_source())
    form = dpo_client.get(reverse("staff:field_new", args=[category.pk])).context["form"]
    assert form["erase_strategy"].value() == EraseStrategy.NULL
    assert SourceField.objects.create(category=category, name="note", label="note").erase_strategy == EraseStrategy.NULL


def searched_by_caller(source):
    return SourceCategory.objects.create(
        source=source, slug="calls", category="electronic_communications",
        query="SELECT * FROM cdrs WHERE caller IN :identities", table="cdrs", identity_field="caller",
    )


@pytest.mark.django_db
def test_the_column_a_category_is_searched_by_cannot_be_kept_on_erasure(dpo_client):
    """The subject is found by it: it identifies them however much else is erased (Recital 26)."""
    category = searched_by_caller(sql_source())
    new_field = reverse("staff:field_new", args=[category.pk])
    data = {"category": category.pk, "name": "caller", "label": "number", "type": "phone", "erase_strategy": "keep"}

    response = dpo_client.post(new_field, data)
    assert "The source finds the subject by this field" in str(response.context["form"].errors["erase_strategy"])
    assert not SourceField.objects.exists()
    assert dpo_client.post(new_field, {**data, "name": "cell_id", "type": "text"}).status_code == 302
    assert dpo_client.post(new_field, {**data, "erase_strategy": "null"}).status_code == 302
    caller = SourceField.objects.get(name="caller")
    response = dpo_client.post(reverse("staff:field_edit", args=[caller.pk]), {**data, "erase_strategy": "keep"})
    assert "erase_strategy" in response.context["form"].errors
    caller.refresh_from_db()
    assert caller.erase_strategy == EraseStrategy.NULL


@pytest.mark.django_db
def test_a_category_is_not_searched_by_a_field_its_erasure_keeps(dpo_client):
    category = searched_by_caller(sql_source())
    category.fields.create(name="account", label="account", erase_strategy=EraseStrategy.KEEP)
    data = {
        "source": category.source.pk, "slug": "calls", "category": "contact", "query": category.query,
        "erase_method": "anonymise", "table": "cdrs", "identity_field": "account",
    }

    response = dpo_client.post(reverse("staff:category_edit", args=[category.pk]), data)
    assert "Erasure keeps the field account" in str(response.context["form"].errors["identity_field"])
    category.fields.update(erase_strategy=EraseStrategy.NULL)
    assert dpo_client.post(reverse("staff:category_edit", args=[category.pk]), data).status_code == 302
    category.refresh_from_db()
    assert category.identity_field == "account"
