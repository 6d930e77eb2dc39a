"""The DPO gives the inventory's Art. 15 texts in the site's other languages; the inventory page shows
which are still missing. Only the DPO edits them, as the rest of the inventory."""

import pytest
from django.urls import reverse

from requests_app.models import (
    AuditEvent,
    ConnectorKind,
    ErasureException,
    LegalHold,
    LegalHoldTranslation,
    Recipient,
    RecipientTranslation,
    SourceCategory,
    SourceCategoryTranslation,
    SourceField,
    SourceSystem,
    SourceSystemTranslation,
    SuppressionPurpose,
    SuppressionPurposeTranslation,
)
from tests.conftest import login_staff
from tests.factories import staff_in_role

FRENCH = {
    "description": "", "purposes": "Facturer les appels", "retention": "Sept ans", "origin": "Notre réseau",
    "automated_decisions": "",
}


@pytest.fixture
def source(db):
    return SourceSystem.objects.create(
        slug="billing", name="Billing", connector=ConnectorKind.MANUAL, identity_kind="phone", legal_basis="contract",
        purposes="Billing <calls>", retention="7 years", origin="Our network",
    )


@pytest.fixture
def dpo_client(client, db):
    return login_staff(client, staff_in_role("DPO", username="dpo1"))


def source_texts_url(source, language):
    return reverse("staff:source_translation", args=[source.pk, language])


@pytest.mark.django_db
def test_the_dpo_adds_then_edits_a_sources_french_texts_each_change_audited(dpo_client, source):
    page = dpo_client.get(source_texts_url(source, "fr")).content.decode()
    assert "Main text: Billing &lt;calls&gt;" in page  # what to translate, shown as text

    assert dpo_client.post(source_texts_url(source, "fr"), FRENCH).status_code == 302
    assert dpo_client.post(source_texts_url(source, "fr"), {**FRENCH, "retention": "Dix ans"}).status_code == 302

    translation = SourceSystemTranslation.objects.get(source=source)
    assert (translation.language, translation.purposes, translation.retention) == ("fr", "Facturer les appels", "Dix ans")
    events = AuditEvent.objects.filter(action="source_system_translation_saved")
    # The trail names the source (its id, as the source's own events do) and the language, not the row.
    named = {"id": source.pk, "language": "fr", "name": "Billing"}
    assert [event.data for event in events] == [
        {**named, "changes": {"purposes": [None, "Facturer les appels"], "retention": [None, "Sept ans"], "origin": [None, "Notre réseau"]}},
        {**named, "changes": {"retention": ["Sept ans", "Dix ans"]}},
    ]


@pytest.mark.django_db
def test_the_dpo_gives_a_recipients_safeguards_in_german(dpo_client, source):
    recipient = Recipient.objects.create(
        source=source, name="Cloud host", country="India", third_country=True, safeguards="EU standard contractual clauses"
    )
    url = reverse("staff:recipient_translation", args=[recipient.pk, "de"])

    assert dpo_client.post(url, {"safeguards": "EU-Standardvertragsklauseln"}).status_code == 302

    assert RecipientTranslation.objects.get(recipient=recipient, language="de").safeguards == "EU-Standardvertragsklauseln"
    assert AuditEvent.objects.filter(action="recipient_translation_saved").count() == 1


@pytest.mark.django_db
def test_a_translation_needs_the_texts_the_main_one_requires(dpo_client, source):
    response = dpo_client.post(source_texts_url(source, "fr"), {**FRENCH, "purposes": ""})

    assert response.status_code == 200
    assert "purposes" in response.context["form"].errors
    assert not SourceSystemTranslation.objects.exists()


@pytest.mark.parametrize("language", ["en", "xx"])
@pytest.mark.django_db
def test_only_the_sites_other_languages_have_a_translation_page(dpo_client, source, language):
    assert dpo_client.post(source_texts_url(source, language), FRENCH).status_code == 404
    assert not SourceSystemTranslation.objects.exists()


