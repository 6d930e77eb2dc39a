"""Reads: how requests and their events are looked up and presented."""

import datetime
import logging
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import EmptyResultSet, ValidationError
from django.db import connection
from django.db.models import BooleanField, Case, CharField, ExpressionWrapper, F, IntegerField, Prefetch, Q, Subquery, Sum, Value, When
from django.db.models.functions import NullIf, Replace
from django.db.models.lookups import Contains, Exact
from django.http import Http404
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.translation import gettext_lazy as _

from requests_app.lifecycle import CLOSED_STATUSES, OPEN_STATUSES, VERIFIED_OPEN
from requests_app.models import (
    LINE_PROVING_METHODS,
    RESTRICTION_GROUNDS_TO_AN_AGENT,
    RIGHTS_THE_SUBJECT_ASKS,
    ActionKind,
    ActionStatus,
    ActorKind,
    AuditEvent,
    Channel,
    ClosedRequestCount,
    CoveredPurpose,
    EraseMethod,
    EraseStrategy,
    ExportKind,
    IdentityKind,
    LegalHold,
    NoticeStatus,
    Organisation,
    PrivacyRequest,
    RecipientNotice,
    Regime,
    RequestType,
    SourceAction,
    SourceSystem,
    Status,
    SubjectIdentity,
    SuppressionPurpose,
    WebhookDelivery,
    WebhookEndpoint,
    comparable_name,
    name_search_key,
    no_email_to_write_to,
    rights_mask,
)
from requests_app.phones import to_e164
from requests_app.services.certificate import codes_kept, kept, searched_nothing
from requests_app.wording import label_in_letter

logger = logging.getLogger(__name__)

# The events a subject sees on their status page, in their words.
SUBJECT_EVENT_TEXT = {
    "submitted": _("We received your request."),
    "verification_resent": _("We sent you a new verification link."),
    "status_link_resent": _("We sent you the link to this page again."),
    "verify_email": _("You confirmed your email address."),
    # A request received directly (a letter, a call, a customer portal): the link staff sent, and its use.
    "email_confirmation_sent": _("We sent you a link to confirm your email address."),
    "email_confirmed": _("You confirmed your email address."),
    "start_identity_check": _("We started checking your identity."),
    "start_work": _("We started working on your request."),
    "await_subject": _("We are waiting for your reply."),
    "complete": _("We completed your request."),
    # The letter that says why is its own event (rejection_letter_sent), once it went out.
    "reject": _("We declined your request."),
    "withdraw": _("The request was withdrawn."),
    "forward": _("We forwarded your request to the controller of the data, who will answer you."),
    "expire": _("The request expired because the email address was never confirmed."),
    "deadline_extended": _("We extended the time to answer and wrote to you with the reason."),
    "clock_paused": _("The time to answer was paused while we wait for you."),
    "clock_resumed": _("The time to answer started running again."),
    "message_sent": _("We sent you a message."),
    "information_requested": _("We asked you for more information."),
    "subject_replied": _("You sent us a message."),
    "completion_letter_sent": _("We sent you our final answer."),
    "rejection_letter_sent": _("We sent you a letter explaining our decision."),
    "forwarding_letter_sent": _("We sent you a letter saying whom we forwarded your request to, and how to contact them."),
    "fee_letter_sent": _("We wrote to you of the fee we intend to charge for this request."),
    "fee_paid": _("We recorded your payment of the fee."),
    "restriction_lift_notice_sent": _("We wrote to you before lifting a restriction of your data."),
    "restriction_lift_cancellation_sent": _("We wrote to you that a restriction of your data stays in force."),
    # Each download is listed: the link to this page is all it takes, and a subject who fears it leaked can see when.
    "export_released": _("We made a copy of your data available to download."),
    "export_downloaded": _("A copy of your data was downloaded with the link on this page."),
    # Art. 20(2): the organisation the subject named, sent their data or not, and each download it made.
    "export_transmitted": _("We sent %(organisation)s a link to download your data, as you asked."),
    "transmission_declined": _("We could not send your data to %(organisation)s; our message explains why."),
    "export_downloaded_by_recipient": _("%(organisation)s downloaded the copy of your data we sent it."),
    "transmission_resent": _("We sent %(organisation)s the link to download your data again, at a corrected address."),
}
# The events above that name the organisation the subject asked us to send their data to.
NAMES_THE_RECIPIENT = frozenset(
    {"export_transmitted", "transmission_declined", "export_downloaded_by_recipient", "transmission_resent"}
)
# Its name once the subject's details are purged with the request (RequestedRight.recipient_name).
RECIPIENT_NAME_PURGED = _("the organisation you named")
# An event the organisation that filed the request took, through its API key.
SUBJECT_EVENT_TEXT_BY_ORGANISATION = {
    "export_downloaded": _("The organisation that filed your request for you downloaded a copy of your data."),
}
# The events that speak to the subject of their own data or identity, as an agent who filed for them reads them.
SUBJECT_EVENT_TEXT_TO_AN_AGENT = {
    "start_identity_check": _("We started checking the identity of the person you are acting for and your authority to act for them."),
    "restriction_lift_notice_sent": _("We wrote to you before lifting a restriction of the data of the person you are acting for."),
    "restriction_lift_cancellation_sent": _(
        "We wrote to you that a restriction of the data of the person you are acting for stays in force."
    ),
    "export_released": _("We made a copy of the data of the person you are acting for available to download."),
    "export_downloaded": _("A copy of the data of the person you are acting for was downloaded with the link on this page."),
}
# "complete", for a request completed with some of its rights refused.
COMPLETED_IN_PART_EVENT_TEXT = _("We completed your request, and declined part of it.")
# The same with every right refused, each on its own ground: answered, and nothing of it granted.
EVERY_RIGHT_REFUSED_EVENT_TEXT = _("We answered your request, and declined every part of it.")
# The events that add to a request's timeline after its filing ("submitted" is written with the request): each
# moves its updated_at (audit.record_event), so that a portal's updated_since finds the new entry.
TIMELINE_CHANGES = frozenset(SUBJECT_EVENT_TEXT) - {"submitted"}

# The same step taken again (after the subject answered a question) reads as a return to it.
SUBJECT_EVENT_TEXT_AGAIN = {
    "start_identity_check": _("We resumed checking your identity."),
    "start_work": _("We resumed work on your request."),
    # A fee proposed again replaces the first (handling.fee_propose).
    "fee_letter_sent": _("We wrote to you of a new fee, which replaces the one we proposed before."),
}
SUBJECT_EVENT_TEXT_AGAIN_TO_AN_AGENT = {
    "start_identity_check": _("We resumed checking the identity of the person you are acting for and your authority to act for them."),
}

# The status as the subject reads it, where staff's name for it would puzzle them ("Awaiting the
# subject" is about them, not to them); the others read the same to both.
SUBJECT_STATUS_LABELS = {
    Status.AWAITING_VERIFICATION: _("Waiting for you to confirm your email address"),
    Status.IDENTITY_CHECK: _("Checking your identity"),
    Status.AWAITING_SUBJECT: _("Waiting for your reply"),
}
# Not the agent's own identity: the subject's, and the agent's authority to act for them.
IDENTITY_CHECK_LABEL_TO_AN_AGENT = _("Checking identity and authority")


