"""What an agent who filed for the subject reads back of the request, in our emails and on the status page, is said of
the person they act for: never the subject's own "my objection", "my data", "about you" (test_agent_wording.py has
the rights' names, the link's warning and the package's email)."""

import datetime
import html
import re

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from requests_app import emails
from requests_app.audit import Actor
from requests_app.models import (
    ActionKind,
    ActionStatus,
    AgentAuthorityMethod,
    CoveredPurpose,
    ExportKind,
    ExportPackage,
    ExportStatus,
    IdentityKind,
    NoticeStatus,
    PrivacyRequest,
    Recipient,
    RecipientNotice,
    RejectionGround,
    RequestType,
    ResponseTemplate,
    SourceAction,
    SourceSystem,
    Status,
    SuppressionPurpose,
    TemplatePurpose,
    WaiverReason,
    rights_mask,
)
from requests_app.services import agents, certificate, exports, handling, intake
from requests_app.services.intake import RightDetails
from tests import test_agent_subject_confirmation as subject_confirmation
from tests.factories import released_package, request_in_status, staff_in_role
from tests.test_agent_requests import AGENT, AS_AGENT, agents_request
from tests.test_public_form import post_form

# Every right that takes details, with each of them given.
DETAILS = {
    "rights": ["rectification", "restriction", "objection", "withdraw_consent"],
    "rectification_data": "Billing address",
    "rectification_value": "Rue Neuve 1, 1000 Brussels",
    "restriction_ground": "accuracy_contested",
    "objection_processing": "Marketing calls",
    "direct_marketing": "on",
    "consent_withdrawn": "The newsletter",
    "language": "en",
}
# The public form's own words, which the subject reads back as they wrote them.
SUBJECTS_WORDS = (
    "Which processing or purpose do you object to?",
    "My objection is to direct marketing (including profiling for it).",
    "I contest the accuracy of my data (Art. 18(1)(a))",
    "Which consent do you withdraw?",
)
AGENTS_WORDS = (
    "Which processing or purpose does the person you are acting for object to?",
    "Their objection is to direct marketing (including profiling for it).",
    "The person you are acting for contests the accuracy of their data (Art. 18(1)(a))",
    "Which consent does the person you are acting for withdraw?",
)


def file_and_confirm(client, django_capture_on_commit_callbacks, **changes) -> PrivacyRequest:
    with django_capture_on_commit_callbacks(execute=True):
        post_form(client, **{**DETAILS, **changes})
    request = PrivacyRequest.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        intake.request_verify_email(token=intake.verification_token(request))
    request.refresh_from_db()
    return request


def what_they_read(client, request) -> list[str]:
    """The email confirming the request, in text and HTML, and the status page."""
    confirmation = mail.outbox[-1]
    page = client.get(reverse("status", args=[request.reference, request.secret])).content.decode()
    return [confirmation.body, html.unescape(confirmation.alternatives[0][0]), html.unescape(page)]


@pytest.mark.django_db
def test_an_agent_reads_back_the_details_they_gave_as_said_of_the_person_they_act_for(
    client, django_capture_on_commit_callbacks
):
    request = file_and_confirm(client, django_capture_on_commit_callbacks, **AS_AGENT)

    for text in what_they_read(client, request):
        for words in AGENTS_WORDS:
            assert words in text
        for words in SUBJECTS_WORDS:
            assert words not in text
        # The questions that read right for both, and the answers as given.
        assert "Which data is incorrect or incomplete?" in text and "Marketing calls" in text


@pytest.mark.django_db
def test_the_subject_reads_back_the_forms_own_questions(client, django_capture_on_commit_callbacks):
    request = file_and_confirm(client, django_capture_on_commit_callbacks)

    for text in what_they_read(client, request):
        for words in SUBJECTS_WORDS:
            assert words in text
        for words in AGENTS_WORDS:
            assert words not in text


@pytest.mark.django_db
def test_an_agents_ground_for_restriction_cites_no_gdpr_article_under_another_law(
    client, django_capture_on_commit_callbacks
):
    request = file_and_confirm(client, django_capture_on_commit_callbacks, **AS_AGENT, regime="ccpa")

    for text in what_they_read(client, request):
        assert "The person you are acting for contests the accuracy of their data\n" in text.replace("</dd>", "\n")


