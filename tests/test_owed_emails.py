"""Emails owed once a change commits are sent even when the broker loses their task (a Redis restart):
the requeue_lost_work job queues them again after 2 hours, and each still goes out once."""

from datetime import timedelta

import kombu.exceptions
import pytest
import time_machine
from django.conf import settings
from django.core import mail
from django.utils import timezone

from requests_app import emails, lifecycle, tasks
from requests_app.audit import Actor
from requests_app.models import (
    AuditChainCheck,
    AuditEvent,
    Channel,
    ExportPackage,
    ExportStatus,
    Organisation,
    PrivacyRequest,
    SentNotification,
    Status,
    WebhookEndpoint,
)
from requests_app.services import deadlines, exports, handling, intake, routing, webhooks
from tests.factories import released_package, request_in_status, staff_in_role, submit_request

pytestmark = pytest.mark.django_db

SUBJECT = "ana@example.com"


def extension(request, dpo):
    deadlines.request_extend(request=request, actor=Actor.staff(dpo), reason="Many systems to search")
    return [SUBJECT], "more time"


def assignment(request, dpo):
    handler = staff_in_role("Handler", username="h1", email="h1@example.com")
    routing.request_assign(request=request, assignee=handler, actor=Actor.staff(dpo))
    return ["h1@example.com"], "assigned to you"


def reply(request, dpo):
    handling.subject_reply(request=request, body="Here is my customer number.")
    return [settings.DPO_EMAIL], "replied"


def withdrawal(request, dpo):
    # In the team's queue; recorded from a letter, without an address: the subject's confirmation is not owed.
    PrivacyRequest.objects.filter(pk=request.pk).update(routed_at=timezone.now(), subject_email="")
    intake.request_withdraw(request=request, actor=Actor.subject())
    return [settings.DPO_EMAIL], "withdrawn"


def withdrawal_confirmation(request, dpo):
    intake.request_withdraw(request=request, actor=Actor.subject())  # not in the team's queue: only the subject is told
    return [SUBJECT], "has been withdrawn"


def export_ready(request, dpo):
    export = ExportPackage.objects.create(request=request, kind="access", status=ExportStatus.READY)
    exports.export_release(export=export, actor=Actor.staff(dpo))
    return [SUBJECT], "ready"


def status_link(request, dpo):
    """Asked for on the lost-link page: the asking counts against the subject's limit, so its email must go."""
    intake.resend_link(request_id=request.id)
    return [SUBJECT], request.reference


@pytest.mark.parametrize(
    "action", [extension, assignment, reply, withdrawal, withdrawal_confirmation, export_ready, status_link]
)
def test_an_owed_email_whose_task_was_lost_is_sent_once(action, django_capture_on_commit_callbacks):
    dpo = staff_in_role("DPO", username="dpo1")
    request = request_in_status(Status.IN_PROGRESS, subject_email=SUBJECT)
    # Outside the capture, the task queued on commit never runs: as if Redis restarted and lost it.
    to, words = action(request, dpo)
    mail.outbox.clear()
    assert emails.requeue_owed_emails() == 0  # queued just now: a worker may yet take it
    later = timezone.now() + timedelta(hours=3)
    with django_capture_on_commit_callbacks(execute=True):
        assert emails.requeue_owed_emails(now=later) == 1
    (email,) = mail.outbox
    assert email.to == to and words in email.subject
    assert emails.requeue_owed_emails(now=later + timedelta(hours=3)) == 0  # sent: never again


def test_the_confirmation_after_verification_is_owed_too(django_capture_on_commit_callbacks):
    request = submit_request(subject_email=SUBJECT)
    intake.request_verify_email(token=intake.verification_token(request))
    with django_capture_on_commit_callbacks(execute=True):
        assert emails.requeue_owed_emails(now=timezone.now() + timedelta(hours=3)) == 1
    (email,) = mail.outbox
    assert email.to == [SUBJECT] and email.subject.endswith("is confirmed")


def test_a_task_that_runs_as_well_sends_nothing_twice(django_capture_on_commit_callbacks):
    request = request_in_status(Status.IN_PROGRESS, subject_email=SUBJECT)
    with django_capture_on_commit_callbacks(execute=True):
        extension(request, staff_in_role("DPO", username="dpo1"))
    assert len(mail.outbox) == 1
    tasks.send_extension_email(request.id)  # the broker delivered the task twice
    assert len(mail.outbox) == 1
    assert emails.requeue_owed_emails(now=timezone.now() + timedelta(hours=3)) == 0
    assert SentNotification.objects.get(request=request, kind="deadline_extended").sent_at is not None


