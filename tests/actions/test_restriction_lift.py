"""Lifting a restriction (Art. 18(3)): the subject is told first, in the request's thread and language; the
lifting is a source action like the others (dry run, approval, execution) that may not run before the day
the letter gave, clears the flag and the list in a real SQL source (SQLite and PostgreSQL), and goes on
after the request closed."""

import datetime

import pytest
import time_machine
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone, translation

from requests_app import lifecycle, roles
from requests_app.audit import Actor
from requests_app.lifecycle import NotAllowed, RequestError
from requests_app.models import (
    ActionKind,
    ActionStatus,
    AuditEvent,
    ConnectorKind,
    IdentityKind,
    LegalBasis,
    Message,
    MessageDirection,
    NoticeStatus,
    Recipient,
    RequestType,
    SourceAction,
    SourceSystem,
)
from requests_app.services import actions, certificate, lifting
from requests_app.sources import connector_for
from tests.actions.conftest import ANA_EMAIL, BOB_EMAIL, verified_request
from tests.conftest import login_staff
from tests.factories import staff_in_role

PLANNED_ON = datetime.datetime(2026, 3, 2, 10, 0, tzinfo=datetime.UTC)  # a Monday


@pytest.fixture
def restricted(crm, dpo_actor, source_db, run):
    """A restriction request whose restriction is done in the CRM: Ana's two rows flagged, her email listed."""
    source_db("INSERT INTO restriction_list (identity) VALUES (:e)", e=BOB_EMAIL)  # someone else's restriction
    request = verified_request(RequestType.RESTRICTION, language="fr")
    actions.plan_actions(request=request, actor=dpo_actor)
    restriction = run(request.source_actions.get(source=crm).id, "dry_run", "approve", "execute", actor=dpo_actor)
    assert restriction.status == ActionStatus.DONE, restriction.error
    assert source_db("SELECT identity FROM restriction_list ORDER BY identity") == [{"identity": ANA_EMAIL}, {"identity": BOB_EMAIL}]
    return restriction


def _plan_lift(restriction, actor, django_capture_on_commit_callbacks, reason="The accuracy of your address was verified."):
    with time_machine.travel(PLANNED_ON, tick=False), django_capture_on_commit_callbacks(execute=True):
        return lifting.plan_lift(restriction=restriction, actor=actor, reason=reason)


def test_planning_a_lift_tells_the_subject_first_in_their_language(
    restricted, dpo_actor, django_capture_on_commit_callbacks, mailoutbox, source_db
):
    lift = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)

    assert lift.kind == ActionKind.LIFT_RESTRICTION and lift.status == ActionStatus.PLANNED
    assert lift.lift_not_before == datetime.date(2026, 3, 9)  # RESTRICTION_LIFT_NOTICE_DAYS = 7
    letter = Message.objects.get(request=restricted.request, direction=MessageDirection.TO_SUBJECT)
    assert lift.lift_notice == letter
    assert "CRM" in letter.subject and "CRM" in letter.body
    assert "9 mars 2026" in letter.body  # the request's language
    assert "The accuracy of your address was verified." in letter.body
    assert [email.to for email in mailoutbox] == [[ANA_EMAIL]]
    # Nothing changed yet in the source: the restriction holds until the lifting is carried out.
    assert source_db("SELECT restricted FROM subscribers WHERE email = :e", e=ANA_EMAIL) == [{"restricted": True}] * 2
    events = list(AuditEvent.objects.filter(request=restricted.request).values_list("action", flat=True))
    assert events[-2:] == ["restriction_lift_notice_sent", "restriction_lift_planned"]
    planned = AuditEvent.objects.get(request=restricted.request, action="restriction_lift_planned")
    assert planned.data["not_before"] == "2026-03-09" and "accuracy" not in str(planned.data)  # staff's words stay on the row


@override_settings(RESTRICTION_LIFT_NOTICE_DAYS=14)
def test_the_notice_period_is_a_setting(restricted, dpo_actor, django_capture_on_commit_callbacks):
    assert _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks).lift_not_before == datetime.date(2026, 3, 16)