# The email asking the subject to confirm the agent: in the request's language, which the agent chose.


@pytest.fixture
def handler(db):
    return staff_in_role("Handler", username="handler-voice")


@pytest.mark.django_db
def test_the_subject_asked_to_confirm_the_agent_is_told_in_our_other_languages_that_the_page_speaks_them(
    client, handler, django_capture_on_commit_callbacks
):
    request = subject_confirmation.agents_request(handler)  # in French
    subject_confirmation.ask(client, handler, request, django_capture_on_commit_callbacks)

    [sent] = mail.outbox
    english = "To read this message and answer it in English, open the link and choose “English” at the top of the page."
    assert sent.body.startswith(f"{english}\n")
    assert "made privacy request" not in sent.body  # the message itself is in French
    sent_html = html.unescape(sent.alternatives[0][0])
    assert f'<span lang="en">{english}</span>' in sent_html
    assert '<span lang="nl">' in sent_html and '<span lang="de">' in sent_html
    assert '<span lang="fr">' not in sent_html  # the email's own language


@pytest.mark.django_db
def test_the_page_the_subject_confirms_on_offers_the_language_buttons_and_speaks_the_one_chosen(
    client, handler, django_capture_on_commit_callbacks
):
    request = subject_confirmation.agents_request(handler)  # in French
    link = subject_confirmation.ask(client, handler, request, django_capture_on_commit_callbacks)

    page = client.get(link).content.decode()
    assert '<html lang="fr"' in page and 'class="languages"' in page
    assert f'name="next" type="hidden" value="{link}"' in page and 'name="language" value="nl"' in page

    switched = client.post(reverse("set_language"), {"language": "nl", "next": link})
    assert switched.status_code == 302 and switched.url == link
    page = client.get(link).content.decode()
    assert '<html lang="nl"' in page and "Hebt u die persoon toestemming gegeven om namens u te handelen?" in page
    # Reading it in another language answered nothing.
    assert PrivacyRequest.objects.get(pk=request.pk).agent_authority_confirmed_at is None


# Every email to whoever filed, rendered for an agent: none speaks to them of "your data".

# The subject's voice where an agent reads it: their data, their identity, what they gave us. "Your request" and
# "the details you gave us" are the agent's own (they made it), "your data portability request" too, and "Your data
# protection officer" is no one's data.
SUBJECTS_VOICE = re.compile(
    r"\byour (?:personal |sensitive personal )?(?:data|information)\b(?! protection| portability)|\babout you\b"
    r"|\bdata that you gave us\b|\byour use of\b|\bmy data\b|\bwho (?:you are|I am)\b|\byour identity\b|\bonly to you\b",
    re.IGNORECASE,
)


def every_email_to_whoever_filed(request, closed, export) -> dict[str, dict]:
    """Each email of emails.py that goes to the request's correspondent, with each context that changes its words."""
    common = {"request": request, "status_url": "https://example.org/status", "dpo_email": "dpo@example.org"}
    export_ready = {**common, "export": export, "found_nothing": False, "portability": False, "left_out": False}
    return {
        "verify-email": {**common, "verify_url": "https://example.org/verify", "link_hours": 72, "due_on": request.due_on},
        "confirm-email": {**common, "verify_url": "https://example.org/verify", "link_hours": 72},
        "request-confirmed": {**common, "words_back": True, "told_us": [], "due_on": request.due_on, "may_extend": True},
        "status-link (open)": {**common, "data_to_download": True},
        "status-link (closed)": {**common, "request": closed, "data_to_download": True},
        "deadline-extended": {**common, "due_on": request.due_on},
        "withdrawal-confirmed": {**common, "withdrawn_at": request.received_at, "changes_made": [], "form_url": "x"},
        "message-to-subject": {**common, "message": request.messages.create(body="Hello", direction="to_subject")},
        "export-ready (data)": export_ready,
        "export-ready (access, nothing)": {**export_ready, "found_nothing": True},
        "export-ready (portability, nothing)": {**export_ready, "found_nothing": True, "portability": True},
        "export-ready (portability, nothing, left out)": {
            **export_ready, "found_nothing": True, "portability": True, "left_out": True
        },
    }


