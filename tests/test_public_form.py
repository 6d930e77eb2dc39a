import datetime
import re

import pytest
import time_machine
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from requests_app.forms import RequestForm
from requests_app.models import IdentityKind, PrivacyRequest, RequestType, Status

VALID = {
    "rights": ["access", "rectification"],
    "rectification_data": "Billing address",
    "rectification_value": "Rue Neuve 1, 1000 Brussels",
    "subject_name": "Ana Peeters",
    "subject_email": "ana@example.com",
    "subject_phone": "+32 2 555 12 34",
    "customer_reference": "CUST-991",
    "ip_address": "192.0.2.10",
    "relationship": "end_user",
    "regime": "gdpr",
    "language": "fr",
    "description": "Please include call records.",
    "signature": "Ana Peeters",
    "confirm": "on",
    "website": "",
}


def post_form(client, **changes):
    data = {**VALID, **changes}
    data = {key: value for key, value in data.items() if value is not None}
    return client.post(reverse("submit"), data)


@pytest.mark.django_db
def test_form_is_served_with_labels_and_csrf(client):
    response = client.get(reverse("submit"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="csrfmiddlewaretoken"' in html
    assert '<label for="id_subject_email">' in html
    for value, _ in RequestType.choices:
        assert f'value="{value}"' in html


@pytest.mark.django_db
def test_each_right_has_a_one_line_hint_that_its_box_is_described_by(client):
    """Rights with close names told apart (restriction from limiting use, access from portability, erasure from
    objection and consent withdrawal): a screen reader reads each hint with its box."""
    from requests_app.forms import RIGHT_HINTS

    html = client.get(reverse("submit")).content.decode()
    for right, _label in RequestType.choices:
        box = re.search(rf'<input type="checkbox" name="rights" value="{right}" id="(id_rights_\d)" aria-describedby="([^"]+)">', html)
        assert box, right
        box_id, described_by = box.groups()
        assert described_by == f"{box_id}_hint"
        assert f'<p class="help option-hint" id="{box_id}_hint">{RIGHT_HINTS[right]}</p>' in html
    assert len(set(map(str, RIGHT_HINTS.values()))) == len(RequestType.choices)
    assert "stop using it" in str(RIGHT_HINTS[RequestType.RESTRICTION])
    assert "sensitive personal information" in str(RIGHT_HINTS[RequestType.LIMIT_USE])
    assert "machine-readable" in str(RIGHT_HINTS[RequestType.PORTABILITY])


def test_the_staff_intake_form_describes_its_boxes_by_no_hint():
    """Its hints would speak to the subject, and the admin's page does not show them: no aria-describedby to nothing."""
    from requests_app.forms import StaffIntakeForm

    assert "aria-describedby" not in str(StaffIntakeForm()["rights"])


@pytest.mark.django_db
def test_the_form_says_how_the_details_given_are_used_before_they_are_given(client, settings):
    """GDPR Art. 13: purpose and legal basis, recipients, retention, rights and the supervisory authority."""
    import datetime

    settings.UNVERIFIED_REQUEST_EXPIRY = datetime.timedelta(days=7)
    settings.CLOSED_REQUEST_RETENTION = datetime.timedelta(days=1095)
    html = client.get(reverse("submit")).content.decode()
    notice = html[html.index('id="notice-title"'):html.index("Send my request")]
    for expected in (
        "only to handle your request", "Art. 6(1)(c)", "Our data protection team sees them",
        "within 7 days, or before the last link we sent you for it expires if that is later",
        "for 3 years after your request is closed", "Data Protection Authority",
        "If we ask you for a copy of an identity document, we delete it once we have checked who you are.",
    ):
        assert expected in notice
    settings.CLOSED_REQUEST_RETENTION = datetime.timedelta(days=400)  # not whole years: in days
    assert "for 400 days after your request is closed" in client.get(reverse("submit")).content.decode()
    french = client.get(reverse("submit"), HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Autorité de protection des données" in french and "only to handle your request" not in french


@pytest.mark.django_db(transaction=True)
def test_valid_submission_saves_everything_and_emails_the_link(client):
    response = post_form(client)

    assert response.status_code == 302
    request = PrivacyRequest.objects.get()
    assert request.status == Status.AWAITING_VERIFICATION
    assert request.reference.startswith("DSR-20") and request.reference.endswith("00001")
    assert request.language == "fr"
    assert request.signature == "Ana Peeters" and request.signed_at is not None
    rights = {right.right: right for right in request.rights.all()}
    assert set(rights) == {"access", "rectification"}
    assert rights["rectification"].rectification_value == "Rue Neuve 1, 1000 Brussels"
    identities = {(i.kind, i.value, i.is_verified) for i in request.identities.all()}
    assert identities == {
        (IdentityKind.EMAIL, "ana@example.com", False),
        (IdentityKind.PHONE, "+3225551234", False),
        (IdentityKind.CUSTOMER_REFERENCE, "CUST-991", False),
        (IdentityKind.IP_ADDRESS, "192.0.2.10", False),
    }

    confirmation = client.get(response.url)
    assert request.reference in confirmation.content.decode()

    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ana@example.com"]
    assert "/verify/" in mail.outbox[0].body
    assert request.reference in mail.outbox[0].subject


@pytest.mark.parametrize(
    ("typed", "stored"),
    [("+32 2 234 56 78", "+3222345678"), ("0475 12 34 56", "+32475123456"), ("+33 6 12 34 56 78", "+33612345678")],
)
@pytest.mark.django_db
def test_the_help_texts_example_and_belgian_national_numbers_are_accepted(client, typed, stored):
    assert "+32 2 234 56 78" in client.get(reverse("submit")).content.decode()
    assert post_form(client, subject_phone=typed).status_code == 302
    assert PrivacyRequest.objects.get().subject_phone == stored


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"rights": ["teleport"]}, "rights", "Select a valid choice"),
        ({"rights": None}, "rights", "Choose at least one right"),
        ({"signature": ""}, "signature", "Type your full name to sign"),
        # Invisible characters alone: a request no one can read, search or hold as signed.
        ({"subject_name": "\u200b\u200b"}, "subject_name", "Type the name in letters."),
        ({"subject_name": "\u200f-\u200e"}, "subject_name", "Type the name in letters."),
        ({"signature": "\u200b\u200b"}, "signature", "Type your full name to sign"),
        # A direction override shows staff the letters after it reversed.
        ({"subject_name": "Ana \u202ePeeters"}, "subject_name", "change the direction of the text"),
        ({"signature": "\u2067Ana Peeters\u2069"}, "signature", "change the direction of the text"),
        ({"subject_email": "not-an-email"}, "subject_email", "valid email"),
        ({"subject_email": "ana@localhost"}, "subject_email", "valid email"),  # no mail reaches a subject there
        ({"subject_phone": "+32 12"}, "subject_phone", "valid phone number"),
        ({"subject_phone": "0999 12 34 56"}, "subject_phone", "valid phone number"),
        ({"description": "x" * 10_001}, "description", "too long"),
        ({"description": "é" * 10_001}, "description", "too long"),
        ({"rectification_value": ""}, "rectification_value", "corrected or completed value"),
        ({"rights": ["restriction"]}, "restriction_ground", "Choose the ground"),
        ({"rights": ["objection"]}, "objection_processing", "which processing"),
        ({"rights": ["withdraw_consent"]}, "consent_withdrawn", "which consent"),
        ({"confirm": None}, "confirm", "Please confirm"),
        ({"ip_address": "999.1.1.1"}, "ip_address", "valid IPv4 or IPv6"),
        ({"website": "http://spam.example"}, "__all__", "could not be accepted"),
        ({"relationship": ""}, "relationship", "Choose how you, or the person you are acting for, are related to us."),
        ({"customer_reference": ".."}, "customer_reference", "An account reference has letters or digits"),
        ({"customer_reference": " . "}, "customer_reference", "An account reference has letters or digits"),
        ({"customer_reference": "-/-"}, "customer_reference", "An account reference has letters or digits"),
    ],
)
@pytest.mark.django_db
def test_bad_input_gets_a_field_error_and_saves_nothing(client, changes, field, message):
    response = post_form(client, **changes)

    assert response.status_code == 200
    form = response.context["form"]
    assert any(message in error for error in form.errors[field]), form.errors
    assert message in response.content.decode().replace("&#x27;", "'")
    assert f'id="id_{field}_error"' in response.content.decode() or field in ("rights", "__all__")
    assert PrivacyRequest.objects.count() == 0
    assert len(mail.outbox) == 0


