"""Planning again: it adds what a new source, a new corrected value or a new recipient calls for, and a planning
that would add nothing is refused with nothing changed (the request page then offers no "Plan actions")."""

import pytest

from requests_app.lifecycle import RequestError
from requests_app.models import (
    ActionKind,
    AuditEvent,
    ConnectorKind,
    IdentityKind,
    LegalBasis,
    Recipient,
    RequestType,
    SourceAction,
    SourceSystem,
)
from requests_app.services import actions
from tests.actions.conftest import verified_request

NOTHING_TO_ADD = "Every source has its actions planned: planning again would add nothing."


def _planned(request) -> set[tuple[str, str]]:
    return set(request.source_actions.values_list("source__slug", "kind"))


def _paper_files(**fields) -> SourceSystem:
    return SourceSystem.objects.create(
        slug="paper", name="Paper files", connector=ConnectorKind.MANUAL, identity_kind=IdentityKind.EMAIL,
        purposes="Archive", legal_basis=LegalBasis.CONTRACT, retention="5 years", origin="The subject", **fields,
    )


def test_planning_again_with_nothing_to_add_is_refused_and_changes_nothing(crm, cdr, erasure_request, dpo_actor):
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    assert actions.anything_to_plan(erasure_request) is False
    before = list(erasure_request.source_actions.values_list("pk", "status"))
    events = AuditEvent.objects.count()

    with pytest.raises(RequestError, match=NOTHING_TO_ADD):
        actions.plan_actions(request=erasure_request, actor=dpo_actor)

    assert list(erasure_request.source_actions.values_list("pk", "status")) == before
    assert AuditEvent.objects.count() == events


def test_a_source_made_active_since_is_planned_on_planning_again(crm, erasure_request, dpo_actor):
    paper = _paper_files(active=False)
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    assert _planned(erasure_request) == {("crm", ActionKind.ERASE)} and not actions.anything_to_plan(erasure_request)

    SourceSystem.objects.filter(pk=paper.pk).update(active=True)

    assert actions.anything_to_plan(erasure_request) is True
    created = actions.plan_actions(request=erasure_request, actor=dpo_actor)
    assert [(action.source, action.kind) for action in created] == [(paper, ActionKind.ERASE)]
    assert actions.anything_to_plan(erasure_request) is False


def test_a_corrected_value_entered_for_a_source_is_planned_on_planning_again(crm, dpo_actor):
    """The erasure was planned before any corrected value: the rectification is still to plan once one is entered."""
    request = verified_request(RequestType.ERASURE, RequestType.RECTIFICATION)
    actions.plan_actions(request=request, actor=dpo_actor)
    assert _planned(request) == {("crm", ActionKind.ERASE)} and not actions.anything_to_plan(request)

    actions.rectification_change_set(request=request, actor=dpo_actor, category=crm.categories.get(), field="city", value="Gent")

    assert actions.anything_to_plan(request) is True
    actions.plan_actions(request=request, actor=dpo_actor)
    assert _planned(request) == {("crm", ActionKind.ERASE), ("crm", ActionKind.RECTIFY)}
    # A second value in the same source changes the rectification planned there, and adds nothing to plan.
    actions.rectification_change_set(request=request, actor=dpo_actor, category=crm.categories.get(), field="name", value="Ana")
    assert actions.anything_to_plan(request) is False


def test_a_recipient_added_since_is_planned_on_planning_again(crm, erasure_request, dpo_actor):
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    partner = Recipient.objects.create(source=crm, name="Partner", country="Belgium", notification_email="p@example.net")

    assert actions.anything_to_plan(erasure_request) is True
    assert actions.plan_actions(request=erasure_request, actor=dpo_actor) == []  # no action, but the notice
    assert erasure_request.recipient_notices.filter(recipient=partner).exists()
    assert actions.anything_to_plan(erasure_request) is False


def test_a_restriction_stays_to_plan_while_its_scope_may_change(crm, dpo_actor):
    """Over two systems, a restriction not yet run may be left out, and a system it does not cover may be ticked:
    the form that does both stays offered. Once it covers both and has run in one, there is nothing left."""
    request = verified_request(RequestType.RESTRICTION)
    paper = _paper_files()
    actions.plan_actions(request=request, actor=dpo_actor)
    assert _planned(request) == {("crm", ActionKind.RESTRICT), ("paper", ActionKind.RESTRICT)}
    assert actions.anything_to_plan(request) is True  # either may still be left out

    actions.plan_actions(request=request, actor=dpo_actor, restriction_sources=[crm], leave_out_reason="Not on paper.")
    assert actions.anything_to_plan(request) is True  # the paper files may be ticked again
    with pytest.raises(RequestError, match=NOTHING_TO_ADD):
        actions.plan_actions(request=request, actor=dpo_actor, restriction_sources=[crm])

    actions.plan_actions(request=request, actor=dpo_actor, restriction_sources=[crm, paper])
    SourceAction.objects.filter(request=request, source=crm).update(status="done", result={"list_entries": 1})
    assert actions.anything_to_plan(request) is True  # the paper files' restriction may still be left out
    SourceAction.objects.filter(request=request, source=paper).update(status="done", result={"rows": 1, "manual": True})
    assert actions.anything_to_plan(request) is False
    with pytest.raises(RequestError, match=NOTHING_TO_ADD):
        actions.plan_actions(request=request, actor=dpo_actor)


def test_a_restriction_in_its_only_system_leaves_nothing_to_plan(crm, dpo_actor):
    """Unticking the one system would leave the restriction covering none, which is refused: nothing to offer."""
    request = verified_request(RequestType.RESTRICTION)
    actions.plan_actions(request=request, actor=dpo_actor)

    assert actions.anything_to_plan(request) is False
    with pytest.raises(RequestError, match=NOTHING_TO_ADD):
        actions.plan_actions(request=request, actor=dpo_actor)
