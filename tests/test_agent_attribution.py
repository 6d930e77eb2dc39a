"""What an agent does on the public pages is theirs, not the subject's: in the audit trail (without their name or
address), the request page's timeline, the message thread and the certificate; and the queue finds their requests
by their name."""

import re

import pytest
from django.urls import reverse

from requests_app.models import AuditEvent, PrivacyRequest, Status
from requests_app.services import certificate, intake
from tests.conftest import login_staff
from tests.factories import request_in_status, staff_in_role
from tests.test_agent_requests import AS_AGENT, agents_request
from tests.test_public_form import post_form
from tests.test_status_page import send_document


def timeline_rows(page: str) -> list[str]:
    timeline = page[page.index('class="list timeline"'):]
    return re.findall(r"<tr>(.*?)</tr>", timeline, flags=re.S)


@pytest.mark.django_db
def test_the_trail_and_the_thread_credit_the_agent_with_what_they_did(client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        post_form(client, **{**AS_AGENT, "language": "en"})
    request = PrivacyRequest.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        intake.request_verify_email(token=intake.verification_token(request))
    request.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        send_document(client, request, body="Here is the signed permission.")

    by_the_public_pages = AuditEvent.objects.filter(request=request, actor_kind="subject")
    assert {event.action for event in by_the_public_pages} >= {"submitted", "verify_email", "subject_replied", "attachment_added"}
    # A role, never a name or an address: the trail is never purged.
    assert {event.actor_label for event in by_the_public_pages} == {"agent acting for the subject"}

    login_staff(client, staff_in_role("DPO", username="dpo-attribution"))
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    rows = timeline_rows(page)
    for title in ("Request received", "Email address confirmed", "The subject replied", "Attachment added"):
        [row] = [row for row in rows if title in row]
        assert "<td>Agent acting for the subject</td>" in row
    assert "Data subject" not in "".join(rows)
    assert "<h2>Messages with the agent</h2>" in page
    assert re.search(r'<li class="from_subject"><div class="meta">Agent · ', page)

    html = certificate.render_certificate_html(request)
    assert "<td>Request received <code>submitted</code></td><td>Agent acting for the subject</td>" in html


@pytest.mark.django_db
def test_the_subjects_own_request_still_credits_the_subject(client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        post_form(client, language="en")
    request = PrivacyRequest.objects.get()
    send_document(client, request, body="Here is my ID.")

    assert set(AuditEvent.objects.filter(request=request, actor_kind="subject").values_list("actor_label", flat=True)) == {"data subject"}
    login_staff(client, staff_in_role("DPO", username="dpo-attribution"))
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert "<td>Data subject</td>" in "".join(timeline_rows(page))
    assert "Agent acting for the subject" not in page
    assert "<h2>Messages with the subject</h2>" in page
    assert re.search(r'<li class="from_subject"><div class="meta">Subject · ', page)


@pytest.mark.django_db
def test_the_agents_status_page_timeline_still_reads_as_the_readers_own(client, django_capture_on_commit_callbacks):
    """The status page's reader is whoever filed: the subject's texts ("You sent us a message") fit the agent."""
    with django_capture_on_commit_callbacks(execute=True):
        post_form(client, **{**AS_AGENT, "language": "en"})
    request = PrivacyRequest.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        intake.request_verify_email(token=intake.verification_token(request))
    request.refresh_from_db()
    send_document(client, request, body="Here is the signed permission.")
    page = client.get(reverse("status", args=[request.reference, request.secret])).content.decode()
    assert "You sent us a message" in page
