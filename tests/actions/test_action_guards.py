"""What keeps an action to what was approved: the plan's digest, run tokens, verified identities
only, which legal hold applies, manual sources' holds, and completion's remaining conditions."""

import datetime

import pytest
from django.core import mail
from django.utils import timezone

from requests_app import roles
from requests_app.audit import Actor
from requests_app.lifecycle import NotAllowed, RequestError
from requests_app.models import (
    ActionStatus,
    AuditEvent,
    ConnectorKind,
    EraseMethod,
    EraseStrategy,
    ErasureException,
    IdentityKind,
    LegalBasis,
    LegalHold,
    NoticeStatus,
    Recipient,
    RequestType,
    SourceAction,
    SourceCategory,
    SourceField,
    SourceSystem,
    SubjectIdentity,
    VerificationMethod,
)
from requests_app.services import actions, handling, notices
from requests_app.services.certificate import outcome_summary
from tests.actions.conftest import ANA_PHONE, BOB_EMAIL, verified_request
from requests_app.wording import date_in_words
from tests.factories import staff_in_role


def _approved(request, source, actor, step):
    actions.plan_actions(request=request, actor=actor)
    action = request.source_actions.get(source=source)
    step(actions.dry_run_start, action, actor=actor)
    return step(actions.approve, action, actor=actor)


def test_an_inventory_change_after_approval_makes_the_action_stale(crm, erasure_request, dpo_actor, source_db, step):
    action = _approved(erasure_request, crm, dpo_actor, step)
    assert action.dry_run["categories"][0]["fields"] == 5  # approved: anonymise
    SourceCategory.objects.filter(source=crm).update(erase_method=EraseMethod.DELETE)  # then someone edits the inventory

    action = step(actions.execute, action, actor=dpo_actor)
    assert action.status == ActionStatus.STALE
    assert "inventory" in action.error
    assert source_db("SELECT count(*) AS n FROM subscribers") == [{"n": 3}]


def test_a_hold_added_after_approval_makes_the_action_stale(cdr, erasure_request, dpo_actor, source_db, step):
    action = _approved(erasure_request, cdr, dpo_actor, step)
    LegalHold.objects.create(source=cdr, ground=ErasureException.LEGAL_CLAIMS, basis="Dispute", until=timezone.localdate())
    action = step(actions.execute, action, actor=dpo_actor)
    assert action.status == ActionStatus.STALE
    assert len(source_db("SELECT id FROM calls")) == 3


def test_only_verified_identities_are_acted_on(crm, erasure_request, dpo_actor, source_db, step):
    SubjectIdentity.objects.create(request=erasure_request, kind=IdentityKind.EMAIL, value=BOB_EMAIL)  # not verified
    action = _approved(erasure_request, crm, dpo_actor, step)
    assert action.dry_run["identities"] == 1
    step(actions.execute, action, actor=dpo_actor)
    assert source_db("SELECT name FROM subscribers WHERE email = :e", e=BOB_EMAIL) == [{"name": "Bob Janssens"}]


def test_source_systems_are_acted_on_only_once_the_request_is_in_progress(crm, erasure_request, dpo_actor, step):
    from requests_app import lifecycle

    action = _approved(erasure_request, crm, dpo_actor, step)
    lifecycle.transition(erasure_request, "await_subject", actor=Actor.system())  # proof of identity asked for
    with pytest.raises(RequestError, match="once the request is in progress, after the identity check"):
        actions.plan_actions(request=erasure_request, actor=dpo_actor)
    with pytest.raises(RequestError, match="once the request is in progress"):
        actions.execute(action=action, actor=dpo_actor)
    assert SourceAction.objects.get(pk=action.pk).status == ActionStatus.APPROVED


def test_a_withdrawn_request_is_refused_as_withdrawn_not_for_what_it_still_lacks(crm, erasure_request, dpo_actor):
    """Completing it, or planning its actions, gets the state's refusal: a list of blockers (an erasure not
    planned) or "once the request is in progress" would say there is work left that would let it through."""
    from requests_app.services import intake

    intake.request_withdraw(request=erasure_request, actor=Actor.subject())
    assert actions.completion_blockers(erasure_request)  # nothing was planned: there is a blocker to name

    with pytest.raises(RequestError) as refused:
        handling.request_complete(request=erasure_request, actor=dpo_actor, letter="Done", expected_status=None)
    assert str(refused.value) == "A request that is withdrawn cannot be moved to completed."
    with pytest.raises(RequestError) as refused:
        actions.plan_actions(request=erasure_request, actor=dpo_actor)
    assert str(refused.value) == "Only an open, verified request can be acted on."
    assert not erasure_request.source_actions.exists()


