"""Deadline writes: derive the due date, pause and resume the clock, extend,
and the periodic sweep that claims reminders and escalations.

The date arithmetic itself is in requests_app/deadlines.py (pure functions).
"""

import datetime
import logging

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from requests_app import deadlines, emails, roles, tasks
from requests_app.audit import Actor, record_event
from requests_app.lifecycle import OPEN_STATUSES, VERIFIED_OPEN, RequestError
from requests_app.models import ClockPause, PrivacyRequest, SentNotification, Status
from requests_app.wording import cites_gdpr_articles, date_in_words

logger = logging.getLogger(__name__)

DEADLINE_FIELDS = ["due_on", "original_due_on", "acknowledgement_due_on", "next_alert_on", "next_alert_key"]
ALERT_KIND = "deadline_alert"
# A claimed alert not sent yet that nothing queued or tried for this long is dispatched again: its task
# was lost (a worker died, the broker was down) or gave up its retries...
ALERT_REDISPATCH_AFTER = datetime.timedelta(minutes=10)
# ...for a day after the claim; then every emails.LOST_TASK_AFTER, as an owed email is, so that a mail server down
# for days does not pile up tasks. It goes on until the alert is sent, dropped (the request closed, paused or given
# another date) or followed by the request's next alert: an escalation has none, and is never given up.
ALERT_SLOWER_AFTER = datetime.timedelta(days=1)


def refresh_deadline(request: PrivacyRequest, *, today: datetime.date | None = None) -> None:
    """Derive and save the due dates and the next alert from the request's facts, and set them on `request`.

    Call after anything that moves the deadline (a finished pause, the extension), once the change is
    saved, inside the caller's transaction with the row locked. The facts are read from the row, not
    from `request`: a copy loaded before a concurrent change (an extension committed while staff
    resumed the clock) would undo it.
    """
    today = today or timezone.localdate()
    row = PrivacyRequest.objects.get(pk=request.pk)
    received_on = deadlines.receipt_day(row.regime, row.received_at)
    previous_due_on = row.due_on
    pauses = finished_pauses(row)
    request.original_due_on = deadlines.due_date(row.regime, row.received_at, rights=row.requested_rights, pauses=pauses)
    request.due_on = _due_on(row, pauses=pauses)
    request.acknowledgement_due_on = deadlines.acknowledgement_due_date(row.regime, received_on)
    clock_running = row.status in OPEN_STATUSES and not row.clock_paused
    request.next_alert_on, request.next_alert_key = (
        deadlines.alert_to_schedule(request.due_on, today, settings.DEADLINE_REMINDER_DAYS, sent=_alerts_sent(row))
        if clock_running
        else (None, "")
    )
    changes = {field: getattr(request, field) for field in DEADLINE_FIELDS}
    if (row.due_on, row.original_due_on) != (request.due_on, request.original_due_on):
        # A due date organisations see moved: the API's updated_since filter must list the request.
        changes["updated_at"] = timezone.now()
    PrivacyRequest.objects.filter(pk=request.pk).update(**changes)
    if previous_due_on is not None and previous_due_on != request.due_on:
        from requests_app.services import webhooks

        webhooks.emit(
            request, webhooks.WebhookEvent.REQUEST_DUE_DATE_CHANGED, {"previous_due_on": previous_due_on.isoformat()}
        )


def _alerts_sent(request: PrivacyRequest) -> set[str]:
    """The reminders and escalation that went out for the request, for any due date ("remind-7", ...)."""
    keys = SentNotification.objects.filter(request=request, kind=ALERT_KIND, sent_at__isnull=False).values_list("key", flat=True)
    return {key.split(":")[1] for key in keys}


def _locked(request: PrivacyRequest) -> PrivacyRequest:
    return PrivacyRequest.objects.select_for_update().get(pk=request.pk)


def open_pause(request: PrivacyRequest) -> ClockPause | None:
    return request.pauses.filter(ended_at__isnull=True).first()


