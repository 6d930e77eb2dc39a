"""Forms for the public request form, the re-send page and staff intake.

All validation happens here, on the server; the browser's own checks are a
convenience only.
"""

import datetime
import unicodedata
import uuid

from django import forms
from django.conf import settings
from django.core import validators
from django.utils import formats, timezone
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _

from requests_app.models import (
    RESTRICTION_GROUNDS_THE_SUBJECT_GIVES,
    RESTRICTION_GROUNDS_TO_AN_AGENT,
    RIGHTS_THE_SUBJECT_ASKS,
    TEXT_MAX_CHARS,
    AgentCapacity,
    Channel,
    PrivacyRequest,
    Regime,
    Relationship,
    RequestType,
    RestrictionGround,
    rights_mask,
)
from requests_app.phones import to_e164
from requests_app.services.intake import RightDetails

# The fields each right needs, and the message when one is missing.
RIGHT_DETAIL_FIELDS = {
    RequestType.RECTIFICATION: {
        "rectification_data": _("Tell us which data is incorrect or incomplete."),
        "rectification_value": _("Tell us the corrected or completed value."),
    },
    RequestType.RESTRICTION: {"restriction_ground": _("Choose the ground for restricting the processing.")},
    RequestType.OBJECTION: {"objection_processing": _("Tell us which processing or purpose you object to.")},
    RequestType.WITHDRAW_CONSENT: {"consent_withdrawn": _("Tell us which consent you withdraw.")},
}

# The details a right may take but need not: portability's other organisation, to send the data to directly
# (Art. 20(2)), given both or neither (RequestForm._check_transmission).
OPTIONAL_RIGHT_DETAIL_FIELDS = {RequestType.PORTABILITY: ("recipient_name", "recipient_email")}

# The error code of a right's details given without the right (the API words it for a portal: no box to tick).
DETAIL_WITHOUT_ITS_RIGHT = "detail_without_its_right"
# The error code of the other organisation's address that is one of the request's own (the API words it too).
OWN_ADDRESS = "own_address"


def _detail_without_its_right(right: str, label: str, *, box: bool = False) -> forms.ValidationError:
    """The error of a right's details given without the right, naming the right's box by `label`, as the page shows it."""
    message = (
        _("You ticked this box without ticking “%(right)s”: tick that too, or untick this box.")
        if box
        else _("You filled this in without ticking “%(right)s”: tick it above, or empty this field.")
    )
    return forms.ValidationError(message, code=DETAIL_WITHOUT_ITS_RIGHT, params={"right": label, "code": right})

# One line under each right's box, in plain words: what the subject gets, so that rights with close names can be told
# apart (restriction from limiting use, access from portability, erasure from objection and consent withdrawal).
RIGHT_HINTS = {
    RequestType.ACCESS: _("A copy of your data, and what we use it for, who receives it, how long we keep it and where we got it."),
    RequestType.RECTIFICATION: _("We correct data about you that is wrong and complete what is missing."),
    RequestType.ERASURE: _("We delete your data, unless the law requires us to keep it (some call records, for example)."),
    RequestType.RESTRICTION: _("We keep your data stored but stop using it, for example while its accuracy or your objection is checked."),
    RequestType.PORTABILITY: _(
        "The data you gave us or that your use of our services produced, in a machine-readable file to take elsewhere."
    ),
    RequestType.OBJECTION: _(
        "We stop using your data for a purpose you object to: always for direct marketing, otherwise unless we have "
        "compelling grounds to go on."
    ),
    RequestType.WITHDRAW_CONSENT: _("We stop using your data for what you agreed to, such as sending you a newsletter."),
    RequestType.LIMIT_USE: _(
        "We limit our use and sharing of your data to what our services need (in California: your sensitive personal "
        "information)."
    ),
}


# The same, to someone acting for the subject (RequestForm.speaks_to_an_agent).
RIGHT_HINTS_TO_AN_AGENT = {
    RequestType.ACCESS: _("A copy of their data, and what we use it for, who receives it, how long we keep it and where we got it."),
    RequestType.RECTIFICATION: _("We correct data about them that is wrong and complete what is missing."),
    RequestType.ERASURE: _("We delete their data, unless the law requires us to keep it (some call records, for example)."),
    RequestType.RESTRICTION: _(
        "We keep their data stored but stop using it, for example while its accuracy or their objection is checked."
    ),
    RequestType.PORTABILITY: _(
        "The data they gave us or that their use of our services produced, in a machine-readable file to take elsewhere."
    ),
    RequestType.OBJECTION: _(
        "We stop using their data for a purpose they object to: always for direct marketing, otherwise unless we have "
        "compelling grounds to go on."
    ),
    RequestType.WITHDRAW_CONSENT: _("We stop using their data for what they agreed to, such as sending them a newsletter."),
    RequestType.LIMIT_USE: _(
        "We limit our use and sharing of their data to what our services need (in California: their sensitive personal "
        "information)."
    ),
}

# The public form's texts that speak of the data subject, as someone acting for them reads them ("their data", "the
# person you are acting for") where the subject reads the fields' own ("my data", "you"); the rights are
# models.RIGHTS_THE_SUBJECT_ASKS, the grounds for restriction models.RESTRICTION_GROUNDS_TO_AN_AGENT. Texts that read
# right to both ("Which data is incorrect or incomplete?", "How are you, or the person you are acting for, related to
# us?") have no entry. The status page reads an agent's answers back under these same questions
# (selectors.what_you_told_us).
LABELS_TO_AN_AGENT = {
    "objection_processing": _("Which processing or purpose does the person you are acting for object to?"),
    "consent_withdrawn": _("Which consent does the person you are acting for withdraw?"),
    "direct_marketing": _("Their objection is to direct marketing (including profiling for it)."),
}
HELP_TEXTS_TO_AN_AGENT = {
    "direct_marketing": _("We must then stop using their data for direct marketing, without exception (GDPR Art. 21(3))."),
    "recipient_name": _("For data portability: the name of the organisation that should receive their data from us."),
    "recipient_email": _(
        "We email it a link to download their data, and tell you when we did. You still get a copy of their data on "
        "the status page."
    ),
}


