"""The inventory refuses a table or column an SQL source's database does not have, when the category or field is
saved (in the dashboard and in the admin): otherwise each erasure, rectification or restriction on it would stop at
its dry run, until someone found the typo."""

import pytest
from django.urls import reverse

from requests_app.models import DataCategory, EraseMethod, EraseStrategy, FieldType, SourceCategory, SourceField
from requests_app.staff.forms import SourceCategoryForm, SourceFieldForm
from tests.conftest import login_staff
from tests.factories import staff_in_role

SUBSCRIBER_COLUMNS = "id, email, name, city, birth_year, restricted"


def _category_form(crm, **data):
    return SourceCategoryForm(data={
        "source": crm.pk, "slug": "subscribers-2", "category": DataCategory.CONTACT,
        "query": "SELECT * FROM subscribers WHERE email IN :identities", "table": "subscribers",
        "identity_field": "email", "erase_method": EraseMethod.ANONYMISE, "restriction_flag": "restricted", **data,
    })


def _field_form(crm, **data):
    return SourceFieldForm(data={
        "category": crm.categories.get().pk, "name": "city", "label": "city", "type": FieldType.TEXT,
        "erase_strategy": EraseStrategy.NULL, **data,
    })


def test_a_category_on_the_sources_table_and_columns_is_saved(crm):
    form = _category_form(crm)
    assert form.is_valid(), form.errors


@pytest.mark.parametrize(
    ("data", "errors"),
    [
        ({"table": "subscriber"}, {"table": ["The source's database has no table subscriber."]}),
        ({"identity_field": "mail"}, {"identity_field": [f"The table subscribers has no column mail. Its columns: {SUBSCRIBER_COLUMNS}."]}),
        (
            {"restriction_flag": "is_restricted"},
            {"restriction_flag": [f"The table subscribers has no column is_restricted. Its columns: {SUBSCRIBER_COLUMNS}."]},
        ),
    ],
)
def test_a_category_naming_a_table_or_column_the_source_lacks_is_refused(crm, data, errors):
    form = _category_form(crm, **data)
    assert not form.is_valid()
    assert form.errors == errors


def test_a_field_the_categorys_table_lacks_is_refused(crm):
    form = _field_form(crm, name="town")
    assert not form.is_valid()
    assert form.errors == {"name": [f"The table subscribers has no column town. Its columns: {SUBSCRIBER_COLUMNS}."]}
    form = _field_form(crm, name="id", type=FieldType.INTEGER, erase_strategy=EraseStrategy.KEEP)
    assert form.is_valid(), form.errors


def test_a_source_out_of_reach_is_checked_at_its_dry_runs_instead(crm):
    crm.connection_url = "sqlite:////nonexistent/dir/crm.sqlite3"
    crm.save()
    assert _category_form(crm, table="subscriber").is_valid()
    assert _field_form(crm, name="town").is_valid()


def test_the_admin_checks_the_inventory_as_the_dashboard_does(crm, client):
    login_staff(client, staff_in_role("DPO", username="dpo-admin"))
    category = crm.categories.get()
    fields = list(category.fields.order_by("pk"))
    data = {
        "source": crm.pk, "slug": category.slug, "category": category.category, "query": category.query,
        "table": category.table, "identity_field": category.identity_field, "erase_method": category.erase_method,
        "restriction_flag": category.restriction_flag, "record_key": "", "description": "",
        "fields-TOTAL_FORMS": str(len(fields) + 1), "fields-INITIAL_FORMS": str(len(fields)),
        "fields-MIN_NUM_FORMS": "0", "fields-MAX_NUM_FORMS": "1000",
    }
    for index, field in enumerate(fields):
        data.update({
            f"fields-{index}-id": field.pk, f"fields-{index}-category": category.pk, f"fields-{index}-name": field.name,
            f"fields-{index}-label": field.label,
            f"fields-{index}-type": field.type, f"fields-{index}-erase_strategy": field.erase_strategy,
            f"fields-{index}-fixed_text": field.fixed_text, f"fields-{index}-rectifiable": "on",
        })
    new = len(fields)
    data.update({
        f"fields-{new}-category": category.pk, f"fields-{new}-name": "town", f"fields-{new}-label": "town",
        f"fields-{new}-type": FieldType.TEXT,
        f"fields-{new}-erase_strategy": EraseStrategy.NULL, f"fields-{new}-fixed_text": "",
    })
    url = reverse("admin:requests_app_sourcecategory_change", args=[category.pk])

    response = client.post(url, data)

    assert response.status_code == 200  # the form again, with its errors
    assert "The table subscribers has no column town." in response.content.decode()
    assert not SourceField.objects.filter(name="town").exists()
    data[f"fields-{new}-name"] = "birth_year_2"
    data["table"] = "subscriber"
    response = client.post(url, data)
    assert "The source&#x27;s database has no table subscriber." in response.content.decode()
    assert SourceCategory.objects.get(pk=category.pk).table == "subscribers"
