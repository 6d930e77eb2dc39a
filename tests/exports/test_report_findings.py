"""The access report answers Art. 15(1)'s first question, whether we process data about the subject at
all: a package without records says nothing was found, and only the sources that held data are described
as processing the subject's data."""

import datetime
import json
import os
import zipfile

import pytest
import time_machine
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from requests_app import selectors
from requests_app.exports.package import PackageWriter
from requests_app.models import DataCategory, ExportKind, LegalBasis, Recipient, SourceCategory, SourceSystem
from tests.exports.test_report_language import make_source, report_of
from tests.factories import request_in_status

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("export_settings")]

CONFIRMS = "This package confirms that we process personal data about you"
NOTHING_FOUND = "We found no personal data about you in the systems we searched (GDPR Art. 15)."
SEARCHED_EMPTY = "We searched these systems and found no data about you in them:"


def extract(*lines: str) -> SimpleUploadedFile:
    return SimpleUploadedFile("extract.csv", "\n".join(["note", *lines, ""]).encode())


@pytest.fixture
def writer(tmp_path):
    """An access package for a request whose email address (not its phone number) is verified."""
    os.makedirs(settings.EXPORT_WORK_DIR, exist_ok=True)
    request = request_in_status("in_progress")
    request.identities.update(verified_at=timezone.now())
    return PackageWriter(str(tmp_path / "package.zip"), request=request, kind=ExportKind.ACCESS)


def test_a_package_without_records_says_nothing_was_found_and_describes_no_processing(writer):
    billing = make_source("billing")
    phones = make_source("phones")
    phones.identity_kind = "phone"
    phones.save(update_fields=["identity_kind"])
    writer.add_source(billing, manual_upload=extract())  # searched: the extract holds no record
    writer.add_source(phones, manual_upload=extract("A record"))  # no verified phone number: not searched

    report = report_of(writer, list(selectors.export_sources()))

    assert NOTHING_FOUND in report
    assert CONFIRMS not in report
    assert f"{SEARCHED_EMPTY}</p>\n<ul><li>System billing</li></ul>" in report
    assert "We did not search these systems:</p>\n<ul><li>System phones: no verified phone number</li></ul>" in report
    assert "How we process your data" not in report
    for text in ("billing purposes", "billing retention", "phones purposes"):
        assert text not in report
    # The rights and the authority are still given: they do not depend on what was found.
    assert "You have the right to lodge a complaint with a supervisory authority" in report


def test_a_portability_package_without_records_says_nothing_was_found(tmp_path):
    os.makedirs(settings.EXPORT_WORK_DIR, exist_ok=True)
    request = request_in_status("in_progress")
    request.identities.update(verified_at=timezone.now())
    writer = PackageWriter(str(tmp_path / "package.zip"), request=request, kind=ExportKind.PORTABILITY)
    writer.add_source(make_source("billing"), manual_upload=extract())

    report = report_of(writer, list(selectors.export_sources()))

    assert "We found no data that you gave us or that your use of our services produced in the systems we searched" in report
    assert "This package holds the data you gave us" not in report


def test_a_package_with_records_confirms_and_describes_only_the_sources_that_held_data(writer):
    billing = make_source("billing")
    crm = make_source("crm")
    SourceCategory.objects.filter(source=crm).update(masked_fields="note")
    writer.add_source(billing, manual_upload=extract("An invoice"))
    writer.add_source(crm, manual_upload=extract())

    report = report_of(writer, list(selectors.export_sources()))

    assert CONFIRMS in report
    assert NOTHING_FOUND not in report
    assert "How we process your data" in report
    assert "billing purposes" in report and "billing retention" in report
    assert "crm purposes" not in report
    assert f"{SEARCHED_EMPTY}</p>\n<ul><li>System crm</li></ul>" in report
    # No record of crm's was masked: the report does not say one was.
    assert "Other people's data" not in report


def portability_writer(tmp_path) -> PackageWriter:
    os.makedirs(settings.EXPORT_WORK_DIR, exist_ok=True)
    request = request_in_status("in_progress")
    request.identities.update(verified_at=timezone.now())
    return PackageWriter(str(tmp_path / "package.zip"), request=request, kind=ExportKind.PORTABILITY)


