"""The Django admin: a read-only view of requests and their audit trail, and
staff intake of requests that arrived by email, post or phone.

Nothing about a request is edited here: every change must go through a
service so it writes its audit event. Staff record new requests through the
intake page, which calls the same service as the public form.

Who may do what follows the staff roles (requests_app.roles), not Django's
per-model permissions: every role reads, DPOs change the configuration
(organisations, API keys, webhooks, sources...), handlers and DPOs record
requests. What holds secrets (webhook secrets, source connection URLs, API
keys) is for DPOs only.
"""

import datetime
import uuid
from importlib import import_module

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import SimpleListFilter
from django.contrib.admin.utils import quote, unquote
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, models, transaction
from django.db.models.constants import LOOKUP_SEP
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from requests_app import roles
from requests_app.audit import Actor, form_changes, record_event
from requests_app.forms import StaffIntakeForm
from requests_app.lifecycle import RequestError
from requests_app.models import (
    AssignmentRule,
    Attachment,
    AuditChainCheck,
    AuditChainHead,
    AuditEvent,
    ClockPause,
    DailyDigest,
    ExportPackage,
    InternalNote,
    LegalHold,
    ManualTask,
    Message,
    Organisation,
    OrganisationAPIKey,
    PrivacyRequest,
    Recipient,
    RecipientNotice,
    ReferenceCounter,
    RequestedRight,
    ResponseTemplate,
    SentNotification,
    SourceAction,
    SourceCategory,
    SourceField,
    SourceSystem,
    SubjectIdentity,
    SuppressionEntry,
    SuppressionPurpose,
    Team,
    WebhookDelivery,
    WebhookEndpoint,
)
from requests_app.services import intake
from requests_app.services import webhooks as webhook_service
# The inventory's pages here check what the dashboard's do, with its forms.
from requests_app.staff.forms import (
    LegalHoldForm,
    RecipientForm,
    SourceCategoryForm,
    SourceFieldForm,
    SourceSystemForm,
    SuppressionPurposeForm,
)
from requests_app.templatetags.deadline_tags import due_badge


def _local(moment) -> str:
    """A moment as the admin shows its dates: in TIME_ZONE, to the minute."""
    return date_format(timezone.localtime(moment), "SHORT_DATETIME_FORMAT")


class RolePermissions:
    """Admin permissions from the staff role: `readers` may read, only DPOs change anything."""

    # The admin is a DPO's and an auditor's tool; the request pages widen it, the secrets narrow it.
    readers = roles.CONFIGURATION_READERS
    # Webhook and recipient URLs are HTTPS: a scheme left out means https, not http.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def _may_read(self, request) -> bool:
        return roles.role_of(request.user) in self.readers

    def has_module_permission(self, request):
        return self._may_read(request)

    def has_view_permission(self, request, obj=None):
        return self._may_read(request)

    def has_add_permission(self, request, *args):
        return roles.is_dpo(request.user)

    def has_change_permission(self, request, obj=None):
        return roles.is_dpo(request.user)

    def has_delete_permission(self, request, obj=None):
        return roles.is_dpo(request.user)

    def lookup_allowed(self, lookup, value, request=None):
        # Django takes a filter on any of the model's own fields from the query string, fields the page never shows
        # included: from the number of rows found, a reader could learn a status link's secret or a package's
        # password a character at a time, or put a subject's address in a URL. Only the filters the page offers
        # (a refused one is a 400).
        offered = {self.date_hierarchy} - {None}
        for item in self.get_list_filter(request) if request is not None else self.list_filter:
            if isinstance(item, type) and issubclass(item, SimpleListFilter):
                offered.add(item.parameter_name)
            else:
                offered.add(item[0] if isinstance(item, (list, tuple)) else item)
        if not any(lookup == name or lookup.startswith(name + LOOKUP_SEP) for name in offered):
            return False
        return super().lookup_allowed(lookup, value, request)


