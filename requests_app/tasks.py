"""Celery tasks: thin wrappers that load by id and call a service.

Arguments are ids only, never personal data. Tasks are queued once the
change commits (queue_after_commit), acknowledged late (a worker that dies mid-task gets
it redelivered) and safe to run twice.
"""

import logging
from importlib import import_module
from smtplib import SMTPException

import kombu.exceptions
from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from requests_app import audit, emails, sms
from requests_app.models import (
    AuditChainCheck,
    ExportPackage,
    IdempotencyRecord,
    PrivacyRequest,
    SentNotification,
    Status,
    no_email_to_write_to,
)
from requests_app.services import actions, exports, handling, intake, notices, orphans, routing, staff_setup, webhooks
from requests_app.services import deadlines as deadline_service
from requests_app.services import transmission

logger = logging.getLogger(__name__)

# Mail servers and networks fail transiently; retry with backoff, a few times.
EMAIL_RETRY = {
    "acks_late": True,
    "autoretry_for": (SMTPException, OSError),
    "retry_backoff": 30,
    "retry_backoff_max": 3600,
    "max_retries": 10,
}


def queue_after_commit(task, *ids) -> None:
    """Queue `task` with these ids once the current transaction commits.

    The change is durable by then. If the broker cannot be reached, the error
    is logged and the caller's answer stands: a 500 would make an API client
    retry a request that was filed, and file it twice. The periodic sweepers
    (unrouted requests, due webhooks) and staff's retries pick up what the
    lost message left undone.
    """

    def publish():
        try:
            task.delay(*ids)
        except (kombu.exceptions.OperationalError, OSError):
            # OSError: the filesystem transport of the embedded defaults raises it raw, for a missing folder.
            logger.exception("could not queue %s%s: the broker is unreachable", task.name, ids)

    transaction.on_commit(publish)


@shared_task(**EMAIL_RETRY)
def send_verification_email(request_id: int) -> None:
    """Email the verification link. Skips requests no longer awaiting verification."""
    request = PrivacyRequest.objects.filter(pk=request_id, status=Status.AWAITING_VERIFICATION).first()
    if request is None:
        logger.info("request %s no longer awaits verification, no link sent", request_id)
        return
    emails.send_verification_email(request)


@shared_task(**EMAIL_RETRY)
def send_request_confirmed_email(request_id: int) -> None:
    """Email the confirmation with the status page link."""
    request = PrivacyRequest.objects.filter(pk=request_id).exclude(no_email_to_write_to()).first()
    if request is None:  # purged meanwhile
        emails.forgive(request_id, "request_confirmed")
        return
    emails.send_request_confirmed_email(request)


@shared_task(**EMAIL_RETRY)
def send_email_confirmation(request_id: int) -> None:
    """Email the link that confirms the address of a request received directly. Not once it is confirmed, the
    request closed or its details purged: the link would help nobody."""
    request = PrivacyRequest.objects.filter(pk=request_id).first()
    if request is None or not request.email_unconfirmed or not request.is_open:
        if request is not None:
            emails.forgive(request_id, "confirm_email", request.verification_nonce)
        logger.info("request %s needs no link to confirm its email address, none sent", request_id)
        return
    emails.send_email_confirmation(request)


@shared_task(acks_late=True)
def resend_link(request_id: int | None) -> bool:
    """The lost-link page's work for the request whose details matched; None when none did
    (queued all the same, so the page takes as long either way)."""
    return request_id is not None and intake.resend_link(request_id=request_id)


@shared_task(**EMAIL_RETRY)
def send_status_link_email(request_id: int, event_sequence: int) -> None:
    """Email the status page link again, at the subject's asking; once per asking."""
    request = PrivacyRequest.objects.filter(pk=request_id).exclude(no_email_to_write_to()).first()
    if request is None:  # purged meanwhile
        emails.forgive(request_id, "status_link", str(event_sequence))
        return
    emails.send_status_link_email(request, event_sequence)


@shared_task(acks_late=True)
def expire_unverified_requests() -> int:
    """Periodic: expire requests never verified and purge their personal data."""
    return intake.expire_unverified_requests()


@shared_task(acks_late=True)
def purge_closed_requests() -> int:
    """Nightly: purge the personal data of requests closed longer than the retention period."""
    return intake.purge_closed_requests()


@shared_task(acks_late=True)
def delete_orphan_files() -> int:
    """Nightly: delete stored files whose record was rolled back (a scanned letter, an extract, a package)."""
    return orphans.delete_orphan_files()


