"""Staff correct who makes a web request, the form's "Who is making this request?" answered wrongly
(agents.requester_correct): the subject's request made an agent's, or an agent's made the subject's own."""

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from requests_app.audit import Actor, record_event
from requests_app.lifecycle import NotAllowed, RequestError
from requests_app.models import (
    AgentAuthorityMethod,
    AgentCapacity,
    AuditEvent,
    IdentityKind,
    InternalNote,
    PrivacyRequest,
    RequestType,
    Status,
    VerificationMethod,
)
from requests_app.services import agents, intake
from requests_app.services.intake import RightDetails
from tests.conftest import login_staff
from tests.factories import released_package, staff_in_role, submit_request

AGENT = {"agent_capacity": AgentCapacity.LEGAL_REPRESENTATIVE, "agent_name": "Marc Peeters", "agent_email": "marc@example.org"}


@pytest.fixture
def handler(db):
    return staff_in_role("Handler", username="handler-correct")


def filed_and_confirmed(handler, django_capture_on_commit_callbacks, **overrides) -> PrivacyRequest:
    """A web request whose filer clicked the verification link, assigned to `handler`."""
    request = submit_request(rights=[RightDetails(RequestType.ACCESS)], **overrides)
    with django_capture_on_commit_callbacks(execute=True):
        intake.request_verify_email(token=intake.verification_token(request))
    PrivacyRequest.objects.filter(pk=request.pk).update(assignee=handler)
    request.refresh_from_db()
    return request


def email_identity(request, value):
    return request.identities.get(kind=IdentityKind.EMAIL, value=value)


def test_a_subjects_request_made_an_agents_unverifies_the_address_the_link_confirmed(
    client, handler, django_capture_on_commit_callbacks
):
    # A lawyer filed as the subject, with their own address as the subject's: the link proved the lawyer's mailbox.
    request = filed_and_confirmed(handler, django_capture_on_commit_callbacks, subject_email="marc@example.org")
    assert email_identity(request, "marc@example.org").verification_method == VerificationMethod.EMAIL_LINK

    staff = login_staff(client, handler)
    page = staff.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert "Correct: an agent makes this request for the subject" in page
    response = staff.post(
        reverse("staff:request_action", args=[request.reference, "correct_requester"]),
        {"to": "agent", "reason": "Mr Peeters wrote that he is her lawyer.", **AGENT},
    )
    assert response.status_code == 302

    request.refresh_from_db()
    assert (request.agent_capacity, request.agent_name, request.agent_email) == (
        AgentCapacity.LEGAL_REPRESENTATIVE, "Marc Peeters", "marc@example.org"
    )
    # The agent's address is not the subject's: cleared, its identity dropped, so never searched nor asked to confirm.
    assert request.subject_email == "" and not request.identities.filter(kind=IdentityKind.EMAIL).exists()
    assert request.correspondence_email == "marc@example.org"
    assert agents.authority_refusal(request)
    with pytest.raises(RequestError):
        agents.subject_confirmation_send(request=request, actor=Actor.staff(handler))
    event = AuditEvent.objects.get(request=request, action="requester_corrected")
    note = InternalNote.objects.get(request=request)
    assert event.data == {"to": "agent", "note": note.id} and note.body == "Mr Peeters wrote that he is her lawyer."


def test_a_subjects_address_distinct_from_the_agents_stays_but_is_no_longer_verified_by_the_link(
    handler, django_capture_on_commit_callbacks
):
    request = filed_and_confirmed(handler, django_capture_on_commit_callbacks)
    agents.requester_correct(
        request=request, actor=Actor.staff(handler), by_agent=True, reason="A parent filed for their child.",
        agent_capacity=AgentCapacity.PARENT_OR_GUARDIAN, agent_name="Marc Peeters", agent_email="marc@example.org",
    )
    request.refresh_from_db()
    assert request.subject_email == "ana@example.com"
    identity = email_identity(request, "ana@example.com")
    assert (identity.verified_at, identity.verification_method) == (None, "")
    assert not request.identities.searchable().exists()


