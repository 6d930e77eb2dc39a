"""A worker killed mid-erasure: the task is redelivered (acks_late) and the
erasure is carried out exactly once.

Everything is real: the execution task goes through Redis, the worker is a
separate `celery worker` OS process that is SIGKILLed while its DELETE runs in
a PostgreSQL source (a statement trigger makes the DELETE take a few seconds),
the source rolls the dead run's transaction back, Redis redelivers the
unacknowledged message after the visibility timeout, and a second worker
process carries the same attempt out.
"""

import os
import signal
import time

import pytest
import redis as redis_client
from django.db import connection

from requests_app.audit import verify_chain
from requests_app.models import (
    ActionStatus,
    AuditEvent,
    ConnectorKind,
    DataCategory,
    EraseMethod,
    IdentityKind,
    LegalBasis,
    RequestType,
    SourceAction,
    SourceCategory,
    SourceSystem,
)
from requests_app.services import actions
from requests_app.sources import sql as sql_sources
from tests import real_workers
from tests.actions.conftest import ANA_PHONE, verified_request

# Not the export kill test's Redis DB (14): the two can run in one session.
BROKER_URL = "redis://127.0.0.1:6379/13"
VISIBILITY_TIMEOUT = 5
# Long enough for the kill to land mid-DELETE, short enough that the dry run (which also
# deletes, then rolls back) and the redelivered run keep the test well under a minute.
DELETE_SECONDS = 4
OTHER_CALLER = "+32470000002"

SOURCE_SCHEMA = [
    "CREATE TABLE calls (id INTEGER PRIMARY KEY, caller VARCHAR(30), callee VARCHAR(30), duration_s INTEGER)",
    f"""INSERT INTO calls VALUES
        (1, '{ANA_PHONE}', '+32470000099', 60), (2, '{ANA_PHONE}', '+32470000098', 30),
        (3, '{ANA_PHONE}', '+32470000097', 5), (4, '{OTHER_CALLER}', '{ANA_PHONE}', 10)""",
    f"""CREATE FUNCTION slow_delete() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_sleep({DELETE_SECONDS}); RETURN NULL; END $$""",
    "CREATE TRIGGER calls_slow_delete BEFORE DELETE ON calls FOR EACH STATEMENT EXECUTE FUNCTION slow_delete()",
]


def _callers(source_db: str) -> list[str]:
    source = real_workers.source_connect(source_db)
    try:
        with source.cursor() as cursor:
            cursor.execute("SELECT caller FROM calls ORDER BY id")
            return [row[0] for row in cursor.fetchall()]
    finally:
        source.close()


