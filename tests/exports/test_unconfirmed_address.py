"""A request received directly (recorded by staff from a letter, call or email, or filed over the API) has its
status page link emailed at once to an address typed by someone else: no unencrypted package is released to that
page until the address's owner confirms it, through a link staff send."""

import re

import pytest
from django.core import mail
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from requests_app import emails
from requests_app.audit import Actor
from requests_app.lifecycle import RequestError
from requests_app.models import (
    AuditEvent,
    Channel,
    ExportPackage,
    ExportStatus,
    IdentityKind,
    Organisation,
    PrivacyRequest,
    SentNotification,
    VerificationMethod,
)
from requests_app.services import handling, intake
from requests_app.services.exports import export_release
from requests_app.services.intake import verification_token
from requests_app.sms import LocmemBackend
from tests.conftest import login_staff
from tests.factories import staff_in_role, submit_request

pytestmark = pytest.mark.usefixtures("export_settings")

TYPED_ADDRESS = "ana.peeters@exmaple.com"  # a typo: the mailbox of someone else
PHONE = "+32470123456"
ZIP = b"PK\x05\x06" + b"\0" * 18  # an empty ZIP
DOWNLOAD_LINK = re.compile(r'href="(/status/[^"]+/download/[^"]+/)"')
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


def ready_package(request, *, encrypted=False) -> ExportPackage:
    export = ExportPackage.objects.create(
        request=request, kind="access", status=ExportStatus.READY, max_downloads=5, manifest={"rows": 1},
        encrypted=encrypted, pending_password="s3cret-password" if encrypted else "",
    )
    name = default_storage.save(f"exports/{export.public_id}/attempt-1.zip", ContentFile(ZIP))
    ExportPackage.objects.filter(pk=export.pk).update(storage_name=name, size=len(ZIP), sha256="0" * 64)
    export.refresh_from_db()
    return export


def status_path(request) -> str:
    return reverse("status", args=[request.reference, request.secret])


def download_links(client, request) -> list[str]:
    page = client.get(status_path(request))
    assert page.status_code == 200
    return DOWNLOAD_LINK.findall(page.content.decode())


def confirmation_link() -> str:
    """The path of the link in the last email to confirm the address."""
    sent = [message for message in mail.outbox if message.to == [TYPED_ADDRESS] and "Confirm your email address" in message.subject]
    assert sent, [message.subject for message in mail.outbox]
    return VERIFY_LINK.search(sent[-1].body).group(1)


@pytest.mark.parametrize("channel", [Channel.POST, Channel.PHONE, Channel.EMAIL, Channel.API])
def test_a_package_is_not_released_to_the_status_page_of_an_address_nobody_confirmed(
    channel, handler, client, django_capture_on_commit_callbacks
):
    request = received_directly(channel, handler, django_capture_on_commit_callbacks)
    # The status page link went to the typed address at once: its reader has the page.
    assert any(status_path(request) in message.body for message in mail.outbox if message.to == [TYPED_ADDRESS])
    export = ready_package(request)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RequestError) as refused:
        export_release(export=export, actor=Actor.staff(handler), share_with_organisation=True)

    assert "never confirmed by its owner" in str(refused.value)
    assert "Send the subject a link to confirm their email address" in str(refused.value)
    # Nothing of the release happened.
    export.refresh_from_db()
    assert (export.status, export.released_at, export.shared_with_organisation) == (ExportStatus.READY, None, False)
    assert not AuditEvent.objects.filter(request=request, action="export_released").exists()
    assert not SentNotification.objects.filter(request=request, kind="export_ready").exists()
    assert mail.outbox == []
    # Whoever reads the typed mailbox finds no download on the page, nor asking for the link again.
    assert download_links(client, request) == []
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("resend_link"), {"reference": request.reference, "email": TYPED_ADDRESS})
    (resent,) = mail.outbox
    page = client.get(re.search(r"http://\S+(/status/\S+/)", resent.body).group(1))
    assert page.status_code == 200 and not DOWNLOAD_LINK.search(page.content.decode())


def test_the_export_page_says_why_and_offers_the_link_instead_of_the_release(handler, client, django_capture_on_commit_callbacks):
    request = received_directly(Channel.POST, handler, django_capture_on_commit_callbacks)
    export = ready_package(request)
    login_staff(client, handler)

    page = client.get(reverse("staff:export", args=[export.public_id])).content.decode()

    assert "never confirmed by its owner" in page
    assert reverse("staff:export_action", args=[export.public_id, "confirm_email"]) in page
    assert reverse("staff:export_action", args=[export.public_id, "release"]) not in page


