"""A request withdrawn, rejected or forwarded to its controller gets no data (NO_DATA_DELIVERED): the closing ends its
packages in its own transaction, and their files are deleted once it commits, not at the hourly clean-up. The subject's
status page, the download link, the API and the staff pages then agree that they are gone."""

import datetime
import html
import threading

import pytest
import time_machine
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.urls import reverse
from django.utils import formats, timezone

from requests_app.audit import Actor
from requests_app.exports.package import PackageWriter
from requests_app.models import ExportPackage, ExportStatus, PrivacyRequest, RequestType, Status
from requests_app.services import handling
from requests_app.services.exports import (
    NOT_COLLECTED,
    compile_export,
    delete_expired_exports,
    download_token,
    package_folder,
)
from requests_app.services.intake import RightDetails, request_withdraw
from tests.conftest import login_staff
from tests.factories import request_in_status, staff_in_role

pytestmark = pytest.mark.usefixtures("export_settings")

ZIP = b"PK\x05\x06" + b"\x00" * 18  # an empty ZIP
DELETED_WITH_THE_WITHDRAWAL = "The copy of your data we made available was deleted when the request was withdrawn."
NOT_DELIVERED = "This request was refused or withdrawn: no data is delivered for it."
CLOSED_WITHDRAWN = "The request was closed (Withdrawn): no data is delivered for it."


@pytest.fixture
def dpo(db):
    return staff_in_role("DPO", username="dpo-closing")


def stored_package(request, kind: str, status: str = ExportStatus.READY, **fields) -> ExportPackage:
    """A compiled package with its ZIP stored where a run stores it."""
    export = ExportPackage.objects.create(request=request, kind=kind, status=status, size=len(ZIP), sha256="0" * 64, **fields)
    name = default_storage.save(f"{package_folder(export)}/attempt-1.zip", ContentFile(ZIP))
    ExportPackage.objects.filter(pk=export.pk).update(storage_name=name)
    export.refresh_from_db()
    return export


def released(request, kind: str) -> ExportPackage:
    released_at = timezone.now()
    return stored_package(
        request, kind, ExportStatus.RELEASED, released_at=released_at, expires_at=released_at + datetime.timedelta(days=7)
    )


@pytest.fixture
def two_packages(db):
    """A request for access and portability: its portability package released, its access package ready for review."""
    request = request_in_status(Status.IN_PROGRESS, rights=[RightDetails(RequestType.ACCESS), RightDetails(RequestType.PORTABILITY)])
    return request, released(request, "portability"), stored_package(request, "access")


def files_of(export: ExportPackage) -> list[str]:
    try:
        return default_storage.listdir(package_folder(export))[1]
    except FileNotFoundError:
        return []


def in_words(moment) -> str:
    return formats.date_format(timezone.localtime(moment), "DATETIME_FORMAT")


def test_withdrawing_from_the_status_page_ends_every_package_and_deletes_its_files(
    two_packages, dpo, client, django_capture_on_commit_callbacks
):
    request, portability, access = two_packages
    link = reverse("download", args=[request.reference, request.secret, download_token(portability)])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("withdraw", args=[request.reference, request.secret]), {"confirm": "1"})
    assert response.status_code == 302
    request.refresh_from_db()
    assert request.status == Status.WITHDRAWN

    for export in (portability, access):
        export.refresh_from_db()
        assert export.status == ExportStatus.EXPIRED
        assert files_of(export) == [] and not default_storage.exists(export.storage_name)
        assert request.events.filter(action="export_deleted", data={"export": str(export.public_id)}).exists()
    assert delete_expired_exports() == 0  # nothing left for the hourly clean-up

    # The subject: the page says the copy was deleted, which it was; the link answers why it no longer works.
    page = html.unescape(client.get(reverse("status", args=[request.reference, request.secret])).content.decode())
    assert DELETED_WITH_THE_WITHDRAWAL in page
    response = client.get(link)
    withdrawn = f"This package can no longer be downloaded: the request was withdrawn on {in_words(request.closed_at)}"
    assert response.status_code == 410 and withdrawn in html.unescape(response.content.decode())

    # Staff: both ended, and why; neither released nor ready any more.
    login_staff(client, dpo)
    page = html.unescape(client.get(reverse("staff:request", args=[request.reference])).content.decode())
    # Ended by the withdrawal, as the certificate says it, not expired.
    assert page.count(f"Ended and deleted · {CLOSED_WITHDRAWN}") == 2
    assert "Expired and deleted" not in page
    assert "Released to the subject" not in page and "Ready for review" not in page
    page = html.unescape(client.get(reverse("staff:export", args=[portability.public_id])).content.decode())
    assert "Ended and deleted" in page and withdrawn in page and "Expired" not in page
    assert "no data is delivered" not in page  # it was delivered, before the withdrawal
    page = html.unescape(client.get(reverse("staff:export", args=[access.public_id])).content.decode())
    assert "Ended and deleted" in page and NOT_DELIVERED in page and "Release to the subject" not in page


