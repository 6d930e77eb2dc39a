import datetime
import os
import threading

import pytest
import time_machine
from django.conf import settings
from django.core import mail
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.utils import timezone, translation

from requests_app import lifecycle
from requests_app.audit import Actor
from requests_app.lifecycle import RequestError, StaleRequest
from requests_app.models import (
    ExportPackage,
    ExportStatus,
    IdentityKind,
    Message,
    Organisation,
    PrivacyRequest,
    RejectionGround,
    RequestType,
    ResponseTemplate,
    Status,
    TemplatePurpose,
    VerificationMethod,
)
from requests_app.services import handling, intake
from requests_app.services.orphans import delete_orphan_files
from requests_app.staff.forms import IdentityVerifyForm
from tests.factories import (
    erasure_kept_whole, identity_proof_asked, last_letter, released_package, request_in_status, staff_in_role,
)

# What staff tell a subject whose identity they could not verify: what was asked, and why what came is not enough.
NOT_PROVED = "We asked you for a copy of a bill in your name, and received none."


@pytest.fixture
def dpo(db):
    return staff_in_role("DPO", username="dpo1", email="dpo1@example.com")


@pytest.mark.django_db
def test_an_objection_to_direct_marketing_cannot_be_refused_on_the_merits(dpo):
    """A DPO rejected one as "Other: compelling legitimate grounds": Art. 21(3) leaves no such ground."""
    request = request_in_status(Status.IN_PROGRESS)
    request.rights.update(right="objection", direct_marketing=True)
    with pytest.raises(RequestError, match=r"cannot be refused \(Art. 21\(3\)\)"):
        handling.request_reject(
            request=request, actor=Actor.staff(dpo), ground="other", explanation="Compelling legitimate grounds.",
            expected_status=Status.IN_PROGRESS,
        )
    request.refresh_from_db()
    assert request.status == Status.IN_PROGRESS and not request.messages.exists()
    # Who asks can still be in doubt.
    identity_proof_asked(request, dpo)
    handling.request_reject(
        request=request, actor=Actor.staff(dpo), ground="identity_not_verified", explanation=NOT_PROVED, expected_status=Status.IN_PROGRESS,
    )
    request.refresh_from_db()
    assert request.status == Status.REJECTED


@pytest.mark.django_db
def test_pausing_the_clock_asks_the_subject_for_what_we_wait_for(dpo, django_capture_on_commit_callbacks):
    """A pause with nothing sent told the subject we waited for them, and added days to the deadline on nobody's
    question."""
    request = request_in_status(Status.IN_PROGRESS)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        handling.clock_pause(request=request, actor=Actor.staff(dpo), question="Please send a copy of your ID.")
    request.refresh_from_db()
    assert request.status == Status.IN_PROGRESS and request.clock_paused  # the request stays where it was
    assert "Please send a copy of your ID." in mail.outbox[-1].body
    assert "The time we have to answer is paused until you reply." in mail.outbox[-1].body
    assert request.events.filter(action="information_requested").exists()

    handling.subject_reply(request=request, body="Attached to my account.")
    request.refresh_from_db()
    assert not request.clock_paused and request.status == Status.IN_PROGRESS


@pytest.mark.django_db
def test_a_pause_refused_sends_nothing(dpo):
    request = request_in_status(Status.IN_PROGRESS)
    type(request).objects.filter(pk=request.pk).update(due_on=timezone.localdate() - datetime.timedelta(days=1))
    with pytest.raises(RequestError, match="overdue request cannot be paused"):
        handling.clock_pause(request=request, actor=Actor.staff(dpo), question="Please send a copy of your ID.")
    assert not request.messages.exists() and not request.pauses.exists()
    with pytest.raises(RequestError, match="Say what we need from the subject"):
        handling.clock_pause(request=request, actor=Actor.staff(dpo), question="  ")


@pytest.mark.django_db(transaction=True)
def test_asking_for_information_pauses_and_the_reply_resumes(dpo):
    request = request_in_status(Status.IN_PROGRESS)
    mail.outbox.clear()
    handling.request_information(
        request=request, actor=Actor.staff(dpo), body="Please send a copy of your ID.", expected_status=Status.IN_PROGRESS
    )
    request.refresh_from_db()
    assert request.status == Status.AWAITING_SUBJECT
    assert request.pauses.filter(ended_at__isnull=True).exists()
    assert "Please send a copy of your ID." in mail.outbox[-1].body
    assert request.secret in mail.outbox[-1].body  # the reply link
    # Told that the question stops the clock, though it stopped only after the letter was written.
    assert "The time we have to answer is paused until you reply." in mail.outbox[-1].body

    handling.subject_reply(request=request, body="Attached to my account.")
    request.refresh_from_db()
    assert request.status == Status.IN_PROGRESS  # back where it was
    assert not request.pauses.filter(ended_at__isnull=True).exists()
    assert list(request.messages.values_list("direction", flat=True)) == ["to_subject", "from_subject"]
    assert request.events.filter(action="subject_replied", actor_kind="subject").exists()


@pytest.mark.django_db
def test_a_question_on_a_request_whose_clock_cannot_stop_does_not_say_it_stopped(dpo, django_capture_on_commit_callbacks):
    """Under the CCPA the 45 days run on while we wait."""
    request = request_in_status(Status.IN_PROGRESS, regime="ccpa")
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        handling.request_information(request=request, actor=Actor.staff(dpo), body="Which account?", expected_status=Status.IN_PROGRESS)
    assert "Which account?" in mail.outbox[-1].body
    assert "paused" not in mail.outbox[-1].body


@pytest.mark.django_db
def test_a_question_to_a_subject_without_email_asks_for_a_letter_not_a_status_page_reply(dpo):
    """Recorded from a letter, the request has no status link: staff post the text shown under Messages."""
    request = request_in_status(Status.IN_PROGRESS, subject_email="")
    message = handling.request_information(
        request=request, actor=Actor.staff(dpo), body="Which account?", expected_status=Status.IN_PROGRESS
    )
    assert f"Please reply by letter, quoting the reference {request.reference}." in message.body
    assert "status page" not in message.body
    assert "The time we have to answer is paused until you reply." in message.body


@pytest.mark.parametrize(("asked_in", "way_back"), [(Status.IDENTITY_CHECK, "start_identity_check"), (Status.NEW, "return_to_new")])
@pytest.mark.django_db
def test_a_reply_returns_the_request_to_where_the_question_was_asked(dpo, asked_in, way_back):
    """A question asked before work started sends the request back to new, not on to the identity check."""
    request = request_in_status(asked_in)
    handling.request_information(request=request, actor=Actor.staff(dpo), body="Which account?", expected_status=asked_in)
    handling.subject_reply(request=request, body="The business one.")
    request.refresh_from_db()
    assert request.status == asked_in
    assert not request.pauses.filter(ended_at__isnull=True).exists()
    resumed = request.events.get(action=way_back, from_status=Status.AWAITING_SUBJECT)
    assert resumed.to_status == asked_in


@pytest.mark.parametrize("body", ["", "   ", "x" * 10_001])
@pytest.mark.django_db
def test_bad_replies_are_refused(body):
    request = request_in_status(Status.IN_PROGRESS)
    with pytest.raises(RequestError):
        handling.subject_reply(request=request, body=body)
    assert request.messages.count() == 0


@pytest.mark.django_db
def test_closed_requests_take_no_replies():
    request = request_in_status(Status.COMPLETED)
    with pytest.raises(RequestError, match="closed"):
        handling.subject_reply(request=request, body="Hello?")


@pytest.mark.django_db
def test_verifying_identity_records_the_method_and_starts_work(dpo):
    request = request_in_status(Status.IDENTITY_CHECK, subject_phone="+32475123456")
    phone = request.identities.get(kind=IdentityKind.PHONE)
    handling.identity_verify(
        request=request, actor=Actor.staff(dpo), identity_ids=[phone.id], method="callback", expected_status=Status.IDENTITY_CHECK
    )
    phone.refresh_from_db()
    request.refresh_from_db()
    assert (phone.verification_method, phone.verified_by, phone.is_verified) == ("callback", dpo, True)
    assert request.status == Status.IN_PROGRESS
    assert request.events.get(action="identity_verified").data == {"kinds": ["phone"], "method": "callback"}


def _at(day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time(10), tzinfo=timezone.get_default_timezone())


@pytest.mark.django_db
def test_an_identity_verified_while_we_wait_for_the_subject_restarts_the_clock_and_the_work(dpo):
    """A reviewer's probe: the ID asked for arrived by post and was recorded as verified, but the request stayed
    "awaiting the subject" with its clock paused, its due date moving out every day it was left so."""
    with time_machine.travel(_at(datetime.date(2026, 3, 2)), tick=False):
        request = request_in_status(Status.IN_PROGRESS)
        assert request.due_on == datetime.date(2026, 4, 2)
        handling.request_information(
            request=request, actor=Actor.staff(dpo), body="Please send a copy of your ID.", expected_status=Status.IN_PROGRESS
        )
    email = request.identities.get(kind=IdentityKind.EMAIL)
    with time_machine.travel(_at(datetime.date(2026, 3, 5)), tick=False):
        handling.identity_verify(
            request=request, actor=Actor.staff(dpo), identity_ids=[email.id], method=VerificationMethod.DOCUMENT,
            expected_status=Status.AWAITING_SUBJECT,
        )
    request.refresh_from_db()
    assert request.status == Status.IN_PROGRESS and not request.clock_paused
    assert not request.pauses.filter(ended_at__isnull=True).exists()
    # 2 April and the 3 days paused: 5 April, Easter Sunday, then Easter Monday: Tuesday 7 April.
    assert (request.paused_days, request.due_on) == (3, datetime.date(2026, 4, 7))
    assert request.next_alert_on is not None  # reminders again
    resumed = request.events.get(action="start_work", from_status=Status.AWAITING_SUBJECT)
    assert resumed.note == lifecycle.NOTE_IDENTITY_VERIFIED
    assert request.events.get(action="clock_resumed").data == {"paused_days": 3, "due_on": "2026-04-07"}
    with time_machine.travel(_at(datetime.date(2026, 3, 25)), tick=False):
        request.refresh_from_db()
        assert request.due_on == datetime.date(2026, 4, 7)  # no longer moving out


@pytest.mark.parametrize("asked_in", [Status.NEW, Status.IDENTITY_CHECK, Status.IN_PROGRESS])
@pytest.mark.django_db
def test_an_identity_verified_while_waiting_for_the_subject_goes_on_to_work_wherever_the_question_was_asked(dpo, asked_in):
    """From "new" or "identity check" the verification would have started the work; from "in progress" it resumes."""
    request = request_in_status(asked_in)
    handling.request_information(request=request, actor=Actor.staff(dpo), body="Your ID, please.", expected_status=asked_in)
    email = request.identities.get(kind=IdentityKind.EMAIL)
    handling.identity_verify(
        request=request, actor=Actor.staff(dpo), identity_ids=[email.id], method=VerificationMethod.DOCUMENT,
        expected_status=Status.AWAITING_SUBJECT,
    )
    request.refresh_from_db()
    assert request.status == Status.IN_PROGRESS and not request.clock_paused
    assert list(request.events.filter(action__in=["identity_verified", "start_work", "clock_resumed"]).values_list(
        "action", flat=True
    ).order_by("-sequence")[:3]) == ["clock_resumed", "start_work", "identity_verified"]


