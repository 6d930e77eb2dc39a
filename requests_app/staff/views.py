"""The staff dashboard: sign-in with two factors, home, queue, request page and
the DPO's settings (assignment rules, response templates, teams, users).

Views are thin: they read through selectors, write through services, and
turn a RequestError into a message (NotAllowed into a 403).
"""

import datetime
import functools
import json
import math
import secrets
from decimal import Decimal
from urllib.parse import urlencode, urlsplit

import segno
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import logout as auth_logout
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import ProtectedError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.utils.translation import get_language, gettext_lazy
from django.views.decorators.http import require_POST
from django.views.i18n import set_language
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

from requests_app import emails, lifecycle, roles, selectors, sms
from requests_app.audit import Actor, form_changes, record_event
from requests_app.context import controller_details
from requests_app.exports.package import not_searched_reason
from requests_app.lifecycle import VERIFIED_OPEN, NotAllowed, RequestError
from requests_app.models import (
    AssignmentRule,
    Attachment,
    AuditChainCheck,
    DeliveryStatus,
    ExportKind,
    ExportPackage,
    ExportStatus,
    LegalHold,
    ManualTask,
    Message,
    MessageDirection,
    PrivacyRequest,
    Recipient,
    RecipientNotice,
    RejectionGround,
    RequestType,
    ResponseTemplate,
    SourceAction,
    SourceCategory,
    SourceField,
    SourceSystem,
    StaffProfile,
    Status,
    SuppressionPurpose,
    Team,
    WebhookDelivery,
    WebhookEndpoint,
    LANGUAGE_NAMES_IN_SENTENCE,
    text_digest,
    translation_languages,
)
from requests_app.services import actions
from requests_app.services import certificate as certificate_service
from requests_app.services import deadlines as deadline_service
from requests_app.services import notices as notice_service
from requests_app.services import exports as export_service
from requests_app.services import agents, handling, intake, routing, staff_setup
from requests_app.services import webhooks as webhook_service
from requests_app.services import transmission
from requests_app.staff import forms
from requests_app.staff.sessions import not_activity, stamp_code_step
from requests_app.wording import cites_gdpr_articles, in_sentence

PAGE_SIZE = 50
# Bulk completion shows the letter of each request it closes, written by the completion itself (rolled back), and
# writes it again to send it: about a tenth of a second each, twice over. This many keep each step well within a web
# worker's timeout (a worker killed part-way leaves some closed and nobody told which), and the page one a DPO reads.
BULK_COMPLETE_MAX = 50


# Set when a form is sent without a signed-in session (it had expired): once signed in again, staff are
# told that what they sent was not acted on.
ACTION_LOST_SESSION_KEY = "staff_action_lost"


def staff_view(view=None, *, dpo_only=False, readers=roles.ROLES):
    """Signed in, two factors verified, and a staff role: one of `readers`, or the DPO for `dpo_only` views.

    A form sent while signed out is dropped: after signing in staff go back to the page it was sent from,
    not to the address it was sent to, which may take only forms (a GET there would be a blank 405), and
    are told it was not sent. Such an address opened directly leads to the page its form is on."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs):
            user = request.user
            if not user.is_authenticated or not user.is_verified():
                step = "staff:otp" if user.is_authenticated else "staff:login"
                next_url = request.get_full_path()
                if request.method not in ("GET", "HEAD"):
                    request.session[ACTION_LOST_SESSION_KEY] = True
                    next_url = _form_page(request)
                return redirect(f"{reverse(step)}?{urlencode({'next': next_url})}")
            role = roles.role_of(user)
            if role not in readers or (dpo_only and role != roles.DPO):
                raise PermissionDenied
            action_lost = request.session.pop(ACTION_LOST_SESSION_KEY, False)
            if action_lost:
                messages.warning(request, _("Your session had expired, so your last action was not sent. Do it again."))
            try:
                response = view(request, *args, **kwargs)
            except NotAllowed as error:
                raise PermissionDenied(str(error)) from error
            if response.status_code == 405 and request.method == "GET":
                if not action_lost:
                    messages.warning(request, _("That address only takes a form sent from the dashboard, so nothing was done."))
                return redirect(_page_of_form_url(request, kwargs))
            return response

        return wrapper

    return decorator(view) if view else decorator


# The selected requests a bulk completion leaves alone are named up to this many (the rest counted).
LEFT_ALONE_SHOWN = 50


def _not_completable(requests) -> list[tuple[str, str]]:
    """(reference, why) for selected requests a bulk completion leaves alone before checking their work:
    not in progress, or not this user's to work; the first LEFT_ALONE_SHOWN."""
    return [
        (
            privacy_request.reference,
            _("it is not in progress but %(status)s") % {"status": in_sentence(privacy_request.get_status_display())}
            if privacy_request.status != Status.IN_PROGRESS
            else _("it is not yours to work"),
        )
        for privacy_request in requests.order_by("reference")[:LEFT_ALONE_SHOWN]
    ]


