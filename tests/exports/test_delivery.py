"""Delivery to the subject: release, the download link on the status page,
the download limit, expiry, tampered and misdirected links, who may release,
and deleting expired packages."""

import datetime
import hashlib
import html
import re

import pytest
import time_machine
from django.core import mail
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import formats, timezone

from requests_app.audit import Actor
from requests_app.models import AuditEvent, ExportPackage, ExportStatus, PrivacyRequest, Status
from requests_app.services.exports import (
    compile_export,
    delete_expired_exports,
    download_token,
    export_release,
    export_start,
)
from requests_app.sms import LocmemBackend
from tests.conftest import login_staff
from tests.exports.support import open_package, stored_bytes, subject_download
from tests.factories import UserFactory, request_in_status, staff_in_role

pytestmark = pytest.mark.usefixtures("export_settings")

DOWNLOAD_LINK = re.compile(r'href="(/[^"]*/download/[^"]+/)"')


@pytest.fixture
def dpo(db):
    return UserFactory(username="dpo-delivery", is_superuser=True)


@pytest.fixture
def ready_export(demo_request, settings):
    settings.EXPORT_MAX_DOWNLOADS = 2
    export = export_start(request=demo_request, actor=Actor.system())
    compile_export(export_id=export.id)
    export.refresh_from_db()
    assert export.status == ExportStatus.READY
    return export


@pytest.fixture
def released(ready_export, dpo):
    return export_release(export=ready_export, actor=Actor.staff(dpo))


def status_page(client, request: PrivacyRequest) -> str:
    response = client.get(reverse("status", args=[request.reference, request.secret]))
    assert response.status_code == 200
    return response.content.decode()


def download_links(client, request: PrivacyRequest) -> list[str]:
    return [html.unescape(link) for link in DOWNLOAD_LINK.findall(status_page(client, request))]


def the_download_link(client, request: PrivacyRequest) -> str:
    links = download_links(client, request)
    assert len(links) == 1, links
    return links[0]


def fetch(client, url: str):
    """GET `url`; returns (status, body bytes, response).

    Reading a streamed response to the end makes the test client close it
    (and the stored file), without closing the test's database connection.
    """
    response = client.get(url)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response.status_code, body, response


def downloaded_events(request):
    return list(AuditEvent.objects.filter(request=request, action="export_downloaded").order_by("sequence"))


def test_release_makes_the_package_downloadable_from_the_status_page(released, demo_request, client):
    status, body, response = fetch(client, the_download_link(client, demo_request))

    assert status == 200
    assert body == stored_bytes(released.storage_name)
    assert hashlib.sha256(body).hexdigest() == released.sha256
    assert response["Content-Type"] == "application/zip"
    assert f'filename="{demo_request.reference}-access.zip"' in response["Content-Disposition"]
    assert response["Content-Disposition"].startswith("attachment")
    released.refresh_from_db()
    assert released.download_count == 1
    assert [event.data for event in downloaded_events(demo_request)] == [{"export": str(released.public_id), "count": 1}]
    page = status_page(client, demo_request)
    assert "1 download left" in page and "Your data is ready: you can download it from this page." in page
    # The moment it expires, not only the day: the email and the page say the same.
    from django.utils import formats, timezone

    expires = formats.date_format(timezone.localtime(released.expires_at), "DATETIME_FORMAT")
    assert f"available until {expires}; 1 download left." in page
    from requests_app import emails

    mail.outbox.clear()
    emails.send_export_ready_email(released)
    assert f"before {expires}" in mail.outbox[0].body


@pytest.mark.parametrize(
    ("kind", "rows", "subject", "said"),
    [
        ("access", 0, "Our answer to your access request", "we found no personal data about you in the systems we searched"),
        ("access", 150, "Your data for request", "The copy of your data for request"),
        (
            "portability",
            0,
            "Our answer to your data portability request",
            "we found no data that you gave us or that your use of our services produced in the systems we searched",
        ),
        ("portability", 150, "Your data for request", "The copy of your data for request"),
    ],
)
def test_the_ready_email_says_no_data_was_found_only_for_a_package_without_records(released, kind, rows, subject, said):
    """Art. 15(1) and 20: the answer may be that we hold nothing (that they provided), and the email
    must not announce "your data" then; nor say "no data about you" when only portable data was searched."""
    from requests_app import emails

    ExportPackage.objects.filter(pk=released.pk).update(kind=kind, manifest={**released.manifest, "rows": rows})
    released.refresh_from_db()
    mail.outbox.clear()
    emails.send_export_ready_email(released)

    (message,) = mail.outbox
    html_body = message.alternatives[0][0]
    assert message.subject.startswith(subject)
    assert said in message.body and said in html_body
    others = {"we found no personal data about you", "we found no data that you gave us", "The copy of your data"}
    for other in others - {phrase for phrase in others if phrase in said}:
        assert other not in message.body and other not in html_body


NOTHING_FOUND_ABOUT_YOU = "we found no personal data about you in the systems we searched."
NOTHING_YOU_GAVE_US_FOUND = "we found no data that you gave us or that your use of our services produced in the systems we searched."