@pytest.mark.django_db
def test_an_identity_verified_restarts_a_clock_staff_paused_without_changing_the_status(dpo):
    """Paused for proof of identity asked by phone (clock_pause), in the identity check: the proof is the answer."""
    with time_machine.travel(_at(datetime.date(2026, 3, 2)), tick=False):
        request = request_in_status(Status.IDENTITY_CHECK)
        handling.clock_pause(request=request, actor=Actor.staff(dpo), question="Please post us a copy of your ID.")
    email = request.identities.get(kind=IdentityKind.EMAIL)
    with time_machine.travel(_at(datetime.date(2026, 3, 5)), tick=False):
        handling.identity_verify(
            request=request, actor=Actor.staff(dpo), identity_ids=[email.id], method=VerificationMethod.DOCUMENT,
            expected_status=Status.IDENTITY_CHECK,
        )
    request.refresh_from_db()
    assert request.status == Status.IN_PROGRESS and not request.clock_paused
    assert (request.paused_days, request.due_on) == (3, datetime.date(2026, 4, 7))
    assert request.pauses.get().ended_by == dpo
    resumed = request.events.get(action="clock_resumed")
    assert (resumed.note, resumed.data["paused_days"]) == (lifecycle.NOTE_IDENTITY_VERIFIED, 3)


@pytest.mark.django_db
def test_only_a_request_an_organisation_filed_has_identifiers_asserted_by_it(dpo):
    """The method ties a phone number to the subject's line, so a package's password may be texted to it: on a
    request no organisation filed, nobody asserted anything, and the method is refused with nothing recorded."""
    request = request_in_status(Status.IDENTITY_CHECK, subject_phone="+32475123456")
    phone = request.identities.get(kind=IdentityKind.PHONE)
    with pytest.raises(RequestError, match="No customer organisation filed this request"):
        handling.identity_verify(
            request=request, actor=Actor.staff(dpo), identity_ids=[phone.id],
            method=VerificationMethod.ASSERTED_BY_ORGANISATION, expected_status=Status.IDENTITY_CHECK,
        )
    phone.refresh_from_db()
    assert not phone.is_verified
    assert not request.events.filter(action="identity_verified").exists()

    form = IdentityVerifyForm(privacy_request=request)
    assert VerificationMethod.ASSERTED_BY_ORGANISATION not in dict(form.fields["method"].choices)
    request.organisation = Organisation.objects.create(name="Acme Mobile")
    form = IdentityVerifyForm(privacy_request=request)
    assert VerificationMethod.ASSERTED_BY_ORGANISATION in dict(form.fields["method"].choices)


@pytest.mark.django_db
def test_an_identity_document_does_not_verify_a_phone_number_or_an_ip_address(dpo):
    """A reviewer's probe: someone filed as themselves with another person's number, their ID was checked, and the
    number was searched. An ID proves who the subject is, not that a line or an address is theirs: refused, naming
    the kind and the methods that prove it, and nothing recorded, not even the email address checked with them."""
    request = request_in_status(Status.IDENTITY_CHECK, subject_phone="+32475123456", ip_address="203.0.113.7")
    ids = list(request.identities.values_list("id", flat=True))
    with pytest.raises(RequestError) as refused:
        handling.identity_verify(
            request=request, actor=Actor.staff(dpo), identity_ids=ids, method=VerificationMethod.DOCUMENT,
            expected_status=Status.IDENTITY_CHECK,
        )
    assert str(refused.value) == (
        "“Identity document checked by staff” does not prove that the IP address is the subject's: it could be someone "
        "else's, whose data the source systems would then give. Verify it by one of these: “Matched against account records”. "
        "“Identity document checked by staff” does not prove that the phone number is the subject's: it could be someone "
        "else's, whose data the source systems would then give. Verify it by one of these: “Call-back to the phone "
        "number”, “Matched against account records”."
    )
    assert not request.identities.filter(verified_at__isnull=False).exists()
    assert not request.events.filter(action="identity_verified").exists()
    request.refresh_from_db()
    assert request.status == Status.IDENTITY_CHECK

    # A call-back proves a line, not a mailbox.
    email = request.identities.get(kind=IdentityKind.EMAIL)
    with pytest.raises(RequestError, match="does not prove that the email address is the subject's"):
        handling.identity_verify(
            request=request, actor=Actor.staff(dpo), identity_ids=[email.id], method=VerificationMethod.CALLBACK,
            expected_status=Status.IDENTITY_CHECK,
        )

    handling.identity_verify(
        request=request, actor=Actor.staff(dpo), identity_ids=ids, method=VerificationMethod.ACCOUNT_RECORDS,
        expected_status=Status.IDENTITY_CHECK,
    )
    assert request.identities.filter(verification_method=VerificationMethod.ACCOUNT_RECORDS).count() == 3


@pytest.mark.django_db
def test_the_verify_form_says_an_identity_document_does_not_prove_a_phone_number(dpo):
    request = request_in_status(Status.IDENTITY_CHECK, subject_phone="+32475123456")
    phone = request.identities.get(kind=IdentityKind.PHONE)
    email = request.identities.get(kind=IdentityKind.EMAIL)

    form = IdentityVerifyForm({"identities": [email.id, phone.id], "method": VerificationMethod.DOCUMENT}, privacy_request=request)

    assert not form.is_valid()
    assert form.errors["method"] == [
        "“Identity document checked by staff” does not prove that the phone number is the subject's: it could be "
        "someone else's, whose data the source systems would then give. Verify it by one of these: “Call-back to the "
        "phone number”, “Matched against account records”."
    ]
    assert IdentityVerifyForm({"identities": [email.id], "method": VerificationMethod.DOCUMENT}, privacy_request=request).is_valid()
    assert IdentityVerifyForm({"identities": [phone.id], "method": VerificationMethod.CALLBACK}, privacy_request=request).is_valid()


@pytest.mark.django_db
def test_an_organisation_still_asserts_its_subscribers_phone_number_and_ip_address(dpo):
    """The API records the identifiers as asserted; staff verifying them as such proves them, whatever their kind."""
    request = request_in_status(
        Status.IDENTITY_CHECK, subject_phone="+32475123456", ip_address="203.0.113.7",
        organisation=Organisation.objects.create(name="Acme Mobile"), identities_asserted=True,
    )
    ids = list(request.identities.values_list("id", flat=True))
    form = IdentityVerifyForm({"identities": ids, "method": VerificationMethod.ASSERTED_BY_ORGANISATION}, privacy_request=request)
    assert form.is_valid(), form.errors
    handling.identity_verify(
        request=request, actor=Actor.staff(dpo), identity_ids=ids, method=VerificationMethod.ASSERTED_BY_ORGANISATION,
        expected_status=Status.IDENTITY_CHECK,
    )
    assert request.identities.searchable().count() == 3


@pytest.mark.django_db(transaction=True)
def test_rejection_letter_states_the_reason_and_the_right_to_complain(dpo):
    request = request_in_status(Status.IN_PROGRESS, rights=[intake.RightDetails(RequestType.ERASURE)])
    erasure_kept_whole(request)
    mail.outbox.clear()
    handling.request_reject(
        request=request,
        actor=Actor.staff(dpo),
        ground=RejectionGround.LEGAL_OBLIGATION,
        explanation="Call records are kept for 12 months under telecom law.",
        expected_status=Status.IN_PROGRESS,
    )
    request.refresh_from_db()
    assert (request.status, request.rejection_ground) == (Status.REJECTED, "legal_obligation")
    letter = last_letter(request)
    for expected in (
        "Legal obligation to retain the data (Art. 17(3)(b) GDPR)",
        "Call records are kept for 12 months",
        "lodge a complaint with a supervisory authority",
        "Data Protection Authority",
        "judicial remedy",
    ):
        assert expected in letter.body
    assert mail.outbox[-1].body.startswith(letter.body[:40])
    # The request is closed: its status page takes no reply, and the email does not offer one.
    assert "Your request is closed; see it on its status page:" in mail.outbox[-1].body
    assert "Reply" not in mail.outbox[-1].body


@pytest.mark.django_db
@pytest.mark.parametrize(
    "ground", ["other", "excessive", "legal_obligation", "rights_of_others", "compelling_grounds", "legal_claims"]
)
def test_a_rejection_ground_that_does_not_say_why_needs_an_explanation(dpo, ground):
    """Art. 12(4): the letter gives the reasons; for these grounds the label alone does not."""
    request = request_in_status(Status.IN_PROGRESS)
    with pytest.raises(RequestError, match="the letter must give the reasons"):
        handling.request_reject(request=request, actor=Actor.staff(dpo), ground=ground, explanation=" ", expected_status=Status.IN_PROGRESS)
    assert PrivacyRequest.objects.get(pk=request.pk).status == Status.IN_PROGRESS
    assert not request.messages.exists()


@pytest.mark.django_db
def test_letters_use_the_dpos_template_in_the_subjects_language(dpo):
    ResponseTemplate.objects.create(
        purpose=TemplatePurpose.COMPLETION, language="fr", subject="Votre demande {{ reference }} est traitée",
        body="Bonjour,\n\nNous avons traité votre demande ({{ rights }}).\n{{ body }}",
    )
    request = request_in_status(Status.IN_PROGRESS, language="fr")
    released_package(request)
    handling.request_complete(request=request, actor=Actor.staff(dpo), letter="Copie jointe.", expected_status=Status.IN_PROGRESS)
    letter = last_letter(request)
    assert letter.subject == f"Votre demande {request.reference} est traitée"
    assert letter.body.startswith("Bonjour,") and "Copie jointe." in letter.body


@pytest.mark.django_db
def test_access_and_portability_complete_only_once_their_packages_are_released(dpo):
    request = request_in_status(
        Status.IN_PROGRESS, rights=[intake.RightDetails(RequestType.ACCESS), intake.RightDetails(RequestType.PORTABILITY)]
    )
    ExportPackage.objects.create(request=request, kind="access", status=ExportStatus.READY)  # compiled, not released
    released_package(request, kind="access")

    with pytest.raises(RequestError, match=r"Portability \(Art. 20\): no data package has been released"):
        handling.request_complete(request=request, actor=Actor.staff(dpo), letter="", expected_status=Status.IN_PROGRESS)
    assert PrivacyRequest.objects.get(pk=request.pk).status == Status.IN_PROGRESS
    assert request.messages.count() == 0

    released_package(request, kind="portability")
    handling.request_complete(request=request, actor=Actor.staff(dpo), letter="", expected_status=Status.IN_PROGRESS)
    assert PrivacyRequest.objects.get(pk=request.pk).status == Status.COMPLETED


@pytest.mark.django_db
def test_built_in_letters_are_in_the_subjects_language_with_the_authority_named(dpo):
    request = request_in_status(Status.IN_PROGRESS, language="nl")
    identity_proof_asked(request, dpo)
    handling.request_reject(
        request=request, actor=Actor.staff(dpo), ground="identity_not_verified", explanation=NOT_PROVED, expected_status=Status.IN_PROGRESS
    )
    letter = last_letter(request)
    assert letter.subject == f"Uw privacyverzoek {request.reference}"
    assert letter.body.startswith(f"Wij kunnen niet ingaan op uw verzoek {request.reference} (")
    assert "de Gegevensbeschermingsautoriteit (GBA), Drukpersstraat 35, 1000 Brussel" in letter.body
    assert "We cannot" not in letter.body and "Brussels" not in letter.body


