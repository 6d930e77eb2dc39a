"""What the API answers before any view runs, in problem details (RFC 9457)."""

import json

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpResponsePermanentRedirect
from django.urls import is_valid_path
from django.utils.translation import gettext as _

from requests_app.api.auth import BUDGET_ATTRIBUTE
from requests_app.api.errors import (
    HOST_NOT_SERVED, JSON_AS_DRF_WRITES_IT, NO_ENDPOINT, NOT_UNDERSTOOD, PROBLEM, problem_body, problem_response,
)


def api_rate_limit_headers(get_response):
    """The RateLimit headers on every answer to a call the API's throttles counted: the key's budget
    (API_RATE_LIMIT) on a call with a valid key, the address's (API_UNAUTHENTICATED_RATE_LIMIT) on a 401 and its 429.

    The throttle leaves the budget on the request as it counts the call (auth.FixedWindowThrottle): no other trip
    to Redis. Added on the way out, so that an answer replayed for an Idempotency-Key tells the budget of now, and
    the view's exceptions, the 429 among them, carry it too. Answers given before the throttles (a 406, a 403 for
    the key's scope, this module's 411 and 413, an unknown endpoint) count against no budget and claim none."""

    def middleware(request):
        response = get_response(request)
        budget = getattr(request, BUDGET_ATTRIBUTE, None)
        if budget is not None:
            for name, value in budget.headers().items():
                response[name] = value
        return response

    return middleware


def api_body_limit(get_response):
    """Refuse an oversized body (413) before anything reads it, and a POST's body sent without a length (411).

    Django reads a body by its Content-Length. One sent in chunks (Transfer-Encoding: chunked, as some HTTP
    libraries send a body they stream) has none, and was read as empty: a filing answered "This field is required"
    for every field it had sent, and a withdrawal went through with a body it should have refused."""

    def middleware(request):
        if request.path.startswith("/api/"):
            if request.method == "POST" and "HTTP_TRANSFER_ENCODING" in request.META and not request.META.get("CONTENT_LENGTH"):
                detail = _("Send the body with a Content-Length header: this API does not read a body sent in chunks.")
                return problem_response(411, detail)
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > settings.API_MAX_BODY_BYTES:
                detail = _("The body is larger than %(limit)s bytes.") % {"limit": settings.API_MAX_BODY_BYTES}
                return problem_response(413, detail)
        return get_response(request)

    return middleware


def api_debug_pages(get_response):
    """With DEBUG on, what Django refuses before any view (an address with no endpoint, a Host header not in
    ALLOWED_HOSTS) is answered in problem details under /api/, as without DEBUG.

    Without DEBUG, Django's handlers (privacy_portal.urls.page_not_found and bad_request) answer so. With DEBUG on,
    Django answers its own HTML pages instead, which a portal trying its integration on `make run` cannot read.
    """

    def middleware(request):
        response = get_response(request)
        if not (request.path.startswith("/api/") and response.get("Content-Type", "").startswith("text/html")):
            return response
        if response.status_code == 404:
            return problem_response(404, NO_ENDPOINT)
        if response.status_code == 400:
            try:
                request.get_host()
            except DisallowedHost:
                return problem_response(400, HOST_NOT_SERVED)
            return problem_response(400, NOT_UNDERSTOOD)
        return response

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
            body = problem_body(308, _("This endpoint's address ends with a slash: %(location)s") % {"location": location})
            return HttpResponsePermanentRedirect(
                location, preserve_request=True, content=json.dumps(body, **JSON_AS_DRF_WRITES_IT), content_type=PROBLEM
            )
        return get_response(request)

    return middleware

