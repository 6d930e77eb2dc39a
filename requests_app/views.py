"""Public pages: the request form, email verification and the subject's status page."""

import dataclasses
import datetime
import hashlib
import json
import logging

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone, translation
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods
from django_ratelimit.core import get_usage

from requests_app import downloads, selectors
from requests_app.audit import Actor
from requests_app.forms import AGENT_FILES, RequestForm, ResendLinkForm, WithdrawForm, validate_attachment
from requests_app.lifecycle import OPEN_STATUSES, IllegalTransition, RequestError
from requests_app.models import (
    ACTION_FOR_RIGHT,
    TEXT_MAX_CHARS,
    ActionStatus,
    IdentityKind,
    PrivacyRequest,
    Status,
    normalised_identifier,
)
from requests_app.services import agents, certificate, deadlines, exports, handling, intake
from requests_app.wording import amount_in_words, date_in_words, masked_email, wait_in_words

logger = logging.getLogger(__name__)


def submission_rate(group, request):
    return settings.SUBMISSION_RATE_LIMIT


def email_submission_rate(group, request):
    return settings.SUBMISSION_EMAIL_RATE_LIMIT


# Which limit a refused submission reached: its client's network address, or the email address it is for.
OVER_THE_NETWORK_LIMIT = "network"
OVER_THE_EMAIL_LIMIT = "email"


@dataclasses.dataclass(frozen=True)
class LimitReached:
    """A refused submission: the limit it went over (OVER_THE_NETWORK_LIMIT, OVER_THE_EMAIL_LIMIT), and how long
    until that limit's window frees, when the same submission is accepted again."""

    limit: str
    seconds_left: int

    @property
    def wait(self) -> str:
        """The wait in words, for the page that refuses ("Please wait 15 minutes")."""
        return wait_in_words(self.seconds_left)

    def with_retry_after(self, response: HttpResponse) -> HttpResponse:
        """`response`, the page refusing the submission, with the seconds to wait in Retry-After, as the API's 429s
        have them: a client that reads the header (a script, a browser extension) waits rather than trying again."""
        response["Retry-After"] = str(self.seconds_left)  # whole seconds already (django-ratelimit)
        return response


def email_counter_key(email: str) -> str:
    """What the per-email limit counts under: a keyed hash of the address, never the address, so that the cache holds
    no personal data (an unkeyed hash of an address is reversed by hashing guesses). One mailbox, one count: the
    address lower-cased (normalised_identifier) and without a "+tag", which most mail services deliver to the same
    mailbox."""
    local, _at, domain = normalised_identifier(IdentityKind.EMAIL, email).rpartition("@")
    mailbox = f"{local.partition('+')[0] or local}@{domain}"
    return salted_hmac("requests_app.views.email_counter_key", mailbox, algorithm="sha256").hexdigest()


def over_the_limit(request: HttpRequest, group: str, *, email: str = "") -> LimitReached | None:
    """Count this submission against its client's network address and, given one, the email address it is for;
    the limit it went over, and until when, else None.

    Called for valid submissions only: a typing mistake does not use up an attempt,
    and the page shown when the limit is reached keeps what was typed.

    A submission refused by the email address's limit does not count against the network address's: one person
    sending again and again from behind a mobile operator's shared address (carrier-grade NAT) must not use up the
    budget of everyone behind it. Hence the network address's count is looked at first, and added to last.
    """
    if (seconds_left := _seconds_left(request, group, "ip", submission_rate, increment=False)) is not None:
        reached = LimitReached(OVER_THE_NETWORK_LIMIT, seconds_left)
    elif email and (seconds_left := _seconds_left(
        request, f"{group}-email", lambda _group, _request: email_counter_key(email), email_submission_rate, increment=True,
    )) is not None:
        reached = LimitReached(OVER_THE_EMAIL_LIMIT, seconds_left)
    elif (seconds_left := _seconds_left(request, group, "ip", submission_rate, increment=True)) is not None:
        reached = LimitReached(OVER_THE_NETWORK_LIMIT, seconds_left)
    else:
        return None
    logger.warning("%s refused: over the per-%s address limit", group, reached.limit)
    return reached