@pytest.mark.django_db
def test_no_email_to_an_agent_speaks_to_them_of_their_own_data():
    request = agents_request(Status.IN_PROGRESS, language="en")
    export = ExportPackage.objects.create(request=request, kind="access", status=ExportStatus.READY, encrypted=True)
    found = {}
    closed = agents_request(Status.COMPLETED, language="en", subject_email="ana.closed@example.com")
    for name, context in every_email_to_whoever_filed(request, closed, export).items():
        email = emails.render_email(name.split(" ")[0], context, to=["marc@example.org"], language="en")
        for text in (email.subject, email.body, html.unescape(email.alternatives[0][0])):
            if said := SUBJECTS_VOICE.findall(text):
                found[name] = said
    assert not found, "\n".join(f"{name}: {said}" for name, said in found.items())


@pytest.mark.django_db
def test_a_portability_answer_that_found_nothing_tells_the_agent_of_the_person_they_act_for(
    django_capture_on_commit_callbacks,
):
    dpo = staff_in_role("DPO", username="dpo-voice")
    request = agents_request(Status.IN_PROGRESS, RequestType.PORTABILITY, language="en")
    agents.agent_authority_confirm(request=request, actor=Actor.staff(dpo), method=AgentAuthorityMethod.SIGNED_PERMISSION)
    export = ExportPackage.objects.create(request=request, kind="portability", status=ExportStatus.READY, manifest={"rows": 0})
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        exports.export_release(export=export, actor=Actor.staff(dpo))

    [ready] = mail.outbox
    for text in (ready.body, html.unescape(ready.alternatives[0][0])):
        assert (
            "we found no data that the person you are acting for gave us or that their use of our services produced in "
            "the systems we searched. Download it, with the list of the systems searched, from the request's status page"
        ) in text


# The status page, as an agent who filed reads it in each state that changes its words.


def subjects_voice_on_the_status_page(client, request) -> list[str]:
    page = client.get(reverse("status", args=[request.reference, request.secret]))
    assert page.status_code == 200
    # The footer of every public page ("Questions about your data?") speaks to whoever reads the site.
    main = re.sub(r"<footer>.*</footer>", "", page.content.decode(), flags=re.DOTALL)
    return SUBJECTS_VOICE.findall(html.unescape(main))


def released(request, kind="access", **changes) -> ExportPackage:
    export = released_package(request, kind)
    ExportPackage.objects.filter(pk=export.pk).update(**changes)
    return export


@pytest.mark.django_db
def test_the_status_page_never_speaks_to_an_agent_of_their_own_data(client):
    dpo = staff_in_role("DPO", username="dpo-voice")
    found = {}

    def look(name, request):
        if said := subjects_voice_on_the_status_page(client, request):
            found[name] = said

    def confirmed(request):
        agents.agent_authority_confirm(request=request, actor=Actor.staff(dpo), method=AgentAuthorityMethod.SIGNED_PERMISSION)
        request.refresh_from_db()
        return request

    look("checking identity", agents_request(Status.IDENTITY_CHECK, language="en", subject_email="a1@example.com"))
    look("in progress", confirmed(agents_request(Status.IN_PROGRESS, language="en", subject_email="a2@example.com")))

    with_data = confirmed(agents_request(Status.IN_PROGRESS, language="en", subject_email="a3@example.com"))
    released(with_data)
    look("data ready", with_data)

    nothing = confirmed(agents_request(Status.IN_PROGRESS, language="en", subject_email="a4@example.com"))
    released(nothing, manifest={"rows": 0})
    look("nothing found, ready", nothing)

    nothing_portable = confirmed(
        agents_request(Status.IN_PROGRESS, RequestType.PORTABILITY, language="en", subject_email="a5@example.com")
    )
    released(nothing_portable, "portability", manifest={"rows": 0})
    look("nothing portable found, ready", nothing_portable)

    delivered = confirmed(agents_request(Status.IN_PROGRESS, language="en", subject_email="a6@example.com"))
    released(delivered, expires_at=timezone.now() - datetime.timedelta(days=1))
    look("data delivered", delivered)

    nothing_delivered = confirmed(agents_request(Status.IN_PROGRESS, language="en", subject_email="a7@example.com"))
    released(nothing_delivered, manifest={"rows": 0}, expires_at=timezone.now() - datetime.timedelta(days=1))
    look("nothing found, delivered", nothing_delivered)

    erasure = confirmed(agents_request(Status.IN_PROGRESS, RequestType.ERASURE, language="en", subject_email="a8@example.com"))
    source = SourceSystem.objects.create(slug="crm", name="CRM", identity_kind=IdentityKind.EMAIL)
    for name, changes in (
        ("Billing partner", {"status": NoticeStatus.NOT_NEEDED}),
        ("Old reseller", {"status": NoticeStatus.WAIVED, "waiver_reason": WaiverReason.NEVER_DISCLOSED}),
    ):
        recipient = Recipient.objects.create(source=source, name=name, country="Belgium")
        RecipientNotice.objects.create(request=erasure, recipient=recipient, **changes)
    look("recipients", erasure)

    purged = agents_request(Status.COMPLETED, language="en", subject_email="a9@example.com")
    PrivacyRequest.objects.filter(pk=purged.pk).update(personal_data_purged_at=timezone.now())
    look("purged", purged)

    assert not found, "\n".join(f"{name}: {said}" for name, said in found.items())


