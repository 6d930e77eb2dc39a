"""The per-key budget holds however a client spreads its calls: one at a time or in parallel; calls without
a valid key have a budget per client address."""

import threading
import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

from requests_app.api.auth import OrganisationKeyThrottle, UnauthenticatedThrottle
from requests_app.models import OrganisationAPIKey
from tests.api.conftest import client_with, key_for
from tests.api.test_requests_api import VALID


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


# The budget of calls without a valid key, per client address (API_UNAUTHENTICATED_RATE_LIMIT).
PING = "/api/v1/ping/"


@pytest.fixture
def budget_of_3(monkeypatch):
    monkeypatch.setattr(UnauthenticatedThrottle, "THROTTLE_RATES", {"unauthenticated": "3/min"})


@pytest.mark.django_db
def test_calls_without_a_valid_key_share_one_budget_per_address(operator, budget_of_3):
    yesterday = timezone.now() - timedelta(days=1)
    callers = [
        APIClient(),  # no key
        client_with("abcdefgh.not-a-real-key"),  # no such prefix
        client_with(key_for(operator, expiry_date=yesterday)),
        client_with(key_for(operator, revoked=True)),
    ]
    assert [caller.get(PING).status_code for caller in callers] == [401, 401, 401, 429]
    refused = callers[0].get(PING)
    assert refused.status_code == 429 and refused["Content-Type"] == "application/problem+json"
    assert 0 < int(refused["Retry-After"]) <= 60
    assert refused.json() == {
        "type": "about:blank",
        "title": "Too Many Requests",
        "status": 429,
        "detail": f"Too many calls without a valid API key from your address. Expected available in {refused['Retry-After']} seconds.",
    }
    assert "WWW-Authenticate" not in refused
    # Every endpoint, every method: the budget is the address's, not an endpoint's.
    assert APIClient().post("/api/v1/requests/", {}, format="json").status_code == 429
    assert APIClient().get("/api/v1/suppression-lists/").status_code == 429


@pytest.mark.django_db
def test_a_valid_key_is_not_held_back_by_its_addresss_budget_nor_counted_in_it(operator, budget_of_3):
    for _ in range(4):
        APIClient().get(PING)
    assert APIClient().get(PING).status_code == 429
    assert client_with(key_for(operator)).get(PING).status_code == 200
    cache.clear()
    valid = client_with(key_for(operator))
    for _ in range(5):
        assert valid.get(PING).status_code == 200
    assert APIClient().get(PING).status_code == 401  # the valid calls used none of it


@pytest.mark.django_db
def test_an_authenticated_call_never_consults_the_budget(operator, monkeypatch, django_assert_num_queries):
    """No query and no round trip to the cache for it: the ping and the POST the benchmark times stay as they were."""
    counted = []
    monkeypatch.setattr(UnauthenticatedThrottle, "allow_request", lambda self, request, view: counted.append(1) or True)
    api = client_with(key_for(operator))
    with django_assert_num_queries(1):  # the key, with its organisation
        assert api.get(PING).status_code == 200
    assert api.get("/api/v1/requests/").status_code == 200
    assert api.post(f"/api/v1/requests/{uuid.uuid4()}/withdraw/").status_code == 404
    assert client_with(key_for(operator, scope="read")).post("/api/v1/requests/", {}, format="json").status_code == 403
    assert counted == []
    assert APIClient().get(PING).status_code == 401 and counted == [1]


@pytest.mark.django_db
def test_each_address_has_its_own_budget(budget_of_3):
    for _ in range(3):
        APIClient(REMOTE_ADDR="192.0.2.1").get(PING)
    assert APIClient(REMOTE_ADDR="192.0.2.1").get(PING).status_code == 429
    assert APIClient(REMOTE_ADDR="192.0.2.2").get(PING).status_code == 401


@pytest.mark.django_db
def test_behind_a_proxy_the_address_is_the_one_the_public_form_counts(settings, budget_of_3):
    """RATELIMIT_IP_META_KEY names the proxy's header, as for SUBMISSION_RATE_LIMIT; an IPv6 client by its /64."""
    settings.CLIENT_ADDRESS_HEADER = "HTTP_X_REAL_IP"
    proxy = "127.0.0.1"

    def call(client_ip):
        return APIClient(REMOTE_ADDR=proxy, HTTP_X_REAL_IP=client_ip).get(PING).status_code

    assert [call("198.51.100.7") for _ in range(4)] == [401, 401, 401, 429]
    assert call("198.51.100.8") == 401  # another client behind the same proxy
    assert [call(f"2001:db8:1:2::{n}") for n in range(1, 5)] == [401, 401, 401, 429]  # one /64
    assert call("2001:db8:1:3::1") == 401


