"""A right a completion refused gets no data: its package, compiled or queued before, is neither released,
retried nor compiled, and the staff page offers no release nor asks for extracts. Its data is not kept: the
completion ends the package, a run under way when it came fails when it finishes, and the hourly clean-up
ends any left."""

import datetime
import io
import re
import threading
import time
import zipfile

import pytest
from django.core import mail
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from requests_app import lifecycle
from requests_app.audit import Actor
from requests_app.exports.package import PackageWriter
from requests_app.lifecycle import RequestError
from requests_app.models import (
    ConnectorKind,
    ExportPackage,
    ExportStatus,
    ManualTask,
    PrivacyRequest,
    RequestType,
    SourceSystem,
    Status,
)
from requests_app.services import handling
from requests_app.services.exports import (
    NOT_COLLECTED,
    RIGHT_REFUSED,
    compile_export,
    delete_expired_exports,
    download_refusal,
    export_release,
    export_retry,
    export_start,
)
from requests_app.services.handling import RightRefusal
from requests_app.services.intake import RightDetails
from tests.conftest import login_staff
from tests.factories import released_package, request_in_status, staff_in_role

pytestmark = pytest.mark.usefixtures("export_settings")

ACCESS_REFUSED = RightRefusal(RequestType.ACCESS, "other", "Your access request repeats the one we answered last week.")
NOT_DELIVERED = "Access (Art. 15) was refused when the request was completed: this package is not delivered."


@pytest.fixture
def dpo(db):
    return staff_in_role("DPO", username="dpo1")


def ready_package(request, kind: str) -> ExportPackage:
    """A compiled package waiting for review: a ZIP in storage (the staff page previews it), holding no file."""
    buffer = io.BytesIO()
    zipfile.ZipFile(buffer, "w").close()
    name = default_storage.save(f"exports/{kind}.zip", ContentFile(buffer.getvalue()))
    return ExportPackage.objects.create(request=request, kind=kind, status=ExportStatus.READY, storage_name=name)


@pytest.fixture
def access_refused(dpo):
    """A request for access and portability, completed with its portability package released and access refused,
    and an access package compiled before, waiting for review: one the completion could not end (another
    transaction held it locked, end_packages_of_refused_rights), until the hourly clean-up does."""
    request = request_in_status(Status.IN_PROGRESS, rights=[RightDetails(RequestType.ACCESS), RightDetails(RequestType.PORTABILITY)])
    released_package(request, kind="portability")
    handling.request_complete(
        request=request, actor=Actor.staff(dpo), letter="Here is your data.", expected_status=Status.IN_PROGRESS, refused=[ACCESS_REFUSED]
    )
    request.refresh_from_db()
    assert request.status == Status.COMPLETED and request.refused_rights == ["access"]
    return ready_package(request, "access")


def test_the_package_of_a_refused_right_is_not_released(access_refused, dpo, django_capture_on_commit_callbacks):
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RequestError, match=re.escape(NOT_DELIVERED)):
        export_release(export=ExportPackage.objects.get(pk=access_refused.pk), actor=Actor.staff(dpo))
    access_refused.refresh_from_db()
    assert access_refused.status == ExportStatus.READY and access_refused.released_at is None
    assert not access_refused.request.events.filter(action="export_released").exists()
    assert mail.outbox == []  # no "your data is ready"


def test_the_staff_page_says_why_instead_of_offering_the_release(access_refused, dpo, client):
    login_staff(client, dpo)
    page = client.get(reverse("staff:export", args=[access_refused.public_id])).content.decode()
    assert "Release to the subject" not in page
    assert NOT_DELIVERED in page

    response = client.post(reverse("staff:export_action", args=[access_refused.public_id, "release"]), follow=True)
    assert NOT_DELIVERED in response.content.decode()
    assert ExportPackage.objects.get(pk=access_refused.pk).released_at is None


def test_the_granted_rights_package_is_still_offered(access_refused, dpo, client):
    portability = ready_package(access_refused.request, "portability")
    login_staff(client, dpo)
    page = client.get(reverse("staff:export", args=[portability.public_id])).content.decode()
    assert "Release to the subject" in page and "was refused when the request was completed" not in page


