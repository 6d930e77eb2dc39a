"""Lifting a restriction (Art. 18(3)): the subject is told first, in the request's thread and language; the
lifting is a source action like the others (dry run, approval, execution) that may not run before the day
the letter gave, clears the flag and the list in a real SQL source (SQLite and PostgreSQL), and goes on
after the request closed."""

import datetime
import html
import threading
import time

import pytest
import time_machine
from django.contrib.messages import get_messages
from django.db import connection, transaction
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone, translation

from requests_app import lifecycle, roles
from requests_app.audit import Actor
from requests_app.lifecycle import NotAllowed, RequestError
from requests_app.models import (
    ActionKind,
    ActionStatus,
    AgentCapacity,
    AuditEvent,
    ConnectorKind,
    IdentityKind,
    LegalBasis,
    Message,
    MessageDirection,
    NoticeStatus,
    PrivacyRequest,
    Recipient,
    RequestType,
    SourceAction,
    SourceSystem,
)
from requests_app.selectors import workload_summary
from requests_app.services import actions, certificate, handling, lifting
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


def _restricted_in_paper_files(dpo_actor):
    """A restriction request whose restriction its owner confirmed done in a manual source, the paper files."""
    source = SourceSystem.objects.create(
        slug="paper", name="Paper files", connector=ConnectorKind.MANUAL, identity_kind=IdentityKind.EMAIL,
        purposes="Archive", legal_basis=LegalBasis.CONTRACT, retention="5 years", origin="The subject",
    )
    request = verified_request(RequestType.RESTRICTION)
    actions.plan_actions(request=request, actor=dpo_actor)
    return actions.manual_action_done(action=request.source_actions.get(source=source), actor=dpo_actor, rows=3)


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


@pytest.mark.parametrize("filed_by_agent", [False, True])
def test_a_lifting_waits_for_its_notice_to_be_emailed(
    restricted, dpo_actor, django_capture_on_commit_callbacks, step, filed_by_agent
):
    """Art. 18(3): the subject is told before the restriction is lifted. With the mail server or the worker down,
    the notice was still unsent on the day, and the lifting ran all the same. An agent who filed without the
    subject's address is written to by email too: the lifting was taken for one told by post, and ran."""
    if filed_by_agent:
        type(restricted.request).objects.filter(pk=restricted.request_id).update(
            subject_email="", agent_capacity=AgentCapacity.AUTHORISED_AGENT, agent_name="Marc Peeters",
            agent_email="marc@example.org", agent_authority_confirmed_at=timezone.now(),
        )
        restricted.refresh_from_db()
    lift = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)
    Message.objects.filter(pk=lift.lift_notice_id).update(emailed_at=None)  # its email task failed, to be retried
    with time_machine.travel(datetime.datetime(2026, 3, 9, 7, 0, tzinfo=datetime.UTC), tick=False):
        lift = step(actions.dry_run_start, lift, actor=dpo_actor)
        lift = step(actions.approve, lift, actor=dpo_actor)
        with pytest.raises(RequestError, match=r"has not been emailed to the subject yet: the restriction may not be lifted"):
            step(actions.execute, lift, actor=dpo_actor)
        assert SourceAction.objects.get(pk=lift.pk).status == ActionStatus.APPROVED
        Message.objects.filter(pk=lift.lift_notice_id).update(emailed_at=timezone.now())  # the retry sent it
        assert step(actions.execute, lift, actor=dpo_actor).status == ActionStatus.DONE


def test_a_notice_emailed_late_gives_the_subject_the_whole_notice_period_from_then(
    restricted, dpo_actor, django_capture_on_commit_callbacks, step
):
    """Sent on day 7 (the mail server down since the planning), it let the lifting run the same day."""
    lift = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)  # 2 March: from 9 March
    Message.objects.filter(pk=lift.lift_notice_id).update(emailed_at=None)  # its email task failed, to be retried
    with time_machine.travel(datetime.datetime(2026, 3, 9, 7, 0, tzinfo=datetime.UTC), tick=False):
        handling.email_to_subject(message_id=lift.lift_notice_id)  # the retry, on the day the letter gave
    lift.refresh_from_db()
    assert lift.lift_not_before == datetime.date(2026, 3, 16)  # RESTRICTION_LIFT_NOTICE_DAYS from the day it went
    with time_machine.travel(datetime.datetime(2026, 3, 9, 8, 0, tzinfo=datetime.UTC), tick=False):
        lift = step(actions.dry_run_start, lift, actor=dpo_actor)
        lift = step(actions.approve, lift, actor=dpo_actor)
        with pytest.raises(RequestError, match=r"notice period runs until 16 March 2026 \(Art\. 18\(3\)\): the restriction may not be lifted before"):
            step(actions.execute, lift, actor=dpo_actor)


def test_a_subject_without_email_is_told_by_post_and_the_lifting_waits_for_the_letter_recorded_posted(
    client, dpo, restricted, django_capture_on_commit_callbacks, step
):
    """Art. 18(3): told before the lifting. Staff were asked to post the notice, and the lifting then ran on its day
    whether or not anyone had: nothing showed the subject had been told."""
    type(restricted.request).objects.filter(pk=restricted.request_id).update(subject_email="", channel="post")  # a letter
    login_staff(client, dpo)
    with time_machine.travel(PLANNED_ON, tick=False), django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("staff:source_action", args=[restricted.public_id, "lift"]), {"reason": "Accuracy verified."})
    assert [str(message) for message in get_messages(response.wsgi_request)] == [
        "Nothing was emailed: this subject has no email address, or their mail server refuses it. Send them the notice "
        "shown under Messages by post now, then record it as posted on this page: the lifting waits for that. Posted "
        "today, the restriction may be lifted from 9 March 2026."
    ]
    lift = restricted.request.source_actions.get(kind=ActionKind.LIFT_RESTRICTION)
    assert lift.lift_notice.emailed_at is None
    with time_machine.travel(datetime.datetime(2026, 3, 9, 7, 0, tzinfo=datetime.UTC), tick=False):
        lift = step(actions.dry_run_start, lift, actor=Actor.staff(dpo))
        lift = step(actions.approve, lift, actor=Actor.staff(dpo))
        with pytest.raises(RequestError, match=r"cannot be emailed: .* record it as posted here: the restriction may not be lifted"):
            step(actions.execute, lift, actor=Actor.staff(dpo))
        posted = login_staff(client, dpo).post(reverse("staff:source_action", args=[lift.public_id, "notice_posted"]), follow=True)
    assert "The notice is recorded as posted. The restriction may be lifted from 16 March 2026." in html.unescape(posted.content.decode())
    lift.refresh_from_db()
    assert (lift.lift_notice_posted_by, lift.lift_not_before) == (dpo, datetime.date(2026, 3, 16))  # the period from posting
    event = AuditEvent.objects.get(request=restricted.request, action="restriction_lift_notice_posted")
    assert event.data["not_before"] == "2026-03-16" and event.data["message"] == str(lift.lift_notice.public_id)
    with time_machine.travel(datetime.datetime(2026, 3, 16, 7, 0, tzinfo=datetime.UTC), tick=False):
        assert step(actions.execute, lift, actor=Actor.staff(dpo)).status == ActionStatus.DONE