@pytest.mark.parametrize("role", ["Handler", "Auditor"])
@pytest.mark.django_db
def test_only_the_dpo_may_translate_the_inventory(client, source, role):
    recipient = Recipient.objects.create(source=source, name="Cloud host", country="India", safeguards="SCC")
    login_staff(client, staff_in_role(role, username="reader"))

    assert client.get(source_texts_url(source, "fr")).status_code == 403
    assert client.post(source_texts_url(source, "fr"), FRENCH).status_code == 403
    assert client.post(reverse("staff:recipient_translation", args=[recipient.pk, "fr"]), {"safeguards": "CCT"}).status_code == 403
    assert not SourceSystemTranslation.objects.exists() and not RecipientTranslation.objects.exists()


@pytest.mark.django_db
def test_the_sources_page_links_its_texts_in_each_other_language(dpo_client, source):
    page = dpo_client.get(reverse("staff:source_edit", args=[source.pk])).content.decode()

    for language in ("fr", "nl", "de"):
        assert source_texts_url(source, language) in page
    assert source_texts_url(source, "en") not in page


@pytest.mark.django_db
def test_the_inventory_page_lists_the_languages_a_source_still_lacks(dpo_client, source):
    # Dutch is there but for the description, which the main text has: still missing.
    source.description = "Invoices for our calls"
    source.save()
    SourceSystemTranslation.objects.create(source=source, language="fr", **{**FRENCH, "description": "Factures de nos appels"})
    SourceSystemTranslation.objects.create(source=source, language="nl", purposes="Facturen", retention="Zeven jaar", origin="Ons net")

    page = dpo_client.get(reverse("staff:inventory")).content.decode()

    assert f'<a href="{source_texts_url(source, "nl")}">Dutch</a>, <a href="{source_texts_url(source, "de")}">German</a>' in page
    assert source_texts_url(source, "fr") not in page


@pytest.mark.django_db
def test_the_inventory_page_lists_the_languages_a_recipients_texts_lack(dpo_client, source):
    recipient = Recipient.objects.create(source=source, name="Cloud host", country="India", third_country=True, safeguards="SCC")
    RecipientTranslation.objects.create(recipient=recipient, language="nl", country="India", safeguards="SCC (nl)")
    # No safeguards to translate: its country only.
    group = Recipient.objects.create(source=source, name="Group companies", country="Belgium")
    RecipientTranslation.objects.create(recipient=group, language="fr", country="Belgique")

    page = dpo_client.get(reverse("staff:inventory")).content.decode()

    def url(item, language):
        return reverse("staff:recipient_translation", args=[item.pk, language])

    assert url(recipient, "fr") in page and url(recipient, "de") in page
    assert url(recipient, "nl") not in page
    assert url(group, "fr") not in page and url(group, "nl") in page


@pytest.mark.django_db
def test_an_auditor_sees_the_missing_languages_without_links(client, source):
    login_staff(client, staff_in_role("Auditor", username="auditor"))

    page = client.get(reverse("staff:inventory")).content.decode()

    assert "French, Dutch, German" in page
    assert source_texts_url(source, "fr") not in page


@pytest.mark.django_db
def test_the_dpo_gives_a_legal_holds_basis_in_french_and_the_inventory_shows_what_is_missing(dpo_client, source):
    hold = LegalHold.objects.create(
        source=source, ground=ErasureException.LEGAL_OBLIGATION, basis="Accounting law: invoices kept 7 years",
        until="2033-12-31",
    )
    url = reverse("staff:hold_translation", args=[hold.pk, "fr"])
    assert url in dpo_client.get(reverse("staff:hold_edit", args=[hold.pk])).content.decode()
    assert url in dpo_client.get(reverse("staff:inventory")).content.decode()

    assert dpo_client.post(url, {"basis": "Droit comptable : factures gardées 7 ans"}).status_code == 302

    assert LegalHoldTranslation.objects.get(hold=hold, language="fr").basis == "Droit comptable : factures gardées 7 ans"
    assert AuditEvent.objects.filter(action="legal_hold_translation_saved").count() == 1
    page = dpo_client.get(reverse("staff:inventory")).content.decode()
    assert url not in page and reverse("staff:hold_translation", args=[hold.pk, "nl"]) in page
    # Only the DPO: a handler may not.
    dpo_client.logout()
    login_staff(dpo_client, staff_in_role("Handler", username="handler1"))
    assert dpo_client.post(reverse("staff:hold_translation", args=[hold.pk, "de"]), {"basis": "x"}).status_code == 403
    assert not LegalHoldTranslation.objects.filter(language="de").exists()


