"""The access report gives the inventory's Art. 15 texts in the subject's language (GDPR Art. 12):
the DPO's translation where there is one, the main text otherwise, read in the same number of
queries however many sources the package covers."""

import html
import os
import zipfile

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from requests_app import selectors
from requests_app.exports.package import PackageWriter
from requests_app.models import (
    ConnectorKind,
    DataCategory,
    ExportKind,
    Recipient,
    RecipientTranslation,
    SourceCategory,
    SourceCategoryTranslation,
    SourceSystem,
    SourceSystemTranslation,
)
from tests.exports.support import open_package
from tests.exports.test_package import compiled
from tests.factories import request_in_status

pytestmark = pytest.mark.usefixtures("export_settings")

FRENCH_CDR = {
    "description": "Les enregistrements des appels que nos réseaux acheminent.",
    "purposes": "Acheminer et facturer les appels ; prévenir la fraude.",
    "retention": "12 mois pour les litiges de facturation.",
    "origin": "Produits par les réseaux qui ont acheminé vos appels.",
    "automated_decisions": "Un score de fraude peut bloquer un appel.",
}


def package_writer(folder, request, sources, *, records_from=None) -> PackageWriter:
    """A package, ready to finish, in which the sources `records_from` (all by default) gave one record
    each from a manual extract: the report describes the processing of the sources that held data only."""
    folder.mkdir(exist_ok=True)
    os.makedirs(settings.EXPORT_WORK_DIR, exist_ok=True)  # the extracts are spooled there, as in an export
    request.identities.update(verified_at=timezone.now())  # sources are searched by verified identifiers only
    writer = PackageWriter(str(folder / "package.zip"), request=request, kind=ExportKind.ACCESS)
    for source in sources if records_from is None else records_from:
        writer.add_source(source, manual_upload=SimpleUploadedFile("extract.csv", b"note\nA record\n"))
    return writer


def report_of(writer: PackageWriter, sources) -> str:
    writer.finish(sources)
    with zipfile.ZipFile(writer.path) as package:
        return html.unescape(package.read("report.html").decode())


def render_report(folder, request, sources, *, records_from=None) -> str:
    return report_of(package_writer(folder, request, sources, records_from=records_from), sources)


def make_source(slug: str, **texts) -> SourceSystem:
    fields = {
        "description": f"{slug} in English", "purposes": f"{slug} purposes", "retention": f"{slug} retention",
        "origin": f"{slug} origin", "automated_decisions": "", **texts,
    }
    source = SourceSystem.objects.create(
        slug=slug, name=f"System {slug}", connector=ConnectorKind.MANUAL, identity_kind="email",
        legal_basis="contract", **fields,
    )
    SourceCategory.objects.create(source=source, slug="records", category=DataCategory.OTHER)
    return source


def test_a_french_speaking_subjects_report_gives_the_french_texts(demo_request):
    # From a demo inventory nobody translated, but for the texts given here.
    for translations in (SourceSystemTranslation, SourceCategoryTranslation, RecipientTranslation):
        translations.objects.all().delete()
    cdr = SourceSystem.objects.get(slug="cdr")
    cdr.automated_decisions = "A fraud score may block a call."
    cdr.description = "Records of the calls our networks carry."
    cdr.save()
    SourceSystemTranslation.objects.create(source=cdr, language="fr", **FRENCH_CDR)
    calls = cdr.categories.get(slug="calls-made")
    calls.description = "Who you called, when, for how long, from which cell"
    calls.save()
    SourceCategoryTranslation.objects.create(category=calls, language="fr", description="Qui vous avez appelé, quand, combien de temps")
    analytics = Recipient.objects.get(name="Web analytics provider")
    RecipientTranslation.objects.create(
        recipient=analytics, language="fr", name="Fournisseur de mesure d'audience", country="États-Unis",
        safeguards="Clauses contractuelles types de l'UE",
    )
    demo_request.language = "fr"
    demo_request.save(update_fields=["language"])

    with open_package(compiled(demo_request)) as package:
        report = html.unescape(package.read("report.html").decode())

    for text in FRENCH_CDR.values():
        assert text in report
    assert "Clauses contractuelles types de l'UE" in report
    assert "Fournisseur de mesure d'audience (États-Unis, " in report
    assert "Group companies (Belgium)" in report  # left untranslated: its own name and country
    assert "(Qui vous avez appelé, quand, combien de temps)" in report
    for english in (
        cdr.purposes, cdr.retention, cdr.origin, cdr.automated_decisions, cdr.description, analytics.safeguards,
        calls.description, analytics.name, analytics.country,
    ):
        assert english not in report
    # The sources nobody translated keep their main text rather than saying nothing.
    assert SourceSystem.objects.get(slug="crm").purposes in report


