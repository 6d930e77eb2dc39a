"""What the API answers before any view runs, in problem details (RFC 9457)."""

import json

from django.conf import settings
from django.http import HttpResponsePermanentRedirect, JsonResponse
from django.urls import is_valid_path


def api_body_limit(get_response):
    """Refuse an oversized body (413) before anything reads it."""

    def middleware(request):
        if request.path.startswith("/api/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > settings.API_MAX_BODY_BYTES:
                return _problem(413, "Content Too Large", f"The body is larger than {settings.API_MAX_BODY_BYTES} bytes.")
        return get_response(request)

    return middleware


def api_trailing_slash(get_response):
    """Send an address missing its trailing slash to the right one with a 308.

    Django's APPEND_SLASH answers a 301 (with DEBUG on, a POST fails), and a
    client that follows a 301 turns its POST into a GET. A 308 keeps the
    method and the body.
    """

    def middleware(request):
        path = request.path_info
        if path.startswith("/api/") and not path.endswith("/") and not is_valid_path(path) and is_valid_path(f"{path}/"):
            location = request.get_full_path(force_append_slash=True)
            body = _problem_body(308, "Permanent Redirect", f"This endpoint's address ends with a slash: {location}")
            return HttpResponsePermanentRedirect(
                location, preserve_request=True, content=json.dumps(body), content_type="application/problem+json"
            )
        return get_response(request)

    return middleware


def _problem(status: int, title: str, detail: str) -> JsonResponse:
    return JsonResponse(_problem_body(status, title, detail), status=status, content_type="application/problem+json")


def _problem_body(status: int, title: str, detail: str) -> dict:
    return {"type": "about:blank", "title": title, "status": status, "detail": detail}