def test_a_portability_package_leaves_out_data_processed_on_another_basis_than_consent_or_a_contract(tmp_path):
    """The QA's case: 500 call records kept under a legal obligation were in a portability package, as their
    category was ticked portable (the default); Art. 20(1)(a) covers only consent and contract."""
    billing = make_source("billing")
    calls = make_source("calls")
    calls.legal_basis = LegalBasis.LEGAL_OBLIGATION
    calls.save(update_fields=["legal_basis"])
    writer = portability_writer(tmp_path)
    writer.add_source(billing, manual_upload=extract("An invoice"))
    writer.add_source(calls, manual_upload=extract("A call"))

    report = report_of(writer, list(selectors.export_sources()))

    with zipfile.ZipFile(writer.path) as package:
        names = package.namelist()
        manifest = json.loads(package.read("manifest.json"))
    assert "data/billing/records.jsonl" in names
    assert not [name for name in names if name.startswith("data/calls/")]
    assert manifest["categories_left_out"] == [
        {"source": "calls", "name": "System calls", "category": "other", "reason": "legal_basis_not_portable", "legal_basis": "legal_obligation"}
    ]
    assert (
        "<li>System calls, Other: we process it on another legal basis than your consent or a contract: "
        "legal obligation (Art. 6(1)(c))</li>" in report
    )
    assert "you may receive a copy of them by asking for access" in report


def test_a_portability_package_says_a_category_not_provided_by_the_subject_is_left_out(tmp_path):
    billing = make_source("billing")
    SourceCategory.objects.filter(source=billing).update(portable=False)
    writer = portability_writer(tmp_path)
    writer.add_source(billing, manual_upload=extract("An invoice"))

    report = report_of(writer, list(selectors.export_sources()))

    assert "<li>System billing, Other: it is not data you gave us or that your use of our services produced</li>" in report


def test_a_portability_report_does_not_say_no_data_was_found_in_a_source_whose_data_was_left_out(demo_request, tmp_path):
    """The QA's case: sources whose categories were only left out of the package were listed as searched and
    holding no data about the subject, and then as left out. Left out in part (the CRM's contacts, while its
    portable category is empty) is not "no data about you" either: the left-out paragraph alone names them."""
    crm = SourceSystem.objects.get(slug="crm")
    crm.categories.filter(slug="contacts").update(portable=False)
    SourceCategory.objects.create(
        source=crm, slug="preferences", category=DataCategory.OTHER,
        query="SELECT name FROM customers WHERE lower(email) IN :identities AND 1 = 0",
    )
    make_source("billing")  # on a contract, portable: searched, and nothing found
    sources = list(selectors.export_sources())
    os.makedirs(settings.EXPORT_WORK_DIR, exist_ok=True)
    writer = PackageWriter(str(tmp_path / "package.zip"), request=demo_request, kind=ExportKind.PORTABILITY)
    for source in sources:
        writer.add_source(source, manual_upload=extract() if source.slug == "billing" else None)

    report = report_of(writer, sources)

    assert writer.rows_found[("crm", "preferences")] == 0
    # Nor does the opening say no data the subject gave or produced was found: some was not read.
    assert "We found no data that you gave us" not in report
    assert "We found no data that the right to data portability covers in the systems we searched (GDPR Art. 20)" in report
    assert {item["source"] for item in writer.left_out} == {"crm", "weblogs", "cdr"}
    assert f"{SEARCHED_EMPTY}</p>\n<ul><li>System billing</li></ul>" in report
    assert "<li>Customer contacts (CRM), Contact information: it is not data you gave us" in report
    assert "<li>Website connection logs, Website connection data: we process it on another legal basis" in report


def test_an_access_package_holds_every_category_whatever_its_legal_basis(writer):
    calls = make_source("calls")
    calls.legal_basis = LegalBasis.LEGAL_OBLIGATION
    calls.save(update_fields=["legal_basis"])
    writer.add_source(calls, manual_upload=extract("A call"))

    report = report_of(writer, list(selectors.export_sources()))

    assert writer.rows_found[("calls", "records")] == 1
    assert writer.left_out == []
    assert "portability does not cover" not in report


