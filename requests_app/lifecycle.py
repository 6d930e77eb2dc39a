"""The request state machine: states, transitions as data, and the one
function that changes a request's status.

    awaiting_verification --verify_email--> new --start_identity_check--> identity_check
            |                                |                               |
          expire                         start_work <------------------------+
            v                                v
         expired                        in_progress --complete--> completed

Any open request can be paused to wait for the subject (await_subject) and
resumed from there, rejected or forwarded to the controller of its data (once
verified), or withdrawn by the subject.
"""

from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count, F, Max, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from requests_app.audit import Actor, record_event
from requests_app.models import NO_DATA_DELIVERED, AuditEvent, ClosedRequestCount, PrivacyRequest, Status
from requests_app.wording import in_sentence


class RequestError(Exception):
    """A domain error: the action is not allowed now. Views show the message; the API answers 409."""


class IllegalTransition(RequestError):
    pass


class StaleRequest(RequestError):
    """The request changed since the person acting on it last saw it."""


def stale(reference: str, status: str) -> StaleRequest:
    """The refusal for someone acting on a request that moved on since they loaded it."""
    return StaleRequest(
        _("Request %(reference)s has changed since you loaded it (it is now %(status)s). Reload and try again.")
        % {"reference": reference, "status": Status(status).label}
    )


def state_version(request: PrivacyRequest) -> int:
    """The audit sequence of the request's last status change or message from the subject. A staff form carries
    the version its page showed: a status can leave and come back (a question, then the subject's reply), and
    an action decided before the reply must not go through as if nothing had happened."""
    events = AuditEvent.objects.filter(request=request).filter(~Q(to_status="") | Q(action="subject_replied"))
    return events.aggregate(version=Max("sequence"))["version"] or 0


def require_version(request: PrivacyRequest, expected: str) -> None:
    """Refuse an action decided on an older version of the request (state_version). Call with its row locked."""
    if expected != str(state_version(request)):
        raise StaleRequest(
            _("Request %(reference)s has changed since you loaded it: the subject wrote, or its status changed. Read it again before you act.")
            % {"reference": request.reference}
        )


class NotAllowed(RequestError):
    """The actor's role does not permit the action. Views answer 403."""


@dataclass(frozen=True)
class Transition:
    name: str
    sources: frozenset[str]
    target: str
    label: str


VERIFIED_OPEN = frozenset({Status.NEW, Status.IDENTITY_CHECK, Status.IN_PROGRESS, Status.AWAITING_SUBJECT})
OPEN_STATUSES = VERIFIED_OPEN | {Status.AWAITING_VERIFICATION}
CLOSED_STATUSES = frozenset({Status.COMPLETED, Status.REJECTED, Status.WITHDRAWN, Status.EXPIRED, Status.FORWARDED})

# Notes the system writes on events and pauses. The trail keeps them in English, as it keeps the
# action codes; the dashboard shows them in the reader's language (staff_tags.SYSTEM_NOTES).
NOTE_INFORMATION_REQUESTED = "Information requested from the subject"
NOTE_SUBJECT_REPLIED = "The subject replied"
NOTE_WAITING_FOR_THE_SUBJECT = "Waiting for the subject"
NOTE_IDENTITY_VERIFIED = "Identity verified"

TRANSITIONS = {
    t.name: t
    for t in [
        Transition("verify_email", frozenset({Status.AWAITING_VERIFICATION}), Status.NEW, _("Verify email")),
        Transition("expire", frozenset({Status.AWAITING_VERIFICATION}), Status.EXPIRED, _("Expire")),
        Transition(
            "start_identity_check",
            frozenset({Status.NEW, Status.AWAITING_SUBJECT}),
            Status.IDENTITY_CHECK,
            _("Check identity"),
        ),
        # A reply to a question staff asked before starting: back to the queue, untouched.
        Transition("return_to_new", frozenset({Status.AWAITING_SUBJECT}), Status.NEW, _("Back to new")),
        Transition(
            "start_work",
            frozenset({Status.NEW, Status.IDENTITY_CHECK, Status.AWAITING_SUBJECT}),
            Status.IN_PROGRESS,
            _("Start work"),
        ),
        Transition(
            "await_subject",
            frozenset({Status.NEW, Status.IDENTITY_CHECK, Status.IN_PROGRESS}),
            Status.AWAITING_SUBJECT,
            _("Wait for the subject"),
        ),
        Transition("complete", frozenset({Status.IN_PROGRESS}), Status.COMPLETED, _("Complete")),
        Transition("reject", VERIFIED_OPEN, Status.REJECTED, _("Reject")),
        Transition("forward", VERIFIED_OPEN, Status.FORWARDED, _("Forward to the controller")),
        Transition("withdraw", OPEN_STATUSES, Status.WITHDRAWN, _("Withdraw")),
    ]
}


def allowed_transitions(status: str) -> list[Transition]:
    return [t for t in TRANSITIONS.values() if status in t.sources]


def require_allowed(status: str, name: str) -> None:
    """Raise IllegalTransition when a request in `status` cannot take transition `name`: for a service
    that checks more than the status before it transitions, so that a closed request gets this refusal
    rather than one about what it would still need."""
    spec = TRANSITIONS[name]
    if status not in spec.sources:
        raise IllegalTransition(
            _("A request that is %(status)s cannot be moved to %(target)s.")
            % {"status": in_sentence(Status(status).label), "target": in_sentence(Status(spec.target).label)}
        )


