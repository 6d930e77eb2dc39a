"""Sending a portability package to the organisation the subject named (GDPR Art. 20(2)), or declining to: the
emailed link downloads the package, counted and audited apart from the subject's, and expires with it; the subject is
told either way; illegal states are refused with nothing changed."""

import io
import re
import zipfile

import pytest
import time_machine
from django.core import mail
from django.core.mail.backends import locmem
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from requests_app import emails
from requests_app.audit import Actor
from requests_app.lifecycle import RequestError
from requests_app.models import AuditEvent, ExportPackage, ExportStatus, Message, RequestType, SentNotification, Status
from requests_app.selectors import subject_timeline
from requests_app.services import handling
from requests_app.services.exports import delete_expired_exports, export_release
from requests_app.services.intake import RightDetails
from requests_app.services.transmission import export_transmit, transmission_decline
from tests.conftest import login_staff
from tests.factories import request_in_status, staff_in_role

pytestmark = pytest.mark.django_db

LINK = re.compile(r"http://[^\s]+/transfer/[^\s/]+/")
NOVA = RightDetails(RequestType.PORTABILITY, recipient_name="Nova Telecom", recipient_email="dpo@nova.example")


@pytest.fixture
def dpo(db):
    return staff_in_role("DPO", username="dpo1")


