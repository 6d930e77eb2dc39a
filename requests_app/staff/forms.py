"""Forms of the staff dashboard. Every action is re-validated here on the server."""

from decimal import Decimal
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import SetPasswordForm
from django.db.models import Q
from django.utils import timezone
from django.utils.html import escape
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from requests_app import roles
from requests_app.forms import PostalAddressField
from requests_app.models import (
    LANGUAGE_NAMES_IN_SENTENCE,
    MAX_HOLD_MONTHS,
    PORTABLE_LEGAL_BASES,
    RIGHTS_THE_SUBJECT_ASKS,
    REFUSABLE_GROUNDS,
    TEXT_MAX_CHARS,
    AgentAuthorityMethod,
    AgentCapacity,
    AssignmentRule,
    Channel,
    ConnectorKind,
    DeliveryStatus,
    EraseMethod,
    EraseStrategy,
    FieldType,
    IdentityKind,
    LegalHold,
    LegalHoldTranslation,
    Organisation,
    Recipient,
    RecipientTranslation,
    Regime,
    RejectionGround,
    ResponseTemplate,
    SourceCategory,
    SourceCategoryTranslation,
    SourceField,
    SourceFieldTranslation,
    SourceSystem,
    SourceSystemTranslation,
    Status,
    SuppressionPurpose,
    SuppressionPurposeTranslation,
    Team,
    VerificationMethod,
    ground_can_refuse,
    refuses_only_the_whole_request,
    validate_field_name,
    validate_sql_name,
)
from requests_app.selectors import SORTS, QueueFilters
from requests_app.services import staff_setup
from requests_app.services.handling import GROUNDS_TO_EXPLAIN, unproven_identity_refusal
from requests_app.services.webhooks import check_url
from requests_app.sources import SourceError, connector_for
from requests_app.sources.base import SOURCE_ENV_PREFIX
from requests_app.url_secrets import carries_secret
from requests_app.wording import cites_gdpr_articles, in_sentence, label_in_letter


def assignable_users():
    """Staff who can be given requests: active DPOs and handlers."""
    return (
        get_user_model()
        .objects.filter(is_active=True, is_staff=True)
        .filter(Q(is_superuser=True) | Q(groups__name__in=[roles.DPO, roles.HANDLER]))
        .distinct()
        .order_by("username")
    )


class QueueFilterForm(forms.Form):
    """Reads the queue's query string; unknown values are dropped, not trusted."""

    scope = forms.ChoiceField(choices=[("open", _("Open")), ("closed", _("Closed")), ("all", _("All"))], required=False)
    status = forms.ChoiceField(choices=[("", ""), *Status.choices], required=False)
    type = forms.ChoiceField(choices=[("", ""), *RIGHTS_THE_SUBJECT_ASKS.items()], required=False)
    regime = forms.ChoiceField(choices=[("", ""), *Regime.choices], required=False)
    assignee = forms.CharField(max_length=150, required=False)
    due = forms.ChoiceField(
        choices=[("", ""), ("overdue", _("Overdue")), ("week", _("Due within 7 days")), ("paused", _("Clock paused"))],
        required=False,
    )
    channel = forms.ChoiceField(choices=[("", ""), *Channel.choices], required=False)
    organisation = forms.UUIDField(required=False)
    q = forms.CharField(max_length=200, required=False)
    sort = forms.CharField(required=False)

    def clean_sort(self):
        # An order, not a filter: one no longer known (an old bookmark) lists in the default order, not nothing.
        return self.cleaned_data["sort"] if self.cleaned_data["sort"] in SORTS else ""

    def filters(self) -> QueueFilters:
        """The filters asked for. A value that is not valid matches nothing rather than
        being dropped: dropping it would widen the list, and a bulk action on "everything"."""
        if not self.is_valid():
            return QueueFilters(invalid=True)
        cleaned = {name: value for name, value in self.cleaned_data.items() if value}
        if "organisation" in cleaned:
            cleaned["organisation"] = str(cleaned["organisation"])  # one spelling: lower case
        return QueueFilters(**cleaned)


class WebhookLogFilterForm(forms.Form):
    """Reads the webhook delivery log's query string: an organisation's or an endpoint's public id, a state. A value
    that is not valid makes the form invalid, and the log then shows nothing rather than everything, as the queue."""

    organisation = forms.UUIDField(required=False)
    endpoint = forms.UUIDField(required=False)
    status = forms.ChoiceField(choices=[("", ""), *DeliveryStatus.choices], required=False)


class ExtensionForm(forms.Form):
    """Why the deadline is extended: the email telling the subject quotes it as typed (deadline-extended-body.txt)."""

    reason = forms.CharField(
        label=_("Reason (quoted in the email to the subject)"), widget=forms.Textarea(attrs={"rows": 2}), max_length=2000
    )

    def __init__(self, *args, privacy_request, **kwargs):
        super().__init__(*args, **kwargs)
        # The reason must meet the regime's test, which the email states next to it; the LGPD allows no extension.
        if privacy_request.regime == Regime.CCPA:
            help_text = gettext(
                "Write it in %(language)s, the language of the request. The CCPA allows up to 45 more days only where "
                "that is reasonably necessary: say why it is."
            )
        else:
            help_text = gettext(
                "Write it in %(language)s, the language of the request. Art. 12(3) allows an extension only for the "
                "complexity or the number of requests: say which, and why."
            )
        self.fields["reason"].help_text = help_text % {"language": LANGUAGE_NAMES_IN_SENTENCE[privacy_request.language]}


class PauseForm(forms.Form):
    # Sent to the subject as a request for information: the status page's "until we hear from you" must name what.
    # Its help says how it differs from InformationRequestForm's: both write to the subject, only that one puts the
    # request on hold (handling.clock_pause, handling.request_information).
    question = forms.CharField(
        label=_("What do we need from the subject? (sent to them)"),
        widget=forms.Textarea(attrs={"rows": 2}),
        max_length=2000,
        help_text=_(
            "Use it when work on the request can go on while we wait. The clock restarts when the subject answers, or "
            "when you resume it."
        ),
    )


