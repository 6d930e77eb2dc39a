"""The postal address we post letters to (PrivacyRequest.postal_address): recorded on staff intake and by the API,
corrected on the request page, shown where staff post a letter and at the top of the letter printed to post, purged
with the subject's details, and never in the audit trail."""

import json

import pytest
from django.urls import reverse

from requests_app.audit import Actor
from requests_app.forms import RequestForm, StaffIntakeForm
from requests_app.lifecycle import NotAllowed, RequestError
from requests_app.models import AuditEvent, Channel, MessageDirection, PrivacyRequest, Status
from requests_app.services import handling
from requests_app.services.intake import purge_personal_data
from tests.conftest import login_staff
from tests.factories import request_in_status, staff_in_role, submit_request
from tests.test_admin import intake_data

ADDRESS = "Ana Peeters\nKerkstraat 12\n2000 Antwerpen\nBelgium"


@pytest.fixture
def dpo(db):
    return staff_in_role("DPO", username="dpo-post")


def by_post(dpo, **overrides) -> PrivacyRequest:
    """A letter recorded by staff with no email address: we write by post."""
    return submit_request(channel=Channel.POST, subject_email="", actor=Actor.staff(dpo), **overrides)


def events_text(request: PrivacyRequest) -> str:
    """Everything the trail holds about `request`, as text."""
    return json.dumps(list(AuditEvent.objects.filter(request=request).values("action", "note", "data", "actor_label")))


@pytest.mark.django_db
def test_staff_record_the_postal_address_of_a_letter_as_it_goes_on_the_envelope(client, dpo):
    staff = login_staff(client, dpo)
    page = staff.get(reverse("admin:requests_app_intake")).content.decode()
    # With the other ways to reach whoever filed, not after the confirmation box.
    assert page.index('name="subject_phone"') < page.index('name="postal_address"') < page.index('name="customer_reference"')

    typed = "  Ana Peeters \r\n\r\nKerkstraat 12\r\n 2000 Antwerpen\r\nBelgium  "
    response = staff.post(reverse("admin:requests_app_intake"), intake_data(subject_email="", postal_address=typed))

    assert response.status_code == 302
    request = PrivacyRequest.objects.get()
    assert request.postal_address == ADDRESS  # each line trimmed, the blank one dropped, LF line breaks
    assert "Kerkstraat" not in events_text(request)  # the trail is never purged: no address in it


@pytest.mark.parametrize(
    ("typed", "error"),
    [
        ("Kerkstraat\t12\n2000 Antwerpen", "Remove the tabs and other invisible characters"),
        ("Kerkstraat 12\u20282000 Antwerpen", "Remove the tabs and other invisible characters"),
        ("\u202eKerkstraat 12", "Remove the invisible characters that change the direction of the text."),
        ("\n".join(f"Line {number}" for number in range(9)), "An address has at most 8 lines"),
        ("x" * 501, "at most 500 characters"),
        ("-- / --", "Type the address in letters and digits."),
    ],
)
def test_a_postal_address_that_would_not_print_as_typed_is_refused(typed, error):
    form = StaffIntakeForm(intake_data(postal_address=typed))
    assert not form.is_valid()
    assert error in " ".join(form.errors["postal_address"])


def test_the_public_form_asks_no_postal_address():
    """A web request always has an email address, the filer's, which is where we write: no address "in case"."""
    assert "postal_address" not in RequestForm.base_fields


@pytest.mark.django_db
def test_an_intake_form_sent_again_with_another_address_records_another_request(client, dpo):
    staff = login_staff(client, dpo)
    page = staff.get(reverse("admin:requests_app_intake")).content.decode()
    key = page.split('name="submission_key" value="')[1][:36]
    data = intake_data(submission_key=key, postal_address=ADDRESS)
    staff.post(reverse("admin:requests_app_intake"), data)
    staff.post(reverse("admin:requests_app_intake"), data)
    assert PrivacyRequest.objects.count() == 1
    staff.post(reverse("admin:requests_app_intake"), {**data, "postal_address": "Rue Neuve 1\n1000 Bruxelles"})
    assert PrivacyRequest.objects.count() == 2