def test_an_execution_queued_before_a_withdrawal_changes_nothing(crm, erasure_request, dpo_actor, source_db, step):
    from requests_app.audit import Actor
    from requests_app.services import intake

    action = _approved(erasure_request, crm, dpo_actor, step)
    actions.execute(action=action, actor=dpo_actor)  # queued, not run: every worker is busy...
    intake.request_withdraw(request=erasure_request, actor=Actor.subject())  # ...and the subject withdraws
    token = SourceAction.objects.get(pk=action.pk).run_token

    assert actions.run_execution(action_id=action.id, token=token) == ActionStatus.FAILED
    assert source_db("SELECT count(*) AS n FROM subscribers WHERE name = 'Ana Peeters'") == [{"n": 1}]  # untouched
    assert SourceAction.objects.get(pk=action.pk).error == "Not carried out: the request is withdrawn now."


def test_actions_are_planned_only_once_an_identifier_is_verified(crm, erasure_request, dpo_actor):
    erasure_request.identities.update(verified_at=None)
    with pytest.raises(RequestError, match="Verify at least one of the subject's identifiers first"):
        actions.plan_actions(request=erasure_request, actor=dpo_actor)
    assert not erasure_request.source_actions.exists()

    erasure_request.identities.filter(kind=IdentityKind.EMAIL).update(verified_at=timezone.now())
    assert [a.source for a in actions.plan_actions(request=erasure_request, actor=dpo_actor)] == [crm]


def test_the_hold_that_ends_last_is_the_one_reported(cdr, erasure_request, dpo_actor, step):
    today = timezone.localdate()
    calls = cdr.categories.get()
    LegalHold.objects.create(source=cdr, ground=ErasureException.LEGAL_OBLIGATION, basis="Telecom law", until=today + datetime.timedelta(days=365))
    LegalHold.objects.create(source=cdr, category=calls, ground=ErasureException.LEGAL_CLAIMS, basis="Dispute", until=today + datetime.timedelta(days=10))
    action = _approved(erasure_request, cdr, dpo_actor, step)
    assert action.dry_run["held"] == [
        {"category": "calls", "ground": "legal_obligation", "basis": "Telecom law", "basis_translations": {},
         "until": (today + datetime.timedelta(days=365)).isoformat()}
    ]


def test_a_category_hold_keeps_only_that_category(crm, erasure_request, dpo_actor, source_db, step):
    SourceCategory.objects.create(
        source=crm, slug="restrictions", category="other", query="SELECT * FROM restriction_list WHERE identity IN :identities",
        table="restriction_list", identity_field="identity",
    )
    LegalHold.objects.create(source=crm, category=crm.categories.get(slug="subscribers"), ground=ErasureException.LEGAL_CLAIMS,
                             basis="Dispute", until=timezone.localdate())
    action = _approved(erasure_request, crm, dpo_actor, step)
    assert [c["category"] for c in action.dry_run["categories"]] == ["restrictions"]
    assert [h["category"] for h in action.dry_run["held"]] == ["subscribers"]


def test_an_anonymisation_that_changes_no_field_is_refused_at_the_dry_run(crm, erasure_request, dpo_actor, step):
    crm.categories.get().fields.update(erase_strategy=EraseStrategy.KEEP)
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    action = step(actions.dry_run_start, erasure_request.source_actions.get(), actor=dpo_actor)
    assert action.status == ActionStatus.PLANNED
    assert "no field has an erasure strategy" in action.error


def test_a_run_that_died_after_the_source_committed_is_recorded_as_done_when_redelivered(
    crm, erasure_request, dpo_actor, source_db, step
):
    from requests_app.sources import connector_for

    Recipient.objects.create(source=crm, name="Billing partner", country="Belgium", notification_email="art19@partner.example")
    action = _approved(erasure_request, crm, dpo_actor, step)
    actions.execute(action=action, actor=dpo_actor)  # queued; a worker takes it...
    SourceAction.objects.filter(pk=action.pk).update(taken_at=timezone.now())
    action = SourceAction.objects.get(pk=action.pk)
    plan, _held = actions.build_plan(action)
    connector_for(crm).apply(plan, action.dry_run["fingerprint"])  # ...changes the source, commits, and dies

    assert actions.run_execution(action_id=action.id, token=action.run_token) == ActionStatus.DONE  # redelivered
    action.refresh_from_db()
    assert action.result["categories"] == action.dry_run["categories"] and action.result["already_in_place"]
    assert erasure_request.recipient_notices.get().status != NoticeStatus.NOT_NEEDED  # the partner is to be told
    assert "We erased your data in CRM" in outcome_summary(erasure_request)


