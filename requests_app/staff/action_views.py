"""The request page's "Actions in source systems" panel: erasure, rectification and
restriction per source (plan, dry run, approve, execute, retry, manual confirmation), the
lifting of a restriction (planned with a letter to the subject, then the same steps, or
cancelled with another letter until it runs),
the Art. 19 notices to recipients, and the certificate of how the request was handled.

Like the other staff views these are thin: every POST is one service call, a
RequestError becomes a message (on the form with a 409 for the forms, after a
redirect for the buttons), and NotAllowed a 403 through `staff_view`.
"""

import datetime

from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Prefetch, prefetch_related_objects
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_POST

from requests_app import roles
from requests_app.audit import Actor
from requests_app.lifecycle import NotAllowed, RequestError
from requests_app.models import (
    ActionKind,
    ActionStatus,
    ErasureException,
    IdentityKind,
    NoticeStatus,
    PrivacyRequest,
    RecipientNotice,
    RectificationChange,
    RequestType,
    SourceAction,
    SourceField,
    SourceSystem,
    Status,
)
from requests_app.services import actions, lifting, notices
from requests_app.services import certificate as certificate_service
from requests_app.staff.action_forms import CancelLiftForm, LiftForm, ManualDoneForm, PlanForm, RectificationForm, WaiveForm
from requests_app.staff.sessions import not_activity
from requests_app.staff.views import _form_page, _get_request, _request_context, staff_view
from requests_app.wording import cites_gdpr_articles, date_in_words, in_sentence

# While an action is in one of these, its row polls the progress endpoint.
WORKING = actions.WORKING