def _form_page(request: HttpRequest) -> str:
    """The dashboard page a form was sent from (its Referer, if a page of the dashboard), else the dashboard."""
    home = reverse("staff:home")
    referer = request.headers.get("referer", "")
    on_this_site = url_has_allowed_host_and_scheme(
        referer, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    page = urlsplit(referer)
    if on_this_site and page.path.startswith(home):
        return f"{page.path}?{page.query}" if page.query else page.path
    return home


def _page_of_form_url(request: HttpRequest, kwargs: dict) -> str:
    """The page whose form posts to this address, which takes only forms: the request's page where the
    address names the request or one of its actions or notices, else the dashboard's page it belongs to."""
    name = request.resolver_match.url_name
    if "reference" in kwargs:
        return reverse("staff:request", args=[kwargs["reference"]])
    if name == "export_action":
        return reverse("staff:export", args=[kwargs["public_id"]])
    if name in ("bulk", "queue_search"):
        return reverse("staff:queue")
    owner = {"source_action": SourceAction, "notice": RecipientNotice}.get(name)
    if owner is not None:
        reference = owner.objects.filter(public_id=kwargs["public_id"]).values_list("request__reference", flat=True).first()
        if reference:
            return reverse("staff:request", args=[reference])
    return reverse("staff:home")


def _safe_next(request: HttpRequest, default: str) -> str:
    """Where to go after signing in: a path on this site, or `default`. Not a relative "foo", which
    redirect() would take for the name of a URL pattern (and fail on with a 500)."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    on_this_site = url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return target if on_this_site and target.startswith("/") else default


# --- Sign-in -----------------------------------------------------------------


class LoginView(auth_views.LoginView):
    """Password first (django-axes counts failures); the TOTP step follows."""

    template_name = "staff/login.html"
    redirect_authenticated_user = False

    def form_valid(self, form):
        # Signing in again with the password starts a new sign-in, code step included: Django keeps a session's data
        # when its own user signs in again, and with it django-otp's note that the code was given, which would take
        # the password alone straight to the dashboard, unaudited.
        self.request.session.pop(DEVICE_ID_SESSION_KEY, None)
        return super().form_valid(form)

    def get_success_url(self):
        return f"{reverse('staff:otp')}?{urlencode({'next': _safe_next(self.request, reverse('staff:home'))})}"


def otp(request: HttpRequest) -> HttpResponse:
    """Second factor: the code from the authenticator set up through the account's invitation."""
    user = request.user
    if not user.is_authenticated:
        return redirect("staff:login")
    if roles.role_of(user) is None:
        raise PermissionDenied
    next_url = _safe_next(request, reverse("staff:home"))
    if user.is_verified():
        return redirect(next_url)

    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        # Setting one up here would let whoever learnt the password bind their own (staff_setup).
        auth_logout(request)
        return render(request, "staff/no_authenticator.html", status=403)

    form = forms.TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        # After wrong codes django-otp refuses every code, the right one too, for a doubling delay: say so.
        allowed, throttled = device.verify_is_allowed()
        if not allowed:
            wait = math.ceil((throttled["locked_until"] - timezone.now()).total_seconds())
            form.add_error(
                "token",
                ngettext(
                    "Too many wrong codes: wait %(seconds)s second, then enter the current code.",
                    "Too many wrong codes: wait %(seconds)s seconds, then enter the current code.",
                    wait,
                )
                % {"seconds": wait},
            )
        elif device.verify_token(form.cleaned_data["token"].strip()):
            otp_login(request, device)
            # A new session key, as the password step got one: whoever planted a half-signed-in session
            # cookie in this browser (they knew the password) must not find it signed in with our code.
            request.session.cycle_key()
            stamp_code_step(request)
            with transaction.atomic():
                record_event(None, "staff_signed_in", actor=Actor.staff(user), data={})
            remember_language(user, request.LANGUAGE_CODE)
            return redirect(next_url)
        else:
            with transaction.atomic():
                record_event(None, "staff_code_refused", actor=Actor.staff(user), data={})  # the password was right
            if staff_setup.code_already_used(device, form.cleaned_data["token"]):
                # "Not right" would have staff retype the same right code until a new one shows.
                form.add_error("token", _("That code was already used. Wait for your authenticator to show a new one, then enter it."))
            else:
                form.add_error("token", _("That code is not right, or it expired. Try the current one."))
    return render(request, "staff/otp.html", {"form": form, "next": next_url})


# The setup link's token moves from the URL into the session at once (as Django's password reset does),
# so it is not in the address bar, the history or a Referer header while the page is open. The session
# also keeps the authenticator key this browser is shown (staff_setup.new_authenticator_key) and, once
# chosen, the new password, hashed: a wrong code must not make its owner type it again, and a password is
# never sent back into a page. Both belong to this link: opening a link starts afresh, and they go when
# the setup completes or the link stops working. (Sessions are kept on the server: the database.)
SETUP_SESSION_KEY = "staff_setup"


def setup_link(request: HttpRequest, uid: str, token: str) -> HttpResponse:
    request.session[SETUP_SESSION_KEY] = {"uid": uid, "token": token, "key": staff_setup.new_authenticator_key()}
    return redirect("staff:setup")


def setup(request: HttpRequest) -> HttpResponse:
    """Choose a password and set up the authenticator, through the link an invitation emailed."""
    pending = request.session.get(SETUP_SESSION_KEY) or {"uid": "", "token": "", "key": ""}
    user = staff_setup.user_for_link(pending["uid"], pending["token"])
    if user is None:
        request.session.pop(SETUP_SESSION_KEY, None)
        return render(request, "staff/setup_link_invalid.html", status=400)
    device = staff_setup.authenticator(user, pending["key"])
    form = forms.AccountSetupForm(user, request.POST or None, password_kept=bool(pending.get("password_hash")))
    if request.method == "POST":
        chosen = form.chosen_password()
        if chosen:
            pending["password_hash"] = make_password(chosen)
            request.session[SETUP_SESSION_KEY] = pending
            form.keep_password()
        if form.is_valid():
            if staff_setup.code_matches(device, form.cleaned_data["token"]):
                try:
                    staff_setup.complete_setup(
                        uid=pending["uid"], token=pending["token"], password_hash=pending["password_hash"], device=device
                    )
                except staff_setup.LinkUsed:
                    request.session.pop(SETUP_SESSION_KEY, None)
                    return render(request, "staff/setup_link_invalid.html", status=400)
                del request.session[SETUP_SESSION_KEY]
                messages.success(request, _("Your account is ready: sign in with your password and a code."))
                return redirect("staff:login")
            form.add_error("token", _("That code is not right, or it expired. Try the current one."))
    context = {
        "form": form,
        "account": user,
        # No fixed size (omitsize): the stylesheet scales it whole instead of cropping its edge.
        "qr_svg": segno.make(device.config_url).svg_inline(scale=4, omitsize=True),
        "secret": device.config_url.split("secret=")[1].split("&")[0],
    }
    return render(request, "staff/setup.html", context)


def remember_language(user, language: str) -> None:
    """The language the product's emails to this staff member are written in: their dashboard's."""
    StaffProfile.objects.update_or_create(user=user, defaults={"language": language})


@require_POST
def language(request: HttpRequest) -> HttpResponse:
    """Switch the dashboard's language (Django's set_language) and, signed in, write emails in it too."""
    response = set_language(request)
    chosen = request.POST.get("language")
    if request.user.is_authenticated and request.user.is_verified() and chosen in dict(settings.LANGUAGES):
        remember_language(request.user, chosen)
    return response


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    auth_logout(request)
    return redirect("staff:login")


PASSWORD_CHANGE_ATTEMPTS = 5


@staff_view
def password_change(request: HttpRequest) -> HttpResponse:
    """Change one's own password, giving the current one again. Recorded in the audit trail;
    this session stays signed in and every other session of the account ends."""
    form = PasswordChangeForm(request.user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            form.save()
            record_event(None, "staff_password_changed", actor=Actor.staff(request.user), data={})
        update_session_auth_hash(request, form.user)
        messages.success(request, _("Your password is changed. Your other sessions are signed out."))
        return redirect("staff:home")
    if "old_password" in form.errors:
        # The form checks the password without django-axes: a stolen session must not be a way to
        # guess it. A few wrong tries end the session, and signing in again needs the second factor.
        failures = request.session.get("password_change_failures", 0) + 1
        request.session["password_change_failures"] = failures
        if failures >= PASSWORD_CHANGE_ATTEMPTS:
            with transaction.atomic():
                record_event(None, "staff_password_change_refused", actor=Actor.staff(request.user), data={"attempts": failures})
            auth_logout(request)
            messages.error(request, _("Too many wrong current passwords: you are signed out. Sign in again."))
            return redirect("staff:login")
    return render(request, "staff/password_change.html", {"form": form})


# --- Home and queue ----------------------------------------------------------


@staff_view
def home(request: HttpRequest) -> HttpResponse:
    summary = selectors.workload_summary(user=request.user)
    manual_tasks = ManualTask.objects.filter(
        assignee=request.user, done_at__isnull=True, export__status=ExportStatus.WAITING_MANUAL
    ).select_related("source", "export__request")
    chain_check = AuditChainCheck.objects.order_by("-checked_at").first()
    return render(
        request, "staff/home.html", {"summary": summary, "manual_tasks": manual_tasks, "chain_check": chain_check}
    )


class KnownCountPaginator(Paginator):
    """A paginator told the total, which the facet query already counted."""

    def __init__(self, object_list, per_page, count: int):
        super().__init__(object_list, per_page)
        self._known_count = count

    @cached_property
    def count(self):
        return self._known_count


SEARCHES_KEPT = 20


def queue_filters(request: HttpRequest, query) -> selectors.QueueFilters:
    """The filters in `query`. A search is kept in the session and named in the
    query by an opaque token, so names, emails and phone numbers never reach a URL
    (access logs, browser history)."""
    if "q" in query:
        # Search text in a URL is refused rather than dropped: dropping it would
        # widen the list, and a bulk action on "everything matching".
        return selectors.QueueFilters(invalid=True)
    data = query.copy()
    token = query.get("search", "")
    searches = request.session.get("queue_searches", {})
    if token and token not in searches:
        # A search replaced by newer ones, or made in another session (a colleague's link): ignoring the
        # token would show, and let a bulk action change, the whole queue.
        return selectors.QueueFilters(invalid=True, search_lost=True)
    data["q"] = searches.get(token, "")
    filters = forms.QueueFilterForm(data).filters()
    if selectors.search_too_broad(filters.q):
        # It would list most requests, round the other filters; the search box keeps it, to be made longer.
        return selectors.QueueFilters(invalid=True, search_too_short=True, q=filters.q)
    return filters


def _unreadable_filter_message(filters: selectors.QueueFilters) -> str:
    if filters.search_too_short:
        return _(
            "That search is too short to narrow the list, so nothing matches. Give at least %(digits)s digits of "
            "a reference's number (as in 2026-00123 or 00123), %(letters)s letters of a name, a whole email "
            "address or a phone number."
        ) % {"digits": selectors.MIN_REFERENCE_NUMBER_DIGITS, "letters": selectors.MIN_NAME_CHARACTERS}
    if filters.search_lost:
        return _(
            "This search is no longer kept (newer searches replaced it, or it was made in another session), "
            "so nothing matches: search again."
        )
    return _("A filter value is not valid, so nothing matches. Clear the filters to start again.")


@staff_view
@require_POST
def queue_search(request: HttpRequest) -> HttpResponse:
    """Keep the search text in the session and show the queue with its token."""
    query = QueryDict(request.POST.get("query", "")).copy()
    for name in ("search", "q", "page"):
        query.pop(name, None)
    text = request.POST.get("q", "").strip()[:200]
    if text:
        searches = request.session.get("queue_searches", {})
        token = secrets.token_urlsafe(8)
        searches = {**dict(list(searches.items())[-(SEARCHES_KEPT - 1):]), token: text}
        request.session["queue_searches"] = searches
        query["search"] = token
    return redirect(f"{reverse('staff:queue')}?{query.urlencode()}")


@staff_view
def queue(request: HttpRequest) -> HttpResponse:
    filters = queue_filters(request, request.GET)
    if filters.invalid:
        messages.error(request, _unreadable_filter_message(filters))
    facets, total = selectors.queue_facets(filters, user=request.user)
    requests = selectors.queue_queryset(filters, user=request.user)
    page = KnownCountPaginator(requests, PAGE_SIZE, total).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "filters": filters,
        "facets": [(name, selectors.FACET_LABELS[name], options) for name, options in facets.items()],
        "page": page,
        "total": total,
        "query": query.urlencode(),
        "search_token": request.GET.get("search", ""),
        "bulk_form": forms.BulkForm(),
        "can_bulk": roles.role_of(request.user) in (roles.DPO, roles.HANDLER),
    }
    return render(request, "staff/queue.html", context)


@staff_view
@require_POST
def bulk(request: HttpRequest) -> HttpResponse:
    """Apply one action to the selected requests, or to everything matching the filter."""
    form = forms.BulkForm(request.POST)
    back = f"{reverse('staff:queue')}?{request.POST.get('query', '')}"
    if roles.role_of(request.user) not in (roles.DPO, roles.HANDLER):
        raise PermissionDenied
    if not form.is_valid():
        messages.error(request, " ".join(" ".join(errors) for errors in form.errors.values()))
        return redirect(back)

    if form.cleaned_data["everything"]:
        filters = queue_filters(request, QueryDict(request.POST.get("query", "")))
        if filters.invalid:
            # It matches nothing, so nothing would change anyway: say so rather than nothing at all. The
            # queue it goes back to, with the same filter, says why it cannot be read.
            messages.error(request, _("Nothing was changed: the action was for every request matching the filter, and the filter cannot be read."))
            return redirect(back)
        targets = selectors.queue_queryset(filters, user=request.user)
    else:
        targets = PrivacyRequest.objects.filter(reference__in=form.cleaned_data["references"]).order_by("reference")

    actor = Actor.staff(request.user)
    action = form.cleaned_data["action"]
    if action == "complete":
        return _bulk_complete(request, targets, back)
    if action == "assign":
        assignee = form.cleaned_data["assignee"]
        apply = lambda r: routing.request_assign(request=r, assignee=assignee, actor=actor)  # noqa: E731
    else:
        shown_status = form.cleaned_data["shown_status"]

        def apply(r):
            # A request waiting for the subject resumes on its own page, where staff see what was asked: from
            # the queue, "Start work" would end the wait (and restart the clock) of a question a colleague sent.
            if r.status == Status.AWAITING_SUBJECT:
                raise RequestError(_("It is waiting for the subject: resume it from its page."))
            handling.request_transition(request=r, actor=actor, name=action, expected_status=shown_status.get(r.reference, r.status))

    result = handling.bulk_apply(targets.iterator(chunk_size=500), apply)
    return _bulk_outcome(request, result, back)


def _bulk_outcome(request: HttpRequest, result: handling.BulkResult, back: str) -> HttpResponse:
    """Back to the queue, saying for how many requests the action was done, and naming each one skipped with why."""
    if result.done:
        count = len(result.done)
        messages.success(request, ngettext("Done for %(count)s request.", "Done for %(count)s requests.", count) % {"count": count})
    for reference, reason in result.skipped[:20]:
        messages.warning(request, f"{reference}: {reason}")
    if len(result.skipped) > 20:
        messages.warning(request, _("%(count)s more were skipped.") % {"count": len(result.skipped) - 20})
    return redirect(back)


def _bulk_complete(request: HttpRequest, targets, back: str) -> HttpResponse:
    """Complete the selected requests with the standard letter, once their letters were shown and confirmed.

    Closing requests and sending their letters cannot be undone, so it goes in two steps, as closing one request
    does (CONFIRMED). The first shows which requests will close (in progress, workable by this user, and nothing
    actions.completion_blockers or their letter objects to), those that will not and why, and each letter as it
    will be sent (_completion_letters). Its button posts back the list it showed, not the filter, so that a request
    matching it only by then is not closed unseen, with the digest of each letter (_confirmed_letters).

    The second sends only if the requests that would close now, and their letters, are exactly those shown: else
    nothing is sent, and the page shows them again, saying what changed. Then each request closes in its own
    transaction (handling.bulk_apply: a long one would hold the audit trail's lock), its letter checked again as
    written, under its row's lock: one a colleague changed in the moment between is left open and named with why,
    the others close. The requests listed as not closing are left as they are."""
    actor = Actor.staff(request.user)
    candidates = roles.workable(request.user, targets.filter(status=Status.IN_PROGRESS))
    if candidates.count() > BULK_COMPLETE_MAX:
        messages.error(request, _("That is more than %(max)s requests to complete at once: narrow the filter.") % {"max": BULK_COMPLETE_MAX})
        return redirect(back)
    to_check = list(candidates.order_by("reference"))
    letters, blocked = _completion_letters(to_check, actor)
    now = {privacy_request.reference: letter.digest() for privacy_request, letter in letters}
    shown = _confirmed_letters(request.POST.get("confirmed_letters"))
    if not now or shown != now:
        checked = [candidate.reference for candidate in to_check]
        if shown is not None and set(shown) == set(now):
            changed = sorted(reference for reference in now if shown[reference] != now[reference])
            messages.warning(request, ngettext(
                "Nothing was sent: the letter to %(references)s changed since you confirmed. Read it again below before you confirm.",
                "Nothing was sent: the letters to %(references)s changed since you confirmed. Read them again below before you confirm.",
                len(changed),
            ) % {"references": ", ".join(changed)})
        context = {
            "count": len(now),
            "blocked": blocked,
            "left_alone": _not_completable(targets.exclude(reference__in=checked)),
            "left_alone_count": targets.exclude(reference__in=checked).count(),
            # The requests that would close are not those confirmed (one closed meanwhile, or came to be closable).
            "changed": shown is not None and set(shown) != set(now),
            "references": list(now),
            "letter_groups": _letter_groups(letters),
            "confirmed_letters": " ".join(f"{reference}:{digest}" for reference, digest in now.items()),
            "query": request.POST.get("query", ""),
            "back": back,
        }
        return render(request, "staff/bulk_confirm.html", context)

    def complete(privacy_request: PrivacyRequest) -> None:
        with transaction.atomic():
            # The letter is emailed once this commits: one other than confirmed (its request changed in the moment
            # since the check above) rolls back with the completion, and is not sent.
            handling.request_complete(request=privacy_request, actor=actor, letter="", expected_status=Status.IN_PROGRESS)
            # With its request as it is now, closed (the email says so), as the email task reads it.
            written = Message.objects.select_related("request").filter(
                request=privacy_request, direction=MessageDirection.TO_SUBJECT
            ).latest("pk")
            if emails.LetterPreview.of_message(written).digest() != shown[privacy_request.reference]:
                raise RequestError(_("Its letter changed since you confirmed, so it was not sent and the request is still open: complete it again."))

    closing = targets.filter(reference__in=list(now)).order_by("reference")
    return _bulk_outcome(request, handling.bulk_apply(closing.iterator(chunk_size=500), complete), back)


def _completion_letter(privacy_request: PrivacyRequest, actor: Actor) -> emails.LetterPreview:
    """The standard completion letter that completing `privacy_request` would send now: its service's preview, with
    every check of a completion, rolled back. Raises the RequestError the completion would refuse with."""
    try:
        handling.request_complete(request=privacy_request, actor=actor, letter="", expected_status=Status.IN_PROGRESS, preview=True)
    except emails.LetterPreview as letter:
        return letter
    raise RuntimeError("request_complete returned from a preview instead of raising LetterPreview")


def _completion_letters(candidates: list[PrivacyRequest], actor: Actor) -> tuple[list[tuple], list[tuple]]:
    """([(request, its letter)], [(reference, [reasons])]): the `candidates` (in progress, workable) that a bulk
    completion would close, each with the letter it would send now, and those it would not, with why. The rules of
    actions.completion_blockers are read for all at once; only the requests they let through have their letter
    written, a refusal there (a template that cannot be used) leaving the request out too."""
    letters, blocked = [], []
    actions.prefetch_for_completion(candidates)
    for candidate in candidates:
        refusals = actions.completion_blockers(candidate)
        if not refusals:
            try:
                letters.append((candidate, _completion_letter(candidate, actor)))
                continue
            except RequestError as error:
                refusals = [str(error)]
        blocked.append((candidate.reference, refusals))
    return letters, blocked


def _confirmed_letters(posted: str | None) -> dict[str, str] | None:
    """{reference: digest of its letter} that a bulk completion's confirmation page showed, from its
    confirmed_letters field ("reference:digest" pairs, space-separated); None when there was none (the first step,
    or an old page's post)."""
    if posted is None:
        return None
    return dict(pair.partition(":")[::2] for pair in posted.split())


def _letter_groups(letters: list[tuple]) -> list[dict]:
    """The distinct letters among `letters` [(request, letter)], each with the references of the requests it goes to:
    letters alike but for their own request's reference (which its text and status link name) are shown once, as
    written for the first of them. What a DPO closing dozens of requests can read through, and miss none."""
    groups = {}
    for privacy_request, letter in letters:
        reference = privacy_request.reference
        alike = (letter.subject.replace(reference, "\0"), letter.body.replace(reference, "\0"), letter.by_post, privacy_request.language)
        group = groups.setdefault(alike, {"letter": letter, "language": privacy_request.language, "references": []})
        group["references"].append(reference)
    return list(groups.values())


# --- The request page ----------------------------------------------------------


# Each kind of inventory item a letter or the report reads, as staff call it, with the DPO's page for its texts in
# another language.
TRANSLATION_PAGES = {
    SourceSystem: (gettext_lazy("Source system"), "staff:source_translation"),
    SourceCategory: (gettext_lazy("Data category"), "staff:category_translation"),
    Recipient: (gettext_lazy("Recipient"), "staff:recipient_translation"),
    SourceField: (gettext_lazy("Field"), "staff:field_translation"),
    LegalHold: (gettext_lazy("Legal hold"), "staff:hold_translation"),
    SuppressionPurpose: (gettext_lazy("Suppression list"), "staff:suppression_purpose_translation"),
}


def _untranslated_texts(privacy_request: PrivacyRequest) -> dict | None:
    """The warning that the request's letters and report would mix in the default language, with each
    inventory text missing in the request's and the page where the DPO gives it; None when nothing is missing."""
    items = selectors.untranslated_inventory_texts(privacy_request)
    if not items:
        return None
    rows = []
    for untranslated in items:
        kind, url_name = TRANSLATION_PAGES[type(untranslated.item)]
        rows.append({
            "kind": kind,
            "name": str(untranslated.item),
            "fields": ", ".join(str(forms.FIELD_LABELS[field]) for field in untranslated.fields),
            "url": reverse(url_name, args=[untranslated.item.pk, privacy_request.language]),
        })
    return {
        "language": LANGUAGE_NAMES_IN_SENTENCE[privacy_request.language],
        "main_language": LANGUAGE_NAMES_IN_SENTENCE[settings.LANGUAGE_CODE],
        "items": rows,
    }


# The owed emails the worker lost are queued again every few minutes (emails.requeue_owed_emails): one owed longer
# than this is held up by something staff should look at (the worker or the mail server down).
EXTENSION_EMAIL_LATE_AFTER = datetime.timedelta(minutes=15)


def _request_context(request: HttpRequest, privacy_request: PrivacyRequest) -> dict:
    user = request.user
    can_work = roles.can_work(user, privacy_request)
    allowed = {t.name for t in lifecycle.allowed_transitions(privacy_request.status)}
    paused = deadline_service.open_pause(privacy_request)
    identities = list(privacy_request.identities.select_related("verified_by"))
    verified_for_someone_else = selectors.identities_verified_for_someone_else(privacy_request)
    for identity in identities:
        # Shown by each identifier, and again in the verify form: one person's identifier on someone else's request.
        identity.verified_for_someone_else = verified_for_someone_else.get(identity.id, [])
        # Verified before the rule by a method that does not prove it (a phone number by an identity document).
        identity.not_searched_because = (
            handling.unproven_identity_refusal(kind=identity.kind, method=identity.verification_method, request=privacy_request)
            if identity.not_searched_for_its_method
            else None
        )
    # Art. 12(3): the subject must be told of an extension within the first period; staff see whether they were.
    extension_notice = (
        privacy_request.notifications.filter(kind="deadline_extended").first() if privacy_request.is_extended else None
    )
    if "complete" in allowed:
        actions.prefetch_for_completion([privacy_request])
    return {
        "r": privacy_request,
        "can_work": can_work,
        "allowed": allowed,
        "paused": paused,
        # The date saved moves only when the clock restarts: while it stands still, the page says where it would be.
        "due_if_resumed_today": deadline_service.due_on_if_resumed_today(privacy_request) if paused else None,
        # Why the clock cannot stop (the CCPA, an overdue request): the page then offers no pause.
        "pause_refusal": deadline_service.pause_refusal(privacy_request),
        "rights": privacy_request.rights.all(),
        "identities": identities,
        "events": privacy_request.events.select_related("actor"),
        "notes": privacy_request.notes.select_related("author"),
        "messages_thread": privacy_request.messages.select_related("author").prefetch_related("attachments__deleted_by"),
        "attachments": privacy_request.attachments.select_related("deleted_by"),
        "reads_files": roles.reads_files(user, privacy_request),
        "pauses": privacy_request.pauses.all(),
        # Each with the state the certificate gives it: an ended one says what ended it.
        "exports": certificate_service.packages(privacy_request, privacy_request.exports.all()),
        # A package answers a request for a copy: the kinds this request asks for.
        "export_kinds": [(kind.value, kind.label) for kind in ExportKind if kind.value in privacy_request.requested_rights],
        "sms_available": sms.available(),
        # One the sources are searched by: export_start refuses a package without one.
        "has_verified_identity": any(identity.is_searchable for identity in identities),
        # An encrypted package's password is texted, only to the subject's line: export_start refuses it without one.
        "has_password_phone": selectors.password_phone(privacy_request) is not None,
        "forms": {slot: _action_form(slot, privacy_request) for slot in FORM_SLOTS},
        # Shown with the Complete button, so staff see what is missing before they try.
        "completion_blockers": actions.completion_blockers(privacy_request) if "complete" in allowed else [],
        # The subject's "I did not allow the agent": shown by the confirmation it now limits (agents.agent_authority_confirm).
        "subject_denied_agent": privacy_request.agent_authority_unconfirmed and agents.subject_denied_agent(privacy_request),
        "reject_ground_agent_authority": RejectionGround.AGENT_AUTHORITY_NOT_SHOWN.label,
        "extendable": deadline_service.extension_refusal(privacy_request) is None,
        # A warning, not a refusal: a late refusal still has to be sent (Art. 12(4)).
        "late_refusal_warning": deadline_service.late_refusal_warning(privacy_request) if privacy_request.is_open else None,
        "state_version": lifecycle.state_version(privacy_request),
        "extension_notice": extension_notice,
        # Owed a few minutes, the email is on its way (the worker sends it); owed longer, something stops it.
        "extension_email_late": extension_notice is not None and extension_notice.sent_at is None
        and extension_notice.created_at < timezone.now() - EXTENSION_EMAIL_LATE_AFTER,
        "fee_currency": settings.FEE_CURRENCY,
        # Why no fee may be charged (the LGPD): the page then offers no fee form, and says why.
        "fee_refusal": handling.fee_refusal(privacy_request),
        # Not a blocker (the law does not forbid it), but a letter in one language is what the subject and the
        # supervisory authority expect: shown before the letter or the package goes out.
        "untranslated_texts": _untranslated_texts(privacy_request) if privacy_request.is_open else None,
    }


# The forms of the request page, by slot. Each gets its own id prefix: several
# share field names ("body", "reason"), and every label must point at its own field.
FORM_SLOTS = {
    "assign": forms.AssignForm,
    "message": forms.MessageForm,
    "information": forms.InformationRequestForm,
    "identity": forms.IdentityVerifyForm,
    "confirm_agent_authority": forms.AgentAuthorityForm,
    "withdraw_agent_authority": forms.AgentAuthorityWithdrawForm,
    "correct_requester": forms.RequesterCorrectForm,
    "postal_address": forms.PostalAddressForm,
    "extend": forms.ExtensionForm,
    "pause": forms.PauseForm,
    "complete": forms.CompleteForm,
    "reject": forms.RejectForm,
    "forward": forms.ForwardForm,
    "fee": forms.FeeForm,
    "note": forms.NoteForm,
}


def _action_form(slot: str, privacy_request: PrivacyRequest, data=None):
    form_class = FORM_SLOTS[slot]
    takes_request = (
        forms.IdentityVerifyForm, forms.CompleteForm, forms.RejectForm, forms.ExtensionForm, forms.InformationRequestForm,
        forms.RequesterCorrectForm,
    )
    kwargs = {"privacy_request": privacy_request} if form_class in takes_request else {}
    if slot == "assign" and data is None:
        kwargs["initial"] = {"assignee": privacy_request.assignee}
    if slot == "postal_address" and data is None:
        kwargs["initial"] = {"postal_address": privacy_request.postal_address}
    return form_class(data, auto_id=f"{slot}-%s", **kwargs)


def _get_request(reference: str) -> PrivacyRequest:
    return get_object_or_404(
        PrivacyRequest.objects.select_related("assignee", "team", "organisation", "extended_by"), reference=reference
    )


@staff_view
def keep_alive(request: HttpRequest) -> HttpResponse:
    """A request, which renews the idle session (the page's "Stay signed in"); says how long it now has left, which
    is less than an idle timeout near its absolute end (sessions.SessionStore)."""
    return JsonResponse({"seconds": request.session.get_expiry_age(), "final": request.session.ends_before_idle()})


@staff_view
def request_detail(request: HttpRequest, reference: str) -> HttpResponse:
    privacy_request = _get_request(reference)
    return render(request, "staff/request.html", _request_context(request, privacy_request))


def _assign(r, form, actor, post):
    # The assignee's id the page showed, or empty for nobody. Anything else is no page of ours:
    # refused as out of date, like a page that no longer shows the request as it is.
    expected = post.get("expected_assignee", "")
    try:
        expected_id = int(expected) if expected else None
    except ValueError:
        raise lifecycle.stale(r.reference, r.status) from None
    return routing.request_assign(request=r, assignee=form.cleaned_data["assignee"], actor=actor, expected_assignee_id=expected_id)


# The actions whose success message says the subject was emailed, and what to say instead when the
# request has no email address (one recorded from a letter): staff must then send it by post.
_SEND_BY_POST = gettext_lazy("Done. This subject has no email address, so nothing was emailed: send them the text shown under Messages by post.")
TELLS_THE_SUBJECT = {
    "message": _SEND_BY_POST,
    "request_information": _SEND_BY_POST,
    "complete": _SEND_BY_POST,
    "reject": _SEND_BY_POST,
    "forward": _SEND_BY_POST,
    "fee": _SEND_BY_POST,
    "extend": gettext_lazy(
        # Before the date the request was due until now: under the CCPA too, since the GDPR month, the earlier
        # date, governs (deadlines: the extension is refused after it).
        "Deadline extended. This subject has no email address, so nothing was emailed: tell them of the new date "
        "and the reason by post before the date the request was due until now, when the first period ends "
        "(Art. 12(3))."
    ),
}
# The same, for a request whose law does not number its articles as the GDPR does (wording.cites_gdpr_articles).
EXTENDED_BY_POST_WITHOUT_ARTICLE = gettext_lazy(
    "Deadline extended. This subject has no email address, so nothing was emailed: tell them of the new date "
    "and the reason by post before the date the request was due until now, when the first period ends."
)

# Verifying an identifier while the clock was paused restarts it (handling.identity_verify).
IDENTITY_VERIFIED_CLOCK_RESTARTED = gettext_lazy(
    "Identity verification recorded. The clock runs again and the request is in progress: the days it was paused "
    "were added to the due date. If you still need something else from the subject, ask for it with Request "
    "information, which pauses the clock again."
)

# action name: (service call, success message). An action takes a form when FORM_SLOTS has one for it.
ACTIONS = {
    "assign": (_assign, gettext_lazy("Assignment saved.")),
    "message": (
        lambda r, f, a, p, preview=False: handling.message_send(
            request=r, actor=a, body=f.cleaned_data["body"], subject=f.cleaned_data["subject"], preview=preview,
        ),
        gettext_lazy("Message sent to the subject."),
    ),
    "request_information": (
        lambda r, f, a, p, preview=False: handling.request_information(
            request=r, actor=a, body=f.cleaned_data["body"], expected_status=p["expected_status"], preview=preview,
            asks_agent_authority=f.cleaned_data.get("asks_agent_authority", False),
        ),
        gettext_lazy("Information requested."),
    ),
    "verify_identity": (
        lambda r, f, a, p: handling.identity_verify(
            request=r, actor=a, identity_ids=f.cleaned_data["identities"], method=f.cleaned_data["method"], expected_status=p["expected_status"],
            delete_documents=f.cleaned_data["delete_documents"],
        ),
        gettext_lazy("Identity verification recorded."),
    ),
    "confirm_agent_authority": (
        lambda r, f, a, p: agents.agent_authority_confirm(request=r, actor=a, method=f.cleaned_data["method"]),
        gettext_lazy("Recorded: the agent's authority to act for the subject is confirmed."),
    ),
    "withdraw_agent_authority": (
        lambda r, f, a, p: agents.agent_authority_withdraw(request=r, actor=a, reason=f.cleaned_data["reason"]),
        gettext_lazy(
            "Recorded: the agent's authority is withdrawn, and unconfirmed again. Nothing more is disclosed, erased, "
            "rectified or restricted until it is confirmed."
        ),
    ),
    "correct_requester": (
        lambda r, f, a, p: agents.requester_correct(
            request=r, actor=a, by_agent=f.cleaned_data["to"] == "agent", agent_name=f.cleaned_data.get("agent_name", ""),
            agent_email=f.cleaned_data.get("agent_email", ""), agent_capacity=f.cleaned_data.get("agent_capacity", ""),
            reason=f.cleaned_data["reason"],
        ),
        gettext_lazy("Recorded: who makes this request is corrected. Check the identifiers and the agent's authority again."),
    ),
    "postal_address": (
        lambda r, f, a, p: handling.postal_address_correct(request=r, actor=a, postal_address=f.cleaned_data["postal_address"]),
        gettext_lazy("Postal address saved."),
    ),
    "ask_subject_to_confirm": (
        lambda r, f, a, p: agents.subject_confirmation_send(request=r, actor=a),
        gettext_lazy("The email asking the subject to confirm that they allowed the agent is on its way to their own address."),
    ),
    "extend": (
        lambda r, f, a, p, preview=False: deadline_service.request_extend(request=r, actor=a, reason=f.cleaned_data["reason"], preview=preview),
        gettext_lazy("Deadline extended; the email telling the subject the new date and the reason is on its way."),
    ),
    "pause": (
        lambda r, f, a, p, preview=False: handling.clock_pause(request=r, actor=a, question=f.cleaned_data["question"], preview=preview),
        gettext_lazy("Clock paused; what we need was sent to the subject."),
    ),
    "resume": (lambda r, f, a, p: deadline_service.clock_resume(request=r, actor=a), gettext_lazy("Clock resumed.")),
    "confirm_receipt": (
        lambda r, f, a, p: handling.receipt_confirm(request=r, actor=a),
        gettext_lazy("Recorded: receipt was confirmed to the subject."),
    ),
    "start_identity_check": (
        lambda r, f, a, p: handling.request_transition(request=r, actor=a, name="start_identity_check", expected_status=p["expected_status"]),
        gettext_lazy("Identity check started."),
    ),
    "start_work": (
        lambda r, f, a, p: handling.request_transition(request=r, actor=a, name="start_work", expected_status=p["expected_status"]),
        gettext_lazy("Work started."),
    ),
    "complete": (
        lambda r, f, a, p, preview=False: handling.request_complete(
            request=r, actor=a, letter=f.cleaned_data["letter"], expected_status=p["expected_status"],
            refused=[handling.RightRefusal(*refusal) for refusal in f.refused()], preview=preview,
        ),
        gettext_lazy("Request completed; the letter has been sent."),
    ),
    "reject": (
        lambda r, f, a, p, preview=False: handling.request_reject(
            request=r, actor=a, ground=f.cleaned_data["ground"], explanation=f.cleaned_data["explanation"], expected_status=p["expected_status"],
            preview=preview,
        ),
        gettext_lazy("Request rejected; the letter has been sent."),
    ),
    "forward": (
        lambda r, f, a, p, preview=False: handling.request_forward(
            request=r, actor=a, controller=f.cleaned_data["controller"], contact=f.cleaned_data["contact"],
            forwarded_on=f.cleaned_data["forwarded_on"], expected_status=p["expected_status"], preview=preview,
        ),
        gettext_lazy("Request closed as forwarded to the controller; the letter has been sent."),
    ),
    "fee": (
        lambda r, f, a, p, preview=False: handling.fee_propose(
            request=r, actor=a, amount=f.cleaned_data["amount"], explanation=f.cleaned_data["explanation"], expected_status=p["expected_status"],
            preview=preview,
        ),
        gettext_lazy("Fee proposed; the letter has been sent."),
    ),
    "fee_paid": (
        lambda r, f, a, p: handling.fee_record_paid(request=r, actor=a, expected_amount=_shown_amount(p.get("expected_fee"))),
        gettext_lazy("Payment of the fee recorded."),
    ),
    "note": (lambda r, f, a, p: handling.note_add(request=r, actor=a, body=f.cleaned_data["body"]), gettext_lazy("Note added.")),
}


# The actions whose letter staff may preview before sending it (request_action_preview): those that write to the
# subject, in a letter their service words around what staff write. Their service takes preview=True.
PREVIEWED = ("message", "request_information", "pause", "extend", "complete", "reject", "forward", "fee")

# The actions that close the request: a closed request cannot be reopened, and the subject is told at once. They go
# only from their preview page, whose button posts back the digest of the letter it showed (LetterPreview.digest):
# any other post (an old page, an Enter key, a crafted form) gets the preview instead, as does a letter that changed
# since it was shown.
CONFIRMED = ("complete", "reject", "forward")


@staff_view
@require_POST
def request_action(request: HttpRequest, reference: str, action: str) -> HttpResponse:
    """Run one action from the request page. A refusal changes nothing and says why."""
    if action not in ACTIONS:
        return HttpResponse(status=404)
    return _request_action(request, reference, action)


@staff_view
@require_POST
def request_action_preview(request: HttpRequest, reference: str, action: str) -> HttpResponse:
    """The letter an action would send, from the fields its form posted (its "Preview the letter" button), with a
    button sending the same fields to request_action, and one back to the form ("edit"). Changes nothing: the
    action's own service runs, with its checks, and stops where it would write the letter (emails.LetterPreview),
    its transaction rolled back. Refused as the action is: to those who may not act, for what it would refuse."""
    if action not in PREVIEWED:
        return HttpResponse(status=404)
    return _request_action(request, reference, action, preview=True)


def _request_action(request: HttpRequest, reference: str, action: str, *, preview: bool = False) -> HttpResponse:
    privacy_request = _get_request(reference)
    if not roles.can_work(request.user, privacy_request):
        typed = [text for name in TYPED_FIELDS if (text := request.POST.get(name, "").strip())]
        if not (typed and roles.role_of(request.user) == roles.HANDLER):  # a handler works the requests assigned to them
            raise PermissionDenied(_("You may not act on this request."))
        # Reassigned since the page was loaded, as a rule: the page again, saying so, with what they wrote.
        messages.error(request, _("You may not act on this request: it is assigned to %(assignee)s. What you wrote was not sent; it is below, to copy.") % {
            "assignee": privacy_request.assignee.username if privacy_request.assignee else _("nobody"),
        })
        context = {**_request_context(request, privacy_request), "unsent_texts": typed}
        return render(request, "staff/request.html", context, status=403)
    call, success = ACTIONS[action]
    slot = _form_slot(action)
    form = _action_form(slot, privacy_request, request.POST) if slot in FORM_SLOTS else None
    if form is not None and not form.is_valid():
        context = _request_context(request, privacy_request)
        context["forms"][_form_slot(action)] = form
        context["open_form"] = action
        return render(request, "staff/request.html", context, status=400)
    if preview and "edit" in request.POST:
        # Back from the preview to the form, as it was filled in.
        context = _request_context(request, privacy_request)
        context["forms"][slot] = form
        context["open_form"] = action
        return render(request, "staff/request.html", context)
    post = {**request.POST.dict(), "expected_status": request.POST.get("expected_status") or None}
    try:
        with transaction.atomic():
            if "expected_version" in request.POST:
                # Locked from the check to the action's end: no reply of the subject's can come in between.
                PrivacyRequest.objects.select_for_update().filter(pk=privacy_request.pk).exists()
                lifecycle.require_version(privacy_request, request.POST["expected_version"])
            if preview:
                call(privacy_request, form, Actor.staff(request.user), post, preview=True)
                # Never reached: the service raises LetterPreview. Were it not to, nothing it did may stay.
                raise RuntimeError(f"the {action} service returned from a preview instead of raising LetterPreview")
            if action in CONFIRMED:
                _require_confirmed(request, privacy_request, action, form, post)
            call(privacy_request, form, Actor.staff(request.user), post)
    except emails.LetterPreview as letter:
        return _letter_preview(request, privacy_request, action, letter)
    except NotAllowed:
        raise
    except RequestError as error:
        messages.error(request, str(error))
        if form is not None:
            # The page again with the form open and what was typed in it: a refusal must not lose a letter,
            # nor must "changed since you loaded it". The page shows the request as it is now, so its
            # forms carry the new status: a deliberate resubmit goes through if the action is still allowed.
            privacy_request.refresh_from_db()
            context = _request_context(request, privacy_request)
            context["forms"][slot] = form
            context["open_form"] = action
            return render(request, "staff/request.html", context, status=409)
    else:
        if action == "extend" and not privacy_request.correspondence_email and not cites_gdpr_articles(privacy_request.regime):
            messages.warning(request, EXTENDED_BY_POST_WITHOUT_ARTICLE)
        elif action in TELLS_THE_SUBJECT and not privacy_request.correspondence_email:
            messages.warning(request, TELLS_THE_SUBJECT[action])
        elif action == "verify_identity" and privacy_request.clock_paused:
            # Staff who paused it for something else (a clarification) must learn that it runs again.
            messages.success(request, IDENTITY_VERIFIED_CLOCK_RESTARTED)
        else:
            messages.success(request, success)
    return redirect("staff:request", reference)


def _require_confirmed(request: HttpRequest, privacy_request: PrivacyRequest, action: str, form, post: dict) -> None:
    """Raise the letter the action would send (emails.LetterPreview), to be shown for confirmation, unless the
    post confirms that very letter (CONFIRMED). Call in the action's transaction, the request's row locked: the
    letter previewed here, in a savepoint rolled back, is the one the action then sends."""
    try:
        with transaction.atomic():
            ACTIONS[action][0](privacy_request, form, Actor.staff(request.user), post, preview=True)
    except emails.LetterPreview as letter:
        confirmed = request.POST.get("confirmed_letter")
        if confirmed == letter.digest():
            return
        if confirmed:
            messages.warning(request, _("Nothing was sent: the letter changed since you previewed it. Read it again below before you send it."))
        raise
    raise RuntimeError(f"the {action} service returned from a preview instead of raising LetterPreview")


def _letter_preview(request: HttpRequest, privacy_request: PrivacyRequest, action: str, letter) -> HttpResponse:
    # The form's fields, sent again as they were by "Send the letter" (to the action) or "Back to edit"; the
    # confirmation of a letter shown before is the page's own, for the letter shown now.
    fields = [
        (name, value) for name, values in request.POST.lists()
        if name not in ("csrfmiddlewaretoken", "edit", "confirmed_letter") for value in values
    ]
    context = {
        "r": privacy_request, "action": action, "letter": letter, "fields": fields, "closes": action in CONFIRMED,
        # Its button names all it does, as the form's did: a pause, or a question that stops a running clock
        # (handling.request_information) also pauses.
        "pauses_clock": action == "pause" or (
            action == "request_information" and not privacy_request.clock_paused
            and deadline_service.pause_refusal(privacy_request) is None
        ),
    }
    return render(request, "staff/letter_preview.html", context)


def _shown_amount(posted: str | None) -> Decimal | None:
    """The fee a page showed (its form's expected_fee), or None when it sent none or a wrong one."""
    try:
        return Decimal(posted) if posted else None
    except ArithmeticError:
        return None


# The fields of the request page's forms in which staff write for a while: kept when the action is refused.
TYPED_FIELDS = ("body", "letter", "explanation", "reason", "subject", "controller", "contact", *(f"refusal_explanation_{right}" for right in RequestType.values))


def _form_slot(action: str) -> str:
    return {"request_information": "information", "verify_identity": "identity"}.get(action, action)


@staff_view
def letter_print(request: HttpRequest, public_id) -> HttpResponse:
    """A letter to the subject (a message under Messages) laid out to post: our address, then the one we post it to
    (PrivacyRequest.postal_address, as it is now) at the top, the date and the text, in the request's language. For
    whoever may read the request, which shows the same; nothing is recorded: printing is not sending."""
    message = get_object_or_404(
        Message.objects.select_related("request"), public_id=public_id, direction=MessageDirection.TO_SUBJECT
    )
    privacy_request = message.request
    context = {"r": privacy_request, "letter": message, "controller": controller_details(privacy_request.language)}
    return render(request, "staff/letter_print.html", context)


@staff_view
def attachment_download(request: HttpRequest, public_id) -> HttpResponse:
    """Attachments hold personal data (a scanned letter, a copy of an ID): only staff who may read the
    request's files (roles.reads_files) get them, and each download is an audit event, as the subject's
    own downloads are."""
    attachment = get_object_or_404(Attachment.objects.select_related("request"), public_id=public_id)
    if not roles.reads_files(request.user, attachment.request):
        raise PermissionDenied
    if attachment.is_deleted:  # a link from a page loaded before the deletion
        return HttpResponse(_("This document was deleted."), status=410, content_type="text/plain; charset=utf-8")
    with transaction.atomic():
        record_event(
            attachment.request, "attachment_downloaded", actor=Actor.staff(request.user), data={"attachment": str(attachment.public_id)}
        )
    return FileResponse(
        attachment.file.open("rb"), as_attachment=True, filename=attachment.original_name, content_type=attachment.content_type
    )


@staff_view
def attachment_delete(request: HttpRequest, public_id) -> HttpResponse:
    """Delete a document the subject sent (handling.attachment_delete): a page asks to confirm (GET), its form
    deletes (POST). Only those who may work the request; the others get a 403 and nothing changes."""
    attachment = get_object_or_404(Attachment.objects.select_related("request"), public_id=public_id)
    privacy_request = attachment.request
    if not roles.can_work(request.user, privacy_request):
        raise PermissionDenied
    if request.method == "POST":
        try:
            handling.attachment_delete(attachment=attachment, actor=Actor.staff(request.user))
        except NotAllowed:  # reassigned since the check above: staff_view answers 403
            raise
        except RequestError as error:
            messages.error(request, str(error))
        else:
            messages.success(request, _("Document deleted."))
        return redirect("staff:request", privacy_request.reference)
    if attachment.is_deleted:
        messages.error(request, _("This document was deleted already."))
        return redirect("staff:request", privacy_request.reference)
    return render(request, "staff/attachment_delete.html", {"a": attachment, "r": privacy_request})


# --- DPO settings ----------------------------------------------------------------


def _edited_fields(form) -> list[str]:
    """The model fields `form` edits (its many-to-many ones are saved apart), with those the model or the form
    stamps on every save."""
    stamped = getattr(form, "stamped_fields", ())
    return [
        field.name for field in form.instance._meta.concrete_fields
        if field.name in form.fields or field.name in stamped or getattr(field, "auto_now", False)
    ]


def _described(obj) -> dict:
    """What the trail keeps of a settings object saved or deleted: which one, by id and name."""
    return {"id": obj.pk, "name": str(obj)}


def _crud(
    request, *, model, form_class, pk, list_url, template, title, event, secret_url="", translation_urls=(), describe=_described
):
    """Create or edit one settings object (rules, templates, teams), audited as `describe` says.

    `translation_urls`: (language name, URL) of the pages giving the object's texts in other languages."""
    instance = get_object_or_404(model, pk=pk) if pk else None
    form = form_class(request.POST or None, instance=instance)
    # What the page showed, field by field, to tell a save made on top of someone else's since (a lost update).
    saved_now = _shown_fields(form_class, instance) if instance is not None else {}
    if request.method == "POST" and "delete" not in request.POST and instance is not None:
        shown = _loaded_fields(request.POST.get("loaded", ""))
        changed = [name for name, digest in saved_now.items() if shown.get(name, digest) != digest]
        if changed and form.is_valid():
            form.add_error(None, _(
                "Someone saved this since you opened it, and changed: %(fields)s. Nothing of yours was saved: compare, "
                "then save again to keep what you see here."
            ) % {"fields": ", ".join(str(form.fields[name].label or name) for name in changed)})
    if request.method == "POST":
        if "delete" in request.POST and instance is not None:
            try:
                with transaction.atomic():
                    described = describe(instance)  # before the delete clears its id
                    instance.delete()
                    record_event(None, f"{event}_deleted", actor=Actor.staff(request.user), data=described)
            except ProtectedError:
                # Requests, actions or notices point at it: their record must keep saying what it was.
                messages.error(request, _("This cannot be deleted: requests or actions on them refer to it. Keep it, or rename it."))
                return redirect(request.path)
            messages.success(request, _("Deleted."))
            return redirect(list_url)
        if form.is_valid():
            with transaction.atomic():
                if instance is None:
                    saved = form.save()
                else:
                    # Only what this form edits: a secret another view issued (a recipient's), committed
                    # after this form loaded the object, would otherwise be written back over with the old one.
                    saved = form.save(commit=False)
                    saved.save(update_fields=_edited_fields(form))
                    form.save_m2m()
                # What changed, before and after: who moved a hold's end or pointed a rule elsewhere must show.
                record_event(
                    None, f"{event}_saved", actor=Actor.staff(request.user), data={**describe(saved), "changes": form_changes(form)}
                )
            messages.success(request, _("Saved."))
            return redirect(list_url)
    context = {
        "form": form, "title": title, "instance": instance, "list_url": list_url, "secret_url": secret_url,
        "translation_urls": translation_urls, "loaded": json.dumps(saved_now),
    }
    return render(request, "staff/settings_form.html", context)


def _shown_fields(form_class, instance) -> dict[str, str]:
    """A digest of each field's value as a page would show `instance` now."""
    shown = form_class(instance=instance)

    def as_text(value) -> str:
        if isinstance(value, list | tuple):  # a many-to-many field's rows come in no set order
            return str(sorted(str(getattr(item, "pk", item)) for item in value))
        return str(value)

    return {name: text_digest(as_text(shown[name].value())) for name in shown.fields}


def _loaded_fields(posted: str) -> dict[str, str]:
    try:
        loaded = json.loads(posted)
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


@staff_view(readers=roles.CONFIGURATION_READERS)
def rules(request: HttpRequest) -> HttpResponse:
    items = list(AssignmentRule.objects.select_related("organisation", "assign_team", "assign_user"))
    assignable = set(routing.assignable_users().values_list("pk", flat=True))  # one query for every rule
    for rule in items:
        rule.person_unavailable = rule.assign_user_id is not None and rule.assign_user_id not in assignable
    return render(request, "staff/rules.html", {"rules": items})


@staff_view(dpo_only=True)
def rule_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    return _crud(
        request, model=AssignmentRule, form_class=forms.AssignmentRuleForm, pk=pk, list_url="staff:rules",
        template="staff/settings_form.html", title=_("Assignment rule"), event="assignment_rule",
    )


@staff_view(readers=roles.CONFIGURATION_READERS)
def response_templates(request: HttpRequest) -> HttpResponse:
    return render(request, "staff/templates.html", {"templates": ResponseTemplate.objects.all()})


@staff_view(dpo_only=True)
def response_template_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    return _crud(
        request, model=ResponseTemplate, form_class=forms.ResponseTemplateForm, pk=pk, list_url="staff:templates",
        template="staff/settings_form.html", title=_("Response template"), event="response_template",
    )


@staff_view(readers=roles.CONFIGURATION_READERS)
def teams(request: HttpRequest) -> HttpResponse:
    return render(request, "staff/teams.html", {"teams": Team.objects.prefetch_related("members")})


@staff_view(dpo_only=True)
def team_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    return _crud(
        request, model=Team, form_class=forms.TeamForm, pk=pk, list_url="staff:teams",
        template="staff/settings_form.html", title=_("Team"), event="team",
    )


# A staff account's personal details: the trail, which is never purged, says that they changed, not what they
# were or became. The username names the actor of every event already; the role and teams are no personal data.
STAFF_PERSONAL_FIELDS = ("email", "first_name", "last_name")


@staff_view(readers=roles.CONFIGURATION_READERS)
def users(request: HttpRequest) -> HttpResponse:
    staff = get_user_model().objects.filter(is_staff=True).prefetch_related("groups", "privacy_teams").order_by("username")
    rows = [(user, roles.assigned_role(user), TOTPDevice.objects.filter(user=user, confirmed=True).exists()) for user in staff]
    return render(request, "staff/users.html", {"rows": rows})


@staff_view(dpo_only=True)
def user_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    """Create or change a staff account: role, teams, active. A new account's owner, or one who lost their
    phone or password, is invited to set both up (services.staff_setup)."""
    instance = get_object_or_404(get_user_model(), pk=pk, is_staff=True) if pk else None
    if instance is not None and instance.is_superuser and not request.user.is_superuser:
        # A superuser's password and authenticator are changed only by another superuser.
        raise PermissionDenied
    was_active = instance is not None and instance.is_active  # read before the form writes to the instance
    # The invitation is in the language the DPO chooses, their own unless they change it.
    initial = {"invitation_language": request.LANGUAGE_CODE}
    form = forms.StaffUserForm(request.POST or None, instance=instance, initial=initial, editor=request.user)
    # Its own ids: an account not active yet shows the field in both forms.
    invitation_form = forms.InvitationForm(
        request.POST if "invite" in request.POST else None, initial=initial, auto_id="invite_%s"
    )
    if request.method == "POST" and "invite" in request.POST and instance is not None:
        if not (instance.is_active and instance.email):
            messages.error(request, _("Only an active account with an email address can be invited: nothing was changed."))
            return redirect("staff:user_edit", pk=instance.pk)
        if staff_setup.email_shared(instance.email, account=instance):
            # An account saved before addresses were checked: its link would reach another account's owner too.
            messages.error(request, forms.EMAIL_SHARED)
            return redirect("staff:user_edit", pk=instance.pk)
        if not invitation_form.is_valid():
            messages.error(request, " ".join(invitation_form.errors["invitation_language"]))
            return redirect("staff:user_edit", pk=instance.pk)
        language = invitation_form.cleaned_data["invitation_language"] or request.LANGUAGE_CODE
        staff_setup.invite(user=instance, actor=Actor.staff(request.user), language=language)
        messages.success(request, _("Invitation sent: their password and authenticator work no more until they set new ones through it."))
        return redirect("staff:users")
    if request.method == "POST" and "unlock" in request.POST and instance is not None:
        staff_setup.unlock_sign_in(user=instance, actor=Actor.staff(request.user))
        messages.success(request, _("Unlocked: %(user)s may sign in again.") % {"user": instance.username})
        return redirect("staff:user_edit", pk=instance.pk)
    # Validated in the transaction that saves: the form locks the DPOs' accounts until it commits.
    with transaction.atomic():
        saved = request.method == "POST" and form.is_valid()
        if saved:
            user = form.save(commit=False)
            user.is_staff = True
            user.save()
            if was_active and not user.is_active:
                # Switched off to cut access now: a stolen session too. Never the session this page answers in,
                # whose end mid-request would be an error page over a change already saved.
                staff_setup.end_sessions(user, keep=request.session.session_key)
            # An active account never set up gets its link: a new one, or one created inactive and now activated.
            invited = user.is_active and not was_active and not TOTPDevice.objects.filter(user=user, confirmed=True).exists()
            if invited:
                language = form.cleaned_data.get("invitation_language") or request.LANGUAGE_CODE
                staff_setup.send_invitation(user, language=language)
            user.groups.remove(*Group.objects.filter(name__in=roles.ROLES))
            user.groups.add(Group.objects.get_or_create(name=form.cleaned_data["role"])[0])
            user.privacy_teams.set(form.cleaned_data["teams"])
            record_event(
                None, "staff_user_saved", actor=Actor.staff(request.user),
                data={
                    "user": user.username, "role": form.cleaned_data["role"], "active": user.is_active, "invited": invited,
                    # The invitation's language is no fact of the account: "invited" says whether one went.
                    "changes": {
                        field: change
                        for field, change in form_changes(form, values_hidden=STAFF_PERSONAL_FIELDS).items()
                        if field != "invitation_language"
                    },
                },
            )
    if saved:
        if invited:
            messages.success(request, _("Saved: its owner was emailed a link to choose a password and set up an authenticator."))
        else:
            messages.success(request, _("Saved."))
        still_assigned = user.assigned_requests.filter(status__in=VERIFIED_OPEN).count() if not user.is_active else 0
        if still_assigned:
            # Nobody else is told of them: their reminders go to an account nobody reads.
            messages.warning(
                request,
                ngettext(
                    "%(user)s is switched off but still has %(count)d open request: assign it to someone else.",
                    "%(user)s is switched off but still has %(count)d open requests: assign them to someone else.",
                    still_assigned,
                ) % {"user": user.username, "count": still_assigned},
            )
        return redirect("staff:users")
    return render(
        request,
        "staff/settings_form.html",
        {
            "form": form,
            "title": _("Staff account"),
            "instance": instance,
            "list_url": "staff:users",
            "invite": instance is not None,
            "invitation_form": invitation_form,
            "locked_out": instance is not None and staff_setup.sign_in_locked_out(instance),
        },
    )


# --- Export packages ------------------------------------------------------------------


def _get_export(public_id) -> ExportPackage:
    return get_object_or_404(ExportPackage.objects.select_related("request"), public_id=public_id)


@staff_view
@require_POST
def export_start(request: HttpRequest, reference: str) -> HttpResponse:
    privacy_request = _get_request(reference)
    kind = request.POST.get("kind", ExportKind.ACCESS)
    if kind not in ExportKind.values:
        return HttpResponse(status=400)
    try:
        export_service.export_start(
            request=privacy_request, actor=Actor.staff(request.user), kind=kind, encrypt=bool(request.POST.get("encrypt"))
        )
    except NotAllowed:
        raise
    except RequestError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, _("The export is being compiled."))
    return redirect("staff:request", reference)


