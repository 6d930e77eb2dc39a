"""Schema-based fuzzing of the REST API (schemathesis): no 5xx, and answers as the schema documents them.

The schema is the live one the app serves at /api/schema/, and every operation in it is
fuzzed in-process through Django's WSGI application, once with a write-scope key and once
with no key. Each operation gets its coverage cases plus `FUZZ_EXAMPLES` generated ones
(positive and negative), so the whole file stays well under a minute in CI.

Two schemathesis checks are off: `positive_data_acceptance` and `negative_data_rejection`.
The schema cannot express the web form's rules that creation applies (a valid email, the
details each right needs...), and a reused Idempotency-Key is rightly refused, so those two
would only flag documented refusals. Every other check runs (no 5xx, status codes, content
types, headers and bodies as documented, auth enforced, 405 for undeclared methods), and on
top of them: every 4xx from an API route is problem details (errors.py); another
organisation's request stays invisible; without a key every route is 401 (413 for a body
over API_MAX_BODY_BYTES, refused before anything reads it; 406 for an Accept that admits no
JSON, refused before the key is read, except by the downloads, which answer whatever Accept says).

Every call goes to this server's Host (`call`), whatever header names a negative case makes up.
"""

import os
from urllib.parse import unquote, urlsplit

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.wsgi import get_wsgi_application
from django.urls import Resolver404, resolve
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from rest_framework.utils.mediatypes import media_type_matches

from requests_app.api.auth import OrganisationKeyThrottle, UnauthenticatedThrottle
from requests_app.audit import Actor
from requests_app.models import ExportPackage, Status
from requests_app.services import handling
from requests_app.services.exports import export_release
from tests.api.conftest import client_with, key_for
from tests.factories import request_in_status, staff_in_role

ZIP = b"PK\x05\x06" + b"\x00" * 18  # an empty ZIP
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "50"))
FUZZ_SETTINGS = settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

schema = schemathesis.openapi.from_wsgi(
    "/api/schema/",
    get_wsgi_application(),
    config=schemathesis.Config.from_dict(
        {"checks": {"positive_data_acceptance": {"enabled": False}, "negative_data_rejection": {"enabled": False}}}
    ),
)

# Seeded ids: the operator's own requests, export and passed-on message, and another organisation's request.
OWN: list[str] = []
OTHERS: list[str] = []
EXPORTS: list[str] = []
MESSAGES: list[str] = []

# A body that files a request: fuzzed fields are laid over it so that creation also succeeds.
VALID_CREATE = {
    "rights": ["access"],
    "subject_name": "Ana Peeters",
    "subject_email": "ana@example.com",
    "relationship": "end_user",
    "signature": "Ana Peeters",
}


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    """Aim at real requests and exports too, not only at random ids."""
    if not path_parameters or not OWN:
        return st.just(path_parameters)
    if "request_public_id" in path_parameters:  # /requests/{request_public_id}/exports/{public_id}/...
        seeded = {"request_public_id": OWN + OTHERS, "public_id": EXPORTS}
    else:  # /requests/{public_id}/..., /requests/{public_id}/messages/{message_public_id}/
        seeded = {"public_id": OWN + OTHERS, "message_public_id": MESSAGES}
    return st.fixed_dictionaries(
        {name: st.sampled_from([value, *seeded.get(name, [])]) for name, value in path_parameters.items()}
    )


@schema.hook
def flatmap_body(context, body):
    if context.operation.label != "POST /api/v1/requests/" or not isinstance(body, dict) or not body:
        return st.just(body)
    overlay = st.sets(st.sampled_from(sorted(body, key=repr))).map(
        lambda keys: {**VALID_CREATE, **{key: body[key] for key in keys}}
    )
    return st.one_of(st.just(body), overlay)


# The Host the WSGI client sends (schemathesis.python.wsgi.HOST), one of ALLOWED_HOSTS.
THIS_SERVER = "localhost"


def call(case, **headers):
    """Call the app as the case says, but always on this server's Host.

    A negative case may add headers the schema does not declare, their names drawn partly from the string literals
    of our own code (Hypothesis's "local constants"), "Host" among them (services/webhooks.py sends one). With a
    made-up value, often empty, it names a host this server does not serve, and Django rightly refuses the call (400,
    as the README documents) before any view or key is looked at: an answer for another server, not from any
    operation the schema describes. The Host is the server's address, not an input (OpenAPI cannot declare it), so it
    is pinned; tests/api/test_requests_api.py checks the refusal itself.
    """
    return case.call_and_validate(headers={"Host": THIS_SERVER, **headers})


def is_api_route(response) -> bool:
    try:
        resolve(unquote(urlsplit(response.request.url).path))
    except Resolver404:
        return False
    return True


def assert_problem_details(response):
    """A 4xx from an API route is RFC 9457 problem details with the same status."""
    if response.status_code < 400:
        return
    if not is_api_route(response) and response.status_code != 413:  # a body too large is refused on any API path
        # A path the router does not match (e.g. a public_id holding an encoded "/") is Django's plain 404.
        assert response.status_code == 404, response.status_code
        return
    assert response.headers.get("content-type", [""])[0].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == response.status_code and body["title"] and "detail" in body, body


def shared_export(request) -> str:
    """A released package shared with the organisation, downloadable three times."""
    name = default_storage.save("exports/fuzz/attempt-1.zip", ContentFile(ZIP))
    export = ExportPackage.objects.create(
        request=request, status="ready", storage_name=name, size=len(ZIP), sha256="0" * 64, max_downloads=3
    )
    dpo = staff_in_role("DPO", username="fuzz-dpo")
    export_release(export=export, actor=Actor.staff(dpo), share_with_organisation=True)
    return str(export.public_id)


