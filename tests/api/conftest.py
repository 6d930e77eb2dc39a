import pytest
from rest_framework.test import APIClient

from requests_app.models import Organisation, OrganisationAPIKey


def key_for(organisation, scope="write", **fields):
    if scope == "suppression" and not organisation.own_systems:
        # Only the controller's own systems hold suppression keys (test_suppression_api checks the refusal).
        organisation.own_systems = True
        organisation.save(update_fields=["own_systems"])
    _, key = OrganisationAPIKey.objects.create_key(name=f"{organisation.name} portal", organisation=organisation, scope=scope, **fields)
    return key


def client_with(key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


@pytest.fixture
def operator(db):
    return Organisation.objects.create(name="Mobile Operator SA")


@pytest.fixture
def other_operator(db):
    return Organisation.objects.create(name="Other MVNO")


@pytest.fixture
def api(operator):
    return client_with(key_for(operator))
