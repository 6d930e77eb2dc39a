"""One function per email, rendering text and HTML templates (in the subject's language for
emails to subjects). Emails about a request are sent at most once per (request, kind, key)
(send_once, send_to_subject); staff invitations, the daily digest and the DPO's alerts are
not about one request and go out through deliver() directly."""

import datetime
import hashlib
import logging
from smtplib import SMTPException, SMTPRecipientsRefused, SMTPResponseException

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import F
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext, gettext_lazy

from requests_app import deadlines, roles
from requests_app.context import controller_details
from requests_app.lifecycle import OPEN_STATUSES
from requests_app.models import (
    ActorKind,
    AuditChainCheck,
    AuditChainHead,
    Channel,
    ExportKind,
    ExportPackage,
    IdentityKind,
    PrivacyRequest,
    SentNotification,
    StaffProfile,
    WebhookEndpoint,
)
from requests_app.wording import date_in_words, recipients_told_citation

logger = logging.getLogger(__name__)


def absolute_url(path: str) -> str:
    return settings.SITE_URL + path


def status_url(request: PrivacyRequest) -> str:
    """The subject's status page: the link last sent from the lost-link page while it waits to be opened (the
    subject's opening of it ends the older ones, this one too otherwise), else the request's own."""
    return absolute_url(reverse("status", args=[request.reference, request.pending_secret or request.secret]))


def render_email(template: str, context: dict, *, to: list[str], language: str) -> EmailMultiAlternatives:
    """Build a message from templates/emails/<template>-subject.txt, -body.txt and -body.html. Emails to a
    subject or a recipient end with the controller's signature (emails/includes/signature.*), which reads
    `controller`: Django's context processors do not run for these templates."""
    context = {"controller": controller_details(language), **context}
    with translation.override(language):
        subject = render_to_string(f"emails/{template}-subject.txt", context).strip()
        text = render_to_string(f"emails/{template}-body.txt", context)
        html = render_to_string(f"emails/{template}-body.html", context)
    message = EmailMultiAlternatives(subject=" ".join(subject.split()), body=text, to=to)
    message.attach_alternative(html, "text/html")
    return message


class EmailRejected(Exception):
    """The recipient's mail server refused the address for good: retrying cannot help."""

    def __init__(self, smtp_code: int):
        super().__init__(f"the recipient's address was refused with SMTP {smtp_code}")
        self.smtp_code = smtp_code


def address_refused_for_good(code: int, reply: bytes) -> bool:
    """A refusal of the address itself (no such mailbox: 5.1.x, or 550/551/553 without an enhanced
    code). Other 5xx refusals, such as 554 5.7.1 "relay access denied", come from our own set-up:
    those are retried, and nobody's address is marked refused."""
    enhanced = reply.split(b" ", 1)[0]
    if enhanced.startswith(b"5."):
        return enhanced.startswith(b"5.1.")
    return code in (550, 551, 553)


def deliver(message: EmailMultiAlternatives) -> None:
    """Send `message`. An address refused for good raises EmailRejected; any other refusal an
    SMTPException to retry. Neither carries the server's text, which may name the address and
    would reach a log line (Celery logs the exception of every retry)."""
    try:
        message.send()
    except SMTPRecipientsRefused as refused:
        replies = list(refused.recipients.values())
        if replies and all(address_refused_for_good(code, reply) for code, reply in replies):
            raise EmailRejected(min(code for code, _reply in replies)) from None
        codes = ", ".join(str(code) for code, _reply in replies)
        raise SMTPException(f"the mail server refused the recipient with SMTP {codes}") from None
    except SMTPResponseException as refused:  # the sender or the message refused (SMTPSenderRefused, SMTPDataError, ...)
        raise SMTPException(f"the mail server refused the message with SMTP {refused.smtp_code}") from None


def owe(request: PrivacyRequest, kind: str, key: str = "") -> None:
    """Record, in the caller's transaction, that this email is owed; the caller queues its task
    after commit. If the broker loses the task, requeue_owed_emails queues it again (see _owed_email_tasks)."""
    SentNotification.objects.get_or_create(request=request, kind=kind, key=key, defaults={"queued_at": timezone.now()})


def forgive(request_id: int, kind: str, key: str = "") -> None:
    """The owed email is no longer due (the export was withdrawn, the request reassigned...): the
    lost-email sweep stops queueing it."""
    SentNotification.objects.filter(request_id=request_id, kind=kind, key=key, sent_at__isnull=True).delete()


# Emails about work still to come on an open request: receipt confirmed, the link to confirm an address, more time
# needed, a request to handle. Owed while it was open, their task may run after it closed (withdrawn, completed,
# refused, expired, forwarded): retried while the mail server was down, or queued again by the lost-email sweep.
# They would then confirm, promise or assign work that will not happen, so send_once drops them. Emails about the
# closing itself (the withdrawal, the letters, a completed request's data ready) are not among them.
NEEDS_OPEN_REQUEST = frozenset(
    {"verify_email", "confirm_email", "request_confirmed", "deadline_extended", "assigned", "subject_confirmation"}
)


