"""The REST API for business customers' portals (/api/v1/).

An organisation sees only its own requests: any other id is a 404.
Refusals by the state machine are 409; errors are problem details.
"""

from base64 import b64decode
from urllib import parse

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, transaction
from django.db.models import Exists, OuterRef
from django.urls import reverse
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, pagination, status, viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.decorators import action, api_view, permission_classes
from rest_framework.response import Response

from requests_app.api import serializers
from requests_app.api.auth import AnyOrganisationKey, DownloadsNeedAWriteKey, HasOrganisationKey
from requests_app.api.idempotency import IN_FLIGHT_RETRY_AFTER_SECONDS, MAX_KEY_LENGTH, idempotent
from requests_app.audit import Actor
from requests_app.api.errors import (
    ABOUT_BLANK,
    IDEMPOTENCY_KEY_IN_FLIGHT,
    PROBLEM,
    STATE_CONFLICT,
    found_or_404,
    problem,
    problem_body,
)
from requests_app.downloads import package_download
from requests_app.models import (
    ActorKind,
    Channel,
    ExportPackage,
    ExportStatus,
    Message,
    MessageDirection,
    PrivacyRequest,
    RequestedRight,
)
from requests_app.api.fields import MomentField
from requests_app.selectors import CHANGES_CLOCK_MARGIN, changes_committed_before
from requests_app.services import handling, intake


def problem_example(
    name: str, status_code: int, detail: str, *, problem_type: str = ABOUT_BLANK, title: str = "", errors=None,
    description: str = "",
):
    """A problem details body exactly as errors.problem() writes it (tests/api/test_schema_examples.py checks it)."""
    body = problem_body(status_code, detail, problem_type=problem_type, title=title, errors=errors)
    return OpenApiExample(name, value=body, description=description)