def test_a_run_that_died_after_the_source_committed_is_recorded_as_done_when_staff_start_it_again(
    crm, erasure_request, dpo_actor, source_db, step, settings
):
    """Staff see the lost run before the broker redelivers it: their retry must know it may have committed."""
    import datetime

    from requests_app.sources import connector_for

    Recipient.objects.create(source=crm, name="Billing partner", country="Belgium", notification_email="art19@partner.example")
    action = _approved(erasure_request, crm, dpo_actor, step)
    actions.execute(action=action, actor=dpo_actor)  # queued; a worker takes it...
    long_ago = timezone.now() - datetime.timedelta(seconds=settings.SOURCE_ACTION_TIME_LIMIT + 1)
    SourceAction.objects.filter(pk=action.pk).update(taken_at=long_ago, started_at=long_ago)
    action = SourceAction.objects.get(pk=action.pk)
    plan, _held = actions.build_plan(action)
    connector_for(crm).apply(plan, action.dry_run["fingerprint"])  # ...changes the source, commits, and dies

    action = actions.execute(action=action, actor=dpo_actor)  # "Execute again (its task was lost)"
    assert actions.run_execution(action_id=action.id, token=action.run_token) == ActionStatus.DONE
    action.refresh_from_db()
    assert action.result["categories"] == action.dry_run["categories"] and action.result["already_in_place"]
    assert erasure_request.recipient_notices.get().status != NoticeStatus.NOT_NEEDED
    assert "We erased your data in CRM" in outcome_summary(erasure_request)


@pytest.mark.parametrize("made_before_dying", [True, False])
def test_a_run_that_died_then_a_withdrawal_records_what_the_source_holds(
    crm, erasure_request, dpo_actor, source_db, step, made_before_dying
):
    from requests_app.services import intake
    from requests_app.sources import connector_for

    action = _approved(erasure_request, crm, dpo_actor, step)
    actions.execute(action=action, actor=dpo_actor)  # queued; a worker takes it...
    SourceAction.objects.filter(pk=action.pk).update(taken_at=timezone.now())
    action = SourceAction.objects.get(pk=action.pk)
    if made_before_dying:
        plan, _held = actions.build_plan(action)
        connector_for(crm).apply(plan, action.dry_run["fingerprint"])  # ...changes the source, commits, and dies
    intake.request_withdraw(request=erasure_request, actor=Actor.subject())  # then the subject withdraws

    status = actions.run_execution(action_id=action.id, token=action.run_token)  # redelivered
    # Done if the change was made (the trail must say so), else not carried out.
    assert status == (ActionStatus.DONE if made_before_dying else ActionStatus.FAILED)
    action.refresh_from_db()
    assert action.result.get("already_in_place", False) == made_before_dying
    assert ("held" in action.result) == made_before_dying  # the certificate reads a done action's holds


@pytest.mark.parametrize("change_after_approval", ["legal hold", "inventory edit"])
def test_a_redelivered_run_after_a_withdrawal_records_nothing_done_when_the_plan_changed(
    crm, erasure_request, dpo_actor, source_db, step, change_after_approval
):
    """A hold or an inventory edit since approval: what the source holds no longer says what was approved."""
    from requests_app.services import intake

    action = _approved(erasure_request, crm, dpo_actor, step)
    actions.execute(action=action, actor=dpo_actor)
    SourceAction.objects.filter(pk=action.pk).update(taken_at=timezone.now())  # a worker took it and died
    if change_after_approval == "legal hold":
        LegalHold.objects.create(source=crm, ground=ErasureException.LEGAL_CLAIMS, basis="Dispute", until=timezone.localdate())
    else:
        crm.categories.get().fields.update(erase_strategy=EraseStrategy.KEEP)  # nothing left to erase: build_plan refuses
    intake.request_withdraw(request=erasure_request, actor=Actor.subject())

    action = SourceAction.objects.get(pk=action.pk)
    assert actions.run_execution(action_id=action.id, token=action.run_token) == ActionStatus.FAILED
    action.refresh_from_db()
    assert action.status == ActionStatus.FAILED and "Not carried out" in action.error