@pytest.mark.django_db
def test_behind_a_proxy_that_extends_x_forwarded_for_the_address_is_the_one_it_saw(settings, budget_of_3):
    """nginx's $proxy_add_x_forwarded_for appends the address it saw to whatever the client sent: the last counts
    (a client choosing the first could have a new budget on every call). A list was a 500."""
    settings.CLIENT_ADDRESS_HEADER = "HTTP_X_FORWARDED_FOR"

    def call(forwarded_for):
        return APIClient(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=forwarded_for).get(PING).status_code

    assert [call(f"10.0.0.{n}, 198.51.100.7") for n in range(4)] == [401, 401, 401, 429]
    assert call("198.51.100.8") == 401
    assert call("not an address") == 401  # counted under the proxy's own address, not a 500


@pytest.mark.parametrize(
    ("forwarded", "address"),
    [("198.51.100.7:5678", "198.51.100.7"), ("[2001:db8::1]:5678", "2001:db8::"), ("2001:db8::1", "2001:db8::"),
     ("10.0.0.1, 198.51.100.7:443", "198.51.100.7")],
)
def test_an_address_a_proxy_writes_with_its_port_is_the_address(rf, settings, forwarded, address):
    """Some proxies (Azure Application Gateway, IIS) add the client's port: without it every client would share
    the proxy's budget, and its sign-in lockout."""
    from privacy_portal.client_address import client_address

    settings.CLIENT_ADDRESS_HEADER = "HTTP_X_FORWARDED_FOR"
    assert client_address(rf.get("/", HTTP_X_FORWARDED_FOR=forwarded, REMOTE_ADDR="127.0.0.1")) == address


@pytest.mark.parametrize(
    ("forwarded", "address"),
    [
        ("198.51.100.7, 203.0.113.5", "198.51.100.7"),  # the client, then the CDN that the load balancer saw
        ("10.9.9.9, 198.51.100.7, 203.0.113.5", "198.51.100.7"),  # whatever the client sent comes first
        ("203.0.113.5", "127.0.0.1"),  # not through both proxies: counted under the one that called
    ],
)
def test_behind_two_proxies_the_address_is_the_one_the_outer_proxy_saw(rf, settings, forwarded, address):
    """A CDN before a load balancer: the last address is the CDN's, the same for every client, so all of them
    would share one budget and one sign-in lockout."""
    from privacy_portal.client_address import client_address

    settings.CLIENT_ADDRESS_HEADER = "HTTP_X_FORWARDED_FOR"
    settings.TRUSTED_PROXY_COUNT = 2
    assert client_address(rf.get("/", HTTP_X_FORWARDED_FOR=forwarded, REMOTE_ADDR="127.0.0.1")) == address


@pytest.mark.redis
@pytest.mark.django_db
def test_the_budget_is_counted_in_redis(redis_cache, budget_of_3):
    assert [APIClient(REMOTE_ADDR="192.0.2.9").get(PING).status_code for _ in range(5)] == [401, 401, 401, 429, 429]


