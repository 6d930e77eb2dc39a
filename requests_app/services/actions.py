"""Acting on rights in the source systems: erasure, rectification, restriction, and lifting a restriction.

For each source the request's data lives in, staff plan an action, see its
dry run (rows and fields that would change, data kept under a legal hold),
approve it, and execute it; a Celery task per source does the dry run and
the execution (tasks.run_source_action_dry_run, tasks.execute_source_action).

    planned --dry run--> awaiting_approval --approve--> approved --execute--> running --> done
                                                                                 |--> failed (retry)
                                                                                 '--> stale (dry run again)

While a dry run or an execution runs, a timer in its worker stamps its
heartbeat (requests_app.heartbeat). A run whose worker died is found once the
heartbeat is stale, and queued again within a minute (requeue_dead_actions);
the run that takes over obeys the rules of a redelivered task (run_execution).
A run whose task the broker lost before any worker took it is queued again
after SOURCE_ACTION_LOST_AFTER (requeue_lost_actions).
A live run is never taken over; after ATTEMPTS_BEFORE_GIVING_UP dead runs the
action fails, for staff to look at and retry.

Lifting a restriction (services/lifting.py plans it, telling the subject first, Art. 18(3)) goes
through the same steps, but may run whatever the request's status (restrictions outlive requests),
and not before the day the subject was told. One cancelled before it ran takes no step any more.

Erasure skips categories under a legal hold and records why (Art. 17(3)).
Manual sources wait for their owner to confirm the change. A request with
these rights completes only when every action is done and every recipient
has been told (Art. 19) or staff recorded why not (see `completion_blockers`).
"""

import dataclasses
import datetime
import logging
import secrets
from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet, prefetch_related_objects
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from requests_app import roles, selectors, tasks
from requests_app.audit import Actor, record_event
from requests_app.heartbeat import ATTEMPTS_BEFORE_GIVING_UP, Heartbeat, TakenOver, not_queued_since_death, stale_before
from requests_app.lifecycle import CLOSED_STATUSES, VERIFIED_OPEN, RequestError
from requests_app.models import (
    ACTION_FOR_RIGHT,
    ANSWERING_KINDS,
    RIGHTS_THE_SUBJECT_ASKS,
    ActionKind,
    ActionStatus,
    ConnectorKind,
    CoveredPurpose,
    EraseMethod,
    EraseStrategy,
    ExportKind,
    ExportStatus,
    IdentityKind,
    InternalNote,
    LegalHold,
    NoticeStatus,
    PACKAGE_FOR_RIGHT,
    PrivacyRequest,
    Recipient,
    RecipientNotice,
    RectificationChange,
    RejectionGround,
    RequestedRight,
    RequestType,
    RestrictionGround,
    SourceAction,
    SourceCategory,
    SourceSystem,
    SubjectIdentity,
    Status,
)
from requests_app.services import agents, notices
from requests_app.services.certificate import done_without_searching, nothing_corrected, searched_nothing
from requests_app.services.suppression import SUPPRESSION_RIGHTS, missing_identifier, must_be_applied, usable_kinds, verified_only
from requests_app.sources import SourceError, connector_for
from requests_app.sources.actions import (
    ActionPlan,
    CategoryWork,
    StaleDryRun,
    dated_before,
    kept_fields,
    plan_digest,
    pseudonymised_fields,
    typed_value,
)
from requests_app.wording import cites_gdpr_articles, date_in_words, in_sentence, label_in_letter

logger = logging.getLogger(__name__)

# Statuses from which a new dry run may start (it replaces any earlier dry run and approval).
# A dry run changes nothing, so one that seems stuck may simply be started again.
DRY_RUN_FROM = (
    ActionStatus.PLANNED,
    ActionStatus.DRY_RUNNING,
    ActionStatus.AWAITING_APPROVAL,
    ActionStatus.APPROVED,
    ActionStatus.FAILED,
    ActionStatus.STALE,
)


def verified_kinds(request: PrivacyRequest) -> set[str]:
    """The kinds of identifier verified for `request` by a method that proves them, those the sources are searched
    by (SubjectIdentity.is_searchable; reads identities.all(): prefetch it for many)."""
    return {identity.kind for identity in request.identities.all() if identity.is_searchable}


def searched_too_early(action: SourceAction, kinds_verified: set[str]) -> bool:
    """Whether a finished action ran before any identifier of its source's kind was verified, and one is now:
    it searched nobody, and must be run again, or the letter would say we hold no such identifier. Not a
    lifting of a restriction: it is never run again (dry_run_start), so the panel offers no dry run for it."""
    return (
        action.kind != ActionKind.LIFT_RESTRICTION
        and done_without_searching(action)
        and action.source.identity_kind in kinds_verified
    )


# The kinds that set or clear the restriction flag and list entries.
RESTRICTION_KINDS = (ActionKind.RESTRICT, ActionKind.LIFT_RESTRICTION)

# A worker runs the action's task in these: its heartbeat is stamped, and a dead run is taken over.
WORKING = (ActionStatus.DRY_RUNNING, ActionStatus.RUNNING)


# --- Planning ---------------------------------------------------------------


def _require_open(request: PrivacyRequest) -> None:
    if request.status not in VERIFIED_OPEN:
        raise RequestError(_("Only an open, verified request can be acted on."))


def may_run_now(action: SourceAction) -> bool:
    """Whether the action's request lets its dry run or execution go on: in progress, for the actions that
    answer it; any status for lifting a restriction, which comes later (the request may be closed by then)."""
    return action.kind == ActionKind.LIFT_RESTRICTION or action.request.status == Status.IN_PROGRESS


def _require_in_progress(request: PrivacyRequest) -> None:
    # A closed request is refused as closed: "once the request is in progress" would promise it may still be.
    _require_open(request)
    # Not while the identity check is under way, nor before it: the subject must be who they say.
    if request.status != Status.IN_PROGRESS:
        raise RequestError(_("The source systems are acted on once the request is in progress, after the identity check."))


def plan_actions(
    *,
    request: PrivacyRequest,
    actor: Actor,
    restriction_sources: Iterable[SourceSystem] | None = None,
    leave_out_reason: str = "",
) -> list[SourceAction]:
    """Create the actions the request's rights call for, one per source and kind, and the
    Art. 19 notices to the recipients of those sources. Planning again adds what is missing, and
    is refused, with nothing changed, when it would change nothing (see `anything_to_plan`).

    Rectification is planned only in the sources staff entered corrected values for. A
    restriction only in the sources it covers (Art. 18 restricts the data concerned, not all we
    hold): `restriction_sources`, staff's choice, recorded so that planning again keeps it; without
    one, the choice recorded, or before any the default (see `restriction_sources`). A restriction
    planned in an active source no longer chosen is left out (see `_leave_out`): refused, with nothing
    changed, once it has run there, or without `leave_out_reason`. Refused until staff verified one of the
    subject's identifiers.
    """
    roles.require_can_work(actor, request)
    with transaction.atomic():
        locked = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
        _require_in_progress(locked)
        kinds = [ACTION_FOR_RIGHT[right] for right in locked.requested_rights if right in ACTION_FOR_RIGHT]
        if not kinds:
            raise RequestError(_("This request asks for no erasure, rectification or restriction."))
        if not locked.identities.searchable().exists():
            # Sources are searched by verified identifiers only: without one, every action would find
            # nothing, and the request would be certified done with nothing searched.
            raise RequestError(_("Verify at least one of the subject's identifiers first: the source systems are searched by verified identifiers only."))
        # Those voided when who makes the request was corrected (manual_actions_void) give way to the new ones; the
        # trail keeps them (requester_corrected).
        replaced, _counts = _voided_actions(locked).delete()
        rectified_sources = set(locked.rectification_changes.values_list("category__source_id", flat=True))
        restricted_sources, left_out, scope_recorded = set(), [], False
        if ActionKind.RESTRICT in kinds:
            restricted_sources, left_out, scope_recorded = _choose_restriction_sources(
                locked, actor, restriction_sources, leave_out_reason
            )
        created = []
        for source, kind in _called_for(kinds, rectified_sources, restricted_sources):
            defaults = {"status": ActionStatus.PLANNED}
            if source.connector == ConnectorKind.MANUAL:
                # The owner makes the change by hand: tell them what erasure must keep.
                held = held_categories(source) if kind == ActionKind.ERASE else []
                defaults = {"status": ActionStatus.MANUAL, "dry_run": {"held": held}}
            action, is_new = SourceAction.objects.get_or_create(request=locked, source=source, kind=kind, defaults=defaults)
            if is_new:
                created.append(action)
        if kinds == [ActionKind.RECTIFY] and not rectified_sources:
            raise RequestError(_("Enter the corrected values first: rectification is planned where they apply."))
        added_notices = [
            RecipientNotice.objects.get_or_create(request=locked, recipient=recipient)[1] for recipient in _recipients_to_tell(locked)
        ]
        if not (created or replaced or scope_recorded or any(added_notices)):
            # A second click, or a page loaded before a colleague planned: nothing would change, and a success
            # message would suggest something did.
            raise RequestError(_("Every source has its actions planned: planning again would add nothing."))
        # A source told about an erasure must also hear of a rectification planned there later.
        locked.recipient_notices.filter(
            recipient__source_id__in={action.source_id for action in created},
            status__in=(NoticeStatus.SENT, NoticeStatus.NOT_NEEDED),
        ).update(status=NoticeStatus.PENDING, queued_at=None)  # not queued again until the new action is done
        if any(added_notices) or left_out or replaced:
            # A recipient added to a source whose actions are already done is told now: no action will
            # finish there again to send its notice. So is one whose source's last unfinished action was left out,
            # or was voided in a source made inactive since, where no new one replaces it.
            queue_due_notices(locked)
        if created:
            record_event(
                locked,
                "source_actions_planned",
                actor=actor,
                data={"actions": [{"source": a.source.slug, "kind": a.kind} for a in created]},
            )
    return created


def _voided_actions(request: PrivacyRequest) -> QuerySet:
    """The request's actions cancelled when who makes it was corrected (manual_actions_void): every cancelled action
    but a lifting's, which stays on record as the one the subject was told of."""
    return request.source_actions.filter(status=ActionStatus.CANCELLED).exclude(kind=ActionKind.LIFT_RESTRICTION)


def _called_for(kinds: list[str], rectified_sources: set[int], restricted_sources: set[int]) -> list[tuple[SourceSystem, str]]:
    """(source, kind) of every action `kinds` call for in the active sources: a rectification only where corrected
    values were entered, a restriction only where it covers the source."""
    return [
        (source, kind)
        for source in SourceSystem.objects.filter(active=True)
        for kind in kinds
        if not (kind == ActionKind.RECTIFY and source.id not in rectified_sources)
        and not (kind == ActionKind.RESTRICT and source.id not in restricted_sources)
    ]


