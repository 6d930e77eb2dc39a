"""An execution whose task Redis lost before any worker took it (a restart, say): the lost-work sweep queues it
again, and however many of its tasks then reach a worker, the erasure is carried out once.

Everything is real: the tasks go through Redis and a separate `celery worker` OS process runs them.
"""

import datetime

import pytest
import redis as redis_client
from django.conf import settings
from django.db import connection
from django.utils import timezone

from requests_app.models import ActionStatus, AuditEvent, RequestType, SourceAction
from requests_app.services import actions
from tests import real_workers
from tests.actions.conftest import ANA_PHONE, verified_request

# Not the worker-kill tests' Redis DBs (13, 14): they can run in one session.
BROKER_URL = real_workers.kill_test_broker_url("LOST_ACTION_TEST_REDIS_DB", 12)


@pytest.fixture
def broker():
    client = redis_client.Redis.from_url(BROKER_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def as_if_queued_before_the_window(action: SourceAction) -> None:
    SourceAction.objects.filter(pk=action.pk).update(
        queued_at=timezone.now() - settings.SOURCE_ACTION_LOST_AFTER - datetime.timedelta(minutes=1)
    )


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("source_url", ["sqlite"], indirect=True)  # the source's kind is not what is tested here
def test_an_execution_lost_by_redis_is_queued_again_and_erases_once_however_often_it_is_queued(
    cdr, dpo_actor, source_db, broker, tmp_path, monkeypatch
):
    request = verified_request(RequestType.ERASURE)
    # Still eager: in a transactional test the dry-run task runs in-process when its transaction commits.
    actions.plan_actions(request=request, actor=dpo_actor)
    action = request.source_actions.get(source=cdr)
    actions.dry_run_start(action=action, actor=dpo_actor)
    actions.approve(action=action, actor=dpo_actor)

    with real_workers.publishing_to(BROKER_URL, monkeypatch):
        actions.execute(action=action, actor=dpo_actor)
        assert broker.llen("long") == 1
        broker.flushdb()  # Redis restarted before a worker took the task
        assert actions.requeue_lost_actions() == 0  # queued just now: a worker may yet take it

        as_if_queued_before_the_window(action)
        assert actions.requeue_lost_actions() == 1
        as_if_queued_before_the_window(action)  # no worker took that one either: queued once more
        assert actions.requeue_lost_actions() == 1
    assert broker.llen("long") == 2
    waiting = SourceAction.objects.get(pk=action.pk)
    assert waiting.status == ActionStatus.RUNNING and waiting.heartbeat_at is None

    log = tmp_path / "lost-action-worker.log"
    worker = real_workers.start_worker(
        real_workers.worker_env(
            test_db=connection.settings_dict["NAME"], broker_url=BROKER_URL, visibility_timeout=3600, tmp_path=tmp_path,
            MEDIA_ROOT=tmp_path / "worker-media",
        ),
        log,
    )
    try:
        real_workers.wait_for(
            lambda: SourceAction.objects.get(pk=action.pk).status != ActionStatus.RUNNING,
            timeout=60, what="the erasure to finish", workers=[worker], logs=[log],
        )
        # The second task finds the action done and ends: both acknowledged, nothing left to deliver.
        real_workers.wait_for(
            lambda: broker.llen("long") == 0 and broker.zcard("unacked_index") == 0,
            timeout=30, what="both tasks to be acknowledged", workers=[worker], logs=[log],
        )
    finally:
        real_workers.stop_worker(worker)

    action.refresh_from_db()
    assert action.status == ActionStatus.DONE, f"{action.error}\n{real_workers.log_tails([log])}"
    assert action.attempts == 1 and action.run_attempt == 1  # taken once: not a retry, nor taken over
    assert source_db("SELECT caller FROM calls WHERE caller = :c", c=ANA_PHONE) == []
    events = list(AuditEvent.objects.filter(request=request, action__startswith="source_action_").values_list("action", flat=True))
    assert events.count("source_action_done") == 1 and events.count("source_action_started") == 1, events
