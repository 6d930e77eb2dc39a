"""A package failed or ended keeps no stored file: neither the ZIP it records nor one an attempt stored
and then died before recording (a copy of the subject's data nobody knows of). The files go once the
change commits; the hourly clean-up deletes any left by packages failed or ended before."""

import datetime

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from requests_app.audit import Actor
from requests_app.heartbeat import ATTEMPTS_BEFORE_GIVING_UP
from requests_app.models import ExportPackage, ExportStatus, PrivacyRequest, RequestType, Status
from requests_app.services import handling
from requests_app.services import exports
from requests_app.services.exports import delete_expired_exports, package_folder, requeue_dead_exports
from requests_app.services.handling import RightRefusal
from requests_app.services.intake import RightDetails, purge_personal_data
from tests.exports.support import stored_files
from tests.factories import released_package, request_in_status, staff_in_role

pytestmark = pytest.mark.usefixtures("export_settings")


def store(export: ExportPackage, attempt: int) -> str:
    """What attempt `attempt` of the package stored, as a run does before it records the file."""
    return default_storage.save(f"{package_folder(export)}/attempt-{attempt}.zip", ContentFile(b"PK\x03\x04 Ana's calls"))


def files_of(export: ExportPackage) -> list[str]:
    return stored_files(package_folder(export))


def dead_run(request: PrivacyRequest, settings, *, attempt: int) -> ExportPackage:
    """A package whose runs up to `attempt` each stored a ZIP, then their worker died before recording it."""
    export = ExportPackage.objects.create(request=request, kind="access", status=ExportStatus.QUEUED)
    for earlier in range(1, attempt + 1):
        store(export, earlier)
    long_ago = timezone.now() - datetime.timedelta(seconds=settings.EXPORT_HEARTBEAT_STALE_SECONDS + 1)
    ExportPackage.objects.filter(pk=export.pk).update(status=ExportStatus.RUNNING, attempt=attempt, heartbeat_at=long_ago)
    return export


@pytest.mark.parametrize(
    "request_status, attempt",
    [(Status.IN_PROGRESS, ATTEMPTS_BEFORE_GIVING_UP), (Status.WITHDRAWN, 1)],
    ids=["died too often", "request withdrawn"],
)
def test_a_dead_run_failed_for_good_leaves_no_file_of_any_attempt(
    db, settings, django_capture_on_commit_callbacks, request_status, attempt
):
    export = dead_run(request_in_status(Status.IN_PROGRESS), settings, attempt=attempt)
    PrivacyRequest.objects.filter(pk=export.request_id).update(status=request_status)
    assert files_of(export)

    with django_capture_on_commit_callbacks(execute=True):
        requeue_dead_exports()

    assert ExportPackage.objects.get(pk=export.pk).status == ExportStatus.FAILED
    assert files_of(export) == []


def test_the_completion_refusing_its_right_deletes_a_file_a_dead_attempt_left(db, django_capture_on_commit_callbacks):
    """Failed before these files were deleted with it, then retried: queued, with attempt 1's ZIP still stored."""
    dpo = staff_in_role("DPO", username="dpo-files")
    request = request_in_status(Status.IN_PROGRESS, rights=[RightDetails(RequestType.ACCESS), RightDetails(RequestType.PORTABILITY)])
    released_package(request, kind="portability")
    export = ExportPackage.objects.create(request=request, kind="access", status=ExportStatus.QUEUED, attempt=1)
    store(export, 1)

    with django_capture_on_commit_callbacks(execute=True):
        handling.request_complete(
            request=request, actor=Actor.staff(dpo), letter="Here is your data.", expected_status=Status.IN_PROGRESS,
            refused=[RightRefusal(RequestType.ACCESS, "other", "Your access request repeats last week's.")],
        )
        assert files_of(export) == ["attempt-1.zip"]  # not before the completion commits

    assert ExportPackage.objects.get(pk=export.pk).status == ExportStatus.EXPIRED
    assert files_of(export) == []


def test_purging_a_request_deletes_every_file_its_packages_stored(db, django_capture_on_commit_callbacks):
    request = request_in_status(Status.WITHDRAWN)
    failed = ExportPackage.objects.create(request=request, kind="access", status=ExportStatus.FAILED, attempt=2)
    store(failed, 1)
    store(failed, 2)

    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        purge_personal_data(request)

    assert ExportPackage.objects.get(pk=failed.pk).status == ExportStatus.EXPIRED
    assert files_of(failed) == []


def test_the_hourly_clean_up_deletes_the_files_left_by_packages_failed_or_ended_before(db, settings):
    request = request_in_status(Status.IN_PROGRESS)
    # Ended before every attempt's file went with it: attempt 1 died after storing; attempt 2's deletion
    # failed when the package expired (the storage was down), and the package still names it.
    expired = ExportPackage.objects.create(request=request, kind="access", status=ExportStatus.EXPIRED, attempt=2)
    store(expired, 1)
    ExportPackage.objects.filter(pk=expired.pk).update(storage_name=store(expired, 2))
    # Failed before: staff may still retry it, but a retry starts from nothing.
    failed = ExportPackage.objects.create(request=request, kind="portability", status=ExportStatus.FAILED, attempt=1)
    store(failed, 1)
    # Still to be reviewed, and a run that died to be taken over: theirs stay.
    other_request = request_in_status(Status.IN_PROGRESS)
    ready = ExportPackage.objects.create(request=other_request, kind="access", status=ExportStatus.READY, attempt=1)
    ExportPackage.objects.filter(pk=ready.pk).update(storage_name=store(ready, 1))
    dying = dead_run(request_in_status(Status.IN_PROGRESS), settings, attempt=1)
    default_storage.save("exports/not-a-package.zip", ContentFile(b"PK"))  # the nightly orphan job's to judge

    assert delete_expired_exports() == 0  # no package ended now

    assert files_of(expired) == [] and files_of(failed) == []
    assert files_of(ready) == ["attempt-1.zip"] and files_of(dying) == ["attempt-1.zip"]
    assert default_storage.exists("exports/not-a-package.zip")


def test_a_run_read_as_dead_that_finished_meanwhile_keeps_its_package_and_file(db, settings, django_capture_on_commit_callbacks):
    """requeue_dead_exports reads a run whose heartbeat is stale, then fails it. A run only slow to beat may record
    its package ready between the two: failing that attempt then must change nothing, nor delete its ZIP."""
    export = dead_run(request_in_status(Status.IN_PROGRESS), settings, attempt=ATTEMPTS_BEFORE_GIVING_UP)
    name = f"{package_folder(export)}/attempt-{ATTEMPTS_BEFORE_GIVING_UP}.zip"
    ExportPackage.objects.filter(pk=export.pk).update(status=ExportStatus.READY, storage_name=name)

    with django_capture_on_commit_callbacks(execute=True):
        exports._fail(export.pk, ATTEMPTS_BEFORE_GIVING_UP, source="", message="The worker compiling it stopped.")

    assert ExportPackage.objects.get(pk=export.pk).status == ExportStatus.READY
    assert f"attempt-{ATTEMPTS_BEFORE_GIVING_UP}.zip" in files_of(export)