def _recipients_to_tell(request: PrivacyRequest) -> QuerySet:
    """The recipients of the sources the request has actions in that have no notice yet: added to the inventory
    since the planning, say."""
    return Recipient.objects.filter(source_id__in=request.source_actions.values("source_id")).exclude(
        pk__in=request.recipient_notices.values("recipient_id")
    )


def anything_to_plan(request: PrivacyRequest) -> bool:
    """Whether "Plan actions" could change anything for `request`: the request page offers it only then, and
    plan_actions refuses a planning that changes nothing. It could where an action is missing (a source made
    active, a corrected value entered for another source), where a recipient added to a source acted on has no
    notice yet, or, for a restriction, where its scope may still change: an active source it does not cover, to
    tick, or one of two or more it covers whose restriction has not run, to leave out (leave_out_refusal)."""
    kinds = [ACTION_FOR_RIGHT[right] for right in request.requested_rights if right in ACTION_FOR_RIGHT]
    rectified_sources = set(request.rectification_changes.values_list("category__source_id", flat=True))
    covered = restriction_sources(request) if ActionKind.RESTRICT in kinds else []
    if _voided_actions(request).exists():
        return True  # planning replaces them (manual_actions_void), in a source made inactive since too
    planned = set(request.source_actions.values_list("source_id", "kind"))
    if any((source.id, kind) not in planned for source, kind in _called_for(kinds, rectified_sources, {s.id for s in covered})):
        return True
    if _recipients_to_tell(request).exists():
        return True
    if not covered:
        return False
    if SourceSystem.objects.filter(active=True).exclude(pk__in=[source.pk for source in covered]).exists():
        return True
    restrictions = request.source_actions.filter(kind=ActionKind.RESTRICT, source__in=covered).select_related("source")
    return len(covered) > 1 and any(leave_out_refusal(restriction) is None for restriction in restrictions)


def restriction_sources(request: PrivacyRequest) -> list[SourceSystem]:
    """The active source systems a restriction of `request` covers: those staff chose when planning it, or,
    before any choice, the default the planning form offers. That is the sources where a restriction is
    already planned, if any: a default that left them out would delete them on the next planning. Failing
    those, for a restriction while the accuracy of the data is contested (Art. 18(1)(a)) alongside its
    correction, the sources of the corrected values: the data contested. Otherwise every active source:
    what a ground concerns is for staff to narrow down."""
    right = request.rights.filter(right=RequestType.RESTRICTION).first()
    if right is None:
        return []
    active = SourceSystem.objects.filter(active=True).order_by("name")
    if right.restriction_sources.exists():
        return list(active.filter(pk__in=right.restriction_sources.values("pk")))
    already = list(active.filter(pk__in=request.source_actions.filter(kind=ActionKind.RESTRICT).values("source_id")))
    if already:
        return already
    if right.restriction_ground == RestrictionGround.ACCURACY_CONTESTED and RequestType.RECTIFICATION in request.requested_rights:
        corrected = list(active.filter(pk__in=request.rectification_changes.values("category__source_id")))
        if corrected:
            return corrected
    return list(active)


def leave_out_refusal(restriction: SourceAction) -> str | None:
    """Why a restriction planned in a source cannot be left out of the restriction's scope, or None. One that
    ran, or is running, restricted data there: it ends with a lifting, which the subject is told of first. Not
    one done without searching its source: it changed nothing there, and goes as one only planned does."""
    source = restriction.source.name
    if restriction.status == ActionStatus.DONE and not done_without_searching(restriction):
        return _("The restriction in %(source)s has already been carried out: it can no longer be left out.") % {"source": source}
    if restriction.status == ActionStatus.RUNNING:
        return _("The restriction in %(source)s is being carried out: it can no longer be left out.") % {"source": source}
    if restriction.changed_anything():
        # An HTTP source has no rollback: a run that stopped part-way left some rows restricted.
        return _("The restriction in %(source)s changed data in the source system before it stopped: it can no longer be left out.") % {
            "source": source
        }
    return None


def reason_needed_to_leave_out(sources: Iterable[SourceSystem]) -> str:
    """The refusal of leaving the restriction planned in `sources` out without a reason (_choose_restriction_sources);
    the planning form gives it on its reason field."""
    return _("Say why the restriction no longer covers %(sources)s, where it was planned: the reason is kept in the request's notes.") % {
        "sources": ", ".join(sorted(source.name for source in sources))
    }


def _choose_restriction_sources(
    request: PrivacyRequest, actor: Actor, chosen: Iterable[SourceSystem] | None, reason: str
) -> tuple[set[int], list[SourceAction], bool]:
    """Record which active sources the restriction of the locked `request` covers (`chosen`, or the choice
    recorded, or the default) and leave out the restrictions planned in the other active sources; returns the
    ids of the active sources covered and the restrictions left out. A restriction in a source made inactive
    since stays, and stays recorded: the form does not offer that source, so staff cannot have unticked it.
    Leaving one out needs `reason`: the subject asked for it, and the DPO must be able to show why that system
    holds none of the data concerned (Art. 5(2)). It is kept as a note of the request, which purging empties as
    it does the others: the trail holds no free text.
    Returns too whether the choice was recorded anew (it differs from the one recorded, or leaves some out).
    Raises RequestError, having changed nothing, when none is chosen, a restriction to leave out has run, or
    one is left out without a reason."""
    chosen = restriction_sources(request) if chosen is None else chosen
    chosen_ids = set(SourceSystem.objects.filter(pk__in=[source.pk for source in chosen], active=True).values_list("pk", flat=True))
    if not chosen_ids:
        raise RequestError(_("Choose at least one source system for the restriction to cover, or refuse the restriction."))
    restrictions = request.source_actions.filter(kind=ActionKind.RESTRICT)
    # Locked: a manual source's owner confirms it done holding the action's lock, not the request's.
    left_out = list(
        restrictions.filter(source__active=True)
        .exclude(source_id__in=chosen_ids)
        .select_for_update(of=("self",))
        .select_related("source", "request")
    )
    for action in left_out:
        refusal = leave_out_refusal(action)
        if refusal:
            raise RequestError(refusal)
    reason = reason.strip()
    if left_out and not reason:
        raise RequestError(reason_needed_to_leave_out([action.source for action in left_out]))
    right = request.rights.get(right=RequestType.RESTRICTION)
    recorded = chosen_ids | set(restrictions.filter(source__active=False).values_list("source_id", flat=True))
    if recorded == set(right.restriction_sources.values_list("pk", flat=True)) and not left_out:
        return chosen_ids, [], False
    right.restriction_sources.set(recorded)
    _leave_out(request, left_out)
    data = {
        "sources": list(SourceSystem.objects.filter(pk__in=recorded).order_by("slug").values_list("slug", flat=True)),
        "left_out": [action.source.slug for action in left_out],
    }
    if left_out:
        data["note"] = InternalNote.objects.create(request=request, author=actor.user, body=reason).id
    record_event(request, "restriction_sources_chosen", actor=actor, data=data)
    return chosen_ids, left_out, True


def _leave_out(request: PrivacyRequest, restrictions: list[SourceAction]) -> None:
    """Remove planned restrictions that have not run (leave_out_refusal): nothing changed in their sources, so
    neither the subject's letter nor the certificate has anything to say of them. The notices to their sources'
    recipients go too where no other action of the request is planned there and they were never sent: there
    is nothing to tell those recipients, nor a waiver to explain. The trail keeps the choice (the caller's event)."""
    if not restrictions:
        return
    SourceAction.objects.filter(pk__in=[action.pk for action in restrictions]).delete()
    still_acted_on = request.source_actions.values("source_id")
    request.recipient_notices.filter(
        recipient__source_id__in={action.source_id for action in restrictions}, sent_at__isnull=True
    ).exclude(recipient__source_id__in=still_acted_on).delete()


# A rectification in these has written its corrected values into its source, or is writing them: they are settled.
# One that failed may be corrected again before its retry: it goes back to a new dry run (_void_dry_run).
CORRECTED_ALREADY = (ActionStatus.RUNNING, ActionStatus.DONE)


def corrected_already(action: SourceAction, kinds_verified: set[str]) -> bool:
    """Whether a rectification's corrected values are settled (CORRECTED_ALREADY): it wrote them into its source, or
    is writing them. Not one done without searching its source whose kind of identifier is verified now
    (searched_too_early): it wrote nothing, and is to run again, with its values as they are then."""
    return action.status in CORRECTED_ALREADY and not searched_too_early(action, kinds_verified)


def rectification_change_set(
    *, request: PrivacyRequest, actor: Actor, category: SourceCategory, field: str, value: str
) -> RectificationChange:
    """Record a corrected value for one field, checked against the field's type.

    A change after the source's dry run makes that dry run (and any approval) void. Refused once the source's
    rectification ran (corrected_already), but for one that ran before any identifier its source finds data by was
    verified, and searched nothing: once one is, its values may change until its dry run is run again.
    """
    roles.require_can_work(actor, request)
    if RequestType.RECTIFICATION not in request.requested_rights:
        raise RequestError(_("This request asks for no rectification."))
    rule = category.fields.filter(name=field, rectifiable=True).first()
    if rule is None:
        raise RequestError(_("%(field)s is not a field of %(category)s that can be corrected.") % {"field": field, "category": category})
    typed = typed_value(rule.type, value)  # ValidationError says what is wrong with the value
    with transaction.atomic():
        locked = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
        _require_in_progress(locked)
        action = SourceAction.objects.filter(request=locked, source=category.source, kind=ActionKind.RECTIFY).first()
        if action is not None and corrected_already(action, verified_kinds(locked)):
            if done_without_searching(action):
                raise RequestError(
                    _("The rectification in %(source)s searched nothing there: no %(identifier)s was verified. Once one "
                      "is, its corrected values may be changed, and its dry run run again.")
                    % {"source": category.source, "identifier": in_sentence(IdentityKind(category.source.identity_kind).label)}
                )
            raise RequestError(_("The rectification in %(source)s has already been carried out.") % {"source": category.source})
        change, _created = RectificationChange.objects.update_or_create(
            request=locked, category=category, field=field, defaults={"value": _stored(typed), "created_by": actor.user}
        )
        # One done without searching stays so until its dry run is run again (dry_run_start): that run, seeing it
        # searched too early, voids it and tells the source's recipients of the change once it is made.
        if action is not None and action.status not in (ActionStatus.MANUAL, ActionStatus.DONE):
            _void_dry_run(action)
        # The value itself is personal data: the unpurgeable trail says only which field.
        record_event(locked, "rectification_value_set", actor=actor, data={"category": str(category), "field": field})
    return change


def _stored(typed) -> str:
    return typed.isoformat() if hasattr(typed, "isoformat") else str(typed)


def _void_dry_run(action: SourceAction) -> None:
    action.status, action.dry_run, action.dry_run_at, action.dry_run_by, action.approved_by, action.approved_at = (
        ActionStatus.PLANNED, {}, None, None, None, None
    )
    action.save(update_fields=["status", "dry_run", "dry_run_at", "dry_run_by", "approved_by", "approved_at"])


