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
    path("", include("requests_app.urls")),
]
