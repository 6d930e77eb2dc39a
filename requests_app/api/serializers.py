"""What the API reads and writes. Creation runs the web form's own validation."""

import datetime
import re
from collections.abc import Mapping

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import SkipField, empty
from rest_framework.settings import api_settings

from requests_app import selectors
from requests_app.api.fields import MomentField
from requests_app.forms import (
    DETAIL_WITHOUT_ITS_RIGHT,
    OWN_ADDRESS,
    POSTAL_ADDRESS_MAX_LINES,
    RequestForm,
    WithPostalAddress,
)
from requests_app.models import TEXT_MAX_CHARS, PrivacyRequest, Regime, Relationship, RequestType, RestrictionGround, Status


class StringField(serializers.CharField):
    """A JSON string only. DRF's CharField turns a number into one ("subject_name": 123 becomes
    "123"): a portal that sends a number where text belongs has a bug it should hear about."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class JSONBooleanField(serializers.BooleanField):
    """A JSON true or false only. DRF's BooleanField also takes "yes", "on", 1 and "1": a portal that sends them has
    a bug it should hear about, as one sending a number where text belongs (StringField)."""

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class MultilineStringField(StringField):
    """A text whose line breaks count once against its max_length, as the web form's (forms.MultilineField) and
    the status page's do: a CRLF is kept as LF."""

    def to_internal_value(self, data):
        return super().to_internal_value(data).replace("\r\n", "\n")


# What "2026-03-01T10:00:00+01:00" becomes in a query string that was not percent-encoded: a "+" there reads as
# a space, and DRF's message asked for the "+HH:MM" the client believes it sent.
OFFSET_SIGN_READ_AS_SPACE = re.compile(r"\d \d{2}(:?\d{2})?$")


class SinceField(serializers.DateTimeField):
    """A moment to filter from, with its offset. One without (2026-12-01T19:23:52, or a bare date) was read as
    Brussels time: a portal in another zone, or sending UTC without its "Z", missed changes or saw them twice.
    One so near year 1 or 9999 that it has no UTC equivalent is a 400: a database that compares in UTC (SQLite)
    would otherwise fail on it with a 500."""

    default_error_messages = {
        "no_offset": gettext_lazy(
            "Give the time with its offset, e.g. 2026-12-01T19:23:52Z or +01:00: without one it could be read in the "
            "wrong time zone."
        ),
        "out_of_range": gettext_lazy("Give a date and time between the years 1 and 9999, in UTC."),
        "offset_sign_as_space": gettext_lazy(
            'The time zone offset lost its "+": in a query string a "+" reads as a space. Send it as "%2B" '
            '(2026-03-01T10:00:00%2B01:00), or give the time in UTC with "Z".'
        ),
    }

    def to_internal_value(self, value):
        if isinstance(value, str) and OFFSET_SIGN_READ_AS_SPACE.search(value):
            self.fail("offset_sign_as_space")
        if isinstance(value, str):
            try:
                parsed = parse_datetime(value)
            except ValueError:  # well formed but no date (a 13th month): DRF's own message says so
                parsed = None
            if parsed is not None and timezone.is_naive(parsed):
                self.fail("no_offset")
        try:
            moment = super().to_internal_value(value)
            moment.astimezone(datetime.UTC)
        except OverflowError:  # DRF's own time zone check can overflow too
            self.fail("out_of_range")
        return moment


UNKNOWN_FIELD = gettext_lazy("Unknown field: check its name against the API schema. Nothing was done.")


# A body's field this serializer does not have is a 400 naming it, with the body's other mistakes. DRF ignores
# it: a misspelled "subject_phonee" filed the request without the phone, and a withdrawal with a "reason" went
# through, each answered as if all had been read. (A comment, not a docstring: the schema shows a serializer's
# docstring, or the first one up its classes, to integrators as the description of its body.)
class RefusesUnknownFields:

    def run_validation(self, data=empty):
        unknown = (
            {name: [str(UNKNOWN_FIELD)] for name in data if name not in self.fields}
            if isinstance(data, Mapping) else {}
        )
        try:
            value = super().run_validation(data)
        except serializers.ValidationError as error:
            if unknown and isinstance(error.detail, Mapping):
                raise serializers.ValidationError({**error.detail, **unknown}) from None
            raise
        if unknown:
            raise serializers.ValidationError(unknown)
        return value