@pytest.mark.django_db
def test_the_german_rejection_names_the_authority_in_the_dative(dpo):
    request = request_in_status(Status.IN_PROGRESS, language="de")
    identity_proof_asked(request, dpo)
    handling.request_reject(
        request=request, actor=Actor.staff(dpo), ground="identity_not_verified", explanation=NOT_PROVED, expected_status=Status.IN_PROGRESS
    )
    body = last_letter(request).body
    # Its German name and site: a German reader is not sent to the French, Dutch or English ones.
    assert "insbesondere bei der Datenschutzbehörde (DSB), Rue de la Presse 35, 1000 Brüssel, www.datenschutzbehorde.be" in body
    assert "Der Grund: Identität konnte nicht verifiziert werden.\n" in body


@pytest.mark.django_db
def test_the_email_subject_line_is_not_html_escaped(dpo, mailoutbox, django_capture_on_commit_callbacks):
    ResponseTemplate.objects.create(
        purpose=TemplatePurpose.COMPLETION, language="fr", subject="Votre demande d'accès & « suivi » {{ reference }}",
        body="{{ body }}",
    )
    request = request_in_status(Status.IN_PROGRESS, language="fr")
    released_package(request)
    with django_capture_on_commit_callbacks(execute=True):
        handling.request_complete(request=request, actor=Actor.staff(dpo), letter="", expected_status=Status.IN_PROGRESS)
    assert mailoutbox[-1].subject == f"Votre demande d'accès & « suivi » {request.reference}"


@pytest.mark.django_db
def test_a_type_specific_template_wins_over_the_generic_one(dpo):
    ResponseTemplate.objects.create(purpose=TemplatePurpose.COMPLETION, language="en", subject="Generic", body="generic {{ body }}")
    ResponseTemplate.objects.create(
        purpose=TemplatePurpose.COMPLETION, request_type="access", language="en", subject="Access done", body="access {{ body }}"
    )
    request = request_in_status(Status.IN_PROGRESS)
    released_package(request)
    handling.request_complete(request=request, actor=Actor.staff(dpo), letter="", expected_status=Status.IN_PROGRESS)
    assert last_letter(request).subject == "Access done"


@pytest.mark.parametrize(
    ("purpose", "body", "missing"),
    [
        (TemplatePurpose.COMPLETION, "We are done with {{ reference }}.", "{{ body }}"),
        (TemplatePurpose.REJECTION, "We refuse {{ reference }}. {{ body }}", "{{ reason }}"),
        (TemplatePurpose.REJECTION, "We refuse {{ reference }}.", "{{ body }}, {{ reason }}"),
    ],
)
def test_a_template_that_would_drop_what_staff_write_is_refused(purpose, body, missing):
    from django.core.exceptions import ValidationError

    template = ResponseTemplate(purpose=purpose, language="en", subject="About {{ reference }}", body=body)
    with pytest.raises(ValidationError) as refused:
        template.clean()
    assert f"The text must contain {missing}" in refused.value.message_dict["body"][0]
    ResponseTemplate(purpose=purpose, language="en", subject="S", body="{{ body|upper }} {{ reason }}").clean()  # accepted


@pytest.mark.parametrize(
    ("field", "source", "error"),
    [
        ("body", "{% load log %}{% get_admin_log 50 as L %}{{ body }}", "Invalid block tag on line 1: 'load'"),
        ("body", '{% include "missing.html" %}{{ body }}', "Invalid block tag on line 1: 'include'"),
        ("body", '{% extends "letter.html" %}{{ body }}', "Invalid block tag on line 1: 'extends'"),
        ("body", "{% debug %}{{ body }}", "Invalid block tag on line 1: 'debug'"),
        ("subject", "{% url 'staff:home' %} {{ reference }}", "Invalid block tag on line 1: 'url'"),
        # Django reads markup left open as text: the subject read "{{ reference".
        # The refusal says how to write the opening as text.
        ("body", "{{ body }} {{ reference", "“{{” on line 1 is not closed: a placeholder must end with “}}” on the same "
         "line. To write “{{” as text, type {% templatetag openvariable %} in its place."),
        ("body", "{{ body }}\n{% if by_post", "“{%” on line 2 is not closed: a tag must end with “%}” on the same line. "
         "To write “{%” as text, type {% templatetag openblock %} in its place."),
        ("subject", "{# a note {{ reference }}", "“{#” on line 1 begins a comment, which a letter may not have. To write "
         "“{#” as text, type {% templatetag opencomment %} in its place; a note for staff, left out of the letter, goes "
         "between {% comment %} … {% endcomment %}."),
        # Closed, Django leaves a comment out of the letter: "Ticket {#123#}" was meant as text, and vanished.
        ("subject", "Ticket {#123#}", "“{#” on line 1 begins a comment, which a letter may not have. To write “{#” as "
         "text, type {% templatetag opencomment %} in its place"),
        ("body", "{{ body }}\n\n{# check with legal #}Kind regards", "“{#” on line 3 begins a comment"),
        # Over two lines, Django reads a comment as text: the subject would read the note.
        ("body", "{# a note\nfor staff #}{{ body }}", "“{#” on line 1 begins a comment"),
        # Fails only when rendered, and only in a letter that goes by post: every branch is tried.
        ("body", "{{ body }}{% if by_post %}{{ reference|divisibleby:0 }}{% endif %}", "A letter cannot be written with this template"),
        ("subject", "{{ due_on|date:'Y'|divisibleby:0 }}", "A letter cannot be written with this template"),
    ],
)
def test_a_template_that_could_fail_in_a_letter_is_refused_when_it_is_saved(field, source, error):
    """It would parse, then make every letter of its purpose and language fail."""
    from django.core.exceptions import ValidationError

    fields = {"subject": "About {{ reference }}", "body": "{{ body }}", field: source}
    with pytest.raises(ValidationError) as refused:
        ResponseTemplate(purpose=TemplatePurpose.COMPLETION, language="en", **fields).clean()
    assert error in refused.value.message_dict[field][0]


def test_a_template_may_use_conditions_loops_and_filters():
    ResponseTemplate(
        purpose=TemplatePurpose.REJECTION, language="en", subject="{% firstof reference 'Your request' %}",
        body="{% comment %}Art. 12(4){% endcomment %}{% if by_post %}By post.{% endif %}{% for right in rights.split %}"
        "{{ right|lower }} {% endfor %}{% with days=30 %}{{ days }} days{% endwith %} {{ reason }} {{ body }} {{ due_on|date:'j F Y' }}"
        "{% verbatim %}Type {{ to start a placeholder.{% endverbatim %}",  # markup left open on purpose, in verbatim
    ).clean()  # accepted
    ResponseTemplate(  # a comment's opening as text, and in verbatim, is text
        purpose=TemplatePurpose.MESSAGE, language="en", subject="Ticket {% templatetag opencomment %}123#}",
        body="{{ body }}{% verbatim %} Ticket {#123#}{% endverbatim %}",
    ).clean()  # accepted


@pytest.mark.parametrize(
    ("field", "source", "unknown"),
    [
        ("body", "Hallo {{ due_date }} {{ body }}", "“due_date”"),
        ("subject", "{{ referense }}", "“referense”"),
        # In a condition, in a filter's argument, only in the letter by post, or misspelt twice: each is named.
        ("body", "{% if by_psot %}By post.{% endif %}{{ body }}", "“by_psot”"),
        ("body", "{{ body|default:fallback }}", "“fallback”"),
        ("body", "{{ body }}{% if by_post %} {{ adress }}{% endif %}", "“adress”"),
        # Under a branch only a letter without that value takes: a rejection has no fee, a message may have no text.
        ("body", "{{ body }}{% if not fee %} {{ refrence }}{% endif %}", "“refrence”"),
        ("body", "{% if body %}{{ body }}{% else %}{{ nothing_written }}{% endif %}", "“nothing_written”"),
        ("body", "{{ body }} {{ due_date }} {{ refrence|upper }}", "“due_date”, “refrence”"),
        # A name that {% for %} or {% with %} binds, used outside it.
        ("body", "{% for right in rights %}{% endfor %}{{ right }}{{ body }}", "“right”"),
        ("body", "{% with days=30 %}{% endwith %}{{ days }} days {{ body }}", "“days”"),
    ],
)
def test_a_template_naming_an_unknown_placeholder_is_refused_with_its_name(field, source, unknown):
    """A misspelt placeholder is no error to Django: it would print nothing, and the letter read "Hallo  Wir
    melden uns bald." The refusal names it and the placeholders there are."""
    from django.core.exceptions import ValidationError

    fields = {"subject": "About {{ reference }}", "body": "{{ body }}", field: source}
    with pytest.raises(ValidationError) as refused:
        ResponseTemplate(purpose=TemplatePurpose.MESSAGE, language="de", **fields).clean()
    error = refused.value.message_dict[field][0]
    assert error.startswith(unknown)
    assert "would print nothing in the letter" in error
    assert "reference, due_on, rights, reason, fee, source, lift_on, body, by_post, clock_paused" in error


def test_known_placeholders_filters_and_names_bound_in_the_template_are_accepted():
    ResponseTemplate(
        purpose=TemplatePurpose.MESSAGE, language="en", subject="{{ reference|upper }} {% now 'Y' as year %}{{ year }}",
        body="{{ due_on|date:'j F' }} {{ rights }} {{ reason }} {{ fee }} {{ source }} {{ lift_on|default:due_on }}"
        "{% if by_post and not clock_paused %}x{% endif %}{% for right in rights %}{{ forloop.counter }}{{ right }}"
        "{% for again in right %}{{ forloop.parentloop.counter }}{{ again }}{% endfor %}{% endfor %}"
        "{% with days=30 name=reference %}{{ days }} {{ name }}{% endwith %}{% firstof reason 'none' as why %}{{ why }}"
        "{% cycle 'a' 'b' as letter silent %}{{ letter }}{% filter upper %}{{ body }}{% endfilter %}",
    ).clean()  # accepted


@pytest.mark.django_db
def test_the_placeholders_named_are_those_letters_are_written_with(monkeypatch):
    """letters.PLACEHOLDERS, which the check accepts, is what render_letter passes: a name it adds is not refused
    in the DPO's templates, nor one it drops still accepted."""
    from requests_app import letters

    passed = []
    monkeypatch.setattr(letters, "render", lambda source, values: passed.append(set(values)) or "")
    request = request_in_status(Status.IN_PROGRESS)
    handling.render_letter(request, TemplatePurpose.MESSAGE, body="")
    assert passed == [set(letters.PLACEHOLDERS)] * 2
    passed.clear()
    handling.render_letter(request, TemplatePurpose.COMPLETION, body="", outcome="")  # and a completion's text, {{ outcome }}
    assert sorted(passed, key=len) == [set(letters.PLACEHOLDERS), {*letters.PLACEHOLDERS, "outcome"}]


@pytest.mark.parametrize("language", [code for code, _ in settings.LANGUAGES])
@pytest.mark.parametrize(
    ("defaults", "purpose"),
    [("DEFAULT_TEMPLATES", purpose) for purpose in handling.DEFAULT_TEMPLATES]
    + [("DEFAULT_TEMPLATES_TO_AN_AGENT", purpose) for purpose in handling.DEFAULT_TEMPLATES_TO_AN_AGENT],
)
def test_the_built_in_wording_passes_the_check_a_dpo_template_must(defaults, purpose, language):
    """In every language, the subject's and the agent's: a translator's misspelt placeholder would print nothing too."""
    with translation.override(language):
        subject, body = map(str, getattr(handling, defaults)[purpose])
    ResponseTemplate(purpose=purpose, language=language, subject=subject or "{{ reference }}", body=body).clean()


