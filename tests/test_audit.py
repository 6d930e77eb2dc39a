import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from requests_app import lifecycle, tasks
from requests_app.audit import (
    Actor,
    check_chain,
    record_event,
    verify_chain,
    verify_request_events,
)
from requests_app.models import (
    AuditChainCheck,
    AuditChainHead,
    AuditEvent,
    Channel,
    Organisation,
    Status,
)
from tests.factories import request_in_status, staff_in_role, submit_request


@pytest.mark.django_db
def test_submission_writes_an_event_with_no_personal_data():
    request = submit_request(subject_name="Ana Peeters", subject_email="ana@example.com")
    event = AuditEvent.objects.get(request=request)
    assert (event.action, event.to_status, event.actor_kind) == ("submitted", Status.AWAITING_VERIFICATION, "subject")
    content = f"{event.actor_label} {event.note} {event.data}"
    assert "Ana" not in content and "ana@example.com" not in content


@pytest.mark.django_db
def test_events_are_chained_in_order():
    request = request_in_status(Status.IN_PROGRESS)
    events = list(AuditEvent.objects.order_by("sequence"))
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    for previous, event in zip(events, events[1:]):
        assert event.previous_hash == previous.hash
    assert verify_chain() == (len(events), None)
    assert request.events.count() == len(events)


@pytest.mark.django_db
def test_a_submission_locks_the_chain_head_last():
    """Every change waits for the chain head's lock: a submission takes it just before it commits."""
    organisation = Organisation.objects.create(name="Mobile Operator SA")
    submit_request()  # the first event of the chain creates its head
    with CaptureQueriesContext(connection) as queries:
        submit_request(channel=Channel.API, organisation=organisation, actor=Actor.organisation(organisation))
    sql = [query["sql"] for query in queries.captured_queries]
    locked = next(n for n, statement in enumerate(sql) if "auditchainhead" in statement and "FOR UPDATE" in statement)
    after = [statement.split()[:3] for statement in sql[locked + 1 :]]
    assert after == [["INSERT", "INTO", '"requests_app_auditevent"'], ["UPDATE", '"requests_app_auditchainhead"', "SET"], ["RELEASE", "SAVEPOINT", after[-1][2]]]


@pytest.mark.django_db
def test_chain_check_names_the_edited_event():
    request_in_status(Status.COMPLETED)
    victim = AuditEvent.objects.get(action="start_work")
    AuditEvent.objects.filter(pk=victim.pk).update(note="edited after the fact")

    checked, broken = verify_chain()
    assert broken.sequence == victim.sequence
    assert broken.event_id == victim.id
    assert "content does not match" in broken.reason
    assert checked == victim.sequence - 1


@pytest.mark.django_db
def test_chain_check_catches_a_deleted_event():
    request_in_status(Status.COMPLETED)
    victim = AuditEvent.objects.get(action="start_work")
    AuditEvent.objects.filter(pk=victim.pk)._raw_delete(AuditEvent.objects.db)

    _, broken = verify_chain()
    assert broken.sequence == victim.sequence
    assert "missing" in broken.reason


@pytest.mark.django_db
def test_chain_check_catches_a_rewritten_hash_chain_tail():
    """Recomputing an edited event's own hash still breaks the link to the next one."""
    from requests_app.audit import event_hash

    request_in_status(Status.COMPLETED)
    victim = AuditEvent.objects.get(action="start_work")
    victim.note = "forged"
    AuditEvent.objects.filter(pk=victim.pk).update(note="forged", hash=event_hash(victim))

    _, broken = verify_chain()
    assert broken.sequence == victim.sequence + 1
    assert "previous_hash" in broken.reason


@pytest.mark.django_db
def test_chain_check_catches_an_event_written_past_the_chain_head():
    from requests_app.audit import event_hash

    request_in_status(Status.NEW)
    last = AuditEvent.objects.order_by("-sequence").first()
    forged = AuditEvent(
        sequence=last.sequence + 1, request=last.request, actor_kind=last.actor_kind, actor_label="system",
        action="complete", data={}, created_at=last.created_at, previous_hash=last.hash,
    )
    forged.hash = event_hash(forged)  # a well-made link...
    AuditEvent.objects.bulk_create([forged])  # ...written around record_event: the head stays where it was

    _, broken = verify_chain()
    assert broken.reason == f"event #{forged.sequence} lies past the chain head (#{last.sequence})"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_event_appended_while_the_chain_is_walked_is_no_break(monkeypatch):
    """The nightly walk runs while requests come in: what is appended meanwhile is the next walk's."""
    import threading

    from requests_app import audit

    request_in_status(Status.NEW)
    real_event_hash = audit.event_hash
    appended = []

    def event_hash_with_a_submission_meanwhile(event):
        if threading.current_thread() is threading.main_thread() and not appended:
            # Another connection files a request in the middle of the walk, and commits.
            thread = threading.Thread(target=lambda: appended.append(submit_request().reference))
            thread.start()
            thread.join()
        return real_event_hash(event)

    monkeypatch.setattr(audit, "event_hash", event_hash_with_a_submission_meanwhile)
    checked, broken = verify_chain()
    assert appended and broken is None
    monkeypatch.undo()
    assert verify_chain() == (checked + 1, None)  # the next walk takes it


