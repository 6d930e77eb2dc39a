"""The completion certificate: the actions with their approvals, holds and notices, the request's
audit events with their hashes and the chain's verification, as HTML and as PDF."""

import datetime
import subprocess

import pytest
import time_machine
from django.utils import timezone, translation

from requests_app import audit
from requests_app.audit import Actor
from requests_app.models import (
    ActionKind,
    ActionStatus,
    AuditEvent,
    ErasureException,
    ExportKind,
    ExportPackage,
    ExportStatus,
    IdentityKind,
    LegalHold,
    NoticeStatus,
    Recipient,
    RejectionGround,
    RequestType,
    SourceAction,
    Status,
    SubjectIdentity,
    VerificationMethod,
)
from requests_app.services import actions, certificate, deadlines, exports, handling, intake, notices
from requests_app.wording import date_in_words
from tests.actions.conftest import ANA_PHONE, verified_request
from tests.actions.test_notices import carry_out_actions, correct_the_city
from tests.factories import identity_proof_asked, released_package, request_in_status


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
    erasure_request.refresh_from_db()
    return erasure_request


def test_the_certificate_shows_actions_holds_notices_and_the_verified_trail(completed_erasure):
    html = certificate.render_certificate_html(completed_erasure)

    assert completed_erasure.reference in html
    assert "Erase their data" in html
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


def test_the_certificate_says_a_source_was_not_searched_rather_than_done_with_nothing_found(
    crm, cdr, dpo_actor, django_capture_on_commit_callbacks
):
    """No phone number was verified: the erasure and the restriction of the call records ran and searched
    nobody. Their zero rows and list entries are not shown as if the source had held nothing; their status and
    their events in the trail say they could not search it, as the letter does."""
    from requests_app.models import SourceSystem

    SourceSystem.objects.filter(pk=cdr.pk).update(restriction_list="restriction_list.identity")
    request = verified_request(RequestType.ERASURE, RequestType.RESTRICTION)
    request.identities.filter(kind=IdentityKind.PHONE).update(verified_at=None)
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out_actions(request, dpo_actor, django_capture_on_commit_callbacks, sources=[cdr])
    carry_out_actions(request, dpo_actor, django_capture_on_commit_callbacks, sources=[crm])
    handling.request_complete(request=request, actor=dpo_actor, letter="Done", expected_status=request.status)

    html = certificate.render_certificate_html(request)
    call_records = [part for part in html.split('<section class="action">') if ": Call records</h3>" in part]
    assert len(call_records) == 2  # its erasure and its restriction
    for section in call_records:
        assert "<dt>Status</dt><dd>Done: not searched</dd>" in section
        assert "<strong>Not searched: no verified phone number</strong>" in section
        assert "<th>Rows</th>" not in section and "Restriction list entries added" not in section
    crm_restriction = next(part for part in html.split('<section class="action">') if "Restriction: CRM</h3>" in part)
    assert "<dt>Status</dt><dd>Done</dd>" in crm_restriction and "Restriction list entries added" in crm_restriction
    trail = html[html.index("<h2>Audit trail</h2>"):]
    not_searched = "Source action done, but the source could not be searched: no verified phone number <code>source_action_done</code>"
    assert trail.count(not_searched) == 2
    assert trail.count("Source action done <code>source_action_done</code>") == 2  # the CRM's, which searched by email


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
    assert completed_erasure.reference in text and "Request handling certificate" in text
    assert "Regime GDPR (European Union and EEA)" in text and "Answered on time Yes" in text
    last_event = AuditEvent.objects.filter(request=completed_erasure).order_by("sequence").last()
    assert last_event.hash[:16] in text.replace("\n", "")


def test_the_certificate_names_the_controller_and_the_regime(completed_erasure, settings):
    settings.CONTROLLER_NAME = "Example Telecom SA"
    settings.CONTROLLER_ADDRESS = "Rue de la Loi 1, 1000 Brussels"
    html = certificate.render_certificate_html(completed_erasure)
    assert "<dt>Controller</dt><dd>Example Telecom SA, Rue de la Loi 1, 1000 Brussels</dd>" in html
    assert "<dt>Regime</dt><dd>GDPR (European Union and EEA)</dd>" in html