def panel_context(request: HttpRequest, privacy_request: PrivacyRequest, bound: dict | None = None) -> dict:
    """What the panel shows. `bound` holds forms that failed, by key, to show again with their errors."""
    bound = bound or {}
    rights = set(privacy_request.requested_rights)
    # A CCPA request to limit acts on no source, yet has notices to its recipients (notices.plan_limit_notices).
    if not rights & set(actions.ACTION_FOR_RIGHT) and not privacy_request.recipient_notices.exists():
        return {"shown": False, "forms_shown": set()}
    user = request.user
    can_work = roles.can_work(user, privacy_request)
    # The keys of the forms the panel shows: _page_with_form shows a failed one again only if it is among them.
    forms_shown = set()
    source_actions = list(privacy_request.source_actions.select_related("source", "approved_by", "done_by", "cancelled_by", "lift_notice", "lift_notice_posted_by"))
    # Each erasure's execution_refusal reads the request's packages (the copy-first rule): one query for the page.
    prefetch_related_objects([privacy_request], "exports")
    kinds_verified = actions.verified_kinds(privacy_request)
    for action in source_actions:
        # After execution the result says what was kept; before, the dry run says what would be. A source
        # searched by none of the subject's identifiers keeps nothing of theirs that we know of: its holds
        # are not called kept, as in the completion letter (certificate._action_outcome).
        held, codes = [], []  # and the codes an erasure writes in place of fields, with the hold on them: as held
        if not certificate_service.searched_nothing(action):
            held = action.result.get("held", action.dry_run.get("held", []))
            done = action.status == ActionStatus.DONE
            codes = certificate_service.codes_kept(action) if done else action.dry_run.get("pseudonym_holds", [])
        kept_rows = action.dry_run.get("held_rows", {})  # absent for a manual source: its owner counts
        action.held = [
            {
                **hold,
                "ground_label": ErasureException(hold["ground"]).label,
                "codes": ", ".join(f"{hold['category']}.{name}" for name in hold["fields"]) if "fields" in hold else "",
                "rows": None if "fields" in hold else kept_rows.get(hold["category"]),
                # Stored as ISO dates; the panel writes them in words, as every other date in a sentence.
                "until": datetime.date.fromisoformat(hold["until"]),
                "kept_from": datetime.date.fromisoformat(hold["kept_from"]) if hold.get("kept_from") else None,
            }
            for hold in [*held, *codes]
        ]
        action.status_label = certificate_service.status_label(action)
        # Done without searching: the panel says why, in place of its counts (all zero, as if nothing were there).
        not_searched = certificate_service.done_without_searching(action)
        action.not_searched_by = in_sentence(IdentityKind(action.source.identity_kind).label) if not_searched else ""
        # Its data is acted on after all by verifying one and running the dry run again (dry_run_start), while the
        # request is in progress; a lifting is never run again.
        action.may_search_again = (
            not_searched and privacy_request.status == Status.IN_PROGRESS and action.kind != ActionKind.LIFT_RESTRICTION
        )
        action.lost = actions.run_lost(action)
        action.polls = action.status in WORKING and not action.lost
        action.can_confirm = action.status == ActionStatus.MANUAL and roles.is_owner_or_dpo(user, action.source.owner_id)
        # The buttons follow the service's own rules, so a button is never offered only to be refused.
        action.can_dry_run = action.status in actions.DRY_RUN_FROM or actions.searched_too_early(action, kinds_verified)
        action.awaits_another_approver = actions.needs_another_approver(action, user)
        action.can_retry = (action.status == ActionStatus.FAILED and action.approved_at is not None) or action.lost
        done_key = f"done-{action.public_id}"
        action.done_form = bound.get(done_key) or ManualDoneForm(auto_id=f"{done_key}-%s")
        # Lifting a restriction comes after the request's answer: it goes on whatever the request's status.
        action.acting = privacy_request.status == Status.IN_PROGRESS or action.kind == ActionKind.LIFT_RESTRICTION
        action.too_early = action.kind == ActionKind.LIFT_RESTRICTION and timezone.localdate() < action.lift_not_before
        # Where Execute or Retry would be offered, the panel shows instead why execute() would refuse it now (a copy
        # to compile first, another request's restriction on the same data). A lifting too early has its own note.
        offers_execution = action.acting and ((action.status == ActionStatus.APPROVED and not action.too_early) or action.can_retry)
        action.execution_refusal = actions.execution_refusal(action) if offers_execution else None
        # The same for a manual source's "Confirm done", which manual_action_done refuses on the same grounds: a
        # lifting another request's restriction holds back, an erasure the subject's copy must come before.
        action.confirm_refusal = None
        if action.can_confirm and not action.too_early:
            is_lifting = action.kind == ActionKind.LIFT_RESTRICTION
            action.confirm_refusal = actions.lift_refused_now(action) if is_lifting else actions.copy_first_refusal(action)
        if action.acting and action.can_confirm and not action.too_early and not action.confirm_refusal:
            forms_shown.add(done_key)
        action.can_plan_lift = action.kind == ActionKind.RESTRICT and lifting.lift_refusal(action) is None
        key = f"lift-{action.public_id}"
        action.lift_form = bound.get(key) or LiftForm(auto_id=f"{key}-%s")
        action.shows_lift_form = can_work and action.can_plan_lift
        if action.shows_lift_form:
            forms_shown.add(key)
        # A subject who cannot be emailed is posted the notice: the lifting waits until staff record it posted.
        action.notice_to_post = action.kind == ActionKind.LIFT_RESTRICTION and lifting.notice_posted_refusal(action) is None
        action.can_cancel_lift = action.kind == ActionKind.LIFT_RESTRICTION and lifting.cancel_refusal(action) is None
        key = f"cancel_lift-{action.public_id}"
        action.cancel_lift_form = bound.get(key) or CancelLiftForm(auto_id=f"{key}-%s")
        action.shows_cancel_lift_form = can_work and action.can_cancel_lift
        if action.shows_cancel_lift_form:
            forms_shown.add(key)
    recipient_notices = list(privacy_request.recipient_notices.select_related("recipient", "waived_by"))
    for notice in recipient_notices:
        key = f"waive-{notice.public_id}"
        notice.waive_form = bound.get(key) or WaiveForm(auto_id=f"{key}-%s", language=privacy_request.language)
        # A closed request's notices are settled (notices._require_open), but for one nothing else settles.
        waivable = notice.status in (NoticeStatus.PENDING, NoticeStatus.FAILED)
        notice.shows_waive_form = can_work and waivable and (privacy_request.is_open or notices.settled_by_staff_only(notice))
        if notice.shows_waive_form:
            forms_shown.add(key)
    rectifying = RequestType.RECTIFICATION in rights
    # Planning, corrected values, dry runs and execution wait for the identity check (actions._require_in_progress).
    acting = privacy_request.status == Status.IN_PROGRESS
    # Offered only where planning would change something: a second planning is refused (actions.plan_actions).
    shows_plan_form = can_work and acting and actions.anything_to_plan(privacy_request)
    # A source whose rectification ran (or is running) takes no more corrected values (actions.rectification_change_set):
    # its fields are not offered, and the form goes once every source's has run, its values shown read-only above it.
    # One that searched nothing there, and can search now (an identifier verified since), takes them again.
    corrected_in = {
        action.source_id for action in source_actions
        if action.kind == ActionKind.RECTIFY and actions.corrected_already(action, kinds_verified)
    }
    rectification_form = bound.get("rectification") or RectificationForm(auto_id="rectification-%s", corrected_in=corrected_in)
    shows_rectification_form = can_work and acting and rectifying and rectification_form.fields["field"].queryset.exists()
    forms_shown |= {key for key, shown in (("plan", shows_plan_form), ("rectification", shows_rectification_form)) if shown}
    restricting = RequestType.RESTRICTION in rights
    plan_form = bound.get("plan")
    if plan_form is None:
        initial = {"restriction_sources": actions.restriction_sources(privacy_request)} if restricting else {}
        restricted_in = [action.source for action in source_actions if action.kind == ActionKind.RESTRICT and action.source.active]
        plan_form = PlanForm(auto_id="plan-%s", restricting=restricting, restricted_in=restricted_in, initial=initial)
    return {
        "shown": True,
        "acting": acting,
        "forms_shown": forms_shown,
        "shows_plan_form": shows_plan_form,
        # Not while a rectification waits for its corrected values: the table above says to enter them first.
        "all_planned": can_work and acting and not shows_plan_form and bool(source_actions)
        and not (rectifying and not privacy_request.rectification_changes.exists()),
        "shows_rectification_form": shows_rectification_form,
        "actions": source_actions,
        "notices": recipient_notices,
        "rectifying": rectifying,
        "changes": _changes_with_labels(privacy_request, source_actions, kinds_verified) if rectifying else [],
        "rectification_form": rectification_form,
        "corrected_everywhere": can_work and acting and rectifying and bool(corrected_in) and not shows_rectification_form,
        "plan_form": plan_form,
    }