class RoleAdmin(RolePermissions, admin.ModelAdmin):
    """Every change made here is an audit event, as on the dashboard's configuration pages."""

    def _record(self, request, obj, pk, what: str, form=None) -> None:
        event = f"{obj._meta.model_name}_{what}"
        data = {"id": pk, "name": str(obj)[:200]}
        if form is not None:
            data["changes"] = form_changes(form)  # before and after, as on the dashboard
        record_event(None, event, actor=Actor.staff(request.user), data=data)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        self._record(request, obj, obj.pk, "saved", form=form)

    def save_formset(self, request, form, formset, change):
        super().save_formset(request, form, formset, change)
        saved = {*formset.new_objects, *(changed for changed, _fields in formset.changed_objects)}
        for inline_form in formset.forms:
            if inline_form.instance in saved:
                self._record(request, inline_form.instance, inline_form.instance.pk, "saved", form=inline_form)
        for obj in formset.deleted_objects:
            self._record(request, obj, None, "deleted")

    def delete_model(self, request, obj):
        pk = obj.pk
        super().delete_model(request, obj)
        self._record(request, obj, pk, "deleted")

    def delete_queryset(self, request, queryset):
        with transaction.atomic():  # the bulk action is not atomic by itself
            for obj in queryset:
                self._record(request, obj, obj.pk, "deleted")
            super().delete_queryset(request, queryset)


class ReadOnlyInline(RolePermissions, admin.TabularInline):
    readers = roles.ROLES  # shown inside the request page
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)


class RequestedRightInline(ReadOnlyInline):
    model = RequestedRight
    fields = [
        "right",
        "rectification_data",
        "rectification_value",
        "restriction_ground",
        "objection_processing",
        "direct_marketing",
        "consent_withdrawn",
    ]


class SubjectIdentityInline(ReadOnlyInline):
    model = SubjectIdentity
    fields = ["kind", "value", "verified_at", "verification_method", "verified_by"]


class AttachmentInline(ReadOnlyInline):
    model = Attachment
    fields = ["download", "content_type", "size", "uploaded_by", "created_at"]

    def get_fields(self, request, obj=None):
        # The download answers only those who may read the request's files (roles.reads_files): the
        # others see the file's name, not a link that refuses them. `obj` is the request shown.
        if obj is not None and roles.reads_files(request.user, obj):
            return self.fields
        return ["name", *self.fields[1:]]

    @admin.display(description="file")
    def download(self, attachment):
        if attachment.is_deleted:
            return self.name(attachment)
        url = reverse("staff:attachment", args=[attachment.public_id])
        return format_html('<a href="{}">{}</a>', url, attachment.original_name)

    @admin.display(description="file")
    def name(self, attachment):
        if attachment.is_deleted:  # handling.attachment_delete: the file and its name are gone
            return f"deleted on {timezone.localdate(attachment.deleted_at)} by {attachment.deleted_by}"
        return attachment.original_name


class ClockPauseInline(ReadOnlyInline):
    model = ClockPause
    fields = ["started_at", "ended_at", "reason", "started_by", "ended_by"]


class AuditEventInline(ReadOnlyInline):
    model = AuditEvent
    fields = ["sequence", "created_at", "actor_label", "action", "from_status", "to_status", "note"]
    ordering = ["sequence"]