def test_the_notice_to_post_says_where_to_post_it(client, dpo, restricted, django_capture_on_commit_callbacks):
    """The postal address recorded for the request, or that there is none."""
    type(restricted.request).objects.filter(pk=restricted.request_id).update(subject_email="", channel="post")
    login_staff(client, dpo)
    with time_machine.travel(PLANNED_ON, tick=False), django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("staff:source_action", args=[restricted.public_id, "lift"]), {"reason": "Accuracy verified."})
    login_staff(client, dpo)  # the session began before the travel back in time
    page = client.get(reverse("staff:request", args=[restricted.request.reference])).content.decode()
    assert "post them the notice shown under Messages" in page
    assert "No postal address recorded: record one on the request's page." in page

    handling.postal_address_correct(request=restricted.request, actor=Actor.staff(dpo), postal_address="Kerkstraat 12\n2000 Antwerpen")
    page = client.get(reverse("staff:request", args=[restricted.request.reference])).content.decode()
    assert 'Post it to:<br><bdi class="prewrap">Kerkstraat 12\n2000 Antwerpen</bdi>' in page
    assert "No postal address recorded: record one" not in page


@pytest.mark.parametrize("emailed", [False, True], ids=["refused at once", "refused after it went"])
def test_a_lifting_whose_subjects_address_is_refused_after_planning_waits_for_the_notice_posted(
    client, restricted, dpo_actor, django_capture_on_commit_callbacks, step, emailed
):
    """Planned with an address that worked ("The subject has been told"), then refused by their mail server (a
    bounce, a mailbox closed): the lifting no longer waited for the email, took the subject for one told by post,
    and ran with no letter posted. Refused after the notice went, the refusal may be of the notice itself."""
    lift = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)
    Message.objects.filter(pk=lift.lift_notice_id).update(emailed_at=timezone.now() if emailed else None)
    PrivacyRequest.objects.filter(pk=restricted.request_id).update(subject_email_rejected_at=timezone.now())
    with time_machine.travel(datetime.datetime(2026, 3, 9, 7, 0, tzinfo=datetime.UTC), tick=False):
        lift = step(actions.dry_run_start, lift, actor=dpo_actor)
        lift = step(actions.approve, lift, actor=dpo_actor)
        with pytest.raises(RequestError, match=r"The notice of this lifting cannot be emailed"):
            step(actions.execute, lift, actor=dpo_actor)
        assert SourceAction.objects.get(pk=lift.pk).status == ActionStatus.APPROVED
        # Staff hear of it now, on the home page (and in the digest), and on the request page with the button.
        home = login_staff(client, dpo_actor.user).get(reverse("staff:home")).content.decode()
        assert f"{restricted.request.reference}</a>: CRM, Lifting of a restriction · notice to post" in home
        page = client.get(reverse("staff:request", args=[restricted.request.reference])).content.decode()
        assert reverse("staff:source_action", args=[lift.public_id, "notice_posted"]) in page

        lifting.record_notice_posted(lift=lift, actor=dpo_actor)
    with time_machine.travel(datetime.datetime(2026, 3, 16, 7, 0, tzinfo=datetime.UTC), tick=False):
        assert step(actions.execute, lift, actor=dpo_actor).status == ActionStatus.DONE
    home = client.get(reverse("staff:home")).content.decode()
    assert "notice to post" not in home


def test_a_notice_is_recorded_posted_once_and_only_for_a_subject_who_cannot_be_emailed(
    restricted, dpo_actor, django_capture_on_commit_callbacks
):
    lift = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)
    with pytest.raises(RequestError, match="emailed to the subject: there is no letter to post"):
        lifting.record_notice_posted(lift=lift, actor=dpo_actor)
    PrivacyRequest.objects.filter(pk=restricted.request_id).update(subject_email_rejected_at=timezone.now())
    with pytest.raises(NotAllowed):  # a handler not assigned the request
        lifting.record_notice_posted(lift=lift, actor=Actor.staff(staff_in_role(roles.HANDLER)))

    lifting.record_notice_posted(lift=lift, actor=dpo_actor)
    with pytest.raises(RequestError, match="already recorded as posted"):
        lifting.record_notice_posted(lift=lift, actor=dpo_actor)
    assert AuditEvent.objects.filter(request=restricted.request, action="restriction_lift_notice_posted").count() == 1


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
@pytest.mark.parametrize(("regime", "law"), [("gdpr", " (Art. 18(3))"), ("uk_gdpr", " (Art. 18(3))"), ("ccpa", ""), ("lgpd", "")])
def test_why_a_lifting_must_wait_cites_the_gdprs_article_only_where_the_requests_law_numbers_it_so(
    restricted, dpo_actor, django_capture_on_commit_callbacks, step, regime, law
):
    lift = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)  # 2 March: from 9 March
    PrivacyRequest.objects.filter(pk=restricted.request_id).update(regime=regime)
    Message.objects.filter(pk=lift.lift_notice_id).update(emailed_at=None)  # its email task failed, to be retried
    with time_machine.travel(datetime.datetime(2026, 3, 9, 7, 0, tzinfo=datetime.UTC), tick=False):
        lift = step(actions.dry_run_start, lift, actor=dpo_actor)
        lift = step(actions.approve, lift, actor=dpo_actor)
        with pytest.raises(RequestError) as unsent:
            step(actions.execute, lift, actor=dpo_actor)
        handling.email_to_subject(message_id=lift.lift_notice_id)  # sent on the day: the period runs from it
    with time_machine.travel(datetime.datetime(2026, 3, 9, 8, 0, tzinfo=datetime.UTC), tick=False):
        with pytest.raises(RequestError) as too_early:
            step(actions.execute, SourceAction.objects.get(pk=lift.pk), actor=dpo_actor)

    assert str(unsent.value).startswith(
        f"The notice of this lifting has not been emailed to the subject yet: the restriction may not be lifted before "
        f"they are told{law}, and then only once the notice period has passed."
    )
    assert str(too_early.value) == (
        f"The subject's notice period runs until 16 March 2026{law}: the restriction may not be lifted before."
    )


