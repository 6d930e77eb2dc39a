"""Suppression lists in the staff dashboard: the purposes and their entry counts,
the DPO's editing of purposes, the CSV download, and applying a request's
objection, consent withdrawal or limit on use to the lists.

Who may do what:
- every staff role reads the purposes and their counts (no identifiers shown);
- the DPO creates and edits purposes;
- the DPO and auditors download a list: it is a bulk list of personal data,
  which handlers do not need to work a request (least privilege);
- whoever may work a request applies it to the lists (roles.require_can_work).
"""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from requests_app import roles
from requests_app.audit import Actor, record_event
from requests_app.lifecycle import NotAllowed, RequestError
from requests_app.models import SuppressionPurpose
from requests_app.services import suppression
from requests_app.staff import forms
from requests_app.staff.views import _crud, _get_request, staff_view

CAN_DOWNLOAD = (roles.DPO, roles.AUDITOR)


@staff_view
def purposes(request: HttpRequest) -> HttpResponse:
    items = SuppressionPurpose.objects.annotate(entry_count=Count("entries"))
    context = {"purposes": items, "can_download": roles.role_of(request.user) in CAN_DOWNLOAD}
    return render(request, "staff/suppressions.html", context)


@staff_view(dpo_only=True)
def purpose_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    # A list with entries is never deleted: the people on it must stay suppressed.
    if "delete" in request.POST and pk and SuppressionPurpose.objects.filter(pk=pk, entries__isnull=False).exists():
        messages.error(request, _("This list has entries, so it is kept: the people on it must stay suppressed."))
        return redirect("staff:suppression_purpose_edit", pk)
    return _crud(
        request, model=SuppressionPurpose, form_class=forms.SuppressionPurposeForm, pk=pk, list_url="staff:suppressions",
        template="staff/settings_form.html", title=_("Suppression list"), event="suppression_purpose",
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
    """Choose the lists (GET) and add the request's verified identifiers to them (POST)."""
    privacy_request = _get_request(reference)
    if not roles.can_work(request.user, privacy_request):
        raise PermissionDenied(_("You may not act on this request."))
    # Bound on any POST: one with no box ticked must say so, not show the form again as if new.
    form = forms.SuppressForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            added = suppression.suppress(
                request=privacy_request, actor=Actor.staff(request.user), purposes=form.cleaned_data["purposes"]
            )
        except NotAllowed:
            raise
        except RequestError as error:
            messages.error(request, str(error))
        else:
            if any(added.values()):
                count = sum(added.values())
                messages.success(
                    request,
                    ngettext("Added %(count)s entry to the suppression lists.", "Added %(count)s entries to the suppression lists.", count)
                    % {"count": count},
                )
            else:
                messages.success(request, _("The verified identifiers were already on the chosen lists."))
        return redirect("staff:request", reference)
    context = {
        "r": privacy_request,
        "form": form,
        "right": suppression.suppression_right(privacy_request),
        "on_lists": privacy_request.suppressions.values("purpose__name").annotate(count=Count("id")).order_by("purpose__name"),
    }
    return render(request, "staff/suppression_request.html", context, status=400 if form.is_bound else 200)