@pytest.mark.parametrize("password", [None, "a password"])
def test_every_entry_is_dated_when_reading_the_sources_began_in_brussels_time(tmp_path, password):
    """Every data file was dated 1980-01-01 (a member opened by name gets the DOS epoch): extracted, a
    subject's data looked 46 years old. A ZIP date has no time zone; unzip tools read it as local time."""
    os.makedirs(settings.EXPORT_WORK_DIR, exist_ok=True)
    request = request_in_status("in_progress")
    request.identities.update(verified_at=timezone.now())
    with time_machine.travel(datetime.datetime(2026, 7, 1, 10, 0, 0, tzinfo=datetime.UTC), tick=False):
        writer = PackageWriter(str(tmp_path / "package.zip"), request=request, kind=ExportKind.ACCESS, password=password)
        writer.add_source(make_source("billing"), manual_upload=extract("An invoice"))
        writer.finish(list(selectors.export_sources()))

    with zipfile.ZipFile(writer.path) as package:
        dates = {info.filename: info.date_time for info in package.infolist()}
        compressions = {info.compress_type for info in package.infolist()}
    assert "data/billing/records.csv" in dates and "manifest.json" in dates
    assert compressions == ({zipfile.ZIP_DEFLATED} if password is None else {99})  # 99: AES, around deflate
    assert set(dates.values()) == {(2026, 7, 1, 12, 0, 0)}  # Brussels summer time: UTC + 2


def test_the_report_and_the_manifest_give_the_moment_the_entries_are_dated_when_reading_began(tmp_path):
    """One date per package: the entries were dated when reading began, the report and the manifest said when it
    ended. An entry's date is written before the end is known, so all three give the start, and say it is."""
    os.makedirs(settings.EXPORT_WORK_DIR, exist_ok=True)
    request = request_in_status("in_progress")
    request.identities.update(verified_at=timezone.now())
    with time_machine.travel(datetime.datetime(2026, 7, 1, 10, 0, 3, 700_000, tzinfo=datetime.UTC), tick=False) as clock:
        writer = PackageWriter(str(tmp_path / "package.zip"), request=request, kind=ExportKind.ACCESS)
        writer.add_source(make_source("billing"), manual_upload=extract("An invoice"))
        clock.move_to(datetime.datetime(2026, 7, 1, 10, 7, 0, tzinfo=datetime.UTC))  # a long read
        report = report_of(writer, list(selectors.export_sources()))

    with zipfile.ZipFile(writer.path) as package:
        dates = {info.date_time for info in package.infolist()}
        manifest = json.loads(package.read("manifest.json"))
    # A ZIP entry's date counts seconds in twos: the moment is taken to the even second, everywhere.
    assert dates == {(2026, 7, 1, 12, 0, 2)}
    assert manifest["reading_started_at"] == "2026-07-01T12:00:02.000000+02:00"  # Brussels time, as the API writes times
    assert "We began reading the data from our systems on 1 July 2026, 12:00 CEST; each file in this package bears that date." in report
    assert "12:07" not in report


TRANSFER_SAFEGUARDS = "When we transfer data outside the EU/EEA, we rely on the European Commission's standard contractual clauses"


def test_the_report_speaks_of_transfer_safeguards_only_where_it_lists_a_transfer(writer):
    """"…or another safeguard named above" read as if one were, above a list of recipients none outside the EU/EEA."""
    billing = make_source("billing")
    Recipient.objects.create(source=billing, name="Print shop", country="Belgium")
    writer.add_source(billing, manual_upload=extract("An invoice"))

    report = report_of(writer, list(selectors.export_sources()))

    assert "Print shop (Belgium)" in report
    assert TRANSFER_SAFEGUARDS not in report


def test_the_report_speaks_of_transfer_safeguards_where_a_recipient_outside_the_eu_is_listed(writer):
    billing = make_source("billing")
    Recipient.objects.create(source=billing, name="Cloud host", country="India", third_country=True, safeguards="EU standard contractual clauses")
    writer.add_source(billing, manual_upload=extract("An invoice"))

    report = report_of(writer, list(selectors.export_sources()))

    assert "Cloud host (India, outside the EU/EEA; safeguards: EU standard contractual clauses)" in report
    assert TRANSFER_SAFEGUARDS in report


def test_the_report_speaks_of_no_transfer_of_a_source_that_held_no_data(writer):
    """Only the sources that held data are described: a transfer of another's is not listed, so not spoken of."""
    billing, crm = make_source("billing"), make_source("crm")
    Recipient.objects.create(source=crm, name="Cloud host", country="India", third_country=True)
    writer.add_source(billing, manual_upload=extract("An invoice"))
    writer.add_source(crm, manual_upload=extract())

    report = report_of(writer, list(selectors.export_sources()))

    assert "Cloud host" not in report and TRANSFER_SAFEGUARDS not in report
