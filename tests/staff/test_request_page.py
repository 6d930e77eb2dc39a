"""The staff page of one request: what it points out to whoever checks it."""

import html
import re
from datetime import timedelta

import pytest
import time_machine
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from requests_app import lifecycle, selectors
from requests_app.services import handling, intake
from requests_app.wording import date_in_words
from requests_app.audit import Actor
from requests_app.models import Channel, IdentityKind, Organisation, RequestType, RestrictionGround, Status, VerificationMethod
from requests_app.services.intake import RightDetails
from tests.conftest import login_staff, post_confirmed
from tests.factories import erasure_kept_whole, request_in_status, staff_in_role, submit_request


@pytest.mark.parametrize(
    ("signature", "pointed_out"),
    [("Ana Peeters", False), ("  ana   PEETERS. ", False), ("Anà Peéters", False), ("A. Peeters", True), ("Bob Smith", True)],
)
@pytest.mark.django_db
def test_the_request_page_points_out_a_signature_that_is_not_the_name(client, signature, pointed_out):
    """The subject confirms they are the person concerned: another name in the signature is worth a look."""
    request = submit_request(subject_name="Ana Peeters", signature=signature)
    login_staff(client, staff_in_role("DPO", username="dpo-signature"))
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert ("The signature is not the name given" in page) == pointed_out


@pytest.mark.django_db
def test_the_request_page_says_an_objection_to_direct_marketing_cannot_be_refused(client):
    request = request_in_status(Status.IN_PROGRESS)
    request.rights.update(right="objection", direct_marketing=True)
    login_staff(client, staff_in_role("DPO", username="dpo-marketing"))
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert "Objects to direct marketing: this cannot be refused (Art. 21(3)), only the request as a whole, if the identity could not be verified, an agent made it without showing their authority to act for the subject, or it is manifestly unfounded or excessive." in page
    # The rejection offers only the grounds the service accepts against it.
    grounds = page[page.index('id="reject-ground"'):]
    grounds = grounds[:grounds.index("</select>")]
    assert 'value="identity_not_verified"' in grounds and 'value="unfounded"' in grounds and 'value="excessive"' in grounds
    assert 'value="other"' not in grounds and 'value="legal_obligation"' not in grounds


@pytest.mark.django_db
def test_a_right_to_left_override_typed_by_the_subject_stays_inside_what_they_typed(client):
    """U+202E in a signature reversed the signing date after it ("71:61 ,6202 rebmevoN 03"): the evidence
    of a dated, signed request must read right."""
    request = submit_request(subject_name="Bob \u202eevil", signature="Bob \u202eevil", customer_reference="\u202eCUST-1")
    login_staff(client, staff_in_role("DPO", username="dpo-bidi"))
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert "<dd><bdi>Bob \u202eevil</bdi></dd>" in page  # the name
    assert "<dd><bdi>Bob \u202eevil</bdi>, " in page  # the signature, then its date outside the isolation
    assert "<td><bdi>\u202eCUST-1</bdi></td>" in page


@pytest.mark.django_db
def test_a_french_staff_page_spaces_the_colon_after_a_label(client):
    """"Adresse e-mail: ana@example.com": the colon was a literal after the translated label."""
    request = request_in_status(Status.IN_PROGRESS, subject_email="ana@example.com")
    request.rights.update(right="objection", objection_processing="Le profilage ‮marketing")
    login_staff(client, staff_in_role("DPO", username="dpo-french"))
    client.cookies["django_language"] = "fr"
    page = html.unescape(client.get(reverse("staff:request", args=[request.reference])).content.decode())
    assert "Adresse e-mail\u00a0: ana@example.com" in page  # the identities to verify
    assert "\u00a0: <bdi>Le profilage \u202emarketing</bdi>" in page  # what they object to, still isolated
    assert "e-mail: " not in page


def _details(page: str, action: str) -> str:
    """The <details> holding the form that posts to the request action `action`."""
    form = page.index(f"/{action}/\"")
    return page[page.rindex("<details", 0, form):page.index("</details>", form)]


@pytest.mark.django_db
def test_request_information_and_pausing_the_clock_say_what_each_does(client):
    """Both write to the subject and stop the clock: staff could not tell which to use. One puts the request on hold
    until the subject answers (handling.request_information), the other lets work go on (handling.clock_pause)."""
    request = request_in_status(Status.IN_PROGRESS)
    login_staff(client, staff_in_role("DPO", username="dpo-two-pauses"))
    page = html.unescape(client.get(reverse("staff:request", args=[request.reference])).content.decode())

    information = _details(page, "request_information")
    assert "<summary>Request information (pauses the clock)</summary>" in information
    assert (
        "Sent to the subject. The request is then on hold, waiting for them, and the clock stops where the law allows; "
        "their answer puts the request back where it was and restarts the clock. Use it when work cannot go on "
        "without their answer."
    ) in information
    pause = _details(page, "pause")
    assert "<summary>Pause the clock and keep working</summary>" in pause
    assert (
        "Use it when work on the request can go on while we wait. The clock restarts when the subject answers, or "
        "when you resume it."
    ) in pause
    assert "What you write is sent to the subject as a request for information" in pause


@pytest.mark.django_db
def test_a_paused_request_says_so_once_and_does_not_offer_to_pause_it_again(client):
    from requests_app.services.deadlines import clock_pause

    dpo = staff_in_role("DPO", username="dpo-paused")
    request = request_in_status(Status.IN_PROGRESS)
    clock_pause(request=request, actor=Actor.staff(dpo), reason="ID asked by phone")
    login_staff(client, dpo)
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert page.count("clock paused") == 1 and "clock paused</span> · since" in page
    assert "Request information (pauses the clock)" not in page and "Send and pause" not in page


@pytest.mark.django_db
def test_a_paused_request_says_when_it_would_be_due_if_it_resumed_today(client):
    """The date saved moves only when the clock restarts: ten days into a pause, it is ten days early."""
    from requests_app.services.deadlines import clock_pause, due_on_if_resumed_today
    from requests_app.wording import date_in_words

    dpo = staff_in_role("DPO", username="dpo-paused")
    request = request_in_status(Status.IN_PROGRESS)
    clock_pause(request=request, actor=Actor.staff(dpo), reason="ID asked by phone")
    request.refresh_from_db()
    with time_machine.travel(timezone.now() + timedelta(days=10)):
        login_staff(client, dpo)
        page = html.unescape(client.get(reverse("staff:request", args=[request.reference])).content.decode())
        expected = due_on_if_resumed_today(request)  # its counting is tested in tests/test_deadlines.py
    assert expected > request.due_on
    assert f"due {date_in_words(expected)} if it resumed today" in page


