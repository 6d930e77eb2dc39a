from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from requests_app.api.suppression import SuppressionListViewSet
from requests_app.api.views import UUID_PATTERN, ExportViewSet, RequestViewSet, ping

router = SimpleRouter()
router.register("requests", RequestViewSet, basename="api-requests")
router.register(rf"requests/(?P<request_public_id>{UUID_PATTERN})/exports", ExportViewSet, basename="api-exports")
router.register("suppression-lists", SuppressionListViewSet, basename="api-suppression-lists")

urlpatterns = [
    path("v1/ping/", ping, name="api-ping"),
    path("v1/", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
]
