"""The completion letter states what the source actions did: erased, kept under Art. 17(3) and why,
rectified, and which recipients were told (Art. 19), in the subject's language."""

import datetime

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from requests_app.models import (
    ActionStatus,
    ConnectorKind,
    EraseStrategy,
    ErasureException,
    ExportKind,
    ExportPackage,
    IdentityKind,
    LegalBasis,
    LegalHold,
    LegalHoldTranslation,
    Message,
    NoticeStatus,
    PrivacyRequest,
    Recipient,
    RejectionGround,
    RequestType,
    ResponseTemplate,
    SourceAction,
    SourceCategory,
    SourceField,
    SourceFieldTranslation,
    SourceSystem,
    Status,
    TemplatePurpose,
)
from requests_app import roles
from requests_app.audit import Actor
from requests_app.lifecycle import RequestError
from requests_app.services import actions, certificate, exports, handling, notices
from tests.actions.conftest import ANA_PHONE, verified_request
from tests.factories import erasure_kept_whole, released_package, staff_in_role
from tests.actions.test_notices import carry_out_actions, correct_the_city


def _complete(request, actor):
    handling.request_complete(request=request, actor=actor, letter="Thank you for your patience.", expected_status=request.status)
    return Message.objects.filter(request=request).latest("created_at")  # the completion letter


def test_the_letter_names_the_erased_and_the_kept_data_with_its_basis(
    crm, cdr, erasure_request, dpo_actor, django_capture_on_commit_callbacks
):
    until = timezone.localdate() + datetime.timedelta(days=365)
    LegalHold.objects.create(source=cdr, ground=ErasureException.LEGAL_OBLIGATION, basis="Telecom law: call records kept 12 months.", until=until)
    Recipient.objects.create(source=crm, name="Billing partner", country="Belgium", notification_email="art19@partner.example")
    excused = Recipient.objects.create(source=crm, name="Old roaming partner", country="France")  # no address: fails
    Recipient.objects.create(source=cdr, name="Interconnect partner", country="Netherlands", notification_email="x@ic.example")
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    carry_out_actions(erasure_request, dpo_actor, django_capture_on_commit_callbacks)
    notices.waive(
        notice=erasure_request.recipient_notices.get(recipient=excused), actor=dpo_actor,
        reason="impossible", note="The company no longer exists.",
    )

    body = _complete(erasure_request, dpo_actor).body
    assert body.startswith("We have completed your request") and "Thank you for your patience." in body
    assert "We erased your data in CRM: contact information." in body
    assert "Telecom law: call records kept 12 months. The right to erasure" in body  # one full stop, not two
    assert "The right to erasure does not apply to this data: compliance with a legal obligation (Art. 17(3)(b) GDPR)." in body
    assert f"We will keep it until {until.day} {until:%B} {until.year} at the latest" in body
    assert "told the following recipients of your data about these changes (Article 19 GDPR): Billing partner." in body
    assert "We did not tell Old roaming partner (Article 19 GDPR): impossible. The company no longer exists." in body
    assert "in Call records:" not in body  # nothing was erased there,
    assert "Interconnect partner" not in body  # so its recipient had nothing to be told
    # Keeping the call records refuses part of the erasure: the letter says how to complain (Art. 12(4)).
    assert body.endswith("and to seek a judicial remedy before the courts.")
    assert "lodge a complaint with a supervisory authority, in particular the Data Protection Authority" in body


@pytest.mark.parametrize(
    ("template", "signed_off_last"),
    [
        ("Dear subject,\n\n{{ body }}\n\n{{ outcome }}\n\nKind regards,\nThe DPO", True),
        # Written before {{ outcome }} existed: the paragraphs still come, at the end, as they did.
        ("Dear subject,\n\n{{ body }}\n\nKind regards,\nThe DPO", False),
    ],
)
def test_the_paragraphs_the_law_requires_go_where_the_template_places_them(
    crm, cdr, erasure_request, dpo_actor, django_capture_on_commit_callbacks, template, signed_off_last
):
    """Not after the DPO's "Kind regards": what was kept and why (Art. 17(3)), the recipients told (Art. 19), the
    right to complain."""
    ResponseTemplate.objects.create(purpose=TemplatePurpose.COMPLETION, language="en", subject="Done", body=template)
    LegalHold.objects.create(
        source=cdr, ground=ErasureException.LEGAL_OBLIGATION, basis="Telecom law: call records kept 12 months.",
        until=timezone.localdate() + datetime.timedelta(days=365),
    )
    Recipient.objects.create(source=crm, name="Billing partner", country="Belgium", notification_email="art19@partner.example")
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    carry_out_actions(erasure_request, dpo_actor, django_capture_on_commit_callbacks)

    body = _complete(erasure_request, dpo_actor).body

    assert body.startswith("Dear subject,\n\nThank you for your patience.\n\n")
    sign_off = body.index("Kind regards,\nThe DPO")
    for paragraph in (
        "The right to erasure does not apply to this data: compliance with a legal obligation (Art. 17(3)(b) GDPR).",
        "told the following recipients of your data about these changes (Article 19 GDPR): Billing partner.",
        "We erased your data in CRM: contact information.",
        "lodge a complaint with a supervisory authority",
    ):
        assert body.count(paragraph) == 1 and (body.index(paragraph) < sign_off) == signed_off_last
    assert body.endswith("Kind regards,\nThe DPO") == signed_off_last
    assert "\x00" not in body and "\n\n\n" not in body


