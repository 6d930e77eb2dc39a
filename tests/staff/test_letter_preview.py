"""Previewing the letter an action on the request page would send (staff:request_action_preview): exactly the
letter sent, and nothing changed to show it."""

import html

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from requests_app.audit import Actor
from requests_app.lifecycle import state_version
from requests_app.models import (
    AuditChainHead, AuditEvent, ClockPause, Message, PrivacyRequest, RequestType, SentNotification, Status,
)
from requests_app.services import handling
from requests_app.services.intake import RightDetails
from requests_app.staff.views import CONFIRMED
from tests.conftest import login_staff
from tests.factories import erasure_kept_whole, released_package, request_in_status, staff_in_role


@pytest.fixture
def dpo(db):
    return staff_in_role("DPO", username="dpo-preview")


def form_data(request, action):
    shown = {"expected_status": request.status, "expected_version": state_version(request)}
    return {
        "complete": {**shown, "letter": "We sent you the copy of your data."},
        "reject": {**shown, "ground": "excessive", "explanation": "The tenth request this week."},
        "forward": {
            **shown, "controller": "Mobile Operator SA", "contact": "privacy@mobile-operator.example",
            "forwarded_on": timezone.localdate().isoformat(),
        },
        "fee": {**shown, "amount": "25.00", "explanation": "A copy of the same data, asked for the fifth time."},
        "extend": {"reason": "Many source systems to search."},
        "message": {"subject": "Your copy", "body": "Which of your two numbers should we search?"},
        "request_information": {**shown, "body": "Please send a copy of a bill in your name."},
        "pause": {"question": "Please confirm the number the calls were made from."},
    }[action]


def preview(client, request, action, data):
    return client.post(reverse("staff:request_action_preview", args=[request.reference, action]), data)


def everything(request):
    """What a preview must leave as it was: the request, its trail, its messages, what it owes or sent."""
    request = PrivacyRequest.objects.get(pk=request.pk)
    return (
        request.status, request.due_on, request.clock_paused, ClockPause.objects.count(), request.extended_at,
        request.fee_amount, request.forwarded_to,
        request.rejection_ground, request.refused_rights_mask, AuditEvent.objects.count(),
        AuditChainHead.objects.values_list("sequence", "hash").first(), Message.objects.count(),
        SentNotification.objects.count(), list(request.rights.values_list("refusal_ground", flat=True)),
    )


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["complete", "reject", "forward", "fee", "extend", "message", "request_information", "pause"])
def test_the_preview_is_the_email_sent_and_changes_nothing(client, dpo, action, django_capture_on_commit_callbacks):
    request = request_in_status(Status.IN_PROGRESS)
    if action == "complete":
        released_package(request)  # what completing an access request needs
    login_staff(client, dpo)
    data = form_data(request, action)
    before = everything(request)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = preview(client, request, action, data)

    assert response.status_code == 200
    assert callbacks == [] and mail.outbox == []  # no email, no task, no webhook queued
    assert everything(request) == before
    letter = response.context["letter"]
    assert not letter.by_post and letter.body.strip()
    page = html.unescape(response.content.decode())
    assert letter.body in page and letter.subject in page
    assert f'action="{reverse("staff:request_action", args=[request.reference, action])}"' in page
    for name, value in data.items():  # sent again as they were by "Send the letter"
        assert f'name="{name}" value="{value}"' in page
    if action in CONFIRMED:  # and, closing the request, the letter confirmed
        assert f'name="confirmed_letter" value="{letter.digest()}"' in page
        data = {**data, "confirmed_letter": letter.digest()}
    else:
        assert "confirmed_letter" not in page

    with django_capture_on_commit_callbacks(execute=True):
        sent = client.post(reverse("staff:request_action", args=[request.reference, action]), data)

    assert sent.status_code == 302
    (email,) = mail.outbox
    request.refresh_from_db()
    assert (letter.subject, letter.body) == (email.subject, email.body.replace(request.secret, "…"))
    assert request.secret not in page  # the status page's link is shown without its secret


@pytest.mark.django_db
def test_a_completion_refusing_a_right_is_previewed_as_sent_in_the_subjects_language(client, dpo, django_capture_on_commit_callbacks):
    request = request_in_status(
        Status.IN_PROGRESS, language="de", rights=[RightDetails(RequestType.ACCESS), RightDetails(RequestType.ERASURE)]
    )
    released_package(request)
    erasure_kept_whole(request)
    login_staff(client, dpo)
    data = {
        **form_data(request, "complete"), "refusal_ground_erasure": "legal_obligation",
        "refusal_explanation_erasure": "Das Handelsgesetzbuch verlangt zehn Jahre.",
    }
    before = everything(request)

    letter = preview(client, request, "complete", data).context["letter"]

    assert everything(request) == before  # the refusal recorded for the letter was rolled back with the rest
    assert "Das Handelsgesetzbuch verlangt zehn Jahre." in letter.body
    with django_capture_on_commit_callbacks(execute=True):
        confirmed = {**data, "confirmed_letter": letter.digest()}
        assert client.post(reverse("staff:request_action", args=[request.reference, "complete"]), confirmed).status_code == 302
    (email,) = mail.outbox
    request.refresh_from_db()
    assert request.status == Status.COMPLETED
    assert (letter.subject, letter.body) == (email.subject, email.body.replace(request.secret, "…"))


