"""An erasure is refused on a legal obligation to keep the data, or on legal claims, only as far as the legal holds
keep it (Art. 17(3): "to the extent that" keeping it is necessary): Reject, or refusing the erasure at completion, is
refused until every source's dry run shows the holds keep all the subject's data the erasure found."""

import datetime

import pytest
import time_machine
from django.utils import timezone

from requests_app.lifecycle import RequestError
from requests_app.models import (
    ActionKind,
    ConnectorKind,
    ErasureException,
    IdentityKind,
    LegalBasis,
    LegalHold,
    RequestType,
    SourceAction,
    SourceCategory,
    SourceSystem,
    Status,
)
from requests_app.services import actions, handling
from requests_app.services.handling import RightRefusal
from tests.actions.conftest import verified_request
from tests.actions.test_rolling_holds import DRY_RUN_DAY, dated_calls, rolling_hold  # noqa: F401 - dated_calls: a fixture

TELECOM_LAW = "Belgian telecom law makes us keep call records for 12 months."


def reject(request, actor, ground="legal_obligation", **kwargs):
    return handling.request_reject(
        request=request, actor=actor, ground=ground, explanation=TELECOM_LAW, expected_status=Status.IN_PROGRESS, **kwargs
    )


def whole_hold(source, ground=ErasureException.LEGAL_OBLIGATION) -> LegalHold:
    return LegalHold.objects.create(source=source, ground=ground, basis=TELECOM_LAW, until=timezone.localdate() + datetime.timedelta(days=365))


def dry_run_everywhere(request, actor, run):
    actions.plan_actions(request=request, actor=actor)
    for action in request.source_actions.all():
        run(action.id, "dry_run", actor=actor)


def unchanged(request) -> bool:
    request.refresh_from_db()
    return request.status == Status.IN_PROGRESS and not request.messages.exists() and request.refused_rights == []


@pytest.mark.parametrize("ground", ["legal_obligation", "legal_claims"])
def test_an_erasure_is_not_rejected_on_a_hold_that_keeps_only_part_of_the_data(
    crm, cdr, dated_calls, erasure_request, dpo_actor, run, ground  # noqa: F811 - the fixture
):
    """The review's case: the CRM's contacts under no hold, the call records erasable but for the recent ones."""
    rolling_hold(cdr)
    with time_machine.travel(DRY_RUN_DAY, tick=False):
        dry_run_everywhere(erasure_request, dpo_actor, run)
        for preview in (True, False):
            with pytest.raises(RequestError) as refusal:
                reject(erasure_request, dpo_actor, ground, preview=preview)
            message = str(refusal.value)
            assert "refuses an erasure only as far as the law or a claim needs the data kept" in message
            assert "The dry run in CRM found 2 rows that no legal hold keeps." in message
            assert "The dry run in Call records found 1 row that no legal hold keeps." in message
            assert "complete the request instead and carry out the erasure" in message
            assert unchanged(erasure_request)


def test_an_erasure_is_rejected_on_a_legal_obligation_where_the_holds_keep_all_it_found(cdr, crm, erasure_request, dpo_actor, run):
    whole_hold(cdr)
    whole_hold(crm)
    dry_run_everywhere(erasure_request, dpo_actor, run)
    assert [action.dry_run["categories"] for action in erasure_request.source_actions.all()] == [[], []]  # nothing erasable

    reject(erasure_request, dpo_actor)
    erasure_request.refresh_from_db()
    assert erasure_request.status == Status.REJECTED


def test_an_erasure_is_not_rejected_on_a_hold_before_its_dry_runs(cdr, erasure_request, dpo_actor, run):
    whole_hold(cdr)
    with pytest.raises(RequestError, match="The erasure has not been planned in the source systems: plan it, and run its dry run in each."):
        reject(erasure_request, dpo_actor)

    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    with pytest.raises(RequestError, match=r"The erasure in Call records has no dry run that stands \(planned: dry run needed\): run it."):
        reject(erasure_request, dpo_actor)
    assert unchanged(erasure_request)

    run(erasure_request.source_actions.get().id, "dry_run", actor=dpo_actor)
    reject(erasure_request, dpo_actor)
    erasure_request.refresh_from_db()
    assert erasure_request.status == Status.REJECTED


