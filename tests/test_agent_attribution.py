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


# The queue's search


def search(client, text) -> list[str]:
    response = client.post(reverse("staff:queue_search"), {"q": text, "query": ""}, follow=True)
    return [r.reference for r in response.context["page"].object_list]


@pytest.mark.django_db
def test_the_queue_search_finds_a_request_by_the_agents_name_as_by_the_subjects(client):
    filed_by_marc = agents_request(subject_name="Ana Janssens", agent_name="Marc-Éric Dubois")
    anas_own = request_in_status(Status.IN_PROGRESS, subject_name="Ana Janssens", subject_email="ana@example.com")
    login_staff(client, staff_in_role("DPO", username="dpo-search"))

    # Case, accents, punctuation and spaces set aside, as for the subject's name.
    assert search(client, "marc eric") == [filed_by_marc.reference]
    assert search(client, "DUBOIS") == [filed_by_marc.reference]
    assert set(search(client, "janssens")) == {filed_by_marc.reference, anas_own.reference}
    # No match across the two names, nor one too short to narrow the queue.
    assert search(client, "janssens marc") == []
    assert search(client, "ma") == []


@pytest.mark.django_db
def test_the_agents_name_is_searched_as_it_changes_and_not_once_purged():
    request = agents_request(subject_name="Ana Janssens", agent_name="Marc Peeters")
    request.agent_name = "Marcel Peeters"
    request.save(update_fields=["agent_name"])
    request.refresh_from_db()
    assert request.name_for_search == "anajanssens\nmarcelpeeters"

    intake.purge_personal_data(request)
    assert PrivacyRequest.objects.get(pk=request.pk).name_for_search == ""


@pytest.mark.django_db
def test_migration_0082_adds_the_names_of_agents_who_filed_before_it():
    from importlib import import_module

    from django.apps import apps

    request = agents_request(subject_name="Ana Janssens", agent_name="Marc Peeters")
    anas_own = request_in_status(Status.IN_PROGRESS, subject_name="Bram De Smet")
    PrivacyRequest.objects.filter(pk=request.pk).update(name_for_search="anajanssens")  # as 0080 left it

    import_module("requests_app.migrations.0082_agent_name_for_search").add_agents_names_for_search(apps, None)

    assert PrivacyRequest.objects.get(pk=request.pk).name_for_search == "anajanssens\nmarcpeeters"
    assert PrivacyRequest.objects.get(pk=anas_own.pk).name_for_search == "bramdesmet"