# What was done, as the completion letter and the withdrawn request's page and email tell it (certificate.outcome_summary,
# certificate.changes_made): every line an agent may read, said of the person they act for.

DONE_FOR_ALL_RIGHTS = (
    RequestType.ERASURE, RequestType.RECTIFICATION, RequestType.RESTRICTION, RequestType.OBJECTION,
    RequestType.WITHDRAW_CONSENT, RequestType.LIMIT_USE, RequestType.ACCESS, RequestType.PORTABILITY,
)


def every_outcome(request, *, packages_found_data: bool) -> None:
    """Finished actions, packages, Art. 19 notices and suppressions on `request` that between them write every line of
    the letter's outcome: each action in a source of its own, so no line is said once for two."""

    def done(slug, kind, result, dry_run=None):
        source, _ = SourceSystem.objects.get_or_create(slug=slug, defaults={"name": slug.upper(), "identity_kind": IdentityKind.EMAIL})
        return SourceAction.objects.create(
            request=request, source=source, kind=kind, status=ActionStatus.DONE, result=result,
            dry_run={"identities": 1, **(dry_run or {})},
        )

    rows = {"categories": [{"category": "contact", "rows": 2, "fields": 1}]}
    done("erased-with-codes", ActionKind.ERASE, rows, {"pseudonymised": {"contact": ["phone"]}})
    done("erased", ActionKind.ERASE, rows, {"kept_fields": {"contact": ["country"]}})
    done("erased", ActionKind.RECTIFY, {})  # nothing left to correct there
    done("erased", ActionKind.RESTRICT, {})  # nor to restrict
    done("manual", ActionKind.ERASE, {"manual": True, "rows": 3})
    done("empty", ActionKind.ERASE, {"categories": [{"category": "contact", "rows": 0}]})
    done("empty", ActionKind.RECTIFY, {})
    done("unsearched", ActionKind.ERASE, {}, {"identities": 0})
    done("restricted", ActionKind.RESTRICT, {"list_entries": 1})
    done("empty-restricted", ActionKind.RESTRICT, {})
    done("already-right", ActionKind.RECTIFY, {"categories": [{"category": "contact", "rows": 1, "fields": 0}]})
    done("lifted", ActionKind.LIFT_RESTRICTION, {"list_entries": 1})

    not_searched = [{"source": "billing", "name": "Billing", "kind": IdentityKind.PHONE, "reason": "no_verified_identifier"}]
    for kind in (ExportKind.ACCESS, ExportKind.PORTABILITY):
        if packages_found_data:
            files = [{"path": "data/crm/contact.csv", "rows": 4}, {"path": "data/web/visits.csv", "rows": 0}]
            manifest = {"rows": 4, "files": files, "sources_not_searched": not_searched}
        else:
            manifest = {"rows": 0, "files": [], "sources_not_searched": not_searched}
        released(request, kind, manifest=manifest)

    source = SourceSystem.objects.get(slug="erased")
    for name, changes in (
        ("Sent partner", {"status": NoticeStatus.SENT}),
        ("Pending partner", {"status": NoticeStatus.PENDING}),
        ("Never partner", {"status": NoticeStatus.WAIVED, "waiver_reason": WaiverReason.NEVER_DISCLOSED}),
        ("Gone partner", {"status": NoticeStatus.WAIVED, "waiver_reason": WaiverReason.IMPOSSIBLE, "waiver_note": "Gone."}),
    ):
        recipient = Recipient.objects.create(source=source, name=name, country="Belgium")
        RecipientNotice.objects.create(request=request, recipient=recipient, **changes)

    for asked in request.rights.filter(right__in=(RequestType.OBJECTION, RequestType.WITHDRAW_CONSENT, RequestType.LIMIT_USE)):
        stopped, _ = SuppressionPurpose.objects.get_or_create(slug="newsletter", defaults={"name": "Newsletter"})
        kept_on, _ = SuppressionPurpose.objects.get_or_create(slug="fraud", defaults={"name": "Fraud checks"})
        CoveredPurpose.objects.create(right=asked, purpose=stopped, applied_at=timezone.now())
        CoveredPurpose.objects.create(right=asked, purpose=kept_on, not_applied_reason="The law requires it.")


