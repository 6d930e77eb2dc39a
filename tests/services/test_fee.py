"""Art. 12(5): a reasonable fee for a manifestly unfounded or excessive request, told before it is charged."""

import datetime
import html
import re
from decimal import Decimal

import pytest
import time_machine
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from requests_app.audit import Actor
from requests_app.lifecycle import RequestError, StaleRequest
from requests_app.models import ResponseTemplate, Status, TemplatePurpose
from requests_app.services import handling
from tests.api.conftest import client_with, key_for
from tests.conftest import login_staff
from tests.factories import request_in_status, staff_in_role

WHY = "This is your fourth request for the same call records this month; the copies cost us two hours each."


@pytest.fixture
def dpo(db):
    return staff_in_role("DPO", username="dpo-fee", email="dpo-fee@example.com")


def propose(request, actor, amount="25.00", explanation=WHY, expected_status=Status.IN_PROGRESS):
    return handling.fee_propose(
        request=request, actor=Actor.staff(actor), amount=Decimal(amount), explanation=explanation, expected_status=expected_status
    )


@pytest.mark.django_db(transaction=True)
def test_the_fee_letter_says_why_how_much_and_that_the_subject_may_withdraw_instead(dpo):
    request = request_in_status(Status.IN_PROGRESS)
    due_before = request.due_on
    mail.outbox.clear()

    propose(request, dpo, amount="1250")

    request.refresh_from_db()
    assert (request.fee_amount, request.fee_paid_at, request.status) == (Decimal("1250.00"), None, Status.IN_PROGRESS)
    assert request.due_on == due_before and not request.clock_paused  # the clock runs on
    letter = request.messages.get()
    assert letter.subject == f"A fee for your privacy request {request.reference}"
    for expected in (
        "manifestly unfounded or excessive",
        "1,250.00 EUR",
        WHY,
        "you may withdraw your request on its status page, and nothing will be charged",
        "reply on your request's status page",
        "lodge a complaint with a supervisory authority",
    ):
        assert expected in letter.body
    assert WHY in mail.outbox[-1].body
    assert request.events.get(action="fee_proposed").data == {"amount": "1250.00", "currency": "EUR"}
    assert request.events.filter(action="fee_letter_sent").exists()


@pytest.mark.django_db
def test_the_fee_is_written_as_the_subjects_language_writes_amounts(dpo):
    request = request_in_status(Status.IN_PROGRESS, language="nl")
    propose(request, dpo, amount="1250")
    body = request.messages.get().body
    assert "1.250,00 EUR" in body and "kennelijk ongegrond of buitensporig" in body


@pytest.mark.django_db
def test_a_subject_without_email_is_told_to_answer_by_letter(dpo):
    request = request_in_status(Status.IN_PROGRESS, subject_email="", subject_phone="+32475123456")
    propose(request, dpo)
    body = request.messages.get().body
    assert "withdraw your request by letter" in body and f"quoting the reference {request.reference}" in body
    assert "status page" not in body


@pytest.mark.django_db
def test_a_fee_needs_a_reason_an_amount_and_an_open_confirmed_request(dpo):
    request = request_in_status(Status.IN_PROGRESS)
    with pytest.raises(RequestError, match="Explain to the subject why"):
        propose(request, dpo, explanation="  ")
    with pytest.raises(RequestError, match="above zero"):
        propose(request, dpo, amount="0")
    unconfirmed = request_in_status(Status.AWAITING_VERIFICATION)
    with pytest.raises(RequestError, match="email address is confirmed"):
        propose(unconfirmed, dpo, expected_status=Status.AWAITING_VERIFICATION)
    closed = request_in_status(Status.REJECTED)
    with pytest.raises(RequestError, match="only for an open request"):
        propose(closed, dpo, expected_status=Status.REJECTED)
    with pytest.raises(StaleRequest):
        propose(request, dpo, expected_status=Status.NEW)
    assert not request.messages.exists() and not request.events.filter(action__startswith="fee").exists()


