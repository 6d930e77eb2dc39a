"""What the emails to a subject say under each regime, and who they say is writing."""

import datetime
from html import unescape

import pytest
import time_machine
from django.core import mail

from requests_app import emails
from requests_app.audit import Actor
from requests_app.models import Channel, Message, MessageDirection, Organisation, RequestType
from requests_app.services.deadlines import request_extend
from requests_app.services.intake import RightDetails
from tests.factories import submit_request

pytestmark = pytest.mark.django_db

RECEIVED = datetime.datetime(2026, 3, 2, 10, 0, tzinfo=datetime.UTC)  # a Monday


def _html(message) -> str:
    [(html, _mimetype)] = message.alternatives
    return html


@pytest.mark.parametrize("send", [emails.send_verification_email, emails.send_request_confirmed_email])
def test_a_ccpa_confirmation_of_receipt_says_how_the_request_is_handled_and_by_when(send):
    with time_machine.travel(RECEIVED, tick=False):
        request = submit_request(regime="ccpa")
        send(request)
    [message] = mail.outbox
    # The earlier of the GDPR's month and the CCPA's 45 days: 2 April, not 16 April (Regs. s. 7021(b)).
    assert request.due_on == datetime.date(2026, 4, 2)
    for body in (message.body, _html(message)):
        assert "We will answer by 2 April 2026." in body
        assert "the law (CCPA) allows us to take longer, up to 90 days in all from receipt" in body
        assert "we verify that it is yours: we check the details you gave us against our records" in body
        assert "two further months" not in body


@pytest.mark.parametrize(
    ("rights", "rest_verified"),
    [([RequestType.LIMIT_USE], False), ([RequestType.ACCESS, RequestType.LIMIT_USE], True)],
)
def test_a_ccpa_request_to_limit_is_promised_no_extension_and_no_proof_of_identity(rights, rest_verified):
    """CCPA Regulations § 7027(e) and (g)(1): a request to limit needs no verified identity, and is complied with
    within 15 business days, which nothing extends: neither "up to 90 days" nor "we verify that it is yours"."""
    with time_machine.travel(RECEIVED, tick=False):
        request = submit_request(regime="ccpa", rights=[RightDetails(right) for right in rights])
        emails.send_request_confirmed_email(request)
    [message] = mail.outbox
    assert request.due_on == datetime.date(2026, 3, 23)  # 15 business days
    for body in (message.body, unescape(_html(message))):
        assert "We will answer by 23 March 2026. For a request to limit the use of sensitive personal information, the law (CCPA) allows us no more time." in body
        assert "We apply a request to limit the use of your sensitive personal information without asking you to prove who you are." in body
        assert "90 days" not in body and "Before we act on your request, we verify" not in body
        assert ("For the rest of your request, we first verify that it is yours" in body) is rest_verified


@pytest.mark.parametrize(
    ("regime", "extension", "pause"),
    [("gdpr", True, True), ("uk_gdpr", True, True), ("lgpd", False, False)],
)
def test_a_confirmation_of_receipt_gives_the_due_date_and_the_regimes_extension_and_pause(regime, extension, pause):
    with time_machine.travel(RECEIVED, tick=False):
        request = submit_request(regime=regime)
        emails.send_request_confirmed_email(request)
    [message] = mail.outbox
    due = {"gdpr": "2 April 2026", "uk_gdpr": "2 April 2026", "lgpd": "17 March 2026"}[regime]
    assert f"We will answer by {due}." in message.body
    assert ("the law allows us to take up to two further months" in message.body) is extension
    assert ("the time we have to answer is paused until you reply" in message.body) is pause
    assert "CCPA" not in message.body


@pytest.mark.parametrize("send", [emails.send_verification_email, emails.send_request_confirmed_email])
def test_an_lgpd_confirmation_of_receipt_says_the_date_cannot_be_extended(send):
    """Whether and how far the date may be extended, under every regime (README): the LGPD allows no extension."""
    with time_machine.travel(RECEIVED, tick=False):
        request = submit_request(regime="lgpd")
        send(request)
    [message] = mail.outbox
    for body in (message.body, _html(message)):
        assert "We will answer by 17 March 2026. LGPD allows no extension of the 15-day period." in body


