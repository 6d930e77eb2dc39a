"""The subject's status page in a real browser: its address holds the page's secret."""

import pytest
from playwright.sync_api import expect
from django.urls import reverse

from requests_app.models import MessageDirection, PrivacyRequest, Status
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


# The number of lines the first occurrence of `text` in `selector`'s element takes on the screen.
LINES_OF_TEXT = """([selector, text]) => {
  const walker = document.createTreeWalker(document.querySelector(selector), NodeFilter.SHOW_TEXT);
  const whole = [];
  for (let node; (node = walker.nextNode());) whole.push(node);
  const joined = whole.map(node => node.data).join("");
  let start = joined.indexOf(text);
  if (start < 0) return 0;
  const range = document.createRange();
  let offset = 0;
  for (const node of whole) {
    const end = offset + node.data.length;
    if (start >= offset && start < end) range.setStart(node, start - offset);
    if (start + text.length > offset && start + text.length <= end) { range.setEnd(node, start + text.length - offset); break; }
    offset = end;
  }
  return new Set([...range.getClientRects()].filter(rect => rect.width > 0).map(rect => Math.round(rect.top))).size;
}"""


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("language", ["en", "fr", "nl", "de"])
def test_on_a_phone_a_reference_is_never_broken_across_two_lines(page, live_server, language):
    """At 375 px "Request DSR-2026-00005" is wider than the heading's line: the browser broke it at a hyphen, and
    "00005" on a line of its own reads as another number. The reference keeps to one line; the words wrap instead.
    Also where the confirmation page names it, inside a sentence."""
    from requests_app.services import intake

    page.set_viewport_size({"width": 375, "height": 800})
    page.context.add_cookies([{"name": "django_language", "value": language, "url": live_server.url}])
    request = request_in_status(Status.IN_PROGRESS)
    PrivacyRequest.objects.filter(pk=request.pk).update(reference="DSR-2026-00005")
    request.refresh_from_db()
    page.goto(live_server.url + reverse("status", args=[request.reference, request.secret]))
    assert page.evaluate(LINES_OF_TEXT, ["h1", request.reference]) == 1

    unconfirmed = request_in_status(Status.AWAITING_VERIFICATION)
    PrivacyRequest.objects.filter(pk=unconfirmed.pk).update(reference="DSR-2026-00006")
    token = intake.verification_token(PrivacyRequest.objects.get(pk=unconfirmed.pk))
    page.goto(live_server.url + reverse("verify_email", args=[token]))
    assert page.evaluate(LINES_OF_TEXT, ["main p", "DSR-2026-00006"]) == 1


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
