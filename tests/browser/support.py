"""Helpers the browser tests share."""

import time

from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

PASSWORD = "correct-horse-battery"  # UserFactory's password


def current_code(device: TOTPDevice) -> str:
    """The code an authenticator app shows that the device accepts now. django-otp takes each time
    step once (a setup page or an earlier sign-in may have used this one), and a step either side."""
    device.refresh_from_db()
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    if totp.t() <= device.last_t:
        totp.time = time.time() + device.step  # the next step's code
    return f"{totp.token():0{device.digits}d}"
