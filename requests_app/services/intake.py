"""Receiving requests: submission, email verification, withdrawal and expiry."""

import logging
import mimetypes
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.conf import settings
from django.core import signing
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.http import Http404
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from requests_app import deadlines, emails, lifecycle, roles, tasks
from requests_app.audit import Actor, record_event
from requests_app.lifecycle import RequestError
from requests_app.services import exports, routing, webhooks
from requests_app.models import (
    Attachment,
    Channel,
    CoveredPurpose,
    ExportStatus,
    IdentityKind,
    Organisation,
    PrivacyRequest,
    ReferenceCounter,
    RequestedRight,
    SentNotification,
    Status,
    SubjectIdentity,
    VerificationMethod,
    new_nonce,
    new_secret,
    no_email_to_write_to,
    normalised_identifier,
    rights_mask,
)
from requests_app.wording import date_in_words, in_sentence

logger = logging.getLogger(__name__)

VERIFICATION_SALT = "requests_app.verify-email"


@dataclass(frozen=True)
class RightDetails:
    """One right asked for, with the details that right needs."""

    right: str
    rectification_data: str = ""
    rectification_value: str = ""
    restriction_ground: str = ""
    objection_processing: str = ""
    direct_marketing: bool = False
    consent_withdrawn: str = ""
    # Portability only: the organisation to send the data to directly (Art. 20(2)), if the subject named one.
    recipient_name: str = ""
    recipient_email: str = ""


class VerificationLinkError(RequestError):
    """The verification link cannot be used: tampered, expired, replaced or used already.

    `request` is the request the link names, when it can be told (not for a tampered or expired link): the page
    saying why then answers in that request's language, as the link's email did. The message is translated lazily,
    when shown, for the same reason.
    """

    def __init__(self, message, *, request: PrivacyRequest | None = None):
        super().__init__(message)
        self.request = request


class RequestClosedBeforeVerification(VerificationLinkError):
    """The link is for a request that expired unconfirmed or was withdrawn: only a new request helps."""


def next_reference(received_at: datetime) -> str:
    """Hand out the next DSR-YYYY-NNNNN reference; call inside a transaction.

    One statement (PostgreSQL, and SQLite since 3.35): it creates the year's
    counter or increments it, and its row lock, held until commit, gives
    concurrent submissions distinct numbers. The ORM cannot increment on
    conflict, hence the SQL.
    """
    year = timezone.localtime(received_at).year
    table = connection.ops.quote_name(ReferenceCounter._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (year, last_number) VALUES (%s, 1) "
            f"ON CONFLICT (year) DO UPDATE SET last_number = {table}.last_number + 1 RETURNING last_number",
            [year],
        )
        (number,) = cursor.fetchone()
    return f"DSR-{year}-{number:05d}"


def set_first_deadline(request: PrivacyRequest, *, today: date) -> None:
    """Fill in the due dates and first alert of a request not saved yet.

    The rules of services.deadlines.refresh_deadline for a request that has no
    pause and no extension yet, computed before the insert so that creating a
    request needs no UPDATE and no pause lookup.
    """
    request.due_on = request.original_due_on = deadlines.due_date(
        request.regime, request.received_at, rights=request.requested_rights
    )
    request.acknowledgement_due_on = deadlines.acknowledgement_due_date(
        request.regime, deadlines.receipt_day(request.regime, request.received_at)
    )
    request.next_alert_on, request.next_alert_key = deadlines.alert_to_schedule(
        request.due_on, today, settings.DEADLINE_REMINDER_DAYS
    )


class AlreadySubmitted(Exception):
    """The form that files `request` was sent again while the first sending was being filed."""

    def __init__(self, request: PrivacyRequest):
        super().__init__(request.reference)
        self.request = request


