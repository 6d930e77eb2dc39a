"""The heartbeat of a compiling run: stamped by a timer while the run lives, so a run slower than the
stale window is never taken over, while a dead one is queued again within minutes; the timer stops
with the run, and never stamps an export another run took over."""

import datetime
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections
from django.utils import timezone

from requests_app import tasks
from requests_app.exports.package import PackageWriter
from requests_app.heartbeat import Heartbeat
from requests_app.models import (
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
    requeue_dead_exports,
    work_file_prefix,
)

pytestmark = pytest.mark.usefixtures("export_settings")

SUBJECT_PHONE = "+32470000000"  # the demo request's verified phone
BEAT = 0.3
STALE = 2


@pytest.fixture
def short_heartbeat(settings):
    """A stale window of seconds, not minutes: still several beats long."""
    settings.EXPORT_HEARTBEAT_INTERVAL_SECONDS = BEAT
    settings.EXPORT_HEARTBEAT_STALE_SECONDS = STALE


def add_partner_source(partner_api) -> SourceSystem:
    """An HTTP source (the partner API) searched by phone, holding a few of the subject's calls."""
    partner_api.records[SUBJECT_PHONE] = [
        {"caller": SUBJECT_PHONE, "callee": f"+3249900000{i}", "minutes": i} for i in range(3)
    ]
    source = SourceSystem.objects.create(
        slug="partner",
        name="Roaming partner",
        connector=ConnectorKind.HTTP,
        connection_url=partner_api.base_url,
        connection_env="SOURCE_PARTNER_API_TOKEN",
        identity_kind=IdentityKind.PHONE,
        legal_basis=LegalBasis.CONTRACT,
        purposes="Roaming.",
        retention="1 year.",
        origin="Our roaming partner.",
    )
    SourceCategory.objects.create(
        source=source, slug="calls", category=DataCategory.OTHER, query="/subscribers/{identity}/calls"
    )
    return source


def queued_export(request) -> ExportPackage:
    """An export waiting for its task (created directly: export_start would run the task on commit)."""
    return ExportPackage.objects.create(request=request, queued_at=timezone.now())


def heartbeat_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name.endswith("-heartbeat")]


def wait_for_the_slow_source(partner_api) -> None:
    deadline = time.monotonic() + 20
    while not partner_api.seen and time.monotonic() < deadline:
        time.sleep(0.05)
    assert partner_api.seen, "the run never asked the partner API"


def compile_in_a_thread(export_id: int) -> str | None:
    """compile_export in a thread of its own, as a worker runs it, with its own database connection."""
    try:
        return compile_export(export_id=export_id)
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_a_run_slower_than_the_stale_window_is_not_taken_over_while_it_lives(
    demo_request, partner_api, short_heartbeat, settings
):
    add_partner_source(partner_api)
    partner_api.behaviour[SUBJECT_PHONE] = "slow"
    partner_api.delay = 10  # it answers when the test releases it
    export = queued_export(demo_request)

    with ThreadPoolExecutor(max_workers=1) as worker:
        first = worker.submit(compile_in_a_thread, export.id)
        wait_for_the_slow_source(partner_api)
        # Stuck in one source, with no progress to report, for longer than the stale window.
        time.sleep(STALE + 2 * BEAT)

        with pytest.raises(ExportBusy):
            compile_export(export_id=export.id)  # a second task for the export (redelivered, or queued twice)
        assert requeue_dead_exports() == 0
        row = ExportPackage.objects.get(pk=export.pk)
        assert row.status == ExportStatus.RUNNING and row.attempt == 1
        assert timezone.now() - row.heartbeat_at < datetime.timedelta(seconds=STALE)
        work_files = os.listdir(settings.EXPORT_WORK_DIR)
        assert f"{work_file_prefix(row)}1.zip" in work_files  # the live run's work file was not deleted

        partner_api.release.set()
        assert first.result(timeout=30) == f"exports/{export.public_id}/attempt-1.zip"
    export.refresh_from_db()
    assert export.status == ExportStatus.READY and export.attempt == 1
    assert heartbeat_threads() == []