# The errors the API answers, each status with the bodies it really sends; each endpoint documents its own (problems()).
ALL_PROBLEMS = {
    (code, PROBLEM): OpenApiResponse(response=serializers.ProblemSerializer, description=description, examples=examples)
    for code, description, examples in [
        (400, "Malformed JSON, invalid fields or query parameters (problem details with `errors`: field or "
              "parameter name to messages; for an entry of a list or a field of an object, the same nested under its "
              "position, from 0, or its name)", [
            problem_example(
                "Invalid fields", 400, "The request is not valid; see errors.",
                errors={
                    "subject_email": ["Enter a valid email address."],
                    "objection_processing": ["Tell us which processing or purpose you object to."],
                },
            ),
            problem_example(
                "Unknown field", 400, "The request is not valid; see errors.",
                errors={"subject_phonee": ["Unknown field: check its name against the API schema. Nothing was done."]},
                description="A body's field the endpoint does not take, named in `errors` with the body's other "
                "mistakes: a misspelled field is refused, rather than the request filed without it.",
            ),
            problem_example(
                "Invalid list entry", 400, "The request is not valid; see errors.",
                errors={"rights": {"1": ['"bogus" is not a valid choice.']}},
                description="An entry of a list is named by its position, from 0: here the second of `rights`. An "
                "object's fields inside a list nest the same way (`identifiers` → `0` → `value`).",
            ),
            problem_example(
                "Malformed JSON", 400, "JSON parse error - Expecting ',' delimiter: line 1 column 24 (char 23)"
            ),
            problem_example(
                "Duplicate key", 400,
                'JSON parse error - duplicate key "rights": each key may appear only once in an object',
                description="A key named twice in one object, at any depth, is refused rather than one value "
                "silently kept.",
            ),
            problem_example(
                "Lone surrogate", 400,
                "JSON parse error - lone surrogate \\ud800: an escape between \\ud800 and \\udfff is half of a "
                "character, valid only in a high-low pair",
                description="A key or string holding half of a surrogate pair without the other (`\"\\ud800\"`) "
                "names no character: write the character, or both halves (`\"\\ud83d\\ude00\"`).",
            ),
            problem_example(
                "Invalid cursor", 400, "The request is not valid; see errors.", errors={"cursor": ["Invalid cursor"]},
                description="A `cursor` that is not one of the `next` or `previous` links' own.",
            ),
        ]),
        (401, "Missing, wrong, expired or revoked API key (with `WWW-Authenticate: Api-Key`)", [
            problem_example("No key", 401, "Send an API key: Authorization: Api-Key <key>."),
            problem_example("Wrong or revoked key", 401, "The API key is not valid."),
            problem_example("Expired key", 401, "The API key has expired."),
        ]),
        (403, "The key's scope does not allow this", [
            problem_example("Read key that writes", 403, "This API key may only read: writing needs a key with the write scope."),
            problem_example("Suppression key on requests", 403, "This API key reads the suppression lists only."),
            problem_example("Portal key on suppression lists", 403, "Suppression lists need a key with the suppression scope."),
            problem_example("Business customer on suppression lists", 403, "Only the controller's own systems may read the suppression lists."),
            problem_example("Read key that downloads", 403, "Downloading a subject's data needs a key with the write scope."),
        ]),
        (404, "No such request, message, package or suppression list for this key (an id that is not a UUID is "
              "no such one either, once the key is checked)", [
            problem_example("Unknown request", 404, "No such privacy request for this API key."),
            problem_example("Unknown message", 404, "No such message for this API key."),
            problem_example("Unknown package", 404, "No such export package for this API key."),
            problem_example("Unknown suppression list", 404, "No such suppression list for this API key."),
        ]),
        (405, "A method this endpoint does not have, whatever the key's scope (with `Allow`: the methods it has)", [
            problem_example("Method not allowed", 405, 'Method "PUT" not allowed.'),
        ]),
        (406, "An `Accept` header that admits neither `application/json` nor `application/problem+json`: answers "
              "are `application/json`, and problems `application/problem+json` (a client that accepts only "
              "`application/problem+json` gets its successes as `application/json`)", [
            problem_example(
                "Not acceptable", 406, "Could not satisfy the request Accept header.",
                description="The answer to `Accept: text/html`: send `Accept: application/json, application/problem+json`, "
                "or no `Accept` header.",
            ),
        ]),
        (409, f"Not allowed in the request's state (`type` `{STATE_CONFLICT}`: final, read the request again), or "
              f"the same Idempotency-Key is in flight (`type` `{IDEMPOTENCY_KEY_IN_FLIGHT}`, with `Retry-After`: "
              "send the same call again then, to get the first call's answer). Tell them apart by `type`, not "
              "by `detail`, which is in the caller's language", [
            problem_example(
                "Already withdrawn", 409, "This request was already withdrawn on 4 March 2026, 16:40 CET: nothing changed.",
                problem_type=STATE_CONFLICT,
                description="A closed request cannot be withdrawn; one completed, rejected or expired says so: "
                "\"This request is already closed (completed on 4 March 2026, 16:40 CET): there is nothing left to withdraw.\"",
            ),
            problem_example(
                "Idempotency-Key in flight", 409, "A request with this Idempotency-Key is still being processed.",
                problem_type=IDEMPOTENCY_KEY_IN_FLIGHT,
                description=f"Sent with `Retry-After: {IN_FLIGHT_RETRY_AFTER_SECONDS}`.",
            ),
        ]),
        (411, "A body sent in chunks (`Transfer-Encoding: chunked`), without `Content-Length`, refused before it is read", [
            problem_example(
                "Length required", 411,
                "Send the body with a Content-Length header: this API does not read a body sent in chunks.",
            ),
        ]),
        (413, "Body larger than API_MAX_BODY_BYTES (320 KiB by default), refused before it is read", [
            problem_example("Body too large", 413, "The body is larger than 327680 bytes."),
        ]),
        (415, "A body that is not JSON: send `Content-Type: application/json`", [
            problem_example("Not JSON", 415, 'Unsupported media type "text/plain" in request.', title="Unsupported Media Type"),
        ]),
        (422, "Idempotency-Key reused with another body or on another endpoint", [
            problem_example("Idempotency-Key reused", 422, "This Idempotency-Key was used with another request (another body or endpoint)."),
        ]),
        (429, "Rate limit per key (API_RATE_LIMIT) or, for calls without a valid key, per client address "
              "(API_UNAUTHENTICATED_RATE_LIMIT); the `Retry-After` header says how many seconds to wait", [
            problem_example(
                "Rate limited", 429, "Request was throttled. Expected available in 42 seconds.",
                description="Sent with `Retry-After: 42`: wait that many seconds, then retry.",
            ),
            problem_example(
                "Too many calls without a valid key", 429,
                "Too many calls without a valid API key from your address. Expected available in 42 seconds.",
                description="Calls with no key or a wrong, expired or revoked one (each a 401) have a budget per "
                "client address; past it they are answered this, with `Retry-After: 42`.",
            ),
        ]),
    ]
}


def problems(*codes: int) -> dict:
    return {key: response for key, response in ALL_PROBLEMS.items() if key[0] in codes}


