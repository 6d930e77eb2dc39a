import importlib
from datetime import date, datetime, time, timedelta
from html import unescape
from smtplib import SMTPRecipientsRefused

import pytest
import time_machine
from django.apps import apps
from django.conf import settings
from django.core import mail
from django.core.mail.backends import locmem
from django.urls import reverse
from django.utils import timezone

from privacy_portal.celery import app as celery_app
from requests_app import lifecycle, selectors
from requests_app.audit import Actor
from requests_app.lifecycle import NotAllowed, RequestError
from requests_app.models import (
    PrivacyRequest,
    RequestType,
    ResponseTemplate,
    SentNotification,
    StaffProfile,
    Status,
    TemplatePurpose,
)
from requests_app.services.deadlines import (
    clock_pause,
    clock_resume,
    late_refusal_warning,
    request_extend,
    sweep_deadlines,
)
from requests_app.services.certificate import answered_on_time, render_certificate_html
from requests_app.services import handling
from requests_app.services.handling import render_letter, request_reject
from requests_app.services.intake import RightDetails
from tests.conftest import login_staff, post_confirmed
from tests.factories import UserFactory, at_once, released_package, request_in_status, staff_in_role, submit_request

BRUSSELS = timezone.get_default_timezone()


def at(day: date, hour: int = 10) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=BRUSSELS)


@pytest.fixture
def dpo(db):
    return UserFactory(username="dpo-user", is_superuser=True)


@pytest.fixture
def handler(db):
    return UserFactory(username="handler", is_superuser=False)


def sweep_with_the_broker_down(day: date) -> None:
    """The deadline sweep on `day` with the broker down: its claims commit, the task that sends them is lost."""
    with time_machine.travel(at(day), tick=False):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("requests_app.tasks.send_deadline_alerts.delay", lambda ids: None)
            sweep_deadlines()


def in_progress_received(day: date, **overrides) -> PrivacyRequest:
    with time_machine.travel(at(day), tick=False):
        return request_in_status(Status.IN_PROGRESS, **overrides)


@pytest.mark.django_db
def test_due_date_is_derived_at_receipt():
    request = in_progress_received(date(2026, 1, 30))
    assert request.due_on == request.original_due_on == date(2026, 3, 2)
    assert request.acknowledgement_due_on is None


@pytest.mark.django_db
def test_a_ccpa_request_to_limit_is_due_in_fifteen_business_days_and_cannot_be_extended(dpo):
    """CCPA Regulations s. 7027(g)(1): no later than 15 business days from receipt. Its due date was the GDPR's
    month (2 April), as for a request to know."""
    limit = in_progress_received(date(2026, 3, 2), regime="ccpa", rights=[RightDetails(RequestType.LIMIT_USE)])
    assert limit.due_on == limit.original_due_on == date(2026, 3, 23)
    access = in_progress_received(date(2026, 3, 2), regime="ccpa")
    assert access.due_on == date(2026, 4, 2)

    with time_machine.travel(at(date(2026, 3, 10)), tick=False):
        with pytest.raises(RequestError, match=r"no extension of the 15 business days .* \(CCPA Regulations § 7027\(g\)\(1\)\)"):
            request_extend(request=limit, actor=Actor.staff(dpo), reason="Many systems")
        request_extend(request=access, actor=Actor.staff(dpo), reason="Many systems")
    limit.refresh_from_db()
    access.refresh_from_db()
    assert (limit.due_on, limit.extended_at) == (date(2026, 3, 23), None)
    assert access.due_on == date(2026, 5, 31)


@pytest.mark.django_db
def test_upgrading_moves_open_ccpa_requests_to_limit_to_fifteen_business_days():
    """Before the rule, a request to limit was due on the GDPR's month (2 April), and the migration gives the open
    ones their date; closed ones and other rights keep theirs."""
    migration = importlib.import_module("requests_app.migrations.0067_ccpa_limit_requests_due_in_fifteen_business_days")
    limit = in_progress_received(date(2026, 3, 2), regime="ccpa", rights=[RightDetails(RequestType.LIMIT_USE)])
    closed = in_progress_received(date(2026, 3, 2), regime="ccpa", rights=[RightDetails(RequestType.LIMIT_USE)])
    access = in_progress_received(date(2026, 3, 2), regime="ccpa")
    PrivacyRequest.objects.filter(pk__in=[limit.pk, closed.pk]).update(
        due_on=date(2026, 4, 2), original_due_on=date(2026, 4, 2), next_alert_on=date(2026, 3, 26)
    )
    PrivacyRequest.objects.filter(pk=closed.pk).update(status=Status.COMPLETED)
    before = {request.pk: request for request in PrivacyRequest.objects.all()}

    with time_machine.travel(at(date(2026, 3, 17)), tick=False):
        migration.due_within_fifteen_business_days(apps, None)

    limit.refresh_from_db()
    assert (limit.due_on, limit.original_due_on) == (date(2026, 3, 23), date(2026, 3, 23))
    assert (limit.next_alert_on, limit.next_alert_key) == (date(2026, 3, 17), "remind-7")  # 6 days left: the 7-day reminder
    assert limit.updated_at > before[limit.pk].updated_at
    for unchanged in (closed, access):
        unchanged.refresh_from_db()
        assert (unchanged.due_on, unchanged.next_alert_on, unchanged.updated_at) == (
            before[unchanged.pk].due_on, before[unchanged.pk].next_alert_on, before[unchanged.pk].updated_at
        )


@pytest.mark.django_db
def test_staff_intake_counts_from_the_earlier_received_date(dpo):
    with time_machine.travel(at(date(2026, 3, 10)), tick=False):
        request = submit_request(channel="post", received_at=at(date(2026, 1, 30)), actor=Actor.staff(dpo))
    assert request.due_on == date(2026, 3, 2)


