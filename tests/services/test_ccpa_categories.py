"""CCPA Regulations § 7024(a): a request to know refused for an identity that could not be verified is answered as a
request for the categories of personal information, from the inventory, as our general practice."""

import pytest

from requests_app.audit import Actor
from requests_app.models import ConnectorKind, DataCategory, IdentityKind, LegalBasis, Recipient, RequestType, SourceCategory, SourceSystem, Status
from requests_app.services import handling
from requests_app.services.intake import RightDetails
from tests.factories import identity_proof_asked, last_letter, request_in_status, staff_in_role

NOT_PROVED = "We asked you for a copy of a bill in your name, and received none."
INSTEAD = (
    "As we could not verify your identity, we cannot give you specific pieces of personal information, so we treated "
    "your request as one for the categories of personal information (Cal. Code Regs. tit. 11, § 7024(a))."
)


@pytest.fixture
def inventory(db):
    def source(slug, name, categories, **fields):
        made = SourceSystem.objects.create(
            slug=slug, name=name, connector=ConnectorKind.MANUAL, identity_kind=IdentityKind.EMAIL,
            legal_basis=LegalBasis.CONTRACT, retention="Contract + 1 year", **fields,
        )
        for category in categories:
            SourceCategory.objects.create(source=made, slug=category, category=category)
        return made

    crm = source("crm", "CRM", [DataCategory.CONTACT], purposes="Customer care.", origin="You, when you sign up")
    Recipient.objects.create(source=crm, name="Billing partner", country="USA")
    Recipient.objects.create(source=crm, name="Group companies", country="Belgium")
    source("web", "Website", [DataCategory.WEBSITE_CONNECTION], purposes="Security of the website", origin="Your browser")
    source("old", "Old CRM", [DataCategory.CONTACT], purposes="None now", origin="Nobody", active=False)


def _rejected(regime, *rights):
    dpo = staff_in_role("DPO", username="dpo1")
    request = request_in_status(Status.IN_PROGRESS, regime=regime, rights=[RightDetails(right) for right in rights])
    identity_proof_asked(request, dpo)
    handling.request_reject(
        request=request, actor=Actor.staff(dpo), ground="identity_not_verified", explanation=NOT_PROVED,
        expected_status=Status.IN_PROGRESS,
    )
    return last_letter(request).body


@pytest.mark.django_db
def test_a_ccpa_request_to_know_refused_for_identity_gives_the_categories_instead(inventory):
    body = _rejected("ccpa", RequestType.ACCESS)

    assert (
        f"{NOT_PROVED}\n\n{INSTEAD} Without verifying who you are, we cannot tell you which of them we hold about you: "
        "this is what we collect about the people whose data we process, system by system.\n\n"
        "CRM: contact information. Where it comes from: You, when you sign up. Why we use it: Customer care. "
        "Who receives it: Billing partner, Group companies.\n\n"
        "Website: website connection data. Where it comes from: Your browser. Why we use it: Security of the website. "
        "We disclose it to no one.\n\n"
        "You may make a new request at any time"
    ) in body
    assert "Old CRM" not in body  # no longer in use


@pytest.mark.django_db
@pytest.mark.parametrize(("regime", "rights"), [("gdpr", [RequestType.ACCESS]), ("ccpa", [RequestType.ERASURE])])
def test_only_a_ccpa_request_to_know_is_answered_with_the_categories(inventory, regime, rights):
    body = _rejected(regime, *rights)

    assert "Where it comes from" not in body and "§ 7024" not in body
    assert f"{NOT_PROVED}\n\nYou may make a new request at any time" in body


@pytest.mark.django_db
def test_an_agent_reads_the_categories_answer_said_of_the_person_they_act_for(inventory):
    """The agent's identity is not the one that could not be verified: the subject's is."""
    from django.utils import timezone

    from tests.test_agent_requests import agents_request

    dpo = staff_in_role("DPO", username="dpo1")
    request = agents_request(Status.IN_PROGRESS, RequestType.ACCESS, regime="ccpa")
    request.agent_authority_confirmed_at = timezone.now()
    request.save(update_fields=["agent_authority_confirmed_at"])
    identity_proof_asked(request, dpo)
    handling.request_reject(
        request=request, actor=Actor.staff(dpo), ground="identity_not_verified", explanation=NOT_PROVED,
        expected_status=Status.IN_PROGRESS,
    )

    body = last_letter(request).body
    assert (
        "As we could not verify the identity of the person you are acting for, we cannot give you specific pieces of "
        "their personal information, so we treated the request as one for the categories of personal information"
    ) in body
    assert "CRM: contact information." in body and "your identity" not in body