def test_the_staff_pages_call_a_package_expired_only_where_its_download_period_ran_out(
    dpo, client, django_capture_on_commit_callbacks
):
    """As the certificate says it (certificate.package_ending): what ended each package, not "expired" for all."""
    request = request_in_status(Status.IN_PROGRESS, rights=[RightDetails(RequestType.ACCESS), RightDetails(RequestType.PORTABILITY)])
    access, portability = released(request, "access"), released(request, "portability")
    ExportPackage.objects.filter(pk=portability.pk).update(download_count=portability.max_downloads)
    with django_capture_on_commit_callbacks(execute=True):
        assert delete_expired_exports() == 1  # the portability package, used up
    with time_machine.travel(access.expires_at + datetime.timedelta(minutes=1)), django_capture_on_commit_callbacks(execute=True):
        assert delete_expired_exports() == 1  # the access package, its download period over

    login_staff(client, dpo)
    page = html.unescape(client.get(reverse("staff:request", args=[request.reference])).content.decode())
    assert page.count("Expired and deleted · Its download period ran out.") == 1
    assert page.count("Ended and deleted · All its downloads were used.") == 1
    page = html.unescape(client.get(reverse("staff:export", args=[access.public_id])).content.decode())
    assert "Expired and deleted" in page
    page = html.unescape(client.get(reverse("staff:export", args=[portability.public_id])).content.decode())
    assert "Ended and deleted" in page and "Expired and deleted" not in page


def test_a_storage_that_fails_does_not_fail_the_withdrawal(
    two_packages, client, django_capture_on_commit_callbacks, mailoutbox, monkeypatch
):
    """The storage down (listing or deleting fails): the withdrawal takes effect and answers, its confirmation goes,
    and the hourly clean-up deletes the files once the storage is back. Before, a failed listing refused the
    withdrawal, and a failed deletion answered 500 for a withdrawal that had taken effect, its email never queued."""
    request, portability, access = two_packages
    storage_class = type(default_storage._wrapped)

    def storage_down(*args, **kwargs):
        raise OSError("storage unavailable")

    with monkeypatch.context() as patched:
        patched.setattr(storage_class, "listdir", storage_down)
        patched.setattr(storage_class, "delete", storage_down)
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(reverse("withdraw", args=[request.reference, request.secret]), {"confirm": "1"})
    assert response.status_code == 302
    request.refresh_from_db()
    assert request.status == Status.WITHDRAWN
    assert [m.subject for m in mailoutbox] == [f"Your privacy request {request.reference} has been withdrawn"]
    assert files_of(portability) and files_of(access)  # still stored, both packages ended

    with django_capture_on_commit_callbacks(execute=True):
        delete_expired_exports()
    assert files_of(portability) == [] and files_of(access) == []


def test_a_package_the_withdrawal_could_not_end_is_not_called_deleted_until_it_is(
    two_packages, client, django_capture_on_commit_callbacks
):
    """One another transaction held locked (a download being counted, say) is skipped, not waited for: it is never
    served, and the subject is told it was deleted once the hourly clean-up has deleted it."""
    request, portability, _access = two_packages
    request_withdraw(request=request, actor=Actor.subject())
    ExportPackage.objects.filter(pk=portability.pk).update(status=ExportStatus.RELEASED)  # as if skipped
    status_page = reverse("status", args=[request.reference, request.secret])
    assert DELETED_WITH_THE_WITHDRAWAL not in html.unescape(client.get(status_page).content.decode())
    response = client.get(reverse("download", args=[request.reference, request.secret, download_token(portability)]))
    assert response.status_code == 410

    with django_capture_on_commit_callbacks(execute=True):
        assert delete_expired_exports() == 1
    assert files_of(portability) == []
    assert DELETED_WITH_THE_WITHDRAWAL in html.unescape(client.get(status_page).content.decode())


def test_rejecting_ends_the_package_waiting_for_review(dpo, client, django_capture_on_commit_callbacks):
    request = request_in_status(Status.IN_PROGRESS)
    ready = stored_package(request, "access")
    with django_capture_on_commit_callbacks(execute=True):
        handling.request_reject(
            request=request, actor=Actor.staff(dpo), ground="other", explanation="Your request repeats last week's.",
            expected_status=Status.IN_PROGRESS,
        )
    ready.refresh_from_db()
    assert ready.status == ExportStatus.EXPIRED and files_of(ready) == []
    login_staff(client, dpo)
    page = html.unescape(client.get(reverse("staff:export", args=[ready.public_id])).content.decode())
    assert "Ended and deleted" in page and NOT_DELIVERED in page and "Release to the subject" not in page