# A dry run whose result or approval is not acted on yet: what dry_runs_void voids.
DRY_RUN_NOT_CARRIED_OUT = (
    ActionStatus.DRY_RUNNING, ActionStatus.AWAITING_APPROVAL, ActionStatus.APPROVED, ActionStatus.FAILED, ActionStatus.STALE
)


def dry_runs_void(request: PrivacyRequest) -> list[dict]:
    """Void the dry runs (and approvals) of `request`'s actions not carried out, when the identifiers the sources are
    searched by changed (agents.requester_correct): each counted, and was approved, for the identifiers verified then.
    Back to planned, for a dry run again; a dry run under way finds its action no longer running it, and records
    nothing. Not a lifting of a restriction, which is never run again (searched_too_early). In the caller's
    transaction, which holds the request locked. Returns the actions voided (action_summary), for its audit event."""
    voided = []
    for action in (
        request.source_actions.select_for_update(of=("self",)).select_related("source")
        .filter(status__in=DRY_RUN_NOT_CARRIED_OUT).exclude(kind=ActionKind.LIFT_RESTRICTION)
    ):
        _void_dry_run(action)
        voided.append(action_summary(action))
    return voided


def manual_actions_void(request: PrivacyRequest, actor: Actor) -> list[dict]:
    """Cancel `request`'s actions waiting for a manual source's owner, when the identifiers the sources are searched by
    changed (agents.requester_correct): the owner would look the subject up by the identifiers of before, and confirm
    a change made for whoever was taken to make the request then. Cancelled as a lifting called off is: the owner's
    page says so instead of offering to confirm it, and manual_action_done refuses it (cancelled_refusal). Until staff
    plan the actions again, which replaces it (plan_actions), completion waits for it, as the notices to its source's
    recipients do. Not a lifting of a restriction (as dry_runs_void). In the caller's transaction, which holds the
    request locked (the owner's confirmation takes the request's lock first too). Returns the actions cancelled
    (action_summary), for its audit event."""
    cancelled = []
    now = timezone.now()
    for action in (
        request.source_actions.select_for_update(of=("self",)).select_related("source")
        .filter(status=ActionStatus.MANUAL).exclude(kind=ActionKind.LIFT_RESTRICTION)
    ):
        action.status, action.cancelled_by, action.cancelled_at = ActionStatus.CANCELLED, actor.user, now
        action.save(update_fields=["status", "cancelled_by", "cancelled_at"])
        cancelled.append(action_summary(action))
    return cancelled


def cancelled_refusal(action: SourceAction) -> str:
    """Why a cancelled action takes no step any more: a lifting called off (lift_was_cancelled), or an action voided
    when who makes the request was corrected (manual_actions_void), which a new planning replaces."""
    if action.kind == ActionKind.LIFT_RESTRICTION:
        return lift_was_cancelled()
    return _(
        "This action was cancelled when who makes the request was corrected: nothing is confirmed. Plan the actions "
        "again; the owner then carries out the new one, for the identifiers verified now."
    )


# --- What an action does: its plan ------------------------------------------


def held_categories(source: SourceSystem, today=None) -> list[dict]:
    """The source's categories that erasure must keep on `today` (by default, today), each with the
    hold that keeps the most: a whole category's over one keeping its recent records ("kept_from",
    dated by "dated_by"), and "until", the last day any applicable hold keeps something."""
    today = today or timezone.localdate()
    # A hold on the codes keeps no records: the rest of the category is erased (pseudonyms_kept).
    holds = list(LegalHold.objects.filter(source=source, until__gte=today, pseudonyms_only=False).prefetch_related("translations"))
    held = []
    for category in source.categories.all():
        applicable = [hold for hold in holds if hold.category_id in (None, category.id)]
        if not applicable:
            continue
        whole = [hold for hold in applicable if hold.keep_months is None]
        # The widest hold decides what is kept; its words are the ones the letter quotes.
        hold = max(whole, key=lambda hold: hold.until) if whole else max(applicable, key=lambda hold: hold.keep_months)
        entry = {
            "category": category.slug,
            "ground": hold.ground,
            "basis": hold.basis,
            # For the letter in the subject's language; not part of what staff approve (plan_digest).
            "basis_translations": {text.language: text.basis for text in hold.translations.all()},
            "until": max(candidate.kept_until(today) for candidate in applicable).isoformat(),
        }
        if not whole:
            entry.update(kept_from=hold.kept_from(today).isoformat(), dated_by=hold.dated_by)
        held.append(entry)
    return held


def pseudonyms_kept(source: SourceSystem, work: list[CategoryWork], today=None) -> list[dict]:
    """For each category the erasure plan `work` anonymises with fields replaced by a keyed hash, the legal hold on
    the codes (pseudonyms_only) that keeps them on `today`: {"category", "fields", "ground", "basis",
    "basis_translations", "until"}, the one that keeps them longest. A keyed hash is a pseudonym, not erasure
    (Recital 26): we could match it to the subject again, so it is their data kept, which needs an Art. 17(3)
    ground the letter can state. Raises SourceError, naming the fields, where no hold gives one."""
    today = today or timezone.localdate()
    holds = list(LegalHold.objects.filter(source=source, until__gte=today, pseudonyms_only=True).prefetch_related("translations"))
    kept, unheld = [], []
    for item in work:
        hashed = sorted(name for name, rule in item.anonymise.items() if rule.erase_strategy == EraseStrategy.HASH)
        if not hashed:
            continue
        applicable = [hold for hold in holds if hold.category_id in (None, item.category.id)]
        if not applicable:
            unheld += [f"{item.category.slug}.{name}" for name in hashed]
            continue
        hold = max(applicable, key=lambda hold: hold.until)
        kept.append({
            "category": item.category.slug,
            "fields": hashed,
            "ground": hold.ground,
            "basis": hold.basis,
            # For the letter in the subject's language; not part of what staff approve (plan_digest).
            "basis_translations": {text.language: text.basis for text in hold.translations.all()},
            "until": hold.until.isoformat(),
        })
    if unheld:
        raise SourceError(
            f"{source.slug}: erasure would replace {', '.join(unheld)} with a keyed hash, which can be matched to the subject "
            "again: their data, kept. Add a legal hold on the codes giving its Art. 17(3) ground, or have erasure empty or "
            "replace these fields with a fixed text."
        )
    return kept


def holds_computed_on(action: SourceAction) -> datetime.date | None:
    """The day an action's legal holds are read for: its dry run's (None before one: today), so that an
    execution approved on a later day keeps exactly the records the dry run kept (a rolling hold's first
    day moves daily) and is not refused as changed since. A dry run started again reads them anew."""
    return timezone.localdate(action.dry_run_at) if action.dry_run_at else None


def build_plan(action: SourceAction) -> tuple[ActionPlan, list[dict]]:
    """The connector's plan for the action, and the categories erasure keeps under a legal hold
    (as they were on the day of its dry run, see holds_computed_on; today before one).

    Raises SourceError when the inventory cannot carry the action out (or not lawfully: an erasure that would
    write keyed hashes with no legal hold on the codes, pseudonyms_kept), so the dry run says what to fix instead
    of reporting a change it would not make; so does the execution of one approved before the inventory changed.
    """
    source = action.source
    identities = sorted(
        {
            *action.request.identities.searchable().filter(kind=source.identity_kind).values_list("value", flat=True),
            # The rectification, carried out first, may have corrected the identifier the rows are found by.
            *(selectors.corrected_identifiers(request=action.request, source=source) if action.kind != ActionKind.RECTIFY else []),
        }
    )
    holds_day = holds_computed_on(action)
    held = held_categories(source, holds_day) if action.kind == ActionKind.ERASE else []
    holds = {hold["category"]: hold for hold in held}
    changes = _typed_changes(action) if action.kind == ActionKind.RECTIFY else {}
    work = []
    for category in source.categories.prefetch_related("fields"):
        hold = holds.get(category.slug)
        if hold is not None and "kept_from" not in hold:
            continue  # kept whole
        if action.kind == ActionKind.ERASE:
            anonymise = {}
            if category.erase_method == EraseMethod.ANONYMISE:
                anonymise = {f.name: f for f in category.fields.all() if f.erase_strategy != EraseStrategy.KEEP}
                if not anonymise:
                    raise SourceError(f"{source.slug}: category {category.slug} is anonymised but no field has an erasure strategy")
            older_than = {}
            if hold is not None:  # a rolling hold: only the records dated before its first day
                older_than = {"dated_by": hold["dated_by"], "kept_from": datetime.date.fromisoformat(hold["kept_from"])}
            work.append(CategoryWork(category=category, anonymise=anonymise, **older_than))
        elif action.kind == ActionKind.RECTIFY and category.id in changes:
            work.append(CategoryWork(category=category, changes=changes[category.id]))
        elif action.kind in RESTRICTION_KINDS and category.restriction_flag:
            work.append(CategoryWork(category=category))
    if action.kind in RESTRICTION_KINDS and not work and not source.restriction_list:
        raise SourceError(f"{source.slug}: no restriction flag or restriction list is configured")
    restriction_list = source.restriction_list if action.kind in RESTRICTION_KINDS else ""
    plan = ActionPlan(kind=action.kind, identities=identities, categories=work, restriction_list=restriction_list)
    if action.kind == ActionKind.ERASE:
        plan.pseudonym_holds = pseudonyms_kept(source, work, holds_day)
    if action.kind == ActionKind.RECTIFY and action.result.get("changed_before_failing"):
        # The rows it already gave the corrected identifier are the subject's, not others' holding it (IdentifierHeld).
        correcting_identity = {item.category.slug for item in work if item.category.identity_field in item.changes}
        plan.corrected_before = {
            counts["category"]: counts["rows"] for counts in action.result["categories"] if counts["category"] in correcting_identity
        }
    return plan, held


def _typed_changes(action: SourceAction) -> dict:
    """{category id: {field: typed value}} of the request's corrected values in the action's source."""
    changes = {}
    corrected = action.request.rectification_changes.filter(category__source=action.source)
    for change in corrected.select_related("category").prefetch_related("category__fields"):
        rule = next((field for field in change.category.fields.all() if field.name == change.field), None)
        if rule is None:
            raise SourceError(f"{action.source.slug}: field {change.category.slug}.{change.field} is no longer in the inventory")
        try:
            changes.setdefault(change.category_id, {})[change.field] = typed_value(rule.type, change.value)
        except ValidationError as error:
            raise SourceError(f"{action.source.slug}: the corrected {change.field} no longer fits the field's type") from error
    return changes


# --- Dry run, approval, execution -------------------------------------------


def _still_there(locking: QuerySet, action: SourceAction) -> SourceAction:
    """`action`, read again through `locking`. Leaving a restriction out of its scope deletes it (_leave_out), as
    planning again does an action voided when who makes the request was corrected (plan_actions): a colleague's page,
    loaded before, still offers its buttons, and a click is refused as any other step."""
    locked = locking.filter(pk=action.pk).first()
    if locked is None:
        raise RequestError(action_gone())
    return locked