@pytest.mark.django_db
def test_the_request_page_says_which_organisation_asserted_an_identifier_still_to_verify(client):
    """An identifier an organisation filed over the API is not verified, but staff see where it came from."""
    operator = Organisation.objects.create(name="Mobile Operator SA")
    request = submit_request(
        subject_phone="+32475123456", organisation=operator, channel=Channel.API,
        actor=Actor.organisation(operator), identities_asserted=True,
    )
    login_staff(client, staff_in_role("DPO", username="dpo-asserted"))
    page = html.unescape(client.get(reverse("staff:request", args=[request.reference])).content.decode())
    phone_row = next(row for row in page.split("<tr>") if "+32475123456" in row)
    assert "asserted by Mobile Operator SA, not verified" in phone_row

    from_the_subject = submit_request(subject_phone="+32475123456")
    page = client.get(reverse("staff:request", args=[from_the_subject.reference])).content.decode()
    phone_row = next(row for row in page.split("<tr>") if "+32475123456" in row)
    assert "not verified" in phone_row and "asserted by" not in phone_row


@pytest.mark.parametrize(
    ("phone_method", "offered"),
    [
        (None, False),
        # Proves who the subject is, not that the number reaches them: the password could go to someone else.
        (VerificationMethod.DOCUMENT, False),
        (VerificationMethod.CALLBACK, True),
        (VerificationMethod.ACCOUNT_RECORDS, True),
        (VerificationMethod.ASSERTED_BY_ORGANISATION, True),
    ],
)
@pytest.mark.django_db
def test_encryption_is_offered_only_with_a_phone_verified_as_the_subjects_line(client, settings, phone_method, offered):
    settings.SMS_BACKEND = "requests_app.sms.LocmemBackend"
    request = request_in_status(Status.IN_PROGRESS, subject_phone="+32475123456")
    request.identities.filter(kind=IdentityKind.EMAIL).update(
        verified_at=timezone.now(), verification_method=VerificationMethod.DOCUMENT
    )
    if phone_method:
        request.identities.filter(kind=IdentityKind.PHONE).update(verified_at=timezone.now(), verification_method=phone_method)
    login_staff(client, staff_in_role("DPO", username="dpo-encrypt"))

    page = html.unescape(client.get(reverse("staff:request", args=[request.reference])).content.decode())

    assert 'action="' + reverse("staff:export_start", args=[request.reference]) + '"' in page  # the export form is there
    assert ('name="encrypt"' in page) == offered
    assert ("An identity document proves who the subject is, not that the number reaches them." in page) != offered


@pytest.mark.parametrize("by_agent", [False, True])
@pytest.mark.django_db
def test_the_encryption_option_says_an_agent_gets_the_password_from_the_subject(client, settings, by_agent):
    """The password goes to the subject's line only: staff must know the agent who filed will not receive it."""
    settings.SMS_BACKEND = "requests_app.sms.LocmemBackend"
    request = request_in_status(Status.IN_PROGRESS, subject_phone="+32475123456")
    request.identities.filter(kind=IdentityKind.PHONE).update(
        verified_at=timezone.now(), verification_method=VerificationMethod.CALLBACK
    )
    if by_agent:
        request.__class__.objects.filter(pk=request.pk).update(
            agent_capacity="authorised_agent", agent_name="Marc Peeters", agent_email="marc@example.org"
        )
    login_staff(client, staff_in_role("DPO", username="dpo-encrypt-agent"))

    page = html.unescape(client.get(reverse("staff:request", args=[request.reference])).content.decode())

    assert 'name="encrypt"' in page
    assert ("The password goes to the subject's phone, not to the agent who filed the request" in page) == by_agent


@pytest.mark.django_db
def test_a_request_changed_in_another_tab_keeps_the_letter_typed_and_a_deliberate_resubmit_works(client):
    """Refused as "changed since you loaded it", the page comes back with the form open, the letter as
    typed and the status as it is now, so sending it again is a choice made on what the page shows."""
    from requests_app.services import handling

    dpo = staff_in_role("DPO", username="dpo-stale")
    login_staff(client, dpo)
    request = request_in_status(Status.NEW)
    # Meanwhile, in another tab:
    handling.request_transition(request=request, actor=Actor.staff(dpo), name="start_identity_check", expected_status=Status.NEW)
    letter = "We asked you three times for the account number, and the one you gave matches no customer of ours."
    url = reverse("staff:request_action", args=[request.reference, "reject"])
    data = {"ground": "other", "explanation": letter}

    response = client.post(url, {**data, "expected_status": Status.NEW})

    assert response.status_code == 409
    page = html.unescape(response.content.decode())
    assert "has changed since you loaded it (it is now Identity check)" in page
    reject_form = page[page.index('action="' + reverse("staff:request_action_preview", args=[request.reference, "reject"]) + '"'):]
    reject_form = reject_form[: reject_form.index("</form>")]
    assert letter in reject_form
    assert f'name="expected_status" value="{Status.IDENTITY_CHECK}"' in reject_form
    assert '<details id="reject" open><summary>Reject</summary>' in page
    request.refresh_from_db()
    assert request.status == Status.IDENTITY_CHECK

    again = post_confirmed(client, url, {**data, "expected_status": Status.IDENTITY_CHECK})

    assert again.status_code == 302
    request.refresh_from_db()
    assert request.status == Status.REJECTED


