"""A source failing mid-export: the export fails naming it, nothing partial is
kept, staff see why, and a retry starts from nothing."""

import datetime
import errno
import os
import time
import uuid
from types import SimpleNamespace

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from requests_app import lifecycle, tasks
from requests_app.audit import Actor
from requests_app.models import (
    AuditEvent,
    ConnectorKind,
    DataCategory,
    ExportPackage,
    ExportStatus,
    IdentityKind,
    LegalBasis,
    SourceCategory,
    SourceSystem,
)
from requests_app.services.exports import (
    ExportBusy,
    compile_export,
    export_retry,
    export_start,
    requeue_dead_exports,
    requeue_lost_exports,
)
from tests.conftest import login_staff
from tests.exports.conftest import closed_port
from tests.exports.support import check_manifest, jsonl_records, open_package, stored_files
from tests.factories import UserFactory

pytestmark = pytest.mark.usefixtures("export_settings")

SUBJECT_PHONE = "+32470000000"


@pytest.fixture
def dpo(db):
    return UserFactory(username="dpo-failures", is_superuser=True)


def add_source(slug, name, connector, *, url="", env="", identity_kind=IdentityKind.EMAIL, query, masked=""):
    source = SourceSystem.objects.create(
        slug=slug, name=name, connector=connector, connection_url=url, connection_env=env,
        identity_kind=identity_kind, legal_basis=LegalBasis.CONTRACT, purposes="Invoicing.",
        retention="10 years.", origin="You.",
    )
    category = SourceCategory.objects.create(source=source, slug="invoices", category=DataCategory.OTHER, query=query,
                                             masked_fields=masked)
    return source, category


def work_dir_files(settings) -> list[str]:
    return os.listdir(settings.EXPORT_WORK_DIR) if os.path.isdir(settings.EXPORT_WORK_DIR) else []


@pytest.fixture
def broken_billing(demo_request, demo_sqlite_url):
    """A source whose query names a table that does not exist; by name it comes after two good sources."""
    return add_source(
        "billing", "Legacy billing archive", ConnectorKind.SQL, url=demo_sqlite_url,
        query="SELECT * FROM invoices WHERE email IN :identities",
    )


def assert_failed_without_a_file(export, settings, source_slug):
    export.refresh_from_db()
    assert export.status == ExportStatus.FAILED
    assert export.failed_source == source_slug
    assert export.error.startswith(f"{source_slug}: ")
    assert "unexpected" not in export.error
    assert export.storage_name == "" and export.sha256 == "" and export.manifest == {}
    assert stored_files(f"exports/{export.public_id}") == []
    assert work_dir_files(settings) == []  # the partial ZIP was removed too
    failed = AuditEvent.objects.filter(request=export.request, action="export_failed")
    assert [event.data for event in failed] == [{"export": str(export.public_id), "source": source_slug}]


def test_a_source_failing_after_good_ones_fails_the_export_and_stores_nothing(broken_billing, demo_request, settings):
    export = export_start(request=demo_request, actor=Actor.system())
    assert compile_export(export_id=export.id) is None
    assert_failed_without_a_file(export, settings, "billing")
    # The kind of failure, not the database's text (which may quote the subject's data).
    assert export.error == "billing: OperationalError: no such table: invoices"  # what to fix, and no value
    assert export.attempt == 1


def test_the_staff_request_page_shows_why_the_export_failed(broken_billing, demo_request, dpo, client):
    export = export_start(request=demo_request, actor=Actor.system())
    compile_export(export_id=export.id)
    export.refresh_from_db()
    login_staff(client, dpo)

    page = client.get(reverse("staff:request", args=[demo_request.reference])).content.decode()
    assert "Failed" in page
    assert escape(export.error) in page
    detail = client.get(reverse("staff:export", args=[export.public_id])).content.decode()
    assert escape(export.error) in detail
    assert reverse("staff:export_action", args=[export.public_id, "retry"]) in detail


