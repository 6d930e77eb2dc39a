from datetime import date, datetime, time, timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from requests_app import tasks
from requests_app.audit import Actor
from requests_app.lifecycle import NotAllowed, StaleRequest
from requests_app.models import AssignmentRule, Organisation, PrivacyRequest, RequestType, Status, Team
from requests_app.services.intake import RightDetails, request_verify_email, verification_token
from requests_app.services.routing import dispatch_unrouted, request_assign, route_request, send_daily_digest
from tests.factories import request_in_status, staff_in_role, staff_who_signs_in, submit_request


@pytest.fixture
def dpo(db):
    return staff_who_signs_in("DPO", username="dpo1", email="dpo1@example.com")


@pytest.fixture
def team(db):
    members = [staff_who_signs_in("Handler", username=f"h{n}", email=f"h{n}@example.com") for n in range(3)]
    team = Team.objects.create(name="Erasure desk")
    team.members.set(members)
    return team


def verified(**overrides) -> PrivacyRequest:
    """A request verified by the subject, with routing left to the test."""
    request = submit_request(**overrides)
    request_verify_email(token=verification_token(request))
    return PrivacyRequest.objects.get(pk=request.pk)


@pytest.mark.django_db
def test_without_rules_the_dpo_gets_the_request(dpo):
    request = verified()
    assert route_request(request_id=request.id) is True
    request.refresh_from_db()
    assert (request.assignee, request.team) == (dpo, None)
    assert request.routed_at is not None
    assert request.events.get(action="routed").data["rule"] == "default: the DPO"


@pytest.mark.django_db
def test_the_first_matching_rule_wins(dpo, team):
    specialist = staff_who_signs_in("Handler", username="uk-specialist")
    AssignmentRule.objects.create(position=1, name="UK to specialist", regime="uk_gdpr", assign_user=specialist)
    AssignmentRule.objects.create(position=2, name="Erasure to desk", request_type=RequestType.ERASURE, assign_team=team)
    AssignmentRule.objects.create(position=3, name="Everything else to DPO", assign_user=dpo)

    uk_erasure = verified(regime="uk_gdpr", rights=[RightDetails(RequestType.ERASURE)])
    erasure = verified(rights=[RightDetails(RequestType.ACCESS), RightDetails(RequestType.ERASURE)])
    access = verified()
    for request in (uk_erasure, erasure, access):
        route_request(request_id=request.id)
        request.refresh_from_db()

    assert uk_erasure.assignee == specialist
    assert (erasure.team, erasure.assignee.privacy_teams.get()) == (team, team)
    assert access.assignee == dpo


@pytest.mark.django_db
def test_rules_match_on_channel_and_organisation(dpo):
    operator = Organisation.objects.create(name="Mobile Operator SA")
    account_manager = staff_who_signs_in("Handler", username="account-manager")
    phone_desk = staff_who_signs_in("Handler", username="phone-desk")
    AssignmentRule.objects.create(position=1, name="Operator", organisation=operator, assign_user=account_manager)
    AssignmentRule.objects.create(position=2, name="Phone", channel="phone", assign_user=phone_desk)
    AssignmentRule.objects.create(position=3, name="Inactive catch-all", active=False, assign_user=phone_desk)

    from_operator = verified(organisation=operator)
    by_phone = submit_request(channel="phone", actor=Actor.staff(dpo))
    plain = verified()
    for request in (from_operator, by_phone, plain):
        route_request(request_id=request.id)
        request.refresh_from_db()
    assert (from_operator.assignee, by_phone.assignee, plain.assignee) == (account_manager, phone_desk, dpo)


@pytest.mark.django_db
def test_team_work_goes_to_the_least_loaded_member(team):
    AssignmentRule.objects.create(position=1, name="All to desk", assign_team=team)
    assignees = []
    for _ in range(6):
        request = verified()
        route_request(request_id=request.id)
        request.refresh_from_db()
        assignees.append(request.assignee.username)
    assert sorted(assignees) == ["h0", "h0", "h1", "h1", "h2", "h2"]
    assert assignees[:3] == ["h0", "h1", "h2"]