@pytest.mark.parametrize("source_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("regime", "told", "event"),
    [
        ("gdpr", "Subject told beforehand (Article 18(3) GDPR)", "Subject told before a restriction is lifted (Article 18(3) GDPR)"),
        (
            "uk_gdpr", "Subject told beforehand (Article 18(3) UK GDPR)",
            "Subject told before a restriction is lifted (Article 18(3) UK GDPR)",
        ),
        ("ccpa", "Subject told beforehand", "Subject told before a restriction is lifted"),
        ("lgpd", "Subject told beforehand", "Subject told before a restriction is lifted"),
    ],
)
def test_a_lifting_in_the_certificate_and_the_timeline_cites_the_notice_before_it_under_the_requests_law(
    client, dpo, restricted, dpo_actor, django_capture_on_commit_callbacks, run, regime, told, event
):
    lift = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)
    with time_machine.travel(PLANNED_ON + datetime.timedelta(days=7), tick=False):
        run(lift.id, "dry_run", "approve", "execute", actor=dpo_actor)
    PrivacyRequest.objects.filter(pk=restricted.request_id).update(regime=regime)

    with translation.override("en"):
        page = certificate.render_certificate_html(PrivacyRequest.objects.get(pk=restricted.request_id))

    assert f"<dt>{told}</dt>" in page
    assert f"<td>{event} <code>restriction_lift_notice_sent</code>" in page
    assert "(Art. 18(3))" not in page

    login_staff(client, dpo)
    page = client.get(reverse("staff:request", args=[restricted.request.reference])).content.decode()
    assert f"<td>{event}</td>" in page and "(Art. 18(3))" not in page


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


@pytest.mark.parametrize("source_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("approved_at", "said"),
    [
        (PLANNED_ON + datetime.timedelta(days=1), "Approved: it may be executed from 9 March 2026."),
        (datetime.datetime(2026, 3, 9, 7, 0, tzinfo=datetime.UTC), "Approved: the action can now be executed."),
    ],
)
def test_approving_a_lift_says_from_when_it_may_be_executed(
    client, dpo_actor, restricted, django_capture_on_commit_callbacks, step, approved_at, said
):
    """Before the day the subject was given, "can now be executed" was untrue: execute() refuses it until then."""
    lift = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)
    with time_machine.travel(approved_at, tick=False):
        step(actions.dry_run_start, lift, actor=dpo_actor)
        response = login_staff(client, dpo_actor.user).post(reverse("staff:source_action", args=[lift.public_id, "approve"]))
    assert [str(message) for message in get_messages(response.wsgi_request)] == [said]


def test_a_manual_source_owner_confirms_the_lift_only_from_the_notice_date(
    db, dpo, dpo_actor, django_capture_on_commit_callbacks
):
    restriction = _restricted_in_paper_files(dpo_actor)
    request = restriction.request
    lifecycle.transition(request, "withdraw", actor=Actor.subject())
    lift = _plan_lift(restriction, dpo_actor, django_capture_on_commit_callbacks)
    assert lift.status == ActionStatus.MANUAL
    with time_machine.travel(PLANNED_ON + datetime.timedelta(days=6), tick=False), pytest.raises(RequestError, match="may not be lifted before"):
        actions.manual_action_done(action=lift, actor=dpo_actor, rows=3)
    with time_machine.travel(PLANNED_ON + datetime.timedelta(days=7), tick=False):
        lift = actions.manual_action_done(action=lift, actor=dpo_actor, rows=3)
    assert lift.status == ActionStatus.DONE and lift.finished_at <= timezone.now()


