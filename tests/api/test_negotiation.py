import uuid

import pytest
from rest_framework.test import APIClient

from requests_app.models import PrivacyRequest

URL = "/api/v1/requests/"
VALID = {
    "rights": ["access"],
    "subject_name": "Ana Peeters",
    "subject_email": "ana@example.com",
    "relationship": "end_user",
    "signature": "Ana Peeters",
}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "accept", ["application/problem+json", "Application/Problem+JSON", "application/problem+json;q=0.9", "text/html, application/problem+json"]
)
def test_a_client_that_accepts_only_problem_details_gets_its_successes_as_json(api, accept):
    """It was refused 406: the API renders application/json, which DRF did not see in that Accept."""
    ping = api.get("/api/v1/ping/", HTTP_ACCEPT=accept)
    assert ping.status_code == 200 and ping["Content-Type"] == "application/json"
    assert ping.json() == {"organisation": "Mobile Operator SA"}
    filed = api.post(URL, VALID, format="json", HTTP_ACCEPT=accept)
    assert filed.status_code == 201 and filed["Content-Type"] == "application/json"
    assert PrivacyRequest.objects.filter(public_id=filed.json()["id"]).exists()


@pytest.mark.django_db
def test_a_client_that_accepts_only_problem_details_gets_its_errors_as_problem_details(api):
    accept = {"HTTP_ACCEPT": "application/problem+json"}
    unknown = api.get(f"{URL}{uuid.uuid4()}/", **accept)
    assert unknown.status_code == 404 and unknown["Content-Type"] == "application/problem+json"
    assert unknown.json()["detail"] == "No such privacy request for this API key."
    invalid = api.post(URL, {**VALID, "rights": []}, format="json", **accept)
    assert invalid.status_code == 400 and invalid["Content-Type"] == "application/problem+json"
    assert "rights" in invalid.json()["errors"]
    no_key = APIClient().get(URL, **accept)
    assert no_key.status_code == 401 and no_key["Content-Type"] == "application/problem+json"


@pytest.mark.django_db
@pytest.mark.parametrize("accept", ["text/html", "application/problem+xml", "application/xml"])
def test_an_accept_that_admits_neither_json_nor_problem_details_is_still_406(api, accept):
    response = api.get("/api/v1/ping/", HTTP_ACCEPT=accept)
    assert response.status_code == 406 and response["Content-Type"] == "application/problem+json"