def test_execution_is_refused_before_the_notice_date_and_clears_flag_and_list_after(
    restricted, dpo_actor, django_capture_on_commit_callbacks, source_db, step
):
    lift = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)
    with time_machine.travel(PLANNED_ON + datetime.timedelta(days=1), tick=False):
        # The dry run and the approval change nothing: they may come before the day.
        lift = step(actions.dry_run_start, lift, actor=dpo_actor)
        assert lift.status == ActionStatus.AWAITING_APPROVAL
        assert lift.dry_run["categories"] == [{"category": "subscribers", "rows": 2, "fields": 2}]
        assert lift.dry_run["list_entries"] == 1
        lift = step(actions.approve, lift, actor=dpo_actor)
    with time_machine.travel(datetime.datetime(2026, 3, 8, 22, 30, tzinfo=datetime.UTC), tick=False):  # 23:30 in Brussels
        with pytest.raises(RequestError, match="may not be lifted before"):
            step(actions.execute, lift, actor=dpo_actor)
    assert source_db("SELECT restricted FROM subscribers WHERE email = :e", e=ANA_EMAIL) == [{"restricted": True}] * 2

    with time_machine.travel(datetime.datetime(2026, 3, 9, 7, 0, tzinfo=datetime.UTC), tick=False):
        lift = step(actions.execute, lift, actor=dpo_actor)
    assert lift.status == ActionStatus.DONE, lift.error
    assert lift.result["list_entries"] == 1
    assert source_db("SELECT email, restricted FROM subscribers ORDER BY id") == [
        {"email": ANA_EMAIL, "restricted": False}, {"email": ANA_EMAIL, "restricted": False},
        {"email": BOB_EMAIL, "restricted": False},
    ]
    assert source_db("SELECT identity FROM restriction_list") == [{"identity": BOB_EMAIL}]  # only hers removed
    assert AuditEvent.objects.filter(request=restricted.request, action="source_action_done", data__kind="lift_restriction").exists()
    with pytest.raises(RequestError, match="already been carried out"):
        step(actions.execute, lift, actor=dpo_actor)
    plan, _held = actions.build_plan(lift)  # run again, the lifting finds nothing left to change
    again = connector_for(lift.source).preview(plan)
    assert again["categories"] == [{"category": "subscribers", "rows": 2, "fields": 0}] and again["list_entries"] == 0


def test_lifting_goes_on_after_the_request_was_withdrawn(
    restricted, dpo_actor, django_capture_on_commit_callbacks, source_db, run
):
    request = restricted.request
    lifecycle.transition(request, "withdraw", actor=Actor.subject())
    lift = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)
    with time_machine.travel(PLANNED_ON + datetime.timedelta(days=7), tick=False):
        lift = run(lift.id, "dry_run", "approve", "execute", actor=dpo_actor)
    assert lift.status == ActionStatus.DONE, lift.error
    assert source_db("SELECT count(*) AS n FROM subscribers WHERE restricted") == [{"n": 0}]


def test_only_a_restriction_carried_out_can_be_lifted_and_only_once(
    crm, restricted, dpo_actor, django_capture_on_commit_callbacks
):
    erasure = verified_request(RequestType.ERASURE)
    actions.plan_actions(request=erasure, actor=dpo_actor)
    with pytest.raises(RequestError, match="Only a restriction that was carried out"):
        _plan_lift(erasure.source_actions.get(), dpo_actor, django_capture_on_commit_callbacks)
    with pytest.raises(RequestError, match="Say why"):
        _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks, reason="  ")

    _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)
    with pytest.raises(RequestError, match="already planned"):
        _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)
    assert Message.objects.filter(request=restricted.request).count() == 1  # one letter


def test_only_who_may_work_the_request_plans_or_approves_a_lift(
    restricted, dpo_actor, django_capture_on_commit_callbacks, step
):
    for role in (roles.AUDITOR, roles.HANDLER):  # the handler is not assigned the request
        with pytest.raises(NotAllowed):
            _plan_lift(restricted, Actor.staff(staff_in_role(role)), django_capture_on_commit_callbacks)
    assigned = staff_in_role(roles.HANDLER)
    type(restricted.request).objects.filter(pk=restricted.request_id).update(assignee=assigned)
    restricted.refresh_from_db()
    lift = _plan_lift(restricted, Actor.staff(assigned), django_capture_on_commit_callbacks)
    lift = step(actions.dry_run_start, lift, actor=Actor.staff(assigned))
    with pytest.raises(NotAllowed):
        step(actions.approve, lift, actor=Actor.staff(staff_in_role(roles.AUDITOR)))


def test_a_pending_lift_does_not_block_completion(
    crm, dpo_actor, django_capture_on_commit_callbacks, run
):
    Recipient.objects.create(source=crm, name="Mailer", country="BE", notification_email="privacy@mailer.example")
    request = verified_request(RequestType.RESTRICTION)
    actions.plan_actions(request=request, actor=dpo_actor)
    restriction = request.source_actions.get()
    _plan_lift(run(restriction.id, "dry_run", "approve", "execute", actor=dpo_actor), dpo_actor, django_capture_on_commit_callbacks)

    assert request.recipient_notices.get().status == NoticeStatus.SENT
    assert actions.completion_blockers(request) == []