@pytest.mark.django_db
def test_without_a_translation_in_the_subjects_language_the_report_gives_the_main_text(tmp_path):
    source = make_source("billing", automated_decisions="A credit check decides the deposit.")
    recipient = Recipient.objects.create(
        source=source, name="Cloud host", country="United States", third_country=True, safeguards="EU SCCs"
    )
    # A French translation must not leak into a Dutch report.
    SourceSystemTranslation.objects.create(
        source=source, language="fr", purposes="Facturer", retention="Sept ans", origin="Vous"
    )
    RecipientTranslation.objects.create(recipient=recipient, language="fr", safeguards="CCT de l'UE")
    request = request_in_status("in_progress", language="nl")

    report = render_report(tmp_path, request, list(selectors.export_sources()))

    for text in ("billing purposes", "billing retention", "billing origin", "billing in English", "EU SCCs",
                 "A credit check decides the deposit."):
        assert text in report
    assert "Facturer" not in report and "CCT de l'UE" not in report


@pytest.mark.django_db
def test_a_text_left_empty_in_a_translation_falls_back_to_the_main_text_not_to_none(tmp_path):
    source = make_source("scoring", automated_decisions="A fraud score may block a call.")
    SourceSystemTranslation.objects.create(
        source=source, language="fr", purposes="Noter la fraude", retention="Un an", origin="Le réseau",
        automated_decisions="",
    )
    request = request_in_status("in_progress", language="fr")

    report = render_report(tmp_path, request, list(selectors.export_sources()))

    assert "Noter la fraude" in report
    assert "A fraud score may block a call." in report
    assert "scoring in English" in report  # no French description given


def report_queries(folder, request) -> int:
    """The queries of loading the sources as an export does and writing their report."""
    writer = package_writer(folder, request, list(SourceSystem.objects.all()))
    with CaptureQueriesContext(connection) as queries:
        report_of(writer, list(selectors.export_sources()))
    return len(queries)


@pytest.mark.django_db
def test_the_reports_queries_do_not_grow_with_the_number_of_sources(tmp_path):
    request = request_in_status("in_progress", language="fr")

    def add_translated_source(slug: str) -> None:
        source = make_source(slug)
        SourceSystemTranslation.objects.create(source=source, language="fr", purposes="p", retention="r", origin="o")
        recipient = Recipient.objects.create(source=source, name="Host", country="India", third_country=True, safeguards="SCC")
        RecipientTranslation.objects.create(recipient=recipient, language="fr", safeguards="CCT")
        category = source.categories.get()
        SourceCategoryTranslation.objects.create(category=category, language="fr", description="d")

    add_translated_source("one")
    with_one_source = report_queries(tmp_path / "one", request)
    for slug in ("two", "three", "four", "five"):
        add_translated_source(slug)
    with_five_sources = report_queries(tmp_path / "five", request)

    assert with_five_sources == with_one_source


@pytest.mark.django_db
@pytest.mark.parametrize(
    "regime, language, named, not_named",
    [
        ("gdpr", "en", ["the Data Protection Authority (Autorité de protection des données / Gegevensbeschermingsautoriteit), "
                        "Rue de la Presse 35, 1000 Brussels"], ["ICO", "California", "ANPD"]),
        ("uk_gdpr", "de", ["dem Information Commissioner's Office (ICO)", "der Datenschutzbehörde"], ["California", "ANPD"]),
        ("ccpa", "fr", ["la California Privacy Protection Agency", "l'Autorité de protection des données (APD)"], ["ICO", "ANPD"]),
        ("lgpd", "nl", ["de Autoridade Nacional de Proteção de Dados (ANPD)", "de Gegevensbeschermingsautoriteit (GBA)"],
         ["ICO", "California"]),
    ],
)
def test_the_report_names_where_to_complain_as_the_letters_do_for_the_requests_regime(tmp_path, regime, language, named, not_named):
    """Its regime's authority, and the Belgian one (the controller's), in the subject's language."""
    request = request_in_status("in_progress", regime=regime, language=language)

    report = render_report(tmp_path, request, list(selectors.export_sources()))

    for authority in named:
        assert authority in report
    for authority in not_named:
        assert authority not in report