@pytest.mark.parametrize(
    ("kind", "said", "other", "link"),
    [
        ("access", NOTHING_FOUND_ABOUT_YOU, NOTHING_YOU_GAVE_US_FOUND, "Download our answer: Access (Art. 15)"),
        ("portability", NOTHING_YOU_GAVE_US_FOUND, NOTHING_FOUND_ABOUT_YOU, "Download our answer: Portability (Art. 20)"),
    ],
)
def test_the_status_page_offers_our_answer_not_your_data_when_the_package_found_nothing(
    released, demo_request, client, kind, said, other, link
):
    """As the ready email: an empty portability package searched only what the subject gave us (Art. 20),
    and must not tell them we hold no data about them at all."""
    ExportPackage.objects.filter(pk=released.pk).update(kind=kind, manifest={**released.manifest, "rows": 0})
    page = status_page(client, demo_request)
    assert f"Our answer is ready: {said}" in page
    assert other not in page
    assert link in page
    assert "Your data is ready" not in page and "Download your data" not in page


def test_the_status_page_says_no_data_about_you_was_found_when_both_empty_packages_are_ready(released, demo_request, client):
    """An access package that found nothing answers for the portable data too: saying only that
    nothing they gave us was found would say less than we know."""
    ExportPackage.objects.filter(pk=released.pk).update(manifest={**released.manifest, "rows": 0})
    released.refresh_from_db()
    ExportPackage.objects.create(
        request=demo_request, kind="portability", status=ExportStatus.RELEASED, released_at=released.released_at,
        expires_at=released.expires_at, storage_name=released.storage_name, size=released.size, manifest=released.manifest,
    )
    page = status_page(client, demo_request)
    assert "Download our answer: Access (Art. 15)" in page and "Download our answer: Portability (Art. 20)" in page
    assert f"Our answer is ready: {NOTHING_FOUND_ABOUT_YOU}" in page
    assert NOTHING_YOU_GAVE_US_FOUND not in page


# A portability package that found nothing portable, and left out the call records it did not read.
LEFT_OUT = [{"source": "cdr", "name": "Call records", "category": "communications", "reason": "legal_basis", "legal_basis": "legal_obligation"}]
NOTHING_PORTABLE_FOUND = "we found no data that the right to data portability covers in the systems we searched."


def test_the_ready_email_and_the_status_page_do_not_say_none_was_given_when_data_was_left_out(released, demo_request, client):
    """The package's report says it: data left out was not read, so some of it may be what the subject gave us
    or their use produced; "no data that you gave us" would claim too much."""
    from requests_app import emails

    manifest = {**released.manifest, "rows": 0, "categories_left_out": LEFT_OUT}
    ExportPackage.objects.filter(pk=released.pk).update(kind="portability", manifest=manifest)
    released.refresh_from_db()
    mail.outbox.clear()
    emails.send_export_ready_email(released)

    (message,) = mail.outbox
    html_body = message.alternatives[0][0]
    for body in (message.body, html_body):
        assert NOTHING_PORTABLE_FOUND in body
        assert "the data that right does not cover, which we did not read" in body
        assert "we found no data that you gave us" not in body
    page = status_page(client, demo_request)
    assert f"Our answer is ready: {NOTHING_PORTABLE_FOUND} You can download it, with the list of the systems searched and " in page
    assert NOTHING_YOU_GAVE_US_FOUND not in page and NOTHING_FOUND_ABOUT_YOU not in page


def test_release_emails_the_subject_without_the_link(
    ready_export, demo_request, dpo, settings, django_capture_on_commit_callbacks
):
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        export_release(export=ready_export, actor=Actor.staff(dpo))
    ready_export.refresh_from_db()
    assert ready_export.status == ExportStatus.RELEASED
    assert ready_export.expires_at == ready_export.released_at + settings.EXPORT_LINK_LIFETIME
    sent = [message for message in mail.outbox if demo_request.subject_email in message.to]
    assert len(sent) == 1
    assert download_token(ready_export).split(":")[0] not in sent[0].body
    assert "/download/" not in sent[0].body
    assert LocmemBackend.outbox == []  # no password for an unencrypted package


def test_a_package_is_not_downloadable_before_release(ready_export, demo_request, client):
    assert download_links(client, demo_request) == []
    url = reverse("download", args=[demo_request.reference, demo_request.secret, download_token(ready_export)])
    status, body, _ = fetch(client, url)
    assert status == 410
    ready_export.refresh_from_db()
    assert ready_export.download_count == 0
    assert downloaded_events(demo_request) == []


def test_a_used_up_link_of_a_closed_request_says_to_make_a_new_request(released, demo_request, client, settings):
    """A closed request's page has no message form: "write to us there" sent the subject to a dead end."""
    link = the_download_link(client, demo_request)
    type(demo_request).objects.filter(pk=demo_request.pk).update(status="completed")
    type(released).objects.filter(pk=released.pk).update(download_count=settings.EXPORT_MAX_DOWNLOADS)

    status, body, _ = fetch(client, link)

    assert status == 410
    assert "If you need a new copy, make a new request." in body.decode() and "Write to us there" not in body.decode()


def test_a_head_request_does_not_use_up_a_download(released, demo_request, client):
    """Link checkers and proxies send HEAD: it must not count, or the subject loses downloads."""
    assert client.head(the_download_link(client, demo_request)).status_code == 405
    released.refresh_from_db()
    assert released.download_count == 0
    assert downloaded_events(demo_request) == []


def test_a_package_whose_file_cannot_be_opened_uses_no_download(released, demo_request, client):
    """The storage lost it, or is down: the subject is told, and keeps their download for when it is back."""
    link = the_download_link(client, demo_request)
    default_storage.delete(released.storage_name)

    status, body, _ = fetch(client, link)

    assert status == 410 and "This package is not available for download." in body.decode()
    released.refresh_from_db()
    assert released.download_count == 0 and downloaded_events(demo_request) == []