def test_the_completion_letter_and_the_certificate_mention_a_lift_carried_out(
    restricted, dpo_actor, django_capture_on_commit_callbacks, run
):
    lift = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)
    with time_machine.travel(PLANNED_ON + datetime.timedelta(days=7), tick=False):
        run(lift.id, "dry_run", "approve", "execute", actor=dpo_actor)
    type(restricted.request).objects.filter(pk=restricted.request_id).update(language="en")
    restricted.request.refresh_from_db()
    summary = certificate.outcome_summary(restricted.request)
    assert "We restricted the processing of your data in CRM." in summary
    assert "We lifted the restriction of the processing of your data in CRM, as we told you beforehand." in summary
    with translation.override("en"):
        page = certificate.render_certificate_html(restricted.request)
    assert "Lifting of a restriction: CRM" in page
    assert "Restriction list entries removed" in page and "2026-03-09" in page


@pytest.mark.parametrize("source_url", ["sqlite"], indirect=True)
def test_the_request_page_offers_the_lift_on_a_completed_request_and_says_when_it_may_run(
    client, dpo, restricted, django_capture_on_commit_callbacks
):
    login_staff(client, dpo)
    type(restricted.request).objects.filter(pk=restricted.request_id).update(status="completed")
    page = client.get(reverse("staff:request", args=[restricted.request.reference])).content.decode()
    assert "Lift this restriction" in page

    with time_machine.travel(PLANNED_ON, tick=False), django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("staff:source_action", args=[restricted.public_id, "lift"]), {"reason": "Accuracy verified."})
    assert response.status_code == 302
    lift = restricted.request.source_actions.get(kind=ActionKind.LIFT_RESTRICTION)
    with time_machine.travel(PLANNED_ON, tick=False):
        page = client.get(reverse("staff:request", args=[restricted.request.reference])).content.decode()
        assert "Not before 9 March 2026: the subject was told." in page and "Accuracy verified." in page
        assert "Lift this restriction" not in page
        client.post(reverse("staff:source_action", args=[lift.public_id, "dry_run"]))
    lift.refresh_from_db()
    assert lift.status in (ActionStatus.DRY_RUNNING, ActionStatus.AWAITING_APPROVAL)


def test_a_manual_source_owner_confirms_the_lift_only_from_the_notice_date(
    db, dpo, dpo_actor, django_capture_on_commit_callbacks
):
    source = SourceSystem.objects.create(
        slug="paper", name="Paper files", connector=ConnectorKind.MANUAL, identity_kind=IdentityKind.EMAIL,
        purposes="Archive", legal_basis=LegalBasis.CONTRACT, retention="5 years", origin="The subject",
    )
    request = verified_request(RequestType.RESTRICTION)
    actions.plan_actions(request=request, actor=dpo_actor)
    restriction = actions.manual_action_done(action=request.source_actions.get(source=source), actor=dpo_actor, rows=3)
    lifecycle.transition(request, "withdraw", actor=Actor.subject())
    lift = _plan_lift(restriction, dpo_actor, django_capture_on_commit_callbacks)
    assert lift.status == ActionStatus.MANUAL
    with time_machine.travel(PLANNED_ON + datetime.timedelta(days=6), tick=False), pytest.raises(RequestError, match="may not be lifted before"):
        actions.manual_action_done(action=lift, actor=dpo_actor, rows=3)
    with time_machine.travel(PLANNED_ON + datetime.timedelta(days=7), tick=False):
        lift = actions.manual_action_done(action=lift, actor=dpo_actor, rows=3)
    assert lift.status == ActionStatus.DONE and lift.finished_at <= timezone.now()


def test_a_dead_lift_run_of_a_closed_request_is_taken_over_not_ended(
    restricted, dpo_actor, django_capture_on_commit_callbacks, source_db, step
):
    from tests.actions.test_action_heartbeat import died

    lifecycle.transition(restricted.request, "withdraw", actor=Actor.subject())
    lift = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)
    with time_machine.travel(PLANNED_ON + datetime.timedelta(days=7)):
        lift = step(actions.approve, step(actions.dry_run_start, lift, actor=dpo_actor), actor=dpo_actor)
        actions.execute(action=lift, actor=dpo_actor)  # taken by a worker that died
        died(type(lift).objects.get(pk=lift.pk))
        with django_capture_on_commit_callbacks(execute=True):
            assert actions.requeue_dead_actions() == 1
    lift.refresh_from_db()
    assert lift.status == ActionStatus.DONE, lift.error
    assert source_db("SELECT count(*) AS n FROM subscribers WHERE restricted") == [{"n": 0}]


