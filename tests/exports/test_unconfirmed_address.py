"""A request received directly (recorded by staff from a letter, call or email, or filed over the API) has its
status page link emailed at once to an address typed by someone else: staff send a link for its owner to confirm it."""

import re

import pytest
from django.core import mail

from requests_app import emails
from requests_app.audit import Actor
from requests_app.lifecycle import RequestError
from requests_app.models import (
    AuditEvent,
    Channel,
    IdentityKind,
    Organisation,
    PrivacyRequest,
    SentNotification,
    VerificationMethod,
)
from requests_app.services import handling, intake
from requests_app.services.intake import verification_token
from tests.factories import staff_in_role, submit_request

pytestmark = pytest.mark.usefixtures("export_settings")

TYPED_ADDRESS = "ana.peeters@exmaple.com"  # a typo: the mailbox of someone else
PHONE = "+32470123456"
VERIFY_LINK = re.compile(r"http://\S+(/verify/[^/\s]+/)")


@pytest.fixture
def handler(db):
    return staff_in_role("Handler", username="handler-intake")


def received_directly(channel, handler, django_capture_on_commit_callbacks) -> PrivacyRequest:
    """A request recorded by staff (or filed over the API) with the typed address, the subject's identity then verified
    by a call-back to their phone: the state in which the package used to be released."""
    organisation = Organisation.objects.create(name="Mobile Operator SA") if channel == Channel.API else None
    actor = Actor.organisation(organisation) if organisation else Actor.staff(handler)
    with django_capture_on_commit_callbacks(execute=True):
        request = submit_request(
            channel=channel, subject_email=TYPED_ADDRESS, subject_phone=PHONE, actor=actor,
            organisation=organisation, identities_asserted=organisation is not None,
        )
    PrivacyRequest.objects.filter(pk=request.pk).update(assignee=handler)
    request.refresh_from_db()
    phone = request.identities.get(kind=IdentityKind.PHONE)
    with django_capture_on_commit_callbacks(execute=True):
        handling.identity_verify(
            request=request, actor=Actor.staff(handler), identity_ids=[phone.id], method=VerificationMethod.CALLBACK,
            expected_status=request.status,
        )
    request.refresh_from_db()
    return request


def confirmation_link() -> str:
    """The path of the link in the last email to confirm the address."""
    sent = [message for message in mail.outbox if message.to == [TYPED_ADDRESS] and "Confirm your email address" in message.subject]
    assert sent, [message.subject for message in mail.outbox]
    return VERIFY_LINK.search(sent[-1].body).group(1)


def test_a_new_link_replaces_the_earlier_one_and_the_email_goes_once(handler, django_capture_on_commit_callbacks):
    request = received_directly(Channel.POST, handler, django_capture_on_commit_callbacks)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        intake.email_confirmation_send(request=request, actor=Actor.staff(handler))
    first = confirmation_link()
    with django_capture_on_commit_callbacks(execute=True):
        intake.email_confirmation_send(request=request, actor=Actor.staff(handler))
    latest = confirmation_link()
    assert first != latest and len(mail.outbox) == 2

    # A redelivered task sends nothing more; the owed email is sent, so the lost-email sweep leaves it.
    request.refresh_from_db()
    emails.send_email_confirmation(request)
    assert len(mail.outbox) == 2
    assert not SentNotification.objects.filter(request=request, kind="confirm_email", sent_at__isnull=True).exists()

    with pytest.raises(intake.VerificationLinkError, match="replaced by a newer one"):
        intake.request_verify_email(token=first.split("/")[2])
    request.refresh_from_db()
    assert request.email_unconfirmed
    intake.request_verify_email(token=latest.split("/")[2])
    request.refresh_from_db()
    assert not request.email_unconfirmed


def test_a_lost_confirmation_email_is_queued_again(handler, django_capture_on_commit_callbacks):
    import datetime

    from django.utils import timezone

    request = received_directly(Channel.POST, handler, django_capture_on_commit_callbacks)
    mail.outbox.clear()
    intake_transaction = django_capture_on_commit_callbacks(execute=False)
    with intake_transaction:  # committed, its task never published (the broker lost it)
        intake.email_confirmation_send(request=request, actor=Actor.staff(handler))
    assert mail.outbox == []
    SentNotification.objects.filter(request=request, kind="confirm_email").update(
        queued_at=timezone.now() - datetime.timedelta(hours=3)
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert emails.requeue_owed_emails() == 1

    assert len(mail.outbox) == 1 and "Confirm your email address" in mail.outbox[0].subject


def test_no_link_is_sent_for_an_address_confirmed_already(handler, django_capture_on_commit_callbacks):
    web = submit_request(subject_email="ana@example.com")
    intake.request_verify_email(token=verification_token(web))
    PrivacyRequest.objects.filter(pk=web.pk).update(assignee=handler)
    mail.outbox.clear()

    with pytest.raises(RequestError, match="needs no confirming"):
        intake.email_confirmation_send(request=web, actor=Actor.staff(handler))
    assert not AuditEvent.objects.filter(request=web, action="email_confirmation_sent").exists()