@pytest.mark.parametrize("regime", ["ccpa", "lgpd"])
def test_a_letter_under_another_law_than_the_gdpr_cites_no_gdpr_article(crm, cdr, dpo_actor, django_capture_on_commit_callbacks, regime):
    """As its rejection ground (handling.ground_in_letter): the subject relies on their own law, and so does the
    certificate, which may be shown to them (wording.CITATIONS)."""
    request = verified_request(RequestType.ERASURE, regime=regime)
    LegalHold.objects.create(
        source=cdr, ground=ErasureException.LEGAL_OBLIGATION, basis="Telecom law", until=timezone.localdate() + datetime.timedelta(days=365)
    )
    Recipient.objects.create(source=crm, name="Billing partner", country="Belgium", notification_email="art19@partner.example")
    excused = Recipient.objects.create(source=crm, name="Old roaming partner", country="France")
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out_actions(request, dpo_actor, django_capture_on_commit_callbacks)
    notices.waive(notice=request.recipient_notices.get(recipient=excused), actor=dpo_actor, reason="impossible", note="Gone.")

    body = _complete(request, dpo_actor).body
    assert "The right to erasure does not apply to this data: compliance with a legal obligation. We will keep it" in body
    # Each law's own duty to tell recipients is cited: the LGPD's Art. 18 §6, the CCPA's for a deletion.
    own_law = " (Article 18, §6 LGPD)" if regime == "lgpd" else " (Cal. Civ. Code § 1798.105(c)(1))"
    assert f"We told the following recipients of your data about these changes{own_law}: Billing partner." in body
    assert f"We did not tell Old roaming partner{own_law}: impossible. Gone." in body
    assert "GDPR" not in body and "Art" not in body.replace(own_law, "")
    held = certificate.render_certificate_html(request)
    assert "<td>Compliance with a legal obligation</td>" in held and "Art. 17" not in held


@pytest.mark.parametrize("regime", ["gdpr", "ccpa"])
def test_a_recipient_that_never_received_the_subjects_data_is_not_called_an_art_19_exception(
    crm, dpo_actor, client, django_capture_on_commit_callbacks, regime
):
    """The inventory lists the recipient for the source, but none of this person's data went to it: there
    was nothing to tell it, which is a fact, not the exception of an impossible or disproportionate notice."""
    request = verified_request(RequestType.ERASURE, regime=regime)
    partner = Recipient.objects.create(source=crm, name="Authorities", country="Belgium")
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out_actions(request, dpo_actor, django_capture_on_commit_callbacks)
    notices.waive(
        notice=request.recipient_notices.get(recipient=partner), actor=dpo_actor,
        reason="never_disclosed", note="No request from an authority ever concerned this person.",
    )

    body = _complete(request, dpo_actor).body
    assert (
        "We never disclosed your data to Authorities, so there was nothing to tell it. "
        "No request from an authority ever concerned this person."
    ) in body
    assert "We did not tell Authorities" not in body
    status_page = client.get(reverse("status", args=[request.reference, request.secret])).content.decode()
    assert "Authorities (Belgium): nothing to tell: it never received your data" in " ".join(status_page.split())


RECORD_KEPT = "We will keep a record of your request, as the law requires (Cal. Code Regs. tit. 11, § 7101(a))."


@pytest.mark.parametrize(("regime", "right", "told"), [
    ("ccpa", RequestType.ERASURE, True), ("gdpr", RequestType.ERASURE, False), ("ccpa", RequestType.RESTRICTION, False),
])
def test_only_a_ccpa_erasure_letter_says_a_record_of_the_request_is_kept(crm, dpo_actor, django_capture_on_commit_callbacks, regime, right, told):
    """CCPA Regulations § 7022(e): answering a request to delete, the business tells the consumer it keeps a record
    of the request, as § 7101(a) requires."""
    request = verified_request(right, regime=regime)
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out_actions(request, dpo_actor, django_capture_on_commit_callbacks)

    body = _complete(request, dpo_actor).body
    assert (RECORD_KEPT in body) is told
    if told:
        assert body.endswith(f"\n\n{RECORD_KEPT}")


def test_a_ccpa_erasure_refused_on_completion_says_a_record_of_the_request_is_kept(crm, dpo_actor):
    """Each right refused on its own ground: the letter that says so answers the request to delete too."""
    request = verified_request(RequestType.ERASURE, RequestType.RESTRICTION, regime="ccpa")
    erasure_kept_whole(request)
    refused = [
        handling.RightRefusal(RequestType.ERASURE, "legal_obligation", "Tax law keeps invoices ten years."),
        handling.RightRefusal(RequestType.RESTRICTION, "other", "The data is accurate."),
    ]
    handling.request_complete(request=request, actor=dpo_actor, letter="", expected_status=request.status, refused=refused)

    body = Message.objects.filter(request=request).latest("created_at").body
    assert f"{RECORD_KEPT}\n\nYou have the right to lodge a complaint" in body


def test_a_letter_under_the_uk_gdpr_cites_the_articles_it_numbers_alike(cdr, dpo_actor, django_capture_on_commit_callbacks):
    request = verified_request(RequestType.ERASURE, regime="uk_gdpr")
    LegalHold.objects.create(
        source=cdr, ground=ErasureException.LEGAL_OBLIGATION, basis="Telecom law", until=timezone.localdate() + datetime.timedelta(days=365)
    )
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out_actions(request, dpo_actor, django_capture_on_commit_callbacks)
    assert "compliance with a legal obligation (Art. 17(3)(b) UK GDPR)." in _complete(request, dpo_actor).body


def _codes_kept_under_a_hold(crm, until=None, basis="Pending dispute over unpaid invoices") -> LegalHold:
    """The CRM's erasure replaces the email address with a keyed hash, under a hold on the codes."""
    crm.categories.get().fields.filter(name="email").update(erase_strategy=EraseStrategy.HASH)
    return LegalHold.objects.create(
        source=crm, ground=ErasureException.LEGAL_CLAIMS, basis=basis, pseudonyms_only=True,
        until=until or timezone.localdate() + datetime.timedelta(days=365),
    )


