"""The certificate, which may be shown to the subject, cites the law of the request's regime as the letters do
(wording.CITATIONS, wording.label_in_letter): the UK GDPR named for a UK request, no GDPR article for a CCPA or LGPD
one, where that law has no equivalent."""

import datetime

import pytest
from django.utils import timezone, translation

from requests_app.models import ErasureException, LegalHold, PrivacyRequest, Recipient, RequestType
from requests_app.services import actions, certificate, handling, notices
from tests.actions.conftest import verified_request
from tests.actions.test_notices import carry_out_actions


@pytest.mark.parametrize(
    ("regime", "erasure_law", "recipients_law"),
    [
        ("gdpr", " (Article 17(3) GDPR)", " (Article 19 GDPR)"),
        ("uk_gdpr", " (Article 17(3) UK GDPR)", " (Article 19 UK GDPR)"),
        # A deletion's own duty to tell service providers, contractors and third parties (wording.CITATIONS).
        ("ccpa", "", " (Cal. Civ. Code § 1798.105(c)(1))"),
        ("lgpd", "", " (Article 18, §6 LGPD)"),
    ],
)
def test_an_erasure_certificate_cites_the_holds_and_the_recipients_told_under_the_requests_law(
    crm, cdr, dpo_actor, django_capture_on_commit_callbacks, regime, erasure_law, recipients_law
):
    LegalHold.objects.create(
        source=cdr, ground=ErasureException.LEGAL_OBLIGATION, basis="Telecom law: call records kept 12 months",
        until=timezone.localdate() + datetime.timedelta(days=365),
    )
    Recipient.objects.create(source=crm, name="Billing partner", country="Belgium", notification_email="art19@partner.example")
    excused = Recipient.objects.create(source=crm, name="Old reseller", country="France")
    request = verified_request(RequestType.ERASURE, regime=regime)
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out_actions(request, dpo_actor, django_capture_on_commit_callbacks)
    notices.waive(notice=request.recipient_notices.get(recipient=excused), actor=dpo_actor, reason="impossible", note="Gone.")
    handling.request_complete(request=request, actor=dpo_actor, letter="Done", expected_status=request.status)

    with translation.override("en"):
        html = certificate.render_certificate_html(PrivacyRequest.objects.get(pk=request.pk))

    assert f"<p>Kept under a legal hold{erasure_law}:</p>" in html
    assert f"<h2>Recipients told{recipients_law}</h2>" in html
    # The hold's ground and the trail's "Recipient notified" cite the GDPR's numbers, which the UK GDPR shares.
    gdpr_numbers = regime in ("gdpr", "uk_gdpr")
    assert ("<td>Compliance with a legal obligation (Art. 17(3)(b))</td>" in html) == gdpr_numbers
    assert ("<td>Compliance with a legal obligation</td>" in html) != gdpr_numbers
    assert ("Recipient notified (Art. 19) <code>" in html) == gdpr_numbers
    if not gdpr_numbers:
        cited_nothing_else = html.replace(recipients_law, "")
        assert "Art. " not in cited_nothing_else and "Article" not in cited_nothing_else and "GDPR" not in html
    if regime == "uk_gdpr":
        assert "GDPR)" not in html.replace("UK GDPR)", "")  # no citation of the EU's GDPR