class PostalAddressForm(forms.Form):
    """The address we post letters to, recorded or corrected on the request page (handling.postal_address_correct);
    emptied, it is removed."""

    postal_address = PostalAddressField(
        label=_("Postal address"),
        required=False,
        help_text=_(
            "Whoever made the request: the subject's, or the agent's if an agent made it. As it goes on the envelope, "
            "one line each for the name, the street, the town and the country. Leave it empty to remove it."
        ),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["postal_address"].widget.attrs["autocomplete"] = "off"  # someone else's, not the staff member's


class NoteForm(forms.Form):
    body = forms.CharField(label=_("Internal note"), widget=forms.Textarea(attrs={"dir": "auto", "rows": 3}), max_length=TEXT_MAX_CHARS)


class MessageForm(forms.Form):
    subject = forms.CharField(label=_("Subject line (optional)"), max_length=200, required=False)
    body = forms.CharField(label=_("Message to the subject"), widget=forms.Textarea(attrs={"dir": "auto", "rows": 5}), max_length=TEXT_MAX_CHARS)


class InformationRequestForm(forms.Form):
    body = forms.CharField(
        label=_("What do you need from the subject?"),
        widget=forms.Textarea(attrs={"dir": "auto", "rows": 4}),
        max_length=TEXT_MAX_CHARS,
        help_text=_(
            "Sent to the subject. The request is then on hold, waiting for them, and the clock stops where the law allows; "
            "their answer puts the request back where it was and restarts the clock. Use it when work cannot go on "
            "without their answer."
        ),
    )

    def __init__(self, *args, privacy_request, **kwargs):
        super().__init__(*args, **kwargs)
        # Only a question that asked for it lets staff reject the request for the lack of the agent's authority
        # (agents.rejection_refusal): staff say which questions do.
        if privacy_request.agent_authority_unconfirmed:
            self.fields["asks_agent_authority"] = forms.BooleanField(
                label=_("It asks the agent for proof of their authority"),
                help_text=_(
                    "The subject's signed permission, a power of attorney, or proof of parental responsibility or "
                    "guardianship. Only after such a question, if the answer does not show it or none comes, may you "
                    "reject the request because the agent did not show their authority."
                ),
                required=False,
            )


class AssignForm(forms.Form):
    assignee = forms.ModelChoiceField(label=_("Assign to"), queryset=assignable_users(), required=False, to_field_name="username")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["assignee"].queryset = assignable_users()


class IdentityVerifyForm(forms.Form):
    identities = forms.TypedMultipleChoiceField(label=_("Identifiers verified"), coerce=int, widget=forms.CheckboxSelectMultiple)
    # No method is preselected: a default one would be recorded by whoever did not look at the list.
    method = forms.ChoiceField(
        label=_("How"),
        choices=[("", _("Choose how you checked it")), *((v, l) for v, l in VerificationMethod.choices if v != VerificationMethod.EMAIL_LINK)],
    )

    def __init__(self, *args, privacy_request=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.privacy_request = privacy_request
        identities = list(privacy_request.identities.all())
        self.kinds = {identity.id: identity.kind for identity in identities}
        self.fields["identities"].choices = [
            (identity.id, gettext("%(key)s: %(value)s") % {"key": identity.get_kind_display(), "value": identity.value})
            for identity in identities
        ]
        if privacy_request.organisation_id is None:  # nobody to have asserted them (handling.identity_verify)
            self.fields["method"].choices = [
                (value, label) for value, label in self.fields["method"].choices if value != VerificationMethod.ASSERTED_BY_ORGANISATION
            ]
        # A copy of an ID is kept no longer than its check (GDPR Art. 5(1)(c) and (e)). Those the subject marked as
        # one go whatever the method (handling.delete_identity_documents); the box, offered ticked, is for the others
        # not deleted yet. All of them, not only those sent since the question: any copy of an ID the subject did not
        # mark has served its purpose once the identity is verified; a document still needed is unticked.
        if privacy_request.attachments.filter(message__isnull=False, deleted_at__isnull=True, identity_document=False).exists():
            self.fields["delete_documents"] = forms.BooleanField(
                label=_("Delete the documents the subject sent for this check"),
                help_text=_(
                    "Those the subject sent as proof of identity are deleted whatever the method, as the privacy notice "
                    "promises. With “Identity document checked by staff” only: every other document the subject sent "
                    "with their replies and not deleted yet is deleted too once the verification is recorded. A scanned "
                    "letter is kept. Untick it to keep a document you still need (proof for a correction, say), and "
                    "delete it later under Attachments."
                ),
                required=False,
                initial=True,
            )

    def clean(self):
        cleaned = super().clean()
        method = cleaned.get("method")
        if method:
            # As identity_verify refuses it: a method that does not prove an identifier is the subject's.
            for kind in sorted({self.kinds[identity_id] for identity_id in cleaned.get("identities", [])}):
                refusal = unproven_identity_refusal(kind=kind, method=method, request=self.privacy_request)
                if refusal:
                    self.add_error("method", refusal)
        # Other methods did not rest on the documents: they are left for staff to delete by hand.
        cleaned["delete_documents"] = cleaned.get("delete_documents", False) and method == VerificationMethod.DOCUMENT
        return cleaned


class AgentAuthorityForm(forms.Form):
    # No method is preselected, as for an identity: a default one would be recorded by whoever did not look.
    method = forms.ChoiceField(
        label=_("How"), choices=[("", _("Choose how you confirmed it")), *AgentAuthorityMethod.choices],
        error_messages={"required": _("Choose how you confirmed the agent's authority.")},
    )


class AgentAuthorityWithdrawForm(forms.Form):
    reason = forms.CharField(
        label=_("Why"),
        widget=forms.Textarea(attrs={"dir": "auto", "rows": 3}),
        max_length=TEXT_MAX_CHARS,
        error_messages={"required": _("Say why you withdraw the agent's authority.")},
        help_text=_("Kept as an internal note on the request, never sent to the agent or the subject."),
    )


class RequesterCorrectForm(forms.Form):
    """Who makes a web request, corrected (agents.requester_correct): the subject's made an agent's, with the agent's
    details, or an agent's made the subject's own."""

    # The page's direction, sent back: a page from before someone else's correction is refused as changing nothing.
    to = forms.ChoiceField(choices=[("agent", "agent"), ("subject", "subject")], widget=forms.HiddenInput)
    agent_capacity = forms.ChoiceField(
        label=_("Acting as"), choices=[("", _("Choose…")), *AgentCapacity.choices], required=False
    )
    agent_name = forms.CharField(label=_("The agent's name"), max_length=200, required=False)
    agent_email = forms.EmailField(
        label=_("The agent's email address"),
        max_length=254,
        required=False,
        help_text=_(
            "The address that confirmed the request, the agent's own mailbox: the only address its owner confirmed, "
            "where our emails and letters go."
        ),
    )
    reason = forms.CharField(
        label=_("Why"),
        widget=forms.Textarea(attrs={"dir": "auto", "rows": 3}),
        max_length=TEXT_MAX_CHARS,
        error_messages={"required": _("Say why you correct who makes this request.")},
        help_text=_("Kept as an internal note on the request, never sent to the agent or the subject."),
    )

    def __init__(self, *args, privacy_request, **kwargs):
        super().__init__(*args, **kwargs)
        if privacy_request.filed_by_agent:
            self.fields["to"].initial = "subject"
            for name in ("agent_capacity", "agent_name", "agent_email"):
                del self.fields[name]
        else:
            self.fields["to"].initial = "agent"
            # Shown, not typed: another address would be one nobody confirmed (agents.requester_correct refuses it).
            self.fields["agent_email"].initial = privacy_request.subject_email
            self.fields["agent_email"].disabled = True

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("to") == "agent":
            for name in ("agent_capacity", "agent_name", "agent_email"):
                if name in self.fields and not cleaned.get(name) and name not in self.errors:
                    self.add_error(name, _("Required when an agent makes the request."))
        return cleaned


class CompleteForm(forms.Form):
    letter = forms.CharField(
        label=_("What we did (goes into the completion letter)"),
        widget=forms.Textarea(attrs={"rows": 4}),
        max_length=TEXT_MAX_CHARS,
        required=False,
    )

    def __init__(self, *args, privacy_request, **kwargs):
        super().__init__(*args, **kwargs)
        self.refusable = []
        self.regime = privacy_request.regime  # the reasons' error cites the GDPR's article where its law numbers it so
        rights = list(privacy_request.rights.all())
        if len(rights) < 2:
            return  # refusing the only right asked is rejecting the request: the Reject form
        # A pair of fields per right asked: granted, or refused on a ground with the reasons the letter gives.
        for right in rights:
            # Offered only the grounds the service accepts against this right (an objection to direct marketing,
            # Art. 21(3); a ground of one right's article, Art. 17(3), 20(4), 21(1); a CCPA request to limit, CCPA
            # Regulations § 7027(e) and (f)), and not one that refuses the whole request (an unverified identity).
            grounds = [
                (value, label_in_letter(label, privacy_request.regime)) for value, label in REFUSABLE_GROUNDS
                if ground_can_refuse(value, right) and not refuses_only_the_whole_request(value, rights)
                and value != RejectionGround.AGENT_AUTHORITY_NOT_SHOWN  # the whole request too (services.agents)
            ]
            self.fields[f"refusal_ground_{right.right}"] = forms.ChoiceField(
                label=right.right_for_staff(), choices=[("", _("Granted")), *grounds], required=False
            )
            self.fields[f"refusal_explanation_{right.right}"] = forms.CharField(
                # Named with its right: a screen reader reads the label alone, and the form has one per right.
                label=gettext("Why “%(right)s” is refused, for the subject") % {"right": right.right_for_staff()},
                widget=forms.Textarea(attrs={"rows": 2}), max_length=TEXT_MAX_CHARS, required=False,
            )
            self.refusable.append(right.right)

    def clean(self):
        cleaned = super().clean()
        for right in self.refusable:
            ground, explanation = cleaned.get(f"refusal_ground_{right}"), cleaned.get(f"refusal_explanation_{right}", "").strip()
            if ground in GROUNDS_TO_EXPLAIN and not explanation:
                self.add_error(
                    f"refusal_explanation_{right}",
                    _("Explain to the subject why this reason applies: the letter must give the reasons (Art. 12(4)).")
                    if cites_gdpr_articles(self.regime)
                    else _("Explain to the subject why this reason applies: the letter must give the reasons."),
                )
            if explanation and not ground:
                # Written for the letter, and left out of it without a word: the right may be meant refused.
                self.add_error(
                    f"refusal_explanation_{right}",
                    _("This right is marked granted: choose the legal reason for refusing it, or clear this text."),
                )
        return cleaned

    def refused(self) -> list[tuple[str, str, str]]:
        """(right, ground, explanation) of each right marked refused."""
        return [
            (right, self.cleaned_data[f"refusal_ground_{right}"], self.cleaned_data[f"refusal_explanation_{right}"])
            for right in self.refusable
            if self.cleaned_data[f"refusal_ground_{right}"]
        ]


class RejectForm(forms.Form):
    ground = forms.ChoiceField(
        label=_("Legal reason"),
        choices=REFUSABLE_GROUNDS,
        help_text=_("Holding no data about them is an answer, not a refusal: complete the request and say so in the letter."),
    )
    explanation = forms.CharField(
        label=_("Explanation for the subject"), widget=forms.Textarea(attrs={"rows": 4}), max_length=TEXT_MAX_CHARS, required=False,
        help_text=_(
            "The letter gives the subject these reasons. “Identity could not be verified” only once the subject was "
            "asked for information that identifies them (Request information): say what was "
            "asked and why what they sent is not enough."
        ),
    )

    def __init__(self, *args, privacy_request, **kwargs):
        super().__init__(*args, **kwargs)
        # Offered only the grounds the service accepts against every right asked (handling.request_reject).
        rights = list(privacy_request.rights.all())
        self.fields["ground"].choices = [
            (value, label_in_letter(label, privacy_request.regime)) for value, label in REFUSABLE_GROUNDS
            if all(ground_can_refuse(value, right) for right in rights)
            # Only a request an agent filed can lack an agent's authority (agents.rejection_refusal).
            and (value != RejectionGround.AGENT_AUTHORITY_NOT_SHOWN or privacy_request.filed_by_agent)
        ]


class ForwardForm(forms.Form):
    """Closing a request as forwarded to the controller of the data (handling.request_forward)."""

    controller = forms.CharField(
        label=_("Controller"), max_length=200,
        help_text=_("The organisation for which we process the data, which decides how it is used: usually the customer whose service the subject uses."),
    )
    contact = forms.CharField(
        label=_("How the subject can contact it"), widget=forms.Textarea(attrs={"rows": 3}), max_length=2000,
        help_text=_("Its privacy contact: a postal address, an email address or a website. It goes into the letter."),
    )
    forwarded_on = forms.DateField(label=_("Forwarded on"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Set here, not on the class: the date input's format (HTML_DATE) is declared further down, and today is today.
        self.fields["forwarded_on"].widget = forms.DateInput(attrs={"type": "date"}, format=HTML_DATE)
        self.fields["forwarded_on"].initial = timezone.localdate


class FeeForm(forms.Form):
    amount = forms.DecimalField(label=_("Fee"), min_value=Decimal("0.01"), max_digits=8, decimal_places=2)
    explanation = forms.CharField(
        label=_("Why the request is manifestly unfounded or excessive, and how the fee was worked out"),
        widget=forms.Textarea(attrs={"rows": 4}), max_length=TEXT_MAX_CHARS,
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["amount"].help_text = gettext("In %(currency)s, based on the administrative costs of answering.") % {
            "currency": settings.FEE_CURRENCY
        }


class BulkForm(forms.Form):
    ACTIONS = [
        ("assign", _("Assign to")),
        ("start_identity_check", _("Start identity check")),
        ("start_work", _("Start work")),
        ("complete", _("Complete (standard letter)")),
    ]
    action = forms.ChoiceField(choices=ACTIONS)
    references = forms.MultipleChoiceField(required=False)
    everything = forms.BooleanField(required=False, help_text=_("Apply to every request matching the filter."))
    assignee = forms.ModelChoiceField(queryset=assignable_users(), required=False, to_field_name="username")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["assignee"].queryset = assignable_users()
        # References are checked against the database by the view, not a list of choices.
        self.fields["references"].valid_value = lambda value: True

    def clean(self):
        cleaned = super().clean()
        # A queue row's box sends its reference and the status the row showed ("DSR-2026-00042 new"): the
        # action applies to the request as the user saw it (handling.bulk_apply skips one changed since).
        cleaned["shown_status"] = {}
        references = []
        for value in cleaned.get("references") or []:
            reference, _space, status = value.partition(" ")
            references.append(reference)
            if status:
                cleaned["shown_status"][reference] = status
        cleaned["references"] = references
        if not cleaned.get("references") and not cleaned.get("everything"):
            raise forms.ValidationError(_("Select some requests, or choose every request matching the filter."))
        if cleaned.get("action") == "assign" and not cleaned.get("assignee"):
            self.add_error("assignee", _("Choose who gets the requests."))
        return cleaned


# The configuration forms' field labels in the reader's language (the models' field names are English).
# One table for all of them: a field has the same name, and label, wherever it appears.
# The value of an <input type="date">: browsers take ISO dates only, not the language's own format
# (a French "27/11/2036" shows an empty field, which then fails as required).
HTML_DATE = "%Y-%m-%d"

FIELD_LABELS = {
    "active": _("Active"),
    "assign_team": _("Assign to team"),
    "assign_user": _("Assign to person"),
    "automated_decisions": _("Automated decisions"),
    "basis": _("Legal basis for keeping it"),
    "body": _("Text"),
    "category": _("Data category"),
    "channel": _("Channel"),
    "connection_env": _("Environment variable with the connection URL"),
    "connection_url": _("Connection URL"),
    "connector": _("Connector"),
    "country": _("Country"),
    "dated_by": _("Date field"),
    "description": _("Description"),
    "erase_method": _("How erasure is done"),
    "erase_strategy": _("How erasure treats it"),
    "fixed_text": _("Fixed text"),
    "ground": _("Ground"),
    "http_auth_header": _("Authentication header"),
    "identity_field": _("Identity field"),
    "identity_kind": _("Searched by"),
    "keep_months": _("Keep the last months only"),
    "label": _("Name in letters"),
    "language": _("Language"),
    "legal_basis": _("Legal basis"),
    "masked_fields": _("Masked fields"),
    "members": _("Members"),
    "name": _("Name"),
    "notification_email": _("Notification email"),
    "organisation": _("Organisation"),
    "origin": _("Origin of the data"),
    "owner": _("Owner"),
    "portable": _("Portable"),
    "position": _("Position"),
    "purpose": _("Purpose"),
    "purposes": _("Purposes"),
    "pseudonyms_only": _("Only the codes that replace fields"),
    "query": _("Query"),
    "record_key": _("Record key"),
    "rectifiable": _("Can be corrected"),
    "regime": _("Regime"),
    "request_type": _("Request type"),
    "restriction_flag": _("Restriction flag"),
    "restriction_list": _("Restriction list"),
    "retention": _("Retention"),
    "safeguards": _("Safeguards"),
    "slug": _("Short name (slug)"),
    "source": _("Source system"),
    "subject": _("Subject line"),
    "table": _("Table"),
    "third_country": _("Third country"),
    "type": _("Type"),
    "until": _("Until"),
}


class AssignmentRuleForm(forms.ModelForm):
    class Meta:
        model = AssignmentRule
        labels = FIELD_LABELS
        fields = ["position", "name", "active", "request_type", "regime", "channel", "organisation", "assign_team", "assign_user"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["assign_user"].queryset = assignable_users()
        self.fields["organisation"].queryset = Organisation.objects.all()
        self.fields["assign_team"].queryset = Team.objects.all()
        self.fields["request_type"].choices = [("", "---------"), *RIGHTS_THE_SUBJECT_ASKS.items()]


class ResponseTemplateForm(forms.ModelForm):
    class Meta:
        model = ResponseTemplate
        labels = FIELD_LABELS
        fields = ["purpose", "request_type", "language", "subject", "body"]
        widgets = {"body": forms.Textarea(attrs={"rows": 10})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["request_type"].choices = [("", "---------"), *RIGHTS_THE_SUBJECT_ASKS.items()]


def refuse_same_but_for_case(form, field: str) -> None:
    """An error on `field` when another row holds the same value in other capitals ("CRM" beside "crm"): two
    sources' folders would merge when a package is opened on Windows or macOS, and two teams read as one.
    (The same value exactly is the model's unique check.)"""
    value = form.cleaned_data.get(field)
    others = form._meta.model.objects.exclude(pk=form.instance.pk).exclude(**{field: value})
    if value and others.filter(**{f"{field}__iexact": value}).exists():
        form.add_error(field, _("%(value)s is already used with other capitals: choose another.") % {"value": value})


class TeamForm(forms.ModelForm):
    class Meta:
        model = Team
        labels = FIELD_LABELS
        fields = ["name", "members"]
        widgets = {"members": forms.CheckboxSelectMultiple}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["members"].queryset = assignable_users()

    def clean(self):
        cleaned = super().clean()
        refuse_same_but_for_case(self, "name")
        return cleaned


def invitation_language_field() -> forms.ChoiceField:
    # Not required: a form posted without it (a script, an older page) gets the inviter's own language.
    return forms.ChoiceField(
        label=_("Language of the invitation"),
        choices=settings.LANGUAGES,
        required=False,
        help_text=_("The email with the link to set up the account is written in it."),
    )


class InvitationForm(forms.Form):
    """Invite an account's owner to set up again: in which language."""

    invitation_language = invitation_language_field()


# Each account's setup link goes to its own address, which only its owner reads.
EMAIL_SHARED = _("Another staff account uses this email address: each account needs its own, where only its owner receives the setup link.")


class StaffUserForm(forms.ModelForm):
    # A new account is a Handler unless the DPO chooses more (or less).
    role = forms.ChoiceField(label=_("Role"), choices=list(roles.ROLE_LABELS.items()), initial=roles.HANDLER)
    teams = forms.ModelMultipleChoiceField(
        label=_("Teams"), queryset=Team.objects.all(), required=False, widget=forms.CheckboxSelectMultiple
    )
    invitation_language = invitation_language_field()

    class Meta:
        model = get_user_model()
        fields = ["username", "email", "first_name", "last_name", "is_active"]
        help_texts = {"email": _("A new account's owner gets the link to set their password and authenticator here.")}

    def __init__(self, *args, editor, **kwargs):
        """`editor`: the signed-in DPO, who may not lock themselves out."""
        super().__init__(*args, **kwargs)
        self.editor = editor
        self.fields["email"].required = True
        if self.instance.pk:
            self.fields["role"].initial = roles.assigned_role(self.instance) or roles.HANDLER
            self.fields["teams"].initial = list(self.instance.privacy_teams.all())
        if self.instance.pk and self.instance.is_active:
            # Saving an active account invites nobody (its invitation form asks for the language).
            del self.fields["invitation_language"]

    def clean_username(self):
        # The database tells "Handler" from "handler"; the people who read the queue and the trail do not.
        username = self.cleaned_data["username"]
        accounts = get_user_model().objects.filter(username__iexact=username)
        if self.instance.pk is not None:
            accounts = accounts.exclude(pk=self.instance.pk)
        if accounts.exists():
            raise self.instance.unique_error_message(get_user_model(), ["username"])
        return username

    def clean_email(self):
        email = self.cleaned_data["email"]
        if staff_setup.email_shared(email, account=self.instance):
            raise forms.ValidationError(EMAIL_SHARED)
        return email

    def clean_role(self):
        role = self.cleaned_data["role"]
        if self.instance.is_superuser and role != roles.DPO:
            # A superuser is a DPO whatever its groups (roles.assigned_role): the change would be saved, and
            # audited, without taking effect.
            raise forms.ValidationError(_("This account is a superuser, which is always a DPO: its role cannot change here."))
        return role

    def clean(self):
        """Call inside the transaction that saves: the last-DPO check locks the DPOs' accounts until it commits."""
        cleaned = super().clean()
        if self.instance.pk is None or not self.instance.is_active or roles.assigned_role(self.instance) != roles.DPO:
            return cleaned  # the account is no DPO now: no change to it leaves fewer DPOs
        # A field that failed its own checks is missing from cleaned: nothing to refuse for it.
        switched_off = "is_active" in cleaned and not cleaned["is_active"]
        demoted = "role" in cleaned and cleaned["role"] != roles.DPO
        if self.instance.pk == self.editor.pk:
            # Signed out at once with no way back in; another DPO can do it if it must be done.
            if switched_off:
                self.add_error("is_active", _("You cannot switch off your own account: another DPO can."))
            if demoted:
                self.add_error("role", _("You cannot take the DPO role from your own account: another DPO can."))
        elif (switched_off or demoted) and not self.another_active_dpo():
            # Nobody could manage staff, rules or the inventory any more but from a shell on the server.
            self.add_error(
                "is_active" if switched_off else "role",
                _("This is the last active DPO account: make another account a DPO first."),
            )
        return cleaned

    def another_active_dpo(self) -> bool:
        """Whether an active DPO other than this account remains. Two DPOs each switching the other off at
        once would both see the other remain: the DPOs' rows are locked first, so the second waits for the
        first to commit, and its count (a new query, which sees what was committed) finds the first's change.
        Locked in one order (pk) by every page, so that two cannot deadlock."""
        list(get_user_model().objects.select_for_update().filter(pk__in=roles.active_dpos().values("pk")).order_by("pk"))
        return roles.active_dpos().exclude(pk=self.instance.pk).exists()


def token_field(*, autofocus: bool) -> forms.CharField:
    attrs = {"autocomplete": "one-time-code", "inputmode": "numeric", **({"autofocus": True} if autofocus else {})}
    return forms.CharField(label=_("Code from your authenticator app"), max_length=8, widget=forms.TextInput(attrs=attrs))


class TokenForm(forms.Form):
    token = token_field(autofocus=True)


class AccountSetupForm(SetPasswordForm):
    """The password the account's owner chooses, and the first code of the authenticator they scanned.

    With `password_kept` (a password chosen on this page earlier passed the checks), both password
    fields may be left empty to keep that one; typing in them chooses another."""

    token = token_field(autofocus=False)

    def __init__(self, user, *args, password_kept: bool = False, **kwargs):
        super().__init__(user, *args, **kwargs)
        self.password_kept = False
        if password_kept:
            self.keep_password()

    def keep_password(self) -> None:
        """Show the page again for a password already chosen: its fields optional, the code asked for."""
        self.password_kept = True
        for name in ("new_password1", "new_password2"):
            self.fields[name].required = False
        self.fields["token"].widget.attrs["autofocus"] = True

    def clean(self):
        if self.password_kept:
            # The checks below skip a field left empty: a password typed once only would go unchecked.
            typed = {name: self.cleaned_data.get(name) for name in ("new_password1", "new_password2")}
            if any(typed.values()):
                for name, value in typed.items():
                    if not value:
                        self.add_error(name, self.fields[name].error_messages["required"])
        return super().clean()

    def chosen_password(self) -> str:
        """The new password typed in both fields, if it passed the checks; "" otherwise."""
        if self.has_error("new_password1") or self.has_error("new_password2"):
            return ""
        return self.cleaned_data.get("new_password1") or ""


def _is_web_address(url: str) -> bool:
    """An http(s):// address with a host: the only kind an HTTP connector can call (not ftp://, not a bare host)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("https", "http") and bool(parts.hostname)


class SourceSystemForm(forms.ModelForm):
    class Meta:
        model = SourceSystem
        labels = FIELD_LABELS
        fields = [
            "name", "slug", "description", "active", "connector", "identity_kind", "connection_url", "connection_env",
            "http_auth_header", "restriction_list", "owner", "purposes", "legal_basis", "retention", "origin",
            "automated_decisions",
        ]
        widgets = {name: forms.Textarea(attrs={"rows": 2}) for name in ("description", "purposes", "retention", "origin", "automated_decisions")}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["owner"].queryset = assignable_users()

    def clean(self):
        cleaned = super().clean()
        refuse_same_but_for_case(self, "slug")
        connector = cleaned.get("connector")
        if connector == ConnectorKind.SQL and not (cleaned.get("connection_url") or cleaned.get("connection_env")):
            self.add_error("connection_url", _("A SQL source needs a database URL, or the variable that holds it."))
        if connector == ConnectorKind.HTTP and not cleaned.get("connection_url"):
            self.add_error("connection_url", _("An HTTP source needs its base URL."))
        elif connector == ConnectorKind.HTTP and not _is_web_address(cleaned["connection_url"]):
            self.add_error("connection_url", _("An HTTP source's base URL starts with https://, e.g. https://crm.example/api."))
        if connector == ConnectorKind.MANUAL and not cleaned.get("owner"):
            self.add_error("owner", _("A manual source needs the staff member who uploads its extracts."))
        env = cleaned.get("connection_env") or ""
        if env and not env.startswith(SOURCE_ENV_PREFIX):
            self.add_error("connection_env", _("Name the variable %(prefix)s..., e.g. %(prefix)sBILLING_DB_URL.") % {"prefix": SOURCE_ENV_PREFIX})
        if carries_secret(cleaned.get("connection_url") or ""):
            self.add_error("connection_url", _("Put passwords in the environment variable, never in the inventory."))
        return cleaned  # the model's clean() checks the restriction list against the connector


def sql_table_columns(source, table: str) -> list[str] | None:
    """The columns of an SQL source's `table`, [] when its database has no such table; None when that cannot be
    checked now: another kind of source, a name its own validator refuses, or a database out of reach (each dry run
    checks then, and says what is missing)."""
    if source.connector != ConnectorKind.SQL or not validate_sql_name.regex.search(table):
        return None
    try:
        return connector_for(source).table_columns(table) or []
    except SourceError:
        return None


def no_such_column(table: str, column: str, columns: list[str]) -> str:
    return _("The table %(table)s has no column %(column)s. Its columns: %(columns)s.") % {
        "table": table, "column": column, "columns": ", ".join(columns)
    }


class SourceCategoryForm(forms.ModelForm):
    class Meta:
        model = SourceCategory
        labels = FIELD_LABELS
        fields = [
            "source", "slug", "category", "description", "query", "masked_fields", "portable",
            "table", "identity_field", "record_key", "erase_method", "restriction_flag",
        ]
        widgets = {"query": forms.Textarea(attrs={"rows": 3}), "description": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A post that predates the field (a bookmarked or scripted form) keeps the model's default. (The admin
        # gives an auditor the form without its fields: they only read.)
        if "erase_method" in self.fields:
            self.fields["erase_method"].required = False

    def clean_erase_method(self):
        return self.cleaned_data["erase_method"] or EraseMethod.DELETE

    def clean(self):
        cleaned = super().clean()
        source, query = cleaned.get("source"), cleaned.get("query") or ""
        if source and source.connector == ConnectorKind.SQL and ":identities" not in query:
            self.add_error("query", _("A SQL query must select by :identities, e.g. WHERE email IN :identities."))
        if source and source.connector == ConnectorKind.HTTP and "{identity}" not in query:
            self.add_error("query", _("An HTTP path must contain {identity}, e.g. /subscribers/{identity}/records."))
        # (A source being added in the admin, with its categories inline, has none saved yet.)
        if source and source.pk and source.connector == ConnectorKind.MANUAL and source.categories.exclude(pk=self.instance.pk).exists():
            # Its owner uploads one extract per export, masked by one category's list of fields.
            self.add_error("source", _("A manual source has one data category: its owner uploads one extract."))
        if source and cleaned.get("portable") and source.legal_basis not in PORTABLE_LEGAL_BASES:
            # Art. 20(1)(a): a portability package would leave it out anyway; ticked, the inventory would say otherwise.
            self.add_error(
                "portable",
                _("Only data processed on consent or a contract is portable (Art. 20(1)(a)); this source's legal basis is %(basis)s.")
                % {"basis": in_sentence(source.get_legal_basis_display())},
            )
        # Erasure, rectification and restriction change rows by table and identity column: one without the other cannot work.
        if bool(cleaned.get("table")) != bool(cleaned.get("identity_field")):
            self.add_error("identity_field", _("Give both the table and its identity column, or neither."))
        elif source and cleaned.get("table") and {"source", "table", "identity_field", "restriction_flag"} & set(self.changed_data):
            # Only what changed: the admin saves every inline category of a source at once, each a trip to its database.
            self._check_table(source, cleaned)
        # The column the source is searched by identifies the subject: erasure may not keep it (SourceField.clean).
        identity_field = cleaned.get("identity_field")
        if (
            identity_field and self.instance.pk and "identity_field" in self.changed_data
            and self.instance.fields.filter(name=identity_field, erase_strategy=EraseStrategy.KEEP).exists()
        ):
            self.add_error(
                "identity_field",
                _("Erasure keeps the field %(field)s, which would then identify the subject: set it to be emptied or "
                  "replaced first.") % {"field": identity_field},
            )
        return cleaned

    def _check_table(self, source, cleaned) -> None:
        """The table and columns an SQL source's erasure, rectification and restriction change must exist: a
        misspelt name would stop every dry run on the category until someone found it."""
        table = cleaned["table"]
        columns = sql_table_columns(source, table)
        if columns is None:
            return
        if not columns:
            self.add_error("table", _("The source's database has no table %(table)s.") % {"table": table})
            return
        for name in ("identity_field", "restriction_flag"):
            if cleaned.get(name) and cleaned[name] not in columns:
                self.add_error(name, no_such_column(table, cleaned[name], columns))


class RecipientForm(forms.ModelForm):
    # Declared to assume https for a URL typed without a scheme (Django's default is http until 6.0).
    notification_webhook_url = forms.URLField(
        label=_("Notification webhook URL"), max_length=500, required=False, assume_scheme="https",
        help_text=Recipient._meta.get_field("notification_webhook_url").help_text,
    )

    class Meta:
        model = Recipient
        labels = FIELD_LABELS
        fields = ["source", "name", "country", "third_country", "safeguards", "notification_email", "notification_webhook_url"]
        widgets = {"safeguards": forms.Textarea(attrs={"rows": 2})}

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("third_country") and not (cleaned.get("safeguards") or "").strip():
            self.add_error("safeguards", _("A recipient outside the EU/EEA needs its transfer safeguard (Art. 15(2))."))
        return cleaned

    def clean_notification_webhook_url(self):
        url = self.cleaned_data["notification_webhook_url"]
        if url:
            check_url(url)  # the notice carries personal data: HTTPS only
        return url


def _show_main_texts(form: forms.ModelForm, item, translated_from: dict[str, str]) -> None:
    """Each field of a translation quotes the main text it translates, so the DPO needs no second window, and
    says whether it changed since the translation was saved (`translated_from`: the digests it was saved with)."""
    digests = item.main_text_digests()
    for name, field in form.fields.items():
        main_text = _("Main text: %(text)s") % {"text": getattr(item, name) or "—"}
        if form.instance.pk and getattr(form.instance, name) and translated_from.get(name) != digests[name]:
            main_text = _("Changed since this translation was saved. %(main_text)s") % {"main_text": main_text}
        if not field.required:
            main_text = _("Left empty, the subject reads the main text. %(main_text)s") % {"main_text": main_text}
        field.help_text = escape(main_text)  # Django shows help texts unescaped


class TranslationForm(forms.ModelForm):
    """An inventory item's subject-facing texts (its TRANSLATED_FIELDS) in one other language."""

    # Saved with the fields the form edits (staff.views._edited_fields): the main texts it now translates.
    stamped_fields = ("translated_from",)

    def __init__(self, *args, item, language: str, **kwargs):
        super().__init__(*args, **kwargs)
        setattr(self.instance, self.instance.ITEM_FIELD, item)
        self.instance.language = language
        _show_main_texts(self, item, translated_from=self.instance.translated_from)
        self.instance.translated_from = item.main_text_digests()


def _text_areas(fields: tuple[str, ...]) -> dict:
    return {name: forms.Textarea(attrs={"rows": 2}) for name in fields}


class SourceSystemTranslationForm(TranslationForm):
    class Meta:
        model = SourceSystemTranslation
        labels = FIELD_LABELS
        fields = list(SourceSystem.TRANSLATED_FIELDS)
        widgets = _text_areas(SourceSystem.TRANSLATED_FIELDS)


class SourceCategoryTranslationForm(TranslationForm):
    """As the access report shows it."""

    class Meta:
        model = SourceCategoryTranslation
        labels = FIELD_LABELS
        fields = list(SourceCategory.TRANSLATED_FIELDS)
        widgets = _text_areas(SourceCategory.TRANSLATED_FIELDS)


class RecipientTranslationForm(TranslationForm):
    class Meta:
        model = RecipientTranslation
        labels = FIELD_LABELS
        fields = list(Recipient.TRANSLATED_FIELDS)
        widgets = _text_areas(Recipient.TRANSLATED_FIELDS)


class LegalHoldTranslationForm(TranslationForm):
    """As the completion letter quotes it."""

    class Meta:
        model = LegalHoldTranslation
        labels = FIELD_LABELS
        fields = list(LegalHold.TRANSLATED_FIELDS)
        widgets = _text_areas(LegalHold.TRANSLATED_FIELDS)


class SuppressionPurposeTranslationForm(TranslationForm):
    """As the completion letter names the list's purpose."""

    class Meta:
        model = SuppressionPurposeTranslation
        labels = FIELD_LABELS
        fields = list(SuppressionPurpose.TRANSLATED_FIELDS)


class SourceFieldTranslationForm(TranslationForm):
    """As the completion letter names the field."""

    class Meta:
        model = SourceFieldTranslation
        labels = FIELD_LABELS
        fields = list(SourceField.TRANSLATED_FIELDS)


# The field types an erasure may write a replacement text or a keyed hash into.
TEXT_TYPES = (FieldType.TEXT, FieldType.EMAIL, FieldType.PHONE)


class SourceFieldForm(forms.ModelForm):
    class Meta:
        model = SourceField
        labels = FIELD_LABELS
        fields = ["category", "name", "label", "type", "erase_strategy", "fixed_text", "rectifiable"]

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("erase_strategy") == EraseStrategy.FIXED and not cleaned.get("fixed_text"):
            self.add_error("fixed_text", _("Give the text that replaces the value on erasure."))
        if cleaned.get("erase_strategy") in (EraseStrategy.FIXED, EraseStrategy.HASH) and cleaned.get("type") not in TEXT_TYPES:
            # The erasure would write text into a number or a date column: the source would refuse it.
            self.add_error("erase_strategy", _("Only a text field can be replaced by a text or a hash: empty it or keep it."))
        category, name = cleaned.get("category"), cleaned.get("name")
        if category and name and category.table and {"category", "name"} & set(self.changed_data):
            columns = sql_table_columns(category.source, category.table)
            if columns and name not in columns:
                self.add_error("name", no_such_column(category.table, name, columns))
        return cleaned


class LegalHoldForm(forms.ModelForm):
    class Meta:
        model = LegalHold
        labels = FIELD_LABELS
        fields = ["source", "category", "ground", "basis", "until", "keep_months", "dated_by", "pseudonyms_only"]
        widgets = {"basis": forms.Textarea(attrs={"rows": 2}), "until": forms.DateInput(attrs={"type": "date"}, format=HTML_DATE)}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The model's range (1 to MAX_HOLD_MONTHS), not the column's (from 0): one message for 0 or -3.
        self.fields["keep_months"] = LegalHold._meta.get_field("keep_months").formfield(
            min_value=1, max_value=MAX_HOLD_MONTHS, label=FIELD_LABELS["keep_months"]
        )
        source = self.initial.get("source") or (self.instance.source if self.instance.source_id else None)
        if source is not None and not self.is_bound:
            self.fields["category"].queryset = SourceCategory.objects.filter(source=source)

    def clean(self):
        cleaned = super().clean()
        source, category = cleaned.get("source"), cleaned.get("category")
        if source and category and category.source_id != source.id:
            self.add_error("category", _("Choose a category of this source, or none for the whole source."))
        elif category and cleaned.get("keep_months") and cleaned.get("dated_by"):
            self._check_date_field(category, cleaned["dated_by"])
        until = cleaned.get("until")
        if until and "until" in self.changed_data and until < timezone.localdate():
            self.add_error("until", _("This date has passed: a hold that has ended keeps nothing."))
        return cleaned

    def _check_date_field(self, category, dated_by: str) -> None:
        """A date field the category's records do not have would stop every erasure's dry run in the source:
        refused here, where an SQL source's query names its columns. An HTTP source's records say which fields
        they have only when read (the dry run checks them), and a source that cannot be reached now is checked
        then too."""
        if category.source.connector != ConnectorKind.SQL or not validate_field_name.regex.search(dated_by):
            return  # not a plain name: the field's own validator says so
        try:
            columns = connector_for(category.source).columns(category)
        except SourceError:
            return
        if dated_by not in columns:
            self.add_error(
                "dated_by",
                _("The records of %(category)s have no field %(field)s. Their fields: %(fields)s.")
                % {"category": category.slug, "field": dated_by, "fields": ", ".join(columns)},
            )


class SuppressionPurposeForm(forms.ModelForm):
    identity_kinds = forms.MultipleChoiceField(
        label=_("Looked up by"),
        choices=IdentityKind.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text=_(
            "The identifiers the purpose's systems find people by. Only those go on the list; "
            "none ticked: every kind."
        ),
    )

    class Meta:
        model = SuppressionPurpose
        labels = FIELD_LABELS
        fields = ["name", "slug", "description", "identity_kinds"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    def clean(self):
        cleaned = super().clean()
        refuse_same_but_for_case(self, "slug")
        return cleaned


class PurposeChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, purpose):
        if not purpose.identity_kinds:
            return purpose.name
        kinds = ", ".join(in_sentence(label) for label in purpose.identity_kind_labels)
        return _("%(purpose)s (looked up by %(kinds)s)") % {"purpose": purpose.name, "kinds": kinds}


class SuppressForm(forms.Form):
    """The lists one right asked for covers, as staff read the subject's words: they are recorded, and the subject
    is added to each that one of their verified identifiers (any they gave, for a CCPA request to limit:
    suppression.verified_only) can be used for (suppression.suppress)."""

    right = forms.CharField(widget=forms.HiddenInput)
    purposes = PurposeChoiceField(
        label=_("Lists of what the subject named: add their verified identifiers to them"),
        queryset=SuppressionPurpose.objects.all(),
        widget=forms.CheckboxSelectMultiple,
    )

    def __init__(self, *args, verified_only: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        if not verified_only:
            self.fields["purposes"].label = _("Lists of what the subject named: add the identifiers they gave to them")


class NotAppliedForm(forms.Form):
    """Why a list a right covers cannot be applied. The completion letter quotes the reason as it is typed."""

    right = forms.CharField(widget=forms.HiddenInput)
    purpose = forms.SlugField(widget=forms.HiddenInput)
    reason = forms.CharField(
        label=_("Why it cannot be applied (quoted in the letter to the subject)"),
        widget=forms.Textarea(attrs={"rows": 2}),
        max_length=2000,
    )

    def __init__(self, *args, language: str, **kwargs):
        super().__init__(*args, **kwargs)
        # The letter is in the request's language: a reason in the staff member's own would sit in it untranslated.
        self.fields["reason"].help_text = gettext(
            "Write it in %(language)s, the language of the request. The supervisory authority may also ask to see it."
        ) % {"language": LANGUAGE_NAMES_IN_SENTENCE[language]}
