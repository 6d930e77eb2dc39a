"""The heartbeat of a compiling run: stamped by a timer while the run lives, so a run slower than the
stale window is never taken over; the timer stops with the run, and never stamps an export another
run took over."""

import datetime
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections
from django.utils import timezone

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