def test_an_erasure_whose_dry_runs_found_nothing_kept_is_not_refused_on_a_hold(cdr, dpo_actor, run):
    """Nothing of the subject's under a hold: no law keeps anything, and the letter would say it does."""
    whole_hold(cdr)
    request = verified_request(RequestType.ERASURE)
    request.identities.filter(kind=IdentityKind.PHONE).update(value="+32470000055")  # nobody's calls
    dry_run_everywhere(request, dpo_actor, run)
    with pytest.raises(RequestError, match="No dry run found any of the subject's data kept under a legal hold: there is nothing to keep."):
        reject(request, dpo_actor)
    assert unchanged(request)


def manual_source(*, held: bool) -> SourceSystem:
    paper = SourceSystem.objects.create(
        slug="paper", name="Paper archive", connector=ConnectorKind.MANUAL, identity_kind=IdentityKind.EMAIL,
        purposes="Contracts", legal_basis=LegalBasis.CONTRACT, retention="10 years", origin="The subject",
    )
    SourceCategory.objects.create(source=paper, slug="contracts", category="other")
    if held:
        whole_hold(paper)
    return paper


def test_a_manual_system_under_no_hold_stands_in_the_way_of_the_refusal_and_one_held_whole_does_not(erasure_request, dpo_actor):
    paper = manual_source(held=False)
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    with pytest.raises(RequestError, match="Paper archive is a manual system with data no legal hold keeps"):
        reject(erasure_request, dpo_actor)

    whole_hold(paper)
    SourceAction.objects.filter(source=paper).delete()
    actions.plan_actions(request=erasure_request, actor=dpo_actor)  # the owner is told what the hold keeps
    reject(erasure_request, dpo_actor)
    erasure_request.refresh_from_db()
    assert erasure_request.status == Status.REJECTED


def test_the_erasure_is_not_refused_at_completion_on_a_hold_that_keeps_part_of_the_data(crm, cdr, dpo_actor, run):
    request = verified_request(RequestType.RECTIFICATION, RequestType.ERASURE)
    whole_hold(cdr)
    dry_run_everywhere(request, dpo_actor, run)
    refusal = RightRefusal(RequestType.ERASURE, "legal_claims", "The call records are evidence in our dispute with you.")
    with pytest.raises(RequestError) as refused:
        handling.request_complete(request=request, actor=dpo_actor, letter="", expected_status=Status.IN_PROGRESS, refused=[refusal])
    assert str(refused.value) == (
        "“Needed for the establishment, exercise or defence of legal claims (Art. 17(3)(e))” refuses “Erase their data” only "
        "as far as the law or a claim needs the data kept, so the dry runs must show that the legal holds keep all of it: "
        "The dry run in CRM found 2 rows that no legal hold keeps. Where they keep only part of it, grant this right and "
        "carry out the erasure: the completion letter tells the subject what was kept and why."
    )
    assert unchanged(request)


def test_under_another_law_the_refusal_names_the_ground_without_its_gdpr_article(crm, dpo_actor, run):
    request = verified_request(RequestType.ERASURE, regime="ccpa")
    dry_run_everywhere(request, dpo_actor, run)
    with pytest.raises(RequestError) as refused:
        reject(request, dpo_actor)
    assert str(refused.value).startswith("“Legal obligation to retain the data” refuses an erasure only as far as")


def test_an_erasure_done_without_searching_its_source_leaves_the_refusal_to_what_was_searched(cdr, crm, erasure_request, dpo_actor, run):
    """A source with no verified identifier of its kind found nothing of the subject's: it does not stand in the way."""
    whole_hold(cdr)
    erasure_request.identities.filter(kind=IdentityKind.EMAIL).update(verified_at=None)
    dry_run_everywhere(erasure_request, dpo_actor, run)
    assert erasure_request.source_actions.get(kind=ActionKind.ERASE, source=crm).dry_run["identities"] == 0
    reject(erasure_request, dpo_actor)
    erasure_request.refresh_from_db()
    assert erasure_request.status == Status.REJECTED
