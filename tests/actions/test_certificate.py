"""The completion certificate: the actions with their approvals, holds and notices, the request's
audit events with their hashes and the chain's verification, as HTML and as PDF."""

import datetime
import subprocess

import pytest
from django.utils import timezone, translation

from requests_app import audit
from requests_app.models import (
    AuditEvent,
    ErasureException,
    LegalHold,
    NoticeStatus,
    Recipient,
    RequestType,
    Status,
)
from requests_app.services import actions, certificate, handling, notices
from tests.actions.conftest import verified_request
from tests.actions.test_notices import carry_out_actions, correct_the_city
from tests.factories import request_in_status


@pytest.fixture
def completed_erasure(crm, cdr, erasure_request, dpo_actor, django_capture_on_commit_callbacks):
    """An erasure carried out in the CRM, the call records kept under a legal hold, a recipient
    told by email and one excused, then completed."""
    LegalHold.objects.create(
        source=cdr, ground=ErasureException.LEGAL_OBLIGATION, basis="Telecom law: call records kept 12 months",
        until=timezone.localdate() + datetime.timedelta(days=365),
    )
    Recipient.objects.create(source=crm, name="Billing partner", country="Belgium", notification_email="art19@partner.example")
    excused = Recipient.objects.create(source=crm, name="Old reseller", country="France")
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    carry_out_actions(erasure_request, dpo_actor, django_capture_on_commit_callbacks)
    notices.waive(
        notice=erasure_request.recipient_notices.get(recipient=excused), actor=dpo_actor,
        reason="disproportionate", note="Reseller contract ended in 2019; no contact left.",
    )
    handling.request_complete(request=erasure_request, actor=dpo_actor, letter="Done", expected_status=erasure_request.status)
    return erasure_request


def test_the_certificate_shows_actions_holds_notices_and_the_verified_trail(completed_erasure):
    html = certificate.render_certificate_html(completed_erasure)

    assert completed_erasure.reference in html
    assert "Erase my data" in html
    assert "Telecom law: call records kept 12 months" in html
    assert "Compliance with a legal obligation (Art. 17(3)(b))" in html
    assert "Approved by" in html and ">dpo," in html
    assert "Billing partner (Belgium)" in html and "Sent " in html
    assert "Reseller contract ended in 2019; no contact left." in html
    events = AuditEvent.objects.filter(request=completed_erasure)
    assert events.count() > 5
    for event in events:
        assert event.hash in html
    assert f"This request's {events.count()} events match their hashes and are linked" in html
    assert "The whole chain has not been checked yet" in html
    assert "ana@example.com" not in html  # the identifiers stay out of the certificate
    # The trail's actions and actors as the reader reads them, each with its code, which the hash covers.
    assert "<td>Request received <code>submitted</code></td><td>Data subject</td>" in html


def test_the_certificates_trail_reads_in_the_readers_language(completed_erasure):
    from django.utils import translation

    with translation.override("nl"):
        html = certificate.render_certificate_html(completed_erasure)
    assert "<code>submitted</code></td><td>Betrokkene</td>" in html
    assert "<td>submitted</td>" not in html


def test_the_certificate_gives_a_notice_error_in_its_readers_language(completed_erasure):
    """The worker stores our own error messages in English; the certificate, like the request page, says them
    in the language it is read in."""
    completed_erasure.recipient_notices.update(
        status=NoticeStatus.FAILED, error="No email address or webhook URL is recorded for this recipient."
    )
    with translation.override("fr"):
        html = certificate.render_certificate_html(completed_erasure)
    assert "Aucune adresse e-mail ni URL de webhook" in html and "No email address" not in html


def test_the_certificate_reports_a_broken_event_of_the_request(completed_erasure):
    AuditEvent.objects.filter(request=completed_erasure, action="source_action_approved").update(note="edited afterwards")
    html = certificate.render_certificate_html(completed_erasure)
    assert "The audit chain is broken at event #" in html and "its content does not match its hash" in html


def test_the_certificate_reports_the_latest_walk_of_the_whole_chain(completed_erasure):
    """A break elsewhere in the chain is not the request's own, but the latest nightly walk reports it."""
    audit.check_chain()
    html = certificate.render_certificate_html(completed_erasure)
    assert "The whole chain was last checked on" in html and "no break" in html

    other = request_in_status(Status.NEW)
    AuditEvent.objects.filter(request=other).update(note="edited afterwards")
    audit.check_chain()
    html = certificate.render_certificate_html(completed_erasure)
    assert "match their hashes and are linked" in html
    assert "and found broken at event #" in html


def test_the_certificate_names_rectified_fields_not_values(crm, dpo_actor, django_capture_on_commit_callbacks):
    request = verified_request(RequestType.RECTIFICATION)
    correct_the_city(request, crm, dpo_actor, django_capture_on_commit_callbacks, "Antwerpen")

    html = certificate.render_certificate_html(request)
    assert "subscribers.city" in html
    assert "Antwerpen" not in html
    assert "Not completed yet" in html


def test_the_certificate_as_pdf(completed_erasure, tmp_path):
    pdf = certificate.render_certificate_pdf(completed_erasure)

    assert pdf.startswith(b"%PDF")
    path = tmp_path / "certificate.pdf"
    path.write_bytes(pdf)
    text = subprocess.run(["pdftotext", "-raw", str(path), "-"], capture_output=True, text=True, check=True).stdout
    assert completed_erasure.reference in text
    last_event = AuditEvent.objects.filter(request=completed_erasure).order_by("sequence").last()
    assert last_event.hash[:16] in text.replace("\n", "")
