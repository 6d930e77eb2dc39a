from django.contrib import admin
from django.core.exceptions import DisallowedHost
from django.http import HttpResponseForbidden
from django.template.loader import render_to_string
from django.urls import include, path
from django.utils.translation import gettext as _
from django.views import defaults
from django.views.generic import RedirectView
from django_otp.admin import OTPAdminSite

from privacy_portal import csp_reports
from requests_app.api.errors import HOST_NOT_SERVED, NO_ENDPOINT, NOT_UNDERSTOOD, problem_response

# The admin, like the dashboard, asks staff for their TOTP code.
admin.site.__class__ = OTPAdminSite
admin.site.site_header = "Privacy Portal"
admin.site.site_title = "Privacy Portal"

urlpatterns = [
    # One sign-in for staff, the dashboard's: it records the sign-in in the audit trail and
    # sends an account without its authenticator to be invited. Then on to the admin.
    path("admin/login/", RedirectView.as_view(pattern_name="staff:login", query_string=True)),
    # Likewise the password change: the dashboard's records it in the audit trail.
    path("admin/password_change/", RedirectView.as_view(pattern_name="staff:password_change")),
    path("admin/", admin.site.urls),
    path("staff/", include("requests_app.staff.urls")),
    path("api/", include("requests_app.api.urls")),
    # The language switcher's form posts here (Django's set_language: a cookie LocaleMiddleware reads).
    path("i18n/", include("django.conf.urls.i18n")),
    # Where browsers report what the Content-Security-Policy blocked (CSP_REPORTS).
    path("csp-report/", csp_reports.report, name="csp_report"),
    path("", include("requests_app.urls")),
]


def bad_request(request, exception):
    """Django's 400 for a request it refuses before any view, most often a Host header not in ALLOWED_HOSTS
    (DisallowedHost): API clients get problem details, everyone else Django's page."""
    if request.path.startswith("/api/"):
        if isinstance(exception, DisallowedHost):
            # Not the host named in it, nor the setting: neither is the client's to know.
            return problem_response(400, HOST_NOT_SERVED)
        return problem_response(400, NOT_UNDERSTOOD)
    return defaults.bad_request(request, exception)


def page_not_found(request, exception):
    """API clients get problem details; staff the dashboard's page; data subjects the public one."""
    if request.path.startswith("/api/"):
        return problem_response(404, NO_ENDPOINT)
    if request.path.startswith(("/staff/", "/admin/")):
        return defaults.page_not_found(request, exception, template_name="staff/404.html")
    return defaults.page_not_found(request, exception)


def csrf_failure(request, reason=""):
    """A form refused by the CSRF check ("This form has expired"), most often one from a page opened before
    signing in again: staff are led back to the dashboard, data subjects to the request form. Rendered
    without the request's context processors, which may need the database."""
    for_staff = request.path.startswith(("/staff/", "/admin/"))
    return HttpResponseForbidden(render_to_string("403_csrf.html", {"for_staff": for_staff}))


def server_error(request):
    """A bug: API clients still get problem details (the error is logged, never shown)."""
    if request.path.startswith("/api/"):
        return problem_response(500, _("The server failed to answer; the error is logged. Try again later."))
    return defaults.server_error(request)


handler400 = bad_request
handler404 = page_not_found
handler500 = server_error
