"""A worker killed mid-erasure: the execution is taken over by another worker and the erasure is carried
out exactly once, whether the broker redelivers the task (acks_late) or, long before it would in
production, the periodic requeue_dead_source_actions job queues it again once the heartbeat is stale.

Everything is real: the execution task goes through Redis, the worker is a separate `celery worker` OS
process that is SIGKILLed while its DELETE runs in a PostgreSQL source (a statement trigger makes the
DELETE take a few seconds), its heartbeat timer stamps the action meanwhile and stops with it, the source
rolls the dead run's transaction back, and a second worker process takes the same execution over.
"""

import datetime
import os
import signal
import time

import pytest
import redis as redis_client
from django.db import connection
from django.utils import timezone

from requests_app import tasks
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
BROKER_URL = real_workers.kill_test_broker_url("ACTION_KILL_TEST_REDIS_DB", 13)
# Long enough for the kill to land mid-DELETE, short enough that the dry run (which also
# deletes, then rolls back) and the run that takes over keep each test well under a minute.
DELETE_SECONDS = 4
# The workers' heartbeat: a beat a second, stale after three (production: 30 s and 3 minutes).
HEARTBEAT_INTERVAL = 1
HEARTBEAT_STALE = 3
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


class KilledMidErasure:
    """An approved erasure in a PostgreSQL source whose first worker is SIGKILLed mid-DELETE (`kill`),
    and the second worker that is to take it over (`start_second_worker`, `wait_until_finished`)."""

    def __init__(self, dpo_actor, tmp_path, monkeypatch):
        self.dpo_actor, self.monkeypatch = dpo_actor, monkeypatch
        self.clock = real_workers.Stopwatch()
        self.test_db = connection.settings_dict["NAME"]
        self.source_db = f"{self.test_db}_action_kill"[:63]
        self.broker = redis_client.Redis.from_url(BROKER_URL)
        self.tmp_path = tmp_path
        self.logs = [tmp_path / "action-worker1.log", tmp_path / "action-worker2.log"]
        self.first = self.second = None
        self.env = None

    def kill(self, *, visibility_timeout: int) -> SourceAction:
        """Execute the erasure on the first worker and kill it mid-DELETE; returns the action at the kill."""
        self.broker.flushdb()
        self.env = real_workers.worker_env(
            test_db=self.test_db, broker_url=BROKER_URL, visibility_timeout=visibility_timeout, tmp_path=self.tmp_path,
            MEDIA_ROOT=self.tmp_path / "worker-media",
            SOURCE_ACTION_HEARTBEAT_INTERVAL_SECONDS=HEARTBEAT_INTERVAL,
            SOURCE_ACTION_HEARTBEAT_STALE_SECONDS=HEARTBEAT_STALE,
        )
        real_workers.admin_sql(f'DROP DATABASE IF EXISTS "{self.source_db}" WITH (FORCE)')
        real_workers.admin_sql(f'CREATE DATABASE "{self.source_db}"')
        # The first worker boots while the source is made and the action dry run and approved.
        self.first = real_workers.start_worker(self.env, self.logs[0])

        source_conn = real_workers.source_connect(self.source_db)
        with source_conn, source_conn.cursor() as cursor:
            for statement in SOURCE_SCHEMA:
                cursor.execute(statement)
        source_conn.close()
        source = SourceSystem.objects.create(
            slug="cdr", name="Call records", connector=ConnectorKind.SQL,
            connection_url=real_workers.postgres_url(self.source_db), identity_kind=IdentityKind.PHONE,
            purposes="Billing", legal_basis=LegalBasis.LEGAL_OBLIGATION, retention="12 months", origin="The network",
        )
        SourceCategory.objects.create(
            source=source, slug="calls", category=DataCategory.ELECTRONIC_COMMUNICATIONS,
            query="SELECT * FROM calls WHERE caller IN :identities", table="calls", identity_field="caller",
            erase_method=EraseMethod.DELETE,
        )
        self.request = verified_request(RequestType.ERASURE)

        # Still eager: in a transactional test the dry-run task runs in-process when its transaction commits.
        actions.plan_actions(request=self.request, actor=self.dpo_actor)
        action = self.request.source_actions.get(source=source)
        actions.dry_run_start(action=action, actor=self.dpo_actor)
        action.refresh_from_db()
        assert action.status == ActionStatus.AWAITING_APPROVAL, action.error
        assert action.dry_run["categories"] == [{"category": "calls", "rows": 3, "fields": 12}]
        actions.approve(action=action, actor=self.dpo_actor)
        self.action = action
        self.clock.mark("dry run approved")

        # Publish for real: on commit, to Redis.
        with real_workers.publishing_to(BROKER_URL, self.monkeypatch):
            actions.execute(action=action, actor=self.dpo_actor)

        deleting = real_workers.wait_for(
            lambda: _running_deletes(self.source_db), timeout=30, what="the first worker's DELETE",
            workers=[self.first], logs=self.logs,
        )
        taken = SourceAction.objects.get(pk=action.pk)
        assert taken.run_attempt == 1 and taken.heartbeat_at is not None
        # The timer stamps the heartbeat while the DELETE keeps the run quiet.
        real_workers.wait_for(
            lambda: SourceAction.objects.get(pk=action.pk).heartbeat_at > taken.heartbeat_at,
            timeout=HEARTBEAT_INTERVAL * 3, what="a heartbeat during the DELETE", workers=[self.first], logs=self.logs,
        )
        self.clock.mark("first worker deleting")
        os.kill(self.first.pid, signal.SIGKILL)
        assert self.first.wait(timeout=10) == -signal.SIGKILL
        self.clock.mark("first worker killed")

        at_kill = SourceAction.objects.get(pk=action.pk)
        assert at_kill.status == ActionStatus.RUNNING
        assert at_kill.attempts == 1 and at_kill.run_attempt == 1
        # acks_late: the message is still unacknowledged in Redis, waiting for the visibility timeout.
        unacked = self.broker.zrange("unacked_index", 0, -1, withscores=True)
        assert len(unacked) == 1, unacked
        self.delivered_at = unacked[0][1]
        # The dead worker never committed: its backend ends once the trigger's sleep is over and
        # the source rolls the DELETE back.
        real_workers.wait_for(
            lambda: not set(deleting) & set(_running_deletes(self.source_db)),
            timeout=DELETE_SECONDS + 10, what="the dead worker's DELETE to end", logs=self.logs,
        )
        assert _callers(self.source_db) == [ANA_PHONE, ANA_PHONE, ANA_PHONE, OTHER_CALLER]
        self.clock.mark("dead run rolled back")
        return at_kill

    def start_second_worker(self) -> None:
        self.second = real_workers.start_worker(self.env, self.logs[1])

    def wait_until_finished(self) -> SourceAction:
        def finished():
            status = SourceAction.objects.values_list("status", flat=True).get(pk=self.action.pk)
            return status if status != ActionStatus.RUNNING else None

        real_workers.wait_for(finished, timeout=30, what="the erasure to finish", workers=[self.second], logs=self.logs)
        self.clock.mark("second worker finished")
        return SourceAction.objects.get(pk=self.action.pk)

    def assert_erased_exactly_once(self, action: SourceAction) -> None:
        assert action.status == ActionStatus.DONE, f"{action.error}\n{real_workers.log_tails(self.logs)}"
        # The second worker took the same execution over: not a retry by staff.
        assert action.attempts == 1 and action.run_attempt == 2
        assert action.result["categories"] == [{"category": "calls", "rows": 3, "fields": 12}]
        assert _callers(self.source_db) == [OTHER_CALLER]

        events = list(
            AuditEvent.objects.filter(request=self.request, action__startswith="source_action_").values_list("action", flat=True)
        )
        assert events.count("source_action_done") == 1, events
        assert events.count("source_action_started") == 1, events
        assert "source_action_failed" not in events and "source_action_stale" not in events
        checked, chain_break = verify_chain()
        assert (checked, chain_break) == (AuditEvent.objects.count(), None)

    def close(self) -> None:
        for worker in (self.first, self.second):
            real_workers.stop_worker(worker)
        self.broker.flushdb()
        self.broker.close()
        sql_sources._engine.cache_clear()  # the dry run's pooled connections to the source dropped below
        real_workers.admin_sql(f'DROP DATABASE IF EXISTS "{self.source_db}" WITH (FORCE)')
        print(f"\naction worker-kill timings (s): {self.clock}")