READ_PROBLEMS = problems(400, 401, 403, 404, 405, 406, 429)
# A POST also meets the request's state, the body's length and limit and the Idempotency-Key.
WRITE_PROBLEMS = problems(400, 401, 403, 404, 405, 406, 409, 411, 413, 415, 422, 429)
# The headers that come with these problems, for each operation's parameters: drf-spectacular declares a header
# on those of the operation's responses whose status it lists.
PROBLEM_HEADERS = [
    OpenApiParameter(
        "WWW-Authenticate", str, OpenApiParameter.HEADER, response=[401], required=True,
        description="`Api-Key`: send the key as `Authorization: Api-Key <key>`.",
    ),
    OpenApiParameter(
        "Allow", str, OpenApiParameter.HEADER, response=[405], required=True,
        description="The methods this endpoint has (`GET, POST, HEAD, OPTIONS` for `/api/v1/requests/`).",
    ),
    OpenApiParameter(
        "Retry-After", int, OpenApiParameter.HEADER, response=[429], required=True,
        description="How many seconds to wait before calling again: until the budget's window (the minute) ends.",
    ),
    OpenApiParameter(
        "Retry-After", int, OpenApiParameter.HEADER, response=[409],
        description=f"Only with the `{IDEMPOTENCY_KEY_IN_FLIGHT}` problem: how many seconds to wait before sending "
        "the same call again (the first call is most likely answered by then).",
    ),
]
# The conditional and range requests of a package's download, and the headers that answer them.
ETAG_WHEN = "The package's entity tag, strong, from its SHA-256 (`\"<sha256>\"`): the same for every download of it."
DOWNLOAD_HEADERS = [
    OpenApiParameter(
        "Range", str, OpenApiParameter.HEADER,
        description="One range of bytes, to resume a download cut short: `bytes=4000-`, `bytes=4000-7999` or "
        "`bytes=-1000` (the last 1000). Several ranges, or one that cannot be read, get the whole package (200).",
    ),
    OpenApiParameter(
        "If-Range", str, OpenApiParameter.HEADER,
        description="The `ETag` of the package you hold part of: if the package is another one now, the whole of it "
        "is sent (200) rather than the range.",
    ),
    OpenApiParameter(
        "If-None-Match", str, OpenApiParameter.HEADER,
        description="The `ETag` of the package you hold: a 304, with no body and no download used, while it is "
        "current and still downloadable.",
    ),
    OpenApiParameter("ETag", str, OpenApiParameter.HEADER, response=[200, 206, 304], required=True, description=ETAG_WHEN),
    OpenApiParameter(
        "Accept-Ranges", str, OpenApiParameter.HEADER, response=[200, 206], required=True, enum=["bytes"],
        description="Ranges of bytes may be asked for (`Range`).",
    ),
    OpenApiParameter(
        "Content-Range", str, OpenApiParameter.HEADER, response=[206, 416], required=True,
        description="On a 206, the range sent and the package's size: `bytes 4000-9999/10000`; on a 416, the "
        "package's size: `bytes */10000`.",
    ),
]
# The budget a call used (api.middleware.api_rate_limit_headers): on every answer to a call the throttles counted.
RATE_LIMIT_WHEN = (
    " On every answer to a call counted against a budget: with a valid key, the key's (API_RATE_LIMIT); with none "
    "or a bad one, answered 401 (or 429 past it), the client address's (API_UNAUTHENTICATED_RATE_LIMIT). Not on the "
    "answers given before a call is "
    "counted, which use no budget (406, 411, 413, and a 403 for what the key's scope allows, such as a read key that "
    "writes), nor while the server cannot count (its cache unreachable: then nothing is refused)."
)
WITH_THE_LIMIT = " Sent with `RateLimit-Limit`, on the same answers."
RATE_LIMIT_HEADERS = [
    OpenApiParameter(
        "RateLimit-Limit", int, OpenApiParameter.HEADER, response=True,
        description="The calls the budget allows in a window (draft-ietf-httpapi-ratelimit-headers-06): `120`."
        + RATE_LIMIT_WHEN,
    ),
    OpenApiParameter(
        "RateLimit-Remaining", int, OpenApiParameter.HEADER, response=True,
        description="The calls left in this window after this one: `0` on the last allowed call and on a 429."
        + WITH_THE_LIMIT,
    ),
    OpenApiParameter(
        "RateLimit-Reset", int, OpenApiParameter.HEADER, response=True,
        description="Seconds until the window ends and the whole budget is back (the same as `Retry-After` on a 429)."
        + WITH_THE_LIMIT,
    ),
    OpenApiParameter(
        "RateLimit-Policy", str, OpenApiParameter.HEADER, response=True,
        description="The budget and its window in seconds: `120;w=60`, 120 calls a minute, counted in fixed windows "
        "(the clock's minutes)." + WITH_THE_LIMIT,
    ),
]
# The headers every operation documents: those of its problems, and the budget.
ANSWER_HEADERS = [*PROBLEM_HEADERS, *RATE_LIMIT_HEADERS]
IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key", {"type": "string", "maxLength": MAX_KEY_LENGTH}, OpenApiParameter.HEADER, required=False,
    description="Retry a POST safely: the same key and body returns the first answer. At most 255 characters "
    "(a UUID is 36); a longer key is a 400.",
)
# The answers an Idempotency-Key stores, and so replays: the view's, not those given before it runs (401, 403 for a
# key's scope, 413, 429), nor a 5xx.
REPLAYED_HEADER = OpenApiParameter(
    "Idempotent-Replayed", str, OpenApiParameter.HEADER, response=[200, 201, 400, 404, 409, 415], enum=["true"],
    description="Only on an answer replayed for an `Idempotency-Key` (the same key and body as an earlier call): "
    "that call's answer, byte for byte, with its `Content-Language` (the first call's language, whatever this "
    "call's `Accept-Language`); the work not done again.",
)
LOCATION_HEADER = OpenApiParameter(
    "Location", str, OpenApiParameter.HEADER, response=[201], required=True,
    description="The new request's address, as a path on this server: `/api/v1/requests/{id}/` "
    "(also on a replay through `Idempotency-Key`).",
)
MESSAGE_LOCATION_HEADER = OpenApiParameter(
    "Location", str, OpenApiParameter.HEADER, response=[201], required=True,
    description="The message's address, as a path on this server: `/api/v1/requests/{id}/messages/{message_id}/` "
    "(also on a replay through `Idempotency-Key`).",
)