def test_rows_that_vanished_before_a_first_run_are_stale_not_done(crm, erasure_request, dpo_actor, source_db, step):
    from requests_app.sources import connector_for

    action = _approved(erasure_request, crm, dpo_actor, step)
    plan, _held = actions.build_plan(action)
    connector_for(crm).apply(plan, action.dry_run["fingerprint"])  # someone else changed them meanwhile

    action = step(actions.execute, action, actor=dpo_actor)  # the first worker to take it finds them changed
    assert action.status == ActionStatus.STALE  # for staff to look at, not recorded as our change


def test_a_task_run_twice_executes_once(crm, erasure_request, dpo_actor, step):
    action = _approved(erasure_request, crm, dpo_actor, step)
    action = step(actions.execute, action, actor=dpo_actor)
    assert action.status == ActionStatus.DONE
    assert actions.run_execution(action_id=action.id, token=action.run_token) == ActionStatus.DONE  # redelivered
    assert AuditEvent.objects.filter(request=erasure_request, action="source_action_done").count() == 1


def test_a_late_task_from_an_earlier_dry_run_records_nothing(crm, erasure_request, dpo_actor, step):
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    action = erasure_request.source_actions.get()
    actions.dry_run_start(action=action, actor=dpo_actor)  # its task is slow to come...
    first_token = SourceAction.objects.get(pk=action.pk).run_token
    actions.dry_run_start(action=action, actor=dpo_actor)  # ...and staff start another one
    actions.run_dry_run(action_id=action.id, token=first_token)
    assert SourceAction.objects.get(pk=action.pk).status == ActionStatus.DRY_RUNNING


def test_a_manual_source_carries_its_hold_to_the_owner_and_the_letter(erasure_request, dpo, dpo_actor):
    owner = staff_in_role(roles.HANDLER, username="archivist")
    paper = SourceSystem.objects.create(
        slug="paper", name="Paper archive", connector=ConnectorKind.MANUAL, identity_kind=IdentityKind.EMAIL, owner=owner,
        purposes="Contracts", legal_basis=LegalBasis.CONTRACT, retention="10 years", origin="The subject",
    )
    SourceCategory.objects.create(source=paper, slug="contracts", category="other")
    LegalHold.objects.create(source=paper, ground=ErasureException.LEGAL_OBLIGATION, basis="Accounting law keeps signed contracts",
                             until=timezone.localdate() + datetime.timedelta(days=30))
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    action = erasure_request.source_actions.get(source=paper)
    assert action.status == ActionStatus.MANUAL and action.dry_run["held"][0]["category"] == "contracts"

    from requests_app.audit import Actor

    actions.manual_action_done(action=action, actor=Actor.staff(owner), rows=0)
    assert "Accounting law keeps signed contracts" in outcome_summary(erasure_request)


def test_a_manual_erasure_waits_for_the_copy_the_subject_asked_for(client, db, dpo_actor):
    """execute() made an automated erasure wait for the access package; the owner of a manual source could confirm
    theirs done first, and the copy compiled after it then said no data was found there."""
    from django.urls import reverse

    from tests.conftest import login_staff
    from tests.factories import released_package

    owner = staff_in_role(roles.HANDLER, username="archivist")
    paper = SourceSystem.objects.create(
        slug="paper", name="Paper archive", connector=ConnectorKind.MANUAL, identity_kind=IdentityKind.EMAIL, owner=owner,
        purposes="Contracts", legal_basis=LegalBasis.CONTRACT, retention="10 years", origin="The subject",
    )
    request = verified_request(RequestType.ACCESS, RequestType.ERASURE)
    actions.plan_actions(request=request, actor=dpo_actor)
    erasure = request.source_actions.get(source=paper)
    confirm_url = reverse("staff:source_action", args=[erasure.public_id, "done"])
    login_staff(client, owner)
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert "Compile the access" in page and confirm_url not in page  # the reason where the button would be
    with pytest.raises(RequestError, match="Compile the access .* package first"):
        actions.manual_action_done(action=erasure, actor=Actor.staff(owner), rows=2)
    assert SourceAction.objects.get(pk=erasure.pk).status == ActionStatus.MANUAL

    released_package(request)  # the copy, with the paper archive's extract in it
    assert confirm_url in client.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert actions.manual_action_done(action=erasure, actor=Actor.staff(owner), rows=2).status == ActionStatus.DONE