def action_gone() -> str:
    """Why a step on an action deleted since its page was loaded is refused (_still_there)."""
    return _(
        "This action no longer exists: it was left out of the restriction, or replaced when the actions were planned "
        "again after who makes the request was corrected."
    )


def _locked_action(action: SourceAction, actor: Actor) -> SourceAction:
    # The request's lock orders this step with planning and corrected values on the same request.
    PrivacyRequest.objects.select_for_update().get(pk=action.request_id)
    locked = _still_there(SourceAction.objects.select_for_update(of=("self",)).select_related("request", "source"), action)
    if actor.user is not None:
        roles.require_can_work(actor, locked.request)
    if locked.status == ActionStatus.CANCELLED:
        raise RequestError(cancelled_refusal(locked))
    if locked.kind != ActionKind.LIFT_RESTRICTION:
        _require_in_progress(locked.request)
    return locked


def _new_run(action: SourceAction) -> str:
    """A new token for the action's next task: only the task holding the current one may record an outcome,
    so a late task from an earlier dry run or execution cannot overwrite a newer one's (and a run still
    going stops at its next step: its heartbeat no longer matches). No worker has taken it yet."""
    action.run_token = secrets.token_hex(8)
    action.run_attempt, action.heartbeat_at, action.queued_at = 0, None, timezone.now()
    return action.run_token


RUN_FIELDS = ["run_token", "run_attempt", "heartbeat_at", "queued_at"]


def dry_run_start(*, action: SourceAction, actor: Actor) -> SourceAction:
    with transaction.atomic():
        locked = _locked_action(action, actor)
        again = searched_too_early(locked, verified_kinds(locked.request))
        if locked.status not in DRY_RUN_FROM and not again:
            raise RequestError(_("A dry run cannot start while the action is %(status)s.") % {"status": in_sentence(locked.get_status_display())})
        if locked.kind == ActionKind.LIFT_RESTRICTION and locked.request.personal_data_purged_at is not None:
            raise RequestError(lift_refused_now(locked))
        if again:
            # Its recipients were told nothing changed there, or not told: they hear of this run once it is done.
            locked.request.recipient_notices.filter(
                recipient__source_id=locked.source_id, status__in=(NoticeStatus.SENT, NoticeStatus.NOT_NEEDED)
            ).update(status=NoticeStatus.PENDING, queued_at=None)
        _void_dry_run(locked)
        token = _new_run(locked)
        locked.status, locked.error, locked.dry_run_by = ActionStatus.DRY_RUNNING, "", actor.user
        locked.save(update_fields=["status", "error", "dry_run_by", *RUN_FIELDS])
        # Who started it is what four eyes compare with who approves: the trail keeps it.
        record_event(locked.request, "source_action_dry_run_started", actor=actor, data=action_summary(locked))
        tasks.queue_after_commit(tasks.run_source_action_dry_run, locked.id, token)
    return locked


def run_dry_run(*, action_id: int, token: str) -> None:
    """The dry-run task's work: count what the action would change, changing nothing.

    Raises ActionBusy while another run of the same dry run is alive (its heartbeat fresh)."""
    claim = _claim(action_id, token, ActionStatus.DRY_RUNNING)
    if claim is None:
        return  # a dry run started since, this one already finished, or it died too often (see requeue_dead_actions)
    ours = SourceAction.objects.filter(
        pk=action_id, status=ActionStatus.DRY_RUNNING, run_token=token, run_attempt=claim.run_attempt
    )
    with Heartbeat(ours, every=settings.SOURCE_ACTION_HEARTBEAT_INTERVAL_SECONDS, name=_heartbeat_name(action_id)) as heartbeat:
        try:
            _dry_run(ours, heartbeat)
        except TakenOver:
            logger.warning("source action %s: dry run attempt %s stopped, it is no longer this run's", action_id, claim.run_attempt)


def _dry_run(current: QuerySet, heartbeat: Heartbeat) -> None:
    """run_dry_run's work, once this run holds the dry run: `current` matches the action while it does."""
    action = current.select_related("request", "source").first()
    if action is None:
        return
    if not may_run_now(action):
        # Withdrawn or rejected while the task waited: the source is not read for a request that ended.
        current.update(status=ActionStatus.PLANNED, error=f"Not run: the request is {action.request.status} now.")
        return
    try:
        plan, held = build_plan(action)
        heartbeat.raise_if_lost()
        # Counted first: a rolling hold's date field missing from the records is said plainly here,
        # where the preview's SQL would only fail on the unknown column.
        rows_held = held_rows(action, plan.identities, held)
        heartbeat.raise_if_lost()
        preview = connector_for(action.source).preview(plan)
    except SourceError as error:
        current.update(status=ActionStatus.PLANNED, error=str(error)[:300])
        return
    except TakenOver:
        raise
    except Exception as error:
        # A bug, not the source's fault: say so on the action (never stuck "in progress") and let the task log it.
        current.update(status=ActionStatus.PLANNED, error=f"{action.source.slug}: unexpected {type(error).__name__}")
        raise
    current.update(
        status=ActionStatus.AWAITING_APPROVAL,
        dry_run={
            **preview, "held": held, "held_rows": rows_held, "identities": len(plan.identities), "plan": plan_digest(plan, held),
            # Kept for the letter: the execution runs this plan (same digest), whatever the inventory says later.
            "pseudonymised": pseudonymised_fields(plan), "pseudonym_holds": plan.pseudonym_holds, "kept_fields": kept_fields(plan),
        },
        dry_run_at=timezone.now(),
    )


def held_rows(action: SourceAction, identities: list[str], held: list[dict]) -> dict[str, int]:
    """How many of the subject's rows each held category keeps, read as an export reads them (under a
    rolling hold, those not dated before its first day): the letter and the certificate say data was
    kept, and the erasure refused for it, only where there was some."""
    if not held or not identities:
        return {}
    connector = connector_for(action.source)
    holds = {hold["category"]: hold for hold in held}
    counts = {}
    for category in action.source.categories.filter(slug__in=holds):
        hold = holds[category.slug]
        columns, rows = connector.stream(category, identities)
        if "kept_from" not in hold:
            counts[category.slug] = sum(1 for _row in rows)
            continue
        kept_from = datetime.date.fromisoformat(hold["kept_from"])
        dated = columns.index(hold["dated_by"]) if hold["dated_by"] in columns else None
        counts[category.slug] = sum(1 for row in rows if dated is None or not dated_before(row[dated], kept_from))
        if dated is None and counts[category.slug]:
            raise SourceError(
                f"{action.source.slug}: the records of category {category.slug} have no field {hold['dated_by']!r} for the legal hold to date them by"
            )
    return counts


def needs_another_approver(action: SourceAction, user) -> bool:
    """Four eyes (SOURCE_ACTION_FOUR_EYES): whoever started the dry run may not approve it."""
    return settings.SOURCE_ACTION_FOUR_EYES and action.dry_run_by_id is not None and action.dry_run_by_id == user.pk


def approve(*, action: SourceAction, actor: Actor) -> SourceAction:
    with transaction.atomic():
        locked = _locked_action(action, actor)
        if locked.status != ActionStatus.AWAITING_APPROVAL:
            raise RequestError(_("Only a finished dry run can be approved."))
        if needs_another_approver(locked, actor.user):
            raise RequestError(_("Another staff member must approve this dry run: you started it, and changes to source systems need two people."))
        locked.status, locked.approved_by, locked.approved_at = ActionStatus.APPROVED, actor.user, timezone.now()
        locked.save(update_fields=["status", "approved_by", "approved_at"])
        record_event(locked.request, "source_action_approved", actor=actor, data=action_summary(locked, locked.dry_run))
    return locked


def execute(*, action: SourceAction, actor: Actor) -> SourceAction:
    """Queue the approved action, or retry a failed one (or one whose task was lost: still running
    past the task's time limit). Refused without approval, twice, or after the source changed."""
    with transaction.atomic():
        locked = _locked_action(action, actor)
        refusal = execution_refusal(locked)
        if refusal:
            raise RequestError(refusal)
        # A run a worker took and then lost may have committed in the source before it died: the new
        # run keeps `taken_at`, so it records a change it finds made as done (run_execution's handed_again).
        taken_then_lost = locked.status == ActionStatus.RUNNING and locked.taken_at is not None
        token = _new_run(locked)
        # What a lost run changed for good in an HTTP source stays for the new run to count.
        carried = locked.progress.get("changed") if taken_then_lost else None
        locked.status, locked.error, locked.progress = ActionStatus.RUNNING, "", {"changed": carried} if carried else {}
        locked.attempts += 1
        locked.started_at = timezone.now()  # set again when a worker takes it
        if not taken_then_lost:
            locked.taken_at = None
        locked.save(update_fields=["status", "error", "progress", "attempts", "started_at", "taken_at", *RUN_FIELDS])
        record_event(locked.request, "source_action_started", actor=actor, data={**action_summary(locked), "attempt": locked.attempts})
        tasks.queue_after_commit(tasks.execute_source_action, locked.id, token)
    return locked


def execution_refusal(action: SourceAction) -> str | None:
    """Why the action may not be executed (or retried) now, or None: `execute` refuses with it, under the row's
    lock, and the request page shows it where the Execute or Retry button would be, so that staff read why
    before they click rather than after.

    Reads the request's exports (prefetch them for many erasures: `copies_owed`) and, for a lifting, its notice
    (select it with the action) and one query (`lift_refused_now`).
    """
    if action.status == ActionStatus.DONE:
        return _("This action has already been carried out.")
    if action.status == ActionStatus.RUNNING and not run_lost(action):
        return _("This action is already being carried out.")
    if action.status == ActionStatus.STALE:
        return _("The source changed since the dry run: run the dry run again and approve it.")
    if action.status == ActionStatus.MANUAL:
        return _("The system owner carries out this action.")
    # Approved, failed (a retry), or running past the time limit (its task was lost).
    if action.status not in (ActionStatus.APPROVED, ActionStatus.FAILED, ActionStatus.RUNNING) or action.approved_at is None:
        return _("The action needs a dry run and an approval first.")
    if action.kind in ANSWERING_KINDS and (refusal := agents.authority_refusal(action.request)):
        return refusal  # nothing erased, rectified or restricted on the word of someone not shown to act for the subject
    if action.kind == ActionKind.LIFT_RESTRICTION:
        if timezone.localdate() < action.lift_not_before:
            return lift_too_early(action)
        refusal = lift_refused_now(action)
        if refusal:
            return refusal
    return copy_first_refusal(action)


def copy_first_refusal(action: SourceAction) -> str | None:
    """Why an erasure must wait for the copy the subject asked for of the same data, or None: erased first, the
    data would be missing from the copy, which would then say none was found. execute() and a manual source's
    owner confirming the erasure done (manual_action_done) both apply it."""
    # An erasure searching by no verified identifier (none of its source's kind is) erases nothing, so the copy
    # loses nothing; nor can any package search that source, for the same want: waiting for one would block the
    # request for good. The letter says the source could not be searched. Verifying an identifier of its kind
    # later sends the erasure back to a dry run (searched_too_early), and this rule applies to it then.
    if action.kind != ActionKind.ERASE or searched_nothing(action):
        return None
    uncopied = copies_owed(action.request, action.source)
    if not uncopied:
        return None
    return _("Compile the %(kind)s package first, with this system searched: the subject asked for a copy of this data too.") % {
        "kind": in_sentence(ExportKind(uncopied[0]).label)
    }