@pytest.mark.django_db
def test_ccpa_acknowledgement_is_tracked(django_capture_on_commit_callbacks):
    with time_machine.travel(at(date(2026, 3, 2)), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            request = submit_request(regime="ccpa")
    request.refresh_from_db()
    assert request.acknowledgement_due_on == date(2026, 3, 16)
    assert request.acknowledged_at is not None  # the verification email confirms receipt
    assert request.acknowledgement_met is True
    assert request.due_on == date(2026, 4, 2)  # the GDPR's month (it applies too) ends before the 45 days


@pytest.mark.django_db
def test_an_unacknowledged_ccpa_request_is_flagged_late_after_its_date():
    with time_machine.travel(at(date(2026, 3, 2)), tick=False):
        request = submit_request(regime="ccpa")  # on-commit email never ran
        assert request.acknowledgement_met is None
    with time_machine.travel(at(date(2026, 3, 17)), tick=False):
        assert request.acknowledgement_met is False


@pytest.mark.django_db
def test_a_request_closed_by_its_acknowledgement_date_without_one_was_not_late():
    """Withdrawn (or answered) before the confirmation went: the confirmation is dropped, and nothing was late."""
    with time_machine.travel(at(date(2026, 3, 2)), tick=False):
        request = submit_request(regime="ccpa")  # on-commit email never ran
        PrivacyRequest.objects.filter(pk=request.pk).update(closed_at=timezone.now(), status=Status.WITHDRAWN)
        request.refresh_from_db()
    with time_machine.travel(at(date(2026, 3, 17)), tick=False):
        assert request.acknowledgement_met is None
        request.closed_at = at(date(2026, 3, 17))  # left open past its date without one: late, closed or not
        assert request.acknowledgement_met is False


@pytest.mark.django_db
def test_waiting_on_the_subject_pauses_and_resumes_the_clock():
    request = in_progress_received(date(2026, 1, 30))
    with time_machine.travel(at(date(2026, 2, 10)), tick=False):
        lifecycle.transition(request, "await_subject", actor=Actor.system(), note="Need a copy of the ID")
    request.refresh_from_db()
    assert request.pauses.get().reason == "Need a copy of the ID"
    assert request.next_alert_on is None  # no reminders while paused

    with time_machine.travel(at(date(2026, 2, 15)), tick=False):
        lifecycle.transition(request, "start_work", actor=Actor.system())
    request.refresh_from_db()
    assert request.paused_days == 5
    assert request.pauses.get().ended_at is not None
    # 28 Feb + 5 days = 5 Mar (Thursday)
    assert request.due_on == request.original_due_on == date(2026, 3, 5)
    resumed = request.events.get(action="clock_resumed")
    assert resumed.data == {"paused_days": 5, "due_on": "2026-03-05"}


@pytest.mark.django_db
def test_staff_can_pause_and_resume_with_a_reason(dpo):
    request = in_progress_received(date(2026, 1, 30))
    with time_machine.travel(at(date(2026, 2, 2)), tick=False):
        clock_pause(request=request, actor=Actor.staff(dpo), reason="Waiting for proof of identity")
    with time_machine.travel(at(date(2026, 2, 4)), tick=False):
        assert clock_resume(request=request, actor=Actor.staff(dpo), note="Proof received") == 2
    request.refresh_from_db()
    assert request.due_on == date(2026, 3, 2)  # 28 Feb + 2 = 2 Mar, a Monday
    assert [e.action for e in request.events.filter(action__startswith="clock_")] == ["clock_paused", "clock_resumed"]
    assert request.pauses.get().reason == "Waiting for proof of identity"
    assert request.events.get(action="clock_paused").note == ""  # staff text stays off the unpurgeable chain


@pytest.mark.django_db
def test_the_subjects_reply_restarts_a_clock_staff_paused(dpo):
    """Paused for proof of identity without asking through the portal: the proof arrives as a reply."""
    from requests_app.services.handling import subject_reply

    request = in_progress_received(date(2026, 1, 30))
    with time_machine.travel(at(date(2026, 2, 2)), tick=False):
        clock_pause(request=request, actor=Actor.staff(dpo), reason="Waiting for proof of identity")
    with time_machine.travel(at(date(2026, 2, 4)), tick=False):
        subject_reply(request=request, body="Here is my ID card.")
    with time_machine.travel(at(date(2026, 2, 12)), tick=False):
        with pytest.raises(RequestError, match="not paused"):
            clock_resume(request=request, actor=Actor.staff(dpo))
    request.refresh_from_db()
    assert request.due_on == date(2026, 3, 2)  # the 2 paused days, not the 10 until staff looked
    assert request.status == Status.IN_PROGRESS and request.pauses.get().ended_at is not None


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda r, a: clock_resume(request=r, actor=a), "not paused"),
        (lambda r, a: clock_pause(request=r, actor=a, reason="  "), "Give a reason"),
    ],
)
@pytest.mark.django_db
def test_bad_clock_actions_are_refused_and_change_nothing(dpo, action, message):
    request = in_progress_received(date(2026, 1, 30))
    events = request.events.count()
    with pytest.raises(RequestError, match=message):
        action(request, Actor.staff(dpo))
    assert request.events.count() == events
    assert request.pauses.count() == 0


@pytest.mark.django_db
def test_a_second_pause_and_a_pause_on_a_closed_request_are_refused(dpo):
    request = in_progress_received(date(2026, 1, 30))
    with time_machine.travel(at(date(2026, 2, 2)), tick=False):
        clock_pause(request=request, actor=Actor.staff(dpo), reason="ID")
        with pytest.raises(RequestError, match="already paused"):
            clock_pause(request=request, actor=Actor.staff(dpo), reason="again")
    closed = request_in_status(Status.COMPLETED)
    with pytest.raises(RequestError, match="closed request"):
        clock_pause(request=closed, actor=Actor.staff(dpo), reason="ID")


@pytest.mark.django_db
def test_an_unconfirmed_request_has_no_clock_to_pause_and_gets_no_message(dpo):
    from requests_app.services.handling import message_send

    unconfirmed = request_in_status(Status.AWAITING_VERIFICATION)
    with pytest.raises(RequestError, match="cannot be paused before they do"):
        clock_pause(request=unconfirmed, actor=Actor.staff(dpo), reason="ID")
    with pytest.raises(RequestError, match="not confirmed their email address"):
        message_send(request=unconfirmed, actor=Actor.staff(dpo), body="Please send your ID")
    assert not unconfirmed.pauses.exists() and not unconfirmed.messages.exists()
    assert mail.outbox == []


@pytest.mark.django_db
def test_a_request_waiting_for_the_subject_resumes_through_its_status_not_the_clock_alone(dpo):
    """Resuming the clock alone would leave it "awaiting the subject" with its clock running."""
    request = request_in_status(Status.AWAITING_SUBJECT)
    assert request.pauses.filter(ended_at__isnull=True).exists()  # waiting for the subject stops the clock
    with pytest.raises(RequestError, match="start work on it"):
        clock_resume(request=request, actor=Actor.staff(dpo))
    assert request.pauses.filter(ended_at__isnull=True).exists()
    lifecycle.transition(request, "start_work", actor=Actor.staff(dpo))
    assert not request.pauses.filter(ended_at__isnull=True).exists()


@pytest.mark.django_db
def test_clock_actions_need_the_permission(handler):
    request = in_progress_received(date(2026, 1, 30))
    with pytest.raises(NotAllowed):
        clock_pause(request=request, actor=Actor.staff(handler), reason="ID")


@pytest.mark.django_db(transaction=True)
def test_extension_moves_the_date_emails_the_subject_and_is_audited(dpo):
    request = in_progress_received(date(2026, 1, 30))
    mail.outbox.clear()
    with time_machine.travel(at(date(2026, 2, 20)), tick=False):
        request_extend(request=request, actor=Actor.staff(dpo), reason="Records in five systems")

    request.refresh_from_db()
    assert (request.due_on, request.original_due_on) == (date(2026, 4, 28), date(2026, 3, 2))
    assert request.extended_by == dpo and request.extension_reason == "Records in five systems"
    event = request.events.get(action="deadline_extended")
    assert event.data == {"from": "2026-03-02", "to": "2026-04-28"}
    assert event.note == ""  # the reason stays on the request, off the chain
    assert len(mail.outbox) == 1
    assert "28 April 2026" in mail.outbox[0].body and "Records in five systems" in mail.outbox[0].body


