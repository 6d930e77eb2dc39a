"""Routing: who works a request once it is verified, and the DPO's daily digest."""

import datetime
import logging

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django_otp.plugins.otp_totp.models import TOTPDevice

from requests_app import emails, roles, tasks
from requests_app.audit import Actor, record_event
from requests_app.lifecycle import VERIFIED_OPEN, RequestError, StaleRequest
from requests_app.models import AssignmentRule, DailyDigest, PrivacyRequest, Status, Team

logger = logging.getLogger(__name__)

# A verified request still unrouted after this long lost its task (a broker
# outage, a dead worker): the sweeper dispatches it again.
UNROUTED_GRACE = datetime.timedelta(minutes=5)
# What the trail records as the rule when none matched (in English, as it keeps its codes;
# staff_tags.event_data shows it in the reader's language).
DEFAULT_RULE = "default: the DPO"


def _workers():
    """Active staff who can be given requests: DPOs and handlers."""
    return get_user_model().objects.filter(is_active=True, is_staff=True).filter(
        Q(is_superuser=True) | Q(groups__name__in=[roles.DPO, roles.HANDLER])
    )


def _signing_in(users):
    """Those who have set up their authenticator: an account still waiting for its invitation cannot
    sign in, and requests routed to it would wait unseen. (Emails to the DPOs go to them all.)"""
    # A subquery, not a join: a join would multiply least_loaded's counts by the number of devices.
    return users.filter(Exists(TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True)))


def least_loaded(users):
    """The user with the fewest open requests; ties go to the longest-serving account."""
    return (
        users.annotate(open_count=Count("assigned_requests", filter=Q(assigned_requests__status__in=VERIFIED_OPEN)))
        .order_by("open_count", "id")
        .first()
    )


def dpo_users():
    return _workers().filter(Q(is_superuser=True) | Q(groups__name=roles.DPO)).distinct()


def assignable_users():
    """Those requests may be routed to: active DPOs and handlers who can sign in."""
    return _signing_in(_workers())


def assignable(user) -> bool:
    return assignable_users().filter(pk=user.pk).exists()


def choose_assignee(request: PrivacyRequest) -> tuple[AssignmentRule | None, Team | None, object]:
    """The first matching active rule decides; with none, the least-loaded DPO. A rule's person who can no
    longer work requests (switched off, their role taken away, not set up yet) passes it to the least-loaded
    DPO too: nobody would see it otherwise until its first reminder."""
    rights = request.requested_rights
    for rule in AssignmentRule.objects.filter(active=True).select_related("assign_team", "assign_user"):
        if rule.matches(request, rights):
            if rule.assign_user_id:
                if assignable(rule.assign_user):
                    return rule, None, rule.assign_user
                return rule, None, least_loaded(_signing_in(dpo_users()))
            members = _signing_in(_workers().filter(privacy_teams=rule.assign_team)).distinct()
            # A team with nobody who can sign in (none added yet, all left): the team's request still gets a
            # person, the least-loaded DPO, rather than nobody, which no one would be told of.
            return rule, rule.assign_team, least_loaded(members) or least_loaded(_signing_in(dpo_users()))
    return None, None, least_loaded(_signing_in(dpo_users()))


def route_request(*, request_id: int) -> bool:
    """Assign a verified request by the assignment rules and notify the assignee.

    Allowed on verified open requests not yet routed. Idempotent: the row is
    locked and `routed_at` checked, so a redelivered task neither assigns nor
    notifies again. Returns whether it routed the request.
    """
    with transaction.atomic():
        request = PrivacyRequest.objects.select_for_update().filter(pk=request_id).first()
        if request is None or request.routed_at is not None or request.status not in VERIFIED_OPEN:
            return False
        rule, team, assignee = choose_assignee(request)
        request.assignee, request.team, request.routed_at = assignee, team, timezone.now()
        request.save(update_fields=["assignee", "team", "routed_at", "updated_at"])
        event = record_event(
            request,
            "routed",
            actor=Actor.system(),
            data={
                "rule": rule.name if rule else DEFAULT_RULE,
                "team": team.name if team else None,
                "assignee": assignee.get_username() if assignee else None,
                # The rule's person, passed over: the trail says why the DPO got it.
                **({"unavailable": rule.assign_user.get_username()} if rule and rule.assign_user_id and rule.assign_user != assignee else {}),
            },
        )
        if assignee is not None:
            if assignee.email:
                emails.owe(request, "assigned", str(event.sequence))
            tasks.queue_after_commit(tasks.send_assignment_email, request.id, event.sequence)
        else:
            logger.warning("request %s routed with nobody to assign it to", request.reference)
    return True