def test_a_download_counted_sends_the_package_even_if_its_file_is_deleted_next(released, demo_request):
    """A withdrawal, or the clean-up, ending the package right after the count commits deletes its file: the
    download already holds it open, and sends it whole."""
    whole = default_storage.open(released.storage_name, "rb").read()
    export, package_file = subject_download(released)
    default_storage.delete(export.storage_name)
    with package_file:
        assert package_file.read() == whole


def test_each_download_counts_and_the_third_one_is_refused(released, demo_request, client):
    link = the_download_link(client, demo_request)
    for expected_count in (1, 2):
        status, body, _ = fetch(client, link)
        assert status == 200 and body.startswith(b"PK")
        released.refresh_from_db()
        assert released.download_count == expected_count
        assert len(downloaded_events(demo_request)) == expected_count

    status, body, _ = fetch(client, link)

    assert status == 410
    assert "its download limit was reached" in body.decode()
    assert "Write to us there if you need a new copy." in body.decode()  # the request is open: its page has the form
    released.refresh_from_db()
    assert released.download_count == 2
    assert [event.data["count"] for event in downloaded_events(demo_request)] == [1, 2]
    assert download_links(client, demo_request) == []  # the status page stops offering it, and says why
    assert (
        "The copy of your data we made available can no longer be downloaded: it was downloaded as many times as allowed. "
        "If you still need it, write to us below." in status_page(client, demo_request)
    )


def test_the_link_expires_after_the_link_lifetime(released, demo_request, client, settings):
    link = the_download_link(client, demo_request)
    with time_machine.travel(timezone.now() + settings.EXPORT_LINK_LIFETIME + datetime.timedelta(minutes=1)):
        status, body, _ = fetch(client, link)
        assert download_links(client, demo_request) == []
    assert status == 410
    assert "expired" in body.decode()
    released.refresh_from_db()
    assert released.download_count == 0
    assert downloaded_events(demo_request) == []


def test_a_link_taken_just_before_expiry_stops_working_at_expiry(released, demo_request, client, settings):
    expires_at = released.expires_at
    with time_machine.travel(expires_at - datetime.timedelta(minutes=1)):
        link = the_download_link(client, demo_request)  # a freshly signed token
    with time_machine.travel(expires_at + datetime.timedelta(minutes=1)):
        status, body, _ = fetch(client, link)
    assert status == 410
    assert "expired" in body.decode()
    released.refresh_from_db()
    assert released.download_count == 0


def test_a_tampered_token_is_refused(released, demo_request, client):
    token = download_token(released)
    last = token[-1]
    tampered = token[:-1] + ("A" if last != "A" else "B")
    url = reverse("download", args=[demo_request.reference, demo_request.secret, tampered])

    status, body, _ = fetch(client, url)

    assert status == 410
    assert "This download link is not valid." in body.decode()
    released.refresh_from_db()
    assert released.download_count == 0
    assert downloaded_events(demo_request) == []


def test_another_requests_secret_is_not_found(released, demo_request, client):
    other = request_in_status(Status.IN_PROGRESS, subject_email="someone.else@example.com")
    token = download_token(released)

    wrong_secret = reverse("download", args=[demo_request.reference, other.secret, token])
    assert fetch(client, wrong_secret)[0] == 404
    # The other request's own, valid status link with this package's token: not its package.
    other_request = reverse("download", args=[other.reference, other.secret, token])
    status, body, _ = fetch(client, other_request)
    assert status == 410

    released.refresh_from_db()
    assert released.download_count == 0
    assert downloaded_events(demo_request) == [] and downloaded_events(other) == []


def test_a_handler_not_assigned_cannot_release(ready_export, demo_request, client):
    handler = staff_in_role("Handler", username="handler-not-assigned")
    login_staff(client, handler)
    release_url = reverse("staff:export_action", args=[ready_export.public_id, "release"])

    response = client.post(release_url)

    assert response.status_code == 403
    ready_export.refresh_from_db()
    assert ready_export.status == ExportStatus.READY and ready_export.released_at is None
    assert not AuditEvent.objects.filter(request=demo_request, action="export_released").exists()

    PrivacyRequest.objects.filter(pk=demo_request.pk).update(assignee=handler)
    response = client.post(release_url)

    assert response.status_code == 302
    ready_export.refresh_from_db()
    assert ready_export.status == ExportStatus.RELEASED and ready_export.released_by == handler


def test_delete_expired_exports_deletes_the_file_and_marks_the_export_expired(
    released, demo_request, client, settings, django_capture_on_commit_callbacks
):
    name = released.storage_name
    with django_capture_on_commit_callbacks(execute=True):
        assert delete_expired_exports() == 0  # not yet expired
    assert default_storage.exists(name)

    later = timezone.now() + settings.EXPORT_LINK_LIFETIME + datetime.timedelta(minutes=1)
    with django_capture_on_commit_callbacks(execute=True):
        assert delete_expired_exports(now=later) == 1

    assert not default_storage.exists(name)
    released.refresh_from_db()
    assert released.status == ExportStatus.EXPIRED
    deleted = AuditEvent.objects.filter(request=demo_request, action="export_deleted")
    assert [event.data for event in deleted] == [{"export": str(released.public_id)}]
    url = reverse("download", args=[demo_request.reference, demo_request.secret, download_token(released)])
    assert fetch(client, url)[0] == 410
    with django_capture_on_commit_callbacks(execute=True):
        assert delete_expired_exports(now=later) == 0  # once only