def ready_package(request, kind="portability", *, encrypted=False) -> ExportPackage:
    """A compiled package waiting for review: a small ZIP in storage."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data/crm/contacts.jsonl", '{"name": "Ana Peeters"}\n')
    name = default_storage.save(f"exports/{kind}.zip", ContentFile(buffer.getvalue()))
    return ExportPackage.objects.create(
        request=request, kind=kind, status=ExportStatus.READY, storage_name=name, size=len(buffer.getvalue()),
        encrypted=encrypted, max_downloads=2,
    )


@pytest.fixture
def released(dpo):
    request = request_in_status(Status.IN_PROGRESS, rights=[NOVA])
    return export_release(export=ready_package(request), actor=Actor.staff(dpo))


def sent(export, dpo, django_capture_on_commit_callbacks) -> str:
    """Send it; returns the link the organisation was emailed."""
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        export_transmit(export=export, actor=Actor.staff(dpo))
    to_nova = [message for message in mail.outbox if message.to == ["dpo@nova.example"]]
    assert len(to_nova) == 1
    return LINK.search(to_nova[0].body).group(0)


def download(client, link: str):
    response = client.post(link)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response.status_code, body, response


def test_the_organisation_downloads_the_package_from_the_emailed_link(released, dpo, client, django_capture_on_commit_callbacks):
    link = sent(released, dpo, django_capture_on_commit_callbacks)

    # Opening the link (a person, or a mail scanner) shows a button and counts nothing.
    page = client.get(link)
    assert page.status_code == 200 and "2 downloads left" in page.content.decode()
    status, body, response = download(client, link)
    assert status == 200 and response["Content-Type"] == "application/zip"
    with default_storage.open(released.storage_name, "rb") as stored:
        assert body == stored.read()
    released.refresh_from_db()
    assert (released.recipient_download_count, released.download_count) == (1, 0)  # the subject's are untouched
    events = list(released.request.events.filter(action="export_downloaded_by_recipient"))
    assert [event.data for event in events] == [{"export": str(released.public_id), "count": 1}]
    assert events[0].actor_kind == "organisation" and "Nova" not in events[0].actor_label
    assert not released.request.events.filter(action="export_downloaded").exists()


def test_the_link_carries_no_personal_data_and_opens_only_this_door(released, dpo, client, django_capture_on_commit_callbacks):
    link = sent(released, dpo, django_capture_on_commit_callbacks)
    request = released.request
    for personal in (request.reference, request.secret, "ana", "Peeters", "nova"):
        assert personal.lower() not in link.lower()
    # The subject's download link is signed for another purpose: neither opens the other's door.
    token = link.rstrip("/").rsplit("/", 1)[1]
    subject_link = reverse("download", args=[request.reference, request.secret, token])
    assert client.get(subject_link).status_code == 410
    assert client.post(link[:-2] + "x/").status_code == 410


def test_the_organisations_downloads_are_limited_apart(released, dpo, client, django_capture_on_commit_callbacks):
    link = sent(released, dpo, django_capture_on_commit_callbacks)
    assert download(client, link)[0] == 200
    assert download(client, link)[0] == 200
    status, body, _response = download(client, link)

    assert status == 410 and "its download limit was reached" in body.decode()
    released.refresh_from_db()
    assert released.recipient_download_count == 2
    assert released.downloads_left == 2


def test_the_link_expires_with_the_package(released, dpo, client, django_capture_on_commit_callbacks):
    link = sent(released, dpo, django_capture_on_commit_callbacks)
    with time_machine.travel(released.expires_at + timezone.timedelta(seconds=1)):
        status, body, _response = download(client, link)
        assert status == 410 and "expired" in body.decode()
        assert client.get(link).status_code == 410
    released.refresh_from_db()
    assert released.recipient_download_count == 0


def test_a_package_used_up_by_the_subject_is_kept_for_the_organisation(released, dpo, django_capture_on_commit_callbacks):
    sent(released, dpo, django_capture_on_commit_callbacks)
    ExportPackage.objects.filter(pk=released.pk).update(download_count=2)
    delete_expired_exports()
    assert ExportPackage.objects.get(pk=released.pk).status == ExportStatus.RELEASED
    ExportPackage.objects.filter(pk=released.pk).update(recipient_download_count=2)
    delete_expired_exports()
    assert ExportPackage.objects.get(pk=released.pk).status == ExportStatus.EXPIRED


def test_the_subject_is_told_to_whom_and_when(released, dpo, client, django_capture_on_commit_callbacks):
    sent(released, dpo, django_capture_on_commit_callbacks)
    request = released.request

    letter = Message.objects.get(request=request, subject="We sent your data to Nova Telecom")
    assert "Nova Telecom (dpo@nova.example)" in letter.body and request.reference in letter.body
    to_subject = [message.subject for message in mail.outbox if message.to == ["ana@example.com"]]
    assert len(to_subject) == 1 and to_subject[0].startswith("We sent your data to Nova Telecom")
    transmitted = request.events.get(action="export_transmitted")
    assert transmitted.data == {"export": str(released.public_id)} and transmitted.actor == dpo
    assert (transmitted.created_at, "We sent Nova Telecom a link to download your data, as you asked.") in subject_timeline(request)
    page = client.get(reverse("status", args=[request.reference, request.secret])).content.decode()
    assert "We sent Nova Telecom a link to download your data, as you asked." in page


def test_the_staff_page_sends_and_then_says_when(released, dpo, client, django_capture_on_commit_callbacks):
    login_staff(client, dpo)
    url = reverse("staff:export", args=[released.public_id])
    assert "Send to the other organisation</button>" in client.get(url).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("staff:export_action", args=[released.public_id, "transmit"]), follow=True)
    page = response.content.decode()
    assert "Sent: the organisation is emailed its link, and the subject told." in page
    assert "0/2 downloads by the organisation." in page and "Send to the other organisation</button>" not in page


def test_a_lost_email_to_the_organisation_is_sent_again_once(released, dpo, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):  # the broker loses the task
        export_transmit(export=released, actor=Actor.staff(dpo))
    owed = SentNotification.objects.get(kind="portability_transmission")
    assert owed.sent_at is None
    mail.outbox.clear()
    later = timezone.now() + emails.LOST_TASK_AFTER + timezone.timedelta(minutes=1)
    with django_capture_on_commit_callbacks(execute=True):
        emails.requeue_owed_emails(now=later)
    assert [message.to for message in mail.outbox].count(["dpo@nova.example"]) == 1
    assert SentNotification.objects.get(kind="portability_transmission").sent_at is not None
    with django_capture_on_commit_callbacks(execute=True):
        emails.requeue_owed_emails(now=later + emails.LOST_TASK_AFTER * 2)
    assert [message.to for message in mail.outbox].count(["dpo@nova.example"]) == 1


def test_staff_decline_with_a_reason_and_the_subject_keeps_their_copy(released, dpo, client, django_capture_on_commit_callbacks):
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        transmission_decline(request=released.request, actor=Actor.staff(dpo), reason="Their address bounces.")
    request = released.request
    right = request.rights.get()
    assert right.transmission_declined_at is not None and right.transmission_decline_reason == "Their address bounces."
    assert request.events.get(action="transmission_declined").data == {}  # the reason stays on the right, purged with it
    letter = Message.objects.get(request=request, subject="We could not send your data to Nova Telecom")
    assert "Their address bounces." in letter.body and "your own copy" in letter.body
    assert [message.to for message in mail.outbox] == [["ana@example.com"]]
    page = client.get(reverse("status", args=[request.reference, request.secret])).content.decode()
    assert "We could not send your data to Nova Telecom; our message explains why." in page
    assert "Download your data" in page

    with pytest.raises(RequestError, match="was declined on"):
        export_transmit(export=released, actor=Actor.staff(dpo))
    assert ExportPackage.objects.get(pk=released.pk).transmitted_at is None


def test_a_decline_needs_a_reason(released, dpo):
    with pytest.raises(RequestError, match="Say why the data cannot be sent"):
        transmission_decline(request=released.request, actor=Actor.staff(dpo), reason="  ")
    assert released.request.rights.get().transmission_declined_at is None


def refused_with(export, dpo, message: str) -> None:
    events, letters = AuditEvent.objects.count(), Message.objects.count()
    with pytest.raises(RequestError, match=re.escape(message)):
        export_transmit(export=export, actor=Actor.staff(dpo))
    export.refresh_from_db()
    assert export.transmitted_at is None
    assert (AuditEvent.objects.count(), Message.objects.count()) == (events, letters)


def test_an_unreleased_package_is_not_sent(dpo):
    export = ready_package(request_in_status(Status.IN_PROGRESS, rights=[NOVA]))
    refused_with(export, dpo, "Release the package to the subject first")


def test_an_access_package_is_not_sent(dpo):
    request = request_in_status(Status.IN_PROGRESS, rights=[RightDetails(RequestType.ACCESS), NOVA])
    export = export_release(export=ready_package(request, "access"), actor=Actor.staff(dpo))
    refused_with(export, dpo, "Only a data portability package can be sent to another organisation.")


def test_nothing_is_sent_where_no_organisation_was_named(dpo):
    request = request_in_status(Status.IN_PROGRESS, rights=[RightDetails(RequestType.PORTABILITY)])
    export = export_release(export=ready_package(request), actor=Actor.staff(dpo))
    refused_with(export, dpo, "The subject did not ask for their data to be sent to another organisation.")


def test_a_closed_request_sends_nothing(released, dpo):
    handling.request_complete(request=released.request, actor=Actor.staff(dpo), letter="Done.", expected_status=Status.IN_PROGRESS)
    refused_with(released, dpo, "This request is closed: nothing more is sent for it.")
    with pytest.raises(RequestError, match="This request is closed"):
        transmission_decline(request=released.request, actor=Actor.staff(dpo), reason="Too late.")


def test_an_encrypted_package_is_not_sent(dpo):
    export = ready_package(request_in_status(Status.IN_PROGRESS, rights=[NOVA]), encrypted=True)
    ExportPackage.objects.filter(pk=export.pk).update(
        status=ExportStatus.RELEASED, released_at=timezone.now(), expires_at=timezone.now() + timezone.timedelta(days=7)
    )
    refused_with(ExportPackage.objects.get(pk=export.pk), dpo, "This package is encrypted")


def test_a_package_is_sent_once(released, dpo, django_capture_on_commit_callbacks):
    sent(released, dpo, django_capture_on_commit_callbacks)
    with pytest.raises(RequestError, match="The data was sent to Nova Telecom on"):
        export_transmit(export=released, actor=Actor.staff(dpo))
    assert released.request.events.filter(action="export_transmitted").count() == 1
    with pytest.raises(RequestError, match="The data was sent to Nova Telecom on"):
        transmission_decline(request=released.request, actor=Actor.staff(dpo), reason="Changed my mind.")


def test_staff_who_may_not_work_the_request_cannot_send(released):
    from requests_app.lifecycle import NotAllowed

    with pytest.raises(NotAllowed):
        export_transmit(export=released, actor=Actor.staff(staff_in_role("Auditor", username="auditor1")))
    assert ExportPackage.objects.get(pk=released.pk).transmitted_at is None


class AddressRefusingMailBackend:
    """A mail server that refuses the recipient's address for good (no such mailbox)."""

    def __init__(self, **kwargs):
        pass

    def send_messages(self, messages):
        from smtplib import SMTPRecipientsRefused

        raise SMTPRecipientsRefused({messages[0].to[0]: (550, b"5.1.1 no such user")})


