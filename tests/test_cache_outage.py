"""The cache holds only rate-limit counters: with its Redis down, requests are still taken
(the limits are not enforced meanwhile), never refused or lost."""

import logging

import pytest
import redis
from django.core.cache import cache

from requests_app.models import Organisation, PrivacyRequest
from tests.api.conftest import client_with, key_for
from tests.api.test_requests_api import VALID as API_BODY
from tests.test_public_form import post_form


@pytest.fixture
def cache_down(settings):
    """The production cache backend, pointed at a port where no Redis answers."""
    settings.CACHES = {
        "default": {
            "BACKEND": "privacy_portal.cache.FailOpenRedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    with pytest.raises(redis.exceptions.ConnectionError):  # the premise: the cache really is unreachable
        cache._cache.get_client().ping()
    yield
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


@pytest.mark.django_db
def test_the_form_takes_a_request_while_the_caches_redis_is_down(client, cache_down, caplog):
    with caplog.at_level(logging.WARNING, logger="privacy_portal.cache"):
        response = post_form(client)
    assert response.status_code == 302
    assert PrivacyRequest.objects.count() == 1
    assert "cache unreachable, rate limits not enforced" in caplog.text


@pytest.mark.django_db
def test_the_api_files_and_lists_requests_while_the_caches_redis_is_down(cache_down):
    api = client_with(key_for(Organisation.objects.create(name="Mobile Operator SA")))
    assert api.post("/api/v1/requests/", API_BODY, format="json").status_code == 201
    assert api.get("/api/v1/requests/").json()["results"][0]["status"] == "new"


@pytest.mark.django_db
def test_the_api_throttle_tries_a_down_redis_once_per_call(cache_down, caplog):
    """Each try may wait for the socket timeout: a call must not wait for several."""
    api = client_with(key_for(Organisation.objects.create(name="Mobile Operator SA")))
    with caplog.at_level(logging.WARNING, logger="privacy_portal.cache"):
        ping = api.get("/api/v1/ping/")
    assert ping.status_code == 200
    assert caplog.text.count("cache unreachable") == 1
    # Nothing was counted: the answer claims no budget rather than a made-up one.
    assert not any(name.startswith("RateLimit-") for name in ping.headers)


@pytest.mark.django_db
def test_calls_without_a_valid_key_are_answered_401_not_429_while_the_caches_redis_is_down(cache_down, caplog, monkeypatch):
    from rest_framework.test import APIClient

    from requests_app.api.auth import UnauthenticatedThrottle

    monkeypatch.setattr(UnauthenticatedThrottle, "THROTTLE_RATES", {"unauthenticated": "1/min"})
    with caplog.at_level(logging.WARNING, logger="privacy_portal.cache"):
        assert [APIClient().get("/api/v1/ping/").status_code for _ in range(3)] == [401, 401, 401]
    assert caplog.text.count("cache unreachable") == 3  # once per call
