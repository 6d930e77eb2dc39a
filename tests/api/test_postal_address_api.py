"""A portal files the subject's postal address (PrivacyRequest.postal_address): stored, documented, never returned."""

import json

import pytest

from requests_app.api.serializers import PortalRequestForm
from requests_app.models import AuditEvent, PrivacyRequest
from tests.api.conftest import client_with, key_for
from tests.api.test_schema_examples import CREATE, SCHEMA, request_examples


def events_text(request: PrivacyRequest) -> str:
    return json.dumps(list(AuditEvent.objects.filter(request=request).values("action", "note", "data", "actor_label")))


@pytest.mark.django_db
def test_a_portal_files_the_subjects_postal_address_and_the_answer_does_not_return_it(operator):
    api = client_with(key_for(operator))
    body = {
        "rights": ["access"], "subject_name": "Ana Peeters", "subject_email": "ana@example.com", "relationship": "end_user",
        "signature": "Ana Peeters", "postal_address": "Kerkstraat 12\r\n2000 Antwerpen",
    }
    response = api.post("/api/v1/requests/", body, format="json")

    assert response.status_code == 201, response.json()
    request = PrivacyRequest.objects.get(public_id=response.json()["id"])
    assert request.postal_address == "Kerkstraat 12\n2000 Antwerpen"
    assert "Kerkstraat" not in response.content.decode()
    assert "Kerkstraat" not in client_with(key_for(operator, scope="read")).get(f"/api/v1/requests/{request.public_id}/").content.decode()
    assert "Kerkstraat" not in events_text(request)

    refused = api.post("/api/v1/requests/", {**body, "postal_address": "Kerkstraat\t12"}, format="json")
    assert refused.status_code == 400 and "postal_address" in refused.json()["errors"]


def test_the_schema_documents_the_postal_address_with_an_example():
    create_body = SCHEMA["components"]["schemas"]["RequestCreate"]["properties"]["postal_address"]
    assert create_body["type"] == "string" and create_body["maxLength"] == PortalRequestForm.base_fields["postal_address"].max_length
    assert "postal address" in create_body["description"]
    assert any("postal_address" in example["value"] for example in request_examples(*CREATE).values())