@pytest.mark.django_db
def test_a_letter_written_before_the_subjects_reply_is_not_sent_as_if_nothing_had_happened(client):
    """The page showed In progress; a colleague asked the subject a question, the subject replied, and the
    request was In progress again. Completing from the page loaded before closed it without anyone reading
    the reply."""
    import re

    from requests_app.services import handling
    from tests.factories import released_package

    handler = staff_in_role("DPO", username="dpo-version")
    login_staff(client, handler)
    request = request_in_status(Status.IN_PROGRESS)
    released_package(request)
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    shown_version = re.search(r'name="expected_version" value="(\d+)"', page).group(1)
    # Meanwhile:
    handling.request_information(
        request=request, actor=Actor.staff(staff_in_role("DPO", username="colleague")), body="Which marketing exactly?",
        expected_status=Status.IN_PROGRESS,
    )
    handling.subject_reply(request=request, body="Also the telemarketing calls, please.")
    request.refresh_from_db()
    assert request.status == Status.IN_PROGRESS
    url = reverse("staff:request_action", args=[request.reference, "complete"])
    data = {"letter": "We stopped the marketing emails.", "expected_status": Status.IN_PROGRESS}

    response = client.post(url, {**data, "expected_version": shown_version})

    assert response.status_code == 409
    page = html.unescape(response.content.decode())
    assert "has changed since you loaded it: the subject wrote, or its status changed." in page
    assert "We stopped the marketing emails." in page  # the letter is kept
    request.refresh_from_db()
    assert request.status == Status.IN_PROGRESS and not request.messages.filter(body__contains="We stopped").exists()

    new_version = re.search(r'name="expected_version" value="(\d+)"', page).group(1)
    assert new_version != shown_version
    again = post_confirmed(client, url, {**data, "expected_version": new_version})
    assert again.status_code == 302
    request.refresh_from_db()
    assert request.status == Status.COMPLETED


@pytest.mark.django_db
def test_the_page_says_whether_the_subject_was_emailed_of_the_extension(client, django_capture_on_commit_callbacks):
    """Art. 12(3): they must be told within the first period. With the worker down the email waits, and the
    page said nothing of it."""
    from requests_app.services.deadlines import request_extend

    dpo = staff_in_role("DPO", username="dpo-extend")
    login_staff(client, dpo)
    waiting, sent = request_in_status(Status.IN_PROGRESS), request_in_status(Status.IN_PROGRESS)
    request_extend(request=waiting, actor=Actor.staff(dpo), reason="Many systems to search.")  # its task never ran
    with django_capture_on_commit_callbacks(execute=True):
        request_extend(request=sent, actor=Actor.staff(dpo), reason="Many systems to search.")

    # Just extended, its email is on its way; owed a quarter of an hour later, something holds it up.
    page = client.get(reverse("staff:request", args=[waiting.reference])).content.decode()
    assert "email to the subject on its way" in page and "not emailed yet" not in page
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        page = client.get(reverse("staff:request", args=[waiting.reference])).content.decode()
    assert '<span class="error">subject not emailed yet</span>' in page and "on its way" not in page
    page = client.get(reverse("staff:request", args=[sent.reference])).content.decode()
    assert "subject emailed on" in page and "not emailed yet" not in page
    # Withdrawn before the email went, it never will (emails.NEEDS_OPEN_REQUEST): the page raises no alarm of it.
    intake.request_withdraw(request=waiting, actor=Actor.subject())
    assert "not emailed yet" not in client.get(reverse("staff:request", args=[waiting.reference])).content.decode()


@pytest.mark.parametrize(
    ("regime", "rule"),
    [
        ("gdpr", "Art. 12(3) allows an extension only for the complexity or the number of requests: say which, and why."),
        ("uk_gdpr", "Art. 12(3) allows an extension only for the complexity or the number of requests: say which, and why."),
        ("ccpa", "The CCPA allows up to 45 more days only where that is reasonably necessary: say why it is."),
    ],
)
@pytest.mark.django_db
def test_the_extension_form_says_its_reason_is_emailed_to_the_subject_and_what_the_law_allows(client, regime, rule):
    """The reason goes as typed into the email to the subject, next to the regime's rule: staff must know both."""
    request = request_in_status(Status.IN_PROGRESS, regime=regime, language="nl")
    login_staff(client, staff_in_role("DPO", username="dpo-extension-form"))
    page = html.unescape(client.get(reverse("staff:request", args=[request.reference])).content.decode())
    form = page[page.index('for="extend-reason"'):]
    form = form[:form.index("</form>")]
    assert "Reason (quoted in the email to the subject)" in form
    assert f"Write it in Dutch, the language of the request. {rule}" in form


@pytest.mark.django_db
def test_the_verification_method_must_be_chosen_not_taken_by_default(client):
    """A preselected method was recorded by whoever did not look at the list."""
    request = request_in_status(Status.NEW)
    login_staff(client, staff_in_role("DPO", username="dpo-verification-method"))
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    methods = page[page.index('id="identity-method"'):]
    methods = methods[:methods.index("</select>")]
    assert '<option value="" selected>Choose how you checked it</option>' in methods

    identity = request.identities.get(kind=IdentityKind.EMAIL)
    response = client.post(
        reverse("staff:request_action", args=[request.reference, "verify_identity"]),
        {"identities": [identity.id], "method": "", "expected_status": Status.NEW},
    )
    assert response.status_code == 400 and "This field is required." in response.content.decode()
    identity.refresh_from_db()
    request.refresh_from_db()
    assert (identity.verification_method, request.status) == ("", Status.NEW)


@pytest.mark.django_db
def test_a_handler_whose_request_was_reassigned_meanwhile_is_told_so_and_keeps_what_they_wrote(client):
    from requests_app.services import routing

    handler = staff_in_role("Handler", username="hana")
    dpo = staff_in_role("DPO", username="dora")
    request = request_in_status(Status.IN_PROGRESS)
    routing.request_assign(request=request, assignee=handler, actor=Actor.staff(dpo))
    login_staff(client, handler)
    assert "Send message" in client.get(reverse("staff:request", args=[request.reference])).content.decode()
    routing.request_assign(request=request, assignee=dpo, actor=Actor.staff(dpo), expected_assignee_id=handler.id)

    response = client.post(
        reverse("staff:request_action", args=[request.reference, "message"]), {"body": "Dear Ana, we found three accounts."}
    )

    assert response.status_code == 403
    page = html.unescape(response.content.decode())
    assert "You may not act on this request: it is assigned to dora." in page
    assert 'readonly>Dear Ana, we found three accounts.</textarea>' in page
    assert not request.messages.exists()


