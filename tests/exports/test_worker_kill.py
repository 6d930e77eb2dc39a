"""A worker killed mid-export: the task is redelivered (acks_late) and produces
one complete package, never two, never a truncated one.

Everything is real: the task goes through Redis, the worker is a separate
`celery worker` OS process that is SIGKILLed while it compiles from a
PostgreSQL source, Redis redelivers the unacknowledged message after the
visibility timeout, and a second worker process takes the export over once
the dead run's heartbeat is stale.
"""

import hashlib
import io
import json
import os
import signal
import time
import zipfile

import pytest
import redis as redis_client
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.db import connection

from requests_app.audit import Actor
from requests_app.models import AuditEvent, ExportPackage, ExportStatus, PrivacyRequest
from requests_app.services.exports import export_start
from tests import real_workers

BROKER_URL = real_workers.kill_test_broker_url("EXPORT_KILL_TEST_REDIS_DB", 14)
VISIBILITY_TIMEOUT = 5
HEARTBEAT_INTERVAL = 1
HEARTBEAT_STALE = 3
# Enough call detail records that compiling takes a few seconds, so the kill
# lands mid-compilation, while the whole test stays well under a minute.
CDR_COUNT = 600_000
# seed_demo makes its rows in Python (about 20 s for 1.5 million), so it seeds a
# few and registers the inventory and the request; PostgreSQL generates the rest.
SEEDED_CDRS = 1_000
RECEIVED = SEEDED_CDRS // 4  # of those, the calls the subject received (seed_demo.RECEIVED_EVERY); the rest are made