def what_you_told_us(privacy_request: PrivacyRequest) -> list[tuple[str, list[tuple[str, str]], list[str]]]:
    """What the subject asked, as they said it: for each right that takes details, the public form's own questions
    (its field labels, so the page reads as the form they filled in; of the subject, for an agent who filed for
    them, as the form spoke to them: forms.LABELS_TO_AN_AGENT) with their answers, and the statements they ticked. Rights without details are in "You asked us to" already (on the status page, and in the email confirming
    a web request). Nothing once the personal data is purged: a restriction ground or the direct-marketing box
    outlive the purge, but they are the subject's words as much as the texts it blanks."""
    from requests_app.forms import LABELS_TO_AN_AGENT, RequestForm  # imported here: the form's module imports the services, which import this one

    if privacy_request.personal_data_purged_at:
        return []
    labels = {name: field.label for name, field in RequestForm.base_fields.items()}
    if privacy_request.filed_by_agent:
        labels.update(LABELS_TO_AN_AGENT)
    told = []
    for right in privacy_request.rights.all():
        answers = [
            (labels[name], getattr(right, name))
            for name in (
                "rectification_data", "rectification_value", "objection_processing", "consent_withdrawn",
                "recipient_name", "recipient_email",
            )
            if getattr(right, name)
        ]
        if right.restriction_ground:
            if privacy_request.filed_by_agent:
                ground = RESTRICTION_GROUNDS_TO_AN_AGENT[right.restriction_ground]
            else:
                ground = right.get_restriction_ground_display()
            # The form's choice cites its GDPR article; under a law without it, the ground is said without it.
            answers.append((labels["restriction_ground"], label_in_letter(ground, privacy_request.regime)))
        statements = [labels["direct_marketing"]] if right.direct_marketing else []
        if answers or statements:
            told.append((right.right_for_correspondent(), answers, statements))
    return told


def subject_status_label(request: PrivacyRequest) -> str:
    if request.clock_paused and request.is_open:
        # Staff paused the clock while they wait on the subject (for a document asked for by phone, say),
        # whatever the request's own state: to the subject, the request waits for them.
        return str(SUBJECT_STATUS_LABELS[Status.AWAITING_SUBJECT])
    if request.status == Status.IDENTITY_CHECK and request.filed_by_agent:
        return str(IDENTITY_CHECK_LABEL_TO_AN_AGENT)
    return str(SUBJECT_STATUS_LABELS.get(request.status, request.get_status_display()))


NEXT_STEP_TEXT = {
    Status.AWAITING_VERIFICATION: _(
        "Please confirm your email address with the link we sent you. Until then we cannot start."
    ),
    Status.NEW: _("Your request is confirmed. Our data protection team will pick it up shortly."),
    # For a request for a copy of the data; IDENTITY_CHECK_BEFORE_ACTING for any other.
    Status.IDENTITY_CHECK: _(
        "We are making sure we give your data only to you. We may contact you for proof of identity."
    ),
    Status.IN_PROGRESS: _("We are collecting or changing your data in our systems."),
    # Where the clock does not stop (the CCPA; an answer already late), _status_context says
    # AWAITING_SUBJECT_CLOCK_RUNS instead.
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
    # Not a refusal: the controller answers. Not ours either, so the subject may still complain (the letter says so).
    Status.FORWARDED: _(
        "We process the data your request concerns on behalf of another company, its controller, which must answer "
        "you: we forwarded your request to it. Our letter says how to contact it. You may complain to a supervisory "
        "authority and seek a judicial remedy."
    ),
}

# An erasure, an objection or another right that gives the subject no copy: what we check is that it is theirs.
IDENTITY_CHECK_BEFORE_ACTING = _(
    "We are making sure that the request is yours before we act on it. We may contact you for proof of identity."
)


# NEXT_STEP_TEXT where it speaks to the subject of their own data, as an agent who filed for them reads it. Checking
# that the request is the subject's, before acting on it (IDENTITY_CHECK_BEFORE_ACTING), reads right for both.
NEXT_STEP_TEXT_TO_AN_AGENT = {
    Status.IDENTITY_CHECK: _(
        "We are making sure we give the data of the person you are acting for only to them or to someone they allowed. "
        "We may contact you for proof."
    ),
    Status.IN_PROGRESS: _("We are collecting or changing the data of the person you are acting for in our systems."),
}


def next_step_text(request: PrivacyRequest) -> str:
    """What the status page says comes next in the request's state, before what _status_context adds (a pause,
    a fee, a package, an extension)."""
    if request.status == Status.IDENTITY_CHECK and not set(request.requested_rights) <= set(ExportKind.values):
        return IDENTITY_CHECK_BEFORE_ACTING
    if request.filed_by_agent and request.status in NEXT_STEP_TEXT_TO_AN_AGENT:
        return NEXT_STEP_TEXT_TO_AN_AGENT[request.status]
    return NEXT_STEP_TEXT[request.status]


AWAITING_SUBJECT_CLOCK_RUNS = _("We need more information from you. Please reply below.")
# An extended request's next step starts as the extension email did (the reason is shown with the due date).
EXTENDED = _("We need more time to answer your request, as we wrote to you: we will answer by %(date)s.")
# Completed with some of the rights asked refused, or granted in part only (certificate.not_granted_in_full: data kept
# under a legal hold, a source not searched), as a rejection says it (Art. 12(4)).
COMPLETED_IN_PART = _(
    "Your request is complete, but we could not grant all of it; our letter explains why. You may complain to a "
    "supervisory authority and seek a judicial remedy."
)
# A fee proposed and not paid yet: what the fee letter offers (handling.DEFAULT_TEMPLATES[FEE]), and that the
# clock runs on meanwhile (nothing stops it for a fee), so a subject who neither pays nor withdraws may be refused.
FEE_PROPOSED = _(
    "We intend to charge a fee of %(fee)s for answering this request; our letter explains why. If you accept it, "
    "reply below and we will tell you how to pay. If you do not want to pay it, you may withdraw the request below, "
    "and nothing will be charged. The time we have to answer runs on meanwhile: if you neither pay the fee nor "
    "withdraw the request, we may refuse it."
)
# Completed with every right asked refused, each on its own ground: the letter gives each reason.
EVERY_RIGHT_REFUSED = _(
    "We answered your request, but could not grant any part of it; our letter explains why for each. You may "
    "complain to a supervisory authority and seek a judicial remedy."
)
# An open request whose package the subject can download.
DATA_READY = _("Your data is ready: you can download it from this page. We will close the request once we have answered every part of it.")
# The same, when every package to download found nothing: it holds our answer, not their data. By kind, as
# the export-ready email: access looks for any data about the subject (Art. 15(1)), portability only for
# what they gave us or their use of our services produced (Art. 20), so "none about you" would claim too much.
NOTHING_FOUND_READY = {
    ExportKind.ACCESS: _(
        "Our answer is ready: we found no personal data about you in the systems we searched. You can download it, with "
        "the list of the systems searched, from this page. We will close the request once we have answered every part of it."
    ),
    ExportKind.PORTABILITY: _(
        "Our answer is ready: we found no data that you gave us or that your use of our services produced in the systems "
        "we searched. You can download it, with the list of the systems searched, from this page. We will close the "
        "request once we have answered every part of it."
    ),
}
# The same for a portability package that left out the data the right does not cover: it was not read, so even
# "none that you gave us" would claim too much (the package's report says the same).
NOTHING_PORTABLE_FOUND_READY = _(
    "Our answer is ready: we found no data that the right to data portability covers in the systems we searched. "
    "You can download it, with the list of the systems searched and of the data that right does not cover, which we "
    "did not read, from this page. We will close the request once we have answered every part of it."
)
# Once the package can no longer be downloaded (used up, expired), the request is not back to
# collecting data: it was delivered.
DATA_DELIVERED = _("We made your data available to you. We will close the request once we have answered every part of it.")
# The same, when every package delivered found nothing: our answer was delivered, not their data. By kind, as
# NOTHING_FOUND_READY said it while it could be downloaded.
NOTHING_FOUND_DELIVERED = {
    ExportKind.ACCESS: _(
        "We gave you our answer: we found no personal data about you in the systems we searched. We will close the "
        "request once we have answered every part of it."
    ),
    ExportKind.PORTABILITY: _(
        "We gave you our answer: we found no data that you gave us or that your use of our services produced in the "
        "systems we searched. We will close the request once we have answered every part of it."
    ),
}
NOTHING_PORTABLE_FOUND_DELIVERED = _(
    "We gave you our answer: we found no data that the right to data portability covers in the systems we searched. "
    "We will close the request once we have answered every part of it."
)