@pytest.mark.django_db
def test_a_stored_template_that_fails_tells_staff_and_keeps_the_letter(client):
    """A template saved before the checks refused it made every letter of its purpose a 500."""
    from requests_app.models import ResponseTemplate
    from tests.factories import released_package

    ResponseTemplate.objects.create(  # create() skips clean(), as the old checks let it through
        purpose="completion", language="en", subject="Done", body="{% load log %}{% get_admin_log 50 as L %}{{ body }}"
    )
    login_staff(client, staff_in_role("DPO", username="dpo-template"))
    request = request_in_status(Status.IN_PROGRESS)
    released_package(request)

    response = client.post(
        reverse("staff:request_action", args=[request.reference, "complete"]),
        {"letter": "We closed the account.", "expected_status": Status.IN_PROGRESS},
    )

    assert response.status_code == 409
    page = html.unescape(response.content.decode())
    assert "The response template “Completion letter (any type, en)” cannot be used: a DPO must correct it" in page
    assert "We closed the account." in page  # the letter is kept
    request.refresh_from_db()
    assert request.status == Status.IN_PROGRESS and not request.messages.exists()


def _select(page: str, name: str) -> str:
    """The <select> named `name` on `page`, up to its end."""
    select = page[page.index(f'name="{name}"'):]
    return select[: select.index("</select>")]


@pytest.mark.django_db
def test_the_complete_form_offers_to_refuse_each_right_of_a_request_that_asks_several(client):
    from requests_app.models import RequestType
    from requests_app.services.intake import RightDetails

    login_staff(client, staff_in_role("DPO", username="dpo-refuse-form"))
    marketing = RightDetails(RequestType.OBJECTION, objection_processing="Promotional calls", direct_marketing=True)
    request = request_in_status(Status.IN_PROGRESS, rights=[RightDetails(RequestType.ERASURE), marketing])
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()

    erasure = _select(page, "refusal_ground_erasure")
    assert '<option value="" selected>Granted</option>' in erasure
    assert 'value="legal_obligation"' in erasure and 'value="other"' in erasure
    assert 'name="refusal_explanation_erasure"' in page
    # The objection to direct marketing: only the grounds the service accepts against it (Art. 21(3)).
    objection = _select(page, "refusal_ground_objection")
    # (Not an unverified identity: it refuses the whole request, with Reject.)
    assert 'value="excessive"' in objection and 'value="identity_not_verified"' not in objection
    assert 'value="other"' not in objection and 'value="legal_obligation"' not in objection

    # Refusing the one right asked is rejecting the request: the Reject form does it.
    single = request_in_status(Status.IN_PROGRESS)
    assert 'name="refusal_ground_' not in client.get(reverse("staff:request", args=[single.reference])).content.decode()


@pytest.mark.django_db
def test_the_request_page_offers_a_ground_of_one_right_only_where_it_can_refuse(client):
    """Compelling legitimate grounds answer an objection other than to direct marketing (Art. 21(1)), legal claims an
    erasure (Art. 17(3)(e)): the rejection offers one only when the request asks that right alone, the Complete form
    on that right's row only."""
    from requests_app.models import RequestType
    from requests_app.services.intake import RightDetails

    login_staff(client, staff_in_role("DPO", username="dpo-one-right-grounds"))
    objection = RightDetails(RequestType.OBJECTION, objection_processing="Fraud checks on my calls")
    only_objection = request_in_status(Status.IN_PROGRESS, rights=[objection])
    page = client.get(reverse("staff:request", args=[only_objection.reference])).content.decode()
    grounds = _select(page, "ground")
    assert 'value="compelling_grounds"' in grounds and 'value="legal_claims"' not in grounds

    request = request_in_status(Status.IN_PROGRESS, rights=[RightDetails(RequestType.ERASURE), objection])
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    grounds = _select(page, "ground")
    assert 'value="compelling_grounds"' not in grounds and 'value="legal_claims"' not in grounds
    assert 'value="legal_claims"' in _select(page, "refusal_ground_erasure")
    assert 'value="compelling_grounds"' not in _select(page, "refusal_ground_erasure")
    assert 'value="compelling_grounds"' in _select(page, "refusal_ground_objection")
    assert 'value="legal_claims"' not in _select(page, "refusal_ground_objection")

    # A ground the form does not offer is refused, and nothing happens.
    response = client.post(reverse("staff:request_action", args=[request.reference, "reject"]), {
        "expected_status": Status.IN_PROGRESS, "ground": "legal_claims", "explanation": "A claim is pending.",
    })
    assert response.status_code == 400
    request.refresh_from_db()
    assert request.status == Status.IN_PROGRESS and not request.messages.exists()


@pytest.mark.django_db
def test_a_right_refused_from_the_request_page_is_told_and_shown(client, django_capture_on_commit_callbacks):
    from requests_app.models import RequestType
    from requests_app.services.intake import RightDetails
    from tests.factories import released_package

    login_staff(client, staff_in_role("DPO", username="dpo-refuse"))
    request = request_in_status(Status.IN_PROGRESS, rights=[RightDetails(RequestType.ACCESS), RightDetails(RequestType.ERASURE)])
    released_package(request)
    erasure_kept_whole(request)

    with django_capture_on_commit_callbacks(execute=True):
        response = post_confirmed(client, reverse("staff:request_action", args=[request.reference, "complete"]), {
            "letter": "Your copy is on your status page.", "expected_status": Status.IN_PROGRESS,
            "refusal_ground_access": "", "refusal_explanation_access": "",
            "refusal_ground_erasure": "legal_obligation", "refusal_explanation_erasure": "Telecom law keeps call records 12 months.",
        })

    assert response.status_code == 302
    request.refresh_from_db()
    assert request.status == Status.COMPLETED and request.refused_rights == ["erasure"]
    assert "Telecom law keeps call records 12 months." in request.messages.get().body
    page = html.unescape(client.get(reverse("staff:request", args=[request.reference])).content.decode())
    assert "Refused because: Legal obligation to retain the data (Art. 17(3)(b))" in page
    # The trail names the right and the ground, not what the subject was told.
    assert "refused: right Erase their data, ground Legal obligation to retain the data (Art. 17(3)(b))" in page


