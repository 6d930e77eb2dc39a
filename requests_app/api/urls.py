from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_update
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework.routers import SimpleRouter

from requests_app.api.docs import redoc_bundle
from requests_app.api.suppression import SuppressionListViewSet
from requests_app.api.views import ID_PATTERN, ExportViewSet, RequestViewSet, ping

router = SimpleRouter()
router.register("requests", RequestViewSet, basename="api-requests")
router.register(rf"requests/(?P<request_public_id>{ID_PATTERN})/exports", ExportViewSet, basename="api-exports")
router.register("suppression-lists", SuppressionListViewSet, basename="api-suppression-lists")

# Swagger UI and ReDoc (served from this site by the sidecar) add <style>
# elements and data: images at run time, and ReDoc searches in a worker it
# starts from a blob. Their scripts still come from this site only: the split
# view serves Swagger UI's start-up script as a file, not inline.
docs_csp = csp_update({"style-src": [UNSAFE_INLINE], "img-src": ["data:"], "worker-src": [SELF, "blob:"]})

urlpatterns = [
    path("v1/ping/", ping, name="api-ping"),
    path("v1/", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", docs_csp(SpectacularSwaggerSplitView.as_view(url_name="api-schema")), name="api-docs"),
    path("redoc/", docs_csp(SpectacularRedocView.as_view(url_name="api-schema")), name="api-redoc"),
    path("redoc/redoc.standalone.js", redoc_bundle, name="api-redoc-bundle"),
]