def test_an_erasure_certificate_names_the_recipients_of_the_data_found_and_the_notices(completed_erasure):
    """The CRM's data was anonymised (its recipients told), the call records kept: both held the subject's data."""
    html = certificate.render_certificate_html(completed_erasure)
    closed = timezone.localtime(completed_erasure.closed_at).strftime("%Y-%m-%d %H:%M")
    assert f"<dt>Completed</dt><dd>{closed} " in html
    assert "<tr><td>CRM</td><td>Billing partner (Belgium); Old reseller (France)</td></tr>" in html
    assert "<tr><td>Call records</td><td>None outside our company.</td></tr>" in html
    assert "Recipients told (Article 19 GDPR)" in html
    assert "not disclosed to any recipient" not in html


def test_a_request_that_changed_nothing_makes_no_art_19_statement(crm, dpo_actor, django_capture_on_commit_callbacks):
    """Nothing matched the verified email: no recipient was owed a notice, and none is said to have had the data."""
    Recipient.objects.create(source=crm, name="Group companies", country="Belgium", notification_email="group@example.com")
    request = verified_request(RequestType.ERASURE)
    request.identities.update(value="nobody@example.com")
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out_actions(request, dpo_actor, django_capture_on_commit_callbacks)

    html = certificate.render_certificate_html(request)
    assert "The subject's data was found in none of the source systems searched." in html
    assert "Recipients told" not in html and "Group companies" not in html
    assert "not disclosed to any recipient" not in html


def test_a_portability_certificate_names_the_recipients_release_and_downloads(
    crm, cdr, dpo_actor, settings, tmp_path, django_capture_on_commit_callbacks
):
    """The QA's case: the package found data in sources whose recipients the inventory lists; a portability
    request changes nothing, so it makes no Art. 19 statement, and it does not say the data went to no one.
    The call records, kept under a legal obligation, are not portable (Art. 20(1)(a)): the package holds none."""
    settings.EXPORT_WORK_DIR = str(tmp_path / "export-work")
    Recipient.objects.create(source=cdr, name="Interconnected network operators", country="EU/EEA and worldwide", third_country=True)
    Recipient.objects.create(source=crm, name="Group companies", country="Belgium")
    request = verified_request(RequestType.PORTABILITY)
    export = exports.export_start(request=request, actor=dpo_actor, kind=ExportKind.PORTABILITY)
    exports.compile_export(export_id=export.id)
    with django_capture_on_commit_callbacks(execute=True):
        exports.export_release(export=ExportPackage.objects.get(pk=export.pk), actor=dpo_actor)
    exports.count_download({"pk": export.pk}, request=request, actor=Actor.subject())[1].close()
    handling.request_complete(request=request, actor=dpo_actor, letter="Here it is.", expected_status=request.status)
    export.refresh_from_db()

    html = certificate.render_certificate_html(request)
    assert "<tr><td>CRM</td><td>Group companies (Belgium)</td></tr>" in html
    assert "Call records" not in html and "Interconnected network operators" not in html
    assert "Recipients told" not in html
    assert "not disclosed to any recipient" not in html
    released = timezone.localtime(export.released_at).strftime("%Y-%m-%d %H:%M")
    assert "<dd>Portability (Art. 20): Released to the subject</dd>" in html
    assert f"<dt>Released</dt><dd>{released} " in html and "(dpo)" in html
    downloaded = timezone.localtime(AuditEvent.objects.get(request=request, action="export_downloaded").created_at)
    assert "<dt>Downloads by the subject</dt><dd>1 of 5</dd>" in html
    assert f"<dt>Downloaded</dt><dd>{downloaded:%Y-%m-%d %H:%M} " in html


def test_a_rejected_certificate_says_when_and_why_and_claims_nothing_of_recipients(crm, dpo_actor):
    Recipient.objects.create(source=crm, name="Group companies", country="Belgium")
    request = verified_request(RequestType.ACCESS)
    identity_proof_asked(request, dpo_actor.user)
    handling.request_reject(
        request=request, actor=dpo_actor, ground=RejectionGround.IDENTITY_NOT_VERIFIED,
        explanation="The document was illegible.", expected_status=request.status,
    )
    request.refresh_from_db()

    html = certificate.render_certificate_html(request)
    closed = timezone.localtime(request.closed_at).strftime("%Y-%m-%d %H:%M")
    assert f"<dt>Rejected</dt><dd>{closed} " in html
    assert "Not completed yet" not in html
    assert "<h1>Request handling certificate</h1>" in html and "Completion certificate" not in html
    assert "<dt>Outcome</dt><dd>Rejected: every right asked was refused, on the ground below.</dd>" in html
    assert "<dt>Ground for the rejection</dt><dd>Identity could not be verified</dd>" in html
    assert "No action was carried out in the source systems and no data package was compiled for this request." in html
    assert "<p>No data package was compiled.</p>" in html
    assert "Recipients told" not in html and "not disclosed to any recipient" not in html
    assert "<dt>Answered on time</dt><dd><span class=\"ok\">Yes</span></dd>" in html

    with translation.override("fr"):
        assert "<dt>Refusée</dt>" in certificate.render_certificate_html(request)