@pytest.mark.django_db
def test_verify_command_reports_intact_and_broken_chains(capsys):
    request_in_status(Status.NEW)
    call_command("verify_audit_chain")
    assert "Audit chain intact: 2 events." in capsys.readouterr().out
    assert AuditChainCheck.objects.get().intact  # recorded, for the staff home page and certificates

    AuditEvent.objects.filter(sequence=2).update(action="complete")
    with pytest.raises(CommandError, match=r"broken at event #2"):
        call_command("verify_audit_chain")


@pytest.mark.django_db
def test_a_chain_rewritten_hashes_and_all_is_caught_by_the_hash_a_digest_recorded(capsys):
    """Whoever can write to the database can recompute every hash after an edit: the chain then checks out
    in itself, but not against the head hash the daily digest put in the DPOs' mailboxes."""
    from requests_app.audit import event_hash
    from requests_app.services.routing import send_daily_digest

    request_in_status(Status.NEW)
    send_daily_digest()
    head = AuditChainHead.objects.get()
    recorded = f"{head.sequence}:{head.hash}"
    assert f"--expect {recorded}" in mail.outbox[-1].body

    AuditEvent.objects.filter(sequence=1).update(note="edited")
    previous = "0" * 64
    for event in AuditEvent.objects.order_by("sequence"):  # the rewrite: every hash recomputed
        event.previous_hash = previous
        previous = event_hash(event)
        AuditEvent.objects.filter(pk=event.pk).update(previous_hash=event.previous_hash, hash=previous)
    AuditChainHead.objects.update(hash=previous)

    call_command("verify_audit_chain")  # consistent in itself
    with pytest.raises(CommandError, match=rf"Audit event #{head.sequence} has the hash {previous}, not {head.hash}"):
        call_command("verify_audit_chain", expect=[recorded])
    with pytest.raises(CommandError, match="--expect takes SEQUENCE:HASH"):
        call_command("verify_audit_chain", expect=["2:abc"])


@pytest.mark.django_db
def test_events_cannot_be_changed_or_deleted_through_the_model():
    request = request_in_status(Status.NEW)
    event = request.events.first()
    with pytest.raises(ValueError, match="append-only"):
        event.save()
    with pytest.raises(ValueError, match="append-only"):
        event.delete()


@pytest.mark.django_db(transaction=True)
def test_record_event_refuses_to_run_outside_a_transaction():
    request = request_in_status(Status.NEW)
    with pytest.raises(RuntimeError, match="inside the transaction"):
        record_event(request, "note_added", actor=Actor.system())


@pytest.mark.django_db
def test_a_failed_action_leaves_no_event():
    request = request_in_status(Status.NEW)
    before = AuditEvent.objects.count()
    with pytest.raises(lifecycle.IllegalTransition):
        lifecycle.transition(request, "complete", actor=Actor.system())
    assert AuditEvent.objects.count() == before
    assert verify_chain()[1] is None


@pytest.mark.django_db
def test_staff_actor_is_recorded(staff_user):
    request = request_in_status(Status.NEW)
    lifecycle.transition(request, "start_work", actor=Actor.staff(staff_user))
    event = request.events.last()
    assert (event.actor_id, event.actor_label, event.actor_kind) == (staff_user.id, staff_user.username, "staff")


# --- checking one request's events, and the nightly walk ------------------------


def interleaved_requests():
    """Two requests whose events alternate in the chain, so each one's neighbours belong to the other."""
    first, second = submit_request(), submit_request()
    for action in ("verify_email", "start_work"):
        for request in (first, second):
            lifecycle.transition(request, action, actor=Actor.system())
    return first, second


@pytest.mark.django_db
def test_one_requests_events_are_verified_where_they_sit_in_the_chain():
    first, second = interleaved_requests()
    assert verify_request_events(first) == (3, None)
    assert verify_request_events(second) == (3, None)


@pytest.mark.django_db
def test_one_requests_check_reads_its_own_events_and_their_neighbours_only():
    first, _ = interleaved_requests()
    with CaptureQueriesContext(connection) as few:
        verify_request_events(first)
    for _ in range(5):
        interleaved_requests()
    with CaptureQueriesContext(connection) as many:
        assert verify_request_events(first) == (3, None)
    assert len(many) == len(few) == 3