@pytest.mark.django_db
def test_without_an_email_address_the_preview_is_the_letter_to_post(client, dpo):
    request = request_in_status(Status.IN_PROGRESS, subject_email="")
    login_staff(client, dpo)
    data = form_data(request, "reject")

    response = preview(client, request, "reject", data)

    letter = response.context["letter"]
    assert letter.by_post
    page = html.unescape(response.content.decode())
    assert "nothing will be emailed" in page
    assert "Sending this letter closes the request. A closed request cannot be reopened." in page
    client.post(reverse("staff:request_action", args=[request.reference, "reject"]), {**data, "confirmed_letter": letter.digest()})
    posted = Message.objects.get(request=request)
    assert (letter.subject, letter.body) == (posted.subject, posted.body)


@pytest.mark.django_db
def test_a_preview_the_action_would_refuse_shows_the_form_with_why(client, dpo):
    request = request_in_status(Status.IN_PROGRESS)
    login_staff(client, dpo)
    before = everything(request)

    # The form's own check: no amount.
    invalid = preview(client, request, "fee", {**form_data(request, "fee"), "amount": ""})
    # The service's: "Other" needs the reasons, which the form does not check.
    refused = preview(client, request, "reject", {**form_data(request, "reject"), "ground": "other", "explanation": ""})

    assert invalid.status_code == 400 and invalid.context["open_form"] == "fee"
    assert refused.status_code == 409 and refused.context["open_form"] == "reject"
    assert "Explain to the subject why" in html.unescape(refused.content.decode())
    assert everything(request) == before


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["request_information", "pause"])
def test_a_preview_of_a_question_leaves_the_clock_running_and_its_button_says_it_pauses(client, dpo, action):
    request = request_in_status(Status.IN_PROGRESS)
    login_staff(client, dpo)
    data = form_data(request, action)

    response = preview(client, request, action, data)

    request.refresh_from_db()
    assert (request.status, request.clock_paused, request.pauses.count()) == (Status.IN_PROGRESS, False, 0)
    assert "The time we have to answer is paused until you reply." in response.context["letter"].body
    assert ">Send and pause</button>" in response.content.decode()
    client.post(reverse("staff:request_action", args=[request.reference, action]), data)
    request.refresh_from_db()
    assert request.clock_paused and request.pauses.count() == 1


@pytest.mark.django_db
def test_a_preview_of_a_message_is_sent_from_its_page_as_a_message(client, dpo):
    request = request_in_status(Status.IN_PROGRESS, subject_email="")
    login_staff(client, dpo)
    data = form_data(request, "message")

    response = preview(client, request, "message", data)

    letter = response.context["letter"]
    assert letter.by_post and letter.subject == "Your copy"
    page = html.unescape(response.content.decode())
    assert ">Send message</button>" in page and "Send and pause" not in page
    client.post(reverse("staff:request_action", args=[request.reference, "message"]), data)
    posted = Message.objects.get(request=request)
    assert (letter.subject, letter.body) == (posted.subject, posted.body)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "action, status, data, code, why",
    [
        # The forms' own checks.
        ("message", Status.IN_PROGRESS, {"subject": "", "body": ""}, 400, "This field is required."),
        ("pause", Status.IN_PROGRESS, {"question": ""}, 400, "This field is required."),
        # The services': the transition that stops the clock (from a page loaded before the request moved on,
        # on a request already waiting for the subject), a pause on a paused clock, the same message twice.
        ("request_information", Status.AWAITING_SUBJECT, {"body": "Which number?"}, 409, "cannot be moved to"),
        ("pause", Status.AWAITING_SUBJECT, {"question": "Which number?"}, 409, "The clock is already paused."),
        ("message", Status.IN_PROGRESS, {"subject": "", "body": "Sent already."}, 409, "The same text was sent at"),
    ],
)
def test_a_preview_of_a_question_or_message_the_action_would_refuse_shows_the_form_with_why(
    client, dpo, action, status, data, code, why
):
    request = request_in_status(status)
    if action == "message":
        handling.message_send(request=request, actor=Actor.staff(dpo), body="Sent already.")
    if action == "request_information":
        data = {**data, "expected_status": request.status, "expected_version": state_version(request)}
    login_staff(client, dpo)
    before = everything(request)

    response = preview(client, request, action, data)

    assert response.status_code == code and response.context["open_form"] == action
    assert "letter" not in response.context
    assert why in html.unescape(response.content.decode())
    assert everything(request) == before