# DATA_READY, DATA_DELIVERED and NOTHING_FOUND_READY, NOTHING_FOUND_DELIVERED as an agent who filed for the subject
# reads them: of the data of the person they act for, not theirs. The texts for a portability package that left
# data out read right for both.
DATA_READY_TO_AN_AGENT = _(
    "The data of the person you are acting for is ready: you can download it from this page. We will close the "
    "request once we have answered every part of it."
)
DATA_DELIVERED_TO_AN_AGENT = _(
    "We made the data of the person you are acting for available to you. We will close the request once we have "
    "answered every part of it."
)
NOTHING_FOUND_READY_TO_AN_AGENT = {
    ExportKind.ACCESS: _(
        "Our answer is ready: we found no personal data about the person you are acting for in the systems we searched. "
        "You can download it, with the list of the systems searched, from this page. We will close the request once we "
        "have answered every part of it."
    ),
    ExportKind.PORTABILITY: _(
        "Our answer is ready: we found no data that the person you are acting for gave us or that their use of our "
        "services produced in the systems we searched. You can download it, with the list of the systems searched, from "
        "this page. We will close the request once we have answered every part of it."
    ),
}
NOTHING_FOUND_DELIVERED_TO_AN_AGENT = {
    ExportKind.ACCESS: _(
        "We gave you our answer: we found no personal data about the person you are acting for in the systems we "
        "searched. We will close the request once we have answered every part of it."
    ),
    ExportKind.PORTABILITY: _(
        "We gave you our answer: we found no data that the person you are acting for gave us or that their use of our "
        "services produced in the systems we searched. We will close the request once we have answered every part of it."
    ),
}


def nothing_found_text(exports, texts: dict, left_out_text) -> str | None:
    """What the page says of `exports` (one request's, released) when every one found nothing, from `texts` by kind
    (or `left_out_text`, a portability package that left out data it did not read); None when one holds data.
    An access package that found nothing answers for the portable data too."""
    if not exports or not all(export.found_nothing for export in exports):
        return None
    if any(export.kind == ExportKind.ACCESS for export in exports):
        return texts[ExportKind.ACCESS]
    if any(export.manifest.get("categories_left_out") for export in exports):
        return left_out_text
    return texts[ExportKind.PORTABILITY]


def request_for_subject(*, reference: str, secret: str) -> PrivacyRequest:
    """The request a status link points at: its own link, or the one last sent from the lost-link page
    (`pending_secret`, which the view makes the request's link: intake.status_link_opened). A wrong secret is a
    404, like an unknown reference."""
    request = PrivacyRequest.objects.filter(reference=reference).prefetch_related("rights").first()
    if request is None:
        raise Http404("No such request")
    if constant_time_compare(request.secret, secret):
        return request
    if request.pending_secret and constant_time_compare(request.pending_secret, secret):
        return request
    raise Http404("No such request")


def completion_event_text(request: PrivacyRequest) -> str:
    """The timeline's "complete", as the letter tells it: all granted, some rights refused, or every one."""
    if not request.refused_rights:
        return SUBJECT_EVENT_TEXT["complete"]
    return COMPLETED_IN_PART_EVENT_TEXT if request.granted_rights else EVERY_RIGHT_REFUSED_EVENT_TEXT


def _recipient_name(request: PrivacyRequest) -> str:
    name = request.rights.filter(right=RequestType.PORTABILITY).values_list("recipient_name", flat=True).first()
    return name or str(RECIPIENT_NAME_PURGED)


def subject_timeline(request: PrivacyRequest) -> list[tuple]:
    """(time, text) for each event that concerns the subject, oldest first; of the subject's data and identity, for an
    agent who filed for them (SUBJECT_EVENT_TEXT_TO_AN_AGENT)."""
    events = AuditEvent.objects.filter(request=request, action__in=SUBJECT_EVENT_TEXT).only("action", "created_at", "actor_kind")
    timeline, seen = [], set()
    first_texts, again_texts = SUBJECT_EVENT_TEXT, SUBJECT_EVENT_TEXT_AGAIN
    if request.filed_by_agent:
        first_texts = {**SUBJECT_EVENT_TEXT, **SUBJECT_EVENT_TEXT_TO_AN_AGENT}
        again_texts = {**SUBJECT_EVENT_TEXT_AGAIN, **SUBJECT_EVENT_TEXT_AGAIN_TO_AN_AGENT}
    for event in events:
        texts = again_texts if event.action in seen and event.action in again_texts else first_texts
        if event.actor_kind == ActorKind.ORGANISATION and event.action in SUBJECT_EVENT_TEXT_BY_ORGANISATION:
            texts = SUBJECT_EVENT_TEXT_BY_ORGANISATION
        text = completion_event_text(request) if event.action == "complete" else texts[event.action]
        if event.action in NAMES_THE_RECIPIENT:
            text = text % {"organisation": _recipient_name(request)}
        # Received when the controller received it: a letter or call staff record later, before its recording.
        moment = request.received_at if event.action == "submitted" else event.created_at
        timeline.append((moment, text))
        seen.add(event.action)
    return timeline


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
    due: str = ""  # "overdue", "week" or "paused"
    channel: str = ""
    organisation: str = ""  # an organisation's public id
    q: str = ""
    sort: str = "due_on"
    invalid: bool = False  # a filter value could not be read: nothing matches
    search_lost: bool = False  # (with invalid) the search named is no longer kept in the session
    search_too_short: bool = False  # (with invalid) the search would list most requests (search_too_broad)


SCOPE_STATUSES = {"open": OPEN_STATUSES, "closed": CLOSED_STATUSES, "all": None}
SORTS = {
    "due_on": [F("due_on").asc(nulls_last=True), "id"],
    "-received_at": ["-received_at", "-id"],
    "received_at": ["received_at", "id"],
    "reference": ["reference"],
}
FACETS = ("status", "type", "regime", "assignee", "due", "channel", "organisation")


