"""Staff are warned before their idle session ends, and may keep it (WCAG 2.2.1): a letter typed for half an
hour was lost at the sign-in page."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from requests_app import roles
from tests.browser.support import sign_in, staff_with_authenticator


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
    page.goto(live_server.url + reverse("staff:queue"))
    expect(page.get_by_role("heading", name="Staff sign-in")).to_be_visible()