@pytest.mark.django_db
def test_refusing_every_right_on_one_ground_from_the_request_page_sends_to_reject_and_keeps_what_was_typed(client):
    from requests_app.models import RequestType
    from requests_app.services.intake import RightDetails

    login_staff(client, staff_in_role("DPO", username="dpo-refuse-all"))
    request = request_in_status(Status.IN_PROGRESS, rights=[RightDetails(RequestType.ACCESS), RightDetails(RequestType.ERASURE)])

    response = client.post(reverse("staff:request_action", args=[request.reference, "complete"]), {
        "letter": "", "expected_status": Status.IN_PROGRESS,
        "refusal_ground_access": "excessive", "refusal_explanation_access": "The tenth request this month.",
        "refusal_ground_erasure": "excessive", "refusal_explanation_erasure": "The tenth request this month.",
    })

    assert response.status_code == 409
    page = html.unescape(response.content.decode())
    assert "Every right asked would be refused on the same ground: that is a rejection. Use Reject instead" in page
    assert "The tenth request this month." in page and "<details open><summary>Complete</summary>" in page
    request.refresh_from_db()
    assert request.status == Status.IN_PROGRESS and request.refused_rights == [] and not request.messages.exists()


@pytest.mark.django_db
def test_refusing_every_right_each_on_its_own_ground_from_the_request_page_completes_the_request(client, django_capture_on_commit_callbacks):
    """QA #4: Reject offers neither Art. 17(3)(b) for the erasure nor Art. 21(1) for the objection."""
    from requests_app.models import RequestType
    from requests_app.services.intake import RightDetails

    login_staff(client, staff_in_role("DPO", username="dpo-refuse-each"))
    fraud_checks = RightDetails(RequestType.OBJECTION, objection_processing="Fraud checks on my calls")
    request = request_in_status(Status.IN_PROGRESS, rights=[RightDetails(RequestType.ERASURE), fraud_checks])
    erasure_kept_whole(request)

    with django_capture_on_commit_callbacks(execute=True):
        response = post_confirmed(client, reverse("staff:request_action", args=[request.reference, "complete"]), {
            "letter": "", "expected_status": Status.IN_PROGRESS,
            "refusal_ground_erasure": "legal_obligation", "refusal_explanation_erasure": "Telecom law keeps call records 12 months.",
            "refusal_ground_objection": "compelling_grounds", "refusal_explanation_objection": "Fraud checks protect other customers.",
        })

    assert response.status_code == 302
    request.refresh_from_db()
    assert request.status == Status.COMPLETED and request.refused_rights == ["erasure", "objection"]
    body = request.messages.get().body
    assert "Telecom law keeps call records 12 months." in body and "Fraud checks protect other customers." in body


@pytest.mark.django_db
def test_a_ground_the_form_does_not_offer_against_a_marketing_objection_is_refused(client):
    from requests_app.models import RequestType
    from requests_app.services.intake import RightDetails
    from tests.factories import released_package

    login_staff(client, staff_in_role("DPO", username="dpo-refuse-marketing"))
    marketing = RightDetails(RequestType.OBJECTION, objection_processing="Promotional calls", direct_marketing=True)
    request = request_in_status(Status.IN_PROGRESS, rights=[RightDetails(RequestType.ACCESS), marketing])
    released_package(request)

    response = client.post(reverse("staff:request_action", args=[request.reference, "complete"]), {
        "expected_status": Status.IN_PROGRESS, "refusal_ground_objection": "other",
        "refusal_explanation_objection": "Our interest in selling outweighs it.",
    })

    assert response.status_code == 400
    request.refresh_from_db()
    assert request.status == Status.IN_PROGRESS and request.refused_rights == []


@pytest.mark.django_db
def test_a_handler_reassigned_meanwhile_keeps_the_reasons_they_wrote_for_a_refusal(client):
    from requests_app.models import RequestType
    from requests_app.services import routing
    from requests_app.services.intake import RightDetails

    handler, dpo = staff_in_role("Handler", username="hana-refusal"), staff_in_role("DPO", username="dora-refusal")
    request = request_in_status(Status.IN_PROGRESS, rights=[RightDetails(RequestType.ACCESS), RightDetails(RequestType.ERASURE)])
    routing.request_assign(request=request, assignee=dpo, actor=Actor.staff(dpo))
    login_staff(client, handler)

    response = client.post(reverse("staff:request_action", args=[request.reference, "complete"]), {
        "expected_status": Status.IN_PROGRESS, "refusal_ground_erasure": "legal_obligation",
        "refusal_explanation_erasure": "Telecom law keeps call records 12 months.",
    })

    assert response.status_code == 403
    assert 'readonly>Telecom law keeps call records 12 months.</textarea>' in html.unescape(response.content.decode())


@pytest.mark.django_db
def test_recording_the_identity_proof_that_arrived_by_post_restarts_the_clock_and_the_subject_is_no_longer_waited_for(client):
    """The ID asked for came by post: recorded as verified, the request stayed "waiting for your reply" to its
    subject, with its clock paused."""
    from requests_app.services.handling import request_information

    dpo = staff_in_role("DPO", username="dpo-proof-by-post")
    request = request_in_status(Status.IN_PROGRESS)
    request_information(request=request, actor=Actor.staff(dpo), body="Please send a copy of your ID.", expected_status=Status.IN_PROGRESS)
    login_staff(client, dpo)
    page = html.unescape(client.get(reverse("staff:request", args=[request.reference])).content.decode())
    verification = page[page.index("<summary>Verify identity</summary>"):]
    assert "The clock is paused while we wait for the subject. Recording a verification takes it as their answer" in (
        verification[:verification.index("</form>")]
    )

    email = request.identities.get(kind=IdentityKind.EMAIL)
    response = client.post(
        reverse("staff:request_action", args=[request.reference, "verify_identity"]),
        {"identities": [email.id], "method": VerificationMethod.DOCUMENT, "expected_status": Status.AWAITING_SUBJECT,
         "expected_version": lifecycle.state_version(request)},
        follow=True,
    )

    assert "Identity verification recorded. The clock runs again and the request is in progress" in html.unescape(
        response.content.decode()
    )
    request.refresh_from_db()
    assert request.status == Status.IN_PROGRESS and not request.clock_paused
    assert request.events.filter(action="clock_resumed").exists()
    status_page = html.unescape(client.get(reverse("status", args=[request.reference, request.secret])).content.decode())
    assert "<dt>Status</dt><dd><strong>In progress</strong></dd>" in status_page
    assert "paused until we hear from you" not in status_page  # the question's own text, in the thread, may say it
    assert str(selectors.NEXT_STEP_TEXT[Status.IN_PROGRESS]) in status_page
    assert "The time to answer started running again." in status_page