def request_submit(
    *,
    rights: list[RightDetails],
    subject_name: str,
    subject_email: str,
    relationship: str,
    signature: str,
    regime: str,
    language: str,
    subject_phone: str = "",
    customer_reference: str = "",
    ip_address: str = "",
    description: str = "",
    channel: str = Channel.WEB,
    received_at: datetime | None = None,
    actor: Actor,
    scanned_letter: UploadedFile | None = None,
    organisation: Organisation | None = None,
    identities_asserted: bool = False,
    submission_key: uuid.UUID | None = None,
    agent_capacity: str = "",
    agent_name: str = "",
    agent_email: str = "",
    postal_address: str = "",
) -> PrivacyRequest:
    """Record a new request with its rights and identities.

    Input is validated by the caller's form. A web request starts awaiting
    email verification and the verification email is queued on commit. A
    request recorded by staff (email, post, phone) or filed by an organisation
    over the API starts as new, and request_follow_up is queued: the
    controller received it directly. With `identities_asserted`, the
    identifiers are recorded as asserted by the organisation; staff still
    verify them. A `submission_key` already used raises AlreadySubmitted: the same form sent twice at once.

    With `agent_capacity`, someone acting for the subject filed it (services.agents): our emails go to
    `agent_email`, which is not an identity of the subject's, and the subject's own address may be empty.
    `postal_address` is whoever filed's, for letters we post; it is no identity, and no event records it.
    """
    now = timezone.now()
    received_at = received_at or now
    if received_at > now:
        raise RequestError(_("The received date cannot be in the future."))
    needs_email_verification = channel == Channel.WEB

    request = PrivacyRequest(
        status=Status.AWAITING_VERIFICATION if needs_email_verification else Status.NEW,
        regime=regime,
        channel=channel,
        language=language,
        received_at=received_at,
        subject_name=subject_name,
        subject_email=subject_email,
        subject_phone=subject_phone,
        customer_reference=customer_reference,
        postal_address=postal_address,
        relationship=relationship,
        description=description,
        signature=signature,
        # Signed when sent: a letter or call staff record later was signed when the controller received it.
        signed_at=received_at if signature else None,
        organisation=organisation,
        submission_key=submission_key,
        agent_capacity=agent_capacity,
        agent_name=agent_name,
        agent_email=agent_email,
        rights_mask=rights_mask(details.right for details in rights),
    )
    # The verification email or the confirmation is queued below, to whoever filed.
    request.acknowledgement_queued_at = now if request.correspondence_email else None
    set_first_deadline(request, today=timezone.localdate(now))
    identities = [
        (IdentityKind.EMAIL, subject_email),
        (IdentityKind.PHONE, subject_phone),
        (IdentityKind.CUSTOMER_REFERENCE, customer_reference),
        (IdentityKind.IP_ADDRESS, ip_address),
    ]
    # The organisation's word is recorded, but only staff verification lets
    # an identifier be searched for in the source systems.
    asserted = {"verification_method": VerificationMethod.ASSERTED_BY_ORGANISATION} if identities_asserted else {}

    try:
        with transaction.atomic():
            request.reference = next_reference(received_at)
            request.save(force_insert=True)
            RequestedRight.objects.bulk_create(
                RequestedRight(request=request, **vars(details)) for details in rights
            )
            SubjectIdentity.objects.bulk_create(
                SubjectIdentity(request=request, kind=kind, value=normalised_identifier(kind, value), **asserted)
                for kind, value in identities
                if value
            )
            if scanned_letter is not None:
                attachment_add(request=request, file=scanned_letter, actor=actor)
            # One task, after commit, does the rest: the request is durable before
            # anything else happens, and the caller's answer waits for no more.
            task = tasks.send_verification_email if needs_email_verification else tasks.follow_up_request
            tasks.queue_after_commit(task, request.id)
            # Last, so the lock on the chain head, which every submission waits
            # for, is held only until the commit that follows (with an Idempotency-Key,
            # until the answer is stored in the same transaction: api.idempotency).
            record_event(
                request,
                "submitted",
                actor=actor,
                to_status=request.status,
                data={
                    "channel": channel, "rights": sorted(d.right for d in rights),
                    # The capacity only: the agent's name and address are personal data, kept on the request.
                    **({"agent": agent_capacity} if agent_capacity else {}),
                },
            )
    except IntegrityError:
        # The other sending of the same form committed first (PostgreSQL made this one wait for it).
        earlier = PrivacyRequest.objects.filter(submission_key=submission_key).first() if submission_key else None
        if earlier is None:
            raise
        raise AlreadySubmitted(earlier) from None

    logger.info("request %s submitted via %s", request.reference, channel)
    return request


