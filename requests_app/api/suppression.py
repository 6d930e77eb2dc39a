"""The suppression lists over the API, for the company's own systems (marketing, CRM, event tools).

Only a key with the "suppression" scope reads them; such a key sees no
requests, and a customer portal's read or write key sees no lists.

    GET  /api/v1/suppression-lists/                        the purposes and their entry counts
    GET  /api/v1/suppression-lists/<slug>/entries/         entries, oldest first (cursor; added_since, kind)
    GET  /api/v1/suppression-lists/<slug>/entries/csv/     the same as CSV, streamed
    POST /api/v1/suppression-lists/<slug>/lookup/          which of these identifiers are suppressed

Identifiers travel in bodies, never in URLs, so they stay out of access logs.
"""

from django.db.models import Count
from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, pagination, permissions, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotAuthenticated
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response

from requests_app.api.auth import OrganisationKeyAuthentication
from requests_app.api.views import PROBLEM_RESPONSES
from requests_app.models import APIKeyScope, IdentityKind, OrganisationAPIKey, SuppressionEntry, SuppressionPurpose
from requests_app.services import suppression

MAX_LOOKUP = 1000


class HasSuppressionKey(permissions.BasePermission):
    message = "Suppression lists need a key with the suppression scope."

    def has_permission(self, request, view):
        if not isinstance(request.auth, OrganisationAPIKey):
            raise NotAuthenticated("Send an API key: Authorization: Api-Key <key>.")
        return request.auth.scope == APIKeyScope.SUPPRESSION


class PurposeSerializer(serializers.ModelSerializer):
    entries = serializers.IntegerField(read_only=True, source="entry_count")

    class Meta:
        model = SuppressionPurpose
        fields = ["slug", "name", "description", "entries"]


class EntrySerializer(serializers.ModelSerializer):
    added_at = serializers.DateTimeField(source="created_at")

    class Meta:
        model = SuppressionEntry
        fields = ["kind", "value", "right", "added_at"]


class EntryFilter(serializers.Serializer):
    added_since = serializers.DateTimeField(required=False)
    kind = serializers.ChoiceField(choices=IdentityKind.choices, required=False)


class IdentifierSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=IdentityKind.choices)
    value = serializers.CharField(max_length=254)


class LookupSerializer(serializers.Serializer):
    identifiers = IdentifierSerializer(many=True, allow_empty=False, max_length=MAX_LOOKUP)


class LookupResultSerializer(IdentifierSerializer):
    suppressed = serializers.BooleanField()


class LookupResponseSerializer(serializers.Serializer):
    results = LookupResultSerializer(many=True)


class EntryCursorPagination(pagination.CursorPagination):
    ordering = ("created_at", "id")
    page_size = 500


@extend_schema_view(list=extend_schema(responses={200: PurposeSerializer(many=True), **PROBLEM_RESPONSES}))
class SuppressionListViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    authentication_classes = [OrganisationKeyAuthentication]
    permission_classes = [HasSuppressionKey]
    serializer_class = PurposeSerializer
    lookup_field = "slug"
    pagination_class = None

    def get_queryset(self):
        return SuppressionPurpose.objects.annotate(entry_count=Count("entries"))

    def purpose(self) -> SuppressionPurpose:
        return get_object_or_404(SuppressionPurpose, slug=self.kwargs["slug"])

    @extend_schema(parameters=[EntryFilter], responses={200: EntrySerializer(many=True), **PROBLEM_RESPONSES})
    @action(detail=True, methods=["get"])
    def entries(self, request, slug=None):
        """Entries oldest first; pass `added_since` to fetch only what is new since your last sync."""
        entries = self._filtered_entries(request)
        paginator = EntryCursorPagination()
        page = paginator.paginate_queryset(entries, request, view=self)
        return paginator.get_paginated_response(EntrySerializer(page, many=True).data)

    @extend_schema(
        parameters=[EntryFilter],
        responses={(200, "text/csv"): OpenApiResponse(description="kind,value,right,added_at"), **PROBLEM_RESPONSES},
    )
    @action(detail=True, methods=["get"], url_path="entries/csv")
    def entries_csv(self, request, slug=None):
        """All entries as CSV, streamed."""
        entries = self._filtered_entries(request)
        response = StreamingHttpResponse(suppression.entries_csv(entries, suppression.Echo()), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="suppression-{slug}.csv"'
        return response

    @extend_schema(request=LookupSerializer, responses={200: LookupResponseSerializer, **PROBLEM_RESPONSES})
    @action(detail=True, methods=["post"])
    def lookup(self, request, slug=None):
        """Which of up to 1,000 identifiers must not be used for this purpose. It changes nothing, so it
        needs no Idempotency-Key, and it keeps no copy of its answer (the identifiers are personal data)."""
        purpose = self.purpose()
        incoming = LookupSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        identifiers = incoming.validated_data["identifiers"]
        suppressed = suppression.suppressed_among(purpose, [(i["kind"], i["value"]) for i in identifiers])
        results = [
            {**i, "suppressed": (i["kind"], suppression.normalise(i["kind"], i["value"])) in suppressed} for i in identifiers
        ]
        return Response({"results": results})

    def _filtered_entries(self, request):
        purpose = self.purpose()
        filters = EntryFilter(data=request.query_params)
        filters.is_valid(raise_exception=True)
        entries = purpose.entries.all()
        if "added_since" in filters.validated_data:
            entries = entries.filter(created_at__gte=filters.validated_data["added_since"])
        if "kind" in filters.validated_data:
            entries = entries.filter(kind=filters.validated_data["kind"])
        return entries