def _seconds_left(request: HttpRequest, group: str, key, rate, *, increment: bool) -> int | None:
    """If this request is over the limit, the seconds until its window ends (django-ratelimit counts in fixed
    windows: the count starts again from zero then), else None, also while the cache is unreachable
    (RATELIMIT_FAIL_OPEN)."""
    usage = get_usage(request, group=group, key=key, rate=rate, increment=increment)
    # Its time_left counts to the window's last second, which still counts against it: the limit frees a second later.
    return usage["time_left"] + 1 if usage and usage["should_limit"] else None


def submit_request(request: HttpRequest) -> HttpResponse:
    """The public form, speaking to the subject, or to someone acting for them when they chose so (a form sent back
    with errors) or followed the link for it (?acting=1). The same form sent again from the same browser within
    SENT_AGAIN_WITHIN (Back, then Send: the browser fetches the page anew and fills every field back in) shows the
    request it filed, rather than filing it twice, while that request is open."""
    if request.method == "POST":
        form = RequestForm(request.POST)
        if form.is_valid():
            fingerprint = _form_fingerprint(form)
            filed_by_this_form = form.request_filed_already()  # drops the key if its request holds other details
            reference = _filed_just_now(request, fingerprint) or (filed_by_this_form.reference if filed_by_this_form else None)
            if reference:
                return _sent_again(request, reference)
            details = form.submit_kwargs()
            # Counted against the address the link goes to: the agent's, when an agent files.
            if reached := over_the_limit(request, "submit", email=details["agent_email"] or details["subject_email"]):
                context = {"form": form, "notice": _privacy_notice(), "rate_limited": reached}
                return reached.with_retry_after(render(request, "requests_app/submit.html", context, status=429))
            try:
                filer = Actor.agent() if details["agent_capacity"] else Actor.subject()
                privacy_request = intake.request_submit(**details, actor=filer)
            except intake.AlreadySubmitted as sent_at_once:
                return _sent_again(request, sent_at_once.request.reference)
            request.session["submitted_form"] = [fingerprint, privacy_request.reference, timezone.now().isoformat()]
            request.session["submitted_reference"] = privacy_request.reference
            request.session["sent_again"] = False
            return redirect("submitted")
    else:
        # ?acting=1: the form for someone acting for the subject, as the page's link without JavaScript asks for it.
        form = RequestForm(initial={"filed_by": AGENT_FILES} if request.GET.get("acting") == "1" else None)
    return render(request, "requests_app/submit.html", {"form": form, "notice": _privacy_notice()})


def _sent_again(request: HttpRequest, reference: str) -> HttpResponse:
    request.session["submitted_reference"] = reference
    request.session["sent_again"] = True
    return redirect("submitted")


def _form_fingerprint(form: RequestForm) -> str:
    """A digest of what the form says, kept in the session instead of the details themselves. Not its
    submission key: a form shown anew (the browser's Back) gets a new one."""
    said = {name: value for name, value in form.cleaned_data.items() if name != "submission_key"}
    return hashlib.sha256(json.dumps(said, sort_keys=True, default=str).encode()).hexdigest()


def _filed_just_now(request: HttpRequest, fingerprint: str) -> str | None:
    """The reference of the request this browser filed with the same form within SENT_AGAIN_WITHIN, if any, while
    it is open: withdrawn at once (a mistake in it, say), the form sent again asks anew."""
    last = request.session.get("submitted_form")
    if not last:
        return None
    last_fingerprint, reference, filed_at = last
    recent = timezone.now() - datetime.datetime.fromisoformat(filed_at) < handling.SENT_AGAIN_WITHIN
    if not (recent and last_fingerprint == fingerprint):
        return None
    return reference if PrivacyRequest.objects.filter(reference=reference, status__in=OPEN_STATUSES).exists() else None


def _privacy_notice() -> dict:
    """What the form's notice (Art. 13) says about this deployment: how long the details are kept, and where to complain."""
    return {
        "unconfirmed_days": settings.UNVERIFIED_REQUEST_EXPIRY.days,
        "retention_days": settings.CLOSED_REQUEST_RETENTION.days,
        # Said in years when it is whole years (the default, 1,095 days, reads "3 years").
        "retention_years": settings.CLOSED_REQUEST_RETENTION.days // 365 if settings.CLOSED_REQUEST_RETENTION.days % 365 == 0 else None,
        "authority": handling.SUPERVISORY_AUTHORITIES["gdpr"],
    }