def test_an_erasure_that_kept_codes_is_not_called_an_erasure_of_them_and_says_why_they_were_kept(
    crm, erasure_request, dpo_actor, django_capture_on_commit_callbacks
):
    """QA: the letter said "We erased your data in CRM", then that the email address was replaced by codes that remain
    personal data, with no ground for keeping them: it must say what was done, and why the codes were kept (Art. 17(3))."""
    until = timezone.localdate() + datetime.timedelta(days=365)
    _codes_kept_under_a_hold(crm, until)
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    carry_out_actions(erasure_request, dpo_actor, django_capture_on_commit_callbacks)

    body = _complete(erasure_request, dpo_actor).body
    assert "We erased your data in CRM: contact information.\n" not in body
    assert (
        "We erased your data in CRM: contact information, except email address, which we replaced with codes that we "
        "can still match to you: they remain your personal data.\n\n"
        "We kept the codes that replaced email address in CRM, because: Pending dispute over unpaid invoices. The right to "
        "erasure does not apply to this data: establishment, exercise or defence of legal claims (Art. 17(3)(e) GDPR). We will "
        f"keep them until {until.day} {until:%B} {until.year} at the latest."
    ) in body
    # The city beside the codes still relates to the subject: it is not said to identify them no more.
    assert "we kept city" not in body
    # Data kept refuses the erasure in part: the letter says how to complain (Art. 12(4)).
    assert body.endswith("and to seek a judicial remedy before the courts.")
    html = certificate.render_certificate_html(erasure_request)
    assert "only the codes that replaced subscribers.email" in html and "Pending dispute over unpaid invoices" in html
    assert "pseudonyms, still personal data): subscribers.email." in html


def test_codes_an_earlier_erasure_kept_on_no_recorded_ground_are_not_called_erased(
    crm, erasure_request, dpo_actor, django_capture_on_commit_callbacks
):
    """Carried out before the codes needed a hold: the letter names them, and that data was kept, so the subject may complain."""
    _codes_kept_under_a_hold(crm)
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    carry_out_actions(erasure_request, dpo_actor, django_capture_on_commit_callbacks)
    action = erasure_request.source_actions.get()
    action.dry_run.pop("pseudonym_holds")  # as such an erasure's dry run recorded it
    SourceAction.objects.filter(pk=action.pk).update(dry_run=action.dry_run)

    body = _complete(erasure_request, dpo_actor).body
    assert "contact information, except email address, which we replaced with codes that we can still match to you" in body
    assert "We kept the codes" not in body
    assert certificate.not_granted_in_full(erasure_request)
    assert body.endswith("and to seek a judicial remedy before the courts.")


def test_the_letter_says_which_fields_an_erasure_left_in_the_records_it_anonymised(
    crm, erasure_request, dpo_actor, django_capture_on_commit_callbacks
):
    """QA found the record still in the CRM after a letter that said the data was erased: what an anonymising erasure
    leaves, as the inventory says to keep it, is named as kept. Not claimed to identify the subject no longer (a DPO
    found a customer reference so named): whether it does is the DPO's judgement, which the subject may contest, and
    the request is closed by then, its status page taking no message: the letter says where to write."""
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    carry_out_actions(erasure_request, dpo_actor, django_capture_on_commit_callbacks)

    body = _complete(erasure_request, dpo_actor).body
    assert (
        "We erased your data in CRM: contact information.\n\n"
        "In CRM, we kept city, and erased the other details about you there. If you believe that what we kept still "
        f"identifies you, write to our data protection officer at {settings.DPO_CONTACT_EMAIL}, quoting the reference "
        f"{erasure_request.reference}."
    ) in body
    assert "no longer identifies" not in body
    assert "lodge a complaint" not in body  # nothing of theirs was kept
    page = certificate.render_certificate_html(erasure_request)
    assert "anonymised rows (the inventory’s erasure setting “keep”): subscribers.city." in page
    assert "not personal data" not in page


def test_a_restriction_is_not_said_to_leave_fields_as_they_were(crm, dpo_actor, django_capture_on_commit_callbacks):
    """Only an erasure that anonymised the records left some of their fields: a restriction leaves them all."""
    request = verified_request(RequestType.RESTRICTION)
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out_actions(request, dpo_actor, django_capture_on_commit_callbacks)
    assert request.source_actions.get().dry_run["kept_fields"] == {}

    assert "we kept" not in _complete(request, dpo_actor).body
    assert "Left as they were" not in certificate.render_certificate_html(request)


def test_the_letter_names_the_pseudonyms_the_erasure_made_not_those_the_inventory_lists_now(
    crm, erasure_request, dpo_actor, django_capture_on_commit_callbacks
):
    _codes_kept_under_a_hold(crm)
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    carry_out_actions(erasure_request, dpo_actor, django_capture_on_commit_callbacks)
    # After the erasure, the inventory's email strategy changes from a keyed hash to emptying it, and the
    # city, kept by the erasure, now gets a keyed hash: neither changes what was done.
    contact = crm.categories.get()
    contact.fields.filter(name="email").update(erase_strategy=EraseStrategy.NULL)
    contact.fields.filter(name="city").update(erase_strategy=EraseStrategy.HASH)

    body = _complete(erasure_request, dpo_actor).body
    assert "except email address, which we replaced with codes" in body
    assert "city" not in body


def test_the_letter_names_rectified_fields_and_restrictions_not_values(crm, dpo_actor, django_capture_on_commit_callbacks):
    request = verified_request(RequestType.RECTIFICATION, RequestType.RESTRICTION)
    correct_the_city(request, crm, dpo_actor, django_capture_on_commit_callbacks, "Antwerpen")

    body = _complete(request, dpo_actor).body
    assert "lodge a complaint" not in body  # nothing was refused
    assert "We corrected the following in CRM: city." in body
    assert "We restricted the processing of your data in CRM." in body
    assert "Antwerpen" not in body
    assert "Article 19" not in body  # the CRM has no recipients