def finished_pauses(request: PrivacyRequest) -> list[deadlines.Pause]:
    """The request's ended clock pauses, as the deadline arithmetic counts them."""
    return [
        _as_counted(started_at, ended_at)
        for started_at, ended_at in request.pauses.filter(ended_at__isnull=False).values_list("started_at", "ended_at")
    ]


def _as_counted(started_at: datetime.datetime, ended_at: datetime.datetime) -> deadlines.Pause:
    first_day = timezone.localdate(started_at)
    return first_day, deadlines.paused_day_count(first_day, timezone.localdate(ended_at))


def _due_on(request: PrivacyRequest, *, pauses: list[deadlines.Pause]) -> datetime.date:
    return deadlines.due_date(
        request.regime, request.received_at, rights=request.requested_rights, extended=request.is_extended,
        pauses=pauses,
    )


def due_on_if_resumed_today(request: PrivacyRequest) -> datetime.date | None:
    """The due date a paused clock would give if it restarted today, the days paused so far added as end_pause
    adds them; the due date itself while the clock runs. The date saved moves only when the clock restarts."""
    pause = open_pause(request) if request.clock_paused and request.due_on is not None else None
    if pause is None:
        return request.due_on
    return _due_on(request, pauses=[*finished_pauses(request), _as_counted(pause.started_at, timezone.now())])


def refusal_due_on(request: PrivacyRequest) -> datetime.date | None:
    """The last day to refuse the request, whole or in part, if it closed today: the end of the first period (the
    original due date), moved on by the days paused, those of a pause still running counted as closing adds them.
    The extension gives more time to act on a request, never to refuse it: a refusal must reach the subject within
    one month of receipt (Art. 12(4); EDPB Guidelines 01/2022, para. 191). The GDPR applies to every request
    (deadlines.due_date), so this date binds under every regime; the original due date is already the GDPR's where
    the regime's own is later (a CCPA request's 45 days), and the LGPD allows no extension. None before a due date
    is set."""
    pause = open_pause(request) if request.clock_paused and request.original_due_on is not None else None
    if pause is None:
        return request.original_due_on
    pauses = [*finished_pauses(request), _as_counted(pause.started_at, timezone.now())]
    return deadlines.due_date(request.regime, request.received_at, rights=request.requested_rights, pauses=pauses)


def late_refusal_warning(request: PrivacyRequest) -> str | None:
    """What the request page says above Reject, and a completion that refuses a right, once a refusal sent today
    would be late (refusal_due_on): staff may still send it, as a late answer beats none, but should know."""
    last_day = refusal_due_on(request)
    if last_day is None or timezone.localdate() <= last_day:
        return None
    if cites_gdpr_articles(request.regime):
        warning = _(
            "The first period to answer ended on %(date)s (the original due date, moved on by the days paused). An "
            "extension gives more time to act on a request, not to refuse it: a rejection, or a completion that refuses a "
            "right, sent now reaches the subject late (Art. 12(4)), and the certificate will say so."
        )
    else:
        warning = _(
            "The first period to answer ended on %(date)s (the original due date, moved on by the days paused). An "
            "extension gives more time to act on a request, not to refuse it: a rejection, or a completion that refuses a "
            "right, sent now reaches the subject late, and the certificate will say so."
        )
    return warning % {"date": date_in_words(last_day)}


def pause_refusal(request: PrivacyRequest) -> str | None:
    """Why the request's clock may not stop while waiting for the subject, or None when it may."""
    if request.regime not in deadlines.CLOCK_STOPS_WHILE_WAITING:
        return _("Under %(regime)s the time to answer runs on while we wait for the subject: the clock cannot be paused.") % {
            "regime": request.get_regime_display()
        }
    if request.due_on is not None and request.due_on < timezone.localdate():
        # A pause stops a running period: it cannot revive one that has ended (nor hide the request
        # from the overdue lists).
        return _("The answer was due on %(date)s: the clock of an overdue request cannot be paused.") % {
            "date": date_in_words(request.due_on)
        }
    return None


