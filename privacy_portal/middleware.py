"""Project-wide request checks and response headers."""

from django.conf import settings
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers

# The dashboard (manual extracts) and the API (API_MAX_BODY_BYTES) have limits of their own.
NOT_PUBLIC = ("/staff/", "/admin/", "/api/")


def no_store(get_response):
    """Nothing this application answers may be kept by a browser or a proxy: its pages hold
    personal data (status pages, downloads, the dashboard) or a form's CSRF token. A shared
    computer's back button or cache must not show the last person's request. Static files
    (WhiteNoise, which answers before this) keep their own long-lived caching."""

    def middleware(request):
        response = get_response(request)
        if not response.has_header("Cache-Control"):
            add_never_cache_headers(response)
        return response

    return middleware


def dashboard_referrer(get_response):
    """The dashboard's pages give their address to the next request within the site (same-origin), so that a
    form's action can return to the page it was sent from; every other page gives only the site's origin
    (SECURE_REFERRER_POLICY, which SecurityMiddleware adds where no policy is set yet)."""

    def middleware(request):
        response = get_response(request)
        if request.path.startswith("/staff/"):
            response["Referrer-Policy"] = "same-origin"
        return response

    return middleware


def public_body_limit(get_response):
    """Refuse (413) a public page's request body larger than a document plus the form, before anything
    reads it: Django writes an upload to disk before any view can check its size, and anyone may post
    to these pages."""

    def middleware(request):
        if not request.path.startswith(NOT_PUBLIC):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > settings.PUBLIC_MAX_BODY_BYTES:
                context = {"limit_mb": settings.ATTACHMENT_MAX_BYTES // (1024 * 1024)}
                return render(request, "413.html", context, status=413)
        return get_response(request)

    return middleware


def csp_reporting_endpoint(get_response):
    """Name the address of the policy's report-to group (Reporting-Endpoints): Chromium sends its
    violation reports there, and reads report-uri no more once the policy has report-to. Only on an
    answer with a policy, and only while the policy asks for reports (CSP_REPORTS)."""

    def middleware(request):
        response = get_response(request)
        group = settings.CONTENT_SECURITY_POLICY["DIRECTIVES"].get("report-to")
        if group and response.has_header("Content-Security-Policy"):
            response["Reporting-Endpoints"] = f'{group}="{reverse("csp_report")}"'
        return response

    return middleware