class RefusesUnknownFieldsScheme(OpenApiSerializerExtension):
    """The schema says so too: such a body's object takes no other properties (`additionalProperties: false`)."""

    target_class = RefusesUnknownFields
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        return {**schema, "additionalProperties": False}


class PortalRequestForm(WithPostalAddress, RequestForm):
    """The public form's rules, and the postal address a portal may know of its user (the web form asks none)."""


# The form's limits, declared again on the serializer so that the schema shows them.
FORM_FIELDS = PortalRequestForm.base_fields


def limit(name: str) -> int:
    return FORM_FIELDS[name].max_length


class RequestCreateSerializer(RefusesUnknownFields, serializers.Serializer):
    """A request filed on behalf of a data subject, checked by the same rules as the public request form. A field
    this body does not have is refused."""

    rights = serializers.ListField(
        child=serializers.ChoiceField(choices=RequestType.choices), allow_empty=False, min_length=1,
        help_text="The rights the subject exercises, at least one, each once. Some need a detail below, sent only with "
        "its right.",
    )
    rectification_data = StringField(
        required=False, allow_blank=True, default="", max_length=limit("rectification_data"),
        help_text="With `rectification`: which data is incorrect or incomplete.",
    )
    # A textarea's text on the form: its line breaks count once against the limit, as there.
    rectification_value = MultilineStringField(
        required=False, allow_blank=True, default="", max_length=limit("rectification_value"),
        help_text="With `rectification`: the corrected or completed value; a line break counts as one character.",
    )
    restriction_ground = serializers.ChoiceField(
        choices=RestrictionGround.choices, required=False, allow_blank=True, default="",
        help_text="With `restriction`: the ground for it (GDPR Art. 18(1)(a)-(d)).",
    )
    objection_processing = MultilineStringField(
        required=False, allow_blank=True, default="", max_length=limit("objection_processing"),
        help_text="With `objection`: the processing or purpose objected to (not needed with `direct_marketing`); "
        "a line break counts as one character.",
    )
    direct_marketing = JSONBooleanField(
        required=False, default=False,
        help_text="With the objection right: the objection is to direct marketing (GDPR Art. 21(2)), which cannot be refused.",
    )
    consent_withdrawn = StringField(
        required=False, allow_blank=True, default="", max_length=limit("consent_withdrawn"),
        help_text="With `withdraw_consent`: which consent the subject withdraws.",
    )
    # Art. 20(2): both or neither, checked by the web form's rules (forms.RequestForm._check_transmission).
    recipient_name = StringField(
        required=False, allow_blank=True, default="", max_length=limit("recipient_name"),
        help_text="With `portability`, optional: the organisation the subject asks us to send their data to directly "
        "(GDPR Art. 20(2)). Send it with `recipient_email`, or neither.",
    )
    recipient_email = StringField(
        required=False, allow_blank=True, default="", max_length=limit("recipient_email"),
        help_text="With `portability` and `recipient_name`: that organisation's email address, not the subject's own "
        "(`subject_email`). Once the DPO releases the data, the organisation is emailed a link to download it, or "
        "the subject is told why it cannot be sent; the subject gets their own copy either way.",
    )
    subject_name = StringField(max_length=limit("subject_name"), help_text="The subject's full name.")
    subject_email = StringField(
        max_length=limit("subject_email"),
        help_text="The subject's email address: the confirmation and the answer go there.",
    )
    subject_phone = StringField(
        required=False, allow_blank=True, default="", max_length=limit("subject_phone"), help_text="E.164, e.g. +32475123456"
    )
    customer_reference = StringField(
        required=False, allow_blank=True, default="", max_length=limit("customer_reference"),
        help_text="The subject's account or contract reference with your organisation, e.g. CUST-000123.",
    )
    ip_address = StringField(
        required=False, allow_blank=True, default="", max_length=limit("ip_address"),
        help_text="For a request about visits to our website: the IP address (IPv4 or IPv6) the subject used.",
    )
    # Lines as on the envelope: a line break counts once against the limit, as on staff intake.
    postal_address = MultilineStringField(
        required=False, allow_blank=True, default="", max_length=limit("postal_address"),
        help_text="Optional: the subject's postal address, one line each for the street, the town and the country "
        f"(at most {POSTAL_ADDRESS_MAX_LINES} lines; a line break counts as one character; no tabs or other control "
        "characters). We write by email; we post our letters here if the subject's mail server refuses their address. "
        "Never returned by the API.",
    )
    relationship = serializers.ChoiceField(choices=Relationship.choices, help_text="How the subject knows us.")
    regime = serializers.ChoiceField(
        choices=Regime.choices, default=Regime.GDPR, help_text="The law the request is made under: it sets the deadlines."
    )
    language = serializers.ChoiceField(
        choices=settings.LANGUAGES, default="en", help_text="The language we write to the subject in."
    )
    # Its limit is the form's (line breaks counted once, and its own message), not a plain maxLength.
    description = StringField(
        required=False, allow_blank=True, default="", help_text=f"At most {TEXT_MAX_CHARS:,} characters."
    )
    signature = StringField(
        max_length=limit("signature"), help_text="The subject's typed full name, as on the portal's form."
    )

    def to_internal_value(self, data):
        """Every mistake in one answer: when some fields fail this serializer's own checks (missing, or of
        the wrong type), the form's rules still run on the fields that passed, and their errors join in."""
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError as error:
            if not isinstance(data, Mapping):
                raise
            passed = {}
            for name, field in self.fields.items():
                if name in error.detail:
                    continue
                try:
                    passed[name] = field.run_validation(field.get_value(data))
                except (serializers.ValidationError, SkipField):
                    continue
            if "rights" in error.detail:
                # The entries that are rights still say which details belong: ["access", "bogus"] sent with
                # rectification_data gets that detail's error too, not the rights' alone.
                sent = data.get("rights")
                sent = sent if isinstance(sent, list) else []
                valid_rights = [right for right in sent if isinstance(right, str) and right in RequestType.values]
                if valid_rights:
                    passed["rights"] = valid_rights
            form = public_form(passed)
            form.is_valid()
            raise serializers.ValidationError(
                {**{field: errors for field, errors in form_errors(form).items() if field not in error.detail}, **error.detail}
            ) from None

    def validate_rights(self, rights):
        """A right listed twice is a portal's bug (a list built twice, say), as a key sent twice is: refused rather
        than merged into one without a word."""
        repeated = next((right for index, right in enumerate(rights) if right in rights[:index]), None)
        if repeated:
            raise serializers.ValidationError(
                _("“%(right)s” is listed more than once: list each right once.") % {"right": repeated}
            )
        return rights

    def validate(self, attrs):
        form = public_form(attrs)
        if not form.is_valid():
            raise serializers.ValidationError(form_errors(form))
        self.form = form  # the request is filed from it
        return attrs