def test_an_owed_email_is_left_alone_while_retried_and_after_a_week(settings):
    request = request_in_status(Status.IN_PROGRESS, subject_email=SUBJECT)
    extension(request, staff_in_role("DPO", username="dpo1"))
    tried_at = timezone.now() + timedelta(hours=3)
    settings.EMAIL_BACKEND = "tests.services.test_intake.RefusingMailBackend"
    with time_machine.travel(tried_at), pytest.raises(ConnectionRefusedError):
        tasks.send_extension_email(request.id)  # one try of the retrying task; the mail server is down
    assert emails.requeue_owed_emails(now=tried_at + timedelta(hours=1)) == 0  # its own retries go on
    assert emails.requeue_owed_emails(now=tried_at + timedelta(hours=2, minutes=30)) == 1
    assert emails.requeue_owed_emails(now=timezone.now() + timedelta(days=8)) == 0  # too late to help


def test_an_email_no_longer_due_is_forgiven(django_capture_on_commit_callbacks):
    """A package withdrawn with its request, or a request reassigned since: nothing goes, and the sweep stops."""
    dpo = staff_in_role("DPO", username="dpo1")
    request = request_in_status(Status.IN_PROGRESS, subject_email=SUBJECT)
    export_ready(request, dpo)
    assignment(request, dpo)
    without_email = staff_in_role("Handler", username="h2", email="")  # so that no email is owed to them
    routing.request_assign(request=request, assignee=without_email, actor=Actor.staff(dpo))
    intake.request_withdraw(request=request, actor=Actor.subject())
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        emails.requeue_owed_emails(now=timezone.now() + timedelta(hours=3))
    # Only the withdrawal notice and its confirmation to the subject are still due: not "your data is ready", nor h1's assignment.
    assert sorted(email.subject for email in mail.outbox) == [
        f"Request {request.reference} was withdrawn",
        f"Your privacy request {request.reference} has been withdrawn",
    ]
    assert not SentNotification.objects.filter(request=request, sent_at__isnull=True).exists()


def test_the_withdrawal_confirmation_run_twice_is_sent_once_and_not_once_purged(django_capture_on_commit_callbacks):
    request = request_in_status(Status.IN_PROGRESS, subject_email=SUBJECT)
    with django_capture_on_commit_callbacks(execute=True):
        intake.request_withdraw(request=request, actor=Actor.subject())
    tasks.send_withdrawal_confirmation(request.id)  # the broker delivered the task twice
    assert [email.to for email in mail.outbox] == [[SUBJECT]]

    purged = request_in_status(Status.IN_PROGRESS, subject_email=SUBJECT)
    intake.request_withdraw(request=purged, actor=Actor.subject())  # its task lost...
    intake.purge_personal_data(purged)  # ...and its data purged before the sweep: nothing left to send
    tasks.send_withdrawal_confirmation(purged.id)
    assert len(mail.outbox) == 1
    assert emails.requeue_owed_emails(now=timezone.now() + timedelta(hours=3)) == 0


def test_a_purge_leaves_nothing_owed():
    request = request_in_status(Status.IN_PROGRESS, subject_email=SUBJECT)
    extension(request, staff_in_role("DPO", username="dpo1"))
    intake.purge_personal_data(request)
    assert emails.requeue_owed_emails(now=timezone.now() + timedelta(hours=3)) == 0


def test_a_staff_address_refused_for_good_is_no_longer_owed(smtp_server):
    dpo = staff_in_role("DPO", username="dpo1")
    request = request_in_status(Status.IN_PROGRESS, subject_email=SUBJECT)
    handler = staff_in_role("Handler", username="h1", email="gone@example.com")
    routing.request_assign(request=request, assignee=handler, actor=Actor.staff(dpo))
    sequence = request.events.filter(action="assigned").latest("sequence").sequence
    with pytest.raises(emails.EmailRejected):
        tasks.send_assignment_email(request.id, sequence)
    assert emails.requeue_owed_emails(now=timezone.now() + timedelta(hours=3)) == 0
    assert smtp_server.refused == ["gone@example.com"]


@pytest.mark.parametrize("assignee_state", ["active", "deactivated"])
def test_a_reply_is_told_to_the_assignee_or_to_the_dpo_once_the_assignee_left(assignee_state, django_capture_on_commit_callbacks):
    """A deactivated account's owner left: their mailbox would tell nobody that the subject answered."""
    handler = staff_in_role("Handler", username="h1", email="h1@example.com", is_active=assignee_state == "active")
    request = request_in_status(Status.IN_PROGRESS, subject_email=SUBJECT)
    PrivacyRequest.objects.filter(pk=request.pk).update(assignee=handler)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        handling.subject_reply(request=PrivacyRequest.objects.get(pk=request.pk), body="Here is my customer number.")
    (email,) = mail.outbox
    assert email.to == (["h1@example.com"] if assignee_state == "active" else [settings.DPO_EMAIL])