def test_a_manual_lifting_its_owner_may_not_confirm_says_why_where_the_button_would_be(
    client, db, dpo, dpo_actor, django_capture_on_commit_callbacks
):
    from requests_app.services import intake

    restriction = _restricted_in_paper_files(dpo_actor)
    request = restriction.request
    lifecycle.transition(request, "withdraw", actor=Actor.subject())
    lift = _plan_lift(restriction, dpo_actor, django_capture_on_commit_callbacks)
    login_staff(client, dpo)
    confirm_url = reverse("staff:source_action", args=[lift.public_id, "done"])
    deleted = "The request's personal data has been deleted: lift this restriction in the source system itself."
    with time_machine.travel(PLANNED_ON + datetime.timedelta(days=7), tick=False):
        page = html.unescape(client.get(reverse("staff:request", args=[request.reference])).content.decode())
        assert confirm_url in page and deleted not in page
        intake.purge_personal_data(request)
        page = html.unescape(client.get(reverse("staff:request", args=[request.reference])).content.decode())
        assert deleted in page and confirm_url not in page  # rather than offer "Confirm done" to refuse it
        with pytest.raises(RequestError, match="personal data has been deleted"):
            actions.manual_action_done(action=lift, actor=dpo_actor, rows=3)


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
    client, restricted, crm, dpo_actor, django_capture_on_commit_callbacks, source_db, run, step
):
    """One flag and one list entry per person, not per request: lifting the first request's restriction lifted
    the second's too, though its ground (an objection pending, say) still held and nobody was told."""
    login_staff(client, dpo_actor.user)
    second = verified_request(RequestType.RESTRICTION)  # Ana again
    done = run(actions.plan_actions(request=second, actor=dpo_actor)[0].id, "dry_run", "approve", "execute", actor=dpo_actor)
    assert done.status == ActionStatus.DONE and done.source == crm
    lift = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)
    with time_machine.travel(datetime.datetime(2026, 3, 10, 9, 0, tzinfo=datetime.UTC), tick=False):
        lift = step(actions.dry_run_start, lift, actor=dpo_actor)
        lift = step(actions.approve, lift, actor=dpo_actor)
        with pytest.raises(RequestError, match=f"restricted for the subject's request {second.reference} too"):
            step(actions.execute, lift, actor=dpo_actor)
        # The request page says so where the Execute button would be, rather than offer it to be refused.
        page = html.unescape(client.get(reverse("staff:request", args=[restricted.request.reference])).content.decode())
        assert f"restricted for the subject's request {second.reference} too" in page
        assert reverse("staff:source_action", args=[lift.public_id, "execute"]) not in page
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
    # Its address purged too, the subject "cannot be emailed": there is no letter to post, nor to wait for.
    with pytest.raises(RequestError, match="personal data has been deleted"):
        lifting.record_notice_posted(lift=lift, actor=dpo_actor)
    assert workload_summary()["stopped_actions"] == []


# --- Cancelling a planned lifting -------------------------------------------


def _cancel_lift(lift, actor, django_capture_on_commit_callbacks, reason="You gave us new grounds: your objection is being examined."):
    with time_machine.travel(PLANNED_ON + datetime.timedelta(days=3), tick=False), django_capture_on_commit_callbacks(execute=True):
        return lifting.cancel_lift(lift=SourceAction.objects.get(pk=lift.pk), actor=actor, reason=reason)


def test_cancelling_a_lifting_keeps_the_restriction_and_tells_the_subject_in_their_language(
    restricted, dpo_actor, django_capture_on_commit_callbacks, mailoutbox, source_db, step
):
    lift = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)
    with time_machine.travel(PLANNED_ON + datetime.timedelta(days=1), tick=False):
        lift = step(actions.approve, step(actions.dry_run_start, lift, actor=dpo_actor), actor=dpo_actor)
    assert lift.status == ActionStatus.APPROVED

    lift = _cancel_lift(lift, dpo_actor, django_capture_on_commit_callbacks)

    assert lift.status == ActionStatus.CANCELLED
    assert lift.cancelled_by == dpo_actor.user and lift.cancelled_at == PLANNED_ON + datetime.timedelta(days=3)
    assert lift.lift_cancel_reason == "You gave us new grounds: your objection is being examined."
    letter = Message.objects.filter(request=restricted.request, direction=MessageDirection.TO_SUBJECT).last()
    assert lift.lift_cancel_notice == letter and letter != lift.lift_notice
    assert "CRM" in letter.subject and "CRM" in letter.body
    assert "9 mars 2026" in letter.body  # the day the first letter gave, as the request's language writes it
    assert "You gave us new grounds" in letter.body
    assert [email.to for email in mailoutbox] == [[ANA_EMAIL], [ANA_EMAIL]]  # the notice, then this letter
    events = list(AuditEvent.objects.filter(request=restricted.request).values_list("action", flat=True))
    assert events[-2:] == ["restriction_lift_cancellation_sent", "restriction_lift_cancelled"]
    cancelled = AuditEvent.objects.get(request=restricted.request, action="restriction_lift_cancelled")
    assert cancelled.actor == dpo_actor.user and cancelled.data["action"] == str(lift.public_id)
    assert cancelled.data["message"] == str(letter.public_id)
    assert "grounds" not in str(cancelled.data)  # staff's words stay on the row, purged with the request

    # The restriction stays: the approved lifting no longer runs, even once its day has come.
    with time_machine.travel(PLANNED_ON + datetime.timedelta(days=7), tick=False):
        for service in (actions.execute, actions.dry_run_start, actions.approve):
            with pytest.raises(RequestError, match="lifting was cancelled"):
                step(service, lift, actor=dpo_actor)
    assert SourceAction.objects.get(pk=lift.pk).status == ActionStatus.CANCELLED
    assert source_db("SELECT restricted FROM subscribers WHERE email = :e", e=ANA_EMAIL) == [{"restricted": True}] * 2
    assert source_db("SELECT identity FROM restriction_list ORDER BY identity") == [{"identity": ANA_EMAIL}, {"identity": BOB_EMAIL}]


def test_the_dpos_own_wording_of_the_cancellation_is_used_and_must_name_the_system(
    restricted, dpo_actor, django_capture_on_commit_callbacks
):
    from django.core.exceptions import ValidationError

    from requests_app.models import ResponseTemplate, TemplatePurpose

    purpose = TemplatePurpose.RESTRICTION_LIFT_CANCELLED
    with pytest.raises(ValidationError, match=r"\{\{ source \}\}"):
        ResponseTemplate(purpose=purpose, language="fr", subject="Restriction", body="{{ body }}").clean()
    ResponseTemplate.objects.create(
        purpose=purpose, language="fr", subject="La limitation dans {{ source }} est maintenue",
        body="Nous ne lèverons pas la limitation de vos données dans {{ source }} le {{ lift_on }} : {{ body }}",
    )
    lift = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)
    lift = _cancel_lift(lift, dpo_actor, django_capture_on_commit_callbacks, reason="La vérification n'est pas terminée.")
    assert lift.lift_cancel_notice.subject == "La limitation dans CRM est maintenue"
    assert lift.lift_cancel_notice.body == (
        "Nous ne lèverons pas la limitation de vos données dans CRM le 9 mars 2026 : La vérification n'est pas terminée."
    )