@pytest.mark.django_db(transaction=True)
def test_routing_run_twice_assigns_and_notifies_once(dpo):
    request = verified()  # routing and emails run on commit, inline in tests
    request.refresh_from_db()
    assert request.assignee == dpo
    assigned_emails = [m for m in mail.outbox if "assigned to you" in m.subject]
    assert len(assigned_emails) == 1 and assigned_emails[0].to == [dpo.email]

    assert route_request(request_id=request.id) is False
    tasks.route_request(request.id)
    event = request.events.get(action="routed")
    tasks.send_assignment_email(request.id, event.sequence)
    assert request.events.filter(action="routed").count() == 1
    assert len([m for m in mail.outbox if "assigned to you" in m.subject]) == 1


@pytest.mark.django_db
def test_unverified_and_closed_requests_are_not_routed(dpo):
    unverified = submit_request()
    withdrawn = request_in_status(Status.WITHDRAWN)
    assert route_request(request_id=unverified.id) is False
    assert route_request(request_id=withdrawn.id) is False
    assert PrivacyRequest.objects.filter(assignee__isnull=False).count() == 0


@pytest.mark.django_db(transaction=True)
def test_the_sweeper_routes_requests_whose_task_was_lost(dpo, monkeypatch):
    # The broker is down when the subject verifies: the routing task is lost.
    monkeypatch.setattr(tasks.route_request, "delay", lambda request_id: None)
    request = verified()
    assert PrivacyRequest.objects.get(pk=request.pk).routed_at is None
    assert dispatch_unrouted() == 0  # too recent: its own task may still come
    monkeypatch.undo()

    with time_machine.travel(timezone.now() + timedelta(minutes=6)):
        assert dispatch_unrouted() == 1
    request.refresh_from_db()
    assert request.assignee == dpo and request.routed_at is not None
    assert dispatch_unrouted() == 0


@pytest.mark.django_db
def test_assignment_by_hand_is_audited_and_checks_for_stale_data(dpo, team):
    handler = team.members.get(username="h0")
    request = request_in_status(Status.IN_PROGRESS)
    request_assign(request=request, assignee=handler, actor=Actor.staff(dpo), expected_assignee_id=None)
    event = request.events.get(action="assigned")
    assert event.data == {"from": None, "to": "h0"}

    with pytest.raises(StaleRequest, match="reassigned meanwhile"):
        request_assign(request=request, assignee=dpo, actor=Actor.staff(dpo), expected_assignee_id=None)
    assert PrivacyRequest.objects.get(pk=request.pk).assignee == handler


@pytest.mark.django_db
def test_a_handler_cannot_take_someone_elses_request_nor_an_auditor_anything(dpo, team):
    handler = team.members.get(username="h0")
    auditor = staff_in_role("Auditor", username="aud")
    request = request_in_status(Status.IN_PROGRESS)
    request_assign(request=request, assignee=dpo, actor=Actor.staff(dpo))
    for actor in (handler, auditor):
        with pytest.raises(NotAllowed):
            request_assign(request=request, assignee=actor, actor=Actor.staff(actor))
    assert PrivacyRequest.objects.get(pk=request.pk).assignee == dpo


@pytest.mark.django_db
def test_auditors_cannot_be_given_requests(dpo):
    auditor = staff_in_role("Auditor", username="aud")
    request = request_in_status(Status.IN_PROGRESS)
    from requests_app.lifecycle import RequestError

    with pytest.raises(RequestError, match="cannot be given requests"):
        request_assign(request=request, assignee=auditor, actor=Actor.staff(dpo))


