"""The REST API for business customers' portals (/api/v1/).

An organisation sees only its own requests: any other id is a 404.
Refusals by the state machine are 409; errors are problem details.
"""

from django.core.files.storage import default_storage
from django.db.models import Exists, OuterRef
from django.http import FileResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, pagination, status, viewsets
from rest_framework.exceptions import PermissionDenied
from rest_framework.generics import get_object_or_404
from rest_framework.decorators import action, api_view
from rest_framework.response import Response

from requests_app.api import serializers
from requests_app.api.idempotency import idempotent
from requests_app.audit import Actor
from requests_app.api.errors import problem
from requests_app.lifecycle import RequestError
from requests_app.models import APIKeyScope, Channel, ExportPackage, ExportStatus, PrivacyRequest, RequestedRight
from requests_app.services import exports, handling, intake

PROBLEM_RESPONSES = {
    (code, "application/problem+json"): OpenApiResponse(response=serializers.ProblemSerializer, description=description)
    for code, description in {
        400: "Malformed JSON or invalid fields (problem details with `errors`)",
        401: "Missing, wrong, expired or revoked API key",
        403: "The key's scope does not allow this",
        404: "No such request for this organisation",
        409: "Not allowed in the request's state, or the same Idempotency-Key is in flight",
        413: "Body too large",
        422: "Idempotency-Key reused with another body",
        429: "Rate limit; see Retry-After",
    }.items()
}
IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
    description="Retry a POST safely: the same key and body returns the first answer.",
)


# Loose on purpose: a malformed id still reaches the view, which answers a 404 in problem details.
UUID_PATTERN = "[0-9a-fA-F-]{36}"


class RequestCursorPagination(pagination.CursorPagination):
    ordering = "-created_at"
    page_size = 50


@extend_schema_view(
    list=extend_schema(
        parameters=[serializers.RequestListFilter], responses={200: serializers.RequestSerializer(many=True), **PROBLEM_RESPONSES}
    ),
    retrieve=extend_schema(responses={200: serializers.RequestSerializer, **PROBLEM_RESPONSES}),
)
class RequestViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = serializers.RequestSerializer
    pagination_class = RequestCursorPagination
    lookup_field = "public_id"
    lookup_value_regex = UUID_PATTERN

    def get_queryset(self):
        requests = PrivacyRequest.objects.filter(organisation=self.request.auth.organisation)
        if self.action != "list":
            return requests
        filters = serializers.RequestListFilter(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        if "status" in filters.validated_data:
            requests = requests.filter(status=filters.validated_data["status"])
        if "type" in filters.validated_data:
            requests = requests.filter(
                Exists(RequestedRight.objects.filter(request=OuterRef("pk"), right=filters.validated_data["type"]))
            )
        if "updated_since" in filters.validated_data:
            requests = requests.filter(updated_at__gte=filters.validated_data["updated_since"])
        return requests

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "with_timeline": self.action == "retrieve"}

    @extend_schema(
        request=serializers.RequestCreateSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: serializers.RequestSerializer, **PROBLEM_RESPONSES},
    )
    @idempotent
    def create(self, request):
        """File a request for a subject. Identities you send are recorded as asserted by your organisation."""
        incoming = serializers.RequestCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        organisation = request.auth.organisation
        privacy_request = intake.request_submit(
            **incoming.form.submit_kwargs(),
            channel=Channel.API,
            actor=Actor.organisation(organisation),
            organisation=organisation,
            identities_asserted=True,
        )
        return Response(serializers.RequestSerializer(privacy_request).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, parameters=[IDEMPOTENCY_HEADER], responses={200: serializers.RequestSerializer, **PROBLEM_RESPONSES})
    @action(detail=True, methods=["post"])
    @idempotent
    def withdraw(self, request, public_id=None):
        """Withdraw the request at the subject's wish (409 once it is closed)."""
        privacy_request = self.get_object()
        intake.request_withdraw(request=privacy_request, actor=Actor.organisation(request.auth.organisation))
        privacy_request.refresh_from_db()
        return Response(serializers.RequestSerializer(privacy_request).data)

    @extend_schema(
        request=serializers.MessageCreateSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: serializers.MessageSerializer, **PROBLEM_RESPONSES},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def messages(self, request, public_id=None):
        """Pass on the subject's message to the DPO team. A reply to a question restarts the clock."""
        privacy_request = self.get_object()
        incoming = serializers.MessageCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        message = handling.subject_reply(
            request=privacy_request, body=incoming.validated_data["body"], actor=Actor.organisation(request.auth.organisation)
        )
        return Response(serializers.MessageSerializer(message).data, status=status.HTTP_201_CREATED)


@extend_schema(responses={200: serializers.PingSerializer, **PROBLEM_RESPONSES})
@api_view(["GET"])
def ping(request):
    """Check an API key: answers with the organisation it belongs to."""
    return Response({"organisation": request.auth.organisation.name})


class ExportViewSet(viewsets.GenericViewSet):
    """Packages staff released and shared with the organisation that filed the request."""

    serializer_class = serializers.ExportSerializer
    lookup_field = "public_id"
    lookup_value_regex = UUID_PATTERN

    def privacy_request(self) -> PrivacyRequest:
        return get_object_or_404(
            PrivacyRequest, public_id=self.kwargs["request_public_id"], organisation=self.request.auth.organisation
        )

    def get_queryset(self):
        # Released and shared; whether it can still be downloaded is the download's answer (410).
        return ExportPackage.objects.filter(
            request=self.privacy_request(), status=ExportStatus.RELEASED, shared_with_organisation=True
        )

    @extend_schema(responses={200: serializers.ExportSerializer(many=True), **PROBLEM_RESPONSES})
    def list(self, request, request_public_id=None):
        return Response(self.get_serializer(self.get_queryset().downloadable(), many=True).data)

    @extend_schema(
        responses={
            (200, "application/zip"): OpenApiResponse(description="The ZIP package"),
            (410, "application/problem+json"): OpenApiResponse(
                response=serializers.ProblemSerializer, description="Expired or download limit reached"
            ),
            **PROBLEM_RESPONSES,
        }
    )
    @action(detail=True, methods=["get"])
    def download(self, request, request_public_id=None, public_id=None):
        """Stream the package (a key with the write scope); each download counts against its limit and is audited."""
        if request.auth.scope != APIKeyScope.WRITE:
            raise PermissionDenied("Downloading a subject's data needs a key with the write scope.")
        export = self.get_object()
        try:
            export = exports.count_download(
                {"public_id": export.public_id}, request=export.request, actor=Actor.organisation(request.auth.organisation)
            )
        except RequestError as error:
            return problem(status.HTTP_410_GONE, str(error))
        return FileResponse(
            default_storage.open(export.storage_name, "rb"),
            as_attachment=True,
            filename=f"{export.request.reference}-{export.kind}.zip",
            content_type="application/zip",
        )