def test_a_lifting_is_cancelled_with_a_reason_by_who_may_plan_one_only(
    restricted, dpo_actor, django_capture_on_commit_callbacks
):
    lift = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)
    with pytest.raises(RequestError, match="Say why the restriction stays"):
        _cancel_lift(lift, dpo_actor, django_capture_on_commit_callbacks, reason="  ")
    for role in (roles.AUDITOR, roles.HANDLER):  # the handler is not assigned the request
        with pytest.raises(NotAllowed):
            _cancel_lift(lift, Actor.staff(staff_in_role(role)), django_capture_on_commit_callbacks)
    assert SourceAction.objects.get(pk=lift.pk).status == ActionStatus.PLANNED
    assert Message.objects.filter(request=restricted.request).count() == 1  # the notice only
    with pytest.raises(RequestError, match="Only the lifting of a restriction"):
        _cancel_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)

    assigned = staff_in_role(roles.HANDLER)
    type(restricted.request).objects.filter(pk=restricted.request_id).update(assignee=assigned)
    assert _cancel_lift(lift, Actor.staff(assigned), django_capture_on_commit_callbacks).status == ActionStatus.CANCELLED


def test_a_lifting_that_ran_or_is_running_cannot_be_cancelled(
    restricted, dpo_actor, django_capture_on_commit_callbacks, step
):
    lift = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)
    with time_machine.travel(PLANNED_ON + datetime.timedelta(days=7), tick=False):
        lift = step(actions.approve, step(actions.dry_run_start, lift, actor=dpo_actor), actor=dpo_actor)
        actions.execute(action=lift, actor=dpo_actor)  # queued, not taken by a worker yet
    with pytest.raises(RequestError, match="being carried out"):
        _cancel_lift(lift, dpo_actor, django_capture_on_commit_callbacks)

    # An HTTP source has no rollback: a run that failed part-way left some of the data lifted.
    SourceAction.objects.filter(pk=lift.pk).update(
        status=ActionStatus.FAILED, result={"categories": [{"category": "subscribers", "rows": 1, "fields": 1}]}
    )
    with pytest.raises(RequestError, match="changed data in the source system before it stopped"):
        _cancel_lift(lift, dpo_actor, django_capture_on_commit_callbacks)

    SourceAction.objects.filter(pk=lift.pk).update(status=ActionStatus.APPROVED, result={})
    with time_machine.travel(PLANNED_ON + datetime.timedelta(days=7), tick=False):
        lift = step(actions.execute, lift, actor=dpo_actor)
    assert lift.status == ActionStatus.DONE, lift.error
    with pytest.raises(RequestError, match="already been lifted"):
        _cancel_lift(lift, dpo_actor, django_capture_on_commit_callbacks)
    assert Message.objects.filter(request=restricted.request).count() == 1  # no letter for a refusal
    assert not AuditEvent.objects.filter(request=restricted.request, action="restriction_lift_cancelled").exists()


def test_a_dry_run_under_way_records_nothing_once_its_lifting_is_cancelled(
    restricted, dpo_actor, django_capture_on_commit_callbacks
):
    lift = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)
    token = actions.dry_run_start(action=lift, actor=dpo_actor).run_token  # queued, its task not run yet
    _cancel_lift(lift, dpo_actor, django_capture_on_commit_callbacks)
    actions.run_dry_run(action_id=lift.id, token=token)  # the worker takes it now
    lift.refresh_from_db()
    assert lift.status == ActionStatus.CANCELLED and lift.dry_run_at is None


def test_the_row_is_checked_again_under_its_lock(restricted, dpo_actor, django_capture_on_commit_callbacks, step):
    """Two people on the same page: the second click acts on what the row holds now, not on what it showed."""
    lift = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)
    as_shown = SourceAction.objects.get(pk=lift.pk)
    _cancel_lift(lift, dpo_actor, django_capture_on_commit_callbacks)
    with pytest.raises(RequestError, match="already been cancelled"):
        lifting.cancel_lift(lift=as_shown, actor=dpo_actor, reason="Again.")
    with pytest.raises(RequestError, match="lifting was cancelled"):
        actions.dry_run_start(action=as_shown, actor=dpo_actor)
    assert Message.objects.filter(request=restricted.request).count() == 2  # the notice and one cancellation


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("source_url", ["sqlite"], indirect=True)
def test_two_cancelling_at_once_cancel_once(restricted, dpo_actor):
    from tests.factories import at_once

    lift = lifting.plan_lift(restriction=restricted, actor=dpo_actor, reason="Accuracy verified.")
    outcomes = at_once(lambda: lifting.cancel_lift(lift=SourceAction.objects.get(pk=lift.pk), actor=dpo_actor, reason="New grounds."), 2)

    assert sorted(type(outcome).__name__ for outcome in outcomes) == ["RequestError", "SourceAction"]
    assert "already been cancelled" in str(next(o for o in outcomes if isinstance(o, RequestError)))
    assert Message.objects.filter(request=restricted.request).count() == 2  # the notice and one cancellation
    assert AuditEvent.objects.filter(request=restricted.request, action="restriction_lift_cancelled").count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("source_url", ["sqlite"], indirect=True)
def test_of_a_cancellation_and_an_execution_at_once_only_one_happens(restricted, dpo_actor, source_db):
    """Whichever takes the lock second finds the other done: a lifting carried out is never called off
    in a letter, and a cancelled one never runs."""
    from tests.factories import at_once

    with time_machine.travel(PLANNED_ON, tick=False):
        lift = lifting.plan_lift(restriction=restricted, actor=dpo_actor, reason="Accuracy verified.")
    with time_machine.travel(PLANNED_ON + datetime.timedelta(days=7), tick=False):
        actions.dry_run_start(action=lift, actor=dpo_actor)  # a transactional test: its task ran on commit
        actions.approve(action=SourceAction.objects.get(pk=lift.pk), actor=dpo_actor)
        works = [
            lambda: actions.execute(action=SourceAction.objects.get(pk=lift.pk), actor=dpo_actor),
            lambda: lifting.cancel_lift(lift=SourceAction.objects.get(pk=lift.pk), actor=dpo_actor, reason="New grounds."),
        ]
        outcomes = at_once(lambda: works.pop()(), 2)

    refusals = [str(outcome) for outcome in outcomes if isinstance(outcome, RequestError)]
    assert len(refusals) == 1, outcomes
    lift.refresh_from_db()
    letters = Message.objects.filter(request=restricted.request).count()
    if lift.status == ActionStatus.CANCELLED:
        assert "lifting was cancelled" in refusals[0] and letters == 2
        assert source_db("SELECT count(*) AS n FROM subscribers WHERE restricted") == [{"n": 2}]
    else:
        assert lift.status == ActionStatus.DONE, lift.error
        assert "being carried out" in refusals[0] or "already been lifted" in refusals[0]
        assert letters == 1 and lift.cancelled_at is None