def test_the_certificate_shows_how_each_identifier_was_verified(dpo_actor):
    request = verified_request(RequestType.ACCESS)
    phone = request.identities.get(kind=IdentityKind.PHONE)
    phone.verified_at = None
    phone.save()
    SubjectIdentity.objects.create(request=request, kind=IdentityKind.CUSTOMER_REFERENCE, value="CUST-991")
    handling.identity_verify(
        request=request, actor=dpo_actor, identity_ids=[phone.id], method=VerificationMethod.CALLBACK, expected_status=request.status
    )
    request.identities.filter(kind=IdentityKind.EMAIL).update(verification_method=VerificationMethod.EMAIL_LINK)
    phone.refresh_from_db()

    html = certificate.render_certificate_html(request)
    verified = timezone.localtime(phone.verified_at).strftime("%Y-%m-%d %H:%M")
    assert f"<td>Phone number</td><td>{verified} " in html
    assert "<td>Call-back to the phone number</td><td>dpo</td>" in html
    assert "<td>Link sent to the email address</td><td>-</td>" in html
    assert "<tr><td>Customer account reference</td><td>Not verified</td><td>-</td><td>-</td></tr>" in html
    assert ANA_PHONE not in html and "CUST-991" not in html and "ana@example.com" not in html  # kinds, never values


def test_the_certificate_shows_the_pause_the_extension_and_an_answer_in_time(dpo, dpo_actor):
    request = verified_request(RequestType.ACCESS)
    start = timezone.now()
    deadlines.clock_pause(request=request, actor=dpo_actor, reason="Waiting for a copy of the ID card")
    with time_machine.travel(start + datetime.timedelta(days=5)):
        deadlines.clock_resume(request=request, actor=dpo_actor)
        deadlines.request_extend(request=request, actor=dpo_actor, reason="Twelve source systems to search")
    request.refresh_from_db()
    assert request.paused_days == 5 and request.due_on > request.original_due_on
    released_package(request)
    answered = timezone.make_aware(datetime.datetime.combine(request.original_due_on + datetime.timedelta(days=3), datetime.time(12)))
    with time_machine.travel(answered):
        handling.request_complete(request=request, actor=dpo_actor, letter="Done", expected_status=request.status)
    request.refresh_from_db()

    html = certificate.render_certificate_html(request)
    assert f"<dt>Original due date</dt><dd>{request.original_due_on:%Y-%m-%d}</dd>" in html
    assert f"<dt>Final due date</dt><dd>{request.due_on:%Y-%m-%d}</dd>" in html
    extended = timezone.localtime(request.extended_at).strftime("%Y-%m-%d %H:%M")
    assert f"<dt>Extended</dt><dd>{extended} " in html and "(dpo): Twelve source systems to search</dd>" in html
    assert "<dt>Clock paused</dt><dd>5 days</dd>" in html
    assert "<td>Waiting for a copy of the ID card</td>" in html
    assert "<dt>Answered on time</dt><dd><span class=\"ok\">Yes</span></dd>" in html


def test_the_certificate_says_an_answer_after_the_due_date_was_late(dpo_actor):
    request = verified_request(RequestType.ACCESS)
    released_package(request)
    late = timezone.make_aware(datetime.datetime.combine(request.due_on + datetime.timedelta(days=2), datetime.time(12)))
    with time_machine.travel(late):
        handling.request_complete(request=request, actor=dpo_actor, letter="Sorry for the delay", expected_status=request.status)
    request.refresh_from_db()

    html = certificate.render_certificate_html(request)
    assert f"<dt>Due date</dt><dd>{request.due_on:%Y-%m-%d}</dd>" in html
    assert "<dt>Extended</dt><dd>No</dd>" in html
    assert "<dt>Clock paused</dt><dd>0 days</dd>" in html
    assert "<dt>Answered on time</dt><dd><span class=\"broken\">No: closed after the due date</span></dd>" in html