@pytest.mark.parametrize(
    "body",
    [
        "{{ body }}\n\n{{ outcome }}\n\nKind regards",
        "{{ body }}{% if by_post %}\n\n{{ outcome }}\n\nYours faithfully{% else %}\n\n{{ outcome }}\n\nKind regards{% endif %}",
        "{{ body }}\n\n{% if outcome %}{{ outcome }}{% endif %}",
    ],
)
def test_a_completion_template_may_place_the_paragraphs_the_law_requires(body):
    ResponseTemplate(purpose=TemplatePurpose.COMPLETION, language="en", subject="Done", body=body).clean()  # accepted


@pytest.mark.parametrize(
    ("purpose", "field", "source", "error"),
    [
        # Only a completion's text has them: elsewhere the placeholder would print nothing.
        (TemplatePurpose.MESSAGE, "body", "{{ body }}\n\n{{ outcome }}", "“outcome” is not a placeholder"),
        (TemplatePurpose.COMPLETION, "subject", "Done: {{ outcome }}", "“outcome” is not a placeholder"),
        # Changed, left out of a letter, or said twice.
        (TemplatePurpose.COMPLETION, "body", "{{ body }} {{ outcome|upper }}", "{{ outcome }} must be printed once"),
        (TemplatePurpose.COMPLETION, "body", "{{ body }} {{ outcome|truncatechars:5 }}", "{{ outcome }} must be printed once"),
        (TemplatePurpose.COMPLETION, "body", "{{ body }}{% if by_post %} {{ outcome }}{% endif %}", "{{ outcome }} must be printed once"),
        (TemplatePurpose.COMPLETION, "body", "{% if body %}{{ body }} {{ outcome }}{% endif %}", "{{ outcome }} must be printed once"),
        (TemplatePurpose.COMPLETION, "body", "{{ outcome }} {{ body }} {{ outcome }}", "{{ outcome }} must be printed once"),
        (TemplatePurpose.COMPLETION, "body", "{{ body }} {% with o=outcome %}{{ o|length }}{% endwith %}", "{{ outcome }} must be printed once"),
    ],
)
def test_a_template_that_would_misplace_the_paragraphs_the_law_requires_is_refused(purpose, field, source, error):
    from django.core.exceptions import ValidationError

    fields = {"subject": "Done", "body": "{{ body }}", field: source}
    with pytest.raises(ValidationError) as refused:
        ResponseTemplate(purpose=purpose, language="en", **fields).clean()
    assert error in refused.value.message_dict[field][0]


@pytest.mark.parametrize(
    ("text", "outcome", "letter"),
    [
        ("Hello\n\n\x00outcome\x00\n\nKind regards", "We erased it.\n\nYou may complain.", "Hello\n\nWe erased it.\n\nYou may complain.\n\nKind regards"),
        # Nothing to say: no empty paragraph is left.
        ("Hello\n\n\x00outcome\x00\n\nKind regards", "", "Hello\n\nKind regards"),
        ("Hello\n\nKind regards", "We erased it.", "Hello\n\nKind regards\n\nWe erased it."),
        ("Hello\n\nKind regards", "", "Hello\n\nKind regards"),
    ],
)
def test_the_paragraphs_the_law_requires_take_the_place_of_outcome_or_end_the_letter(text, outcome, letter):
    from requests_app import letters

    assert letters.place_outcome(text, outcome) == letter


@pytest.mark.django_db
def test_a_stored_template_with_an_unknown_placeholder_still_sends_as_before(dpo, mailoutbox, django_capture_on_commit_callbacks):
    """Saved before the check: the name prints nothing, as it did; the message is not refused."""
    ResponseTemplate.objects.create(  # create() skips clean()
        purpose=TemplatePurpose.MESSAGE, language="en", subject="About {{ referense }}", body="Hallo {{ due_date }} {{ body }}"
    )
    request = request_in_status(Status.IN_PROGRESS)
    with django_capture_on_commit_callbacks(execute=True):
        handling.message_send(request=request, actor=Actor.staff(dpo), body="We will be in touch soon.")
    assert (last_letter(request).subject, last_letter(request).body) == ("About", "Hallo  We will be in touch soon.")


@pytest.mark.django_db
def test_a_stored_template_that_fails_refuses_the_letter_and_sends_nothing(dpo, mailoutbox, django_capture_on_commit_callbacks):
    """Saved before the checks refused it: the completion is refused with a message for staff, not a 500,
    and nothing of it is kept (the status, the letter, the email)."""
    ResponseTemplate.objects.create(  # create() skips clean(), as the old checks let it through
        purpose=TemplatePurpose.COMPLETION, language="en", subject="Done", body='{% include "missing.html" %}{{ body }}'
    )
    request = request_in_status(Status.IN_PROGRESS)
    released_package(request)
    mailoutbox.clear()

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RequestError, match="a DPO must correct it"):
        handling.request_complete(request=request, actor=Actor.staff(dpo), letter="", expected_status=Status.IN_PROGRESS)

    assert PrivacyRequest.objects.get(pk=request.pk).status == Status.IN_PROGRESS
    assert not request.messages.exists() and not mailoutbox
    assert not request.events.filter(action__in=["completed", "status_changed"]).exists()


# What a DPO's template could make of one letter without the limits of letters.py: a minute's work, or 50 MB.
BLOW_UPS = {
    "loops three deep": "{% for a in reference %}{% for b in reference %}{% for c in reference %}{% endfor %}{% endfor %}"
                        "{% endfor %}{{ body }}",
    "a width in millions": '{{ body|ljust:"50000000" }}',
    "a width in a format": '{{ body }}{{ reference|stringformat:"099999999s" }}',
    "a width in a condition": '{{ body }}{% if reference|center:"5000000" %}x{% endif %}',
    "a width in a filter tag": '{% filter rjust:"5000000" %}{{ body }}{% endfilter %}',
    "a width a placeholder gives": "{{ body|ljust:due_on }}",
    "filters doubling the text": "{{ body }}{{ reference" + '|join:"-"' * 30 + " }}",
    "loops repeating a padded text": '{% for a in body %}{% for b in body %}{{ body|ljust:"100" }}{{ rights|rjust:"100" }}'
                                     "{% endfor %}{% endfor %}",
    "a template of a book": "{{ body }}" + "Lorem ipsum. " * 2000,
}


@pytest.mark.parametrize("source", BLOW_UPS.values(), ids=BLOW_UPS.keys())
def test_a_template_that_would_make_a_letter_without_end_is_refused_when_saved(source):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as refused:
        ResponseTemplate(purpose=TemplatePurpose.MESSAGE, language="en", subject="About {{ reference }}", body=source).clean()
    error = refused.value.message_dict["body"][0]
    assert error.startswith(("This template has an error: ", "A letter cannot be written with this template: "))
    assert any(
        why in error for why in ("more than one deep", "a width of at most 100, written as a number", "too long to write",
                                 "at most 20,000 characters long")
    ), error


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        BLOW_UPS["a width in millions"],
        # Saved, since it makes a short letter of the sample text; staff's ten thousand characters, repeated as often.
        "{% for character in body %}{{ body }}{% endfor %}",
        "{{ body|join:body }}",
    ],
)
def test_a_letter_too_large_to_write_is_refused_when_sent_and_nothing_is_sent(dpo, mailoutbox, body, django_capture_on_commit_callbacks):
    from requests_app.models import TEXT_MAX_CHARS

    ResponseTemplate.objects.create(purpose=TemplatePurpose.MESSAGE, language="en", subject="About", body=body)  # no clean()
    request = request_in_status(Status.IN_PROGRESS)
    mailoutbox.clear()
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RequestError, match="a DPO must correct it"):
        handling.message_send(request=request, actor=Actor.staff(dpo), body="x" * TEXT_MAX_CHARS)
    assert not request.messages.exists() and not mailoutbox