def outcome_lines(regime: str, *, packages_found_data: bool, by_agent: bool = True) -> list[str]:
    """The completion letter's outcome and the lines of what a withdrawal does not undo, for a request for every
    right that did all it could do (under `regime`, whose law the lines cite or not), filed by an agent or the subject."""
    rights = [RightDetails(right) for right in DONE_FOR_ALL_RIGHTS]
    request = request_in_status(Status.IN_PROGRESS, rights=rights, regime=regime, **(AGENT if by_agent else {}))
    every_outcome(request, packages_found_data=packages_found_data)
    return certificate.outcome_summary(request).split("\n\n") + certificate.changes_made(request)


@pytest.mark.django_db
@pytest.mark.parametrize(("regime", "packages_found_data"), [("gdpr", True), ("gdpr", False), ("ccpa", True), ("ccpa", False)])
def test_what_was_done_is_told_to_an_agent_of_the_person_they_act_for(regime, packages_found_data):
    lines = outcome_lines(regime, packages_found_data=packages_found_data)

    assert len(lines) > 25  # every kind of line, not an empty outcome
    found = [line for line in lines if SUBJECTS_VOICE.search(line) or "your objection" in line or "your consent" in line]
    assert not found, "\n".join(found)
    assert "We erased the data of the person you are acting for in ERASED: contact." in lines


@pytest.mark.django_db
def test_what_was_done_is_told_to_the_subject_of_their_own_data():
    lines = outcome_lines("gdpr", packages_found_data=True, by_agent=False)

    assert "We erased your data in ERASED: contact." in lines
    assert not [line for line in lines if "the person you are acting for" in line]


# Every letter, built in, as it goes to an agent: rendered for an agent's request, none speaks to them of their own data,
# identity or rights.

LETTERS_SUBJECTS_VOICE = re.compile(rf"{SUBJECTS_VOICE.pattern}|\bYou have the right\b", re.IGNORECASE)