def _changes_with_labels(
    privacy_request: PrivacyRequest, source_actions: list[SourceAction], kinds_verified: set[str]
) -> list[RectificationChange]:
    """The corrected values, each with `field_label`: the inventory's label for its field in the reader's language,
    as the rectification form offers it ("" for a field since removed from the inventory, left with its name);
    `carried_out`, its source's rectification once it ran or runs (else None, as for one that searched nothing there and
    is to run again: actions.corrected_already); and `corrected`, whether that run
    changed the value's category (a manual source's owner confirms rows for the source as a whole)."""
    rectifications = {action.source_id: action for action in source_actions if action.kind == ActionKind.RECTIFY}
    changes = list(
        privacy_request.rectification_changes.select_related("category__source").prefetch_related(
            Prefetch("category__fields", queryset=SourceField.objects.prefetch_related("translations"))
        )
    )
    language = translation.get_language()
    for change in changes:
        field = next((field for field in change.category.fields.all() if field.name == change.field), None)
        change.field_label = field.texts_in(language)["label"] if field else ""
        action = rectifications.get(change.category.source_id)
        change.carried_out = action if action is not None and actions.corrected_already(action, kinds_verified) else None
        change.corrected = (
            action is not None and action.status == ActionStatus.DONE and action.changed_anything()
            and (action.result.get("manual") or change.category.slug in action.changed_categories())
        )
    return changes


def _panel_url(reference: str) -> str:
    return reverse("staff:request", args=[reference]) + "#source-actions"


def _page_with_form(request: HttpRequest, privacy_request: PrivacyRequest, key: str, form, status: int) -> HttpResponse:
    """The request page again, with the panel's form that failed and why. Where the page no longer shows that
    form (the request closed since the form was loaded, or the step is no longer offered), why is a message on
    the request page instead: errors on a form the page hides would be lost, and the refusal with them."""
    if key not in panel_context(request, privacy_request)["forms_shown"]:
        messages.error(request, " ".join(" ".join(errors) for errors in form.errors.values()))
        return redirect(_panel_url(privacy_request.reference))
    context = _request_context(request, privacy_request)
    context["source_action_forms"] = {key: form}
    return render(request, "staff/request.html", context, status=status)