def submitted(request: HttpRequest) -> HttpResponse:
    """The request the form filed, or had filed (sent again), as it stands now: a form sent again may find it
    confirmed already, and the page may be opened again once it is closed."""
    reference = request.session.get("submitted_reference")
    if not reference:
        return redirect("submit")
    privacy_request = PrivacyRequest.objects.filter(reference=reference).only("status", "subject_email", "agent_capacity", "agent_email").first()
    status, email = (privacy_request.status, privacy_request.correspondence_email) if privacy_request else (None, "")
    context = {
        "reference": reference,
        "sent_again": request.session.get("sent_again"),
        "confirmed": status in OPEN_STATUSES and status != Status.AWAITING_VERIFICATION,
        "closed": status is not None and status not in OPEN_STATUSES,
        # Where the link went, so that a mistyped address is noticed here rather than by a link that never comes;
        # masked (wording.masked_email), and read from the request the session names, never from the URL.
        "sent_to": masked_email(email),
        "unconfirmed_days": settings.UNVERIFIED_REQUEST_EXPIRY.days,
    }
    return render(request, "requests_app/submitted.html", context)


def verify_email(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows a confirm button; only the POST verifies.

    Mail scanners open links in emails: a GET that changed state would
    verify addresses nobody confirmed.
    """
    try:
        if request.method == "POST":
            privacy_request = intake.request_verify_email(token=token)
            return redirect("status", privacy_request.reference, privacy_request.secret)
        privacy_request = intake.request_for_verification_token(token)
        _in_the_requests_language(request, privacy_request)
    except intake.VerificationLinkError as error:
        if error.request is not None:  # used, replaced or closed: said in the language of the link's email
            _in_the_requests_language(request, error.request)
        # A new link cannot revive a closed request: offer the form instead.
        start_again = isinstance(error, intake.RequestClosedBeforeVerification)
        return render(request, "requests_app/verify_failed.html", {"error": str(error), "start_again": start_again}, status=400)
    return render(request, "requests_app/verify_confirm.html", {"privacy_request": privacy_request})


def agent_confirmation(request: HttpRequest, token: str) -> HttpResponse:
    """The subject's answer to "did you allow the agent?" (agents.subject_confirmation_send). GET shows the agent's
    name and the reference, nothing else of the request, and two buttons; only the POST records the answer (a mail
    scanner opens links)."""
    try:
        privacy_request = agents.request_for_subject_confirmation(token)
        _in_the_requests_language(request, privacy_request)
        if request.method == "POST":
            answer = request.POST.get("answer")
            if answer not in ("allowed", "not_allowed"):
                return render(request, "requests_app/agent_confirmation.html", {"privacy_request": privacy_request}, status=400)
            agents.subject_confirmation_answer(token=token, allowed=answer == "allowed")
            return render(request, "requests_app/agent_confirmation.html", {"answered": answer})
    except agents.SubjectConfirmationLinkError as error:
        return render(request, "requests_app/agent_confirmation.html", {"error": str(error)}, status=400)
    return render(request, "requests_app/agent_confirmation.html", {"privacy_request": privacy_request})


def resend_link(request: HttpRequest) -> HttpResponse:
    """A lost verification or status page link, emailed again to the address given with the request."""
    if request.method == "POST":
        form = ResendLinkForm(request.POST)
        if form.is_valid():
            if reached := over_the_limit(request, "resend", email=form.cleaned_data["email"]):
                return reached.with_retry_after(
                    render(request, "requests_app/resend.html", {"form": form, "rate_limited": reached}, status=429)
                )
            intake.request_resend_link(**form.cleaned_data)
            # The same answer whether or not the details matched.
            return render(request, "requests_app/resend_done.html")
    else:
        form = ResendLinkForm()
    return render(request, "requests_app/resend.html", {"form": form})


def _request_for_link(reference: str, secret: str):
    """The request a subject's link opens (a 404 otherwise); a link sent again from the lost-link page, opened,
    becomes the request's link."""
    privacy_request = selectors.request_for_subject(reference=reference, secret=secret)
    intake.status_link_opened(privacy_request, secret)
    return privacy_request


def status(request: HttpRequest, reference: str, secret: str) -> HttpResponse:
    privacy_request = _request_for_link(reference, secret)
    _in_the_requests_language(request, privacy_request)
    return render(request, "requests_app/status.html", _status_context(privacy_request))


def _in_the_requests_language(request: HttpRequest, privacy_request) -> None:
    """A link from an email opens in the email's language, the request's, not the browser's, unless the reader
    chose one with the language buttons (its cookie)."""
    if settings.LANGUAGE_COOKIE_NAME not in request.COOKIES:
        translation.activate(privacy_request.language)
        request.LANGUAGE_CODE = privacy_request.language


# The states whose next step an extension changes: the others ask something of the subject, or are closed.
EXTENDED_WHILE = (Status.NEW, Status.IDENTITY_CHECK, Status.IN_PROGRESS)


def _status_context(privacy_request) -> dict:
    downloads = [(export, exports.download_token(export)) for export in selectors.downloadable_exports(privacy_request)]
    # Released to an agent whose authority staff withdrew since: held back, as download() refuses it, until confirmed.
    downloads_held = bool(downloads) and agents.authority_refusal(privacy_request) is not None
    if downloads_held:
        downloads = []
    # While the clock is paused the saved due date is behind: the date it moves to if the subject answers today.
    due_on = deadlines.due_on_if_resumed_today(privacy_request)
    answer_late = selectors.answer_is_late(privacy_request)
    next_step = selectors.next_step_text(privacy_request)
    released = list(privacy_request.exports.filter(released_at__isnull=False))
    # An agent who filed reads of the data of the person they act for, not of their own (selectors.*_TO_AN_AGENT).
    to_agent = privacy_request.filed_by_agent
    if privacy_request.status == Status.AWAITING_SUBJECT and not privacy_request.clock_paused:
        next_step = selectors.AWAITING_SUBJECT_CLOCK_RUNS
    elif privacy_request.clock_paused and privacy_request.is_open:
        next_step = selectors.NEXT_STEP_TEXT[Status.AWAITING_SUBJECT]  # a pause by staff waits on the subject too
    elif privacy_request.fee_proposed_at and not privacy_request.fee_paid_at and privacy_request.is_open:
        next_step = selectors.FEE_PROPOSED % {"fee": amount_in_words(privacy_request.fee_amount, settings.FEE_CURRENCY)}
    elif downloads and privacy_request.is_open:
        next_step = selectors.nothing_found_text(
            [export for export, _token in downloads],
            selectors.NOTHING_FOUND_READY_TO_AN_AGENT if to_agent else selectors.NOTHING_FOUND_READY,
            selectors.NOTHING_PORTABLE_FOUND_READY,
        ) or (selectors.DATA_READY_TO_AN_AGENT if to_agent else selectors.DATA_READY)
    elif privacy_request.status == Status.IN_PROGRESS and released:
        next_step = selectors.nothing_found_text(
            released,
            selectors.NOTHING_FOUND_DELIVERED_TO_AN_AGENT if to_agent else selectors.NOTHING_FOUND_DELIVERED,
            selectors.NOTHING_PORTABLE_FOUND_DELIVERED,
        ) or (selectors.DATA_DELIVERED_TO_AN_AGENT if to_agent else selectors.DATA_DELIVERED)
    elif privacy_request.is_extended and privacy_request.status in EXTENDED_WHILE and not answer_late:
        extended = selectors.EXTENDED % {"date": date_in_words(due_on)}
        # "Our team will pick it up shortly" would contradict the extension; the other states say what we are doing.
        next_step = extended if privacy_request.status == Status.NEW else f"{extended} {next_step}"
    elif privacy_request.refused_rights:
        next_step = selectors.COMPLETED_IN_PART if privacy_request.granted_rights else selectors.EVERY_RIGHT_REFUSED
    elif privacy_request.status == Status.COMPLETED and certificate.not_granted_in_full(privacy_request):
        # Data kept under a legal hold, a source not searched: granted in part, as the letter and the certificate say.
        next_step = selectors.COMPLETED_IN_PART
    # Closed, the request takes a message still while a lifting the subject was told of is pending: their objection.
    lifting_announced = None if privacy_request.is_open else privacy_request.lifting_announced()
    return {
        "takes_messages": (
            lifting_announced is not None
            or (privacy_request.is_open and privacy_request.status != Status.AWAITING_VERIFICATION)
        ),
        "lifting_announced": lifting_announced,
        "privacy_request": privacy_request,
        "status_label": selectors.subject_status_label(privacy_request),
        "next_step": next_step,
        "timeline": selectors.subject_timeline(privacy_request),
        "clock_paused": privacy_request.clock_paused,
        "due_on": due_on,
        "answer_late": answer_late,
        "thread": privacy_request.messages.prefetch_related("attachments"),
        "document_limit_mb": settings.ATTACHMENT_MAX_BYTES // (1024 * 1024),
        "text_max_chars": TEXT_MAX_CHARS,
        "withdraw_form": WithdrawForm(),
        "told_us": selectors.what_you_told_us(privacy_request),
        "downloads": downloads,
        # What can still be downloaded found nothing: the withdraw form speaks of "our answer", not "your data".
        "answers_only": all(export.found_nothing for export, _token in downloads),
        # Released, and no longer downloadable: what ended each, as the certificate says it. Released, not merely
        # ended: a package never released (its right refused, or left unreviewed) was never offered to the subject.
        "downloads_ended": [] if downloads or downloads_held else certificate.ended_downloads_in_words(privacy_request, released),
        "downloads_held": downloads_held,
        # Art. 19: the subject may know who received their data and was told of the erasure,
        # rectification or restriction. Notices exist only for requests with those rights.
        "recipient_notices": _recipient_notices(privacy_request),
        # Done in the source systems already, which withdrawing does not undo: said before and after it.
        "changes_made": (
            certificate.changes_made(privacy_request)
            if privacy_request.is_open or privacy_request.status == Status.WITHDRAWN
            else []
        ),
    }


def _recipient_notices(privacy_request) -> list:
    """The request's Art. 19 notices, each marked `source_not_searched` where nothing was changed because the
    recipient's source could not be searched (no verified identifier of its kind): not "nothing changed".

    Not those of a source whose only actions answer a right the completion refused: they never ran, nor will,
    and the page names the recipients of "the systems we acted on for your request"."""
    all_actions = list(privacy_request.source_actions.all())
    done = [action for action in all_actions if action.status == ActionStatus.DONE]
    refused_kinds = {ACTION_FOR_RIGHT[right] for right in privacy_request.refused_rights if right in ACTION_FOR_RIGHT}
    acted_on = {action.source_id for action in all_actions if action.kind not in refused_kinds} | {action.source_id for action in done}
    only_refused = {action.source_id for action in all_actions} - acted_on
    unsearched = {action.source_id for action in done if certificate.searched_nothing(action)}
    # A run that stopped part-way may have changed rows (an HTTP source has no rollback): its source was acted on.
    carried_out = {action.source_id for action in done} | {
        action.source_id for action in all_actions if (action.result or {}).get("changed_before_failing")
    }
    notices = [
        notice
        for notice in privacy_request.recipient_notices.select_related("recipient").prefetch_related("recipient__translations")
        if notice.recipient.source_id not in only_refused
    ]
    for notice in notices:
        notice.source_not_searched = notice.recipient.source_id in unsearched
        # Closed (withdrawn, rejected) before any action there was carried out: not "we changed none of your data",
        # which would say we looked.
        notice.left_untouched = not privacy_request.is_open and notice.recipient.source_id not in carried_out
    return notices


@require_http_methods(["GET", "POST"])
def withdraw(request: HttpRequest, reference: str, secret: str) -> HttpResponse:
    privacy_request = _request_for_link(reference, secret)
    _in_the_requests_language(request, privacy_request)
    if request.method == "GET":
        # An unticked box leaves its page at this address: the language buttons (and a reload)
        # come back here with a GET, which shows the status page rather than a blank 405.
        return redirect("status", reference, secret)
    form = WithdrawForm(request.POST)
    # An unticked box is a field error, shown by the box as on the request form. A request closed
    # meanwhile shows no box: it gets the state machine's refusal below (closed is final: nothing changes).
    if privacy_request.is_open and not form.is_valid():
        context = {**_status_context(privacy_request), "withdraw_form": form}
        return render(request, "requests_app/status.html", context, status=400)
    try:
        intake.request_withdraw(request=privacy_request, actor=Actor.requester(privacy_request))
    except IllegalTransition:
        # Closed meanwhile (in another tab, or by the team): the state machine's wording is for staff.
        messages.error(request, _("This request is already closed: there is nothing left to withdraw."))
    except RequestError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, _("Your request has been withdrawn."))
    return redirect("status", reference, secret)