@pytest.mark.django_db
def test_staff_correct_the_postal_address_on_the_request_page_and_the_trail_keeps_no_address(client, dpo):
    request = by_post(dpo)
    staff = login_staff(client, dpo)
    page = staff.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert "No postal address recorded." in page and "Record a postal address" in page

    url = reverse("staff:request_action", args=[request.reference, "postal_address"])
    assert staff.post(url, {"postal_address": "Kerkstraat 12\r\n2000 Antwerpen"}).status_code == 302
    request.refresh_from_db()
    assert request.postal_address == "Kerkstraat 12\n2000 Antwerpen"
    page = staff.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert "Kerkstraat 12\n2000 Antwerpen" in page and "Correct the postal address" in page

    staff.post(url, {"postal_address": ADDRESS})
    request.refresh_from_db()
    assert request.postal_address == ADDRESS

    # Sent again, it changes nothing and says so; a mistake is shown in the form, which stays open.
    staff.post(url, {"postal_address": ADDRESS})
    refused = staff.post(url, {"postal_address": "Kerkstraat\t12"})
    assert refused.status_code == 400 and "Remove the tabs" in refused.content.decode()

    staff.post(url, {"postal_address": ""})
    request.refresh_from_db()
    assert request.postal_address == ""

    actions = list(AuditEvent.objects.filter(request=request).values_list("action", flat=True))
    assert actions.count("postal_address_corrected") == 2 and actions.count("postal_address_removed") == 1
    assert "Kerkstraat" not in events_text(request) and "Antwerpen" not in events_text(request)


@pytest.mark.django_db
def test_only_staff_who_may_work_the_request_correct_its_postal_address(client, dpo):
    request = by_post(dpo, postal_address=ADDRESS)
    auditor = staff_in_role("Auditor", username="auditor-post")
    url = reverse("staff:request_action", args=[request.reference, "postal_address"])
    assert login_staff(client, auditor).post(url, {"postal_address": "Elsewhere 1"}).status_code == 403
    with pytest.raises(NotAllowed):
        handling.postal_address_correct(request=request, actor=Actor.staff(auditor), postal_address="Elsewhere 1")
    request.refresh_from_db()
    assert request.postal_address == ADDRESS


@pytest.mark.django_db
def test_a_closed_request_still_takes_a_postal_address_but_not_once_purged(dpo):
    """A closed request may still have a letter to post (a notice before a restriction is lifted); a purged one has
    nobody left to write to."""
    completed = request_in_status(Status.COMPLETED)
    handling.postal_address_correct(request=completed, actor=Actor.staff(dpo), postal_address=ADDRESS)
    completed.refresh_from_db()
    assert completed.postal_address == ADDRESS

    purge_personal_data(completed)
    with pytest.raises(RequestError, match="deleted"):
        handling.postal_address_correct(request=completed, actor=Actor.staff(dpo), postal_address=ADDRESS)


@pytest.mark.django_db
def test_the_postal_address_is_purged_with_the_subjects_details(dpo):
    request = by_post(dpo, postal_address=ADDRESS)
    purge_personal_data(request)
    request.refresh_from_db()
    assert (request.subject_name, request.postal_address) == ("", "")


@pytest.mark.django_db
def test_a_letter_to_post_shows_where_it_goes_and_prints_with_the_address_at_the_top(client, dpo):
    request = by_post(dpo, postal_address=ADDRESS, language="fr")
    staff = login_staff(client, dpo)

    preview = staff.post(reverse("staff:request_action_preview", args=[request.reference, "message"]), {"body": "Votre dossier."})
    assert "Post it to:" in preview.content.decode() and ADDRESS in preview.content.decode()

    staff.post(reverse("staff:request_action", args=[request.reference, "message"]), {"body": "Votre dossier."})
    letter = request.messages.get(direction=MessageDirection.TO_SUBJECT)
    page = staff.get(reverse("staff:request", args=[request.reference])).content.decode()
    print_url = reverse("staff:letter_print", args=[letter.public_id])
    assert print_url in page

    printed = staff.get(print_url).content.decode()
    letter_part = printed[printed.index('<article class="letter"'):]
    # Our address, then theirs, then the date and the letter itself.
    assert letter_part.index("Kerkstraat 12") < letter_part.index("Votre dossier.")
    assert '<p class="letter-address"><bdi>Ana Peeters\nKerkstraat 12\n2000 Antwerpen\nBelgium</bdi></p>' in letter_part
    assert 'lang="fr"' in letter_part and "No postal address recorded" not in printed
    assert "Kerkstraat" not in events_text(request)


@pytest.mark.django_db
def test_a_letter_to_post_without_an_address_says_none_is_recorded(client, dpo):
    request = by_post(dpo)
    staff = login_staff(client, dpo)
    preview = staff.post(reverse("staff:request_action_preview", args=[request.reference, "message"]), {"body": "Your file."})
    assert "No postal address recorded: record one on the request's page." in preview.content.decode()

    staff.post(reverse("staff:request_action", args=[request.reference, "message"]), {"body": "Your file."})
    letter = request.messages.get(direction=MessageDirection.TO_SUBJECT)
    printed = staff.get(reverse("staff:letter_print", args=[letter.public_id])).content.decode()
    assert "No postal address recorded: record one on the request's page before you post this letter." in printed
    assert 'class="letter-address"' not in printed