def public_form(attrs: dict) -> PortalRequestForm:
    # The confirmation box is the portal's to show; the honeypot is the web form's.
    return PortalRequestForm(data={**attrs, "confirm": "on", "website": ""})


def form_errors(form: RequestForm) -> dict[str, list[str]]:
    return {field: [_api_message(error) for error in errors] for field, errors in form.errors.as_data().items()}


def _api_message(error) -> str:
    """The form's message, or the API's words where the form's speak of the web page ("tick it above")."""
    if error.code == DETAIL_WITHOUT_ITS_RIGHT:
        return _("Sent without “%(right)s” in rights: add it to rights, or leave this field out.") % {"right": error.params["code"]}
    if error.code == OWN_ADDRESS:
        return _(
            "This is the subject's own email address (subject_email): they get their own copy of their data anyway. "
            "Give the other organisation's address, or leave out both recipient_name and recipient_email."
        )
    return " ".join(error.messages)


class TimelineItemSerializer(serializers.Serializer):
    at = MomentField()
    event = serializers.CharField()


class FeeSerializer(serializers.Serializer):
    amount = serializers.DecimalField(source="fee_amount", max_digits=8, decimal_places=2)
    currency = serializers.SerializerMethodField()
    proposed_at = MomentField(source="fee_proposed_at")
    paid_at = MomentField(source="fee_paid_at", allow_null=True)

    def get_currency(self, request) -> str:
        return settings.FEE_CURRENCY


