"""The public request form, filled in and sent from a real browser."""

import re

import pytest
from playwright.sync_api import expect

from requests_app.models import PrivacyRequest


@pytest.mark.django_db(transaction=True)
def test_subject_submits_the_public_form(page, live_server):
    page.goto(live_server.url + "/")
    expect(page.get_by_role("heading", name="Make a privacy request")).to_be_visible()

    page.get_by_label("Access a copy of my data").check()
    # Django's labels end in a colon, and "Signature: type your full name" also
    # contains "full name": anchor at the start.
    page.get_by_label(re.compile(r"^Full name")).fill("Ada Lovelace")
    page.get_by_label("Email address").fill("ada@example.com")
    page.get_by_label("How are you related to us?").select_option(label="Website visitor")
    page.get_by_label("Signature: type your full name").fill("Ada Lovelace")
    page.get_by_label("I confirm that the information above is correct").check()
    page.get_by_role("button", name="Send my request").click()

    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    expect(page.locator(".reference")).to_have_text(re.compile(r"^DSR-\d{4}-\d{5}$"))
    assert PrivacyRequest.objects.count() == 1
