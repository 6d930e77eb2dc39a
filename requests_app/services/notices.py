"""Art. 19: telling each recipient of a source's data about a rectification, erasure or restriction there; under the
CCPA, about a request to limit the use of sensitive personal information too (CCPA Regulations § 7027(g)).

A notice is planned with the request's source actions and sent once all the
actions on its recipient's source are done: by email, or as a signed JSON
POST (the same `Webhook-Signature` scheme as the API's webhooks, with the
recipient's own secret). Staff may instead record that telling a recipient
is impossible or would take disproportionate effort, which Art. 19 allows, or
that it never received this person's data (nothing to tell it).

The notice carries what the recipient needs to apply the change: the
identifiers the source knows the person by, what was done, and corrected
values. It is personal data sent to a party that already holds it.
"""

import datetime
import json
import logging
from smtplib import SMTPException

import requests
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Case, Exists, OuterRef, Q, Value, When
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from requests_app import emails, roles, tasks
from requests_app.audit import Actor, record_event
from requests_app.lifecycle import CLOSED_STATUSES, RequestError
from requests_app.models import (
    ACTION_FOR_RIGHT,
    ANSWERING_KINDS,
    ActionKind,
    ActionStatus,
    CoveredPurpose,
    NoticeStatus,
    Recipient,
    RecipientNotice,
    RequestedRight,
    RequestType,
    SourceAction,
    WaiverReason,
    new_webhook_secret,
)
from requests_app.services.webhooks import AttemptFailed, api_datetime, post_signed
from requests_app.wording import in_sentence

logger = logging.getLogger(__name__)


class NoticeFailed(Exception):
    """Sending failed in a way a retry may fix (the task retries with backoff)."""


def queue_delivery(notice_id: int) -> None:
    """Queue the send task on commit, and note when (see requeue_lost_notices)."""
    RecipientNotice.objects.filter(pk=notice_id).update(queued_at=timezone.now())
    tasks.queue_after_commit(tasks.send_recipient_notice, notice_id)


def requeue_lost_notices(*, now: datetime.datetime | None = None) -> int:
    """Queue again the pending notices whose task the broker lost; returns how many.
    A second task for a notice is harmless: deliver() locks it and sends it once."""
    now = now or timezone.now()
    waiting_for_actions = Exists(unfinished_actions(OuterRef("request_id")).filter(source_id=OuterRef("recipient__source_id")))
    lost = list(
        RecipientNotice.objects.filter(status=NoticeStatus.PENDING, queued_at__lt=now - emails.LOST_TASK_AFTER)
        .exclude(waiting_for_actions)
        .values_list("id", flat=True)
    )
    for notice_id in lost:
        queue_delivery(notice_id)
    if lost:
        logger.warning("queued %d recipient notice(s) again: their send task was lost", len(lost))
    return len(lost)


def unfinished_actions(request_id):
    """The request's source actions not done yet: a notice for their source must wait for them. Not for the
    lifting of a restriction, which comes after the request's answer, nor for an action of a right the
    completion refused (RequestedRight.refusal_ground), which never runs once the request is closed. Nor,
    once the request is closed (withdrawn, rejected), for any action but an execution under way: the others
    never run now (actions.may_run_now), and only that one may still change the source."""
    refused = RequestedRight.objects.filter(request_id=OuterRef("request_id"), right=OuterRef("answers")).exclude(refusal_ground="")
    never_runs = Q(request__status__in=CLOSED_STATUSES) & ~Q(status=ActionStatus.RUNNING)
    return (
        SourceAction.objects.filter(request_id=request_id, kind__in=ANSWERING_KINDS)
        .exclude(status=ActionStatus.DONE)
        .exclude(never_runs)
        .annotate(answers=Case(*[When(kind=kind, then=Value(right)) for right, kind in ACTION_FOR_RIGHT.items()]))
        .exclude(Exists(refused))
    )


def changes_to_tell(notice: RecipientNotice) -> list[SourceAction]:
    """The request's finished actions that changed something in the notice's source: what its recipient
    is told. None: it needs no notice (every category held, no data found, nothing left after an erasure).

    A notice sent, then reopened for an action planned since (plan_actions), tells only what changed
    after it went: the recipient already applied the rest."""
    done = notice.request.source_actions.filter(
        source_id=notice.recipient.source_id, status=ActionStatus.DONE, kind__in=ANSWERING_KINDS
    )
    if notice.sent_at is not None:
        done = done.filter(finished_at__gt=notice.sent_at)
    return [action for action in done.order_by("kind") if action.changed_anything()]