# A reference as staff have it from a phone call or a letter: whole or in part ("00123", "2026-00123"), in any case,
# with spaces or nothing for its hyphens. What is typed is compared with the reference without its hyphens.
REFERENCE_TYPED = re.compile(r"[DSRdsr0-9 -]+")
WHOLE_REFERENCE = re.compile(r"DSR([0-9]{4})([0-9]{5,9})")  # converters.ReferenceConverter's, without the hyphens
# A part of one: digits, after the end of "DSR" if it is given (the year then follows at once).
REFERENCE_PART = re.compile(r"(DSR|SR|R)?([0-9]+)")
# A part must give this many digits of the reference's number (after the year): the year, or "2026-0", is the
# start of almost every reference, and a search would list them all, round the queue's filters.
MIN_REFERENCE_NUMBER_DIGITS = 4
# A name (name_search_key: letters and digits) must give this many: "a" or "an" is in most names.
MIN_NAME_CHARACTERS = 3
PHONE_TYPED = re.compile(r"[+\d][\d\s().-]{5,}")
# A phone number is matched whole: fewer digits than this are no one's number, but may be part of a reference.
MIN_PHONE_DIGITS = 8
# Four digits, then a hyphen or space, then more: the year of a reference, then the start of its number ("2026-001").
YEAR_THEN_NUMBER = re.compile(r"[0-9]{4}[ -]+[0-9]+")


def _reference_search(q: str) -> Q | None:
    """The requests whose reference is `q` or contains it, or None when `q` cannot be (part of) a reference or
    gives fewer than MIN_REFERENCE_NUMBER_DIGITS digits of its number."""
    if not REFERENCE_TYPED.fullmatch(q):
        return None
    typed = re.sub(r"[ -]", "", q).upper()
    whole = WHOLE_REFERENCE.fullmatch(typed)
    if whole:
        # Exact: DSR-2026-10012 is also a part of DSR-2026-100123.
        return Q(reference=f"DSR-{whole[1]}-{whole[2]}")
    part = REFERENCE_PART.fullmatch(typed)
    if part is None:
        return None
    prefix, digits = part.groups()
    # After "DSR" (or its end) come the four digits of the year: they narrow nothing. So do four digits typed before
    # a separator ("2026-001"): the year, then the number's start.
    number_digits = len(digits) - 4 if prefix or YEAR_THEN_NUMBER.fullmatch(q) else len(digits)
    if number_digits < MIN_REFERENCE_NUMBER_DIGITS:
        return None
    # Without a prefix the digits may straddle the year ("20260" is "2026-0"): the number itself, after the last
    # hyphen, must hold the last four. The first condition is the one the trigram index (migration 0070) serves;
    # the second is not anchored at the start, where every reference's "DSR-" would lead the planner to the
    # reference's own index, which narrows nothing.
    last_digits = digits[-MIN_REFERENCE_NUMBER_DIGITS:]
    return Q(Contains(Replace("reference", Value("-"), Value("")), typed)) & Q(
        reference__regex=rf"-[0-9]*{last_digits}[0-9]*$"
    )


def search_too_broad(q: str) -> bool:
    """Whether the queue's search `q` is too short to narrow the requests to a few: part of a reference that gives
    fewer than MIN_REFERENCE_NUMBER_DIGITS digits of its number ("2026", "DSR", "2026-0"), or a name of fewer than
    MIN_NAME_CHARACTERS letters, or a phone number of fewer than MIN_PHONE_DIGITS digits. Such a search matches
    nothing (_search), rather than most requests. An email address (matched whole) is never too broad."""
    q = q.strip()
    if not q or "@" in q:
        return False
    if REFERENCE_TYPED.fullmatch(q) and _reference_search(q) is not None:
        return False
    if PHONE_TYPED.fullmatch(q):
        return len(re.sub(r"[^0-9]", "", q)) < MIN_PHONE_DIGITS
    if REFERENCE_TYPED.fullmatch(q):  # digits, and of letters only those of "DSR": no one's name
        return True
    return len(name_search_key(q)) < MIN_NAME_CHARACTERS


def _search(queryset, q: str):
    q = q.strip()
    if not q:
        return queryset
    if "@" in q:
        # The address of whoever filed: the subject's, or the agent's who acted for them (its partial index needs the
        # condition spelt out).
        return queryset.filter(Q(subject_email__iexact=q) | (Q(agent_email__iexact=q) & ~Q(agent_email="")))
    if search_too_broad(q):
        return queryset.none()
    reference = _reference_search(q)
    if PHONE_TYPED.fullmatch(q):
        phone = Q(subject_phone=to_e164(q) or q)
        # Digits may be a phone number or part of a reference ("2026 00123" could be either): both are looked for.
        return queryset.filter(phone if reference is None else phone | reference)
    if reference is not None:
        return queryset.filter(reference)
    return queryset.filter(name_for_search__contains=name_search_key(q))


def unassigned() -> Q:
    """Requests waiting for someone to take them: the home page's "unassigned" and the queue's "Unassigned"
    filter, which it links to. Not one awaiting the subject's email confirmation: that is not yet work for
    the team (it may never be confirmed), it cannot be assigned, and routing assigns it once confirmed."""
    return Q(assignee__isnull=True) & ~Q(status=Status.AWAITING_VERIFICATION)


def clock_running() -> Q:
    """Requests whose clock runs: open and verified, and not paused (`clock_paused`: by staff, or
    while waiting for the subject where the regime stops the clock and the request was not overdue)."""
    return Q(status__in=VERIFIED_OPEN, clock_paused=False)


def clock_paused() -> Q:
    """Requests whose clock stands still: out of the overdue and due-soon lists and their alerts, so listed
    apart, lest a pause nobody ends (the subject never asked, or never answering) hide a request for good."""
    return Q(status__in=VERIFIED_OPEN, clock_paused=True)


def answer_is_late(request: PrivacyRequest) -> bool:
    """Whether the answer to `request` is late: its due date has passed while its clock runs (the
    queue's "overdue", clock_running, for one request). A paused clock has stopped the period: the
    due date then moves on by the days paused, so it is not late (GDPR Art. 12(3))."""
    return (
        request.status in VERIFIED_OPEN
        and not request.clock_paused
        and request.due_on is not None
        and request.due_on < timezone.localdate()
    )


def _due_bucket(today: datetime.date):
    """The due facet's column: clock_running() and clock_paused() with the due filters' dates, the status tested
    once (the queue's counts compute this for each of 100,000 open requests)."""
    return Case(
        When(~Q(status__in=VERIFIED_OPEN), then=Value("")),
        When(clock_paused=True, then=Value("paused")),
        When(due_on__lt=today, then=Value("overdue")),
        When(due_on__lte=today + datetime.timedelta(days=DUE_SOON_DAYS), then=Value("week")),
        default=Value(""),
        output_field=CharField(),
    )


def _scoped(filters: QueueFilters):
    """The scope (open, closed, all) and the search: what the facet counts are taken over."""
    if filters.invalid:
        return PrivacyRequest.objects.none()
    queryset = PrivacyRequest.objects.all()
    statuses = SCOPE_STATUSES.get(filters.scope, OPEN_STATUSES)
    if statuses is not None:
        queryset = queryset.filter(status__in=statuses)
    return _search(queryset, filters.q)


