"""Requests made by someone acting for the data subject (services.agents): the public form, whom we write to, the
gate until the agent's authority is confirmed, the rejection for lack of it, and the purge of the agent's details."""

import datetime
import importlib
import re

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from requests_app import roles
from requests_app.audit import Actor
from requests_app.lifecycle import RequestError
from requests_app.models import (
    AgentAuthorityMethod,
    AgentCapacity,
    AuditEvent,
    ExportPackage,
    ExportStatus,
    IdentityKind,
    Message,
    PrivacyRequest,
    RejectionGround,
    RequestType,
    Status,
)
from requests_app.services import agents, exports, handling, intake
from requests_app.services.intake import RightDetails
from tests.conftest import login_staff
from tests.factories import erasure_kept_whole, last_letter, released_package, request_in_status, staff_in_role
from tests.test_public_form import VALID, post_form
from tests.test_status_page import status_url

AS_AGENT = {
    "filed_by": "agent",
    "agent_name": "Marc Peeters",
    "agent_email": "marc@example.org",
    "agent_capacity": AgentCapacity.PARENT_OR_GUARDIAN,
    "agent_permission": "on",
    "subject_email": "",
    "signature": "Marc Peeters",
}
AGENT = {
    "agent_capacity": AgentCapacity.AUTHORISED_AGENT,
    "agent_name": "Marc Peeters",
    "agent_email": "marc@example.org",
    "signature": "Marc Peeters",
}


def agents_request(status=Status.IN_PROGRESS, *rights, **overrides):
    return request_in_status(
        status, **{"rights": [RightDetails(right) for right in rights or [RequestType.ACCESS]], **AGENT, **overrides}
    )


@pytest.fixture
def dpo(db):
    return staff_in_role("DPO", username="dpo-agents")


# The public form