def send_once(request: PrivacyRequest, kind: str, key: str, message: EmailMultiAlternatives) -> bool:
    """Send `message` unless this (request, kind, key) email went out already, or is one of NEEDS_OPEN_REQUEST
    and the request closed (the email is then no longer owed: forgiven, and the lost-email sweep stops).

    Its notification row (made when the email was owed, or here) stays locked
    while the email is sent: a second run waits, then finds it sent. If
    sending fails, the row stays unsent for the task's retry or the lost-email
    sweep; an address refused for good ends that (the email is no longer owed).
    """
    owed = SentNotification.objects.filter(request=request, kind=kind, key=key, sent_at__isnull=True)
    owed.update(queued_at=timezone.now())  # this try, so the sweep leaves it to the task's own retries
    try:
        with transaction.atomic():
            claim, _created = SentNotification.objects.select_for_update().get_or_create(request=request, kind=kind, key=key)
            if claim.sent_at is not None:
                logger.info("email %s for request %s already sent, skipping", kind, request.reference)
                return False
            # Read now, not from `request` (loaded when the task started): a closing committed since counts. One
            # committing while the email goes out is not waited for: the email was still true when it was sent.
            if kind in NEEDS_OPEN_REQUEST and not PrivacyRequest.objects.filter(pk=request.pk, status__in=OPEN_STATUSES).exists():
                claim.delete()
                logger.info("email %s for request %s dropped: the request closed", kind, request.reference)
                return False
            deliver(message)
            claim.sent_at = timezone.now()
            claim.save(update_fields=["sent_at"])
    except EmailRejected:
        owed.delete()
        raise
    logger.info("email %s sent for request %s", kind, request.reference)
    return True


# Work a task owes (an email, a letter, a text, an Art. 19 notice) is tried again at most an hour
# apart (tasks.EMAIL_RETRY's retry_backoff_max, and the same backoff for texts and notices), and each
# try is noted: nothing tried for two hours means the broker lost the task, and the lost-work sweeps
# queue it again. After a week an email is no longer worth sending.
LOST_TASK_AFTER = datetime.timedelta(hours=2)
GIVE_UP_AFTER = datetime.timedelta(days=7)


def _owed_email_tasks() -> dict:
    """By kind: whether the email goes to the subject (not sent again to an address their mail server
    refused), and the task and arguments that send it (None: nothing left to send)."""
    from requests_app import tasks

    def export_ready(notification):
        export_id = ExportPackage.objects.filter(public_id=notification.key).values_list("id", flat=True).first()
        return (tasks.send_export_ready_email, export_id) if export_id else None

    def transmission_email(notification):
        export_id = ExportPackage.objects.filter(public_id=notification.key).values_list("id", flat=True).first()
        return (tasks.send_transmission_email, export_id) if export_id else None

    return {
        "request_confirmed": (True, lambda n: (tasks.send_request_confirmed_email, n.request_id)),
        "confirm_email": (True, lambda n: (tasks.send_email_confirmation, n.request_id)),
        "deadline_extended": (True, lambda n: (tasks.send_extension_email, n.request_id)),
        "export_ready": (True, export_ready),
        "assigned": (False, lambda n: (tasks.send_assignment_email, n.request_id, int(n.key))),
        "subject_replied": (False, lambda n: (tasks.send_reply_notification, n.request_id, int(n.key))),
        "withdrawn": (False, lambda n: (tasks.send_withdrawal_notification, n.request_id)),
        "withdrawal_confirmed": (True, lambda n: (tasks.send_withdrawal_confirmation, n.request_id)),
        "status_link": (True, lambda n: (tasks.send_status_link_email, n.request_id, int(n.key))),
        # To the subject's own address, not the one we write to (the agent's): its refusal is not that one's.
        "subject_confirmation": (False, lambda n: (tasks.send_subject_confirmation, n.request_id)),
        "agent_authority_denied": (False, lambda n: (tasks.send_agent_authority_denied_notification, n.request_id, int(n.key))),
        # To the organisation the subject asked us to send their data to (services.transmission), not to them.
        "portability_transmission": (False, transmission_email),
        "agent_authority_withdrawn": (
            False, lambda n: (tasks.send_agent_authority_withdrawn_notification, n.request_id, int(n.key))
        ),
    }


def requeue_owed_emails(*, now: datetime.datetime | None = None) -> int:
    """Queue again the owed emails not sent and not tried for LOST_TASK_AFTER, for a week; returns how many.
    A second task is harmless: each email goes once (send_once)."""
    from requests_app import tasks

    now = now or timezone.now()
    owed_tasks = _owed_email_tasks()
    lost = list(
        SentNotification.objects.filter(
            sent_at__isnull=True,
            kind__in=owed_tasks,
            queued_at__lt=now - LOST_TASK_AFTER,
            created_at__gte=now - GIVE_UP_AFTER,
        ).select_related("request")
    )
    lost = [n for n in lost if not (owed_tasks[n.kind][0] and n.request.subject_email_rejected_at)]
    with transaction.atomic():
        SentNotification.objects.filter(pk__in=[n.pk for n in lost]).update(queued_at=now)
        for notification in lost:
            task_and_ids = owed_tasks[notification.kind][1](notification)
            if task_and_ids is None:
                notification.delete()
            else:
                tasks.queue_after_commit(*task_and_ids)
    if lost:
        logger.warning("queued %d owed email(s) again: their task was lost", len(lost))
    return len(lost)