def test_an_address_the_organisations_server_refuses_is_shown_to_staff(released, dpo, client, settings, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        export_transmit(export=released, actor=Actor.staff(dpo))
    settings.EMAIL_BACKEND = "tests.exports.test_transmission.AddressRefusingMailBackend"
    from requests_app.services.transmission import send_transmission_email

    assert send_transmission_email(export_id=released.id) is False
    event = released.request.events.get(action="transmission_email_rejected")
    assert event.data == {"export": str(released.public_id), "smtp_code": 550}
    assert not SentNotification.objects.filter(kind="portability_transmission", sent_at__isnull=True).exists()  # no retries
    login_staff(client, dpo)
    page = client.get(reverse("staff:export", args=[released.public_id])).content.decode()
    assert "mail server refused its address on" in page and "it never got the link" in page


def test_the_staff_page_declines_with_the_reason_typed(released, dpo, client, django_capture_on_commit_callbacks):
    login_staff(client, dpo)
    action = reverse("staff:export_action", args=[released.public_id, "decline_transmission"])
    response = client.post(action, {"reason": ""}, follow=True)
    assert "Say why the data cannot be sent to the organisation: the subject is told." in response.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(action, {"reason": "They accept no ZIP files."}, follow=True)
    page = response.content.decode()
    assert "Declined: the subject is told why, and keeps their own copy." in page
    assert "They accept no ZIP files." in page and "Send to the other organisation</button>" not in page


class NovaRefusingMailBackend(locmem.EmailBackend):
    """A mail server that refuses the first address the subject gave for the organisation, and delivers the rest."""

    def send_messages(self, messages):
        from smtplib import SMTPRecipientsRefused

        if messages[0].to == ["dpo@nova.example"]:
            raise SMTPRecipientsRefused({"dpo@nova.example": (550, b"5.1.1 no such user")})
        return super().send_messages(messages)


def test_a_link_never_sent_is_not_sent_again(released, dpo):
    from requests_app.services.transmission import transmission_resend

    with pytest.raises(RequestError, match="The link is sent again only after the organisation's mail server refused its address"):
        transmission_resend(export=released, actor=Actor.staff(dpo), recipient_email="privacy@nova.example")
    assert ExportPackage.objects.get(pk=released.pk).transmitted_at is None


def refused_by_its_server(export, dpo, settings, django_capture_on_commit_callbacks) -> None:
    """Sent, and the organisation's mail server refuses the address for good."""
    from requests_app.services.transmission import send_transmission_email

    with django_capture_on_commit_callbacks(execute=False):
        export_transmit(export=export, actor=Actor.staff(dpo))
    settings.EMAIL_BACKEND = "tests.exports.test_transmission.NovaRefusingMailBackend"
    assert send_transmission_email(export_id=export.id) is False
    export.refresh_from_db()
    assert export.transmission_rejected_at is not None


def test_staff_correct_a_refused_address_and_the_link_goes_there_once(released, dpo, client, settings, django_capture_on_commit_callbacks):
    from requests_app.services.transmission import transmission_resend

    refused_by_its_server(released, dpo, settings, django_capture_on_commit_callbacks)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        transmission_resend(export=released, actor=Actor.staff(dpo), recipient_email=" privacy@nova.example ")

    to_nova = [message for message in mail.outbox if message.to == ["privacy@nova.example"]]
    assert len(to_nova) == 1
    request = released.request
    assert request.rights.get().recipient_email == "privacy@nova.example"
    released.refresh_from_db()
    assert released.transmission_rejected_at is None
    # The trail says what was done, never the address (RequestedRight holds it, purged with it).
    resent = request.events.get(action="transmission_resent")
    assert resent.data == {"export": str(released.public_id)} and resent.actor == dpo
    assert "nova.example" not in str(list(request.events.values_list("data", flat=True)))
    letter = Message.objects.get(request=request, subject="We sent the link to your data to Nova Telecom again, at a corrected address")
    assert "refused the address dpo@nova.example" in letter.body and "again to privacy@nova.example" in letter.body
    assert (resent.created_at, "We sent Nova Telecom the link to download your data again, at a corrected address.") in subject_timeline(request)
    assert download(client, LINK.search(to_nova[0].body).group(0))[0] == 200

    # Delivered this time: nothing is sent again, whatever staff ask.
    with pytest.raises(RequestError, match="The data was sent to Nova Telecom on .*: nothing changed."):
        transmission_resend(export=released, actor=Actor.staff(dpo), recipient_email="other@nova.example")
    assert request.events.filter(action="transmission_resent").count() == 1
    assert request.rights.get().recipient_email == "privacy@nova.example"


def test_a_link_delivered_is_not_sent_again(released, dpo, django_capture_on_commit_callbacks):
    from requests_app.services.transmission import transmission_resend

    sent(released, dpo, django_capture_on_commit_callbacks)
    events, letters = AuditEvent.objects.count(), Message.objects.count()
    with pytest.raises(RequestError, match="The data was sent to Nova Telecom on .*: nothing changed."):
        transmission_resend(export=released, actor=Actor.staff(dpo), recipient_email="privacy@nova.example")
    assert (AuditEvent.objects.count(), Message.objects.count()) == (events, letters)
    assert released.request.rights.get().recipient_email == "dpo@nova.example"


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("privacy@nova", "Enter a valid email address."),
        ("  ", "Give the organisation's corrected email address."),
        ("DPO@nova.example", "This is the address its mail server refused: give the corrected one."),
        ("ana@example.com", "This is the address we write to about the request: the subject gets their own copy."),
    ],
)
def test_a_corrected_address_is_checked_before_anything_is_sent(released, dpo, settings, django_capture_on_commit_callbacks, address, message):
    from requests_app.services.transmission import transmission_resend

    refused_by_its_server(released, dpo, settings, django_capture_on_commit_callbacks)
    events, letters = AuditEvent.objects.count(), Message.objects.count()
    with pytest.raises(RequestError, match=re.escape(message)):
        transmission_resend(export=released, actor=Actor.staff(dpo), recipient_email=address)
    assert (AuditEvent.objects.count(), Message.objects.count()) == (events, letters)
    released.refresh_from_db()
    assert released.transmission_rejected_at is not None
    assert released.request.rights.get().recipient_email == "dpo@nova.example"