@pytest.mark.django_db
def test_recording_a_verification_on_a_running_clock_says_nothing_of_the_clock(client):
    dpo = staff_in_role("DPO", username="dpo-running-clock")
    request = request_in_status(Status.IDENTITY_CHECK)
    login_staff(client, dpo)
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert "Recording a verification takes it as their answer" not in page

    email = request.identities.get(kind=IdentityKind.EMAIL)
    response = client.post(
        reverse("staff:request_action", args=[request.reference, "verify_identity"]),
        {"identities": [email.id], "method": VerificationMethod.DOCUMENT, "expected_status": Status.IDENTITY_CHECK},
        follow=True,
    )
    page = response.content.decode()
    assert "Identity verification recorded." in page and "The clock runs again" not in page


@pytest.mark.django_db
def test_the_staff_pages_messages_keep_their_list_semantics(client):
    """role="status" on the <ul> replaced its list role: it goes on a wrapper instead."""
    dpo = staff_in_role("DPO", username="dpo-messages")
    request = request_in_status(Status.IDENTITY_CHECK)
    login_staff(client, dpo)
    email = request.identities.get(kind=IdentityKind.EMAIL)
    page = client.post(
        reverse("staff:request_action", args=[request.reference, "verify_identity"]),
        {"identities": [email.id], "method": VerificationMethod.DOCUMENT, "expected_status": Status.IDENTITY_CHECK},
        follow=True,
    ).content.decode()
    assert '<div role="status"><ul class="messages"><li class="success">Identity verification recorded.' in page
    assert not re.search(r"<ul[^>]*role=", page)


@pytest.mark.django_db
def test_every_column_of_the_request_pages_tables_has_a_header_a_screen_reader_reads(client):
    """A column of buttons or links had an empty <th>: a screen reader named its cells by nothing. Its header is
    hidden text. The templates are checked too, for tables a page shows only with data (actions, notices, deliveries)."""
    from django.conf import settings

    from tests.factories import released_package

    request = request_in_status(Status.IN_PROGRESS)
    released_package(request)
    login_staff(client, staff_in_role("DPO", username="dpo-headers"))
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    headers = re.findall(r"<th(?: [^>]*)?>(.*?)</th>", page, re.S)
    assert headers and all(re.sub(r"<[^>]+>", "", header).strip() for header in headers), headers
    assert '<th scope="col"><span class="visually-hidden">Actions</span></th>' in page

    empty = [
        path.name for path in (settings.BASE_DIR / "templates").rglob("*.html")
        if re.search(r"<th(?: [^>]*)?>\s*</th>", path.read_text())
    ]
    assert not empty


@pytest.mark.django_db
def test_the_rejection_offers_the_rights_of_others_against_a_portability_request_never_an_access_request(client):
    """Art. 15(4) limits the copy only (recital 63): other people's data is masked in the package, never a reason to
    refuse the subject access; Art. 20(4) may refuse the data ported."""
    from requests_app.models import RequestType
    from requests_app.services.intake import RightDetails

    login_staff(client, staff_in_role("DPO", username="dpo-rights-of-others"))
    portability = request_in_status(Status.IN_PROGRESS, rights=[RightDetails(RequestType.PORTABILITY)])
    page = client.get(reverse("staff:request", args=[portability.reference])).content.decode()
    assert 'value="rights_of_others"' in _select(page, "ground")

    access = request_in_status(Status.IN_PROGRESS)
    page = client.get(reverse("staff:request", args=[access.reference])).content.decode()
    assert 'value="rights_of_others"' not in _select(page, "ground")
    response = client.post(reverse("staff:request_action", args=[access.reference, "reject"]), {
        "expected_status": Status.IN_PROGRESS, "ground": "rights_of_others", "explanation": "Your records name the people you called.",
    })
    assert response.status_code == 400
    access.refresh_from_db()
    assert access.status == Status.IN_PROGRESS and not access.messages.exists()


@pytest.mark.django_db
def test_an_access_request_rejected_before_on_the_rights_of_others_still_names_its_ground(client):
    """No longer a ground against access, it stays the recorded ground of the requests rejected or refused on it."""
    from requests_app.models import RequestType

    login_staff(client, staff_in_role("DPO", username="dpo-old-rejection"))
    rejected = request_in_status(Status.REJECTED)
    rejected.__class__.objects.filter(pk=rejected.pk).update(rejection_ground="rights_of_others")
    refused = request_in_status(Status.COMPLETED)
    refused.rights.filter(right=RequestType.ACCESS).update(refusal_ground="rights_of_others")
    for request in (rejected, refused):
        page = html.unescape(client.get(reverse("staff:request", args=[request.reference])).content.decode())
        assert "The rights and freedoms of others (Art. 15(4), 20(4))" in page
        certificate = html.unescape(client.get(reverse("staff:certificate", args=[request.reference])).content.decode())
        assert "The rights and freedoms of others (Art. 15(4), 20(4))" in certificate
        assert client.get(reverse("status", args=[request.reference, request.secret])).status_code == 200


@pytest.mark.django_db
def test_a_ccpa_request_to_limit_is_rejected_from_the_page_as_fraudulent_never_for_an_unverified_identity(client, django_capture_on_commit_callbacks):
    """CCPA Regulations § 7027(e) and (f)."""
    from requests_app.models import RequestType
    from requests_app.services.intake import RightDetails

    login_staff(client, staff_in_role("DPO", username="dpo-limit"))
    request = request_in_status(Status.IN_PROGRESS, regime="ccpa", rights=[RightDetails(RequestType.LIMIT_USE)])
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    grounds = _select(page, "ground")
    assert 'value="fraudulent"' in grounds and 'value="identity_not_verified"' not in grounds
    url = reverse("staff:request_action", args=[request.reference, "reject"])

    response = client.post(url, {"expected_status": Status.IN_PROGRESS, "ground": "identity_not_verified", "explanation": ""})
    assert response.status_code == 400
    response = client.post(url, {"expected_status": Status.IN_PROGRESS, "ground": "fraudulent", "explanation": ""})
    assert response.status_code == 409
    assert "the letter must give the reasons" in html.unescape(response.content.decode())
    request.refresh_from_db()
    assert request.status == Status.IN_PROGRESS and not request.messages.exists()

    with django_capture_on_commit_callbacks(execute=True):
        response = post_confirmed(client, url, {
            "expected_status": Status.IN_PROGRESS, "ground": "fraudulent",
            "explanation": "The address that sent it filed 300 requests for other people's numbers today.",
        })
    assert response.status_code == 302
    request.refresh_from_db()
    assert request.status == Status.REJECTED and request.rejection_ground == "fraudulent"
    page = html.unescape(client.get(reverse("staff:request", args=[request.reference])).content.decode())
    assert "A documented good-faith belief that the request is fraudulent (CCPA Regs. § 7027(f))" in page

    # Not offered for a request to know.
    access = request_in_status(Status.IN_PROGRESS, regime="ccpa")
    grounds = _select(client.get(reverse("staff:request", args=[access.reference])).content.decode(), "ground")
    assert 'value="fraudulent"' not in grounds and 'value="identity_not_verified"' in grounds


