"""One error format for the whole API: RFC 9457 problem details (application/problem+json)."""

from http import HTTPStatus

from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from requests_app.api.auth import unauthenticated_budget
from requests_app.lifecycle import NotAllowed, RequestError

PROBLEM = "application/problem+json"
# What the API answers where Django refuses a call before any view (privacy_portal.urls, and api.middleware
# with DEBUG on, when Django answers its own pages instead).
NO_ENDPOINT = gettext_lazy("No such endpoint.")
HOST_NOT_SERVED = gettext_lazy("This server does not answer for the host named in the Host header.")
NOT_UNDERSTOOD = gettext_lazy("The request could not be understood.")
KEPT_HEADERS = ("WWW-Authenticate", "Retry-After", "Allow")
# RFC 9110's names for the statuses whose phrase Python 3.11's HTTPStatus still takes from RFC 7231.
RFC_9110_TITLES = {413: "Content Too Large", 416: "Range Not Satisfiable", 422: "Unprocessable Content"}
# RFC 9457 problem types of their own, for the two 409s a client handles differently: a state conflict is final (the
# request changed: read it again), a key in flight is not (retry after Retry-After, and get the first call's answer).
# URNs rather than addresses on SITE_URL: the same string on every deployment (a portal tests one against staging and
# production alike), and no page a client might be expected to fetch. Every other problem is about:blank, its status
# saying all there is. Each type's title is its own, in English, the same for every occurrence (RFC 9457).
ABOUT_BLANK = "about:blank"
STATE_CONFLICT = "urn:privacy-portal:problem:state-conflict"
IDEMPOTENCY_KEY_IN_FLIGHT = "urn:privacy-portal:problem:idempotency-key-in-flight"
PROBLEM_TYPE_TITLES = {
    STATE_CONFLICT: "Not allowed in the request's state",
    IDEMPOTENCY_KEY_IN_FLIGHT: "Idempotency-Key in flight",
}
# As DRF's JSONRenderer writes every other answer: compact, in UTF-8 rather than \u escapes.
JSON_AS_DRF_WRITES_IT = {"ensure_ascii": False, "separators": (",", ":")}


def problem_body(status_code: int, detail: str, *, problem_type: str = ABOUT_BLANK, title: str = "", errors=None) -> dict:
    """The one problem details body of the API, its title its type's, or the status's phrase, unless given."""
    title = title or PROBLEM_TYPE_TITLES.get(problem_type) or RFC_9110_TITLES.get(status_code) or HTTPStatus(status_code).phrase
    body = {"type": problem_type, "title": title, "status": status_code, "detail": detail}
    if errors is not None:
        body["errors"] = _without_nul(errors)
    return body


def _without_nul(errors):
    """The messages with any NUL character shown as U+FFFD. A message may quote what was sent ('"<NUL>" is
    not a valid choice.'), and PostgreSQL's jsonb cannot hold U+0000: the answer stored for an
    Idempotency-Key would fail to save, and the call with it (a 500)."""
    if isinstance(errors, str):
        return errors.replace("\x00", "\ufffd")
    if isinstance(errors, dict):
        return {_without_nul(key): _without_nul(value) for key, value in errors.items()}
    if isinstance(errors, list):
        return [_without_nul(item) for item in errors]
    return errors


def problem(status_code: int, detail: str, *, problem_type: str = ABOUT_BLANK, errors=None, headers=None) -> Response:
    return Response(
        problem_body(status_code, detail, problem_type=problem_type, errors=errors),
        status=status_code, headers=headers, content_type=PROBLEM,
    )


def problem_response(status_code: int, detail: str) -> JsonResponse:
    """The same, answered outside DRF (middleware, Django's error handlers)."""
    return JsonResponse(
        problem_body(status_code, detail), status=status_code, content_type=PROBLEM, json_dumps_params=JSON_AS_DRF_WRITES_IT
    )


def found_or_404(queryset, not_found: str, **lookup):
    """The object of `queryset` (already narrowed to the caller's organisation) matching `lookup`,
    or a 404 saying `not_found` (what this key has no such one of): another organisation's id is unknown too, and
    so is an id that is not even well formed (not a UUID)."""
    try:
        found = queryset.filter(**lookup).first()
    except (TypeError, ValueError, ValidationError):
        found = None
    if found is None:
        raise exceptions.NotFound(not_found)
    return found


def problem_exception_handler(exc, context):
    """Domain refusals become 409 (or 403 for a role); DRF's own errors keep their status.

    Every 401 passes here, whichever step refused the key (authentication for a wrong, expired or
    revoked one, the permission for none): it is counted against the caller's address, and once that
    address has used up its budget (API_UNAUTHENTICATED_RATE_LIMIT) the answer is a 429 instead."""
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)) and exc.status_code == 401:
        exc = unauthenticated_budget(exc, context["request"], context["view"])
    if isinstance(exc, NotAllowed):
        return problem(status.HTTP_403_FORBIDDEN, str(exc))
    if isinstance(exc, RequestError):
        return problem(status.HTTP_409_CONFLICT, str(exc), problem_type=STATE_CONFLICT)
    response = exception_handler(exc, context)
    if response is None:
        return None  # a bug: Django's 500, logged
    headers = {name: value for name, value in response.items() if name in KEPT_HEADERS}
    if isinstance(exc, exceptions.ValidationError):
        return problem(response.status_code, _("The request is not valid; see errors."), errors=response.data, headers=headers)
    detail = response.data.get("detail", "") if isinstance(response.data, dict) else str(response.data)
    return problem(response.status_code, str(detail), headers=headers)