class RequestSerializer(serializers.ModelSerializer):
    """A request as its organisation follows it: no more personal data than it sent."""

    serializer_field_mapping = {**serializers.ModelSerializer.serializer_field_mapping, models.DateTimeField: MomentField}

    id = serializers.UUIDField(source="public_id", read_only=True)
    status_label = serializers.CharField(source="get_status_display", read_only=True)
    rights = serializers.SerializerMethodField()
    refused_rights = serializers.SerializerMethodField(
        help_text="The rights in `rights` that the DPO refused when completing the request, each on a legal ground "
        "the subject's letter gives (GDPR Art. 12(4)); the others were granted. It may hold every right in `rights`: "
        "the request was answered right by right and each refused on its own ground, and `status` is still "
        "`completed`. Empty until the request is completed, and for a request rejected whole on one ground "
        "(`status` is `rejected`)."
    )
    fee = serializers.SerializerMethodField(
        help_text="The reasonable fee the DPO told the subject it intends to charge for a manifestly unfounded or "
        "excessive request (GDPR Art. 12(5)), or null: the subject may pay it, or withdraw the request instead. "
        "Amounts are decimal strings."
    )

    class Meta:
        model = PrivacyRequest
        fields = [
            "id", "reference", "status", "status_label", "rights", "refused_rights", "regime", "channel", "received_at", "due_on",
            "original_due_on", "extended_at", "extension_reason", "clock_paused", "fee", "created_at", "updated_at",
        ]
        # An answer, never a body: its schema marks every field read-only, and so always present (drf-spectacular).
        read_only_fields = fields
        extra_kwargs = {
            "clock_paused": {
                "help_text": "The time to answer stands still while we wait for the subject (GDPR, UK GDPR): `due_on` "
                "moves on by the days paused once it restarts, so a paused request past its `due_on` is not late."
            }
        }

    @extend_schema_field(serializers.ListField(child=serializers.ChoiceField(choices=RequestType.choices)))
    def get_rights(self, request) -> list[str]:
        # From the bits kept on the request (rights never change after intake): no query.
        return request.requested_rights

    @extend_schema_field(serializers.ListField(child=serializers.ChoiceField(choices=RequestType.choices)))
    def get_refused_rights(self, request) -> list[str]:
        return request.refused_rights  # from the bits kept on the request, as `rights`: no query

    @extend_schema_field(FeeSerializer(allow_null=True))
    def get_fee(self, request) -> dict | None:
        return FeeSerializer(request).data if request.fee_proposed_at else None



# Lists and the answer to filing leave the timeline out rather than show it empty, which would read as "nothing
# happened": it costs a query per request, and the filing is benchmarked.
class PortabilityRecipientSerializer(serializers.Serializer):
    name = serializers.CharField(source="recipient_name", help_text="As filed in `recipient_name`.")
    email = serializers.CharField(source="recipient_email", help_text="As filed in `recipient_email`.")


class RequestWithTimelineSerializer(RequestSerializer):
    """A request with the subject's timeline, as retrieving or withdrawing it answers."""

    portability_recipient = serializers.SerializerMethodField(
        help_text="The organisation the subject asked us to send their data to directly (GDPR Art. 20(2)), as filed "
        "with the `portability` right, or null: none was named, or the subject's personal data was deleted since. "
        "The timeline says whether it was sent."
    )
    timeline = serializers.SerializerMethodField(help_text="What the subject sees of the request's history, oldest first.")

    class Meta(RequestSerializer.Meta):
        fields = [*RequestSerializer.Meta.fields, "portability_recipient", "timeline"]
        read_only_fields = fields

    @extend_schema_field(PortabilityRecipientSerializer(allow_null=True))
    def get_portability_recipient(self, request) -> dict | None:
        right = request.rights.filter(right=RequestType.PORTABILITY).exclude(recipient_email="").first()
        return PortabilityRecipientSerializer(right).data if right else None

    @extend_schema_field(TimelineItemSerializer(many=True))
    def get_timeline(self, request) -> list[dict]:
        return TimelineItemSerializer(
            [{"at": at, "event": str(text)} for at, text in selectors.subject_timeline(request)], many=True
        ).data