def limit_to_tell(notice: RecipientNotice) -> bool:
    """Whether the notice must tell its recipient of the consumer's request to limit the use of their sensitive personal
    information, not told it yet: "A business shall comply with a request to limit by" notifying the third parties it
    disclosed that information to after the request, directing them to comply and to pass it on (CCPA Regulations
    § 7027(g)). From when the consumer is on a list for it (suppression.suppress), the limit then being complied
    with, for a right not refused. A notice sent before that told only changes: it tells the limit once more."""
    applied = limit_applied(notice.request)
    if notice.sent_at is not None and applied.filter(applied_at__lte=notice.sent_at).exists():
        return False
    return applied.exists()


def limit_applied(request):
    """The lists a CCPA request to limit the use of sensitive personal information put the consumer on, for a right not
    refused (CoveredPurpose, applied): none for any other request."""
    if not request.limits_use_under_ccpa or RequestType.LIMIT_USE in request.refused_rights:
        return CoveredPurpose.objects.none()
    return CoveredPurpose.objects.filter(right__request=request, right__right=RequestType.LIMIT_USE, applied_at__isnull=False)


def plan_limit_notices(request) -> None:
    """CCPA Regulations § 7027(g): once a CCPA request to limit is applied, a notice to every recipient in the inventory
    of an active source, which staff waive for one that received none of the consumer's sensitive personal information
    since the request (WaiverReason.NEVER_DISCLOSED); a notice sent or settled before, telling changes only, goes
    again. Sent at once where no action in the recipient's source is still to finish (a deletion's notice waits for
    it, and tells both). Call inside the transaction that applied the limit, with `request` locked; does nothing for
    any other request. Idempotent."""
    if not request.limits_use_under_ccpa:
        return
    told = request.recipient_notices.values("recipient_id")
    for recipient in Recipient.objects.filter(source__active=True).exclude(pk__in=told):
        RecipientNotice.objects.create(request=request, recipient=recipient)
    waiting = unfinished_actions(request.id).values("source_id")
    due = request.recipient_notices.filter(status__in=(NoticeStatus.PENDING, NoticeStatus.SENT, NoticeStatus.NOT_NEEDED))
    for notice in due.exclude(recipient__source_id__in=waiting).select_related("request", "recipient").select_for_update(
        skip_locked=True, of=("self",)
    ):
        if limit_to_tell(notice):
            RecipientNotice.objects.filter(pk=notice.pk).update(status=NoticeStatus.PENDING)
            queue_delivery(notice.id)


def changed_before_stopping(notice: RecipientNotice) -> bool:
    """Whether an action in the notice's source stopped part-way after changing rows there (an HTTP
    source has no rollback; _with_earlier_changes marks its result): its source did change."""
    return (
        notice.request.source_actions.filter(source_id=notice.recipient.source_id, kind__in=ANSWERING_KINDS)
        .exclude(status=ActionStatus.DONE)
        .filter(result__changed_before_failing=True)
        .exists()
    )


def settled_by_staff_only(notice: RecipientNotice) -> bool:
    """A pending notice of a closed request whose source changed before an action there stopped part-way. Closing
    leaves it pending (actions.queue_due_notices: "not needed" would be untrue, and a notice tells only what finished
    actions changed), so nothing else settles it: staff tell the recipient themselves and record why it was not
    sent from here, or why it is not told at all (waive)."""
    return (
        notice.status == NoticeStatus.PENDING
        and notice.request.status in CLOSED_STATUSES
        and changed_before_stopping(notice)
    )


def notice_content(notice: RecipientNotice) -> dict:
    """What the recipient is told: the changes made in its source for this request, as the actions'
    results record them. Data kept under a legal hold, and an action that found nothing to change, are
    not mentioned: the recipient would otherwise delete data the law makes us keep, or apply a
    correction we did not make."""
    request, source = notice.request, notice.recipient.source
    actions = changes_to_tell(notice)
    rectification = next((action for action in actions if action.kind == ActionKind.RECTIFY), None)
    # The actions searched the sources by verified identifiers only; a limit alone is applied with those the consumer
    # gave, verified or not (suppression.verified_only), and so told with them.
    identities = request.identities.searchable() if actions else request.identities.all()
    return {
        "notice": str(notice.public_id),
        "source": source.name,
        "identifiers": sorted(identities.filter(kind=source.identity_kind).values_list("value", flat=True)),
        "identifier_kind": source.identity_kind,
        "actions": [
            {
                "kind": action.kind,
                # Written as the API and its webhooks write times (Brussels time with its offset).
                "done_at": api_datetime(action.finished_at) if action.finished_at else None,
                "categories": action.changed_categories(),
                "only_records_before": only_records_before(action),
            }
            for action in actions
        ],
        "rectified_values": corrected_values(rectification) if rectification else [],
        # The consumer asked to limit the use and disclosure of their sensitive personal information (limit_to_tell).
        "limit_use": limit_to_tell(notice),
    }