def test_a_certificate_names_the_recipients_in_its_readers_language(completed_erasure):
    from requests_app.models import RecipientTranslation

    partner = Recipient.objects.get(name="Billing partner")
    RecipientTranslation.objects.create(recipient=partner, language="fr", name="Partenaire de facturation", country="Belgique")

    with translation.override("fr"):
        french = certificate.render_certificate_html(completed_erasure)
    english = certificate.render_certificate_html(completed_erasure)

    assert french.count("Partenaire de facturation (Belgique)") == 2  # holding the data, and told (Art. 19)
    assert "Billing partner" not in french
    assert "Old reseller (France)" in french  # left untranslated: its own name and country
    assert english.count("Billing partner (Belgium)") == 2 and "Partenaire de facturation" not in english


@pytest.mark.django_db
def test_the_certificate_gives_the_systems_pause_reason_in_its_readers_language_and_staffs_as_typed():
    """A pause the system opens stores its reason in English (lifecycle.NOTE_INFORMATION_REQUESTED); the certificate
    says it in the language it is read in. What staff wrote for a pause is theirs, and stays as they wrote it."""
    from tests.factories import staff_in_role

    dpo = Actor.staff(staff_in_role("DPO", username="dpo-pauses"))
    asked = request_in_status(Status.IN_PROGRESS)
    handling.request_information(request=asked, actor=dpo, body="Please send a copy of your ID.", expected_status=Status.IN_PROGRESS)
    paused = request_in_status(Status.IN_PROGRESS)
    handling.clock_pause(request=paused, actor=dpo, question="Merci d'envoyer votre facture de mars.")

    with translation.override("fr"):
        asked_html = certificate.render_certificate_html(asked)
        paused_html = certificate.render_certificate_html(paused)

    assert "<td>Informations demandées à la personne concernée</td>" in asked_html
    assert "Information requested from the subject" not in asked_html
    assert "<td>Merci d&#x27;envoyer votre facture de mars.</td>" in paused_html


# A package compiled has its ZIP's digest (exports._compile), kept when the package ends.
COMPILED = "0" * 64


def _ended_row(html: str) -> str:
    return html.split("<dt>Ended</dt><dd>")[1].split("</dd>")[0]


@pytest.mark.django_db
def test_a_package_the_withdrawal_ended_says_so_with_its_date_not_merely_not_released():
    """A package compiled and never released, and one released and still downloadable, when the subject withdrew:
    the certificate said "Not released", and the status said "Expired", of the first."""
    from requests_app.services import intake

    request = request_in_status(Status.IN_PROGRESS)
    ready = ExportPackage.objects.create(request=request, status=ExportStatus.READY, finished_at=timezone.now(), sha256=COMPILED)
    intake.request_withdraw(request=request, actor=Actor.subject())
    ready.refresh_from_db()
    request.refresh_from_db()

    html = certificate.render_certificate_html(request)
    assert ready.status == ExportStatus.EXPIRED
    assert "<dd>Not released</dd>" not in html
    assert "<dt>Released</dt><dd>Not released before it ended</dd>" in html
    assert "<dd>Access (Art. 15): Ended and deleted</dd>" in html and "Expired and deleted" not in html
    ended = AuditEvent.objects.get(request=request, action="export_deleted").created_at
    assert _ended_row(html) == (
        f"{timezone.localtime(ended):%Y-%m-%d %H:%M %Z}: The request was closed (Withdrawn): no data is delivered for it."
    )

    released = request_in_status(Status.IN_PROGRESS)
    released_package(released)
    intake.request_withdraw(request=released, actor=Actor.subject())
    html = certificate.render_certificate_html(released)
    assert "<dt>Released</dt><dd>Not released" not in html
    assert _ended_row(html).endswith(": The request was closed (Withdrawn): no data is delivered for it.")


@pytest.mark.django_db
def test_a_package_says_whether_its_download_period_ran_out_or_it_was_never_released_in_time():
    """Ended by the hourly clean-up: a released package at its expiry (the moment it stopped being available, not the
    clean-up's), and one left unreleased past the time a package awaits review."""
    request = request_in_status(Status.IN_PROGRESS)
    released = released_package(request)
    expired_at = timezone.now() - datetime.timedelta(hours=3)
    ExportPackage.objects.filter(pk=released.pk).update(expires_at=expired_at)
    ExportPackage.objects.create(
        request=request, kind=ExportKind.PORTABILITY, status=ExportStatus.READY, finished_at=timezone.now() - datetime.timedelta(days=31),
        sha256=COMPILED,
    )
    assert exports.delete_expired_exports() == 2

    html = certificate.render_certificate_html(request)
    access, portability = html.split("<dt>Ended</dt><dd>")[1:]
    assert access.startswith(f"{timezone.localtime(expired_at):%Y-%m-%d %H:%M %Z}: Its download period ran out.</dd>")
    assert portability.split("</dd>")[0].endswith(": It was not released within the time a compiled package awaits review.")
    assert "<dt>Released</dt><dd>Not released before it ended</dd>" in html
    # The first ran out of time to download it, the second was never released: it did not expire.
    assert "<dd>Access (Art. 15): Expired and deleted</dd>" in html
    assert "<dd>Portability (Art. 20): Ended and deleted</dd>" in html