def lift_refused_now(action: SourceAction) -> str | None:
    """Why a planned lifting may not run (dry run, execution or a manual owner's confirmation) now, or None.

    Its request's personal data may have been purged since it was planned: with no identifier left it would
    search nothing and end done, the restriction still in place. And the same person's data may be restricted
    in that source for another of their requests too, which this lifting would end as well (a flag and a list
    entry per person, not per request): it waits until a lifting of each of those is due too.
    """
    if action.request.personal_data_purged_at is not None:
        return purged_before_lifting()
    if lift_notice_to_post(action):
        if cites_gdpr_articles(action.request.regime):
            return _(
                "The notice of this lifting cannot be emailed: the subject gave no email address, or their mail server "
                "refuses it. Send them the notice shown under Messages by post, then record it as posted here: the "
                "restriction may not be lifted before they are told (Art. 18(3)), and then only once the notice period "
                "has passed from the day it was posted."
            )
        return _(
            "The notice of this lifting cannot be emailed: the subject gave no email address, or their mail server "
            "refuses it. Send them the notice shown under Messages by post, then record it as posted here: the "
            "restriction may not be lifted before they are told, and then only once the notice period has passed "
            "from the day it was posted."
        )
    if lift_notice_on_its_way(action):
        if cites_gdpr_articles(action.request.regime):
            return _(
                "The notice of this lifting has not been emailed to the subject yet: the restriction may not be lifted "
                "before they are told (Art. 18(3)), and then only once the notice period has passed. It goes as soon as "
                "the mail server takes it; if their server refuses the address, the request page says so, and they must "
                "be told by post. If it cannot be sent at all, cancel this lifting and plan it again."
            )
        return _(
            "The notice of this lifting has not been emailed to the subject yet: the restriction may not be lifted "
            "before they are told, and then only once the notice period has passed. It goes as soon as "
            "the mail server takes it; if their server refuses the address, the request page says so, and they must "
            "be told by post. If it cannot be sent at all, cancel this lifting and plan it again."
        )
    others = _restrictions_in_force_elsewhere(action)
    if others:
        return _(
            "The same data is restricted for the subject's request %(references)s too, and no lifting of it is due yet: "
            "plan its lifting as well; this one may run once that one's date has come too."
        ) % {"references": ", ".join(others)}
    return None


def lift_notice_on_its_way(action: SourceAction) -> bool:
    """Whether the notice of the lifting `action` is still to be emailed (the mail server or the worker is down):
    the subject has an address their server has not refused, and the email has not gone. A subject with no
    address, or one refused, is told by post (lift_notice_to_post)."""
    notice, request = action.lift_notice, action.request
    return notice is not None and notice.emailed_at is None and not subject_reached_by_post(request)


def lift_notice_to_post(action: SourceAction) -> bool:
    """Whether the notice of the lifting `action` must still be posted: the subject cannot be emailed (no address, or
    their server refuses it, maybe only after the lifting was planned) and staff have not recorded the letter posted
    (lifting.record_notice_posted). Art. 18(3) asks that the subject be told before the restriction is lifted, not
    that we tried: an email refused did not tell them, and one that went before the address was refused may be the
    one refused, so the lifting waits for the letter rather than run on an untold subject."""
    return action.lift_notice is not None and action.lift_notice_posted_at is None and subject_reached_by_post(action.request)


def subject_reached_by_post(request: PrivacyRequest) -> bool:
    """Whether letters to the subject must go by post: whoever filed (the subject, or the agent acting for them) gave
    no email address, or their server refuses it."""
    return not request.correspondence_email or request.subject_email_rejected_at is not None


def _restrictions_in_force_elsewhere(action: SourceAction) -> list[str]:
    """The references of the subject's other requests (a verified identifier of the source's kind in common)
    whose restriction in the action's source is done, with no lifting of it due by today."""
    identities = action.request.identities.searchable().filter(kind=action.source.identity_kind).values("value")
    sharing = SubjectIdentity.objects.filter(kind=action.source.identity_kind, value__in=identities, verified_at__isnull=False)
    lifted_by_today = SourceAction.objects.filter(
        request=OuterRef("request"), source=OuterRef("source"), kind=ActionKind.LIFT_RESTRICTION,
        lift_not_before__lte=timezone.localdate(),
    ).exclude(status=ActionStatus.CANCELLED)  # its subject was told the restriction stays
    return list(
        SourceAction.objects.filter(
            source=action.source, kind=ActionKind.RESTRICT, status=ActionStatus.DONE, request__in=sharing.values("request")
        )
        .exclude(request=action.request)
        .exclude(Exists(lifted_by_today))
        .order_by("request__reference")
        .values_list("request__reference", flat=True)
    )


def purged_before_lifting() -> str:
    """Why a restriction of a purged request is not lifted here: its identifiers, which found the rows, are gone."""
    return _("The request's personal data has been deleted: lift this restriction in the source system itself.")


def lift_was_cancelled() -> str:
    """Why a cancelled lifting takes no step any more: the subject was told the restriction stays in force."""
    return _("This lifting was cancelled and the subject told the restriction stays in force: plan a new lifting to lift it.")


def lift_too_early(action: SourceAction) -> str:
    """Why a restriction may not be lifted yet: the subject's notice period has not ended (Art. 18(3))."""
    too_early = (
        _("The subject's notice period runs until %(day)s (Art. 18(3)): the restriction may not be lifted before.")
        if cites_gdpr_articles(action.request.regime)
        else _("The subject's notice period runs until %(day)s: the restriction may not be lifted before.")
    )
    return too_early % {"day": date_in_words(action.lift_not_before)}


def copies_owed(request: PrivacyRequest, source: SourceSystem) -> list[str]:
    """The packages (kinds) the request asks for that hold no search of `source` yet (none compiled, or the
    latest could not search it): its data may not be erased before (unless the erasure searches nobody either:
    execution_refusal)."""
    searched = set()
    for package in request.exports.all():
        if package.status in (ExportStatus.READY, ExportStatus.RELEASED) or package.released_at is not None:
            skipped = {item["source"] for item in package.manifest.get("sources_not_searched", [])}
            if source.slug not in skipped:
                searched.add(package.kind)
    rights = set(request.requested_rights)
    return [kind for right, kind in PACKAGE_FOR_RIGHT.items() if right in rights and kind not in searched]


def past_time_limit(action: SourceAction) -> bool:
    """Whether a running action's task has outlived the hard time limit: it was lost, and may be started again."""
    limit = datetime.timedelta(seconds=settings.SOURCE_ACTION_TIME_LIMIT)
    return action.started_at is not None and action.started_at < timezone.now() - limit


def heartbeat_fresh(action: SourceAction) -> bool:
    """Whether a worker is running the action's current dry run or execution: its heartbeat is not stale."""
    return action.heartbeat_at is not None and action.heartbeat_at >= stale_before(settings.SOURCE_ACTION_HEARTBEAT_STALE_SECONDS)


def run_lost(action: SourceAction) -> bool:
    """Whether staff may start a running execution again: its task outlived the time limit (lost with the
    broker, say) and no live worker holds it. A run whose worker died, or whose task was lost before a worker took
    it, is queued again by itself long before (requeue_dead_actions, requeue_lost_actions)."""
    return action.status == ActionStatus.RUNNING and past_time_limit(action) and not heartbeat_fresh(action)


def run_execution(*, action_id: int, token: str) -> str:
    """The execution task's work. Returns the action's status once it is done with it.

    Refused as stale when the rows or the plan (inventory, holds, corrected
    values) changed since the dry run: what runs is what was approved. Not
    carried out (failed) when the request is no longer in progress. Raises
    ActionBusy while another run of the same execution is alive.

    A run that takes over from a dead one (a redelivered task, or one queued
    again by requeue_dead_actions) was handed the execution again: on a SQL
    source the dead run's transaction rolled back, so it carries on; on an
    HTTP source changed part-way it stops as stale, counting what the dead run
    changed; a change found already made as approved is recorded as done.
    """
    claim = _claim(action_id, token, ActionStatus.RUNNING)
    if claim is None:
        # Finished, superseded, or given up after dying too often (requeue_dead_actions fails it).
        return SourceAction.objects.values_list("status", flat=True).get(pk=action_id)
    ours = SourceAction.objects.filter(pk=action_id, status=ActionStatus.RUNNING, run_token=token, run_attempt=claim.run_attempt)
    with Heartbeat(ours, every=settings.SOURCE_ACTION_HEARTBEAT_INTERVAL_SECONDS, name=_heartbeat_name(action_id)) as heartbeat:
        try:
            return _execute(ours, claim, heartbeat)
        except TakenOver:
            # Another run holds it now (or staff started it anew): that one records the outcome. On a SQL source
            # this run's transaction rolled back; on an HTTP source it stopped before its next write.
            logger.warning("source action %s: attempt %s stopped, it is no longer this run's", action_id, claim.run_attempt)
            return SourceAction.objects.values_list("status", flat=True).get(pk=action_id)


def _execute(current: QuerySet, claim: "Claim", heartbeat: Heartbeat) -> str:
    """run_execution's work, once this run holds the execution: `current` matches the action while it does."""
    action = current.select_related("request", "source").first()
    if action is None:
        raise TakenOver
    handed_again, carried = claim.handed_again, claim.carried
    if not may_run_now(action):
        # Withdrawn or rejected while the task waited for a worker: nobody wants it done any more. Unless a
        # run that died after the source's commit did it already: then the trail must say it was done.
        made = _made_before_dying(action) if handed_again else None
        if made is not None:
            return _finish(action, ActionStatus.DONE, result=made)
        stopped = "Stopped part-way" if carried else "Not carried out"
        return _finish(action, ActionStatus.FAILED, error=f"{stopped}: the request is {action.request.status} now.",
                       result=_changes(carried))

    def on_progress(progress: dict) -> None:
        heartbeat.raise_if_lost()
        if carried or "changed" in progress:  # what is changed for good, by this run and the dead ones before it
            progress = {**progress, "changed": _added(carried, progress.get("changed", []))}
        if not current.update(progress=progress):
            raise TakenOver  # stop before the next step: the run that holds it now does the rest

    try:
        plan, held = build_plan(action)
        if plan_digest(plan, held) != action.dry_run.get("plan"):
            raise StaleDryRun(f"{action.source.slug}: the inventory, legal holds or corrected values changed since the dry run")
        connector = connector_for(action.source)
        heartbeat.raise_if_lost()
        try:
            result = connector.apply(plan, action.dry_run.get("fingerprint", ""), on_progress)
        except StaleDryRun:
            if not (handed_again and _approved_change_in_place(connector, plan, action)):
                raise
            # A run that died between the source's commit and recording it already put the source where
            # the approved plan leads: the approved change is recorded, so the letter states it and the
            # recipients are told. (On a first run, rows that merely vanished, say a source answering 404,
            # are stale, for staff to look at.) The dry run's counts are what every run together changed.
            result = _already_in_place(action)
    except StaleDryRun as error:
        # An HTTP source a dead run changed part-way: what it changed stays counted, for the run staff approve next.
        return _finish(action, ActionStatus.STALE, error=str(error), result=_changes(carried))
    except SourceError as error:
        # An HTTP source may have changed some records before failing: the result keeps them.
        return _finish(action, ActionStatus.FAILED, error=str(error), result=_changes(carried, error))
    except TakenOver:
        raise
    except Exception as error:
        # A bug or a time limit: fail visibly (a retry is possible) and let the task log it.
        _finish(action, ActionStatus.FAILED, error=f"{action.source.slug}: unexpected {type(error).__name__}",
                result=_changes(carried, error))
        raise
    return _finish(action, ActionStatus.DONE, result={**result, "held": held})


