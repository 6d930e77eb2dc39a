"""Forms of the "Actions in source systems" panel. They check the shape of the input;
the services (services/actions.py, services/notices.py) decide whether it may be done."""

from collections.abc import Iterable

from django import forms
from django.utils.translation import get_language, gettext
from django.utils.translation import gettext_lazy as _

from requests_app.models import LANGUAGE_NAMES_IN_SENTENCE, TEXT_MAX_CHARS, SourceField, SourceSystem, WaiverReason
from requests_app.services import actions


class RectifiableFieldChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, field: SourceField) -> str:
        # The words the subject used ("postal address") and the source's own name for the field, side by side.
        label = field.texts_in(get_language())["label"]
        return f"{field.category.source.name} · {field.category.slug} · {label} ({field.name})"


class RectificationForm(forms.Form):
    """A corrected value for one of the fields the inventory lets staff correct; the service checks it against
    the field's type."""

    field = RectifiableFieldChoiceField(label=_("Field"), queryset=SourceField.objects.none())
    value = forms.CharField(label=_("Corrected value"), max_length=TEXT_MAX_CHARS)

    def __init__(self, *args, corrected_in: Iterable[int] = (), **kwargs):
        """`corrected_in`: the ids of the sources whose rectification ran, whose fields are not offered. The form
        sent is built without it: the service's refusal says why better than "Select a valid choice"."""
        super().__init__(*args, **kwargs)
        # Read per form: the inventory changes while the server runs. Only the fields that may be corrected are
        # offered, by name: typing a field's name, staff had to know the source's column names.
        self.fields["field"].queryset = (
            SourceField.objects.filter(rectifiable=True, category__source__active=True)
            .exclude(category__source_id__in=corrected_in)
            .select_related("category__source")
            .prefetch_related("translations")
            .order_by("category__source__name", "category__slug", "name")
        )
        if corrected_in:
            self.fields["field"].help_text = _("The fields of a system where the rectification was carried out are not offered.")

    def change(self) -> dict:
        """The service's arguments (actions.rectification_change_set) for the valid form."""
        field = self.cleaned_data["field"]
        return {"category": field.category, "field": field.name, "value": self.cleaned_data["value"]}


class PlanForm(forms.Form):
    """The "Plan actions" button, with, for a request asking for restriction, the source systems it covers
    (services.actions.plan_actions): ticked as last chosen, or as the default before any choice."""

    restriction_sources = forms.ModelMultipleChoiceField(
        label=_("Restrict processing in"),
        queryset=SourceSystem.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        help_text=_(
            "Only the systems holding the data concerned: for contested accuracy, those holding the data being "
            "checked. Recipients of the other systems are not told. A restriction not yet carried out in a system "
            "you untick is left out."
        ),
        error_messages={"required": _("Choose at least one source system for the restriction to cover, or refuse the restriction.")},
    )

    leave_out_reason = forms.CharField(
        label=_("Why a system you untick holds none of the data concerned"),
        widget=forms.Textarea(attrs={"rows": 2}),
        max_length=2000,
        required=False,
        help_text=_("Needed only to leave out a system where the restriction is planned. Kept in the request's notes."),
    )

    def __init__(self, *args, restricting: bool, restricted_in: Iterable[SourceSystem] = (), **kwargs):
        """`restricted_in`: the active systems where a restriction is planned, which unticking would leave out."""
        super().__init__(*args, **kwargs)
        self.restricted_in = list(restricted_in)
        if restricting:
            # Read per form: the inventory changes while the server runs.
            self.fields["restriction_sources"].queryset = SourceSystem.objects.filter(active=True).order_by("name")
        else:
            del self.fields["restriction_sources"]
        if not self.restricted_in:
            del self.fields["leave_out_reason"]

    def clean(self):
        # The service refuses it too (actions._choose_restriction_sources); said here, the choice stays ticked as sent.
        cleaned = super().clean()
        chosen = cleaned.get("restriction_sources")
        if chosen is not None and self.restricted_in and not cleaned.get("leave_out_reason", "").strip():
            left_out = [source for source in self.restricted_in if source not in chosen]
            if left_out:
                self.add_error("leave_out_reason", actions.reason_needed_to_leave_out(left_out))
        return cleaned


class WaiveForm(forms.Form):
    """Why a recipient is not told. The completion letter quotes the note as it is typed (certificate.outcome_summary)."""

    reason = forms.ChoiceField(label=_("Why not"), choices=WaiverReason.choices)
    note = forms.CharField(
        label=_("Explanation (quoted in the letter to the subject)"),
        widget=forms.Textarea(attrs={"rows": 2}),
        max_length=2000,
    )

    def __init__(self, *args, language: str, **kwargs):
        super().__init__(*args, **kwargs)
        # The letter is in the request's language: a note in the staff member's own would sit in it untranslated.
        self.fields["note"].help_text = gettext(
            "Write it in %(language)s, the language of the request. The supervisory authority may also ask to see it."
        ) % {"language": LANGUAGE_NAMES_IN_SENTENCE[language]}


class ManualDoneForm(forms.Form):
    rows = forms.IntegerField(label=_("Rows changed"), min_value=0)


class LiftForm(forms.Form):
    """Why a restriction is lifted: the letter to the subject quotes it (Art. 18(3))."""

    reason = forms.CharField(
        label=_("Why it is lifted (quoted in the letter to the subject)"),
        widget=forms.Textarea(attrs={"rows": 2}),
        max_length=2000,
    )


class CancelLiftForm(forms.Form):
    """Why a planned lifting is called off: the letter telling the subject the restriction stays quotes it."""

    reason = forms.CharField(
        label=_("Why the restriction stays in force (quoted in the letter to the subject)"),
        widget=forms.Textarea(attrs={"rows": 2}),
        max_length=2000,
    )