@pytest.mark.django_db
def test_a_fee_proposed_again_replaces_the_first_until_one_is_paid(dpo):
    request = request_in_status(Status.IN_PROGRESS)
    propose(request, dpo, amount="40")
    propose(request, dpo, amount="25")
    request.refresh_from_db()
    assert request.fee_amount == Decimal("25.00") and request.messages.count() == 2

    handling.fee_record_paid(request=request, actor=Actor.staff(dpo))

    request.refresh_from_db()
    assert request.fee_paid_at is not None
    assert request.events.get(action="fee_paid").data == {"amount": "25.00", "currency": "EUR"}
    with pytest.raises(RequestError, match="recorded as paid already"):
        handling.fee_record_paid(request=request, actor=Actor.staff(dpo))
    with pytest.raises(RequestError, match="it cannot be changed"):
        propose(request, dpo, amount="60")
    request.refresh_from_db()
    assert request.fee_amount == Decimal("25.00")


SENT_AGAIN = r"The same text was sent at \d\d:\d\d CES?T: it was not sent again."


@pytest.mark.django_db
def test_the_same_fee_proposed_again_within_minutes_is_refused_and_sent_once(dpo, django_capture_on_commit_callbacks, mailoutbox):
    """The browser's Back, then Send again, or a second tab: two identical letters with the right to complain would
    read to the subject as two decisions. A deliberate reminder, later, goes."""
    request = request_in_status(Status.IN_PROGRESS)
    with django_capture_on_commit_callbacks(execute=True):
        propose(request, dpo)
    mailoutbox.clear()

    with time_machine.travel(timezone.now() + datetime.timedelta(minutes=9)), django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RequestError, match=SENT_AGAIN):
            propose(request, dpo)
    assert request.messages.count() == 1 and mailoutbox == []
    assert request.events.filter(action="fee_proposed").count() == 1

    with time_machine.travel(timezone.now() + datetime.timedelta(minutes=11)):
        propose(request, dpo)
    assert request.messages.count() == 2


@pytest.mark.django_db
def test_a_fee_changed_in_amount_or_reason_is_sent_at_once(dpo):
    request = request_in_status(Status.IN_PROGRESS)
    propose(request, dpo, amount="25")
    propose(request, dpo, amount="20")
    propose(request, dpo, amount="20", explanation=WHY + " The fifth copy is free.")
    request.refresh_from_db()
    assert request.fee_amount == Decimal("20.00") and request.messages.count() == 3
    assert request.events.filter(action="fee_proposed").count() == 3


@pytest.mark.django_db
def test_a_fee_form_sent_twice_from_the_request_page_sends_one_letter(client, dpo, django_capture_on_commit_callbacks, mailoutbox):
    """A proposal changes no status, so the form's expected status and version let the second through: the letter
    itself tells the resend, and the page says it was not sent again, with the form as it was typed."""
    request = request_in_status(Status.IN_PROGRESS)
    login_staff(client, dpo)
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    version = re.search(r'name="expected_version" value="(\d+)"', page).group(1)
    fee_url = reverse("staff:request_action", args=[request.reference, "fee"])
    form = {"amount": "25", "explanation": WHY, "expected_status": Status.IN_PROGRESS, "expected_version": version}
    with django_capture_on_commit_callbacks(execute=True):
        client.post(fee_url, form)
        resent = client.post(fee_url, form)

    assert resent.status_code == 409
    page = html.unescape(resent.content.decode())
    assert re.search(SENT_AGAIN, page) and WHY in page
    assert request.messages.count() == 1 and len(mailoutbox) == 1


@pytest.mark.django_db
def test_a_payment_is_recorded_only_for_a_fee_proposed(dpo):
    request = request_in_status(Status.IN_PROGRESS)
    with pytest.raises(RequestError, match="No fee was proposed"):
        handling.fee_record_paid(request=request, actor=Actor.staff(dpo))
    assert not request.events.filter(action="fee_paid").exists()


@pytest.mark.django_db
def test_the_dpos_own_fee_letter_must_name_the_fee(dpo):
    from django.core.exceptions import ValidationError

    template = ResponseTemplate(purpose=TemplatePurpose.FEE, language="en", subject="Fee {{ reference }}", body="{{ body }}")
    with pytest.raises(ValidationError, match=r"\{\{ fee \}\}"):
        template.full_clean()
    template.body = "Our fee: {{ fee }}.\n\n{{ body }}"
    template.full_clean()
    template.save()
    request = request_in_status(Status.IN_PROGRESS)
    propose(request, dpo, amount="12.5")
    assert request.messages.get().body.startswith("Our fee: 12.50 EUR.\n\n" + WHY)