def _facet_condition(
    facet: str, value: str, *, user, today: datetime.date, organisation_ids: dict, on_closed_totals: bool = False
):
    """The condition a facet's value puts on requests, or on ClosedRequestCount rows (ids stored with 0 for none)."""
    if facet == "status":
        return Q(status=value)
    if facet == "type":
        bit = rights_mask([value])
        return Exact(F("rights_mask").bitand(bit), bit)
    if facet in ("regime", "channel"):
        return Q(**{facet: value})
    if facet == "assignee":
        if value == "none":
            return Q(assignee_key=0) if on_closed_totals else unassigned()
        # The user's id, read once by the query itself (none for an unknown name: nothing matches), rather than
        # a join to the users for each of the 100,000 open requests the counts read.
        wanted = user.id if value == "me" else Subquery(get_user_model().objects.filter(username=value).values("id")[:1])
        return Q(assignee_key=wanted) if on_closed_totals else Q(assignee_id=wanted)
    if facet == "due":
        if on_closed_totals:
            return Q(pk__in=[])  # a closed request is never overdue or due soon
        if value == "overdue":
            return clock_running() & Q(due_on__lt=today)
        if value == "paused":
            return clock_paused()
        return clock_running() & Q(due_on__gte=today, due_on__lte=today + datetime.timedelta(days=DUE_SOON_DAYS))
    if facet == "organisation":
        key = "organisation_key" if on_closed_totals else "organisation_id"
        return Q(**{key: organisation_ids.get(value, -1)})
    raise ValueError(facet)


def _active_conditions(filters: QueueFilters, *, user, today: datetime.date, on_closed_totals: bool = False) -> dict:
    organisation_ids = _organisation_ids(filters)
    return {
        facet: _facet_condition(
            facet,
            getattr(filters, facet),
            user=user,
            today=today,
            organisation_ids=organisation_ids,
            on_closed_totals=on_closed_totals,
        )
        for facet in FACETS
        if getattr(filters, facet)
    }


def queue_queryset(filters: QueueFilters, *, user, today: datetime.date | None = None):
    """The requests matching every filter, sorted, ready to paginate."""
    today = today or timezone.localdate()
    scope = SCOPE_STATUSES.get(filters.scope, OPEN_STATUSES)
    if filters.status and not filters.invalid and (scope is None or filters.status in scope):
        # A status inside the scope says it all: repeating the scope's IN list
        # only makes the planner underestimate the rows.
        queryset = _search(PrivacyRequest.objects.all(), filters.q)
    else:
        queryset = _scoped(filters)
    for condition in _active_conditions(filters, user=user, today=today).values():
        queryset = queryset.filter(condition)
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
# The column each facet is counted by (type: the rights bitmask, split into types afterwards).
FACET_COLUMNS = {
    "status": "status",
    "type": "rights_mask",
    "regime": "regime",
    "assignee": "assignee_bucket",
    "due": "due_bucket",
    "channel": "channel",
    "organisation": "organisation_id",
}
# How PostgreSQL groups the facets' columns (_count_with_grouping_sets): one grouping set for each facet would cost
# a hash lookup per request for each, so the facets with few values share sets (status and due, 36 combinations at
# most; regime, channel and the rights asked, a few hundred), and each facet's counts are summed over its set's rows.
GROUPING_SETS = (("status", "due"), ("regime", "channel", "type"), ("assignee",), ("organisation",))


def queue_facets(filters: QueueFilters, *, user, today: datetime.date | None = None) -> tuple[dict, int]:
    """Counts for every filter option, each with the other filters applied, and the total matching.

    The scoped and searched requests are annotated with one true/false
    column per active filter; the counts come from one GROUP BY over them
    (GROUPING SETS on PostgreSQL, so a single scan). The page costs the same
    few queries whatever its size and however many filters are set.
    """
    today = today or timezone.localdate()
    conditions = _active_conditions(filters, user=user, today=today)
    base = _scoped(filters).annotate(
        due_bucket=_due_bucket(today),
        assignee_bucket=_assignee_bucket(),
        n=Value(1, output_field=IntegerField()),
        **_match_flags(conditions),
    )
    count = _count_with_grouping_sets if connection.vendor == "postgresql" else _count_by_combination
    scope = SCOPE_STATUSES.get(filters.scope, OPEN_STATUSES)
    closed = CLOSED_STATUSES if scope is None else CLOSED_STATUSES & set(scope)
    if _use_closed_totals(filters, closed):
        # Closed requests are counted from their running totals, not by a scan
        # of every request ever received; only the open ones are counted live
        # (none when only closed requests are shown: one query, no second connection).
        parts = [_closed_totals(filters, closed, user=user, today=today)]
        if scope is None:  # every request: the open ones too
            parts.insert(0, base.filter(status__in=OPEN_STATUSES))
    else:
        parts = [base]
    column_counts, total = count(parts, list(conditions))
    return _facet_options(filters, column_counts, user=user), total


def _assignee_bucket():
    """The assignee facet's column: the assignee's id, None for unassigned(), and for a request awaiting the
    subject's confirmation a value no option shows (it is nobody's yet, and not unassigned work either)."""
    return Case(
        When(status=Status.AWAITING_VERIFICATION, then=Value(UNCONFIRMED)),
        default=F("assignee_id"),
        output_field=IntegerField(),
    )


UNCONFIRMED = -1  # the assignee facet's value for a request awaiting confirmation: no user has this id


def _count_with_grouping_sets(parts: list, active: list[str]) -> tuple[dict, int]:
    """PostgreSQL: per part one pass, grouped by the facets' GROUPING_SETS, each facet counted with the other filters.

    Each part's rows carry the facet columns, a match_<facet> flag per active
    filter, and `n`: how many requests the row stands for (1 for a request).
    Several parts (open requests, closed totals) are counted at the same time
    on their own connections, one core each, unless a transaction is open
    (another connection would not see its rows).
    """
    queries = [query for query in (_grouping_sets_query(part, active) for part in parts) if query]
    if len(queries) > 1 and not connection.in_atomic_block:
        with ThreadPoolExecutor(max_workers=len(queries) - 1) as pool:
            others = [pool.submit(_run_on_own_connection, query) for query in queries[1:]]
            results = [_run_grouping_sets(queries[0]), *(future.result() for future in others)]
    else:
        results = [_run_grouping_sets(query) for query in queries]
    column_counts = {facet: Counter() for facet in FACETS}
    total = 0
    for counts, part_total in results:
        for facet in FACETS:
            column_counts[facet].update(counts[facet])
        total += part_total
    return column_counts, total


def _grouping_sets_query(part, active: list[str]) -> tuple[str, list] | None:
    columns = list(FACET_COLUMNS.values())
    wanted = [*columns, *(f"match_{facet}" for facet in active), "n"]
    try:
        # order_by(): the model's default ordering would sort every row for nothing.
        sql, params = part.values(*wanted).order_by().query.sql_with_params()
    except EmptyResultSet:  # this part matches nothing (an unreadable filter value)
        return None

    def count_with_others(facet: str | None) -> str:
        others = [f"match_{other}" for other in active if other != facet]
        where = f" FILTER (WHERE {' AND '.join(others)})" if others else ""
        return f"coalesce(sum(n){where}, 0)::bigint"

    counts = ", ".join(count_with_others(facet) for facet in FACETS)
    grouping_sets = ", ".join(f"({', '.join(FACET_COLUMNS[facet] for facet in facets)})" for facets in GROUPING_SETS)
    query = (
        f"SELECT {', '.join(columns)}, GROUPING({', '.join(columns)}), {counts}, {count_with_others(None)} "
        f"FROM ({sql}) AS base GROUP BY GROUPING SETS ({grouping_sets}, ())"
    )
    return query, list(params)