GDPR_EXTENSION_RULE = (
    "The law allows this extension where a request is complex or we receive many requests. "
    "If you disagree, you may complain to a supervisory authority, in particular the Data Protection Authority "
    "(Autorité de protection des données / Gegevensbeschermingsautoriteit), Rue de la Presse 35, 1000 Brussels, "
    "www.dataprotectionauthority.be, which takes complaints in French, Dutch or German."
)
UK_GDPR_EXTENSION_RULE = (
    "The law allows this extension where a request is complex or we receive many requests. "
    "If you disagree, you may complain to a supervisory authority, in particular the Information Commissioner's "
    "Office (ICO), Wycliffe House, Water Lane, Wilmslow SK9 5AF, ico.org.uk, or the Data Protection Authority "
    "(Autorité de protection des données / Gegevensbeschermingsautoriteit), Rue de la Presse 35, 1000 Brussels, "
    "www.dataprotectionauthority.be, which takes complaints in French, Dutch or German."
)
CCPA_EXTENSION_RULE = (
    "The law (CCPA) allows us to take up to 45 more days, 90 days in all from receipt, where that is reasonably "
    "necessary, provided we tell you so and why within the first 45 days. If you disagree, you may complain to "
    "the California Privacy Protection Agency, cppa.ca.gov, or the California Attorney General, or the Data Protection "
    "Authority (Autorité de protection des données / Gegevensbeschermingsautoriteit), Rue de la Presse 35, 1000 Brussels, "
    "www.dataprotectionauthority.be, which takes complaints in French, Dutch or German."
)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("regime", "rule", "other_rules"),
    [
        ("gdpr", GDPR_EXTENSION_RULE, [UK_GDPR_EXTENSION_RULE, CCPA_EXTENSION_RULE]),
        ("uk_gdpr", UK_GDPR_EXTENSION_RULE, [GDPR_EXTENSION_RULE, CCPA_EXTENSION_RULE]),
        ("ccpa", CCPA_EXTENSION_RULE, [GDPR_EXTENSION_RULE, UK_GDPR_EXTENSION_RULE]),
    ],
)
def test_the_extension_email_gives_the_regimes_rule_and_where_to_complain(
    dpo, django_capture_on_commit_callbacks, regime, rule, other_rules
):
    """GDPR Art. 12(3) allows it for complexity or number of requests; the CCPA where reasonably necessary.
    Each names the authority of its regime, as the status page does once the answer is late: the Belgian
    DPA for the GDPR, the ICO for the UK GDPR, the California authorities for the CCPA; and the Belgian DPA for
    every one, as the GDPR applies to every request (handling.supervisory_authorities)."""
    import html

    request = in_progress_received(date(2026, 1, 30), regime=regime)
    mail.outbox.clear()
    with time_machine.travel(at(date(2026, 2, 20)), tick=False), django_capture_on_commit_callbacks(execute=True):
        request_extend(request=request, actor=Actor.staff(dpo), reason="Records in five systems")

    (email,) = [message for message in mail.outbox if request.subject_email in message.to]
    for body in (email.body, html.unescape(email.alternatives[0][0])):
        assert rule in body
        assert not any(other_rule in body for other_rule in other_rules)


@pytest.mark.parametrize(
    ("setup", "today", "reason", "message"),
    [
        ("extended", date(2026, 2, 20), "Complex", "already extended"),
        ("plain", date(2026, 3, 3), "Complex", r"first period to answer ended on 2 March 2026"),
        ("plain", date(2026, 2, 20), "   ", "Give the reason"),
        ("lgpd", date(2026, 2, 1), "Complex", "LGPD allows no extension"),
        ("closed", date(2026, 2, 20), "Complex", "Only a verified, open request"),
    ],
)
@pytest.mark.django_db
def test_bad_extensions_are_refused_and_change_nothing(dpo, setup, today, reason, message):
    if setup == "closed":
        with time_machine.travel(at(date(2026, 1, 30)), tick=False):
            request = request_in_status(Status.COMPLETED)
    else:
        request = in_progress_received(date(2026, 1, 30), regime="lgpd" if setup == "lgpd" else "gdpr")
    if setup == "extended":
        with time_machine.travel(at(date(2026, 2, 10)), tick=False):
            request_extend(request=request, actor=Actor.staff(dpo), reason="First")
    request.refresh_from_db()
    before = (request.due_on, request.extended_at, request.events.count())

    with time_machine.travel(at(today), tick=False):
        with pytest.raises(RequestError, match=message):
            request_extend(request=request, actor=Actor.staff(dpo), reason=reason)
    request.refresh_from_db()
    assert (request.due_on, request.extended_at, request.events.count()) == before


@pytest.mark.django_db
def test_the_request_page_offers_an_extension_only_while_it_is_allowed(dpo, client):
    from django.urls import reverse

    from tests.conftest import login_staff

    request = in_progress_received(date(2026, 1, 30))
    login_staff(client, dpo)
    url = reverse("staff:request", args=[request.reference])
    with time_machine.travel(at(date(2026, 2, 20)), tick=False):
        assert "Extend the deadline" in client.get(url).content.decode()
    with time_machine.travel(at(date(2026, 3, 3)), tick=False):  # the original due date has passed
        assert "Extend the deadline" not in client.get(url).content.decode()


@pytest.mark.django_db
def test_extension_on_the_original_due_date_is_still_allowed(dpo):
    request = in_progress_received(date(2026, 1, 30))
    with time_machine.travel(at(date(2026, 3, 2)), tick=False):
        request_extend(request=request, actor=Actor.staff(dpo), reason="Complex")
    request.refresh_from_db()
    assert request.due_on == date(2026, 4, 28)  # two months after the first month ended (28 Feb)


@pytest.mark.django_db
def test_a_pause_still_running_moves_the_last_day_to_extend_as_resuming_would(dpo):
    """Paused on 20 February, still paused on 5 March: the first month has not ended (the subject's page says
    the answer is due by mid-March), so the extension is allowed, as it was right after a resume."""
    request = in_progress_received(date(2026, 1, 30))
    with time_machine.travel(at(date(2026, 2, 20)), tick=False):
        clock_pause(request=request, actor=Actor.staff(dpo), reason="Proof of address asked by phone")
    with time_machine.travel(at(date(2026, 3, 5)), tick=False):
        request_extend(request=request, actor=Actor.staff(dpo), reason="Complex")
    request.refresh_from_db()
    assert request.extended_at is not None

    late = in_progress_received(date(2026, 1, 30))
    with time_machine.travel(at(date(2026, 2, 20)), tick=False):
        clock_pause(request=late, actor=Actor.staff(dpo), reason="Proof of address asked by phone")
    with time_machine.travel(at(date(2026, 3, 31)), tick=False):  # 2 March + 39 days paused: 10 April, still in time
        request_extend(request=late, actor=Actor.staff(dpo), reason="Complex")
    never_paused = in_progress_received(date(2026, 1, 30))
    with time_machine.travel(at(date(2026, 4, 14)), tick=False):
        with pytest.raises(RequestError, match=r"first period to answer ended on 2 March 2026"):
            request_extend(request=never_paused, actor=Actor.staff(dpo), reason="Complex")


@pytest.mark.django_db
def test_a_request_paused_on_the_working_day_its_month_was_moved_to_is_not_overdue_once_it_restarts(dpo, client):
    """Received 4 March 2026: the month ends on Saturday 4 April, Easter Monday is the 6th, so it is due on the 7th.
    Paused that day and resumed on the 9th, it is due on the 9th: counted from the 4th, the two days were lost."""
    request = in_progress_received(date(2026, 3, 4))
    assert request.due_on == date(2026, 4, 7)
    with time_machine.travel(at(date(2026, 4, 7)), tick=False):
        clock_pause(request=request, actor=Actor.staff(dpo), reason="Proof of address asked by phone")
    with time_machine.travel(at(date(2026, 4, 8)), tick=False):
        assert "8 April 2026" in client.get(reverse("status", args=[request.reference, request.secret])).content.decode()  # not the 7th, gone by
    with time_machine.travel(at(date(2026, 4, 9)), tick=False):
        clock_resume(request=request, actor=Actor.staff(dpo))
        request.refresh_from_db()
        assert (request.due_on, request.paused_days) == (date(2026, 4, 9), 2)
        assert not selectors.answer_is_late(request)