@pytest.mark.django_db
def test_staff_propose_a_fee_and_record_its_payment_from_the_request_page(client, dpo):
    request = request_in_status(Status.IN_PROGRESS)
    login_staff(client, dpo)
    page_url = reverse("staff:request", args=[request.reference])
    assert "Propose a fee (Art. 12(5))" in client.get(page_url).content.decode()
    fee_url = reverse("staff:request_action", args=[request.reference, "fee"])

    refused = client.post(fee_url, {"amount": "-3", "explanation": WHY, "expected_status": Status.IN_PROGRESS})
    assert refused.status_code == 400
    assert "Ensure this value is greater than or equal to 0.01." in html.unescape(refused.content.decode())

    response = client.post(fee_url, {"amount": "25", "explanation": WHY, "expected_status": Status.IN_PROGRESS}, follow=True)

    page = html.unescape(response.content.decode())
    assert "Fee proposed; the letter has been sent." in page
    assert "25.00 EUR · proposed on" in page and "not paid" in page
    assert "Propose another fee" in page and "Record the fee as paid" in page

    paid = client.post(reverse("staff:request_action", args=[request.reference, "fee_paid"]), follow=True)

    page = html.unescape(paid.content.decode())
    assert "Payment of the fee recorded." in page and "25.00 EUR · paid on" in page
    assert "Record the fee as paid" not in page and "Propose another fee" not in page


@pytest.mark.django_db
def test_the_subject_and_the_portal_see_the_fee(client, dpo):
    from requests_app.models import Organisation

    operator = Organisation.objects.create(name="Mobile Operator SA")
    request = request_in_status(Status.IN_PROGRESS, organisation=operator)
    api = client_with(key_for(operator))
    assert api.get(f"/api/v1/requests/{request.public_id}/").json()["fee"] is None

    propose(request, dpo, amount="25")

    status_page = client.get(reverse("status", args=[request.reference, request.secret])).content.decode()
    assert "We wrote to you of the fee we intend to charge for this request." in status_page
    fee = api.get(f"/api/v1/requests/{request.public_id}/").json()["fee"]
    assert fee["amount"] == "25.00" and fee["currency"] == "EUR" and fee["paid_at"] is None
    assert fee["proposed_at"]


@pytest.mark.django_db
def test_a_payment_is_recorded_for_the_fee_the_page_showed(client, dpo):
    """The page showed 50; a colleague proposed 500 since: the trail must not say 500 was paid."""
    request = request_in_status(Status.IN_PROGRESS)
    propose(request, dpo, amount="50")
    login_staff(client, dpo)
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert 'name="expected_fee" value="50.00"' in page
    propose(request, dpo, amount="500")

    response = client.post(reverse("staff:request_action", args=[request.reference, "fee_paid"]), {"expected_fee": "50.00"}, follow=True)

    assert "Another fee was proposed since you loaded the page: 500.00 EUR." in html.unescape(response.content.decode())
    request.refresh_from_db()
    assert request.fee_paid_at is None


LGPD_FREE = "Under the LGPD a request is answered free of charge (Art. 18 §5): no fee can be charged for it."


@pytest.mark.django_db
def test_no_fee_is_charged_for_an_lgpd_request(dpo):
    """LGPD Art. 18 §5: answered "sem custos para o titular". The GDPR applies too, but its fee is an option the
    LGPD's rule takes away: with both laws applying, the request is free."""
    request = request_in_status(Status.IN_PROGRESS, regime="lgpd")

    with pytest.raises(RequestError, match=r"answered free of charge \(Art. 18 §5\)"):
        propose(request, dpo)

    request.refresh_from_db()
    assert request.fee_proposed_at is None and request.fee_amount is None
    assert not request.messages.exists() and not request.events.filter(action__startswith="fee").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("regime", ["uk_gdpr", "ccpa"])
def test_a_fee_may_be_charged_under_the_uk_gdpr_and_the_ccpa(dpo, regime):
    """UK GDPR Art. 12(5); Cal. Civ. Code 1798.145(h)(3): a reasonable fee for a manifestly unfounded or excessive request."""
    request = request_in_status(Status.IN_PROGRESS, regime=regime)
    propose(request, dpo)
    request.refresh_from_db()
    assert request.fee_amount == Decimal("25.00") and request.messages.get().subject.startswith("A fee for")


