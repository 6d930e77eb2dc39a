"""Reads: how requests and their events are looked up and presented."""

import datetime
import re
from collections import Counter
from dataclasses import dataclass

import phonenumbers
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import Case, CharField, Count, F, Value, When
from django.http import Http404
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.translation import gettext_lazy as _

from requests_app.lifecycle import CLOCK_RUNNING, CLOSED_STATUSES, OPEN_STATUSES, VERIFIED_OPEN
from requests_app.models import (
    AuditEvent,
    Channel,
    Organisation,
    PrivacyRequest,
    Regime,
    RequestType,
    Status,
    rights_mask,
)

# The events a subject sees on their status page, in their words.
SUBJECT_EVENT_TEXT = {
    "submitted": _("We received your request."),
    "verification_resent": _("We sent you a new verification link."),
    "verify_email": _("You confirmed your email address."),
    "start_identity_check": _("We started checking your identity."),
    "start_work": _("We started working on your request."),
    "await_subject": _("We are waiting for your reply."),
    "complete": _("We completed your request."),
    "reject": _("We declined your request and wrote to you with the reasons."),
    "withdraw": _("The request was withdrawn."),
    "expire": _("The request expired because the email address was never confirmed."),
    "deadline_extended": _("We extended the time to answer and wrote to you with the reason."),
    "clock_paused": _("The time to answer was paused while we wait for you."),
    "clock_resumed": _("The time to answer started running again."),
    "message_sent": _("We sent you a message."),
    "information_requested": _("We asked you for more information."),
    "subject_replied": _("You sent us a message."),
    "completion_letter_sent": _("We sent you our final answer."),
    "rejection_letter_sent": _("We sent you a letter explaining our decision."),
}

NEXT_STEP_TEXT = {
    Status.AWAITING_VERIFICATION: _(
        "Please confirm your email address with the link we sent you. Until then we cannot start."
    ),
    Status.NEW: _("Your request is confirmed. Our data protection team will pick it up shortly."),
    Status.IDENTITY_CHECK: _(
        "We are making sure we give your data only to you. We may contact you for proof of identity."
    ),
    Status.IN_PROGRESS: _("We are collecting or changing your data in our systems."),
    Status.AWAITING_SUBJECT: _(
        "We need more information from you. The time we have to answer is paused until you reply."
    ),
    Status.COMPLETED: _("Your request is complete."),
    Status.REJECTED: _(
        "We could not grant your request; our letter explains why. You may complain to a supervisory "
        "authority and seek a judicial remedy."
    ),
    Status.WITHDRAWN: _("You withdrew this request. Nothing more will happen."),
    Status.EXPIRED: _("This request expired. You are welcome to submit a new one."),
}


def request_for_subject(*, reference: str, secret: str) -> PrivacyRequest:
    """The request a status link points at. A wrong secret is a 404, like an unknown reference."""
    request = PrivacyRequest.objects.filter(reference=reference).prefetch_related("rights").first()
    if request is None or not constant_time_compare(request.secret, secret):
        raise Http404("No such request")
    return request


def subject_timeline(request: PrivacyRequest) -> list[tuple]:
    """(time, text) for each event that concerns the subject, oldest first."""
    events = AuditEvent.objects.filter(request=request, action__in=SUBJECT_EVENT_TEXT).only("action", "created_at")
    return [(event.created_at, SUBJECT_EVENT_TEXT[event.action]) for event in events]


# --- The staff queue -------------------------------------------------------

DUE_SOON_DAYS = 7


@dataclass(frozen=True)
class QueueFilters:
    """What the queue shows. Empty values mean "any"."""

    scope: str = "open"  # open, closed or all
    status: str = ""
    type: str = ""
    regime: str = ""
    assignee: str = ""  # "me", "none" or a username
    due: str = ""  # "overdue" or "week"
    channel: str = ""
    organisation: str = ""  # an organisation's public id
    q: str = ""
    sort: str = "due_on"
    invalid: bool = False  # a filter value could not be read: nothing matches


SCOPE_STATUSES = {"open": OPEN_STATUSES, "closed": CLOSED_STATUSES, "all": None}
SORTS = {
    "due_on": [F("due_on").asc(nulls_last=True), "id"],
    "-received_at": ["-received_at", "-id"],
    "received_at": ["received_at", "id"],
    "reference": ["reference"],
}
FACETS = ("status", "type", "regime", "assignee", "due", "channel", "organisation")