@pytest.mark.django_db(transaction=True)
def test_confirming_a_manual_lifting_while_it_is_cancelled_is_refused_not_deadlocked(dpo_actor):
    """The owner's confirmation locked the action before the request, a cancellation the request before the action:
    at once, PostgreSQL killed one of them as a deadlock, a server error. Both take the request first now."""
    restriction = _restricted_in_paper_files(dpo_actor)
    with time_machine.travel(PLANNED_ON, tick=False):
        lift = lifting.plan_lift(restriction=restriction, actor=dpo_actor, reason="Accuracy verified.")
    request_locked, cancelled = threading.Event(), []

    def cancel_holding_the_request_first():
        try:
            with transaction.atomic():
                PrivacyRequest.objects.select_for_update().get(pk=lift.request_id)
                request_locked.set()
                time.sleep(1)  # the confirmation starts meanwhile, and waits
                cancelled.append(lifting.cancel_lift(lift=SourceAction.objects.get(pk=lift.pk), actor=dpo_actor, reason="New grounds."))
        finally:
            connection.close()

    with time_machine.travel(PLANNED_ON + datetime.timedelta(days=7)):
        cancelling = threading.Thread(target=cancel_holding_the_request_first)
        cancelling.start()
        request_locked.wait(timeout=10)
        with pytest.raises(RequestError, match="This lifting was cancelled"):
            actions.manual_action_done(action=SourceAction.objects.get(pk=lift.pk), actor=dpo_actor, rows=3)
        cancelling.join()
    assert [action.status for action in cancelled] == [ActionStatus.CANCELLED]


def test_after_a_cancellation_a_new_lifting_is_planned_with_a_fresh_notice(
    restricted, dpo_actor, django_capture_on_commit_callbacks, source_db, run
):
    first = _cancel_lift(_plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks), dpo_actor, django_capture_on_commit_callbacks)
    assert lifting.lift_refusal(restricted) is None

    replanned_on = PLANNED_ON + datetime.timedelta(days=20)
    with time_machine.travel(replanned_on, tick=False), django_capture_on_commit_callbacks(execute=True):
        second = lifting.plan_lift(restriction=restricted, actor=dpo_actor, reason="Your objection was decided.")
    assert second.pk != first.pk and second.status == ActionStatus.PLANNED
    assert second.lift_not_before == datetime.date(2026, 3, 29)  # from its own notice, not the first one's day
    assert second.lift_notice not in (first.lift_notice, first.lift_cancel_notice)
    assert "29 mars 2026" in second.lift_notice.body
    with pytest.raises(RequestError, match="already planned"):
        _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)
    kinds = restricted.request.source_actions.filter(kind=ActionKind.LIFT_RESTRICTION).order_by("id")
    assert list(kinds.values_list("status", flat=True)) == [ActionStatus.CANCELLED, ActionStatus.PLANNED]

    with time_machine.travel(replanned_on + datetime.timedelta(days=7), tick=False):
        second = run(second.id, "dry_run", "approve", "execute", actor=dpo_actor)
    assert second.status == ActionStatus.DONE, second.error
    assert source_db("SELECT count(*) AS n FROM subscribers WHERE restricted") == [{"n": 0}]


def test_a_cancelled_lifting_of_another_request_does_not_count_as_one_due(
    restricted, crm, dpo_actor, django_capture_on_commit_callbacks, source_db, run, step
):
    """The same data restricted for the subject's second request: its lifting, once cancelled, no longer lets
    the first one's lifting end the second's restriction too."""
    second = verified_request(RequestType.RESTRICTION)  # Ana again
    done = run(actions.plan_actions(request=second, actor=dpo_actor)[0].id, "dry_run", "approve", "execute", actor=dpo_actor)
    second_lift = _plan_lift(done, dpo_actor, django_capture_on_commit_callbacks)
    _cancel_lift(second_lift, dpo_actor, django_capture_on_commit_callbacks)
    lift = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)
    with time_machine.travel(datetime.datetime(2026, 3, 10, 9, 0, tzinfo=datetime.UTC), tick=False):
        lift = step(actions.approve, step(actions.dry_run_start, lift, actor=dpo_actor), actor=dpo_actor)
        with pytest.raises(RequestError, match=f"restricted for the subject's request {second.reference} too"):
            step(actions.execute, lift, actor=dpo_actor)
    assert source_db("SELECT restricted FROM subscribers WHERE email = :e", e=ANA_EMAIL) == [{"restricted": True}] * 2


def test_a_cancelled_lifting_is_no_longer_listed_as_stopped_work(
    client, restricted, dpo_actor, django_capture_on_commit_callbacks, source_db, step, mailoutbox
):
    from requests_app.emails import send_daily_digest

    lifecycle.transition(restricted.request, "withdraw", actor=Actor.subject())
    lift = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)
    source_db("DROP TABLE restriction_list")
    lift = step(actions.dry_run_start, lift, actor=dpo_actor)
    assert lift.status == ActionStatus.PLANNED and lift.error  # refused at its dry run: waiting for staff
    listed = f"{restricted.request.reference}</a>: CRM, Lifting of a restriction"
    in_digest = f"- {restricted.request.reference}: CRM, Lifting of a restriction"
    login_staff(client, dpo_actor.user)
    assert listed in client.get(reverse("staff:home")).content.decode()
    send_daily_digest(today=timezone.localdate(), recipients=["dpo@example.com"])
    assert in_digest in mailoutbox[-1].body

    _cancel_lift(lift, dpo_actor, django_capture_on_commit_callbacks)
    assert listed not in client.get(reverse("staff:home")).content.decode()
    send_daily_digest(today=timezone.localdate(), recipients=["dpo@example.com"])
    assert in_digest not in mailoutbox[-1].body