@pytest.fixture(autouse=True)
def no_budgets(monkeypatch):
    """The per-key budget (120/min) and the per-address one of calls without a key (300/min) would turn
    most of the run into 429s."""
    monkeypatch.setattr(OrganisationKeyThrottle, "THROTTLE_RATES", {"organisation_key": "1000000/min"})
    monkeypatch.setattr(UnauthenticatedThrottle, "THROTTLE_RATES", {"unauthenticated": "1000000/min"})


@pytest.fixture
def write_key(operator, other_operator):
    own = [request_in_status(status, organisation=operator) for status in (Status.NEW, Status.AWAITING_SUBJECT)]
    theirs = request_in_status(Status.NEW, organisation=other_operator)
    OWN[:] = [str(request.public_id) for request in own]
    OTHERS[:] = [str(theirs.public_id)]
    EXPORTS[:] = [shared_export(own[0])]
    MESSAGES[:] = [str(handling.subject_reply(request=own[0], body="Via the portal", actor=Actor.organisation(operator)).public_id)]
    yield key_for(operator, scope="write")
    for ids in (OWN, OTHERS, EXPORTS, MESSAGES):
        ids.clear()
    theirs.refresh_from_db()
    assert theirs.status == Status.NEW and not theirs.messages.exists(), "another organisation's request was changed"


# WSGI requests go through the real handler, which closes the connection after each request:
# they need a transactional test (data committed, flushed after the test).
@schema.parametrize()
@FUZZ_SETTINGS
@pytest.mark.django_db(transaction=True)
def test_fuzz_with_a_write_key_finds_no_server_error(case, write_key):
    response = call(case, Authorization=f"Api-Key {write_key}")
    assert_problem_details(response)
    if OTHERS[0] in (case.path_parameters or {}).values():
        # Invisible: never served nor acted on, nor refused for its state (409/410).
        assert not 200 <= response.status_code < 300 and response.status_code not in (409, 410), response.status_code


@schema.parametrize()
@FUZZ_SETTINGS
@pytest.mark.django_db(transaction=True)
def test_fuzz_without_a_key_is_always_401(case):
    assert_refused_without_a_key(case)


def assert_refused_without_a_key(case):
    response = call(case)
    assert_problem_details(response)
    if len(response.request.body or b"") > django_settings.API_MAX_BODY_BYTES:
        assert response.status_code == 413
        return response
    if is_api_route(response):
        if response.status_code == 406:
            # DRF picks how to write its answer before it authenticates, so an Accept that admits no JSON is refused
            # first (documented). Negative cases send one: "Accept" is among the header names they make up (see call).
            accept = next((value for name, value in (case.headers or {}).items() if name.lower() == "accept"), None)
            assert accept is not None and not admits_json(accept), case.headers
            return response
        assert response.status_code == 401, (response.status_code, response.text[:300])
        assert response.headers.get("www-authenticate") == ["Api-Key"]
    return response


def admits_json(accept: str) -> bool:
    """As the API's content negotiation reads an Accept header: application/problem+json counts as JSON."""
    return any(
        media_type_matches(media_type, media_range.strip())
        for media_range in accept.split(",")
        for media_type in ("application/json", "application/problem+json")
    )


@pytest.mark.django_db(transaction=True)
def test_a_host_header_a_negative_case_makes_up_is_not_sent(operator):
    """Found by the fuzzing above, about one run in five: an undeclared header named "Host", empty, answered 400
    where a 401 was expected. With a key, the same header would fail /ping/ for a status it does not document."""
    filing = schema["/api/v1/requests/"]["POST"].Case(
        headers={"0": "", "Host": ""}, body={}, media_type="application/json"
    )
    assert_refused_without_a_key(filing)
    ping = schema["/api/v1/ping/"]["GET"].Case(headers={"Host": ""})
    assert call(ping, Authorization=f"Api-Key {key_for(operator)}").status_code == 200


@pytest.mark.parametrize(
    ("accept", "status"), [("", 406), ("0", 406), ("text/html", 406), ("text/html, */*", 401), ("application/problem+json", 401)]
)
@pytest.mark.django_db(transaction=True)
def test_an_accept_header_a_negative_case_makes_up_may_be_refused_before_the_key(accept, status):
    """The same made-up header names include "Accept": one that admits no JSON is a 406 before the key is read, where
    the fuzzing above expected a 401."""
    response = assert_refused_without_a_key(schema["/api/v1/ping/"]["GET"].Case(headers={"Accept": accept}))
    assert response.status_code == status


@pytest.mark.parametrize("path", ["{id}/exports/", "{id}/exports/{id}/download/"])
@pytest.mark.django_db
def test_a_request_id_that_is_not_a_uuid_is_a_404_not_a_500(operator, path):
    """The route's pattern lets through any id, 36 hex digits without dashes among them: found by the fuzzing above."""
    api = client_with(key_for(operator))
    api.raise_request_exception = False
    response = api.get("/api/v1/requests/" + path.format(id="0" * 36))
    assert response.status_code == 404, response.status_code
    assert response["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/", "/api/redoc/"])
@pytest.mark.django_db
def test_the_schema_and_docs_need_no_key(client, path):
    assert client.get(path).status_code == 200
