"""A package's report cites the law of the request's regime for the right it answers, not the GDPR's articles for
every request: the UK GDPR's, the California Civil Code's or the LGPD's, as the letters cite the subject's own law
(wording.CITATIONS)."""

import os

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from requests_app import selectors
from requests_app.exports.package import PackageWriter
from requests_app.models import ExportKind, SourceCategory
from tests.exports.test_report_language import make_source, report_of
from tests.factories import request_in_status

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("export_settings")]

CONFIRMS = "This package confirms that we process personal data about you, gives you a copy of it, and explains how we use it"
NOTHING_FOUND = "We found no personal data about you in the systems we searched"
PORTABLE = (
    "This package holds the data you gave us or that your use of our services produced, in structured, "
    "machine-readable formats (JSON lines and CSV), so you can take it to another service"
)
NOTHING_PORTABLE = "We found no data that the right to data portability covers in the systems we searched"
LEFT_OUT = (
    "The right to data portability does not cover these kinds of data, so they are not in this package; you may "
    "receive a copy of them by asking for access"
)
MASKED = "To protect the rights of others"


@pytest.fixture(autouse=True)
def sources(db):
    """billing, with the subject's own data; weblogs, which a portability package leaves out (not their own data)."""
    make_source("billing")
    SourceCategory.objects.filter(source=make_source("weblogs")).update(portable=False)


def report(folder, regime: str, kind: str, *, records: bool = True) -> str:
    """The report of a package of `kind` for a request under `regime`, each source giving one record (or none)."""
    folder.mkdir()
    os.makedirs(settings.EXPORT_WORK_DIR, exist_ok=True)
    request = request_in_status("in_progress", regime=regime)
    request.identities.update(verified_at=timezone.now())
    writer = PackageWriter(str(folder / "package.zip"), request=request, kind=kind)
    sources = list(selectors.export_sources())
    for source in sources:
        lines = b"note\nA record\n" if records else b"note\n"
        writer.add_source(source, manual_upload=SimpleUploadedFile("extract.csv", lines))
    return report_of(writer, sources)


@pytest.mark.parametrize(
    "regime, access",
    [
        ("uk_gdpr", "UK GDPR Art. 15"),
        ("ccpa", "Cal. Civ. Code § 1798.110"),
        ("lgpd", "LGPD (Lei 13.709/2018) Art. 18 and 19"),
    ],
)
def test_an_access_report_cites_the_law_of_the_requests_regime(tmp_path, regime, access):
    found = report(tmp_path / "found", regime, ExportKind.ACCESS)
    empty = report(tmp_path / "empty", regime, ExportKind.ACCESS, records=False)

    assert f"{CONFIRMS} ({access})." in found
    assert f"{NOTHING_FOUND} ({access})." in empty
    for text in (found, empty):
        assert "(GDPR Art." not in text


@pytest.mark.parametrize(
    "regime, access, portability",
    [
        ("uk_gdpr", "UK GDPR Art. 15", "UK GDPR Art. 20"),
        ("ccpa", "Cal. Civ. Code § 1798.110", "Cal. Civ. Code § 1798.130"),
        ("lgpd", "LGPD (Lei 13.709/2018) Art. 18 and 19", "LGPD (Lei 13.709/2018) Art. 18, V"),
    ],
)
def test_a_portability_report_cites_the_law_of_the_requests_regime(tmp_path, regime, access, portability):
    found = report(tmp_path / "found", regime, ExportKind.PORTABILITY)
    empty = report(tmp_path / "empty", regime, ExportKind.PORTABILITY, records=False)

    assert f"{PORTABLE} ({portability})." in found
    assert f"{LEFT_OUT} ({access}):" in found
    assert f"{NOTHING_PORTABLE} ({portability}); the data it does not cover" in empty
    for text in (found, empty):
        assert "(GDPR Art." not in text


@pytest.mark.parametrize(
    "regime, citation",
    [("gdpr", " (GDPR Art. 15(4))"), ("uk_gdpr", " (UK GDPR Art. 15(4))"), ("ccpa", " (Cal. Civ. Code § 1798.145)"), ("lgpd", "")],
)
def test_the_masking_of_other_peoples_data_cites_the_regimes_law_where_it_has_one(tmp_path, regime, citation):
    SourceCategory.objects.filter(source__slug="billing").update(masked_fields="note")

    text = report(tmp_path / "masked", regime, ExportKind.ACCESS)

    assert f"{MASKED}{citation}, we masked details that identify other people" in text


def test_a_gdpr_report_reads_as_before(tmp_path):
    access = report(tmp_path / "access", "gdpr", ExportKind.ACCESS)
    portability = report(tmp_path / "portability", "gdpr", ExportKind.PORTABILITY)
    empty = report(tmp_path / "empty", "gdpr", ExportKind.ACCESS, records=False)

    assert f"{CONFIRMS} (GDPR Art. 15)." in access
    assert f"{PORTABLE} (GDPR Art. 20)." in portability
    assert f"{LEFT_OUT} (GDPR Art. 15):" in portability
    assert f"{NOTHING_FOUND} (GDPR Art. 15)." in empty