@pytest.mark.parametrize("name", ["李小龍", "Zoë O'Brien-Núñez", "محمد\u200cرضا", "Ana Peeters 2"])
@pytest.mark.django_db
def test_a_name_in_any_script_is_accepted_with_the_joiners_it_is_written_with(client, name):
    """A zero-width non-joiner is part of how Persian writes "Mohammadreza": only direction controls are refused."""
    assert post_form(client, subject_name=name, signature=name).status_code == 302
    assert PrivacyRequest.objects.get().subject_name == name


@pytest.mark.parametrize("reference", ["MOB-4471-2093", "123456", "ACME/2024.17 (main)", "Ü-77", "a/../b"])
@pytest.mark.django_db
def test_an_account_reference_with_letters_or_digits_is_kept_as_typed(client, reference):
    assert post_form(client, customer_reference=reference).status_code == 302
    request = PrivacyRequest.objects.get()
    assert request.customer_reference == reference
    assert request.identities.get(kind=IdentityKind.CUSTOMER_REFERENCE).value == reference


@pytest.mark.django_db
def test_an_account_reference_of_spaces_is_no_reference(client):
    assert post_form(client, customer_reference="   ").status_code == 302
    request = PrivacyRequest.objects.get()
    assert request.customer_reference == ""
    assert not request.identities.filter(kind=IdentityKind.CUSTOMER_REFERENCE).exists()