@pytest.mark.django_db
def test_the_dpo_words_a_fields_name_in_letters_in_german(dpo_client, source):
    category = SourceCategory.objects.create(source=source, slug="accounts", category="contact", query="x")
    field = SourceField.objects.create(category=category, name="billing_address", label="billing address")
    url = reverse("staff:field_translation", args=[field.pk, "de"])
    assert url in dpo_client.get(reverse("staff:field_edit", args=[field.pk])).content.decode()
    assert "Main text: billing address" in dpo_client.get(url).content.decode()

    assert dpo_client.post(url, {"label": "Rechnungsanschrift"}).status_code == 302

    assert field.texts_in("de") == {"label": "Rechnungsanschrift"} and field.texts_in("fr") == {"label": "billing address"}
    assert AuditEvent.objects.filter(action="source_field_translation_saved").count() == 1
    page = dpo_client.get(reverse("staff:inventory")).content.decode()
    assert url not in page and reverse("staff:field_translation", args=[field.pk, "fr"]) in page


@pytest.mark.django_db
def test_the_dpo_gives_a_categorys_description_in_dutch(dpo_client, source):
    category = SourceCategory.objects.create(
        source=source, slug="invoices", category="other", description="Your invoices & payments"
    )
    url = reverse("staff:category_translation", args=[category.pk, "nl"])
    assert url in dpo_client.get(reverse("staff:category_edit", args=[category.pk])).content.decode()
    page = dpo_client.get(reverse("staff:inventory")).content.decode()
    assert "<small>Your invoices &amp; payments</small>" in page and url in page

    assert dpo_client.post(url, {"description": "Uw facturen en betalingen"}).status_code == 302

    assert SourceCategoryTranslation.objects.get(category=category, language="nl").description == "Uw facturen en betalingen"
    assert url not in dpo_client.get(reverse("staff:inventory")).content.decode()

    assert dpo_client.post(url, {"delete": "1"}).status_code == 302
    assert not SourceCategoryTranslation.objects.exists()
    trail = AuditEvent.objects.filter(action__startswith="source_category_translation").order_by("sequence")
    described = {"id": category.pk, "language": "nl", "name": "billing/invoices"}
    assert [(event.action, event.data) for event in trail] == [
        ("source_category_translation_saved", {**described, "changes": {"description": [None, "Uw facturen en betalingen"]}}),
        ("source_category_translation_deleted", described),
    ]


@pytest.mark.django_db
def test_in_french_a_language_is_named_in_lower_case_inside_a_sentence(dpo_client, source):
    dpo_client.cookies["django_language"] = "fr"
    inventory = dpo_client.get(reverse("staff:inventory")).content.decode()
    assert "Pas encore traduit en" in inventory
    assert '">allemand</a>' in inventory and '">Allemand</a>' not in inventory

    page = dpo_client.get(source_texts_url(source, "de")).content.decode()
    assert "Billing, en allemand" in page
    # The language switcher keeps each language's name as a title.
    assert ">Allemand<" in page or "Deutsch" in page


@pytest.mark.django_db
def test_a_translation_whose_main_text_changed_since_is_shown_for_review_until_saved_again(dpo_client, source):
    assert dpo_client.post(source_texts_url(source, "fr"), FRENCH).status_code == 302
    recipient = Recipient.objects.create(source=source, name="Cloud host", country="India", third_country=True, safeguards="SCC")
    RecipientTranslation.objects.create(recipient=recipient, language="de", safeguards="SCC (de)")
    recipient_url = reverse("staff:recipient_translation", args=[recipient.pk, "de"])
    page = dpo_client.get(reverse("staff:inventory")).content.decode()
    assert "Translation to review" not in page and "translation to review" not in page

    # The DPO rewrites the retention in English, and the recipient's safeguards.
    SourceSystem.objects.filter(pk=source.pk).update(retention="Ten years")
    Recipient.objects.filter(pk=recipient.pk).update(safeguards="Standard contractual clauses of 2021")

    page = dpo_client.get(reverse("staff:inventory")).content.decode()
    assert f'<dt>Translation to review</dt><dd><a href="{source_texts_url(source, "fr")}">French</a> ' in page
    assert f'(translation to review, the main text changed since: <a href="{recipient_url}">German</a>)' in page
    # The French page says which text changed; the one left empty (automated decisions) falls back anyway.
    form = dpo_client.get(source_texts_url(source, "fr")).content.decode()
    assert "Changed since this translation was saved. Main text: Ten years" in form
    assert form.count("Changed since this translation was saved.") == 1

    assert dpo_client.post(source_texts_url(source, "fr"), {**FRENCH, "retention": "Dix ans"}).status_code == 302
    assert dpo_client.post(recipient_url, {"safeguards": "Clauses contractuelles types (de)"}).status_code == 302

    page = dpo_client.get(reverse("staff:inventory")).content.decode()
    assert "Translation to review" not in page and "translation to review" not in page


