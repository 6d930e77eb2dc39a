"""The suppression lists over the API, for the company's own systems (marketing, CRM, event tools).

Only a key with the "suppression" scope reads them; such a key sees no
requests, and a customer portal's read or write key sees no lists.

    GET  /api/v1/suppression-lists/                        the purposes and their entry counts
    GET  /api/v1/suppression-lists/<slug>/entries/         entries, oldest first (cursor; added_since, kind)
    GET  /api/v1/suppression-lists/<slug>/entries/csv/     the same as CSV, streamed (values=exact: as stored)
    POST /api/v1/suppression-lists/<slug>/lookup/          which of these identifiers are suppressed

Identifiers travel in bodies, never in URLs, so they stay out of access logs.
"""

from django.db import transaction
from django.db.models import Count
from django.http import StreamingHttpResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotAuthenticated, PermissionDenied
from rest_framework.response import Response

from requests_app.api.auth import OrganisationKeyAuthentication
from requests_app.api.fields import MomentField
from requests_app.audit import Actor, record_event
from requests_app.api.errors import found_or_404
from requests_app.api.views import ANSWER_HEADERS, READ_PROBLEMS, DocumentedCursorPagination, problems, success
from requests_app.api.serializers import ListFilters, RefusesUnknownFields, SinceField
from requests_app.models import APIKeyScope, IdentityKind, OrganisationAPIKey, SuppressionEntry, SuppressionPurpose
from requests_app.services import suppression

MAX_LOOKUP = 1000


class HasSuppressionKey(permissions.BasePermission):
    """A suppression-scope key of the controller's own systems (Organisation.own_systems): the lists
    name everyone who objected, which no business customer may read."""

    message = gettext_lazy("Suppression lists need a key with the suppression scope.")

    def has_permission(self, request, view):
        if not isinstance(request.auth, OrganisationAPIKey):
            raise NotAuthenticated(_("Send an API key: Authorization: Api-Key <key>."))
        if request.auth.scope == APIKeyScope.SUPPRESSION and not request.auth.organisation.own_systems:
            raise PermissionDenied(_("Only the controller's own systems may read the suppression lists."))
        return request.auth.scope == APIKeyScope.SUPPRESSION


class PurposeSerializer(serializers.ModelSerializer):
    entries = serializers.IntegerField(read_only=True, source="entry_count")
    identity_kinds = serializers.ListField(
        child=serializers.ChoiceField(choices=IdentityKind.choices),
        help_text="The kinds of identifier the list holds, those the purpose's systems look people up by; empty: every kind.",
    )

    class Meta:
        model = SuppressionPurpose
        fields = ["slug", "name", "description", "identity_kinds", "entries"]


class EntrySerializer(serializers.ModelSerializer):
    added_at = MomentField(source="created_at")

    class Meta:
        model = SuppressionEntry
        fields = ["kind", "value", "right", "added_at"]


class EntryFilter(ListFilters):
    added_since = SinceField(
        required=False,
        help_text="Only entries added at or after this moment (ISO 8601 with its offset: `Z` or `%2B01:00`, a `+` "
        "percent-encoded in the query string); a time without an offset, or a bare date, is a 400.",
    )
    kind = serializers.ChoiceField(choices=IdentityKind.choices, required=False)


class CSVEntryFilter(EntryFilter):
    # Guarded by default: whoever opens the download in a spreadsheet is protected without having read this,
    # while a system that imports it is written by someone who has.
    values = serializers.ChoiceField(
        choices=[("spreadsheet", "spreadsheet"), ("exact", "exact")],
        default="spreadsheet",
        help_text="`spreadsheet`: a value a spreadsheet would run as a formula (one starting with =, +, -, @, a tab or "
        "a carriage return, other than a signed whole number such as a phone number) gets a leading `'`, as in the "
        "dashboard's download; a spreadsheet shows the value without it. `exact`: every value as stored, for a "
        "system that imports the file and matches on it (the JSON entries are always exact).",
    )