def test_retry_after_fixing_the_query_produces_one_complete_package(
    broken_billing, demo_request, dpo, settings, django_capture_on_commit_callbacks
):
    source, category = broken_billing
    export = export_start(request=demo_request, actor=Actor.system())
    compile_export(export_id=export.id)
    export.refresh_from_db()
    assert export.status == ExportStatus.FAILED

    category.query = "SELECT customer_ref, email, company FROM customers WHERE email IN :identities"
    category.save()
    with django_capture_on_commit_callbacks(execute=True):  # the Celery task runs eagerly on commit
        export_retry(export=export, actor=Actor.staff(dpo))

    export.refresh_from_db()
    assert export.status == ExportStatus.READY
    assert export.attempt == 2
    assert export.error == "" and export.failed_source == ""
    assert export.storage_name == f"exports/{export.public_id}/attempt-2.zip"
    assert stored_files(f"exports/{export.public_id}") == ["attempt-2.zip"]
    assert work_dir_files(settings) == []
    with open_package(export) as package:
        manifest = check_manifest(package)
        invoices = jsonl_records(package, "data/billing/invoices.jsonl")
    assert [record["email"] for record in invoices] == ["demo0@example.com"]
    assert manifest["rows"] == 72
    actions = list(AuditEvent.objects.filter(request=demo_request).values_list("action", flat=True))
    assert actions[-4:] == ["export_started", "export_failed", "export_retried", "export_compiled"]


def test_only_a_failed_export_can_be_retried(demo_request, dpo):
    from requests_app.lifecycle import RequestError

    export = export_start(request=demo_request, actor=Actor.system())
    compile_export(export_id=export.id)
    with pytest.raises(RequestError):
        export_retry(export=export, actor=Actor.staff(dpo))
    export.refresh_from_db()
    assert export.status == ExportStatus.READY and export.attempt == 1


def test_a_source_failing_on_a_later_page_keeps_no_partial_rows(demo_request, partner_api, settings):
    partner_api.records[SUBJECT_PHONE] = [
        {"caller": SUBJECT_PHONE, "callee": f"+3249900000{i}", "minutes": i} for i in range(5)
    ]
    partner_api.behaviour[SUBJECT_PHONE] = ("fail_page", 2, 500)
    add_source(
        "partner", "Roaming partner", ConnectorKind.HTTP, url=partner_api.base_url, env="SOURCE_PARTNER_API_TOKEN",
        identity_kind=IdentityKind.PHONE, query="/subscribers/{identity}/calls", masked="callee",
    )
    export = export_start(request=demo_request, actor=Actor.system())
    assert compile_export(export_id=export.id) is None
    assert_failed_without_a_file(export, settings, "partner")
    assert "HTTP 500" in export.error
    assert any("page=2" in path for path, _ in partner_api.seen)  # it did fail mid-way, after a first page


def test_a_source_answering_503_for_a_moment_mid_export_is_asked_again_and_the_package_is_whole(demo_request, partner_api):
    """One 503 while the partner restarted failed the whole export, compiled again from the start once staff retried."""
    partner_api.records[SUBJECT_PHONE] = [
        {"caller": SUBJECT_PHONE, "callee": f"+3249900000{i}", "minutes": i} for i in range(5)
    ]
    add_source(
        "partner", "Roaming partner", ConnectorKind.HTTP, url=partner_api.base_url, env="SOURCE_PARTNER_API_TOKEN",
        identity_kind=IdentityKind.PHONE, query="/subscribers/{identity}/calls", masked="callee",
    )
    export = export_start(request=demo_request, actor=Actor.system())
    partner_api.hiccups[SUBJECT_PHONE] = [503]

    compile_export(export_id=export.id)

    export.refresh_from_db()
    assert (export.status, export.attempt, export.error) == (ExportStatus.READY, 1, "")
    with open_package(export) as package:
        check_manifest(package)
        calls = jsonl_records(package, "data/partner/invoices.jsonl")
    assert [record["minutes"] for record in calls] == [0, 1, 2, 3, 4]
    assert partner_api.hiccups[SUBJECT_PHONE] == []  # the 503 was met