def test_a_correction_to_the_value_already_held_is_not_called_a_correction(crm, dpo_actor, django_capture_on_commit_callbacks):
    """The row matched and nothing changed: neither the letter nor a recipient may hear of a correction."""
    Recipient.objects.create(source=crm, name="Billing partner", country="Belgium", notification_email="art19@partner.example")
    request = verified_request(RequestType.RECTIFICATION)
    correct_the_city(request, crm, dpo_actor, django_capture_on_commit_callbacks, "Gent")

    summary = certificate.outcome_summary(request)
    assert "Your data in CRM already held the values you asked for: nothing needed correcting." in summary
    assert "We corrected" not in summary
    assert certificate.nothing_corrected(request)  # so completion waits for the rectification to be refused, with why
    assert request.recipient_notices.get().status == NoticeStatus.NOT_NEEDED


def test_a_request_without_source_actions_gets_the_letter_and_where_its_copy_is(db, dpo_actor, django_capture_on_commit_callbacks):
    request = verified_request(RequestType.ACCESS)
    released_package(request)
    body = _complete(request, dpo_actor).body
    assert body.split("\n\n")[1:] == [
        "Thank you for your patience.",
        "Your copy of your data is ready on your request's status page: you can download it until "
        f"{_moment(request.exports.get().expires_at)} (5 downloads left).",
    ]


def _moment(value) -> str:
    """A moment as an English letter writes it (DATETIME_FORMAT, Brussels time): "8 March 2026, 14:05 CET"."""
    local = timezone.localtime(value)
    return f"{local.day} {local:%B} {local.year}, {local:%H:%M} {local:%Z}"


def _released(request, dpo_actor, kind=ExportKind.ACCESS) -> ExportPackage:
    export = exports.export_start(request=request, actor=dpo_actor, kind=kind)
    exports.compile_export(export_id=export.id)
    return exports.export_release(export=ExportPackage.objects.get(pk=export.pk), actor=dpo_actor)


def test_the_letter_of_an_access_request_says_where_the_copy_is_until_when_and_how_many_downloads_are_left(
    crm, cdr, dpo_actor, settings, tmp_path, django_capture_on_commit_callbacks
):
    """QA: the letter said only "We have completed your request (Access a copy of my data)": nothing of the copy."""
    settings.EXPORT_WORK_DIR = str(tmp_path / "export-work")
    request = verified_request(RequestType.ACCESS, RequestType.ERASURE)
    export = _released(request, dpo_actor)
    ExportPackage.objects.filter(pk=export.pk).update(download_count=1)  # the subject downloaded it once already
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out_actions(request, dpo_actor, django_capture_on_commit_callbacks)

    lines = _complete(request, dpo_actor).body.split("\n\n")
    assert (
        "Your copy of your data is ready on your request's status page: you can download it until "
        f"{_moment(export.expires_at)} (4 downloads left)."
    ) in lines
    assert "We erased your data in CRM: contact information." in lines  # the erasure's part, as before
    assert not any("found no" in line for line in lines)  # both systems held data of theirs


def test_the_letter_names_the_systems_a_copy_found_nothing_in(crm, cdr, dpo_actor, settings, tmp_path):
    """The report lists the systems searched without result; the letter said nothing of them when others held data."""
    settings.EXPORT_WORK_DIR = str(tmp_path / "export-work")
    request = verified_request(RequestType.ACCESS)
    request.identities.filter(kind=IdentityKind.EMAIL).update(value="nobody@example.com")  # the call records still match
    export = _released(request, dpo_actor)
    assert export.manifest["rows"] > 0

    lines = _complete(request, dpo_actor).body.split("\n\n")
    assert "We found no personal data about you in these systems: CRM." in lines
    assert not any("Call records" in line for line in lines)
    assert "We found no personal data about you in the systems we searched." not in lines


def test_the_letter_of_a_copy_that_found_nothing_says_where_the_answer_is(crm, cdr, dpo_actor, settings, tmp_path):
    settings.EXPORT_WORK_DIR = str(tmp_path / "export-work")
    request = verified_request(RequestType.ACCESS)
    request.identities.update(value="+32470000555")  # verified, and nothing of theirs anywhere
    export = _released(request, dpo_actor)

    lines = _complete(request, dpo_actor).body.split("\n\n")
    found_nothing = lines.index("We found no personal data about you in the systems we searched.")
    assert lines[found_nothing + 1] == (
        "Our answer, with the list of the systems we searched, is on your request's status page: you can download it "
        f"until {_moment(export.expires_at)} (5 downloads left)."
    )
    assert "Your copy of your data" not in " ".join(lines)


def test_the_letter_of_a_portability_request_says_where_the_data_is(crm, cdr, dpo_actor, settings, tmp_path):
    settings.EXPORT_WORK_DIR = str(tmp_path / "export-work")
    SourceSystem.objects.filter(pk=cdr.pk).update(legal_basis=LegalBasis.CONTRACT)  # portable too: nothing left out
    request = verified_request(RequestType.PORTABILITY)
    export = _released(request, dpo_actor, kind=ExportKind.PORTABILITY)
    ExportPackage.objects.filter(pk=export.pk).update(max_downloads=1)

    body = _complete(request, dpo_actor).body
    assert (
        "The data you gave us or that your use of our services produced is ready on your request's status page, in "
        f"structured, machine-readable formats: you can download it until {_moment(export.expires_at)} (1 download left)."
    ) in body
    assert "Your copy of your data" not in body