@pytest.mark.django_db
def test_a_letter_with_loops_and_widths_within_the_limits_sends_the_longest_text_staff_write(dpo, django_capture_on_commit_callbacks):
    from requests_app.models import TEXT_MAX_CHARS

    template = ResponseTemplate(
        purpose=TemplatePurpose.MESSAGE, language="en", subject='{{ reference|ljust:"20" }}|',
        body='{{ body|wordwrap:72 }}{% for line in body.splitlines %}> {{ line|center:"6" }}\n{% endfor %}'
             '{{ "1.5"|floatformat:"2" }} {{ reference|stringformat:"20s" }}',
    )
    template.clean()
    template.save()
    request = request_in_status(Status.IN_PROGRESS)
    with django_capture_on_commit_callbacks(execute=True):
        handling.message_send(request=request, actor=Actor.staff(dpo), body="ab\n" * (TEXT_MAX_CHARS // 3))
    letter = last_letter(request)
    assert letter.subject == f"{request.reference:<20}|"
    assert letter.body.count(">   ab  \n") == TEXT_MAX_CHARS // 3
    assert letter.body.endswith(f"1.50 {request.reference:>20}")


@pytest.mark.django_db
def test_stale_actions_are_refused_and_change_nothing(dpo):
    request = request_in_status(Status.IN_PROGRESS)
    lifecycle.transition(request, "await_subject", actor=Actor.system())
    with pytest.raises(StaleRequest):
        handling.request_complete(request=request, actor=Actor.staff(dpo), letter="", expected_status=Status.IN_PROGRESS)
    assert request.messages.count() == 0
    assert PrivacyRequest.objects.get(pk=request.pk).status == Status.AWAITING_SUBJECT


@pytest.mark.django_db
def test_plain_transitions_cannot_bypass_the_dedicated_actions(dpo):
    request = request_in_status(Status.IN_PROGRESS)
    with pytest.raises(RequestError, match="dedicated action"):
        handling.request_transition(request=request, actor=Actor.staff(dpo), name="complete", expected_status=Status.IN_PROGRESS)


@pytest.mark.django_db
def test_bulk_apply_skips_refusals_and_keeps_the_rest(dpo):
    startable = [request_in_status(Status.NEW) for _ in range(2)]
    done = request_in_status(Status.COMPLETED)
    result = handling.bulk_apply(
        [*startable, done],
        lambda r: handling.request_transition(request=r, actor=Actor.staff(dpo), name="start_work", expected_status=r.status),
    )
    assert result.done == [r.reference for r in startable]
    assert [reference for reference, _ in result.skipped] == [done.reference]
    assert all(PrivacyRequest.objects.get(pk=r.pk).status == Status.IN_PROGRESS for r in startable)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_handlers_completing_at_once_apply_once(dpo):
    """The second gets a conflict and nothing is applied twice: one letter, one event."""
    other = staff_in_role("DPO", username="dpo2")
    request = request_in_status(Status.IN_PROGRESS)
    released_package(request)
    barrier = threading.Barrier(2)
    outcomes = []

    def complete(user):
        try:
            barrier.wait()
            handling.request_complete(request=request, actor=Actor.staff(user), letter="Done", expected_status=Status.IN_PROGRESS)
            outcomes.append("ok")
        except RequestError as error:
            outcomes.append(type(error).__name__)
        finally:
            connection.close()

    threads = [threading.Thread(target=complete, args=(user,)) for user in (dpo, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["StaleRequest", "ok"]
    assert Message.objects.filter(request=request).count() == 1
    assert request.events.filter(action="complete").count() == 1


@pytest.mark.django_db
def test_a_letter_whose_email_task_was_lost_is_queued_again(dpo, client, mailoutbox, django_capture_on_commit_callbacks):
    import datetime

    from django.urls import reverse
    from django.utils import timezone

    from tests.conftest import login_staff

    request = request_in_status(Status.IN_PROGRESS)
    # Outside the capture, the task queued on commit never runs: as if Redis restarted and lost it.
    letter = handling.message_send(request=request, actor=Actor.staff(dpo), body="Where did you live in 2024?")
    assert handling.requeue_unsent_messages() == 0  # queued just now: a worker may yet take it
    page_url = reverse("staff:request", args=[request.reference])
    assert "not emailed yet" in login_staff(client, dpo).get(page_url).content.decode()

    later = timezone.now() + datetime.timedelta(hours=3)
    with django_capture_on_commit_callbacks(execute=True):  # the Celery task runs eagerly on commit
        assert handling.requeue_unsent_messages(now=later) == 1
    letter.refresh_from_db()
    assert letter.emailed_at is not None
    assert [m.to for m in mailoutbox] == [[request.subject_email]] and "Where did you live" in mailoutbox[0].body
    assert "Reply, and follow your request, on its status page:" in mailoutbox[0].body  # open: they may answer there
    assert handling.requeue_unsent_messages(now=later + datetime.timedelta(hours=3)) == 0  # sent: never again
    assert "not emailed yet" not in client.get(page_url).content.decode()


@pytest.mark.django_db
def test_an_unsent_letter_is_given_up_after_a_week(dpo):
    import datetime

    from django.utils import timezone

    request = request_in_status(Status.IN_PROGRESS)
    handling.message_send(request=request, actor=Actor.staff(dpo), body="Hello")
    assert handling.requeue_unsent_messages(now=timezone.now() + datetime.timedelta(days=8)) == 0


def test_every_state_a_request_can_wait_for_the_subject_from_has_a_way_back():
    """A reply must never meet a state with no way back: it would be refused and lost."""
    assert set(handling.RESUME_TRANSITION) == lifecycle.TRANSITIONS["await_subject"].sources
    for source, name in handling.RESUME_TRANSITION.items():
        transition = lifecycle.TRANSITIONS[name]
        assert transition.target == source and Status.AWAITING_SUBJECT in transition.sources


@pytest.mark.django_db
def test_holding_no_data_is_answered_by_completing_not_by_rejecting(dpo):
    """Art. 15(1): "we hold no data about you" answers the request; a refusal would send the subject to a regulator."""
    from requests_app.staff.forms import RejectForm

    request = request_in_status(Status.IN_PROGRESS)
    assert "no_data" not in dict(RejectForm(privacy_request=request).fields["ground"].choices)
    assert "complete the request and say so in the letter" in str(RejectForm(privacy_request=request).fields["ground"].help_text)
    with pytest.raises(RequestError, match="Choose the legal reason"):
        handling.request_reject(request=request, actor=Actor.staff(dpo), ground="no_data", explanation="", expected_status=Status.IN_PROGRESS)
    assert PrivacyRequest.objects.get(pk=request.pk).status == Status.IN_PROGRESS


@pytest.mark.django_db
def test_a_request_rejected_on_no_data_before_keeps_naming_its_ground(dpo, client):
    from django.urls import reverse

    from tests.conftest import login_staff

    request = request_in_status(Status.REJECTED)
    PrivacyRequest.objects.filter(pk=request.pk).update(rejection_ground="no_data")
    page = login_staff(client, dpo).get(reverse("staff:request", args=[request.reference])).content.decode()
    assert "We hold no data about this person" in page and "no_data" not in page


@pytest.mark.django_db
def test_a_message_with_its_own_subject_line_still_names_the_request(dpo, mailoutbox, django_capture_on_commit_callbacks):
    """The subject may have several requests: "Your ID" alone does not say which one."""
    request = request_in_status(Status.IN_PROGRESS)
    with django_capture_on_commit_callbacks(execute=True):
        handling.message_send(request=request, actor=Actor.staff(dpo), body="Please send a copy.", subject="Your ID")
        handling.message_send(request=request, actor=Actor.staff(dpo), body="Thanks.", subject=f"{request.reference}: received")
    assert [m.subject for m in mailoutbox] == [f"Your ID ({request.reference})", f"{request.reference}: received"]


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["message", "note", "reply"])
def test_the_same_text_sent_again_within_minutes_is_refused_and_stored_once(dpo, kind, django_capture_on_commit_callbacks, mailoutbox):
    """The browser's Back, then Send again: the subject must not get the message twice, nor the file hold two notes."""
    import datetime

    import time_machine
    from django.utils import timezone

    request = request_in_status(Status.IN_PROGRESS)
    send = {
        "message": lambda: handling.message_send(request=request, actor=Actor.staff(dpo), body="We found two accounts."),
        "note": lambda: handling.note_add(request=request, actor=Actor.staff(dpo), body="Called the subject."),
        "reply": lambda: handling.subject_reply(request=request, body="Here is my old number."),
    }[kind]
    stored = {"message": request.messages, "note": request.notes, "reply": request.messages}[kind]
    with django_capture_on_commit_callbacks(execute=True):
        send()
    mailoutbox.clear()

    with time_machine.travel(timezone.now() + datetime.timedelta(minutes=9)), django_capture_on_commit_callbacks(execute=True):
        # A note is not sent: its refusal says "added".
        refusal = "The same note was added at .*: it was not added again." if kind == "note" else "The same text was sent at .*: it was not sent again."
        with pytest.raises(RequestError, match=refusal):
            send()
    assert stored.count() == 1 and mailoutbox == []

    with time_machine.travel(timezone.now() + datetime.timedelta(minutes=11)):
        send()  # a deliberate reminder, later, goes
    assert stored.count() == 2


@pytest.mark.django_db
def test_another_text_or_a_reply_with_a_document_is_not_taken_for_a_resend(dpo):
    request = request_in_status(Status.IN_PROGRESS)
    handling.message_send(request=request, actor=Actor.staff(dpo), body="We found two accounts.")
    handling.message_send(request=request, actor=Actor.staff(dpo), body="We found three accounts.")
    handling.subject_reply(request=request, body="Here it is.", document=SimpleUploadedFile("id.pdf", b"%PDF-1.4 a", "application/pdf"))
    handling.subject_reply(request=request, body="Here it is.", document=SimpleUploadedFile("id2.pdf", b"%PDF-1.4 b", "application/pdf"))
    assert request.messages.count() == 4


@pytest.mark.django_db
def test_a_rejection_letter_ends_its_reason_with_a_full_stop(dpo):
    """QA: "The reason: Identity could not be verified" was left without one, before the right to complain. The
    translated wording stays as it is: the full stop ends the ground (wording.with_full_stop)."""
    request = request_in_status(Status.IN_PROGRESS)
    identity_proof_asked(request, dpo)
    handling.request_reject(
        request=request, actor=Actor.staff(dpo), ground="identity_not_verified", explanation=NOT_PROVED, expected_status=Status.IN_PROGRESS
    )
    assert (
        f"The reason: Identity could not be verified.\n\n{NOT_PROVED}\n\nYou may make a new request at any time, with "
        "information that identifies you: once we can verify who you are, we will answer it.\n\nYou have the right to "
        "lodge a complaint"
    ) in last_letter(request).body


@pytest.mark.django_db
def test_a_rejection_on_another_ground_gives_the_explanation_as_the_reason(dpo):
    """"The reason: Other" told the subject nothing."""
    request = request_in_status(Status.IN_PROGRESS)
    handling.request_reject(
        request=request, actor=Actor.staff(dpo), ground="other", explanation="You asked us about an account another company runs.",
        expected_status=Status.IN_PROGRESS,
    )
    body = last_letter(request).body
    assert "The reason: You asked us about an account another company runs.\n\n" in body
    assert "Other" not in body and body.count("another company runs") == 1


@pytest.mark.parametrize(("regime", "language", "ground_shown"), [
    ("gdpr", "en", "The reason: Legal obligation to retain the data (Art. 17(3)(b) GDPR).\n"),
    ("ccpa", "en", "The reason: Legal obligation to retain the data.\n"),
    ("ccpa", "fr", "Motif\u00a0: Obligation légale de conserver les données.\n"),
])
@pytest.mark.django_db
def test_a_letter_under_another_law_than_the_gdpr_cites_no_gdpr_article(dpo, regime, language, ground_shown):
    request = request_in_status(Status.IN_PROGRESS, regime=regime, language=language, rights=[intake.RightDetails(RequestType.ERASURE)])
    erasure_kept_whole(request)
    handling.request_reject(
        request=request, actor=Actor.staff(dpo), ground="legal_obligation", explanation="Tax law: invoices kept 7 years.",
        expected_status=Status.IN_PROGRESS,
    )
    assert ground_shown in last_letter(request).body


FRAUD_CHECKS = intake.RightDetails(RequestType.OBJECTION, objection_processing="Fraud checks on my calls")
OVERRIDING_INTEREST = "Our fraud checks on your calls protect other customers, which outweighs your objection."
PENDING_DISPUTE = "We need your billing records to defend the claim you brought against us in court."


@pytest.mark.parametrize(
    ("rights", "ground", "explanation", "reason"),
    [
        ([FRAUD_CHECKS], "compelling_grounds", OVERRIDING_INTEREST,
         "Compelling legitimate grounds for the processing, or legal claims (Art. 21(1) GDPR)"),
        ([intake.RightDetails(RequestType.ERASURE)], "legal_claims", PENDING_DISPUTE,
         "Needed for the establishment, exercise or defence of legal claims (Art. 17(3)(e) GDPR)"),
    ],
)
@pytest.mark.django_db
def test_a_request_asking_only_the_right_a_ground_answers_is_rejected_on_it_with_the_reasons(dpo, rights, ground, explanation, reason):
    request = request_in_status(Status.IN_PROGRESS, rights=rights)
    if RequestType.ERASURE in request.requested_rights:
        erasure_kept_whole(request)
    handling.request_reject(request=request, actor=Actor.staff(dpo), ground=ground, explanation=explanation, expected_status=Status.IN_PROGRESS)
    request.refresh_from_db()
    assert (request.status, request.rejection_ground) == (Status.REJECTED, ground)
    body = last_letter(request).body
    assert f"The reason: {reason}.\n\n{explanation}\n\n" in body
    assert body.endswith("and to seek a judicial remedy before the courts.")


@pytest.mark.parametrize(
    ("rights", "ground", "message"),
    [
        # Compelling grounds answer an objection (Art. 21(1)), and nothing else.
        ([intake.RightDetails(RequestType.ERASURE)], "compelling_grounds",
         "Compelling legitimate grounds (Art. 21(1)) can refuse only an objection to processing other than direct marketing, "
         "not “Erase their data”."),
        # The request asks the objection too: its other rights must still be answered.
        ([intake.RightDetails(RequestType.ACCESS), FRAUD_CHECKS], "compelling_grounds",
         "not “Access a copy of their data”. To refuse “Object to the processing of their data” on it, complete the request and "
         "refuse that right there."),
        # Nor an objection to direct marketing (Art. 21(3)).
        ([intake.RightDetails(RequestType.OBJECTION, objection_processing="Promotional calls", direct_marketing=True)],
         "compelling_grounds", "The subject objects to direct marketing, which cannot be refused (Art. 21(3))"),
        # Legal claims are an exception to erasure (Art. 17(3)(e)), not to access.
        ([intake.RightDetails(RequestType.ACCESS)], "legal_claims",
         "Legal claims (Art. 17(3)(e)) can refuse only an erasure, not “Access a copy of their data”."),
        ([intake.RightDetails(RequestType.ERASURE), FRAUD_CHECKS], "legal_claims",
         "not “Object to the processing of their data”. To refuse “Erase their data” on it, complete the request"),
    ],
)
@pytest.mark.django_db
def test_a_rejection_on_a_ground_of_one_right_is_refused_for_a_request_asking_another(dpo, rights, ground, message):
    request = request_in_status(Status.IN_PROGRESS, rights=rights)
    with pytest.raises(RequestError) as refusal:
        handling.request_reject(
            request=request, actor=Actor.staff(dpo), ground=ground, explanation="Our reasons.", expected_status=Status.IN_PROGRESS
        )
    assert message in str(refusal.value)
    request.refresh_from_db()
    assert request.status == Status.IN_PROGRESS and request.rejection_ground == "" and not request.messages.exists()
    assert not request.events.filter(action="reject").exists()


@pytest.mark.parametrize(
    ("regime", "language", "rights", "ground", "ground_shown"),
    [
        ("ccpa", "en", [FRAUD_CHECKS], "compelling_grounds", "The reason: Compelling legitimate grounds for the processing, or legal claims.\n"),
        ("lgpd", "en", [FRAUD_CHECKS], "compelling_grounds", "The reason: Compelling legitimate grounds for the processing, or legal claims.\n"),
        ("ccpa", "en", [intake.RightDetails(RequestType.ERASURE)], "legal_claims",
         "The reason: Needed for the establishment, exercise or defence of legal claims.\n"),
        ("lgpd", "en", [intake.RightDetails(RequestType.ERASURE)], "legal_claims",
         "The reason: Needed for the establishment, exercise or defence of legal claims.\n"),
        ("uk_gdpr", "en", [intake.RightDetails(RequestType.ERASURE)], "legal_claims",
         "The reason: Needed for the establishment, exercise or defence of legal claims (Art. 17(3)(e) UK GDPR).\n"),
    ],
)
@pytest.mark.django_db
def test_a_rejection_on_a_ground_of_one_right_cites_its_gdpr_article_only_under_the_gdpr(dpo, regime, language, rights, ground, ground_shown):
    request = request_in_status(Status.IN_PROGRESS, regime=regime, language=language, rights=rights)
    if RequestType.ERASURE in request.requested_rights:
        erasure_kept_whole(request)
    handling.request_reject(
        request=request, actor=Actor.staff(dpo), ground=ground, explanation="Our reasons.", expected_status=Status.IN_PROGRESS
    )
    body = last_letter(request).body
    assert ground_shown in body
    if regime in ("ccpa", "lgpd"):
        assert "Art." not in body and "GDPR" not in body


@pytest.mark.django_db
def test_the_reject_form_offers_a_ground_of_one_right_only_when_every_right_asked_is_that_one():
    from requests_app.staff.forms import RejectForm

    def grounds(*rights):
        request = request_in_status(Status.IN_PROGRESS, rights=list(rights))
        return set(dict(RejectForm(privacy_request=request).fields["ground"].choices))

    one_right_grounds = {"compelling_grounds", "data_accurate", "legal_claims", "legal_obligation", "rights_of_others"}
    assert grounds(FRAUD_CHECKS) & one_right_grounds == {"compelling_grounds"} and "other" in grounds(FRAUD_CHECKS)
    assert grounds(intake.RightDetails(RequestType.ERASURE)) & one_right_grounds == {"legal_claims", "legal_obligation"}
    # Other people's data is masked in the copy, never a reason to refuse access (Art. 15(4)); it may refuse the
    # data ported (Art. 20(4)).
    assert not grounds(intake.RightDetails(RequestType.ACCESS)) & one_right_grounds
    assert grounds(intake.RightDetails(RequestType.PORTABILITY)) & one_right_grounds == {"rights_of_others"}
    # Data found accurate (Art. 16) refuses a correction only.
    assert grounds(intake.RightDetails(RequestType.RECTIFICATION)) & one_right_grounds == {"data_accurate"}
    # Asked with another right, none: that right must be answered (refuse the one on completion instead).
    assert not one_right_grounds & grounds(FRAUD_CHECKS, intake.RightDetails(RequestType.ERASURE))
    assert not one_right_grounds & grounds(intake.RightDetails(RequestType.RECTIFICATION), intake.RightDetails(RequestType.ACCESS))
    marketing = intake.RightDetails(RequestType.OBJECTION, objection_processing="Promotional calls", direct_marketing=True)
    assert grounds(marketing) == {"identity_not_verified", "unfounded", "excessive"}


OTHER_PEOPLES_CALLS = "Your call records name the people you called."


@pytest.mark.django_db
def test_an_access_request_is_not_rejected_for_other_peoples_data_but_a_portability_request_may_be(dpo):
    """Art. 15(4) limits the copy only (recital 63: not "a refusal to provide all information"): rejected on it,
    the subject had neither the confirmation that we process their data nor the Art. 15(1) and 15(2) information."""
    access = request_in_status(Status.IN_PROGRESS)
    with pytest.raises(RequestError) as refusal:
        handling.request_reject(
            request=access, actor=Actor.staff(dpo), ground="rights_of_others", explanation=OTHER_PEOPLES_CALLS,
            expected_status=Status.IN_PROGRESS,
        )
    assert str(refusal.value).startswith(
        "The rights and freedoms of others (Art. 15(4)) limit only the copy of the data, never access itself"
    )
    assert "Mask the other people's data in the package instead: add the fields that identify them to “Masked fields”" in str(refusal.value)
    access.refresh_from_db()
    assert access.status == Status.IN_PROGRESS and not access.messages.exists()

    both = request_in_status(
        Status.IN_PROGRESS, rights=[intake.RightDetails(RequestType.ACCESS), intake.RightDetails(RequestType.PORTABILITY)]
    )
    with pytest.raises(RequestError, match=r"Mask the other people's data.* To refuse “Receive their data in a machine-readable format” on it, complete"):
        handling.request_reject(
            request=both, actor=Actor.staff(dpo), ground="rights_of_others", explanation=OTHER_PEOPLES_CALLS,
            expected_status=Status.IN_PROGRESS,
        )

    portability = request_in_status(Status.IN_PROGRESS, rights=[intake.RightDetails(RequestType.PORTABILITY)])
    handling.request_reject(
        request=portability, actor=Actor.staff(dpo), ground="rights_of_others", explanation=OTHER_PEOPLES_CALLS,
        expected_status=Status.IN_PROGRESS,
    )
    portability.refresh_from_db()
    assert portability.status == Status.REJECTED and portability.rejection_ground == "rights_of_others"
    assert OTHER_PEOPLES_CALLS in portability.messages.get().body


LIMIT_USE = intake.RightDetails(RequestType.LIMIT_USE)
FRAUD = "The request came from an address that filed 300 requests for other people's numbers today."


@pytest.mark.django_db
def test_a_ccpa_request_to_limit_is_not_rejected_for_an_unverified_identity(dpo):
    """CCPA Regulations § 7027(e): a business shall not require a verifiable consumer request for a request to limit."""
    request = request_in_status(Status.IN_PROGRESS, regime="ccpa", rights=[LIMIT_USE])
    with pytest.raises(RequestError, match=r"needs no verified identity \(CCPA Regulations § 7027\(e\)\)"):
        handling.request_reject(
            request=request, actor=Actor.staff(dpo), ground="identity_not_verified", explanation=NOT_PROVED, expected_status=Status.IN_PROGRESS
        )
    request.refresh_from_db()
    assert request.status == Status.IN_PROGRESS and not request.messages.exists()
    # Under the GDPR, who asks must still be known (Art. 12(6)).
    gdpr = request_in_status(Status.IN_PROGRESS, regime="gdpr", rights=[LIMIT_USE])
    identity_proof_asked(gdpr, dpo)
    handling.request_reject(
        request=gdpr, actor=Actor.staff(dpo), ground="identity_not_verified", explanation=NOT_PROVED, expected_status=Status.IN_PROGRESS
    )
    assert PrivacyRequest.objects.get(pk=gdpr.pk).status == Status.REJECTED


@pytest.mark.django_db
def test_a_ccpa_request_to_limit_may_be_rejected_as_fraudulent_with_the_reasons(dpo):
    """CCPA Regulations § 7027(f): a good-faith, reasonable and documented belief that it is fraudulent, explained."""
    request = request_in_status(Status.IN_PROGRESS, regime="ccpa", rights=[LIMIT_USE])
    with pytest.raises(RequestError, match="the letter must give the reasons"):
        handling.request_reject(request=request, actor=Actor.staff(dpo), ground="fraudulent", explanation=" ", expected_status=Status.IN_PROGRESS)
    handling.request_reject(request=request, actor=Actor.staff(dpo), ground="fraudulent", explanation=FRAUD, expected_status=Status.IN_PROGRESS)
    request.refresh_from_db()
    assert request.status == Status.REJECTED and request.rejection_ground == "fraudulent"
    body = last_letter(request).body
    assert "The reason: A documented good-faith belief that the request is fraudulent (CCPA Regs. § 7027(f)).\n\n" in body
    assert FRAUD in body


@pytest.mark.parametrize(
    ("regime", "rights"),
    [
        ("ccpa", [intake.RightDetails(RequestType.ACCESS)]),
        ("ccpa", [intake.RightDetails(RequestType.ERASURE)]),
        ("gdpr", [LIMIT_USE]),
        ("ccpa", [intake.RightDetails(RequestType.ACCESS), LIMIT_USE]),
    ],
)
@pytest.mark.django_db
def test_only_a_ccpa_request_to_limit_is_rejected_as_fraudulent(dpo, regime, rights):
    request = request_in_status(Status.IN_PROGRESS, regime=regime, rights=rights)
    with pytest.raises(RequestError, match=r"\(CCPA Regulations § 7027\(f\)\) can refuse only a request to limit the use of sensitive"):
        handling.request_reject(request=request, actor=Actor.staff(dpo), ground="fraudulent", explanation=FRAUD, expected_status=Status.IN_PROGRESS)
    request.refresh_from_db()
    assert request.status == Status.IN_PROGRESS and not request.messages.exists()


@pytest.mark.django_db
def test_the_reject_form_offers_the_fraud_ground_for_a_ccpa_request_to_limit_instead_of_an_unverified_identity():
    from requests_app.staff.forms import RejectForm

    def grounds(regime, *rights):
        request = request_in_status(Status.IN_PROGRESS, regime=regime, rights=list(rights))
        return set(dict(RejectForm(privacy_request=request).fields["ground"].choices))

    assert grounds("ccpa", LIMIT_USE) == {"fraudulent", "unfounded", "excessive"}  # § 7027(f), Civ. Code § 1798.145(h)(3)
    assert "identity_not_verified" not in grounds("ccpa", LIMIT_USE)
    assert "identity_not_verified" in grounds("gdpr", LIMIT_USE) and "fraudulent" not in grounds("gdpr", LIMIT_USE)
    access = intake.RightDetails(RequestType.ACCESS)
    assert "identity_not_verified" in grounds("ccpa", access) and "fraudulent" not in grounds("ccpa", access)
    assert not {"identity_not_verified", "fraudulent"} & grounds("ccpa", access, LIMIT_USE)


BELGIAN_AUTHORITY = (
    "the Data Protection Authority (Autorité de protection des données / Gegevensbeschermingsautoriteit), "
    "Rue de la Presse 35, 1000 Brussels, www.dataprotectionauthority.be, which takes complaints in French, Dutch or German"
)


@pytest.mark.django_db
def test_a_ccpa_rejection_names_the_californian_and_the_belgian_authorities_and_the_courts(dpo):
    """The controller is in Brussels: the GDPR applies to every request (Art. 3(1)), and with it the right to
    complain to a supervisory authority and to a judicial remedy (Art. 12(4), 77), besides the regime's own."""
    request = request_in_status(Status.IN_PROGRESS, regime="ccpa")
    identity_proof_asked(request, dpo)
    handling.request_reject(
        request=request, actor=Actor.staff(dpo), ground="identity_not_verified", explanation=NOT_PROVED, expected_status=Status.IN_PROGRESS
    )
    assert (
        "You have the right to lodge a complaint with a supervisory authority, in particular the California Privacy "
        f"Protection Agency, cppa.ca.gov, or the California Attorney General, or {BELGIAN_AUTHORITY}, and to seek a "
        "judicial remedy before the courts."
    ) in last_letter(request).body


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("regime", "language", "authorities"),
    [
        ("lgpd", "de", ["bei der Autoridade Nacional de Proteção de Dados (ANPD)", "der Datenschutzbehörde"]),
        ("uk_gdpr", "nl", ["het Information Commissioner's Office (ICO)", "de Gegevensbeschermingsautoriteit (GBA), Drukpersstraat 35"]),
        ("gdpr", "nl", ["de Gegevensbeschermingsautoriteit (GBA), Drukpersstraat 35"]),
    ],
)
def test_a_rejection_names_the_regimes_authority_and_the_belgian_one_in_the_subjects_language(dpo, regime, language, authorities):
    request = request_in_status(Status.IN_PROGRESS, regime=regime, language=language)
    identity_proof_asked(request, dpo)
    handling.request_reject(
        request=request, actor=Actor.staff(dpo), ground="identity_not_verified", explanation=NOT_PROVED, expected_status=Status.IN_PROGRESS
    )
    body = last_letter(request).body
    for authority in authorities:
        assert authority in body
    assert body.count(" 35, 1000 Br") == 1  # the Belgian authority's address: named once, under the GDPR too


# --- Deleting the documents the subject sent ----------------------------------------------------------------------

ID_COPY = b"%PDF-1.4\n% a copy of an identity card\n"


def _document_sent(request, name="id-card.pdf", *, identity_document=False):
    """A document the subject sent with a reply on their status page, as stored."""
    return handling.subject_reply(
        request=request, body="", document=SimpleUploadedFile(name, ID_COPY), identity_document=identity_document
    ).attachments.get()


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["DPO", "Handler"])
def test_staff_who_work_the_request_delete_a_document_leaving_a_tombstone(role, django_capture_on_commit_callbacks):
    user = staff_in_role(role, username=f"{role.lower()}-deletes")
    request = request_in_status(Status.IN_PROGRESS)
    PrivacyRequest.objects.filter(pk=request.pk).update(assignee=user)
    document = _document_sent(request)
    stored_name = document.file.name
    assert default_storage.exists(stored_name)

    with django_capture_on_commit_callbacks(execute=True):
        handling.attachment_delete(attachment=document, actor=Actor.staff(user))

    document.refresh_from_db()
    assert (document.file.name, document.original_name, document.deleted_by) == ("", "", user)
    assert document.is_deleted and document.message_id is not None  # the reply still shows a document came with it
    assert not default_storage.exists(stored_name)
    event = request.events.get(action="attachment_deleted")
    # The public id only: the file's name may hold personal data, and the trail is never purged.
    assert (event.actor_id, event.data) == (user.id, {"attachment": str(document.public_id)})


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["Auditor", "Handler"])
def test_staff_who_do_not_work_the_request_cannot_delete_a_document(role, django_capture_on_commit_callbacks):
    request = request_in_status(Status.IN_PROGRESS)
    document = _document_sent(request)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(lifecycle.NotAllowed):
        handling.attachment_delete(attachment=document, actor=Actor.staff(staff_in_role(role, username="not-on-it")))

    document.refresh_from_db()
    assert (document.original_name, document.deleted_at) == ("id-card.pdf", None)
    assert default_storage.exists(document.file.name)
    assert not request.events.filter(action="attachment_deleted").exists()