@pytest.mark.django_db
def test_how_the_subject_is_related_to_us_is_not_answered_for_them(client):
    """An end user's request may be forwarded to our customer as its controller: a question skipped must not read
    as "end user", as it did when the list opened on that answer."""
    import html

    page = client.get(reverse("submit")).content.decode()
    select = page[page.index('<select name="relationship"'):page.index("</select>", page.index('<select name="relationship"'))]
    assert re.search(r'<option value="" selected>Choose…</option>\s*<option value="end_user">', select)

    refused = html.unescape(post_form(client, relationship=None).content.decode())

    summary = refused[refused.index('class="error-summary"'):refused.index("</ul>", refused.index('class="error-summary"'))]
    assert '<a href="#id_relationship">How are you, or the person you are acting for, related to us: Choose how you, or the person you are acting for, are related to us.</a>' in summary
    assert PrivacyRequest.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["rectification_value", "objection_processing"])
def test_the_detail_limits_count_line_breaks_as_the_browser_does(client, field):
    """1,999 characters in the browser (maxlength 2000), 2,008 as sent with CRLF line breaks."""
    text = "\r\n".join(["a" * 199] * 10)
    response = post_form(client, rights=["rectification", "objection"], **{"objection_processing": "Marketing", field: text})
    assert response.status_code == 302
    assert getattr(PrivacyRequest.objects.get().rights.get(right=field.split("_")[0]), field) == "\n".join(["a" * 199] * 10)


@pytest.mark.django_db
def test_details_of_a_right_not_ticked_are_refused_not_dropped(client):
    """An objection typed without ticking "Object" would reach nobody, though it must stop direct marketing."""
    response = post_form(client, rights=["access"], objection_processing="Stop the marketing calls")

    assert response.status_code == 200
    errors = response.context["form"].errors
    assert errors["objection_processing"] == [
        "You filled this in without ticking “Object to the processing of my data”: tick it above, or empty this field."
    ]
    assert set(errors) == {"objection_processing", "rectification_data", "rectification_value"}  # VALID's details too
    assert PrivacyRequest.objects.count() == 0
    response = post_form(client, rights=["access", "objection"], objection_processing="Stop the marketing calls",
                         rectification_data="", rectification_value="")
    assert response.status_code == 302
    assert PrivacyRequest.objects.get().rights.get(right="objection").objection_processing == "Stop the marketing calls"


@pytest.mark.django_db
def test_an_objection_to_direct_marketing_is_filed_as_such(client):
    """Art. 21(3) makes it absolute: staff must be told it is one, not read it out of free text."""
    response = post_form(client, rights=["objection"], direct_marketing="on", objection_processing="",
                         rectification_data="", rectification_value="")
    assert response.status_code == 302  # the box says which processing: no text needed
    objection = PrivacyRequest.objects.get().rights.get(right="objection")
    assert objection.direct_marketing is True and objection.objection_processing == ""

    refused = post_form(client, rights=["access"], direct_marketing="on", rectification_data="", rectification_value="")
    assert refused.status_code == 200
    assert refused.context["form"].errors["direct_marketing"] == [
        "You ticked this box without ticking “Object to the processing of my data”: tick that too, or untick this box."
    ]


@pytest.mark.parametrize(("field", "value"), [("subject_email", "a\x00b@example.com"), ("ip_address", "192.0.2.1\x00")])
@pytest.mark.django_db
def test_a_null_character_is_one_error_not_also_a_format_error(client, field, value):
    response = post_form(client, **{field: value})
    assert response.context["form"].errors[field] == ["Null characters are not allowed."]