def _search(queryset, q: str):
    q = q.strip()
    if not q:
        return queryset
    if re.fullmatch(r"(?i)dsr-\d{4}-\d+", q):
        return queryset.filter(reference=q.upper())
    if "@" in q:
        return queryset.filter(subject_email__iexact=q)
    if re.fullmatch(r"[+\d][\d\s().-]{5,}", q):
        try:
            number = phonenumbers.parse(q, None if q.startswith("+") else "BE")
            q_phone = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        except phonenumbers.NumberParseException:
            q_phone = q
        return queryset.filter(subject_phone=q_phone)
    return queryset.filter(subject_name__icontains=q)


def _due_bucket(today: datetime.date):
    return Case(
        When(status__in=CLOCK_RUNNING, due_on__lt=today, then=Value("overdue")),
        When(status__in=CLOCK_RUNNING, due_on__lte=today + datetime.timedelta(days=DUE_SOON_DAYS), then=Value("week")),
        default=Value(""),
        output_field=CharField(),
    )


def _scoped(filters: QueueFilters):
    if filters.invalid:
        return PrivacyRequest.objects.none()
    queryset = PrivacyRequest.objects.all()
    statuses = SCOPE_STATUSES.get(filters.scope, OPEN_STATUSES)
    if statuses is not None:
        queryset = queryset.filter(status__in=statuses)
    return _search(queryset, filters.q)


def _facet_filter(queryset, facet: str, value: str, *, user, today: datetime.date, organisation_ids: dict):
    if facet == "status":
        return queryset.filter(status=value)
    if facet == "type":
        bit = rights_mask([value])
        return queryset.annotate(_type_bit=F("rights_mask").bitand(bit)).filter(_type_bit=bit)
    if facet in ("regime", "channel"):
        return queryset.filter(**{facet: value})
    if facet == "assignee":
        if value == "me":
            return queryset.filter(assignee=user)
        if value == "none":
            return queryset.filter(assignee__isnull=True)
        return queryset.filter(assignee__username=value)
    if facet == "due":
        if value == "overdue":
            return queryset.filter(status__in=CLOCK_RUNNING, due_on__lt=today)
        return queryset.filter(
            status__in=CLOCK_RUNNING, due_on__gte=today, due_on__lte=today + datetime.timedelta(days=DUE_SOON_DAYS)
        )
    if facet == "organisation":
        return queryset.filter(organisation_id=organisation_ids.get(value, -1))
    raise ValueError(facet)


def queue_queryset(filters: QueueFilters, *, user, today: datetime.date | None = None):
    """The requests matching every filter, sorted, ready to paginate."""
    today = today or timezone.localdate()
    organisation_ids = _organisation_ids(filters)
    queryset = _scoped(filters)
    for facet in FACETS:
        value = getattr(filters, facet)
        if value:
            queryset = _facet_filter(queryset, facet, value, user=user, today=today, organisation_ids=organisation_ids)
    return queryset.select_related("assignee", "organisation").order_by(*SORTS.get(filters.sort, SORTS["due_on"]))


def _organisation_ids(filters: QueueFilters) -> dict:
    """The organisation filter's public id mapped to its row id (-1 when unknown: matches nothing)."""
    if not filters.organisation:
        return {}
    try:
        organisation_id = (
            Organisation.objects.filter(public_id=filters.organisation).values_list("id", flat=True).first()
        )
    except ValidationError:  # not a UUID
        organisation_id = None
    return {filters.organisation: organisation_id or -1}


@dataclass
class FacetOption:
    value: str
    label: str
    count: int
    selected: bool


FACET_LABELS = {
    "status": _("Status"),
    "type": _("Type"),
    "regime": _("Regime"),
    "assignee": _("Assignee"),
    "due": _("Due"),
    "channel": _("Channel"),
    "organisation": _("Organisation"),
}