def request_follow_up(*, request_id: int) -> None:
    """Act on a request received directly (by staff or over the API), after its intake committed.

    Routes it, queues the `request.created` webhook for the organisation that
    filed it, and confirms receipt to the subject. Safe to run twice, and
    again for a request whose task was lost (the unrouted-request sweeper
    does): routing is skipped once done, the webhook event is claimed once
    per endpoint (a SentNotification row), and the email is sent once.
    """
    routing.route_request(request_id=request_id)
    request = PrivacyRequest.objects.filter(pk=request_id).first()
    if request is None:
        return
    if request.organisation_id is not None:
        with transaction.atomic():
            webhooks.emit_created(request)
    # Last: a mail server failure retries the task, and the steps above are done already.
    if request.correspondence_email:
        emails.send_request_confirmed_email(request)


def attachment_add(
    *, request: PrivacyRequest, file: UploadedFile, actor: Actor, message=None, identity_document: bool = False
) -> Attachment:
    """Store an uploaded file (already validated for size and type) with the request, and the
    subject's message it came with, if any. An `identity_document` (sent as proof of identity) is deleted once
    the identity check ends (handling.delete_identity_documents)."""
    content_type = getattr(file, "content_type", "") or mimetypes.guess_type(file.name)[0] or ""
    attachment = Attachment(
        request=request,
        original_name=file.name[:255],
        content_type=content_type,
        size=file.size,
        uploaded_by=actor.user,
        message=message,
        identity_document=identity_document,
    )
    attachment.file.save(file.name, file, save=False)
    attachment.save()
    record_event(
        request,
        "attachment_added",
        actor=actor,
        data={
            "attachment": str(attachment.public_id), "size": file.size, "content_type": content_type,
            "identity_document": identity_document,
        },
    )
    return attachment


def verification_token(request: PrivacyRequest) -> str:
    return signing.dumps({"r": str(request.public_id), "n": request.verification_nonce}, salt=VERIFICATION_SALT)


def request_for_verification_token(token: str) -> PrivacyRequest:
    """The request a verification link is for, if the link can still be used.

    Raises VerificationLinkError for a tampered, expired, replaced or used link.
    """
    max_age = settings.VERIFICATION_LINK_MAX_AGE
    try:
        payload = signing.loads(token, salt=VERIFICATION_SALT, max_age=max_age)
    except signing.SignatureExpired:
        raise VerificationLinkError(
            _("This link has expired. You can ask for a new one with your reference and email address.")
        ) from None
    except signing.BadSignature:
        raise VerificationLinkError(_("This link is not valid. Please copy the whole link from the email.")) from None

    request = PrivacyRequest.objects.filter(public_id=payload.get("r")).first()
    if request is None:
        raise VerificationLinkError(_("This link is not valid. Please copy the whole link from the email."))
    if request.channel != Channel.WEB:
        # A link staff sent to confirm the address of a request received directly (email_confirmation_send).
        _check_email_confirmation_link(request, payload.get("n"))
        return request
    if request.status == Status.EXPIRED:
        raise RequestClosedBeforeVerification(
            gettext_lazy("This request was closed because its email address was not confirmed in time. Please send a new request."),
            request=request,
        )
    if request.status == Status.WITHDRAWN and request.verified_at is None:
        raise RequestClosedBeforeVerification(gettext_lazy("This request was withdrawn before it was confirmed."), request=request)
    if request.status != Status.AWAITING_VERIFICATION:
        raise VerificationLinkError(gettext_lazy("This link has already been used. Your request is confirmed."), request=request)
    if payload.get("n") != request.verification_nonce:
        raise VerificationLinkError(
            gettext_lazy("This link has been replaced by a newer one. Please use the latest email."), request=request
        )
    return request


def _check_email_confirmation_link(request: PrivacyRequest, nonce: str | None) -> None:
    """Raise VerificationLinkError unless the link confirming the address of a request received directly can still
    be used: its request still holds the address (not purged), not confirmed yet, and the link is the latest sent."""
    if not request.correspondence_email:
        raise VerificationLinkError(_("This link is not valid. Please copy the whole link from the email."))
    if request.verified_at is not None:
        raise VerificationLinkError(gettext_lazy("This link has already been used. Your request is confirmed."), request=request)
    if nonce != request.verification_nonce:
        raise VerificationLinkError(
            gettext_lazy("This link has been replaced by a newer one. Please use the latest email."), request=request
        )


