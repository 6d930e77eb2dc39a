from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "Privacy Portal"
admin.site.site_title = "Privacy Portal"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("requests_app.urls")),
]
