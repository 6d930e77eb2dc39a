"""Staff are warned before their idle session ends, and may keep it (WCAG 2.2.1): a letter typed for half an
hour was lost at the sign-in page."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from requests_app import roles
from requests_app.models import Status
from tests.browser.support import sign_in, staff_with_authenticator
from tests.factories import request_in_status


@pytest.mark.django_db(transaction=True)
def test_the_page_warns_before_the_session_ends_and_keeps_it_on_request(page, live_server, settings):
    _handler, device = staff_with_authenticator(roles.HANDLER, "hana")
    sign_in(page, live_server, "hana", device)
    settings.SESSION_COOKIE_AGE = 8  # warned two seconds before the end (a quarter of it, below two minutes)
    page.goto(live_server.url + reverse("staff:queue"))
    warning = page.get_by_role("alert").filter(has_text="your session is about to end")
    expect(warning).to_be_hidden()

    expect(warning).to_be_visible(timeout=9000)
    page.get_by_role("button", name="Stay signed in").click()
    expect(warning).to_be_hidden()

    page.wait_for_timeout(4000)  # past the end of the session the page was loaded with, not of the renewed one
    page.goto(live_server.url + reverse("staff:queue"))
    expect(page.get_by_role("heading", name="Queue")).to_be_visible()  # still signed in

    expect(page.get_by_text("Your session has ended. Copy what you typed before you sign in again.")).to_be_visible(timeout=12000)
    # Ended, no longer "about to end" beside it.
    expect(page.get_by_text("You have been inactive for a while")).to_be_hidden()


@pytest.mark.django_db(transaction=True)
def test_near_its_absolute_end_the_page_warns_without_offering_to_keep_the_session(page, live_server, settings):
    """However active, a session ends SESSION_ABSOLUTE_TIMEOUT_HOURS after signing in: no button can keep it."""
    _handler, device = staff_with_authenticator(roles.HANDLER, "hana")
    before = timezone.now()
    sign_in(page, live_server, "hana", device)
    settings.SESSION_ABSOLUTE_TIMEOUT = timezone.now() - before + timedelta(seconds=8)
    page.goto(live_server.url + reverse("staff:queue"))
    warning = page.get_by_role("alert").filter(has_text="as every session does some hours after signing in")
    expect(warning).to_be_hidden()

    expect(warning).to_be_visible(timeout=9000)
    expect(page.get_by_role("button", name="Stay signed in")).to_be_hidden()
    expect(page.get_by_text("Your session has ended. Copy what you typed before you sign in again.")).to_be_visible(timeout=9000)
    expect(page.get_by_text("Your session is about to end, as every session does")).to_be_hidden()
    page.goto(live_server.url + reverse("staff:queue"))
    expect(page.get_by_role("heading", name="Staff sign-in")).to_be_visible()


# The point of the focused element the hit test looks at: its middle across, and near its top (the middle of a box
# taller than the window may be off it), kept inside the window.
FOCUSED_AND_WHAT_IS_ON_IT = """() => {
  const focused = document.activeElement;
  const box = focused.getBoundingClientRect();
  const x = Math.min(Math.max(box.left + box.width / 2, 0), window.innerWidth - 1);
  const y = Math.min(box.top + Math.min(box.height / 2, 10), window.innerHeight - 1);
  const hit = document.elementFromPoint(x, y);
  return {
    name: focused.tagName + " " + (focused.textContent || "").trim().slice(0, 40),
    inWarning: focused.closest(".session-warning") !== null,
    visible: focused === hit || focused.contains(hit),
  };
}"""


@pytest.mark.django_db(transaction=True)
def test_a_control_the_keyboard_moves_to_is_never_under_the_warning(page, live_server, settings):
    """The warning stays at the top of the window while the page scrolls (178 px tall on a 320 px phone): going back
    up a request's page with Shift+Tab put the controls under it (WCAG 2.4.11)."""
    _dpo, device = staff_with_authenticator(roles.DPO, "dora")  # who may act: the page offers every action
    request = request_in_status(Status.IN_PROGRESS)
    page.set_viewport_size({"width": 320, "height": 640})
    sign_in(page, live_server, "dora", device)
    settings.SESSION_COOKIE_AGE = 8
    page.goto(live_server.url + reverse("staff:request", args=[request.reference]))
    warning = page.get_by_role("alert").filter(has_text="your session is about to end")
    expect(warning).to_be_visible(timeout=9000)

    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    page.locator("main a, main button, main summary, main [tabindex]").last.focus()
    seen = []
    for _ in range(40):  # up the actions and the request, to the warning's own button
        page.keyboard.press("Shift+Tab")
        focused = page.evaluate(FOCUSED_AND_WHAT_IS_ON_IT)
        if focused["inWarning"]:
            break
        seen.append(focused)
    assert len(seen) > 10
    hidden = [focused["name"] for focused in seen if not focused["visible"]]
    assert not hidden, hidden