def _run_grouping_sets(query: tuple[str, list]) -> tuple[dict, int]:
    columns = list(FACET_COLUMNS.values())
    width = len(columns)
    everything = (1 << width) - 1  # GROUPING() of the () set: a bit for each column, the first the highest
    facets_of_set = {
        everything ^ sum(1 << (width - 1 - columns.index(FACET_COLUMNS[facet])) for facet in facets): facets
        for facets in GROUPING_SETS
    }
    column_counts = {facet: Counter() for facet in FACETS}
    total = 0
    with connection.cursor() as cursor:
        cursor.execute(*query)
        for row in cursor.fetchall():
            grouping, facet_counts = row[width], row[width + 1 : width + 1 + len(FACETS)]
            if grouping == everything:
                total = row[-1]
                continue
            for facet in facets_of_set[grouping]:
                value = row[columns.index(FACET_COLUMNS[facet])]
                column_counts[facet][value] += facet_counts[FACETS.index(facet)]
    return column_counts, total


def _run_on_own_connection(query: tuple[str, list]) -> tuple[dict, int]:
    """In a worker thread: Django gives the thread its own connection, closed when done."""
    try:
        return _run_grouping_sets(query)
    finally:
        connection.close()


def _count_by_combination(parts: list, active: list[str]) -> tuple[dict, int]:
    """Other databases (the SQLite default): group each part by every facet column at once, sum in Python."""
    match_columns = [f"match_{facet}" for facet in active]
    rows = (
        {**row, "n": row["weight"]}
        for part in parts
        for row in part.values(*FACET_COLUMNS.values(), *match_columns).annotate(weight=Sum("n")).order_by()
    )
    return _accumulate(rows, active)


def _use_closed_totals(filters: QueueFilters, closed) -> bool:
    # A search narrows the rows to a handful, and the totals cannot be searched.
    return bool(closed) and not filters.q and not filters.invalid


def _match_flags(conditions: dict) -> dict:
    """One true/false column per active filter, for counting each facet with the other filters."""
    return {
        f"match_{facet}": Case(When(condition, then=True), default=False, output_field=BooleanField())
        for facet, condition in conditions.items()
    }


def _closed_totals(filters: QueueFilters, statuses, *, user, today: datetime.date):
    """ClosedRequestCount rows shaped like requests (same column names, `n` as the weight), flagged by the filters."""
    conditions = _active_conditions(filters, user=user, today=today, on_closed_totals=True)
    return ClosedRequestCount.objects.filter(status__in=statuses).annotate(
        assignee_bucket=NullIf(F("assignee_key"), 0),  # a closed request is never awaiting confirmation
        organisation_id=NullIf(F("organisation_key"), 0),
        due_bucket=Value("", output_field=CharField()),  # a closed request is never overdue
        n=F("count"),
        **_match_flags(conditions),
    )


def _accumulate(rows, active: list[str]) -> tuple[dict, int]:
    """Sum rows (facet columns, match_<facet> flags, n) into per-facet counts with the other filters applied."""
    column_counts = {facet: Counter() for facet in FACETS}
    total = 0
    for row in rows:
        matches = {facet: bool(row[f"match_{facet}"]) for facet in active}
        if all(matches.values()):
            total += row["n"]
        for facet in FACETS:
            if all(ok for other, ok in matches.items() if other != facet):
                column_counts[facet][row[FACET_COLUMNS[facet]]] += row["n"]
    return column_counts, total


def _facet_options(filters: QueueFilters, column_counts: dict, *, user) -> dict:
    """Turn counts by column value into the options each filter offers."""
    type_values = list(RequestType.values)
    counts = {facet: Counter() for facet in FACETS}
    for facet in ("status", "regime", "channel"):
        counts[facet] = column_counts[facet]
    for mask, n in column_counts["type"].items():
        for bit, value in enumerate(type_values):
            if mask & (1 << bit):
                counts["type"][value] += n
    counts["due"] = Counter({bucket: n for bucket, n in column_counts["due"].items() if bucket})
    usernames = dict(
        get_user_model().objects.filter(id__in=set(column_counts["assignee"]) - {None, UNCONFIRMED}).values_list("id", "username")
    )
    for assignee_id, n in column_counts["assignee"].items():
        if assignee_id == UNCONFIRMED:
            continue
        if assignee_id is None:
            counts["assignee"]["none"] += n
            continue
        counts["assignee"][usernames.get(assignee_id, "")] += n
        if assignee_id == user.id:
            counts["assignee"]["me"] += n
    organisations = {
        org_id: (str(public_id), name)
        for org_id, public_id, name in Organisation.objects.filter(
            id__in=set(column_counts["organisation"]) - {None}
        ).values_list("id", "public_id", "name")
    }
    for org_id, n in column_counts["organisation"].items():
        if org_id is not None:
            counts["organisation"][organisations[org_id][0]] += n

    labels = {
        "status": dict(Status.choices),
        "type": RIGHTS_THE_SUBJECT_ASKS,
        "regime": dict(Regime.choices),
        "channel": dict(Channel.choices),
        "assignee": {"me": _("Mine"), "none": _("Unassigned"), **{name: name for name in sorted(usernames.values())}},
        "due": {"overdue": _("Overdue"), "week": _("Due within 7 days"), "paused": _("Clock paused")},
        "organisation": {public_id: name for public_id, name in sorted(organisations.values(), key=lambda o: o[1])},
    }
    return {
        facet: [
            FacetOption(value, str(label), counts[facet][value], getattr(filters, facet) == value)
            for value, label in labels[facet].items()
            if counts[facet][value] or getattr(filters, facet) == value
        ]
        for facet in FACETS
    }


def workload_summary(*, today: datetime.date | None = None, user=None, list_size: int = 10) -> dict:
    """Counts and short lists for the staff home page and the DPO's digest."""
    today = today or timezone.localdate()
    open_requests = PrivacyRequest.objects.filter(status__in=VERIFIED_OPEN).select_related("assignee").order_by(
        F("due_on").asc(nulls_last=True), "id"
    )
    soon = today + datetime.timedelta(days=DUE_SOON_DAYS)
    running = open_requests.filter(clock_running())
    groups = {
        "overdue": running.filter(due_on__lt=today),
        "due_soon": running.filter(due_on__gte=today, due_on__lte=soon),
        "unassigned": open_requests.filter(unassigned()),
        "paused": open_requests.filter(clock_paused()),
        "awaiting_verification": PrivacyRequest.objects.filter(status=Status.AWAITING_VERIFICATION).order_by("-received_at"),
        # CCPA: receipt confirmed within 10 business days. The email does it for a request with an address;
        # one recorded from a letter or a call needs staff to (handling.receipt_confirm).
        "receipt_to_confirm": PrivacyRequest.objects.filter(
            status__in=OPEN_STATUSES, acknowledged_at__isnull=True, acknowledgement_due_on__lte=soon
        ).order_by("acknowledgement_due_on", "id"),
        "open": open_requests,
    }
    if user is not None:
        groups["mine"] = open_requests.filter(assignee=user)
    summary = {}
    for name, queryset in groups.items():
        summary[f"{name}_count"] = queryset.count()
        summary[name] = list(queryset[:list_size])
    summary["holds_ended"] = holds_ended(today=today)
    # Work on open requests that stopped and waits for a person, shown now rather than at the next reminder: an
    # action a source refused (failed, or refused at its dry run) or found changed, a lifting whose notice must be
    # posted (the subject cannot be emailed, maybe only since it was planned: services.actions.lift_notice_to_post),
    # a notice that could not go.
    notice_to_post = (
        Q(kind=ActionKind.LIFT_RESTRICTION, lift_notice__isnull=False, lift_notice_posted_at__isnull=True)
        & Q(request__personal_data_purged_at__isnull=True)  # no address left to post to (lifting.notice_posted_refusal)
        & ~Q(status__in=[ActionStatus.DONE, ActionStatus.CANCELLED])
        & (Q(request__subject_email_rejected_at__isnull=False) | no_email_to_write_to("request__"))
    )
    stopped_actions = (
        # A restriction's lifting goes on after its request closed: it may stop then too.
        SourceAction.objects.filter(Q(request__status__in=OPEN_STATUSES) | Q(kind=ActionKind.LIFT_RESTRICTION))
        .filter(Q(status__in=[ActionStatus.FAILED, ActionStatus.STALE]) | Q(status=ActionStatus.PLANNED) & ~Q(error="") | notice_to_post)
        .annotate(notice_to_post=ExpressionWrapper(notice_to_post, output_field=BooleanField()))
        .select_related("request", "source")
        .order_by("request__due_on", "id")
    )
    failed_notices = (
        RecipientNotice.objects.filter(status=NoticeStatus.FAILED, request__status__in=OPEN_STATUSES)
        .select_related("request", "recipient")
        .order_by("request__due_on", "id")
    )
    summary["stopped_actions"] = list(stopped_actions[:list_size])
    summary["failed_notices"] = list(failed_notices[:list_size])
    return summary


