from django.contrib import admin
from django.urls import include, path
from django_otp.admin import OTPAdminSite

# The admin, like the dashboard, asks staff for their TOTP code.
admin.site.__class__ = OTPAdminSite
admin.site.site_header = "Privacy Portal"
admin.site.site_title = "Privacy Portal"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("staff/", include("requests_app.staff.urls")),
    path("api/", include("requests_app.api.urls")),
    # The language switcher's form posts here (Django's set_language: a cookie LocaleMiddleware reads).
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("requests_app.urls")),
]


def page_not_found(request, exception):
    """API clients get problem details; people get the HTML page."""
    if request.path.startswith("/api/"):
        from django.http import JsonResponse

        body = {"type": "about:blank", "title": "Not Found", "status": 404, "detail": "No such endpoint."}
        return JsonResponse(body, status=404, content_type="application/problem+json")
    from django.views.defaults import page_not_found as html_page_not_found

    return html_page_not_found(request, exception)


handler404 = page_not_found
