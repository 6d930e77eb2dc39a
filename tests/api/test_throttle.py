"""The per-key budget holds however a client spreads its calls: one at a time or in parallel."""

import threading
import uuid
from types import SimpleNamespace

import pytest
from django.core.cache import cache

from requests_app.api.auth import OrganisationKeyThrottle
from requests_app.models import OrganisationAPIKey


@pytest.fixture
def redis_cache(settings):
    """Production's cache backend, on the Redis the tests run with."""
    settings.CACHES = {
        "default": {
            "BACKEND": "privacy_portal.cache.FailOpenRedisCache",
            "LOCATION": settings.CELERY_BROKER_URL,
            "KEY_PREFIX": f"throttle-test-{uuid.uuid4().hex}",
        }
    }
    yield
    cache.clear()
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def calls_allowed(threads: int, calls_each: int) -> int:
    # The throttle reads the key's prefix only: an unsaved key will do.
    request = SimpleNamespace(auth=OrganisationAPIKey(prefix=uuid.uuid4().hex[:8]))
    allowed = []
    start = threading.Barrier(threads)

    def client():
        throttle = OrganisationKeyThrottle()
        start.wait()
        for _ in range(calls_each):
            allowed.append(throttle.allow_request(request, None))

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return allowed.count(True)


# A day's window: a test straddling a window's end would start a fresh budget.
@pytest.mark.parametrize("backend", ["redis", "locmem"])
def test_sixteen_clients_in_parallel_share_one_budget(backend, request, monkeypatch):
    if backend == "redis":
        request.getfixturevalue("redis_cache")
    monkeypatch.setattr(OrganisationKeyThrottle, "THROTTLE_RATES", {"organisation_key": "50/day"})
    assert calls_allowed(threads=16, calls_each=25) == 50


def test_a_refused_call_is_told_when_the_window_ends(monkeypatch):
    monkeypatch.setattr(OrganisationKeyThrottle, "THROTTLE_RATES", {"organisation_key": "1/min"})
    request = SimpleNamespace(auth=OrganisationAPIKey(prefix=uuid.uuid4().hex[:8]))
    throttle = OrganisationKeyThrottle()
    throttle.timer = lambda: 6_000_000_015.0  # 15 s into a minute
    assert throttle.allow_request(request, None)
    assert not throttle.allow_request(request, None)
    assert throttle.wait() == 45