def test_an_auditor_who_owns_a_manual_source_cannot_confirm_it(erasure_request, dpo_actor):
    from requests_app.audit import Actor

    auditor = staff_in_role(roles.AUDITOR, username="reader")
    paper = SourceSystem.objects.create(
        slug="paper", name="Paper archive", connector=ConnectorKind.MANUAL, identity_kind=IdentityKind.EMAIL, owner=auditor,
        purposes="Contracts", legal_basis=LegalBasis.CONTRACT, retention="10 years", origin="The subject",
    )
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    with pytest.raises(NotAllowed):
        actions.manual_action_done(action=erasure_request.source_actions.get(source=paper), actor=Actor.staff(auditor), rows=1)


def test_corrected_values_are_only_for_rectification_requests(crm, erasure_request, dpo_actor):
    with pytest.raises(RequestError, match="no rectification"):
        actions.rectification_change_set(request=erasure_request, actor=dpo_actor, category=crm.categories.get(), field="city", value="Gent")


def test_corrected_values_entered_after_planning_block_completion_until_planned(crm, cdr, dpo_actor, step):
    request = verified_request(RequestType.RECTIFICATION)
    assert [blocker.split(".")[0] for blocker in actions.completion_blockers(request)] == ["No data has been corrected"]
    actions.rectification_change_set(request=request, actor=dpo_actor, category=crm.categories.get(), field="city", value="Gent")
    assert any("have not been planned" in blocker for blocker in actions.completion_blockers(request))
    with pytest.raises(RequestError, match="cannot be completed"):
        handling.request_complete(request=request, actor=dpo_actor, letter="Done", expected_status=request.status)
    actions.plan_actions(request=request, actor=dpo_actor)
    assert not any("have not been planned" in blocker for blocker in actions.completion_blockers(request))


def _erase_then_plan_a_correction(request, crm, dpo_actor, step, value):
    """Erase in the CRM, its recipient told; then plan a correction of the city there."""
    action = _approved(request, crm, dpo_actor, step)
    step(actions.execute, action, actor=dpo_actor)
    notice = request.recipient_notices.get()
    assert notice.status == NoticeStatus.SENT and len(mail.outbox) == 1
    actions.rectification_change_set(request=request, actor=dpo_actor, category=crm.categories.get(), field="city", value=value)
    actions.plan_actions(request=request, actor=dpo_actor)
    return notice, request.source_actions.get(kind="rectify")


def test_a_rectification_planned_later_reopens_the_sources_notices(crm, dpo_actor, step):
    request = verified_request(RequestType.ERASURE, RequestType.RECTIFICATION)
    Recipient.objects.create(source=crm, name="Group companies", country="BE", notification_email="g@example.net")
    crm.categories.get().fields.filter(name="email").update(erase_strategy=EraseStrategy.KEEP)  # still found by email after erasure
    notice, rectify = _erase_then_plan_a_correction(request, crm, dpo_actor, step, "Antwerpen")
    notice.refresh_from_db()
    assert notice.status == NoticeStatus.PENDING
    # Not sent again before the rectification is done: neither by the lost-task sweep nor by a stray task.
    assert notices.requeue_lost_notices(now=timezone.now() + datetime.timedelta(days=1)) == 0
    assert notices.deliver(notice_id=notice.id) is False
    notice.refresh_from_db()
    assert notice.status == NoticeStatus.PENDING

    for service in (actions.dry_run_start, actions.approve, actions.execute):
        step(service, rectify, actor=dpo_actor)
    notice.refresh_from_db()
    assert notice.status == NoticeStatus.SENT
    assert "Antwerpen" in mail.outbox[-1].body  # the corrected value went to the recipient,
    assert "Rectified (" in mail.outbox[-1].body and "Erased" not in mail.outbox[-1].body  # told once of the erasure


def test_a_rectification_after_the_erasure_that_found_nothing_is_not_told(crm, dpo_actor, step):
    """The erasure hashed the email the CRM finds her by: the correction matches no row, and the recipient,
    told of the erasure already, hears nothing more (and no new city)."""
    request = verified_request(RequestType.ERASURE, RequestType.RECTIFICATION)
    Recipient.objects.create(source=crm, name="Group companies", country="BE", notification_email="g@example.net")
    notice, rectify = _erase_then_plan_a_correction(request, crm, dpo_actor, step, "Antwerpen")
    for service in (actions.dry_run_start, actions.approve, actions.execute):
        step(service, rectify, actor=dpo_actor)
    assert not request.source_actions.get(kind="rectify").changed_anything()
    notice.refresh_from_db()
    assert notice.status == NoticeStatus.SENT
    assert len(mail.outbox) == 1 and "Antwerpen" not in mail.outbox[0].body
    assert actions.completion_blockers(request) == []


