"""The schema's examples (issue #7) are what the API really takes and answers.

Read from the generated schema, as Swagger UI, ReDoc and schemathesis read them:
- every operation under /api/v1/ has an example for each request body and each JSON answer;
- every example is valid against its own schema, with no key the schema does not document;
- the request examples, sent with a valid key, get the documented success status;
- the 201 example of filing a request is the answer to the erasure example, field for field,
  and the lookup example's answer is the documented one;
- each documented problem details body is the one the API sends in that case.
"""

import datetime
import json
import re
import uuid

import jsonschema
import pytest
import time_machine
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from rest_framework.test import APIClient

from requests_app.api.auth import OrganisationKeyThrottle, UnauthenticatedThrottle
from requests_app.api.idempotency import call_fingerprint
from requests_app.api.errors import PROBLEM
from requests_app.audit import Actor
from requests_app.models import (
    ExportPackage,
    IdempotencyRecord,
    IdentityKind,
    OrganisationAPIKey,
    PrivacyRequest,
    RequestType,
    Status,
    SuppressionEntry,
    SuppressionPurpose,
)
from requests_app.services.exports import export_release
from tests.api.conftest import client_with, key_for
from tests.factories import request_in_status, staff_in_role

# Rendered to JSON and back, as /api/schema/?format=json serves it.
SCHEMA = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))
CREATE, MESSAGES, LOOKUP = (
    ("/api/v1/requests/", "post"),
    ("/api/v1/requests/{public_id}/messages/", "post"),
    ("/api/v1/suppression-lists/{slug}/lookup/", "post"),
)


def operations():
    for path, item in SCHEMA["paths"].items():
        if path.startswith("/api/v1/"):
            for method, operation in item.items():
                yield f"{method.upper()} {path}", operation


def is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


def request_examples(path, method) -> dict:
    return SCHEMA["paths"][path][method]["requestBody"]["content"]["application/json"]["examples"]


def success(path, method) -> tuple[int, dict]:
    """The documented 2xx status and its JSON examples."""
    responses = SCHEMA["paths"][path][method]["responses"]
    code = min(code for code in responses if code.startswith("2"))
    return int(code), responses[code]["content"]["application/json"]["examples"]


def documented_problems() -> dict:
    """Every problem details example, by (status, name): the same body wherever it is documented."""
    found = {}
    for _label, operation in operations():
        for code, response in operation["responses"].items():
            for name, example in response.get("content", {}).get(PROBLEM, {}).get("examples", {}).items():
                assert found.setdefault((int(code), name), example["value"]) == example["value"], (code, name)
    return found


def documented_headers(code: int) -> set[str]:
    """The headers documented as always sent with a status, on any operation."""
    return {
        name
        for _label, operation in operations()
        for name, header in operation["responses"].get(str(code), {}).get("headers", {}).items()
        if header.get("required")
    }


def json_schema(schema):
    """OpenAPI 3.0.3 to JSON Schema, as a strict validator (openapi-core's) reads it: `nullable: true` adds null to a
    `type` beside it and means nothing without one; objects refuse keys they do not document."""
    if isinstance(schema, list):
        return [json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: json_schema(value) for key, value in schema.items() if key != "nullable"}
    if "properties" in converted:
        converted.setdefault("additionalProperties", False)
    if schema.get("nullable") is True and isinstance(schema.get("type"), str):
        converted["type"] = [schema["type"], "null"]
    return converted


COMPONENTS = json_schema(SCHEMA["components"])


def validator(schema) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator({**json_schema(schema), "components": COMPONENTS}, format_checker=jsonschema.FormatChecker())