# Six weeks after RECEIVED: every regime's due date has passed.
SIX_WEEKS_LATER = RECEIVED + datetime.timedelta(weeks=6)


@pytest.mark.parametrize(
    ("regime", "due", "authority"),
    [
        ("gdpr", "2 April 2026", "the Data Protection Authority (Autorité de protection des données"),
        ("uk_gdpr", "2 April 2026", "the Information Commissioner's Office (ICO)"),
        ("ccpa", "2 April 2026", "the California Privacy Protection Agency"),
        ("lgpd", "17 March 2026", "the Autoridade Nacional de Proteção de Dados (ANPD)"),
    ],
)
def test_a_confirmation_written_after_the_due_date_says_the_answer_is_late_and_where_to_complain(regime, due, authority):
    """A letter staff record weeks after it came: the date has passed, so it is no promise, and neither an
    extension nor a pause can be offered any more (services.deadlines.extension_refusal, pause_refusal). The email
    says what the status page says, in the page's words."""
    with time_machine.travel(SIX_WEEKS_LATER, tick=False):
        request = submit_request(regime=regime, channel=Channel.POST, received_at=RECEIVED)
        emails.send_request_confirmed_email(request)
    [message] = mail.outbox
    for body in (message.body, unescape(_html(message))):
        assert (
            f"Our answer was due by {due}. Our answer is late, and we apologise. We are working on your request and will "
            f"answer as soon as we can. You have the right to lodge a complaint with a supervisory authority, in "
            f"particular {authority}"
        ) in body
        assert "We will answer by" not in body
        for offer in ("further months", "90 days", "paused", "no more time", "allows no extension"):
            assert offer not in body


def test_a_late_confirmation_is_in_the_subjects_language():
    with time_machine.travel(SIX_WEEKS_LATER, tick=False):
        request = submit_request(channel=Channel.POST, received_at=RECEIVED, language="fr")
        emails.send_request_confirmed_email(request)
    [message] = mail.outbox
    assert (
        "Notre réponse était due au plus tard le 2 avril 2026. Notre réponse est en retard, et nous vous prions de nous "
        "en excuser."
    ) in message.body


PAUSE_ONLY = (
    "If we must ask you for information we need to handle your request, the time we have to answer is paused until you reply."
)


@pytest.mark.parametrize(("regime", "pause"), [("gdpr", True), ("uk_gdpr", True), ("ccpa", False)])
def test_a_confirmation_written_on_the_due_date_offers_no_extension(regime, pause):
    """An extension is told before the date it moves ("we would tell you so, and why, before that date"), which on
    the date itself can no longer be. The answer is not late yet, so a question would still pause a GDPR clock."""
    with time_machine.travel(datetime.datetime(2026, 4, 2, 10, 0, tzinfo=datetime.UTC), tick=False):
        request = submit_request(regime=regime, channel=Channel.POST, received_at=RECEIVED)
        emails.send_request_confirmed_email(request)
    [message] = mail.outbox
    assert request.due_on == datetime.date(2026, 4, 2)
    for body in (message.body, unescape(_html(message))):
        assert "We will answer by 2 April 2026." in body
        assert "further months" not in body and "90 days" not in body and "is late" not in body
        assert (PAUSE_ONLY in body) is pause


def test_a_confirmation_written_after_an_extension_offers_no_other(staff_user):
    """A request recorded from a letter, extended before its confirmation went (a mail server down for a while): it
    can be extended only once."""
    with time_machine.travel(RECEIVED, tick=False):
        request = submit_request(channel=Channel.POST)
        request_extend(request=request, actor=Actor.staff(staff_user), reason="Records in five systems")
        request.refresh_from_db()
        emails.send_request_confirmed_email(request)
    [message] = mail.outbox
    for body in (message.body, unescape(_html(message))):
        assert f"We will answer by 2 June 2026. {PAUSE_ONLY}" in body
        assert "further months" not in body