# The RateLimit headers (draft-ietf-httpapi-ratelimit-headers-06): the budget as the throttle counted the call.
def budget(response) -> dict:
    return {name: response[name] for name in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy") if name in response}


@pytest.fixture
def key_budget_of_3(monkeypatch):
    monkeypatch.setattr(OrganisationKeyThrottle, "THROTTLE_RATES", {"organisation_key": "3/min"})


@pytest.mark.django_db
def test_every_answer_to_a_keys_call_tells_its_budget_down_to_the_429(api, key_budget_of_3):
    """The clock is held 30 s into a minute (conftest): the window ends in 30 s, on every answer of the test."""
    answers = [api.get(PING), api.get(f"/api/v1/requests/{uuid.uuid4()}/"), api.post("/api/v1/requests/", {}, format="json")]
    assert [answer.status_code for answer in answers] == [200, 404, 400]
    assert [budget(answer) for answer in answers] == [
        {"RateLimit-Limit": "3", "RateLimit-Remaining": str(left), "RateLimit-Reset": "30", "RateLimit-Policy": "3;w=60"}
        for left in (2, 1, 0)
    ]
    refused = api.get(PING)
    assert refused.status_code == 429
    assert budget(refused) == {"RateLimit-Limit": "3", "RateLimit-Remaining": "0", "RateLimit-Reset": "30", "RateLimit-Policy": "3;w=60"}
    assert refused["Retry-After"] == refused["RateLimit-Reset"]


@pytest.mark.django_db
def test_a_keys_budget_counts_on_every_route_and_on_a_download(api, operator, key_budget_of_3):
    """The budget is the key's: a 405 and a download's 404 use it too, as the throttle counts them."""
    assert api.put("/api/v1/requests/", {}, format="json")["RateLimit-Remaining"] == "2"
    missing = api.get(f"/api/v1/requests/{uuid.uuid4()}/exports/{uuid.uuid4()}/download/")
    assert missing.status_code == 404 and missing["RateLimit-Remaining"] == "1"


@pytest.mark.django_db
def test_calls_without_a_valid_key_are_told_their_addresss_budget(budget_of_3):
    """Their budget is the address's (API_UNAUTHENTICATED_RATE_LIMIT), not a key's: that is what a 401 counted."""
    answers = [APIClient().get(PING) for _ in range(4)]
    assert [answer.status_code for answer in answers] == [401, 401, 401, 429]
    assert [answer["RateLimit-Remaining"] for answer in answers] == ["2", "1", "0", "0"]
    assert {answer["RateLimit-Policy"] for answer in answers} == {"3;w=60"}
    assert answers[-1]["Retry-After"] == answers[-1]["RateLimit-Reset"] == "30"


@pytest.mark.django_db
def test_answers_given_before_a_call_is_counted_claim_no_budget(operator, api, key_budget_of_3, settings):
    """A 403 for the key's scope (a read key that writes or downloads), a 406 and a 413 come before the throttle:
    they use none of it, and say none."""
    settings.API_MAX_BODY_BYTES = 10
    read = client_with(key_for(operator, scope="read"))
    refused = [
        read.post("/api/v1/requests/", {}, format="json"),
        read.get(f"/api/v1/requests/{uuid.uuid4()}/exports/{uuid.uuid4()}/download/"),
        api.get(PING, HTTP_ACCEPT="text/html"),
        api.post("/api/v1/requests/", {"subject_name": "x" * 20}, format="json"),
    ]
    assert [answer.status_code for answer in refused] == [403, 403, 406, 413]
    assert [budget(answer) for answer in refused] == [{}, {}, {}, {}]
    assert read.get(PING)["RateLimit-Remaining"] == "2"
    assert api.get(PING)["RateLimit-Remaining"] == "2"  # the key's budget untouched by them
    assert budget(APIClient().get("/api/schema/", HTTP_ACCEPT="application/json")) == {}


@pytest.mark.django_db
def test_a_replayed_answer_tells_the_budget_of_now_not_the_first_calls(api, key_budget_of_3):
    """The replay is a call the throttle counted: its budget is today's, not stored with the answer."""
    first = api.post("/api/v1/requests/", VALID, format="json", HTTP_IDEMPOTENCY_KEY="budget-1")
    again = api.post("/api/v1/requests/", VALID, format="json", HTTP_IDEMPOTENCY_KEY="budget-1")
    assert again["Idempotent-Replayed"] == "true"
    assert (first["RateLimit-Remaining"], again["RateLimit-Remaining"]) == ("2", "1")


def test_a_call_the_cache_could_not_count_leaves_no_budget(monkeypatch):
    """The window's counter created by another call and gone before this one counted on it (_incr_or_allow's 0)."""
    monkeypatch.setattr(OrganisationKeyThrottle, "THROTTLE_RATES", {"organisation_key": "3/min"})
    throttle = OrganisationKeyThrottle()

    def incr(key):
        raise ValueError(key)  # no such counter

    throttle.cache = SimpleNamespace(incr=incr, add=lambda key, value, timeout: False)
    request = SimpleNamespace(auth=OrganisationAPIKey(prefix=uuid.uuid4().hex[:8]))
    assert throttle.allow_request(request, None)
    assert not hasattr(request, "api_budget")


@pytest.mark.redis
@pytest.mark.django_db
def test_the_budget_told_is_the_one_counted_in_redis(redis_cache, api, key_budget_of_3):
    assert [api.get(PING)["RateLimit-Remaining"] for _ in range(4)] == ["2", "1", "0", "0"]