@pytest.mark.django_db
def test_an_agent_files_for_the_subject_without_the_subjects_email_and_gets_the_link(client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_form(client, **{**AS_AGENT, "language": "en"})

    assert response.status_code == 302
    request = PrivacyRequest.objects.get()
    assert (request.subject_name, request.subject_email) == ("Ana Peeters", "")
    assert (request.agent_capacity, request.agent_name, request.agent_email) == (
        AgentCapacity.PARENT_OR_GUARDIAN, "Marc Peeters", "marc@example.org"
    )
    assert request.agent_authority_confirmed_at is None
    # The agent's address is where we write, never an identifier of the subject's searched in the source systems.
    assert IdentityKind.EMAIL not in {identity.kind for identity in request.identities.all()}
    [email] = mail.outbox
    assert email.to == ["marc@example.org"]
    assert "/verify/" in email.body
    assert "This email concerns the request you made on behalf of Ana Peeters." in email.body
    # The page after sending shows where the link went: the agent's address, masked.
    assert "m•••@example.org" in client.get(response.url).content.decode()
    # The trail says an agent filed, in what capacity, and nothing more (no names or addresses: it is never purged).
    assert request.events.get(action="submitted").data["agent"] == AgentCapacity.PARENT_OR_GUARDIAN


@pytest.mark.django_db
def test_an_agent_must_give_their_details_capacity_and_permission(client):
    response = post_form(client, filed_by="agent", subject_email="")

    assert response.status_code == 200
    assert not PrivacyRequest.objects.exists()
    errors = response.context["form"].errors
    assert errors["agent_name"] == ["Type your own full name: you are acting for the person the data is about."]
    assert errors["agent_email"] == ["Enter your own email address: we write to you about this request."]
    assert errors["agent_capacity"] == ["Choose in what capacity you are acting for them."]
    assert errors["agent_permission"] == [
        "Confirm that you hold their signed permission or another legal authority to act for them: without it we "
        "cannot act on the request."
    ]
    assert "subject_email" not in errors  # optional for an agent
    # Each error is read with its field.
    html = response.content.decode()
    assert re.search(r'<input type="checkbox" name="agent_permission"[^>]*aria-describedby="id_agent_permission_error"', html)


@pytest.mark.django_db
def test_an_agent_cannot_give_their_own_address_as_the_subjects(client):
    """We may write to the subject's address to ask them to confirm the agent: the agent's own would confirm itself."""
    response = post_form(client, **{**AS_AGENT, "subject_email": "MARC@example.org"})
    assert response.status_code == 200 and not PrivacyRequest.objects.exists()
    assert response.context["form"].errors["subject_email"] == [
        "This is the agent's own address: give the email address of the person the data is about, or leave it empty."
    ]


@pytest.mark.django_db
def test_an_agent_gives_a_valid_email_address_of_their_own(client):
    response = post_form(client, **{**AS_AGENT, "agent_email": "marc@localhost"})
    assert response.context["form"].errors["agent_email"] == ["Enter a valid email address."]


@pytest.mark.django_db
def test_the_subject_filing_for_themselves_still_gives_their_email_and_no_agent_is_recorded(client):
    missing = post_form(client, subject_email="")
    assert missing.context["form"].errors["subject_email"] == ["This field is required."]

    # An agent's part left filled in (shown without JavaScript) by someone who then said they are the subject: they
    # said who they are, so it is dropped rather than refused, a mistyped address in it too.
    response = post_form(client, **{**AS_AGENT, "filed_by": "subject", "subject_email": "ana@example.com", "agent_email": "x"})
    assert response.status_code == 302
    request = PrivacyRequest.objects.get()
    assert (request.agent_capacity, request.agent_name, request.agent_email) == ("", "", "")
    assert request.correspondence_email == "ana@example.com"


@pytest.mark.django_db
def test_the_form_asks_who_files_in_a_fieldset_with_the_subject_as_the_default(client):
    html = client.get(reverse("submit")).content.decode()
    assert re.search(r"<fieldset[^>]*>\s*<legend>Who is making this request\?</legend>", html)
    assert re.search(r'<input type="radio" name="filed_by" value="subject"[^>]*checked', html)
    assert re.search(r'<fieldset id="agent-details"[^>]*aria-describedby="agent-details-help"', html)
    assert '<legend>If you are acting for someone</legend>' in html
    assert '<p class="help" id="agent-details-help">Fill this in only if you are acting for the person the data is about' in html
    assert '<label for="id_agent_email">Your email address:</label>' in html
    assert re.search(r'<input type="email" name="agent_email"[^>]*aria-describedby="id_agent_email_helptext"', html)


# Whom we write to


@pytest.mark.django_db
def test_the_verification_link_confirms_the_agents_mailbox_not_the_subjects_address(django_capture_on_commit_callbacks):
    request = agents_request(Status.AWAITING_VERIFICATION, subject_email="ana@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        intake.request_verify_email(token=intake.verification_token(request))

    assert request.identities.get(kind=IdentityKind.EMAIL).verified_at is None
    confirmed = mail.outbox[-1]
    assert confirmed.to == ["marc@example.org"]
    assert "This email concerns the request you made on behalf of Ana Peeters." in confirmed.body


@pytest.mark.django_db
def test_letters_go_to_the_agent_and_say_whom_they_are_about(dpo, django_capture_on_commit_callbacks):
    request = agents_request()
    with django_capture_on_commit_callbacks(execute=True):
        handling.message_send(request=request, actor=Actor.staff(dpo), body="We are looking into it.")

    letter = last_letter(request)
    assert letter.body.startswith("This letter concerns the request you made on behalf of Ana Peeters.\n\n")
    [email] = [email for email in mail.outbox if "We are looking into it." in email.body]
    assert email.to == ["marc@example.org"]
    # The same text sent again is caught as before, the opening included.
    with pytest.raises(RequestError, match="The same text was sent"):
        handling.message_send(request=request, actor=Actor.staff(dpo), body="We are looking into it.")


@pytest.mark.django_db
def test_the_lost_link_page_sends_the_link_to_the_agent_who_filed(django_capture_on_commit_callbacks):
    request = agents_request(subject_email="ana@example.com")
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        intake.request_resend_link(reference=request.reference, email="ana@example.com")
    assert mail.outbox == []  # the subject's address is not the one the links went to

    with django_capture_on_commit_callbacks(execute=True):
        intake.request_resend_link(reference=request.reference, email="Marc@Example.org")
    [email] = mail.outbox
    assert email.to == ["marc@example.org"]
    assert "on behalf of Ana Peeters" in email.body


@pytest.mark.django_db
def test_the_staff_search_by_email_finds_the_agents_requests(client, dpo):
    request = agents_request()
    request_in_status(Status.IN_PROGRESS)  # Ana's own
    login_staff(client, dpo)
    response = client.post(reverse("staff:queue_search"), {"q": "MARC@example.org", "query": ""}, follow=True)
    assert [r.reference for r in response.context["page"].object_list] == [request.reference]


# The gate until the agent's authority is confirmed


@pytest.mark.django_db
def test_a_package_is_released_only_once_the_agents_authority_is_confirmed(dpo, django_capture_on_commit_callbacks):
    request = agents_request()
    export = ExportPackage.objects.create(request=request, kind="access", status=ExportStatus.READY)

    with pytest.raises(RequestError, match="their authority to act for the subject is not confirmed yet"):
        exports.export_release(export=export, actor=Actor.staff(dpo))
    assert ExportPackage.objects.get(pk=export.pk).released_at is None

    agents.agent_authority_confirm(request=request, actor=Actor.staff(dpo), method=AgentAuthorityMethod.SIGNED_PERMISSION)
    with django_capture_on_commit_callbacks(execute=True):
        exports.export_release(export=ExportPackage.objects.get(pk=export.pk), actor=Actor.staff(dpo))
    assert ExportPackage.objects.get(pk=export.pk).status == ExportStatus.RELEASED
    [ready] = [email for email in mail.outbox if "is ready" in email.subject]
    assert ready.to == ["marc@example.org"]
    assert "This email concerns the request you made on behalf of Ana Peeters." in ready.body


@pytest.mark.django_db
def test_a_request_is_completed_only_once_the_agents_authority_is_confirmed(dpo):
    request = agents_request()
    released_package(request)

    with pytest.raises(RequestError, match="their authority to act for the subject is not confirmed yet"):
        handling.request_complete(request=request, actor=Actor.staff(dpo), letter="Here it is.", expected_status=Status.IN_PROGRESS)
    assert PrivacyRequest.objects.get(pk=request.pk).status == Status.IN_PROGRESS

    agents.agent_authority_confirm(request=request, actor=Actor.staff(dpo), method=AgentAuthorityMethod.POWER_OF_ATTORNEY)
    handling.request_complete(request=request, actor=Actor.staff(dpo), letter="Here it is.", expected_status=Status.IN_PROGRESS)
    assert PrivacyRequest.objects.get(pk=request.pk).status == Status.COMPLETED


@pytest.mark.django_db
def test_an_identity_document_does_not_prove_the_subjects_email_on_an_agents_request(dpo):
    """What we answer goes to the agent: the subject's address is one more identifier the agent typed, and a
    look-alike ID would otherwise have the source systems searched for whoever owns it."""
    request = agents_request(Status.IDENTITY_CHECK, subject_email="ana@example.org")
    email = request.identities.get(kind=IdentityKind.EMAIL)

    with pytest.raises(RequestError, match="does not prove that the email address is the subject's"):
        handling.identity_verify(
            request=request, actor=Actor.staff(dpo), identity_ids=[email.id], method="document",
            expected_status=Status.IDENTITY_CHECK,
        )
    assert not request.identities.filter(verified_at__isnull=False).exists()
    # One verified so before the rule is not searched; the account records prove it.
    request.identities.filter(pk=email.pk).update(verified_at=timezone.now(), verification_method="document")
    assert not request.identities.searchable().exists()
    assert request.identities.get(pk=email.pk).not_searched_for_its_method
    request.identities.filter(pk=email.pk).update(verification_method="account_records")
    assert list(request.identities.searchable()) == [email]


@pytest.mark.django_db
def test_the_agent_cannot_confirm_their_own_authority(dpo):
    """The agent acts on the public pages with the subject's kind of actor; only the subject's own answer, or staff
    who may work the request, confirm."""
    request = agents_request()
    with pytest.raises(roles.NotAllowed):
        agents.agent_authority_confirm(request=request, actor=Actor.agent(), method=AgentAuthorityMethod.SUBJECT_CONFIRMED)
    assert PrivacyRequest.objects.get(pk=request.pk).agent_authority_confirmed_at is None


@pytest.mark.django_db
def test_a_subjects_own_request_needs_no_agents_authority(dpo):
    request = request_in_status(Status.IN_PROGRESS)
    released_package(request)
    with pytest.raises(RequestError, match="No agent filed this request"):
        agents.agent_authority_confirm(request=request, actor=Actor.staff(dpo), method=AgentAuthorityMethod.SIGNED_PERMISSION)
    handling.request_complete(request=request, actor=Actor.staff(dpo), letter="Here it is.", expected_status=Status.IN_PROGRESS)
    assert PrivacyRequest.objects.get(pk=request.pk).status == Status.COMPLETED


@pytest.mark.django_db
def test_confirming_the_authority_records_who_when_and_how_once(dpo):
    request = agents_request(Status.NEW)
    before = timezone.now()
    agents.agent_authority_confirm(request=request, actor=Actor.staff(dpo), method=AgentAuthorityMethod.SUBJECT_CONFIRMED)

    request.refresh_from_db()
    assert request.agent_authority_confirmed_at >= before
    event = AuditEvent.objects.get(request=request, action="agent_authority_confirmed")
    assert (event.actor_id, event.actor_label, event.data) == (dpo.pk, dpo.username, {"method": "subject_confirmed"})
    with pytest.raises(RequestError, match="confirmed already"):
        agents.agent_authority_confirm(request=request, actor=Actor.staff(dpo), method=AgentAuthorityMethod.SUBJECT_CONFIRMED)
    assert AuditEvent.objects.filter(request=request, action="agent_authority_confirmed").count() == 1


@pytest.mark.django_db
def test_the_request_page_shows_the_agent_and_confirms_their_authority(client, dpo):
    request = agents_request()
    login_staff(client, dpo)
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert "Marc Peeters" in page and "marc@example.org" in page and "Authorised agent" in page
    assert "not confirmed: nothing is disclosed, erased, rectified or restricted until it is" in page
    url = reverse("staff:request_action", args=[request.reference, "confirm_agent_authority"])

    refused = client.post(url, {})
    assert refused.status_code == 400
    assert "Choose how you confirmed the agent&#x27;s authority." in refused.content.decode()

    response = client.post(url, {"method": AgentAuthorityMethod.PARENTAL_RESPONSIBILITY}, follow=True)
    assert "Recorded: the agent&#x27;s authority to act for the subject is confirmed." in response.content.decode()
    assert PrivacyRequest.objects.get(pk=request.pk).agent_authority_confirmed_at is not None
    timeline = response.content.decode()
    assert "The agent&#x27;s authority to act for the subject confirmed" in timeline
    assert "Proof of parental responsibility or guardianship, received" in timeline


@pytest.mark.django_db
def test_no_letter_closes_an_agents_request_before_their_authority_is_confirmed_but_the_rejection_for_its_lack(dpo):
    """A refusal says what we hold and why we keep it, a forwarding which customer of ours processes the data: either
    would tell a stranger claiming to act for the subject something of their data."""
    request = agents_request(Status.IN_PROGRESS, RequestType.ERASURE, RequestType.ACCESS)
    erasure_kept_whole(request)
    unconfirmed = "any letter that closes it would tell them something of the subject's data"
    refused_whole = [
        handling.RightRefusal(RequestType.ERASURE, RejectionGround.LEGAL_OBLIGATION, "We must keep the call records."),
        handling.RightRefusal(RequestType.ACCESS, RejectionGround.OTHER, "We hold nothing else of yours."),
    ]
    with pytest.raises(RequestError, match=unconfirmed):
        handling.request_complete(
            request=request, actor=Actor.staff(dpo), letter="", expected_status=Status.IN_PROGRESS, refused=refused_whole
        )
    with pytest.raises(RequestError, match=unconfirmed):
        handling.request_forward(
            request=request, actor=Actor.staff(dpo), controller="MobileCo", contact="dpo@mobileco.example",
            expected_status=Status.IN_PROGRESS,
        )
    with pytest.raises(RequestError, match=unconfirmed):
        handling.request_reject(
            request=request, actor=Actor.staff(dpo), ground=RejectionGround.MANIFESTLY_UNFOUNDED,
            explanation="The same request every day.", expected_status=Status.IN_PROGRESS,
        )
    assert PrivacyRequest.objects.get(pk=request.pk).status == Status.IN_PROGRESS and not request.messages.exists()

    agents.agent_authority_confirm(request=request, actor=Actor.staff(dpo), method=AgentAuthorityMethod.SIGNED_PERMISSION)
    handling.request_complete(
        request=PrivacyRequest.objects.get(pk=request.pk), actor=Actor.staff(dpo), letter="", expected_status=Status.IN_PROGRESS,
        refused=refused_whole,
    )
    assert PrivacyRequest.objects.get(pk=request.pk).status == Status.COMPLETED


@pytest.mark.django_db
def test_the_agents_status_page_says_whether_their_authority_is_confirmed(client, dpo):
    request = agents_request(Status.IN_PROGRESS)
    page = client.get(status_url(request)).content.decode()
    assert "You made this request on behalf of <bdi>Ana Peeters</bdi>." in page
    assert "we confirm that you may act for them" in page and "Until then we send you none of their data." in page

    agents.agent_authority_confirm(request=request, actor=Actor.staff(dpo), method=AgentAuthorityMethod.SIGNED_PERMISSION)
    page = client.get(status_url(request)).content.decode()
    assert "We have confirmed that you may act for them." in page and "Until then" not in page


# Rejecting for lack of authority


@pytest.mark.django_db
def test_an_agents_request_is_rejected_for_lack_of_authority_only_once_it_was_asked_for(dpo):
    request = agents_request(Status.NEW)
    reject = dict(
        request=request, actor=Actor.staff(dpo), ground=RejectionGround.AGENT_AUTHORITY_NOT_SHOWN,
        explanation="You did not send the signed permission we asked for.", expected_status=Status.NEW,
    )
    with pytest.raises(RequestError, match="The agent was never asked on this request for proof"):
        handling.request_reject(**reject)

    handling.request_information(
        request=request, actor=Actor.staff(dpo), body="Please send the subject's signed permission.", expected_status=Status.NEW,
        asks_agent_authority=True,
    )
    handling.subject_reply(request=request, body="I do not have it.")
    request.refresh_from_db()
    handling.request_reject(**{**reject, "request": request, "expected_status": request.status})

    request.refresh_from_db()
    assert (request.status, request.rejection_ground) == (Status.REJECTED, RejectionGround.AGENT_AUTHORITY_NOT_SHOWN)
    letter = last_letter(request).body
    assert letter.startswith("This letter concerns the request you made on behalf of Ana Peeters.")
    assert "The agent did not show their authority to act for the subject" in letter
    assert "may make the request themselves at any time, or you may make it again for them with proof of your authority to act for them: their signed permission, a power of attorney" in letter


@pytest.mark.django_db
def test_a_question_that_did_not_ask_for_the_agents_authority_does_not_let_staff_reject_for_its_lack(dpo):
    """A clarification ("which account?") asked the agent nothing about their authority: their silence on it shows
    nothing, as a question that asked something else does not let an identity be found unverified."""
    request = agents_request(Status.NEW)
    handling.request_information(
        request=request, actor=Actor.staff(dpo), body="Which of the subject's accounts do you mean?", expected_status=Status.NEW,
    )
    handling.subject_reply(request=request, body="The mobile one.")
    request.refresh_from_db()
    with pytest.raises(RequestError, match="ticking “It asks the agent for proof of their authority”"):
        handling.request_reject(
            request=request, actor=Actor.staff(dpo), ground=RejectionGround.AGENT_AUTHORITY_NOT_SHOWN,
            explanation="You did not send the signed permission.", expected_status=request.status,
        )
    assert PrivacyRequest.objects.get(pk=request.pk).status == Status.NEW  # back where it was: nothing rejected


@pytest.mark.django_db
def test_staff_say_on_the_request_page_that_a_question_asks_the_agent_for_proof_of_their_authority(client, dpo):
    request = agents_request(Status.IN_PROGRESS)
    login_staff(client, dpo)
    page = client.get(reverse("staff:request", args=[request.reference]))
    assert "asks_agent_authority" in page.context["forms"]["information"].fields
    url = reverse("staff:request_action", args=[request.reference, "request_information"])

    response = client.post(
        url, {"body": "Please send the subject's signed permission.", "asks_agent_authority": "on", "expected_status": Status.IN_PROGRESS},
        follow=True,
    )

    assert "Information requested." in response.content.decode()
    message = request.messages.get()
    assert message.asks_agent_authority
    event = request.events.get(action="information_requested")
    assert event.data == {"message": str(message.public_id), "asks": agents.ASKS_AGENT_AUTHORITY}
    page = response.content.decode()
    assert "asks the agent for proof of their authority" in page  # on the message
    assert "asks for: proof of the agent&#x27;s authority" in page  # in the timeline
    request.refresh_from_db()
    assert agents.rejection_refusal(request, RejectionGround.AGENT_AUTHORITY_NOT_SHOWN) is None


@pytest.mark.django_db
def test_only_an_agents_unconfirmed_request_offers_or_takes_a_question_asking_for_their_authority(client, dpo):
    login_staff(client, dpo)
    subjects_own = request_in_status(Status.IN_PROGRESS)
    confirmed = agents_request(Status.IN_PROGRESS)
    agents.agent_authority_confirm(request=confirmed, actor=Actor.staff(dpo), method=AgentAuthorityMethod.SIGNED_PERMISSION)
    for request in (subjects_own, confirmed):
        form = client.get(reverse("staff:request", args=[request.reference])).context["forms"]["information"]
        assert "asks_agent_authority" not in form.fields

    with pytest.raises(RequestError, match="No agent filed this request: there is no authority to ask for."):
        handling.request_information(
            request=subjects_own, actor=Actor.staff(dpo), body="Your ID, please.", expected_status=Status.IN_PROGRESS,
            asks_agent_authority=True,
        )
    with pytest.raises(RequestError, match="The agent's authority was confirmed already: there is no proof to ask for."):
        handling.request_information(
            request=confirmed, actor=Actor.staff(dpo), body="The permission, please.", expected_status=Status.IN_PROGRESS,
            asks_agent_authority=True,
        )
    assert not subjects_own.messages.exists() and not confirmed.messages.exists()


@pytest.mark.django_db
def test_questions_sent_to_agents_before_staff_could_say_what_they_asked_still_count_on_open_requests(dpo):
    """The migration that added Message.asks_agent_authority: before it, any question let staff reject an agent's
    request for lack of authority, and the request page told them to ask for the proof that way."""
    from django.apps import apps

    migration = importlib.import_module("requests_app.migrations.0084_message_asks_agent_authority")
    asked = {}
    for name, request in {
        "agent_open": agents_request(Status.NEW),
        "agent_closed": agents_request(Status.NEW),
        "subjects_own": request_in_status(Status.NEW),
    }.items():
        handling.request_information(request=request, actor=Actor.staff(dpo), body="Your proof, please.", expected_status=Status.NEW)
        asked[name] = request
    PrivacyRequest.objects.filter(pk=asked["agent_closed"].pk).update(status=Status.WITHDRAWN)
    Message.objects.update(asks_agent_authority=False)  # as they were before the migration

    migration.count_earlier_questions_to_agents(apps, None)

    flagged = {name for name, request in asked.items() if request.messages.get().asks_agent_authority}
    assert flagged == {"agent_open"}


@pytest.mark.django_db
def test_the_lack_of_an_agents_authority_refuses_no_request_the_subject_filed(client, dpo):
    request = request_in_status(Status.NEW)
    with pytest.raises(RequestError, match="No agent filed this request: choose another ground."):
        handling.request_reject(
            request=request, actor=Actor.staff(dpo), ground=RejectionGround.AGENT_AUTHORITY_NOT_SHOWN,
            explanation="No permission.", expected_status=Status.NEW,
        )
    login_staff(client, dpo)
    reject_form = client.get(reverse("staff:request", args=[request.reference])).context["forms"]["reject"]
    assert RejectionGround.AGENT_AUTHORITY_NOT_SHOWN not in dict(reject_form.fields["ground"].choices)
    agents_form = client.get(reverse("staff:request", args=[agents_request(Status.NEW).reference])).context["forms"]["reject"]
    assert RejectionGround.AGENT_AUTHORITY_NOT_SHOWN in dict(agents_form.fields["ground"].choices)


# The purge


@pytest.mark.django_db
def test_the_agents_details_are_purged_with_the_subjects(dpo, settings):
    request = agents_request(Status.NEW)
    # Confirmed: a rejection on another ground waits for it (agents.closing_refusal).
    PrivacyRequest.objects.filter(pk=request.pk).update(agent_authority_confirmed_at=timezone.now())
    request.refresh_from_db()
    handling.request_reject(
        request=request, actor=Actor.staff(dpo), ground=RejectionGround.MANIFESTLY_UNFOUNDED,
        explanation="The fifth identical request this week.", expected_status=Status.NEW,
    )
    intake.purge_closed_requests(now=timezone.now() + settings.CLOSED_REQUEST_RETENTION + datetime.timedelta(days=1))

    request.refresh_from_db()
    assert request.personal_data_purged_at is not None
    assert (request.subject_name, request.agent_name, request.agent_email) == ("", "", "")
    assert request.agent_capacity == AgentCapacity.AUTHORISED_AGENT  # no one's data: the certificate may say an agent filed
    assert request.correspondence_email == ""


@pytest.mark.django_db
def test_staff_intake_records_an_agent_from_the_same_details_as_the_public_form():
    """A letter or call from someone acting for the subject: staff record the agent as the public form does, the
    subject's address optional (tests/test_admin.py records one end to end)."""
    from requests_app.forms import StaffIntakeForm

    data = {**VALID, **AS_AGENT, "subject_email": "", "channel": "post", "received_at": "2026-11-30T10:00", "language": "en"}
    form = StaffIntakeForm(data)
    assert form.is_valid(), form.errors
    details = form.submit_kwargs()
    assert (details["agent_capacity"], details["agent_name"], details["agent_email"]) == (
        AS_AGENT["agent_capacity"], AS_AGENT["agent_name"], AS_AGENT["agent_email"]
    )


# Withdrawing a confirmed authority


def confirmed_agents_request(dpo, status=Status.IN_PROGRESS, **overrides):
    request = agents_request(status, **overrides)
    agents.agent_authority_confirm(request=request, actor=Actor.staff(dpo), method=AgentAuthorityMethod.SIGNED_PERMISSION)
    request.refresh_from_db()
    return request


@pytest.mark.django_db
def test_staff_withdraw_a_confirmed_authority_with_a_reason_and_the_gates_close_again(
    client, dpo, django_capture_on_commit_callbacks
):
    handler = staff_in_role("Handler", username="handler-withdraw", email="handler@example.org")
    request = confirmed_agents_request(dpo)
    PrivacyRequest.objects.filter(pk=request.pk).update(assignee=handler, subject_confirmation_nonce="an-unanswered-link")
    assert agents.authority_refusal(request) is None
    login_staff(client, dpo)
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert "Withdraw the agent's authority" in page and "What was already sent or done cannot be called back" in page
    url = reverse("staff:request_action", args=[request.reference, "withdraw_agent_authority"])

    refused = client.post(url, {"reason": "  "})
    assert refused.status_code == 400
    assert "Say why you withdraw the agent&#x27;s authority." in refused.content.decode()
    assert PrivacyRequest.objects.get(pk=request.pk).agent_authority_confirmed_at is not None

    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"reason": "Ana Peeters phoned: she never allowed Marc Peeters."}, follow=True)

    assert "Recorded: the agent&#x27;s authority is withdrawn, and unconfirmed again." in response.content.decode()
    request.refresh_from_db()
    assert request.agent_authority_confirmed_at is None and request.agent_authority_unconfirmed
    assert agents.authority_refusal(request) and agents.closing_refusal(request)
    assert request.subject_confirmation_nonce == ""  # the link sent earlier would confirm it again: it stops working
    # Who and when in the trail; the reason, which names people, in a note (purged with the request), not in the chain.
    event = AuditEvent.objects.get(request=request, action="agent_authority_withdrawn")
    note = request.notes.get()
    assert (event.actor_id, event.data) == (dpo.pk, {"note": note.id})
    assert note.body == "Ana Peeters phoned: she never allowed Marc Peeters." and note.author == dpo
    assert "The agent&#x27;s authority to act for the subject withdrawn" in response.content.decode()
    (alert,) = mail.outbox
    assert alert.to == ["handler@example.org"]
    assert request.reference in alert.subject and "was withdrawn" in alert.body
    assert "Marc" not in alert.body and "Ana" not in alert.body  # no personal data in staff mail
    # Confirmed again later, on new proof.
    agents.agent_authority_confirm(request=request, actor=Actor.staff(dpo), method=AgentAuthorityMethod.POWER_OF_ATTORNEY)
    assert PrivacyRequest.objects.get(pk=request.pk).agent_authority_confirmed_at is not None