def request_verify_email(*, token: str) -> PrivacyRequest:
    """Confirm the subject's email from the link we sent them.

    Allowed from awaiting verification only, so a link works once. Marks the
    email identity verified, moves the request to new, and queues the
    confirmation email (with the status page link) and routing on commit.
    A request received directly has no such state: its link confirms the
    address alone (_confirm_email_of_request_received_directly).
    """
    request = request_for_verification_token(token)
    if request.channel != Channel.WEB:
        return _confirm_email_of_request_received_directly(request)
    with transaction.atomic():
        try:
            lifecycle.transition(
                request,
                "verify_email",
                actor=Actor.requester(request),
                expected_status=Status.AWAITING_VERIFICATION,
            )
        except lifecycle.StaleRequest:
            # Another click of the same link won the race.
            raise VerificationLinkError(
                gettext_lazy("This link has already been used. Your request is confirmed."), request=request
            ) from None
        now = timezone.now()
        PrivacyRequest.objects.filter(pk=request.pk).update(verified_at=now)
        # The link went to the agent when an agent filed: it proves their mailbox, not the subject's address.
        if not request.filed_by_agent:
            request.identities.filter(
                kind=IdentityKind.EMAIL, value=normalised_identifier(IdentityKind.EMAIL, request.subject_email)
            ).update(verified_at=now, verification_method=VerificationMethod.EMAIL_LINK)

        emails.owe(request, "request_confirmed")
        tasks.queue_after_commit(tasks.send_request_confirmed_email, request.id)
        tasks.queue_after_commit(tasks.route_request, request.id)
    request.verified_at = now
    return request


def _confirm_email_of_request_received_directly(request: PrivacyRequest) -> PrivacyRequest:
    """The owner of a request's address, received directly, confirmed it through the link staff sent: its packages
    may now be released unencrypted to the status page (PrivacyRequest.email_unconfirmed). The subject's email
    identity is verified by the link, as a web request's is, unless an agent filed (the link went to them). The status stays as it is. The row is locked and the link checked
    again: of two clicks at once, or a click and a newer link, one wins and the other changes nothing."""
    with transaction.atomic():
        locked = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
        # `request` was read with the link's nonce (request_for_verification_token): a newer link since replaced it.
        _check_email_confirmation_link(locked, request.verification_nonce)
        now = timezone.now()
        PrivacyRequest.objects.filter(pk=locked.pk).update(verified_at=now)
        # Not one staff verified already, by a method of their choosing: that record stays. The link went to the agent
        # when an agent filed (staff intake): it proves their mailbox, not the subject's address.
        if not locked.filed_by_agent:
            locked.identities.filter(
                kind=IdentityKind.EMAIL,
                value=normalised_identifier(IdentityKind.EMAIL, locked.subject_email),
                verified_at__isnull=True,
            ).update(verified_at=now, verification_method=VerificationMethod.EMAIL_LINK)
        record_event(locked, "email_confirmed", actor=Actor.requester(locked))
    locked.verified_at = now
    return locked


def email_confirmation_send(*, request: PrivacyRequest, actor: Actor) -> PrivacyRequest:
    """Email the subject of a request received directly a link to confirm their address: the way to releasing an
    unencrypted package, which exports.export_release refuses while PrivacyRequest.email_unconfirmed.

    The web form's verification link and page: signed, valid for VERIFICATION_LINK_MAX_AGE, used once, and
    replaced by the next one sent (the nonce). Open requests with an unconfirmed address only. The email is owed
    in this transaction and queued on commit, so a lost task is queued again (emails.requeue_owed_emails).
    """
    with transaction.atomic():
        locked = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
        roles.require_can_work(actor, locked)
        if not locked.is_open:
            raise RequestError(_("This request is closed: its email address no longer needs confirming."))
        if not locked.email_unconfirmed:
            raise RequestError(
                _("The subject's email address needs no confirming: it was confirmed already, or the request has none.")
            )
        emails.forgive(locked.id, "confirm_email", locked.verification_nonce)  # the link replaced, if still unsent
        locked.verification_nonce = new_nonce()
        locked.save(update_fields=["verification_nonce", "updated_at"])
        emails.owe(locked, "confirm_email", locked.verification_nonce)
        record_event(locked, "email_confirmation_sent", actor=actor)
        tasks.queue_after_commit(tasks.send_email_confirmation, locked.id)
    return locked


# How often a subject's link may be sent again: enough for a lost email, too little to flood a mailbox.
LINK_RESEND_INTERVAL = timedelta(minutes=10)
LINK_RESENDS_PER_DAY = 5
LINK_RESENT_EVENTS = ("verification_resent", "status_link_resent")


