"""Staff's pages about one request cite the GDPR's article numbers only where the request's law numbers its articles
so (the GDPR, the UK GDPR: wording.cites_gdpr_articles): for a CCPA or LGPD request, staff are not shown an article
their answer will not name."""

import html

import pytest
from django.db import transaction
from django.urls import reverse

from requests_app.audit import Actor, record_event

from requests_app.models import RequestType, Status
from requests_app.services.intake import RightDetails
from tests.conftest import login_staff
from tests.factories import request_in_status, staff_in_role

GDPR_NUMBERS = {"gdpr": True, "uk_gdpr": True, "ccpa": False, "lgpd": False}


def pages(client, regime: str) -> tuple[str, str]:
    """The request page and the suppression lists page of a request under `regime` objecting to direct marketing,
    restricting while the data's accuracy is checked, and asking for erasure."""
    request = request_in_status(
        Status.IN_PROGRESS,
        regime=regime,
        rights=[
            RightDetails(RequestType.OBJECTION, objection_processing="Marketing calls", direct_marketing=True),
            RightDetails(RequestType.RESTRICTION, restriction_ground="accuracy_contested"),
            RightDetails(RequestType.ERASURE),
        ],
    )
    with transaction.atomic():
        record_event(request, "recipient_notified", actor=Actor.system())  # in the timeline: "Recipient notified (Art. 19)"
    login_staff(client, staff_in_role("DPO", username="dpo-citations"))
    return tuple(
        html.unescape(client.get(reverse(name, args=[request.reference])).content.decode())
        for name in ("staff:request", "staff:suppression_request")
    )


@pytest.mark.django_db
@pytest.mark.parametrize("regime", GDPR_NUMBERS)
def test_the_request_page_cites_the_gdprs_articles_only_where_the_requests_law_numbers_them_so(client, regime):
    page, _ = pages(client, regime)
    cited = GDPR_NUMBERS[regime]

    assert ("Objects to direct marketing: this cannot be refused (Art. 21(3)), only the request as a whole" in page) == cited
    assert ("Objects to direct marketing: this cannot be refused, only the request as a whole" in page) != cited
    assert ("(as its processor, Art. 28), the request is that customer's to answer" in page) == cited
    assert ("(as its processor), the request is that customer's to answer" in page) != cited
    assert ("The subject contests the accuracy of their data (Art. 18(1)(a))" in page) == cited
    assert ("Recipient notified (Art. 19)" in page) == cited and "Recipient notified" in page
    assert "The subject contests the accuracy of their data" in page
    # The grounds staff may refuse on, in the forms to complete or reject the request.
    assert ('<option value="unfounded">Manifestly unfounded (Art. 12(5))</option>' in page) == cited
    assert ('<option value="unfounded">Manifestly unfounded</option>' in page) != cited
    if not cited:
        # Only the fee's own citations remain: the CCPA's next to the GDPR's, which binds a fee under every regime
        # (handling.fee_refusal), and the LGPD's that forbids one.
        fee = {
            "ccpa": "Propose a fee (Art. 12(5); Civ. Code 1798.145(h)(3))",
            "lgpd": "Under the LGPD a request is answered free of charge (Art. 18 §5)",
        }[regime]
        assert fee in page and "Art. " not in page.replace(fee, "") and "GDPR" not in page


@pytest.mark.django_db
@pytest.mark.parametrize("regime", GDPR_NUMBERS)
def test_the_suppression_lists_page_cites_the_gdprs_article_only_where_the_requests_law_numbers_it_so(client, regime):
    _, page = pages(client, regime)
    cited = GDPR_NUMBERS[regime]

    assert ("<strong>Objects to direct marketing: this cannot be refused (Art. 21(3)).</strong>" in page) == cited
    assert ("<strong>Objects to direct marketing: this cannot be refused.</strong>" in page) != cited
    if not cited:
        assert "Art. " not in page and "GDPR" not in page