@staff_view
def export_detail(request: HttpRequest, public_id) -> HttpResponse:
    """Review before release: the files, their counts and their first rows; manual extracts.

    The first rows and the identities searched are the subject's data: shown only to staff who may
    read the request's files, and each showing of the rows is an audit event, as a download is."""
    export = _get_export(public_id)
    reads_files = roles.reads_files(request.user, export.request)
    previews = selectors.export_previews(export) if reads_files and export.status == ExportStatus.READY else []
    if previews:
        with transaction.atomic():
            record_event(export.request, "export_previewed", actor=Actor.staff(request.user), data={"export": str(export.public_id)})
    context = {
        "export": export,
        # Its state as the certificate and the request page give it: "Expired" only where its download period ran out.
        "status": certificate_service.packages(export.request, [export])[0]["status"],
        "r": export.request,
        "can_work": roles.can_work(request.user, export.request),
        # Why it may not be released or retried, said instead of offering the button the service would refuse.
        "delivery_refusal": export_service.delivery_refusal(export),
        # A package released and since ended (expired, used up, or its request withdrawn): what ended it, in the words
        # its download link now answers the subject with.
        "download_refusal": (
            export_service.download_refusal(export)
            if export.released_at and not ExportPackage.objects.downloadable().filter(pk=export.pk).exists()
            else ""
        ),
        # Not released while the status link's address is unconfirmed (export_release): why, and the link to confirm it.
        "email_unconfirmed_refusal": (
            export_service.email_unconfirmed_refusal(export.request) if not export.encrypted and export.request.email_unconfirmed else ""
        ),
        # Not released either while an agent's authority is unconfirmed (services.agents).
        "agent_authority_refusal": agents.authority_refusal(export.request),
        # Sources a verified identifier would have had searched: said before the release, while it can still be.
        "searchable_once_verified": export_service.searchable_once_verified(export) if not export.released_at else "",
        "email_confirmation_sent_at": export.request.events.filter(action="email_confirmation_sent")
        .order_by("-sequence").values_list("created_at", flat=True).first(),
        "reads_files": reads_files,
        "previews": previews,
        "manual_tasks": export.manual_tasks.select_related("source", "assignee"),
        **_manifest_sources_for_reader(export.manifest),
        # Art. 20(2): the organisation the subject asked us to send the data to, and why the button is not offered.
        "transmission_right": transmission.portability_right(export.request) if export.kind == ExportKind.PORTABILITY else None,
        "transmission_refusal": transmission.transmission_refusal(export),
        "transmission_resend_refusal": transmission.resend_refusal(export) if export.transmission_rejected_at else "",
        "transmission_decline_refusal": transmission.decline_refusal(export.request),
    }
    return render(request, "staff/export.html", context)


