"""One function per email. Each renders text and HTML templates in the
subject's language and is sent at most once per (request, kind, key)."""

import logging

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation

from requests_app.models import PrivacyRequest, SentNotification

logger = logging.getLogger(__name__)


def absolute_url(path: str) -> str:
    return settings.SITE_URL + path


def status_url(request: PrivacyRequest) -> str:
    return absolute_url(reverse("status", args=[request.reference, request.secret]))


def render_email(template: str, context: dict, *, to: list[str], language: str) -> EmailMultiAlternatives:
    """Build a message from templates/emails/<template>-subject.txt, -body.txt and -body.html."""
    with translation.override(language):
        subject = render_to_string(f"emails/{template}-subject.txt", context).strip()
        text = render_to_string(f"emails/{template}-body.txt", context)
        html = render_to_string(f"emails/{template}-body.html", context)
    message = EmailMultiAlternatives(subject=" ".join(subject.split()), body=text, to=to)
    message.attach_alternative(html, "text/html")
    return message


def send_once(request: PrivacyRequest, kind: str, key: str, message: EmailMultiAlternatives) -> bool:
    """Send `message` unless this (request, kind, key) email went out already.

    The claim row and the send share a transaction: a second run blocks on
    the unique constraint, then sees the claim and skips. If sending fails
    the claim is rolled back and the task's retry sends it.
    """
    try:
        with transaction.atomic():
            SentNotification.objects.create(request=request, kind=kind, key=key)
            message.send()
    except IntegrityError:
        logger.info("email %s for request %s already sent, skipping", kind, request.reference)
        return False
    logger.info("email %s sent for request %s", kind, request.reference)
    return True


def send_verification_email(request: PrivacyRequest) -> bool:
    from requests_app.services.intake import verification_token

    context = {
        "request": request,
        "verify_url": absolute_url(reverse("verify_email", args=[verification_token(request)])),
        "link_hours": int(settings.VERIFICATION_LINK_MAX_AGE.total_seconds() // 3600),
    }
    message = render_email("verify-email", context, to=[request.subject_email], language=request.language)
    # Keyed by the nonce: a re-sent link is a new email, a redelivered task is not.
    return send_once(request, "verify_email", request.verification_nonce, message)


def send_request_confirmed_email(request: PrivacyRequest) -> bool:
    context = {"request": request, "status_url": status_url(request)}
    message = render_email("request-confirmed", context, to=[request.subject_email], language=request.language)
    return send_once(request, "request_confirmed", "", message)