def test_no_package_of_a_refused_right_is_compiled_after_the_completion(access_refused, dpo, client):
    request = access_refused.request
    # Queued before the completion: the run collects nothing.
    queued = ExportPackage.objects.create(request=request, kind="access", status=ExportStatus.QUEUED)
    assert compile_export(export_id=queued.id) is None
    queued.refresh_from_db()
    assert queued.status == ExportStatus.FAILED and queued.storage_name == ""
    assert queued.error == "the completion refused the right this package answers: no data is collected"
    # Failed: not retried, and the page offers no retry.
    with pytest.raises(RequestError, match=re.escape(NOT_DELIVERED)):
        export_retry(export=ExportPackage.objects.get(pk=queued.pk), actor=Actor.staff(dpo))
    assert ExportPackage.objects.get(pk=queued.pk).status == ExportStatus.FAILED
    login_staff(client, dpo)
    page = client.get(reverse("staff:export", args=[queued.public_id])).content.decode()
    assert "Retry from the start" not in page and NOT_DELIVERED in page
    # A new one: a completed request has none started.
    with pytest.raises(RequestError, match="Only an open, verified request can have its data exported."):
        export_start(request=request, actor=Actor.staff(dpo), kind="access")


def asking_access_and_portability() -> PrivacyRequest:
    return request_in_status(Status.IN_PROGRESS, rights=[RightDetails(RequestType.ACCESS), RightDetails(RequestType.PORTABILITY)])


def complete_refusing(request, dpo, right: str) -> None:
    refusal = RightRefusal(right, "other", "Your request repeats the one we answered last week.")
    handling.request_complete(
        request=request, actor=Actor.staff(dpo), letter="Here is your data.", expected_status=Status.IN_PROGRESS, refused=[refusal]
    )


def stored_files(export: ExportPackage) -> list[str]:
    try:
        return default_storage.listdir(f"exports/{export.public_id}")[1]
    except FileNotFoundError:
        return []


@pytest.mark.parametrize(
    "meanwhile, error",
    [
        (lambda request, dpo: complete_refusing(request, dpo, RequestType.ACCESS), RIGHT_REFUSED),
        (lambda request, dpo: lifecycle.transition(request, "withdraw", actor=Actor.subject()), NOT_COLLECTED),
    ],
    ids=["access refused", "withdrawn"],
)
def test_a_package_compiling_when_its_right_is_refused_fails_and_is_not_kept(
    dpo, monkeypatch, django_capture_on_commit_callbacks, meanwhile, error
):
    """The run checked the request when it started; the completion (or the withdrawal) came while it collected."""
    request = asking_access_and_portability()
    released_package(request, kind="portability")
    export = ExportPackage.objects.create(request=request, kind="access", status=ExportStatus.QUEUED)
    finish = PackageWriter.finish

    def finish_after_the_completion(writer, sources):
        meanwhile(PrivacyRequest.objects.get(pk=request.pk), dpo)
        return finish(writer, sources)

    monkeypatch.setattr(PackageWriter, "finish", finish_after_the_completion)
    with django_capture_on_commit_callbacks(execute=True):
        assert compile_export(export_id=export.id) is None
    export.refresh_from_db()
    assert export.status == ExportStatus.FAILED and export.error == error
    assert export.storage_name == "" and stored_files(export) == []  # stored, then deleted: never reviewed nor released
    assert not request.events.filter(action="export_compiled").exists()
    # The hourly clean-up then ends it.
    with django_capture_on_commit_callbacks(execute=True):
        delete_expired_exports()
    assert ExportPackage.objects.get(pk=export.pk).status == ExportStatus.EXPIRED


def test_a_released_package_of_a_refused_right_is_not_served(access_refused):
    """Defence in depth: a release cannot follow the refusal (above), but a package released while the completion
    ran, held locked so the completion could not end it, is not served to the subject or the organisation."""
    ExportPackage.objects.filter(pk=access_refused.pk).update(
        status=ExportStatus.RELEASED, released_at=timezone.now(), expires_at=timezone.now() + datetime.timedelta(days=7),
        shared_with_organisation=True,
    )
    portability = access_refused.request.exports.get(kind="portability")
    ExportPackage.objects.filter(pk=portability.pk).update(shared_with_organisation=True)
    assert list(ExportPackage.objects.downloadable()) == [portability]
    assert list(ExportPackage.objects.downloadable_by_organisation()) == [portability]
    refused = ExportPackage.objects.get(pk=access_refused.pk)
    assert download_refusal(refused) == (
        "This package can no longer be downloaded: the right it answers was refused when the request was completed."
    )


def test_the_completion_ends_the_package_of_the_right_it_refuses(dpo, django_capture_on_commit_callbacks):
    request = asking_access_and_portability()
    portability = released_package(request, kind="portability")
    access = ready_package(request, "access")
    with django_capture_on_commit_callbacks(execute=True):
        complete_refusing(request, dpo, RequestType.ACCESS)
    access.refresh_from_db()
    assert access.status == ExportStatus.EXPIRED and not default_storage.exists(access.storage_name)
    assert request.events.filter(action="export_deleted", data={"export": str(access.public_id)}).exists()
    assert ExportPackage.objects.get(pk=portability.pk).status == ExportStatus.RELEASED  # the right granted's


