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


def csrf_failure_page(rf, client, path="/"):
    """The view the CSRF check calls (CSRF_FAILURE_VIEW)."""
    from django.conf import settings
    from django.utils.module_loading import import_string

    return import_string(settings.CSRF_FAILURE_VIEW)(rf.post(path))


def staff_csrf_failure_page(rf, client):
    return csrf_failure_page(rf, client, path="/staff/requests/")


def server_error_page(rf, client):
    from django.views.defaults import server_error

    return server_error(rf.get("/"))


def public_not_found_page(rf, client):
    return client.get("/no-such-page/")


def staff_not_found_page(rf, client):
    login_staff(client, staff_in_role("DPO", username="dpo-lost"))
    return client.get("/staff/no-such-page/")


def staff_forbidden_page(rf, client):
    login_staff(client, staff_in_role("Handler", username="handler-refused"))
    return client.get(reverse("staff:inventory"))


def too_large_page(rf, client):
    return client.post(reverse("submit"), {"description": "x" * 8192})


@pytest.mark.parametrize(
    ("page", "status"),
    [(csrf_failure_page, 403), (staff_csrf_failure_page, 403), (server_error_page, 500)],
)
def test_the_standalone_error_pages_start_with_a_skip_link_without_the_database(rf, client, page, status):
    """Django renders these without context processors, and a 500 may come from the database itself:
    no django_db mark here, so any query fails the test."""
    from django.contrib.staticfiles import finders

    response = page(rf, client)
    html = response.content.decode()
    assert response.status_code == status
    assert first_focusable(html) == '<a class="skip-link" href="#main">'
    assert html.count('id="main"') == 1 and '<main id="main">' in html
    # Without the site's stylesheet the link would show on top of every such page.
    assert '<link rel="stylesheet" href="/static/requests_app/site.css">' in html
    assert ".skip-link:not(:focus)" in open(finders.find("requests_app/site.css")).read()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("page", "status"),
    [(public_not_found_page, 404), (staff_not_found_page, 404), (staff_forbidden_page, 403), (too_large_page, 413)],
)
def test_the_error_pages_start_with_a_skip_link_to_the_content(rf, client, settings, page, status):
    settings.PUBLIC_MAX_BODY_BYTES = 4096
    response = page(rf, client)
    html = response.content.decode()
    assert response.status_code == status
    assert first_focusable(html) == '<a class="skip-link" href="#main">'
    assert html.count('id="main"') == 1 and '<main id="main">' in html