def queue_facets(filters: QueueFilters, *, user, today: datetime.date | None = None) -> tuple[dict, int]:
    """Counts for every filter option, each with the other filters applied, and the total matching.

    One GROUP BY over the scoped and searched requests returns each
    combination of the facet columns with its count; the per-facet counts
    are summed from those rows in Python. So the page costs the same few
    queries whatever its size and however many filters are set.
    """
    today = today or timezone.localdate()
    rows = list(
        _scoped(filters)
        .annotate(due_bucket=_due_bucket(today))
        .values("status", "regime", "channel", "assignee_id", "organisation_id", "rights_mask", "due_bucket")
        .annotate(n=Count("id"))
        .order_by()
    )
    usernames = dict(
        get_user_model().objects.filter(id__in={row["assignee_id"] for row in rows} - {None}).values_list("id", "username")
    )
    organisations = {
        org_id: (str(public_id), name)
        for org_id, public_id, name in Organisation.objects.filter(
            id__in={row["organisation_id"] for row in rows} - {None}
        ).values_list("id", "public_id", "name")
    }
    type_values = list(RequestType.values)
    active = {facet: getattr(filters, facet) for facet in FACETS if getattr(filters, facet)}
    counts = {facet: Counter() for facet in FACETS}
    total = 0
    for row in rows:
        assignee = row["assignee_id"]
        values = {
            "status": {row["status"]},
            "type": {value for bit, value in enumerate(type_values) if row["rights_mask"] & (1 << bit)},
            "regime": {row["regime"]},
            "channel": {row["channel"]},
            "assignee": {"none"} if assignee is None else {usernames.get(assignee, "")} | ({"me"} if assignee == user.id else set()),
            "due": {row["due_bucket"]} - {""},
            "organisation": {organisations[row["organisation_id"]][0]} if row["organisation_id"] else set(),
        }
        matches = {facet: value in values[facet] for facet, value in active.items()}
        if all(matches.values()):
            total += row["n"]
        for facet in FACETS:
            if all(ok for other, ok in matches.items() if other != facet):
                for value in values[facet]:
                    counts[facet][value] += row["n"]

    labels = {
        "status": dict(Status.choices),
        "type": dict(RequestType.choices),
        "regime": dict(Regime.choices),
        "channel": dict(Channel.choices),
        "assignee": {"me": _("Mine"), "none": _("Unassigned"), **{name: name for name in usernames.values()}},
        "due": {"overdue": _("Overdue"), "week": _("Due within 7 days")},
        "organisation": {public_id: name for public_id, name in organisations.values()},
    }
    facets = {}
    for facet in FACETS:
        options = [
            FacetOption(value, str(label), counts[facet][value], getattr(filters, facet) == value)
            for value, label in labels[facet].items()
            if counts[facet][value] or getattr(filters, facet) == value
        ]
        facets[facet] = options
    return facets, total


def workload_summary(*, today: datetime.date | None = None, user=None, list_size: int = 10) -> dict:
    """Counts and short lists for the staff home page and the DPO's digest."""
    today = today or timezone.localdate()
    open_requests = PrivacyRequest.objects.filter(status__in=VERIFIED_OPEN).select_related("assignee").order_by(
        F("due_on").asc(nulls_last=True), "id"
    )
    soon = today + datetime.timedelta(days=DUE_SOON_DAYS)
    running = open_requests.filter(status__in=CLOCK_RUNNING)
    groups = {
        "overdue": running.filter(due_on__lt=today),
        "due_soon": running.filter(due_on__gte=today, due_on__lte=soon),
        "unassigned": open_requests.filter(assignee__isnull=True),
        "awaiting_verification": PrivacyRequest.objects.filter(status=Status.AWAITING_VERIFICATION).order_by("-received_at"),
        "open": open_requests,
    }
    if user is not None:
        groups["mine"] = open_requests.filter(assignee=user)
    summary = {}
    for name, queryset in groups.items():
        summary[f"{name}_count"] = queryset.count()
        summary[name] = list(queryset[:list_size])
    return summary


PREVIEW_ROWS = 5


def export_previews(export) -> list[dict]:
    """Each file of a compiled package with its first rows, for staff review (read from the ZIP, not loaded whole)."""
    import zipfile

    import pyzipper
    from django.core.files.storage import default_storage

    previews = []
    with default_storage.open(export.storage_name, "rb") as handle:
        archive = pyzipper.AESZipFile(handle) if export.encrypted else zipfile.ZipFile(handle)
        if export.encrypted and export.pending_password:
            archive.setpassword(export.pending_password.encode())
        with archive:
            for entry in export.manifest.get("files", []):
                lines = []
                if entry["path"].startswith("data/"):
                    with archive.open(entry["path"]) as member:
                        for _, line in zip(range(PREVIEW_ROWS + 1), member):
                            lines.append(line.decode("utf-8", "replace").rstrip("\n"))
                previews.append({**entry, "first_lines": lines})
    return previews


def downloadable_exports(request: PrivacyRequest) -> list:
    """Released packages the subject can still download."""
    from django.db.models import F as F_

    from requests_app.models import ExportStatus

    exports = list(
        request.exports.filter(
            status=ExportStatus.RELEASED, expires_at__gt=timezone.now(), download_count__lt=F_("max_downloads")
        )
    )
    for export in exports:
        export.downloads_left = export.max_downloads - export.download_count
    return exports