@pytest.mark.django_db
def test_the_request_page_offers_no_fee_for_an_lgpd_request_and_says_why(client, dpo):
    request = request_in_status(Status.IN_PROGRESS, regime="lgpd")
    login_staff(client, dpo)

    page = html.unescape(client.get(reverse("staff:request", args=[request.reference])).content.decode())

    assert LGPD_FREE in page
    assert "Propose a fee" not in page and "Send the fee letter" not in page
    # A page loaded before the request was filed under the LGPD, say: the post is refused, and says why.
    response = client.post(
        reverse("staff:request_action", args=[request.reference, "fee"]),
        {"amount": "25", "explanation": WHY, "expected_status": Status.IN_PROGRESS},
    )
    assert response.status_code == 409 and LGPD_FREE in html.unescape(response.content.decode())
    assert not request.messages.exists()


@pytest.mark.django_db
def test_the_request_page_cites_the_ccpas_fee_rule_with_the_gdprs_for_a_ccpa_request(client, dpo):
    request = request_in_status(Status.IN_PROGRESS, regime="ccpa")
    login_staff(client, dpo)
    page_url = reverse("staff:request", args=[request.reference])

    assert "Propose a fee (Art. 12(5); Civ. Code 1798.145(h)(3))" in html.unescape(client.get(page_url).content.decode())
    propose(request, dpo)
    assert "Fee (Art. 12(5); Civ. Code 1798.145(h)(3))" in html.unescape(client.get(page_url).content.decode())


@pytest.mark.django_db
def test_a_ccpa_fee_letter_names_the_belgian_authority_too_in_the_subjects_language(dpo):
    """The GDPR applies to every request (the controller is in Brussels): the subject may complain to the Belgian
    authority as well as to their regime's."""
    request = request_in_status(Status.IN_PROGRESS, regime="ccpa", language="fr")
    propose(request, dpo)
    body = request.messages.get().body
    assert "la California Privacy Protection Agency, cppa.ca.gov, ou le procureur général de Californie" in body
    assert "l'Autorité de protection des données (APD), rue de la Presse 35, 1000 Bruxelles" in body


@pytest.mark.django_db
def test_the_status_page_says_what_a_proposed_fee_means_until_it_is_paid(client, dpo):
    """As the fee letter: the amount, that the subject may pay it or withdraw the request, and that the clock runs on."""
    request = request_in_status(Status.IN_PROGRESS)
    status_url = reverse("status", args=[request.reference, request.secret])
    propose(request, dpo, amount="40")
    propose(request, dpo, amount="1250")

    page = html.unescape(client.get(status_url).content.decode())

    assert (
        "We intend to charge a fee of 1,250.00 EUR for answering this request; our letter explains why. If you accept "
        "it, reply below and we will tell you how to pay. If you do not want to pay it, you may withdraw the request "
        "below, and nothing will be charged. The time we have to answer runs on meanwhile: if you neither pay the fee "
        "nor withdraw the request, we may refuse it."
    ) in page
    assert "We are collecting or changing your data in our systems." not in page
    # The timeline: the second letter replaces the first.
    assert "We wrote to you of the fee we intend to charge for this request." in page
    assert "We wrote to you of a new fee, which replaces the one we proposed before." in page

    handling.fee_record_paid(request=request, actor=Actor.staff(dpo))

    page = html.unescape(client.get(status_url).content.decode())
    assert "We intend to charge a fee" not in page
    assert "We are collecting or changing your data in our systems." in page and "We recorded your payment of the fee." in page


@pytest.mark.django_db
def test_the_status_page_gives_the_fee_as_the_pages_language_writes_amounts(client, dpo):
    request = request_in_status(Status.IN_PROGRESS, language="nl")
    propose(request, dpo, amount="1250")
    page = html.unescape(client.get(reverse("status", args=[request.reference, request.secret])).content.decode())
    # In "What happens next", not only in the fee letter shown in the thread below it.
    assert re.search(r"<h2>[^<]*</h2>\n<p>[^<]*1\.250,00 EUR[^<]*</p>", page)