@pytest.fixture
def killed_mid_erasure(dpo_actor, tmp_path, monkeypatch):
    rig = KilledMidErasure(dpo_actor, tmp_path, monkeypatch)
    try:
        yield rig
    finally:
        rig.close()


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_erasure_is_queued_again_by_the_periodic_job_and_erases_exactly_once(
    killed_mid_erasure, settings, monkeypatch
):
    """As in production: the broker would hand the task out again only after hours (the visibility timeout
    outlives the time limit). The job that runs every minute finds the heartbeat stale and queues it."""
    settings.SOURCE_ACTION_HEARTBEAT_STALE_SECONDS = HEARTBEAT_STALE  # the job runs here, with the workers' window
    rig = killed_mid_erasure
    action = rig.kill(visibility_timeout=3600)
    rig.start_second_worker()  # it boots while the heartbeat goes stale

    # Not while the dead run's last beat is recent: it may have been alive.
    last_beat = SourceAction.objects.get(pk=action.pk).heartbeat_at
    stale_at = last_beat + datetime.timedelta(seconds=HEARTBEAT_STALE)
    assert actions.requeue_dead_actions(now=stale_at - datetime.timedelta(seconds=1)) == 0
    time.sleep(max(0.0, (stale_at - timezone.now()).total_seconds() + 0.1))
    with real_workers.publishing_to(BROKER_URL, monkeypatch):
        assert tasks.requeue_dead_source_actions() == 1  # the periodic task, as beat would run it
        assert tasks.requeue_dead_source_actions() == 0  # its task is on its way: queued once
    rig.clock.mark("queued again")

    rig.assert_erased_exactly_once(rig.wait_until_finished())
    # The dead worker's message is still unacknowledged (its redelivery, hours later, will find the
    # action done); the one queued again was acknowledged.
    assert rig.broker.zcard("unacked_index") == 1 and rig.broker.llen("celery") == rig.broker.llen("long") == 0


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_erasure_is_redelivered_and_erases_exactly_once(killed_mid_erasure):
    rig = killed_mid_erasure
    rig.kill(visibility_timeout=5)
    # Redis hands the message out again once it is older than the visibility timeout; a worker looks for
    # such messages when it starts, so start the second one after that, and after the dead run's
    # heartbeat went stale (else it would just retry a bit later).
    last_beat = SourceAction.objects.get(pk=rig.action.pk).heartbeat_at.timestamp()
    time.sleep(max(0.0, rig.delivered_at + 5 + 0.5 - time.time(), last_beat + HEARTBEAT_STALE + 0.5 - time.time()))
    rig.start_second_worker()

    rig.assert_erased_exactly_once(rig.wait_until_finished())
    # The message was acknowledged: nothing left to redeliver.
    assert rig.broker.zcard("unacked_index") == 0 and rig.broker.llen("celery") == rig.broker.llen("long") == 0