def test_a_confirmation_of_receipt_is_in_the_subjects_language():
    with time_machine.travel(RECEIVED, tick=False):
        request = submit_request(regime="gdpr", language="fr")
        emails.send_request_confirmed_email(request)
    [message] = mail.outbox
    assert "2 avril 2026" in message.body


def test_a_confirmation_of_a_request_filed_over_the_api_says_who_filed_it_and_whom_to_tell_otherwise(controller):
    """The subject may not know the organisation asked: "your request is confirmed" alone reads as theirs."""
    operator = Organisation.objects.create(name="Acme Mobile")
    request = submit_request(channel=Channel.API, organisation=operator, actor=Actor.organisation(operator))
    emails.send_request_confirmed_email(request)
    [message] = mail.outbox
    for body in (message.body, unescape(_html(message))):
        assert f"Your privacy request {request.reference} was filed with us on your behalf by Acme Mobile." in body
        assert "If you did not ask Acme Mobile to make this request, tell our data protection officer at dpo@carrier.example" in body


def test_a_confirmation_of_the_subjects_own_request_names_no_organisation(controller):
    request = submit_request()
    emails.send_request_confirmed_email(request)
    [message] = mail.outbox
    assert f"Your privacy request {request.reference} is confirmed and our data protection team will handle it." in message.body
    assert "on your behalf" not in message.body and "If you did not ask" not in message.body


def _signature_lines(settings):
    return [
        f"Data controller: {settings.CONTROLLER_NAME}, {settings.CONTROLLER_ADDRESS}.",
        f"Data protection officer: {settings.DPO_CONTACT_EMAIL}",
    ]


@pytest.fixture
def controller(settings):
    settings.CONTROLLER_NAME = "Example Carrier SA"
    settings.CONTROLLER_ADDRESS = "Rue de l'Exemple 1, 1000 Brussels"
    settings.CONTROLLER_ADDRESS_TRANSLATIONS = {"fr": "Rue de l’Exemple 1, 1000 Bruxelles", "nl": "", "de": ""}
    settings.DPO_CONTACT_EMAIL = "dpo@carrier.example"
    return settings


def _letter(request):
    message = Message.objects.create(request=request, direction=MessageDirection.TO_SUBJECT, body="We cannot grant your request.")
    emails.send_subject_message(message)


@pytest.mark.parametrize(
    "send",
    [emails.send_verification_email, emails.send_request_confirmed_email, lambda request: emails.send_status_link_email(request, 1), _letter],
)
def test_an_email_to_the_subject_ends_with_who_the_controller_is_and_its_dpo(controller, send):
    request = submit_request()
    send(request)
    [message] = mail.outbox
    assert message.body.rstrip().endswith("\n".join(_signature_lines(controller)))
    html = _html(message)
    assert "Data controller: Example Carrier SA, Rue de l&#x27;Exemple 1, 1000 Brussels." in html
    assert "Data protection officer: dpo@carrier.example</p>\n</body></html>" in html


def test_the_signature_is_in_the_subjects_language_the_address_too(controller):
    request = submit_request(language="fr")
    emails.send_request_confirmed_email(request)
    [message] = mail.outbox
    assert "Responsable du traitement\u00a0: Example Carrier SA, Rue de l’Exemple 1, 1000 Bruxelles." in message.body
    assert "Bruxelles." in message.alternatives[0][0]


def test_an_address_not_given_in_the_subjects_language_is_the_main_one(controller):
    request = submit_request(language="nl")
    emails.send_request_confirmed_email(request)
    [message] = mail.outbox
    assert "Example Carrier SA, Rue de l'Exemple 1, 1000 Brussels." in message.body


def test_a_staff_email_carries_no_signature(controller):
    request = submit_request()
    emails.send_reply_notification(request, 1)
    [message] = mail.outbox
    assert "Data controller" not in message.body


TOLD_US = [
    RightDetails(RequestType.ACCESS),
    RightDetails(RequestType.RECTIFICATION, rectification_data="Billing address", rectification_value="Rue Neuve 1\n1000 Brussels"),
    RightDetails(RequestType.OBJECTION, objection_processing="Profiling for offers", direct_marketing=True),
]


