"""Lifting a restriction (GDPR Art. 18(3)): a restriction that was temporary (accuracy contested,
Art. 18(1)(a); an objection pending, Art. 18(1)(d)) ends once staff decide, but the subject is told
before it does.

Planning the lifting sends the subject a letter, in the request's thread and language, naming the
system, the reason and the first day it may be lifted (RESTRICTION_LIFT_NOTICE_DAYS from now), and
creates the action that lifts it: an ordinary source action (services/actions.py) of the kind
"lift_restriction", with its dry run, approval and execution, which is refused before that day. It
may be planned whatever the request's status: restrictions outlive the requests that asked for them.

A subject who cannot be emailed (no address, or their mail server refuses it, at the planning or after it) is sent
the notice by post: staff record it posted, and the lifting waits for that record, then for the notice period from
the day it was posted (Art. 18(3): told first, not only written to).

Until it has run, a lifting may be cancelled (the subject answered the notice with new grounds, say, or
the verification of accuracy is not over after all): the subject is told the restriction stays in force,
the cancelled action stays on record, and a new lifting may be planned later, with a notice of its own.
"""

import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils import translation
from django.utils.translation import gettext as _

from requests_app import roles
from requests_app.audit import Actor, record_event
from requests_app.lifecycle import RequestError
from requests_app.models import ActionKind, ActionStatus, ConnectorKind, PrivacyRequest, SourceAction, TemplatePurpose
from requests_app.services.actions import action_summary, purged_before_lifting, subject_reached_by_post
from requests_app.services.handling import render_letter, supervisory_authorities_in_words, write_to_subject
from requests_app.wording import date_in_words


def lift_refusal(restriction: SourceAction) -> str | None:
    """Why the restriction `restriction` (an action of the kind "restrict") cannot be lifted, or None."""
    if restriction.kind != ActionKind.RESTRICT or restriction.status != ActionStatus.DONE:
        return _("Only a restriction that was carried out can be lifted.")
    if not restriction.changed_anything():
        return _("This restriction found nothing to restrict: there is nothing to lift.")
    if restriction.request.personal_data_purged_at is not None:
        return purged_before_lifting()
    if SourceAction.objects.filter(
        request_id=restriction.request_id, source_id=restriction.source_id, kind=ActionKind.LIFT_RESTRICTION
    ).exclude(status=ActionStatus.CANCELLED).exists():
        return _("The lifting of this restriction is already planned.")
    return None


def objection_paragraph(request: PrivacyRequest, lift_on: datetime.date) -> str:
    """How the subject objects to a lifting before `lift_on`, and their right to complain, in the request's language:
    the paragraph that ends its notice. On the status page, which takes their message while the lifting is pending
    (PrivacyRequest.takes_subject_messages), closed as the request may be; by letter when they have no email address."""
    with translation.override(request.language):
        values = {"day": date_in_words(lift_on), "reference": request.reference, "authority": supervisory_authorities_in_words(request.regime)}
        if request.filed_by_agent:
            # The rights are the subject's, whoever exercised them for them.
            if not request.correspondence_email:
                return _(
                    "If you or the person you are acting for disagree, tell us by letter before %(day)s, quoting the "
                    "reference %(reference)s. The person you are acting for also has the right to lodge a complaint with a "
                    "supervisory authority, in particular %(authority)s."
                ) % values
            return _(
                "If you or the person you are acting for disagree, write to us before %(day)s on the request's status "
                "page, which takes your message until the restriction is lifted. The person you are acting for also has "
                "the right to lodge a complaint with a supervisory authority, in particular %(authority)s."
            ) % values
        if not request.correspondence_email:
            return _(
                "If you disagree, tell us by letter before %(day)s, quoting the reference %(reference)s. You also have the "
                "right to lodge a complaint with a supervisory authority, in particular %(authority)s."
            ) % values
        return _(
            "If you disagree, write to us before %(day)s on your request's status page, which takes your message until "
            "the restriction is lifted. You also have the right to lodge a complaint with a supervisory authority, in "
            "particular %(authority)s."
        ) % values


