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