@pytest.mark.django_db
def test_closing_a_paused_request_adds_the_days_paused_to_the_date_it_is_judged_by(dpo):
    """The subject never sent the proof asked for on 20 March: rejected on 10 April, 21 days paused, the answer was
    due by 23 April, and the certificate says it came in time."""
    request = in_progress_received(date(2026, 3, 2))
    with time_machine.travel(at(date(2026, 3, 20)), tick=False):
        handling.clock_pause(request=request, actor=Actor.staff(dpo), question="Please send a copy of a bill in your name.")
    with time_machine.travel(at(date(2026, 4, 10)), tick=False):
        request_reject(
            request=request, actor=Actor.staff(dpo), ground="identity_not_verified",
            explanation="We did not receive the proof we asked for.", expected_status=request.status,
        )
    request.refresh_from_db()
    assert (request.status, request.paused_days, request.due_on, request.clock_paused) == (
        Status.REJECTED, 21, date(2026, 4, 23), False
    )
    assert answered_on_time(request) is True


@pytest.mark.django_db
def test_an_extension_while_the_clock_is_paused_tells_the_date_the_status_page_shows(
    dpo, client, mailoutbox, django_capture_on_commit_callbacks
):
    """Received 2 March, paused on the 10th, extended on the 20th: 2 June plus the 10 days paused so far."""
    request = in_progress_received(date(2026, 3, 2), subject_email="ana@example.com")
    with time_machine.travel(at(date(2026, 3, 10)), tick=False):
        clock_pause(request=request, actor=Actor.staff(dpo), reason="Proof of identity asked")
    with time_machine.travel(at(date(2026, 3, 20)), tick=False):
        mailoutbox.clear()
        with django_capture_on_commit_callbacks(execute=True):
            request_extend(request=request, actor=Actor.staff(dpo), reason="Many systems")
        [email] = mailoutbox
        assert "We will answer by 12 June 2026." in email.body and " 2 June" not in email.body
        assert "the date moves on by the days it stays paused, and to the next working day" in email.body
        assert "12 June 2026" in client.get(reverse("status", args=[request.reference, request.secret])).content.decode()
        # A letter the DPO wrote with the {{ due_on }} placeholder says the same date.
        ResponseTemplate.objects.create(
            purpose=TemplatePurpose.INFORMATION_REQUEST, language="en", subject="{{ reference }}", body="By {{ due_on }}."
        )
        request.refresh_from_db()
        assert render_letter(request, TemplatePurpose.INFORMATION_REQUEST, body="")[1] == "By 12 June 2026."


@pytest.mark.django_db(transaction=True)
def test_an_alert_claimed_before_the_request_closed_is_not_sent():
    """Its task ran late (a worker down, a re-dispatch): staff must not be asked to answer a withdrawn request."""
    from requests_app import tasks

    request = in_progress_received(date(2026, 2, 2))
    mail.outbox.clear()
    sweep_with_the_broker_down(date(2026, 2, 23))
    ids = list(SentNotification.objects.filter(request=request, kind="deadline_alert").values_list("id", flat=True))
    lifecycle.transition(request, "withdraw", actor=Actor.system())
    with time_machine.travel(at(date(2026, 2, 23), hour=11), tick=False):
        tasks.send_deadline_alerts(ids)
    assert mail.outbox == []
    assert not SentNotification.objects.filter(request=request, kind="deadline_alert").exists()


@pytest.mark.django_db
def test_extension_needs_the_permission(handler):
    request = in_progress_received(date(2026, 1, 30))
    with pytest.raises(NotAllowed):
        request_extend(request=request, actor=Actor.staff(handler), reason="Complex")


def alerts_for(request):
    return list(
        SentNotification.objects.filter(request=request, kind="deadline_alert").order_by("id").values_list("key", flat=True)
    )


@pytest.mark.django_db(transaction=True)
def test_reminders_at_each_threshold_then_one_escalation(dpo):
    request = in_progress_received(date(2026, 2, 2))  # due Mon 2 Mar
    PrivacyRequest.objects.filter(pk=request.pk).update(assignee=dpo)
    mail.outbox.clear()

    for day in range(2, 31):
        today = date(2026, 2, 1) + timedelta(days=day)
        with time_machine.travel(at(today), tick=False):
            sweep_deadlines()
            sweep_deadlines()  # a second sweep the same day adds nothing

    assert alerts_for(request) == ["2026-03-02:remind-7", "2026-03-02:remind-2", "2026-03-02:remind-0", "2026-03-02:overdue"]
    subjects = [message.subject for message in mail.outbox]
    assert subjects == [
        f"{request.reference} is due in 7 days",
        f"{request.reference} is due in 2 days",
        f"{request.reference} is due today",
        f"OVERDUE: {request.reference} has passed its statutory deadline",
    ]
    assert mail.outbox[0].to == [dpo.email, "dpo@localhost"]
    assert "Ana" not in mail.outbox[0].body  # no personal data in staff alerts


@pytest.mark.django_db(transaction=True)
def test_no_alerts_while_paused_or_once_closed(dpo):
    paused = in_progress_received(date(2026, 2, 2))
    with time_machine.travel(at(date(2026, 2, 3)), tick=False):
        lifecycle.transition(paused, "await_subject", actor=Actor.system())
    closed = in_progress_received(date(2026, 2, 2))
    lifecycle.transition(closed, "complete", actor=Actor.system())

    with time_machine.travel(at(date(2026, 3, 10)), tick=False):
        assert sweep_deadlines() == 0
    assert alerts_for(paused) == alerts_for(closed) == []


@pytest.mark.django_db(transaction=True)
def test_a_late_recorded_request_gets_only_the_current_alert(dpo):
    # Received 30 Jan, recorded on 28 Feb, two days before it is due: the
    # 7-day reminder is skipped, the 2-day one goes out at once.
    with time_machine.travel(at(date(2026, 2, 28)), tick=False):
        request = submit_request(channel="post", received_at=at(date(2026, 1, 30)), actor=Actor.staff(dpo))
        sweep_deadlines()
    assert alerts_for(request) == ["2026-03-02:remind-2"]


@pytest.mark.django_db(transaction=True)
def test_an_extension_restarts_the_reminders_for_the_new_date(dpo):
    request = in_progress_received(date(2026, 2, 2))
    with time_machine.travel(at(date(2026, 2, 23)), tick=False):
        sweep_deadlines()
        request_extend(request=request, actor=Actor.staff(dpo), reason="Complex")
        sweep_deadlines()
    with time_machine.travel(at(date(2026, 4, 27)), tick=False):
        sweep_deadlines()
    assert alerts_for(request) == ["2026-03-02:remind-7", "2026-05-04:remind-7"]


@pytest.mark.django_db(transaction=True)
def test_a_short_pause_after_a_reminder_does_not_send_it_again(dpo):
    """A one-day wait for the subject after the 7-day reminder used to send it again for the new date, "due in 6
    days" two days after "due in 7 days": the pause gave back the day it took, so the reminder still held."""
    request = in_progress_received(date(2026, 2, 2))  # due Mon 2 Mar
    PrivacyRequest.objects.filter(pk=request.pk).update(assignee=dpo)
    mail.outbox.clear()
    with time_machine.travel(at(date(2026, 2, 23)), tick=False):
        sweep_deadlines()
    with time_machine.travel(at(date(2026, 2, 24)), tick=False):
        lifecycle.transition(request, "await_subject", actor=Actor.system())
    for day in range(25, 33):
        today = date(2026, 2, 1) + timedelta(days=day - 1)
        with time_machine.travel(at(today), tick=False):
            if day == 25:
                request.refresh_from_db()
                lifecycle.transition(request, "start_work", actor=Actor.system())
            sweep_deadlines()

    request.refresh_from_db()
    assert request.due_on == date(2026, 3, 3)
    assert alerts_for(request) == ["2026-03-02:remind-7", "2026-03-03:remind-2", "2026-03-03:remind-0", "2026-03-03:overdue"]
    assert [message.subject for message in mail.outbox] == [
        f"{request.reference} is due in 7 days",
        f"{request.reference} is due in 2 days",
        f"{request.reference} is due today",
        f"OVERDUE: {request.reference} has passed its statutory deadline",
    ]


