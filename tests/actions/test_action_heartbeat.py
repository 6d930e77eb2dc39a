"""The heartbeat of a source action's run: stamped by a timer while a dry run or an execution lives, so a
live run is never taken over however slow its source, while a dead one is queued again within minutes
(requeue_dead_actions) and taken over by a run that obeys the rules of a redelivered task; a run that
lost its claim stops at its next step; one that keeps dying fails the action, for staff to retry. A run
whose task the broker lost before any worker took it (no heartbeat at all) is queued again by the lost-work
sweep (requeue_lost_actions) and carried out once."""

import datetime
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import time_machine
from django.db import connections
from django.db.models import F
from django.utils import timezone

from requests_app import tasks
from requests_app.heartbeat import ATTEMPTS_BEFORE_GIVING_UP
from requests_app.lifecycle import RequestError
from requests_app.models import ActionStatus, AuditEvent, PrivacyRequest, SourceAction, Status
from requests_app.services import actions, exports, intake
from requests_app.sources import sql as sql_sources
from requests_app.sources.http import HTTPConnector
from tests.actions.conftest import ANA_PHONE
from tests.actions.test_http_actions import add_category, api, seed, source  # noqa: F401 (fixtures)

BEAT = 0.3
STALE = 2


class WorkerKilled(BaseException):
    """Stands for SIGKILL: nothing of the run's own error handling runs (not an Exception)."""


def approved(request, source_system, actor, step) -> SourceAction:
    actions.plan_actions(request=request, actor=actor)
    action = request.source_actions.get(source=source_system)
    step(actions.dry_run_start, action, actor=actor)
    action = step(actions.approve, action, actor=actor)
    assert action.status == ActionStatus.APPROVED, action.error
    return action


def queued_execution(action: SourceAction, actor) -> SourceAction:
    """Executed by staff, its task not run yet (its on-commit callback never comes in this test)."""
    actions.execute(action=action, actor=actor)
    return SourceAction.objects.get(pk=action.pk)


def died(action: SourceAction, *, run_attempt: int = 1, seconds_ago: float | None = None) -> SourceAction:
    """As if `run_attempt` workers took the action's run and the last one was killed `seconds_ago`."""
    from django.conf import settings

    seconds_ago = settings.SOURCE_ACTION_HEARTBEAT_STALE_SECONDS + 1 if seconds_ago is None else seconds_ago
    last_beat = timezone.now() - datetime.timedelta(seconds=seconds_ago)
    taken = {"taken_at": last_beat} if action.status == ActionStatus.RUNNING else {}
    queued = last_beat - datetime.timedelta(minutes=1)  # before a worker took it
    SourceAction.objects.filter(pk=action.pk).update(run_attempt=run_attempt, heartbeat_at=last_beat, queued_at=queued, **taken)
    return SourceAction.objects.get(pk=action.pk)


def events(request) -> list[str]:
    return list(AuditEvent.objects.filter(request=request, action__startswith="source_action_").values_list("action", flat=True))


def heartbeat_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name.endswith("-heartbeat")]


