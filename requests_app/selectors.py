"""Reads: how requests and their events are looked up and presented."""

from django.http import Http404
from django.utils.crypto import constant_time_compare
from django.utils.translation import gettext_lazy as _

from requests_app.models import AuditEvent, PrivacyRequest, Status

# The events a subject sees on their status page, in their words.
SUBJECT_EVENT_TEXT = {
    "submitted": _("We received your request."),
    "verification_resent": _("We sent you a new verification link."),
    "verify_email": _("You confirmed your email address."),
    "start_identity_check": _("We started checking your identity."),
    "start_work": _("We started working on your request."),
    "await_subject": _("We asked you for more information."),
    "complete": _("We completed your request."),
    "reject": _("We declined your request and wrote to you with the reasons."),
    "withdraw": _("The request was withdrawn."),
    "expire": _("The request expired because the email address was never confirmed."),
    "deadline_extended": _("We extended the time to answer and wrote to you with the reason."),
    "clock_paused": _("The time to answer was paused while we wait for you."),
    "clock_resumed": _("The time to answer started running again."),
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