def _manifest_sources_for_reader(manifest: dict) -> dict:
    """The manifest's sources not searched (in one line, with why) and categories left out, each source named in the
    reader's language: the manifest names it in the request's, for the subject's report. A source since deleted
    keeps that name."""
    not_searched = manifest.get("sources_not_searched", [])
    left_out = manifest.get("categories_left_out", [])
    slugs = {item["source"] for item in [*not_searched, *left_out]}
    language = get_language()
    names = {
        source.slug: source.texts_in(language)["name"]
        for source in SourceSystem.objects.filter(slug__in=slugs).prefetch_related("translations")
    } if slugs else {}

    def named(items: list[dict]) -> list[dict]:
        return [{**item, "name": names.get(item["source"]) or item.get("name") or item["source"]} for item in items]

    return {
        "sources_not_searched": ", ".join(f"{item['name']} ({not_searched_reason(item)})" for item in named(not_searched)),
        "categories_left_out": named(left_out),
    }


@not_activity
@staff_view
def export_progress(request: HttpRequest, public_id) -> HttpResponse:
    """Polled by the request page while an export compiles: no activity, which would keep the session for ever."""
    export = _get_export(public_id)
    return JsonResponse({"status": export.status, "label": export.get_status_display(), "progress_in_words": export.progress_in_words()})