@pytest.mark.parametrize("refused, granted", [("access", "portability"), ("portability", "access")])
def test_the_hourly_clean_up_ends_the_packages_of_a_refused_right(dpo, django_capture_on_commit_callbacks, refused, granted):
    """Packages the completion did not end (another transaction held them), of the refused right's kind only."""
    request = asking_access_and_portability()
    released_package(request, kind=granted)
    complete_refusing(request, dpo, refused)
    of_refused, of_granted = ready_package(request, refused), ready_package(request, granted)
    with django_capture_on_commit_callbacks(execute=True):
        assert delete_expired_exports() == 1
    of_refused.refresh_from_db()
    assert of_refused.status == ExportStatus.EXPIRED and not default_storage.exists(of_refused.storage_name)
    of_granted.refresh_from_db()
    assert of_granted.status == ExportStatus.READY and default_storage.exists(of_granted.storage_name)


def test_no_manual_extract_is_asked_for_a_package_whose_right_was_refused(access_refused, dpo, client):
    """A package waiting for extracts, which the completion did not end (another transaction held it)."""
    paper = SourceSystem.objects.create(
        slug="paper", name="Paper archive", connector=ConnectorKind.MANUAL, identity_kind="email", purposes="Contracts",
        legal_basis="contract", retention="10 years", origin="Signed by the customer", owner=dpo,
    )
    waiting = ExportPackage.objects.create(request=access_refused.request, kind="access", status=ExportStatus.WAITING_MANUAL)
    task = ManualTask.objects.create(export=waiting, source=paper, assignee=dpo)
    login_staff(client, dpo)
    page = client.get(reverse("staff:export", args=[waiting.public_id])).content.decode()
    assert 'name="extract"' not in page and NOT_DELIVERED in page

    extract = SimpleUploadedFile("scan-index.csv", b"contract,signed_on\nMOB-4471,2024-03-01\n")
    response = client.post(
        reverse("staff:export_action", args=[waiting.public_id, "upload"]), {"task": task.pk, "extract": extract}, follow=True
    )
    assert NOT_DELIVERED in response.content.decode()
    task.refresh_from_db()
    assert task.done_at is None and task.upload.name == ""
    assert ExportPackage.objects.get(pk=waiting.pk).status == ExportStatus.WAITING_MANUAL


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_run_finishing_while_the_completion_commits_waits_for_it_and_fails(dpo, monkeypatch):
    """Two connections, as a worker and a staff request would be: the completion holds the request locked, its
    refusal not committed yet, when the run finishes. The run waits for it, then reads the refusal."""
    request = asking_access_and_portability()
    released_package(request, kind="portability")
    export = ExportPackage.objects.create(request=request, kind="access", status=ExportStatus.QUEUED)
    holding_the_lock, outcome = threading.Event(), []
    write_to_subject = handling.write_to_subject

    def write_then_wait_for_the_run(*args, **kwargs):
        written = write_to_subject(*args, **kwargs)
        holding_the_lock.set()
        deadline = time.monotonic() + 10
        while not waiting_for_a_lock() and time.monotonic() < deadline:  # without the lock, the run does not wait
            time.sleep(0.05)
        return written

    def complete():
        try:
            complete_refusing(PrivacyRequest.objects.get(pk=request.pk), dpo, RequestType.ACCESS)
            outcome.append("completed")
        except Exception as error:  # noqa: BLE001 - the test reads it
            outcome.append(error)
        finally:
            connection.close()

    finish = PackageWriter.finish
    completion = threading.Thread(target=complete)

    def finish_while_the_completion_commits(writer, sources):
        completion.start()
        assert holding_the_lock.wait(timeout=10)
        return finish(writer, sources)

    monkeypatch.setattr(handling, "write_to_subject", write_then_wait_for_the_run)
    monkeypatch.setattr(PackageWriter, "finish", finish_while_the_completion_commits)
    assert compile_export(export_id=export.id) is None
    completion.join()
    assert outcome == ["completed"]
    export.refresh_from_db()
    assert export.status == ExportStatus.FAILED and export.error == RIGHT_REFUSED
    assert stored_files(export) == []


def waiting_for_a_lock() -> bool:
    """Whether another connection to this database waits for a row lock."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock')"
        )
        return cursor.fetchone()[0]
