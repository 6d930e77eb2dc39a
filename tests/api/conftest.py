import time

import pytest
from rest_framework.test import APIClient

from requests_app.api.auth import FixedWindowThrottle
from requests_app.models import Organisation, OrganisationAPIKey


@pytest.fixture(autouse=True)
def throttle_clock_mid_minute(monkeypatch):
    """The throttles count in fixed one-minute windows on the wall clock. A test whose calls straddled a minute's end
    found its budget fresh again (no 429), or a Retry-After of 1, which reads "1 second": the throttles' clock is held
    at the middle of the current minute, so a test's calls fall in one window and wait 30 seconds past its budget."""
    middle_of_this_minute = time.time() // 60 * 60 + 30
    monkeypatch.setattr(FixedWindowThrottle, "timer", lambda self: middle_of_this_minute)


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