@staff_view
@require_POST
def plan(request: HttpRequest, reference: str) -> HttpResponse:
    privacy_request = _get_request(reference)
    if not roles.can_work(request.user, privacy_request):
        raise PermissionDenied(_("You may not act on this request."))
    restricting = RequestType.RESTRICTION in privacy_request.requested_rights
    restricted_in = SourceSystem.objects.filter(
        active=True, pk__in=privacy_request.source_actions.filter(kind=ActionKind.RESTRICT).values("source_id")
    )
    form = PlanForm(request.POST, auto_id="plan-%s", restricting=restricting, restricted_in=restricted_in)
    if not form.is_valid():
        return _page_with_form(request, privacy_request, "plan", form, status=400)
    try:
        created = actions.plan_actions(
            request=privacy_request,
            actor=Actor.staff(request.user),
            restriction_sources=form.cleaned_data.get("restriction_sources"),
            leave_out_reason=form.cleaned_data.get("leave_out_reason", ""),
        )
    except NotAllowed:
        raise
    except RequestError as error:
        messages.error(request, str(error))
    else:
        if created:
            count = len(created)
            messages.success(request, ngettext("Planned %(count)s action.", "Planned %(count)s actions.", count) % {"count": count})
        elif not restricting:
            # A planning that adds no action is accepted only for the notices it adds (actions.plan_actions).
            messages.success(
                request,
                _("No action to add: the recipients added to the inventory since are now to be told (Art. 19).")
                if cites_gdpr_articles(privacy_request.regime)
                else _("No action to add: the recipients added to the inventory since are now to be told."),
            )
        if restricting:
            # The choice may have left out a restriction planned before, which no other message would tell.
            names = ", ".join(source.name for source in actions.restriction_sources(privacy_request))
            messages.info(request, _("The restriction covers: %(sources)s.") % {"sources": names})
    return redirect(_panel_url(reference))


@staff_view
@require_POST
def rectification(request: HttpRequest, reference: str) -> HttpResponse:
    privacy_request = _get_request(reference)
    if not roles.can_work(request.user, privacy_request):
        raise PermissionDenied(_("You may not act on this request."))
    form = RectificationForm(request.POST, auto_id="rectification-%s")
    status = 400
    if form.is_valid():
        try:
            actions.rectification_change_set(request=privacy_request, actor=Actor.staff(request.user), **form.change())
        except NotAllowed:
            raise
        except ValidationError as error:
            form.add_error("value", error)
        except RequestError as error:
            form.add_error(None, str(error))
            status = 409
        else:
            messages.success(request, _("Corrected value saved."))
            return redirect(_panel_url(reference))
    return _page_with_form(request, privacy_request, "rectification", form, status)


# Button steps: service, success message. "done" (manual sources) takes a form and is handled apart.
STEPS = {
    "dry_run": (actions.dry_run_start, gettext_lazy("Dry run started.")),
    "approve": (actions.approve, gettext_lazy("Approved: the action can now be executed.")),
    "execute": (actions.execute, gettext_lazy("Execution started.")),
    "retry": (actions.execute, gettext_lazy("Execution started again.")),
}


# The kinds whose Execute (and Retry) asks first (action_confirm): they change or delete the subject's data in the
# source for good. A restriction is undone by lifting it, and a lifting was announced to the subject weeks before.
CONFIRMED_KINDS = (ActionKind.ERASE, ActionKind.RECTIFY)


