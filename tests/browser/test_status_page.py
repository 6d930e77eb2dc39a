"""The subject's status page in a real browser: its address holds the page's secret."""

import pytest
from playwright.sync_api import expect
from django.urls import reverse

from requests_app.models import MessageDirection, Status
from tests.factories import request_in_status


@pytest.mark.django_db(transaction=True)
def test_the_status_pages_secret_does_not_leave_the_page_and_its_forms_still_work(page, live_server):
    """Every style sheet, script and icon the page loads would carry its address in the Referer, into the logs
    of any proxy on the way. The policy gives only the site's origin; a form's Origin header is still the
    site's (a policy of no referrer at all would send "null", and the CSRF check would refuse the reply)."""
    request = request_in_status(Status.IN_PROGRESS)
    url = live_server.url + reverse("status", args=[request.reference, request.secret])
    referers = []
    page.on("request", lambda sent: referers.append(sent.headers.get("referer", "")))

    page.goto(url)
    page.get_by_label("Write to our data protection team").fill("My account number is 4711.")
    page.get_by_role("button", name="Send").click()

    expect(page.get_by_text("My account number is 4711.")).to_be_visible()
    assert request.messages.filter(direction=MessageDirection.FROM_SUBJECT, body="My account number is 4711.").exists()
    assert any(referers) and all(request.secret not in referer for referer in referers)
    assert live_server.url + "/" in referers  # the origin alone


@pytest.mark.django_db(transaction=True)
def test_switching_language_keeps_the_reply_being_typed(page, live_server):
    request = request_in_status(Status.IN_PROGRESS)
    page.goto(live_server.url + reverse("status", args=[request.reference, request.secret]))
    page.get_by_label("Write to our data protection team").fill("My customer number is 4711.")

    page.get_by_role("button", name="Français").click()

    expect(page.get_by_label("Écrire à notre équipe chargée de la protection des données")).to_have_value(
        "My customer number is 4711."
    )
    assert page.evaluate("sessionStorage.length") == 0  # taken back out at once
    assert not request.messages.exists()


@pytest.mark.django_db(transaction=True)
def test_switching_language_after_a_refused_reply_keeps_its_text(page, live_server):
    """A refused reply is shown at the reply's address; the language buttons then come back to the status page."""
    request = request_in_status(Status.IN_PROGRESS)
    page.goto(live_server.url + reverse("status", args=[request.reference, request.secret]))
    page.get_by_label("Write to our data protection team").fill("My ID card, attached.")
    page.get_by_label("Attach a document, if we asked for one (optional)").set_input_files(
        {"name": "id-card.txt", "mimeType": "text/plain", "buffer": b"not a picture"}
    )
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("alert")).to_be_visible()  # the document refused, the text kept by the server

    page.get_by_role("button", name="Français").click()

    expect(page).to_have_url(live_server.url + reverse("status", args=[request.reference, request.secret]))
    expect(page.get_by_label("Écrire à notre équipe chargée de la protection des données")).to_have_value(
        "My ID card, attached."
    )


ARABIC = "أريد نسخة من بياناتي، رقم العميل 4711."


@pytest.mark.django_db(transaction=True)
def test_a_right_to_left_message_reads_right_to_left(page, live_server):
    """A message in Arabic or Hebrew laid out left to right puts its full stop and its numbers in the wrong places:
    each message, and the reply being typed, take their direction from their own text."""
    from requests_app.services import handling

    request = request_in_status(Status.IN_PROGRESS)
    handling.subject_reply(request=request, body=ARABIC)
    handling.subject_reply(request=request, body="My customer number is 4711.")
    page.goto(live_server.url + reverse("status", args=[request.reference, request.secret]))

    directions = page.locator(".message-body").evaluate_all("bodies => bodies.map(body => getComputedStyle(body).direction)")
    assert directions == ["rtl", "ltr"]
    reply = page.get_by_label("Write to our data protection team")
    reply.fill(ARABIC)
    assert reply.evaluate("box => getComputedStyle(box).direction") == "rtl"