class IdentifierSerializer(RefusesUnknownFields, serializers.Serializer):
    """An identifier of a person: its kind and its value."""

    kind = serializers.ChoiceField(choices=IdentityKind.choices)
    value = serializers.CharField(max_length=254)


class LookupSerializer(RefusesUnknownFields, serializers.Serializer):
    """The identifiers to look up on the list."""

    identifiers = IdentifierSerializer(many=True, allow_empty=False, max_length=MAX_LOOKUP)


class LookupResultSerializer(IdentifierSerializer):
    """An identifier looked up, and whether the list holds it."""

    suppressed = serializers.BooleanField()


class LookupResponseSerializer(serializers.Serializer):
    results = LookupResultSerializer(many=True)


class EntryCursorPagination(DocumentedCursorPagination):
    ordering = ("created_at", "id")
    page_size = 500
    example_next = (
        "https://privacy.example.com/api/v1/suppression-lists/marketing-email/entries/"
        "?cursor=cD0yMDI2LTAzLTAyKzA4JTNBMTQlM0EwNy40OTgyMTElMkIwMCUzQTAw"
    )


# Fake identifiers; tests/api/test_schema_examples.py sends LOOKUP_EXAMPLE with the first one on the list
# and expects LOOKUP_RESULTS back.
LOOKUP_EXAMPLE = {
    "identifiers": [
        {"kind": "email", "value": "Ana.Peeters@example.com"},
        {"kind": "phone", "value": "+32 486 65 43 21"},
    ]
}
LOOKUP_RESULTS = {
    "results": [
        {"kind": "email", "value": "Ana.Peeters@example.com", "suppressed": True},
        {"kind": "phone", "value": "+32 486 65 43 21", "suppressed": False},
    ]
}
ENTRIES_CSV = (
    "kind,value,right,added_at\r\n"
    "email,ana.peeters@example.com,objection,2026-03-02T09:14:07.498211+01:00\r\n"
    "phone,+32475123456,objection,2026-03-02T09:14:07.000000+01:00\r\n"
)