def test_an_erasure_done_without_searching_its_source_does_not_answer_the_right(crm, cdr, dpo_actor, run):
    """No phone number verified: the call records' erasure ran, searched nobody and changed nothing. It answers
    nothing, so refusing the erasure denies nothing done; the CRM's erasure, which searched, does answer it."""
    request = verified_request(RequestType.ERASURE)
    request.identities.filter(kind=IdentityKind.PHONE).update(verified_at=None)
    actions.plan_actions(request=request, actor=dpo_actor)
    calls = run(request.source_actions.get(source=cdr).id, "dry_run", "approve", "execute", actor=dpo_actor)
    assert calls.status == ActionStatus.DONE

    assert actions.answered_already(request, {RequestType.ERASURE}) == []

    run(request.source_actions.get(source=crm).id, "dry_run", "approve", "execute", actor=dpo_actor)
    assert actions.answered_already(request, {RequestType.ERASURE}) == ["“Erase their data” cannot be refused: Erasure in CRM: done."]


def test_an_objection_completes_only_once_a_suppression_was_applied(dpo_actor):
    from requests_app.models import SuppressionPurpose
    from requests_app.services import suppression

    request = verified_request(RequestType.OBJECTION)
    with pytest.raises(RequestError, match="suppression list"):
        handling.request_complete(request=request, actor=dpo_actor, letter="Done", expected_status=request.status)

    marketing = SuppressionPurpose.objects.create(slug="marketing-email", name="Promotional emails")
    suppression.suppress(request=request, actor=dpo_actor, right="objection", purposes=[marketing])
    completed = handling.request_complete(request=request, actor=dpo_actor, letter="Done", expected_status=request.status)
    assert completed.status == "completed"


def test_the_dpo_is_reminded_of_kept_data_once_its_hold_has_ended(cdr, erasure_request, dpo, dpo_actor, step, client):
    from django.core import mail

    from requests_app import selectors
    from requests_app.emails import send_daily_digest
    from tests.conftest import login_staff

    ends = timezone.localdate() + datetime.timedelta(days=2)
    LegalHold.objects.create(source=cdr, ground=ErasureException.LEGAL_OBLIGATION, basis="Telecom law", until=ends)
    step(actions.execute, _approved(erasure_request, cdr, dpo_actor, step), actor=dpo_actor)
    assert selectors.holds_ended(today=timezone.localdate()) == []  # still held

    three_days_later = timezone.localdate() + datetime.timedelta(days=3)
    ended = selectors.holds_ended(today=three_days_later)
    assert ended == [{"reference": erasure_request.reference, "source": "Call records", "category": "calls", "until": ends.isoformat()}]
    assert selectors.holds_ended(today=three_days_later + datetime.timedelta(days=7)) == []  # a week's reminder

    send_daily_digest(today=three_days_later, recipients=["dpo@example.com"])
    assert f"{erasure_request.reference}: Call records / calls (until {date_in_words(ends)})" in mail.outbox[-1].body

    # The home page looks at today: let the hold have ended yesterday.
    action = erasure_request.source_actions.get()
    yesterday = (timezone.localdate() - datetime.timedelta(days=1)).isoformat()
    SourceAction.objects.filter(pk=action.pk).update(result={**action.result, "held": [{**action.result["held"][0], "until": yesterday}]})
    login_staff(client, dpo)
    home = client.get("/staff/").content.decode()
    assert "Legal holds ended this week" in home and f"{erasure_request.reference}</a>: Call records / calls" in home


def test_codes_kept_under_a_hold_are_shown_to_approvers_and_due_for_erasure_once_it_ends(crm, erasure_request, dpo, dpo_actor, step, client):
    """A hold on the codes keeps only what erasure replaced with a keyed hash: the inventory, the panel and the
    reminder say so, naming the fields (the rest of the category was erased)."""
    from requests_app import selectors
    from tests.conftest import login_staff

    SourceField.objects.filter(category__source=crm, name="email").update(erase_strategy=EraseStrategy.HASH)
    ends = timezone.localdate() + datetime.timedelta(days=2)
    LegalHold.objects.create(
        source=crm, ground=ErasureException.LEGAL_CLAIMS, basis="Pending dispute", until=ends, pseudonyms_only=True
    )
    action = _approved(erasure_request, crm, dpo_actor, step)
    login_staff(client, dpo)
    assert "(only the codes that replace fields)" in client.get("/staff/inventory/").content.decode()
    page = client.get(f"/staff/requests/{erasure_request.reference}/").content.decode()
    assert "<strong>Kept: subscribers (only the codes that replaced subscribers.email)</strong> · " in page
    assert "Pending dispute · until" in page

    step(actions.execute, action, actor=dpo_actor)
    assert selectors.holds_ended(today=timezone.localdate()) == []  # still held
    ended = selectors.holds_ended(today=timezone.localdate() + datetime.timedelta(days=3))
    assert ended == [{"reference": erasure_request.reference, "source": "CRM", "category": "subscribers.email", "until": ends.isoformat()}]