def test_forwarding_ends_the_package_waiting_for_review(dpo, client, django_capture_on_commit_callbacks):
    request = request_in_status(Status.IN_PROGRESS)
    ready = stored_package(request, "access")
    with django_capture_on_commit_callbacks(execute=True):
        handling.request_forward(
            request=request, actor=Actor.staff(dpo), controller="Acme Bank NV", contact="privacy@acme.example",
            expected_status=Status.IN_PROGRESS,
        )
    ready.refresh_from_db()
    assert ready.status == ExportStatus.EXPIRED and files_of(ready) == []
    login_staff(client, dpo)
    page = html.unescape(client.get(reverse("staff:export", args=[ready.public_id])).content.decode())
    forwarded = "This request was forwarded to the controller of the data, which answers it: no data is delivered for it."
    assert "Ended and deleted" in page and forwarded in page


def test_a_queued_package_ended_by_the_withdrawal_is_not_compiled_when_its_task_runs(db, django_capture_on_commit_callbacks):
    request = request_in_status(Status.IN_PROGRESS)
    queued = ExportPackage.objects.create(request=request, kind="access", status=ExportStatus.QUEUED)
    with django_capture_on_commit_callbacks(execute=True):
        request_withdraw(request=request, actor=Actor.subject())
    assert ExportPackage.objects.get(pk=queued.pk).status == ExportStatus.EXPIRED
    assert compile_export(export_id=queued.id) is None  # the task queued before the withdrawal, run after it
    queued.refresh_from_db()
    assert queued.status == ExportStatus.EXPIRED and queued.storage_name == "" and files_of(queued) == []


@pytest.mark.parametrize("closing", ["withdraw", "reject"])
def test_a_package_compiling_when_the_request_closes_is_not_made_ready(
    dpo, monkeypatch, django_capture_on_commit_callbacks, closing
):
    """Left to the run (a package under way is not ended by the closing): it reads the request again when it finishes,
    fails, and deletes what it stored; the hourly clean-up then ends it."""
    request = request_in_status(Status.IN_PROGRESS)
    export = ExportPackage.objects.create(request=request, kind="access", status=ExportStatus.QUEUED)
    finish = PackageWriter.finish

    def finish_after_the_closing(writer, sources):
        locked = PrivacyRequest.objects.get(pk=request.pk)
        if closing == "withdraw":
            request_withdraw(request=locked, actor=Actor.subject())
        else:
            handling.request_reject(
                request=locked, actor=Actor.staff(dpo), ground="other", explanation="Your request repeats last week's.",
                expected_status=Status.IN_PROGRESS,
            )
        assert ExportPackage.objects.get(pk=export.pk).status == ExportStatus.RUNNING  # not ended under the run
        return finish(writer, sources)

    monkeypatch.setattr(PackageWriter, "finish", finish_after_the_closing)
    with django_capture_on_commit_callbacks(execute=True):
        assert compile_export(export_id=export.id) is None
    export.refresh_from_db()
    assert export.status == ExportStatus.FAILED and export.error == NOT_COLLECTED
    assert export.storage_name == "" and files_of(export) == []
    with django_capture_on_commit_callbacks(execute=True):
        assert delete_expired_exports() == 1
    assert ExportPackage.objects.get(pk=export.pk).status == ExportStatus.EXPIRED


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_withdrawal_does_not_wait_for_a_package_another_transaction_holds(two_packages):
    """Two connections, as a release (which locks the export, then the request) and the withdrawal (the request,
    then the exports) would be: waiting would deadlock, so the withdrawal skips it and the hourly clean-up ends it."""
    request, portability, access = two_packages
    locked, withdrawn = threading.Event(), threading.Event()

    def hold_the_package():
        try:
            with transaction.atomic():
                ExportPackage.objects.select_for_update().get(pk=portability.pk)
                locked.set()
                assert withdrawn.wait(timeout=10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_package)
    holder.start()
    assert locked.wait(timeout=10)
    try:
        request_withdraw(request=request, actor=Actor.subject())
    finally:
        withdrawn.set()
        holder.join()
    assert ExportPackage.objects.get(pk=portability.pk).status == ExportStatus.RELEASED  # skipped, never served
    assert not ExportPackage.objects.downloadable().exists()
    assert ExportPackage.objects.get(pk=access.pk).status == ExportStatus.EXPIRED
    assert delete_expired_exports() == 1
    assert ExportPackage.objects.get(pk=portability.pk).status == ExportStatus.EXPIRED and files_of(portability) == []