def _changes(carried: list[dict], error: Exception | None = None) -> dict | None:
    """The result of a run that did not finish: what it changed before failing (an HTTP source has no
    rollback), with what dead runs of the same execution changed before it; None when nothing."""
    failed_after = (getattr(error, "changed_before_failing", None) or {}).get("categories", []) if error else []
    categories = _added(carried, failed_after)
    return {"categories": categories} if categories else None


def _added(first: list[dict], then: list[dict]) -> list[dict]:
    """Two runs' changes to the same records' categories, added up: {"category", "rows", "fields", "deleted"}."""
    totals: dict[str, dict] = {}
    for counts in [*first, *then]:
        total = totals.setdefault(counts["category"], {"category": counts["category"], "rows": 0, "fields": 0, "deleted": False})
        total["rows"] += counts.get("rows", 0)
        total["fields"] += counts.get("fields", 0)
        total["deleted"] = total["deleted"] or counts.get("deleted", False)
    return list(totals.values())


# --- Runs whose worker died -------------------------------------------------


class ActionBusy(Exception):
    """Another run holds the action's dry run or execution and its heartbeat is fresh: try again later."""


@dataclasses.dataclass
class Claim:
    """This worker's hold on the action's current run."""

    run_attempt: int
    # An execution a worker took before (it died, or its task was lost and staff started it again):
    # that worker may have changed the source.
    handed_again: bool = False
    # What dead runs of this execution changed for good in an HTTP source (their recorded progress).
    carried: list[dict] = dataclasses.field(default_factory=list)


def _heartbeat_name(action_id: int) -> str:
    return f"source-action-{action_id}-heartbeat"


def _claim(action_id: int, token: str, status: str) -> Claim | None:
    """Take the action's current dry run or execution (`status`, `token`) for this worker; None if it is
    not ours to run. Raises ActionBusy while a live run holds it: it is never taken over.

    A run not taken yet is taken; a dead one (its heartbeat stale) is taken over only below
    ATTEMPTS_BEFORE_GIVING_UP, past which requeue_dead_actions fails the action.
    """
    with transaction.atomic():
        row = SourceAction.objects.select_for_update().filter(pk=action_id, status=status, run_token=token).first()
        if row is None:
            return None
        if row.heartbeat_at is not None:
            if heartbeat_fresh(row):
                raise ActionBusy(action_id)
            if row.run_attempt >= ATTEMPTS_BEFORE_GIVING_UP:
                return None
            logger.warning("source action %s: taking over from attempt %s, whose worker died", action_id, row.run_attempt)
        now = timezone.now()
        taken = {"run_attempt": row.run_attempt + 1, "heartbeat_at": now}
        if status == ActionStatus.RUNNING:
            taken |= {"started_at": now, "taken_at": now}
        SourceAction.objects.filter(pk=action_id).update(**taken)
    return Claim(
        run_attempt=row.run_attempt + 1, handed_again=row.taken_at is not None, carried=row.progress.get("changed", [])
    )


def requeue_dead_actions(*, now: datetime.datetime | None = None) -> int:
    """Queue again the dry runs and executions whose run died (worker killed, out of memory, machine gone);
    returns how many. Runs every minute.

    Dead means working with a heartbeat older than SOURCE_ACTION_HEARTBEAT_STALE_SECONDS: a live run's
    timer stamps it every SOURCE_ACTION_HEARTBEAT_INTERVAL_SECONDS, so only a run whose process is gone
    goes stale (the broker would hand its task out again only after the visibility timeout, hours away).
    Queued once per death, as exports are: not again while the task queued since the run's last beat
    waits for a worker, unless that task is lost too (not taken within SOURCE_ACTION_TIME_LIMIT). The
    run it starts takes over (_claim) with the same token, so it does what a redelivered task does.

    A run that died on its ATTEMPTS_BEFORE_GIVING_UP-th attempt is failed instead, saying why (a dry
    run goes back to planned). A dead dry run of a request withdrawn or rejected since is ended; a dead
    execution of one is queued again all the same, for its run to record the change as done if the dead
    run made it, or as not carried out (never left running, never half-recorded).
    """
    now = now or timezone.now()
    dead = SourceAction.objects.filter(
        status__in=WORKING, heartbeat_at__lt=stale_before(settings.SOURCE_ACTION_HEARTBEAT_STALE_SECONDS, now)
    )
    lost_after = datetime.timedelta(seconds=settings.SOURCE_ACTION_TIME_LIMIT)
    to_queue = set(dead.filter(not_queued_since_death(now, lost_after)).values_list("id", flat=True))
    queued = 0
    for action in dead.select_related("request", "source"):
        dry_run = action.status == ActionStatus.DRY_RUNNING
        if dry_run and not may_run_now(action):
            _end_dry_run(action, f"Not run: the request is {action.request.status} now.")
        elif action.run_attempt >= ATTEMPTS_BEFORE_GIVING_UP:
            if dry_run:
                _end_dry_run(action, f"The worker running the dry run stopped {action.run_attempt} times (out of memory, "
                                     "or killed): check the source, then run the dry run again.")
            else:
                _finish(action, ActionStatus.FAILED, result=_changes(action.progress.get("changed", [])),
                        error=f"The worker carrying it out stopped {action.run_attempt} times (out of memory, or killed): "
                              "check the source, then retry.")
        elif action.id in to_queue:
            _queue_again(action)
            queued += 1
    if queued:
        logger.warning("queued again %d source action run(s) whose worker died", queued)
    return queued


def requeue_lost_actions(*, now: datetime.datetime | None = None) -> int:
    """Queue again the dry runs and executions whose task the broker lost before a worker took it; returns how many.

    Lost means working, never taken (no heartbeat: _claim stamps one when a worker takes the run) and
    queued longer ago than SOURCE_ACTION_LOST_AFTER: its publish failed while Redis was down, or a Redis
    restart dropped it. Left alone, it would stay "running" with nobody to notice; staff could only retry
    it past the time limit. A run a worker took and that died is requeue_dead_actions' to find. Queued
    with the run's token: if the first task turns up after all, only one of the two takes the run (_claim),
    and the other finds it held, then finished. A dry run or an execution of a request withdrawn or rejected
    since is queued all the same: its run records why it was not carried out.
    """
    now = now or timezone.now()
    not_queued_lately = Q(queued_at__lt=now - settings.SOURCE_ACTION_LOST_AFTER) | Q(queued_at__isnull=True)
    lost = list(SourceAction.objects.filter(not_queued_lately, status__in=WORKING, heartbeat_at__isnull=True))
    for action in lost:
        _queue_again(action)
    if lost:
        logger.warning("queued again %d source action run(s) whose task was lost before a worker took it", len(lost))
    return len(lost)


def _end_dry_run(action: SourceAction, error: str) -> None:
    """A dead dry run not to be started again: back to planned, saying why (it changed nothing)."""
    SourceAction.objects.filter(
        pk=action.pk, status=ActionStatus.DRY_RUNNING, run_token=action.run_token, run_attempt=action.run_attempt
    ).update(status=ActionStatus.PLANNED, error=error[:300], progress={})


def _queue_again(action: SourceAction) -> None:
    """Queue the run's task again, with its token: the run it starts takes it, or takes it over from a dead run (_claim)."""
    task = tasks.run_source_action_dry_run if action.status == ActionStatus.DRY_RUNNING else tasks.execute_source_action
    SourceAction.objects.filter(pk=action.pk).update(queued_at=timezone.now())
    tasks.queue_after_commit(task, action.id, action.run_token)


def _made_before_dying(action: SourceAction) -> dict | None:
    """The result to record when the approved plan, unchanged, is found already carried out; else None.
    Any doubt (the plan changed since approval, the source cannot tell) is None: not recorded as done."""
    try:
        plan, held = build_plan(action)
        if plan_digest(plan, held) != action.dry_run.get("plan"):
            return None
        if not _approved_change_in_place(connector_for(action.source), plan, action):
            return None
    except Exception as error:
        # A SourceError's message names the source and the failure, never a value; another error's message, or a
        # traceback (the driver's error chained), may quote the subject's data.
        reason = str(error) if isinstance(error, SourceError) else type(error).__name__
        logger.warning("could not check source action %s against its source: %s", action.pk, reason)
        return None
    return {**_already_in_place(action), "held": held}


def _already_in_place(action: SourceAction) -> dict:
    """The result of an approved change found made by an earlier run: what its dry run counted."""
    return {"categories": action.dry_run.get("categories", []), "list_entries": action.dry_run.get("list_entries", 0), "already_in_place": True}


def _approved_change_in_place(connector, plan, action: SourceAction) -> bool:
    """Whether the source, which no longer matches the dry run, now holds nothing the plan would change
    although the dry run found something: the change is done. A source that cannot tell is not trusted."""
    try:
        now = connector.preview(plan)
    except SourceError:
        return False

    def to_change(preview: dict) -> int:  # fields to set (every field of a row to delete), and list entries
        return sum(category.get("fields", 0) for category in preview.get("categories", [])) + (preview.get("list_entries") or 0)

    return to_change(action.dry_run) > 0 and to_change(now) == 0