def start_pause(request: PrivacyRequest, *, actor: Actor, reason: str) -> ClockPause:
    """Stop the clock. The caller holds the row lock and has checked no pause is open and pause_refusal."""
    pause = ClockPause.objects.create(
        request=request, started_at=timezone.now(), reason=reason, started_by=actor.user
    )
    PrivacyRequest.objects.filter(pk=request.pk).update(next_alert_on=None, next_alert_key="", clock_paused=True)
    request.next_alert_on, request.next_alert_key, request.clock_paused = None, "", True
    # The reason stays on the pause: staff text may name people, and the chain is never purged.
    record_event(request, "clock_paused", actor=actor, data={"due_on": str(request.due_on), "pause": pause.id})
    return pause


def finish_pause(request: PrivacyRequest, pause: ClockPause, *, actor: Actor) -> int:
    """End the pause and add its days to the deadline: the clock restarts, or the request closes (its answer came
    in time if it came by the date the pause moved on to). The caller holds the row lock. Returns the days added."""
    now = timezone.now()
    added = deadlines.paused_day_count(timezone.localdate(pause.started_at), timezone.localdate(now))
    ClockPause.objects.filter(pk=pause.pk).update(ended_at=now, ended_by=actor.user)
    request.paused_days = _locked(request).paused_days + added
    request.clock_paused = False
    PrivacyRequest.objects.filter(pk=request.pk).update(paused_days=request.paused_days, clock_paused=False)
    refresh_deadline(request)
    return added


def end_pause(request: PrivacyRequest, pause: ClockPause, *, actor: Actor, note: str = "") -> int:
    """Restart the clock, adding the paused days to the deadline. Returns the days added."""
    added = finish_pause(request, pause, actor=actor)
    record_event(
        request,
        "clock_resumed",
        actor=actor,
        note=note,
        data={"paused_days": added, "due_on": str(request.due_on)},
    )
    return added


def clock_pause(*, request: PrivacyRequest, actor: Actor, reason: str) -> ClockPause:
    """Staff stop the clock while waiting on the subject (e.g. for proof of identity).

    Allowed on open requests with a running clock, by staff who may work the
    request, with a reason. Writes an audit event.
    """
    reason = reason.strip()
    if not reason:
        raise RequestError(_("Give a reason for pausing the clock."))
    with transaction.atomic():
        # Everything below reads the locked row, not the caller's copy: a change committed since it
        # was loaded (an extension, say) must not be undone.
        locked = _locked(request)
        roles.require_can_work(actor, locked)
        if locked.status not in OPEN_STATUSES:
            raise RequestError(_("The clock of a closed request cannot be paused."))
        if locked.status not in VERIFIED_OPEN:
            raise RequestError(_("The subject has not confirmed their email address yet: the request cannot be paused before they do."))
        if open_pause(locked):
            raise RequestError(_("The clock is already paused."))
        refusal = pause_refusal(locked)
        if refusal:
            raise RequestError(refusal)
        return start_pause(locked, actor=actor, reason=reason)


def clock_resume(*, request: PrivacyRequest, actor: Actor, note: str = "") -> int:
    """Staff restart a paused clock; the paused days are added to the deadline."""
    with transaction.atomic():
        # The locked row, not the caller's copy: an extension committed since the page was loaded
        # must count when the due date is derived again.
        locked = _locked(request)
        roles.require_can_work(actor, locked)
        pause = open_pause(locked)
        if pause is None:
            raise RequestError(_("The clock is not paused, so it cannot be resumed."))
        if locked.status == Status.AWAITING_SUBJECT:
            # Its status says the clock is stopped: resume the request itself, which restarts the clock.
            raise RequestError(_("The request is waiting for the subject: start work on it (or send it back to new), which restarts the clock."))
        return end_pause(locked, pause, actor=actor, note=note)