@staff_view
def action_confirm(request: HttpRequest, public_id, step: str) -> HttpResponse:
    """The page asking to confirm an erasure's or a rectification's Execute (or Retry): which source, what kind, and
    what its dry run found, with a button posting to action_step, which checks everything again (approved, dry run
    fresh, a copy first...). A GET that changes nothing; refused (403) to those who may not act on the request.
    Where the step is no longer offered, back to the panel, saying why."""
    if step not in ("execute", "retry"):
        return HttpResponse(status=404)
    source_action = get_object_or_404(SourceAction.objects.select_related("request", "source"), public_id=public_id)
    privacy_request = source_action.request
    if not roles.can_work(request.user, privacy_request):
        raise PermissionDenied
    # As the panel shows it (its counts, holds and whether execution is offered): one set of rules for both.
    panel = panel_context(request, privacy_request)
    action = next(a for a in panel["actions"] if a.pk == source_action.pk)
    offered = action.acting and not action.execution_refusal and (
        (step == "execute" and action.status == ActionStatus.APPROVED and not action.too_early) or (step == "retry" and action.can_retry)
    )
    if not offered:
        messages.error(request, action.execution_refusal or _("This action is not waiting to be executed: see its status below."))
        return redirect(_panel_url(privacy_request.reference))
    if action.kind not in CONFIRMED_KINDS:  # nothing to confirm: the panel posts to action_step directly
        return redirect(_panel_url(privacy_request.reference))
    changes = []
    if action.kind == ActionKind.RECTIFY:  # the values it writes there
        changes = [change for change in panel["changes"] if change.category.source_id == action.source_id]
    context = {"r": privacy_request, "a": action, "step": step, "changes": changes}
    return render(request, "staff/source_action_confirm.html", context)


@staff_view
@require_POST
def action_step(request: HttpRequest, public_id, step: str) -> HttpResponse:
    if step not in ("done", "lift", "cancel_lift", "notice_posted") and step not in STEPS:
        return HttpResponse(status=404)
    action = SourceAction.objects.select_related("request", "source").filter(public_id=public_id).first()
    if action is None:
        # Only leaving a restriction out of its scope (actions._leave_out) and planning again an action voided when who
        # makes the request was corrected (actions.plan_actions) delete an action: a colleague did so since this page
        # was loaded. Said on the page the button was on, as a click refused later is.
        messages.error(request, actions.action_gone())
        return redirect(_form_page(request))
    actor = Actor.staff(request.user)
    if step == "lift":
        return _plan_lift(request, action, actor)
    if step == "cancel_lift":
        return _cancel_lift(request, action, actor)
    try:
        if step == "done":
            form = ManualDoneForm(request.POST, auto_id=f"done-{action.public_id}-%s")
            if not form.is_valid():
                return _page_with_form(request, action.request, f"done-{action.public_id}", form, status=400)
            actions.manual_action_done(action=action, actor=actor, rows=form.cleaned_data["rows"])
            success = _("Recorded as done.")
        elif step == "notice_posted":
            action = lifting.record_notice_posted(lift=action, actor=actor)
            success = _("The notice is recorded as posted. The restriction may be lifted from %(day)s.") % {
                "day": date_in_words(action.lift_not_before)
            }
        else:
            service, success = STEPS[step]
            action = service(action=action, actor=actor)
            if step == "approve" and action.kind == ActionKind.LIFT_RESTRICTION and timezone.localdate() < action.lift_not_before:
                # The subject was told the restriction lasts until then (Art. 18(3)): it cannot run before.
                success = _("Approved: it may be executed from %(day)s.") % {"day": date_in_words(action.lift_not_before)}
            if step in ("execute", "retry") and certificate_service.searched_nothing(action):
                # Allowed, and the letter says so; but staff should know the source keeps the subject's data.
                success = _(
                    "Execution started. There is no verified %(identifier)s to search %(source)s by: it changes nothing "
                    "there, and the letter will say that system could not be searched. To act on its data, verify one "
                    "and run the dry run again."
                ) % {"identifier": in_sentence(IdentityKind(action.source.identity_kind).label), "source": action.source.name}
    except NotAllowed:
        raise
    except RequestError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, success)
    return redirect(_panel_url(action.request.reference))


def _plan_lift(request: HttpRequest, restriction: SourceAction, actor: Actor) -> HttpResponse:
    key = f"lift-{restriction.public_id}"
    form = LiftForm(request.POST, auto_id=f"{key}-%s")
    if not form.is_valid():
        return _page_with_form(request, restriction.request, key, form, status=400)
    try:
        lift = lifting.plan_lift(restriction=restriction, actor=actor, reason=form.cleaned_data["reason"])
    except NotAllowed:
        raise
    except RequestError as error:
        form.add_error(None, str(error))
        return _page_with_form(request, restriction.request, key, form, status=409)
    day = date_in_words(lift.lift_not_before)
    if actions.subject_reached_by_post(lift.request):
        messages.warning(request, _(
            "Nothing was emailed: this subject has no email address, or their mail server refuses it. Send them the "
            "notice shown under Messages by post now, then record it as posted on this page: the lifting waits for "
            "that. Posted today, the restriction may be lifted from %(day)s."
        ) % {"day": day})
    else:
        messages.success(request, _("The subject has been told. The restriction may be lifted from %(day)s.") % {"day": day})
    return redirect(_panel_url(restriction.request.reference))