@pytest.mark.django_db
def test_the_daily_digest_goes_out_once_a_day(dpo):
    overdue = request_in_status(Status.IN_PROGRESS)
    PrivacyRequest.objects.filter(pk=overdue.pk).update(due_on=timezone.localdate() - timedelta(days=2))
    mail.outbox.clear()

    assert send_daily_digest() is True
    assert send_daily_digest() is False
    assert len(mail.outbox) == 1
    digest = mail.outbox[0]
    assert set(digest.to) == {"dpo@localhost", dpo.email}
    assert "1 overdue" in digest.subject
    assert overdue.reference in digest.body
    assert "Ana" not in digest.body  # references, not personal data


@pytest.mark.django_db
def test_nobody_without_an_authenticator_is_given_requests(dpo):
    """An account still waiting for its setup link cannot sign in: its requests would wait unseen."""
    busy = request_in_status(Status.IN_PROGRESS)
    PrivacyRequest.objects.filter(pk=busy.pk).update(assignee=dpo)  # dpo1 has more work...
    staff_in_role("DPO", username="not-set-up-yet")  # ...than this DPO, who has no authenticator
    request = request_in_status(Status.NEW)
    route_request(request_id=request.id)
    request.refresh_from_db()
    assert request.assignee == dpo


@pytest.mark.parametrize("unavailable", ["switched_off", "no_role", "not_set_up"])
@pytest.mark.django_db
def test_a_rule_to_a_person_who_cannot_work_requests_gives_the_request_to_the_dpo(dpo, client, unavailable):
    """Routed to an account switched off since the rule was written, the request waited unseen until its first
    reminder, and the DPO's lists showed nothing unassigned."""
    from tests.conftest import login_staff

    person = staff_who_signs_in("Handler", username="leaver") if unavailable != "not_set_up" else staff_in_role("Handler", username="leaver")
    if unavailable == "switched_off":
        person.is_active = False
        person.save()
    elif unavailable == "no_role":
        person.groups.clear()
    AssignmentRule.objects.create(position=1, name="Everything to the leaver", assign_user=person)
    request = verified()

    route_request(request_id=request.id)

    request.refresh_from_db()
    assert request.assignee == dpo
    assert request.events.get(action="routed").data == {
        "rule": "Everything to the leaver", "team": None, "assignee": "dpo1", "unavailable": "leaver",
    }
    page = login_staff(client, dpo).get("/staff/rules/").content.decode()
    assert "leaver <strong class=\"error\">(cannot work requests" in page


@pytest.mark.django_db
def test_a_rule_to_a_person_who_can_work_requests_says_nothing_more(dpo, client):
    from tests.conftest import login_staff

    AssignmentRule.objects.create(position=1, name="Everything to Ana", assign_user=staff_who_signs_in("Handler", username="ana"))
    request = verified()
    route_request(request_id=request.id)
    assert "unavailable" not in request.events.get(action="routed").data
    assert "cannot work requests" not in login_staff(client, dpo).get("/staff/rules/").content.decode()


@pytest.mark.django_db
def test_a_rule_to_a_team_with_nobody_who_can_sign_in_gives_the_request_to_the_dpo(dpo):
    """Routed to nobody, the request would wait unseen: no one is told of a request without an assignee."""
    empty = Team.objects.create(name="Empty desk")
    empty.members.set([staff_in_role("Handler", username="not-yet-invited")])  # no authenticator yet
    AssignmentRule.objects.create(position=1, name="UK to the empty desk", regime="uk_gdpr", assign_team=empty)
    request = verified(regime="uk_gdpr")
    mail.outbox.clear()

    route_request(request_id=request.id)

    request.refresh_from_db()
    assert (request.team, request.assignee) == (empty, dpo)
    assert request.events.get(action="routed").data == {"rule": "UK to the empty desk", "team": "Empty desk", "assignee": "dpo1"}


