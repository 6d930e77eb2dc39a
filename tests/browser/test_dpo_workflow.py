"""The DPO workspace end to end, from a real browser.

A handler logs in with TOTP, filters the queue, opens a request and sends a
message. The subject replies on the status page. The handler completes the
request.
"""

import re

import pytest
from playwright.sync_api import expect

from requests_app import roles
from requests_app.audit import Actor
from requests_app.models import MessageDirection, PrivacyRequest, RequestType, Status
from requests_app.services import routing
from requests_app.services.intake import RightDetails
from tests.browser.support import PASSWORD, current_code, sign_in, staff_with_authenticator
from tests.factories import UserFactory, released_package, request_in_status

@pytest.mark.django_db(transaction=True)
def test_handler_messages_subject_and_completes_the_request(page, live_server, browser):
    # --- Arrange: a handler with an authenticator, and three requests in progress.
    handler, device = staff_with_authenticator(roles.HANDLER, "hana")
    dpo = UserFactory(username="dora", is_superuser=True)

    mine = request_in_status(Status.IN_PROGRESS, subject_name="Ana Peeters", subject_email="ana@example.com")
    routing.request_assign(request=mine, assignee=handler, actor=Actor.staff(dpo))
    released_package(mine)  # an access request completes once its data went out (tests/exports covers that)
    # Not the handler's: unassigned (and an erasure), or another person's (and UK GDPR).
    unassigned = request_in_status(
        Status.IN_PROGRESS,
        rights=[RightDetails(RequestType.ERASURE)],
        subject_name="Bo Jansen",
        subject_email="bo@example.com",
    )
    someone_elses = request_in_status(
        Status.IN_PROGRESS, regime="uk_gdpr", subject_name="Cy Smith", subject_email="cy@example.com"
    )
    routing.request_assign(request=someone_elses, assignee=dpo, actor=Actor.staff(dpo))
    mine.refresh_from_db()

    # --- Sign in: the dashboard sends us to the password step, then the code step.
    page.goto(live_server.url + "/staff/")
    expect(page).to_have_url(re.compile(r"/staff/login/"))
    page.get_by_label("Username").fill(handler.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()

    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    page.get_by_label("Code from your authenticator app").fill(current_code(device))
    page.get_by_role("button", name="Verify").click()

    expect(page).to_have_url(live_server.url + "/staff/")
    expect(page.get_by_role("heading", name="Today")).to_be_visible()

    # --- The queue lists all three; "Mine" leaves only the handler's request.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Queue").click()
    expect(page.get_by_role("heading", name="Queue")).to_contain_text("(3)")
    filters = page.get_by_role("search")
    filters.get_by_label("Assignee", exact=True).select_option("me")
    filters.get_by_role("button", name="Filter").click()

    expect(page).to_have_url(re.compile(r"[?&]assignee=me\b"))
    expect(page.get_by_role("heading", name="Queue")).to_contain_text("(1)")
    results = page.locator("section.results")
    expect(results.get_by_role("link", name=mine.reference)).to_be_visible()
    expect(results.get_by_role("link", name=unassigned.reference)).to_have_count(0)
    expect(results.get_by_role("link", name=someone_elses.reference)).to_have_count(0)
    results.get_by_role("link", name=mine.reference).click()

    # --- On the request page, message the subject.
    expect(page.get_by_role("heading", level=1)).to_contain_text(mine.reference)
    message_panel = page.locator("details").filter(has=page.get_by_text("Message the subject", exact=True))
    message_panel.get_by_text("Message the subject", exact=True).click()
    message_panel.get_by_label("Subject line (optional)").fill("About your request")
    message_panel.get_by_label("Message to the subject").fill("Could you tell us which account email you used?")
    # A second click while the form is on its way (a slow network) must not send it again. Checked in the
    # page: a listener after the dashboard's keeps the two submissions from leaving, and reports them.
    second_click = page.evaluate(
        """() => new Promise(resolve => {
            const form = document.querySelector('form[action$="/message/"]');
            const seen = [];
            const hold = event => { seen.push(event.defaultPrevented); event.preventDefault(); };
            window.addEventListener("submit", hold);
            form.requestSubmit();
            form.requestSubmit();
            setTimeout(() => {
                // Every button of the form (the preview's too): the first submission sent it.
                const buttons = [...form.querySelectorAll("button")];
                const disabled = buttons.every(button => button.disabled);
                window.removeEventListener("submit", hold);
                delete form.dataset.sent;
                buttons.forEach(button => { button.disabled = false; });
                resolve({seen, disabled});
            }, 0);
        })"""
    )
    assert second_click == {"seen": [False, True], "disabled": True}  # the first goes, the second is stopped
    send = message_panel.get_by_role("button", name="Send message")
    send.click()

    expect(page.get_by_role("status")).to_contain_text("Message sent to the subject.")
    assert mine.messages.filter(body__contains="which account email you used").count() == 1
    thread = page.locator("ol.thread").first
    expect(thread).to_contain_text("Could you tell us which account email you used?")
    expect(thread).to_contain_text("About your request")

    # --- The subject, in a browser of their own, reads it and replies.
    subject_context = browser.new_context()
    try:
        subject_page = subject_context.new_page()
        subject_page.goto(f"{live_server.url}/status/{mine.reference}/{mine.secret}/")
        expect(subject_page.get_by_role("heading", name=f"Request {mine.reference}")).to_be_visible()
        expect(subject_page.get_by_text("Could you tell us which account email you used?")).to_be_visible()
        subject_page.get_by_label("Write to our data protection team").fill("I used ana.work@example.com.")
        subject_page.get_by_role("button", name="Send", exact=True).click()
        expect(subject_page.get_by_role("status")).to_contain_text(
            "Thank you: your message has been sent to our data protection team."
        )
        expect(subject_page.get_by_text("I used ana.work@example.com.")).to_be_visible()
    finally:
        subject_context.close()

    # --- Back as the handler: the reply is in the thread; complete the request.
    page.reload()
    expect(thread).to_contain_text("I used ana.work@example.com.")
    page.get_by_text("Complete", exact=True).click()
    page.get_by_label("What we did (goes into the completion letter)").fill(
        "We sent you a copy of the data linked to ana.work@example.com."
    )
    # Closing goes through the letter as it will go, said to close the request for good; only its page sends.
    page.get_by_role("button", name="Preview the letter, then complete").click()
    expect(page.locator(".letter-preview")).to_contain_text("We sent you a copy of the data linked to ana.work@example.com.")
    expect(page.get_by_text("A closed request cannot be reopened.")).to_be_visible()
    assert PrivacyRequest.objects.get(pk=mine.pk).status == Status.IN_PROGRESS  # nothing sent yet
    page.get_by_role("button", name="Complete and send the letter").click()

    expect(page.get_by_role("status")).to_contain_text("Request completed")
    expect(page.locator("h1 .status")).to_have_text("Completed")
    expect(page.get_by_text("This request is closed.")).to_be_visible()

    # --- The database agrees: closed, three messages, and an audit trail of it all.
    mine.refresh_from_db()
    assert mine.status == Status.COMPLETED
    messages = list(mine.messages.order_by("created_at").values_list("direction", "body"))
    assert [direction for direction, _body in messages] == [
        MessageDirection.TO_SUBJECT,
        MessageDirection.FROM_SUBJECT,
        MessageDirection.TO_SUBJECT,
    ]
    assert "Could you tell us which account email you used?" in messages[0][1]
    assert messages[1][1] == "I used ana.work@example.com."
    assert "We sent you a copy of the data linked to ana.work@example.com." in messages[2][1]
    actions = list(mine.events.order_by("sequence").values_list("action", flat=True))
    for action in ("message_sent", "subject_replied", "complete", "completion_letter_sent"):
        assert action in actions, actions
    assert actions.index("message_sent") < actions.index("subject_replied") < actions.index("complete")
    # Filtering had an effect: the others are untouched.
    others = PrivacyRequest.objects.filter(pk__in=[unassigned.pk, someone_elses.pk])
    assert set(others.values_list("status", flat=True)) == {Status.IN_PROGRESS}


def _a_dpo_signed_in_on_a_screen_with_one_request(page, live_server, *, width: int) -> PrivacyRequest:
    dpo, device = staff_with_authenticator(roles.DPO, "dora")
    request = request_in_status(Status.IN_PROGRESS, subject_name="Ana Peeters", subject_email="ana@example.com")
    page.set_viewport_size({"width": width, "height": 800})
    sign_in(page, live_server, dpo.username, device)
    return request


@pytest.mark.django_db(transaction=True)
def test_the_staff_pages_fit_a_phone_screen(page, live_server):
    """At 375 px the home page, the queue, a request's page, an export's and the inventory scroll down, not sideways: wide
    tables scroll in their own box."""
    from requests_app.services import handling

    from requests_app.models import SourceSystem

    request = _a_dpo_signed_in_on_a_screen_with_one_request(page, live_server, width=375)
    handling.subject_reply(request=request, body="See https://example.com/" + "a-very-long-path/" * 20)
    # A package's hash is one 64-character word; a source's purposes may be long too.
    export = released_package(request)
    export.size, export.sha256 = 123456, "ab" * 32
    export.save()
    SourceSystem.objects.create(
        slug="crm", name="CRM", connector="manual", identity_kind="email",
        purposes="Billing, customer care, fraud prevention and lawful interception requests from the authorities",
    )
    expect(page.get_by_role("heading", name="Today")).to_be_visible()

    pages = ("/staff/", "/staff/requests/", f"/staff/requests/{request.reference}/", f"/staff/exports/{export.public_id}/", "/staff/inventory/")
    for path in pages:
        page.goto(live_server.url + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        wide = page.evaluate(
            "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > innerWidth + 1)"
            ".map(e => e.tagName + '.' + e.className).slice(0, 5)"
        )
        assert overflow <= 0, (path, overflow, wide)
    # The queue's table is wider than the phone: a shadow on the edge of its box (which the keyboard scrolls) says so.
    page.goto(live_server.url + "/staff/requests/")
    box = page.get_by_role("region", name="Queue")
    assert box.evaluate("t => t.scrollWidth > t.clientWidth")
    assert "radial-gradient" in box.evaluate("t => getComputedStyle(t).backgroundImage")


@pytest.mark.django_db(transaction=True)
def test_the_queue_fits_the_narrowest_phone_in_french(page, live_server):
    """At 320 px the header's language names on one line, and the bulk actions' list as wide as its longest French
    choice, made the page scroll sideways."""
    _a_dpo_signed_in_on_a_screen_with_one_request(page, live_server, width=320)
    expect(page.get_by_role("heading", name="Today")).to_be_visible()
    page.set_extra_http_headers({"Accept-Language": "fr"})
    page.goto(live_server.url + "/staff/requests/")
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    expect(page.locator(".bulk select").first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 320


@pytest.mark.django_db(transaction=True)
def test_the_queue_fits_a_1024_pixel_screen_in_german(page, live_server):
    """The page must not scroll sideways: the table scrolls in its own box, and references stay on one line."""
    request = _a_dpo_signed_in_on_a_screen_with_one_request(page, live_server, width=1024)
    page.set_extra_http_headers({"Accept-Language": "de"})  # German's labels are the widest
    page.goto(live_server.url + "/staff/requests/")

    link = page.get_by_role("link", name=request.reference)
    expect(link).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 1024
    line_height = page.evaluate("parseFloat(getComputedStyle(document.body).lineHeight) || 24")
    assert link.bounding_box()["height"] < 1.5 * line_height  # one line, not "DSR-/2026-/00001"


@pytest.mark.django_db(transaction=True)
def test_a_refused_staff_form_puts_the_focus_on_its_first_mistake(page, live_server):
    """A keyboard or screen reader user lands on what to correct, not at the top of the page, nor on the
    first field (Django's password change form has autofocus on the current password)."""
    _a_dpo_signed_in_on_a_screen_with_one_request(page, live_server, width=1280)
    expect(page.get_by_role("heading", name="Today")).to_be_visible()
    page.goto(live_server.url + "/staff/password/")
    page.get_by_label("Old password").fill(PASSWORD)
    page.locator("#id_new_password1").fill("a-new-long-passphrase-2026")
    page.get_by_label("New password confirmation").fill("a-new-long-passphrase-2027")
    page.get_by_role("button", name="Change password").click()

    expect(page.get_by_text("The two password fields didn’t match.")).to_be_visible()
    expect(page.get_by_label("New password confirmation")).to_be_focused()


@pytest.mark.django_db(transaction=True)
def test_an_action_the_server_refused_puts_the_focus_on_why(page, live_server):
    """"Explain to the subject why Other applies" was a message at the top, and the focus stayed on the page."""
    request = _a_dpo_signed_in_on_a_screen_with_one_request(page, live_server, width=1280)
    page.goto(live_server.url + f"/staff/requests/{request.reference}/")
    page.get_by_text("Reject", exact=True).click()
    page.get_by_label("Legal reason").select_option("other")
    page.get_by_role("button", name="Preview the letter, then reject").click()

    refusal = page.locator(".messages .error")
    expect(refusal).to_contain_text("Explain to the subject why")
    expect(refusal).to_be_focused()


@pytest.mark.django_db(transaction=True)
def test_long_unbroken_text_from_the_subject_wraps_on_a_wide_screen(page, live_server):
    """A pasted URL or a long reference must not push the request page, and its actions, sideways."""
    from requests_app.services import handling

    request = _a_dpo_signed_in_on_a_screen_with_one_request(page, live_server, width=1440)
    long_word = "https://example.com/" + "a" * 800
    PrivacyRequest.objects.filter(pk=request.pk).update(description=long_word, customer_reference="C" * 100)
    request.identities.create(kind="customer_reference", value="C" * 100)
    handling.subject_reply(request=request, body=long_word)
    expect(page.get_by_role("heading", name="Today")).to_be_visible()

    page.goto(f"{live_server.url}/staff/requests/{request.reference}/")
    expect(page.get_by_role("heading", level=1)).to_contain_text(request.reference)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1440
    actions = page.locator(".request > :last-child").bounding_box()
    assert actions["x"] + actions["width"] <= 1440


def test_a_packages_first_rows_stay_readable_on_a_phone(page):
    """The preview column may wrap anywhere, so on a phone it shrank to a few letters and the export page grew
    23,000 px tall: it keeps a readable width, and the table scrolls in its own box instead."""
    from pathlib import Path

    from django.conf import settings

    css = (Path(settings.BASE_DIR) / "requests_app/static/requests_app/staff.css").read_text()
    page.set_viewport_size({"width": 375, "height": 800})
    row = '{"number": "+32470000001", "started_at": "2026-11-30T10:00:00+01:00", "seconds": 42}'
    page.set_content(
        f"<style>{css}</style><main><table class='list'><thead><tr><th>File</th><th>Rows</th><th>Size</th>"
        f"<th>First rows</th></tr></thead><tbody><tr><td><code>crm/calls.jsonl</code></td><td>12</td><td>2 KB</td>"
        f"<td><pre class='prewrap'>{row}\n{row}</pre></td></tr></tbody></table></main>"
    )
    assert page.locator("pre").evaluate("e => e.getBoundingClientRect().width") >= 250
    assert page.locator("table").evaluate("t => t.scrollWidth > t.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375


# WCAG's contrast ratio of an element's text against the first background behind it that is not transparent.
CONTRAST = """element => {
    const rgb = text => text.match(/[\\d.]+/g).map(Number);
    const luminance = ([r, g, b]) => [r, g, b].map(c => c / 255)
        .map(c => c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4)
        .reduce((sum, c, i) => sum + c * [0.2126, 0.7152, 0.0722][i], 0);
    let behind = element;
    while (behind && rgb(getComputedStyle(behind).backgroundColor)[3] === 0) behind = behind.parentElement;
    const [fore, back] = [getComputedStyle(element).color, getComputedStyle(behind || document.body).backgroundColor]
        .map(colour => luminance(rgb(colour)));
    return (Math.max(fore, back) + 0.05) / (Math.min(fore, back) + 0.05);
}"""


@pytest.mark.django_db(transaction=True)
def test_a_button_that_reads_as_a_link_is_legible_on_the_page_and_in_the_header(page, live_server):
    """The receipt's button was a button's white text with no background: white on the white page."""
    dpo, device = staff_with_authenticator(roles.DPO, "dora")
    request = request_in_status(Status.IN_PROGRESS, regime="ccpa")  # a receipt to confirm within 10 business days
    PrivacyRequest.objects.filter(pk=request.pk).update(acknowledged_at=None)  # the email confirming it never went
    sign_in(page, live_server, dpo.username, device)
    expect(page.get_by_role("heading", name="Today")).to_be_visible()
    page.goto(f"{live_server.url}/staff/requests/{request.reference}/")

    record = page.get_by_role("button", name="Record that we confirmed it by letter or phone")
    assert record.evaluate(CONTRAST) >= 4.5
    assert page.get_by_role("button", name="Sign out").evaluate(CONTRAST) >= 4.5