def extension_refusal(request: PrivacyRequest) -> str | None:
    """Why the request's deadline cannot be extended now, or None (the request page offers it only then)."""
    if request.status not in VERIFIED_OPEN:
        return _("Only a verified, open request can be extended.")
    if request.is_extended:
        return _("The deadline was already extended on %(date)s; it can be extended only once.") % {
            "date": date_in_words(timezone.localdate(request.extended_at))
        }
    # Not extended yet, so the due date is the first period's end (a month under the GDPR), moved on by the days
    # of a pause still running too: the same rule whether the clock restarts before the extension or after it.
    first_period_ends = due_on_if_resumed_today(request)
    if timezone.localdate() > first_period_ends:
        return _(
            "The first period to answer ended on %(date)s (the original due date, moved on by the days paused): an "
            "extension must be notified before it ends."
        ) % {
            "date": date_in_words(first_period_ends)
        }
    if request.regime == "lgpd":
        return _("LGPD allows no extension of the 15-day period.")
    if request.limits_use_under_ccpa:
        # Its one due date is the limit's (deadlines.statutory_due_date): an extension would move nothing, yet tell
        # the subject of a later date.
        return _(
            "The CCPA allows no extension of the 15 business days to comply with a request to limit the use of "
            "sensitive personal information (CCPA Regulations § 7027(g)(1))."
        )
    return None


def request_extend(*, request: PrivacyRequest, actor: Actor, reason: str, preview: bool = False) -> PrivacyRequest:
    """Extend the deadline once (GDPR Art. 12(3): by two further months), with a reason.

    Allowed on verified open requests, by staff who may work the request, until
    the first period ends (extension_refusal), and only where the regime allows an
    extension. Writes an audit event and emails the subject the new date and
    the reason on commit.

    `preview`: emails.LetterPreview is raised with that email instead, and nothing changes; for a subject with no
    email address, with its text, which staff send by post.
    """
    reason = reason.strip()
    if not reason:
        raise RequestError(_("Give the reason for the extension: the subject is told it."))
    with transaction.atomic():
        locked = _locked(request)
        roles.require_can_work(actor, locked)
        refusal = extension_refusal(locked)
        if refusal:
            raise RequestError(refusal)
        previous_due_on = locked.due_on
        locked.extended_at, locked.extended_by, locked.extension_reason = timezone.now(), actor.user, reason
        PrivacyRequest.objects.filter(pk=locked.pk).update(
            extended_at=locked.extended_at, extended_by=actor.user, extension_reason=reason
        )
        refresh_deadline(locked)
        record_event(
            locked, "deadline_extended", actor=actor, data={"from": str(previous_due_on), "to": str(locked.due_on)}
        )
        if preview:
            # After the change, in its transaction, which the exception rolls back: the new date is the one sent.
            email = emails.extension_email(locked, link=emails.masked_status_url(locked))
            raise emails.LetterPreview(subject=email.subject, body=email.body, by_post=not locked.correspondence_email)
        if locked.correspondence_email:
            emails.owe(locked, "deadline_extended")
            tasks.queue_after_commit(tasks.send_extension_email, locked.id)
    return locked


