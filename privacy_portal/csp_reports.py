"""Content-Security-Policy violation reports: what a browser posts when the policy blocks something on a page.

A report names the page, the blocked address and sometimes the first characters of the blocked code, and
any of these may carry personal data or a secret: the path of a subject's status page is the key to
their request. Only what tells a developer which rule broke on which page is logged: the directive, the
blocked address's scheme and host (or "inline", "eval"), and the page's URL pattern name. Nothing is stored.
"""

import json
import logging
import re
from urllib.parse import urlsplit

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import Resolver404, resolve
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from django_ratelimit.core import is_ratelimited

logger = logging.getLogger(__name__)

# report-uri (Firefox, Safari) posts one report in the first; report-to (Chromium) a list in the second.
CSP_REPORT = "application/csp-report"
REPORTS_JSON = "application/reports+json"

# One report is under 2 KB; Chromium may send a few at once. Anything larger is not a browser's report.
REPORT_MAX_BYTES = 8 * 1024

DIRECTIVE = re.compile(r"[a-z-]{1,40}")
# What browsers name a blocked source by when it is not fetched from an address.
BLOCKED_KEYWORDS = {"inline", "eval", "wasm-eval", "data", "blob", "trusted-types-policy", "trusted-types-sink"}
SCHEME = re.compile(r"[a-z][a-z0-9+.-]{0,30}")
HOST = re.compile(r"[a-z0-9._:-]{1,253}")
UNKNOWN = "unknown"


def report_rate(group, request):
    return settings.CSP_REPORT_RATE_LIMIT


def directive(value) -> str:
    """The directive that blocked, "script-src-elem". Older browsers send only violated-directive,
    with its sources after the name ("script-src 'self'")."""
    name = value.split(maxsplit=1)[0] if isinstance(value, str) and value.strip() else ""
    return name if DIRECTIVE.fullmatch(name) else UNKNOWN


def blocked_source(value) -> str:
    """The blocked address by its scheme and host, "https://cdn.example", or a browser's keyword,
    "inline" or "eval": a path or query may name a person or hold a token."""
    if not isinstance(value, str):
        return UNKNOWN
    if value in BLOCKED_KEYWORDS:
        return value
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""  # lowercased, without the user name, password and port
    except ValueError:
        return UNKNOWN
    if not SCHEME.fullmatch(parts.scheme):
        return UNKNOWN
    if not host:
        return f"{parts.scheme}:"  # "data:", "blob:"
    return f"{parts.scheme}://{host}" if HOST.fullmatch(host) else UNKNOWN


def page(document_url) -> str:
    """The page's URL pattern name ("status", "staff:request"), never its path: the paths of a subject's
    status page and downloads, of a verification link and of a staff setup link carry their secret."""
    if not isinstance(document_url, str):
        return UNKNOWN
    try:
        return resolve(urlsplit(document_url).path).view_name
    except (ValueError, Resolver404):
        return UNKNOWN


def violations(content_type: str, body: bytes) -> list[tuple[str, str, str]]:
    """(directive, blocked source, page) for each violation in a report body; ValueError when the body
    is not a report. A Reporting API list may also hold other kinds of report: those are left out."""
    try:
        data = json.loads(body)
    except RecursionError:  # "[[[[...": deeper than the parser goes
        raise ValueError("nested too deep") from None
    if content_type == CSP_REPORT:
        report = data.get("csp-report") if isinstance(data, dict) else None
        if not isinstance(report, dict):
            raise ValueError("no csp-report object")
        return [
            (
                directive(report.get("effective-directive") or report.get("violated-directive")),
                blocked_source(report.get("blocked-uri")),
                page(report.get("document-uri")),
            )
        ]
    if not isinstance(data, list) or not all(isinstance(entry, dict) for entry in data):
        raise ValueError("not a list of reports")
    return [
        (
            directive(entry["body"].get("effectiveDirective")),
            blocked_source(entry["body"].get("blockedURL")),
            page(entry["body"].get("documentURL")),
        )
        for entry in data
        if entry.get("type") == "csp-violation" and isinstance(entry.get("body"), dict)
    ]


@csrf_exempt  # browsers post reports without the form's token, and nothing here acts for anyone
@require_POST
def report(request: HttpRequest) -> HttpResponse:
    """Log each violation in a browser's report: 204 once read, 400 for a body that is not a report,
    413 for one too large to read, 415 for another type of body, 429 past the address's rate limit."""
    if not settings.CSP_REPORTS:
        raise Http404
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > REPORT_MAX_BYTES:
        return HttpResponse(status=413)
    if is_ratelimited(request, group="csp_report", key="ip", rate=report_rate, increment=True):
        return HttpResponse(status=429)
    content_type = request.content_type.lower()
    if content_type not in (CSP_REPORT, REPORTS_JSON):
        return HttpResponse(status=415)
    try:
        found = violations(content_type, request.body)
    except ValueError:  # json's errors, a body that is not UTF-8 included, are ValueErrors
        return HttpResponse(status=400)
    for directive_name, blocked, page_name in found:
        logger.warning("CSP violation: %s blocked %s on page %s", directive_name, blocked, page_name)
    return HttpResponse(status=204)