def request_resend_link(*, reference: str, email: str) -> None:
    """The lost-link page: email the subject their link again, if reference and email match (the agent's
    address when an agent filed: the links went to them).

    One query finds the request either way, and a task does the rest either
    way (resend_link, or nothing for no match), so neither the page's answer
    nor the time it takes tells the visitor whether the details matched.
    """
    request = PrivacyRequest.objects.filter(reference=reference.strip().upper()).exclude(no_email_to_write_to()).first()
    matched = request is not None and constant_time_compare(request.correspondence_email.lower(), email.strip().lower())
    tasks.queue_after_commit(tasks.resend_link, request.id if matched else None)


def resend_link(*, request_id: int) -> bool:
    """Send the link of a request whose reference and email were given on the lost-link page.

    A request still awaiting verification gets a fresh verification link that
    replaces the old ones. Any other request whose details we still hold gets
    a new status page link, which replaces the old ones once it is opened, so a
    subject who lost the confirmation email can follow the request, read our
    letters and download their data. At most one
    every LINK_RESEND_INTERVAL and LINK_RESENDS_PER_DAY a day, and no
    verification link once the request is older than
    UNVERIFIED_REQUEST_EXPIRY. Returns whether an email was queued.
    """
    with transaction.atomic():
        request = PrivacyRequest.objects.select_for_update().filter(pk=request_id).exclude(no_email_to_write_to()).first()
        if request is None:
            return False
        now = timezone.now()
        sent_today = list(
            request.events.filter(action__in=LINK_RESENT_EVENTS, created_at__gte=now - timedelta(days=1))
            .values_list("created_at", flat=True)
        )
        if len(sent_today) >= LINK_RESENDS_PER_DAY or any(at > now - LINK_RESEND_INTERVAL for at in sent_today):
            logger.info("link of request %s not sent again: asked for too often", request.reference)
            return False
        if request.status == Status.AWAITING_VERIFICATION and request.created_at <= now - settings.UNVERIFIED_REQUEST_EXPIRY:
            # Past its week, the request lives only as long as the link last sent (expire_unverified_requests):
            # a new link each time would keep unconfirmed personal data for ever. The subject files again.
            logger.info("verification link of request %s not sent again: the request is past its expiry", request.reference)
            return False
        if request.status == Status.AWAITING_VERIFICATION:
            request.verification_nonce = new_nonce()
            request.save(update_fields=["verification_nonce", "updated_at"])
            record_event(request, "verification_resent", actor=Actor.requester(request))
            # Owed from now: the request is not expired while the link is on its way (expire_unverified_requests).
            emails.owe(request, "verify_email", request.verification_nonce)
            tasks.queue_after_commit(tasks.send_verification_email, request.id)
        else:
            # A new link replaces the old ones once it is opened (status_link_opened): a subject who
            # fears an old email (or a shared screen) gave their page away takes it back by asking again.
            request.pending_secret = new_secret()
            request.save(update_fields=["pending_secret", "updated_at"])
            # The event's number keys the email: each asking sends one, a redelivered task none.
            event = record_event(request, "status_link_resent", actor=Actor.requester(request))
            # Owed, as the asking counts against the subject's limit: a task the broker loses is queued again.
            emails.owe(request, "status_link", str(event.sequence))
            tasks.queue_after_commit(tasks.send_status_link_email, request.id, event.sequence)
    return True


def status_link_opened(request: PrivacyRequest, secret: str) -> None:
    """A status page opened by `secret`: the link last sent from the lost-link page becomes the request's link,
    and the earlier ones stop working (recorded, without the secrets). Nothing for the request's own link.

    Conditional, so that of two openings at once, or an opening and a newer asking, the newest link wins: an
    older sent link that lost is then a 404, as any link replaced."""
    if constant_time_compare(request.secret, secret):
        return
    with transaction.atomic():
        replaced = PrivacyRequest.objects.filter(pk=request.pk, pending_secret=secret).update(secret=secret, pending_secret="")
        if replaced:
            record_event(request, "status_link_replaced", actor=Actor.requester(request))
    request.refresh_from_db(fields=["secret", "pending_secret"])
    if not constant_time_compare(request.secret, secret):
        raise Http404("No such request")