@pytest.mark.django_db
def test_assigning_a_request_says_why_it_cannot_be_assigned(dpo):
    """A request the subject has not confirmed is not closed: the refusal says what it is waiting for."""
    from requests_app.lifecycle import RequestError

    unconfirmed = request_in_status(Status.AWAITING_VERIFICATION)
    with pytest.raises(RequestError, match=rf"^Request {unconfirmed.reference} has not been confirmed by the subject yet; it cannot be assigned\.$"):
        request_assign(request=unconfirmed, assignee=dpo, actor=Actor.staff(dpo))
    closed = request_in_status(Status.REJECTED)
    with pytest.raises(RequestError, match=rf"^Request {closed.reference} is closed; it cannot be assigned\.$"):
        request_assign(request=closed, assignee=dpo, actor=Actor.staff(dpo))
    assert PrivacyRequest.objects.filter(assignee__isnull=False).count() == 0


def on_day(day: date):
    return time_machine.travel(datetime.combine(day, time(10), tzinfo=timezone.get_default_timezone()), tick=False)


def assignment_email_on(day: date, request: PrivacyRequest, *, assignee, actor, capture) -> mail.EmailMessage:
    """The email `assignee` gets when `actor` assigns them `request` on `day`."""
    mail.outbox.clear()
    with on_day(day), capture(execute=True):
        request_assign(request=request, assignee=assignee, actor=Actor.staff(actor))
    (email,) = [message for message in mail.outbox if message.to == [assignee.email]]
    return email


@pytest.mark.django_db
def test_the_assignment_email_gives_the_date_the_request_must_be_answered_by(dpo, team, django_capture_on_commit_callbacks):
    with on_day(date(2026, 10, 12)):
        request = request_in_status(Status.IN_PROGRESS)  # due Thursday 12 November

    email = assignment_email_on(date(2026, 11, 5), request, assignee=team.members.get(username="h0"), actor=dpo,
                                capture=django_capture_on_commit_callbacks)

    sentence = f"Request {request.reference} is now yours. It must be answered by Thursday 12 November 2026."
    assert sentence in email.body and sentence in email.alternatives[0][0]
    assert "paused" not in email.body


@pytest.mark.django_db
def test_the_assignment_email_of_an_overdue_request_says_it_is_overdue(dpo, team, django_capture_on_commit_callbacks):
    """A request recorded late, or reassigned late, was given as "must be answered by" a day already past."""
    with on_day(date(2026, 10, 12)):
        request = request_in_status(Status.IN_PROGRESS)  # due Thursday 12 November

    email = assignment_email_on(date(2026, 11, 13), request, assignee=team.members.get(username="h0"), actor=dpo,
                                capture=django_capture_on_commit_callbacks)

    sentence = f"Request {request.reference} is now yours. It was due on Thursday 12 November 2026: it is overdue, so answer it first."
    assert sentence in email.body and sentence in email.alternatives[0][0]
    assert "must be answered by" not in email.body


@pytest.mark.django_db
def test_the_assignment_email_of_a_paused_request_says_so_and_gives_the_date_a_reply_today_would(
    dpo, team, django_capture_on_commit_callbacks
):
    """Its stored due date is behind while the clock is paused (12 November, past on the day it is assigned): the
    email gives the one the request would have if the subject answered that day, as their status page does."""
    from requests_app.services.deadlines import clock_pause

    with on_day(date(2026, 10, 12)):
        request = request_in_status(Status.IN_PROGRESS)  # due Thursday 12 November
    with on_day(date(2026, 11, 5)):
        clock_pause(request=request, actor=Actor.staff(dpo), reason="ID asked by phone")

    email = assignment_email_on(date(2026, 11, 30), request, assignee=team.members.get(username="h0"), actor=dpo,
                                capture=django_capture_on_commit_callbacks)

    # 12 November and the 25 days paused so far: 7 December, a Monday.
    sentence = (
        f"Request {request.reference} is now yours. Its clock is paused (waiting on the subject): it would be due on "
        "Monday 7 December 2026 if it resumed today."
    )
    assert sentence in email.body and sentence in email.alternatives[0][0]
    assert "12 November" not in email.body and "must be answered by" not in email.body