def dispatch_unrouted(*, now: datetime.datetime | None = None) -> int:
    """Queue routing again for verified requests left unrouted past the grace period.

    As the whole follow-up (intake.request_follow_up): a lost task of a request
    received directly also owed its organisation's webhook and the confirmation.
    """
    cutoff = (now or timezone.now()) - UNROUTED_GRACE
    ids = list(
        PrivacyRequest.objects.filter(routed_at__isnull=True, status__in=VERIFIED_OPEN)
        .filter(Q(verified_at__lt=cutoff) | Q(verified_at__isnull=True, created_at__lt=cutoff))
        .values_list("id", flat=True)[:1000]
    )
    for request_id in ids:
        tasks.follow_up_request.delay(request_id)
    if ids:
        logger.warning("re-dispatched routing for %s requests", len(ids))
    return len(ids)


def request_assign(
    *, request: PrivacyRequest, assignee, actor: Actor, expected_assignee_id: int | None | str = "any"
) -> PrivacyRequest:
    """Give a request to a DPO or handler, and tell them.

    The DPO may assign anything; a handler only requests they may work.
    `expected_assignee_id` is the assignee the actor saw: if someone else
    reassigned it meanwhile, StaleRequest is raised and nothing changes.
    """
    with transaction.atomic():
        locked = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
        roles.require_can_work(actor, locked)
        if assignee is not None and roles.role_of(assignee) not in (roles.DPO, roles.HANDLER):
            raise RequestError(_("%(user)s cannot be given requests.") % {"user": assignee.get_username()})
        if expected_assignee_id != "any" and locked.assignee_id != expected_assignee_id:
            raise StaleRequest(
                _("Request %(reference)s was reassigned meanwhile. Reload and try again.") % {"reference": locked.reference}
            )
        if locked.status == Status.AWAITING_VERIFICATION:
            # Not yet work for the team: the subject may never confirm the address, and routing gives it to
            # someone once they do.
            raise RequestError(
                _("Request %(reference)s has not been confirmed by the subject yet; it cannot be assigned.")
                % {"reference": locked.reference}
            )
        if locked.status not in VERIFIED_OPEN:
            raise RequestError(_("Request %(reference)s is closed; it cannot be assigned.") % {"reference": locked.reference})
        previous = locked.assignee
        if previous == assignee:
            return locked
        locked.assignee = assignee
        locked.routed_at = locked.routed_at or timezone.now()
        locked.save(update_fields=["assignee", "routed_at", "updated_at"])
        event = record_event(
            locked,
            "assigned",
            actor=actor,
            data={
                "from": previous.get_username() if previous else None,
                "to": assignee.get_username() if assignee else None,
            },
        )
        if assignee is not None and assignee != actor.user:
            if assignee.email:
                emails.owe(locked, "assigned", str(event.sequence))
            tasks.queue_after_commit(tasks.send_assignment_email, locked.id, event.sequence)
    return locked


def send_daily_digest(*, today: datetime.date | None = None) -> bool:
    """Email the DPOs the day's picture, once a day however often it runs."""
    today = today or timezone.localdate()
    try:
        with transaction.atomic():
            DailyDigest.objects.create(day=today)
            emails.send_daily_digest(today=today, recipients=emails.dpo_recipients(dpo_users()))
    except IntegrityError:
        return False
    return True
