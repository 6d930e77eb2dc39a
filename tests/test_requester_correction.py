"""Staff correct who makes a web request, the form's "Who is making this request?" answered wrongly
(agents.requester_correct): the subject's request made an agent's, or an agent's made the subject's own."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.messages import get_messages
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from requests_app.audit import Actor, record_event
from requests_app.lifecycle import NotAllowed, RequestError
from requests_app.models import (
    ActionKind,
    ActionStatus,
    AgentAuthorityMethod,
    AgentCapacity,
    AuditEvent,
    ConnectorKind,
    ExportPackage,
    ExportStatus,
    IdentityKind,
    InternalNote,
    LegalBasis,
    PrivacyRequest,
    RequestType,
    SourceAction,
    SourceSystem,
    Status,
    VerificationMethod,
)
from requests_app.services import agents, handling, intake
from requests_app.services.intake import RightDetails
from requests_app.templatetags.staff_tags import event_data
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


def test_the_agents_address_must_be_the_one_that_confirmed_the_request(client, handler, django_capture_on_commit_callbacks):
    # Letters, the status page link and an unencrypted package would go to an address staff typed, nobody confirmed.
    request = filed_and_confirmed(handler, django_capture_on_commit_callbacks)
    with pytest.raises(RequestError, match="must be the one that confirmed this request"):
        agents.requester_correct(
            request=request, actor=Actor.staff(handler), by_agent=True, reason="A parent filed for their child.",
            agent_capacity=AgentCapacity.PARENT_OR_GUARDIAN, agent_name="Marc Peeters", agent_email="marc@example.org",
        )
    request.refresh_from_db()
    assert not request.filed_by_agent and email_identity(request, "ana@example.com").verified_at is not None
    assert not AuditEvent.objects.filter(request=request, action="requester_corrected").exists()

    # The staff form shows the confirmed address and ignores another one posted.
    staff = login_staff(client, handler)
    staff.post(
        reverse("staff:request_action", args=[request.reference, "correct_requester"]),
        {"to": "agent", "reason": "A parent filed for their child.", **AGENT, "agent_capacity": AgentCapacity.PARENT_OR_GUARDIAN},
    )
    request.refresh_from_db()
    assert request.correspondence_email == request.agent_email == "ana@example.com" and request.subject_email == ""
    assert not request.identities.filter(kind=IdentityKind.EMAIL).exists()


def test_identifiers_verified_by_methods_resting_on_the_filer_are_unverified_when_an_agent_filed(
    handler, django_capture_on_commit_callbacks
):
    # The call-back reached the filer's phone, the identity document was the one they sent: the agent's, not proofs
    # of the subject's identifiers. The account records do not rest on the filer.
    request = filed_and_confirmed(handler, django_capture_on_commit_callbacks)
    verified = {"verified_at": timezone.now(), "verified_by": handler}
    request.identities.create(kind=IdentityKind.PHONE, value="+32470000001", verification_method=VerificationMethod.CALLBACK, **verified)
    request.identities.create(kind=IdentityKind.EMAIL, value="ana.other@example.com", verification_method=VerificationMethod.DOCUMENT, **verified)
    request.identities.create(kind=IdentityKind.CUSTOMER_REFERENCE, value="C-1", verification_method=VerificationMethod.ACCOUNT_RECORDS, **verified)
    agents.requester_correct(
        request=request, actor=Actor.staff(handler), by_agent=True, reason="A parent filed for their child.",
        agent_capacity=AgentCapacity.PARENT_OR_GUARDIAN, agent_name="Marc Peeters", agent_email="ana@example.com",
    )
    methods = dict(request.identities.values_list("value", "verification_method"))
    assert methods == {"+32470000001": "", "ana.other@example.com": "", "C-1": VerificationMethod.ACCOUNT_RECORDS}
    assert list(request.identities.searchable().values_list("value", flat=True)) == ["C-1"]


@pytest.mark.parametrize("by_agent", [True, False])
def test_the_packages_not_released_are_ended_and_dry_runs_voided_by_a_correction(
    by_agent, handler, django_capture_on_commit_callbacks
):
    # Their data was searched for by the identifiers of before: some now unverified, or one newly verified not searched.
    overrides = {} if by_agent else {"subject_email": "ana.typed@example.com", **{**AGENT, "agent_email": "ana@example.com"}}
    request = filed_and_confirmed(handler, django_capture_on_commit_callbacks, **overrides)
    ready = ExportPackage.objects.create(request=request, kind="access", status=ExportStatus.READY)
    queued = ExportPackage.objects.create(request=request, kind="portability", status=ExportStatus.QUEUED)
    crm = SourceSystem.objects.create(
        slug="crm", name="CRM", connector=ConnectorKind.MANUAL, identity_kind=IdentityKind.EMAIL,
        purposes="Contracts", legal_basis=LegalBasis.CONTRACT, retention="10 years", origin="The subject",
    )
    approved = SourceAction.objects.create(
        request=request, source=crm, kind=ActionKind.ERASE, status=ActionStatus.APPROVED, dry_run={"plan": "x"},
        dry_run_at=timezone.now(), dry_run_by=handler, approved_by=handler, approved_at=timezone.now(),
    )
    details = {"agent_capacity": AgentCapacity.PARENT_OR_GUARDIAN, "agent_name": "Marc", "agent_email": "ana@example.com"}
    agents.requester_correct(
        request=request, actor=Actor.staff(handler), by_agent=by_agent, reason="Corrected.", **(details if by_agent else {})
    )
    assert {ready.pk: ExportStatus.EXPIRED, queued.pk: ExportStatus.EXPIRED} == dict(request.exports.values_list("pk", "status"))
    assert AuditEvent.objects.filter(request=request, action="export_deleted").count() == 2
    approved.refresh_from_db()
    assert (approved.status, approved.dry_run, approved.dry_run_at, approved.approved_by) == (ActionStatus.PLANNED, {}, None, None)
    event = AuditEvent.objects.get(request=request, action="requester_corrected")
    assert event.data["dry_runs_voided"] == [{"action": str(approved.public_id), "source": "crm", "kind": ActionKind.ERASE}]
    assert "dry runs to run again: kind Erasure" in event_data(event.data)  # the timeline names the key


def test_the_correction_waits_for_a_package_being_compiled(handler, django_capture_on_commit_callbacks):
    request = filed_and_confirmed(handler, django_capture_on_commit_callbacks)
    running = ExportPackage.objects.create(request=request, kind="access", status=ExportStatus.RUNNING)
    with pytest.raises(RequestError, match="being compiled or worked on right now"):
        agents.requester_correct(request=request, actor=Actor.staff(handler), by_agent=True, reason="A lawyer.", **{**AGENT, "agent_email": "ana@example.com"})
    running.refresh_from_db()
    request.refresh_from_db()
    assert running.status == ExportStatus.RUNNING and not request.filed_by_agent


def test_an_agents_request_made_the_subjects_own_writes_to_the_address_the_link_confirmed(
    client, handler, django_capture_on_commit_callbacks
):
    request = filed_and_confirmed(
        handler, django_capture_on_commit_callbacks, subject_email="ana.typed@example.com",
        agent_capacity=AgentCapacity.AUTHORISED_AGENT, agent_name="Ana Peeters", agent_email="ana@example.com",
    )
    # A link asking the subject to confirm the agent, made dead by staff confirming the authority on other proof, and
    # that authority: both cleared.
    request.identities.filter(value="ana.typed@example.com").update(verified_at=timezone.now(), verification_method="account_records")
    agents.subject_confirmation_send(request=request, actor=Actor.staff(handler))
    agents.agent_authority_confirm(request=request, actor=Actor.staff(handler), method=AgentAuthorityMethod.SIGNED_PERMISSION)
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
    # Verified for the person the agent named: that the filer is her is only the filer's word.
    typed = email_identity(request, "ana.typed@example.com")
    assert (typed.verified_at, typed.verification_method, typed.verified_by) == (None, "", None)
    assert list(request.identities.searchable().values_list("value", flat=True)) == ["ana@example.com"]
    assert request.subject_confirmation_nonce == "" and request.agent_authority_confirmed_at is None
    assert not request.notifications.filter(kind="subject_confirmation", key=nonce).exists()  # its email forgiven
    assert AuditEvent.objects.get(request=request, action="requester_corrected").data["to"] == "subject"
    assert agents.authority_refusal(request) is None


def test_an_agents_request_made_the_subjects_own_is_searched_by_the_confirmed_mailbox_only(
    handler, django_capture_on_commit_callbacks
):
    # Eve files for the victim; staff verify the victim's address, line and account against the account records. Eve
    # then says she is the subject and ticked the wrong box: nothing staff verified for the victim is searched for her.
    request = filed_and_confirmed(
        handler, django_capture_on_commit_callbacks, subject_email="victim@example.com",
        agent_capacity=AgentCapacity.AUTHORISED_AGENT, agent_name="Eve Martin", agent_email="eve@attacker.example",
    )
    request.identities.create(kind=IdentityKind.PHONE, value="+32470000001")
    request.identities.create(kind=IdentityKind.CUSTOMER_REFERENCE, value="C-1")
    handling.identity_verify(
        request=request, actor=Actor.staff(handler), identity_ids=list(request.identities.values_list("id", flat=True)),
        method=VerificationMethod.ACCOUNT_RECORDS, expected_status=request.status,
    )
    assert request.identities.searchable().count() == 3

    agents.requester_correct(request=request, actor=Actor.staff(handler), by_agent=False, reason="She says she is the subject.")
    request.refresh_from_db()
    assert request.correspondence_email == "eve@attacker.example" and agents.authority_refusal(request) is None
    assert list(request.identities.searchable().values_list("value", flat=True)) == ["eve@attacker.example"]
    assert not request.identities.exclude(value="eve@attacker.example").filter(verified_at__isnull=False).exists()


def test_the_subjects_no_refuses_making_the_request_theirs_until_they_say_yes(handler, django_capture_on_commit_callbacks):
    # The request made the subject's own would give the data to the agent's address on the agent's word.
    request = filed_and_confirmed(handler, django_capture_on_commit_callbacks, subject_email="ana.typed@example.com", **AGENT)
    request.identities.filter(value="ana.typed@example.com").update(verified_at=timezone.now(), verification_method="account_records")
    with django_capture_on_commit_callbacks(execute=True):
        agents.subject_confirmation_send(request=request, actor=Actor.staff(handler))
    request.refresh_from_db()
    agents.subject_confirmation_answer(token=agents.subject_confirmation_token(request), allowed=False)
    with pytest.raises(RequestError, match="did not allow the agent"):
        agents.requester_correct(request=request, actor=Actor.staff(handler), by_agent=False, reason="She filed herself.")
    request.refresh_from_db()
    assert request.agent_email == "marc@example.org"
    assert not AuditEvent.objects.filter(request=request, action="requester_corrected").exists()

    with django_capture_on_commit_callbacks(execute=True):
        agents.subject_confirmation_send(request=request, actor=Actor.staff(handler))
    request.refresh_from_db()
    # Her yes allows the filer to act for her: the request may then be made the filer's own, searched by their mailbox.
    agents.subject_confirmation_answer(token=agents.subject_confirmation_token(request), allowed=True)
    agents.requester_correct(request=request, actor=Actor.staff(handler), by_agent=False, reason="She filed herself.")
    request.refresh_from_db()
    assert not request.filed_by_agent and request.agent_authority_confirmed_at is None
    assert list(request.identities.searchable().values_list("value", flat=True)) == ["marc@example.org"]


def test_an_agent_who_says_they_are_the_subject_cannot_take_the_subjects_request_over(
    handler, django_capture_on_commit_callbacks
):
    # Eve files as an authorised agent for the victim, the victim's address as the subject's, her own as hers.
    request = filed_and_confirmed(
        handler, django_capture_on_commit_callbacks, subject_email="victim@example.com",
        agent_capacity=AgentCapacity.AUTHORISED_AGENT, agent_name="Eve Martin", agent_email="eve@attacker.example",
    )
    victim = email_identity(request, "victim@example.com")
    handling.identity_verify(
        request=request, actor=Actor.staff(handler), identity_ids=[victim.id], method=VerificationMethod.ACCOUNT_RECORDS,
        expected_status=request.status,
    )
    with django_capture_on_commit_callbacks(execute=True):
        agents.subject_confirmation_send(request=request, actor=Actor.staff(handler))
    request.refresh_from_db()
    token = agents.subject_confirmation_token(request)

    # Unanswered, Eve writes "sorry, I am the subject, I ticked the wrong box": the question stays the subject's.
    with pytest.raises(RequestError, match="has not yet answered the link asking them to confirm the agent"):
        agents.requester_correct(request=request, actor=Actor.staff(handler), by_agent=False, reason="She says she is the subject.")
    request.refresh_from_db()
    assert request.filed_by_agent and agents.authority_refusal(request)
    assert request.correspondence_email == "eve@attacker.example" and request.subject_email == "victim@example.com"
    assert agents.request_for_subject_confirmation(token) == request  # the victim's link still works
    assert not AuditEvent.objects.filter(request=request, action="requester_corrected").exists()


def test_a_denial_holds_across_corrections_until_the_subject_says_yes(handler, django_capture_on_commit_callbacks):
    # A correction recorded after the subject's no (as one could be before corrections refused it) does not make it
    # vanish: correcting back and forth would otherwise lift it.
    request = filed_and_confirmed(handler, django_capture_on_commit_callbacks, **AGENT)
    record_event(request, "agent_authority_denied", actor=Actor.subject())
    record_event(request, "requester_corrected", actor=Actor.staff(handler), data={"to": "subject", "note": 0})
    record_event(request, "requester_corrected", actor=Actor.staff(handler), data={"to": "agent", "note": 0})
    assert agents.subject_denied_agent(request)
    with pytest.raises(RequestError, match="did not allow the agent"):
        agents.agent_authority_confirm(request=request, actor=Actor.staff(handler), method=AgentAuthorityMethod.SIGNED_PERMISSION)
    record_event(request, "agent_authority_confirmed", actor=Actor.subject(), data={"method": AgentAuthorityMethod.SUBJECT_CONFIRMED})
    assert not agents.subject_denied_agent(request)


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


@pytest.mark.django_db(transaction=True)
def test_the_correction_does_not_wait_for_a_package_another_transaction_holds(handler, django_capture_on_commit_callbacks):
    # A release locks its package and then reads the request: the correction, holding the request, refuses rather
    # than wait (a deadlock), and rather than leave the package releasable (it would be released from before).
    request = filed_and_confirmed(handler, django_capture_on_commit_callbacks)
    ready = ExportPackage.objects.create(request=request, kind="access", status=ExportStatus.READY)
    locked, done = threading.Event(), threading.Event()

    def hold_the_package():
        try:
            with transaction.atomic():
                ExportPackage.objects.select_for_update().get(pk=ready.pk)
                locked.set()
                done.wait(timeout=20)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as other:
        holding = other.submit(hold_the_package)
        assert locked.wait(timeout=20)
        try:
            with pytest.raises(RequestError, match="being compiled or worked on right now"):
                agents.requester_correct(
                    request=request, actor=Actor.staff(handler), by_agent=True, reason="A lawyer.",
                    **{**AGENT, "agent_email": "ana@example.com"},
                )
        finally:
            done.set()
        holding.result(timeout=20)
    request.refresh_from_db()
    assert not request.filed_by_agent and ExportPackage.objects.get(pk=ready.pk).status == ExportStatus.READY