def test_a_customer_reference_of_dots_fails_the_export_instead_of_reading_every_customers_records(
    demo_request, partner_api, settings
):
    """A reference filed before intake refused it: searched by it, /customers/{identity}/calls was /calls."""
    demo_request.identities.filter(kind=IdentityKind.CUSTOMER_REFERENCE).update(value="..")
    add_source(
        "partner", "Roaming partner", ConnectorKind.HTTP, url=partner_api.base_url, env="SOURCE_PARTNER_API_TOKEN",
        identity_kind=IdentityKind.CUSTOMER_REFERENCE, query="/subscribers/{identity}/calls",
    )
    export = export_start(request=demo_request, actor=Actor.system())
    assert compile_export(export_id=export.id) is None
    assert_failed_without_a_file(export, settings, "partner")
    assert export.error == "partner: an identifier or record key of only dots cannot go in a path"
    assert partner_api.seen == []


def test_an_unreachable_copy_path_source_fails_the_export_naming_it(demo_request, settings, monkeypatch):
    """A PostgreSQL source (the COPY path) with nothing listening: a source failure, not a crash."""
    monkeypatch.setenv("SOURCE_BILLING_DB_URL", f"postgres://reader:s3cret-pw@127.0.0.1:{closed_port()}/billing")
    add_source("billing-pg", "Legacy billing archive", ConnectorKind.SQL, env="SOURCE_BILLING_DB_URL",
               query="SELECT * FROM invoices WHERE email IN :identities")
    export = export_start(request=demo_request, actor=Actor.system())
    assert compile_export(export_id=export.id) is None
    assert_failed_without_a_file(export, settings, "billing-pg")
    assert "s3cret-pw" not in export.error


@pytest.fixture
def full_package_disk(monkeypatch):
    """The package storage runs out of space part-way through the ZIP, as a full MEDIA_ROOT does, while `.full`."""
    save = default_storage.save
    disk = SimpleNamespace(full=True)

    def save_while_full(name, content, max_length=None):
        if not disk.full:
            return save(name, content, max_length)
        save(name, ContentFile(content.read(1000)))  # what the disk took before it was full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(default_storage, "save", save_while_full)
    return disk


def test_a_package_the_storage_cannot_take_fails_the_export_saying_why_and_keeps_no_copy(
    demo_request, dpo, settings, full_package_disk, django_capture_on_commit_callbacks
):
    export = export_start(request=demo_request, actor=Actor.system())
    with django_capture_on_commit_callbacks(execute=True):  # what the storage kept is deleted on commit
        assert compile_export(export_id=export.id) is None

    export.refresh_from_db()
    assert export.status == ExportStatus.FAILED and export.attempt == 1
    assert export.failed_source == ""
    # What happened and what to do, not a worker that died; no file name, no data.
    assert export.error == (
        "The package could not be stored (OSError: No space left on device): check the package storage "
        "(free space, or the object storage's state), then retry."
    )
    assert stored_files(f"exports/{export.public_id}") == []  # the part the disk took
    assert work_dir_files(settings) == []  # the whole package, in plain, on the worker's disk
    failed = AuditEvent.objects.filter(request=demo_request, action="export_failed")
    assert [event.data for event in failed] == [{"export": str(export.public_id), "source": ""}]
    # Failed, not left for the sweep for dead runs to collect from every source again.
    later = timezone.now() + datetime.timedelta(hours=2)
    assert requeue_dead_exports(now=later) == 0 and requeue_lost_exports(now=later) == 0

    full_package_disk.full = False  # space freed
    with django_capture_on_commit_callbacks(execute=True):  # the Celery task runs eagerly on commit
        export_retry(export=export, actor=Actor.staff(dpo))
    export.refresh_from_db()
    assert export.status == ExportStatus.READY and export.attempt == 2 and export.error == ""
    assert stored_files(f"exports/{export.public_id}") == ["attempt-2.zip"]