def _storage_files(folder: str) -> list[str]:
    try:
        return sorted(default_storage.listdir(folder)[1])
    except FileNotFoundError:
        return []


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_export_yields_exactly_one_complete_package(settings, tmp_path, monkeypatch):
    clock = real_workers.Stopwatch()
    media_root = tmp_path / "kill-media"
    work_dir = tmp_path / "kill-export-work"
    media_root.mkdir()
    work_dir.mkdir()
    settings.MEDIA_ROOT = str(media_root)
    settings.EXPORT_WORK_DIR = str(work_dir)

    test_db = connection.settings_dict["NAME"]
    source_db = f"{test_db}_worker_kill_sources"[:63]
    source_url = real_workers.postgres_url(source_db)
    broker = redis_client.Redis.from_url(BROKER_URL)
    broker.flushdb()

    env = real_workers.worker_env(
        test_db=test_db, broker_url=BROKER_URL, visibility_timeout=VISIBILITY_TIMEOUT, tmp_path=tmp_path,
        EXPORT_HEARTBEAT_INTERVAL_SECONDS=HEARTBEAT_INTERVAL, EXPORT_HEARTBEAT_STALE_SECONDS=HEARTBEAT_STALE,
        DEMO_SOURCES_URL=source_url,
        MEDIA_ROOT=media_root, EXPORT_WORK_DIR=work_dir,
    )
    logs = [tmp_path / "worker1.log", tmp_path / "worker2.log"]
    first = second = None

    real_workers.admin_sql(f'DROP DATABASE IF EXISTS "{source_db}" WITH (FORCE)')
    real_workers.admin_sql(f'CREATE DATABASE "{source_db}"')
    try:
        # The first worker boots while the sources are seeded.
        first = real_workers.start_worker(env, logs[0])

        # The demo sources and a verified request (its own tasks still run eagerly, in-process).
        settings.DEMO_SOURCES_URL = source_url
        out = io.StringIO()
        call_command("seed_demo", subjects=1, cdrs_per_subject=SEEDED_CDRS, stdout=out)
        request = PrivacyRequest.objects.get(reference=out.getvalue().strip().splitlines()[-1])
        phone = request.identities.get(kind="phone").value
        with real_workers.source_connect(source_db) as source, source.cursor() as cursor:
            cursor.execute(
                """INSERT INTO cdrs
                   SELECT g, %s, '+32' || (100000000 + (g * 7919) %% 900000000)::text,
                          timestamp '2026-11-01 12:00' - make_interval(secs => ((g * 104729) %% 31536000)::int),
                          1 + (g %% 3599)::int, 'BE-' || lpad((1 + g %% 9998)::text, 4, '0'),
                          (ARRAY['Brussels', 'Antwerp', 'Ghent', 'Liège'])[1 + (g %% 4)::int],
                          ((g * 31) %% 500000) / 10000.0
                   FROM generate_series(%s::bigint, %s::bigint) AS g""",
                [phone, SEEDED_CDRS + 1, CDR_COUNT],
            )
            cursor.execute("SELECT count(*) FILTER (WHERE caller = %s), count(*) FILTER (WHERE callee = %s) FROM cdrs", [phone, phone])
            assert cursor.fetchone() == (CDR_COUNT - RECEIVED, RECEIVED)
        source.close()
        clock.mark("seeded")

        # Publish for real: on commit, to Redis.
        with real_workers.publishing_to(BROKER_URL, monkeypatch):
            export = export_start(request=request, actor=Actor.system())
        folder = f"exports/{export.public_id}"

        def compiling():
            row = ExportPackage.objects.filter(pk=export.pk).values("status", "progress", "attempt").get()
            return row if row["status"] == ExportStatus.RUNNING and row["progress"].get("rows", 0) > 0 else None

        running = real_workers.wait_for(compiling, timeout=30, what="the first worker to compile", workers=[first], logs=logs)
        clock.mark("first worker compiling")
        os.kill(first.pid, signal.SIGKILL)
        killed_at = time.time()
        assert first.wait(timeout=10) == -signal.SIGKILL
        clock.mark("first worker killed")

        assert running["attempt"] == 1
        at_kill = ExportPackage.objects.get(pk=export.pk)
        assert at_kill.status == ExportStatus.RUNNING
        assert at_kill.attempt == 1
        assert 0 < at_kill.progress["rows"] < CDR_COUNT, at_kill.progress
        assert _storage_files(folder) == [], "the dead run stored a (truncated) package"
        assert not at_kill.storage_name
        # The dead run's partial ZIP is in the work folder, never in storage.
        dead_run_files = {path.name: path.stat().st_size for path in work_dir.iterdir()}
        # acks_late: the message is still unacknowledged in Redis, waiting for the visibility timeout.
        unacked = broker.zrange("unacked_index", 0, -1, withscores=True)
        assert len(unacked) == 1, unacked
        delivered_at = unacked[0][1]

        # Redis hands the message out again once it is older than the visibility timeout; a
        # worker looks for such messages when it starts, so start the second one after that,
        # and after the dead run's heartbeat went stale (else it would just retry a bit later).
        time.sleep(max(0.0, delivered_at + VISIBILITY_TIMEOUT + 0.5 - time.time(),
                       killed_at + HEARTBEAT_STALE + 0.5 - time.time()))
        second = real_workers.start_worker(env, logs[1])

        def finished():
            row = ExportPackage.objects.filter(pk=export.pk).values("status").get()
            return row["status"] if row["status"] not in (ExportStatus.QUEUED, ExportStatus.RUNNING) else None

        final_status = real_workers.wait_for(finished, timeout=90, what="the export to finish", workers=[second], logs=logs)
        clock.mark("second worker finished")
        assert final_status == ExportStatus.READY, real_workers.log_tails(logs)

        export.refresh_from_db()
        assert export.attempt == 2
        assert export.storage_name == f"{folder}/attempt-2.zip"
        assert _storage_files(folder) == ["attempt-2.zip"]
        # One compiled package recorded, none failed.
        actions = list(AuditEvent.objects.filter(request=request, action__startswith="export_").values_list("action", flat=True))
        assert actions == ["export_started", "export_compiled"]

        with default_storage.open(export.storage_name, "rb") as stored:
            data = stored.read()
        assert len(data) == export.size
        assert hashlib.sha256(data).hexdigest() == export.sha256
        with zipfile.ZipFile(io.BytesIO(data)) as package:
            assert package.testzip() is None
            manifest = json.loads(package.read("manifest.json"))
            assert manifest == export.manifest
            assert set(package.namelist()) == {entry["path"] for entry in manifest["files"]} | {"manifest.json"}
            line_counts = {}
            for entry in manifest["files"]:
                digest, size, lines = hashlib.sha256(), 0, 0
                with package.open(entry["path"]) as member:
                    for chunk in iter(lambda: member.read(1024 * 1024), b""):
                        digest.update(chunk)
                        size += len(chunk)
                        lines += chunk.count(b"\n")
                assert (digest.hexdigest(), size) == (entry["sha256"], entry["bytes"]), entry["path"]
                line_counts[entry["path"]] = lines
            calls = {entry["path"]: entry["rows"] for entry in manifest["files"] if entry["path"].startswith("data/cdr/")}
            made = CDR_COUNT - RECEIVED
            assert calls == {
                "data/cdr/calls-made.jsonl": made, "data/cdr/calls-made.csv": made,
                "data/cdr/calls-received.jsonl": RECEIVED, "data/cdr/calls-received.csv": RECEIVED,
            }
            # Every record is there: one JSON line per call, and the CSV's header plus one line per call.
            for direction, count in (("made", made), ("received", RECEIVED)):
                assert line_counts[f"data/cdr/calls-{direction}.jsonl"] == count
                assert line_counts[f"data/cdr/calls-{direction}.csv"] == count + 1
        clock.mark("package checked")

        # The message was acknowledged: nothing left to redeliver.
        assert broker.zcard("unacked_index") == 0 and broker.llen("celery") == broker.llen("long") == 0

        # No work file left behind: the killed run's partial ZIP held personal data, and
        # the attempt that took over removed it before it started.
        assert dead_run_files, "the killed run should have been writing a work file"
        leftovers = sorted(path.name for path in work_dir.iterdir())
        assert leftovers == [], f"work files left in EXPORT_WORK_DIR: {leftovers}"
    finally:
        for worker in (first, second):
            real_workers.stop_worker(worker)
        broker.flushdb()
        broker.close()
        real_workers.admin_sql(f'DROP DATABASE IF EXISTS "{source_db}" WITH (FORCE)')
        print(f"\nworker-kill timings (s): {clock}")