def test_a_used_up_package_is_deleted_without_waiting_for_expiry(
    released, demo_request, client, django_capture_on_commit_callbacks
):
    link = the_download_link(client, demo_request)
    assert [fetch(client, link)[0] for _ in range(2)] == [200, 200]
    with django_capture_on_commit_callbacks(execute=True):
        assert delete_expired_exports() == 1
    assert not default_storage.exists(released.storage_name)
    assert ExportPackage.objects.get(pk=released.pk).status == ExportStatus.EXPIRED


def test_a_package_deleted_unreleased_is_not_called_spent_on_the_status_page(
    ready_export, demo_request, client, settings, django_capture_on_commit_callbacks
):
    """Never reviewed in time (or its right refused): the subject was never offered it, so nothing of theirs expired."""
    later = timezone.now() + settings.EXPORT_UNRELEASED_LIFETIME + datetime.timedelta(minutes=1)
    with django_capture_on_commit_callbacks(execute=True):
        assert delete_expired_exports(now=later) == 1
    assert ExportPackage.objects.get(pk=ready_export.pk).status == ExportStatus.EXPIRED
    assert "can no longer be downloaded" not in status_page(client, demo_request)


def test_a_withdrawn_request_hands_out_no_data(released, demo_request, client, django_capture_on_commit_callbacks):
    """Released before the subject withdrew: the link stops working, and the package is deleted with the withdrawal."""
    from requests_app import lifecycle

    link = the_download_link(client, demo_request)
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.transition(demo_request, "withdraw", actor=Actor.subject())
    assert not default_storage.exists(released.storage_name)

    status, _, _ = fetch(client, link)
    assert status == 410
    assert download_links(client, demo_request) == []
    assert delete_expired_exports() == 0  # nothing left for the hourly clean-up


def test_a_refused_request_gets_no_package_released(ready_export, demo_request, dpo):
    from requests_app import lifecycle
    from requests_app.lifecycle import RequestError

    lifecycle.transition(demo_request, "reject", actor=Actor.staff(dpo))
    with pytest.raises(RequestError, match="refused or withdrawn"):
        export_release(export=ready_export, actor=Actor.staff(dpo))
    ready_export.refresh_from_db()
    assert ready_export.status == ExportStatus.EXPIRED and ready_export.released_at is None  # ended by the rejection