def every_letter(request) -> dict[str, tuple[str, str]]:
    """The subject line and text of each letter to whoever filed `request`, in its built-in wording."""
    request.forwarded_to, request.forwarded_to_contact = "Acme Mobile", "dpo@acme.example"
    request.forwarded_on = timezone.localdate()
    lift = {"source": "CRM", "lift_on": timezone.localdate()}
    letters = {
        purpose: handling.render_letter(request, purpose, body="What staff write.", reason="A reason.", fee="25.00 EUR", **lift)
        for purpose in TemplatePurpose.values
        if purpose != TemplatePurpose.COMPLETION
    }
    letters[TemplatePurpose.COMPLETION] = handling.render_letter(
        request, TemplatePurpose.COMPLETION, body="What staff write.", outcome="The outcome."
    )
    letters["every right refused"] = handling.every_right_refused_letter(request, body="What staff write.")
    letters["forwarded"] = handling.forwarded_letter(request)
    request.refused_rights_mask = rights_mask([RequestType.RESTRICTION])
    refusal = handling.RightRefusal(right=RequestType.RESTRICTION, ground=RejectionGround.IDENTITY_NOT_VERIFIED, explanation="Why.")
    letters["right refused"] = ("", handling.refusals_in_letter(request, {RequestType.RESTRICTION: refusal}))
    letters["identity not verified"] = ("", handling.identity_paragraph(request, RejectionGround.IDENTITY_NOT_VERIFIED))
    letters["right to complain"] = ("", handling.rejection_rights_paragraph(request))
    return letters


@pytest.mark.django_db
def test_no_letter_to_an_agent_speaks_to_them_of_their_own_data():
    request = agents_request(Status.IN_PROGRESS, RequestType.RESTRICTION, language="en")
    found = {}
    for name, (subject, text) in every_letter(request).items():
        if said := LETTERS_SUBJECTS_VOICE.findall(f"{subject}\n{text}"):
            found[name] = said
    assert not found, "\n".join(f"{name}: {said}" for name, said in found.items())


@pytest.mark.django_db
def test_the_subjects_letters_still_speak_to_them_of_their_data():
    letters = every_letter(request_in_status(Status.IN_PROGRESS, rights=[RightDetails(RequestType.RESTRICTION)]))

    assert letters[TemplatePurpose.RESTRICTION_LIFT][0] == "The restriction of your data in CRM will be lifted"
    assert "personal data about you for our own purposes" in letters["forwarded"][1]
    assert letters["right to complain"][1].startswith("You have the right to lodge a complaint")


@pytest.mark.django_db
def test_a_dpos_template_may_speak_to_an_agent_as_the_built_in_wording_does():
    body = "{% if to_agent %}The data of the person you are acting for{% else %}Your data{% endif %}: {{ body }}"
    template = ResponseTemplate(purpose=TemplatePurpose.MESSAGE, language="en", subject="Hello", body=body)
    template.full_clean()  # to_agent is a placeholder the check knows
    template.save()

    agents = agents_request(Status.IN_PROGRESS, language="en")
    subjects = request_in_status(Status.IN_PROGRESS, subject_email="ana.own@example.com")
    assert handling.render_letter(agents, TemplatePurpose.MESSAGE, body="x")[1] == "The data of the person you are acting for: x"
    assert handling.render_letter(subjects, TemplatePurpose.MESSAGE, body="x")[1] == "Your data: x"


@pytest.mark.django_db
def test_the_letters_about_sending_the_data_to_another_organisation_speak_to_an_agent_of_the_person_they_act_for(
    settings, django_capture_on_commit_callbacks
):
    from requests_app.models import Message, MessageDirection
    from requests_app.services import transmission
    from tests.exports.test_transmission import agents_released, refused_by_its_server

    dpo = staff_in_role("DPO", username="dpo-voice-transmission")
    sent = agents_released(dpo)
    with django_capture_on_commit_callbacks(execute=True):
        transmission.export_transmit(export=sent, actor=Actor.staff(dpo))
    resent = agents_released(dpo)
    refused_by_its_server(resent, dpo, settings, django_capture_on_commit_callbacks)
    transmission.transmission_resend(export=resent, actor=Actor.staff(dpo), recipient_email="privacy@nova.example")
    declined = agents_released(dpo)
    transmission.transmission_decline(request=declined.request, actor=Actor.staff(dpo), reason="Not feasible.")

    letters = Message.objects.filter(request__in=[sent.request, resent.request, declined.request], direction=MessageDirection.TO_SUBJECT)
    texts = [f"{letter.subject}\n{letter.body}" for letter in letters]
    assert len(texts) == 4 and all("the person you are acting for" in text for text in texts)  # sent, sent and resent, declined
    found = [said for text in texts for said in LETTERS_SUBJECTS_VOICE.findall(text) + re.findall(r"Your own copy", text)]
    assert not found, found