HOLDS_ENDED_DAYS = 7


def holds_ended(*, today: datetime.date) -> list[dict]:
    """Data that erasures kept under a legal hold which ended in the past week: the completion letter
    told the subject it would be kept "until then at the latest", so it is now due for erasure. Only what
    the letter called kept (certificate.kept): not a held category where the subject had no rows, nor an
    erasure that could not search its source (certificate.searched_nothing), which kept nothing of theirs
    that we know of."""
    since = (today - datetime.timedelta(days=HOLDS_ENDED_DAYS)).isoformat()
    erasures = (
        SourceAction.objects.filter(kind=ActionKind.ERASE, status=ActionStatus.DONE)
        .exclude(result__held=[], dry_run__pseudonym_holds=[])
        .select_related("request", "source")
        .order_by("finished_at")
    )
    return [
        {"reference": action.request.reference, "source": action.source.name, "category": hold["category"], "until": hold["until"]}
        for action in erasures
        if not searched_nothing(action)
        for hold in [*kept(action), *_codes_as_held(action)]
        if since <= hold["until"] < today.isoformat()
    ]


def _codes_as_held(action: SourceAction) -> list[dict]:
    """The codes an erasure kept under a hold on them (certificate.codes_kept), named by their fields: those are
    what is due for erasure when the hold ends, not the category, whose other data was erased."""
    return [
        {**hold, "category": ", ".join(f"{hold['category']}.{name}" for name in hold["fields"])} for hold in codes_kept(action)
    ]


def corrected_identifiers(*, request: PrivacyRequest, source: SourceSystem) -> list[str]:
    """The identifiers the request's rectification, once carried out, wrote into `source`'s rows in place of the
    ones the subject gave: whatever searches the source for the subject after it (a restriction, an erasure, the
    data package) finds those rows by them now.

    Only where the rectification changed values did it write the corrected identifier: one that found no row (none
    matched, or no identifier of the source's kind was verified) wrote it nowhere, and rows holding that value are
    someone else's. Values as written into the source, capitals and all: that is what its rows hold now.
    """
    rectified = SourceAction.objects.filter(
        request=request, source=source, kind=ActionKind.RECTIFY, status=ActionStatus.DONE
    ).first()
    if rectified is None:
        return []
    written = set(rectified.changed_categories())
    changes = request.rectification_changes.filter(category__source=source).select_related("category")
    # A purged request's values are blank: searching by "" could match other people's rows with no identifier.
    return [
        change.value
        for change in changes
        if change.value and change.field == change.category.identity_field and change.category.slug in written
    ]


def password_phone(request: PrivacyRequest) -> str | None:
    """The phone number an encrypted package's password may be texted to, or None: one verified by a method
    that ties it to the subject's line (LINE_PROVING_METHODS). The staff page offers encryption, a release
    sends the password and the task texts it only to this number."""
    return (
        request.identities.filter(
            kind=IdentityKind.PHONE, verified_at__isnull=False, verification_method__in=LINE_PROVING_METHODS
        )
        .values_list("value", flat=True)
        .first()
    )


def identities_verified_for_someone_else(request: PrivacyRequest) -> dict[int, list[str]]:
    """For each of `request`'s identifiers (by id) verified on another request of someone else (another name, or
    another email address where both have one), those requests' references. One person's phone number on two
    people's requests is how one would get the other's data: the staff page warns, before and after the
    verification, and staff check whose it is. A warning only: a shared line or a family's account is no attack."""
    identities = list(request.identities.all())
    if not identities:
        return {}
    same_value = Q()
    for identity in identities:
        same_value |= Q(kind=identity.kind, value=identity.value)
    name, email = comparable_name(request.subject_name), request.subject_email.lower()
    found: dict[int, list[str]] = {}
    others = (
        SubjectIdentity.objects.filter(same_value, verified_at__isnull=False)
        .exclude(request=request)
        .values_list("kind", "value", "request__reference", "request__subject_name", "request__subject_email")
        .order_by("request__reference")
    )
    for kind, value, reference, other_name, other_email in others:
        if comparable_name(other_name) == name and not (email and other_email and other_email.lower() != email):
            continue
        identity = next(identity for identity in identities if (identity.kind, identity.value) == (kind, value))
        found.setdefault(identity.id, []).append(reference)
    return found


PREVIEW_ROWS = 5


def export_sources():
    """The active sources an export searches, with all its report shows of them, in the same number of
    queries however many sources there are (translations in every language: the report picks its own)."""
    return (
        SourceSystem.objects.filter(active=True)
        .prefetch_related("categories__translations", "recipients__translations", "translations")
        .order_by("name")
    )


# The rights whose answer is the access report (every Art. 15 fact of a source, its categories, its recipients), and
# those whose letters name the sources acted on and the recipients told of it (Art. 19).
REPORT_RIGHTS = {RequestType.ACCESS, RequestType.PORTABILITY}
ACTION_RIGHTS = {RequestType.ERASURE, RequestType.RECTIFICATION, RequestType.RESTRICTION}


@dataclass(frozen=True)
class UntranslatedItem:
    """An inventory item (source, category, recipient, field, legal hold or suppression list) whose `fields` a
    request's letters or report would give in the default language, for want of a translation into the request's."""

    item: object
    fields: list[str]