@admin.register(PrivacyRequest)
class PrivacyRequestAdmin(RoleAdmin):
    readers = roles.ROLES  # handlers record requests here and look them up
    list_display = ["reference", "status", "rights_asked", "channel", "regime", "received_at", "due_on", "time_left", "assignee"]
    list_filter = ["status", "channel", "regime", "rights__right"]
    # By reference only: a search goes into the URL (?q=), and so into access logs and browser
    # history; staff find people through the dashboard's queue search, which keeps it in the session.
    search_fields = ["=reference"]
    date_hierarchy = "received_at"
    inlines = [RequestedRightInline, SubjectIdentityInline, AttachmentInline, ClockPauseInline, AuditEventInline]
    fieldsets = [
        (None, {"fields": ["reference", "status", "regime", "channel", "language", "received_at", "organisation", "assignee", "team"]}),
        (
            "Subject",
            # The postal address is whoever filed's: the agent's when an agent did (models.PrivacyRequest).
            {"fields": ["subject_name", "subject_email", "subject_phone", "postal_address", "customer_reference", "relationship"]},
        ),
        # Empty unless someone acting for the subject filed the request (services.agents).
        ("Agent", {"fields": ["agent_capacity", "agent_name", "agent_email", "agent_authority_confirmed_at"]}),
        ("Request", {"fields": ["description", "signature", "signed_at", "verified_at", "personal_data_purged_at"]}),
        (
            "Deadline",
            {
                "fields": [
                    "due_on",
                    "time_left",
                    "original_due_on",
                    "paused_days",
                    "extended_at",
                    "extended_by",
                    "extension_reason",
                    "acknowledgement_due_on",
                    "acknowledged_at",
                    "acknowledgement_met",
                ]
            },
        ),
    ]

    class Media:
        css = {"all": ["requests_app/due.css"]}  # the time-left badge's colours

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("assignee").prefetch_related("rights")

    @admin.display(description="time left", ordering="due_on")
    def time_left(self, obj):
        return due_badge(obj)

    @admin.display(description="receipt confirmed in time", boolean=True)
    def acknowledgement_met(self, obj):
        return obj.acknowledgement_met

    @admin.display(description="rights")
    def rights_asked(self, obj):
        return ", ".join(right.get_right_display() for right in obj.rights.all())

    def get_fieldsets(self, request, obj=None):
        """The fieldsets, with the organisation and team as plain names for a role that may not open their pages.

        The admin links a read-only foreign key to the related object's page; a handler following the
        organisation's link would get a 403.
        """
        if roles.role_of(request.user) in roles.CONFIGURATION_READERS:
            return self.fieldsets
        unlinked = {"organisation": "organisation_name", "team": "team_name"}
        return [
            (name, {**options, "fields": [unlinked.get(field, field) for field in options["fields"]]})
            for name, options in self.fieldsets
        ]

    @admin.display(description="organisation")
    def organisation_name(self, obj):
        return obj.organisation

    @admin.display(description="team")
    def team_name(self, obj):
        return obj.team

    def get_readonly_fields(self, request, obj=None):
        return [field for fieldset in self.get_fieldsets(request, obj) for field in fieldset[1]["fields"]]

    def has_add_permission(self, request):
        # Intake: the staff who work requests record those that arrive by email, post or phone.
        return roles.role_of(request.user) in roles.INTAKE_ROLES

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        intake_url = path("intake/", self.admin_site.admin_view(self.intake_view), name="requests_app_intake")
        return [intake_url, *super().get_urls()]

    def add_view(self, request, form_url="", extra_context=None):
        # Adding a request is intake: one form, one service, one audit event.
        return redirect("admin:requests_app_intake")

    def intake_view(self, request):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = StaffIntakeForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            # The same form sent twice (a double click, Back then Send, a retry on the way) records one request:
            # one reference, one confirmation to the subject, one deadline.
            filed = form.request_filed_already()
            if filed is not None:
                return self._intake_sent_again(request, filed)
            try:
                privacy_request = intake.request_submit(**form.submit_kwargs(), actor=Actor.staff(request.user))
            except intake.AlreadySubmitted as sent_at_once:
                return self._intake_sent_again(request, sent_at_once.request)
            except RequestError as error:
                form.add_error(None, str(error))
            else:
                messages.success(request, _("Request %(reference)s recorded.") % {"reference": privacy_request.reference})
                return redirect("admin:requests_app_privacyrequest_change", privacy_request.pk)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Record a request received by email, post or phone"),
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/requests_app/intake.html", context)

    def _intake_sent_again(self, request, filed):
        messages.warning(
            request,
            _("You had sent this form already: we did not record request %(reference)s a second time.")
            % {"reference": filed.reference},
        )
        return redirect("admin:requests_app_privacyrequest_change", filed.pk)