def only_records_before(action: SourceAction) -> dict[str, dict]:
    """The categories an erasure took only in part, their recent records kept under a rolling legal hold:
    {category: {"field", "date"}}, erased only where the field is before the date. A recipient told
    "erased" alone would delete the records we must keep, and it may have to keep its own copies too."""
    if action.kind != ActionKind.ERASE:
        return {}
    changed = set(action.changed_categories())
    return {
        hold["category"]: {"field": hold["dated_by"], "date": hold["kept_from"]}
        for hold in action.result.get("held", [])
        if hold.get("kept_from") and hold["category"] in changed
    }


def corrected_values(rectification: SourceAction) -> list[dict]:
    """The corrected values a finished rectification changed, by category: where every matched row
    already held them, or no row matched, it changed nothing. A manual source's owner confirms the
    change as a whole."""
    changed = set(rectification.changed_categories())
    corrected = rectification.request.rectification_changes.filter(category__source_id=rectification.source_id)
    return [
        {"category": change.category.slug, "field": change.field, "value": change.value}
        for change in corrected.select_related("category")
        if rectification.result.get("manual") or change.category.slug in changed
    ]


def deliver(*, notice_id: int, final_attempt: bool = False) -> bool:
    """Send one pending notice. Returns whether this call sent it. Safe to run twice.

    The notice row stays locked while it is sent, so a redelivered task waits
    and then finds it sent instead of sending it again; the send is bounded by
    WEBHOOK_TIMEOUT_SECONDS (or the mail server's timeout). A failure is
    recorded on the notice; unless this was the final attempt it stays pending
    and NoticeFailed (raised once the failure is committed) asks the task to
    retry later. A final failure is written to the audit trail.
    """
    with transaction.atomic():
        notice = (
            RecipientNotice.objects.select_for_update(of=("self",))
            .select_related("recipient__source", "request")
            .filter(pk=notice_id)
            .first()
        )
        if notice is None or notice.status != NoticeStatus.PENDING:
            return False
        if unfinished_actions(notice.request_id).filter(source_id=notice.recipient.source_id).exists():
            # Reopened by an action planned since (a rectification after an erasure): it goes, with
            # everything done there, once that action is done (actions.queue_due_notices).
            return False
        recipient = notice.recipient
        notice.attempts, notice.queued_at = notice.attempts + 1, timezone.now()
        notice.save(update_fields=["attempts", "queued_at"])
        if not recipient.reachable:
            # Stored in English whatever language is active (a task run eagerly has the staff member's):
            # pages translate it for their reader ({% translate notice.error %}, event_data).
            _failed(notice, gettext_noop("No email address or webhook URL is recorded for this recipient."), final=True)
            return False
        content = notice_content(notice)
        try:
            if recipient.notification_webhook_url:
                _post(recipient, content)
            else:
                emails.send_recipient_notice(recipient, content, regime=notice.request.regime)
        except emails.EmailRejected as error:
            failure, final_attempt = error, True  # the address is refused for good: no retry
            _failed(notice, str(error), final=True)
        except (NoticeFailed, SMTPException, OSError) as error:
            failure = error
            _failed(notice, str(error) or type(error).__name__, final=final_attempt)
        else:
            failure = None
            notice.status, notice.error, notice.sent_at = NoticeStatus.SENT, "", timezone.now()
            notice.save(update_fields=["status", "error", "sent_at"])
            record_event(notice.request, "recipient_notified", actor=Actor.system(), data={"recipient": recipient.name})
    if failure is not None and not final_attempt:
        raise NoticeFailed(str(failure)) from failure
    return failure is None


def _failed(notice: RecipientNotice, error: str, *, final: bool) -> None:
    notice.status = NoticeStatus.FAILED if final else NoticeStatus.PENDING
    notice.error = error[:300]
    notice.save(update_fields=["status", "error"])
    if final:
        # Staff must now resend or waive it: the trail shows why the request waited.
        record_event(
            notice.request, "recipient_notice_failed", actor=Actor.system(),
            data={"recipient": notice.recipient.name, "attempts": notice.attempts, "error": notice.error},
        )
    logger.warning("recipient notice %s failed (%s): %s", notice.public_id, notice.status, error[:100])