@pytest.mark.django_db
def test_the_assignee_who_withdraws_the_authority_is_not_emailed_about_it(dpo, django_capture_on_commit_callbacks):
    dpo.email = "dpo-agents@example.org"
    dpo.save()
    request = confirmed_agents_request(dpo)
    PrivacyRequest.objects.filter(pk=request.pk).update(assignee=dpo)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        agents.agent_authority_withdraw(request=request, actor=Actor.staff(dpo), reason="The permission was forged.")
    assert mail.outbox == [] and PrivacyRequest.objects.get(pk=request.pk).agent_authority_confirmed_at is None


@pytest.mark.django_db
def test_an_authority_is_withdrawn_only_on_an_open_agents_request_where_it_is_confirmed(dpo):
    withdraw = dict(actor=Actor.staff(dpo), reason="The subject never allowed them.")
    with pytest.raises(RequestError, match="No agent filed this request: there is no authority to withdraw."):
        agents.agent_authority_withdraw(request=request_in_status(Status.IN_PROGRESS), **withdraw)
    with pytest.raises(RequestError, match="The agent's authority is not confirmed: there is nothing to withdraw."):
        agents.agent_authority_withdraw(request=agents_request(), **withdraw)

    closed = confirmed_agents_request(dpo)
    handling.request_reject(
        request=closed, actor=Actor.staff(dpo), ground=RejectionGround.MANIFESTLY_UNFOUNDED,
        explanation="The fifth identical request this week.", expected_status=Status.IN_PROGRESS,
    )
    with pytest.raises(RequestError, match="This request is closed: the agent's authority can no longer be withdrawn."):
        agents.agent_authority_withdraw(request=closed, **withdraw)
    assert PrivacyRequest.objects.get(pk=closed.pk).agent_authority_confirmed_at is not None
    assert not AuditEvent.objects.filter(action="agent_authority_withdrawn").exists()

    handler = staff_in_role("Handler", username="not-assigned")
    with pytest.raises(roles.NotAllowed):
        agents.agent_authority_withdraw(request=confirmed_agents_request(dpo), actor=Actor.staff(handler), reason="No.")


