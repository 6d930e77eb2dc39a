"""One error format for the whole API: RFC 9457 problem details (application/problem+json)."""

import re
from http import HTTPStatus

from django.apps import apps
from django.http import Http404, JsonResponse

from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from requests_app.lifecycle import NotAllowed, RequestError

PROBLEM = "application/problem+json"
KEPT_HEADERS = ("WWW-Authenticate", "Retry-After", "Allow")


def problem_body(status_code: int, detail: str, *, title: str = "", errors=None) -> dict:
    """The one problem details body of the API, its title the status's phrase unless given."""
    body = {"type": "about:blank", "title": title or HTTPStatus(status_code).phrase, "status": status_code, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    return body


def problem(status_code: int, detail: str, *, errors=None, headers=None) -> Response:
    return Response(problem_body(status_code, detail, errors=errors), status=status_code, headers=headers, content_type=PROBLEM)


def problem_response(status_code: int, detail: str, *, title: str = "") -> JsonResponse:
    """The same, answered outside DRF (middleware, Django's error handlers)."""
    return JsonResponse(problem_body(status_code, detail, title=title), status=status_code, content_type=PROBLEM)


def not_found_detail(exc: Http404) -> str:
    """Django's "No PrivacyRequest matches the given query." in a portal's words: the model's name, not its class."""
    found = re.fullmatch(r"No (\w+) matches the given query\.", str(exc))
    try:
        name = apps.get_model("requests_app", found[1])._meta.verbose_name if found else ""
    except LookupError:
        name = ""
    return f"No such {name} for this API key." if name else "Not found."


def problem_exception_handler(exc, context):
    """Domain refusals become 409 (or 403 for a role); DRF's own errors keep their status."""
    if isinstance(exc, NotAllowed):
        return problem(status.HTTP_403_FORBIDDEN, str(exc))
    if isinstance(exc, RequestError):
        return problem(status.HTTP_409_CONFLICT, str(exc))
    if isinstance(exc, Http404):
        return problem(status.HTTP_404_NOT_FOUND, not_found_detail(exc))
    response = exception_handler(exc, context)
    if response is None:
        return None  # a bug: Django's 500, logged
    headers = {name: value for name, value in response.items() if name in KEPT_HEADERS}
    if isinstance(exc, exceptions.ValidationError):
        return problem(response.status_code, "The request is not valid; see errors.", errors=response.data, headers=headers)
    detail = response.data.get("detail", "") if isinstance(response.data, dict) else str(response.data)
    return problem(response.status_code, str(detail), headers=headers)