def transition(
    request: PrivacyRequest,
    name: str,
    *,
    actor: Actor,
    note: str = "",
    expected_status: str | None = None,
    data: dict | None = None,
) -> PrivacyRequest:
    """Move `request` along transition `name` and record the audit event.

    Locks the row and re-reads its status, so two people acting at once
    cannot both succeed. `expected_status` is the status the actor saw: if
    the request has moved on since, StaleRequest is raised and nothing
    changes. Raises IllegalTransition when the current status does not allow
    the transition. Updates `request` in place and returns it.
    """
    try:
        spec = TRANSITIONS[name]
    except KeyError:
        raise IllegalTransition(f"Unknown action {name!r}.") from None

    with transaction.atomic():
        current = PrivacyRequest.objects.select_for_update().values_list("status", flat=True).get(pk=request.pk)
        if expected_status is not None and current != expected_status:
            raise stale(request.reference, current)
        require_allowed(current, name)
        now = timezone.now()
        closed_at = now if spec.target in CLOSED_STATUSES else None
        PrivacyRequest.objects.filter(pk=request.pk).update(status=spec.target, closed_at=closed_at, updated_at=now)
        request.status, request.closed_at = spec.target, closed_at
        record_event(
            request, name, actor=actor, from_status=current, to_status=spec.target, note=note, data=data
        )
        _move_the_clock(request, current, spec.target, actor=actor, note=note)
        if spec.target in CLOSED_STATUSES:
            # Imported here: the actions service builds on this module. Actions that never ran now leave their
            # sources' Art. 19 notices with nothing to wait for: they go, or are not needed (queue_due_notices).
            from requests_app.services import actions

            actions.queue_due_notices(request)
            # The identity check ends with the request, verified or not: a copy of an ID sent for it goes now,
            # not with the rest of the request's data years later (the request form's notice promises it).
            from requests_app.services import handling

            handling.delete_identity_documents(request, actor=Actor.system())
        if spec.target in NO_DATA_DELIVERED:
            # Imported here for the same reason. Its packages may no longer go to the subject: ended now, their files
            # deleted on commit, as the status page then tells the subject and the staff pages show.
            from requests_app.services import exports

            exports.end_packages_of_closed_request(request)
        # Imported here for the same reason as the deadline service.
        from requests_app.services import webhooks

        webhooks.emit(request, webhooks.WebhookEvent.REQUEST_STATUS_CHANGED, {"previous_status": current})
    return request


def _move_the_clock(request: PrivacyRequest, old: str, new: str, *, actor: Actor, note: str) -> None:
    """Waiting on the subject stops the statutory clock, where the regime allows it and the
    request is not overdue already (deadline_service.pause_refusal); leaving that state restarts it.

    Closing the request ends any pause, its days added to the deadline as a restart adds them, and stops its
    reminders.
    """
    # Imported here: the deadline service itself builds on this module.
    from requests_app.services import deadlines as deadline_service

    pause = deadline_service.open_pause(request)
    if new == Status.AWAITING_SUBJECT and pause is None and deadline_service.pause_refusal(request) is None:
        deadline_service.start_pause(request, actor=actor, reason=note or NOTE_WAITING_FOR_THE_SUBJECT)
    elif old == Status.AWAITING_SUBJECT and new in VERIFIED_OPEN and pause is not None:
        deadline_service.end_pause(request, pause, actor=actor)
    elif new in CLOSED_STATUSES:
        if pause is not None:
            deadline_service.finish_pause(request, pause, actor=actor)
        PrivacyRequest.objects.filter(pk=request.pk).update(next_alert_on=None, next_alert_key="", clock_paused=False)
        request.clock_paused = False
        count_closed(request.pk)


def count_closed(request_id: int) -> None:
    """Add a request that just closed to the queue's closed-request counts (same transaction)."""
    status, regime, channel, assignee_id, organisation_id, mask = PrivacyRequest.objects.values_list(
        "status", "regime", "channel", "assignee_id", "organisation_id", "rights_mask"
    ).get(pk=request_id)
    row, _created = ClosedRequestCount.objects.get_or_create(
        status=status,
        regime=regime,
        channel=channel,
        assignee_key=assignee_id or 0,
        organisation_key=organisation_id or 0,
        rights_mask=mask,
    )
    ClosedRequestCount.objects.filter(pk=row.pk).update(count=F("count") + 1)


def rebuild_closed_counts() -> int:
    """Recount closed requests from scratch (after a bulk load); returns the number of rows."""
    with transaction.atomic():
        ClosedRequestCount.objects.all().delete()
        rows = (
            PrivacyRequest.objects.filter(status__in=CLOSED_STATUSES)
            .values("status", "regime", "channel", "assignee_id", "organisation_id", "rights_mask")
            .annotate(n=Count("id"))
            .order_by()
        )
        counts = [
            ClosedRequestCount(
                status=row["status"],
                regime=row["regime"],
                channel=row["channel"],
                assignee_key=row["assignee_id"] or 0,
                organisation_key=row["organisation_id"] or 0,
                rights_mask=row["rights_mask"],
                count=row["n"],
            )
            for row in rows
        ]
        ClosedRequestCount.objects.bulk_create(counts, batch_size=1000)
    return len(counts)