def test_the_confirmation_of_a_web_request_gives_back_what_the_subject_told_us_as_the_status_page_does():
    """Their address was just confirmed by its owner: the email may hold what they wrote, as their record of it."""
    from requests_app.models import Status
    from tests.factories import request_in_status

    with time_machine.travel(RECEIVED, tick=False):
        request = request_in_status(Status.NEW, rights=TOLD_US, description="Also my <old> address.", signature="Ana P.")
        emails.send_request_confirmed_email(request)
    [message] = mail.outbox
    html = unescape(_html(message))
    for expected in (
        "<h2>You asked us to</h2>\n<ul><li>Access a copy of my data</li><li>Correct or complete my data</li>",
        "<h2>What you told us</h2>",
        "<h3>Correct or complete my data</h3>",
        '<dt>What should it say?</dt><dd dir="auto">Rue Neuve 1<br>1000 Brussels</dd>',
        '<dt>Which processing or purpose do you object to?</dt><dd dir="auto">Profiling for offers</dd>',
        "<p>My objection is to direct marketing (including profiling for it).</p>",
        '<p dir="auto">Also my <old> address.</p>',
        "You signed the request “<bdi>Ana P.</bdi>” on 2 March 2026.",
    ):
        assert expected in html
    assert "Also my &lt;old&gt; address." in _html(message)  # what they typed is text, never markup
    for expected in (
        "You asked us to\n- Access a copy of my data\n- Correct or complete my data\n- Object to the processing of my data\n",
        "What you told us\n",
        "Correct or complete my data\nWhich data is incorrect or incomplete?\nBilling address\nWhat should it say?\nRue Neuve 1\n1000 Brussels\n",
        "Object to the processing of my data\nWhich processing or purpose do you object to?\nProfiling for offers\n"
        "My objection is to direct marketing (including profiling for it).\n",
        "Anything else you told us\nAlso my <old> address.\n",
        "You signed the request “Ana P.” on 2 March 2026.",
    ):
        assert expected in message.body


def test_the_confirmation_of_a_request_without_details_says_the_rights_were_all():
    from requests_app.models import Status
    from tests.factories import request_in_status

    request = request_in_status(Status.NEW, rights=[RightDetails(RequestType.ERASURE)], description="", signature="")
    emails.send_request_confirmed_email(request)
    [message] = mail.outbox
    for body in (message.body, _html(message)):
        assert "Erase my data" in body
        assert "Only the rights listed above: you gave no other details." in body


def test_the_confirmation_gives_back_what_the_subject_told_us_in_their_language():
    from django.utils import translation
    from django.utils.translation import gettext

    from requests_app.forms import RequestForm
    from requests_app.models import Status
    from tests.factories import request_in_status

    request = request_in_status(Status.NEW, rights=TOLD_US, language="fr")
    emails.send_request_confirmed_email(request)
    [message] = mail.outbox
    with translation.override("fr"):
        question, told = str(RequestForm.base_fields["rectification_data"].label), gettext("What you told us")
        right = str(RequestType.RECTIFICATION.label)  # written out by the email, not its template: it was in English
    assert question != "Which data is incorrect or incomplete?" and right != "Correct or complete my data"
    for body in (message.body, unescape(_html(message))):
        assert question in body and told in body
        assert right in body and "Correct or complete my data" not in body


@pytest.mark.parametrize("channel", [Channel.API, Channel.EMAIL])
def test_the_confirmation_of_a_request_received_directly_gives_back_none_of_its_details(channel):
    """Written down by staff or an organisation, and sent to an address nobody confirmed yet (a typo's owner would
    read them): the status page, once the address is confirmed, has them."""
    request = submit_request(rights=TOLD_US, channel=channel, description="Also my old address.", signature="Ana P.")
    emails.send_request_confirmed_email(request)
    [message] = mail.outbox
    for body in (message.body, _html(message)):
        for private in ("What you told us", "Billing address", "Profiling for offers", "Also my old address.", "Ana P.", "You asked us to"):
            assert private not in body
