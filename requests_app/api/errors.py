"""One error format for the whole API: RFC 9457 problem details (application/problem+json)."""

from http import HTTPStatus

from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from requests_app.lifecycle import NotAllowed, RequestError

PROBLEM = "application/problem+json"
KEPT_HEADERS = ("WWW-Authenticate", "Retry-After", "Allow")


def problem(status_code: int, detail: str, *, errors=None, headers=None) -> Response:
    body = {"type": "about:blank", "title": HTTPStatus(status_code).phrase, "status": status_code, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    return Response(body, status=status_code, headers=headers, content_type=PROBLEM)


def problem_exception_handler(exc, context):
    """Domain refusals become 409 (or 403 for a role); DRF's own errors keep their status."""
    if isinstance(exc, NotAllowed):
        return problem(status.HTTP_403_FORBIDDEN, str(exc))
    if isinstance(exc, RequestError):
        return problem(status.HTTP_409_CONFLICT, str(exc))
    response = exception_handler(exc, context)
    if response is None:
        return None  # a bug: Django's 500, logged
    headers = {name: value for name, value in response.items() if name in KEPT_HEADERS}
    if isinstance(exc, exceptions.ValidationError):
        return problem(response.status_code, "The request is not valid; see errors.", errors=response.data, headers=headers)
    detail = response.data.get("detail", "") if isinstance(response.data, dict) else str(response.data)
    return problem(response.status_code, str(detail), headers=headers)