def test_staff_may_decline_once_the_organisations_server_refused_its_address(released, dpo, settings, django_capture_on_commit_callbacks):
    from requests_app.services.transmission import transmission_resend

    refused_by_its_server(released, dpo, settings, django_capture_on_commit_callbacks)
    transmission_decline(request=released.request, actor=Actor.staff(dpo), reason="The subject gave no other address.")
    assert released.request.rights.get().transmission_declined_at is not None
    with pytest.raises(RequestError, match="was declined on"):
        transmission_resend(export=released, actor=Actor.staff(dpo), recipient_email="privacy@nova.example")


def test_the_staff_page_sends_the_link_again_to_the_corrected_address(released, dpo, client, settings, django_capture_on_commit_callbacks):
    refused_by_its_server(released, dpo, settings, django_capture_on_commit_callbacks)
    login_staff(client, dpo)
    page = client.get(reverse("staff:export", args=[released.public_id])).content.decode()
    assert "mail server refused its address on" in page and "Send the link again</button>" in page
    assert "Decline to send it</button>" in page
    action = reverse("staff:export_action", args=[released.public_id, "resend_transmission"])
    response = client.post(action, {"recipient_email": "dpo@nova.example"}, follow=True)
    assert "This is the address its mail server refused: give the corrected one." in response.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(action, {"recipient_email": "privacy@nova.example"}, follow=True)
    page = response.content.decode()
    assert "Sent again: the organisation is emailed its link at the corrected address, and the subject told." in page
    assert "Send the link again</button>" not in page and "Decline to send it</button>" not in page
    assert "mail server refused its address on" not in page


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_staff_correcting_the_address_at_once_send_the_link_once(settings):
    from requests_app.services.transmission import send_transmission_email, transmission_resend
    from tests.factories import at_once

    dpo = staff_in_role("DPO", username="dpo1")
    request = request_in_status(Status.IN_PROGRESS, rights=[NOVA])
    export = export_release(export=ready_package(request), actor=Actor.staff(dpo))
    settings.EMAIL_BACKEND = "tests.exports.test_transmission.NovaRefusingMailBackend"
    export_transmit(export=export, actor=Actor.staff(dpo))  # its task, run eagerly on commit, is refused
    export.refresh_from_db()
    assert export.transmission_rejected_at is not None
    mail.outbox.clear()

    outcomes = at_once(
        lambda: transmission_resend(export=export, actor=Actor.staff(dpo), recipient_email="privacy@nova.example"), times=2
    )

    assert sum(isinstance(outcome, ExportPackage) for outcome in outcomes) == 1
    refusals = [str(outcome) for outcome in outcomes if isinstance(outcome, Exception)]
    assert len(refusals) == 1 and refusals[0].startswith("The data was sent to Nova Telecom on")
    assert request.events.filter(action="transmission_resent").count() == 1
    send_transmission_email(export_id=export.id)  # a duplicate of the task: the email went once
    assert [message.to for message in mail.outbox].count(["privacy@nova.example"]) == 1