def test_a_run_whose_heartbeat_stopped_is_queued_once_and_taken_over(
    demo_request, settings, django_capture_on_commit_callbacks
):
    """As after a worker was killed: its last beat grows old while the broker would hand the task out only hours later."""
    export = queued_export(demo_request)
    now = timezone.now()
    queued, last_beat = (
        now - datetime.timedelta(minutes=5),
        now - datetime.timedelta(seconds=settings.EXPORT_HEARTBEAT_STALE_SECONDS + 1),
    )
    ExportPackage.objects.filter(pk=export.pk).update(
        status=ExportStatus.RUNNING, attempt=1, queued_at=queued, heartbeat_at=last_beat
    )
    os.makedirs(settings.EXPORT_WORK_DIR, exist_ok=True)
    dead_work_file = os.path.join(settings.EXPORT_WORK_DIR, f"{work_file_prefix(export)}1.zip")
    with open(dead_work_file, "wb") as partial:
        partial.write(b"PK\x03\x04 half a package")

    # One minute earlier its heartbeat was not stale yet: it may have been alive.
    assert requeue_dead_exports(now=now - datetime.timedelta(minutes=1)) == 0
    assert tasks.requeue_dead_exports() == 1  # the periodic task, a few minutes after the worker died
    assert tasks.requeue_dead_exports() == 0  # its task is on its way: not queued twice

    with django_capture_on_commit_callbacks(execute=True):  # the task queued on commit runs eagerly
        # Unless that task is lost too.
        assert requeue_dead_exports(now=now + settings.EXPORT_LOST_AFTER + datetime.timedelta(minutes=1)) == 1
    export.refresh_from_db()
    assert export.status == ExportStatus.READY and export.attempt == 2
    assert not os.path.exists(dead_work_file)