def _running_deletes(source_db: str) -> list[int]:
    """The backends running a DELETE in the source database."""
    admin = real_workers.source_connect("postgres")
    admin.autocommit = True  # each poll its own transaction, so pg_stat_activity is fresh
    try:
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND state = 'active' AND query ILIKE 'DELETE%%'",
                [source_db],
            )
            return [row[0] for row in cursor.fetchall()]
    finally:
        admin.close()


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_erasure_is_redelivered_and_erases_exactly_once(dpo_actor, tmp_path, monkeypatch):
    clock = real_workers.Stopwatch()
    test_db = connection.settings_dict["NAME"]
    source_db = f"{test_db}_action_kill"[:63]
    broker = redis_client.Redis.from_url(BROKER_URL)
    broker.flushdb()

    env = real_workers.worker_env(
        test_db=test_db, broker_url=BROKER_URL, visibility_timeout=VISIBILITY_TIMEOUT, tmp_path=tmp_path,
        MEDIA_ROOT=tmp_path / "worker-media",
    )
    logs = [tmp_path / "action-worker1.log", tmp_path / "action-worker2.log"]
    first = second = None

    real_workers.admin_sql(f'DROP DATABASE IF EXISTS "{source_db}" WITH (FORCE)')
    real_workers.admin_sql(f'CREATE DATABASE "{source_db}"')
    try:
        # The first worker boots while the source is made and the action dry run and approved.
        first = real_workers.start_worker(env, logs[0])

        source_conn = real_workers.source_connect(source_db)
        with source_conn, source_conn.cursor() as cursor:
            for statement in SOURCE_SCHEMA:
                cursor.execute(statement)
        source_conn.close()
        source = SourceSystem.objects.create(
            slug="cdr", name="Call records", connector=ConnectorKind.SQL, connection_url=real_workers.postgres_url(source_db),
            identity_kind=IdentityKind.PHONE, purposes="Billing", legal_basis=LegalBasis.LEGAL_OBLIGATION,
            retention="12 months", origin="The network",
        )
        SourceCategory.objects.create(
            source=source, slug="calls", category=DataCategory.ELECTRONIC_COMMUNICATIONS,
            query="SELECT * FROM calls WHERE caller IN :identities", table="calls", identity_field="caller",
            erase_method=EraseMethod.DELETE,
        )
        request = verified_request(RequestType.ERASURE)

        # Still eager: in a transactional test the dry-run task runs in-process when its transaction commits.
        actions.plan_actions(request=request, actor=dpo_actor)
        action = request.source_actions.get(source=source)
        actions.dry_run_start(action=action, actor=dpo_actor)
        action.refresh_from_db()
        assert action.status == ActionStatus.AWAITING_APPROVAL, action.error
        assert action.dry_run["categories"] == [{"category": "calls", "rows": 3, "fields": 12}]
        actions.approve(action=action, actor=dpo_actor)
        clock.mark("dry run approved")

        # Publish for real: on commit, to Redis.
        with real_workers.publishing_to(BROKER_URL, monkeypatch):
            actions.execute(action=action, actor=dpo_actor)

        deleting = real_workers.wait_for(
            lambda: _running_deletes(source_db), timeout=30, what="the first worker's DELETE", workers=[first], logs=logs
        )
        clock.mark("first worker deleting")
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
        clock.mark("first worker killed")

        at_kill = SourceAction.objects.get(pk=action.pk)
        assert at_kill.status == ActionStatus.RUNNING
        assert at_kill.attempts == 1
        # acks_late: the message is still unacknowledged in Redis, waiting for the visibility timeout.
        unacked = broker.zrange("unacked_index", 0, -1, withscores=True)
        assert len(unacked) == 1, unacked
        delivered_at = unacked[0][1]
        # The dead worker never committed: its backend ends once the trigger's sleep is over and
        # the source rolls the DELETE back.
        real_workers.wait_for(
            lambda: not set(deleting) & set(_running_deletes(source_db)),
            timeout=DELETE_SECONDS + 10, what="the dead worker's DELETE to end", logs=logs,
        )
        assert _callers(source_db) == [ANA_PHONE, ANA_PHONE, ANA_PHONE, OTHER_CALLER]
        clock.mark("dead run rolled back")

        # Redis hands the message out again once it is older than the visibility timeout;
        # a worker looks for such messages when it starts, so start the second one after that.
        time.sleep(max(0.0, delivered_at + VISIBILITY_TIMEOUT + 0.5 - time.time()))
        second = real_workers.start_worker(env, logs[1])

        def finished():
            status = SourceAction.objects.values_list("status", flat=True).get(pk=action.pk)
            return status if status != ActionStatus.RUNNING else None

        final_status = real_workers.wait_for(finished, timeout=30, what="the erasure to finish", workers=[second], logs=logs)
        clock.mark("second worker finished")
        action.refresh_from_db()
        assert final_status == ActionStatus.DONE, f"{action.error}\n{real_workers.log_tails(logs)}"
        # The redelivery carried out the same attempt: not a retry.
        assert action.attempts == 1
        assert action.result["categories"] == [{"category": "calls", "rows": 3, "fields": 12}]
        assert _callers(source_db) == [OTHER_CALLER]

        events = list(AuditEvent.objects.filter(request=request, action__startswith="source_action_").values_list("action", flat=True))
        assert events.count("source_action_done") == 1, events
        assert events.count("source_action_started") == 1, events
        assert "source_action_failed" not in events and "source_action_stale" not in events
        checked, chain_break = verify_chain()
        assert (checked, chain_break) == (AuditEvent.objects.count(), None)

        # The message was acknowledged: nothing left to redeliver.
        assert broker.zcard("unacked_index") == 0 and broker.llen("celery") == broker.llen("long") == 0
    finally:
        for worker in (first, second):
            real_workers.stop_worker(worker)
        broker.flushdb()
        broker.close()
        sql_sources._engine.cache_clear()  # the dry run's pooled connections to the source dropped below
        real_workers.admin_sql(f'DROP DATABASE IF EXISTS "{source_db}" WITH (FORCE)')
        print(f"\naction worker-kill timings (s): {clock}")