@shared_task(**EMAIL_RETRY)
def send_extension_email(request_id: int) -> None:
    """Email the subject the extended due date and its reason."""
    request = PrivacyRequest.objects.filter(pk=request_id, extended_at__isnull=False).exclude(no_email_to_write_to()).first()
    if request is None:  # purged meanwhile
        emails.forgive(request_id, "deadline_extended")
        return
    emails.send_extension_email(request)


@shared_task(**EMAIL_RETRY)
def send_deadline_alerts(notification_ids: list[int]) -> None:
    """Send claimed reminders and escalations; each goes out once however often this runs."""
    for notification in SentNotification.objects.filter(pk__in=notification_ids, sent_at__isnull=True):
        emails.send_deadline_alert(notification)


@shared_task(acks_late=True, time_limit=300, soft_time_limit=270)
def sweep_deadlines() -> int:
    """Periodic: claim the reminders and escalations due today and queue their emails."""
    return deadline_service.sweep_deadlines()


@shared_task(acks_late=True, autoretry_for=(OSError,), retry_backoff=10, max_retries=10)
def route_request(request_id: int) -> bool:
    """Assign a verified request. Redelivery neither assigns nor notifies again."""
    return routing.route_request(request_id=request_id)


@shared_task(**EMAIL_RETRY)
def follow_up_request(request_id: int) -> None:
    """Route a request received directly, tell its organisation, confirm to the subject; each once."""
    intake.request_follow_up(request_id=request_id)


@shared_task(acks_late=True)
def dispatch_unrouted_requests() -> int:
    """Periodic: route requests whose routing task was lost (broker outage, dead worker)."""
    return routing.dispatch_unrouted()


@shared_task(**EMAIL_RETRY)
def send_assignment_email(request_id: int, event_sequence: int) -> None:
    """Tell the assignee a request is theirs; sent once per assignment (its audit event)."""
    request = PrivacyRequest.objects.select_related("assignee").filter(pk=request_id).first()
    if request is not None:
        emails.send_assignment_email(request, event_sequence)


@shared_task(**EMAIL_RETRY)
def send_subject_message(message_id: int) -> bool:
    """Email a staff message or letter to the subject (once)."""
    return handling.email_to_subject(message_id=message_id)


@shared_task(**EMAIL_RETRY)
def send_reply_notification(request_id: int, message_id: int) -> None:
    """Tell the assignee (or the DPO) the subject replied; sent once per reply."""
    request = PrivacyRequest.objects.select_related("assignee").filter(pk=request_id).first()
    if request is not None:
        emails.send_reply_notification(request, message_id)


@shared_task(**EMAIL_RETRY)
def send_subject_confirmation(request_id: int) -> None:
    """Email the subject the link to confirm the agent (agents.subject_confirmation_send); sent once per link. Not
    once answered, replaced, the request closed or the authority confirmed otherwise: the link would not work."""
    request = PrivacyRequest.objects.filter(pk=request_id).first()
    if request is None:
        return
    if not request.subject_confirmation_nonce or not request.subject_email or request.agent_authority_confirmed_at:
        logger.info("request %s needs no link asking its subject to confirm the agent, none sent", request_id)
        return
    emails.send_subject_confirmation(request)


@shared_task(**EMAIL_RETRY)
def send_agent_authority_denied_notification(request_id: int, event_id: int) -> None:
    """Tell the assignee (or the DPO) and the request's team that the subject said they did not allow the agent; sent
    once per answer."""
    request = PrivacyRequest.objects.select_related("assignee").filter(pk=request_id).first()
    if request is not None:
        emails.send_agent_authority_denied_notification(request, event_id)


@shared_task(**EMAIL_RETRY)
def send_agent_authority_withdrawn_notification(request_id: int, event_id: int) -> None:
    """Tell the assignee (or the DPO) that staff withdrew the agent's authority; sent once per withdrawal."""
    request = PrivacyRequest.objects.select_related("assignee").filter(pk=request_id).first()
    if request is not None:
        emails.send_agent_authority_withdrawn_notification(request, event_id)


@shared_task(**EMAIL_RETRY)
def send_withdrawal_notification(request_id: int) -> bool:
    """Tell the assignee of a withdrawn request to stop working on it."""
    request = PrivacyRequest.objects.select_related("assignee").filter(pk=request_id, status=Status.WITHDRAWN).first()
    return request is not None and emails.send_withdrawal_notification(request)


@shared_task(**EMAIL_RETRY)
def send_withdrawal_confirmation(request_id: int) -> None:
    """Confirm to the subject that their request was withdrawn; sent once."""
    request = PrivacyRequest.objects.filter(pk=request_id, status=Status.WITHDRAWN).exclude(no_email_to_write_to()).first()
    if request is None:  # purged meanwhile
        emails.forgive(request_id, "withdrawal_confirmed")
        return
    emails.send_withdrawal_confirmation(request)


