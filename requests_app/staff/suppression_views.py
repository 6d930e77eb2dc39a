"""Suppression lists in the staff dashboard: the purposes and their entry counts,
the DPO's editing of purposes, the CSV download, and applying a request's
objection, consent withdrawal or limit on use to the lists.

Who may do what:
- every staff role reads the purposes and their counts (no identifiers shown);
- the DPO creates and edits purposes, and gives their names in the other languages;
- the DPO and auditors download a list: it is a bulk list of personal data,
  which handlers do not need to work a request (least privilege);
- whoever may work a request applies it to the lists (roles.require_can_work); the others, who read every request
  (auditors, handlers of other teams), read what it covers and whether the subject is on each.
"""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Prefetch
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from requests_app import roles
from requests_app.audit import Actor, record_event
from requests_app.lifecycle import NotAllowed, RequestError
from requests_app.models import CoveredPurpose, SuppressionPurpose, translation_languages
from requests_app.services import suppression
from requests_app.staff import forms
from requests_app.staff.views import _crud, _get_request, _translation_view, staff_view

CAN_DOWNLOAD = (roles.DPO, roles.AUDITOR)


@staff_view
def purposes(request: HttpRequest) -> HttpResponse:
    items = SuppressionPurpose.objects.annotate(entry_count=Count("entries")).prefetch_related("translations")
    context = {"purposes": items, "can_download": roles.role_of(request.user) in CAN_DOWNLOAD}
    return render(request, "staff/suppressions.html", context)


@staff_view(dpo_only=True)
def purpose_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    # A list with entries is never deleted: the people on it must stay suppressed.
    if "delete" in request.POST and pk and SuppressionPurpose.objects.filter(pk=pk, entries__isnull=False).exists():
        messages.error(request, _("This list has entries, so it is kept: the people on it must stay suppressed."))
        return redirect("staff:suppression_purpose_edit", pk)
    translation_urls = (
        [(name, reverse("staff:suppression_purpose_translation", args=[pk, code])) for code, name in translation_languages()]
        if pk
        else []
    )
    return _crud(
        request, model=SuppressionPurpose, form_class=forms.SuppressionPurposeForm, pk=pk, list_url="staff:suppressions",
        template="staff/settings_form.html", title=_("Suppression list"), event="suppression_purpose",
        translation_urls=translation_urls,
    )


# The letters name a list to the subject in their language.
purpose_translation = _translation_view(
    SuppressionPurpose, forms.SuppressionPurposeTranslationForm, "suppression_purpose_translation",
    list_url="staff:suppressions",
)