def untranslated_inventory_texts(request: PrivacyRequest) -> list[UntranslatedItem]:
    """The inventory texts this request's letters and report would use and give in the default language, for
    want of a translation into the request's (each item's texts_untranslated_in, the fallback the letters use):
    for the DPO to fill in first. Empty for a request in the default language. The active sources are those an
    export searches and an action is planned on; a few queries, however many sources."""
    language = request.language
    if language == settings.LANGUAGE_CODE:
        return []
    rights = set(request.granted_rights)
    # The completion letter names the lists an objection, a consent withdrawal or a limit on use covers.
    purposes = SuppressionPurpose.objects.filter(
        pk__in=CoveredPurpose.objects.filter(right__request=request, right__right__in=rights).values("purpose")
    ).prefetch_related("translations")
    listed = [(purpose, purpose.TRANSLATED_FIELDS) for purpose in purposes]
    reports, acts = bool(rights & REPORT_RIGHTS), bool(rights & ACTION_RIGHTS)
    if not (reports or acts):
        return _untranslated(listed, language)
    sources = SourceSystem.objects.filter(active=True).order_by("name").prefetch_related(
        "translations", "recipients__translations", "categories__translations", "categories__fields__translations",
        # A hold is named by its category, and a category by its source.
        Prefetch("legal_holds", LegalHold.objects.select_related("category__source").prefetch_related("translations")),
    )
    today = timezone.localdate()
    used = []  # (item, the fields the letters or the report read of it)
    for source in sources:
        # The letters name a source, and a recipient with its country; the report gives all their texts.
        used.append((source, SourceSystem.TRANSLATED_FIELDS if reports else ("name",)))
        used += [
            (recipient, recipient.TRANSLATED_FIELDS if reports else ("name", "country")) for recipient in source.recipients.all()
        ]
        for category in source.categories.all():
            if reports:
                used.append((category, category.TRANSLATED_FIELDS))
            # An erasure's letter names the fields it pseudonymised or left as they were in the rows it anonymised,
            # a rectification's the fields it corrected.
            named_by_erasure = (EraseStrategy.HASH, EraseStrategy.KEEP) if category.erase_method == EraseMethod.ANONYMISE else ()
            used += [
                (field, field.TRANSLATED_FIELDS)
                for field in category.fields.all()
                if RequestType.ERASURE in rights and field.erase_strategy in named_by_erasure
                or RequestType.RECTIFICATION in rights and field.rectifiable
            ]
        if RequestType.ERASURE in rights:
            # The completion letter quotes the basis of a hold that kept data.
            used += [(hold, hold.TRANSLATED_FIELDS) for hold in source.legal_holds.all() if hold.until >= today]
    return _untranslated(used + listed, language)


def _untranslated(used: list[tuple[object, tuple[str, ...]]], language: str) -> list[UntranslatedItem]:
    """Of each (item, the fields the letters or the report read of it), the fields given in the default language."""
    untranslated = [(item, [field for field in item.texts_untranslated_in(language) if field in fields]) for item, fields in used]
    return [UntranslatedItem(item, fields) for item, fields in untranslated if fields]


def export_previews(export) -> list[dict]:
    """Each file of a compiled package with its first rows, for staff review (read from the ZIP, not loaded whole)."""
    import zipfile

    import pyzipper
    from django.core.files.storage import default_storage

    from requests_app.exports.package import source_of_data_file

    previews = []
    with default_storage.open(export.storage_name, "rb") as handle:
        archive = pyzipper.AESZipFile(handle) if export.encrypted else zipfile.ZipFile(handle)
        if export.encrypted and export.pending_password:
            archive.setpassword(export.pending_password.encode())
        with archive:
            for entry in export.manifest.get("files", []):
                lines = []
                if source_of_data_file(entry["path"]):
                    with archive.open(entry["path"]) as member:
                        for _, line in zip(range(PREVIEW_ROWS + 1), member):
                            # utf-8-sig: without the CSV's byte-order mark (exports.package.CSV_BYTE_ORDER_MARK).
                            lines.append(line.decode("utf-8-sig", "replace").rstrip("\n"))
                previews.append({**entry, "first_lines": lines})
    return previews


def downloadable_exports(request: PrivacyRequest) -> list:
    """Released packages the subject can still download."""
    return list(request.exports.downloadable())


def webhook_deliveries(*, organisation=None, endpoint=None, status: str = ""):
    """The webhook delivery log, newest first, of one organisation, one endpoint (public ids) or in one state."""
    deliveries = WebhookDelivery.objects.select_related("endpoint__organisation").order_by("-created_at", "-pk")
    # Filtered by the endpoints' own ids, looked up first, rather than joined by their public ids: PostgreSQL then
    # knows which endpoints it reads, reads a quiet endpoint's latest deliveries from the index that begins with
    # the endpoint, and does not walk the whole log from its newest line for an endpoint whose lines are all old.
    if organisation:
        endpoints = WebhookEndpoint.objects.filter(organisation__public_id=organisation)
        deliveries = deliveries.filter(endpoint__in=list(endpoints.values_list("pk", flat=True)))
    if endpoint:
        endpoints = WebhookEndpoint.objects.filter(public_id=endpoint)
        deliveries = deliveries.filter(endpoint__in=list(endpoints.values_list("pk", flat=True)))
    if status:
        deliveries = deliveries.filter(status=status)
    return deliveries


# How far before its transaction's start, as the database records it, a change's updated_at may be: the application
# hosts' clocks against the database server's (NTP keeps them within milliseconds), and a moment taken in Python just
# before the transaction's first statement reaches the server.
CHANGES_CLOCK_MARGIN = datetime.timedelta(seconds=5)


def changes_unseen_margin() -> datetime.timedelta:
    """How far back changes_committed_before goes when the database hides some sessions' transactions from the
    application's role: no transaction of the application outlives the longest task's hard time limit (the worker
    is killed, its connection closed, its transaction rolled back; a web request is cut off far sooner), and the
    clocks' margin on top."""
    longest_task = max(settings.SOURCE_ACTION_TIME_LIMIT, settings.EXPORT_TASK_TIME_LIMIT, settings.CELERY_TASK_TIME_LIMIT)
    return datetime.timedelta(seconds=longest_task) + CHANGES_CLOCK_MARGIN


def changes_committed_before() -> datetime.datetime | None:
    """A moment before which every change to a request is committed: the start of the oldest transaction still open
    on the database (now, if none is), less CHANGES_CLOCK_MARGIN. Read it before the query it is for: every change
    dated earlier was then committed, and that query sees it.

    A change's updated_at is taken inside its transaction, so after the transaction began, and the change is seen only
    once it commits, which may be long after: a list filtered on updated_at may not show it yet, and a later one from
    the moment of the first would never show it. PostgreSQL shows a role the start of its own sessions' transactions
    only (their `state` too), unless it is a superuser or has pg_read_all_stats: every process of the application
    connects as the same role (one environment, README), or is granted it. A session whose state is hidden may run a
    transaction of another process of the application, started any time: the moment then goes back as far as such a
    transaction may have begun (changes_unseen_margin), and a warning is logged. None on a database that does not tell (SQLite, in development).
    """
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT now(), least(now(), min(xact_start)), count(*) FILTER (WHERE backend_type IS NULL OR state IS NULL)
            FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid()
            -- A hidden session's backend_type is hidden too.
            AND (backend_type = 'client backend' OR backend_type IS NULL)
            """
        )
        now, oldest_open, hidden = cursor.fetchone()
    if hidden:
        margin = changes_unseen_margin()
        logger.warning(
            "%d database sessions hide their transactions from this role: Updated-Since-Next goes back %s "
            "(connect every process as one role, or grant it pg_read_all_stats)", hidden, margin,
        )
        return now - margin
    return oldest_open - CHANGES_CLOCK_MARGIN