@extend_schema_view(
    list=extend_schema(
        summary="List the suppression lists",
        description="Every purpose that has a suppression list: its slug (the list's address), the kinds of "
        "identifier it holds and how many entries it has.",
        parameters=ANSWER_HEADERS,
        responses={
            200: success(
                PurposeSerializer(many=True),
                "Every purpose with a suppression list, and how many entries it has",
                "Promotional emails",
                {
                    "slug": "marketing-email",
                    "name": "Promotional emails",
                    "description": "Newsletters and offers sent by email.",
                    "identity_kinds": ["email"],
                    "entries": 1284,
                },
            ),
            **READ_PROBLEMS,
        }
    )
)
class SuppressionListViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    authentication_classes = [OrganisationKeyAuthentication]
    permission_classes = [HasSuppressionKey]
    serializer_class = PurposeSerializer
    lookup_field = "slug"
    pagination_class = None

    def perform_content_negotiation(self, request, force=False):
        # The CSV download answers its CSV (a StreamingHttpResponse, which no renderer touches) or a problem+json
        # error: a client asking for text/csv, as the schema documents, is not refused 406.
        return super().perform_content_negotiation(request, force=force or self.action == "entries_csv")

    def get_queryset(self):
        return SuppressionPurpose.objects.annotate(entry_count=Count("entries"))

    def purpose(self) -> SuppressionPurpose:
        return found_or_404(SuppressionPurpose.objects.all(), _("No such suppression list for this API key."), slug=self.kwargs["slug"])

    @extend_schema(
        summary="Page through a list's entries",
        parameters=[EntryFilter, OpenApiParameter("cursor", str, description="From the previous page's `next` link."), *ANSWER_HEADERS],
        responses={
            200: success(
                EntrySerializer(many=True),
                "A page of entries, oldest first, 500 a page; follow `next` until it is null",
                "A page of entries",
                {"kind": "email", "value": "ana.peeters@example.com", "right": "objection", "added_at": "2026-03-02T09:14:07.498211+01:00"},
            ),
            **READ_PROBLEMS,
        },
    )
    # Paginated here only (the list of purposes is not), and so documented as a page.
    @action(detail=True, methods=["get"], pagination_class=EntryCursorPagination)
    def entries(self, request, slug=None):
        """Entries oldest first; pass `added_since` to fetch only what is new since your last sync."""
        entries, _filters = self._filtered_entries(request, EntryFilter)
        page = self.paginate_queryset(entries)
        return self.get_paginated_response(EntrySerializer(page, many=True).data)

    @extend_schema(
        summary="Download a list's entries as CSV",
        parameters=[CSVEntryFilter, *ANSWER_HEADERS],
        responses={
            (200, "text/csv"): OpenApiResponse(
                response=OpenApiTypes.STR,
                description="One row per entry, oldest first, under the header `kind,value,right,added_at` "
                "(added_at as in the JSON list: ISO 8601 with its offset and six digits of microseconds); sent as the attachment `suppression-<slug>.csv`. A value a spreadsheet "
                "would run as a formula gets a leading `'` unless `values=exact` is asked",
                examples=[OpenApiExample("Two entries", value=ENTRIES_CSV)],
            ),
            **problems(400, 401, 403, 404, 405, 429),  # never a 406: its CSV or a problem, whatever Accept says
        },
    )
    @action(detail=True, methods=["get"], url_path="entries/csv")
    def entries_csv(self, request, slug=None):
        """All entries as CSV, streamed. Audited, as the dashboard's download is: the whole list leaves the product."""
        entries, filters = self._filtered_entries(request, CSVEntryFilter)
        # A HEAD (a link checker, a proxy) gets the headers and no list: nothing left the product to audit.
        if request.method == "GET":
            with transaction.atomic():
                record_event(
                    None, "suppression_list_downloaded", actor=Actor.organisation(request.auth.organisation), data={"purpose": slug}
                )
        rows = suppression.entries_csv(entries, suppression.Echo(), for_spreadsheet=filters["values"] == "spreadsheet")
        response = StreamingHttpResponse(rows, content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="suppression-{slug}.csv"'
        return response

    @extend_schema(
        summary="Look up identifiers",
        request=LookupSerializer,
        parameters=ANSWER_HEADERS,
        examples=[OpenApiExample("An email and a phone number", value=LOOKUP_EXAMPLE, request_only=True)],
        responses={
            200: success(LookupResponseSerializer, "Each identifier as sent, and whether it is suppressed", "One suppressed", LOOKUP_RESULTS),
            **problems(400, 401, 403, 404, 405, 406, 411, 413, 415, 429),
        },
    )
    @action(detail=True, methods=["post"])
    def lookup(self, request, slug=None):
        """Which of up to 1,000 identifiers must not be used for this purpose. It changes nothing, so it
        needs no Idempotency-Key, and it keeps no copy of its answer (the identifiers are personal data)."""
        purpose = self.purpose()
        incoming = LookupSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        identifiers = incoming.validated_data["identifiers"]
        listed = suppression.suppressed(purpose, [(i["kind"], i["value"]) for i in identifiers])
        results = [{**identifier, "suppressed": on_list} for identifier, on_list in zip(identifiers, listed)]
        return Response({"results": results})

    def _filtered_entries(self, request, filter_class: type[EntryFilter]):
        """The list's entries the query's filters ask for, and the filters read (their defaults filled in)."""
        purpose = self.purpose()
        filters = filter_class(data=request.query_params)
        filters.is_valid(raise_exception=True)
        entries = purpose.entries.all()
        if "added_since" in filters.validated_data:
            entries = entries.filter(created_at__gte=filters.validated_data["added_since"])
        if "kind" in filters.validated_data:
            entries = entries.filter(kind=filters.validated_data["kind"])
        return entries, filters.validated_data