def test_the_live_progress_words_follow_the_staff_language(ready_export, demo_request, client, dpo):
    login_staff(client, dpo)
    page = client.get(reverse("staff:request", args=[demo_request.reference]), HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    # The page and the script that updates the row (export_progress) write the staff's language.
    assert re.search(r'class="export-rows">\d+ lignes?, \d+/\d+ sources</td>', page)


def _manual_source(slug, owner):
    from requests_app.models import ConnectorKind, DataCategory, SourceCategory, SourceSystem

    source = SourceSystem.objects.create(
        slug=slug, name=f"{slug.title()} archive", connector=ConnectorKind.MANUAL, identity_kind="email",
        purposes="Contracts", legal_basis="contract", retention="10 years", origin="Signed by the customer", owner=owner,
    )
    SourceCategory.objects.create(source=source, slug="contracts", category=DataCategory.OTHER)
    return source


def _upload_extract(export, source, owner) -> str:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from requests_app.services.exports import manual_task_upload

    upload = SimpleUploadedFile("scan-index.csv", b"contract,signed_on\nMOB-4471,2024-03-01\n")
    task = manual_task_upload(task=export.manual_tasks.get(source=source), actor=Actor.staff(owner), upload=upload)
    assert default_storage.exists(task.upload.name)
    return task.upload.name


def test_a_manual_extract_is_deleted_once_it_is_in_the_package(demo_request, dpo, django_capture_on_commit_callbacks):
    paper = _manual_source("paper", dpo)
    export = export_start(request=demo_request, actor=Actor.system())
    extract = _upload_extract(export, paper, dpo)
    with django_capture_on_commit_callbacks(execute=True):
        compile_export(export_id=export.id)
    export.refresh_from_db()
    assert export.status == ExportStatus.READY
    package = open_package(export)
    assert any(b"MOB-4471" in package.read(name) for name in package.namelist())  # the extract went in
    assert not default_storage.exists(extract)  # raw and unmasked: not kept beside the package
    assert export.manual_tasks.get().upload.name == ""


def test_a_manual_extract_waiting_for_a_withdrawn_request_is_deleted(demo_request, dpo, django_capture_on_commit_callbacks):
    from requests_app import lifecycle

    paper, _fax = _manual_source("paper", dpo), _manual_source("fax", dpo)
    export = export_start(request=demo_request, actor=Actor.system())
    extract = _upload_extract(export, paper, dpo)  # the fax archive's extract is still awaited
    assert ExportPackage.objects.get(pk=export.pk).status == ExportStatus.WAITING_MANUAL
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.transition(demo_request, "withdraw", actor=Actor.subject())
    assert not default_storage.exists(extract)
    assert ExportPackage.objects.get(pk=export.pk).status == ExportStatus.EXPIRED


def test_purging_a_closed_request_deletes_its_exports_and_their_extracts(demo_request, dpo, django_capture_on_commit_callbacks):
    from django.db import transaction

    from requests_app import lifecycle
    from requests_app.services.intake import purge_personal_data

    paper, _fax = _manual_source("paper", dpo), _manual_source("fax", dpo)
    stuck = export_start(request=demo_request, actor=Actor.system())
    extract = _upload_extract(stuck, paper, dpo)  # the fax archive never answered
    lifecycle.transition(demo_request, "complete", actor=Actor.system())
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        purge_personal_data(demo_request)
    assert not default_storage.exists(extract)
    assert ExportPackage.objects.get(pk=stuck.pk).status == ExportStatus.EXPIRED


@pytest.mark.parametrize("rights", [["erasure"], ["objection"], ["access"]])
def test_a_package_is_compiled_only_of_the_kinds_the_request_asks_for(client, dpo, rights):
    """A package answers a request for a copy; an erasure or an objection asks for none."""
    from requests_app.lifecycle import RequestError

    from requests_app.services.intake import RightDetails

    request = request_in_status(Status.IN_PROGRESS, rights=[RightDetails(right) for right in rights])
    login_staff(client, dpo)
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert ("Compile a data export" in page) == (rights == ["access"])
    assert '<option value="portability">' not in page
    with pytest.raises(RequestError, match="does not ask for Portability"):
        export_start(request=request, actor=Actor.staff(dpo), kind="portability")
    if rights != ["access"]:
        with pytest.raises(RequestError, match="does not ask for Access"):
            export_start(request=request, actor=Actor.staff(dpo), kind="access")
        assert not ExportPackage.objects.exists()


def test_no_package_is_compiled_before_an_identifier_is_verified(client, dpo):
    """The sources are searched only by verified identifiers: an empty package would wrongly say "no data"."""
    from requests_app.lifecycle import RequestError
    from requests_app.models import SubjectIdentity
    from requests_app.services.intake import RightDetails

    request = request_in_status(Status.NEW, rights=[RightDetails("access")])  # no identifier verified yet
    assert not request.identities.filter(verified_at__isnull=False).exists()
    login_staff(client, dpo)
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert "Verify one of the subject's identifiers first" in page
    assert reverse("staff:export_start", args=[request.reference]) not in page
    with pytest.raises(RequestError, match="Verify one of the subject's identifiers first"):
        export_start(request=request, actor=Actor.staff(dpo))
    assert not ExportPackage.objects.exists()

    SubjectIdentity.objects.filter(request=request).update(verified_at=timezone.now())
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert reverse("staff:export_start", args=[request.reference]) in page
    assert export_start(request=request, actor=Actor.staff(dpo)).status == ExportStatus.QUEUED


def test_a_manual_source_with_two_categories_fails_the_export_instead_of_filing_the_extract_twice(
    demo_request, dpo, django_capture_on_commit_callbacks
):
    """Read once per category, each masked by its own list, the second copy showed other people's data in clear."""
    from requests_app.models import DataCategory, SourceCategory
    from requests_app.staff.forms import SourceCategoryForm

    paper = _manual_source("paper", dpo)
    second = SourceCategoryForm(data={"source": paper.pk, "slug": "notes", "category": DataCategory.OTHER, "erase_method": ""})
    assert "A manual source has one data category" in str(second.errors["source"])
    SourceCategory.objects.create(source=paper, slug="notes", category=DataCategory.OTHER)  # as an old inventory may hold
    export = export_start(request=demo_request, actor=Actor.system())
    _upload_extract(export, paper, dpo)
    with django_capture_on_commit_callbacks(execute=True):
        compile_export(export_id=export.id)
    export.refresh_from_db()
    assert export.status == ExportStatus.FAILED
    assert "a manual source must have exactly one data category" in export.error


def test_a_manual_source_made_active_after_the_export_started_is_reported_as_not_searched(
    demo_request, dpo, django_capture_on_commit_callbacks
):
    import json

    export = export_start(request=demo_request, actor=Actor.system())  # no manual source yet: no task
    _manual_source("paper", dpo)
    with django_capture_on_commit_callbacks(execute=True):
        compile_export(export_id=export.id)
    manifest = json.loads(open_package(ExportPackage.objects.get(pk=export.pk)).read("manifest.json"))
    assert [(item["source"], item["reason"]) for item in manifest["sources_not_searched"]] == [("paper", "no_extract_asked")]


def test_no_extract_is_taken_nor_package_compiled_for_a_withdrawn_request(demo_request, dpo):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from requests_app import lifecycle
    from requests_app.lifecycle import RequestError
    from requests_app.services.exports import manual_task_upload

    paper = _manual_source("paper", dpo)
    export = export_start(request=demo_request, actor=Actor.system())
    lifecycle.transition(demo_request, "withdraw", actor=Actor.subject())
    upload = SimpleUploadedFile("scan-index.csv", b"contract,signed_on\nMOB-4471,2024-03-01\n")
    with pytest.raises(RequestError, match="no data is delivered"):
        manual_task_upload(task=export.manual_tasks.get(source=paper), actor=Actor.staff(dpo), upload=upload)
    ExportPackage.objects.filter(pk=export.pk).update(status=ExportStatus.QUEUED)  # as if queued just before
    assert compile_export(export_id=export.id) is None
    assert ExportPackage.objects.get(pk=export.pk).status == ExportStatus.FAILED


def test_a_json_lines_extract_keeps_every_field_and_every_record(demo_request, dpo, django_capture_on_commit_callbacks):
    """A field only later records have is written (and masked when listed), and an empty record does not end the file."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from requests_app.models import SourceCategory
    from requests_app.services.exports import manual_task_upload
    from tests.exports.support import csv_rows

    paper = _manual_source("paper", dpo)
    SourceCategory.objects.filter(source=paper).update(masked_fields="other_party")
    export = export_start(request=demo_request, actor=Actor.system())
    lines = b'{"contract": "MOB-1"}\n{}\n{"contract": "MOB-2", "other_party": "+32499123456", "note": "refund promised"}\n'
    manual_task_upload(
        task=export.manual_tasks.get(source=paper), actor=Actor.staff(dpo), upload=SimpleUploadedFile("extract.jsonl", lines)
    )
    with django_capture_on_commit_callbacks(execute=True):
        compile_export(export_id=export.id)
    rows = csv_rows(open_package(ExportPackage.objects.get(pk=export.pk)), "data/paper/contracts.csv")
    assert rows == [
        ["contract", "other_party", "note"], ["MOB-1", "", ""], ["", "", ""], ["MOB-2", "*****56", "refund promised"]
    ]


def test_the_status_page_says_the_password_was_texted_only_once_it_was(released, demo_request, client):
    """While the SMS gateway fails, the password waits: the subject must not hunt for a text that never came."""
    ExportPackage.objects.filter(pk=released.pk).update(encrypted=True, pending_password="waiting")
    assert "The password is on its way to you by text message." in status_page(client, demo_request)
    ExportPackage.objects.filter(pk=released.pk).update(pending_password="")
    page = status_page(client, demo_request)
    assert "The password was sent to you by text message." in page
    # The built-in unzip tools of Windows and macOS cannot open an AES ZIP: the page says what can.
    assert "7-Zip" in page


def test_an_unencrypted_package_needs_no_instructions(released, demo_request, client):
    page = status_page(client, demo_request)
    assert "password" not in page and "7-Zip" not in page


@pytest.mark.parametrize("role, allowed", [("Handler", True), ("Auditor", False)])
def test_a_manual_sources_owner_uploads_its_extract_only_while_they_may_act(demo_request, role, allowed):
    """An auditor changes nothing, even the extract of a source they own (they were its owner as a handler, say)."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from requests_app.lifecycle import NotAllowed
    from requests_app.services.exports import manual_task_upload

    owner = staff_in_role(role, username="owner")
    paper = _manual_source("paper", owner)
    export = export_start(request=demo_request, actor=Actor.system())
    task = export.manual_tasks.get(source=paper)
    upload = SimpleUploadedFile("scan-index.csv", b"contract,signed_on\nMOB-4471,2024-03-01\n")
    if allowed:
        assert manual_task_upload(task=task, actor=Actor.staff(owner), upload=upload).done_at is not None
    else:
        with pytest.raises(NotAllowed):
            manual_task_upload(task=task, actor=Actor.staff(owner), upload=upload)
        task.refresh_from_db()
        assert task.done_at is None


def test_the_request_page_polls_the_exports_progress_as_json(ready_export, client, dpo):
    """The request page's script reads the status and the counts while a package compiles."""
    login_staff(client, dpo)
    ExportPackage.objects.filter(pk=ready_export.pk).update(
        status=ExportStatus.RUNNING, progress={"rows": 1200, "sources_done": 1, "sources_total": 3}
    )
    answer = client.get(reverse("staff:export_progress", args=[ready_export.public_id]), HTTP_ACCEPT_LANGUAGE="fr").json()
    assert answer == {"status": "running", "label": "Compilation en cours", "progress_in_words": "1200 lignes, 1/3 sources"}
    ExportPackage.objects.filter(pk=ready_export.pk).update(progress={"rows": 1, "sources_done": 0, "sources_total": 3})
    answer = client.get(reverse("staff:export_progress", args=[ready_export.public_id]), HTTP_ACCEPT_LANGUAGE="en").json()
    assert answer["progress_in_words"] == "1 row, 0/3 sources"  # not "1 rows"


def test_once_the_package_is_used_up_the_page_says_it_was_delivered_not_being_collected(released, demo_request, client):
    """The next step does not go back to "we are collecting your data" while the request stays open."""
    ExportPackage.objects.filter(pk=released.pk).update(download_count=released.max_downloads)
    page = status_page(client, demo_request)
    assert "We made your data available to you." in page
    assert "We are collecting or changing your data" not in page


def test_releasing_a_package_twice_says_it_was_already_released_and_changes_nothing(released, ready_export, dpo):
    from requests_app.lifecycle import RequestError

    expires_at = released.expires_at
    with pytest.raises(RequestError, match=r"This package was already released on .*: nothing changed\."):
        export_release(export=ready_export, actor=Actor.staff(dpo))  # the page opened before the first release
    released.refresh_from_db()
    assert released.expires_at == expires_at
    assert AuditEvent.objects.filter(action="export_released").count() == 1


@pytest.mark.parametrize(
    ("name", "content", "refusal"),
    [
        ("extract.csv", b"%PDF-1.4\n\xe2\xe3\xcf\xd3\n1 0 obj\n", "The extract is not text in UTF-8"),
        ("extract.csv", "contract,signed_on\nMOB-1,2024\n".encode("utf-16"), "The extract is not text in UTF-8"),
        ("extract.csv", b"", "The extract's first row must name each column"),
        ("extract.csv", b"contract,\nMOB-1,2024\n", "The extract's first row must name each column"),
        ("extract.csv", b"contract,signed_on\nMOB-1,2024\nMOB-2\n", "Line 3 of the extract has 1 values, but its first row names 2 columns."),
        ("extract.csv", b"contract,note\nMOB-1,\"never closed\n", "The extract is not a CSV file"),
        ("extract.jsonl", b'{"contract": "MOB-1"}\n{"contract": \n', "Line 2 of the extract is not JSON"),
        ("extract.jsonl", b'{"contract": "MOB-1"}\n["MOB-2"]\n', "Line 2 of the extract is not a JSON object"),
    ],
)
def test_an_extract_the_export_could_not_read_is_refused_at_upload(demo_request, dpo, name, content, refusal):
    """Read as an extract, a PDF renamed .csv would have told the subject we found no data; a broken file would stop
    the export after the upload form was gone."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from requests_app.lifecycle import RequestError
    from requests_app.services.exports import manual_task_upload

    paper = _manual_source("paper", dpo)
    export = export_start(request=demo_request, actor=Actor.system())
    task = export.manual_tasks.get(source=paper)
    with pytest.raises(RequestError, match=re.escape(refusal)):
        manual_task_upload(task=task, actor=Actor.staff(dpo), upload=SimpleUploadedFile(name, content))
    task.refresh_from_db()
    assert task.done_at is None and not task.upload
    # The owner can upload the right file then.
    good = SimpleUploadedFile("extract.csv", b"contract,signed_on\nMOB-1,2024-03-01\n\n")
    assert manual_task_upload(task=task, actor=Actor.staff(dpo), upload=good).done_at is not None


def test_an_empty_json_lines_extract_is_an_extract_with_no_records(demo_request, dpo):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from requests_app.services.exports import manual_task_upload

    paper = _manual_source("paper", dpo)
    export = export_start(request=demo_request, actor=Actor.system())
    task = manual_task_upload(
        task=export.manual_tasks.get(source=paper), actor=Actor.staff(dpo), upload=SimpleUploadedFile("extract.jsonl", b"")
    )
    assert task.done_at is not None


def test_a_nested_value_is_written_to_the_csv_as_json_as_in_the_json_lines(demo_request, dpo, django_capture_on_commit_callbacks):
    """A portability package must be machine-readable: "{'k': [1, 2]}" and "True" are Python, not JSON."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from requests_app.services.exports import manual_task_upload
    from tests.exports.support import csv_rows

    paper = _manual_source("paper", dpo)
    export = export_start(request=demo_request, actor=Actor.system())
    lines = '{"invoice": 1, "lines": {"k": [1, 2]}, "paid": true, "note": "café"}\n'.encode()
    manual_task_upload(
        task=export.manual_tasks.get(source=paper), actor=Actor.staff(dpo), upload=SimpleUploadedFile("extract.jsonl", lines)
    )
    with django_capture_on_commit_callbacks(execute=True):
        compile_export(export_id=export.id)
    rows = csv_rows(open_package(ExportPackage.objects.get(pk=export.pk)), "data/paper/contracts.csv")
    assert rows == [["invoice", "lines", "paid", "note"], ["1", '{"k": [1, 2]}', "true", "café"]]


@pytest.mark.parametrize(("role", "offered"), [("owner", True), ("DPO", True), ("Auditor", False), ("Handler", False)])
def test_the_upload_form_is_offered_only_to_whoever_may_upload(demo_request, client, role, offered):
    owner = staff_in_role("Handler", username="owner")
    paper = _manual_source("paper", owner)
    export = export_start(request=demo_request, actor=Actor.system())
    assert export.manual_tasks.get(source=paper).assignee == owner
    reader = owner if role == "owner" else staff_in_role(role, username=f"reader-{role.lower()}")
    if role == "Handler":  # another handler, who works the request but does not own the source
        demo_request.assignee = reader
        demo_request.save(update_fields=["assignee"])
    login_staff(client, reader)
    response = client.get(reverse("staff:export", args=[export.public_id]))
    assert response.status_code == 200  # they all read the export's page
    assert ('name="extract"' in response.content.decode()) is offered


def test_the_page_of_a_package_released_before_the_withdrawal_does_not_say_it_was_not_delivered(released, demo_request, client, dpo):
    """It was: "no data is delivered for it" would misstate what the subject received."""
    from requests_app import lifecycle

    lifecycle.transition(demo_request, "withdraw", actor=Actor.subject())
    login_staff(client, dpo)
    page = client.get(reverse("staff:export", args=[released.public_id])).content.decode()
    assert "no data is delivered" not in page and "Release to the subject" not in page


def withdraw_from_the_status_page(client, request):
    response = client.post(reverse("withdraw", args=[request.reference, request.secret]), {"confirm": "1"})
    assert response.status_code == 302


def test_a_link_of_a_withdrawn_request_says_it_was_withdrawn_not_that_it_expired_or_was_used_up(released, demo_request, client):
    link = the_download_link(client, demo_request)
    withdraw_from_the_status_page(client, demo_request)
    demo_request.refresh_from_db()

    status, body, _ = fetch(client, link)

    text = html.unescape(body.decode())
    assert status == 410
    withdrawn_at = formats.date_format(timezone.localtime(demo_request.closed_at), "DATETIME_FORMAT")
    assert f"This package can no longer be downloaded: the request was withdrawn on {withdrawn_at}" in text
    assert "expired" not in text and "download limit" not in text
    assert "If you need a new copy, make a new request." in text


def test_a_link_that_expired_before_the_withdrawal_says_it_expired(released, demo_request, client, settings):
    """What ended it first: the withdrawal took nothing the subject could still download."""
    link = the_download_link(client, demo_request)
    with time_machine.travel(released.expires_at + datetime.timedelta(minutes=1)):
        withdraw_from_the_status_page(client, demo_request)
        status, body, _ = fetch(client, link)
        page = status_page(client, demo_request)
    assert status == 410
    assert "This package can no longer be downloaded: it expired on " in html.unescape(body.decode())
    assert "the request was withdrawn" not in html.unescape(body.decode())
    # The page says it too, as the certificate does, rather than nothing (a withdrawn request delivers no data).
    expires = formats.date_format(timezone.localtime(released.expires_at), "DATETIME_FORMAT")
    assert (
        f"The copy of your data we made available can no longer be downloaded: its download period ended on {expires}. "
        "If you need it again, make a new request." in html.unescape(page)
    )
    assert "deleted when the request was withdrawn" not in page


def test_a_used_up_link_says_its_downloads_were_used_not_that_it_expired(released, demo_request, client):
    link = the_download_link(client, demo_request)
    ExportPackage.objects.filter(pk=released.pk).update(download_count=released.max_downloads)

    status, body, _ = fetch(client, link)

    assert status == 410
    assert "This package can no longer be downloaded: its download limit was reached." in body.decode()
    assert "expired" not in body.decode()


def test_an_expired_link_says_when_it_expired_not_that_it_was_used_up(released, demo_request, client):
    link = the_download_link(client, demo_request)
    with time_machine.travel(released.expires_at + datetime.timedelta(minutes=1)):
        status, body, _ = fetch(client, link)
        page = html.unescape(status_page(client, demo_request))
    expires = formats.date_format(timezone.localtime(released.expires_at), "DATETIME_FORMAT")
    assert status == 410
    assert f"This package can no longer be downloaded: it expired on {expires}." in html.unescape(body.decode())
    assert "download limit" not in body.decode()
    assert (
        f"The copy of your data we made available can no longer be downloaded: its download period ended on {expires}. "
        "If you still need it, write to us below." in page
    )
    assert "as many times as allowed" not in page


@pytest.mark.parametrize("spent", ["used_up", "expired"])
@pytest.mark.parametrize(("kind", "said"), [("access", NOTHING_FOUND_ABOUT_YOU), ("portability", NOTHING_YOU_GAVE_US_FOUND)])
def test_once_an_answer_that_found_nothing_can_no_longer_be_downloaded_the_page_still_calls_it_our_answer(
    released, demo_request, client, spent, kind, said
):
    """It held no data of theirs: "we made your data available" would say we hold some. What it found is said by
    kind, as while it could be downloaded."""
    ExportPackage.objects.filter(pk=released.pk).update(kind=kind, manifest={**released.manifest, "rows": 0})
    if spent == "used_up":
        ExportPackage.objects.filter(pk=released.pk).update(download_count=released.max_downloads)
        page = status_page(client, demo_request)
    else:
        with time_machine.travel(released.expires_at + datetime.timedelta(minutes=1)):
            page = status_page(client, demo_request)
    assert f"We gave you our answer: {said}" in page
    assert "Our answer, which we made available here, can no longer be downloaded" in page
    assert "We made your data available" not in page and "The copy of your data" not in page
    assert "We are collecting or changing your data" not in page


WITHDRAWING_ENDS_THE_COPY = "Withdrawing the request also ends your access to the copy of your data above"


def test_the_withdraw_form_warns_that_withdrawing_ends_the_copy_still_downloadable(released, demo_request, client):
    """Withdrawing ends every package of the request (NO_DATA_DELIVERED): a subject with downloads left must
    know before ticking the box, not find the copy gone afterwards."""
    page = status_page(client, demo_request)
    assert WITHDRAWING_ENDS_THE_COPY in page
    assert page.index(WITHDRAWING_ENDS_THE_COPY) > page.index('action="' + reverse("withdraw", args=[demo_request.reference, demo_request.secret]))


def test_the_withdraw_form_speaks_of_our_answer_when_the_package_found_nothing(released, demo_request, client):
    ExportPackage.objects.filter(pk=released.pk).update(manifest={**released.manifest, "rows": 0})
    page = status_page(client, demo_request)
    assert "Withdrawing the request also ends your access to our answer above" in page
    assert WITHDRAWING_ENDS_THE_COPY not in page


def test_the_withdraw_form_has_no_such_warning_once_nothing_can_be_downloaded(released, demo_request, client):
    ExportPackage.objects.filter(pk=released.pk).update(download_count=released.max_downloads)
    assert "Withdrawing the request also ends your access" not in status_page(client, demo_request)


def test_the_page_of_a_withdrawn_request_says_the_copy_went_with_the_withdrawal(released, demo_request, client):
    withdraw_from_the_status_page(client, demo_request)
    page = status_page(client, demo_request)
    assert (
        "The copy of your data we made available was deleted when the request was withdrawn. "
        "If you need it again, make a new request." in page
    )
    assert "can no longer be downloaded" not in page


@pytest.mark.parametrize(("regime", "kind"), [("gdpr", "Access (Art. 15)"), ("ccpa", "Access"), ("lgpd", "Access")])
def test_the_download_link_names_the_gdprs_article_only_under_the_gdpr(released, demo_request, client, regime, kind):
    """A Californian or Brazilian subject relies on their own law: "Access (Art. 15)" cited the GDPR's article to them
    (wording.label_in_letter, as their letters do)."""
    PrivacyRequest.objects.filter(pk=demo_request.pk).update(regime=regime)
    assert f"Download your data: {kind}</a>" in status_page(client, demo_request)
