"""The request page warns before a letter or a package in French, Dutch or German would give inventory texts in
English, for want of their translation, and names them with the page where the DPO gives each."""

import datetime
import html

import pytest
from django.urls import reverse
from django.utils import timezone

from requests_app import selectors
from requests_app.models import (
    ConnectorKind,
    EraseMethod,
    CoveredPurpose,
    EraseStrategy,
    ErasureException,
    LegalHold,
    Recipient,
    RecipientTranslation,
    RequestType,
    SourceCategory,
    SourceCategoryTranslation,
    SourceField,
    SourceFieldTranslation,
    SourceSystem,
    SourceSystemTranslation,
    Status,
    SuppressionPurpose,
)
from requests_app.services.intake import RightDetails
from tests.conftest import login_staff
from tests.factories import request_in_status, staff_in_role

WARNING = "inventory texts its letters and report would use have no translation into"


@pytest.fixture
def billing(db):
    source = SourceSystem.objects.create(
        slug="billing", name="Billing", connector=ConnectorKind.MANUAL, identity_kind="email", legal_basis="contract",
        purposes="Billing calls", retention="7 years", origin="Our network",
    )
    category = SourceCategory.objects.create(
        source=source, slug="contacts", category="contact", description="Your contact details", erase_method=EraseMethod.ANONYMISE
    )
    Recipient.objects.create(source=source, name="Authorities, when the law requires it", country="Belgium")
    SourceField.objects.create(category=category, name="email", label="email address", erase_strategy=EraseStrategy.HASH, rectifiable=False)
    LegalHold.objects.create(
        source=source, category=category, ground=ErasureException.LEGAL_OBLIGATION, basis="Accounting law",
        until=timezone.localdate() + datetime.timedelta(days=5 * 365),
    )
    return source


def translate_for_reports(source, language="fr"):
    SourceSystemTranslation.objects.create(
        source=source, language=language, name="Facturation", purposes="Facturer les appels", retention="Sept ans",
        origin="Notre réseau",
    )
    SourceCategoryTranslation.objects.create(category=source.categories.get(), language=language, description="Vos coordonnées")
    RecipientTranslation.objects.create(
        recipient=source.recipients.get(), language=language, name="Autorités, lorsque la loi l’exige", country="Belgique"
    )


def request_page(client, request, role="DPO"):
    login_staff(client, staff_in_role(role, username=f"{role.lower()}-untranslated"))
    return html.unescape(client.get(reverse("staff:request", args=[request.reference])).content.decode())


@pytest.mark.django_db
def test_a_french_access_request_lists_the_texts_its_report_would_give_in_english(client, billing):
    request = request_in_status(Status.IN_PROGRESS, language="fr")

    page = request_page(client, request)

    assert f"This request is in French, but {WARNING} French: the subject would read them in English." in page
    assert "Source system <a href=\"{}\">Billing</a>: Name, Purposes, Retention, Origin of the data".format(
        reverse("staff:source_translation", args=[billing.pk, "fr"])
    ) in page
    assert "Data category <a href=\"{}\">billing/contacts</a>: Description".format(
        reverse("staff:category_translation", args=[billing.categories.get().pk, "fr"])
    ) in page
    # The QA's "aan Authorities, when the law requires it": a name is listed too (a brand may stay as it is).
    assert "Recipient <a href=\"{}\">Authorities, when the law requires it</a>: Name, Country".format(
        reverse("staff:recipient_translation", args=[billing.recipients.get().pk, "fr"])
    ) in page
    # What an access report does not use: the field labels and the holds of an erasure's letter.
    assert "billing/contacts.email" not in page and "Legal hold" not in page
    # Pointed out again where the letter is sent and where the package is compiled.
    assert page.count('<a href="#untranslated-texts">') == 2


@pytest.mark.django_db
def test_no_warning_once_the_texts_are_translated(client, billing):
    translate_for_reports(billing)
    request = request_in_status(Status.IN_PROGRESS, language="fr")

    assert WARNING not in request_page(client, request)


@pytest.mark.django_db
def test_no_warning_for_a_request_in_the_inventorys_own_language(client, billing):
    request = request_in_status(Status.IN_PROGRESS, language="en")

    assert WARNING not in request_page(client, request)


@pytest.mark.django_db
def test_a_translation_into_another_language_does_not_count(client, billing):
    translate_for_reports(billing, language="nl")
    request = request_in_status(Status.IN_PROGRESS, language="fr")

    assert "Source system <a" in request_page(client, request)


