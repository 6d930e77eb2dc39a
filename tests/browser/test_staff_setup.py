"""Setting up a staff account by invitation, from a real browser.

The DPO creates a handler's account on the dashboard; the invitation email
carries a one-time setup link. In a browser of their own, the handler opens
it (the token leaves the address bar at once) and reads the authenticator key
off the page. They first choose a password that is too short (refused on the
page, nothing set up), then a good one with a mistyped code (the password is
kept, so only the code is typed again), confirm the current code, and sign in
with the new password and a code, reaching the staff home page. The DPO's
list of accounts then shows the authenticator set up, and the link no longer
works.
"""

import base64
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core import mail
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import expect

from requests_app import roles
from requests_app.models import AuditEvent, Team
from requests_app.services import staff_setup
from tests.browser.support import sign_in
from tests.factories import staff_in_role

NEW_PASSWORD = "plum-kettle-harbour-47"  # what the new handler chooses


def code_for_key(secret: str) -> str:
    """The current code for the base32 key a setup page shows, as an authenticator app computes it."""
    return f"{TOTP(base64.b32decode(secret + '=' * (-len(secret) % 8))).token():06d}"


@pytest.mark.django_db(transaction=True)
def test_the_dpo_invites_a_handler_who_sets_up_and_signs_in(page, live_server, browser, settings):
    # --- Arrange: a DPO with an authenticator, and a team for the new account.
    # The role groups come from a data migration; a transactional test that ran
    # before this one flushed them, so make sure they exist.
    for name in roles.ROLES:
        Group.objects.get_or_create(name=name)
    dpo = staff_in_role(roles.DPO, username="dora")
    dpo_device = TOTPDevice.objects.create(user=dpo, name="phone", confirmed=True)
    Team.objects.create(name="Access desk")
    # Emailed links point at SITE_URL: here, the live server.
    settings.SITE_URL = live_server.url

    # --- The DPO signs in and creates the account through the form.
    sign_in(page, live_server, dpo.username, dpo_device)
    expect(page.get_by_role("heading", name="Today")).to_be_visible()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Users").click()
    page.get_by_role("link", name="New account").click()
    expect(page.get_by_role("heading", name="Staff account")).to_be_visible()
    page.get_by_label("Username").fill("hugo")
    page.get_by_label("Email address").fill("hugo@example.com")
    page.get_by_label("First name").fill("Hugo")
    page.get_by_label("Last name").fill("Maes")
    page.get_by_label("Role").select_option(roles.HANDLER)
    page.get_by_label("Access desk").check()
    expect(page.get_by_label("Active")).to_be_checked()
    page.get_by_role("button", name="Save").click()

    expect(page).to_have_url(live_server.url + "/staff/users/")
    expect(page.get_by_role("status")).to_contain_text(
        "Saved: its owner was emailed a link to choose a password and set up an authenticator."
    )
    hugo_row = page.get_by_role("row").filter(has=page.get_by_role("link", name="hugo", exact=True))
    expect(hugo_row).to_contain_text(roles.HANDLER)
    expect(hugo_row).to_contain_text("Access desk")
    expect(hugo_row).to_contain_text("not yet")

    hugo = get_user_model().objects.get(username="hugo")
    assert hugo.is_staff and roles.role_of(hugo) == roles.HANDLER
    assert not hugo.has_usable_password()  # nobody, the DPO included, knows a password for it

    # --- The invitation (sent by the task queued on commit, run inline) holds the link.
    (invitation,) = mail.outbox
    assert invitation.to == ["hugo@example.com"]
    assert invitation.subject == "Set up your Privacy Portal staff account"
    (link,) = re.findall(rf"{re.escape(live_server.url)}/staff/setup/[\w-]+/[\w-]+/", invitation.body)
    token = link.rstrip("/").rsplit("/", 1)[-1]

    # --- Hugo, in a browser of his own, opens the link.
    hugo_context = browser.new_context()
    try:
        hugo_page = hugo_context.new_page()
        hugo_page.goto(link)
        expect(hugo_page).to_have_url(live_server.url + "/staff/setup/")
        assert token not in hugo_page.url
        expect(hugo_page.get_by_role("heading", name="Set up your account")).to_be_visible()
        expect(hugo_page.locator("section.narrow").get_by_text("hugo", exact=True)).to_be_visible()
        expect(hugo_page.locator(".qr svg")).to_be_visible()
        secret = hugo_page.locator("code#totp-secret").inner_text()
        assert re.fullmatch(r"[A-Z2-7]{32}", secret), secret

        # A password that is too short is refused on the page, and nothing is set up.
        hugo_page.get_by_label("New password:", exact=True).fill("short1")
        hugo_page.get_by_label("New password confirmation").fill("short1")
        hugo_page.get_by_label("Code from your authenticator app").fill(code_for_key(secret))
        hugo_page.get_by_role("button", name="Set up").click()
        expect(hugo_page.get_by_text("This password is too short.")).to_be_visible()
        expect(hugo_page).to_have_url(live_server.url + "/staff/setup/")
        # The same key as before: the one already scanned still counts.
        expect(hugo_page.locator("code#totp-secret")).to_have_text(secret)
        hugo.refresh_from_db()
        assert not hugo.has_usable_password()
        assert not TOTPDevice.objects.filter(user=hugo).exists()

        # A good password, but a code mistyped: the password is kept (never sent back into the page).
        hugo_page.get_by_label("New password:", exact=True).fill(NEW_PASSWORD)
        hugo_page.get_by_label("New password confirmation").fill(NEW_PASSWORD)
        wrong_code = "000000" if code_for_key(secret) != "000000" else "111111"
        hugo_page.get_by_label("Code from your authenticator app").fill(wrong_code)
        hugo_page.get_by_role("button", name="Set up").click()
        expect(hugo_page.get_by_text("That code is not right, or it expired.")).to_be_visible()
        expect(hugo_page.get_by_text("The password you chose is kept")).to_be_visible()
        expect(hugo_page.get_by_label("New password:", exact=True)).to_have_value("")
        assert NEW_PASSWORD not in hugo_page.content()
        expect(hugo_page.locator("code#totp-secret")).to_have_text(secret)
        expect(hugo_page.get_by_label("Code from your authenticator app")).to_be_focused()
        hugo.refresh_from_db()
        assert not hugo.has_usable_password()

        # The code the app shows now, and nothing else.
        hugo_page.get_by_label("Code from your authenticator app").fill(code_for_key(secret))
        hugo_page.get_by_role("button", name="Set up").click()

        expect(hugo_page).to_have_url(live_server.url + "/staff/login/")
        expect(hugo_page.get_by_role("status")).to_have_text(
            "Your account is ready: sign in with your password and a code."
        )
        hugo.refresh_from_db()
        assert hugo.check_password(NEW_PASSWORD)
        device = TOTPDevice.objects.get(user=hugo)
        assert device.confirmed
        assert secret in device.config_url  # the key confirmed is the one this browser was shown
        assert AuditEvent.objects.filter(action="staff_setup_completed").count() == 1

        # --- Hugo signs in with the new password and a code, reaching the staff home page.
        sign_in(hugo_page, live_server, "hugo", device, password=NEW_PASSWORD)
        expect(hugo_page).to_have_url(live_server.url + "/staff/")
        expect(hugo_page.get_by_role("heading", name="Today")).to_be_visible()
        expect(hugo_page.locator(".who")).to_have_text(f"hugo · {roles.HANDLER}")

        # The link worked once.
        hugo_page.goto(link)
        expect(hugo_page.get_by_role("heading", name="This link no longer works")).to_be_visible()
    finally:
        hugo_context.close()

    # --- The DPO's list of accounts shows the authenticator set up.
    page.reload()
    expect(hugo_row).to_contain_text("set up")
    expect(hugo_row).not_to_contain_text("not yet")


@pytest.mark.django_db(transaction=True)
def test_the_setup_page_fits_a_phone(page, live_server):
    """The authenticator key, 32 letters with no space, made the page scroll sideways at 320 px (WCAG 1.4.10). It
    wraps, and is still the one word an app accepts."""
    handler = staff_in_role(roles.HANDLER, username="hugo")
    page.set_viewport_size({"width": 320, "height": 640})
    page.goto(live_server.url + staff_setup.setup_path(handler))

    key = page.locator("code#totp-secret")
    assert re.fullmatch(r"[A-Z2-7]{32}", key.inner_text())
    assert page.evaluate("document.documentElement.scrollWidth") <= 320
    assert key.evaluate("k => k.getBoundingClientRect().right") <= 320