class ReadOnlyAdmin(RoleAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["sequence", "created_at", "request", "actor_label", "action", "from_status", "to_status"]
    list_filter = ["action", "actor_kind"]
    search_fields = ["=request__reference"]
    list_select_related = ["request"]


@admin.register(SentNotification)
class SentNotificationAdmin(ReadOnlyAdmin):
    list_display = ["sent_at", "request", "kind", "key"]
    list_filter = ["kind"]
    search_fields = ["=request__reference"]
    list_select_related = ["request"]


@admin.register(ReferenceCounter)
class ReferenceCounterAdmin(ReadOnlyAdmin):
    list_display = ["year", "last_number"]


@admin.register(AuditChainHead)
class AuditChainHeadAdmin(ReadOnlyAdmin):
    list_display = ["sequence", "hash"]


@admin.register(AuditChainCheck)
class AuditChainCheckAdmin(ReadOnlyAdmin):
    list_display = ["checked_at", "events_checked", "broken_at_sequence", "reason"]


@admin.register(Organisation)
class OrganisationAdmin(RoleAdmin):
    list_display = ["name", "own_systems", "public_id", "created_at"]
    list_filter = ["own_systems"]
    search_fields = ["name"]


@admin.register(Team)
class TeamAdmin(RoleAdmin):
    list_display = ["name"]
    filter_horizontal = ["members"]


@admin.register(AssignmentRule)
class AssignmentRuleAdmin(RoleAdmin):
    list_display = ["position", "name", "active", "request_type", "regime", "channel", "organisation", "assign_team", "assign_user"]
    list_editable = ["active"]


@admin.register(ResponseTemplate)
class ResponseTemplateAdmin(RoleAdmin):
    list_display = ["purpose", "request_type", "language", "subject", "updated_at"]
    list_filter = ["purpose", "language"]


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "request", "direction", "author"]
    list_filter = ["direction"]
    search_fields = ["=request__reference"]
    list_select_related = ["request", "author"]


@admin.register(InternalNote)
class InternalNoteAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "request", "author"]
    search_fields = ["=request__reference"]
    list_select_related = ["request", "author"]


@admin.register(DailyDigest)
class DailyDigestAdmin(ReadOnlyAdmin):
    list_display = ["day", "sent_at"]


class SourceCategoryInline(RolePermissions, admin.StackedInline):
    model = SourceCategory
    form = SourceCategoryForm
    extra = 0


class RecipientInline(RolePermissions, admin.TabularInline):
    model = Recipient
    form = RecipientForm
    extra = 0