def test_the_dpo_is_not_reminded_of_a_hold_over_a_source_the_erasure_could_not_search(cdr, erasure_request, dpo_actor, step):
    """No phone number was verified: the erasure searched nobody in the call records, and the letter said they could
    not be searched, not that their data was kept. Its held category is no data of theirs due for erasure now."""
    from requests_app import selectors

    ends = timezone.localdate() + datetime.timedelta(days=2)
    LegalHold.objects.create(source=cdr, ground=ErasureException.LEGAL_OBLIGATION, basis="Telecom law", until=ends)
    erasure_request.identities.filter(kind=IdentityKind.PHONE).update(verified_at=None)
    action = step(actions.execute, _approved(erasure_request, cdr, dpo_actor, step), actor=dpo_actor)
    assert action.status == ActionStatus.DONE and action.result["held"]  # the hold is recorded all the same

    assert selectors.holds_ended(today=timezone.localdate() + datetime.timedelta(days=3)) == []


def test_the_dpo_is_not_reminded_of_a_hold_over_data_the_subject_did_not_have(cdr, erasure_request, dpo_actor, step):
    """Their verified phone number is in no call record: the letter said nothing was kept there."""
    from requests_app import selectors

    ends = timezone.localdate() + datetime.timedelta(days=2)
    LegalHold.objects.create(source=cdr, ground=ErasureException.LEGAL_OBLIGATION, basis="Telecom law", until=ends)
    erasure_request.identities.filter(kind=IdentityKind.PHONE).update(value="+32470000555")
    action = step(actions.execute, _approved(erasure_request, cdr, dpo_actor, step), actor=dpo_actor)
    assert action.dry_run["held_rows"] == {"calls": 0} and action.result["held"]

    assert selectors.holds_ended(today=timezone.localdate() + datetime.timedelta(days=3)) == []


@pytest.mark.parametrize("kind", ["access", "portability"])
def test_data_the_subject_asked_a_copy_of_is_not_erased_before_the_copy_is_compiled(crm, dpo_actor, source_db, step, kind):
    """Erased first, the data was missing from the package compiled after, whose report then told the subject
    none had been found in the systems the request had just erased it from."""
    from tests.factories import released_package

    request = verified_request(RequestType.ERASURE, RequestType(kind))
    action = _approved(request, crm, dpo_actor, step)

    with pytest.raises(RequestError, match=f"Compile the {kind} \\(Art. \\d\\d\\) package first"):
        actions.execute(action=action, actor=dpo_actor)
    assert SourceAction.objects.get(pk=action.pk).status == ActionStatus.APPROVED
    assert source_db("SELECT count(*) AS n FROM subscribers") == [{"n": 3}]
    # A package that could not search this system (no verified identifier of its kind then) is no copy of it.
    skipped = released_package(request, kind=kind)
    skipped.manifest = {"sources_not_searched": [{"source": crm.slug, "reason": "no_verified_identifier", "kind": "email"}]}
    skipped.save(update_fields=["manifest"])
    with pytest.raises(RequestError, match="with this system searched"):
        actions.execute(action=action, actor=dpo_actor)

    released_package(request, kind=kind)
    assert step(actions.execute, action, actor=dpo_actor).status == ActionStatus.DONE


def _compile_and_release(request, actor, kind):
    from requests_app.models import ExportPackage
    from requests_app.services import exports

    export = exports.export_start(request=request, actor=actor, kind=kind)
    exports.compile_export(export_id=export.id)
    return exports.export_release(export=ExportPackage.objects.get(pk=export.pk), actor=actor)