@require_http_methods(["GET", "POST"])
def reply(request: HttpRequest, reference: str, secret: str) -> HttpResponse:
    """The subject writes to the DPO team, with a document if asked for one (a copy of an ID);
    a reply to a question restarts the clock."""
    privacy_request = _request_for_link(reference, secret)
    _in_the_requests_language(request, privacy_request)
    if request.method == "GET":
        # A refused reply leaves its page at this address: the language buttons (and a reload) come
        # back here with a GET, which shows the status page rather than a blank 405.
        return redirect("status", reference, secret)
    body = request.POST.get("body", "")
    document = request.FILES.get("document")
    if document is not None:
        try:
            validate_attachment(document)
        except ValidationError as error:  # refused before counting: a photo in the wrong format uses up no attempt
            return _reply_refused(request, privacy_request, body, " ".join(error.messages), field="document")
    # Each reply is stored and emailed to the assignee, each document stored: bounds per client and per the request's
    # email address, as for submissions, the documents' apart (words alone can still explain a document refused).
    email = privacy_request.correspondence_email
    if document is not None and (reached := over_the_limit(request, "reply-document", email=email)):
        reason = (
            _("Too many documents sent from here: please wait %(wait)s and try again.")
            if reached.limit == OVER_THE_NETWORK_LIMIT
            else _("Too many documents sent for this request in a short time: please wait %(wait)s and try again.")
        ) % {"wait": reached.wait}
        return reached.with_retry_after(_reply_refused(request, privacy_request, body, reason, status=429, field="document"))
    # An empty post is refused below, uncounted.
    if document is None and body.strip() and (reached := over_the_limit(request, "reply", email=email)):
        reason = (
            _("Too many messages sent from here: please wait %(wait)s and try again.")
            if reached.limit == OVER_THE_NETWORK_LIMIT
            else _("Too many messages sent for this request in a short time: please wait %(wait)s and try again.")
        ) % {"wait": reached.wait}
        return reached.with_retry_after(_reply_refused(request, privacy_request, body, reason, status=429))
    try:
        handling.subject_reply(
            request=privacy_request, body=body, document=document,
            identity_document=document is not None and request.POST.get("identity_document") == "on",
        )
    except RequestError as error:
        return _reply_refused(request, privacy_request, body, str(error))
    messages.success(request, _("Thank you: your message has been sent to our data protection team."))
    return redirect("status", reference, secret)