@pytest.mark.django_db
def test_one_requests_check_names_its_edited_event():
    first, _ = interleaved_requests()
    victim = first.events.get(action="start_work")
    AuditEvent.objects.filter(pk=victim.pk).update(note="edited after the fact")
    checked, broken = verify_request_events(first)
    assert (checked, broken.sequence, broken.event_id) == (2, victim.sequence, victim.id)
    assert "content does not match" in broken.reason


@pytest.mark.django_db
def test_one_requests_check_catches_a_rehashed_event_by_the_next_link():
    from requests_app.audit import event_hash

    first, second = interleaved_requests()
    victim = first.events.get(action="verify_email")
    victim.note = "forged"
    AuditEvent.objects.filter(pk=victim.pk).update(note="forged", hash=event_hash(victim))
    _, broken = verify_request_events(first)
    assert broken.sequence == victim.sequence + 1 and "previous_hash" in broken.reason
    # The other request's event after it shows the break too.
    assert verify_request_events(second)[1].sequence == victim.sequence + 1


@pytest.mark.django_db
def test_one_requests_check_catches_a_deleted_neighbour():
    first, _ = interleaved_requests()
    last = first.events.order_by("sequence").last()
    AuditEvent.objects.filter(sequence=last.sequence + 1)._raw_delete(AuditEvent.objects.db)
    _, broken = verify_request_events(first)
    assert broken.sequence == last.sequence + 1 and "missing" in broken.reason


@pytest.mark.django_db
def test_the_newest_event_is_checked_against_the_chain_head():
    request = request_in_status(Status.NEW)
    assert verify_request_events(request) == (2, None)
    AuditChainHead.objects.update(sequence=3)  # as if the event after it had been deleted
    _, broken = verify_request_events(request)
    assert broken.sequence == 3 and "missing" in broken.reason


@pytest.mark.django_db
def test_the_nightly_check_records_an_intact_chain_and_emails_nobody(mailoutbox):
    request_in_status(Status.NEW)
    assert tasks.verify_audit_chain() is True
    check = AuditChainCheck.objects.get()
    assert (check.intact, check.events_checked) == (True, 2)
    assert mailoutbox == []


@pytest.mark.django_db
def test_the_nightly_check_alerts_the_dpos_when_the_chain_is_broken(mailoutbox, settings, django_capture_on_commit_callbacks):
    settings.DPO_EMAIL = "dpo@carrier.example"
    staff_in_role("DPO", username="chief", email="chief@carrier.example")
    staff_in_role("Handler", username="handler", email="handler@carrier.example")
    request_in_status(Status.IN_PROGRESS)
    AuditEvent.objects.filter(sequence=2).update(note="edited")

    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.verify_audit_chain() is False
    check = AuditChainCheck.objects.get()
    assert (check.broken_at_sequence, check.events_checked) == (2, 1)
    [message] = mailoutbox
    assert set(message.to) == {"dpo@carrier.example", "chief@carrier.example"}
    assert "broken at event #2: its content does not match its hash" in message.body
    assert AuditChainCheck.objects.get().alert_sent_at is not None  # no longer owed


@pytest.mark.django_db
def test_the_staff_home_page_shows_the_latest_check(client):
    from django.urls import reverse

    from tests.conftest import login_staff

    login_staff(client, staff_in_role("Auditor", username="auditor"))
    page = client.get(reverse("staff:home")).content.decode()
    assert "has not been checked yet" in page

    request_in_status(Status.NEW)
    check_chain()
    page = client.get(reverse("staff:home")).content.decode()
    assert "2 events, no break" in page and '<div role="alert"><ul class="messages">' not in page

    AuditEvent.objects.filter(sequence=1).update(note="edited")
    check_chain()
    page = client.get(reverse("staff:home")).content.decode()
    assert '<div role="alert"><ul class="messages">' in page and "found broken" in page and "at event #1" in page


@pytest.mark.django_db
def test_the_staff_home_page_dates_the_check_as_it_dates_everything_else(client):
    import datetime

    from django.urls import reverse
    from django.utils import timezone

    from tests.conftest import login_staff

    login_staff(client, staff_in_role("Auditor", username="auditor"))
    request_in_status(Status.NEW)
    check_chain()
    noon = timezone.make_aware(datetime.datetime(2026, 12, 1, 12, 43))
    AuditChainCheck.objects.update(checked_at=noon)
    page = client.get(reverse("staff:home")).content.decode()
    assert "Audit trail checked on 01/12/2026 12:43" in page and "2026-12-01" not in page

    AuditEvent.objects.filter(sequence=1).update(note="edited")
    check_chain()
    AuditChainCheck.objects.update(checked_at=noon)
    page = client.get(reverse("staff:home")).content.decode()
    assert "found broken on 01/12/2026 12:43" in page and "2026-12-01" not in page