def _post(recipient, content: dict) -> None:
    body = json.dumps({"type": "privacy.recipient_notice", "data": content}, separators=(",", ":")).encode()
    try:
        status_code = post_signed(
            recipient.notification_webhook_url, secrets=[recipient.webhook_secret], webhook_id=content["notice"], body=body
        )
    except AttemptFailed as failure:  # refused before sending, or too slow to answer
        raise NoticeFailed(failure.message) from failure
    except (requests.RequestException, ValidationError) as failure:
        raise NoticeFailed(type(failure).__name__) from failure
    if not 200 <= status_code < 300:
        raise NoticeFailed(f"HTTP {status_code}")


def renew_recipient_secret(*, recipient: Recipient, actor: Actor, secret_seen: str) -> str:
    """A new secret to sign the recipient's webhook notices with, returned to be shown once. The old one
    stops at once: notices are rare, and a recipient gets the new one before any notice it must check.

    `secret_seen` is the page's Recipient.webhook_secret_seen: a reloaded page would otherwise replace the
    secret it has just shown, which would stop working unseen. (Of a double click, the browser shows the
    second answer, this refusal: the DPO issues another, and sees that one.)
    """
    roles.require_dpo(actor, _("Only the DPO manages recipients."))
    with transaction.atomic():
        locked = Recipient.objects.select_for_update().get(pk=recipient.pk)
        if not constant_time_compare(secret_seen, locked.webhook_secret_seen):
            raise RequestError(
                _("This recipient's secret was replaced since the page was opened (the form was sent twice, or "
                  "someone issued a new one): nothing was changed now. If nobody saw the new secret, issue another one.")
            )
        locked.webhook_secret = new_webhook_secret()
        locked.save(update_fields=["webhook_secret"])
        record_event(None, "recipient_secret_renewed", actor=actor, data={"id": locked.pk, "name": locked.name[:200]})
    return locked.webhook_secret


def _require_open(request) -> None:
    # Closing the request settled its notices (actions.queue_due_notices): a step now would change its record.
    if request.status in CLOSED_STATUSES:
        raise RequestError(
            _("This request is %(status)s: its notices to recipients can no longer be waived or sent again.")
            % {"status": in_sentence(request.get_status_display())}
        )


def resend(*, notice: RecipientNotice, actor: Actor) -> RecipientNotice:
    """Staff try a failed notice again (after fixing the recipient's address, say).
    Only from failed, on an open request; the task is queued once the notice is pending again."""
    roles.require_can_work(actor, notice.request)
    with transaction.atomic():
        # Only the notice is locked: a withdrawal locks the request, then its notices.
        locked = RecipientNotice.objects.select_for_update(of=("self",)).select_related("recipient", "request").get(pk=notice.pk)
        _require_open(locked.request)
        if locked.status != NoticeStatus.FAILED:
            raise RequestError(_("Only a failed notice can be sent again."))
        if not locked.recipient.reachable:
            raise RequestError(_("Add an email address or a webhook URL to this recipient in the inventory, then send it again."))
        locked.status, locked.error = NoticeStatus.PENDING, ""
        locked.save(update_fields=["status", "error"])
        record_event(locked.request, "recipient_notice_resent", actor=actor, data={"recipient": locked.recipient.name})
        queue_delivery(locked.id)
    return locked


def waive(*, notice: RecipientNotice, actor: Actor, reason: str, note: str) -> RecipientNotice:
    """Record why this recipient is not told: impossible or disproportionate effort (Art. 19's exceptions),
    or it never received this person's data. Only from pending or failed, on an open request, or on a closed one
    for a notice nothing else settles (settled_by_staff_only)."""
    roles.require_can_work(actor, notice.request)
    if reason not in WaiverReason.values:
        raise RequestError(
            _("Choose why the recipient is not told: impossible, disproportionate effort, or it never received this person's data.")
        )
    if not note.strip():
        raise RequestError(_("Say why: the subject and the supervisory authority may ask."))
    with transaction.atomic():
        locked = RecipientNotice.objects.select_for_update(of=("self",)).select_related("recipient", "request").get(pk=notice.pk)
        if not settled_by_staff_only(locked):
            _require_open(locked.request)
        if locked.status not in (NoticeStatus.PENDING, NoticeStatus.FAILED):
            raise RequestError(_("This recipient has already been notified or excused."))
        locked.status, locked.waiver_reason, locked.waiver_note = NoticeStatus.WAIVED, reason, note.strip()
        locked.waived_by, locked.waived_at = actor.user, timezone.now()
        locked.save(update_fields=["status", "waiver_reason", "waiver_note", "waived_by", "waived_at"])
        record_event(locked.request, "recipient_notice_waived", actor=actor, data={"recipient": locked.recipient.name, "reason": reason})
    return locked