def sweep_deadlines(*, today: datetime.date | None = None, batch_size: int = 1000) -> int:
    """Claim every reminder and escalation due today, and queue their emails.

    Reads only requests whose `next_alert_on` has come (an indexed column),
    so its cost follows the number of alerts due, not the number of open
    requests. Rows are locked with SKIP LOCKED: two sweeps at once split the
    work. Each alert is claimed as a SentNotification keyed by due date and
    threshold, in the same transaction that advances `next_alert_on`, so it is
    claimed exactly once; a worker dying mid-batch rolls the batch back for
    the next sweep. Claims whose email task never ran are dispatched again.
    Returns the number of alerts claimed.
    """
    today = today or timezone.localdate()
    claimed = 0
    while True:
        with transaction.atomic():
            batch = list(
                PrivacyRequest.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(next_alert_on__lte=today)
                .order_by()
                .values_list("id", "due_on")[:batch_size]
            )
            if not batch:
                break
            notification_ids = _claim_alerts(batch, today)
            claimed += len(notification_ids)
            for start in range(0, len(notification_ids), 100):
                chunk = notification_ids[start : start + 100]
                tasks.queue_after_commit(tasks.send_deadline_alerts, chunk)
        if len(batch) < batch_size:
            break

    _redispatch_stale_alerts()
    if claimed:
        logger.info("deadline sweep claimed %s alerts", claimed)
    return claimed


def _claim_alerts(batch: list[tuple[int, datetime.date]], today: datetime.date) -> list[int]:
    """Create the claims for a locked batch and move each request to its next alert."""
    reminder_days = settings.DEADLINE_REMINDER_DAYS
    claims, advances = [], {}
    for request_id, due_on in batch:
        current_key, following = deadlines.alert_due_now(due_on, today, reminder_days)
        if current_key:
            claims.append(
                SentNotification(request_id=request_id, kind=ALERT_KIND, key=f"{due_on}:{current_key}", queued_at=timezone.now())
            )
        advances.setdefault(following or (None, ""), []).append(request_id)

    # The rows are locked, so no other sweep claims for them now; an alert
    # claimed by an earlier run (same due date and threshold) is not sent again.
    already = set(
        SentNotification.objects.filter(
            request_id__in=[claim.request_id for claim in claims], kind=ALERT_KIND, key__in={c.key for c in claims}
        ).values_list("request_id", "key")
    )
    new_claims = [claim for claim in claims if (claim.request_id, claim.key) not in already]
    created = SentNotification.objects.bulk_create(new_claims)
    for (next_on, next_key), ids in advances.items():
        PrivacyRequest.objects.filter(id__in=ids).update(next_alert_on=next_on, next_alert_key=next_key)
    return [claim.id for claim in created]


def _redispatch_stale_alerts() -> None:
    """Queue again the claimed alerts not sent, nor queued or tried for ALERT_REDISPATCH_AFTER (ALERT_SLOWER_AFTER
    after the claim: for emails.LOST_TASK_AFTER), unless the request has claimed a later alert since. Each dispatch
    is noted, so an alert is queued again at most that often; a second task is harmless: each recipient gets the
    alert once (emails.send_deadline_alert)."""
    now = timezone.now()
    later_claim = SentNotification.objects.filter(
        request_id=OuterRef("request_id"), kind=ALERT_KIND, created_at__gt=OuterRef("created_at")
    )
    with transaction.atomic():
        stale = list(
            SentNotification.objects.filter(kind=ALERT_KIND, sent_at__isnull=True)
            .filter(
                Q(queued_at__lt=now - ALERT_REDISPATCH_AFTER, created_at__gte=now - ALERT_SLOWER_AFTER)
                | Q(queued_at__lt=now - emails.LOST_TASK_AFTER)
            )
            .exclude(Exists(later_claim))
            .values_list("id", "created_at")[:1000]
        )
        if stale:
            SentNotification.objects.filter(pk__in=[pk for pk, _created_at in stale]).update(queued_at=now)
            tasks.queue_after_commit(tasks.send_deadline_alerts, [pk for pk, _created_at in stale])
    if stale:
        # The reference is not personal data, but a batch may be long: counts only. Staff see the requests on the
        # dashboard (due soon, overdue); operators see here that the mail server has been failing for a day.
        late = sum(created_at < now - ALERT_SLOWER_AFTER for _pk, created_at in stale)
        logger.warning("re-dispatching %s deadline alerts not sent yet, %s of them claimed over a day ago", len(stale), late)