@pytest.mark.django_db
def test_back_to_edit_shows_the_form_as_it_was_filled_in(client, dpo):
    request = request_in_status(Status.IN_PROGRESS)
    login_staff(client, dpo)

    response = preview(client, request, "reject", {**form_data(request, "reject"), "edit": "1"})

    assert response.status_code == 200
    assert response.context["open_form"] == "reject"
    assert "The tenth request this week.</textarea>" in html.unescape(response.content.decode())
    assert PrivacyRequest.objects.get(pk=request.pk).status == Status.IN_PROGRESS


@pytest.mark.django_db
def test_the_request_page_offers_a_preview_on_each_letter_form(client, dpo):
    request = request_in_status(Status.IN_PROGRESS)
    login_staff(client, dpo)
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    for action in ("fee", "extend", "message", "request_information", "pause"):
        assert f'formaction="{reverse("staff:request_action_preview", args=[request.reference, action])}"' in page
    for action in CONFIRMED:  # the preview is the only way to close: the form's one button, and its Enter key
        assert f'action="{reverse("staff:request_action_preview", args=[request.reference, action])}"' in page
        assert f'action="{reverse("staff:request_action", args=[request.reference, action])}"' not in page


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["Auditor", "Handler"])
def test_the_preview_is_refused_to_those_who_may_not_act_on_the_request(client, dpo, role):
    request = request_in_status(Status.IN_PROGRESS)
    PrivacyRequest.objects.filter(pk=request.pk).update(assignee=dpo)
    login_staff(client, staff_in_role(role, username=f"{role.lower()}-preview"))
    before = everything(request)

    response = preview(client, request, "reject", form_data(request, "reject"))

    assert response.status_code == 403
    assert everything(request) == before


@pytest.mark.django_db
def test_only_the_letter_actions_have_a_preview(client, dpo):
    request = request_in_status(Status.IN_PROGRESS)
    login_staff(client, dpo)
    response = preview(client, request, "note", {"body": "A note."})
    assert response.status_code == 404
    assert not request.notes.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("action", CONFIRMED)
def test_a_close_posted_without_confirming_its_letter_changes_nothing_and_shows_the_letter(
    client, dpo, action, django_capture_on_commit_callbacks
):
    """A form posted to the action from a page older than the preview step, or crafted: the letter, to confirm."""
    request = request_in_status(Status.IN_PROGRESS)
    if action == "complete":
        released_package(request)
    login_staff(client, dpo)
    data = form_data(request, action)
    url = reverse("staff:request_action", args=[request.reference, action])
    before = everything(request)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        shown = client.post(url, data)

    assert shown.status_code == 200
    assert callbacks == [] and mail.outbox == [] and everything(request) == before
    letter = shown.context["letter"]
    page = html.unescape(shown.content.decode())
    assert letter.body in page
    assert "Sending this letter closes the request and emails the subject at once. A closed request cannot be reopened." in page
    assert f'name="confirmed_letter" value="{letter.digest()}"' in page

    with django_capture_on_commit_callbacks(execute=True):
        sent = client.post(url, {**data, "confirmed_letter": letter.digest()})
        again = client.post(url, {**data, "confirmed_letter": letter.digest()})  # a second click, or the back button

    assert sent.status_code == 302 and again.status_code == 409
    assert PrivacyRequest.objects.get(pk=request.pk).status != Status.IN_PROGRESS
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_confirming_the_letter_of_a_request_that_moved_on_since_is_refused(client, dpo):
    request = request_in_status(Status.IN_PROGRESS)
    login_staff(client, dpo)
    data = form_data(request, "reject")
    letter = preview(client, request, "reject", data).context["letter"]
    # Meanwhile, a colleague asks a question and the subject answers it.
    handling.request_information(
        request=request, actor=Actor.staff(dpo), body="Which number?", expected_status=Status.IN_PROGRESS,
    )
    handling.subject_reply(request=request, body="The one ending in 42, and please also erase my emails.")
    before = everything(request)

    response = client.post(
        reverse("staff:request_action", args=[request.reference, "reject"]), {**data, "confirmed_letter": letter.digest()}
    )

    assert response.status_code == 409
    assert "has changed since you loaded it: the subject wrote, or its status changed." in html.unescape(response.content.decode())
    assert everything(request) == before


@pytest.mark.django_db
def test_confirming_a_letter_that_changed_since_its_preview_shows_the_new_letter_and_sends_nothing(client, dpo):
    request = request_in_status(Status.IN_PROGRESS)
    login_staff(client, dpo)
    data = form_data(request, "reject")
    letter = preview(client, request, "reject", data).context["letter"]
    PrivacyRequest.objects.filter(pk=request.pk).update(language="fr")  # the letter now goes in French
    before = everything(request)

    response = client.post(
        reverse("staff:request_action", args=[request.reference, "reject"]), {**data, "confirmed_letter": letter.digest()}
    )

    assert response.status_code == 200
    assert "the letter changed since you previewed it" in html.unescape(response.content.decode())
    assert response.context["letter"].digest() != letter.digest()
    assert everything(request) == before and mail.outbox == []