def test_work_is_taken_for_lost_only_after_twice_the_longest_wait_between_tries():
    """A task waiting an hour before its next try must not be queued a second time meanwhile."""
    assert emails.LOST_TASK_AFTER.total_seconds() >= 2 * tasks.EMAIL_RETRY["retry_backoff_max"]


def withdrawn(request, dpo):
    intake.request_withdraw(request=request, actor=Actor.subject())  # from the status page the verification link opened
    return ["was withdrawn", "has been withdrawn"]  # to the assignee, and to the subject


def rejected(request, dpo):
    handling.request_reject(
        request=request, actor=Actor.staff(dpo), ground="other", explanation="We hold no account in this name.",
        expected_status=Status.IN_PROGRESS,
    )
    return [f"Your privacy request {request.reference}"]  # the letter that refuses it


def completed(request, dpo):
    released_package(request)  # what completing an access request needs; its email is the test below
    handling.request_complete(request=request, actor=Actor.staff(dpo), letter="Your copy is attached.", expected_status=Status.IN_PROGRESS)
    return ["is complete"]


OPEN_REQUEST_WORDS = ("is confirmed", "more time", "assigned to you")


@pytest.mark.parametrize("close", [withdrawn, rejected, completed])
def test_emails_owed_while_the_request_was_open_are_dropped_once_it_closed(close, django_capture_on_commit_callbacks):
    """Their tasks lost, or retried while the mail server was down, until after the request closed: "we received
    it", "we need more time" and "it is yours to handle" would tell of work that will not happen. The emails
    about the closing still go, and the sweep stops queueing the others."""
    dpo = staff_in_role("DPO", username="dpo1")
    request = submit_request(subject_email=SUBJECT)
    # Outside a capture, the tasks queued on commit never run: the confirmation, the extension and the assignment are owed.
    intake.request_verify_email(token=intake.verification_token(request))
    request.refresh_from_db()
    lifecycle.transition(request, "start_work", actor=Actor.staff(dpo))
    extension(request, dpo)
    assignment(request, dpo)
    mail.outbox.clear()
    later = timezone.now() + timedelta(hours=3)
    with django_capture_on_commit_callbacks(execute=True):
        closing_words = close(request, dpo)
    with django_capture_on_commit_callbacks(execute=True):
        assert emails.requeue_owed_emails(now=later) == 3
    subjects = [email.subject for email in mail.outbox]
    assert not [s for s in subjects if any(words in s for words in OPEN_REQUEST_WORDS)], subjects
    assert all(any(words in s for s in subjects) for words in closing_words), subjects
    assert not SentNotification.objects.filter(request=request, sent_at__isnull=True).exists()
    assert emails.requeue_owed_emails(now=later + timedelta(hours=3)) == 0
    request.refresh_from_db()
    assert request.acknowledged_at is None  # receipt was never confirmed: the email was dropped, not sent


def test_an_export_ready_before_completion_is_still_sent_after_it(django_capture_on_commit_callbacks):
    """The data ready is part of the answer: completing the request does not drop it, unlike the emails above."""
    dpo = staff_in_role("DPO", username="dpo1")
    request = request_in_status(Status.IN_PROGRESS, subject_email=SUBJECT)
    export_ready(request, dpo)  # its task lost
    handling.request_complete(request=request, actor=Actor.staff(dpo), letter="Your copy is ready.", expected_status=Status.IN_PROGRESS)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert emails.requeue_owed_emails(now=timezone.now() + timedelta(hours=3)) == 1
    (email,) = mail.outbox
    assert email.to == [SUBJECT] and "ready" in email.subject


def late_confirmation(request, dpo):
    return "request_confirmed", lambda: tasks.send_request_confirmed_email(request.id)


def late_extension(request, dpo):
    extension(request, dpo)
    return "deadline_extended", lambda: tasks.send_extension_email(request.id)


def late_assignment(request, dpo):
    assignment(request, dpo)
    sequence = request.events.filter(action="assigned").latest("sequence").sequence
    return "assigned", lambda: tasks.send_assignment_email(request.id, sequence)


@pytest.mark.parametrize("task", [late_confirmation, late_extension, late_assignment])
def test_a_task_run_after_the_request_closed_sends_nothing_and_is_forgiven(task, django_capture_on_commit_callbacks):
    """The retry of a first try that failed (the mail server was down), run after the subject withdrew."""
    dpo = staff_in_role("DPO", username="dpo1")
    request = submit_request(subject_email=SUBJECT)
    intake.request_verify_email(token=intake.verification_token(request))
    request.refresh_from_db()
    kind, run_late = task(request, dpo)
    intake.request_withdraw(request=request, actor=Actor.subject())
    mail.outbox.clear()
    run_late()
    run_late()  # redelivered: still nothing
    assert mail.outbox == []
    assert not SentNotification.objects.filter(request=request, kind=kind).exists()  # the sweep has nothing to queue again


