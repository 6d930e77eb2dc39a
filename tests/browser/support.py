"""Helpers the browser tests share."""

import time

from django.contrib.auth.models import Group
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import expect

from requests_app import roles
from tests.factories import staff_in_role

PASSWORD = "correct-horse-battery"  # UserFactory's password


def current_code(device: TOTPDevice) -> str:
    """The code an authenticator app shows that the device accepts now. django-otp takes each time
    step once (a setup page or an earlier sign-in may have used this one), and a step either side."""
    device.refresh_from_db()
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    if totp.t() <= device.last_t:
        totp.time = time.time() + device.step  # the next step's code
    return f"{totp.token():0{device.digits}d}"


def sign_in(page, live_server, username: str, device: TOTPDevice, password: str = PASSWORD) -> None:
    """Staff sign-in as a person does it: password first, then the authenticator's code."""
    page.goto(live_server.url + "/staff/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    page.get_by_label("Code from your authenticator app").fill(current_code(device))
    page.get_by_role("button", name="Verify").click()


def staff_with_authenticator(role: str, username: str):
    """A staff member of `role` with a confirmed authenticator: (user, device). The role groups come from a data
    migration, which a transactional test that ran before flushed: made again first."""
    for name in roles.ROLES:
        Group.objects.get_or_create(name=name)
    user = staff_in_role(role, username=username)
    return user, TOTPDevice.objects.create(user=user, name="phone", confirmed=True)

