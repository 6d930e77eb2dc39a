"""Keyboard users skip the header: a "Skip to content" link is the first thing they reach on every page."""

import re

import pytest
from django.urls import reverse

from tests.conftest import login_staff
from tests.factories import staff_in_role

# What the keyboard reaches: links, buttons and form fields (hidden inputs aside).
FOCUSABLE = re.compile(r'<(a|button|select|textarea)\b[^>]*>|<input\b(?![^>]*type="hidden")[^>]*>')


def first_focusable(page: str) -> str:
    body = page[page.index("<body"):]
    return FOCUSABLE.search(body).group(0)


@pytest.mark.django_db
def test_the_public_pages_start_with_a_skip_link_to_the_content(client):
    page = client.get(reverse("submit")).content.decode()
    assert first_focusable(page) == '<a class="skip-link" href="#main">'
    assert '<main id="main">' in page and ">Skip to content</a>" in page


@pytest.mark.django_db
def test_the_staff_pages_start_with_a_skip_link_to_the_content(client):
    signed_out = client.get(reverse("staff:login")).content.decode()
    login_staff(client, staff_in_role("DPO", username="dpo-keyboard"))
    signed_in = client.get(reverse("staff:queue")).content.decode()  # with the full navigation
    for page in (signed_out, signed_in):
        assert first_focusable(page) == '<a class="skip-link" href="#main">'
        assert '<main id="main">' in page