def test_the_certificate_lists_each_sending_each_refusal_and_the_organisations_downloads(
    released, dpo, client, settings, django_capture_on_commit_callbacks
):
    from requests_app.services.certificate import render_certificate_html
    from requests_app.services.transmission import transmission_resend

    refused_by_its_server(released, dpo, settings, django_capture_on_commit_callbacks)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        transmission_resend(export=released, actor=Actor.staff(dpo), recipient_email="privacy@nova.example")
    link = LINK.search(next(m for m in mail.outbox if m.to == ["privacy@nova.example"]).body).group(0)
    assert download(client, link)[0] == 200

    request = released.request
    html = render_certificate_html(request)

    def moments(action):
        return ", ".join(
            f"{timezone.localtime(at):%Y-%m-%d %H:%M %Z}" for at in request.events.filter(action=action).order_by("sequence").values_list("created_at", flat=True)
        )

    first, again = (f"{timezone.localtime(at):%Y-%m-%d %H:%M %Z} (dpo1)" for at in request.events.filter(
        action__in=("export_transmitted", "transmission_resent")).order_by("sequence").values_list("created_at", flat=True))
    assert f"<dt>Sent to the organisation the subject named</dt><dd>{first}, {again}</dd>" in html
    assert f"<dt>Refused by that organisation's mail server</dt><dd>{moments('transmission_email_rejected')}</dd>" in html
    assert "<dt>Downloads by the organisation the subject named</dt><dd>1 of 2</dd>" in html
    assert f"<dt>Downloaded by that organisation</dt><dd>{moments('export_downloaded_by_recipient')}</dd>" in html
    assert "<dt>Downloaded</dt><dd>Never</dd>" in html  # the subject's own downloads are apart
    assert "nova.example" not in html and "Nova" not in html  # the organisation is the subject's to name, not the record's