@pytest.mark.django_db(transaction=True)
def test_a_release_waits_for_a_withdrawal_of_the_agents_authority_under_way_and_is_refused(dpo):
    """export_release locks the request, as agent_authority_withdraw does, and checks the authority under that lock:
    a withdrawal committing meanwhile is seen, and nothing is released."""
    import threading
    import time

    from django.db import connection, transaction

    from tests.exports.test_transmission import ready_package

    request = confirmed_agents_request(dpo)
    export = ready_package(request, kind="access")
    withdrawing, outcome = threading.Event(), {}

    def withdraw():
        try:
            with transaction.atomic():
                agents.agent_authority_withdraw(request=request, actor=Actor.staff(dpo), reason="The permission was forged.")
                withdrawing.set()
                time.sleep(0.5)  # the release starts meanwhile
        finally:
            connection.close()

    def release():
        try:
            exports.export_release(export=export, actor=Actor.staff(dpo))
            outcome["released"] = True
        except RequestError as error:
            outcome["refused"] = str(error)
        finally:
            connection.close()

    withdrawer = threading.Thread(target=withdraw)
    withdrawer.start()
    assert withdrawing.wait(5)
    releaser = threading.Thread(target=release)
    releaser.start()
    withdrawer.join(10)
    releaser.join(10)

    assert outcome == {"refused": str(agents.AUTHORITY_UNCONFIRMED)}
    export.refresh_from_db()
    assert export.released_at is None
