import pytest

from requests_app import lifecycle
from requests_app.audit import Actor
from requests_app.lifecycle import TRANSITIONS, IllegalTransition, StaleRequest
from requests_app.models import AuditEvent, PrivacyRequest, Status
from tests.factories import request_in_status

ALL_PAIRS = [(name, status) for name in TRANSITIONS for status in Status.values]


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "status"), ALL_PAIRS)
def test_every_transition_from_every_status(name, status):
    request = request_in_status(status)
    events_before = AuditEvent.objects.filter(request=request).count()
    spec = TRANSITIONS[name]

    if status in spec.sources:
        lifecycle.transition(request, name, actor=Actor.system(), note="test")
        request.refresh_from_db()
        assert request.status == spec.target
        event = AuditEvent.objects.filter(request=request, action=name).last()
        assert (event.action, event.from_status, event.to_status, event.note) == (name, status, spec.target, "test")
    else:
        with pytest.raises(IllegalTransition):
            lifecycle.transition(request, name, actor=Actor.system())
        request.refresh_from_db()
        assert request.status == status
        assert AuditEvent.objects.filter(request=request).count() == events_before


def test_closed_statuses_allow_no_transition():
    for status in lifecycle.CLOSED_STATUSES:
        assert lifecycle.allowed_transitions(status) == []


@pytest.mark.django_db
def test_unknown_transition_is_refused():
    request = request_in_status(Status.NEW)
    with pytest.raises(IllegalTransition, match="Unknown action"):
        lifecycle.transition(request, "teleport", actor=Actor.system())


@pytest.mark.django_db
def test_stale_status_is_refused_and_nothing_changes():
    request = request_in_status(Status.NEW)
    stale_copy = PrivacyRequest.objects.get(pk=request.pk)
    lifecycle.transition(request, "start_work", actor=Actor.system())

    with pytest.raises(StaleRequest, match="has changed since you loaded it"):
        lifecycle.transition(stale_copy, "start_identity_check", actor=Actor.system(), expected_status=Status.NEW)
    assert PrivacyRequest.objects.get(pk=request.pk).status == Status.IN_PROGRESS


@pytest.mark.django_db
def test_illegal_transition_message_names_both_states():
    request = request_in_status(Status.COMPLETED)
    with pytest.raises(IllegalTransition, match="completed cannot be moved to in progress"):
        lifecycle.transition(request, "start_work", actor=Actor.system())


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_transitions_apply_once():
    """Two people complete and reject the same request at once: exactly one wins."""
    import threading

    from django.db import connection

    request = request_in_status(Status.IN_PROGRESS)
    barrier = threading.Barrier(2)
    outcomes = []

    def act(name):
        copy = PrivacyRequest.objects.get(pk=request.pk)
        barrier.wait()
        try:
            lifecycle.transition(copy, name, actor=Actor.system(), expected_status=Status.IN_PROGRESS)
            outcomes.append("ok")
        except (StaleRequest, IllegalTransition):
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=act, args=(name,)) for name in ("complete", "reject")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["ok", "refused"]
    closing_events = AuditEvent.objects.filter(request=request, action__in=["complete", "reject"])
    assert closing_events.count() == 1
    assert PrivacyRequest.objects.get(pk=request.pk).status == closing_events.get().to_status