def send_to_subject(request: PrivacyRequest, kind: str, key: str, message: EmailMultiAlternatives) -> bool:
    """send_once, for an email to the subject. When their mail server refuses the address for good,
    staff see it on the request and in its trail (they must reach the subject another way), the
    lost-email sweeps stop sending to it, and EmailRejected ends the task without retries."""
    from requests_app.audit import Actor, record_event

    try:
        sent = send_once(request, kind, key, message)
    except EmailRejected as rejected:
        with transaction.atomic():
            PrivacyRequest.objects.filter(pk=request.pk).update(subject_email_rejected_at=timezone.now())
            record_event(request, "subject_email_rejected", actor=Actor.system(), data={"email": kind, "smtp_code": rejected.smtp_code})
        raise
    if sent and request.subject_email_rejected_at:
        # The address works again (a full mailbox, a fixed domain): the warning and the sweeps' pause end.
        PrivacyRequest.objects.filter(pk=request.pk).update(subject_email_rejected_at=None)
    return sent


def when_to_expect_the_answer(request: PrivacyRequest) -> dict:
    """What the emails confirming receipt say of the due date (includes/what-happens-next), as of the day they are
    written, which may be weeks after receipt (a letter staff record late): `due_on`, the date the status page gives
    (while the clock is paused, the date a reply today would bring); `answer_late`, that date has passed, and the
    email then says what the status page says (sorry, and where to complain), promising no date, extension or pause
    (services.deadlines.pause_refusal, extension_refusal); `may_extend`, an extension could still be told before the
    date it moves, as the email says it would be: not once extended (only once), nor on the due date itself."""
    from requests_app.services.deadlines import due_on_if_resumed_today  # imported here: that module imports this one

    due_on = due_on_if_resumed_today(request)
    today = timezone.localdate()
    return {
        "due_on": due_on,
        "answer_late": due_on is not None and due_on < today,
        "may_extend": not request.is_extended and due_on is not None and due_on > today,
    }