def request_withdraw(*, request: PrivacyRequest, actor: Actor, note: str = "") -> PrivacyRequest:
    """Withdraw an open request at the subject's wish. Closed requests raise IllegalTransition.

    Once it reached the team's queue, the assignee (or, with none, the DPO) is
    told: work on it must stop. Once it was confirmed (or received directly),
    the subject is told too, whoever withdrew it (from the status page, whose
    link anyone it was forwarded to can use, or the organisation that filed it
    over the API): a withdrawal they did not make must not go unnoticed.
    """
    with transaction.atomic():
        # Locked until commit: the transition below starts from the status read here.
        locked = (
            PrivacyRequest.objects.select_for_update()
            .only("status", "closed_at", "subject_email", "agent_capacity", "agent_email").get(pk=request.pk)
        )
        if locked.status in lifecycle.CLOSED_STATUSES:
            raise lifecycle.IllegalTransition(_already_closed(locked))
        confirmed = locked.status != Status.AWAITING_VERIFICATION and locked.correspondence_email != ""
        lifecycle.transition(request, "withdraw", actor=actor, note=note)
        if PrivacyRequest.objects.filter(pk=request.pk, routed_at__isnull=False).exists():  # in the team's queue
            emails.owe(request, "withdrawn")
            tasks.queue_after_commit(tasks.send_withdrawal_notification, request.id)
        # An address never confirmed may not be the subject's: it gets nothing more than its verification link.
        if confirmed:
            emails.owe(request, "withdrawal_confirmed")
            tasks.queue_after_commit(tasks.send_withdrawal_confirmation, request.id)
    return request


def _already_closed(request: PrivacyRequest) -> str:
    """Why a closed request cannot be withdrawn, in the words of whoever asked (a portal withdrawing twice after a
    timeout), not the state machine's ("a request that is withdrawn cannot be moved to withdrawn")."""
    moment = date_in_words(request.closed_at, "DATETIME_FORMAT")
    if request.status == Status.WITHDRAWN:
        return _("This request was already withdrawn on %(moment)s: nothing changed.") % {"moment": moment}
    return _("This request is already closed (%(status)s on %(moment)s): there is nothing left to withdraw.") % {
        "status": in_sentence(request.get_status_display()), "moment": moment,
    }


def requeue_lost_acknowledgements(*, now: datetime | None = None) -> int:
    """Queue again the first email to subjects whose task the broker lost or whose retries ran out.

    That email is the verification link of a web request (without it the
    request cannot be confirmed and expires) or the confirmation of a request
    received directly; it is what acknowledges receipt. Returns how many. A
    second task is harmless: each email goes once (emails.send_once).
    """
    now = now or timezone.now()
    lost = list(
        PrivacyRequest.objects.filter(
            acknowledged_at__isnull=True,
            subject_email_rejected_at__isnull=True,
            acknowledgement_queued_at__lt=now - emails.LOST_TASK_AFTER,
            created_at__gte=now - emails.GIVE_UP_AFTER,
            status__in=lifecycle.OPEN_STATUSES,
        )
        .exclude(no_email_to_write_to())
        .values_list("id", "status")
    )
    PrivacyRequest.objects.filter(pk__in=[request_id for request_id, _ in lost]).update(acknowledgement_queued_at=now)
    for request_id, status in lost:
        if status == Status.AWAITING_VERIFICATION:
            tasks.queue_after_commit(tasks.send_verification_email, request_id)
        else:
            tasks.queue_after_commit(tasks.send_request_confirmed_email, request_id)
    if lost:
        logger.warning("queued %d acknowledgement email(s) again: their task was lost", len(lost))
    return len(lost)


PERSONAL_FIELDS = {
    "subject_name": "",
    "name_for_search": "",
    "subject_email": "",
    "subject_phone": "",
    # Whoever acted for the subject: their name and address go with the subject's. The capacity stays (no one's data).
    "agent_name": "",
    "agent_email": "",
    "customer_reference": "",
    "postal_address": "",
    "description": "",
    "signature": "",
    "extension_reason": "",
    # How to reach the controller a request was forwarded to: staff's free text, which may name a person. The
    # controller's own name, an organisation's, stays with the reference.
    "forwarded_to_contact": "",
}