@staff_view
def entries_download(request: HttpRequest, slug: str) -> HttpResponse:
    """The whole list as CSV, streamed. Each download is audited: it is a bulk export of personal data."""
    if roles.role_of(request.user) not in CAN_DOWNLOAD:
        raise PermissionDenied
    purpose = get_object_or_404(SuppressionPurpose, slug=slug)
    with transaction.atomic():
        record_event(None, "suppression_list_downloaded", actor=Actor.staff(request.user), data={"purpose": purpose.slug})
    response = StreamingHttpResponse(suppression.entries_csv(purpose.entries.all(), suppression.Echo(), for_spreadsheet=True), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="suppression-{purpose.slug}.csv"'
    return response


@staff_view
def request_suppress(request: HttpRequest, reference: str) -> HttpResponse:
    """For each objection, consent withdrawal or limit on use the request asks: the subject's words, the lists it
    covers and whether the subject is on each. Choosing its lists adds the subject to them (POST); for a list that
    cannot be applied, staff record why ("not_applied"), or remove it if the right does not cover it after all
    ("uncover"). Staff who may not work the request read the page without its forms, as they read the request."""
    privacy_request = _get_request(reference)
    can_work = roles.can_work(request.user, privacy_request)
    if request.method not in ("GET", "HEAD") and not can_work:
        raise PermissionDenied(_("You may not act on this request."))
    if request.method == "POST" and request.POST.get("step") in ("not_applied", "uncover"):
        return _not_applied(request, privacy_request)
    # Bound on any POST: one with no box ticked must say so, not show the form again as if new.
    posted = forms.SuppressForm(request.POST, auto_id=f"id_{request.POST.get('right')}_%s") if request.method == "POST" else None
    if posted is not None and posted.is_valid():
        return _suppress(request, privacy_request, posted)
    panels = []
    for asked in privacy_request.rights.filter(right__in=suppression.SUPPRESSION_RIGHTS).prefetch_related(
        Prefetch("covered_purposes", queryset=CoveredPurpose.objects.select_related("purpose"))
    ):
        covers = list(asked.covered_purposes.all())
        verified_only = suppression.verified_only(asked)
        # One form per right on the page: their fields' ids must differ.
        form = forms.SuppressForm(
            initial={"right": asked.right, "purposes": [cover.purpose for cover in covers]}, auto_id=f"id_{asked.right}_%s",
            verified_only=verified_only,
        )
        not_applied = [
            (cover, forms.NotAppliedForm(
                initial={"right": asked.right, "purpose": cover.purpose.slug, "reason": cover.not_applied_reason},
                language=privacy_request.language, auto_id=f"id_{asked.right}_{cover.purpose.slug}_%s",
            ))
            for cover in covers if cover.applied_at is None
        ]
        panels.append({
            "right": asked,
            # No reason may be recorded for leaving out a list such a right covers: the form is not offered.
            "must_be_applied": suppression.must_be_applied(asked),
            # A CCPA request to limit: staff are not asked to verify an identifier.
            "verified_only": verified_only,
            "applied": [cover for cover in covers if cover.applied_at is not None],
            "not_applied": not_applied,
            "form": posted if posted is not None and posted.data.get("right") == asked.right else form,
        })
    context = {"r": privacy_request, "panels": panels, "can_work": can_work}
    return render(request, "staff/suppression_request.html", context, status=400 if posted is not None else 200)


def _suppress(request: HttpRequest, privacy_request, form) -> HttpResponse:
    try:
        added = suppression.suppress(
            request=privacy_request, actor=Actor.staff(request.user), right=form.cleaned_data["right"], purposes=form.cleaned_data["purposes"]
        )
    except NotAllowed:
        raise  # a 403, not a message
    except RequestError as error:
        messages.error(request, str(error))
        return redirect("staff:suppression_request", privacy_request.reference)
    count = sum(added.values())
    if count:
        messages.success(
            request,
            ngettext("Added %(count)s entry to the suppression lists.", "Added %(count)s entries to the suppression lists.", count)
            % {"count": count},
        )
    asked = privacy_request.rights.get(right=form.cleaned_data["right"])
    verified_only = suppression.verified_only(asked)
    if not count and added:
        messages.success(
            request,
            _("The verified identifiers were already on the chosen lists.")
            if verified_only
            else _("The identifiers the subject gave were already on the chosen lists."),
        )
    not_applied = [purpose for purpose in form.cleaned_data["purposes"] if purpose.slug not in added]
    kinds_usable = suppression.usable_kinds(privacy_request, asked)
    reason_allowed = not suppression.must_be_applied(asked)
    for purpose in not_applied:
        why = suppression.missing_identifier(
            purpose, kinds_usable, regime=privacy_request.regime, reason_allowed=reason_allowed, verification_needed=verified_only
        )
        messages.error(request, _("Not added to %(purpose)s: %(why)s") % {"purpose": purpose.name, "why": why})
    # Back to this page when a list was not applied: why it cannot be is recorded here.
    return redirect("staff:suppression_request" if not_applied else "staff:request", privacy_request.reference)


def _not_applied(request: HttpRequest, privacy_request) -> HttpResponse:
    """Record why a list a right covers cannot be applied, or remove it from what the right covers."""
    form = forms.NotAppliedForm(request.POST, language=privacy_request.language)
    covered = CoveredPurpose.objects.filter(
        right__request=privacy_request, right__right=request.POST.get("right"), purpose__slug=request.POST.get("purpose")
    ).first()
    if covered is None:
        messages.error(request, suppression.COVER_REMOVED)
        return redirect("staff:suppression_request", privacy_request.reference)
    actor = Actor.staff(request.user)
    try:
        if request.POST["step"] == "uncover":
            suppression.uncover(request=privacy_request, actor=actor, covered=covered)
            messages.success(request, _("%(purpose)s is no longer among the lists this right covers.") % {"purpose": covered.purpose.name})
        elif form.is_valid():
            suppression.record_not_applied(request=privacy_request, actor=actor, covered=covered, reason=form.cleaned_data["reason"])
            messages.success(request, _("Recorded: the letter will tell the subject why."))
        else:
            messages.error(request, " ".join(error for errors in form.errors.values() for error in errors))
    except NotAllowed:
        raise  # a 403, not a message
    except RequestError as error:
        messages.error(request, str(error))
    return redirect("staff:suppression_request", privacy_request.reference)
