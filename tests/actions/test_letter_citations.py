"""The completion letter cites the law of the request's own regime (wording.CITATIONS): the UK GDPR's articles to a
UK subject, not the GDPR's; the LGPD's where it has the provision; nothing, rather than the GDPR, where the subject's
law has no equivalent."""

import pytest
from django.utils import timezone

from requests_app.audit import Actor
from requests_app.models import Message, Recipient, RequestType, SourceSystem, SuppressionPurpose
from requests_app.services import actions, handling, notices, suppression
from requests_app.services.intake import RightDetails
from tests.actions.conftest import verified_request
from tests.actions.test_notices import carry_out_actions
from tests.factories import request_in_status, staff_in_role



def _letter(request, actor) -> str:
    handling.request_complete(request=request, actor=actor, letter="", expected_status=request.status)
    return Message.objects.filter(request=request).latest("created_at").body


@pytest.mark.parametrize(
    ("regime", "law"),
    [
        ("gdpr", " (Article 19 GDPR)"),
        ("uk_gdpr", " (Article 19 UK GDPR)"),
        # A deletion's own duty to notify service providers, contractors and third parties it sold or shared to.
        ("ccpa", " (Cal. Civ. Code § 1798.105(c)(1))"),
        ("lgpd", " (Article 18, §6 LGPD)"),
    ],
)
def test_the_recipients_told_and_not_told_are_cited_under_the_subjects_own_law(
    crm, dpo_actor, django_capture_on_commit_callbacks, regime, law
):
    Recipient.objects.create(source=crm, name="Billing partner", country="Belgium", notification_email="art19@partner.example")
    excused = Recipient.objects.create(source=crm, name="Old roaming partner", country="France")
    request = verified_request(RequestType.ERASURE, regime=regime)
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out_actions(request, dpo_actor, django_capture_on_commit_callbacks)
    notices.waive(notice=request.recipient_notices.get(recipient=excused), actor=dpo_actor, reason="impossible", note="Gone.")

    body = _letter(request, dpo_actor)

    assert f"We told the following recipients of your data about these changes{law}: Billing partner." in body
    if law:
        assert f"We did not tell Old roaming partner{law}: impossible. Gone." in body
    else:
        assert "We did not tell Old roaming partner, a recipient of your data, about these changes: impossible. Gone." in body
    assert "GDPR" not in body.replace(law, "") and "Article" not in body.replace(law, "")


@pytest.mark.parametrize(
    ("regime", "law"),
    [("gdpr", " (Article 18(3) GDPR)"), ("uk_gdpr", " (Article 18(3) UK GDPR)"), ("ccpa", ""), ("lgpd", "")],
)
def test_the_promise_to_write_before_lifting_a_restriction_cites_the_subjects_own_law(
    cdr, dpo_actor, django_capture_on_commit_callbacks, regime, law
):
    SourceSystem.objects.filter(pk=cdr.pk).update(restriction_list="restriction_list.identity")
    request = verified_request(RequestType.RESTRICTION, regime=regime)
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out_actions(request, dpo_actor, django_capture_on_commit_callbacks)

    body = _letter(request, dpo_actor)

    assert f"We will write to you before we lift a restriction of your data, telling you when and why{law}." in body
    assert "GDPR" not in body.replace(law, "")


@pytest.mark.parametrize(
    ("regime", "objection_law", "consent_law"),
    [
        ("gdpr", " (Article 21 GDPR)", " (Article 7(3) GDPR)"),
        ("uk_gdpr", " (Article 21 UK GDPR)", " (Article 7(3) UK GDPR)"),
        ("ccpa", "", ""),
        # The LGPD's own right to revoke consent (Art. 18, IX); its right to oppose (Art. 18 §2) is not the GDPR's.
        ("lgpd", "", " (Article 18, IX LGPD)"),
    ],
)
@pytest.mark.django_db
def test_an_objection_and_a_consent_withdrawal_applied_cite_the_subjects_own_law(regime, objection_law, consent_law):
    dpo = Actor.staff(staff_in_role("DPO", username="dpo1"))
    request = request_in_status(
        "in_progress",
        regime=regime,
        rights=[
            RightDetails(RequestType.OBJECTION, objection_processing="Marketing emails"),
            RightDetails(RequestType.WITHDRAW_CONSENT, consent_withdrawn="Newsletter"),
        ],
    )
    request.identities.filter(kind="email").update(verified_at=timezone.now())
    emails = SuppressionPurpose.objects.create(slug="marketing-email", name="Marketing emails", identity_kinds=["email"])
    newsletter = SuppressionPurpose.objects.create(slug="newsletter", name="Newsletter", identity_kinds=["email"])
    suppression.suppress(request=request, actor=dpo, right="objection", purposes=[emails])
    suppression.suppress(request=request, actor=dpo, right="withdraw_consent", purposes=[newsletter])

    body = _letter(request, dpo)

    assert f"Following your objection{objection_law}, we no longer use your data for: Marketing emails." in body
    assert f"Following the withdrawal of your consent{consent_law}, we no longer use your data for: Newsletter." in body
    assert "GDPR" not in body.replace(objection_law, "").replace(consent_law, "")
    assert "LGPD" not in body.replace(consent_law, "")