UPDATED_SINCE_NEXT = "Updated-Since-Next"
UPDATED_SINCE_NEXT_HEADER = OpenApiParameter(
    UPDATED_SINCE_NEXT, OpenApiTypes.DATETIME, OpenApiParameter.HEADER, response=[200],
    description="The `updated_since` to poll with next: every change dated before this moment was committed before "
    "this page was read, and so is in the list. A change is dated inside its transaction, before the commit that "
    "lets the list show it, so polling from the time of your last poll can miss one for good. Take this header "
    "from the first page of a poll, and list from it at the next poll; the two polls overlap, so skip a request "
    "whose `id` and `updated_at` you have already seen. It is the start of the oldest database transaction still "
    f"running, less {CHANGES_CLOCK_MARGIN.seconds} seconds for the clocks: usually a few seconds ago. Sent on every "
    "list in production (PostgreSQL); not by a development server on SQLite.",
)


# Loose on purpose: any path segment reaches the view, which checks the key first (a 401 without a valid one)
# and then answers an id that is not a UUID with the same 404 as an unknown one, naming what it did not find.
# An id the URL pattern refused was the generic "No such endpoint" 404, before the key was even checked.
ID_PATTERN = "[^/]+"
# What the schema says of the ids in a path: the UUIDs the API gives (the URL patterns take any segment, above).
REQUEST_ID = OpenApiParameter(
    "public_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The request's `id`, as the filing answered it."
)
EXPORTS_REQUEST_ID = OpenApiParameter(
    "request_public_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The request's `id`, as the filing answered it."
)
EXPORT_ID = OpenApiParameter("public_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The package's `id`, from the list.")
MESSAGE_ID = OpenApiParameter(
    "message_public_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The message's `id`, as its 201 answered it."
)


class DocumentedCursorPagination(pagination.CursorPagination):
    """A cursor page whose schema shows this API's own `next` link: the examples of a list are built from it."""

    example_next = ""

    def paginate_queryset(self, queryset, request, view=None):
        # A cursor that cannot be read is a 400 naming the parameter, as a filter that cannot be is. DRF answers 404
        # (NotFound), which says the list itself is not there, and tells a client nothing about what it sent.
        # DRF checks a cursor's encoding but not the position inside it: an edited one ("p=x") fails on the query,
        # some only in the database (PostgreSQL's DataError for "p=0001-01-01 00:00:00-23:59", out of its range).
        # The page is read in a savepoint, so that such a failure leaves no transaction around the call broken.
        try:
            with transaction.atomic():
                return super().paginate_queryset(queryset, request, view)
        except (NotFound, DjangoValidationError, ValueError, OverflowError, DataError):
            raise ValidationError({self.cursor_query_param: [self.invalid_cursor_message]}) from None

    def decode_cursor(self, request):
        # DRF reads a cursor leniently: it drops characters that are not base64 and ignores names it does not know,
        # so a mangled cursor ("YWJj", "abc") listed the first page as if none had been sent. Only what this API
        # writes is read: strict base64 of a query string of DRF's own names, "o", "r" and "p".
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded:
            try:
                names = parse.parse_qs(b64decode(encoded.encode("ascii"), validate=True).decode("ascii"), keep_blank_values=True)
            except ValueError:  # binascii.Error and UnicodeError are ValueErrors
                raise NotFound(self.invalid_cursor_message) from None
            if not names or not names.keys() <= {"o", "r", "p"}:
                raise NotFound(self.invalid_cursor_message)
        return super().decode_cursor(request)

    def get_paginated_response_schema(self, schema):
        paginated = super().get_paginated_response_schema(schema)
        paginated["properties"]["next"]["example"] = self.example_next
        paginated["properties"]["previous"]["example"] = None  # the examples show a first page
        return paginated