@pytest.mark.django_db(transaction=True)
def test_a_pause_before_a_reminder_moves_it_to_the_new_date(dpo):
    request = in_progress_received(date(2026, 2, 2))  # due Mon 2 Mar
    with time_machine.travel(at(date(2026, 2, 20)), tick=False):
        lifecycle.transition(request, "await_subject", actor=Actor.system())
    with time_machine.travel(at(date(2026, 2, 25)), tick=False):
        request.refresh_from_db()
        lifecycle.transition(request, "start_work", actor=Actor.system())
        sweep_deadlines()
    with time_machine.travel(at(date(2026, 3, 2)), tick=False):
        sweep_deadlines()
    request.refresh_from_db()
    assert request.due_on == date(2026, 3, 9)  # 7 March, a Saturday, moved on to the Monday
    assert alerts_for(request) == ["2026-03-09:remind-7"]


@pytest.mark.django_db(transaction=True)
def test_a_sweep_that_dies_mid_batch_claims_nothing_and_the_next_one_claims_all(monkeypatch):
    requests = [in_progress_received(date(2026, 2, 2)) for _ in range(3)]
    from requests_app.services import deadlines as service

    real_update = service.PrivacyRequest.objects.filter

    def crash(*args, **kwargs):
        if "id__in" in kwargs:
            raise RuntimeError("worker killed")
        return real_update(*args, **kwargs)

    with time_machine.travel(at(date(2026, 2, 23)), tick=False):
        with monkeypatch.context() as patch:
            patch.setattr(service.PrivacyRequest.objects, "filter", crash)
            with pytest.raises(RuntimeError):
                sweep_deadlines()
        assert SentNotification.objects.filter(kind="deadline_alert").count() == 0
        assert sweep_deadlines() == 3
    assert all(alerts_for(request) == ["2026-03-02:remind-7"] for request in requests)


@pytest.mark.django_db(transaction=True)
def test_claimed_alerts_whose_task_never_ran_are_sent_by_a_later_sweep(django_capture_on_commit_callbacks):
    request = in_progress_received(date(2026, 2, 2))
    mail.outbox.clear()

    sweep_with_the_broker_down(date(2026, 2, 23))
    assert SentNotification.objects.get(request=request, kind="deadline_alert").sent_at is None
    assert mail.outbox == []

    with time_machine.travel(at(date(2026, 2, 23), hour=11), tick=False):
        sweep_deadlines()
    assert SentNotification.objects.get(request=request, kind="deadline_alert").sent_at is not None
    assert len(mail.outbox) == 1


@pytest.mark.django_db(transaction=True)
def test_the_alert_task_run_twice_sends_once():
    from requests_app import tasks

    request = in_progress_received(date(2026, 2, 2))
    mail.outbox.clear()
    with time_machine.travel(at(date(2026, 2, 23)), tick=False):
        sweep_deadlines()
        ids = list(SentNotification.objects.filter(request=request, kind="deadline_alert").values_list("id", flat=True))
        tasks.send_deadline_alerts(ids)
        tasks.send_deadline_alerts(ids)
    assert len(mail.outbox) == 1


class DpoMailboxRefusing(locmem.EmailBackend):
    """Django's test outbox, where the DPO's mailbox refuses the next `times` messages with `reply`."""

    reply = (550, b"5.1.1 No such mailbox")
    times = 0

    def send_messages(self, messages):
        if any(settings.DPO_EMAIL in message.to for message in messages) and DpoMailboxRefusing.times:
            DpoMailboxRefusing.times -= 1
            raise SMTPRecipientsRefused({settings.DPO_EMAIL: self.reply})
        return super().send_messages(messages)


def alert_in_two_languages() -> PrivacyRequest:
    """A request due Mon 2 March whose assignee reads Dutch: its alerts go as two emails, theirs and the DPO's."""
    handler = staff_in_role("Handler", username="handler1", email="handler1@example.com")
    StaffProfile.objects.create(user=handler, language="nl")
    request = in_progress_received(date(2026, 2, 2))
    PrivacyRequest.objects.filter(pk=request.pk).update(assignee=handler)
    mail.outbox.clear()
    return request


def sweeps_every_five_minutes(day: date, *, hours: int = 1) -> None:
    """The beat's sweeps from 10:00 on `day` for `hours`, their alert tasks run as a worker runs them: a task
    that fails is logged and retried, its error not raised into the sweep that queued it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(celery_app.conf, "task_eager_propagates", False)
        for minutes in range(0, hours * 60 + 1, 5):
            with time_machine.travel(at(day) + timedelta(minutes=minutes), tick=False):
                sweep_deadlines()


def emails_to(address: str) -> int:
    return sum(message.to == [address] for message in mail.outbox)


@pytest.mark.django_db(transaction=True)
def test_an_alert_the_dpo_mailbox_refuses_for_good_reaches_the_assignee_once(monkeypatch, caplog):
    """Each sweep used to send the assignee the alert again, for as long as the DPO's address was refused."""
    request = alert_in_two_languages()
    monkeypatch.setattr(settings, "EMAIL_BACKEND", "tests.services.test_deadlines.DpoMailboxRefusing")
    monkeypatch.setattr(DpoMailboxRefusing, "times", 1000)

    sweeps_every_five_minutes(date(2026, 2, 23))

    assert emails_to("handler1@example.com") == 1
    assert emails_to(settings.DPO_EMAIL) == 0
    assert SentNotification.objects.get(request=request, kind="deadline_alert").sent_at is not None  # nothing left to send
    assert "refused for good" in caplog.text and settings.DPO_EMAIL not in caplog.text


@pytest.mark.parametrize("times", [1, 20], ids=["retried-by-the-task", "dispatched-again-once-its-retries-ran-out"])
@pytest.mark.django_db(transaction=True)
def test_an_alert_the_dpo_mailbox_refuses_for_now_reaches_each_recipient_once(monkeypatch, times):
    request = alert_in_two_languages()
    monkeypatch.setattr(settings, "EMAIL_BACKEND", "tests.services.test_deadlines.DpoMailboxRefusing")
    monkeypatch.setattr(DpoMailboxRefusing, "reply", (450, b"4.2.1 Mailbox busy, try later"))
    monkeypatch.setattr(DpoMailboxRefusing, "times", times)

    sweeps_every_five_minutes(date(2026, 2, 23))

    assert DpoMailboxRefusing.times == 0
    assert emails_to("handler1@example.com") == emails_to(settings.DPO_EMAIL) == 1
    assert SentNotification.objects.get(request=request, kind="deadline_alert").sent_at is not None