def _finish(action: SourceAction, status: str, *, error: str = "", result: dict | None = None) -> str:
    this_run = result or {}
    result = _with_earlier_changes(action.result, this_run, done=status == ActionStatus.DONE)
    with transaction.atomic():
        # Locked: a withdrawal committing now settles the notices either in its own transaction, which then
        # sees this action finished, or here, seeing the request closed (lifecycle.transition).
        request_status = PrivacyRequest.objects.select_for_update().values_list("status", flat=True).get(pk=action.request_id)
        updated = SourceAction.objects.filter(
            pk=action.pk, status=ActionStatus.RUNNING, run_token=action.run_token, run_attempt=action.run_attempt
        ).update(status=status, error=error[:300], result=result, finished_at=timezone.now())
        if not updated:
            return SourceAction.objects.values_list("status", flat=True).get(pk=action.pk)
        event = {ActionStatus.DONE: "source_action_done", ActionStatus.FAILED: "source_action_failed"}.get(status, "source_action_stale")
        # The trail counts what this run did; the result, what all runs did (see _with_earlier_changes).
        data = action_summary(action, this_run) | ({"error": error[:300]} if error else {})
        action.status = status  # as the row now is
        if done_without_searching(action):
            # Its zero counts are no "nothing found": the timeline names the kind of identifier it lacked (staff_tags.event_title).
            data["not_searched"] = action.source.identity_kind
        record_event(action.request, event, actor=Actor.system(), data=data)
        if status == ActionStatus.DONE or request_status in CLOSED_STATUSES:
            # A run of a closed request that failed is never retried: its source's notices are due now too.
            queue_due_notices(action.request)
    return status


def _with_earlier_changes(earlier: dict, result: dict, *, done: bool) -> dict:
    """`result`, with what earlier runs changed before failing part-way (an HTTP source has no
    rollback): a retry counts only what was left, and the letter and certificate must count it all.

    Fields add up. Rows add up while the action is unfinished; in the final result only deleted ones
    do, because the retry read, and counted, the records patched before (with nothing left to change).
    A patched record the retry no longer finds (its identifier was the field changed) or no longer
    reads (a hold since) is why patched rows are at least the earlier count, not lost.
    """
    merged = result
    if earlier.get("changed_before_failing"):
        totals = {counts["category"]: dict(counts) for counts in result.get("categories", [])}
        for counts in earlier["categories"]:
            total = totals.setdefault(counts["category"], {"category": counts["category"], "rows": 0, "fields": 0})
            total["fields"] += counts["fields"]
            if not done or counts.get("deleted"):
                total["rows"] += counts["rows"]
            else:
                total["rows"] = max(total["rows"], counts["rows"])
            total["deleted"] = total.get("deleted") or counts.get("deleted", False)
        merged = {**result, "categories": list(totals.values())}
    if not done and merged.get("categories"):
        merged = {**merged, "changed_before_failing": True}  # for the next run to add
    return merged


def manual_action_done(*, action: SourceAction, actor: Actor, rows: int) -> SourceAction:
    """The owner of a manual source confirms they made the change, and how many rows it touched."""
    if not roles.is_owner_or_dpo(actor.user, action.source.owner_id):
        raise roles.NotAllowed(_("Only the system owner or the DPO may confirm this action."))
    with transaction.atomic():
        # The request first, then the action, as every other step takes them (_locked_action, lifting.cancel_lift,
        # plan_actions): the action first, with its request joined, deadlocked against a cancellation or a new plan.
        PrivacyRequest.objects.select_for_update().get(pk=action.request_id)
        locked = _still_there(SourceAction.objects.select_for_update(of=("self",)).select_related("request", "source"), action)
        if locked.kind != ActionKind.LIFT_RESTRICTION:
            _require_open(locked.request)
        if locked.status == ActionStatus.CANCELLED:
            raise RequestError(cancelled_refusal(locked))
        if locked.status != ActionStatus.MANUAL:
            raise RequestError(_("This action has already been confirmed."))
        if locked.kind == ActionKind.LIFT_RESTRICTION:
            if timezone.localdate() < locked.lift_not_before:
                raise RequestError(lift_too_early(locked))
            refusal = lift_refused_now(locked)
            if refusal:
                raise RequestError(refusal)
        refusal = copy_first_refusal(locked) or (locked.kind in ANSWERING_KINDS and agents.authority_refusal(locked.request))
        if refusal:
            raise RequestError(refusal)
        locked.status, locked.done_by, locked.finished_at = ActionStatus.DONE, actor.user, timezone.now()
        locked.result = {"categories": [], "rows": rows, "manual": True, "held": locked.dry_run.get("held", [])}
        locked.save(update_fields=["status", "done_by", "finished_at", "result"])
        record_event(locked.request, "source_action_done", actor=actor, data=action_summary(locked, locked.result))
        queue_due_notices(locked.request)
    return locked


def action_summary(action: SourceAction, counts: dict | None = None) -> dict:
    """What the audit trail keeps of an action: where, what kind, how much. Never values."""
    summary = {"action": str(action.public_id), "source": action.source.slug, "kind": action.kind}
    if counts:
        summary["categories"] = counts.get("categories", [])
        for key in ("held", "list_entries", "rows"):
            if key in counts:
                summary[key] = counts[key]
    return summary


# --- Art. 19: telling the recipients ---------------------------------------


def queue_due_notices(request: PrivacyRequest) -> None:
    """Send the notices whose source has all its actions done. Call inside the transaction that finished one.

    Where nothing changed in the source (every category held, no data found,
    nothing left after an erasure) there is nothing to tell its recipients; a
    notice reopened for a later action that changed nothing is as it was: sent.
    So for a request closed (withdrawn, rejected) before its actions ran: each
    notice is settled once no execution is under way in its source, sent where
    an action there was done and changed data, not needed where none did.
    """
    unfinished_sources = notices.unfinished_actions(request.id).values("source_id")
    due = request.recipient_notices.filter(status=NoticeStatus.PENDING).exclude(recipient__source_id__in=unfinished_sources)
    # Not a notice being delivered: deliver() holds its row while it sends, then appends to the audit trail, whose
    # head the caller's transaction may hold already (a transition, a finished action). Waiting for it could
    # deadlock, and would hold every audited write meanwhile; a notice being delivered settles itself.
    for notice in due.select_related("request", "recipient").select_for_update(skip_locked=True, of=("self",)):
        if not notices.changes_to_tell(notice) and not notices.limit_to_tell(notice):
            if notices.changed_before_stopping(notice):
                # Only on a closed request (an open one retries the run first): rows did change, so "not needed"
                # would be untrue, and a notice tells only what finished actions changed (changes_to_tell).
                continue
            told_before = notice.sent_at is not None
            RecipientNotice.objects.filter(pk=notice.pk).update(status=NoticeStatus.SENT if told_before else NoticeStatus.NOT_NEEDED)
            continue
        notices.queue_delivery(notice.id)


# --- Completion -------------------------------------------------------------


def prefetch_for_completion(requests: list[PrivacyRequest]) -> None:
    """Load what completion_blockers and certificate.nothing_corrected read, one query per relation
    however many `requests`: the bulk completion's preview checks hundreds at once. The rules read
    each relation whole (`.all()`), which a prefetch serves; a filter on a related manager would not.
    """
    prefetch_related_objects(
        requests,
        "exports",
        "identities",
        Prefetch("source_actions", queryset=SourceAction.objects.select_related("source")),
        Prefetch("rectification_changes", queryset=RectificationChange.objects.select_related("category__source")),
        Prefetch("recipient_notices", queryset=RecipientNotice.objects.select_related("recipient")),
        Prefetch("rights__covered_purposes", queryset=CoveredPurpose.objects.select_related("purpose")),
    )


def answered_already(request: PrivacyRequest, refused: set[str]) -> list[str]:
    """Why some of the `refused` rights cannot be refused: they were answered, in part at least, and a letter
    refusing them would deny what was done. Their package was released to the subject, or their action was
    carried out, is under way, or stopped part-way having changed rows in a source (one only planned, or waiting
    for its approval, never runs once the request is closed: may_run_now; one done without searching its source
    changed nothing there, and answers nothing, as does a rectification that matched nothing), or the subject was put on a suppression list for that right (a
    list it covers, applied). Empty when none was. Reads what prefetch_for_completion loads."""
    reasons = []
    released = {package.kind for package in request.exports.all() if package.released_at is not None}
    for right in (right for right in RequestType.values if right in refused):
        label = RIGHTS_THE_SUBJECT_ASKS[right]
        if right in PACKAGE_FOR_RIGHT and PACKAGE_FOR_RIGHT[right] in released:
            reasons.append(_("“%(right)s” cannot be refused: its data package was released to the subject.") % {"right": label})
        for action in request.source_actions.all():
            # A run that stopped part-way (failed, or the source changed since its dry run) may have changed rows
            # already: an HTTP source has no rollback.
            carried_out = action.status == ActionStatus.DONE and not done_without_searching(action)
            if action.kind == ActionKind.RECTIFY and not action.changed_anything():
                # A correction that matched nothing corrected nothing: refusing it is how completion lets such a
                # rectification be closed (nothing_corrected), so it must not stand in the way.
                carried_out = False
            ran = carried_out or action.status == ActionStatus.RUNNING or action.changed_anything()
            if action.kind == ACTION_FOR_RIGHT.get(right) and ran:
                reasons.append(
                    _("“%(right)s” cannot be refused: %(kind)s in %(source)s: %(status)s.")
                    % {
                        "right": label, "kind": action.get_kind_display(), "source": action.source.name,
                        "status": in_sentence(action.get_status_display()),
                    }
                )
    for asked in request.rights.all():
        applied = [covered.purpose.name for covered in asked.covered_purposes.all() if covered.applied_at is not None]
        if asked.right in refused and applied:
            reasons.append(
                _("“%(right)s” cannot be refused: the subject was put on these suppression lists for it: %(purposes)s.")
                % {"right": asked.right_for_staff(), "purposes": ", ".join(applied)}
            )
    return reasons


# The grounds of Art. 17(3) that keep data only "to the extent that" a legal duty, or a legal claim, needs it: the data
# inventory's legal holds say how far that is, and each source's dry run which of the subject's data they keep there.
RETENTION_GROUNDS = frozenset({RejectionGround.LEGAL_OBLIGATION, RejectionGround.LEGAL_CLAIMS})
# An erasure's dry run stands for what it would do now in these statuses only: planned, dry-running, failed or stale,
# it has none that does.
DRY_RUN_STANDS = (ActionStatus.AWAITING_APPROVAL, ActionStatus.APPROVED)