def plan_lift(*, restriction: SourceAction, actor: Actor, reason: str) -> SourceAction:
    """Plan the lifting of a restriction carried out in one source, and tell the subject (Art. 18(3)).

    Allowed to whoever may work the request (as planning the restriction was), whatever its status,
    once the restriction is done and while no lifting is planned for it. Sends the letter (a message in
    the request's thread, emailed on commit), records it and the planning in the audit trail (not the
    reason: staff's words stay on the action, purged with the request). The action may be executed from
    `lift_not_before` on, RESTRICTION_LIFT_NOTICE_DAYS days from today.
    """
    reason = reason.strip()
    if not reason:
        raise RequestError(_("Say why the restriction is lifted: the subject is told."))
    roles.require_can_work(actor, restriction.request)
    with transaction.atomic():
        request = PrivacyRequest.objects.select_for_update().get(pk=restriction.request_id)
        locked = SourceAction.objects.select_related("request", "source").get(pk=restriction.pk)
        refusal = lift_refusal(locked)
        if refusal:
            raise RequestError(refusal)
        source = locked.source
        not_before = timezone.localdate() + datetime.timedelta(days=settings.RESTRICTION_LIFT_NOTICE_DAYS)
        subject, text = render_letter(
            request, TemplatePurpose.RESTRICTION_LIFT, body=reason,
            source=source.texts_in(request.language)["name"], lift_on=not_before,
        )
        text = f"{text}\n\n{objection_paragraph(request, not_before)}"
        notice = write_to_subject(request, actor=actor, subject=subject, body=text, action="restriction_lift_notice_sent")
        # The owner of a manual source lifts it by hand, as they restricted it.
        status = ActionStatus.MANUAL if source.connector == ConnectorKind.MANUAL else ActionStatus.PLANNED
        lift = SourceAction.objects.create(
            request=request, source=source, kind=ActionKind.LIFT_RESTRICTION, status=status,
            lift_reason=reason, lift_not_before=not_before, lift_notice=notice,
        )
        record_event(
            request, "restriction_lift_planned", actor=actor,
            data={**action_summary(lift), "not_before": not_before.isoformat(), "message": str(notice.public_id)},
        )
    return lift


def notice_posted_refusal(lift: SourceAction) -> str | None:
    """Why the notice of the lifting `lift` cannot be recorded as posted now, or None: only a lifting that has not run
    nor been cancelled, of a request not purged, whose subject cannot be emailed, once."""
    if lift.kind != ActionKind.LIFT_RESTRICTION or lift.lift_notice_id is None:
        return _("Only the notice of a lifting is recorded as posted.")
    if lift.lift_notice_posted_at is not None:
        return _("The notice of this lifting is already recorded as posted.")
    if lift.status in (ActionStatus.DONE, ActionStatus.CANCELLED):
        return _("This lifting has run or was cancelled: there is no notice to record as posted any more.")
    if lift.request.personal_data_purged_at is not None:
        return purged_before_lifting()  # nor can it run: no address to post to, no identifier to search by
    if not subject_reached_by_post(lift.request):
        return _("The notice of this lifting is emailed to the subject: there is no letter to post.")
    return None


def record_notice_posted(*, lift: SourceAction, actor: Actor) -> SourceAction:
    """Record that staff posted the notice of the lifting `lift` to a subject who cannot be emailed.

    Allowed to whoever may work the request, while notice_posted_refusal finds nothing against it (the request and
    the action locked and checked again: a second click is refused). The subject gets the whole notice period from
    today, as from the day a late email went (handling.email_to_subject): the lifting may run from
    RESTRICTION_LIFT_NOTICE_DAYS from today, or the day planned if later. Records it in the audit trail.
    """
    roles.require_can_work(actor, lift.request)
    with transaction.atomic():
        request = PrivacyRequest.objects.select_for_update().get(pk=lift.request_id)
        locked = SourceAction.objects.select_for_update(of=("self",)).select_related("request", "source", "lift_notice").get(pk=lift.pk)
        refusal = notice_posted_refusal(locked)
        if refusal:
            raise RequestError(refusal)
        now = timezone.now()
        first_day = timezone.localdate(now) + datetime.timedelta(days=settings.RESTRICTION_LIFT_NOTICE_DAYS)
        locked.lift_notice_posted_at, locked.lift_notice_posted_by = now, actor.user
        locked.lift_not_before = max(locked.lift_not_before, first_day)
        locked.save(update_fields=["lift_notice_posted_at", "lift_notice_posted_by", "lift_not_before"])
        record_event(
            request, "restriction_lift_notice_posted", actor=actor,
            data={**action_summary(locked), "not_before": locked.lift_not_before.isoformat(), "message": str(locked.lift_notice.public_id)},
        )
    return locked