def test_a_request_received_directly_and_withdrawn_before_its_follow_up_is_not_confirmed(django_capture_on_commit_callbacks):
    """Filed over the API, then withdrawn by its organisation before the follow-up task ran (the broker down, say):
    the follow-up, run late, confirms no receipt; the withdrawal is confirmed."""
    organisation = Organisation.objects.create(name="Operator")
    request = submit_request(channel=Channel.API, organisation=organisation, actor=Actor.organisation(organisation))
    with django_capture_on_commit_callbacks(execute=True):
        intake.request_withdraw(request=request, actor=Actor.organisation(organisation))
    intake.request_follow_up(request_id=request.id)
    assert [email.subject for email in mail.outbox] == [f"Your privacy request {request.reference} has been withdrawn"]
    assert not SentNotification.objects.filter(request=request, kind="request_confirmed").exists()


def broker_down(*ids):
    raise kombu.exceptions.OperationalError("Redis is restarting")


def test_a_broken_chain_alert_the_broker_lost_is_sent_once_by_the_lost_work_sweep(monkeypatch, django_capture_on_commit_callbacks):
    """The nightly walk published the DPOs' alert directly: a broker down at that moment lost it for good."""
    request_in_status(Status.IN_PROGRESS)
    AuditEvent.objects.filter(sequence=2).update(note="edited")
    with monkeypatch.context() as patch, django_capture_on_commit_callbacks(execute=True):
        patch.setattr(tasks.send_audit_chain_broken_email, "delay", broker_down)
        assert tasks.verify_audit_chain() is False
    assert mail.outbox == []
    assert emails.requeue_owed_alerts() == 0  # queued just now: a worker may yet take it

    later = timezone.now() + timedelta(hours=3)
    with django_capture_on_commit_callbacks(execute=True):
        assert emails.requeue_owed_alerts(now=later) == 1
    (email,) = mail.outbox
    assert "broken at event #2" in email.body
    assert emails.requeue_owed_alerts(now=later + timedelta(hours=3)) == 0  # sent: never again
    assert tasks.send_audit_chain_broken_email(AuditChainCheck.objects.get().id) is False  # a redelivered task
    assert len(mail.outbox) == 1


def test_a_dpo_alert_is_left_alone_while_retried_and_after_a_week(settings):
    request_in_status(Status.IN_PROGRESS)
    AuditEvent.objects.filter(sequence=2).update(note="edited")
    tasks.verify_audit_chain()  # its alert's task queued on commit, never run
    tried_at = timezone.now() + timedelta(hours=3)
    settings.EMAIL_BACKEND = "tests.services.test_intake.RefusingMailBackend"
    with time_machine.travel(tried_at), pytest.raises(ConnectionRefusedError):
        tasks.send_audit_chain_broken_email(AuditChainCheck.objects.get().id)  # one try; the mail server is down
    assert emails.requeue_owed_alerts(now=tried_at + timedelta(hours=1)) == 0  # its own retries go on
    assert emails.requeue_owed_alerts(now=tried_at + timedelta(hours=2, minutes=30)) == 1
    assert emails.requeue_owed_alerts(now=timezone.now() + timedelta(days=8)) == 0  # too late to help


def test_a_disabled_endpoint_alert_whose_task_was_lost_is_sent_once_per_disabling(django_capture_on_commit_callbacks):
    """Queued after commit but not owed, a lost task left the DPOs unaware that an organisation gets no events."""
    organisation = Organisation.objects.create(name="Mobile Operator SA")
    endpoint = WebhookEndpoint.objects.create(organisation=organisation, url="https://hooks.example.com/privacy")
    webhooks._disable(endpoint)  # its task queued on commit, never run: lost
    later = timezone.now() + timedelta(hours=3)
    with django_capture_on_commit_callbacks(execute=True):
        assert emails.requeue_owed_alerts(now=later) == 1
    (email,) = mail.outbox
    assert "disabled" in email.subject
    assert emails.requeue_owed_alerts(now=later + timedelta(hours=3)) == 0
    assert tasks.send_webhook_disabled_email(endpoint.id) is False  # a redelivered task

    # Switched on again before its alert went: the alert is no longer true, and not sent.
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(active=True, disabled_at=None)
    webhooks._disable(endpoint)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(active=True, disabled_at=None)
    assert emails.requeue_owed_alerts(now=later) == 0
    assert tasks.send_webhook_disabled_email(endpoint.id) is False
    # Disabled again for good: a new alert.
    webhooks._disable(endpoint)
    with django_capture_on_commit_callbacks(execute=True):
        assert emails.requeue_owed_alerts(now=later) == 1
    assert len(mail.outbox) == 2