@shared_task(**EMAIL_RETRY)
def send_daily_digest() -> bool:
    """Periodic (mornings): the DPO's digest, at most once a day."""
    return routing.send_daily_digest()


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=100,
    time_limit=settings.EXPORT_TASK_TIME_LIMIT,
    soft_time_limit=settings.EXPORT_TASK_TIME_LIMIT - 60,
)
def compile_export(self, export_id: int) -> str | None:
    """Compile an export package. A task redelivered after a worker died, or queued again by
    requeue_dead_exports, starts the export over once the dead run's heartbeat is stale; while
    another run is alive (its heartbeat fresh) it waits and retries."""
    try:
        return exports.compile_export(export_id=export_id)
    except exports.ExportBusy as busy:
        raise self.retry(countdown=settings.EXPORT_HEARTBEAT_STALE_SECONDS) from busy


@shared_task(**EMAIL_RETRY)
def send_staff_invitation(user_id: int, language: str = "") -> bool:
    """Email a staff account's owner the link to choose a password and set up an authenticator, in
    `language` (a code of LANGUAGES, no personal data; a task queued without one: the site's language)."""
    return emails.send_staff_invitation(user_id, language=language)


@shared_task(acks_late=True)
def requeue_lost_work() -> int:
    """Periodic: queue again the export compilations, source actions' dry runs and executions, Art. 19
    notices, letters to subjects, acknowledgements of receipt, other owed emails and the DPOs' alerts whose task
    the broker lost (a Redis restart, say); returns how many."""
    return (
        exports.requeue_lost_exports()
        + actions.requeue_lost_actions()
        + notices.requeue_lost_notices()
        + handling.requeue_unsent_messages()
        + intake.requeue_lost_acknowledgements()
        + emails.requeue_owed_emails()
        + emails.requeue_owed_alerts()
    )


@shared_task(acks_late=True)
def requeue_dead_exports() -> int:
    """Periodic (every minute): queue again the exports whose compiling run died, its heartbeat stale."""
    return exports.requeue_dead_exports()


@shared_task(**EMAIL_RETRY)
def send_export_ready_email(export_id: int) -> None:
    """Tell the subject their data package can be downloaded from the status page."""
    export = ExportPackage.objects.select_related("request").filter(pk=export_id).first()
    if export is not None:
        emails.send_export_ready_email(export)


@shared_task(**EMAIL_RETRY)
def send_transmission_email(export_id: int) -> None:
    """Email the organisation the subject asked us to send their data to the link to download it (Art. 20(2))."""
    transmission.send_transmission_email(export_id=export_id)


@shared_task(
    acks_late=True, autoretry_for=(sms.SMSError, OSError), retry_backoff=30, retry_backoff_max=3600, max_retries=20
)
def send_package_password(export_id: int) -> bool:
    """Text the password of a released encrypted package; retried while the SMS gateway fails."""
    return exports.send_package_password(export_id=export_id)


@shared_task(acks_late=True)
def delete_expired_exports() -> int:
    """Periodic: delete packages past their expiry or download limit, unreleased ones left too long, and those
    whose data may no longer go to the subject (a request withdrawn or refused, a right refused)."""
    return exports.delete_expired_exports()


@shared_task(acks_late=True)
def remove_stale_export_work_files() -> int:
    """Periodic (hourly), on the long queue, whose worker's machine is the one export runs write their work files
    on: delete those no run can still be writing, a killed run's partial ZIPs. Run twice, the second finds none."""
    return exports.remove_stale_work_files()


@shared_task(acks_late=True, time_limit=120, soft_time_limit=100)
def deliver_webhook(delivery_id: int) -> bool:
    """Try one webhook delivery; a failure stores the next attempt time for dispatch_due_webhooks. The attempt
    itself ends within WEBHOOK_TIMEOUT_SECONDS; one the soft time limit cuts short all the same is recorded as failed."""
    return webhooks.deliver(delivery_id=delivery_id)


@shared_task(acks_late=True)
def dispatch_due_webhooks() -> int:
    """Periodic: queue the webhook deliveries whose retry time has come, and forget the rolled
    secrets whose overlap has ended."""
    webhooks.forget_expired_secrets()
    return webhooks.dispatch_due()


@shared_task(acks_late=True)
def purge_webhook_deliveries() -> int:
    """Nightly: delete the delivered and failed webhook deliveries older than WEBHOOK_DELIVERY_RETENTION."""
    return webhooks.purge_deliveries()


