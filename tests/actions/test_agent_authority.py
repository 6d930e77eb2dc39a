"""Nothing is erased, rectified or restricted in the source systems on the word of an agent whose authority to act
for the subject is not confirmed (services.agents)."""

import pytest

from requests_app import roles
from requests_app.audit import Actor
from requests_app.lifecycle import RequestError
from requests_app.models import (
    ActionStatus,
    AgentAuthorityMethod,
    AgentCapacity,
    ConnectorKind,
    IdentityKind,
    LegalBasis,
    RequestType,
    SourceAction,
    SourceSystem,
)
from requests_app.services import actions, agents
from tests.actions.conftest import ANA_EMAIL, verified_request
from tests.factories import staff_in_role

BY_AN_AGENT = {"agent_capacity": AgentCapacity.LEGAL_REPRESENTATIVE, "agent_name": "Mr Lawyer", "agent_email": "law@example.org"}
NOT_CONFIRMED = "their authority to act for the subject is not confirmed yet"


def test_an_erasure_asked_by_an_agent_runs_only_once_their_authority_is_confirmed(crm, dpo_actor, source_db, step):
    request = verified_request(RequestType.ERASURE, **BY_AN_AGENT)
    actions.plan_actions(request=request, actor=dpo_actor)
    action = request.source_actions.get(source=crm)
    step(actions.dry_run_start, action, actor=dpo_actor)  # looking changes nothing: allowed
    action = step(actions.approve, action, actor=dpo_actor)
    assert NOT_CONFIRMED in actions.execution_refusal(action)  # said where the Execute button would be

    with pytest.raises(RequestError, match=NOT_CONFIRMED):
        step(actions.execute, action, actor=dpo_actor)
    assert SourceAction.objects.get(pk=action.pk).status == ActionStatus.APPROVED
    assert source_db("SELECT count(*) AS n FROM subscribers WHERE email = :email", email=ANA_EMAIL) == [{"n": 2}]

    agents.agent_authority_confirm(request=request, actor=dpo_actor, method=AgentAuthorityMethod.POWER_OF_ATTORNEY)
    assert step(actions.execute, action, actor=dpo_actor).status == ActionStatus.DONE
    assert source_db("SELECT count(*) AS n FROM subscribers WHERE email = :email", email=ANA_EMAIL) == [{"n": 0}]


def test_a_manual_erasure_asked_by_an_agent_is_confirmed_done_only_once_their_authority_is(db, dpo_actor):
    owner = staff_in_role(roles.HANDLER, username="archivist")
    paper = SourceSystem.objects.create(
        slug="paper", name="Paper archive", connector=ConnectorKind.MANUAL, identity_kind=IdentityKind.EMAIL, owner=owner,
        purposes="Contracts", legal_basis=LegalBasis.CONTRACT, retention="10 years", origin="The subject",
    )
    request = verified_request(RequestType.ERASURE, **BY_AN_AGENT)
    actions.plan_actions(request=request, actor=dpo_actor)
    erasure = request.source_actions.get(source=paper)

    with pytest.raises(RequestError, match=NOT_CONFIRMED):
        actions.manual_action_done(action=erasure, actor=Actor.staff(owner), rows=2)
    assert SourceAction.objects.get(pk=erasure.pk).status == ActionStatus.MANUAL

    agents.agent_authority_confirm(request=request, actor=dpo_actor, method=AgentAuthorityMethod.SIGNED_PERMISSION)
    assert actions.manual_action_done(action=erasure, actor=Actor.staff(owner), rows=2).status == ActionStatus.DONE