def test_the_certificate_says_sending_was_declined_when_by_whom_and_why(released, dpo):
    from requests_app.services.certificate import render_certificate_html

    transmission_decline(request=released.request, actor=Actor.staff(dpo), reason="They accept no ZIP files.")
    declined = timezone.localtime(released.request.events.get(action="transmission_declined").created_at)
    html = render_certificate_html(released.request)
    assert (
        f"<dt>Sending to the organisation the subject named</dt><dd>Declined on {declined:%Y-%m-%d %H:%M %Z} (dpo1): "
        "They accept no ZIP files.</dd>"
    ) in html
    assert "Sent to the organisation the subject named" not in html


def test_a_package_the_subject_used_up_but_the_organisation_had_not_is_not_said_used_up(
    released, dpo, django_capture_on_commit_callbacks
):
    """The organisation could still download it: what ended it was the withdrawal."""
    from requests_app.services import intake
    from requests_app.services.certificate import render_certificate_html

    sent(released, dpo, django_capture_on_commit_callbacks)
    ExportPackage.objects.filter(pk=released.pk).update(download_count=2)
    intake.request_withdraw(request=released.request, actor=Actor.subject())
    assert ExportPackage.objects.get(pk=released.pk).status == ExportStatus.EXPIRED
    html = render_certificate_html(released.request)
    assert "The request was closed (Withdrawn): no data is delivered for it." in html
    assert "All its downloads were used." not in html