def test_a_failed_lift_of_a_closed_request_is_listed_on_the_home_page(
    client, restricted, dpo_actor, django_capture_on_commit_callbacks, source_db, step
):
    lifecycle.transition(restricted.request, "withdraw", actor=Actor.subject())
    lift = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)
    source_db("DROP TABLE restriction_list")
    lift = step(actions.dry_run_start, lift, actor=dpo_actor)
    assert lift.status == ActionStatus.PLANNED and lift.error  # refused at its dry run

    page = login_staff(client, dpo_actor.user).get(reverse("staff:home")).content.decode()
    assert f"{restricted.request.reference}</a>: CRM, Lifting of a restriction · dry run refused" in page


def test_the_purge_forgets_why_a_restriction_was_lifted_and_no_lift_is_planned_after_it(
    restricted, dpo_actor, django_capture_on_commit_callbacks
):
    from requests_app.services import intake

    lift = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)
    intake.purge_personal_data(restricted.request)
    lift.refresh_from_db()
    assert lift.lift_reason == "" and lift.lift_not_before == datetime.date(2026, 3, 9)
    lift.delete()
    restricted.request.refresh_from_db()
    with pytest.raises(RequestError, match="personal data has been deleted"):
        _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)


def test_a_lifting_waits_while_another_request_of_the_subject_keeps_the_same_data_restricted(
    restricted, crm, dpo_actor, django_capture_on_commit_callbacks, source_db, run, step
):
    """One flag and one list entry per person, not per request: lifting the first request's restriction lifted
    the second's too, though its ground (an objection pending, say) still held and nobody was told."""
    second = verified_request(RequestType.RESTRICTION)  # Ana again
    done = run(actions.plan_actions(request=second, actor=dpo_actor)[0].id, "dry_run", "approve", "execute", actor=dpo_actor)
    assert done.status == ActionStatus.DONE and done.source == crm
    lift = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)
    with time_machine.travel(datetime.datetime(2026, 3, 10, 9, 0, tzinfo=datetime.UTC), tick=False):
        lift = step(actions.dry_run_start, lift, actor=dpo_actor)
        lift = step(actions.approve, lift, actor=dpo_actor)
        with pytest.raises(RequestError, match=f"restricted for the subject's request {second.reference} too"):
            step(actions.execute, lift, actor=dpo_actor)
    assert source_db("SELECT restricted FROM subscribers WHERE email = :e", e=ANA_EMAIL) == [{"restricted": True}] * 2

    # The second's lifting planned too (its own letter, its own date): once both dates have come, the first runs.
    with time_machine.travel(PLANNED_ON + datetime.timedelta(days=2), tick=False), django_capture_on_commit_callbacks(execute=True):
        second_lift = lifting.plan_lift(restriction=done, actor=dpo_actor, reason="Your objection was decided.")
    with time_machine.travel(datetime.datetime(2026, 3, 10, 9, 0, tzinfo=datetime.UTC), tick=False):
        with pytest.raises(RequestError, match=second.reference):
            step(actions.execute, lift, actor=dpo_actor)  # the second's date, 11 March, has not come
    with time_machine.travel(datetime.datetime(2026, 3, 11, 9, 0, tzinfo=datetime.UTC), tick=False):
        lift = step(actions.execute, lift, actor=dpo_actor)
    assert lift.status == ActionStatus.DONE, lift.error
    assert source_db("SELECT restricted FROM subscribers WHERE email = :e", e=ANA_EMAIL) == [{"restricted": False}] * 2
    assert second_lift.lift_not_before == datetime.date(2026, 3, 11)


def test_a_lifting_planned_before_the_purge_does_not_run_after_it(
    restricted, dpo_actor, django_capture_on_commit_callbacks, source_db, step
):
    """With the identifiers gone it searched nothing, and ended done with the restriction still in place."""
    from requests_app.services import intake

    lift = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)
    intake.purge_personal_data(restricted.request)
    with time_machine.travel(datetime.datetime(2026, 3, 10, 9, 0, tzinfo=datetime.UTC), tick=False):
        with pytest.raises(RequestError, match="personal data has been deleted"):
            step(actions.dry_run_start, lift, actor=dpo_actor)
    assert SourceAction.objects.get(pk=lift.pk).status == ActionStatus.PLANNED
    assert source_db("SELECT restricted FROM subscribers WHERE email = :e", e=ANA_EMAIL) == [{"restricted": True}] * 2