@pytest.mark.django_db
def test_a_body_django_will_not_read_gets_a_page_that_says_what_to_do(client, settings):
    """Over DATA_UPLOAD_MAX_MEMORY_SIZE Django refuses the form before any view: not its bare "Bad Request (400)"."""
    settings.DEBUG = False
    response = post_form(client, description="x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1))
    assert response.status_code == 400
    page = response.content.decode()
    assert "We could not read what was sent" in page and 'lang="fr"' in page
    assert PrivacyRequest.objects.count() == 0


def test_the_description_box_stops_at_its_limit_in_the_browser():
    assert 'maxlength="10000"' in str(RequestForm()["description"])


@pytest.mark.django_db
def test_a_detail_too_long_gets_one_error_not_also_a_missing_one(client):
    response = post_form(client, rectification_value="a" * 2001)
    assert response.context["form"].errors["rectification_value"] == [
        "Ensure this value has at most 2000 characters (it has 2001)."
    ]


@pytest.mark.django_db
def test_the_description_limit_counts_characters_as_the_browser_does(client):
    """10,000 characters however many bytes each takes, a CRLF line break counting as one."""
    description = "\r\n".join(["Ελληνικά"] * 1_111)  # 8,888 letters and 1,110 line breaks
    assert post_form(client, description=description).status_code == 302
    assert PrivacyRequest.objects.get().description == description.replace("\r\n", "\n")


@pytest.mark.django_db
def test_field_errors_are_tied_to_their_inputs(client):
    response = post_form(client, subject_email="nope")
    html = response.content.decode()
    assert 'aria-invalid="true"' in html
    assert 'href="#id_subject_email"' in html


@pytest.mark.django_db
def test_html_in_fields_is_stored_as_text_and_escaped_on_the_status_page(client):
    script = '<script>alert("x")</script>'
    post_form(
        client, subject_name=script, description=script, rights=["objection"], objection_processing=script,
        rectification_data=None, rectification_value=None,
    )
    request = PrivacyRequest.objects.get()
    assert request.subject_name == script
    assert request.rights.get().objection_processing == script

    html = client.get(reverse("status", args=[request.reference, request.secret])).content.decode()
    assert "<script>" not in html


@pytest.mark.django_db
def test_the_same_form_sent_again_shows_the_request_it_filed_rather_than_filing_it_twice(client):
    """Back, then Send: the browser fetches the form anew and fills every field back in (the browser test shows it)."""
    first = post_form(client)
    again = post_form(client)

    assert first.status_code == again.status_code == 302
    request = PrivacyRequest.objects.get()
    shown = client.get(again.url).content.decode()
    assert request.reference in shown and "You had sent this form already: we did not file it a second time." in shown
    # Another form (a second request, on purpose) is filed, and its page says nothing of a repeat.
    assert post_form(client, description="And my newsletter data.").status_code == 302
    assert PrivacyRequest.objects.count() == 2
    assert "You had sent this form already" not in client.get(reverse("submitted")).content.decode()
    # Another browser sending the same details files its own request; so does this one after ten minutes.
    assert post_form(Client()).status_code == 302
    with time_machine.travel(timezone.now() + datetime.timedelta(minutes=11)):
        assert post_form(client, description="And my newsletter data.").status_code == 302
    assert PrivacyRequest.objects.count() == 4


@pytest.mark.django_db
def test_the_same_form_sent_again_after_confirming_says_the_address_is_confirmed_not_to_confirm_it(client):
    from requests_app import lifecycle
    from requests_app.audit import Actor

    post_form(client)
    filed = PrivacyRequest.objects.get()
    assert "link to confirm your address" in client.get(reverse("submitted")).content.decode()
    lifecycle.transition(filed, "verify_email", actor=Actor.subject())

    shown = client.get(post_form(client).url).content.decode()

    assert PrivacyRequest.objects.count() == 1
    assert filed.reference in shown and "You had sent this form already" in shown
    assert "confirm your address" not in shown and "we cannot start until you do" not in shown
    assert "Your email address is confirmed already." in shown


@pytest.mark.django_db
def test_one_filled_in_form_files_one_request_whichever_browser_sends_it_again(client):
    """A retry on the way (a proxy, a flaky connection) sends the same page's form again, without the session."""
    import uuid

    key = re.search(r'name="submission_key" value="([0-9a-f-]{36})"', client.get(reverse("submit")).content.decode()).group(1)
    assert post_form(client, submission_key=key).status_code == 302

    again = post_form(Client(), submission_key=key)

    assert again.status_code == 302 and PrivacyRequest.objects.count() == 1
    # The same page brought back by the browser and corrected is another request, filed.
    assert post_form(Client(), submission_key=key, subject_email="ada.lovelace@example.com").status_code == 302
    assert PrivacyRequest.objects.count() == 2
    assert PrivacyRequest.objects.get(subject_email="ada.lovelace@example.com").submission_key is None
    # A blank form has a key of its own: the same details sent from it are a new request.
    assert post_form(Client(), submission_key=str(uuid.uuid4())).status_code == 302
    assert PrivacyRequest.objects.count() == 3


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_same_form_sent_twice_at_once_files_one_request():
    """Both sendings pass every check before either is stored: PostgreSQL makes the second wait on the first's
    key, and it is told which request the form filed."""
    import uuid

    from requests_app.audit import verify_chain
    from requests_app.services import intake
    from tests.factories import at_once, submit_request

    key = uuid.uuid4()

    outcomes = at_once(lambda: submit_request(submission_key=key), times=4)

    filed = PrivacyRequest.objects.get()
    assert [outcome.reference for outcome in outcomes if isinstance(outcome, PrivacyRequest)] == [filed.reference]
    assert [outcome.request.reference for outcome in outcomes if isinstance(outcome, intake.AlreadySubmitted)] == [filed.reference] * 3
    assert verify_chain() == (1, None)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_same_form_sent_twice_at_once_after_its_request_was_withdrawn_files_one_new_request():
    """The key the form files under anew is the same for every sending of that page: one wins, the others are told
    which request it filed."""
    from requests_app.audit import Actor
    from requests_app.services import intake
    from tests.factories import at_once

    first = Client()
    key = re.search(r'name="submission_key" value="([0-9a-f-]{36})"', first.get(reverse("submit")).content.decode()).group(1)
    post_form(first, submission_key=key)
    intake.request_withdraw(request=PrivacyRequest.objects.get(), actor=Actor.subject())
    browsers = [Client() for _ in range(4)]
    waiting = list(browsers)

    outcomes = at_once(lambda: post_form(waiting.pop(), submission_key=key).status_code, times=4)

    assert outcomes == [302] * 4
    refiled = PrivacyRequest.objects.get(status=Status.AWAITING_VERIFICATION)
    assert PrivacyRequest.objects.count() == 2
    assert {browser.session["submitted_reference"] for browser in browsers} == {refiled.reference}


@pytest.mark.django_db
def test_csrf_is_enforced():
    client = Client(enforce_csrf_checks=True)
    response = post_form(client)
    assert response.status_code == 403
    assert PrivacyRequest.objects.count() == 0


@pytest.mark.django_db
def test_submissions_are_rate_limited_per_ip(client, settings):
    settings.SUBMISSION_RATE_LIMIT = "2/h"
    # A browser each: the same form sent again from one would be shown its first request, not filed or counted.
    for _ in range(2):
        assert Client().post(reverse("submit"), VALID, REMOTE_ADDR="198.51.100.7").status_code == 302

    limited = Client().post(reverse("submit"), VALID, REMOTE_ADDR="198.51.100.7")
    assert limited.status_code == 429
    assert "Too many requests" in limited.content.decode()
    assert 'value="Ana Peeters"' in limited.content.decode()  # what they typed is still there
    assert PrivacyRequest.objects.count() == 2

    other_ip = Client().post(reverse("submit"), VALID, REMOTE_ADDR="198.51.100.8")
    assert other_ip.status_code == 302


# The wait a refusal states (wording.wait_in_words: "15 minutes", "1 hour, 5 minutes").
STATED_WAIT = re.compile(r"Please wait ((?:\d+\xa0(?:day|hour|minute)s?(?:, )?)+) and try again")


def stated_wait(page: str) -> datetime.timedelta:
    said = STATED_WAIT.search(page)
    assert said, "the refusal says no wait"
    minutes = {"day": 24 * 60, "hour": 60, "minute": 1}
    return datetime.timedelta(minutes=sum(int(n) * minutes[unit] for n, unit in re.findall(r"(\d+)\xa0(day|hour|minute)", said[1])))


@pytest.mark.django_db
@pytest.mark.parametrize("limit", ["SUBMISSION_RATE_LIMIT", "SUBMISSION_EMAIL_RATE_LIMIT"])
@pytest.mark.parametrize(("rate", "period"), [("1/min", datetime.timedelta(minutes=1)), ("1/h", datetime.timedelta(hours=1)), ("1/d", datetime.timedelta(days=1))])
def test_a_refusal_says_how_long_until_the_limit_frees_whatever_its_period(settings, limit, rate, period):
    """Not "an hour" whatever the deployment set: the wait it states is the true one, rounded up to the minute."""
    setattr(settings, limit, rate)
    with time_machine.travel(datetime.datetime(2026, 12, 2, 9, 0, 7, tzinfo=datetime.UTC), tick=False) as traveller:
        assert Client().post(reverse("submit"), VALID, REMOTE_ADDR="198.51.100.60").status_code == 302
        refused = Client().post(reverse("submit"), VALID, REMOTE_ADDR="198.51.100.60")
        assert refused.status_code == 429
        wait = stated_wait(refused.content.decode())
        assert datetime.timedelta(0) < wait <= period
        traveller.shift(wait - datetime.timedelta(minutes=1))
        assert Client().post(reverse("submit"), VALID, REMOTE_ADDR="198.51.100.60").status_code == 429
        traveller.shift(datetime.timedelta(minutes=1))
        assert Client().post(reverse("submit"), VALID, REMOTE_ADDR="198.51.100.60").status_code == 302


@pytest.mark.django_db
@pytest.mark.parametrize("limit", ["SUBMISSION_RATE_LIMIT", "SUBMISSION_EMAIL_RATE_LIMIT"])
def test_a_refusal_says_in_retry_after_how_many_seconds_until_the_limit_frees(settings, limit):
    """As the API's 429s do: a client that reads the header waits as long as it must, and no longer."""
    setattr(settings, limit, "1/h")
    with time_machine.travel(datetime.datetime(2026, 12, 2, 9, 0, 7, tzinfo=datetime.UTC), tick=False) as traveller:
        assert Client().post(reverse("submit"), VALID, REMOTE_ADDR="198.51.100.61").status_code == 302
        refused = Client().post(reverse("submit"), VALID, REMOTE_ADDR="198.51.100.61")
        assert refused.status_code == 429
        seconds = int(refused["Retry-After"])
        assert 0 < seconds <= 3600
        traveller.shift(datetime.timedelta(seconds=seconds - 1))
        assert Client().post(reverse("submit"), VALID, REMOTE_ADDR="198.51.100.61").status_code == 429
        traveller.shift(datetime.timedelta(seconds=1))
        assert Client().post(reverse("submit"), VALID, REMOTE_ADDR="198.51.100.61").status_code == 302


@pytest.mark.django_db
def test_many_people_behind_one_mobile_operators_address_can_each_file(client, settings):
    """Carrier-grade NAT: subscribers share one public address; each files under their own email address."""
    settings.SUBMISSION_RATE_LIMIT, settings.SUBMISSION_EMAIL_RATE_LIMIT = "4/h", "1/h"
    for n in range(4):
        assert Client().post(reverse("submit"), {**VALID, "subject_email": f"subscriber{n}@example.com"}, REMOTE_ADDR="198.51.100.40").status_code == 302
    limited = Client().post(reverse("submit"), {**VALID, "subject_email": "subscriber9@example.com"}, REMOTE_ADDR="198.51.100.40")
    assert limited.status_code == 429
    assert "We have received many submissions from your network in a short time." in limited.content.decode()
    assert PrivacyRequest.objects.count() == 4


@pytest.mark.django_db
def test_one_email_address_is_stopped_early_without_using_up_its_networks_budget(client, settings):
    settings.SUBMISSION_RATE_LIMIT, settings.SUBMISSION_EMAIL_RATE_LIMIT = "4/h", "2/h"
    # The same mailbox however it is written: case, and a "+tag" most mail services deliver to the same mailbox.
    for email in ("ana@example.com", "Ana+again@Example.com"):
        assert Client().post(reverse("submit"), {**VALID, "subject_email": email}, REMOTE_ADDR="198.51.100.41").status_code == 302
    for _ in range(5):
        limited = Client().post(reverse("submit"), {**VALID, "subject_email": "ANA@example.com"}, REMOTE_ADDR="198.51.100.41")
        assert limited.status_code == 429
    page = limited.content.decode()
    assert "We have received many submissions for this email address in a short time." in page
    assert "from your network" not in page
    # Nothing typed is lost: the form comes back filled in.
    assert 'value="Ana Peeters"' in page and 'value="ANA@example.com"' in page and "Please include call records.</textarea>" in page
    # The five refused did not count against the address shared with others: two more people can still file.
    for email in ("bob@example.com", "carol@example.com"):
        assert Client().post(reverse("submit"), {**VALID, "subject_email": email}, REMOTE_ADDR="198.51.100.41").status_code == 302
    assert PrivacyRequest.objects.count() == 4


@pytest.mark.django_db
def test_an_email_address_is_limited_from_any_network(client, settings):
    settings.SUBMISSION_EMAIL_RATE_LIMIT = "1/h"
    assert Client().post(reverse("submit"), VALID, REMOTE_ADDR="198.51.100.42").status_code == 302
    assert Client().post(reverse("submit"), VALID, REMOTE_ADDR="203.0.113.42").status_code == 429


def test_the_email_limit_counts_under_a_keyed_hash_of_the_mailbox_never_the_address(settings):
    import hashlib

    from requests_app.views import email_counter_key

    key = email_counter_key("ana@example.com")
    assert key == email_counter_key(" Ana+news@EXAMPLE.com") != email_counter_key("bob@example.com")
    assert "ana" not in key and key != hashlib.sha256(b"ana@example.com").hexdigest()
    settings.SECRET_KEY = "another-secret-key-for-this-test-only-0123456789abcdef"
    assert email_counter_key("ana@example.com") != key  # not reversed by hashing guesses without the key


@pytest.mark.django_db
def test_the_rate_limits_log_and_store_no_email_address(client, settings, caplog):
    from django.core.cache import cache

    settings.SUBMISSION_EMAIL_RATE_LIMIT = "1/h"
    for _ in range(2):
        Client().post(reverse("submit"), {**VALID, "subject_email": "ana.peeters@example.com"}, REMOTE_ADDR="198.51.100.43")
    assert "submit refused: over the per-email address limit" in caplog.text
    assert "ana.peeters" not in caplog.text
    assert not [key for key in cache._cache if "ana.peeters" in key]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "data"),
    [("/", VALID), ("/lost-link/", {"reference": "DSR-2026-00042", "email": "ana@example.com"})],
)
def test_the_rate_limit_box_takes_the_focus_like_the_error_summary(client, settings, url, data):
    settings.SUBMISSION_RATE_LIMIT = "1/h"
    Client().post(url, data, REMOTE_ADDR="198.51.100.30")
    limited = Client().post(url, data, REMOTE_ADDR="198.51.100.30")
    page = limited.content.decode()
    assert limited.status_code == 429
    assert '<div class="error-summary" role="alert" tabindex="-1" autofocus>\n  <h2>Too many requests</h2>' in page
    assert page.count("autofocus") == 1