@pytest.mark.django_db
def test_a_text_left_empty_in_its_translation_is_listed_as_the_letter_falls_back_on_it(billing):
    translate_for_reports(billing)
    SourceSystemTranslation.objects.filter(source=billing).update(retention="")
    request = request_in_status(Status.IN_PROGRESS, language="fr")

    assert [(item.item, item.fields) for item in selectors.untranslated_inventory_texts(request)] == [(billing, ["retention"])]
    assert billing.texts_in("fr")["retention"] == "7 years"  # what the report says, from the same rule


@pytest.mark.django_db
def test_an_erasure_lists_what_its_letter_names_not_the_reports_texts(billing):
    request = request_in_status(Status.IN_PROGRESS, language="de", rights=[RightDetails(RequestType.ERASURE)])
    field = SourceField.objects.get()

    untranslated = {type(item.item).__name__: item.fields for item in selectors.untranslated_inventory_texts(request)}

    # The letter names the source and the recipients with their country, the field it pseudonymised and the hold
    # that kept data.
    assert untranslated == {
        "SourceSystem": ["name"], "Recipient": ["name", "country"], "SourceField": ["label"], "LegalHold": ["basis"]
    }
    SourceFieldTranslation.objects.create(field=field, language="de", label="E-Mail-Adresse")
    assert "SourceField" not in {type(item.item).__name__ for item in selectors.untranslated_inventory_texts(request)}


@pytest.mark.django_db
def test_an_erasure_lists_the_fields_its_letter_names_as_left_in_the_records_it_anonymises(billing):
    """The letter names what an anonymising erasure left in the records (the inventory's "keep"), not what a deleting one
    took with the rows."""
    company = SourceField.objects.create(
        category=billing.categories.get(), name="company", label="company", erase_strategy=EraseStrategy.KEEP,
        rectifiable=False,
    )
    deleted = SourceCategory.objects.create(source=billing, slug="invoices", category="contact")
    SourceField.objects.create(category=deleted, name="amount", label="amount", rectifiable=False)
    request = request_in_status(Status.IN_PROGRESS, language="de", rights=[RightDetails(RequestType.ERASURE)])

    fields = [item.item for item in selectors.untranslated_inventory_texts(request) if isinstance(item.item, SourceField)]
    assert fields == [company, SourceField.objects.get(name="email")]


@pytest.mark.django_db
def test_an_objection_lists_the_suppression_lists_its_letter_names(client, billing):
    calls = SuppressionPurpose.objects.create(slug="telemarketing", name="Telemarketing calls")
    SuppressionPurpose.objects.create(slug="newsletter", name="Newsletter")  # not covered: the letter does not name it
    request = request_in_status(
        Status.IN_PROGRESS, language="fr", rights=[RightDetails(RequestType.OBJECTION, objection_processing="Calls")]
    )
    CoveredPurpose.objects.create(right=request.rights.get(), purpose=calls)

    page = request_page(client, request)

    assert "Suppression list <a href=\"{}\">Telemarketing calls</a>: Name".format(
        reverse("staff:suppression_purpose_translation", args=[calls.pk, "fr"])
    ) in page
    assert "Newsletter" not in page and "Source system <a" not in page  # an objection's letter names no source
    calls.translations.create(language="fr", name="Démarchage téléphonique")
    assert selectors.untranslated_inventory_texts(request) == []


@pytest.mark.django_db
def test_a_handler_sees_the_texts_to_ask_the_dpo_for_without_links(client, billing):
    request = request_in_status(Status.IN_PROGRESS, language="nl")

    page = request_page(client, request, role="Handler")

    assert "Source system Billing: Name, Purposes" in page
    assert "Only the DPO can give them." in page


@pytest.mark.django_db
def test_the_lookup_takes_as_many_queries_for_many_sources_as_for_one(billing, django_assert_max_num_queries):
    request = request_in_status(Status.IN_PROGRESS, language="fr", rights=[RightDetails(RequestType.ACCESS), RightDetails(RequestType.ERASURE)])
    with django_assert_max_num_queries(11) as one:  # one more for the suppression lists it covers
        selectors.untranslated_inventory_texts(request)
    for slug in ("crm", "weblogs"):
        copy = SourceSystem.objects.create(
            slug=slug, name=slug, connector=ConnectorKind.MANUAL, identity_kind="email", legal_basis="contract",
            purposes="p", retention="r", origin="o",
        )
        LegalHold.objects.create(source=copy, ground=ErasureException.LEGAL_OBLIGATION, basis="b", until=billing.legal_holds.get().until)
    with django_assert_max_num_queries(len(one.captured_queries)):
        selectors.untranslated_inventory_texts(request)