@pytest.mark.django_db
def test_a_source_name_left_untranslated_is_not_missing(dpo_client, source):
    """A brand reads the same in every language: left empty, the subject reads the source's own name."""
    SourceSystemTranslation.objects.create(source=source, language="fr", **FRENCH)
    assert ("fr", "French") not in [(code, str(name)) for code, name in source.languages_missing()]
    assert source.texts_in("fr")["name"] == "Billing"
    SourceSystemTranslation.objects.filter(language="fr").update(name="Facturation")
    source = SourceSystem.objects.get(pk=source.pk)
    assert source.texts_in("fr")["name"] == "Facturation"


@pytest.mark.django_db
def test_the_dpo_translates_a_recipients_name_which_left_untranslated_is_not_missing(dpo_client, source):
    """French letters said "Group companies"; one without safeguards could not be translated at all. A company's
    name may read the same everywhere: left empty, the subject reads its own name and only its country is missing."""
    recipient = Recipient.objects.create(source=source, name="Group companies", country="Belgium")
    assert [code for code, _name in recipient.languages_missing()] == ["fr", "nl", "de"]  # the country's name

    url = reverse("staff:recipient_translation", args=[recipient.pk, "fr"])
    assert dpo_client.post(url, {"name": "Sociétés du groupe", "country": "Belgique", "safeguards": ""}).status_code == 302
    url = reverse("staff:recipient_translation", args=[recipient.pk, "nl"])
    assert dpo_client.post(url, {"name": "", "country": "België", "safeguards": ""}).status_code == 302

    recipient = Recipient.objects.get(pk=recipient.pk)
    assert recipient.texts_in("fr")["name"] == "Sociétés du groupe"
    assert recipient.texts_in("nl") == {"name": "Group companies", "country": "België", "safeguards": ""}
    assert [code for code, _name in recipient.languages_missing()] == ["de"]


@pytest.mark.django_db
def test_the_dpo_names_a_suppression_list_in_dutch_and_the_lists_page_shows_what_is_missing(dpo_client):
    """The completion letter tells the subject which lists they are on: in their language."""
    calls = SuppressionPurpose.objects.create(slug="telemarketing", name="Telemarketing calls")
    url = reverse("staff:suppression_purpose_translation", args=[calls.pk, "nl"])
    assert url in dpo_client.get(reverse("staff:suppression_purpose_edit", args=[calls.pk])).content.decode()
    assert url in dpo_client.get(reverse("staff:suppressions")).content.decode()
    assert "Main text: Telemarketing calls" in dpo_client.get(url).content.decode()

    response = dpo_client.post(url, {"name": "Telemarketingoproepen"})

    assert response.status_code == 302 and response.url == reverse("staff:suppressions")
    assert SuppressionPurposeTranslation.objects.get(purpose=calls, language="nl").name == "Telemarketingoproepen"
    assert AuditEvent.objects.get(action="suppression_purpose_translation_saved").data["language"] == "nl"
    page = dpo_client.get(reverse("staff:suppressions")).content.decode()
    assert url not in page and reverse("staff:suppression_purpose_translation", args=[calls.pk, "fr"]) in page
    dpo_client.logout()
    login_staff(dpo_client, staff_in_role("Handler", username="handler1"))
    assert dpo_client.post(reverse("staff:suppression_purpose_translation", args=[calls.pk, "de"]), {"name": "x"}).status_code == 403