def test_an_object_storage_outage_fails_the_export_naming_the_error(demo_request, settings, monkeypatch):
    """S3's errors are not OSErrors: the client's own kind of error is named."""
    from botocore.exceptions import EndpointConnectionError

    def unreachable(name, content, max_length=None):
        raise EndpointConnectionError(endpoint_url="https://s3.example.com/packages")

    monkeypatch.setattr(default_storage, "save", unreachable)
    export = export_start(request=demo_request, actor=Actor.system())
    assert compile_export(export_id=export.id) is None
    export.refresh_from_db()
    assert export.status == ExportStatus.FAILED
    assert export.error.startswith("The package could not be stored (EndpointConnectionError): ")
    assert "s3.example.com" not in export.error
    assert work_dir_files(settings) == []


def test_files_left_by_a_dead_attempt_are_removed_when_the_next_one_finishes(
    demo_request, settings, django_capture_on_commit_callbacks
):
    export = export_start(request=demo_request, actor=Actor.system())
    folder = f"exports/{export.public_id}"
    # Attempt 1 stored a file, then its worker died before marking the export ready.
    default_storage.save(f"{folder}/attempt-1.zip", ContentFile(b"PK\x03\x04 truncated"))
    stale = timezone.now() - datetime.timedelta(seconds=settings.EXPORT_HEARTBEAT_STALE_SECONDS + 10)
    ExportPackage.objects.filter(pk=export.pk).update(status=ExportStatus.RUNNING, attempt=1, heartbeat_at=stale)

    with django_capture_on_commit_callbacks(execute=True):  # deleted once the finish has committed
        name = compile_export(export_id=export.id)

    export.refresh_from_db()
    assert export.status == ExportStatus.READY and export.attempt == 2
    assert name == f"{folder}/attempt-2.zip"
    assert stored_files(folder) == ["attempt-2.zip"]
    with open_package(export) as package:
        assert package.testzip() is None


def write_work_file(settings, name: str, *, written_seconds_ago: float = 0) -> str:
    os.makedirs(settings.EXPORT_WORK_DIR, exist_ok=True)
    path = os.path.join(settings.EXPORT_WORK_DIR, name)
    with open(path, "wb") as work_file:
        work_file.write(b"PK\x03\x04 the subject's data, in plain")
    written = time.time() - written_seconds_ago
    os.utime(path, (written, written))
    return name


def test_work_files_of_runs_killed_on_the_long_queues_machine_are_removed_once_no_run_can_be_writing_them(
    demo_request, settings
):
    """The export's next run removes a dead run's files only if it runs on the same machine, and only once the
    export runs again: what one left whose export then failed, or was compiled elsewhere, stayed for ever."""
    past_the_time_limit = settings.EXPORT_TASK_TIME_LIMIT + 60
    dead = write_work_file(settings, f"{uuid.uuid4()}-attempt-3.zip", written_seconds_ago=past_the_time_limit)
    write_work_file(settings, f"{dead}.partq8x1.zip", written_seconds_ago=past_the_time_limit)  # a source's, copied
    # A live run's, on this machine (another process of the worker): last written within the time limit.
    live = write_work_file(settings, f"{uuid.uuid4()}-attempt-1.zip", written_seconds_ago=settings.EXPORT_TASK_TIME_LIMIT - 60)

    assert tasks.remove_stale_export_work_files() == 2
    assert work_dir_files(settings) == [live]
    assert tasks.remove_stale_export_work_files() == 0  # run twice = run once

    # And at the start of each compile on the machine, whether or not the hourly job reached it.
    write_work_file(settings, dead, written_seconds_ago=past_the_time_limit)
    export = export_start(request=demo_request, actor=Actor.system())
    compile_export(export_id=export.id)
    export.refresh_from_db()
    assert export.status == ExportStatus.READY
    assert work_dir_files(settings) == [live]