@staff_view
@require_POST
def export_action(request: HttpRequest, public_id, action: str) -> HttpResponse:
    export = _get_export(public_id)
    actor = Actor.staff(request.user)
    try:
        if action == "retry":
            export_service.export_retry(export=export, actor=actor)
            messages.success(request, _("The export is being compiled again."))
        elif action == "release":
            export_service.export_release(
                export=export, actor=actor, share_with_organisation=bool(request.POST.get("share_with_organisation"))
            )
            messages.success(request, _("Released: the subject can download the package from their status page."))
        elif action == "transmit":
            transmission.export_transmit(export=export, actor=actor)
            messages.success(request, _("Sent: the organisation is emailed its link, and the subject told."))
        elif action == "resend_transmission":
            transmission.transmission_resend(export=export, actor=actor, recipient_email=request.POST.get("recipient_email", ""))
            messages.success(request, _("Sent again: the organisation is emailed its link at the corrected address, and the subject told."))
        elif action == "decline_transmission":
            transmission.transmission_decline(request=export.request, actor=actor, reason=request.POST.get("reason", ""))
            messages.success(request, _("Declined: the subject is told why, and keeps their own copy."))
        elif action == "confirm_email":
            intake.email_confirmation_send(request=export.request, actor=actor)
            if export.request.filed_by_agent:
                messages.success(request, _(
                    "A link to confirm their email address is on its way to the agent who made the request. Release the "
                    "package once they have confirmed it: this page will then offer the button."
                ))
            else:
                messages.success(request, _(
                    "A link to confirm their email address is on its way to the subject. Release the package once they "
                    "have confirmed it: this page will then offer the button."
                ))
        elif action == "upload":
            task = get_object_or_404(export.manual_tasks, pk=request.POST.get("task"))
            upload = request.FILES.get("extract")
            if upload is None:
                raise RequestError(_("Choose the extract file to upload."))
            if upload.size > settings.MANUAL_EXTRACT_MAX_BYTES:
                raise RequestError(
                    _("The file is too large: the limit is %(limit)s MB.")
                    % {"limit": settings.MANUAL_EXTRACT_MAX_BYTES // (1024 * 1024)}
                )
            export_service.manual_task_upload(task=task, actor=actor, upload=upload)
            messages.success(request, _("Extract uploaded."))
        else:
            return HttpResponse(status=404)
    except NotAllowed:
        raise
    except RequestError as error:
        messages.error(request, str(error))
    return redirect("staff:export", export.public_id)


# --- The data inventory (DPO) -----------------------------------------------------------


@staff_view(readers=roles.CONFIGURATION_READERS)
def inventory(request: HttpRequest) -> HttpResponse:
    sources = SourceSystem.objects.prefetch_related(
        "categories__fields__translations", "categories__translations", "recipients__translations", "legal_holds__category", "legal_holds__translations", "translations"
    ).select_related("owner")
    return render(request, "staff/inventory.html", {"sources": sources})


def _inventory_crud(model, form_class, title, event, secret_url_name="", translation_url_name=""):
    """The DPO's create/edit view of one kind of inventory object; `secret_url_name` offers a new signing secret,
    `translation_url_name` links the pages for its texts in the other languages."""

    @staff_view(dpo_only=True)
    def view(request: HttpRequest, pk: int | None = None) -> HttpResponse:
        secret_url = reverse(secret_url_name, args=[pk]) if secret_url_name and pk else ""
        translation_urls = (
            [(name, reverse(translation_url_name, args=[pk, code])) for code, name in translation_languages()]
            if translation_url_name and pk
            else []
        )
        return _crud(
            request, model=model, form_class=form_class, pk=pk, list_url="staff:inventory",
            template="staff/settings_form.html", title=title, event=event, secret_url=secret_url,
            translation_urls=translation_urls,
        )

    return view


def _translation_crud(request, *, item, language: str, model, form_class, event: str, list_url: str) -> HttpResponse:
    """Create, edit or delete `item`'s texts in `language`, one of the site's other languages; audited."""
    language_name = dict(translation_languages()).get(language)
    if language_name is None:  # the default language's texts are the item's own fields
        raise Http404
    translation = item.translations.filter(language=language).first()
    return _crud(
        request, model=model, form_class=functools.partial(form_class, item=item, language=language),
        pk=translation.pk if translation else None, list_url=list_url, template="staff/settings_form.html",
        title=_("%(item)s, in %(language)s") % {"item": item, "language": language_name}, event=event,
        # The trail names the item translated (its id, as its own events do) and the language, not the row.
        describe=lambda saved: {"id": item.pk, "language": language, "name": str(item)},
    )


def _translation_view(item_model, form_class, event: str, list_url: str = "staff:inventory"):
    """The DPO's page for one inventory item's texts in one other language; `list_url` lists the items."""

    @staff_view(dpo_only=True)
    def view(request: HttpRequest, pk: int, language: str) -> HttpResponse:
        return _translation_crud(
            request, item=get_object_or_404(item_model, pk=pk), language=language, model=form_class._meta.model,
            form_class=form_class, event=event, list_url=list_url,
        )

    return view


source_translation = _translation_view(SourceSystem, forms.SourceSystemTranslationForm, "source_system_translation")
category_translation = _translation_view(SourceCategory, forms.SourceCategoryTranslationForm, "source_category_translation")
recipient_translation = _translation_view(Recipient, forms.RecipientTranslationForm, "recipient_translation")
hold_translation = _translation_view(LegalHold, forms.LegalHoldTranslationForm, "legal_hold_translation")
field_translation = _translation_view(SourceField, forms.SourceFieldTranslationForm, "source_field_translation")


@staff_view(dpo_only=True)
@require_POST
def recipient_secret(request: HttpRequest, pk: int) -> HttpResponse:
    """A new secret for the recipient's webhook notices, shown on this answer only: never again, here or anywhere."""
    recipient = get_object_or_404(Recipient, pk=pk)
    try:
        secret = notice_service.renew_recipient_secret(
            recipient=recipient, actor=Actor.staff(request.user), secret_seen=request.POST.get("secret_seen", "")
        )
    except RequestError as error:
        messages.error(request, str(error))
        return redirect("staff:recipient_edit", recipient.pk)
    response = render(request, "staff/recipient_secret.html", {"recipient": recipient, "secret": secret})
    response["Cache-Control"] = "no-store"
    return response


source_edit = _inventory_crud(
    SourceSystem, forms.SourceSystemForm, gettext_lazy("Source system"), "source_system",
    translation_url_name="staff:source_translation",
)
category_edit = _inventory_crud(
    SourceCategory, forms.SourceCategoryForm, gettext_lazy("Data category"), "source_category",
    translation_url_name="staff:category_translation",
)
recipient_edit = _inventory_crud(
    Recipient, forms.RecipientForm, gettext_lazy("Recipient"), "recipient", secret_url_name="staff:recipient_secret",
    translation_url_name="staff:recipient_translation",
)
field_edit = _inventory_crud(
    SourceField, forms.SourceFieldForm, gettext_lazy("Field"), "source_field", translation_url_name="staff:field_translation"
)
hold_edit = _inventory_crud(
    LegalHold, forms.LegalHoldForm, gettext_lazy("Legal hold"), "legal_hold", translation_url_name="staff:hold_translation"
)


@staff_view(dpo_only=True)
def field_new(request: HttpRequest, category_pk: int) -> HttpResponse:
    """A new field, started from its category on the inventory page."""
    category = get_object_or_404(SourceCategory, pk=category_pk)
    return _crud(
        request, model=SourceField, form_class=functools.partial(forms.SourceFieldForm, initial={"category": category}),
        pk=None, list_url="staff:inventory", template="staff/settings_form.html", title=_("Field"), event="source_field",
    )


@staff_view(dpo_only=True)
def hold_new(request: HttpRequest, source_pk: int) -> HttpResponse:
    """A new legal hold, started from its source: the category list shows that source's categories."""
    source = get_object_or_404(SourceSystem, pk=source_pk)
    return _crud(
        request, model=LegalHold, form_class=functools.partial(forms.LegalHoldForm, initial={"source": source}),
        pk=None, list_url="staff:inventory", template="staff/settings_form.html", title=_("Legal hold"), event="legal_hold",
    )


# --- Webhooks (DPO) ------------------------------------------------------------------------


@staff_view(readers=roles.CONFIGURATION_READERS)
def webhooks(request: HttpRequest) -> HttpResponse:
    """The endpoints, and the delivery log: every event sent to organisations, with its attempts and last answer,
    newest first, a page at a time, filtered by organisation, endpoint and state (a failed delivery the DPO is
    emailed about may be far behind the latest)."""
    endpoints = list(WebhookEndpoint.objects.select_related("organisation"))
    form = forms.WebhookLogFilterForm(request.GET)
    if form.is_valid():
        deliveries = selectors.webhook_deliveries(**form.cleaned_data)
    else:
        messages.error(request, _("A filter value is not valid, so nothing matches. Clear the filters to start again."))
        deliveries = WebhookDelivery.objects.none()
    page = Paginator(deliveries, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "endpoints": endpoints,
        "organisations": sorted({endpoint.organisation for endpoint in endpoints}, key=lambda organisation: organisation.name),
        "statuses": DeliveryStatus.choices,
        "chosen": {name: request.GET.get(name, "") for name in form.fields},
        "page": page,
        "query": query.urlencode(),  # the filters, for the pages' links
        "here": request.GET.urlencode(),  # this page, for a redelivery to come back to
    }
    return render(request, "staff/webhooks.html", context)


@staff_view(dpo_only=True)
@require_POST
def webhook_redeliver(request: HttpRequest, public_id) -> HttpResponse:
    delivery = get_object_or_404(WebhookDelivery, public_id=public_id)
    try:
        with transaction.atomic():
            webhook_service.redeliver(delivery=delivery)
            record_event(None, "webhook_redelivered", actor=Actor.staff(request.user), data={"delivery": str(delivery.public_id)})
    except RequestError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, _("Queued for delivery again."))
    # Back to the page of the log it was sent from, its filters kept.
    query = QueryDict(request.POST.get("query", "")).urlencode()
    return redirect(f"{reverse('staff:webhooks')}?{query}" if query else reverse("staff:webhooks"))
