"""What we write to an agent who filed for the subject speaks to the agent: the verification and confirmation emails,
the status link's warning, the rights on the status page and in our emails, the package's email, and the letter's
preview that staff read before sending it to the agent."""

import html

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from requests_app.audit import Actor
from requests_app.models import AgentAuthorityMethod, ExportPackage, ExportStatus, PrivacyRequest, Status
from requests_app.services import agents, exports, intake
from tests.conftest import login_staff
from tests.factories import staff_in_role
from tests.staff.test_letter_preview import form_data, preview
from tests.test_agent_requests import AS_AGENT, agents_request
from tests.test_public_form import post_form
from tests.test_status_page import send_document

SUBJECTS_VERIFICATION = "Before we act on your request, we verify that it is yours"
AGENTS_VERIFICATION = (
    "Before we act on the request, we verify your authority to act for the person the data is about and, where the law "
    "requires it, that the request is theirs"
)
SUBJECTS_LINK_WARNING = "anyone who has it can follow your request, read our letters, download your data and withdraw the request."
AGENTS_LINK_WARNING = (
    "anyone who has it can follow the request, read our letters, download the data of the person you are acting for "
    "and withdraw the request."
)


def file_and_confirm(client, django_capture_on_commit_callbacks, **changes) -> PrivacyRequest:
    with django_capture_on_commit_callbacks(execute=True):
        post_form(client, language="en", rights=["access"], rectification_data="", rectification_value="", **changes)
    request = PrivacyRequest.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        intake.request_verify_email(token=intake.verification_token(request))
    request.refresh_from_db()
    return request


def text_and_html(email) -> str:
    return email.body + html.unescape(email.alternatives[0][0])


@pytest.mark.django_db
def test_the_agents_emails_and_status_page_speak_of_the_person_they_act_for(client, django_capture_on_commit_callbacks):
    request = file_and_confirm(client, django_capture_on_commit_callbacks, **AS_AGENT)

    verification, confirmation = mail.outbox
    for email in (verification, confirmation):
        assert AGENTS_VERIFICATION in text_and_html(email) and SUBJECTS_VERIFICATION not in text_and_html(email)
    confirmed = text_and_html(confirmation)
    assert AGENTS_LINK_WARNING in confirmed and SUBJECTS_LINK_WARNING not in confirmed
    assert "- Access a copy of their data" in confirmation.body and "<li>Access a copy of their data</li>" in confirmed
    assert "my data" not in confirmed

    page = client.get(reverse("status", args=[request.reference, request.secret])).content.decode()
    assert "<li>Access a copy of their data</li>" in page and "my data" not in page

    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        intake.request_resend_link(reference=request.reference, email="marc@example.org")
    [link] = mail.outbox
    assert AGENTS_LINK_WARNING in text_and_html(link) and SUBJECTS_LINK_WARNING not in text_and_html(link)


@pytest.mark.django_db
def test_the_subjects_own_emails_and_status_page_still_speak_to_the_subject(client, django_capture_on_commit_callbacks):
    request = file_and_confirm(client, django_capture_on_commit_callbacks)

    verification, confirmation = mail.outbox
    assert SUBJECTS_VERIFICATION in verification.body and AGENTS_VERIFICATION not in verification.body
    assert SUBJECTS_LINK_WARNING in confirmation.body and "- Access a copy of my data" in confirmation.body
    page = client.get(reverse("status", args=[request.reference, request.secret])).content.decode()
    assert "<li>Access a copy of my data</li>" in page


@pytest.mark.django_db
def test_the_package_email_to_an_agent_is_not_about_their_own_data(django_capture_on_commit_callbacks):
    dpo = staff_in_role("DPO", username="dpo-wording")
    request = agents_request(language="en")
    agents.agent_authority_confirm(request=request, actor=Actor.staff(dpo), method=AgentAuthorityMethod.SIGNED_PERMISSION)
    export = ExportPackage.objects.create(request=request, kind="access", status=ExportStatus.READY)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        exports.export_release(export=export, actor=Actor.staff(dpo))

    [ready] = mail.outbox
    assert ready.subject == f"The data for request {request.reference} is ready"
    assert f"The copy of the data of the person you are acting for, for request {request.reference}, is ready." in text_and_html(ready)
    assert "your data" not in text_and_html(ready).replace("Your data protection", "")


@pytest.mark.django_db
def test_an_answer_that_found_nothing_tells_the_agent_it_found_nothing_about_the_person(django_capture_on_commit_callbacks):
    dpo = staff_in_role("DPO", username="dpo-wording")
    request = agents_request(language="en")
    agents.agent_authority_confirm(request=request, actor=Actor.staff(dpo), method=AgentAuthorityMethod.SIGNED_PERMISSION)
    export = ExportPackage.objects.create(request=request, kind="access", status=ExportStatus.READY, manifest={"rows": 0})
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        exports.export_release(export=export, actor=Actor.staff(dpo))

    [ready] = mail.outbox
    body = text_and_html(ready)
    assert "we found no personal data about the person you are acting for in the systems we searched" in body
    assert "about you" not in body


@pytest.mark.django_db
def test_staff_are_told_the_agent_replied(client, django_capture_on_commit_callbacks):
    request = agents_request(Status.IN_PROGRESS, language="en")
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        send_document(client, request, body="Here is the signed permission.")
    [told] = mail.outbox
    assert told.subject == f"The agent replied on {request.reference}"
    assert f"The agent who filed request {request.reference} for the subject sent a reply." in text_and_html(told)


@pytest.mark.django_db
def test_the_letter_preview_says_the_agent_is_emailed(client):
    request = agents_request(Status.IN_PROGRESS, language="en")
    # Confirmed: no letter closes an agent's request before, but the rejection for its lack (agents.closing_refusal).
    PrivacyRequest.objects.filter(pk=request.pk).update(agent_authority_confirmed_at=timezone.now())
    login_staff(client, staff_in_role("DPO", username="dpo-wording"))
    page = html.unescape(preview(client, request, "reject", form_data(request, "reject")).content.decode())
    assert "By email to <bdi>marc@example.org</bdi>, the agent acting for the subject." in page
    assert "Sending this letter closes the request and emails the agent at once." in page
    assert "emails the subject" not in page