@pytest.mark.django_db
def test_a_document_of_a_closed_request_is_deleted_too_but_only_once(dpo):
    request = request_in_status(Status.IN_PROGRESS)
    document = _document_sent(request)
    lifecycle.transition(request, "complete", actor=Actor.staff(dpo))
    handling.attachment_delete(attachment=document, actor=Actor.staff(dpo))
    with pytest.raises(RequestError, match="This document was deleted already."):
        handling.attachment_delete(attachment=document, actor=Actor.staff(dpo))
    assert request.events.filter(action="attachment_deleted").count() == 1


@pytest.mark.django_db
def test_a_file_whose_removal_never_ran_after_the_commit_is_an_orphan_the_nightly_job_deletes(dpo, django_capture_on_commit_callbacks):
    """The deletion commits first and removes the file after: a worker killed in between leaves the file, which
    no row refers to any more."""

    request = request_in_status(Status.IN_PROGRESS)
    document = _document_sent(request)
    stored_name = document.file.name
    with django_capture_on_commit_callbacks(execute=False) as removals:  # committed, the removal never run
        handling.attachment_delete(attachment=document, actor=Actor.staff(dpo))
    assert len(removals) == 1 and default_storage.exists(stored_name)

    two_days_ago = (timezone.now() - datetime.timedelta(days=2)).timestamp()
    os.utime(default_storage.path(stored_name), (two_days_ago, two_days_ago))
    assert delete_orphan_files() == 1
    assert not default_storage.exists(stored_name)