def test_the_letter_says_a_copy_used_up_or_expired_can_no_longer_be_downloaded(db, dpo_actor):
    used_up = verified_request(RequestType.ACCESS)
    ExportPackage.objects.filter(pk=released_package(used_up).pk).update(download_count=5)
    expired = verified_request(RequestType.ACCESS)
    export = released_package(expired)
    ExportPackage.objects.filter(pk=export.pk).update(expires_at=timezone.now() - datetime.timedelta(hours=1))
    export.refresh_from_db()

    body = _complete(used_up, dpo_actor).body
    assert (
        "The data package we made available on your request's status page can no longer be downloaded: you have used all "
        "its downloads."
    ) in body
    assert "you can download it" not in body
    body = _complete(expired, dpo_actor).body
    assert (
        "The data package we made available on your request's status page could be downloaded until "
        f"{_moment(export.expires_at)}: it has expired."
    ) in body
    assert "you can download it" not in body


def test_a_letter_by_post_sends_the_subject_to_no_status_page(db, dpo_actor):
    """A request recorded from a letter, with no email address: the subject has no status page to go to."""
    request = verified_request(RequestType.ACCESS)
    PrivacyRequest.objects.filter(pk=request.pk).update(subject_email="")
    request.refresh_from_db()
    released_package(request)
    assert "status page" not in _complete(request, dpo_actor).body



def test_the_outcome_is_written_in_the_subjects_language(cdr, dpo_actor, django_capture_on_commit_callbacks):
    request = verified_request(RequestType.ERASURE, language="fr")
    until = datetime.date(timezone.localdate().year + 2, 11, 15)
    LegalHold.objects.create(source=cdr, ground=ErasureException.LEGAL_OBLIGATION, basis="Loi télécom", until=until)
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out_actions(request, dpo_actor, django_capture_on_commit_callbacks)

    body = _complete(request, dpo_actor).body
    assert f"15 novembre {until.year}" in body  # dates follow the request's language, not the staff's


def test_the_hold_basis_is_quoted_in_the_subjects_language_as_translated_when_the_erasure_ran(
    cdr, dpo_actor, django_capture_on_commit_callbacks
):
    request = verified_request(RequestType.ERASURE, language="fr")
    until = timezone.localdate() + datetime.timedelta(days=365)
    hold = LegalHold.objects.create(
        source=cdr, ground=ErasureException.LEGAL_OBLIGATION, basis="Telecom law keeps call records", until=until
    )
    LegalHoldTranslation.objects.create(hold=hold, language="nl", basis="De telecomwet bewaart oproepgegevens")
    actions.plan_actions(request=request, actor=dpo_actor)
    action = request.source_actions.get()
    with django_capture_on_commit_callbacks(execute=True):
        actions.dry_run_start(action=action, actor=dpo_actor)
    # Translated between the dry run and the execution: the approval still stands (only the words changed).
    LegalHoldTranslation.objects.create(hold=hold, language="fr", basis="La loi télécom impose de garder les appels")
    for service in (actions.approve, actions.execute):
        with django_capture_on_commit_callbacks(execute=True):
            service(action=SourceAction.objects.get(pk=action.pk), actor=dpo_actor)
    assert SourceAction.objects.get(pk=action.pk).status == ActionStatus.DONE

    body = _complete(request, dpo_actor).body
    assert "La loi télécom impose de garder les appels. Le droit à" in body
    assert "Telecom law" not in body and "telecomwet" not in body


def test_a_hold_on_data_the_subject_does_not_have_keeps_nothing_and_refuses_nothing(cdr, dpo_actor, django_capture_on_commit_callbacks):
    """The call records are held, but this subject made no call: the letter must not say they were kept."""
    request = verified_request(RequestType.ERASURE)
    request.identities.filter(kind=IdentityKind.PHONE).update(value="+32470000555")  # verified, and no call of theirs
    until = timezone.localdate() + datetime.timedelta(days=365)
    LegalHold.objects.create(source=cdr, ground=ErasureException.LEGAL_OBLIGATION, basis="Telecom law", until=until)
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out_actions(request, dpo_actor, django_capture_on_commit_callbacks)
    assert request.source_actions.get().dry_run["held_rows"] == {"calls": 0}

    body = _complete(request, dpo_actor).body
    assert "We found no data of yours to erase in Call records." in body
    assert "We kept" not in body and "lodge a complaint" not in body  # nothing was refused
    assert not certificate.not_granted_in_full(request)


def test_the_letter_and_certificate_say_where_nothing_was_found_or_searched(crm, cdr, dpo_actor, django_capture_on_commit_callbacks):
    """No row matched the verified email in the CRM, and no phone number was verified for the call records."""
    request = verified_request(RequestType.ERASURE)
    request.identities.filter(kind=IdentityKind.EMAIL).update(value="nobody@example.com")
    request.identities.filter(kind=IdentityKind.PHONE).update(verified_at=None)
    until = timezone.localdate() + datetime.timedelta(days=365)
    LegalHold.objects.create(source=cdr, ground=ErasureException.LEGAL_OBLIGATION, basis="Telecom law", until=until)
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out_actions(request, dpo_actor, django_capture_on_commit_callbacks)

    body = _complete(request, dpo_actor).body
    assert "We found no data of yours to erase in CRM." in body
    assert "We could not search Call records: it finds data by phone number, and we hold no verified one of yours." in body
    assert "We erased" not in body
    assert "We kept" not in body  # nothing of theirs was found there to keep
    html = certificate.render_certificate_html(request)
    assert "Not searched: no verified phone number" in html and "1 verified identifier<" in html


def test_a_letter_in_french_names_the_systems_as_the_dpo_translated_them(crm, cdr, dpo_actor, django_capture_on_commit_callbacks):
    """"Nous n'avons pas pu interroger Call records": the DPO could translate every text of a source but its name."""
    from requests_app.models import SourceSystemTranslation

    SourceSystemTranslation.objects.create(source=cdr, language="fr", name="Relevés d'appels", purposes="x", retention="x", origin="x")
    request = verified_request(RequestType.ERASURE, language="fr")
    request.identities.filter(kind=IdentityKind.EMAIL).update(value="nobody@example.com")
    request.identities.filter(kind=IdentityKind.PHONE).update(verified_at=None)
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out_actions(request, dpo_actor, django_capture_on_commit_callbacks)

    body = _complete(request, dpo_actor).body
    assert "Nous n'avons pas pu interroger Relevés d'appels" in body and "Call records" not in body
    assert "CRM" in body  # left untranslated: its own name