def expire_unverified_requests(*, now: datetime | None = None) -> int:
    """Expire requests never verified within UNVERIFIED_REQUEST_EXPIRY, or by the time their verification link
    expires if that is later, and purge their personal data.

    A link says it works for VERIFICATION_LINK_MAX_AGE from its email: one sent again from the lost-link page on the
    seventh day (or a first one the broker lost for days) keeps its request open until then, and so does one asked
    for and not sent yet. Safe to run twice or concurrently: each request is re-checked under a row lock by the
    transition. Returns how many requests were expired.
    """
    now = now or timezone.now()
    cutoff = now - settings.UNVERIFIED_REQUEST_EXPIRY
    links_since = now - settings.VERIFICATION_LINK_MAX_AGE
    # The link in force only: an earlier one was replaced by it, and works no more.
    link_in_force = SentNotification.objects.filter(
        Q(sent_at__gte=links_since) | Q(sent_at__isnull=True, created_at__gte=links_since),
        request=OuterRef("pk"),
        kind="verify_email",
        key=OuterRef("verification_nonce"),
    )
    stale_ids = list(
        PrivacyRequest.objects.filter(status=Status.AWAITING_VERIFICATION, created_at__lt=cutoff)
        .exclude(Exists(link_in_force))
        .values_list("id", flat=True)
    )
    expired = 0
    for request in PrivacyRequest.objects.filter(id__in=stale_ids):
        with transaction.atomic():
            try:
                lifecycle.transition(
                    request,
                    "expire",
                    actor=Actor.system(),
                    expected_status=Status.AWAITING_VERIFICATION,
                    note="Email never verified",
                )
            except RequestError:
                continue  # verified or withdrawn since we looked
            purge_personal_data(request)
        expired += 1
    return expired


def purge_closed_requests(*, now: datetime | None = None) -> int:
    """Purge the personal data of requests closed longer than CLOSED_REQUEST_RETENTION; returns how many.

    Safe to run twice or concurrently: each request is locked and re-checked.
    """
    cutoff = (now or timezone.now()) - settings.CLOSED_REQUEST_RETENTION
    due = list(
        PrivacyRequest.objects.filter(closed_at__lt=cutoff, personal_data_purged_at__isnull=True).values_list("id", flat=True)
    )
    purged = 0
    for request_id in due:
        with transaction.atomic():
            request = (
                PrivacyRequest.objects.select_for_update()
                .filter(pk=request_id, closed_at__lt=cutoff, personal_data_purged_at__isnull=True)
                .first()
            )
            if request is None:
                continue
            purge_personal_data(request)
        purged += 1
    if purged:
        logger.info("purged the personal data of %d request(s) closed before %s", purged, cutoff.date())
    return purged


def purge_personal_data(request: PrivacyRequest) -> None:
    """Blank the subject's personal data, and what staff wrote about them, keeping the reference
    and the audit trail."""
    PrivacyRequest.objects.filter(pk=request.pk).update(**PERSONAL_FIELDS, personal_data_purged_at=timezone.now())
    request.rights.update(
        rectification_data="", rectification_value="", objection_processing="", consent_withdrawn="",
        recipient_name="", recipient_email="", transmission_decline_reason="",
    )
    # Staff's free text about the request may quote the subject too.
    request.messages.update(subject="", body="")
    request.notes.update(body="")
    request.pauses.update(reason="")
    request.recipient_notices.update(waiver_note="")  # why a recipient was not told: it may quote the subject
    CoveredPurpose.objects.filter(right__request=request).update(not_applied_reason="")  # why a use was not stopped: likewise
    request.rectification_changes.update(value="")  # the certificate names the fields, never the values
    # Why a restriction was to be lifted, or was not after all: it may quote the subject.
    request.source_actions.update(lift_reason="", lift_cancel_reason="")
    request.identities.all().delete()
    request.notifications.filter(sent_at__isnull=True).delete()  # nobody is emailed about it any more
    # Its data packages and the raw extracts gathered for them go too (long expired, as a rule).
    for export in request.exports.exclude(status__in=[ExportStatus.EXPIRED, ExportStatus.RUNNING]):
        exports.delete_export(export)
    attachments = list(request.attachments.filter(deleted_at__isnull=True))  # a tombstone's file is gone already
    request.attachments.all().delete()
    # Files are not transactional: remove them only once the purge has committed.
    for attachment in attachments:
        transaction.on_commit(lambda file=attachment.file: file.storage.delete(file.name))
    record_event(request, "personal_data_purged", actor=Actor.system())