def send_verification_email(request: PrivacyRequest) -> bool:
    from requests_app.services.intake import verification_token

    context = {
        "request": request,
        "verify_url": absolute_url(reverse("verify_email", args=[verification_token(request)])),
        "link_hours": int(settings.VERIFICATION_LINK_MAX_AGE.total_seconds() // 3600),
        **when_to_expect_the_answer(request),
    }
    message = render_email("verify-email", context, to=[request.correspondence_email], language=request.language)
    # Keyed by the nonce: a re-sent link is a new email, a redelivered task is not.
    return send_acknowledgement(request, "verify_email", request.verification_nonce, message)


def send_email_confirmation(request: PrivacyRequest) -> bool:
    """The link that confirms the address of a request received directly (intake.email_confirmation_send): the web
    form's verification link, opening the same page, in an email that says why we ask and whom to tell if the
    reader made no such request (the address may be a typo's)."""
    from requests_app.services.intake import verification_token

    context = {
        "request": request,
        "verify_url": absolute_url(reverse("verify_email", args=[verification_token(request)])),
        "link_hours": int(settings.VERIFICATION_LINK_MAX_AGE.total_seconds() // 3600),
        "dpo_email": settings.DPO_CONTACT_EMAIL,
    }
    message = render_email("confirm-email", context, to=[request.correspondence_email], language=request.language)
    # Keyed by the nonce: a link sent again is a new email, a redelivered task is not.
    return send_to_subject(request, "confirm_email", request.verification_nonce, message)


def send_request_confirmed_email(request: PrivacyRequest) -> bool:
    """Confirm receipt. A request an organisation filed over the API reaches a subject who may not know of it:
    the email names the organisation, and whom to tell if they did not ask for it.

    A web request's email gives back what the subject asked, in their words, as the status page does ("What you
    told us"): its address was just confirmed by its owner, and the subject typed every detail. Not a request
    received directly: its details were written down by staff or an organisation, and its address, typed by them,
    is not confirmed yet (a typo's owner would read them)."""
    from requests_app import selectors

    words_back = request.channel == Channel.WEB
    # In the subject's language: the names of its rights and grounds are written out here, not when rendered.
    with translation.override(request.language):
        told_us = selectors.what_you_told_us(request) if words_back else []
    context = {
        "request": request,
        "status_url": status_url(request),
        "organisation": request.organisation,
        "dpo_email": settings.DPO_CONTACT_EMAIL,
        "words_back": words_back,
        "told_us": told_us,
        **when_to_expect_the_answer(request),
    }
    message = render_email("request-confirmed", context, to=[request.correspondence_email], language=request.language)
    return send_acknowledgement(request, "request_confirmed", "", message)


def send_acknowledgement(request: PrivacyRequest, kind: str, key: str, message: EmailMultiAlternatives) -> bool:
    """Send an email that confirms receipt (once). Each try is noted first: while tries go on, the
    lost-task sweep (intake.requeue_lost_acknowledgements) leaves it alone."""
    PrivacyRequest.objects.filter(pk=request.pk, acknowledged_at__isnull=True).update(acknowledgement_queued_at=timezone.now())
    sent = send_to_subject(request, kind, key, message)
    # Sent now or by an earlier try; not when it was dropped (the request closed first): receipt was not confirmed.
    if sent or SentNotification.objects.filter(request=request, kind=kind, key=key, sent_at__isnull=False).exists():
        mark_acknowledged(request)
    return sent


def send_status_link_email(request: PrivacyRequest, event_sequence: int) -> bool:
    """The status page link, sent again because the subject asked for it (keyed by that asking's event): the new
    link while it waits to be opened, the request's own once it was (a redelivered task). A closed request's email
    says what happened to it (withdrawn, refused, expired, completed), and offers a download only while one is there."""
    context = {
        "request": request,
        "status_url": status_url(request),
        "data_to_download": request.exports.downloadable().exists(),
    }
    message = render_email("status-link", context, to=[request.correspondence_email], language=request.language)
    return send_to_subject(request, "status_link", str(event_sequence), message)


def mark_acknowledged(request: PrivacyRequest) -> None:
    """Record when receipt was first confirmed to the subject (CCPA: within 10 business days)."""
    PrivacyRequest.objects.filter(pk=request.pk, acknowledged_at__isnull=True).update(acknowledged_at=timezone.now())


def send_extension_email(request: PrivacyRequest) -> bool:
    """Tell the subject the new due date and why (GDPR Art. 12(3); CCPA Regs. s. 7021(b)), with the regime's rule."""
    return send_to_subject(request, "deadline_extended", "", extension_email(request, link=status_url(request)))


def extension_email(request: PrivacyRequest, *, link: str) -> EmailMultiAlternatives:
    """The email telling the subject the new due date and why, with `link` to their status page (a masked one to
    preview it: LetterPreview)."""
    from requests_app.services.deadlines import due_on_if_resumed_today  # imported here: that module imports this one

    # While the clock is paused the saved date is behind: the date it moves to if the subject answers today.
    context = {"request": request, "due_on": due_on_if_resumed_today(request), "status_url": link}
    return render_email("deadline-extended", context, to=[request.correspondence_email], language=request.language)


def assignee_email(request: PrivacyRequest) -> str:
    """The assignee's address, or "" when there is nobody to write to: no assignee, a deactivated
    account (its owner left), or no address. The callers then write to the DPO."""
    assignee = request.assignee
    if assignee is None or not assignee.is_active:
        return ""
    return assignee.email


def staff_language(user) -> str:
    """The language of a staff member's emails: their dashboard's (StaffProfile), else the site's."""
    profile = StaffProfile.objects.filter(user=user).first() if user is not None else None
    return profile.language if profile else settings.LANGUAGE_CODE


def assignee_language(request: PrivacyRequest) -> str:
    """The language to write in to whoever assignee_email() chose: the assignee's, or for the DPO's
    mailbox the site's."""
    return staff_language(request.assignee) if assignee_email(request) else settings.LANGUAGE_CODE


def deadline_alert_recipients(request: PrivacyRequest) -> dict[str, dict[str, str]]:
    """Addresses by language, each under whose it is ("assignee", "dpo"): the assignee in their own
    language, the DPO's mailbox in the site's. One email per language, so usually one."""
    by_language: dict[str, dict[str, str]] = {}
    assignee = assignee_email(request)
    if assignee:
        by_language[staff_language(request.assignee)] = {"assignee": assignee}
    if settings.DPO_EMAIL and settings.DPO_EMAIL != assignee:
        by_language.setdefault(settings.LANGUAGE_CODE, {})["dpo"] = settings.DPO_EMAIL
    return by_language


def send_deadline_alert(notification: SentNotification) -> bool:
    """Send a claimed reminder or escalation to those it has not gone to yet.

    Locks the claim so a redelivered or re-dispatched task sends it once. Each try is noted (queued_at)
    for the sweep's re-dispatch, and so is each recipient done: after a failure part-way (the DPO's email
    after the assignee's), a retry sends only the rest. An address refused for good counts as done, and
    is logged; any other failure is raised, once what was done is saved, for the task to retry.
    Staff emails carry the reference and dates only, no personal data.
    """
    failure = None
    with transaction.atomic():
        claim = (
            SentNotification.objects.select_for_update(of=("self",))
            .select_related("request__assignee")
            .get(pk=notification.pk)
        )
        if claim.sent_at is not None:
            return False
        request = claim.request
        due_on, threshold = claim.key.split(":")
        if not request.is_open or request.clock_paused or str(request.due_on) != due_on:
            # Closed, paused or given another due date since the sweep claimed it (its task ran late, or was
            # re-dispatched): it would ask for work nobody owes by that date. Dropped; the sweep claims what is due.
            claim.delete()
            logger.info("deadline alert %s dropped for request %s: no longer due", threshold, request.reference)
            return False
        context = {
            "request": request,
            "due_on": datetime.date.fromisoformat(due_on),
            "overdue": threshold == "overdue",
            "days_left": deadlines.days_left(datetime.date.fromisoformat(due_on), timezone.localdate()),
            "request_url": staff_request_url(request),
        }
        template = "deadline-escalation" if threshold == "overdue" else "deadline-reminder"
        claim.queued_at = timezone.now()
        for language, addresses in deadline_alert_recipients(request).items():
            owed = {recipient: address for recipient, address in addresses.items() if recipient not in claim.recipients_done}
            if not owed:
                continue
            try:
                deliver(render_email(template, context, to=list(owed.values()), language=language))
            except EmailRejected as rejected:
                # Says whose address it was, never the address: no personal data in logs.
                logger.warning(
                    "deadline alert %s for request %s: the address of %s was refused for good (SMTP %s), not sent again",
                    threshold, request.reference, " and ".join(owed), rejected.smtp_code,
                )
            except (SMTPException, OSError) as error:
                failure = error
                break
            claim.recipients_done += list(owed)
        if failure is None:
            claim.sent_at = timezone.now()
        claim.save(update_fields=["queued_at", "recipients_done", "sent_at"])
    if failure is not None:
        raise failure
    logger.info("deadline alert %s sent for request %s", threshold, request.reference)
    return True


def staff_request_url(request: PrivacyRequest) -> str:
    return absolute_url(reverse("staff:request", args=[request.reference]))


def dpo_recipients(dpo_users) -> list[str]:
    addresses = [settings.DPO_EMAIL, *(user.email for user in dpo_users if user.email)]
    return list(dict.fromkeys(addresses))


def send_assignment_email(request: PrivacyRequest, event_sequence: int) -> bool:
    """Tell the assignee a request is theirs. Keyed by the assignment's audit event; not sent once the
    request went to someone else (a late redelivery must not tell the next assignee twice)."""
    from requests_app.services.deadlines import due_on_if_resumed_today  # imported here: that module imports this one

    to = assignee_email(request)
    event = request.events.filter(sequence=event_sequence).first()
    named = event and (event.data.get("assignee") or event.data.get("to"))
    if not to or named != request.assignee.get_username():
        forgive(request.id, "assigned", str(event_sequence))
        return False
    # While the clock is paused the saved due date is behind: the email says so, with the date it moves to if the
    # subject answers today (as the subject's status page and letters give it), worked out when the email is sent.
    # A request recorded late (a letter found in the post) may be assigned already overdue: the email says so.
    due_on = due_on_if_resumed_today(request)
    context = {
        "request": request, "due_on": due_on, "overdue": due_on < timezone.localdate(), "request_url": staff_request_url(request)
    }
    message = render_email("assigned", context, to=[to], language=staff_language(request.assignee))
    return send_once(request, "assigned", str(event_sequence), message)


def send_reply_notification(request: PrivacyRequest, message_id: int) -> bool:
    """Tell the assignee (or the DPO) that the subject replied."""
    to = [assignee_email(request) or settings.DPO_EMAIL]
    context = {"request": request, "request_url": staff_request_url(request)}
    message = render_email("subject-replied", context, to=to, language=assignee_language(request))
    return send_once(request, "subject_replied", str(message_id), message)


# Translators: name your own language, as its button at the top of our pages does ("Pour lire ce message et y
# répondre en français, ouvrez le lien et choisissez « Français » en haut de la page.").
READ_IT_IN_YOUR_LANGUAGE = gettext_lazy(
    "To read this message and answer it in English, open the link and choose “English” at the top of the page."
)


def in_our_other_languages(text, language: str) -> list[tuple[str, str]]:
    """`text` in each of our languages but `language`, with its language code: for an email whose reader did not
    choose its language."""
    lines = []
    for code, _name in settings.LANGUAGES:
        if code != language:
            with translation.override(code):
                lines.append((code, str(text)))
    return lines


def send_subject_confirmation(request: PrivacyRequest) -> bool:
    """Ask the subject, at the address they gave of their own, whether they allowed the agent to make the request
    (agents.subject_confirmation_send): the agent's name and the reference, and the link to answer. In the request's
    language, which the agent chose, not the subject: a line in each of our other languages says the page the link
    opens speaks it too (its language buttons). Keyed by the link's nonce: a link sent again is a new email, a
    redelivered task is not."""
    from requests_app.services.agents import subject_confirmation_token

    context = {
        "in_other_languages": in_our_other_languages(READ_IT_IN_YOUR_LANGUAGE, request.language),
        "request": request,
        "answer_url": absolute_url(reverse("agent_confirmation", args=[subject_confirmation_token(request)])),
        "link_hours": int(settings.VERIFICATION_LINK_MAX_AGE.total_seconds() // 3600),
        "dpo_email": settings.DPO_CONTACT_EMAIL,
    }
    message = render_email("subject-confirmation", context, to=[request.subject_email], language=request.language)
    return send_once(request, "subject_confirmation", request.subject_confirmation_nonce, message)


def team_members_who_can_act(request: PrivacyRequest) -> list:
    """The members of the team the request is routed to who may act on it (roles.can_work: a handler or a DPO, their
    account active; not an auditor) and have an address to write to; nobody when it has no team."""
    if request.team_id is None:
        return []
    members = request.team.members.filter(is_active=True).exclude(email="").order_by("id")
    return [member for member in members if roles.can_work(member, request)]


def assignee_and_team_emails(request: PrivacyRequest) -> list[str]:
    """The assignee (or, with nobody to write to, the DPO) and the members of the request's team who may act on it
    (team_members_who_can_act): an alert any of them may have to act on at once, not only the assignee, who may be
    away. Each address once, whatever its case."""
    addresses = {}
    for address in (assignee_email(request) or settings.DPO_EMAIL, *(member.email for member in team_members_who_can_act(request))):
        if address:
            addresses.setdefault(address.casefold(), address)
    return list(addresses.values())


def send_agent_authority_denied_notification(request: PrivacyRequest, event_id: int) -> bool:
    """Tell the assignee (or the DPO), and the members of the request's team who may act on it, that the subject said
    they did not allow the agent; once per answer (its audit event), one email in the assignee's language. The
    reference only: no personal data in staff emails."""
    to = assignee_and_team_emails(request)
    context = {"request": request, "request_url": staff_request_url(request)}
    message = render_email("agent-authority-denied", context, to=to, language=assignee_language(request))
    return send_once(request, "agent_authority_denied", str(event_id), message)


def send_agent_authority_withdrawn_notification(request: PrivacyRequest, event_id: int) -> bool:
    """Tell the assignee (or the DPO) that staff withdrew the agent's authority (agents.agent_authority_withdraw);
    once per withdrawal (its audit event). The reference only: no personal data in staff emails, nor the reason,
    which is on the request page."""
    to = [assignee_email(request) or settings.DPO_EMAIL]
    context = {"request": request, "request_url": staff_request_url(request)}
    message = render_email("agent-authority-withdrawn", context, to=to, language=assignee_language(request))
    return send_once(request, "agent_authority_withdrawn", str(event_id), message)


def send_withdrawal_notification(request: PrivacyRequest) -> bool:
    """Tell the assignee (or, with none, the DPO) that a request in the team's queue was withdrawn.
    One withdrawn before it reached the queue (never confirmed, say) needs nobody told."""
    if request.routed_at is None:
        return False
    address = assignee_email(request)
    context = {"request": request, "request_url": staff_request_url(request), "assigned": bool(address)}
    message = render_email(
        "request-withdrawn", context, to=[address or settings.DPO_EMAIL], language=assignee_language(request)
    )
    return send_once(request, "withdrawn", "", message)


def send_withdrawal_confirmation(request: PrivacyRequest) -> bool:
    """Tell the subject their request was withdrawn, when, by whom if not from its status page (the organisation
    that filed it), and what had been done already that withdrawing does not undo. Anyone with the status page's
    link can withdraw: the email says whom to write to if the subject did not."""
    from requests_app.services import certificate

    withdrawal = request.events.filter(action="withdraw").last()
    with translation.override(request.language):
        changes_made = certificate.changes_made(request)  # lines written in the current language
    context = {
        "request": request,
        "withdrawn_at": request.closed_at,
        "organisation": request.organisation if withdrawal and withdrawal.actor_kind == ActorKind.ORGANISATION else None,
        "changes_made": changes_made,
        "dpo_email": settings.DPO_CONTACT_EMAIL,
        "form_url": absolute_url(reverse("submit")),
        "status_url": status_url(request),
    }
    message = render_email("withdrawal-confirmed", context, to=[request.correspondence_email], language=request.language)
    return send_to_subject(request, "withdrawal_confirmed", "", message)


def send_staff_invitation(user_id: int, *, language: str) -> bool:
    """The one-time link to set up a staff account, in `language` (the site's, if not one of LANGUAGES).
    A redelivered task sends another: each works until one is used. Not sent to an account that was
    deactivated, or set up meanwhile (the link would not work)."""
    from django.contrib.auth import get_user_model

    from requests_app.services import staff_setup

    user = get_user_model().objects.filter(pk=user_id, is_active=True, is_staff=True).first()
    if user is None or not user.email or user.has_usable_password():
        return False
    context = {
        "user": user,
        "setup_url": absolute_url(staff_setup.setup_path(user)),
        "link_hours": settings.PASSWORD_RESET_TIMEOUT // 3600,
    }
    if language not in dict(settings.LANGUAGES):
        language = settings.LANGUAGE_CODE
    deliver(render_email("staff-invitation", context, to=[user.email], language=language))
    logger.info("staff invitation sent to account %s", user.pk)
    return True


def send_subject_message(message) -> bool:
    """Email a staff message or letter to the subject, with the link to reply on the status page."""
    request = message.request
    return send_to_subject(request, "message", str(message.public_id), subject_message_email(message, link=status_url(request)))


def subject_message_email(message, *, link: str) -> EmailMultiAlternatives:
    """The email of a staff message or letter to the subject, with `link` to their status page: the real one to
    send it (send_subject_message), a masked one to preview it (LetterPreview)."""
    request = message.request
    context = {"request": request, "message": message, "status_url": link}
    return render_email("message-to-subject", context, to=[request.correspondence_email], language=request.language)


def masked_status_url(request: PrivacyRequest) -> str:
    """The status page's address as a preview shows it to staff: its secret, which opens the subject's page and
    replies as them, masked."""
    return status_url(request).replace(request.pending_secret or request.secret, "…")


class LetterPreview(Exception):
    """Raised by a service asked for a preview (preview=True) where it would write its letter to the subject:
    everything up to the letter was checked and done as for real, in the service's transaction, which this
    exception rolls back. Carries what the subject would get: the email's subject line and text (its status link
    masked), or, with no email address, the letter as the request's messages keep it, for staff to post."""

    def __init__(self, *, subject: str, body: str, by_post: bool):
        super().__init__("a letter previewed, not sent")
        self.subject, self.body, self.by_post = subject, body, by_post

    def digest(self) -> str:
        """What the preview page posts back to confirm the letter it showed: the action goes only if the letter its
        service would send then is still this one (staff.views.CONFIRMED)."""
        shown = "\0".join((self.subject, self.body, "post" if self.by_post else "email"))
        return hashlib.sha256(shown.encode()).hexdigest()

    @classmethod
    def of_message(cls, message) -> "LetterPreview":
        """What the subject gets of `message`, a message or letter to them, written or about to be: its email (the
        status link masked), or, with no email address, the letter itself."""
        request = message.request
        if request.correspondence_email:
            email = subject_message_email(message, link=masked_status_url(request))
            return cls(subject=email.subject, body=email.body, by_post=False)
        return cls(subject=message.subject, body=message.body, by_post=True)


def send_daily_digest(*, today: datetime.date, recipients: list[str]) -> None:
    """The DPO's morning picture: counts and the references that need attention."""
    from requests_app import selectors

    context = {
        "today": today,
        **selectors.workload_summary(today=today),
        # The chain's head, kept outside the database in every DPO's mailbox: whoever rewrites the chain and
        # its hashes there cannot rewrite these (verify_audit_chain --expect checks one).
        "chain_head": AuditChainHead.objects.first(),
        "dashboard_url": absolute_url(reverse("staff:home")),
    }
    deliver(render_email("daily-digest", context, to=recipients, language=settings.LANGUAGE_CODE))


def send_export_ready_email(export) -> bool:
    """The subject's data is ready: download it from the status page (the link is not in the email).
    Not once it cannot be downloaded (expired, used up, or the request withdrawn or refused)."""

    request = export.request
    if not request.correspondence_email or not ExportPackage.objects.downloadable().filter(pk=export.pk).exists():
        forgive(request.id, "export_ready", str(export.public_id))
        return False
    context = {
        "request": request,
        "export": export,
        "status_url": status_url(request),
        # A package of no records holds our answer that nothing was found, not "your data": for access, no data
        # about the subject at all (Art. 15(1)); for portability, none they provided to us (Art. 20).
        "found_nothing": export.found_nothing,
        "portability": export.kind == ExportKind.PORTABILITY,
        # Nor that: a portability package that left out what the right does not cover did not read it.
        "left_out": bool(export.manifest.get("categories_left_out")),
    }
    message = render_email("export-ready", context, to=[request.correspondence_email], language=request.language)
    return send_to_subject(request, "export_ready", str(export.public_id), message)


def send_webhook_disabled_email(endpoint_id: int) -> bool:
    """Tell the DPOs an organisation's webhook endpoint failed for the whole retry window and was disabled: once per
    disabling (the endpoint stays locked while the email goes out), and not once it was switched on again."""
    from requests_app.services.routing import dpo_users

    # This try, so the lost-work sweep leaves the alert to the task's own retries.
    WebhookEndpoint.objects.filter(pk=endpoint_id, disabled_alert_sent_at__isnull=True).update(disabled_alert_queued_at=timezone.now())
    with transaction.atomic():
        endpoint = (
            WebhookEndpoint.objects.select_for_update(of=("self",)).select_related("organisation").filter(pk=endpoint_id).first()
        )
        if endpoint is None or endpoint.active or endpoint.disabled_alert_sent_at is not None:
            return False
        context = {"endpoint": endpoint, "log_url": absolute_url(reverse("staff:webhooks"))}
        deliver(render_email("webhook-disabled", context, to=dpo_recipients(dpo_users()), language=settings.LANGUAGE_CODE))
        WebhookEndpoint.objects.filter(pk=endpoint_id).update(disabled_alert_sent_at=timezone.now())
    return True


def send_username_locked_out_email(lockout_id: int) -> bool:
    """Tell a staff member, and the DPO, that sign-in to their account is locked out from every address it never
    signed in from (staff.lockout): someone is guessing its password. Once per lockout: the row stays locked while
    the email goes out, and records which lockout it told of. Names no address, and nothing typed but the username,
    an account's."""
    from django.contrib.auth import get_user_model

    from requests_app.models import UsernameLockout

    with transaction.atomic():
        lockout = UsernameLockout.objects.select_for_update().filter(pk=lockout_id).first()
        if lockout is None or lockout.locked_until is None or lockout.alert_sent_for == lockout.locked_until:
            return False
        user = get_user_model().objects.filter(username=lockout.username).first()
        if user is None:
            return False
        context = {
            "username": user.get_username(),
            "failures": settings.LOGIN_USERNAME_FAILURE_LIMIT,
            "minutes": int(settings.LOGIN_USERNAME_LOCKOUT.total_seconds() // 60),
            "locked_until": lockout.locked_until,
        }
        recipients = [(user.email, staff_language(user))] if user.email else []
        if settings.DPO_EMAIL and settings.DPO_EMAIL != user.email:
            recipients.append((settings.DPO_EMAIL, settings.LANGUAGE_CODE))
        for address, language in recipients:
            deliver(render_email("username-locked-out", context, to=[address], language=language))
        UsernameLockout.objects.filter(pk=lockout_id).update(alert_sent_for=lockout.locked_until)
    return True


def _category_changed(slug: str, only_before: dict | None) -> str:
    """A category an Art. 19 notice names, with the limit of an erasure that took only its older records."""
    if only_before is None:
        return slug
    return gettext("%(category)s (only the records whose %(field)s is before %(day)s)") % {
        "category": slug,
        "field": only_before["field"],
        "day": date_in_words(datetime.date.fromisoformat(only_before["date"])),
    }


def send_recipient_notice(recipient, content: dict, *, regime: str) -> None:
    """Art. 19: the changes made to a person's data, sent to a recipient that holds it, citing the law of the
    request's `regime` that has the recipient told (wording.recipients_told_citation), or none where it has none.
    Not deduplicated here: the notice's status is what keeps it from going twice."""

    # `content` is also the webhook's JSON (ISO times, slugs): the email says them for people.
    with translation.override(settings.LANGUAGE_CODE):
        actions = [
            {
                **action,
                "done_at": parse_datetime(action["done_at"]) if action["done_at"] else None,
                "categories": [_category_changed(slug, action.get("only_records_before", {}).get(slug)) for slug in action["categories"]],
            }
            for action in content["actions"]
        ]
        # Each told under its own provision: the changes under one (Art. 19 GDPR), a CCPA limit under another.
        law = recipients_told_citation(regime, [action["kind"] for action in content["actions"]])
        limit_law = recipients_told_citation(regime, ["limit_use"]) if content["limit_use"] else ""
    context = {
        "recipient": recipient,
        **content,
        "law": law,
        "limit_law": limit_law,
        "actions": actions,
        "identifier_kind": IdentityKind(content["identifier_kind"]).label,
    }
    deliver(render_email("recipient-notice", context, to=[recipient.notification_email], language=settings.LANGUAGE_CODE))


def send_audit_chain_broken_email(check_id: int) -> bool:
    """Tell the DPOs the nightly walk found the audit chain broken: someone may have edited the trail. Once per
    check: the check stays locked while the email goes out."""
    from requests_app.services.routing import dpo_users

    # This try, so the lost-work sweep leaves the alert to the task's own retries.
    AuditChainCheck.objects.filter(pk=check_id, alert_sent_at__isnull=True).update(alert_queued_at=timezone.now())
    with transaction.atomic():
        check = AuditChainCheck.objects.select_for_update().filter(pk=check_id).first()
        if check is None or check.intact or check.alert_sent_at is not None:
            return False
        deliver(render_email("audit-chain-broken", {"check": check}, to=dpo_recipients(dpo_users()), language=settings.LANGUAGE_CODE))
        AuditChainCheck.objects.filter(pk=check_id).update(alert_sent_at=timezone.now())
    return True


def requeue_owed_alerts(*, now: datetime.datetime | None = None) -> int:
    """Queue again the DPOs' alerts owed and not tried for LOST_TASK_AFTER, for a week (as requeue_owed_emails does
    for emails about a request): a broken audit chain, a webhook endpoint disabled and not switched on again, a staff
    username locked out across addresses. Returns how many. A second task is harmless: each alert goes once."""
    from requests_app import tasks
    from requests_app.models import UsernameLockout

    now = now or timezone.now()
    checks = AuditChainCheck.objects.filter(
        broken_at_sequence__isnull=False,
        alert_sent_at__isnull=True,
        alert_queued_at__lt=now - LOST_TASK_AFTER,
        checked_at__gte=now - GIVE_UP_AFTER,
    )
    endpoints = WebhookEndpoint.objects.filter(
        active=False,
        disabled_alert_sent_at__isnull=True,
        disabled_alert_queued_at__lt=now - LOST_TASK_AFTER,
        disabled_at__gte=now - GIVE_UP_AFTER,
    )
    # A lockout's alert is owed while its lockout is the one last queued: alert_sent_for names the one whose email went.
    lockouts = UsernameLockout.objects.filter(
        alert_queued_at__lt=now - LOST_TASK_AFTER, alert_queued_at__gte=now - GIVE_UP_AFTER
    ).exclude(alert_sent_for=F("locked_until"))
    with transaction.atomic():
        check_ids = list(checks.values_list("id", flat=True))
        endpoint_ids = list(endpoints.values_list("id", flat=True))
        lockout_ids = list(lockouts.values_list("id", flat=True))
        AuditChainCheck.objects.filter(pk__in=check_ids).update(alert_queued_at=now)
        WebhookEndpoint.objects.filter(pk__in=endpoint_ids).update(disabled_alert_queued_at=now)
        UsernameLockout.objects.filter(pk__in=lockout_ids).update(alert_queued_at=now)
        for check_id in check_ids:
            tasks.queue_after_commit(tasks.send_audit_chain_broken_email, check_id)
        for endpoint_id in endpoint_ids:
            tasks.queue_after_commit(tasks.send_webhook_disabled_email, endpoint_id)
        for lockout_id in lockout_ids:
            tasks.queue_after_commit(tasks.send_username_locked_out_email, lockout_id)
    lost = len(check_ids) + len(endpoint_ids) + len(lockout_ids)
    if lost:
        logger.warning("queued %d owed DPO alert(s) again: their task was lost", lost)
    return lost