@pytest.mark.django_db
def test_verifying_identity_by_document_deletes_the_documents_the_subject_sent_and_keeps_the_scanned_letter(
    dpo, django_capture_on_commit_callbacks
):

    request = request_in_status(Status.IDENTITY_CHECK)
    letter = intake.attachment_add(request=request, file=SimpleUploadedFile("letter.pdf", ID_COPY), actor=Actor.staff(dpo))
    sent_before_the_question = _document_sent(request, "passport.pdf")
    handling.request_information(request=request, actor=Actor.staff(dpo), body="Please send a copy of your ID.", expected_status=Status.IDENTITY_CHECK)
    answer = _document_sent(request, "id-card.pdf")
    stored = [sent_before_the_question.file.name, answer.file.name]
    email = request.identities.get(kind=IdentityKind.EMAIL)

    with django_capture_on_commit_callbacks(execute=True):
        handling.identity_verify(
            request=request, actor=Actor.staff(dpo), identity_ids=[email.id], method=VerificationMethod.DOCUMENT,
            expected_status=Status.IDENTITY_CHECK, delete_documents=True,
        )

    assert set(request.attachments.filter(deleted_at__isnull=False).values_list("public_id", flat=True)) == {
        sent_before_the_question.public_id, answer.public_id
    }
    assert not any(default_storage.exists(name) for name in stored)
    letter.refresh_from_db()
    assert not letter.is_deleted and default_storage.exists(letter.file.name)
    deleted_events = request.events.filter(action="attachment_deleted")
    assert sorted(e.data["attachment"] for e in deleted_events) == sorted(str(a.public_id) for a in (sent_before_the_question, answer))
    # After the verification, in its transaction: one commit records both, or neither.
    assert deleted_events.first().sequence > request.events.get(action="identity_verified").sequence


@pytest.mark.django_db
def test_verifying_identity_keeps_the_documents_unless_asked(dpo):
    request = request_in_status(Status.IN_PROGRESS)
    document = _document_sent(request)
    email = request.identities.get(kind=IdentityKind.EMAIL)
    handling.identity_verify(
        request=request, actor=Actor.staff(dpo), identity_ids=[email.id], method=VerificationMethod.DOCUMENT,
        expected_status=Status.IN_PROGRESS,
    )
    document.refresh_from_db()
    assert not document.is_deleted


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "deleted"), [(VerificationMethod.DOCUMENT, True), (VerificationMethod.ACCOUNT_RECORDS, False)])
def test_the_verify_form_deletes_the_documents_only_with_the_method_document(dpo, method, deleted):
    """Ticked by default; another method did not rest on the documents, so they stay for staff to decide."""
    request = request_in_status(Status.IN_PROGRESS)
    _document_sent(request)
    email = request.identities.get(kind=IdentityKind.EMAIL)
    form = IdentityVerifyForm(privacy_request=request)
    assert form.fields["delete_documents"].initial is True
    form = IdentityVerifyForm({"identities": [email.id], "method": method, "delete_documents": "on"}, privacy_request=request)
    assert form.is_valid()
    assert form.cleaned_data["delete_documents"] is deleted


@pytest.mark.django_db
def test_the_verify_form_offers_no_deletion_when_there_is_no_document_left(dpo):
    request = request_in_status(Status.IN_PROGRESS)
    assert "delete_documents" not in IdentityVerifyForm(privacy_request=request).fields
    handling.attachment_delete(attachment=_document_sent(request), actor=Actor.staff(dpo))
    assert "delete_documents" not in IdentityVerifyForm(privacy_request=request).fields
    email = request.identities.get(kind=IdentityKind.EMAIL)
    form = IdentityVerifyForm({"identities": [email.id], "method": VerificationMethod.DOCUMENT}, privacy_request=request)
    assert form.is_valid() and form.cleaned_data["delete_documents"] is False


@pytest.mark.django_db
def test_the_retention_purge_removes_the_files_left_and_the_tombstones(dpo, django_capture_on_commit_callbacks):
    request = request_in_status(Status.IN_PROGRESS)
    deleted, kept = _document_sent(request, "passport.pdf"), _document_sent(request, "bill.pdf")
    with django_capture_on_commit_callbacks(execute=True):
        handling.attachment_delete(attachment=deleted, actor=Actor.staff(dpo))
    with django_capture_on_commit_callbacks(execute=True):  # a tombstone has no file left to remove
        intake.purge_personal_data(request)
    assert not request.attachments.exists()
    assert not default_storage.exists(kept.file.name)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("regime", "right", "told"),
    [("ccpa", RequestType.ERASURE, True), ("ccpa", RequestType.ACCESS, False), ("gdpr", RequestType.ERASURE, False)],
)
def test_only_a_ccpa_erasure_rejection_says_a_record_of_the_request_is_kept(dpo, regime, right, told):
    """CCPA Regulations § 7022(e): whether or not the business complied with a request to delete, it tells the
    consumer it keeps a record of the request, as § 7101(a) requires."""
    request = request_in_status(Status.IN_PROGRESS, regime=regime, rights=[intake.RightDetails(right)])
    handling.request_reject(
        request=request, actor=Actor.staff(dpo), ground="excessive", explanation="The tenth request this week.",
        expected_status=Status.IN_PROGRESS,
    )
    record_kept = "We will keep a record of your request, as the law requires (Cal. Code Regs. tit. 11, § 7101(a))."
    body = last_letter(request).body
    assert (record_kept in body) is told
    if told:
        assert f"{record_kept}\n\nYou have the right to lodge a complaint" in body