def test_a_manual_sources_lifting_is_cancelled_before_its_owner_confirms_it(db, dpo_actor, django_capture_on_commit_callbacks):
    restriction = _restricted_in_paper_files(dpo_actor)
    lift = _plan_lift(restriction, dpo_actor, django_capture_on_commit_callbacks)
    assert lift.status == ActionStatus.MANUAL
    _cancel_lift(lift, dpo_actor, django_capture_on_commit_callbacks)
    with time_machine.travel(PLANNED_ON + datetime.timedelta(days=7), tick=False), pytest.raises(RequestError, match="lifting was cancelled"):
        actions.manual_action_done(action=lift, actor=dpo_actor, rows=3)
    assert SourceAction.objects.get(pk=lift.pk).status == ActionStatus.CANCELLED


def test_the_purge_forgets_why_a_lifting_was_cancelled_and_none_is_cancelled_after_it(
    restricted, dpo_actor, django_capture_on_commit_callbacks
):
    from requests_app.services import intake

    cancelled = _cancel_lift(_plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks), dpo_actor, django_capture_on_commit_callbacks)
    planned = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)
    intake.purge_personal_data(restricted.request)
    cancelled.refresh_from_db()
    assert cancelled.lift_cancel_reason == "" and cancelled.status == ActionStatus.CANCELLED
    with pytest.raises(RequestError, match="can no longer be told"):
        _cancel_lift(planned, dpo_actor, django_capture_on_commit_callbacks)


def test_the_certificate_and_the_timeline_show_the_cancelled_lifting(
    client, restricted, dpo_actor, django_capture_on_commit_callbacks
):
    lift = _cancel_lift(_plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks), dpo_actor, django_capture_on_commit_callbacks)
    type(restricted.request).objects.filter(pk=restricted.request_id).update(language="en")
    restricted.request.refresh_from_db()
    with translation.override("en"):
        page = certificate.render_certificate_html(restricted.request)
    section = page[page.index("Lifting of a restriction: CRM"):]
    section = section[:section.index("</section>")]
    assert "<dd>Cancelled</dd>" in section
    assert "Why it was to be lifted" in section and "Why it was lifted" not in section
    assert "Restriction list entries removed" not in section  # nothing ran: no count that reads as if it did
    assert f"Cancelled before it ran</dt><dd>{timezone.localtime(lift.cancelled_at):%Y-%m-%d %H:%M}" in section
    assert "(dpo)" in section and "You gave us new grounds" in section
    assert "Subject told the restriction stays in force" in section
    assert "Lifting of a restriction cancelled: the restriction stays in force" in page  # its audit event
    # The completion letter speaks of what was done: the restriction, not a lifting that did not happen.
    summary = certificate.outcome_summary(restricted.request)
    assert "We restricted the processing of your data in CRM." in summary and "lifted" not in summary

    login_staff(client, dpo_actor.user)
    page = client.get(reverse("staff:request", args=[restricted.request.reference]), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Cancelled by dpo, " in page and "the subject was told the restriction stays in force." in page
    timeline = page[page.index('class="list timeline"'):]
    assert "Subject told a restriction stays in force" in timeline
    assert "Lifting of a restriction cancelled: the restriction stays in force" in timeline


def test_the_subject_reads_on_their_status_page_that_the_restriction_stays(
    client, restricted, dpo_actor, django_capture_on_commit_callbacks
):
    from requests_app import selectors

    _cancel_lift(_plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks), dpo_actor, django_capture_on_commit_callbacks)
    with translation.override("en"):
        texts = [str(text) for _moment, text in selectors.subject_timeline(restricted.request)]
    assert texts[-2:] == [
        "We wrote to you before lifting a restriction of your data.",
        "We wrote to you that a restriction of your data stays in force.",
    ]


@pytest.mark.parametrize("source_url", ["sqlite"], indirect=True)
def test_the_request_page_cancels_a_lifting_and_says_why_it_no_longer_can(
    client, dpo, restricted, django_capture_on_commit_callbacks, step
):
    dpo_actor = Actor.staff(dpo)
    lift = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)
    url = reverse("staff:request", args=[restricted.request.reference])
    cancel_url = reverse("staff:source_action", args=[lift.public_id, "cancel_lift"])

    auditor = staff_in_role(roles.AUDITOR)
    login_staff(client, auditor)
    assert "Cancel the lifting" not in client.get(url).content.decode()
    assert client.post(cancel_url, {"reason": "New grounds."}).status_code == 403

    login_staff(client, dpo)
    assert "Cancel the lifting" in client.get(url).content.decode()
    response = client.post(cancel_url, {"reason": " "})
    assert response.status_code == 400 and "This field is required." in response.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(cancel_url, {"reason": "New grounds."}, follow=True)
    page = response.content.decode()
    assert "The lifting is cancelled and the subject has been told that the restriction stays in force." in page
    assert "Cancel the lifting" not in page and "Lift this restriction" in page  # a new one may be planned
    assert SourceAction.objects.get(pk=lift.pk).status == ActionStatus.CANCELLED

    # Someone else's page still offers it: the second click is refused, saying why on the page that no longer offers it.
    response = client.post(cancel_url, {"reason": "New grounds."}, follow=True)
    assert "This lifting has already been cancelled." in response.content.decode()
    # Sent empty as well, it is refused where it can be read: the form it came from is no longer on the page.
    response = client.post(cancel_url, {"reason": " "}, follow=True)
    assert "This field is required." in response.content.decode()

    with time_machine.travel(PLANNED_ON, tick=False), django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("staff:source_action", args=[restricted.public_id, "lift"]), {"reason": "Accuracy verified."})
    second = restricted.request.source_actions.get(kind=ActionKind.LIFT_RESTRICTION, status=ActionStatus.PLANNED)
    with time_machine.travel(PLANNED_ON + datetime.timedelta(days=7), tick=False):
        second = step(actions.execute, step(actions.approve, step(actions.dry_run_start, second, actor=dpo_actor), actor=dpo_actor), actor=dpo_actor)
        assert second.status == ActionStatus.DONE, second.error
        login_staff(client, dpo)  # the session of a week ago has expired
        response = client.post(reverse("staff:source_action", args=[second.public_id, "cancel_lift"]), {"reason": "Too late."}, follow=True)
    assert "This restriction has already been lifted: the lifting can no longer be cancelled." in response.content.decode()