@pytest.mark.parametrize("kind", ["access", "portability"])
def test_an_erasure_in_a_system_searched_by_an_unverified_identifier_does_not_wait_for_a_copy(
    crm, cdr, dpo_actor, source_db, step, settings, tmp_path, kind
):
    """The phone number was not verified: the package could not search the call records, and their erasure
    (searching by no phone number either) waited for a package that searched them, which none ever could.
    The request could only go overdue: the CRM's erasure had run, so the erasure could not be refused either."""
    settings.EXPORT_WORK_DIR = str(tmp_path / "export-work")
    request = verified_request(RequestType.ERASURE, RequestType(kind))
    request.identities.filter(kind=IdentityKind.PHONE).update(verified_at=None)
    calls = _approved(request, cdr, dpo_actor, step)
    assert calls.dry_run["identities"] == 0
    subscribers = request.source_actions.get(source=crm)
    step(actions.dry_run_start, subscribers, actor=dpo_actor)
    step(actions.approve, subscribers, actor=dpo_actor)
    package = _compile_and_release(request, dpo_actor, kind)
    assert [item["source"] for item in package.manifest["sources_not_searched"]] == ["cdr"]
    assert step(actions.execute, subscribers, actor=dpo_actor).status == ActionStatus.DONE

    assert step(actions.execute, calls, actor=dpo_actor).status == ActionStatus.DONE
    assert len(source_db("SELECT id FROM calls")) == 3  # searched by nothing, it erased nothing
    request.refresh_from_db()
    assert actions.completion_blockers(request) == []
    handling.request_complete(request=request, actor=dpo_actor, letter="Done.", expected_status=request.status)
    letter = outcome_summary(request)
    assert "We could not search Call records: it finds data by phone number, and we hold no verified one of yours." in letter


def test_verifying_the_identifier_afterwards_erases_the_data_once_the_copy_holds_it(
    crm, cdr, dpo_actor, source_db, step, settings, tmp_path
):
    """The way to erase the call records after all: verify the phone number, run the erasure's dry run again, and
    compile the package again, which now searches them. The erasure waits for that copy as any other does."""
    from requests_app.lifecycle import RequestError as Refused

    settings.EXPORT_WORK_DIR = str(tmp_path / "export-work")
    request = verified_request(RequestType.ERASURE, RequestType.ACCESS)
    request.identities.filter(kind=IdentityKind.PHONE).update(verified_at=None)
    calls = _approved(request, cdr, dpo_actor, step)
    _compile_and_release(request, dpo_actor, "access")
    step(actions.execute, calls, actor=dpo_actor)

    request.identities.filter(kind=IdentityKind.PHONE).update(verified_at=timezone.now())
    assert "Erasure in Call records ran before any phone number was verified: run its dry run again." in actions.completion_blockers(request)
    step(actions.dry_run_start, calls, actor=dpo_actor)
    calls = step(actions.approve, calls, actor=dpo_actor)
    assert calls.dry_run["identities"] == 1
    with pytest.raises(Refused, match="Compile the access \\(Art. 15\\) package first, with this system searched"):
        actions.execute(action=calls, actor=dpo_actor)
    assert len(source_db("SELECT id FROM calls")) == 3

    package = _compile_and_release(request, dpo_actor, "access")
    assert "sources_not_searched" not in package.manifest or not package.manifest["sources_not_searched"]
    assert step(actions.execute, calls, actor=dpo_actor).status == ActionStatus.DONE
    assert source_db("SELECT count(*) AS n FROM calls WHERE caller = :phone", phone=ANA_PHONE) == [{"n": 0}]


def test_an_erasure_does_not_search_by_a_phone_number_verified_by_an_identity_document(cdr, dpo_actor, source_db, step):
    """A reviewer's probe: an ID document proves who filed, not that the number given is theirs. Verified so
    (before the rule refused it), the number is not searched, and the erasure changes no one's call records."""
    request = verified_request(RequestType.ERASURE)
    request.identities.filter(kind=IdentityKind.PHONE).update(verification_method=VerificationMethod.DOCUMENT)
    assert actions.verified_kinds(request) == {IdentityKind.EMAIL}
    calls = _approved(request, cdr, dpo_actor, step)
    assert calls.dry_run["identities"] == 0
    assert step(actions.execute, calls, actor=dpo_actor).status == ActionStatus.DONE
    assert len(source_db("SELECT id FROM calls")) == 3

    request.identities.filter(kind=IdentityKind.PHONE).update(verification_method=VerificationMethod.CALLBACK)
    assert "Erasure in Call records ran before any phone number was verified: run its dry run again." in actions.completion_blockers(request)