@pytest.mark.django_db
def test_typing_mistakes_do_not_use_up_the_rate_limit(client, settings):
    settings.SUBMISSION_RATE_LIMIT = "2/h"
    for _ in range(5):
        assert client.post(reverse("submit"), {**VALID, "subject_email": "not-an-email"}, REMOTE_ADDR="198.51.100.9").status_code == 200
    for _ in range(2):
        assert client.post(reverse("submit"), VALID, REMOTE_ADDR="198.51.100.9").status_code == 302


@pytest.mark.django_db
def test_confirmation_page_without_a_submission_goes_back_to_the_form(client):
    assert client.get(reverse("submitted")).url == reverse("submit")


@pytest.mark.django_db
def test_every_public_page_names_the_controller_and_how_to_reach_its_dpo(client, settings):
    settings.CONTROLLER_NAME, settings.CONTROLLER_ADDRESS = "Carrier SA", "Rue Exemple 1, 1000 Brussels"
    settings.DPO_CONTACT_EMAIL = "dpo@carrier.example"
    for url in (reverse("submit"), reverse("resend_link")):
        page = client.get(url).content.decode()
        assert "Data controller: Carrier SA, Rue Exemple 1, 1000 Brussels." in page
        assert '<a href="mailto:dpo@carrier.example">dpo@carrier.example</a>' in page