def agents_released(dpo):
    """A portability package released to an agent whose authority staff confirmed, naming Nova Telecom."""
    from tests.test_agent_requests import confirmed_agents_request

    request = confirmed_agents_request(dpo, rights=[NOVA])
    return export_release(export=ready_package(request), actor=Actor.staff(dpo))


def withdraw_authority(export, dpo):
    from requests_app.services import agents

    agents.agent_authority_withdraw(request=export.request, actor=Actor.staff(dpo), reason="The subject never allowed them.")
    export.request.refresh_from_db()


def test_nothing_is_sent_once_the_agents_authority_is_withdrawn_but_staff_may_decline(dpo, django_capture_on_commit_callbacks):
    from requests_app.services.agents import AUTHORITY_UNCONFIRMED
    from requests_app.services.transmission import transmission_refusal

    export = agents_released(dpo)
    withdraw_authority(export, dpo)

    assert transmission_refusal(export) == str(AUTHORITY_UNCONFIRMED)
    refused_with(export, dpo, str(AUTHORITY_UNCONFIRMED))
    transmission_decline(request=export.request, actor=Actor.staff(dpo), reason="The agent's authority was withdrawn.")
    assert export.request.rights.get(right=RequestType.PORTABILITY).transmission_declined_at is not None


def test_a_link_sent_before_the_agents_authority_was_withdrawn_stops_downloading(dpo, client, django_capture_on_commit_callbacks):
    export = agents_released(dpo)
    link = sent(export, dpo, django_capture_on_commit_callbacks)
    withdraw_authority(export, dpo)

    page = client.get(link)
    assert page.status_code == 410 and "the request it answers is being checked again" in page.content.decode()
    status, body, _response = download(client, link)
    assert status == 410 and b"being checked again" in body
    export.refresh_from_db()
    assert export.recipient_download_count == 0
    assert not AuditEvent.objects.filter(action="export_downloaded_by_recipient").exists()

    # Confirmed again on new proof: the same link works.
    from requests_app.models import AgentAuthorityMethod
    from requests_app.services import agents

    agents.agent_authority_confirm(request=export.request, actor=Actor.staff(dpo), method=AgentAuthorityMethod.POWER_OF_ATTORNEY)
    assert download(client, link)[0] == 200


def test_the_agents_status_page_holds_back_a_released_package_once_their_authority_is_withdrawn(dpo, client):
    from requests_app.services.exports import download_token

    export = agents_released(dpo)
    request = export.request
    url = reverse("download", args=[request.reference, request.secret, download_token(export)])
    withdraw_authority(export, dpo)

    page = client.get(reverse("status", args=[request.reference, request.secret])).content.decode()
    assert url not in page and "We hold back the copy of their data while we check again" in page
    refused = client.get(url)
    assert refused.status_code == 403
    assert "we are checking again that you may act for the person this request is about" in refused.content.decode()
    export.refresh_from_db()
    assert export.download_count == 0


@pytest.mark.parametrize(
    ("regime", "cited"),
    [("gdpr", "(GDPR Art. 20(2))"), ("uk_gdpr", "(UK GDPR Art. 20(2))"), ("lgpd", "(LGPD (Lei 13.709/2018) Art. 18, V)"), ("ccpa", None)],
)
def test_the_organisations_email_cites_the_requests_law(dpo, regime, cited, django_capture_on_commit_callbacks):
    request = request_in_status(Status.IN_PROGRESS, rights=[NOVA], regime=regime)
    export = export_release(export=ready_package(request), actor=Actor.staff(dpo))
    sent(export, dpo, django_capture_on_commit_callbacks)
    (to_nova,) = [message for message in mail.outbox if message.to == ["dpo@nova.example"]]
    html = to_nova.alternatives[0][0]
    for text in (to_nova.body, html):
        assert "that the right to data portability covers" in text
        if cited:
            assert cited in text
        else:
            assert "Art." not in text and "covers." in text
    if regime != "gdpr":
        assert "(GDPR Art. 20(2))" not in to_nova.body
