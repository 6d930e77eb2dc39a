"""Staff choose the dashboard's language, and the product's emails to them follow it."""

from datetime import date, datetime, time

import pytest
import time_machine
from django.core import mail
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from requests_app.audit import Actor
from requests_app.models import PrivacyRequest, StaffProfile, Status
from requests_app.services.deadlines import sweep_deadlines
from requests_app.services.routing import request_assign
from tests.conftest import login_staff
from tests.factories import request_in_status, staff_in_role
from tests.staff.test_auth import current_code, sign_in_with_password


def language_of(user) -> str | None:
    return StaffProfile.objects.filter(user=user).values_list("language", flat=True).first()


@pytest.mark.django_db
def test_signing_in_remembers_the_dashboards_language(client):
    handler = staff_in_role("Handler", username="handler1")
    device = TOTPDevice.objects.create(user=handler, name="phone", confirmed=True)
    sign_in_with_password(client, "handler1")
    assert language_of(handler) is None  # the password alone is not a sign-in

    client.post(reverse("staff:otp"), {"token": current_code(device)}, HTTP_ACCEPT_LANGUAGE="nl")
    assert language_of(handler) == "nl"


@pytest.mark.django_db
def test_switching_the_dashboards_language_switches_the_emails_too(client):
    handler = staff_in_role("Handler", username="handler1")
    login_staff(client, handler)
    response = client.post(reverse("staff:language"), {"language": "fr", "next": reverse("staff:queue")})

    assert response.status_code == 302 and response.url == reverse("staff:queue")
    assert language_of(handler) == "fr"
    page = client.get(reverse("staff:queue")).content.decode()
    assert '<html lang="fr">' in page
    assert 'value="fr" lang="fr" aria-current="true"' in page
    assert '<span class="who">handler1 · Gestionnaire</span>' in page  # the role, translated too


@pytest.mark.django_db
def test_roles_read_in_the_dashboards_language_on_the_staff_accounts_pages(client):
    dpo = staff_in_role("DPO", username="dpo1")
    staff_in_role("Auditor", username="auditor1")
    login_staff(client, dpo)
    client.post(reverse("staff:language"), {"language": "de", "next": reverse("staff:users")})
    accounts = client.get(reverse("staff:users")).content.decode()
    assert "<td>DPO</td>" in accounts and "<td>Prüfer</td>" in accounts  # "DPO", as the rest of the German texts say
    new_account = client.get(reverse("staff:user_new")).content.decode()
    assert '<option value="Handler" selected>Sachbearbeiter</option>' in new_account


@pytest.mark.django_db
def test_a_language_switch_before_signing_in_is_only_the_pages(client):
    handler = staff_in_role("Handler", username="handler1")
    client.post(reverse("staff:language"), {"language": "de", "next": reverse("staff:login")})
    assert '<html lang="de">' in client.get(reverse("staff:login")).content.decode()
    assert not StaffProfile.objects.exists()
    login_staff(client, handler)
    client.post(reverse("staff:language"), {"language": "xx", "next": "/"})  # not a language of the site
    assert not StaffProfile.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_an_assignee_gets_the_assignment_in_their_language():
    handler = staff_in_role("Handler", username="handler1", email="handler1@example.com")
    StaffProfile.objects.create(user=handler, language="nl")
    request = request_in_status(Status.NEW)
    mail.outbox.clear()
    dpo = staff_in_role("DPO", username="dpo1")
    request_assign(request=request, assignee=handler, actor=Actor.staff(dpo))

    (email,) = [message for message in mail.outbox if message.to == ["handler1@example.com"]]
    assert email.subject == f"{request.reference} is aan u toegewezen"


@pytest.mark.django_db(transaction=True)
def test_a_deadline_reminder_goes_to_the_assignee_in_theirs_and_to_the_dpo_mailbox_in_the_sites(settings):
    brussels = timezone.get_default_timezone()
    handler = staff_in_role("Handler", username="handler1", email="handler1@example.com")
    StaffProfile.objects.create(user=handler, language="nl")
    with time_machine.travel(datetime.combine(date(2026, 2, 2), time(10), tzinfo=brussels), tick=False):
        request = request_in_status(Status.IN_PROGRESS)  # due Mon 2 Mar
    PrivacyRequest.objects.filter(pk=request.pk).update(assignee=handler)
    mail.outbox.clear()

    with time_machine.travel(datetime.combine(date(2026, 2, 23), time(10), tzinfo=brussels), tick=False):
        sweep_deadlines()

    sent = {tuple(message.to): message.subject for message in mail.outbox}
    assert sent == {
        ("handler1@example.com",): f"{request.reference} moet binnen 7 dagen worden beantwoord",
        (settings.DPO_EMAIL,): f"{request.reference} is due in 7 days",
    }


@pytest.mark.parametrize(
    ("language", "due_on", "in_words"),
    [
        ("de", date(2026, 12, 15), "Dienstag, 15. Dezember 2026"),
        ("fr", date(2026, 3, 1), "dimanche 1er mars 2026"),
        ("fr", date(2026, 12, 15), "mardi 15 décembre 2026"),
        ("en", date(2026, 3, 1), "Sunday 1 March 2026"),
    ],
)
@pytest.mark.parametrize("template", ["assigned", "deadline-reminder", "deadline-escalation"])
@pytest.mark.django_db
def test_staff_emails_write_the_deadline_as_their_language_does(template, language, due_on, in_words):
    """Not one fixed pattern for every language: German puts a comma after the weekday and a point after
    the day, French writes the first of the month "1er"."""
    from requests_app import emails

    request = request_in_status(Status.IN_PROGRESS)
    PrivacyRequest.objects.filter(pk=request.pk).update(due_on=due_on)
    request.refresh_from_db()
    context = {"request": request, "due_on": due_on, "days_left": 3, "request_url": "https://example.com/r"}

    message = emails.render_email(template, context, to=["handler1@example.com"], language=language)

    assert in_words in message.body
    assert in_words in message.alternatives[0][0]


@pytest.mark.parametrize(
    ("language", "heading", "subject"),
    [
        ("de", "Sonntag, 1. März 2026", "1. März 2026"),
        ("fr", "dimanche 1er mars 2026", "1er mars 2026"),
    ],
)
@pytest.mark.django_db
def test_the_daily_digest_writes_its_day_as_the_sites_language_does(settings, mailoutbox, language, heading, subject):
    from requests_app import emails

    settings.LANGUAGE_CODE = language
    emails.send_daily_digest(today=date(2026, 3, 1), recipients=["dpo@example.com"])

    (message,) = mailoutbox
    assert heading in message.body and heading in message.alternatives[0][0]
    assert subject in message.subject and "1 mars" not in message.subject
