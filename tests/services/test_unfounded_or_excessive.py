"""Art. 12(5) puts on the controller the burden of showing whether a request is manifestly unfounded or excessive: a
new refusal names one of the two, with the law of the request's regime; one refused on both before keeps its ground.
A letter's citations name their law, as its others do ("Article 19 GDPR")."""

import pytest

from requests_app.audit import Actor
from requests_app.lifecycle import RequestError
from requests_app.models import RejectionGround, RequestType, Status
from requests_app.services import certificate, handling
from requests_app.services.intake import RightDetails
from requests_app.staff.forms import RejectForm
from requests_app.wording import label_citing_its_law
from tests.factories import request_in_status, staff_in_role

pytestmark = pytest.mark.django_db


def reject(request, ground: str) -> str:
    dpo = Actor.staff(staff_in_role("DPO", username="dpo-12-5"))
    handling.request_reject(
        request=request, actor=dpo, ground=ground, explanation="The fourth identical request this month.",
        expected_status=request.status,
    )
    return request.messages.latest("created_at").body


@pytest.mark.parametrize(
    ("regime", "ground", "reason"),
    [
        ("gdpr", "unfounded", "Manifestly unfounded (Art. 12(5) GDPR)"),
        ("gdpr", "excessive", "Excessive, in particular because of its repetitive character (Art. 12(5) GDPR)"),
        ("uk_gdpr", "excessive", "Excessive, in particular because of its repetitive character (Art. 12(5) UK GDPR)"),
        ("ccpa", "unfounded", "Manifestly unfounded (Cal. Civ. Code § 1798.145(h)(3))"),
        ("ccpa", "excessive", "Excessive, in particular because of its repetitive character (Cal. Civ. Code § 1798.145(h)(3))"),
        # The LGPD has no such ground of its own: its letter cites no law for it, as before.
        ("lgpd", "unfounded", "Manifestly unfounded"),
    ],
)
def test_a_rejection_names_which_of_the_two_and_the_law_of_the_requests_regime(regime, ground, reason):
    request = request_in_status(Status.IN_PROGRESS, regime=regime, rights=[RightDetails(RequestType.ACCESS)])
    assert f"The reason: {reason}.\n\nThe fourth identical request this month." in reject(request, ground)


def test_a_new_rejection_may_no_longer_be_on_both_grounds_at_once():
    request = request_in_status(Status.IN_PROGRESS, rights=[RightDetails(RequestType.ACCESS)])
    with pytest.raises(RequestError, match="Choose the legal reason for the rejection."):
        reject(request, RejectionGround.UNFOUNDED_OR_EXCESSIVE)
    grounds = dict(RejectForm(privacy_request=request).fields["ground"].choices)
    assert "manifestly_unfounded" not in grounds and {"unfounded", "excessive"} <= set(grounds)


def test_a_request_rejected_on_both_grounds_before_keeps_its_ground():
    request = request_in_status(Status.REJECTED, rights=[RightDetails(RequestType.ACCESS)])
    type(request).objects.filter(pk=request.pk).update(rejection_ground="manifestly_unfounded")
    request.refresh_from_db()
    assert request.get_rejection_ground_display() == "Manifestly unfounded or excessive (Art. 12(5))"
    assert (
        "<dt>Ground for the rejection</dt><dd>Manifestly unfounded or excessive (Art. 12(5))</dd>"
        in certificate.render_certificate_html(request)
    )


@pytest.mark.parametrize(
    ("regime", "label", "cited"),
    [
        ("gdpr", "Legal obligation to retain the data (Art. 17(3)(b))", "Legal obligation to retain the data (Art. 17(3)(b) GDPR)"),
        ("uk_gdpr", "The rights and freedoms of others (Art. 20(4))", "The rights and freedoms of others (Art. 20(4) UK GDPR)"),
        ("ccpa", "Legal obligation to retain the data (Art. 17(3)(b))", "Legal obligation to retain the data"),
        ("gdpr", "Other", "Other"),
    ],
)
def test_a_label_citing_a_gdpr_article_names_the_regulation_in_a_letter(regime, label, cited):
    """The German letter read "(Art. 17 Abs. 3 lit. b)", and its next paragraph "Art. 19 DSGVO"."""
    assert label_citing_its_law(label, regime) == cited