def test_a_letter_names_the_fields_as_the_dpo_worded_them_in_the_subjects_language(
    crm, dpo_actor, django_capture_on_commit_callbacks
):
    """"Nous avons corrigé : city": letters named fields by their column names, in English."""
    city = crm.categories.get().fields.get(name="city")
    SourceFieldTranslation.objects.create(field=city, language="fr", label="ville de résidence")
    request = verified_request(RequestType.RECTIFICATION, language="fr")
    correct_the_city(request, crm, dpo_actor, django_capture_on_commit_callbacks, "Antwerpen")
    english = verified_request(RequestType.ERASURE)
    _codes_kept_under_a_hold(crm)
    actions.plan_actions(request=english, actor=dpo_actor)
    carry_out_actions(english, dpo_actor, django_capture_on_commit_callbacks)

    assert "ville de résidence" in _complete(request, dpo_actor).body
    # No French label for the email field: an English reader reads the main one, never the column's name.
    body = _complete(english, dpo_actor).body
    assert "except email address, which we replaced with codes" in body and "except email," not in body


def test_an_action_run_before_its_identifier_was_verified_is_run_again_before_completion(
    crm, cdr, dpo_actor, source_db, django_capture_on_commit_callbacks
):
    """The phone number was verified after the call records' erasure had run with none: nothing offered to run
    it again, and the letter said we held no verified phone number of theirs."""
    import pytest

    from requests_app.lifecycle import RequestError

    request = verified_request(RequestType.ERASURE)
    request.identities.filter(kind=IdentityKind.PHONE).update(verified_at=None)
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out_actions(request, dpo_actor, django_capture_on_commit_callbacks)
    calls = request.source_actions.get(source=cdr)
    assert calls.status == ActionStatus.DONE and calls.dry_run["identities"] == 0
    request.identities.filter(kind=IdentityKind.PHONE).update(verified_at=timezone.now())

    with pytest.raises(RequestError, match="Erasure in Call records ran before any phone number was verified: run its dry run again."):
        _complete(request, dpo_actor)
    carry_out_actions(request, dpo_actor, django_capture_on_commit_callbacks, sources=[cdr])

    calls.refresh_from_db()
    assert calls.status == ActionStatus.DONE and calls.dry_run["identities"] == 1
    assert source_db("SELECT count(*) AS n FROM calls WHERE caller = :phone", phone=ANA_PHONE) == [{"n": 0}]
    body = _complete(request, dpo_actor).body
    assert "We erased your data in Call records" in body and "could not search" not in body


def test_a_rectification_that_matched_nothing_does_not_claim_a_correction(crm, dpo_actor, django_capture_on_commit_callbacks):
    request = verified_request(RequestType.RECTIFICATION)
    request.identities.filter(kind=IdentityKind.EMAIL).update(value="nobody@example.com")
    correct_the_city(request, crm, dpo_actor, django_capture_on_commit_callbacks, "Gent")

    summary = certificate.outcome_summary(request)
    assert "We found no data of yours to correct in CRM." in summary and "We corrected" not in summary
    # Nothing corrected: not a rectification granted. The correction that ran and matched nothing answered nothing,
    # so it does not stop the refusal.
    with pytest.raises(RequestError, match="No data has been corrected."):
        _complete(request, dpo_actor)
    handling.request_reject(
        request=request, actor=dpo_actor, ground=RejectionGround.OTHER,
        explanation="We hold no data under the address you gave us.", expected_status=request.status,
    )
    body = Message.objects.filter(request=request).latest("created_at").body
    assert "We hold no data under the address you gave us." in body and "lodge a complaint" in body  # Art. 12(4)


def test_a_rectification_that_corrected_nothing_cannot_be_completed_as_granted(dpo_actor):
    """Any letter used to let it through, saying nothing of the rectification perhaps, and nothing recorded why."""
    request = verified_request(RequestType.RECTIFICATION)  # no corrected value entered: the data was accurate
    for letter in ("  ", "Thank you for your patience."):
        with pytest.raises(RequestError, match="No data has been corrected. Enter the corrected values"):
            handling.request_complete(request=request, actor=dpo_actor, letter=letter, expected_status=request.status)
        request.refresh_from_db()
        assert request.status == "in_progress" and not request.messages.exists()  # nothing half-done
    # The bulk completion's confirmation page and the request page list the same refusal: one set of rules.
    assert actions.completion_blockers(request) == [
        "No data has been corrected. Enter the corrected values under “Actions in source systems” and carry out the "
        "correction (in a manual system, its owner confirms it), or reject the request with your reasons: “The data "
        "is accurate and complete (Art. 16)” if you checked the data and it is right, “Other” if we do not hold it."
    ]


def test_a_rectification_refused_for_accurate_data_gives_how_it_was_checked_and_how_to_complain(dpo_actor):
    request = verified_request(RequestType.RECTIFICATION)
    with pytest.raises(RequestError, match="Explain to the subject why “The data is accurate and complete"):
        handling.request_reject(
            request=request, actor=dpo_actor, ground=RejectionGround.DATA_ACCURATE, explanation=" ", expected_status=request.status
        )

    handling.request_reject(
        request=request, actor=dpo_actor, ground=RejectionGround.DATA_ACCURATE,
        explanation="Your contract gives Antwerp as your city.", expected_status=request.status,
    )

    request.refresh_from_db()
    assert request.status == Status.REJECTED and request.rejection_ground == RejectionGround.DATA_ACCURATE
    body = request.messages.get().body
    assert "The data is accurate and complete (Art. 16 GDPR)." in body and "Your contract gives Antwerp as your city." in body
    assert "and to seek a judicial remedy before the courts." in body