@pytest.mark.django_db
def test_messages_and_notes_take_their_direction_from_their_own_text(client):
    """An Arabic or Hebrew message laid out left to right puts its full stop and numbers in the wrong places: each
    message and note shown, and each written to the subject or as a note, takes its direction from its first letters."""
    from requests_app.services import handling

    request = request_in_status(Status.IN_PROGRESS)
    dpo = staff_in_role("DPO", username="dpo-direction")
    handling.subject_reply(request=request, body="أريد نسخة من بياناتي.")
    handling.note_add(request=request, actor=Actor.staff(dpo), body="طلب الوصول، انظر الملف 12.")
    login_staff(client, dpo)
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert '<div class="prewrap" dir="auto">أريد نسخة من بياناتي.</div>' in page
    assert '<div class="prewrap" dir="auto">طلب الوصول، انظر الملف 12.</div>' in page
    textareas = re.findall(r"<textarea[^>]*>", page)
    for label in ("Internal note", "Message to the subject", "What do you need from the subject?"):
        field_id = re.search(rf'<label for="([^"]+)"[^>]*>{re.escape(html.escape(label, quote=False))}', page).group(1)
        (textarea,) = [tag for tag in textareas if f'id="{field_id}"' in tag]
        assert 'dir="auto"' in textarea, label


# --- Deleting a document the subject sent -------------------------------------------------------------------------

ID_COPY = b"%PDF-1.4\n% a copy of an identity card\n"


def _document_sent(request, name="id-card.pdf"):
    return handling.subject_reply(request=request, body="", document=SimpleUploadedFile(name, ID_COPY)).attachments.get()


@pytest.mark.django_db
def test_staff_who_work_the_request_delete_a_document_after_confirming(client, django_capture_on_commit_callbacks):
    dpo = staff_in_role("DPO", username="dpo-deletes")
    request = request_in_status(Status.IN_PROGRESS)
    document = _document_sent(request)
    stored_name = document.file.name
    login_staff(client, dpo)
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    delete_url = reverse("staff:attachment_delete", args=[document.public_id])
    assert f'href="{delete_url}"' in page

    confirm = client.get(delete_url).content.decode()  # asks first, and changes nothing
    assert "Delete this document?" in confirm and "<bdi>id-card.pdf</bdi>" in confirm and f'action="{delete_url}"' in confirm
    document.refresh_from_db()
    assert not document.is_deleted

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(delete_url, follow=True)
    page = html.unescape(response.content.decode())
    assert "Document deleted." in page
    document.refresh_from_db()
    assert document.is_deleted and not default_storage.exists(stored_name)
    # Where the document was, in the list and in the thread: the tombstone, with no name, link or Delete.
    tombstone = f"Document deleted on {date_in_words(timezone.localdate())} by dpo-deletes"
    assert page.count(tombstone) == 2
    assert "id-card.pdf" not in page and reverse("staff:attachment", args=[document.public_id]) not in page
    assert delete_url not in page
    assert request.events.get(action="attachment_deleted").actor_id == dpo.id

    # A link from a page loaded before: gone, not a broken file.
    gone = client.get(reverse("staff:attachment", args=[document.public_id]))
    assert gone.status_code == 410 and not request.events.filter(action="attachment_downloaded").exists()
    # Sent again (a second tab): refused, nothing more recorded.
    again = html.unescape(client.post(delete_url, follow=True).content.decode())
    assert "This document was deleted already." in again
    assert request.events.filter(action="attachment_deleted").count() == 1


@pytest.mark.parametrize("role", ["Auditor", "Handler"])
@pytest.mark.django_db
def test_staff_who_do_not_work_the_request_get_no_delete_and_are_refused(client, role):
    request = request_in_status(Status.IN_PROGRESS)
    document = _document_sent(request)
    login_staff(client, staff_in_role(role, username=f"{role.lower()}-not-on-it"))
    delete_url = reverse("staff:attachment_delete", args=[document.public_id])
    assert delete_url not in client.get(reverse("staff:request", args=[request.reference])).content.decode()

    assert client.get(delete_url).status_code == 403
    assert client.post(delete_url).status_code == 403
    document.refresh_from_db()
    assert (document.original_name, document.is_deleted) == ("id-card.pdf", False)
    assert default_storage.exists(document.file.name)
    assert not request.events.filter(action="attachment_deleted").exists()


@pytest.mark.django_db
def test_verifying_identity_by_document_from_the_page_deletes_the_documents_by_default(client):
    dpo = staff_in_role("DPO", username="dpo-verifies")
    request = request_in_status(Status.IDENTITY_CHECK)
    document = _document_sent(request)
    login_staff(client, dpo)
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    verification = page[page.index("<summary>Verify identity</summary>"):]
    verification = verification[:verification.index("</form>")]
    assert "Delete the documents the subject sent for this check" in verification
    assert re.search(r'<input type="checkbox" name="delete_documents"[^>]* checked>', verification)  # ticked

    email = request.identities.get(kind=IdentityKind.EMAIL)
    client.post(
        reverse("staff:request_action", args=[request.reference, "verify_identity"]),
        {"identities": [email.id], "method": VerificationMethod.DOCUMENT, "delete_documents": "on", "expected_status": Status.IDENTITY_CHECK},
    )
    document.refresh_from_db()
    assert document.is_deleted and document.deleted_by == dpo