class RequestCursorPagination(DocumentedCursorPagination):
    # The id breaks ties, as on the suppression entries: requests created in the same instant came back in another
    # order on each page (PostgreSQL's top-N sort is not stable), one listed twice and another never.
    ordering = ("-created_at", "-id")
    page_size = 50
    example_next = "https://privacy.example.com/api/v1/requests/?cursor=cD0yMDI2LTAzLTAyKzA4JTNBMTQlM0EwNy40OTgyMTElMkIwMCUzQTAw"


# The examples are fake: example.com addresses, +32 4xx mobile numbers. tests/api/test_schema_examples.py
# files the request examples and compares the answers with the response examples.
ERASURE_BY_OPERATOR = OpenApiExample(
    "Erasure for a subscriber",
    summary="A mobile operator files an erasure for a former subscriber",
    request_only=True,
    value={
        "rights": ["erasure"],
        "subject_name": "Ana Peeters",
        "subject_email": "ana.peeters@example.com",
        "subject_phone": "+32475123456",
        "customer_reference": "MOB-4471-2093",
        "relationship": "end_user",
        "regime": "gdpr",
        "language": "nl",
        "description": "I ended my mobile subscription in January: please erase my data.",
        "signature": "Ana Peeters",
    },
)
ACCESS_BY_OPERATOR = OpenApiExample(
    "Access and portability for a subscriber",
    summary="A mobile operator files access and portability for a subscriber, to be sent to another operator too",
    request_only=True,
    value={
        "rights": ["access", "portability"],
        "subject_name": "Luc Janssens",
        "subject_email": "luc.janssens@example.com",
        "subject_phone": "+32486654321",
        "postal_address": "Rue des Exemples 12\n1000 Bruxelles\nBelgique",
        "customer_reference": "MOB-5520-8817",
        "relationship": "end_user",
        "language": "fr",
        "description": "A copy of my call records and invoices for 2025.",
        "recipient_name": "Nova Telecom",
        "recipient_email": "portability@nova-telecom.example.com",
        "signature": "Luc Janssens",
    },
)
# The 201 answer to ERASURE_BY_OPERATOR: without the timeline, which only one request's answers give (GET, withdraw).
CREATED_REQUEST = {
    "id": "5f0c2a8e-3b1d-4c7a-9e2f-8d6b4a1c0e93",
    "reference": "DSR-2026-00042",
    "status": "new",
    "status_label": "New",
    "rights": ["erasure"],
    "refused_rights": [],
    "regime": "gdpr",
    "channel": "api",
    "received_at": "2026-03-02T09:14:07.412345+01:00",
    "due_on": "2026-04-02",
    "original_due_on": "2026-04-02",
    "extended_at": None,
    "extension_reason": "",
    "clock_paused": False,
    "fee": None,
    "created_at": "2026-03-02T09:14:07.498211+01:00",
    "updated_at": "2026-03-02T09:14:07.498211+01:00",
}
REQUEST_IN_PROGRESS = {
    **CREATED_REQUEST,
    "status": "in_progress",
    "status_label": "In progress",
    "updated_at": "2026-03-03T10:02:51.204117+01:00",
}
REQUEST_WITH_TIMELINE = {
    **REQUEST_IN_PROGRESS,
    "portability_recipient": None,
    "timeline": [
        {"at": "2026-03-02T09:14:07.412345+01:00", "event": "We received your request."},
        {"at": "2026-03-03T10:02:51.210044+01:00", "event": "We started working on your request."},
    ],
}
REQUEST_WITHDRAWN = {
    **CREATED_REQUEST,
    "portability_recipient": None,
    "status": "withdrawn",
    "status_label": "Withdrawn",
    "updated_at": "2026-03-04T16:40:12.730562+01:00",
    "timeline": [
        {"at": "2026-03-02T09:14:07.412345+01:00", "event": "We received your request."},
        {"at": "2026-03-04T16:40:12.736120+01:00", "event": "The request was withdrawn."},
    ],
}
SUBJECT_MESSAGE = "My old number was +32475123456; I also used the address ana.p@example.com until 2024."
PASSED_ON = {
    "id": "0b7e4f1a-9c2d-4e8b-a5f3-6d1c9e2b7a40",
    "direction": "from_subject",
    "body": SUBJECT_MESSAGE,
    "created_at": "2026-03-05T11:26:40.118305+01:00",
}


def success(serializer, description: str, name: str, value) -> OpenApiResponse:
    """A 2xx answer with its example (a list view's example is one item, wrapped in the list or page)."""
    return OpenApiResponse(response=serializer, description=description, examples=[OpenApiExample(name, value=value)])


