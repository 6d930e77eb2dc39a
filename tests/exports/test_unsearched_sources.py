"""A package that left sources unsearched says so on the staff pages: its progress counts the sources searched, not
those it went through ("0 rows, 3/3 sources" read as three searched and found empty), and its page warns before the
release when the subject gave an identifier of a kind that would have had one searched, once verified."""

import html

import pytest
from django.urls import reverse

from requests_app.audit import Actor
from requests_app.models import ExportStatus, IdentityKind, SubjectIdentity
from requests_app.services.exports import compile_export, export_release, export_start
from tests.conftest import login_staff
from tests.factories import UserFactory

pytestmark = pytest.mark.usefixtures("export_settings")

WARNING = "Not searched for want of a verified identifier, though the subject gave one of that kind:"


@pytest.fixture
def dpo(db):
    return UserFactory(username="dpo-unsearched", is_superuser=True)


def compiled(request):
    export = export_start(request=request, actor=Actor.system())
    compile_export(export_id=export.id)
    export.refresh_from_db()
    assert export.status == ExportStatus.READY
    return export


def pages(client, dpo, export) -> tuple[str, str]:
    login_staff(client, dpo)
    request_page = client.get(reverse("staff:request", args=[export.request.reference])).content.decode()
    export_page = client.get(reverse("staff:export", args=[export.public_id])).content.decode()
    return html.unescape(request_page), html.unescape(export_page)


def test_a_package_that_searched_one_source_of_three_says_so_and_warns_before_its_release(client, dpo, demo_request):
    """The phone number and the IP address the subject gave are not verified: only the CRM is searched."""
    SubjectIdentity.objects.filter(request=demo_request, kind__in=[IdentityKind.PHONE, IdentityKind.IP_ADDRESS]).update(verified_at=None)
    export = compiled(demo_request)
    assert export.progress["sources_total"] == 3

    request_page, export_page = pages(client, dpo, export)
    assert "1 row, 1 of 3 sources searched" in request_page and "3/3 sources" not in request_page
    assert "1 row, 1 of 3 sources searched" in export_page
    warning = (
        f"{WARNING} Call detail records (phone number), Website connection logs (IP address). Verify it, if it is not yet, "
        "and compile the package again before you release it"
    )
    assert warning in export_page
    assert export_page.index(warning) < export_page.index("Release to the subject")

    export_release(export=export, actor=Actor.staff(dpo))
    assert WARNING not in pages(client, dpo, export)[1]  # released: nothing left to do before it


def test_a_source_whose_kind_of_identifier_the_subject_never_gave_brings_no_warning(client, dpo, demo_request):
    SubjectIdentity.objects.filter(request=demo_request, kind=IdentityKind.IP_ADDRESS).delete()
    export = compiled(demo_request)

    request_page, export_page = pages(client, dpo, export)
    assert "rows, 2 of 3 sources searched" in request_page
    assert "Not searched: Website connection logs (no verified IP address)" in export_page
    assert WARNING not in export_page


def test_a_package_that_searched_every_source_counts_them_as_before(client, dpo, demo_request):
    export = compiled(demo_request)
    request_page, export_page = pages(client, dpo, export)
    assert "rows, 3/3 sources" in request_page
    assert WARNING not in export_page