def test_an_agents_request_made_the_subjects_own_writes_to_the_address_the_link_confirmed(
    client, handler, django_capture_on_commit_callbacks
):
    request = filed_and_confirmed(
        handler, django_capture_on_commit_callbacks, subject_email="ana.typed@example.com",
        agent_capacity=AgentCapacity.AUTHORISED_AGENT, agent_name="Ana Peeters", agent_email="ana@example.com",
    )
    # An unanswered link asking the subject to confirm the agent, and an authority confirmed: both cleared.
    request.identities.filter(value="ana.typed@example.com").update(verified_at=timezone.now(), verification_method="account_records")
    agents.subject_confirmation_send(request=request, actor=Actor.staff(handler))
    request.refresh_from_db()
    nonce = request.subject_confirmation_nonce
    assert nonce

    staff = login_staff(client, handler)
    page = staff.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert "Correct: the subject makes this request themselves" in page
    response = staff.post(
        reverse("staff:request_action", args=[request.reference, "correct_requester"]),
        {"to": "subject", "reason": "She filed for herself and ticked the wrong box."},
    )
    assert response.status_code == 302

    request.refresh_from_db()
    assert not request.filed_by_agent and (request.agent_name, request.agent_email) == ("", "")
    assert request.subject_email == request.correspondence_email == "ana@example.com"
    confirmed = email_identity(request, "ana@example.com")
    assert confirmed.verification_method == VerificationMethod.EMAIL_LINK and confirmed.verified_at == request.verified_at
    assert email_identity(request, "ana.typed@example.com").verification_method == "account_records"  # stays
    assert request.subject_confirmation_nonce == "" and request.agent_authority_confirmed_at is None
    assert not request.notifications.filter(kind="subject_confirmation", key=nonce).exists()  # its email forgiven
    assert AuditEvent.objects.get(request=request, action="requester_corrected").data["to"] == "subject"
    assert agents.authority_refusal(request) is None


def test_a_confirmed_authority_is_cleared_and_an_earlier_denial_does_not_hold_against_a_new_agent(
    handler, django_capture_on_commit_callbacks
):
    request = filed_and_confirmed(handler, django_capture_on_commit_callbacks, **AGENT)
    record_event(request, "agent_authority_denied", actor=Actor.subject())  # the subject disowned that agent
    assert agents.subject_denied_agent(request)
    agents.requester_correct(request=request, actor=Actor.staff(handler), by_agent=False, reason="The subject filed.")
    agents.requester_correct(
        request=request, actor=Actor.staff(handler), by_agent=True, reason="Another agent after all.",
        agent_capacity=AgentCapacity.AUTHORISED_AGENT, agent_name="Jan Claes", agent_email="jan@example.org",
    )
    assert not agents.subject_denied_agent(request)
    agents.agent_authority_confirm(request=request, actor=Actor.staff(handler), method=AgentAuthorityMethod.SIGNED_PERMISSION)


def test_the_correction_is_refused_once_data_went_out_or_for_a_stale_page_and_changes_nothing(
    client, handler, django_capture_on_commit_callbacks
):
    request = filed_and_confirmed(handler, django_capture_on_commit_callbacks)
    released_package(request)
    staff = login_staff(client, handler)
    response = staff.post(
        reverse("staff:request_action", args=[request.reference, "correct_requester"]),
        {"to": "agent", "reason": "A lawyer filed.", **AGENT},
    )
    shown = response.content.decode() + "".join(str(m) for m in get_messages(response.wsgi_request))
    assert "can no longer be corrected: data was already sent or changed for it" in shown
    request.refresh_from_db()
    assert not request.filed_by_agent and email_identity(request, "ana@example.com").verified_at is not None
    assert not AuditEvent.objects.filter(request=request, action="requester_corrected").exists()
    assert not InternalNote.objects.filter(request=request).exists()

    fresh = filed_and_confirmed(handler, django_capture_on_commit_callbacks, subject_email="ana2@example.com")
    with pytest.raises(RequestError, match="The subject makes this request already"):
        agents.requester_correct(request=fresh, actor=Actor.staff(handler), by_agent=False, reason="Stale page.")
    with pytest.raises(RequestError, match="Give the agent's name"):
        agents.requester_correct(request=fresh, actor=Actor.staff(handler), by_agent=True, reason="No details.")
    with pytest.raises(RequestError, match="valid email address"):
        agents.requester_correct(
            request=fresh, actor=Actor.staff(handler), by_agent=True, reason="A typo.", **{**AGENT, "agent_email": "marc@"}
        )
    with pytest.raises(RequestError, match="Say why"):
        agents.requester_correct(request=fresh, actor=Actor.staff(handler), by_agent=True, reason=" ", **AGENT)
    other = staff_in_role("Handler", username="handler-other")
    with pytest.raises(NotAllowed):
        agents.requester_correct(request=fresh, actor=Actor.staff(other), by_agent=True, reason="Not mine.", **AGENT)

    unverified = submit_request(subject_email="ana3@example.com")
    PrivacyRequest.objects.filter(pk=unverified.pk).update(assignee=handler)
    unverified.refresh_from_db()
    assert unverified.status == Status.AWAITING_VERIFICATION
    with pytest.raises(RequestError, match="open, email-verified requests only"):
        agents.requester_correct(request=unverified, actor=Actor.staff(handler), by_agent=True, reason="Early.", **AGENT)