def _cancel_lift(request: HttpRequest, lift: SourceAction, actor: Actor) -> HttpResponse:
    key = f"cancel_lift-{lift.public_id}"
    form = CancelLiftForm(request.POST, auto_id=f"{key}-%s")
    if not form.is_valid():
        return _page_with_form(request, lift.request, key, form, status=400)
    try:
        lifting.cancel_lift(lift=lift, actor=actor, reason=form.cleaned_data["reason"])
    except NotAllowed:
        raise
    except RequestError as error:
        form.add_error(None, str(error))
        return _page_with_form(request, lift.request, key, form, status=409)
    if actions.subject_reached_by_post(lift.request):
        messages.warning(request, _(
            "The lifting is cancelled. Nothing was emailed: this subject has no email address, or their mail server "
            "refuses it. Send them the letter shown under Messages by post: the restriction stays in force."
        ))
    else:
        messages.success(request, _("The lifting is cancelled and the subject has been told that the restriction stays in force."))
    return redirect(_panel_url(lift.request.reference))


@not_activity
@staff_view
def action_progress(request: HttpRequest, public_id) -> HttpResponse:
    """Polled by the request page while a dry run or an execution is under way: no activity (export_progress)."""
    # Its request read with it: a closed request's action says it will not be carried out (certificate.not_carried_out).
    action = get_object_or_404(SourceAction.objects.select_related("request"), public_id=public_id)
    return JsonResponse(
        {
            "status": action.status,
            "label": certificate_service.status_label(action),
            "progress": action.progress,
            "working": action.status in WORKING,
        }
    )


@staff_view
@require_POST
def notice_step(request: HttpRequest, public_id, step: str) -> HttpResponse:
    notice = get_object_or_404(RecipientNotice.objects.select_related("request"), public_id=public_id)
    actor = Actor.staff(request.user)
    reference = notice.request.reference
    if step == "waive":
        if not roles.can_work(request.user, notice.request):
            raise PermissionDenied(_("You may not act on this request."))
        key = f"waive-{notice.public_id}"
        form = WaiveForm(request.POST, auto_id=f"{key}-%s", language=notice.request.language)
        if not form.is_valid():
            return _page_with_form(request, _get_request(reference), key, form, status=400)
        try:
            notices.waive(notice=notice, actor=actor, **form.cleaned_data)
        except NotAllowed:
            raise
        except RequestError as error:
            form.add_error(None, str(error))
            return _page_with_form(request, _get_request(reference), key, form, status=409)
        messages.success(request, _("Recorded: this recipient will not be notified."))
    elif step == "resend":
        try:
            notices.resend(notice=notice, actor=actor)
        except NotAllowed:
            raise
        except RequestError as error:
            messages.error(request, str(error))
        else:
            messages.success(request, _("The notice is being sent again."))
    else:
        return HttpResponse(status=404)
    return redirect(_panel_url(reference))


@staff_view
# The certificate's styles are inline: the same HTML becomes the PDF.
@csp_update({"style-src": [UNSAFE_INLINE]})
def certificate(request: HttpRequest, reference: str) -> HttpResponse:
    with translation.override(_certificate_language(request)):
        return HttpResponse(certificate_service.render_certificate_html(_get_request(reference)))


@staff_view
def certificate_pdf(request: HttpRequest, reference: str) -> HttpResponse:
    privacy_request = _get_request(reference)
    with translation.override(_certificate_language(request)):
        pdf = certificate_service.render_certificate_pdf(privacy_request)
    return HttpResponse(
        pdf,
        content_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="certificate-{privacy_request.reference}.pdf"'},
    )


def _certificate_language(request: HttpRequest) -> str:
    """The language asked for (?language=fr: the subject's, for a certificate sent to them), else the reader's."""
    asked = request.GET.get("language", "")
    return asked if asked in dict(settings.LANGUAGES) else translation.get_language()