@pytest.mark.django_db(transaction=True)
def test_an_alert_whose_task_is_lost_is_dispatched_again_every_ten_minutes_for_a_day_then_every_two_hours(monkeypatch):
    in_progress_received(date(2026, 2, 2))
    sweep_with_the_broker_down(date(2026, 2, 23))  # claimed at 10:00; its task lost
    dispatched_at = []
    monkeypatch.setattr("requests_app.tasks.send_deadline_alerts.delay", lambda ids: dispatched_at.append(timezone.now()))
    ten_o_clock = at(date(2026, 2, 23))
    sweeps = [ten_o_clock + timedelta(minutes=minutes) for minutes in (5, 15, 20, 30)]
    sweeps += [at(date(2026, 2, 24), hour=9), at(date(2026, 2, 24), hour=11), at(date(2026, 2, 24), hour=12)]

    for sweep_at in sweeps:
        with time_machine.travel(sweep_at, tick=False):
            sweep_deadlines()

    # Each dispatch lost too. None at 10:05 nor 10:20 (dispatched less than 10 minutes before), nor, a day after the
    # claim, at 11:00 (two hours after the last).
    assert dispatched_at == [
        ten_o_clock + timedelta(minutes=15), ten_o_clock + timedelta(minutes=30), at(date(2026, 2, 24), hour=9),
        at(date(2026, 2, 24), hour=12),
    ]


