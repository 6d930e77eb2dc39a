"""Correcting who makes a request (agents.requester_correct) changes the identifiers the sources are searched by: an
action waiting for a manual source's owner is cancelled, not left for the owner to confirm, until staff plan again."""

import pytest
from django.urls import reverse

from requests_app import roles
from requests_app.audit import Actor
from requests_app.lifecycle import RequestError
from requests_app.models import (
    ActionKind,
    ActionStatus,
    AgentCapacity,
    AuditEvent,
    ConnectorKind,
    IdentityKind,
    LegalBasis,
    NoticeStatus,
    Recipient,
    RequestType,
    SourceAction,
    SourceSystem,
)
from requests_app.services import actions, agents
from requests_app.templatetags.staff_tags import event_data
from tests.actions.conftest import verified_request
from tests.conftest import login_staff
from tests.factories import staff_in_role

BY_AN_AGENT = {"agent_capacity": AgentCapacity.LEGAL_REPRESENTATIVE, "agent_name": "Mr Lawyer", "agent_email": "law@example.org"}
CANCELLED = (
    "This action was cancelled when who makes the request was corrected: nothing is confirmed. Plan the actions again; "
    "the owner then carries out the new one, for the identifiers verified now."
)


@pytest.fixture
def owner(db):
    return staff_in_role(roles.HANDLER, username="archivist")


@pytest.fixture
def paper(owner):
    return SourceSystem.objects.create(
        slug="paper", name="Paper archive", connector=ConnectorKind.MANUAL, identity_kind=IdentityKind.EMAIL, owner=owner,
        purposes="Contracts", legal_basis=LegalBasis.CONTRACT, retention="10 years", origin="The subject",
    )


def corrected_to_the_subject(request, dpo_actor):
    """The agent filed for themselves after all: the request made the subject's own."""
    return agents.requester_correct(request=request, actor=dpo_actor, by_agent=False, reason="She filed herself.")


def test_an_action_waiting_for_a_manual_sources_owner_is_cancelled_by_the_correction(client, paper, owner, dpo, dpo_actor):
    Recipient.objects.create(source=paper, name="Archive bureau", country="Belgium", notification_email="bureau@example.org")
    request = verified_request(RequestType.ERASURE, **BY_AN_AGENT)
    actions.plan_actions(request=request, actor=dpo_actor)
    erasure = request.source_actions.get(source=paper)
    assert erasure.status == ActionStatus.MANUAL
    login_staff(client, owner)
    assert "Confirm done" in client.get(reverse("staff:request", args=[request.reference])).content.decode()

    corrected_to_the_subject(request, dpo_actor)

    erasure.refresh_from_db()
    assert (erasure.status, erasure.cancelled_by) == (ActionStatus.CANCELLED, dpo_actor.user)
    event = AuditEvent.objects.get(request=request, action="requester_corrected")
    assert event.data["manual_actions_voided"] == [{"action": str(erasure.public_id), "source": "paper", "kind": ActionKind.ERASE}]
    assert "manual actions cancelled, to plan again: kind Erasure" in event_data(event.data)

    # The owner cannot confirm it (the page offers no button, a page loaded before is refused), nor can the request be
    # completed, nor its recipients told, until staff plan again.
    with pytest.raises(RequestError) as refused:
        actions.manual_action_done(action=erasure, actor=Actor.staff(owner), rows=2)
    assert str(refused.value) == CANCELLED
    assert SourceAction.objects.get(pk=erasure.pk).status == ActionStatus.CANCELLED
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert "on correcting who makes the request: its owner was to act for the identifiers of before" in page
    assert "Confirm done" not in page
    request.refresh_from_db()
    assert (
        "Erasure in Paper archive was cancelled when who makes the request was corrected: plan the actions again."
        in actions.completion_blockers(request)
    )
    assert request.recipient_notices.get().status == NoticeStatus.PENDING
    assert actions.anything_to_plan(request)

    # Planning again replaces it with a new task for the owner, who carries it out.
    actions.plan_actions(request=request, actor=dpo_actor)
    assert not SourceAction.objects.filter(pk=erasure.pk).exists()
    new = request.source_actions.get(source=paper)
    assert new.status == ActionStatus.MANUAL and new.kind == ActionKind.ERASE
    assert actions.manual_action_done(action=new, actor=Actor.staff(owner), rows=2).status == ActionStatus.DONE
    with pytest.raises(RequestError, match="replaced when the actions were planned again"):
        actions.manual_action_done(action=erasure, actor=Actor.staff(owner), rows=2)


def test_a_manual_action_voided_in_a_source_made_inactive_since_goes_when_planning_again(paper, dpo_actor):
    request = verified_request(RequestType.ERASURE, **BY_AN_AGENT)
    actions.plan_actions(request=request, actor=dpo_actor)
    corrected_to_the_subject(request, dpo_actor)
    SourceSystem.objects.filter(pk=paper.pk).update(active=False)

    assert actions.anything_to_plan(request)
    actions.plan_actions(request=request, actor=dpo_actor)
    assert not request.source_actions.exists()


def test_a_lifting_waiting_for_its_owner_is_not_what_the_correction_cancels(paper, dpo_actor):
    # A lifting outlives the request and is not voided by a correction (as its dry run is not: dry_runs_void).
    request = verified_request(RequestType.RESTRICTION, **BY_AN_AGENT)
    lifting = SourceAction.objects.create(
        request=request, source=paper, kind=ActionKind.LIFT_RESTRICTION, status=ActionStatus.MANUAL,
        lift_reason="Accuracy verified.", lift_not_before=request.received_at.date(),
    )
    corrected_to_the_subject(request, dpo_actor)
    assert SourceAction.objects.get(pk=lifting.pk).status == ActionStatus.MANUAL
    assert "manual_actions_voided" not in AuditEvent.objects.get(request=request, action="requester_corrected").data