def _reply_refused(
    request: HttpRequest, privacy_request, body: str, reason: str, status: int = 400, field: str = "body"
) -> HttpResponse:
    """The page again with the text they wrote: a refused message must not be lost. (A browser
    cannot be given back a chosen file: the page asks for it again.) The reason is tied to the `field` it is
    about, the message or the document."""
    context = {
        **_status_context(privacy_request), "reply_body": body, "reply_error": reason, "reply_error_field": field,
        "reply_identity_document": request.POST.get("identity_document") == "on",
    }
    return render(request, "requests_app/status.html", context, status=status)


DOWNLOAD_HELD_FROM_AGENT = gettext_lazy(
    "This package cannot be downloaded for now: we are checking again that you may act for the person this request "
    "is about. Its link works again if we confirm it, until it expires."
)


@require_GET
def download(request: HttpRequest, reference: str, secret: str, token: str) -> HttpResponse:
    """Stream a released package, or one range of its bytes to finish a download cut short, as the API does
    (downloads.package_download): the link is signed, expires, and counts against the download limit.

    GET only: link checkers and proxies send HEAD, which would use up the subject's downloads.
    """
    privacy_request = _request_for_link(reference, secret)
    _in_the_requests_language(request, privacy_request)

    def refused(status: int, error: str, *, headers: dict | None = None) -> HttpResponse:
        context = {"error": error, "privacy_request": privacy_request}
        response = render(request, "requests_app/download_failed.html", context, status=status)
        for name, value in (headers or {}).items():
            response[name] = value
        return response

    try:
        export = exports.export_for_link(request=privacy_request, token=token)
    except RequestError as error:
        return refused(410, str(error))
    if agents.authority_refusal(privacy_request):
        # Released while the agent's authority was confirmed, and withdrawn since (agents.agent_authority_withdraw):
        # nothing more of the subject's data reaches them until it is confirmed again. Only an agent's request is
        # ever refused so; a link that still works afterwards has lost nothing (a refusal counts no download).
        return refused(403, DOWNLOAD_HELD_FROM_AGENT)
    return downloads.package_download(
        request, export, actor=Actor.requester(privacy_request), by_organisation=False, refused=refused
    )