@pytest.mark.django_db(transaction=True)
def test_an_escalation_the_mail_server_refuses_for_days_is_sent_once_it_is_back(monkeypatch):
    """A claimed alert used to be given up a day after its claim: a mail server down longer lost the escalation,
    which has no later alert to make up for it."""
    request = in_progress_received(date(2026, 2, 2))  # due Mon 2 Mar: the escalation on 3 Mar
    monkeypatch.setattr(settings, "EMAIL_BACKEND", "tests.services.test_intake.RefusingMailBackend")
    sweeps_every_five_minutes(date(2026, 3, 3))
    for day in (4, 5, 6):
        sweeps_every_five_minutes(date(2026, 3, day), hours=3)
    assert SentNotification.objects.get(request=request, kind="deadline_alert").sent_at is None
    mail.outbox.clear()

    monkeypatch.setattr(settings, "EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")
    sweeps_every_five_minutes(date(2026, 3, 7), hours=3)

    assert [message.subject for message in mail.outbox] == [f"OVERDUE: {request.reference} has passed its statutory deadline"]
    assert SentNotification.objects.get(request=request, kind="deadline_alert").sent_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_reminder_not_sent_is_dispatched_again_until_the_next_one_is_claimed(monkeypatch):
    in_progress_received(date(2026, 2, 2))  # due Mon 2 Mar
    sweep_with_the_broker_down(date(2026, 2, 23))  # the 7-day reminder claimed; its task lost
    sweep_with_the_broker_down(date(2026, 2, 28))  # the 2-day one claimed; its task lost too
    dispatched = []
    monkeypatch.setattr("requests_app.tasks.send_deadline_alerts.delay", dispatched.append)
    with time_machine.travel(at(date(2026, 2, 28), hour=13), tick=False):
        sweep_deadlines()
    (ids,) = dispatched
    assert [key for key in SentNotification.objects.filter(pk__in=ids).values_list("key", flat=True)] == ["2026-03-02:remind-2"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_sweeps_send_each_reminder_once():
    requests = [in_progress_received(date(2026, 2, 2)) for _ in range(40)]
    mail.outbox.clear()

    def sweep():
        with time_machine.travel(at(date(2026, 2, 23)), tick=False):
            return sweep_deadlines(batch_size=5)

    totals = at_once(sweep, times=2)

    assert sum(totals) == 40
    assert SentNotification.objects.filter(kind="deadline_alert").count() == 40
    assert all(alerts_for(request) == ["2026-03-02:remind-7"] for request in requests)
    assert len(mail.outbox) == 40


@pytest.mark.django_db
def test_status_page_shows_the_due_date_and_the_extension(client, dpo):
    request = in_progress_received(date(2026, 1, 30))
    with time_machine.travel(at(date(2026, 2, 10)), tick=False):
        request_extend(request=request, actor=Actor.staff(dpo), reason="Many systems to search")
        html = client.get(f"/status/{request.reference}/{request.secret}/").content.decode()
    assert "28 April 2026" in html
    assert "Many systems to search" in html


@pytest.mark.parametrize(
    ("regime", "status", "doing"),
    [
        ("ccpa", Status.NEW, ""),
        ("gdpr", Status.NEW, ""),
        ("ccpa", Status.IN_PROGRESS, "We are collecting or changing your data in our systems."),
        ("gdpr", Status.IDENTITY_CHECK, "We are making sure we give your data only to you."),
    ],
)
@pytest.mark.django_db
def test_status_page_of_an_extended_request_says_what_the_extension_email_said(
    client, dpo, django_capture_on_commit_callbacks, regime, status, doing
):
    """Extended before staff started work: "our team will pick it up shortly" would contradict the email's
    "we need more time"."""
    with time_machine.travel(at(date(2026, 1, 30)), tick=False):
        request = request_in_status(status, regime=regime)
    with time_machine.travel(at(date(2026, 2, 10)), tick=False), django_capture_on_commit_callbacks(execute=True):
        request_extend(request=request, actor=Actor.staff(dpo), reason="Many systems to search")
    with time_machine.travel(at(date(2026, 2, 11)), tick=False):
        page = unescape(client.get(f"/status/{request.reference}/{request.secret}/").content.decode())

    (email,) = [message for message in mail.outbox if request.subject_email in message.to]
    assert "We will answer by 28 April 2026." in email.body and "Many systems to search" in email.body
    next_step = page[page.index("What happens next"):page.index("Messages")]
    assert "We need more time to answer your request, as we wrote to you: we will answer by 28 April 2026." in next_step
    assert doing in next_step and "pick it up shortly" not in next_step
    assert "We extended this date because: Many systems to search" in page
    assert "We extended the time to answer and wrote to you with the reason." in page  # the timeline


@pytest.mark.django_db
def test_admin_list_shows_days_left_in_colour(client, dpo):
    in_progress_received(date(2026, 1, 30))
    login_staff(client, dpo)
    with time_machine.travel(at(date(2026, 2, 27)), tick=False):
        html = client.get("/admin/requests_app/privacyrequest/").content.decode()
    assert "3 days left" in html and "due-urgent" not in html and "due-soon" in html
    with time_machine.travel(at(date(2026, 3, 4)), tick=False):
        login_staff(client, dpo)  # the idle session expired in the meantime
        html = client.get("/admin/requests_app/privacyrequest/").content.decode()
    assert "2 days overdue" in html and "due-overdue" in html


@pytest.mark.django_db
def test_extending_a_request_without_email_tells_staff_to_write_instead_of_saying_the_subject_was_told(dpo, client):
    """A request recorded from a letter has no email address: nothing is emailed, and the page says so."""
    from django.contrib.messages import get_messages
    from django.urls import reverse

    request = in_progress_received(date(2026, 3, 2))
    PrivacyRequest.objects.filter(pk=request.pk).update(subject_email="", channel="post")
    login_staff(client, dpo)
    with time_machine.travel(at(date(2026, 3, 20)), tick=False):
        response = client.post(reverse("staff:request_action", args=[request.reference, "extend"]), {"reason": "Complex"})
    shown = [str(message) for message in get_messages(response.wsgi_request)]
    assert shown == [
        "Deadline extended. This subject has no email address, so nothing was emailed: tell them of the new date "
        "and the reason by post before the date the request was due until now, when the first period ends (Art. 12(3))."
    ]
    request.refresh_from_db()
    assert request.extended_at is not None and not SentNotification.objects.filter(request=request).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("regime", ["ccpa", "lgpd"])
def test_under_the_ccpa_and_the_lgpd_waiting_for_the_subject_does_not_stop_the_clock(dpo, regime):
    """CCPA Regulations s. 7021(b): 45 days "regardless of time required to verify the request"."""
    from requests_app.services.handling import request_information, subject_reply
    from requests_app.selectors import clock_running

    request = in_progress_received(date(2026, 3, 2), regime=regime)
    due_on = request.due_on
    with time_machine.travel(at(date(2026, 3, 3)), tick=False):
        request_information(request=request, actor=Actor.staff(dpo), body="Which account?", expected_status=Status.IN_PROGRESS)
        with pytest.raises(RequestError, match="the clock cannot be paused"):
            clock_pause(request=request, actor=Actor.staff(dpo), reason="Waiting for proof of identity")
    request.refresh_from_db()
    assert request.status == Status.AWAITING_SUBJECT and not request.clock_paused and not request.pauses.exists()
    assert request.next_alert_on is not None  # the reminders go on
    assert PrivacyRequest.objects.filter(clock_running(), pk=request.pk).exists()  # counted in the lists
    with time_machine.travel(at(date(2026, 3, 23)), tick=False):
        subject_reply(request=request, body="The business one.")
    request.refresh_from_db()
    assert (request.status, request.due_on, request.paused_days) == (Status.IN_PROGRESS, due_on, 0)


@pytest.mark.django_db
def test_an_overdue_request_is_not_paused_and_stays_overdue(dpo, client):
    """A pause stops a running period; it cannot revive one that ended, nor hide the request from the overdue list."""
    from django.urls import reverse

    from requests_app.services.handling import request_information, subject_reply
    from requests_app.selectors import clock_running

    request = in_progress_received(date(2026, 1, 15))
    assert request.due_on == date(2026, 2, 16)
    with time_machine.travel(at(date(2026, 2, 20)), tick=False):
        with pytest.raises(RequestError, match="was due on 16 February 2026: the clock of an overdue request cannot be paused"):
            clock_pause(request=request, actor=Actor.staff(dpo), reason="Waiting")
        request_information(request=request, actor=Actor.staff(dpo), body="Which account?", expected_status=Status.IN_PROGRESS)
        request.refresh_from_db()
        assert not request.clock_paused and PrivacyRequest.objects.filter(clock_running(), due_on__lt=date(2026, 2, 20)).exists()
        status_page = client.get(reverse("status", args=[request.reference, request.secret])).content.decode()
        assert "Please reply below" in status_page and "is paused" not in status_page
    with time_machine.travel(at(date(2026, 3, 30)), tick=False):
        subject_reply(request=request, body="The business one.")
    request.refresh_from_db()
    assert (request.due_on, request.original_due_on, request.paused_days) == (date(2026, 2, 16), date(2026, 2, 16), 0)


@pytest.mark.django_db
def test_resuming_from_a_page_loaded_before_an_extension_keeps_the_extension(dpo):
    """Two members of staff: one extends, the other resumes the clock from a page loaded earlier."""
    from requests_app.deadlines import statutory_due_date

    request = in_progress_received(date(2026, 1, 30))
    with time_machine.travel(at(date(2026, 2, 2)), tick=False):
        clock_pause(request=request, actor=Actor.staff(dpo), reason="Waiting for proof of identity")
    loaded_earlier = PrivacyRequest.objects.get(pk=request.pk)
    with time_machine.travel(at(date(2026, 2, 3)), tick=False):
        request_extend(request=PrivacyRequest.objects.get(pk=request.pk), actor=Actor.staff(dpo), reason="Many systems")
    with time_machine.travel(at(date(2026, 2, 4)), tick=False):
        clock_resume(request=loaded_earlier, actor=Actor.staff(dpo))
    request.refresh_from_db()
    assert request.extended_at is not None
    assert request.due_on == statutory_due_date("gdpr", date(2026, 1, 30), extended=True, pauses=[(date(2026, 2, 2), 2)]) == date(2026, 4, 30)


@pytest.mark.django_db
def test_a_ccpa_receipt_nobody_emailed_is_listed_until_staff_record_confirming_it(dpo, client, mailoutbox):
    """A letter with no email address: no automatic confirmation, so the home page and the digest list
    it from a week before its 10 business days end, and staff record the letter or call that confirmed it."""
    from django.urls import reverse

    from requests_app import emails
    from requests_app.selectors import workload_summary
    from requests_app.services.handling import receipt_confirm

    with time_machine.travel(at(date(2026, 3, 2)), tick=False):
        request = submit_request(channel="post", regime="ccpa", subject_email="", actor=Actor.staff(dpo))
    assert request.acknowledgement_due_on == date(2026, 3, 16)
    with time_machine.travel(at(date(2026, 3, 5)), tick=False):
        assert workload_summary()["receipt_to_confirm"] == []  # more than a week ahead
    with time_machine.travel(at(date(2026, 3, 17)), tick=False):
        assert [r.reference for r in workload_summary()["receipt_to_confirm"]] == [request.reference]
        emails.send_daily_digest(today=date(2026, 3, 17), recipients=["dpo@example.com"])
        assert f"{request.reference}: to confirm by 16 Mar" in mailoutbox[-1].body
        page = login_staff(client, dpo).get(reverse("staff:home")).content.decode()
        assert "Receipts to confirm" in page and request.reference in page

        receipt_confirm(request=request, actor=Actor.staff(dpo))
        with pytest.raises(RequestError, match="confirmed already"):
            receipt_confirm(request=request, actor=Actor.staff(dpo))
        assert workload_summary()["receipt_to_confirm"] == []
    request.refresh_from_db()
    assert request.acknowledgement_met is False  # recorded, and late: the page says so
    assert request.events.filter(action="receipt_confirmed").count() == 1

    closed = submit_request(channel="post", regime="ccpa", subject_email="", actor=Actor.staff(dpo))
    lifecycle.transition(closed, "reject", actor=Actor.staff(dpo))
    with pytest.raises(RequestError, match="closed: there is no receipt left to confirm"):
        receipt_confirm(request=closed, actor=Actor.staff(dpo))


@pytest.mark.django_db
@pytest.mark.parametrize("case", ["ccpa", "overdue"])
def test_the_request_page_offers_no_pause_where_the_clock_cannot_stop(dpo, client, case):
    from django.urls import reverse

    if case == "ccpa":
        request = in_progress_received(date(2026, 3, 2), regime="ccpa")
        today = date(2026, 3, 3)
    else:
        request = in_progress_received(date(2026, 1, 15))  # due 16 February
        today = date(2026, 2, 20)
    login_staff(client, dpo)
    with time_machine.travel(at(today), tick=False):
        page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert "Pause the clock" not in page and "pauses the clock" not in page and "Send and pause" not in page
    assert "Request information" in page and "cannot be paused" in page


@pytest.mark.django_db
def test_the_pause_form_says_the_clock_stops_only_for_the_subject(dpo, client):
    """The subject's page will read "until we hear from you": a pause for a colleague or a system
    would tell them something untrue, and does not stop the legal clock."""
    import html

    from django.urls import reverse

    request = in_progress_received(date(2026, 3, 2))
    login_staff(client, dpo)
    with time_machine.travel(at(date(2026, 3, 3)), tick=False):
        page = html.unescape(client.get(reverse("staff:request", args=[request.reference])).content.decode())
    assert "Pause the clock and keep working" in page
    assert "Waiting for a colleague or a system does not stop the clock." in page
    assert "What do we need from the subject? (sent to them)" in page and "sent to the subject as a request for information" in page


def extended_on_20_march(dpo, **overrides) -> PrivacyRequest:
    """Received on 2 March 2026, 10:00 in Brussels (first month to 2 April), extended on 20 March (to 2 June; 31 May under the CCPA)."""
    request = in_progress_received(date(2026, 3, 2), **overrides)
    with time_machine.travel(at(date(2026, 3, 20)), tick=False):
        request_extend(request=request, actor=Actor.staff(dpo), reason="Records in five systems")
    request.refresh_from_db()
    # Under the CCPA, 90 days from receipt (31 May) come before the GDPR's three months.
    assert request.original_due_on == date(2026, 4, 2) and request.due_on in (date(2026, 5, 31), date(2026, 6, 2))
    return request


def reject_as_excessive(request, dpo) -> None:
    request_reject(
        request=request, actor=Actor.staff(dpo), ground="excessive",
        explanation="The twelfth identical request this month.", expected_status=request.status,
    )
    request.refresh_from_db()


@pytest.mark.django_db
@pytest.mark.parametrize("regime", ["gdpr", "uk_gdpr", "ccpa"])
def test_a_rejection_after_the_first_month_of_an_extended_request_was_late(dpo, regime):
    """Art. 12(4): a refusal reaches the subject within one month of receipt; the extension of Art. 12(3) gives more
    time to act, not to refuse (EDPB Guidelines 01/2022, para. 191). The GDPR applies to every request, a CCPA
    request's too: its 45 days are later than the GDPR's month."""
    request = extended_on_20_march(dpo, regime=regime, rights=[RightDetails(RequestType.ERASURE)])
    with time_machine.travel(at(date(2026, 5, 20)), tick=False):
        reject_as_excessive(request, dpo)
    assert request.status == Status.REJECTED and request.due_on > date(2026, 5, 20)
    assert answered_on_time(request) is False
    html = render_certificate_html(request)
    assert "No: refused after the first period to answer ended (the original due date), which an extension does not move" in html
    assert "No: closed after the due date" not in html
    # The rule is cited as the GDPR and the UK GDPR number it, not to a CCPA request (wording.cites_gdpr_articles).
    assert ("which an extension does not move (Art. 12(4))" in html) == (regime != "ccpa")
    assert ("Excessive, in particular because of its repetitive character (Art. 12(5))" in html) == (regime != "ccpa")


@pytest.mark.django_db
def test_a_rejection_within_the_first_month_of_an_extended_request_was_on_time(dpo):
    request = extended_on_20_march(dpo, rights=[RightDetails(RequestType.ERASURE)])
    with time_machine.travel(at(date(2026, 4, 2), hour=17), tick=False):
        reject_as_excessive(request, dpo)
    assert answered_on_time(request) is True


@pytest.mark.django_db
def test_the_first_month_a_rejection_is_judged_by_moves_on_by_the_days_paused(dpo):
    """Paused 10 to 20 March (10 days), then extended: the first month ends on 12 April (a Sunday), so 13 April."""
    request = in_progress_received(date(2026, 3, 2))
    with time_machine.travel(at(date(2026, 3, 10)), tick=False):
        handling.clock_pause(request=request, actor=Actor.staff(dpo), question="Please send a copy of a bill in your name.")
    with time_machine.travel(at(date(2026, 3, 20)), tick=False):
        handling.subject_reply(request=request, body="Attached is not my bill, sorry.")
        request_extend(request=request, actor=Actor.staff(dpo), reason="Records in five systems")
    request.refresh_from_db()
    assert (request.paused_days, request.original_due_on) == (10, date(2026, 4, 13))
    with time_machine.travel(at(date(2026, 4, 13)), tick=False):
        reject_as_excessive(request, dpo)
    assert answered_on_time(request) is True


@pytest.mark.django_db
def test_a_completion_refusing_a_right_after_the_first_month_was_late_one_granting_all_was_not(dpo):
    """A refusal in part is a refusal (Art. 12(4)); a completion that grants everything may use the extension."""
    refusing = extended_on_20_march(dpo, rights=[RightDetails(RequestType.ACCESS), RightDetails(RequestType.OBJECTION)])
    granting = extended_on_20_march(dpo, rights=[RightDetails(RequestType.ACCESS)])
    with time_machine.travel(at(date(2026, 5, 20)), tick=False):
        for request in (refusing, granting):
            released_package(request)
        handling.request_complete(
            request=refusing, actor=Actor.staff(dpo), letter="We sent you a copy of your data.", expected_status=refusing.status,
            refused=[handling.RightRefusal(RequestType.OBJECTION, "other", "Our fraud checks outweigh your objection.")],
        )
        handling.request_complete(
            request=granting, actor=Actor.staff(dpo), letter="We sent you a copy of your data.", expected_status=granting.status,
        )
    refusing.refresh_from_db()
    granting.refresh_from_db()
    assert refusing.refused_rights == ["objection"] and answered_on_time(refusing) is False
    assert granting.status == Status.COMPLETED and answered_on_time(granting) is True


@pytest.mark.django_db
def test_the_request_page_warns_before_a_late_refusal_and_still_sends_it(client, dpo):
    request = extended_on_20_march(dpo, rights=[RightDetails(RequestType.ERASURE)])
    url = reverse("staff:request", args=[request.reference])
    warning = "An extension gives more time to act on a request, not to refuse it"
    with time_machine.travel(at(date(2026, 4, 2)), tick=False):
        login_staff(client, dpo)
        page = unescape(client.get(url).content.decode())
        assert "Preview the letter, then reject" in page and warning not in page
    with time_machine.travel(at(date(2026, 4, 3)), tick=False):
        login_staff(client, dpo)  # the idle session expired in the meantime
        page = unescape(client.get(url).content.decode())
        assert f"The first period to answer ended on 2 April 2026 (the original due date, moved on by the days paused). {warning}" in page
        response = post_confirmed(
            client,
            reverse("staff:request_action", args=[request.reference, "reject"]),
            {"expected_status": request.status, "expected_version": lifecycle.state_version(request),
             "ground": "excessive", "explanation": "The twelfth identical request this month."},
        )
    assert response.status_code == 302
    request.refresh_from_db()
    assert request.status == Status.REJECTED and answered_on_time(request) is False


@pytest.mark.django_db
@pytest.mark.parametrize(("regime", "law"), [("gdpr", " (Art. 12(4))"), ("uk_gdpr", " (Art. 12(4))"), ("ccpa", "")])
def test_the_late_refusal_warning_cites_the_gdprs_article_only_where_the_requests_law_numbers_it_so(dpo, regime, law):
    request = extended_on_20_march(dpo, regime=regime, rights=[RightDetails(RequestType.ERASURE)])
    with time_machine.travel(at(date(2026, 4, 3)), tick=False):
        warning = late_refusal_warning(request)
    assert warning.endswith(f"sent now reaches the subject late{law}, and the certificate will say so.")


@pytest.mark.django_db
@pytest.mark.parametrize(("regime", "law"), [("gdpr", " (Art. 12(3))"), ("uk_gdpr", " (Art. 12(3))"), ("ccpa", "")])
def test_the_extension_without_email_cites_the_gdprs_article_only_where_the_requests_law_numbers_it_so(dpo, client, regime, law):
    from django.contrib.messages import get_messages

    request = in_progress_received(date(2026, 3, 2), regime=regime)
    PrivacyRequest.objects.filter(pk=request.pk).update(subject_email="", channel="post")
    login_staff(client, dpo)
    with time_machine.travel(at(date(2026, 3, 20)), tick=False):
        response = client.post(reverse("staff:request_action", args=[request.reference, "extend"]), {"reason": "Complex"})
    assert [str(message) for message in get_messages(response.wsgi_request)] == [
        "Deadline extended. This subject has no email address, so nothing was emailed: tell them of the new date "
        f"and the reason by post before the date the request was due until now, when the first period ends{law}."
    ]
