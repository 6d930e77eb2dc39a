"""The file cache (CACHE_URL unset, as with `make run`) keeps a rate-limit counter for its whole period:
counting on it must not shorten its life to Django's default timeout of 300 seconds."""

import datetime
import pickle
import threading
import zlib

import pytest
import time_machine
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from requests_app.models import PrivacyRequest
from tests.test_public_form import VALID
from tests.test_settings import run_manage

START = datetime.datetime(2026, 3, 2, 9, 0, tzinfo=datetime.timezone.utc)


@pytest.fixture
def file_cache(settings, tmp_path):
    settings.CACHES = {
        "default": {"BACKEND": "privacy_portal.cache.CountingFileBasedCache", "LOCATION": str(tmp_path / "cache")}
    }
    cache.clear()
    yield
    cache.clear()


def stored_expiry(key: str) -> float:
    with open(cache._key_to_file(key), "rb") as f:
        return pickle.load(f)


def test_without_a_cache_url_the_file_cache_that_keeps_expiries_is_used():
    result = run_manage("shell", "--no-imports", "-c", "from django.core.cache import caches; print(type(caches['default']).__name__)", CACHE_URL="")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "CountingFileBasedCache"


def test_a_counter_keeps_its_expiry_when_counted(file_cache):
    with time_machine.travel(START, tick=False) as traveller:
        assert cache.add("hits", 0, 3605)
        assert cache.incr("hits") == 1
        assert stored_expiry("hits") == START.timestamp() + 3605  # not now + 300

        traveller.shift(301)
        assert cache.get("hits") == 1
        assert cache.incr("hits", 2) == 3
        assert cache.decr("hits") == 2

        traveller.move_to(START + datetime.timedelta(seconds=3604))
        assert cache.get("hits") == 2
        traveller.move_to(START + datetime.timedelta(seconds=3606))
        assert cache.get("hits") is None


def test_counting_a_missing_or_expired_counter_is_refused_as_django_refuses_it(file_cache):
    """django-ratelimit and the API's throttle count nothing on ValueError, then add the counter afresh."""
    with pytest.raises(ValueError):
        cache.incr("never-added")
    with time_machine.travel(START, tick=False) as traveller:
        cache.add("hits", 0, 60)
        traveller.shift(61)
        with pytest.raises(ValueError):
            cache.incr("hits")
        assert cache.add("hits", 0, 60)
        assert cache.incr("hits") == 1


def test_counts_made_at_the_same_time_are_all_counted(file_cache):
    cache.add("hits", 0, 3600)

    def count():
        for _ in range(50):
            cache.incr("hits")

    threads = [threading.Thread(target=count) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.get("hits") == 400


@pytest.mark.django_db
def test_the_public_form_still_refuses_an_address_6_minutes_after_its_last_request(client, settings, file_cache):
    settings.SUBMISSION_RATE_LIMIT = "2/h"
    address = "198.51.100.7"
    # Start just after this address's hourly window opens (django-ratelimit shifts each address's
    # window by crc32(address) % period), so the 6 minutes below stay inside one window.
    window_opens = START.timestamp() - START.timestamp() % 3600 + zlib.crc32(address.encode()) % 3600
    with time_machine.travel(window_opens + 1, tick=False) as traveller:
        # A browser each: the same form sent again from one would be shown its first request, not filed or counted.
        for _ in range(2):
            assert Client().post(reverse("submit"), VALID, REMOTE_ADDR=address).status_code == 302
        traveller.shift(6 * 60)
        assert Client().post(reverse("submit"), VALID, REMOTE_ADDR=address).status_code == 429
    assert PrivacyRequest.objects.count() == 2