def undocumented(path: str, method: str, response) -> list[str]:
    """How a real JSON answer differs from the schema its operation documents for its status."""
    documented = SCHEMA["paths"][path][method]["responses"][str(response.status_code)]["content"]["application/json"]
    return [f"{method.upper()} {path} {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(documented["schema"]).iter_errors(response.json())]


def test_every_operation_has_an_example_for_each_body_and_each_json_answer():
    missing, labels = [], []
    for label, operation in operations():
        labels.append(label)
        for media_type, content in operation.get("requestBody", {}).get("content", {}).items():
            if not content.get("examples"):
                missing.append(f"{label} request body {media_type}")
        for code, response in operation["responses"].items():
            for media_type, content in response.get("content", {}).items():
                if is_json(media_type) and not content.get("examples"):
                    missing.append(f"{label} {code} {media_type}")
    assert len(labels) >= 12, labels
    assert missing == []


def test_every_example_is_valid_against_its_schema():
    invalid = []
    for label, operation in operations():
        contents = [("request", operation.get("requestBody", {}).get("content", {}))]
        contents += [(code, response.get("content", {})) for code, response in operation["responses"].items()]
        for where, content in contents:
            for media_type, media in content.items():
                checker = validator(media["schema"])
                for name, example in media.get("examples", {}).items():
                    invalid += [f"{label} {where} {media_type} {name}: {e.message}" for e in checker.iter_errors(example["value"])]
    assert invalid == []


def test_a_requests_real_answers_are_valid_against_the_schema(operator):
    """`fee` and `portability_recipient` were `{"allOf": [{"$ref": ...}], "nullable": true}`: in OpenAPI 3.0 a
    `nullable` without a `type` allows no null, and a strict validator refused nearly every answer (`fee: null`)."""
    api = client_with(key_for(operator))
    filed = api.post(CREATE[0], request_examples(*CREATE)["AccessAndPortabilityForASubscriber"]["value"], format="json")
    plain = api.post(CREATE[0], ERASURE, format="json")
    detail = "/api/v1/requests/{public_id}/"
    invalid = undocumented(*CREATE, filed) + undocumented(CREATE[0], "get", api.get(CREATE[0]))
    with_recipient = api.get(f"{CREATE[0]}{filed.json()['id']}/")
    assert with_recipient.json()["portability_recipient"]["name"] == "Nova Telecom"
    invalid += undocumented(detail, "get", with_recipient) + undocumented(detail, "get", api.get(f"{CREATE[0]}{plain.json()['id']}/"))
    PrivacyRequest.objects.filter(public_id=plain.json()["id"]).update(fee_amount=25, fee_proposed_at=timezone.now())
    with_fee = api.get(f"{CREATE[0]}{plain.json()['id']}/")
    assert with_fee.json()["fee"]["amount"] == "25.00" and with_fee.json()["portability_recipient"] is None
    invalid += undocumented(detail, "get", with_fee) + undocumented(CREATE[0], "get", api.get(CREATE[0]))
    invalid += undocumented("/api/v1/requests/{public_id}/withdraw/", "post", api.post(f"{CREATE[0]}{plain.json()['id']}/withdraw/"))
    assert invalid == []


def test_a_requests_answer_is_described_as_always_present_and_read_only():
    """Client generators made status, due_on and the rest optional and writable: the schema said neither."""
    component = SCHEMA["components"]["schemas"]["Request"]
    for name in ("id", "reference", "status", "regime", "channel", "received_at", "due_on", "original_due_on", "extended_at"):
        assert name in component["required"] and component["properties"][name]["readOnly"] is True, name
    assert component["properties"]["rights"]["items"] == {"$ref": "#/components/schemas/RequestTypeEnum"}


def test_every_operation_documents_the_statuses_and_headers_the_api_sends():
    """No operation documented a 405 or a 406, nor the headers a 401, 405, 429 or replayed answer comes with, nor
    the RateLimit headers of the budget."""
    missing = []
    for label, operation in operations():
        responses = operation["responses"]
        success_code = min(code for code in responses if code.startswith("2"))
        # A download answers its file or a problem whatever Accept says: only the JSON answers can be a 406.
        answers_json = any(is_json(media_type) for media_type in responses[success_code].get("content", {}))
        if "405" not in responses:
            missing.append(f"{label} 405")
        if ("406" in responses) != answers_json:
            missing.append(f"{label} 406 {'missing' if answers_json else 'never sent'}")
        for code, header in [("401", "WWW-Authenticate"), ("405", "Allow"), ("429", "Retry-After")]:
            if code in responses and not responses[code].get("headers", {}).get(header, {}).get("required"):
                missing.append(f"{label} {code} {header}")
        if any(parameter["name"] == "Idempotency-Key" for parameter in operation.get("parameters", [])):
            if "Idempotent-Replayed" not in responses[success_code].get("headers", {}):
                missing.append(f"{label} {success_code} Idempotent-Replayed")
        # The budget the call used (api.middleware.api_rate_limit_headers): on any answer to a counted call, so not
        # required (a 403 for the key's scope comes before the count), but documented on each.
        for code, response in responses.items():
            for header in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy"):
                if header not in response.get("headers", {}):
                    missing.append(f"{label} {code} {header}")
    assert missing == []


@pytest.mark.django_db
def test_each_answer_documented_as_replayed_is_replayed_with_its_header(operator):
    """The statuses documented with Idempotent-Replayed are those an Idempotency-Key stores (the view's answers)."""
    documented = {
        int(code)
        for _label, operation in operations()
        for code, response in operation["responses"].items()
        if "Idempotent-Replayed" in response.get("headers", {})
    }
    withdraw = f"/api/v1/requests/{own_request(operator).public_id}/withdraw/"
    calls = {  # in this order: the withdrawal, then the conflict of withdrawing again
        201: (CREATE[0], json.dumps(ERASURE), "application/json"),
        400: (CREATE[0], json.dumps({**ERASURE, "rights": []}), "application/json"),
        415: (CREATE[0], "rights=erasure", "text/plain"),
        404: (f"/api/v1/requests/{uuid.uuid4()}/withdraw/", "", "application/json"),
        200: (withdraw, "", "application/json"),
        409: (withdraw, "{}", "application/json"),
    }
    assert documented == set(calls)
    api = client_with(key_for(operator))
    for code, (path, body, content_type) in calls.items():
        first, again = (api.post(path, body, content_type=content_type, HTTP_IDEMPOTENCY_KEY=f"replay-{code}") for _ in range(2))
        assert first.status_code == again.status_code == code, (code, first.status_code, again.status_code)
        assert "Idempotent-Replayed" not in first and again["Idempotent-Replayed"] == "true"


@pytest.mark.django_db
def test_options_on_the_list_describes_the_filing_not_the_answer(operator):
    described = client_with(key_for(operator)).options("/api/v1/requests/").json()["actions"]["POST"]
    assert {"rights", "subject_name", "signature", "relationship"} <= set(described)
    assert "status" not in described and "received_at" not in described


@pytest.mark.django_db
def test_options_on_an_action_describes_what_that_action_takes(operator):
    """OPTIONS on /withdraw/ and /messages/ described the filing's fields, as on the list."""
    api = client_with(key_for(operator))
    request = request_in_status(Status.AWAITING_SUBJECT, organisation=operator)
    messages = api.options(f"/api/v1/requests/{request.public_id}/messages/").json()["actions"]["POST"]
    assert set(messages) == {"body"}
    assert api.options(f"/api/v1/requests/{request.public_id}/withdraw/").json()["actions"]["POST"] == {}  # no field


def test_the_bodies_descriptions_are_written_for_integrators_not_the_code_behind_them():
    """The schema shows a serializer's docstring, or one inherited: the message body was described by the mixin
    that refuses unknown fields ("DRF ignores it: a misspelled subject_phonee…")."""
    descriptions = {name: component.get("description", "") for name, component in SCHEMA["components"]["schemas"].items()}
    internal = [name for name, text in descriptions.items() if re.search(r"DRF|serializer|RequestForm|benchmark", text)]
    assert internal == []
    assert descriptions["MessageCreate"].startswith("A message from the subject to the DPO team")


def test_every_operation_has_a_short_summary_and_keeps_its_description():
    """Swagger UI and ReDoc list operations by their summary (without one, by their operationId)."""
    summaries, problems = [], []
    for label, operation in operations():
        summary = operation.get("summary", "")
        summaries.append(summary)
        if not summary or len(summary) > 40 or summary.endswith("."):
            problems.append(f"{label}: summary {summary!r}")
        if not operation.get("description"):
            problems.append(f"{label}: no description")
    assert problems == []
    assert len(set(summaries)) == len(summaries), summaries  # each says which operation it is
    # The docstrings stay the descriptions.
    assert SCHEMA["paths"][CREATE[0]]["post"]["description"].startswith("File a request for a subject.")


@pytest.mark.parametrize("name", sorted(request_examples(*CREATE)))
def test_a_documented_request_to_file_is_filed(operator, name):
    response = client_with(key_for(operator)).post(CREATE[0], request_examples(*CREATE)[name]["value"], format="json")
    assert response.status_code == success(*CREATE)[0] == 201, response.content
    documented = SCHEMA["paths"][CREATE[0]]["post"]["responses"]["201"]["headers"]
    assert documented["Location"]["required"]
    assert response["Location"] == f"{CREATE[0]}{response.json()['id']}/"


def test_the_documented_201_is_the_answer_to_the_erasure_example(operator):
    created = next(iter(success(*CREATE)[1].values()))["value"]
    body = request_examples(*CREATE)["ErasureForASubscriber"]["value"]
    api = client_with(key_for(operator))
    # Filed at the example's time, the dates and the deadline must come out as documented.
    with time_machine.travel(datetime.datetime.fromisoformat(created["received_at"]), tick=False):
        answer = api.post(CREATE[0], body, format="json").json()

    assert answer.keys() == created.keys()
    assert re.fullmatch(r"DSR-2026-\d{5}", answer["reference"]) and uuid.UUID(answer["id"])
    variable = {"id", "reference", "created_at", "updated_at"}
    assert {k: v for k, v in answer.items() if k not in variable} == {k: v for k, v in created.items() if k not in variable}


@pytest.mark.parametrize("name", sorted(request_examples(*MESSAGES)))
def test_a_documented_message_is_passed_on(operator, name):
    request = request_in_status(Status.AWAITING_SUBJECT, organisation=operator)
    response = client_with(key_for(operator)).post(
        f"/api/v1/requests/{request.public_id}/messages/", request_examples(*MESSAGES)[name]["value"], format="json"
    )
    assert response.status_code == success(*MESSAGES)[0] == 201, response.content


@pytest.mark.parametrize("name", sorted(request_examples(*LOOKUP)))
def test_a_documented_lookup_gets_the_documented_results(operator, name):
    purpose = SuppressionPurpose.objects.create(slug="marketing-email", name="Promotional emails")
    SuppressionEntry.objects.create(purpose=purpose, kind=IdentityKind.EMAIL, value="ana.peeters@example.com", right=RequestType.OBJECTION)
    response = client_with(key_for(operator, scope="suppression")).post(
        "/api/v1/suppression-lists/marketing-email/lookup/", request_examples(*LOOKUP)[name]["value"], format="json"
    )
    code, examples = success(*LOOKUP)
    assert response.status_code == code == 200, response.content
    assert response.json() in [example["value"] for example in examples.values()]


# How to make the API send each documented problem. A new example needs a line here.
ERASURE = request_examples(*CREATE)["ErasureForASubscriber"]["value"]


def invalid_fields(operator):
    body = {**ERASURE, "rights": ["objection"], "subject_email": "ana.peeters(at)example.com"}
    return client_with(key_for(operator)).post(CREATE[0], body, format="json")


def unknown_field(operator):
    body = {**ERASURE, "subject_phonee": ERASURE["subject_phone"]}
    del body["subject_phone"]
    return client_with(key_for(operator)).post(CREATE[0], body, format="json")


def malformed_json(operator):
    body = '{"rights": ["erasure"] "subject_name": "Ana Peeters"}'
    return client_with(key_for(operator)).post(CREATE[0], body, content_type="application/json")


def duplicate_key(operator):
    body = '{"rights": ["erasure"], "subject_name": "Ana Peeters", "rights": ["access"]}'
    return client_with(key_for(operator)).post(CREATE[0], body, content_type="application/json")


def lone_surrogate(operator):
    body = '{"rights": ["\\ud800"], "subject_name": "Ana Peeters"}'
    return client_with(key_for(operator)).post(CREATE[0], body, content_type="application/json")


def expired_key(operator):
    yesterday = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    return client_with(key_for(operator, expiry_date=yesterday)).get("/api/v1/ping/")


def own_request(operator, status=Status.NEW):
    return request_in_status(status, organisation=operator)


def already_withdrawn(operator):
    with time_machine.travel(datetime.datetime.fromisoformat("2026-03-04T16:40:12+01:00"), tick=False):
        request = own_request(operator, Status.WITHDRAWN)
    return client_with(key_for(operator)).post(f"/api/v1/requests/{request.public_id}/withdraw/")


def in_flight(operator):
    body = json.dumps(ERASURE)
    fingerprint = call_fingerprint("POST", CREATE[0], body.encode())
    IdempotencyRecord.objects.create(organisation=operator, key="portal-7f3a", fingerprint=fingerprint)
    return client_with(key_for(operator)).post(
        CREATE[0], body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="portal-7f3a"
    )


def used_up_package(operator):
    request = own_request(operator)
    export = ExportPackage.objects.create(request=request, status="ready", storage_name="exports/x.zip", size=22, sha256="0" * 64)
    export_release(export=export, actor=Actor.staff(staff_in_role("DPO")), share_with_organisation=True)
    ExportPackage.objects.filter(pk=export.pk).update(organisation_download_count=export.max_downloads)  # its own downloads, not the subject's
    return client_with(key_for(operator)).get(f"/api/v1/requests/{request.public_id}/exports/{export.public_id}/download/")


def range_outside_the_package(operator):
    request = own_request(operator)
    export = ExportPackage.objects.create(
        request=request, status="ready", storage_name="exports/x.zip", size=482133, sha256="0" * 64
    )
    export_release(export=export, actor=Actor.staff(staff_in_role("DPO")), share_with_organisation=True)
    return client_with(key_for(operator)).get(
        f"/api/v1/requests/{request.public_id}/exports/{export.public_id}/download/", HTTP_RANGE="bytes=500000-"
    )


def key_reused(operator):
    api = client_with(key_for(operator))
    api.post(CREATE[0], ERASURE, format="json", HTTP_IDEMPOTENCY_KEY="portal-7f3a")
    return api.post(CREATE[0], {**ERASURE, "language": "fr"}, format="json", HTTP_IDEMPOTENCY_KEY="portal-7f3a")


def customer_suppression_key(operator):
    _, key = OrganisationAPIKey.objects.create_key(name="issued before the rule", organisation=operator, scope="suppression")
    return client_with(key).get("/api/v1/suppression-lists/")


def rate_limited(operator):
    api = client_with(key_for(operator))
    api.get("/api/v1/ping/")
    return api.get("/api/v1/ping/")


def keyless_rate_limited(operator):
    APIClient().get("/api/v1/ping/")
    return client_with("abcdefgh.not-a-real-key").get("/api/v1/ping/")


PROVOKE = {
    (400, "InvalidFields"): invalid_fields,
    (400, "UnknownField"): unknown_field,
    (400, "InvalidListEntry"): lambda operator: client_with(key_for(operator)).post(
        CREATE[0], {**ERASURE, "rights": ["erasure", "bogus"]}, format="json"
    ),
    (400, "MalformedJSON"): malformed_json,
    (400, "DuplicateKey"): duplicate_key,
    (400, "LoneSurrogate"): lone_surrogate,
    (400, "InvalidCursor"): lambda operator: client_with(key_for(operator)).get("/api/v1/requests/", {"cursor": "cD14"}),
    (401, "NoKey"): lambda operator: APIClient().get("/api/v1/ping/"),
    (401, "WrongOrRevokedKey"): lambda operator: client_with(key_for(operator, revoked=True)).get("/api/v1/ping/"),
    (401, "ExpiredKey"): expired_key,
    (403, "ReadKeyThatWrites"): lambda operator: client_with(key_for(operator, scope="read")).post(CREATE[0], ERASURE, format="json"),
    (403, "SuppressionKeyOnRequests"): lambda operator: client_with(key_for(operator, scope="suppression")).get(CREATE[0]),
    (403, "PortalKeyOnSuppressionLists"): lambda operator: client_with(key_for(operator)).get("/api/v1/suppression-lists/"),
    (403, "BusinessCustomerOnSuppressionLists"): customer_suppression_key,
    (403, "ReadKeyThatDownloads"): lambda operator: client_with(key_for(operator, scope="read")).get(
        f"/api/v1/requests/{own_request(operator).public_id}/exports/{uuid.uuid4()}/download/"
    ),

    (404, "UnknownRequest"): lambda operator: client_with(key_for(operator)).get(f"/api/v1/requests/{uuid.uuid4()}/"),
    (404, "UnknownMessage"): lambda operator: client_with(key_for(operator)).get(
        f"/api/v1/requests/{own_request(operator).public_id}/messages/{uuid.uuid4()}/"
    ),
    (404, "UnknownPackage"): lambda operator: client_with(key_for(operator)).get(
        f"/api/v1/requests/{own_request(operator).public_id}/exports/{uuid.uuid4()}/download/"
    ),
    (404, "UnknownSuppressionList"): lambda operator: client_with(key_for(operator, scope="suppression")).get(
        "/api/v1/suppression-lists/nope/entries/"
    ),
    (409, "AlreadyWithdrawn"): already_withdrawn,
    (409, "Idempotency-KeyInFlight"): in_flight,
    (410, "UsedUp"): used_up_package,
    (416, "RangeOutsideThePackage"): range_outside_the_package,
    (405, "MethodNotAllowed"): lambda operator: client_with(key_for(operator)).put(CREATE[0], ERASURE, format="json"),
    (406, "NotAcceptable"): lambda operator: client_with(key_for(operator)).get("/api/v1/ping/", HTTP_ACCEPT="text/html"),
    (411, "LengthRequired"): lambda operator: client_with(key_for(operator)).post(
        CREATE[0], ERASURE, format="json", HTTP_TRANSFER_ENCODING="chunked", CONTENT_LENGTH=""
    ),
    (413, "BodyTooLarge"): lambda operator: client_with(key_for(operator)).post(
        CREATE[0], json.dumps({"description": "x" * 330_000}), content_type="application/json"
    ),
    (415, "NotJSON"): lambda operator: client_with(key_for(operator)).post(
        CREATE[0], "rights=erasure", content_type="text/plain"
    ),
    (422, "Idempotency-KeyReused"): key_reused,
    (429, "RateLimited"): rate_limited,
    (429, "TooManyCallsWithoutAValidKey"): keyless_rate_limited,
}


def test_every_documented_problem_has_a_way_to_provoke_it():
    assert set(documented_problems()) == set(PROVOKE)


@pytest.mark.parametrize(("code", "name"), sorted(documented_problems()))
def test_a_documented_problem_is_what_the_api_sends(operator, monkeypatch, code, name):
    if code == 429:
        monkeypatch.setattr(OrganisationKeyThrottle, "THROTTLE_RATES", {"organisation_key": "1/min"})
        monkeypatch.setattr(UnauthenticatedThrottle, "THROTTLE_RATES", {"unauthenticated": "1/min"})
    response = PROVOKE[code, name](operator)
    assert response.status_code == code
    assert response["Content-Type"] == PROBLEM
    assert {header for header in documented_headers(code) if not response.has_header(header)} == set()
    documented = documented_problems()[code, name]
    if code == 429:
        # The wait is the seconds left in the window: the same number as Retry-After.
        wait = re.search(r"\d+", response.json()["detail"]).group()
        assert response["Retry-After"] == wait
        assert response.json() == {**documented, "detail": documented["detail"].replace("42", wait)}
    else:
        assert response.json() == documented