def test_a_rectification_carried_out_in_a_manual_system_completes_once_its_owner_confirms_a_correction(db, dpo_actor):
    owner = staff_in_role(roles.HANDLER, username="archivist")
    paper = SourceSystem.objects.create(
        slug="paper", name="Paper archive", connector=ConnectorKind.MANUAL, identity_kind=IdentityKind.EMAIL, owner=owner,
        purposes="Contracts", legal_basis=LegalBasis.CONTRACT, retention="10 years", origin="The subject",
    )
    contracts = SourceCategory.objects.create(source=paper, slug="contracts", category="contact")
    SourceField.objects.create(category=contracts, name="city", label="city", rectifiable=True)
    request = verified_request(RequestType.RECTIFICATION)
    actions.rectification_change_set(request=request, actor=dpo_actor, category=contracts, field="city", value="Gent")
    actions.plan_actions(request=request, actor=dpo_actor)
    correction = request.source_actions.get()
    assert correction.status == ActionStatus.MANUAL

    actions.manual_action_done(action=correction, actor=Actor.staff(owner), rows=1)

    body = _complete(request, dpo_actor).body
    request.refresh_from_db()
    assert request.status == Status.COMPLETED and request.refused_rights == []
    assert "We corrected the following in Paper archive" in body and "lodge a complaint" not in body  # nothing refused


def test_a_rectification_carried_out_is_not_called_a_refusal(crm, dpo_actor, django_capture_on_commit_callbacks):
    request = verified_request(RequestType.RECTIFICATION)
    correct_the_city(request, crm, dpo_actor, django_capture_on_commit_callbacks, "Brugge")

    body = _complete(request, dpo_actor).body
    assert "We corrected the following in CRM: city." in body
    assert "We did not correct" not in body and "lodge a complaint" not in body


def test_the_letter_names_the_right_on_each_line_and_says_each_thing_once(crm, cdr, dpo_actor, django_capture_on_commit_callbacks):
    """Erasure first: the correction and the restriction flag find nothing left in the CRM; the call
    records are kept under a hold and restricted; no phone number is verified for a second source."""
    until = timezone.localdate() + datetime.timedelta(days=365)
    LegalHold.objects.create(source=cdr, ground=ErasureException.LEGAL_OBLIGATION, basis="Telecom law", until=until)
    SourceSystem.objects.filter(pk=crm.pk).update(restriction_list="")
    SourceSystem.objects.filter(pk=cdr.pk).update(restriction_list="restriction_list.identity")
    SourceSystem.objects.create(
        slug="portal", name="Portal logins", connector=ConnectorKind.SQL, connection_url=crm.connection_url,
        identity_kind=IdentityKind.IP_ADDRESS, purposes="Security", legal_basis=LegalBasis.LEGITIMATE_INTERESTS,
        retention="6 months", origin="The subject", restriction_list="restriction_list.identity",
    )
    request = verified_request(RequestType.ERASURE, RequestType.RECTIFICATION, RequestType.RESTRICTION)
    correct_the_city(request, crm, dpo_actor, django_capture_on_commit_callbacks, "Antwerpen")

    # The correction found nothing left to correct in the CRM: the erasure asked too had answered it there.
    lines = _complete(request, dpo_actor).body.split("\n\n")
    assert "We erased your data in CRM: contact information." in lines
    assert "There was nothing left to correct in CRM: we had erased your data there." in lines
    assert "There was nothing left to restrict in CRM: we had erased your data there." in lines
    assert "We restricted the processing of your data in Call records." in lines
    assert not any(line.startswith("We erased your data in Call records") for line in lines)  # kept, and said so
    assert [line for line in lines if line.startswith("We kept")] == [
        f"We kept electronic communications data (call detail records) in Call records, because: Telecom law. The right to erasure does not "
        f"apply to this data: compliance with a legal obligation (Art. 17(3)(b) GDPR). "
        f"We will keep it until {until.day} {until:%B} {until.year} at the latest."
    ]
    unsearched = "We could not search Portal logins: it finds data by IP address, and we hold no verified one of yours."
    assert lines.count(unsearched) == 1  # its erasure and its restriction both could not search it
    assert len(lines) == len(set(lines))


def test_an_access_request_that_found_nothing_gets_a_letter_saying_so(crm, cdr, dpo_actor, settings, tmp_path):
    """No row matched the verified email in the CRM, and no phone number was verified for the call records."""
    settings.EXPORT_WORK_DIR = str(tmp_path / "export-work")
    request = verified_request(RequestType.ACCESS)
    request.identities.filter(kind=IdentityKind.EMAIL).update(value="nobody@example.com")
    request.identities.filter(kind=IdentityKind.PHONE).update(verified_at=None)
    export = exports.export_start(request=request, actor=dpo_actor)
    exports.compile_export(export_id=export.id)
    export.refresh_from_db()
    assert export.manifest["rows"] == 0
    exports.export_release(export=export, actor=dpo_actor)

    body = _complete(request, dpo_actor).body
    assert "We found no personal data about you in the systems we searched." in body
    assert "We could not search Call records: it finds data by phone number, and we hold no verified one of yours." in body
    assert "in CRM" not in body  # searched: it is among the systems that held nothing of theirs
    # Finding nothing, and not searching a system, are answers the subject may challenge (Art. 12(4)).
    assert body.endswith("and to seek a judicial remedy before the courts.")


