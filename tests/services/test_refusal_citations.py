"""Why staff may not refuse a request, or a right of it, so: each message cites the GDPR's articles only where the
request's law numbers its articles so (the GDPR, the UK GDPR: wording.cites_gdpr_articles), never to staff answering
a CCPA or LGPD subject."""

import pytest

from requests_app.audit import Actor
from requests_app.lifecycle import RequestError
from requests_app.models import RequestType, Status
from requests_app.services.handling import RightRefusal, request_complete, request_reject
from requests_app.services.intake import RightDetails
from tests.factories import request_in_status, staff_in_role

pytestmark = pytest.mark.django_db

REGIMES = ["gdpr", "uk_gdpr", "ccpa", "lgpd"]


def cited(regime: str, citation: str) -> str:
    """`citation` (" (Art. 12(4))") where the regime's law numbers its articles as the GDPR does, else nothing."""
    return citation if regime in ("gdpr", "uk_gdpr") else ""


def refusal_of(regime: str, rights: list[RightDetails], *, ground: str, explanation: str = "", refuse: str | None = None) -> str:
    """The message refusing to reject a request under `regime` asking `rights` on `ground` (or, with `refuse`, to
    complete it refusing that right only)."""
    request = request_in_status(Status.IN_PROGRESS, regime=regime, rights=rights)
    dpo = Actor.staff(staff_in_role("DPO", username="dpo-refusals"))
    with pytest.raises(RequestError) as refused:
        if refuse:
            request_complete(
                request=request, actor=dpo, letter="", expected_status=request.status,
                refused=[RightRefusal(refuse, ground, explanation)],
            )
        else:
            request_reject(request=request, actor=dpo, ground=ground, explanation=explanation, expected_status=request.status)
    return str(refused.value)


@pytest.mark.parametrize("regime", REGIMES)
def test_a_rejection_without_its_reasons_cites_the_duty_to_give_them_under_the_requests_law(regime):
    message = refusal_of(regime, [RightDetails(RequestType.ACCESS)], ground="excessive")
    assert message == (
        f"Explain to the subject why “Excessive, in particular because of its repetitive character{cited(regime, ' (Art. 12(5))')}” applies: the "
        f"letter must give the reasons{cited(regime, ' (Art. 12(4))')}."
    )


@pytest.mark.parametrize("regime", REGIMES)
def test_a_right_refused_without_its_reasons_cites_the_duty_to_give_them_under_the_requests_law(regime):
    rights = [RightDetails(RequestType.ACCESS), RightDetails(RequestType.ERASURE)]
    message = refusal_of(regime, rights, ground="legal_obligation", refuse=RequestType.ERASURE)
    assert message == (
        f"Explain to the subject why “Legal obligation to retain the data{cited(regime, ' (Art. 17(3)(b))')}” applies to "
        f"“Erase their data”: the letter must give the reasons{cited(regime, ' (Art. 12(4))')}."
    )


@pytest.mark.parametrize("regime", REGIMES)
def test_an_unverified_identity_without_its_reasons_cites_the_duty_to_give_them_under_the_requests_law(regime):
    message = refusal_of(regime, [RightDetails(RequestType.ACCESS)], ground="identity_not_verified")
    assert message.endswith(f"sent (or did not send) is not enough. The letter must give the reasons{cited(regime, ' (Art. 12(4))')}.")


@pytest.mark.parametrize("regime", REGIMES)
def test_refusing_a_marketing_objection_cites_why_it_cannot_be_under_the_requests_law(regime):
    rights = [RightDetails(RequestType.OBJECTION, objection_processing="Calls", direct_marketing=True)]
    message = refusal_of(regime, rights, ground="compelling_grounds", explanation="We must call.")
    assert message.startswith(f"The subject objects to direct marketing, which cannot be refused{cited(regime, ' (Art. 21(3))')}: ")


@pytest.mark.parametrize("regime", REGIMES)
def test_a_ground_for_another_right_cites_its_article_under_the_requests_law(regime):
    message = refusal_of(regime, [RightDetails(RequestType.RECTIFICATION)], ground="legal_obligation", explanation="Kept.")
    assert message == (
        f"A legal obligation to retain the data{cited(regime, ' (Art. 17(3)(b))')} can refuse only an erasure, not "
        "“Correct or complete their data”."
    )


@pytest.mark.parametrize("regime", REGIMES)
def test_refusing_a_consent_withdrawal_cites_why_it_cannot_be_under_the_requests_law(regime):
    rights = [RightDetails(RequestType.WITHDRAW_CONSENT, consent_withdrawn="Newsletter")]
    message = refusal_of(regime, rights, ground="legal_obligation", explanation="Kept.")
    assert message.startswith(f"Consent can be withdrawn at any time{cited(regime, ' (Art. 7(3))')}: only an identity")


@pytest.mark.parametrize("regime", REGIMES)
def test_refusing_access_for_other_peoples_data_cites_the_rule_under_the_requests_law(regime):
    message = refusal_of(regime, [RightDetails(RequestType.ACCESS)], ground="rights_of_others", explanation="Others.")
    if cited(regime, "yes"):
        assert message.startswith("The rights and freedoms of others (Art. 15(4)) limit only the copy of the data")
        assert "the information of Art. 15(1) and 15(2)" in message
    else:
        assert message.startswith("The rights and freedoms of others limit only the copy of the data, never access itself")
        assert "Art. " not in message