class LegalHoldInline(RolePermissions, admin.TabularInline):
    model = LegalHold
    form = LegalHoldForm
    extra = 0

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        # Only the categories of the source being edited; the staff form checks the same.
        if db_field.name == "category":
            kwargs["queryset"] = SourceCategory.objects.filter(source_id=request.resolver_match.kwargs.get("object_id"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(SourceSystem)
class SourceSystemAdmin(RoleAdmin):
    readers = (roles.DPO,)  # connection URLs may carry credentials
    form = SourceSystemForm  # the dashboard's checks: no password in the inventory, SOURCE_ variables only

    list_display = ["name", "slug", "connector", "identity_kind", "legal_basis", "active"]
    list_filter = ["connector", "active"]
    inlines = [SourceCategoryInline, RecipientInline, LegalHoldInline]


class SourceFieldInline(RolePermissions, admin.TabularInline):
    model = SourceField
    form = SourceFieldForm
    extra = 0


@admin.register(SourceCategory)
class SourceCategoryAdmin(RoleAdmin):
    """Categories are edited inline on their source too; here for their fields (inlines do not nest)."""

    form = SourceCategoryForm  # the dashboard's checks: the query's placeholder, one category for a manual source
    list_display = ["__str__", "category", "table", "erase_method"]
    list_filter = ["source", "erase_method"]
    list_select_related = ["source"]
    inlines = [SourceFieldInline]


@admin.register(SourceAction)
class SourceActionAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "request", "source", "kind", "status", "attempts", "finished_at"]
    list_filter = ["status", "kind", "source"]
    search_fields = ["=request__reference"]
    list_select_related = ["request", "source"]


@admin.register(RecipientNotice)
class RecipientNoticeAdmin(ReadOnlyAdmin):
    list_display = ["request", "recipient", "status", "attempts", "sent_at", "waiver_reason"]
    list_filter = ["status"]
    search_fields = ["=request__reference"]
    list_select_related = ["request", "recipient"]


@admin.register(SuppressionPurpose)
class SuppressionPurposeAdmin(RoleAdmin):
    form = SuppressionPurposeForm  # ticks for the kinds of identifier, not raw JSON
    list_display = ["name", "slug", "identity_kinds"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(SuppressionEntry)
class SuppressionEntryAdmin(ReadOnlyAdmin):
    """No search: the admin puts the search text in the URL, and here it would be an identifier."""

    list_display = ["created_at", "purpose", "kind", "value", "right", "request"]
    list_filter = ["purpose", "kind", "right"]
    list_select_related = ["purpose", "request"]


@admin.register(ExportPackage)
class ExportPackageAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "request", "kind", "status", "attempt", "size", "download_count", "expires_at"]
    list_filter = ["status", "kind"]
    search_fields = ["=request__reference"]
    list_select_related = ["request"]
    exclude = ["pending_password"]


@admin.register(ManualTask)
class ManualTaskAdmin(ReadOnlyAdmin):
    """The raw extract is named, never linked: the admin would link the file by its storage URL, with S3 a
    presigned link that opens it for whoever holds it, with no permission check and no audit event. Staff read
    a subject's data only through the dashboard's views, which check and record it."""

    list_display = ["export", "source", "assignee", "done_at"]
    list_select_related = ["export", "source", "assignee"]
    fields = ["export", "source", "assignee", "extract", "done_at", "done_by"]
    readonly_fields = ["extract"]

    @admin.display(description="extract")
    def extract(self, task):
        return task.upload.name.rsplit("/", 1)[-1] if task.upload else "-"


def _submission_key(request) -> uuid.UUID | None:
    """The add form's key for this filling-in; None from a page that carries none (opened before it did)."""
    try:
        return uuid.UUID(request.POST.get("submission_key", ""))
    except ValueError:
        return None


class ShowsSecretOnce:
    """For what is added with a secret the DPO sees once (an API key, a webhook endpoint's signing secret).

    Post/Redirect/Get: the POST that adds the object keeps its secret in the session (database sessions: never in
    a URL or a cookie), under the object's own slot, and redirects to the object's "issued" page. That page
    takes the secret out of the session as it shows it, so a reload, or opening the page later, shows no
    secret and issues nothing; nor does another DPO's session, which never held it. The add form carries a key of
    its own (submission_key, unique on the model): sent twice, by a double click or a resend, it adds one
    object, and the second sending leads to the first one's page.

    The admin gives `issued_secret(obj)`, the secret `obj` was added with, and `issued_page(request, obj, secret)`,
    the TemplateResponse that shows it (`secret` None: it was shown already).
    """

    add_form_template = "admin/requests_app/add_form_sent_once.html"

    def _issued_url_name(self) -> str:
        return f"{self.model._meta.app_label}_{self.model._meta.model_name}_issued"

    def _secret_slot(self, obj) -> str:
        return f"secret_to_show:{self.model._meta.model_name}:{obj.pk}"

    def get_urls(self):
        issued = path("<path:object_id>/issued/", self.admin_site.admin_view(self.issued_view), name=self._issued_url_name())
        return [issued, *super().get_urls()]

    def add_view(self, request, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "submission_key": uuid.uuid4()}
        try:
            return super().add_view(request, form_url, extra_context)
        except IntegrityError:
            # This form was sent before (PostgreSQL made this sending wait for the other to commit, if it was
            # still under way): nothing was added, the admin's transaction is rolled back.
            key = _submission_key(request)
            added = self.model.objects.filter(submission_key=key).first() if key else None
            if added is None:
                raise
            # The first sending kept the secret in the session as it committed (response_add). Read the session
            # afresh: every answer saves its session (SESSION_SAVE_EVERY_REQUEST), and this one's copy, loaded
            # before that commit, would write the secret away before its page shows it.
            request.session = import_module(settings.SESSION_ENGINE).SessionStore(request.session.session_key)
            return redirect(f"admin:{self._issued_url_name()}", quote(added.pk))

    def save_form(self, request, form, change):
        obj = super().save_form(request, form, change)
        if not change:
            obj.submission_key = _submission_key(request)
        return obj

    def response_add(self, request, obj, post_url_continue=None):
        request.session[self._secret_slot(obj)] = self.issued_secret(obj)
        # Saved with the object, in its transaction: a second sending of the form that finds the object finds
        # the secret in the session too (add_view).
        request.session.save()
        return redirect(f"admin:{self._issued_url_name()}", quote(obj.pk))

    def issued_view(self, request, object_id):
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        response = self.issued_page(request, obj, request.session.pop(self._secret_slot(obj), None))
        response["Cache-Control"] = "no-store"
        return response


@admin.register(OrganisationAPIKey)
class OrganisationAPIKeyAdmin(ShowsSecretOnce, RoleAdmin, APIKeyModelAdmin):
    """The DPO issues keys here: the key is shown once, on the page the adding leads to (ShowsSecretOnce),
    never in a message, a URL or a cookie; only its hash is kept."""

    readers = (roles.DPO,)

    list_display = [*APIKeyModelAdmin.list_display, "organisation", "scope"]
    list_filter = [*APIKeyModelAdmin.list_filter, "organisation", "scope"]

    def _record(self, request, obj, pk, what: str, form=None) -> None:
        # A key's primary key holds its hash: the trail names the key by its prefix instead, and says whether it
        # is revoked, so that issuing and revoking read apart.
        data = {"prefix": obj.prefix, "name": obj.name[:200], "organisation": str(obj.organisation), "revoked": obj.revoked}
        if form is not None:
            data["changes"] = form_changes(form)
        record_event(None, f"organisationapikey_{what}", actor=Actor.staff(request.user), data=data)

    def save_model(self, request, obj, form, change):
        # Not the library's save_model: it hands the new key to the messages framework, which keeps it in a
        # cookie that is signed, not encrypted, so anyone who sees the cookie reads the key.
        if not change:
            obj.issued_key = self.model.objects.assign_key(obj)  # for response_add, never stored
        obj.save()
        self._record(request, obj, obj.pk, "saved", form=form)

    def issued_secret(self, obj) -> str:
        return obj.issued_key

    def issued_page(self, request, obj, secret):
        context = {
            **self.admin_site.each_context(request),
            "title": "Key issued",
            "opts": self.model._meta,
            "api_key": obj,
            "key": secret,
        }
        return TemplateResponse(request, "admin/requests_app/organisationapikey/key.html", context)


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ShowsSecretOnce, RoleAdmin):
    """The DPO registers an organisation's endpoint, rolls its secret, and gives the organisation each
    secret from the page that issued it: the one the adding leads to (ShowsSecretOnce), or the answer to
    a roll's POST (no redirect, so that secret is kept in no message, cookie or session; the roll's form
    says when the secret it replaces was issued, so sent again it rolls nothing). No page shows a secret
    again; a lost secret is rolled."""

    readers = (roles.DPO,)

    list_display = ["url", "organisation", "active", "secret_state", "disabled_at", "created_at"]
    list_filter = ["active", "organisation"]
    readonly_fields = ["signing_secret", "disabled_at"]

    @admin.display(description="secret")
    def secret_state(self, endpoint):
        if endpoint.previous_secret_signs():
            return format_html("rolled; the old one signs too until {}", _local(endpoint.previous_secret_expires_at))
        return "—"

    @admin.display(description="signing secret")
    def signing_secret(self, endpoint):
        if endpoint.pk is None:
            return "Issued when you save, and shown once, on the next page."
        roll = reverse("admin:requests_app_webhookendpoint_roll_secret", args=[endpoint.pk])
        state = format_html(
            "Issued {}. Shown only when it was issued: if the organisation lost it, roll it. "
            '<a href="{}">Roll the secret…</a>',
            _local(endpoint.secret_created_at), roll,
        )
        if endpoint.previous_secret_signs():
            expire = reverse("admin:requests_app_webhookendpoint_expire_old_secret", args=[endpoint.pk])
            state = format_html(
                '{}<br>The old secret signs too until {}. <a href="{}">Expire the old secret now…</a>',
                state, _local(endpoint.previous_secret_expires_at), expire,
            )
        return state

    def get_urls(self):
        return [
            path(
                "<path:object_id>/roll-secret/", self.admin_site.admin_view(self.roll_secret_view),
                name="requests_app_webhookendpoint_roll_secret",
            ),
            path(
                "<path:object_id>/expire-old-secret/", self.admin_site.admin_view(self.expire_old_secret_view),
                name="requests_app_webhookendpoint_expire_old_secret",
            ),
            *super().get_urls(),
        ]

    def save_model(self, request, obj, form, change):
        if not change:
            return super().save_model(request, obj, form, change)
        # Only the fields this page edits: a roll, or the delivery worker disabling the endpoint,
        # committed after this page loaded the endpoint would otherwise be written back over.
        fields = list(form.fields)
        if obj.active and "active" in form.changed_data:
            obj.disabled_at = None  # switched on again: no longer disabled, nor listed as such
            fields.append("disabled_at")
        obj.save(update_fields=fields)
        self._record(request, obj, obj.pk, "saved", form=form)

    def issued_secret(self, obj) -> str:
        return obj.secret

    def issued_page(self, request, obj, secret):
        return self._secret_page(request, obj, secret, "Endpoint added")

    def _endpoint_to_change(self, request, object_id) -> WebhookEndpoint:
        endpoint = self.get_object(request, unquote(object_id))
        if endpoint is None:
            raise Http404
        if not self.has_change_permission(request, endpoint):
            raise PermissionDenied
        return endpoint

    def roll_secret_view(self, request, object_id):
        """Confirm (GET), then roll (POST) and show the new secret once."""
        endpoint = self._endpoint_to_change(request, object_id)
        change_page = reverse("admin:requests_app_webhookendpoint_change", args=[endpoint.pk])
        if request.method == "POST":
            try:
                seen = datetime.datetime.fromisoformat(request.POST.get("secret_seen_at", ""))
            except ValueError:
                seen = None
            try:
                secret = webhook_service.roll_secret(endpoint=endpoint, actor=Actor.staff(request.user), secret_seen_at=seen)
            except RequestError as error:
                messages.error(request, str(error))
                return redirect(change_page)
            endpoint.refresh_from_db()
            return self._secret_page(request, endpoint, secret, "Secret rolled")
        context = {
            **self._context(request, endpoint, "Roll the secret"),
            "overlap_hours": settings.WEBHOOK_SECRET_OVERLAP.total_seconds() / 3600,
            "cut_short": endpoint.previous_secret_expires_at if endpoint.previous_secret_signs() else None,
        }
        return TemplateResponse(request, "admin/requests_app/webhookendpoint/roll_secret.html", context)

    def expire_old_secret_view(self, request, object_id):
        """Confirm (GET), then stop signing with the previous secret (POST)."""
        endpoint = self._endpoint_to_change(request, object_id)
        change_page = reverse("admin:requests_app_webhookendpoint_change", args=[endpoint.pk])
        if request.method == "POST":
            try:
                webhook_service.expire_previous_secret(endpoint=endpoint, actor=Actor.staff(request.user))
            except RequestError as error:
                messages.error(request, str(error))
            else:
                messages.success(request, "The old secret no longer signs: only the current one does.")
            return redirect(change_page)
        if not endpoint.previous_secret_signs():
            messages.info(request, "No old secret is signing for this endpoint.")
            return redirect(change_page)
        return TemplateResponse(
            request, "admin/requests_app/webhookendpoint/expire_old_secret.html",
            self._context(request, endpoint, "Expire the old secret now"),
        )

    def _secret_page(self, request, endpoint, secret: str, title: str):
        context = {**self._context(request, endpoint, title), "secret": secret}
        return TemplateResponse(request, "admin/requests_app/webhookendpoint/secret.html", context)

    def _context(self, request, endpoint, title: str) -> dict:
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.model._meta,
            "endpoint": endpoint,
        }


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "event", "endpoint", "status", "attempts", "last_status_code", "next_attempt_at"]
    list_filter = ["status", "event"]
    list_select_related = ["endpoint"]


# The library's own "API keys" entry lists keys without an organisation, which nothing here issues:
# one entry (Organisation API keys) leaves no wrong one to pick.
admin.site.unregister(APIKey)
# Staff accounts and their roles are managed on the dashboard (Staff accounts), where every change
# is an audit event and an authenticator is bound only by its owner through an invitation. Django's
# own pages would change roles unrecorded and show a superuser every authenticator's secret.
admin.site.unregister(User)
admin.site.unregister(Group)
admin.site.unregister(TOTPDevice)
