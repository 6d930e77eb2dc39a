"""Emails through a real SMTP server on 127.0.0.1: an address refused for good (5xx) is not retried,
and staff see it on the request; one refused for now (4xx) is retried; an email some of whose recipients
are refused goes to the others once, and the refusal is logged. No address reaches an error or a log line."""

import logging
from datetime import date, timedelta
from smtplib import SMTPException

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from privacy_portal.celery import app as celery_app
from requests_app import emails, tasks
from requests_app import roles
from requests_app.models import AuditEvent, DailyDigest, Message, PrivacyRequest, SentNotification, Status
from requests_app.services import handling, intake, routing
from tests.conftest import login_staff
from tests.factories import request_in_status, staff_in_role, submit_request

pytestmark = pytest.mark.django_db


def test_a_verification_email_refused_for_good_is_noted_and_not_sent_again(smtp_server):
    request = submit_request(subject_email="gone@example.com")
    with pytest.raises(emails.EmailRejected) as refused:
        tasks.send_verification_email(request.id)
    assert "gone@" not in str(refused.value)
    request.refresh_from_db()
    assert request.subject_email_rejected_at is not None
    assert request.acknowledged_at is None
    assert not SentNotification.objects.filter(request=request).exists()
    event = AuditEvent.objects.get(request=request, action="subject_email_rejected")
    assert event.data == {"email": "verify_email", "smtp_code": 550}
    # The sweep for lost acknowledgements does not send to it again and again.
    with time_machine.travel(timezone.now() + timedelta(hours=3)):
        assert intake.requeue_lost_acknowledgements() == 0


def test_a_letter_refused_for_good_shows_on_the_request_page_and_stays_unsent(client, smtp_server):
    request = request_in_status(Status.IN_PROGRESS, subject_email="gone@example.com")
    message = Message.objects.create(request=request, direction="to_subject", body="Our answer", queued_at=timezone.now())
    with pytest.raises(emails.EmailRejected):
        tasks.send_subject_message(message.id)
    message.refresh_from_db()
    assert message.emailed_at is None
    with time_machine.travel(timezone.now() + timedelta(hours=3)):
        assert handling.requeue_unsent_messages() == 0

    login_staff(client, staff_in_role("DPO"))
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert "refused their email address" in page
    assert "not emailed yet" in page


@pytest.mark.parametrize(
    "address, tries",
    [
        ("gone@example.com", 1),
        ("busy@example.com", tasks.EMAIL_RETRY["max_retries"] + 1),
        ("relay@example.com", tasks.EMAIL_RETRY["max_retries"] + 1),  # a 5xx about our set-up, not the address
    ],
)
def test_only_an_address_refused_for_now_is_retried(smtp_server, address, tries):
    request = submit_request(subject_email=address)
    # Eager tasks retry at once (no countdown), as long as the Retry they raise is not propagated.
    celery_app.conf.task_eager_propagates = False
    try:
        tasks.send_verification_email.delay(request.id)
    finally:
        celery_app.conf.task_eager_propagates = True
    assert smtp_server.refused == [address] * tries
    assert (PrivacyRequest.objects.get(pk=request.pk).subject_email_rejected_at is not None) == address.startswith("gone")


def test_a_refusal_for_now_names_no_address(smtp_server):
    request = submit_request(subject_email="busy@example.com")
    message = emails.render_email("verify-email", {"request": request, "verify_url": "x", "link_hours": 48}, to=[request.subject_email], language="en")
    with pytest.raises(SMTPException) as deferred:
        emails.deliver(message)
    assert not isinstance(deferred.value, emails.EmailRejected)
    assert "busy@" not in str(deferred.value) and "450" in str(deferred.value)


def test_an_accepted_address_gets_the_email(smtp_server):
    request = submit_request(subject_email="ana@example.com")
    tasks.send_verification_email(request.id)
    ((recipients, content),) = smtp_server.accepted
    assert recipients == ["ana@example.com"]
    assert request.reference.encode() in content
    request.refresh_from_db()
    assert request.acknowledged_at is not None and request.subject_email_rejected_at is None


def test_an_address_that_works_again_ends_the_warning(smtp_server):
    request = request_in_status(Status.IN_PROGRESS, subject_email="gone@example.com")
    message = Message.objects.create(request=request, direction="to_subject", body="A question", queued_at=timezone.now())
    with pytest.raises(emails.EmailRejected):
        tasks.send_subject_message(message.id)
    assert PrivacyRequest.objects.get(pk=request.pk).subject_email_rejected_at is not None
    PrivacyRequest.objects.filter(pk=request.pk).update(subject_email="ana@example.com")  # staff corrected it
    tasks.send_subject_message(message.id)
    assert PrivacyRequest.objects.get(pk=request.pk).subject_email_rejected_at is None


def test_a_recipient_refused_beside_accepted_ones_is_logged_by_domain_and_the_email_is_not_sent_again(
    smtp_server, settings, caplog
):
    settings.DPO_EMAIL = "dpo@example.com"
    staff_in_role(roles.DPO, username="dora", email="gone.dora@Staff.example")
    staff_in_role(roles.DPO, username="max", email="busy.max@other.example")
    staff_in_role(roles.DPO, username="lea", email="lea@example.com")
    with caplog.at_level(logging.INFO):
        assert tasks.send_daily_digest.delay().get() is True
    ((recipients, _content),) = smtp_server.accepted
    assert sorted(recipients) == ["dpo@example.com", "lea@example.com"]
    (refusal,) = [record for record in caplog.records if record.name == "privacy_portal.mail"]
    assert refusal.levelno == logging.ERROR
    assert refusal.getMessage() == (
        "the mail server refused 2 of the 4 recipients of an email, which went to the others and is not sent again "
        "(refused domains: other.example, staff.example; SMTP 450, 550)"
    )
    ours = "\n".join(record.getMessage() for record in caplog.records if record.name != "mail.log")  # not the test server's
    assert "dora" not in ours and "max" not in ours
    # Sent: no retry gives the accepted recipients a second copy.
    assert DailyDigest.objects.filter(day=timezone.localdate()).exists()
    assert routing.send_daily_digest() is False
    assert len(smtp_server.accepted) == 1


def test_an_email_every_recipient_accepted_logs_no_refusal(smtp_server, caplog):
    message = emails.render_email("daily-digest", {"today": date(2026, 11, 30)}, to=["dpo@example.com", "lea@example.com"], language="en")
    with caplog.at_level(logging.INFO):
        emails.deliver(message)
    assert [sorted(recipients) for recipients, _content in smtp_server.accepted] == [["dpo@example.com", "lea@example.com"]]
    assert not [record for record in caplog.records if record.name == "privacy_portal.mail"]