def cancel_refusal(lift: SourceAction) -> str | None:
    """Why the lifting `lift` cannot be cancelled now, or None: only a lifting that has not run (nor is
    running) may be, and only while the subject can still be told that the restriction stays."""
    if lift.kind != ActionKind.LIFT_RESTRICTION:
        return _("Only the lifting of a restriction can be cancelled.")
    if lift.status == ActionStatus.CANCELLED:
        return _("This lifting has already been cancelled.")
    if lift.status == ActionStatus.DONE:
        return _("This restriction has already been lifted: the lifting can no longer be cancelled.")
    if lift.status == ActionStatus.RUNNING:
        return _("This lifting is being carried out: it can no longer be cancelled.")
    if lift.changed_anything():
        # An HTTP source has no rollback: a run that failed part-way left some rows lifted, and the
        # subject would be told the restriction stays when it no longer wholly does.
        return _("This lifting changed data in the source system before it stopped: it can no longer be cancelled.")
    if lift.request.personal_data_purged_at is not None:
        return _("The request's personal data has been deleted: the subject can no longer be told, and this lifting cannot run.")
    return None


def cancel_lift(*, lift: SourceAction, actor: Actor, reason: str) -> SourceAction:
    """Cancel a planned lifting that has not run, and tell the subject the restriction stays in force.

    Allowed to whoever may plan a lifting (who may work the request), whatever the request's status, while
    cancel_refusal finds nothing against it: planned, dry run under way or done, approved, failed or stale
    with nothing changed, or waiting for a manual source's owner. The request and the action are locked and
    checked again, so of a cancellation and an execution (or two cancellations) racing, the second is refused;
    a dry run under way records nothing once the action is cancelled. Sends the letter (a message in the
    request's thread and language, emailed on commit), records it and the cancellation in the audit trail (not
    the reason, as for the planning: staff's words stay on the action, purged with the request). Nothing is
    changed in the source: the restriction is still in place. The cancelled action stays, for the record; a
    new lifting may be planned (lift_refusal), with a notice of its own.
    """
    reason = reason.strip()
    if not reason:
        raise RequestError(_("Say why the restriction stays in force: the subject is told."))
    roles.require_can_work(actor, lift.request)
    with transaction.atomic():
        request = PrivacyRequest.objects.select_for_update().get(pk=lift.request_id)
        locked = SourceAction.objects.select_for_update(of=("self",)).select_related("request", "source").get(pk=lift.pk)
        refusal = cancel_refusal(locked)
        if refusal:
            raise RequestError(refusal)
        subject, text = render_letter(
            request, TemplatePurpose.RESTRICTION_LIFT_CANCELLED, body=reason,
            source=locked.source.texts_in(request.language)["name"], lift_on=locked.lift_not_before,
        )
        notice = write_to_subject(request, actor=actor, subject=subject, body=text, action="restriction_lift_cancellation_sent")
        locked.status, locked.cancelled_by, locked.cancelled_at = ActionStatus.CANCELLED, actor.user, timezone.now()
        locked.lift_cancel_reason, locked.lift_cancel_notice = reason, notice
        locked.save(update_fields=["status", "cancelled_by", "cancelled_at", "lift_cancel_reason", "lift_cancel_notice"])
        record_event(request, "restriction_lift_cancelled", actor=actor, data={**action_summary(locked), "message": str(notice.public_id)})
    return locked