def test_the_package_is_released_once_the_owner_confirms_the_address_through_the_link_staff_send(
    handler, client, django_capture_on_commit_callbacks
):
    request = received_directly(Channel.PHONE, handler, django_capture_on_commit_callbacks)
    export = ready_package(request)
    staff = login_staff(client, handler)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(reverse("staff:export_action", args=[export.public_id, "confirm_email"]), follow=True)
    assert "A link to confirm their email address is on its way to the subject." in response.content.decode()
    assert [message.to for message in mail.outbox] == [[TYPED_ADDRESS]]
    assert "reached us by letter, phone or email" in mail.outbox[0].body
    assert AuditEvent.objects.filter(request=request, action="email_confirmation_sent").count() == 1
    page = staff.get(reverse("staff:export", args=[export.public_id])).content.decode()
    assert "has not been used yet" in page

    owner = type(client)()
    link = confirmation_link()
    # Opening the link (a mail scanner does) confirms nothing: the page asks.
    assert owner.get(link).status_code == 200
    request.refresh_from_db()
    assert request.email_unconfirmed
    response = owner.post(link)
    assert response.status_code == 302 and response.url == status_path(request)

    request.refresh_from_db()
    assert not request.email_unconfirmed and request.verified_at is not None
    email = request.identities.get(kind=IdentityKind.EMAIL)
    assert (email.verification_method, email.is_verified) == (VerificationMethod.EMAIL_LINK, True)
    assert AuditEvent.objects.filter(request=request, action="email_confirmed").count() == 1
    assert "You confirmed your email address." in owner.get(status_path(request)).content.decode()
    assert owner.post(link).status_code == 400  # used once

    with django_capture_on_commit_callbacks(execute=True):
        staff.post(reverse("staff:export_action", args=[export.public_id, "release"]))
    export.refresh_from_db()
    assert export.status == ExportStatus.RELEASED
    links = download_links(owner, request)
    assert len(links) == 1
    assert owner.get(links[0]).status_code == 200


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


def test_an_encrypted_package_is_released_to_an_unconfirmed_address_its_password_going_to_the_subjects_line(
    handler, django_capture_on_commit_callbacks
):
    request = received_directly(Channel.POST, handler, django_capture_on_commit_callbacks)
    export = ready_package(request, encrypted=True)

    with django_capture_on_commit_callbacks(execute=True):
        export_release(export=export, actor=Actor.staff(handler))

    export.refresh_from_db()
    assert export.status == ExportStatus.RELEASED
    assert [phone for phone, _text in LocmemBackend.outbox] == [PHONE]


def test_web_requests_release_as_before_whatever_method_verified_their_email_later(
    handler, client, django_capture_on_commit_callbacks
):
    web = submit_request(subject_email="ana@example.com", subject_phone=PHONE)
    web = intake.request_verify_email(token=verification_token(web))
    PrivacyRequest.objects.filter(pk=web.pk).update(assignee=handler)
    web.refresh_from_db()
    # Staff then record the identity document they checked, for the email address (a document proves no phone
    # number: handling.identity_verify): the email's method changes.
    with django_capture_on_commit_callbacks(execute=True):
        handling.identity_verify(
            request=web, actor=Actor.staff(handler), identity_ids=list(web.identities.filter(kind="email").values_list("id", flat=True)),
            method=VerificationMethod.DOCUMENT, expected_status=web.status,
        )
    web.refresh_from_db()
    assert not web.email_unconfirmed
    export = ready_package(web)

    with django_capture_on_commit_callbacks(execute=True):
        export_release(export=export, actor=Actor.staff(handler))

    export.refresh_from_db()
    assert export.status == ExportStatus.RELEASED
    assert len(download_links(client, web)) == 1


@pytest.mark.parametrize("role", ["Auditor", "Handler"])
def test_only_staff_who_work_the_request_send_the_link(role, handler, client, django_capture_on_commit_callbacks):
    request = received_directly(Channel.POST, handler, django_capture_on_commit_callbacks)
    export = ready_package(request)
    login_staff(client, staff_in_role(role, username=f"other-{role.lower()}"))  # a handler it is not assigned to
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("staff:export_action", args=[export.public_id, "confirm_email"]))

    assert response.status_code == 403
    assert mail.outbox == []
    assert not AuditEvent.objects.filter(request=request, action="email_confirmation_sent").exists()


def test_an_agents_address_recorded_by_staff_is_confirmed_by_the_agent_and_proves_nothing_of_the_subjects(
    handler, client, django_capture_on_commit_callbacks
):
    """A lawyer's letter recorded by staff: the links go to the lawyer's typed address, which the lawyer confirms; the
    link never verifies the subject's own address, which nobody wrote to."""
    agent_address = "dupont@avocats.example"
    with django_capture_on_commit_callbacks(execute=True):
        request = submit_request(
            channel=Channel.POST, subject_email=TYPED_ADDRESS, subject_phone=PHONE, actor=Actor.staff(handler),
            agent_capacity="legal_representative", agent_name="Maître Dupont", agent_email=agent_address,
        )
    # Their authority confirmed: the unconfirmed address alone holds the package back.
    PrivacyRequest.objects.filter(pk=request.pk).update(assignee=handler, agent_authority_confirmed_at=timezone.now())
    request.refresh_from_db()
    assert request.email_unconfirmed
    export = ready_package(request)
    assert "Send the agent a link to confirm their email address" in handling_refusal(export, handler)
    staff = login_staff(client, handler)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(reverse("staff:export_action", args=[export.public_id, "confirm_email"]), follow=True)
    assert "on its way to the agent who made the request" in response.content.decode()
    (sent,) = mail.outbox
    assert sent.to == [agent_address]
    assert sent.body.startswith("This email concerns the request you made on behalf of")
    link = VERIFY_LINK.search(sent.body).group(1)
    owner = type(client)()
    assert owner.post(link).status_code == 302

    request.refresh_from_db()
    assert not request.email_unconfirmed
    assert not request.identities.get(kind=IdentityKind.EMAIL).is_verified  # the subject's address proves nothing yet


def handling_refusal(export, handler) -> str:
    with pytest.raises(RequestError) as refused:
        export_release(export=export, actor=Actor.staff(handler))
    return str(refused.value)