@pytest.mark.django_db
def test_an_unverified_identity_refuses_nothing_before_the_subject_was_asked_to_identify_themselves(dpo):
    """Art. 11(2), 12(2), 12(6); EDPB Guidelines 01/2022, paras 65-68: a confirmed email address and work started,
    nobody ever asked the subject for anything, so their identity was never in doubt they could answer."""
    request = request_in_status(Status.IN_PROGRESS)
    with pytest.raises(RequestError, match="never asked for information that identifies them"):
        handling.request_reject(
            request=request, actor=Actor.staff(dpo), ground="identity_not_verified", explanation=NOT_PROVED,
            expected_status=Status.IN_PROGRESS,
        )
    request.refresh_from_db()
    assert request.status == Status.IN_PROGRESS and request.rejection_ground == "" and not request.messages.exists()
    # A pause of the clock asks the subject too: what we wait for is sent to them.
    handling.clock_pause(request=request, actor=Actor.staff(dpo), question="Please send a copy of a bill in your name.")
    handling.request_reject(
        request=request, actor=Actor.staff(dpo), ground="identity_not_verified", explanation=NOT_PROVED,
        expected_status=Status.IN_PROGRESS,
    )
    request.refresh_from_db()
    assert request.status == Status.REJECTED and request.rejection_ground == "identity_not_verified"


@pytest.mark.django_db
def test_an_unverified_identity_never_asked_and_without_reasons_is_told_both_at_once(dpo):
    request = request_in_status(Status.IN_PROGRESS)
    with pytest.raises(RequestError) as refused:
        handling.request_reject(
            request=request, actor=Actor.staff(dpo), ground="identity_not_verified", explanation="",
            expected_status=Status.IN_PROGRESS,
        )
    assert str(refused.value) == f"{handling.IDENTITY_NEVER_ASKED} {handling.IDENTITY_TO_EXPLAIN}"


@pytest.mark.django_db
def test_an_unverified_identity_needs_the_reasons_what_was_asked_and_why_it_is_not_enough(dpo):
    request = request_in_status(Status.IN_PROGRESS)
    identity_proof_asked(request, dpo)
    with pytest.raises(RequestError, match=r"what we asked them for, and why what they sent \(or did not send\) is not enough"):
        handling.request_reject(
            request=request, actor=Actor.staff(dpo), ground="identity_not_verified", explanation="  ",
            expected_status=Status.IN_PROGRESS,
        )
    request.refresh_from_db()
    assert request.status == Status.IN_PROGRESS and last_letter(request).subject != f"Your privacy request {request.reference}"


@pytest.mark.django_db
def test_a_rejection_for_an_unverified_identity_tells_the_subject_they_may_still_identify_themselves(dpo):
    request = request_in_status(Status.IN_PROGRESS)
    identity_proof_asked(request, dpo)
    handling.request_reject(
        request=request, actor=Actor.staff(dpo), ground="identity_not_verified", explanation=NOT_PROVED,
        expected_status=Status.IN_PROGRESS,
    )
    assert (
        f"{NOT_PROVED}\n\nYou may make a new request at any time, with information that identifies you: once we can "
        "verify who you are, we will answer it.\n\nYou have the right to lodge a complaint"
    ) in last_letter(request).body
    # Only for that ground: a subject refused on another has nothing to identify.
    other = request_in_status(Status.IN_PROGRESS)
    handling.request_reject(
        request=other, actor=Actor.staff(dpo), ground="excessive", explanation="The tenth request this week.",
        expected_status=Status.IN_PROGRESS,
    )
    assert "information that identifies you" not in last_letter(other).body


@pytest.mark.django_db
def test_a_ccpa_request_to_limit_is_not_rejected_on_other(dpo):
    """CCPA Regulations § 7027(f): a request to limit is denied for fraud only, or as manifestly unfounded."""
    request = request_in_status(Status.IN_PROGRESS, regime="ccpa", rights=[LIMIT_USE])
    with pytest.raises(RequestError, match=r"can be refused only for a documented good-faith belief that it is fraudulent .* not on “Other”\."):
        handling.request_reject(request=request, actor=Actor.staff(dpo), ground="other", explanation="We disagree.", expected_status=Status.IN_PROGRESS)
    request.refresh_from_db()
    assert request.status == Status.IN_PROGRESS and not request.messages.exists()


WITHDRAW_CONSENT = intake.RightDetails(RequestType.WITHDRAW_CONSENT)


@pytest.mark.parametrize("ground", ["other", "legal_obligation"])
@pytest.mark.django_db
def test_a_withdrawal_of_consent_is_refused_only_on_who_asks_or_how(dpo, ground):
    """Art. 7(3): consent may be withdrawn at any time; no interest or duty of ours weighs against it."""
    request = request_in_status(Status.IN_PROGRESS, rights=[WITHDRAW_CONSENT])
    with pytest.raises(RequestError, match=r"Consent can be withdrawn at any time \(Art\. 7\(3\)\): only an identity"):
        handling.request_reject(request=request, actor=Actor.staff(dpo), ground=ground, explanation="We disagree.", expected_status=Status.IN_PROGRESS)
    request.refresh_from_db()
    assert request.status == Status.IN_PROGRESS and not request.messages.exists()
    handling.request_reject(
        request=request, actor=Actor.staff(dpo), ground="excessive", explanation="The 40th today.", expected_status=Status.IN_PROGRESS
    )
    assert PrivacyRequest.objects.get(pk=request.pk).status == Status.REJECTED


@pytest.mark.django_db
def test_the_reject_form_offers_only_who_asks_or_how_against_a_withdrawal_of_consent():
    from requests_app.staff.forms import RejectForm

    request = request_in_status(Status.IN_PROGRESS, rights=[WITHDRAW_CONSENT, intake.RightDetails(RequestType.ACCESS)])
    assert set(dict(RejectForm(privacy_request=request).fields["ground"].choices)) == {"identity_not_verified", "unfounded", "excessive"}


@pytest.mark.django_db
@pytest.mark.parametrize("method", [VerificationMethod.EMAIL_LINK, VerificationMethod.ACCOUNT_RECORDS, VerificationMethod.DOCUMENT])
def test_verifying_identity_by_any_method_deletes_the_documents_sent_as_proof_of_identity_and_keeps_the_others(
    dpo, method, django_capture_on_commit_callbacks
):
    """The request form's notice promises a copy of an ID is deleted once we have checked who the subject is: not
    only when staff checked it by the document itself."""
    request = request_in_status(Status.IDENTITY_CHECK)
    id_copy = _document_sent(request, "id.pdf", identity_document=True)
    bill = _document_sent(request, "bill.pdf")
    stored = id_copy.file.name
    email = request.identities.get(kind=IdentityKind.EMAIL)

    with django_capture_on_commit_callbacks(execute=True):
        handling.identity_verify(
            request=request, actor=Actor.staff(dpo), identity_ids=[email.id], method=method, expected_status=Status.IDENTITY_CHECK
        )

    id_copy.refresh_from_db()
    bill.refresh_from_db()
    assert (id_copy.is_deleted, id_copy.original_name, id_copy.deleted_by) == (True, "", dpo)
    assert not default_storage.exists(stored)
    assert not bill.is_deleted and default_storage.exists(bill.file.name)  # proof for a correction, perhaps: staff judge
    event = request.events.get(action="attachment_deleted")
    assert event.data == {"attachment": str(id_copy.public_id)}
    assert event.sequence > request.events.get(action="identity_verified").sequence  # in the verification's transaction


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "close"),
    [
        (Status.IDENTITY_CHECK, lambda request, dpo: intake.request_withdraw(request=request, actor=Actor.subject())),
        (Status.IDENTITY_CHECK, lambda request, dpo: lifecycle.transition(request, "reject", actor=Actor.staff(dpo))),
        (Status.IN_PROGRESS, lambda request, dpo: lifecycle.transition(request, "complete", actor=Actor.staff(dpo))),
    ],
)
def test_a_request_closed_before_its_identity_check_ends_deletes_the_documents_sent_as_proof_of_identity(
    dpo, status, close, django_capture_on_commit_callbacks
):
    """Withdrawn, rejected or completed with the copy of an ID never checked (or sent after the check): the check it
    was sent for is over, so it goes now, not with the rest of the request's data when its retention ends."""
    request = request_in_status(status)
    id_copy = _document_sent(request, "id.pdf", identity_document=True)
    bill = _document_sent(request, "bill.pdf")
    stored = id_copy.file.name

    with django_capture_on_commit_callbacks(execute=True):
        close(request, dpo)

    id_copy.refresh_from_db()
    bill.refresh_from_db()
    assert (id_copy.is_deleted, id_copy.original_name, id_copy.deleted_by) == (True, "", None)  # by the system
    assert not default_storage.exists(stored)
    assert not bill.is_deleted and default_storage.exists(bill.file.name)
    event = request.events.get(action="attachment_deleted")
    assert (event.actor_kind, event.data) == ("system", {"attachment": str(id_copy.public_id)})


@pytest.mark.django_db
def test_the_verify_form_offers_to_delete_only_the_documents_not_sent_as_proof_of_identity(dpo):
    """Those go whatever the box says: offered for them alone, the box would promise a choice there is not."""
    request = request_in_status(Status.IN_PROGRESS)
    _document_sent(request, "id.pdf", identity_document=True)
    assert "delete_documents" not in IdentityVerifyForm(privacy_request=request).fields
    _document_sent(request, "bill.pdf")
    assert "delete_documents" in IdentityVerifyForm(privacy_request=request).fields


@pytest.mark.parametrize(
    ("regime", "rights", "ground", "named"),
    [
        ("gdpr", [intake.RightDetails(RequestType.OBJECTION, objection_processing="Calls", direct_marketing=True)],
         "compelling_grounds", "an agent who made the request without showing their authority to act for the subject"),
        ("ccpa", [intake.RightDetails(RequestType.OBJECTION, objection_processing="Calls", direct_marketing=True)],
         "other", "an agent who made the request without showing their authority to act for the subject"),
        ("gdpr", [WITHDRAW_CONSENT], "legal_obligation",
         "an agent who made the request without showing their authority to act for the subject"),
        ("ccpa", [WITHDRAW_CONSENT], "other", "an agent who made the request without showing their authority to act for the subject"),
        ("ccpa", [LIMIT_USE], "other", "or when an agent made it without showing their authority to act for the consumer"),
    ],
)
@pytest.mark.django_db
def test_the_refusal_of_a_right_only_who_asks_can_refuse_names_an_agents_authority_not_shown(dpo, regime, rights, ground, named):
    """An agent's authority not shown refuses these rights too (models.GROUNDS_AGAINST_A_MARKETING_OBJECTION,
    GROUNDS_AGAINST_A_CCPA_LIMIT): the message that lists what can refuse them must not leave it out."""
    request = request_in_status(Status.IN_PROGRESS, regime=regime, rights=rights)
    with pytest.raises(RequestError) as refusal:
        handling.request_reject(request=request, actor=Actor.staff(dpo), ground=ground, explanation="We disagree.", expected_status=Status.IN_PROGRESS)
    assert named in str(refusal.value)
