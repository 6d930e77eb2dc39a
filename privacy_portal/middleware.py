"""Project-wide request checks and response headers."""

from django.conf import settings
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers

from requests_app import roles

# Signed-in staff upload larger files here than anyone else may (body_limit).
STAFF_PATHS = ("/staff/", "/admin/")


def head_without_body(get_response):
    """A HEAD is answered with the headers a GET would have, and no body. Django leaves that to the server, and
    gunicorn sends whatever the view returned: a HEAD of a streamed download (a suppression list's CSV, which only a
    GET audits) would then hand over the whole file, unaudited. A streamed body is closed unread."""

    def middleware(request):
        response = get_response(request)
        if request.method == "HEAD":
            if response.streaming:
                unread = response.streaming_content
                response.streaming_content = []
                getattr(unread, "close", lambda: None)()
            else:
                response.content = b""
        return response

    return middleware


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


# Pages whose address carries a secret (a status page and its downloads, an email's verification link, a staff
# account's setup link) or that are for staff only: kept out of search engines (not_indexed).
NOT_INDEXED_PATHS = ("/status/", "/verify/", "/transfer/", *STAFF_PATHS)


def not_indexed(get_response):
    """Ask search engines not to index, follow or keep a copy of what a secret address or the staff's site answers.
    A secret address leaks (a browser extension, a shared link) and a crawler that follows it must not make its page
    findable; a file answered there (a download) has no <meta> tag to say so, hence the header. The request form
    stays indexed: it is how a subject finds where to ask."""

    def middleware(request):
        response = get_response(request)
        if request.path.startswith(NOT_INDEXED_PATHS):
            response["X-Robots-Tag"] = "noindex, nofollow, noarchive"
        return response

    return middleware


def body_limit(get_response):
    """Refuse (413) a request body larger than its limit, before anything reads it: Django writes an upload to
    disk before any view can check its size, and the CSRF check reads the whole body of a form before it
    refuses one. Anyone may post to the public pages and to the staff's sign-in pages (password, code,
    account setup, language, the admin's): their limit is a document plus the form. Signed-in staff upload
    larger files (a source's manual extract) and have a limit of their own. The API has its own
    (API_MAX_BODY_BYTES, api_body_limit)."""

    def middleware(request):
        if not request.path.startswith("/api/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            # Only a body over the public limit costs a look at the session, once the user is known.
            if length > settings.PUBLIC_MAX_BODY_BYTES:
                limit, file_limit = settings.PUBLIC_MAX_BODY_BYTES, settings.ATTACHMENT_MAX_BYTES
                if request.path.startswith(STAFF_PATHS) and _signed_in_staff(request):
                    limit, file_limit = settings.STAFF_MAX_BODY_BYTES, settings.STAFF_UPLOAD_MAX_BYTES
                if length > limit:
                    return render(request, "413.html", {"limit_mb": file_limit // (1024 * 1024)}, status=413)
        return get_response(request)

    return middleware


def _signed_in_staff(request) -> bool:
    """Signed in with both factors, with a staff role (the user django-otp's middleware put on the request)."""
    user = getattr(request, "user", None)
    return user is not None and user.is_verified() and roles.role_of(user) is not None


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