@pytest.mark.django_db
def test_rejecting_for_an_unverified_identity_from_the_page_needs_information_asked_first(client):
    """Art. 11(2), 12(2), 12(6): the form says what the ground needs, and the service refuses it until the subject was
    asked to identify themselves."""
    login_staff(client, staff_in_role("DPO", username="dpo-identity"))
    request = request_in_status(Status.IN_PROGRESS)
    page = html.unescape(client.get(reverse("staff:request", args=[request.reference])).content.decode())
    assert (
        "“Identity could not be verified” only once the subject was asked for information that identifies them "
        "(Request information): say what was asked and why what they sent is not enough."
    ) in page
    response = client.post(
        reverse("staff:request_action", args=[request.reference, "reject"]),
        {"expected_status": Status.IN_PROGRESS, "ground": "identity_not_verified", "explanation": "We could not verify you."},
    )
    assert response.status_code == 409
    assert "never asked for information that identifies them on this request" in html.unescape(response.content.decode())
    request.refresh_from_db()
    assert request.status == Status.IN_PROGRESS and not request.messages.exists()


@pytest.mark.django_db
def test_staff_pages_name_the_rights_and_grounds_of_the_subject_not_in_the_subjects_words(client):
    """The subject's own words ("my data") read as quotes on staff's pages: staff read "their data"."""
    request = request_in_status(
        Status.IN_PROGRESS,
        rights=[RightDetails(RequestType.RESTRICTION, restriction_ground=RestrictionGround.ACCURACY_CONTESTED)],
    )
    login_staff(client, staff_in_role("DPO", username="dpo-their-data"))

    page = html.unescape(client.get(reverse("staff:request", args=[request.reference])).content.decode())
    assert "Restrict the processing of their data" in page
    assert "The subject contests the accuracy of their data (Art. 18(1)(a))" in page
    queue = html.unescape(client.get(reverse("staff:queue"), {"type": "restriction"}).content.decode())
    assert f"{request.reference}" in queue and "Restrict the processing of their data (1)" in queue
    rule_form = html.unescape(client.get(reverse("staff:rule_new")).content.decode())
    assert "Erase their data" in rule_form
    for text in (page, queue, rule_form):
        assert "my data" not in text


@pytest.mark.django_db
def test_a_receipt_never_confirmed_of_a_request_closed_first_is_not_shown_as_owed(client):
    request = submit_request(regime="ccpa")  # its on-commit confirmation never ran
    login_staff(client, staff_in_role("DPO", username="dpo-receipt"))
    url = reverse("staff:request", args=[request.reference])
    assert "Receipt to confirm by" in client.get(url).content.decode()
    type(request).objects.filter(pk=request.pk).update(status=Status.WITHDRAWN, closed_at=timezone.now())
    page = client.get(url).content.decode()
    assert "Receipt to confirm by" not in page and "not yet" not in page


@pytest.mark.django_db
def test_staff_see_which_document_was_sent_as_proof_of_identity_and_that_the_system_deleted_it(client):
    """Sent as proof of identity, a document goes without staff acting when the request closes: its tombstone names
    no one, and while it lasts staff are told it will go."""
    dpo = staff_in_role("DPO", username="dpo-reads")
    request = request_in_status(Status.IN_PROGRESS)
    handling.subject_reply(
        request=request, body="", document=SimpleUploadedFile("id.pdf", ID_COPY), identity_document=True
    )
    login_staff(client, dpo)
    page = html.unescape(client.get(reverse("staff:request", args=[request.reference])).content.decode())
    assert "sent as proof of identity: deleted once an identifier is verified or the request closes" in page

    intake.request_withdraw(request=request, actor=Actor.subject())
    page = html.unescape(client.get(reverse("staff:request", args=[request.reference])).content.decode())
    tombstone = f"Document deleted on {date_in_words(timezone.localdate())}"
    assert page.count(tombstone) == 2 and f"{tombstone} by" not in page  # the list and the thread; by nobody
    assert "id.pdf" not in page


@pytest.mark.django_db
def test_the_page_says_a_phone_number_verified_by_an_identity_document_is_not_searched(client):
    """Verified so before the rule refused it: the number stays as recorded, and staff learn why the sources are
    not searched by it and how to verify it so that they are."""
    request = request_in_status(Status.IN_PROGRESS, subject_phone="+32475123456")
    request.identities.update(verified_at=timezone.now(), verification_method=VerificationMethod.DOCUMENT)
    login_staff(client, staff_in_role("DPO", username="dpo-unproven"))

    page = html.unescape(client.get(reverse("staff:request", args=[request.reference])).content.decode())

    phone_row = next(row for row in page.split("<tr>") if "+32475123456" in row)
    assert "Not searched in the source systems:" in phone_row
    assert "Verify it by one of these: “Call-back to the phone number”, “Matched against account records”." in phone_row
    email_row = next(row for row in page.split("<tr>") if "ana@example.com" in row)
    assert "Not searched" not in email_row  # the request's own address: what we answer goes there


@pytest.mark.django_db
def test_the_page_warns_when_the_phone_number_is_verified_on_someone_elses_request(client):
    """One person's number on two people's requests is how one would get the other's call records: a warning by
    the number and in the verify form, not a refusal (a shared line is no attack)."""
    victims = request_in_status(Status.IN_PROGRESS, subject_phone="+32475123456", subject_name="Bea Claes", subject_email="bea@example.com")
    victims.identities.filter(kind=IdentityKind.PHONE).update(verified_at=timezone.now(), verification_method=VerificationMethod.CALLBACK)
    request = request_in_status(Status.IDENTITY_CHECK, subject_phone="+32475123456")
    same_person = request_in_status(Status.IN_PROGRESS, subject_phone="+32475123456", subject_name="ana  PEETERS")
    same_person.identities.update(verified_at=timezone.now(), verification_method=VerificationMethod.ACCOUNT_RECORDS)
    login_staff(client, staff_in_role("DPO", username="dpo-shared"))

    page = html.unescape(client.get(reverse("staff:request", args=[request.reference])).content.decode())

    warning = (
        f"Also verified on {victims.reference}, the request of someone with another name or email address: make sure "
        "it is this subject's, or the source systems would give them the other person's data."
    )
    phone_row = next(row for row in page.split("<tr>") if "+32475123456" in row)
    assert warning in phone_row
    assert same_person.reference not in page  # the same name (case and spacing aside) and address: the same person
    verify_form = page.split("<summary>Verify identity</summary>")[1].split("</details>")[0]
    assert warning in verify_form
    assert "ana@example.com" not in verify_form.split("<form")[0]  # the email is nobody else's
