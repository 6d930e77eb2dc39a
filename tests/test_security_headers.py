"""The headers every answer carries besides the Content-Security-Policy's directives (test_csp_reports)."""

import pytest
from django.urls import reverse

from requests_app.models import Organisation
from tests.api.conftest import client_with, key_for
from tests.conftest import login_staff


def assert_features_off(response):
    policy = response.headers["Permissions-Policy"]
    for feature in ("camera", "microphone", "geolocation", "payment", "usb", "browsing-topics", "fullscreen"):
        assert f"{feature}=()" in policy


@pytest.mark.django_db
def test_a_public_page_turns_off_the_browser_features_no_page_uses(client):
    assert_features_off(client.get(reverse("submit")))


@pytest.mark.django_db
def test_a_staff_page_turns_off_the_browser_features_no_page_uses(client, staff_user):
    response = login_staff(client, staff_user).get(reverse("staff:home"))
    assert response.status_code == 200
    assert_features_off(response)


@pytest.mark.django_db
def test_an_api_answer_turns_off_the_browser_features_no_page_uses():
    operator = Organisation.objects.create(name="Mobile Operator SA")
    response = client_with(key_for(operator)).get("/api/v1/ping/")
    assert response.status_code == 200
    assert_features_off(response)


@pytest.mark.django_db
def test_the_policy_sends_violation_reports_to_the_site(client):
    response = client.get(reverse("submit"))
    policy = response.headers["Content-Security-Policy"]
    assert f"report-uri {reverse('csp_report')}" in policy
    assert "report-to csp" in policy
    assert response.headers["Reporting-Endpoints"] == f'csp="{reverse("csp_report")}"'


@pytest.mark.django_db
def test_only_the_dashboard_tells_the_next_page_its_address(client, staff_user):
    """Its forms return to the page they were sent from (staff.views._form_page reads the Referer); other
    pages' addresses may hold a secret (a status page's), so they give only the site's origin."""
    assert client.get(reverse("submit"))["Referrer-Policy"] == "strict-origin"
    assert client.get("/api/v1/ping/")["Referrer-Policy"] == "strict-origin"
    response = login_staff(client, staff_user).get(reverse("staff:home"))
    assert response.status_code == 200 and response["Referrer-Policy"] == "same-origin"


@pytest.mark.django_db
def test_pages_at_a_secret_address_and_the_staff_site_ask_not_to_be_indexed(client, staff_user):
    """A secret address that leaks (a shared link, a browser extension) must not make its page findable: the status
    page, its downloads (a file has no <meta> tag), the verification link, and every page for staff."""
    from tests.factories import request_in_status
    from requests_app.models import Status

    request = request_in_status(Status.IN_PROGRESS)
    status_page = reverse("status", args=[request.reference, request.secret])
    secret_addresses = [
        status_page,
        reverse("download", args=[request.reference, request.secret, "not-a-token"]),
        reverse("verify_email", args=["not-a-token"]),
        reverse("staff:login"),
    ]
    answers = [client.get(url) for url in secret_addresses]
    login_staff(client, staff_user)
    answers += [client.get(reverse("staff:home")), client.get(reverse("admin:index"))]
    assert answers[0].status_code == answers[-2].status_code == answers[-1].status_code == 200
    for answer in answers:
        assert answer["X-Robots-Tag"] == "noindex, nofollow, noarchive"
    # How a subject finds where to ask stays findable.
    assert not client.get(reverse("submit")).has_header("X-Robots-Tag")