def test_the_sweep_for_dead_runs_is_scheduled_every_minute(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["requeue-dead-exports"]
    assert entry["task"] == "requests_app.tasks.requeue_dead_exports"
    assert entry["schedule"] <= datetime.timedelta(minutes=1)


@pytest.fixture
def timers_while_compiling(monkeypatch):
    """The heartbeat threads alive each time the run starts on a source (our own step, watched)."""
    seen = []
    add_source = PackageWriter.add_source

    def watched(writer, source, **kwargs):
        seen.append(heartbeat_threads())
        return add_source(writer, source, **kwargs)

    monkeypatch.setattr(PackageWriter, "add_source", watched)
    return seen


@pytest.mark.django_db(transaction=True)
def test_the_timer_runs_with_the_run_and_stops_when_it_succeeds(demo_request, short_heartbeat, timers_while_compiling):
    export = queued_export(demo_request)

    assert compile_export(export_id=export.id) == f"exports/{export.public_id}/attempt-1.zip"

    assert timers_while_compiling and all(seen == [f"export-{export.id}-heartbeat"] for seen in timers_while_compiling)
    assert heartbeat_threads() == []
    export.refresh_from_db()
    assert export.status == ExportStatus.READY


@pytest.mark.django_db(transaction=True)
def test_the_timer_stops_when_a_source_fails_the_run(
    demo_request, partner_api, short_heartbeat, timers_while_compiling
):
    add_partner_source(partner_api)
    partner_api.behaviour[SUBJECT_PHONE] = ("fail_page", 1, 500)
    export = queued_export(demo_request)

    assert compile_export(export_id=export.id) is None

    export.refresh_from_db()
    assert export.status == ExportStatus.FAILED and export.failed_source == "partner"
    assert timers_while_compiling[-1] == [f"export-{export.id}-heartbeat"]
    assert heartbeat_threads() == []


@pytest.mark.django_db(transaction=True)
def test_the_timer_stops_when_the_run_crashes(demo_request, short_heartbeat, timers_while_compiling, monkeypatch):
    def crash(writer, sources):
        raise RuntimeError("a bug")

    monkeypatch.setattr(PackageWriter, "finish", crash)
    export = queued_export(demo_request)

    with pytest.raises(RuntimeError):
        compile_export(export_id=export.id)

    export.refresh_from_db()
    assert export.status == ExportStatus.FAILED
    assert timers_while_compiling[-1] == [f"export-{export.id}-heartbeat"]
    assert heartbeat_threads() == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_timer_never_stamps_an_export_another_run_took_over(demo_request):
    export = queued_export(demo_request)
    ExportPackage.objects.filter(pk=export.pk).update(
        status=ExportStatus.RUNNING, attempt=1, heartbeat_at=timezone.now()
    )
    ours = ExportPackage.objects.filter(pk=export.pk, status=ExportStatus.RUNNING, attempt=1)

    def connections_open() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
            return cursor.fetchone()[0]

    before = connections_open()
    with Heartbeat(ours, every=0.1, name="test-heartbeat") as heartbeat:
        first = ExportPackage.objects.get(pk=export.pk).heartbeat_at
        time.sleep(0.5)
        assert ExportPackage.objects.get(pk=export.pk).heartbeat_at > first  # stamping
        assert connections_open() == before + 1  # its own connection

        # Another run takes the export over (a new attempt); a stamp now would keep that run's claim alive.
        taken_over_at = timezone.now() - datetime.timedelta(minutes=1)
        ExportPackage.objects.filter(pk=export.pk).update(attempt=2, heartbeat_at=taken_over_at)
        assert heartbeat.lost.wait(timeout=2)
        time.sleep(0.5)
        assert ExportPackage.objects.get(pk=export.pk).heartbeat_at == taken_over_at
        assert heartbeat_threads() == []  # stopped for good, before the block ends
    deadline = time.monotonic() + 5
    while connections_open() != before and time.monotonic() < deadline:  # the server ends the session a moment later
        time.sleep(0.05)
    assert connections_open() == before  # closed


def test_a_run_that_keeps_dying_is_failed_not_started_again_and_again(demo_request, settings):
    """Out of memory on every try: each try would pull the subject's data from every source again."""
    from requests_app.models import AuditEvent
    from requests_app.services.exports import ATTEMPTS_BEFORE_GIVING_UP, _claim

    export = queued_export(demo_request)
    long_ago = timezone.now() - datetime.timedelta(seconds=settings.EXPORT_HEARTBEAT_STALE_SECONDS + 1)
    ExportPackage.objects.filter(pk=export.pk).update(
        status=ExportStatus.RUNNING, attempt=ATTEMPTS_BEFORE_GIVING_UP, heartbeat_at=long_ago
    )
    assert _claim(export.pk) is None  # a redelivered task does not start it over
    assert requeue_dead_exports() == 0
    export.refresh_from_db()
    assert export.status == ExportStatus.FAILED and "stopped 3 times" in export.error
    assert AuditEvent.objects.filter(request=demo_request, action="export_failed").exists()


def test_a_run_that_lost_its_export_stops_at_its_next_step(demo_request, settings, monkeypatch):
    """Its heartbeat could not be stamped for minutes and another run took over: it stops instead of
    compiling on into a work file the other run has removed."""
    from requests_app.services import exports

    class LostAtOnce(Heartbeat):
        def __enter__(self):
            self.lost.set()
            return super().__enter__()

    monkeypatch.setattr(exports, "Heartbeat", LostAtOnce)
    export = queued_export(demo_request)
    assert compile_export(export_id=export.pk) is None
    export.refresh_from_db()
    assert export.status == ExportStatus.RUNNING and not export.storage_name  # left to the run that took over
    assert not [name for name in os.listdir(settings.EXPORT_WORK_DIR) if name.startswith(work_file_prefix(export))]


def test_a_dead_run_of_a_withdrawn_request_is_failed_then_deleted(demo_request, settings):
    """It used to stay "compiling" for ever: neither queued again nor cleaned up."""
    from requests_app.models import PrivacyRequest, Status
    from requests_app.services.exports import delete_expired_exports

    export = queued_export(demo_request)
    long_ago = timezone.now() - datetime.timedelta(seconds=settings.EXPORT_HEARTBEAT_STALE_SECONDS + 1)
    ExportPackage.objects.filter(pk=export.pk).update(status=ExportStatus.RUNNING, attempt=1, heartbeat_at=long_ago)
    PrivacyRequest.objects.filter(pk=demo_request.pk).update(status=Status.WITHDRAWN)
    assert requeue_dead_exports() == 0
    export.refresh_from_db()
    assert export.status == ExportStatus.FAILED
    delete_expired_exports()
    export.refresh_from_db()
    assert export.status == ExportStatus.EXPIRED