@pytest.mark.django_db
def test_a_package_whose_right_the_completion_refused_says_so(dpo_actor):
    from requests_app.services.handling import RightRefusal

    request = verified_request(RequestType.ACCESS, RequestType.PORTABILITY)
    ExportPackage.objects.create(request=request, status=ExportStatus.READY, finished_at=timezone.now(), sha256=COMPILED)
    released_package(request, kind=ExportKind.PORTABILITY)  # the right granted
    handling.request_complete(
        request=request, actor=dpo_actor, letter="Refused.", expected_status=request.status,
        refused=[RightRefusal(RequestType.ACCESS, "excessive", "The fourth copy asked this month.")],
    )
    request.refresh_from_db()

    assert _ended_row(certificate.render_certificate_html(request)).endswith(": The completion refused the right it answers.")


def _action_statuses(html: str) -> list[str]:
    return [part.split("</dd>")[0] for part in html.split("<dt>Status</dt><dd>")[1:]]


def test_actions_a_rejection_left_undone_say_they_were_not_carried_out(crm, cdr, dpo_actor, run):
    """Planned, dry-run and approved, then the request was rejected: the certificate read "Approved", an erasure the
    auditor would take for one about to run, when it never will (actions.may_run_now)."""
    request = verified_request(RequestType.ERASURE)
    actions.plan_actions(request=request, actor=dpo_actor)
    run(request.source_actions.get(source=crm).id, "dry_run", "approve", actor=dpo_actor)
    run(request.source_actions.get(source=cdr).id, "dry_run", actor=dpo_actor)
    assert set(request.source_actions.values_list("status", flat=True)) == {"approved", "awaiting_approval"}
    identity_proof_asked(request, dpo_actor.user)
    handling.request_reject(
        request=request, actor=dpo_actor, ground=RejectionGround.IDENTITY_NOT_VERIFIED,
        explanation="The document was illegible.", expected_status=request.status,
    )
    request.refresh_from_db()

    html = certificate.render_certificate_html(request)
    day = date_in_words(request.closed_at)
    assert _action_statuses(html) == [f"Not carried out: the request was rejected on {day}."] * 2
    assert "<dd>Approved</dd>" not in html and "awaiting approval" not in html
    # What was done stands: the approval, by whom and when.
    assert "<dt>Approved by</dt><dd>dpo, " in html

    with translation.override("fr"):
        assert str(ActionStatus.APPROVED.label) not in _action_statuses(certificate.render_certificate_html(request))


def test_an_action_planned_when_the_subject_withdrew_is_not_carried_out_and_a_lifting_goes_on(crm, dpo_actor):
    request = verified_request(RequestType.ERASURE)
    [erasure] = actions.plan_actions(request=request, actor=dpo_actor)
    intake.request_withdraw(request=request, actor=Actor.subject())
    request.refresh_from_db()
    erasure = request.source_actions.get()

    assert certificate.status_label(erasure) == f"Not carried out: the request was withdrawn on {date_in_words(request.closed_at)}."
    # A lifting of a restriction comes after the answer, whatever the request's status: it is not ended by it.
    SourceAction.objects.filter(pk=erasure.pk).update(kind=ActionKind.LIFT_RESTRICTION)
    assert certificate.status_label(request.source_actions.get()) == "Planned: dry run needed"