class WithdrawSerializer(RefusesUnknownFields, serializers.Serializer):
    """A withdrawal takes no fields: no body, or an empty JSON object. Any other body is refused (400, 415), as on
    every POST, rather than ignored: a portal sending one ({"reason": ...}) meant something the withdrawal would not
    do."""


class MessageCreateSerializer(RefusesUnknownFields, serializers.Serializer):
    """A message from the subject to the DPO team about their request, passed on by your organisation."""

    body = MultilineStringField(
        max_length=TEXT_MAX_CHARS, help_text="The subject's message to the DPO team; a line break counts as one character."
    )


class MessageSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    direction = serializers.CharField()
    body = serializers.CharField()
    created_at = MomentField()


UNKNOWN_PARAMETER = gettext_lazy("Unknown parameter: check its name against the API schema.")


class ListFilters(serializers.Serializer):
    """A list's filters, read from the query string."""

    # What a list reads besides its filters: the cursor of a page, and DRF's format override.
    OTHER_PARAMETERS = ("cursor", api_settings.URL_FORMAT_OVERRIDE)

    def to_internal_value(self, data):
        # A field reads only the last of a repeated parameter: "?status=new&status=withdrawn" listed the withdrawn
        # requests alone, as if the first value had been read. Refused, rather than half-applied.
        refused = {
            name: [_("Give %(name)s once: the list filters by one value of it at a time.") % {"name": name}]
            for name in self.fields
            if len(data.getlist(name)) > 1
        }
        # A misspelt filter ("updated_after") was ignored: the whole list came back, as if it had been applied.
        refused.update(
            {name: [str(UNKNOWN_PARAMETER)] for name in data if name not in self.fields and name not in self.OTHER_PARAMETERS}
        )
        if refused:
            raise serializers.ValidationError(refused)
        return super().to_internal_value(data)


class RequestListFilter(ListFilters):
    status = serializers.ChoiceField(choices=Status.choices, required=False)
    type = serializers.ChoiceField(choices=RequestType.choices, required=False)
    updated_since = SinceField(
        required=False,
        help_text="Only requests that changed at or after this moment (ISO 8601 with its offset: `Z` or `%2B01:00`, "
        "a `+` percent-encoded in the query string); a time without an offset, or a bare date, is a 400. To poll for "
        "changes, give the `Updated-Since-Next` header of your previous poll's first page, not the time you polled: "
        "a change is dated before its commit shows it, and a poll from the time of the last one could miss it.",
    )


class ExportSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    kind = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()
    encrypted = serializers.BooleanField()
    expires_at = MomentField()
    downloads_left = serializers.IntegerField(
        source="organisation_downloads_left",
        help_text="How many more times you may download the package. Your downloads count apart from the "
        "subject's: the subject's own download limit is not used up by yours.",
    )


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details (application/problem+json)."""

    type = serializers.CharField(
        default="about:blank",
        help_text="What kind of problem this is, for a program to act on: `about:blank` (the status says it all), or "
        "for a 409 one of its own: `urn:privacy-portal:problem:state-conflict` (not allowed in the request's state; "
        "final) or `urn:privacy-portal:problem:idempotency-key-in-flight` (retry after `Retry-After`).",
    )
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    errors = serializers.DictField(
        required=False,
        help_text="For 400 validation errors: field name to messages. For an entry of a list, or a field of an object, "
        'the same nested under its position (from 0) or name: `{"rights": {"1": ["…"]}}`.',
    )


class PingSerializer(serializers.Serializer):
    organisation = serializers.CharField()