@extend_schema_view(
    list=extend_schema(
        summary="List your requests",
        description="Your organisation's requests, newest first; filter them by `status`, `type` or `updated_since`. "
        "Without the subject's timeline: get one request for it.",
        parameters=[serializers.RequestListFilter, UPDATED_SINCE_NEXT_HEADER, *ANSWER_HEADERS],
        responses={
            200: success(
                serializers.RequestSerializer(many=True),
                "Your organisation's requests, newest first, 50 a page; follow `next` until it is null",
                "A page of requests", REQUEST_IN_PROGRESS,
            ),
            **READ_PROBLEMS,
        },
    ),
    retrieve=extend_schema(
        summary="Get a request",
        description="One of your organisation's requests: its status, due date and the subject's timeline.",
        parameters=[REQUEST_ID, *ANSWER_HEADERS],
        responses={
            200: success(
                serializers.RequestWithTimelineSerializer, "The request with the subject's timeline",
                "A request in progress", REQUEST_WITH_TIMELINE,
            ),
            **READ_PROBLEMS,
        }
    ),
)
class RequestViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = serializers.RequestSerializer
    pagination_class = RequestCursorPagination
    lookup_field = "public_id"
    lookup_value_regex = ID_PATTERN

    def get_queryset(self):
        requests = PrivacyRequest.objects.filter(organisation=self.request.auth.organisation)
        if self.action != "list":
            return requests
        filters = serializers.RequestListFilter(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        if "status" in filters.validated_data:
            requests = requests.filter(status=filters.validated_data["status"])
        if "type" in filters.validated_data:
            requests = requests.filter(
                Exists(RequestedRight.objects.filter(request=OuterRef("pk"), right=filters.validated_data["type"]))
            )
        if "updated_since" in filters.validated_data:
            requests = requests.filter(updated_at__gte=filters.validated_data["updated_since"])
        return requests

    def list(self, request, *args, **kwargs):
        # Read before the page's query, so that every change dated before it is in the page (selectors).
        committed_before = changes_committed_before()
        response = super().list(request, *args, **kwargs)
        if committed_before is not None:
            response[UPDATED_SINCE_NEXT] = MomentField().to_representation(committed_before)
        return response

    def get_object(self):
        return found_or_404(self.get_queryset(), _("No such privacy request for this API key."), public_id=self.kwargs["public_id"])

    def get_serializer_class(self):
        action = self.action
        if action == "metadata":
            # OPTIONS ("metadata" on every route) describes what a POST to this route takes, asking with a POST
            # copy of the call: the filing's fields on the list, not those of the request the answer gives.
            action = self.action_map.get(self.request.method.lower())
        return {
            "create": serializers.RequestCreateSerializer,
            "withdraw": serializers.WithdrawSerializer,
            "messages": serializers.MessageCreateSerializer,
            "message": serializers.MessageSerializer,
            "retrieve": serializers.RequestWithTimelineSerializer,
        }.get(action, serializers.RequestSerializer)

    @extend_schema(
        summary="File a request",
        request=serializers.RequestCreateSerializer,
        parameters=[IDEMPOTENCY_HEADER, REPLAYED_HEADER, LOCATION_HEADER, *ANSWER_HEADERS],
        examples=[ERASURE_BY_OPERATOR, ACCESS_BY_OPERATOR],
        responses={
            201: success(
                serializers.RequestSerializer, "The request, filed (without the subject's timeline: get the request for it)",
                "Filed", CREATED_REQUEST,
            ),
            **WRITE_PROBLEMS,
        },
    )
    @idempotent
    def create(self, request):
        """File a request for a subject. Identities you send are recorded as asserted by your organisation."""
        incoming = serializers.RequestCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        organisation = request.auth.organisation
        privacy_request = intake.request_submit(
            **incoming.form.submit_kwargs(),
            channel=Channel.API,
            actor=Actor.organisation(organisation),
            organisation=organisation,
            identities_asserted=True,
        )
        # A path (RFC 9110 allows a relative reference): right behind any proxy, whatever scheme and host it forwards.
        location = reverse("api-requests-detail", kwargs={"public_id": privacy_request.public_id})
        return Response(
            serializers.RequestSerializer(privacy_request).data, status=status.HTTP_201_CREATED, headers={"Location": location}
        )

    @extend_schema(
        summary="Withdraw a request",
        request=None,
        parameters=[REQUEST_ID, IDEMPOTENCY_HEADER, REPLAYED_HEADER, *ANSWER_HEADERS],
        responses={
            200: success(serializers.RequestWithTimelineSerializer, "The request, withdrawn", "Withdrawn", REQUEST_WITHDRAWN),
            **WRITE_PROBLEMS,
        },
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def withdraw(self, request, public_id=None):
        """Withdraw the request at the subject's wish (409 once it is closed)."""
        privacy_request = self.get_object()
        serializers.WithdrawSerializer(data=request.data).is_valid(raise_exception=True)
        intake.request_withdraw(request=privacy_request, actor=Actor.organisation(request.auth.organisation))
        privacy_request.refresh_from_db()
        # With its timeline, as GET answers: the withdrawal is the news the portal shows.
        return Response(serializers.RequestWithTimelineSerializer(privacy_request).data)

    @extend_schema(
        summary="Pass on the subject's message",
        request=serializers.MessageCreateSerializer,
        parameters=[REQUEST_ID, IDEMPOTENCY_HEADER, REPLAYED_HEADER, MESSAGE_LOCATION_HEADER, *ANSWER_HEADERS],
        examples=[OpenApiExample("The subject's answer", value={"body": SUBJECT_MESSAGE}, request_only=True)],
        responses={
            201: success(serializers.MessageSerializer, "The message, passed on to the DPO team", "Passed on", PASSED_ON),
            **WRITE_PROBLEMS,
        },
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def messages(self, request, public_id=None):
        """Pass on the subject's message to the DPO team. A reply to a question restarts the clock."""
        privacy_request = self.get_object()
        incoming = serializers.MessageCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        message = handling.subject_reply(
            request=privacy_request, body=incoming.validated_data["body"], actor=Actor.organisation(request.auth.organisation)
        )
        # A path, as the filing's Location is; stored with the answer, so a replay gives it too.
        location = reverse(
            "api-requests-message", kwargs={"public_id": privacy_request.public_id, "message_public_id": message.public_id}
        )
        return Response(
            serializers.MessageSerializer(message).data, status=status.HTTP_201_CREATED, headers={"Location": location}
        )

    @extend_schema(
        summary="Get a message you passed on",
        description="A message your organisation passed on for this request (the address a message's 201 gives in "
        "`Location`). Only yours: the subject's own replies on their status page and the DPO team's messages are "
        "not shown to your organisation, and their ids are a 404 here.",
        parameters=[REQUEST_ID, MESSAGE_ID, *ANSWER_HEADERS],
        responses={
            200: success(serializers.MessageSerializer, "The message, as it was passed on", "Passed on", PASSED_ON),
            **READ_PROBLEMS,
        },
    )
    @action(detail=True, methods=["get"], url_path=rf"messages/(?P<message_public_id>{ID_PATTERN})", url_name="message")
    def message(self, request, public_id=None, message_public_id=None):
        """One message the organisation passed on: those it did not are unknown to it, as other organisations'
        requests are."""
        privacy_request = self.get_object()
        not_found = _("No such message for this API key.")
        replies = Message.objects.filter(request=privacy_request, direction=MessageDirection.FROM_SUBJECT)
        message = found_or_404(replies, not_found, public_id=message_public_id)
        # The reply's own audit event says who passed it on (services.handling.subject_reply): the request is this
        # organisation's, so an organisation's event on it is this one's.
        passed_on = privacy_request.events.filter(
            action="subject_replied", actor_kind=ActorKind.ORGANISATION, data__message=str(message.public_id)
        )
        if not passed_on.exists():
            raise NotFound(not_found)
        return Response(serializers.MessageSerializer(message).data)


@extend_schema(
    summary="Check an API key",
    parameters=ANSWER_HEADERS,
    responses={
        200: success(serializers.PingSerializer, "The key works", "The key's organisation", {"organisation": "Mobile Operator SA"}),
        # No input, no object, and any valid key: never a 400, a 403 or a 404.
        **problems(401, 405, 406, 429),
    }
)
# HEAD too, as every GET route of the viewsets has it: @api_view allows only the methods it lists, and an uptime
# monitor's HEAD was a 405 (RFC 9110 has every general-purpose server support HEAD wherever it supports GET).
@api_view(["GET", "HEAD"])
# The controller's own systems check their suppression key here too: a key of any scope answers.
@permission_classes([AnyOrganisationKey])
def ping(request):
    """Check an API key, of any scope: answers with the organisation it belongs to."""
    return Response({"organisation": request.auth.organisation.name})


class ExportViewSet(viewsets.GenericViewSet):
    """Packages staff released and shared with the organisation that filed the request."""

    serializer_class = serializers.ExportSerializer
    lookup_field = "public_id"
    lookup_value_regex = ID_PATTERN

    def perform_content_negotiation(self, request, force=False):
        # A download answers the ZIP itself (a FileResponse, which no renderer touches) or a problem+json error:
        # a client asking for application/zip, as the schema documents and Swagger UI sends, is not refused 406.
        return super().perform_content_negotiation(request, force=force or self.action == "download")

    def privacy_request(self) -> PrivacyRequest:
        own_requests = PrivacyRequest.objects.filter(organisation=self.request.auth.organisation)
        return found_or_404(own_requests, _("No such privacy request for this API key."), public_id=self.kwargs["request_public_id"])

    def get_queryset(self):
        # Released and shared, then perhaps expired and deleted (the hourly job): whether it can still
        # be downloaded is the download's answer (410), which stays the same once its file is gone.
        return ExportPackage.objects.filter(
            request=self.privacy_request(),
            status__in=[ExportStatus.RELEASED, ExportStatus.EXPIRED],
            shared_with_organisation=True,
        )

    def get_object(self):
        return found_or_404(self.get_queryset(), _("No such export package for this API key."), public_id=self.kwargs["public_id"])

    @extend_schema(
        summary="List a request's packages",
        parameters=[EXPORTS_REQUEST_ID, *ANSWER_HEADERS],
        responses={
            200: success(
                serializers.ExportSerializer(many=True),
                "The packages you may still download (not expired, downloads left)",
                "An access package",
                {
                    "id": "c3a91e57-2f08-4b6d-8e14-7a5b0d9f2c61",
                    "kind": "access",
                    "size": 482133,
                    "sha256": "9f2b7c1e4d8a6f3b0c5e2d9a7b4f1c8e6d3a0b9f7c2e5d8a1b4f7c0e3d6a9b2f",
                    "encrypted": True,
                    "expires_at": "2026-03-26T17:05:00.000000+01:00",
                    "downloads_left": 3,
                },
            ),
            **READ_PROBLEMS,
        }
    )
    def list(self, request, request_public_id=None):
        return Response(self.get_serializer(self.get_queryset().downloadable_by_organisation(), many=True).data)

    @extend_schema(
        summary="Download a package",
        description="The package, whole (200) or one range of its bytes (206), to resume a download cut short. A "
        "download counts against `downloads_left` when it starts at byte 0: a 200, or a 206 whose range starts there. "
        "A range that starts further on, within 24 hours of your last counted download of the package, resumes it and "
        "uses none, even when none are left, as long as the ranges resumed since that download add up to no more than "
        "the package's size; otherwise it counts as a download. A 304 (`If-None-Match` with the package's `ETag`) uses none.",
        parameters=[EXPORTS_REQUEST_ID, EXPORT_ID, *DOWNLOAD_HEADERS, *ANSWER_HEADERS],
        responses={
            (200, "application/zip"): OpenApiResponse(
                response=OpenApiTypes.BINARY,
                description="The ZIP package as an attachment named `<reference>-<kind>.zip` (DSR-2026-00042-access.zip); "
                "its SHA-256 is the list's `sha256`",
            ),
            (206, "application/zip"): OpenApiResponse(
                response=OpenApiTypes.BINARY,
                description="The one range of the package's bytes that `Range` asked for, as `Content-Range` says. "
                "Several ranges in one `Range` are answered with the whole package (200)",
            ),
            304: OpenApiResponse(
                description="Not modified: `If-None-Match` named the package's `ETag`, the package you hold is "
                "current and still downloadable. No body; no download used",
            ),
            (416, PROBLEM): OpenApiResponse(
                response=serializers.ProblemSerializer,
                description="The range starts past the package's end (`Content-Range: bytes */<size>` gives its size); "
                "no download used",
                examples=[
                    problem_example(
                        "Range outside the package", 416, "The range is outside the package, which has 482133 bytes.",
                    ),
                ],
            ),
            (410, PROBLEM): OpenApiResponse(
                response=serializers.ProblemSerializer,
                description="No longer downloadable: `detail` says what ended it first (expiry, the download limit, or the "
                "request withdrawn, forwarded or refused)",
                examples=[
                    problem_example(
                        "Used up", 410, "This package can no longer be downloaded: its download limit was reached.",
                    ),
                ],
            ),
            **problems(400, 401, 403, 404, 405, 429),  # never a 406: its ZIP or a problem, whatever Accept says
        }
    )
    # GET only, not HEAD (which DRF would answer with the GET handler): link checkers and
    # proxies send HEAD, and each would use up one of the organisation's downloads.
    @action(
        detail=True, methods=["get"], http_method_names=["get", "options"],
        permission_classes=[HasOrganisationKey, DownloadsNeedAWriteKey],
    )
    def download(self, request, request_public_id=None, public_id=None):
        """Stream the package (a key with the write scope), or one range of its bytes; each download counts against
        the organisation's limit, apart from the subject's, and is audited. A range that does not start at byte 0
        resumes a download counted within a day and counts nothing, up to one package's bytes, though it is audited
        (exports.open_for_resumption);
        nor does a 304 (downloads.package_download, shared with the subject's status page)."""
        return package_download(
            request, self.get_object(), actor=Actor.organisation(request.auth.organisation), by_organisation=True,
            refused=problem,
        )
