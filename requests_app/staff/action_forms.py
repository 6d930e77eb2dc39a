"""Forms of the "Actions in source systems" panel. They check the shape of the input;
the services (services/actions.py, services/notices.py) decide whether it may be done."""

from django import forms
from django.utils.translation import gettext_lazy as _

from requests_app.models import TEXT_MAX_CHARS, SourceCategory, WaiverReason


class CategoryChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, category: SourceCategory) -> str:
        return f"{category.source.name} · {category.slug}"


class RectificationForm(forms.Form):
    """A corrected value for one field; the service checks it against the field's type."""

    category = CategoryChoiceField(label=_("Data category"), queryset=SourceCategory.objects.none())
    field = forms.CharField(label=_("Field"), max_length=100)
    value = forms.CharField(label=_("Corrected value"), max_length=TEXT_MAX_CHARS)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Read per form: the inventory changes while the server runs.
        self.fields["category"].queryset = SourceCategory.objects.filter(source__active=True).select_related("source")


class WaiveForm(forms.Form):
    reason = forms.ChoiceField(label=_("Why not"), choices=WaiverReason.choices)
    note = forms.CharField(
        label=_("Explanation (the subject and the supervisory authority may ask)"),
        widget=forms.Textarea(attrs={"rows": 2}),
        max_length=2000,
    )


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