def test_a_portability_request_that_found_nothing_says_what_was_looked_for(crm, cdr, dpo_actor, settings, tmp_path):
    settings.EXPORT_WORK_DIR = str(tmp_path / "export-work")
    SourceSystem.objects.filter(pk=cdr.pk).update(legal_basis=LegalBasis.CONTRACT)  # portable too: nothing left out
    request = verified_request(RequestType.PORTABILITY, language="de")
    request.identities.update(value="+32470000555")  # verified, and nothing of theirs anywhere
    export = exports.export_start(request=request, actor=dpo_actor, kind=ExportKind.PORTABILITY)
    exports.compile_export(export_id=export.id)
    exports.export_release(export=ExportPackage.objects.get(pk=export.pk), actor=dpo_actor)

    body = _complete(request, dpo_actor).body
    # Art. 20 covers what they gave us or their use produced: not "no personal data about you".
    assert "keine Daten gefunden, die Sie uns bereitgestellt haben" in body
    assert "personenbezogenen Daten über Sie" not in body
    assert "Beschwerde" in body


def test_a_portability_request_that_found_nothing_but_left_data_out_does_not_say_none_was_given(crm, cdr, dpo_actor, settings, tmp_path):
    """The call records, kept under a legal obligation, are not portable: left out and not read, they may hold
    what the subject's use produced. The letter says what the package's report says."""
    settings.EXPORT_WORK_DIR = str(tmp_path / "export-work")
    request = verified_request(RequestType.PORTABILITY)
    request.identities.update(value="+32470000555")  # verified, and nothing of theirs anywhere
    export = exports.export_start(request=request, actor=dpo_actor, kind=ExportKind.PORTABILITY)
    exports.compile_export(export_id=export.id)
    export = ExportPackage.objects.get(pk=export.pk)
    assert export.manifest["rows"] == 0 and [item["source"] for item in export.manifest["categories_left_out"]] == ["cdr"]
    exports.export_release(export=export, actor=dpo_actor)

    body = _complete(request, dpo_actor).body
    assert (
        "We found no data that the right to data portability covers in the systems we searched; the package lists the data "
        "that right does not cover, which we did not read for it."
    ) in body
    assert "that you gave us" not in body and "personal data about you" not in body


def test_an_access_request_answered_in_full_needs_no_word_on_complaints(crm, cdr, dpo_actor, settings, tmp_path):
    settings.EXPORT_WORK_DIR = str(tmp_path / "export-work")
    request = verified_request(RequestType.ACCESS)  # Ana's email and phone, both verified, both with data
    export = exports.export_start(request=request, actor=dpo_actor)
    exports.compile_export(export_id=export.id)
    export.refresh_from_db()
    assert export.manifest["rows"] > 0 and not export.manifest.get("sources_not_searched")
    exports.export_release(export=export, actor=dpo_actor)

    body = _complete(request, dpo_actor).body
    assert "lodge a complaint" not in body


def test_a_letter_in_french_names_the_recipients_as_the_dpo_translated_them(crm, dpo_actor, django_capture_on_commit_callbacks):
    """French letters said "Group companies": a recipient's safeguards could be translated but not its name."""
    from requests_app.models import RecipientTranslation

    told = Recipient.objects.create(source=crm, name="Group companies", country="Belgium", notification_email="art19@group.example")
    excused = Recipient.objects.create(source=crm, name="Old roaming partner", country="France")
    RecipientTranslation.objects.create(recipient=told, language="fr", name="Sociétés du groupe")
    RecipientTranslation.objects.create(recipient=excused, language="fr", name="Ancien partenaire d'itinérance")
    request = verified_request(RequestType.ERASURE, language="fr")
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out_actions(request, dpo_actor, django_capture_on_commit_callbacks)
    notices.waive(notice=request.recipient_notices.get(recipient=excused), actor=dpo_actor, reason="impossible", note="Dissoute.")

    body = _complete(request, dpo_actor).body
    assert "Sociétés du groupe." in body and "Ancien partenaire d'itinérance (" in body
    assert "Group companies" not in body and "Old roaming partner" not in body


TOLD_BEFORE_LIFTING = "We will write to you before we lift a restriction of your data, telling you when and why"


@pytest.mark.parametrize(("regime", "citation"), [("gdpr", " (Article 18(3) GDPR)."), ("uk_gdpr", " (Article 18(3) UK GDPR)."), ("ccpa", ".")])
def test_a_restriction_carried_out_tells_the_subject_they_will_hear_before_it_is_lifted(
    crm, cdr, dpo_actor, django_capture_on_commit_callbacks, regime, citation
):
    """Art. 18(3), once however many systems were restricted; its article cited as the letter cites the others'."""
    SourceSystem.objects.filter(pk=cdr.pk).update(restriction_list="restriction_list.identity")
    request = verified_request(RequestType.RESTRICTION, regime=regime)
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out_actions(request, dpo_actor, django_capture_on_commit_callbacks)

    lines = _complete(request, dpo_actor).body.split("\n\n")
    assert "We restricted the processing of your data in CRM." in lines
    assert "We restricted the processing of your data in Call records." in lines
    assert lines.count(TOLD_BEFORE_LIFTING + citation) == 1


def test_a_restriction_that_restricted_nothing_or_whose_lifting_is_planned_promises_no_notice(
    crm, dpo_actor, django_capture_on_commit_callbacks
):
    from requests_app.services import lifting

    nothing = verified_request(RequestType.RESTRICTION)
    nothing.identities.filter(kind=IdentityKind.EMAIL).update(verified_at=None)  # the CRM cannot be searched
    actions.plan_actions(request=nothing, actor=dpo_actor)
    carry_out_actions(nothing, dpo_actor, django_capture_on_commit_callbacks)
    body = _complete(nothing, dpo_actor).body
    assert "We could not search CRM" in body and TOLD_BEFORE_LIFTING not in body

    # The subject had the lifting's own notice already: the letter does not promise another.
    request = verified_request(RequestType.RESTRICTION)
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out_actions(request, dpo_actor, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        lifting.plan_lift(restriction=request.source_actions.get(), actor=dpo_actor, reason="The accuracy was verified.")
    assert TOLD_BEFORE_LIFTING not in _complete(request, dpo_actor).body