def test_the_sweep_for_dead_action_runs_is_scheduled_every_minute(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["requeue-dead-source-actions"]
    assert entry["task"] == "requests_app.tasks.requeue_dead_source_actions"
    assert entry["schedule"] <= datetime.timedelta(minutes=1)
    assert settings.SOURCE_ACTION_HEARTBEAT_STALE_SECONDS >= 3 * settings.SOURCE_ACTION_HEARTBEAT_INTERVAL_SECONDS
    assert ATTEMPTS_BEFORE_GIVING_UP == exports.ATTEMPTS_BEFORE_GIVING_UP  # the exports' rule


def test_a_dead_execution_is_queued_again_once_and_carried_out(cdr, erasure_request, dpo_actor, source_db, step, settings,
                                                               django_capture_on_commit_callbacks):
    """As after a worker was killed mid-erasure: the SQL source rolled its transaction back, and the broker would
    hand the task out again only hours later. Within minutes, the run queued again carries the erasure out."""
    action = died(queued_execution(approved(erasure_request, cdr, dpo_actor, step), dpo_actor))
    now = timezone.now()

    # A minute earlier its heartbeat was not stale yet: it may have been alive.
    assert actions.requeue_dead_actions(now=now - datetime.timedelta(minutes=1)) == 0
    with django_capture_on_commit_callbacks() as queued:
        assert tasks.requeue_dead_source_actions() == 1  # the periodic task
        assert actions.requeue_dead_actions() == 0  # its task is on its way: not queued twice
    # Unless that task is lost too (not taken within the time limit).
    later = now + datetime.timedelta(seconds=settings.SOURCE_ACTION_TIME_LIMIT + 60)
    with django_capture_on_commit_callbacks(execute=True):
        assert actions.requeue_dead_actions(now=later) == 1
    assert len(queued) == 1

    action.refresh_from_db()
    assert action.status == ActionStatus.DONE, action.error
    assert action.run_attempt == 2 and action.attempts == 1  # taken over: the same execution, not a staff retry
    assert action.result["categories"] == [{"category": "calls", "rows": 2, "fields": 8}]
    assert source_db("SELECT caller FROM calls ORDER BY id") == [{"caller": "+32470000002"}]
    assert events(erasure_request).count("source_action_done") == 1
    for task in queued:  # the first task queued again arrives late: the action is done, nothing more happens
        task()
    assert events(erasure_request).count("source_action_done") == 1
    assert heartbeat_threads() == []


def test_a_dead_dry_run_is_queued_again(crm, erasure_request, dpo_actor, step, django_capture_on_commit_callbacks):
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    action = erasure_request.source_actions.get(source=crm)
    actions.dry_run_start(action=action, actor=dpo_actor)  # taken by a worker that died
    action = died(SourceAction.objects.get(pk=action.pk))

    with django_capture_on_commit_callbacks(execute=True):
        assert actions.requeue_dead_actions() == 1
    action.refresh_from_db()
    assert action.status == ActionStatus.AWAITING_APPROVAL and action.run_attempt == 2
    assert action.dry_run["categories"] == [{"category": "subscribers", "rows": 2, "fields": 5}]


def test_a_run_not_yet_taken_or_beating_is_left_alone(cdr, erasure_request, dpo_actor, step, settings):
    action = queued_execution(approved(erasure_request, cdr, dpo_actor, step), dpo_actor)
    assert action.heartbeat_at is None and action.run_attempt == 0  # waiting for a worker: not dead
    assert actions.requeue_dead_actions(now=timezone.now() + datetime.timedelta(hours=1)) == 0

    died(action, seconds_ago=settings.SOURCE_ACTION_HEARTBEAT_STALE_SECONDS - 5)  # its last beat is recent
    assert actions.requeue_dead_actions() == 0
    with pytest.raises(actions.ActionBusy):  # a second task for it (redelivered, or queued twice) waits
        actions.run_execution(action_id=action.id, token=action.run_token)
    assert SourceAction.objects.get(pk=action.pk).run_attempt == 1


def test_an_execution_whose_task_was_lost_before_a_worker_took_it_is_queued_again_and_carried_out_once(
    cdr, erasure_request, dpo_actor, source_db, step, settings, django_capture_on_commit_callbacks
):
    """Staff clicked Execute while Redis was down (the publish only logged its failure), or Redis restarted before a
    worker took the task: the action sat "running" with no heartbeat, which the dead-run sweep never matches. Past
    SOURCE_ACTION_LOST_AFTER, the lost-work sweep queues it again with the same run; the tasks queued twice, and the
    first one turning up late after all, erase nothing more."""
    action = queued_execution(approved(erasure_request, cdr, dpo_actor, step), dpo_actor)  # its task never runs here
    queued_at, window = action.queued_at, settings.SOURCE_ACTION_LOST_AFTER

    with time_machine.travel(queued_at + window - datetime.timedelta(minutes=1)):
        assert actions.requeue_lost_actions() == 0  # a worker may yet take it
        assert actions.requeue_dead_actions() == 0  # never taken: no run died
    with time_machine.travel(queued_at + window + datetime.timedelta(minutes=1), tick=True):
        with django_capture_on_commit_callbacks() as queued:
            assert tasks.requeue_lost_work() == 1  # the periodic task
            assert actions.requeue_lost_actions() == 0  # its task is on its way: not queued again within the window
    with time_machine.travel(queued_at + 2 * window + datetime.timedelta(minutes=2), tick=True):
        with django_capture_on_commit_callbacks() as queued_again:
            assert actions.requeue_lost_actions() == 1  # that task was lost too
        assert len(queued) == len(queued_again) == 1
        for task in [*queued, *queued_again]:  # both arrive after all, one after the other
            task()
        # And the task Execute queued, late: the action is done, nothing more happens.
        assert actions.run_execution(action_id=action.id, token=action.run_token) == ActionStatus.DONE
        assert actions.requeue_lost_actions() == 0

    action.refresh_from_db()
    assert action.status == ActionStatus.DONE, action.error
    assert action.run_attempt == 1 and action.attempts == 1  # taken once: the same execution, not a staff retry
    assert action.result["categories"] == [{"category": "calls", "rows": 2, "fields": 8}]
    assert source_db("SELECT caller FROM calls ORDER BY id") == [{"caller": "+32470000002"}]
    assert events(erasure_request).count("source_action_done") == 1
    assert heartbeat_threads() == []


def test_a_dry_run_whose_task_was_lost_before_a_worker_took_it_is_queued_again(
    crm, erasure_request, dpo_actor, settings, django_capture_on_commit_callbacks
):
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    action = erasure_request.source_actions.get(source=crm)
    actions.dry_run_start(action=action, actor=dpo_actor)  # its task never runs here
    action = SourceAction.objects.get(pk=action.pk)
    assert action.status == ActionStatus.DRY_RUNNING and action.heartbeat_at is None

    with time_machine.travel(action.queued_at + settings.SOURCE_ACTION_LOST_AFTER - datetime.timedelta(minutes=1)):
        assert actions.requeue_lost_actions() == 0
    with time_machine.travel(action.queued_at + settings.SOURCE_ACTION_LOST_AFTER + datetime.timedelta(minutes=1), tick=True):
        with django_capture_on_commit_callbacks(execute=True):
            assert actions.requeue_lost_actions() == 1
        assert actions.requeue_lost_actions() == 0
    action.refresh_from_db()
    assert action.status == ActionStatus.AWAITING_APPROVAL and action.run_attempt == 1
    assert action.dry_run["categories"] == [{"category": "subscribers", "rows": 2, "fields": 5}]


def test_a_run_a_worker_took_is_not_lost_but_left_to_the_dead_run_sweep(
    crm, cdr, erasure_request, dpo_actor, step, settings, django_capture_on_commit_callbacks
):
    """Its heartbeat says a worker took it: alive, it is left alone; dead, requeue_dead_actions takes it over,
    within minutes, counting the attempt (and giving up after ATTEMPTS_BEFORE_GIVING_UP), which a lost task does not."""
    execution = queued_execution(approved(erasure_request, cdr, dpo_actor, step), dpo_actor)
    dry_run = erasure_request.source_actions.get(source=crm)
    actions.dry_run_start(action=dry_run, actor=dpo_actor)
    runs = [execution, SourceAction.objects.get(pk=dry_run.pk)]
    long_after = timezone.now() + settings.SOURCE_ACTION_LOST_AFTER + datetime.timedelta(hours=1)

    for action in runs:
        died(action, seconds_ago=5)  # taken, and beating
    assert actions.requeue_lost_actions(now=long_after) == 0
    for action in runs:
        died(action)  # taken, and dead
    assert actions.requeue_lost_actions(now=long_after) == 0
    with django_capture_on_commit_callbacks(execute=True):
        assert actions.requeue_dead_actions() == 2
    assert set(erasure_request.source_actions.values_list("status", "run_attempt")) == {
        (ActionStatus.DONE, 2), (ActionStatus.AWAITING_APPROVAL, 2)
    }


@pytest.fixture
def short_heartbeat(settings):
    """A stale window of seconds, not minutes: still several beats long."""
    settings.SOURCE_ACTION_HEARTBEAT_INTERVAL_SECONDS = BEAT
    settings.SOURCE_ACTION_HEARTBEAT_STALE_SECONDS = STALE


def run_in_a_thread(action_id: int, token: str) -> str:
    """run_execution in a thread of its own, as a worker runs it, with its own database connection."""
    try:
        return actions.run_execution(action_id=action_id, token=token)
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_a_live_run_slower_than_the_stale_window_is_never_taken_over(
    api, source, erasure_request, dpo_actor, short_heartbeat, settings, monkeypatch  # noqa: F811
):
    seed(api)
    add_category(source)
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    action = erasure_request.source_actions.get(source=source)
    actions.dry_run_start(action=action, actor=dpo_actor)  # its task runs as the transaction commits (eager)
    actions.approve(action=action, actor=dpo_actor)
    monkeypatch.setattr(tasks, "queue_after_commit", lambda task, *ids: None)  # the worker is the thread below
    action = queued_execution(action, dpo_actor)

    release, deleting = threading.Event(), threading.Event()
    answer = api.answer

    def slow_delete(method, target, body):  # the partner takes its time over the first deletion
        if method == "DELETE":
            deleting.set()
            release.wait(timeout=30)
        return answer(method, target, body)

    monkeypatch.setattr(api, "answer", slow_delete)
    with ThreadPoolExecutor(max_workers=1) as worker:
        first = worker.submit(run_in_a_thread, action.id, action.run_token)
        assert deleting.wait(timeout=20), "the run never reached the partner"
        time.sleep(STALE + 2 * BEAT)  # stuck in one call, with no progress to report, past the stale window

        with pytest.raises(actions.ActionBusy):
            actions.run_execution(action_id=action.id, token=action.run_token)  # its task redelivered
        assert actions.requeue_dead_actions() == 0
        row = SourceAction.objects.get(pk=action.pk)
        assert row.status == ActionStatus.RUNNING and row.run_attempt == 1
        assert timezone.now() - row.heartbeat_at < datetime.timedelta(seconds=STALE)
        # Staff cannot start it again either, even past the time limit: a worker is on it.
        long_ago = timezone.now() - datetime.timedelta(seconds=settings.SOURCE_ACTION_TIME_LIMIT + 1)
        SourceAction.objects.filter(pk=action.pk).update(started_at=long_ago)
        assert not actions.run_lost(SourceAction.objects.get(pk=action.pk))
        with pytest.raises(RequestError, match="already being carried out"):
            actions.execute(action=action, actor=dpo_actor)

        release.set()
        assert first.result(timeout=30) == ActionStatus.DONE
    action.refresh_from_db()
    assert action.run_attempt == 1 and action.result["categories"][0]["rows"] == 3
    assert events(erasure_request).count("source_action_done") == 1
    assert heartbeat_threads() == []


@pytest.mark.parametrize("dies", ["part-way", "after its last change"])
def test_a_dead_run_in_an_http_source_is_counted_whole(
    api, source, erasure_request, dpo_actor, step, monkeypatch, django_capture_on_commit_callbacks, dies  # noqa: F811
):
    """HTTP has no rollback: what the dead run deleted stays deleted, and must stay counted. Part-way, the run
    taken over stops as stale (nobody approved acting on what the source is now), counting the dead run's
    deletions; after its last change, it records the approved erasure done, counted once."""
    seed(api)  # Ana's three calls
    add_category(source)
    action = queued_execution(approved(erasure_request, source, dpo_actor, step), dpo_actor)

    deletes = 0
    call = HTTPConnector._call

    def killed_before_the_second_delete(connector, method, url, **kwargs):
        nonlocal deletes
        if method == "DELETE":
            deletes += 1
            if deletes == 2:
                raise WorkerKilled
        return call(connector, method, url, **kwargs)

    def killed_before_recording(*args, **kwargs):
        raise WorkerKilled

    with monkeypatch.context() as patched:
        if dies == "part-way":
            patched.setattr(HTTPConnector, "_call", killed_before_the_second_delete)
        else:
            patched.setattr(actions, "_finish", killed_before_recording)
        with pytest.raises(WorkerKilled):
            actions.run_execution(action_id=action.id, token=action.run_token)
    deleted = 1 if dies == "part-way" else 3
    assert len(api.data[("calls", ANA_PHONE)]) == 3 - deleted
    recorded = SourceAction.objects.get(pk=action.pk).progress["changed"]
    assert recorded == [{"category": "calls", "rows": deleted, "fields": deleted * 5, "deleted": True}]

    died(SourceAction.objects.get(pk=action.pk))
    with django_capture_on_commit_callbacks(execute=True):
        assert actions.requeue_dead_actions() == 1
    action.refresh_from_db()
    if dies == "part-way":
        assert action.status == ActionStatus.STALE
        assert action.result["categories"] == recorded and action.result["changed_before_failing"]
        stale = AuditEvent.objects.get(request=erasure_request, action="source_action_stale")
        assert stale.data["categories"] == recorded  # the trail says what the dead run did
        assert len(api.data[("calls", ANA_PHONE)]) == 2  # nothing more without a new approval
        # Staff run the dry run again, approve what is left, and execute it.
        for service in (actions.dry_run_start, actions.approve, actions.execute):
            action = step(service, action, actor=dpo_actor)
    assert action.status == ActionStatus.DONE, action.error
    assert api.data[("calls", ANA_PHONE)] == []
    (counts,) = action.result["categories"]
    assert (counts["rows"], counts["fields"]) == (3, 15)  # every deletion, each once
    assert events(erasure_request).count("source_action_done") == 1


def test_a_run_that_lost_its_claim_stops_before_its_next_write(
    api, source, erasure_request, dpo_actor, step, monkeypatch  # noqa: F811
):
    """Its heartbeat could not be stamped for minutes and another run took the execution over: it leaves
    the rest, and the outcome, to that run."""
    seed(api)
    add_category(source)
    action = queued_execution(approved(erasure_request, source, dpo_actor, step), dpo_actor)
    call = HTTPConnector._call

    def taken_over_after_the_first_delete(connector, method, url, **kwargs):
        answer = call(connector, method, url, **kwargs)
        if method == "DELETE":
            SourceAction.objects.filter(pk=action.pk).update(run_attempt=F("run_attempt") + 1, heartbeat_at=timezone.now())
        return answer

    monkeypatch.setattr(HTTPConnector, "_call", taken_over_after_the_first_delete)
    assert actions.run_execution(action_id=action.id, token=action.run_token) == ActionStatus.RUNNING
    assert [method for method, _path, _body in api.writes()] == ["DELETE"]
    action.refresh_from_db()
    assert action.status == ActionStatus.RUNNING and action.run_attempt == 2  # the other run's
    assert "source_action_done" not in events(erasure_request)


def test_a_sql_run_that_lost_its_claim_rolls_back(cdr, erasure_request, dpo_actor, source_db, step, monkeypatch):
    action = queued_execution(approved(erasure_request, cdr, dpo_actor, step), dpo_actor)
    change = sql_sources.SQLConnector._change

    def taken_over_meanwhile(connector, *args):
        change(connector, *args)
        SourceAction.objects.filter(pk=action.pk).update(run_attempt=F("run_attempt") + 1, heartbeat_at=timezone.now())

    monkeypatch.setattr(sql_sources.SQLConnector, "_change", taken_over_meanwhile)
    assert actions.run_execution(action_id=action.id, token=action.run_token) == ActionStatus.RUNNING
    assert len(source_db("SELECT id FROM calls WHERE caller = :c", c=ANA_PHONE)) == 2  # left to the run that took over
    assert events(erasure_request) == ["source_action_dry_run_started", "source_action_approved", "source_action_started"]


def test_a_run_that_keeps_dying_fails_the_action_and_staff_can_retry(
    cdr, erasure_request, dpo, dpo_actor, step, source_db, client
):
    """Out of memory on every try: it is not started again and again; staff see why and retry once they looked."""
    from django.urls import reverse

    from tests.conftest import login_staff

    action = died(queued_execution(approved(erasure_request, cdr, dpo_actor, step), dpo_actor), run_attempt=ATTEMPTS_BEFORE_GIVING_UP)
    assert actions.run_execution(action_id=action.id, token=action.run_token) == ActionStatus.RUNNING  # redelivered: not started
    assert actions.requeue_dead_actions() == 0

    action.refresh_from_db()
    assert action.status == ActionStatus.FAILED
    assert action.error == "The worker carrying it out stopped 3 times (out of memory, or killed): check the source, then retry."
    failed = AuditEvent.objects.get(request=erasure_request, action="source_action_failed")
    assert failed.data["error"] == action.error
    assert len(source_db("SELECT id FROM calls WHERE caller = :c", c=ANA_PHONE)) == 2

    page = login_staff(client, dpo).get(reverse("staff:request", args=[erasure_request.reference])).content.decode()
    assert action.error in page
    assert reverse("staff:source_action", args=[action.public_id, "retry"]) in page

    action = step(actions.execute, action, actor=dpo_actor)  # "Retry"
    assert action.status == ActionStatus.DONE and action.attempts == 2 and action.run_attempt == 1
    assert source_db("SELECT id FROM calls WHERE caller = :c", c=ANA_PHONE) == []


def test_a_dry_run_that_keeps_dying_goes_back_to_planned(crm, erasure_request, dpo_actor, step):
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    action = erasure_request.source_actions.get(source=crm)
    actions.dry_run_start(action=action, actor=dpo_actor)
    action = died(SourceAction.objects.get(pk=action.pk), run_attempt=ATTEMPTS_BEFORE_GIVING_UP)

    assert actions.requeue_dead_actions() == 0
    action.refresh_from_db()
    assert action.status == ActionStatus.PLANNED
    assert "worker running the dry run stopped 3 times" in action.error
    action = step(actions.dry_run_start, action, actor=dpo_actor)  # "Dry run again"
    assert action.status == ActionStatus.AWAITING_APPROVAL and action.error == ""


def test_a_dead_dry_run_of_a_withdrawn_request_is_ended_not_queued_again(crm, erasure_request, dpo_actor):
    from requests_app.audit import Actor

    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    action = erasure_request.source_actions.get(source=crm)
    actions.dry_run_start(action=action, actor=dpo_actor)
    action = died(SourceAction.objects.get(pk=action.pk))
    intake.request_withdraw(request=erasure_request, actor=Actor.subject())

    assert actions.requeue_dead_actions() == 0
    action.refresh_from_db()
    assert action.status == ActionStatus.PLANNED and action.error == "Not run: the request is withdrawn now."


def test_a_dead_execution_of_a_withdrawn_request_is_failed_not_left_running(
    cdr, erasure_request, dpo_actor, step, source_db, django_capture_on_commit_callbacks
):
    """Queued again so that its run looks at the source: had the dead run erased the calls, the trail would
    have to say so. It had not: the action is failed, not carried out."""
    from requests_app.audit import Actor

    action = died(queued_execution(approved(erasure_request, cdr, dpo_actor, step), dpo_actor))
    intake.request_withdraw(request=erasure_request, actor=Actor.subject())
    assert PrivacyRequest.objects.get(pk=erasure_request.pk).status == Status.WITHDRAWN

    with django_capture_on_commit_callbacks(execute=True):
        assert actions.requeue_dead_actions() == 1
    action.refresh_from_db()
    assert action.status == ActionStatus.FAILED and action.error == "Not carried out: the request is withdrawn now."
    assert len(source_db("SELECT id FROM calls WHERE caller = :c", c=ANA_PHONE)) == 2
    assert actions.requeue_dead_actions() == 0  # nothing left running


def test_staff_may_start_again_only_a_run_no_live_worker_holds(cdr, erasure_request, dpo_actor, step, settings):
    action = queued_execution(approved(erasure_request, cdr, dpo_actor, step), dpo_actor)
    long_ago = timezone.now() - datetime.timedelta(seconds=settings.SOURCE_ACTION_TIME_LIMIT + 1)
    SourceAction.objects.filter(pk=action.pk).update(started_at=long_ago)  # its task was lost (never taken)
    assert actions.run_lost(SourceAction.objects.get(pk=action.pk))

    SourceAction.objects.filter(pk=action.pk).update(heartbeat_at=timezone.now(), run_attempt=1)  # a worker has it
    assert not actions.run_lost(SourceAction.objects.get(pk=action.pk))
    SourceAction.objects.filter(pk=action.pk).update(heartbeat_at=long_ago)  # and died
    assert actions.run_lost(SourceAction.objects.get(pk=action.pk))