class CheckboxSelectMultiple(forms.CheckboxSelectMultiple):
    """Django's checkboxes, each with a line of help under its label (rendered by requests_app/_field.html), tied to
    its box by aria-describedby so that a screen reader reads it with the box. Named as Django's: the templates tell
    widgets apart by BoundField.widget_type, which is made from the class name."""

    def __init__(self, *args, hints: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self.hints = hints
        # Each box's label and hint in both voices, when the page can switch between them (RequestForm._speak).
        self.voices = {}

    def create_option(self, name, value, label, selected, index, subindex=None, attrs=None):
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        option["hint"] = self.hints.get(value, "")
        if option["hint"]:
            option["attrs"]["aria-describedby"] = f"{option['attrs']['id']}_hint"
        option["voices"] = self.voices.get(value)
        return option


class Select(forms.Select):
    """Django's select, each option with its label in both voices when the page can switch between them
    (RequestForm._speak), for forms.js. Named as Django's, as CheckboxSelectMultiple is."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.voices = {}

    def create_option(self, name, value, label, selected, index, subindex=None, attrs=None):
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        if value in self.voices:
            option["attrs"] |= {"data-subject-voice": self.voices[value]["subject"], "data-agent-voice": self.voices[value]["agent"]}
        return option


# The controller is in Brussels: the GDPR applies to everyone (Art. 3(1)), wherever they live; the
# other regimes add their own rules for the people they protect.
REGIME_CHOICES = [
    (Regime.GDPR, _("In the European Union, the EEA or elsewhere")),
    (Regime.UK_GDPR, _("In the United Kingdom")),
    (Regime.CCPA, _("In California, USA")),
    (Regime.LGPD, _("In Brazil")),
]


def validate_e164(value: str) -> str:
    """Return the number in E.164 form (phones.to_e164: Belgian without a country code), or raise a field error."""
    number = to_e164(value)
    if number is None:
        raise forms.ValidationError(
            _("Enter a valid phone number: with + and the country code, or a Belgian number."),
            code="invalid_phone",
        )
    return number


# Ours, not DRF's catalogue (which wins over Django's and speaks German informally, unlike these pages).
EMAIL_ERRORS = {"invalid": _("Enter a valid email address.")}


class NullCharacterFirst:
    """A field that refuses a NUL character alone: its format check would report it too (two errors for one
    mistake, as "Enter a valid email address.Null characters are not allowed.")."""

    def to_python(self, value):
        if isinstance(value, str) and "\x00" in value:
            raise forms.ValidationError(
                validators.ProhibitNullCharactersValidator.message, code=validators.ProhibitNullCharactersValidator.code
            )
        return super().to_python(value)


class RoutableEmailField(NullCharacterFirst, forms.EmailField):
    """An address we can write to. Django's validator also takes a domain without a dot, for its
    allowlist ("a@localhost"): mail to the subject would go to our own server, or nowhere."""

    # In place of Django's validator, not beside it: a bad address gets one error, not two.
    default_validators = [validators.EmailValidator(allowlist=[])]

    # RFC 5321 section 4.5.3.1.1: mail servers need not take a longer local part, and Django's validator does not
    # look. Said before the format check (validate runs before the validators), so that this is the one error.
    LOCAL_PART_MAX = 64

    def validate(self, value):
        super().validate(value)
        local = value.rpartition("@")[0]
        if len(local) > self.LOCAL_PART_MAX:
            raise forms.ValidationError(
                _(
                    "The part of the email address before the @ is too long: it can have %(limit)s characters at most. "
                    "Check the address."
                ),
                params={"limit": self.LOCAL_PART_MAX},
                code="local_part_too_long",
            )


class IPAddressField(NullCharacterFirst, forms.GenericIPAddressField):
    pass


class MultilineField(forms.CharField):
    """A textarea's text, its line breaks counted once against the length limit, as the browser
    counts them against `maxlength` (then sends each as CRLF), and stored as LF."""

    def to_python(self, value):
        return super().to_python(value).replace("\r\n", "\n")


# Characters that reorder how the text around them is shown (embeddings, overrides, isolates), never part of a name:
# in one, staff would read its letters reversed ("\u202eAnna" shows "annA").
DIRECTION_CONTROLS = frozenset(map(chr, [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]))


class PersonNameField(forms.CharField):
    """A person's name, or their typed signature: some letters, in the order they are shown. Invisible characters
    alone (zero-width spaces) would file a request no one can read, search or hold as signed."""

    default_error_messages = {
        "no_letters": _("Type the name in letters."),
        "direction_controls": _("Remove the invisible characters that change the direction of the text."),
    }

    def validate(self, value):
        super().validate(value)
        if value in self.empty_values:
            return
        if DIRECTION_CONTROLS.intersection(value):
            raise forms.ValidationError(self.error_messages["direction_controls"], code="direction_controls")
        if not any(unicodedata.category(character).startswith("L") for character in value):
            raise forms.ValidationError(self.error_messages["no_letters"], code="no_letters")


# A postal address: a few lines (a name or "c/o", the street, the town, the country), each far shorter than these.
POSTAL_ADDRESS_MAX_CHARS = 500
POSTAL_ADDRESS_MAX_LINES = 8


class PostalAddressField(MultilineField):
    """An address to post letters to, as it goes on the envelope: its lines kept, each without the spaces around it,
    blank ones dropped. Nothing that prints as nothing or moves what follows: control characters (a tab, a form feed),
    line and paragraph separators, or the characters that reverse the direction of the text."""

    default_error_messages = {
        "control_characters": _("Remove the tabs and other invisible characters: type the address as it goes on the envelope."),
        "direction_controls": _("Remove the invisible characters that change the direction of the text."),
        "too_many_lines": _("An address has at most %(limit)s lines: put what goes together on one line."),
        "no_letters": _("Type the address in letters and digits."),
    }

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", POSTAL_ADDRESS_MAX_CHARS)
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 4}))
        super().__init__(**kwargs)

    def to_python(self, value):
        lines = (line.strip() for line in super().to_python(value).split("\n"))
        return "\n".join(line for line in lines if line)

    def validate(self, value):
        super().validate(value)
        if value in self.empty_values:
            return
        if any(unicodedata.category(character) in ("Cc", "Zl", "Zp") for character in value.replace("\n", "")):
            raise forms.ValidationError(self.error_messages["control_characters"], code="control_characters")
        if DIRECTION_CONTROLS.intersection(value):
            raise forms.ValidationError(self.error_messages["direction_controls"], code="direction_controls")
        if value.count("\n") >= POSTAL_ADDRESS_MAX_LINES:
            raise forms.ValidationError(
                self.error_messages["too_many_lines"], code="too_many_lines", params={"limit": POSTAL_ADDRESS_MAX_LINES}
            )
        if not any(character.isalnum() for character in value):
            raise forms.ValidationError(self.error_messages["no_letters"], code="no_letters")


# Who fills in the public form: the data subject, or someone acting for them (services.agents).
SUBJECT_FILES = "subject"
AGENT_FILES = "agent"


class RequestForm(forms.Form):
    """The data subject's request, or one made for them by an agent. Also the base of staff intake."""

    # Whether the form speaks to whoever fills it in, the subject ("Erase my data") or someone acting for them ("Erase
    # their data"), as they choose at its top (_speak). Staff intake speaks of the subject in its own words.
    speaks_to_whoever_files = True

    # What the form says to whoever fills it in: the subject here (an agent: _speak), staff in StaffIntakeForm.
    account_reference_error = _(
        "An account reference has letters or digits: enter it as your contract or invoice shows it, for example CUST-000123."
    )
    missing_detail_errors: dict = {}  # RIGHT_DETAIL_FIELDS' messages, unless replaced here

    rights = forms.MultipleChoiceField(
        label=_("What would you like us to do?"),
        choices=RequestType.choices,
        widget=CheckboxSelectMultiple(hints=RIGHT_HINTS),
        error_messages={"required": _("Choose at least one right.")},
    )
    rectification_data = forms.CharField(label=_("Which data is incorrect or incomplete?"), max_length=500, required=False)
    rectification_value = MultilineField(
        label=_("What should it say?"), max_length=2000, required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    restriction_ground = forms.ChoiceField(
        label=_("Why should the processing be restricted?"),
        choices=[("", _("Choose…")), *RestrictionGround.choices],
        required=False,
        widget=Select,
    )
    objection_processing = MultilineField(
        label=_("Which processing or purpose do you object to?"),
        max_length=2000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    direct_marketing = forms.BooleanField(
        label=_("My objection is to direct marketing (including profiling for it)."),
        required=False,
        help_text=_("We must then stop using your data for direct marketing, without exception (GDPR Art. 21(3))."),
    )
    consent_withdrawn = forms.CharField(
        label=_("Which consent do you withdraw?"), max_length=2000, required=False
    )
    # Art. 20(2): sent from us to another organisation, where technically feasible. Optional: the subject gets their own
    # copy on the status page either way.
    recipient_name = PersonNameField(
        label=_("Send the data directly to this organisation (optional)"),
        max_length=200,
        required=False,
        help_text=_("For data portability: the name of the organisation that should receive your data from us."),
    )
    recipient_email = RoutableEmailField(
        label=_("That organisation's email address"),
        max_length=254,
        required=False,
        error_messages=EMAIL_ERRORS,
        help_text=_("We email it a link to download your data, and tell you when we did. You still get your own copy."),
    )

    # The subject's unless an agent says otherwise: most people ask for themselves, and a form sent without the choice
    # (a page from before it was asked) was theirs. The page speaks to whoever it says (_speak).
    filed_by = forms.ChoiceField(
        label=_("Who is making this request?"),
        choices=[(SUBJECT_FILES, _("I am the person the data is about")), (AGENT_FILES, _("I am acting for them"))],
        initial=SUBJECT_FILES,
        required=False,
        widget=forms.RadioSelect,
    )
    # Someone acting for the subject (CCPA Regulations § 7063; a parent; a lawyer): required when they say so (clean).
    # Their own details, which the browser may fill in (WCAG 1.3.5).
    agent_name = PersonNameField(
        label=_("Your full name"), max_length=200, required=False, widget=forms.TextInput(attrs={"autocomplete": "name"})
    )
    agent_email = RoutableEmailField(
        label=_("Your email address"),
        max_length=254,
        required=False,
        error_messages=EMAIL_ERRORS,
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
        help_text=_("We send the confirmation link, the link to the request's status page and our letters here."),
    )
    agent_capacity = forms.ChoiceField(
        label=_("You are acting as"), choices=[("", _("Choose…")), *AgentCapacity.choices], required=False
    )
    agent_permission = forms.BooleanField(
        label=_(
            "I hold the signed permission of the person the data is about to make this request for them, or another "
            "legal authority to act for them (a power of attorney, parental responsibility). I agree that you may ask "
            "me for it and ask them to confirm it."
        ),
        required=False,
    )

    # The browser may fill in the person's own details (WCAG 1.3.5), and a phone shows its number pad. Not when an agent
    # fills in the form: these are then someone else's details (the browser offers its own anyway, harmlessly).
    subject_name = PersonNameField(
        label=_("Full name"), max_length=200, widget=forms.TextInput(attrs={"autocomplete": "name"})
    )
    # Required of the subject, optional for an agent (__init__): we write to the agent.
    subject_email = RoutableEmailField(
        label=_("Email address"),
        max_length=254,
        error_messages=EMAIL_ERRORS,
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
    subject_phone = forms.CharField(
        label=_("Phone number (optional)"),
        max_length=20,
        required=False,
        widget=forms.TextInput(attrs={"type": "tel", "autocomplete": "tel"}),
        help_text=_("With + and the country code, for example +32 2 234 56 78; a Belgian number may leave them out."),
    )
    customer_reference = forms.CharField(label=_("Customer account reference (optional)"), max_length=100, required=False)
    ip_address = IPAddressField(
        label=_("IP address (optional)"),
        required=False,
        help_text=_("If the request concerns visits to our website, the IP address used for them."),
    )
    # No answer chosen in advance: an end user's request may be forwarded to our customer as its controller, so a
    # question skipped must not read as one of the answers. These two ask about the subject, whoever fills the form
    # in: an agent must not answer for themselves (the regime, the deadline and the law cited depend on it), and the
    # page says so without JavaScript.
    relationship = forms.ChoiceField(
        label=_("How are you, or the person you are acting for, related to us?"),
        choices=[("", _("Choose…")), *Relationship.choices],
        error_messages={"required": _("Choose how you, or the person you are acting for, are related to us.")},
    )
    regime = forms.ChoiceField(
        label=_("Where do you, or the person you are acting for, live?"), choices=REGIME_CHOICES, initial=Regime.GDPR
    )
    # The replies go to whoever files (PrivacyRequest.correspondence_email): the reader's own language.
    language = forms.ChoiceField(label=_("Language for our replies"), choices=settings.LANGUAGES)
    description = MultilineField(
        label=_("Anything else we should know (optional)"),
        required=False,
        # The browser stops at the limit, rather than the server refusing a text already typed.
        widget=forms.Textarea(attrs={"rows": 4, "maxlength": TEXT_MAX_CHARS}),
        help_text=_("At most 10,000 characters."),
    )
    signature = PersonNameField(
        label=_("Signature (type your full name)"),
        max_length=200,
        error_messages={
            "required": _("Type your full name to sign the request."),
            "no_letters": _("Type your full name to sign the request."),
        },
    )
    confirm = forms.BooleanField(
        label=_(
            "I confirm that the information above is correct and that I am the person concerned, or acting for them as "
            "I said above."
        ),
        error_messages={"required": _("Please confirm before sending the request.")},
    )
    # A field people never see; bots fill it in.
    website = forms.CharField(required=False, label=_("Leave this field empty"))
    # New with each blank form: the same form sent twice at once (a retry on the way, two clicks) files one request.
    submission_key = forms.UUIDField(required=False, initial=uuid.uuid4, widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Replies in the language the page is shown in, unless the visitor chooses another. Switching the page's
        # language carries the form over, but not this field while it is left as the page set it (forms.js).
        page_language = (get_language() or "")[:2]
        self.fields["language"].initial = page_language if page_language in dict(settings.LANGUAGES) else settings.LANGUAGE_CODE
        self.fields["language"].widget.attrs["data-follows-page-language"] = True
        # The subject's address is required unless an agent files (we write to the agent): checked so, and marked so
        # for assistive technology (the form is novalidate: the browser blocks nothing, so a page without JavaScript
        # still lets an agent leave it empty). forms.js drops the mark when "I am acting for them" is chosen.
        self.fields["subject_email"].required = not self._filed_by_an_agent()
        self.speaks_to_an_agent = self.speaks_to_whoever_files and self._filed_by_an_agent()
        if self.speaks_to_whoever_files:
            self._speak()

    def _filed_by_an_agent(self) -> bool:
        """Whether the form says that an agent files: as it was sent, or, shown blank, as it is preset (?acting=1).
        Not read through its BoundField, which would keep the label of the moment (StaffIntakeForm relabels)."""
        if self.is_bound:
            return self.data.get(self.add_prefix("filed_by")) == AGENT_FILES
        return self.get_initial_for_field(self.fields["filed_by"], "filed_by") == AGENT_FILES

    def _speak(self) -> None:
        """The texts that speak of the subject in the voice of whoever fills the form in (speaks_to_an_agent), with
        both voices for the page, whose script switches between them in place as the choice at its top changes: a
        field's label and help (`voices`, on the field), each box's label and hint, each ground's label (on their
        widgets). The server's checks are the same in both voices; their messages that speak of the subject follow."""
        for name in LABELS_TO_AN_AGENT.keys() | HELP_TEXTS_TO_AN_AGENT.keys():
            field = self.fields[name]
            field.voices = {}
            for part, to_an_agent in (("label", LABELS_TO_AN_AGENT), ("help_text", HELP_TEXTS_TO_AN_AGENT)):
                if name in to_an_agent:
                    field.voices[part] = {"subject": getattr(field, part), "agent": to_an_agent[name]}
        rights, grounds = self.fields["rights"], self.fields["restriction_ground"]
        rights.widget.voices = {
            right: {
                "label": {"subject": label, "agent": RIGHTS_THE_SUBJECT_ASKS[right]},
                "hint": {"subject": RIGHT_HINTS[right], "agent": RIGHT_HINTS_TO_AN_AGENT[right]},
            }
            for right, label in RequestType.choices
        }
        grounds.widget.voices = {
            ground: {"subject": label, "agent": RESTRICTION_GROUNDS_TO_AN_AGENT[ground]}
            for ground, label in RestrictionGround.choices
        }
        if not self.speaks_to_an_agent:
            return
        for name in LABELS_TO_AN_AGENT.keys() | HELP_TEXTS_TO_AN_AGENT.keys():
            for part, voices in self.fields[name].voices.items():
                setattr(self.fields[name], part, voices["agent"])
        rights.choices = list(RIGHTS_THE_SUBJECT_ASKS.items())
        rights.widget.hints = RIGHT_HINTS_TO_AN_AGENT
        grounds.choices = [("", _("Choose…")), *RESTRICTION_GROUNDS_TO_AN_AGENT.items()]
        self.account_reference_error = _(
            "An account reference has letters or digits: enter it as their contract or invoice shows it, for example "
            "CUST-000123."
        )
        self.missing_detail_errors = {
            "objection_processing": _("Tell us which processing or purpose the person you are acting for objects to."),
            "consent_withdrawn": _("Tell us which consent the person you are acting for withdraws."),
        }
        self.recipient_email_missing = _("Give the email address of the organisation you want their data sent to.")
        self.recipient_name_missing = _("Give the name of the organisation you want their data sent to.")
        # The address may be the agent's or the subject's: either gets the copy through the status page's link.
        self.own_address_error = _(
            "This is your own email address or theirs: you get a copy of their data on the status page. Give the other "
            "organisation's address, or leave both fields empty."
        )

    def _right_label(self, right: str) -> str:
        """The right's box as the page names it, for a message pointing at it."""
        return RIGHTS_THE_SUBJECT_ASKS[right] if self.speaks_to_an_agent else RequestType(right).label

    def clean_rights(self):
        # A crafted POST or an API body may name a right twice: it is asked once.
        return list(dict.fromkeys(self.cleaned_data["rights"]))

    def clean_subject_phone(self):
        value = self.cleaned_data["subject_phone"].strip()
        return validate_e164(value) if value else ""

    def clean_customer_reference(self):
        # References have letters or digits (CUST-000123, MOB-4471-2093), whatever else the many operators'
        # formats hold, so only that is required. One of dots or dashes alone names no account, and ".." in an
        # HTTP source's path would name the folder above the subject's (sources/http.py refuses it too).
        value = self.cleaned_data["customer_reference"]
        if value and not any(character.isalnum() for character in value):
            raise forms.ValidationError(self.account_reference_error, code="invalid")
        return value

    def clean_description(self):
        # Characters, as the help text says (not bytes: that would halve the limit for Greek or
        # Cyrillic), with line breaks counted once (MultilineField).
        value = self.cleaned_data["description"]
        if len(value) > TEXT_MAX_CHARS:
            raise forms.ValidationError(
                _("The description is too long: keep it to %(limit)s characters at most."),
                params={"limit": formats.number_format(TEXT_MAX_CHARS, force_grouping=True)},
                code="too_long",
            )
        return value

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("website"):
            raise forms.ValidationError(_("This request could not be accepted."), code="honeypot")
        self._check_who_files(cleaned)
        for right in cleaned.get("rights", []):
            for field, message in RIGHT_DETAIL_FIELDS.get(right, {}).items():
                if field == "objection_processing" and cleaned.get("direct_marketing"):
                    continue  # the box says which processing: direct marketing
                # A field refused already (too long, say) was filled in: one error is enough.
                if field not in self.errors and not str(cleaned.get(field, "")).strip():
                    self.add_error(field, self.missing_detail_errors.get(field, message))
        if "rights" in cleaned:
            self._refuse_details_of_rights_not_ticked(cleaned)
            self._check_transmission(cleaned)
            if cleaned.get("direct_marketing") and RequestType.OBJECTION not in cleaned["rights"]:
                self.add_error(
                    "direct_marketing",
                    _detail_without_its_right(RequestType.OBJECTION, self._right_label(RequestType.OBJECTION), box=True),
                )
        return cleaned

    # What an agent must give, and the message when it is missing.
    AGENT_DETAILS_REQUIRED = {
        "agent_name": _("Type your own full name: you are acting for the person the data is about."),
        "agent_email": _("Enter your own email address: we write to you about this request."),
        "agent_capacity": _("Choose in what capacity you are acting for them."),
        "agent_permission": _(
            "Confirm that you hold their signed permission or another legal authority to act for them: without it we "
            "cannot act on the request."
        ),
    }

    # The agent's part of the form: dropped when the subject files.
    AGENT_FIELDS = ("agent_name", "agent_email", "agent_capacity", "agent_permission")
    # Who makes the request comes first, then an agent's own details: the rest of the page speaks in the voice chosen.
    field_order = ("filed_by", *AGENT_FIELDS)

    def _check_who_files(self, cleaned) -> None:
        """The subject gives their own email address; an agent gives their own details and confirms their authority
        instead, the subject's address then optional. An agent's details left filled in by someone who then chose "I
        am the person the data is about" (a browser without JavaScript shows them) are dropped, not refused: they
        said who they are."""
        if cleaned.get("filed_by") != AGENT_FILES:
            # The subject's address is required of them by its field (__init__; staff intake makes it optional).
            for name in self.AGENT_FIELDS:
                self.errors.pop(name, None)  # a mistyped address in a part they did not fill in for themselves
                cleaned[name] = False if name == "agent_permission" else ""
            return
        for name, message in self.AGENT_DETAILS_REQUIRED.items():
            if name not in self.errors and not cleaned.get(name):
                self.add_error(name, forms.ValidationError(message, code="required"))
        # The subject's address is theirs, never the agent's: we may write to it to ask the subject to confirm.
        agent_email, subject_email = cleaned.get("agent_email") or "", cleaned.get("subject_email") or ""
        if agent_email and agent_email.casefold() == subject_email.casefold():
            self.add_error(
                "subject_email",
                _("This is the agent's own address: give the email address of the person the data is about, or leave it empty."),
            )

    def _refuse_details_of_rights_not_ticked(self, cleaned) -> None:
        """Details given for a right not asked for would be dropped unread: an objection to direct marketing, say,
        which must stop it (Art. 21(3)). The subject either ticks the right or clears the field."""
        for right, fields in [*RIGHT_DETAIL_FIELDS.items(), *OPTIONAL_RIGHT_DETAIL_FIELDS.items()]:
            if right in cleaned["rights"]:
                continue
            for field in fields:
                if field not in self.errors and str(cleaned.get(field, "")).strip():
                    self.add_error(field, _detail_without_its_right(right, self._right_label(right)))

    # What the form says when the other organisation's email address is one of the request's own.
    own_address_error = _(
        "This is your own email address: you get your own copy on the status page. Give the other organisation's "
        "address, or leave both fields empty."
    )

    def _check_transmission(self, cleaned) -> None:
        """The other organisation is named with its address, or not at all: we cannot send to a name, and an address
        alone names nobody the subject would recognise in our message that it was sent. Not to the request's own
        addresses: that is the subject's own copy, which the status page gives them behind its secret link."""
        if RequestType.PORTABILITY not in cleaned["rights"]:
            return
        name, email = (cleaned.get("recipient_name") or "").strip(), cleaned.get("recipient_email") or ""
        if name and not email and "recipient_email" not in self.errors:
            self.add_error("recipient_email", forms.ValidationError(self.recipient_email_missing, code="required"))
        if email and not name and "recipient_name" not in self.errors:
            self.add_error("recipient_name", forms.ValidationError(self.recipient_name_missing, code="required"))
        own = {(cleaned.get(field) or "").casefold() for field in ("subject_email", "agent_email")} - {""}
        if email and email.casefold() in own:
            self.add_error("recipient_email", forms.ValidationError(self.own_address_error, code=OWN_ADDRESS))

    recipient_email_missing = _("Give the email address of the organisation you want your data sent to.")
    recipient_name_missing = _("Give the name of the organisation you want your data sent to.")

    def right_details(self) -> list[RightDetails]:
        """The rights asked, each with only the details that belong to it."""
        details = []
        for right in self.cleaned_data["rights"]:
            fields = {name: self.cleaned_data[name].strip() for name in RIGHT_DETAIL_FIELDS.get(right, {})}
            if right == RequestType.OBJECTION:
                fields["direct_marketing"] = self.cleaned_data["direct_marketing"]
            for name in OPTIONAL_RIGHT_DETAIL_FIELDS.get(right, ()):
                fields[name] = (self.cleaned_data.get(name) or "").strip()
            details.append(RightDetails(right=right, **fields))
        return details

    def request_filed_already(self) -> PrivacyRequest | None:
        """The open request this very form (its submission key) filed already, sent again from any browser (a double
        click, Back then Send, a retry on the way), if it holds the same details. A key found on a request with
        other details is a page the browser brought back and someone corrected: another request, so the key is
        dropped and `submit_kwargs` files it without one.

        A request the form filed that is closed since (withdrawn, expired) is not that request: the form sent again
        asks anew. It is filed under a key made from the form's and the closed request's reference, not without
        one, so that the same form sent twice at once then still files one request, and sent again shows it."""
        key = self.cleaned_data.get("submission_key")
        filed = PrivacyRequest.objects.filter(submission_key=key).first() if key else None
        # Closed, its details may be purged already: not compared.
        while filed is not None and not filed.is_open:
            key = uuid.uuid5(key, filed.reference)
            filed = PrivacyRequest.objects.filter(submission_key=key).first()
        if filed is not None and self._holds_these_details(filed):
            return filed
        self.cleaned_data["submission_key"] = key if filed is None else None
        return None

    def _holds_these_details(self, filed: PrivacyRequest) -> bool:
        details = self.submit_kwargs()
        return (
            filed.subject_name, filed.subject_email, filed.subject_phone, filed.description, filed.rights_mask,
            filed.agent_capacity, filed.agent_name, filed.agent_email,
        ) == (
            details["subject_name"], details["subject_email"], details["subject_phone"], details["description"],
            rights_mask(right.right for right in details["rights"]),
            details.get("agent_capacity", ""), details.get("agent_name", ""), details.get("agent_email", ""),
        )

    def submit_kwargs(self) -> dict:
        """The cleaned data as keyword arguments for `request_submit`."""
        data = self.cleaned_data
        return {
            "rights": self.right_details(),
            "subject_name": data["subject_name"].strip(),
            "subject_email": data["subject_email"],
            "subject_phone": data["subject_phone"],
            "customer_reference": data["customer_reference"].strip(),
            "ip_address": data["ip_address"] or "",
            "relationship": data["relationship"],
            "regime": data["regime"],
            "language": data["language"],
            "description": data["description"],
            "signature": data["signature"].strip(),
            "submission_key": data.get("submission_key"),
            "agent_capacity": data.get("agent_capacity", ""),
            "agent_name": data.get("agent_name", "").strip(),
            "agent_email": data.get("agent_email", ""),
        }


class WithPostalAddress(forms.Form):
    """The address we post our letters to, for a request recorded by staff (a letter often gives no email address) or
    filed by a portal (which may know its user's). Not on the public form: a request made there always has an email
    address, the filer's, which is where we write; an address asked "in case" would be data we do not need."""

    postal_address = PostalAddressField(
        label=_("Postal address for our letters (optional)"),
        required=False,
        help_text=_(
            "Where we post our letters when we cannot email them: the subject's, or the agent's if an agent made the "
            "request. As it goes on the envelope, one line each for the name, the street, the town and the country."
        ),
    )

    def _holds_these_details(self, filed: PrivacyRequest) -> bool:
        return super()._holds_these_details(filed) and filed.postal_address == self.cleaned_data["postal_address"]

    def submit_kwargs(self) -> dict:
        return {**super().submit_kwargs(), "postal_address": self.cleaned_data["postal_address"]}


class ResendLinkForm(forms.Form):
    reference = forms.CharField(label=_("Request reference"), max_length=20, help_text=_("For example DSR-2026-00042."))
    # The subject's own address, as on the request form: the browser may fill it in (WCAG 1.3.5).
    email = RoutableEmailField(
        label=_("Email address"), error_messages=EMAIL_ERRORS, widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )


class WithdrawForm(forms.Form):
    """The status page's withdrawal: a box to tick, so that a stray click on the button withdraws nothing."""

    confirm = forms.BooleanField(
        label=_("I want to withdraw this request. I understand that nothing more will be done with it."),
        error_messages={"required": _("Tick the box to confirm that you want to withdraw the request.")},
    )

    def __init__(self, *args, **kwargs):
        # The status page holds other forms: ids of its own ("withdraw-confirm").
        kwargs.setdefault("auto_id", "withdraw-%s")
        super().__init__(*args, **kwargs)


ALLOWED_ATTACHMENT_TYPES = {
    # extension: (content type, the file's first bytes)
    ".pdf": ("application/pdf", b"%PDF-"),
    ".png": ("image/png", b"\x89PNG\r\n\x1a\n"),
    ".jpg": ("image/jpeg", b"\xff\xd8\xff"),
    ".jpeg": ("image/jpeg", b"\xff\xd8\xff"),
}


def validate_attachment(upload) -> None:
    """Refuse files over ATTACHMENT_MAX_BYTES and anything but PDF, PNG or JPEG (checked by content)."""
    if upload.size > settings.ATTACHMENT_MAX_BYTES:
        raise forms.ValidationError(
            _("The file is too large: the limit is %(limit)s MB."),
            params={"limit": settings.ATTACHMENT_MAX_BYTES // (1024 * 1024)},
            code="too_large",
        )
    extension = "." + upload.name.rsplit(".", 1)[-1].lower() if "." in upload.name else ""
    allowed = ALLOWED_ATTACHMENT_TYPES.get(extension)
    head = upload.read(16)
    upload.seek(0)
    if allowed is None or not head.startswith(allowed[1]):
        raise forms.ValidationError(_("Upload a PDF, PNG or JPEG file."), code="bad_type")
    upload.content_type = allowed[0]


class LocalMomentField(forms.DateTimeField):
    """A moment typed in local time (TIME_ZONE, Brussels). The hour the clocks go back comes twice: it is read
    as the first (the earlier receipt, so the earlier deadline), where Django refuses it as ambiguous. The hour
    they go forward does not exist: refused as such."""

    def to_python(self, value):
        try:
            return super().to_python(value)
        except forms.ValidationError as error:
            if error.code != "ambiguous_timezone":
                raise
        zone = timezone.get_current_timezone()
        with timezone.override(datetime.UTC):  # Django's own parsing (ISO or the language's format), no zone yet
            naive = super().to_python(value).replace(tzinfo=None)
        first = naive.replace(tzinfo=zone, fold=0)
        if first.astimezone(datetime.UTC).astimezone(zone).replace(tzinfo=None) != naive:
            raise forms.ValidationError(
                _("No such time here: the clocks went forward an hour then. Check the time and type it again."),
                code="nonexistent_time",
            )
        return first


class StaffIntakeForm(WithPostalAddress, RequestForm):
    """A request that reached the DPO by email, post or phone, recorded by staff."""

    # Staff's own words, of the subject, whoever made the request; its fields in the order they were declared, which
    # follows a letter's.
    speaks_to_whoever_files = False
    field_order = None

    account_reference_error = _(
        "An account reference has letters or digits: enter it as the subject's contract or invoice shows it, for example "
        "CUST-000123."
    )
    own_address_error = _(
        "This is the address we write to about the request, the subject's or the agent's: they get their copy on the "
        "status page. Give the other organisation's address, or leave both fields empty."
    )
    recipient_email_missing = _("Give the email address of the organisation the subject wants the data sent to.")
    recipient_name_missing = _("Give the name of the organisation the subject wants the data sent to.")
    missing_detail_errors = {
        "rectification_data": _("Say which data the subject says is incorrect or incomplete."),
        "rectification_value": _("Say what the subject says it should say."),
        "restriction_ground": _("Choose the subject's ground for restricting the processing."),
        "objection_processing": _("Say which processing or purpose the subject objects to."),
        "consent_withdrawn": _("Say which consent the subject withdraws."),
    }
    # A letter may carry no email address, the subject's (__init__) or the agent's: we then write by post.
    AGENT_DETAILS_REQUIRED = {
        "agent_name": _("Type the agent's full name: they made the request for the person the data is about."),
        "agent_capacity": _("Choose in what capacity the agent acts for the subject."),
        "agent_permission": _(
            "Tick this only if the agent states that they hold the subject's signed permission or another legal "
            "authority to act for them: without it we cannot act on the request. Record it as the subject's request "
            "if they made it themselves."
        ),
    }

    channel = forms.ChoiceField(
        label=_("Received by"), choices=[(c, label) for c, label in Channel.choices if c in ("email", "post", "phone")]
    )
    received_at = LocalMomentField(
        label=_("Received at"),
        help_text=_("When the request reached us. It may be earlier than today, never later."),
        # Browsers take ISO values only, not the language's own format ("30/11/2026 10:00" shows empty).
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    scanned_letter = forms.FileField(
        label=_("Scanned letter or email (optional)"),
        required=False,
        validators=[validate_attachment],
        help_text=_("PDF, PNG or JPEG."),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A letter may carry no email address; a signature is on the paper.
        self.fields["subject_email"].required = False
        self.fields["subject_email"].label = _("Email address (if known)")
        self.fields["signature"].required = False
        self.fields["signature"].label = _("Signature as written on the request (if any)")
        self.fields["confirm"].label = _("I have checked these details against the original request.")
        self.fields["confirm"].error_messages["required"] = _("Tick the box once you have checked these details against the original request.")
        # Staff record what the subject wrote: the questions speak of the subject, not to them.
        self.fields["rights"].label = _("Rights the subject asks for")
        self.fields["rights"].choices = list(RIGHTS_THE_SUBJECT_ASKS.items())
        # The hints speak to the subject ("your data"), and the admin's intake page does not render them: no
        # aria-describedby pointing at nothing.
        self.fields["rights"].widget.hints = {}
        self.fields["restriction_ground"].choices = [("", "---------"), *RESTRICTION_GROUNDS_THE_SUBJECT_GIVES.items()]
        self.fields["rectification_data"].label = _("Data the subject says is incorrect or incomplete")
        self.fields["rectification_value"].label = _("What the subject says it should say")
        self.fields["restriction_ground"].label = _("The subject's ground for restriction")
        self.fields["objection_processing"].label = _("Processing or purpose the subject objects to")
        self.fields["direct_marketing"].label = _("The objection is to direct marketing (including profiling for it).")
        self.fields["direct_marketing"].help_text = _(
            "We must then stop using the subject's data for direct marketing, without exception (GDPR Art. 21(3))."
        )
        self.fields["consent_withdrawn"].label = _("Consent the subject withdraws")
        self.fields["recipient_name"].label = _("Organisation the subject asks us to send the data to (optional)")
        self.fields["recipient_name"].help_text = _("For data portability, as the subject named it.")
        self.fields["recipient_email"].label = _("That organisation's email address, as the subject gave it")
        self.fields["recipient_email"].help_text = _(
            "Check it against the original request: the organisation is emailed a link to download the subject's data."
        )
        self.fields["ip_address"].help_text = _("If the request concerns visits to our website, the IP address the subject used.")
        self.fields["relationship"].label = _("How is the subject related to us?")
        self.fields["relationship"].error_messages["required"] = _("Choose how the subject is related to us.")
        self.fields["regime"].label = _("Where does the subject live?")
        self.fields["description"].label = _("Anything else the subject wrote (optional)")
        # The subject's language, not the staff member's: chosen for each letter, never preset by the page's language.
        self.fields["language"].choices = [("", _("Choose…")), *settings.LANGUAGES]
        self.fields["language"].initial = ""
        del self.fields["language"].widget.attrs["data-follows-page-language"]
        self.fields["language"].help_text = _("The language the subject wrote in: our letters to them use it.")
        self.fields["language"].error_messages["required"] = _("Choose the language the subject wrote in.")
        self.fields["customer_reference"].label = _("The subject's customer account reference (optional)")
        self.fields["received_at"].initial = timezone.localtime().replace(second=0, microsecond=0)
        del self.fields["website"]
        # A letter or call from a lawyer, a parent or another agent: recorded as filed by them, so that we write to them
        # and the same gate holds until their authority is confirmed (services.agents).
        self.fields["filed_by"].label = _("Who made this request?")
        self.fields["filed_by"].choices = [
            (SUBJECT_FILES, _("The person the data is about")),
            (AGENT_FILES, _("Someone acting for them (an authorised agent, a parent or guardian, a lawyer)")),
        ]
        self.fields["agent_name"].label = _("The agent's full name")
        self.fields["agent_email"].label = _("The agent's email address (if known)")
        self.fields["agent_email"].help_text = _(
            "We send the link to the request's status page and our letters here, not to the subject's address."
        )
        self.fields["agent_capacity"].label = _("The agent is acting as")
        self.fields["agent_permission"].label = _(
            "The agent states that they hold the signed permission of the person the data is about to make this request "
            "for them, or another legal authority to act for them (a power of attorney, parental responsibility)."
        )
        # With the other ways to reach whoever filed, rather than after the confirmation box.
        names = [name for name in self.fields if name != "postal_address"]
        names.insert(names.index("subject_phone") + 1, "postal_address")
        self.order_fields(names)
        # Staff type in someone else's details: their browser must not offer its own.
        for name in (
            "subject_name", "subject_email", "subject_phone", "postal_address", "agent_name", "agent_email", "recipient_name",
            "recipient_email",
        ):
            self.fields[name].widget.attrs["autocomplete"] = "off"

    def full_clean(self):
        super().full_clean()
        # A browser never keeps a chosen file on a page sent back with errors: the field came back empty, and once the
        # other mistakes were put right the request was recorded without its letter, unnoticed.
        if self._errors and self.files.get(self.add_prefix("scanned_letter")) and "scanned_letter" not in self._errors:
            self.add_error("scanned_letter", _("Choose the file again: a page sent back with errors cannot keep a file you chose."))

    def clean_received_at(self):
        value = self.cleaned_data["received_at"]
        if value > timezone.now():
            raise forms.ValidationError(_("The received date cannot be in the future."), code="future")
        return value

    def submit_kwargs(self) -> dict:
        return {
            **super().submit_kwargs(),
            "channel": self.cleaned_data["channel"],
            "received_at": self.cleaned_data["received_at"],
            "scanned_letter": self.cleaned_data["scanned_letter"],
        }