def beyond_the_holds(request: PrivacyRequest) -> list[str]:
    """Why the erasure's dry runs do not show that the legal holds keep all the subject's data it would touch: it is
    not planned; a source's erasure has no dry run that stands (DRY_RUN_STANDS); a dry run found rows no hold keeps
    (their erasure is owed: a hold keeping recent call records keeps none of the older ones); a manual source has a
    category under no hold (only its owner can tell what the subject has there, and erases it); or no dry run found
    any of the subject's data kept, so that no law or claim keeps anything. Empty when every erasure keeps all it
    found. An erasure done without searching its source (no verified identifier of its kind) found nothing: it
    stands in no way. One carried out is answered_already's. Reads request.source_actions.all()."""
    erasures = [action for action in request.source_actions.all() if action.kind == ActionKind.ERASE]
    if not erasures:
        return [_("The erasure has not been planned in the source systems: plan it, and run its dry run in each.")]
    reasons, kept = [], False
    for action in erasures:
        source = action.source.name
        if action.status == ActionStatus.MANUAL:
            categories = {category.slug for category in action.source.categories.all()}
            held_whole = {hold["category"] for hold in action.dry_run.get("held", []) if "kept_from" not in hold}
            if categories - held_whole:
                reasons.append(
                    _("%(source)s is a manual system with data no legal hold keeps: its owner erases the subject's there.")
                    % {"source": source}
                )
            kept = kept or bool(categories & held_whole)
        elif action.status in DRY_RUN_STANDS:
            erasable = sum(counts["rows"] for counts in action.dry_run.get("categories", []))
            if erasable:
                reasons.append(
                    ngettext(
                        "The dry run in %(source)s found %(rows)s row that no legal hold keeps.",
                        "The dry run in %(source)s found %(rows)s rows that no legal hold keeps.",
                        erasable,
                    ) % {"source": source, "rows": erasable}
                )
            kept = kept or any(action.dry_run.get("held_rows", {}).values())
        elif action.status != ActionStatus.DONE:
            reasons.append(
                _("The erasure in %(source)s has no dry run that stands (%(status)s): run it.")
                % {"source": source, "status": in_sentence(action.get_status_display())}
            )
    if not reasons and not kept:
        reasons.append(_("No dry run found any of the subject's data kept under a legal hold: there is nothing to keep."))
    return reasons


def retention_refusal(request: PrivacyRequest, ground: str, *, whole_request: bool) -> str | None:
    """Why the erasure the request asks cannot be refused on `ground`, one of RETENTION_GROUNDS, by rejecting the
    request (`whole_request`) or refusing that right at completion: Art. 17(3) keeps data only as far as the law or
    the claim needs it, and beyond_the_holds finds data it does not keep, or that nobody looked. What the holds keep
    is kept by carrying the erasure out: the completion letter says what was kept and why (certificate.not_granted_in_full).
    None for another ground, or when the holds keep everything the erasure found."""
    if ground not in RETENTION_GROUNDS:
        return None
    reasons = beyond_the_holds(request)
    if not reasons:
        return None
    label = label_in_letter(RejectionGround(ground).label, request.regime)
    if whole_request:
        refusal = _(
            "“%(ground)s” refuses an erasure only as far as the law or a claim needs the data kept, so the dry runs must "
            "show that the legal holds keep all of it: %(reasons)s Where they keep only part of it, complete the request "
            "instead and carry out the erasure: its letter tells the subject what was kept and why."
        )
    else:
        refusal = _(
            "“%(ground)s” refuses “%(right)s” only as far as the law or a claim needs the data kept, so the dry runs must "
            "show that the legal holds keep all of it: %(reasons)s Where they keep only part of it, grant this right and "
            "carry out the erasure: the completion letter tells the subject what was kept and why."
        )
    return refusal % {"ground": label, "right": RIGHTS_THE_SUBJECT_ASKS[RequestType.ERASURE], "reasons": " ".join(reasons)}


def _suppression_blockers(asked: RequestedRight, kinds_usable: set[str]) -> list[str]:
    """Why an objection, a consent withdrawal or a limit on use granted is not honoured yet: it covers no suppression
    list (staff have not read what the subject named), or the subject is not on a list it covers and staff recorded
    no reason why they cannot be. Honouring it means that processing stops for this person, and the lists are how
    the company's systems learn it: a right applied to one list of two is not granted (Art. 21(3): an objection to
    direct marketing always stops it). `kinds_usable`: suppression.usable_kinds."""
    label = asked.right_for_staff()
    covers = list(asked.covered_purposes.all())
    if not covers:
        named = "; ".join(
            words for words in (_("direct marketing") if asked.direct_marketing else "", asked.objection_processing, asked.consent_withdrawn) if words
        )
        blocker = (
            _("“%(right)s” has not been applied: choose the suppression lists of what the subject named (%(named)s) and "
              "add the subject to them.") % {"right": label, "named": named}
            if named
            else _("“%(right)s” has not been applied: choose the suppression lists it covers and add the subject to them.") % {"right": label}
        )
        if not asked.direct_marketing:  # refusing that is no option (Art. 21(3)): _refuse_rights says so
            blocker = f"{blocker} {_('Or refuse this right with your reasons.')}"
        return [blocker]
    blockers = []
    verification_needed = verified_only(asked)
    for purpose in (cover.purpose for cover in covers if cover.applied_at is None and not cover.not_applied_reason):
        why = missing_identifier(
            purpose, kinds_usable, regime=asked.request.regime, reason_allowed=not must_be_applied(asked),
            verification_needed=verification_needed,
        ) or (
            _("an identifier of its kind is verified now: add them to it.")
            if verification_needed
            else _("the subject gave an identifier of its kind: add them to it.")
        )
        blockers.append(
            _("“%(right)s”: the subject is not on the %(purpose)s list yet: %(why)s") % {"right": label, "purpose": purpose.name, "why": why}
        )
    return blockers


def nothing_corrected_blocker(request: PrivacyRequest) -> str:
    """What completion says of a rectification granted that corrected nothing (certificate.nothing_corrected): a
    request answered as granted must have been acted on, and not acting is a refusal, whose reasons the subject is
    owed (Art. 12(4)) and the DPO must be able to show. So either a correction is carried out and recorded in a
    source system (a manual one's owner confirms it), or the right is refused with its ground and reasons: the
    completion form refuses one right of several, Reject the only one asked."""
    if len(request.requested_rights) > 1:
        return _(
            "“%(right)s”: no data has been corrected. Enter the corrected values under “Actions in source systems” and "
            "carry out the correction (in a manual system, its owner confirms it), or refuse this right with your "
            "reasons: “%(ground)s” if you checked the data and it is right, “%(other)s” if we do not hold it."
        ) % {
            "right": RIGHTS_THE_SUBJECT_ASKS[RequestType.RECTIFICATION], "ground": RejectionGround.DATA_ACCURATE.label,
            "other": RejectionGround.OTHER.label,
        }
    return _(
        "No data has been corrected. Enter the corrected values under “Actions in source systems” and carry out the "
        "correction (in a manual system, its owner confirms it), or reject the request with your reasons: "
        "“%(ground)s” if you checked the data and it is right, “%(other)s” if we do not hold it."
    ) % {"ground": RejectionGround.DATA_ACCURATE.label, "other": RejectionGround.OTHER.label}


def completion_blockers(request: PrivacyRequest) -> list[str]:
    """Why the request cannot be completed yet: a data package not released, work in the source
    systems, Art. 19 notices or a suppression still to do, for the rights it grants (a right refused
    needs none of its work). Checking many requests: prefetch_for_completion."""
    blockers = []
    rights = set(request.granted_rights)
    # The letter would answer an agent whose authority is unconfirmed, a stranger maybe (services.agents): with a right
    # granted, the subject's data; with every right refused, what we hold and why.
    if refusal := agents.closing_refusal(request):
        blockers.append(refusal)
    # Answering access or portability means giving the data (even a package that says none was
    # found): a request completed without it would tell the subject it was answered when it was not.
    released = {package.kind for package in request.exports.all() if package.released_at is not None}
    for right, kind in PACKAGE_FOR_RIGHT.items():
        if right in rights and kind not in released:
            blockers.append(
                _("%(kind)s: no data package has been released to the subject yet.") % {"kind": ExportKind(kind).label}
            )
    # A restriction's lifting, planned already, is not part of answering the request: it waits for its notice.
    answering = [action for action in request.source_actions.all() if action.kind in ANSWERING_KINDS]
    # Those of a refused right are left as they are: once the request is closed, they never run (may_run_now).
    granted_kinds = {kind for right, kind in ACTION_FOR_RIGHT.items() if right in rights}
    actions = [action for action in answering if action.kind in granted_kinds]
    if rights & {RequestType.ERASURE, RequestType.RESTRICTION} and not actions:
        blockers.append(_("The erasure or restriction has not been planned in the source systems."))
    kinds_verified = verified_kinds(request)
    for asked in request.rights.all():
        if asked.right in SUPPRESSION_RIGHTS and asked.right in rights:
            blockers.extend(_suppression_blockers(asked, usable_kinds(request, asked)))
    rectified_sources = {a.source_id for a in actions if a.kind == ActionKind.RECTIFY}
    # The corrected values of a refused rectification are never made: nothing is left to plan for them.
    corrections = request.rectification_changes.all() if RequestType.RECTIFICATION in rights else []
    unplanned = {change.category.source.name for change in corrections if change.category.source_id not in rectified_sources}
    for source_name in sorted(unplanned):
        blockers.append(_("Corrected values for %(source)s have not been planned: plan the actions again.") % {"source": source_name})
    if nothing_corrected(request) and not unplanned and all(a.status == ActionStatus.DONE for a in actions if a.kind == ActionKind.RECTIFY):
        blockers.append(nothing_corrected_blocker(request))
    for action in actions:
        if action.status == ActionStatus.CANCELLED:
            blockers.append(
                _("%(kind)s in %(source)s was cancelled when who makes the request was corrected: plan the actions again.")
                % {"kind": action.get_kind_display(), "source": action.source.name}
            )
        elif action.status != ActionStatus.DONE:
            blockers.append(
                _("%(kind)s in %(source)s: %(status)s.")
                % {"kind": action.get_kind_display(), "source": action.source.name, "status": in_sentence(action.get_status_display())}
            )
        elif searched_too_early(action, kinds_verified):
            blockers.append(
                _("%(kind)s in %(source)s ran before any %(identifier)s was verified: run its dry run again.")
                % {
                    "kind": action.get_kind_display(), "source": action.source.name,
                    "identifier": in_sentence(IdentityKind(action.source.identity_kind).label),
                }
            )
    # A notice waiting only for a refused right's action goes once the request is completed (request_complete):
    # nothing else it waits for is left.
    unfinished = {action.source_id for action in actions if action.status != ActionStatus.DONE}
    released_by_the_refusal = {
        action.source_id for action in answering if action.kind not in granted_kinds and action.status != ActionStatus.DONE
    } - unfinished
    gdpr_numbers = cites_gdpr_articles(request.regime)
    for notice in request.recipient_notices.all():
        if notice.status == NoticeStatus.PENDING and notice.recipient.source_id in released_by_the_refusal:
            continue
        if notice.status in (NoticeStatus.PENDING, NoticeStatus.FAILED) and not notice.recipient.reachable:
            unreachable = (
                _("Recipient %(recipient)s cannot be notified (Art. 19): it has no email address or webhook URL. Add one in "
                  "the inventory, or waive the notice.")
                if gdpr_numbers
                else _("Recipient %(recipient)s cannot be notified: it has no email address or webhook URL. Add one in "
                       "the inventory, or waive the notice.")
            )
            blockers.append(unreachable % {"recipient": notice.recipient.name})
        elif notice.status in (NoticeStatus.PENDING, NoticeStatus.FAILED):
            not_notified = (
                _("Recipient %(recipient)s has not been notified (Art. 19).")
                if gdpr_numbers
                else _("Recipient %(recipient)s has not been notified.")
            )
            blockers.append(not_notified % {"recipient": notice.recipient.name})
    return blockers