@pytest.mark.django_db
def test_the_public_pages_give_the_controllers_address_in_their_language(client):
    """The development default's, as each language writes Brussels and Belgium."""
    for language, address in [
        ("fr", "Boulevard du Roi Albert II 27, 1030 Bruxelles, Belgique"),
        ("nl", "Koning Albert II-laan 27, 1030 Brussel, België"),
        ("de", "Boulevard du Roi Albert II 27, 1030 Brüssel, Belgien"),
        ("en", "Boulevard du Roi Albert II 27, 1030 Brussels, Belgium"),
    ]:
        client.cookies["django_language"] = language
        assert address in client.get(reverse("submit")).content.decode()


@pytest.mark.django_db
def test_a_wrong_email_address_is_refused_formally_in_german(client):
    from django.urls import reverse

    client.cookies["django_language"] = "de"
    page = client.post(reverse("resend_link"), {"reference": "DSR-2026-00001", "email": "ana(at)example.com"}).content.decode()
    assert "Bitte geben Sie eine gültige E-Mail-Adresse ein." in page  # not DRF's informal "Gib …"


@pytest.mark.django_db
def test_the_description_limit_is_written_as_the_readers_language_writes_numbers(client):
    english = post_form(client, description="x" * 10_001).content.decode()
    french = client.post(reverse("submit"), {**VALID, "description": "x" * 10_001}, HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "keep it to 10,000 characters at most" in english
    assert "10\u00a0000" in french and "10,000" not in french


@pytest.mark.django_db
def test_the_error_list_is_punctuated_as_the_language_writes(client):
    """French puts a (no-break) space before a colon: "Adresse e-mail : …", not "Adresse e-mail: …"."""
    french = client.post(reverse("submit"), {**VALID, "subject_email": "nope"}, HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    summary = french[french.index("error-summary"):french.index("</ul>", french.index("error-summary"))]
    assert "Adresse e-mail\u00a0: " in summary and "Adresse e-mail: " not in summary


@pytest.mark.django_db
def test_the_browser_may_fill_in_the_subjects_own_details_but_not_on_staffs_intake(client):
    """WCAG 1.3.5; and staff recording a letter must not be offered their own name and address."""
    from requests_app.forms import StaffIntakeForm

    page = client.get("/").content.decode()
    assert 'autocomplete="name"' in page and 'autocomplete="email"' in page
    assert re.search(r'<input type="tel" name="subject_phone"[^>]*autocomplete="tel"', page)
    lost_link = client.get("/lost-link/").content.decode()
    assert re.search(r'<input type="email" name="email"[^>]*autocomplete="email"', lost_link)
    staff_form = StaffIntakeForm()
    assert {staff_form.fields[name].widget.attrs["autocomplete"] for name in ("subject_name", "subject_email", "subject_phone")} == {"off"}


def test_staffs_intake_offers_now_as_the_time_received_in_a_value_the_browser_reads():
    """A datetime-local input takes ISO values only: a French '30/11/2026 10:15' shows an empty field."""
    from requests_app.forms import StaffIntakeForm

    with time_machine.travel(datetime.datetime(2026, 11, 30, 9, 15, 42, tzinfo=datetime.UTC), tick=False):
        with translation.override("fr"):
            field = str(StaffIntakeForm()["received_at"])
    assert 'type="datetime-local"' in field and 'value="2026-11-30T10:15"' in field  # Brussels time


@pytest.mark.django_db
def test_a_status_page_reply_address_opened_with_get_shows_the_status_page(client):
    """A refused reply leaves the page at …/reply/; the language buttons come back to it with a GET."""
    from requests_app.models import Status
    from tests.factories import request_in_status

    request = request_in_status(Status.IN_PROGRESS)
    response = client.get(f"/status/{request.reference}/{request.secret}/reply/")
    assert response.status_code == 302 and response.url == f"/status/{request.reference}/{request.secret}/"


@pytest.mark.django_db
def test_the_rights_error_is_linked_to_its_group_as_other_errors_are_to_their_field(client):
    page = post_form(client, rights=None, subject_email="not-an-email").content.decode()
    assert re.search(r'<input type="email"[^>]*aria-invalid="true" aria-describedby="id_subject_email_error"', page)
    # The boxes are marked invalid one by one, each described by its hint; their group, with its legend, carries the
    # error's description.
    assert '<input type="checkbox" name="rights" value="access" id="id_rights_0" aria-invalid="true" aria-describedby="id_rights_0_hint">' in page
    assert '<fieldset aria-describedby="id_rights_error">' in page
    assert '<ul class="errorlist" id="id_rights_error"><li>Choose at least one right.</li></ul>' in page


@pytest.mark.django_db
def test_the_error_summary_links_the_rights_question_to_its_first_box(client):
    page = client.post("/", {}).content.decode()
    assert 'href="#id_rights_0"' in page and 'id="id_rights_0"' in page


def test_an_unexpected_error_shows_the_sites_own_page_in_its_four_languages(rf):
    """Not Django's bare English "Server Error (500)"."""
    from django.views.defaults import server_error

    response = server_error(rf.get("/"))
    page = response.content.decode()
    assert response.status_code == 500
    for heading in ("Something went wrong on our side", "Une erreur s'est produite chez nous",
                    "Er ging bij ons iets mis", "Bei uns ist etwas schiefgelaufen"):
        assert heading in page
    assert "style=" not in page and "<style" not in page  # the policy would refuse it


@pytest.mark.django_db
def test_pages_name_their_icon_so_browsers_do_not_ask_for_a_missing_favicon_ico(client):
    from django.contrib.staticfiles import finders

    assert 'rel="icon" href="/static/requests_app/favicon.svg"' in client.get("/").content.decode()
    assert finders.find("requests_app/favicon.svg")


@pytest.mark.django_db
def test_the_error_summary_puts_no_colon_after_a_question_mark(client):
    import html

    page = html.unescape(client.post("/", {}).content.decode())
    summary = page[page.index('class="error-summary"'):page.index("</ul>", page.index('class="error-summary"'))]
    assert "?:" not in summary and ".:" not in summary
    assert "What would you like us to do: Choose at least one right." in summary


@pytest.mark.django_db
@pytest.mark.parametrize("address", ["ana@localhost", "not-an-email"])
def test_an_address_without_a_dotted_domain_gets_one_error_on_both_forms(client, address):
    form = post_form(client, subject_email=address).context["form"]
    assert form.errors["subject_email"] == ["Enter a valid email address."]
    lost_link = client.post("/lost-link/", {"reference": "DSR-2026-00042", "email": address})
    assert lost_link.status_code == 200  # the form again, not the "sent" page
    assert lost_link.context["form"].errors["email"] == ["Enter a valid email address."]
    assert PrivacyRequest.objects.count() == 0


@pytest.mark.django_db
def test_the_lost_link_page_lists_its_errors_first_like_the_form(client):
    page = client.post("/lost-link/", {"reference": "", "email": "not-an-address"}).content.decode()
    assert 'class="error-summary" role="alert" tabindex="-1" autofocus' in page
    assert 'href="#id_email"' in page and 'href="#id_reference"' in page


@pytest.mark.django_db
@pytest.mark.parametrize("same_page", [False, True], ids=["filled-in-anew", "back-then-send"])
def test_the_same_form_sent_again_once_its_request_was_withdrawn_is_filed_as_a_new_request(client, same_page):
    """Withdrawn, then asked again at once: a new request, not the withdrawn one shown as if it were still going."""
    import uuid

    from requests_app.audit import Actor
    from requests_app.services import intake

    key = re.search(r'name="submission_key" value="([0-9a-f-]{36})"', client.get(reverse("submit")).content.decode()).group(1)
    assert post_form(client, submission_key=key).status_code == 302
    withdrawn = PrivacyRequest.objects.get()
    intake.request_withdraw(request=withdrawn, actor=Actor.subject())
    # The page it landed on, opened again, no longer asks to confirm the address.
    page = client.get(reverse("submitted")).content.decode()
    assert "This request is closed now." in page and "confirm your address" not in page

    # Back then Send sends the same page's key; a form filled in anew has a key of its own.
    again = post_form(client, submission_key=key if same_page else str(uuid.uuid4()))

    assert again.status_code == 302 and PrivacyRequest.objects.count() == 2
    refiled = PrivacyRequest.objects.exclude(pk=withdrawn.pk).get()
    assert refiled.status == Status.AWAITING_VERIFICATION
    shown = client.get(again.url).content.decode()
    assert refiled.reference in shown and withdrawn.reference not in shown
    assert "You had sent this form already" not in shown
    # And that request is the one this form filed now: sent again, it is shown, not filed a third time.
    assert post_form(client, submission_key=key if same_page else str(uuid.uuid4())).status_code == 302
    assert PrivacyRequest.objects.count() == 2
    shown = client.get(reverse("submitted")).content.decode()
    assert refiled.reference in shown and "You had sent this form already" in shown


@pytest.mark.django_db
def test_the_page_after_sending_shows_the_address_the_link_went_to_masked_and_what_to_do_if_it_is_wrong(client, settings):
    import html

    settings.UNVERIFIED_REQUEST_EXPIRY = datetime.timedelta(days=7)
    response = post_form(client, subject_email="bert.janssens@example.org")
    assert "example.org" not in response.url and "bert" not in response.url  # never in an address
    page = html.unescape(client.get(response.url).content.decode())
    assert "We sent the link to <strong><bdi>b•••@example.org</bdi></strong>." in page
    assert "bert.janssens" not in page
    assert "fill in the form again with the right address. This request then expires unconfirmed after 7 days" in page
    assert f'href="{reverse("submit")}"' in page

    PrivacyRequest.objects.update(status=Status.NEW)  # confirmed: the address reached them, nothing to check
    assert "We sent the link to" not in client.get(response.url).content.decode()


@pytest.mark.parametrize(("address", "masked"), [("b@example.org", "b•••@example.org"), ("ana@mail.example.be", "a•••@mail.example.be"), ("", "")])
def test_an_address_is_masked_to_its_first_character_and_its_domain(address, masked):
    from requests_app.wording import masked_email

    assert masked_email(address) == masked


@pytest.mark.django_db
def test_a_local_part_longer_than_rfc_5321_allows_is_refused_with_one_clear_error(client):
    page = post_form(client, subject_email=f"{'a' * 65}@example.org").content.decode()
    assert "The part of the email address before the @ is too long: it can have 64 characters at most." in page
    assert "Enter a valid email address." not in page
    assert not PrivacyRequest.objects.exists()
    assert post_form(client, subject_email=f"{'a' * 64}@example.org").status_code == 302