@pytest.mark.parametrize("source_url", ["sqlite"], indirect=True)
def test_planning_a_lifting_someone_planned_first_is_refused_saying_why(client, dpo, restricted, django_capture_on_commit_callbacks):
    """Two tabs: the second page still offers "Lift this restriction", and its refusal must say why, though the row
    no longer offers the form that failed."""
    login_staff(client, dpo)
    lift_url = reverse("staff:source_action", args=[restricted.public_id, "lift"])
    with time_machine.travel(PLANNED_ON, tick=False), django_capture_on_commit_callbacks(execute=True):
        assert client.post(lift_url, {"reason": "Accuracy verified."}).status_code == 302
        response = client.post(lift_url, {"reason": "The accuracy of your address was verified."}, follow=True)
        empty = client.post(lift_url, {"reason": " "}, follow=True)

    page = response.content.decode()
    assert "The lifting of this restriction is already planned." in page
    assert "Lift this restriction" not in page  # the refusal is shown on its own: nothing to send again
    # Its field's error too: the form it is about is no longer on the page.
    assert "This field is required." in empty.content.decode()
    assert restricted.request.source_actions.filter(kind=ActionKind.LIFT_RESTRICTION).count() == 1
    assert Message.objects.filter(request=restricted.request).count() == 1  # one letter


@pytest.mark.parametrize(("regime", "authority"), [("gdpr", "the Data Protection Authority"), ("uk_gdpr", "the Information Commissioner's Office")])
def test_the_notice_says_where_to_object_and_names_the_authority_to_complain_to(
    restricted, dpo_actor, django_capture_on_commit_callbacks, regime, authority
):
    """It asked the subject to contact the DPO, when the request, closed, took no message: it points to the status page,
    which takes one until the lifting runs, and names the right to complain under the request's law."""
    PrivacyRequest.objects.filter(pk=restricted.request_id).update(language="en", regime=regime)
    restricted.request.refresh_from_db()
    lift = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)

    body = lift.lift_notice.body
    assert (
        "From then on, we may process that data again as before the restriction.\n\n"
        "If you disagree, write to us before 9 March 2026 on your request's status page, which takes your message until "
        "the restriction is lifted. You also have the right to lodge a complaint with a supervisory authority, in "
        f"particular {authority}"
    ) in body
    assert "contact our data protection officer" not in body


def test_a_notice_by_post_asks_for_an_objection_by_letter(restricted, dpo_actor, django_capture_on_commit_callbacks):
    PrivacyRequest.objects.filter(pk=restricted.request_id).update(language="en", subject_email="")
    restricted.request.refresh_from_db()
    body = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks).lift_notice.body
    assert f"If you disagree, tell us by letter before 9 March 2026, quoting the reference {restricted.request.reference}." in body
    assert "status page" not in body


def test_a_closed_request_takes_the_subjects_objection_while_a_lifting_they_were_told_of_is_pending(
    client, restricted, dpo_actor, django_capture_on_commit_callbacks, mailoutbox
):
    request = restricted.request
    PrivacyRequest.objects.filter(pk=request.pk).update(language="en")
    request.refresh_from_db()
    status_page = reverse("status", args=[request.reference, request.secret])
    reply = reverse("reply", args=[request.reference, request.secret])
    with django_capture_on_commit_callbacks(execute=True):
        handling.request_complete(request=request, actor=dpo_actor, letter="Done.", expected_status=request.status)
    assert reply not in client.get(status_page).content.decode()  # closed, nothing pending: no form

    lift = _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)
    with time_machine.travel(PLANNED_ON + datetime.timedelta(days=1), tick=False):
        page = client.get(status_page).content.decode()
        assert reply in page and 'name="document"' not in page  # words, no document: the request is closed
        assert "We wrote to you that we will lift a restriction of your data on 9 March 2026 at the earliest." in page
        mailoutbox.clear()
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(reply, {"body": "My address is still wrong: please keep the restriction."})
    assert response.status_code == 302
    objection = Message.objects.get(request=request, direction=MessageDirection.FROM_SUBJECT)
    assert objection.body == "My address is still wrong: please keep the restriction."
    assert AuditEvent.objects.filter(request=request, action="subject_replied").exists()
    assert len(mailoutbox) == 1 and request.reference in mailoutbox[0].subject  # staff alerted, as for any reply
    staff_page = login_staff(client, staff_in_role(roles.DPO, username="dpo-reader")).get(reverse("staff:request", args=[request.reference]))
    assert "please keep the restriction" in staff_page.content.decode()

    _cancel_lift(lift, dpo_actor, django_capture_on_commit_callbacks)
    client.logout()
    assert reply not in client.get(status_page).content.decode()
    with pytest.raises(RequestError, match="This request is closed"):
        handling.subject_reply(request=request, body="And another thing.")


def test_a_closed_request_takes_no_document_with_an_objection(restricted, dpo_actor, django_capture_on_commit_callbacks):
    from django.core.files.uploadedfile import SimpleUploadedFile

    request = restricted.request
    with django_capture_on_commit_callbacks(execute=True):
        handling.request_complete(request=request, actor=dpo_actor, letter="Done.", expected_status=request.status)
    _plan_lift(restricted, dpo_actor, django_capture_on_commit_callbacks)
    document = SimpleUploadedFile("id.pdf", b"%PDF-1.4 x", content_type="application/pdf")
    with pytest.raises(RequestError, match="without a document"):
        handling.subject_reply(request=request, body="Here is my ID.", document=document)
    assert not Message.objects.filter(request=request, direction=MessageDirection.FROM_SUBJECT).exists()