def test_an_execution_running_when_the_request_closes_reads_as_running_then_as_not_carried_out(
    crm, dpo_actor, run, django_capture_on_commit_callbacks
):
    """Its task, taken after the withdrawal, does not run it (actions.run_execution fails it, changing nothing): until
    then it is under way, and may have changed rows by the time it stops; once stopped without a change, it was
    not carried out."""
    request = verified_request(RequestType.ERASURE)
    [erasure] = actions.plan_actions(request=request, actor=dpo_actor)
    run(erasure.id, "dry_run", "approve", actor=dpo_actor)
    with django_capture_on_commit_callbacks() as queued:
        actions.execute(action=SourceAction.objects.get(pk=erasure.pk), actor=dpo_actor)
    intake.request_withdraw(request=request, actor=Actor.subject())
    erasure = SourceAction.objects.select_related("request").get(pk=erasure.pk)
    assert erasure.status == ActionStatus.RUNNING
    assert certificate.status_label(erasure) == "Executing"

    for callback in queued:
        callback()
    erasure = SourceAction.objects.select_related("request").get(pk=erasure.pk)
    assert erasure.status == ActionStatus.FAILED and not erasure.changed_anything()
    day = date_in_words(erasure.request.closed_at)
    assert certificate.status_label(erasure) == f"Not carried out: the request was withdrawn on {day}."


def test_an_erasure_stopped_part_way_by_the_closing_keeps_its_failure(crm, dpo_actor):
    """Rows changed before it stopped: "not carried out" would deny them."""
    request = verified_request(RequestType.ERASURE)
    [erasure] = actions.plan_actions(request=request, actor=dpo_actor)
    intake.request_withdraw(request=request, actor=Actor.subject())
    SourceAction.objects.filter(pk=erasure.pk).update(
        status=ActionStatus.FAILED, result={"categories": [{"category": "contact", "rows": 1, "fields": 2}]}
    )
    assert certificate.status_label(SourceAction.objects.select_related("request").get(pk=erasure.pk)) == "Failed"


@pytest.mark.django_db
def test_a_package_the_withdrawal_ended_before_it_was_compiled_says_it_never_was():
    """Queued, and failed, when the subject withdrew: the certificate listed them as the compiled ones, each "Expired
    and deleted", "Not released before it ended", "0 of 5" downloads."""
    from requests_app.services import intake

    request = request_in_status(Status.IN_PROGRESS)
    ExportPackage.objects.create(request=request, status=ExportStatus.QUEUED)
    ExportPackage.objects.create(
        request=request, kind=ExportKind.PORTABILITY, status=ExportStatus.FAILED, finished_at=timezone.now(), error="CRM: timeout",
    )
    intake.request_withdraw(request=request, actor=Actor.subject())
    request.refresh_from_db()
    assert set(request.exports.values_list("status", flat=True)) == {ExportStatus.EXPIRED}

    html = certificate.render_certificate_html(request)
    assert "<dd>Access (Art. 15): Not compiled: it ended before it was compiled</dd>" in html
    assert "<dd>Portability (Art. 20): Not compiled: it ended before it was compiled</dd>" in html
    assert "Expired and deleted" not in html and "Ended and deleted" not in html
    assert "<dt>Released</dt>" not in html and "<dt>Downloads by the subject</dt>" not in html
    access, portability = html.split("<dt>Ended</dt><dd>")[1:]
    assert access.split("</dd>")[0].endswith(": The request was closed (Withdrawn): no data is delivered for it.")
    assert portability.split("</dd>")[0].endswith(": The request was closed (Withdrawn): no data is delivered for it.")


def test_the_certificate_states_each_outcome_under_one_title(completed_erasure):
    """It was a "Completion certificate" for a request withdrawn, rejected or forwarded too."""
    html = certificate.render_certificate_html(completed_erasure)
    assert "<title>Request handling certificate " + completed_erasure.reference + "</title>" in html
    # Its call records were kept under a legal hold: granted in part, as its letter says.
    assert (
        "<dt>Outcome</dt><dd>Completed, granted in part: data kept in Call records under a legal hold, to which the right "
        "to erasure does not apply: compliance with a legal obligation (Art. 17(3)(b) GDPR).</dd>"
    ) in html

    withdrawn = request_in_status(Status.IN_PROGRESS)
    intake.request_withdraw(request=withdrawn, actor=Actor.subject())
    withdrawn.refresh_from_db()
    html = certificate.render_certificate_html(withdrawn)
    assert "<h1>Request handling certificate</h1>" in html and "Completion" not in html
    assert "<dt>Outcome</dt><dd>Withdrawn before it was answered.</dd>" in html

    forwarded = request_in_status(Status.FORWARDED)
    assert "<dt>Outcome</dt><dd>Forwarded to the controller of the data, which answers it.</dd>" in (
        certificate.render_certificate_html(forwarded)
    )
    assert "<dt>Outcome</dt>" not in certificate.render_certificate_html(request_in_status(Status.IN_PROGRESS))