@shared_task(**EMAIL_RETRY)
def send_webhook_disabled_email(endpoint_id: int) -> bool:
    """Tell the DPOs an organisation's webhook endpoint was disabled after failing for the whole retry window;
    once per disabling."""
    return emails.send_webhook_disabled_email(endpoint_id)


@shared_task(**EMAIL_RETRY)
def send_username_locked_out_email(lockout_id: int) -> bool:
    """Tell a staff member and the DPO that sign-in to the account is locked out from every address it never signed
    in from (staff.lockout); once per lockout."""
    return emails.send_username_locked_out_email(lockout_id)


@shared_task(acks_late=True)
def verify_audit_chain() -> bool:
    """Nightly: walk the whole audit chain, record the result, and alert the DPOs if it is broken."""
    check = audit.check_chain()
    if not check.intact:
        logger.error("audit chain broken at event #%s: %s", check.broken_at_sequence, check.reason)
        # Owed before it is queued: if the broker is down, the lost-work sweep sends it later.
        AuditChainCheck.objects.filter(pk=check.pk).update(alert_queued_at=timezone.now())
        queue_after_commit(send_audit_chain_broken_email, check.id)
    return check.intact


@shared_task(**EMAIL_RETRY)
def send_audit_chain_broken_email(check_id: int) -> bool:
    """Tell the DPOs the nightly walk found the audit chain broken (a possible security incident); once per check."""
    return emails.send_audit_chain_broken_email(check_id)


@shared_task(acks_late=True)
def purge_idempotency_records() -> int:
    """Periodic: forget Idempotency-Keys older than IDEMPOTENCY_KEY_LIFETIME."""
    cutoff = timezone.now() - settings.IDEMPOTENCY_KEY_LIFETIME
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted


@shared_task(acks_late=True)
def purge_sign_in_records() -> int:
    """Nightly: delete django-axes' failed attempts and sign-in log older than LOGIN_ATTEMPT_RETENTION."""
    return staff_setup.purge_sign_in_records()


@shared_task(acks_late=True)
def clear_expired_sessions() -> None:
    """Periodic: delete sessions past their expiry (Django's clearsessions). A session that ended by
    idle timeout keeps its data, staff's queue searches (a subject's email, say), until deleted."""
    import_module(settings.SESSION_ENGINE).SessionStore.clear_expired()


# Source actions run for as long as a large erasure needs. While one runs, a timer stamps its heartbeat;
# a run whose worker died is taken over once the heartbeat is stale, by its task redelivered or queued
# again by requeue_dead_source_actions (within minutes). The run that takes over finds the source
# unchanged (SQL rolled back) and carries on, or changed (HTTP, part-way) and stops as stale, or changed
# as approved (the dead run committed) and records it done. A task that finds a live run holding the
# action waits and retries: a live run is never taken over.
SOURCE_ACTION_TASK = {
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "max_retries": 100,
    "time_limit": settings.SOURCE_ACTION_TIME_LIMIT,
    "soft_time_limit": settings.SOURCE_ACTION_TIME_LIMIT - 60,
}


@shared_task(**SOURCE_ACTION_TASK)
def run_source_action_dry_run(self, action_id: int, token: str) -> None:
    """Count what an erasure, rectification or restriction would change in one source."""
    try:
        actions.run_dry_run(action_id=action_id, token=token)
    except actions.ActionBusy as busy:
        raise self.retry(countdown=settings.SOURCE_ACTION_HEARTBEAT_STALE_SECONDS) from busy


@shared_task(**SOURCE_ACTION_TASK)
def execute_source_action(self, action_id: int, token: str) -> str:
    """Carry out an approved erasure, rectification or restriction in one source."""
    try:
        return actions.run_execution(action_id=action_id, token=token)
    except actions.ActionBusy as busy:
        raise self.retry(countdown=settings.SOURCE_ACTION_HEARTBEAT_STALE_SECONDS) from busy


@shared_task(acks_late=True)
def requeue_dead_source_actions() -> int:
    """Periodic (every minute): queue again the dry runs and executions whose run died, their heartbeat stale."""
    return actions.requeue_dead_actions()


@shared_task(bind=True, acks_late=True, max_retries=10)
def send_recipient_notice(self, notice_id: int) -> bool:
    """Art. 19: tell a recipient about the changes made to the data it received.
    Retried with the emails' backoff (30 s doubling, capped at an hour); the last failure marks the notice failed."""
    try:
        return notices.deliver(notice_id=notice_id, final_attempt=self.request.retries >= self.max_retries)
    except notices.NoticeFailed as failure:
        countdown = min(EMAIL_RETRY["retry_backoff"] * 2**self.request.retries, EMAIL_RETRY["retry_backoff_max"])
        raise self.retry(countdown=countdown) from failure