def test_the_work_files_are_swept_hourly_by_the_long_queue_whose_worker_writes_them(settings):
    """In production each queue has its own worker, the long queue's often on a machine of its own."""
    from privacy_portal.celery import app as celery_app

    entry = settings.CELERY_BEAT_SCHEDULE["remove-stale-export-work-files"]
    assert entry["task"] == tasks.remove_stale_export_work_files.name
    assert entry["schedule"] <= datetime.timedelta(hours=1)
    assert celery_app.amqp.router.route({}, entry["task"])["queue"].name == "long"
    assert celery_app.amqp.router.route({}, tasks.delete_expired_exports.name)["queue"].name == "celery"


def test_a_live_run_is_not_taken_over(demo_request):
    export = export_start(request=demo_request, actor=Actor.system())
    ExportPackage.objects.filter(pk=export.pk).update(status=ExportStatus.RUNNING, attempt=1, heartbeat_at=timezone.now())
    with pytest.raises(ExportBusy):
        compile_export(export_id=export.id)
    export.refresh_from_db()
    assert export.status == ExportStatus.RUNNING and export.attempt == 1
    assert stored_files(f"exports/{export.public_id}") == []


def test_an_export_whose_task_the_broker_lost_is_queued_again(demo_request, django_capture_on_commit_callbacks):
    # Outside the capture, the task queued on commit never runs: as if Redis restarted and lost it.
    export = export_start(request=demo_request, actor=Actor.system())
    assert requeue_lost_exports() == 0  # queued just now: a worker may yet take it

    later = timezone.now() + datetime.timedelta(minutes=61)
    with django_capture_on_commit_callbacks(execute=True):  # the Celery task runs eagerly on commit
        assert requeue_lost_exports(now=later) == 1
    export.refresh_from_db()
    assert export.status == ExportStatus.READY and export.attempt == 1
    assert requeue_lost_exports(now=later) == 0


def test_an_export_whose_worker_died_is_queued_again_within_minutes_but_not_a_live_one(
    demo_request, settings, django_capture_on_commit_callbacks
):
    export = export_start(request=demo_request, actor=Actor.system())
    # Queued ten minutes ago, well within EXPORT_LOST_AFTER: a dead run is not left for an hour.
    now = timezone.now()
    stale = datetime.timedelta(seconds=settings.EXPORT_HEARTBEAT_STALE_SECONDS)
    ExportPackage.objects.filter(pk=export.pk).update(
        status=ExportStatus.RUNNING, attempt=1, queued_at=now - datetime.timedelta(minutes=10),
        heartbeat_at=now - stale + datetime.timedelta(seconds=10),
    )
    assert requeue_dead_exports() == 0  # its last beat is recent enough: it may be alive

    ExportPackage.objects.filter(pk=export.pk).update(heartbeat_at=now - stale - datetime.timedelta(seconds=10))
    with django_capture_on_commit_callbacks(execute=True):
        assert requeue_dead_exports() == 1
    export.refresh_from_db()
    assert export.status == ExportStatus.READY and export.attempt == 2


def test_a_lost_export_of_a_withdrawn_request_is_left_alone(demo_request):
    export = export_start(request=demo_request, actor=Actor.system())
    lifecycle.transition(demo_request, "withdraw", actor=Actor.system())
    # Queued still: one the withdrawal could not end (another transaction held it locked), left to the hourly clean-up.
    ExportPackage.objects.filter(pk=export.pk).update(status=ExportStatus.QUEUED)
    assert requeue_lost_exports(now=timezone.now() + datetime.timedelta(hours=1)) == 0
    export.refresh_from_db()
    assert export.status == ExportStatus.QUEUED
