"""How a request was handled, and the proof of it.

The certificate (of how a request was handled, whatever its outcome: completed,
rejected, withdrawn, forwarded) is the controller's record (Art. 5(2) accountability),
which the DPO gives a supervisory authority: the controller, the regime, the
deadline (extension, pauses, whether the answer came in time), how the identity
was verified, the packages released and their downloads, a rejection's ground,
every source action with its approval and execution, the data kept under a legal
hold and its Art. 17(3) ground, the recipients of the data concerned and the
Art. 19 notices, and the request's audit events with the result of verifying the
hash chain. It may be shown to the subject, so it names the identifiers' kinds
and the fields that were corrected but never their values.

`outcome_summary` is the same story in the subject's words and language, for
the completion letter, with what a released data package found; to an agent who
filed for the subject, said of the person they act for (_to_whoever_filed).
"""

from datetime import date, datetime

from django.conf import settings
from django.db.models import Prefetch, Q
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from requests_app.audit import verify_request_events
from requests_app.context import controller_details
from requests_app.models import (
    ACTION_FOR_RIGHT,
    ANSWERING_KINDS,
    NO_DATA_DELIVERED,
    ActionKind,
    ActionStatus,
    AuditChainCheck,
    CoveredPurpose,
    DataCategory,
    ErasureException,
    ExportKind,
    ExportStatus,
    IdentityKind,
    NoticeStatus,
    PrivacyRequest,
    Recipient,
    Regime,
    RequestType,
    SourceField,
    SourceSystem,
    Status,
    WaiverReason,
)
from requests_app.exports.package import NO_VERIFIED_IDENTIFIER, not_searched_reason, source_of_data_file
from requests_app.services.notices import corrected_values, limit_applied, only_records_before
from requests_app.wording import (
    citation,
    citations,
    date_in_words,
    in_sentence,
    label_citing_its_law,
    recipients_told_citation,
    with_full_stop,
)


def _category_labels(source) -> dict[str, str]:
    """Category slug -> the inventory's description of it ("Contact details"), as the subject knows it."""
    return {category.slug: str(category.get_category_display()) for category in source.categories.all()}


def _field_labels(action) -> dict[tuple[str, str], str]:
    """(category slug, field name) -> how letters name the field to the subject, in the request's language."""
    fields = SourceField.objects.filter(category__source=action.source).select_related("category").prefetch_related("translations")
    return {(field.category.slug, field.name): field.texts_in(action.request.language)["label"] for field in fields}


def _field_names(action, fields) -> str:
    """The (category slug, field name) pairs as the letter names them: a field since removed from the
    inventory by its column name, the only name left."""
    labels = _field_labels(action)
    return _names(labels.get(field, field[1]) for field in fields)


def kept(action) -> list[dict]:
    """The holds under which an erasure kept some of the subject's data, from its result (or its dry
    run, before it ran). A held category where the subject has no rows kept nothing (dry runs made
    before the rows were counted say every held category)."""
    held = action.result.get("held") if action.status == ActionStatus.DONE else action.dry_run.get("held")
    counts = action.dry_run.get("held_rows")
    return [hold for hold in held or [] if counts is None or counts.get(hold["category"], 0) > 0]


def codes_kept(action) -> list[dict]:
    """The codes (keyed hashes) a finished erasure wrote in place of the subject's data in the categories it
    changed, each category's with the legal hold on the codes that keeps them (actions.pseudonyms_kept), as its
    dry run planned them: the execution ran that plan. None for an erasure made before such a hold was required:
    its codes were kept on no recorded ground (_pseudonymised_fields names them still)."""
    changed = set(action.changed_categories())
    return [hold for hold in action.dry_run.get("pseudonym_holds", []) if hold["category"] in changed]


def _held(action, labels: dict[str, str]) -> list[dict]:
    """The categories an erasure kept, then the codes it kept in place of fields, labelled for the letter and the
    certificate in the active language (a hold's basis in its translation, where the DPO gave one when the erasure
    ran)."""
    language = translation.get_language()
    return [
        {
            "category": labels.get(hold["category"], hold["category"]),
            # The source's own name of the category too, as the rows counted name it: two categories of one kind (the
            # calls a subject made and those they received) have one description, and read as one row twice without it.
            "slug": hold["category"],
            "ground": str(ErasureException(hold["ground"]).label),
            "basis": hold.get("basis_translations", {}).get(language) or hold["basis"],
            "until": hold["until"],
            "kept_from": hold.get("kept_from"),  # a rolling hold kept only the records from this day on
            # A hold on the codes kept only them, named as the source names its fields (the controller's record).
            "codes": _names(f"{hold['category']}.{name}" for name in hold["fields"]) if "fields" in hold else "",
        }
        for hold in [*kept(action), *codes_kept(action)]
    ]


def certificate_context(request: PrivacyRequest) -> dict:
    """Everything the certificate shows.

    The request's own events are verified where they sit in the chain; the
    whole chain is walked nightly, and the certificate reports the latest walk.
    """
    refused_kinds = {kind for right, kind in ACTION_FOR_RIGHT.items() if right in request.refused_rights}
    source_actions = []
    related = ("source", "approved_by", "done_by", "lift_notice", "cancelled_by", "lift_cancel_notice")
    for action in request.source_actions.select_related(*related).prefetch_related("source__categories"):
        labels = _category_labels(action.source)
        not_searched = searched_nothing(action)
        source_actions.append(
            {
                "action": action,
                # Left as it was when the completion refused its right: it was never carried out, or done without
                # searching its source (answered_already).
                "right_refused": action.kind in refused_kinds and not not_carried_out(action),
                "status": status_label(action),
                # A source that could not be searched has no counts to show: its zeros are not "nothing found".
                "not_searched": not_searched,
                "categories": [] if not_searched else [
                    {**counts, "label": labels.get(counts["category"], counts["category"])}
                    for counts in action.result.get("categories", [])
                ],
                "held": _held(action, labels),
                # What an erasure that anonymised rows left in them, by the source's own names of the fields: codes
                # that can still be matched to the subject (held above where a hold on the codes kept them), and
                # fields left as they were, as the inventory's "keep" says for them.
                "codes": "" if not_searched else _names(f"{slug}.{name}" for slug, name in _pseudonymised_fields(action)),
                "left_as_they_were": "" if not_searched else _names(
                    f"{slug}.{name}" for slug, names in action.dry_run.get("kept_fields", {}).items()
                    if slug in action.changed_categories() for name in names
                ),
                "manual": bool(action.result.get("manual")),
                "identities_searched": action.dry_run.get("identities"),  # None before a dry run
                "identity_kind": in_sentence(IdentityKind(action.source.identity_kind).label),
            }
        )
    checked, chain_break = verify_request_events(request)
    done = [item["action"] for item in source_actions if item["action"].status == ActionStatus.DONE]
    return {
        "request": request,
        "controller": controller_details(translation.get_language()),  # the reader's
        # Each provision as the law of the request's regime has it, if it has it; telling the recipients, as it has it
        # for what they were told (recipients_told_kinds).
        "law": {**citations(request.regime), "recipients_told": _recipients_law(request, recipients_told_kinds(request, done))},
        # Each with its refusal ground, where the completion refused it.
        "rights": request.rights.all(),
        "outcome": outcome(request),
        "answered_on_time": answered_on_time(request),
        "refused_late": refused_late(request),
        "pauses": request.pauses.all(),
        "identities": request.identities.select_related("verified_by"),
        "packages": packages(
            request,
            request.exports.filter(status__in=(ExportStatus.READY, ExportStatus.RELEASED, ExportStatus.EXPIRED))
            .select_related("released_by")
            .order_by("created_at"),
        ),
        "asks_for_package": bool({RequestType.ACCESS, RequestType.PORTABILITY} & set(request.granted_rights)),
        "transmission_declined": transmission_declined(request),
        "source_actions": source_actions,
        "rectified_fields": request.rectification_changes.select_related("category__source"),
        "data_searched": bool(done) or request.exports.exclude(manifest={}).exists(),
        "sources_with_data": _sources_with_data(request, done),
        # Art. 19 is owed for what the actions changed: a request that changed nothing owes no notice.
        "changed_anything": any(action.changed_anything() for action in done),
        # So is the notice of a CCPA request to limit, which changes no source (CCPA Regulations § 7027(g)).
        "limit_told": limit_applied(request).exists(),
        "notices": request.recipient_notices.select_related("recipient", "waived_by").prefetch_related("recipient__translations"),
        "events": request.events.order_by("sequence"),
        "events_checked": checked,
        "events_break": chain_break,
        "chain_check": AuditChainCheck.objects.order_by("-checked_at").first(),
        "generated_at": timezone.now(),
    }


def transmission_declined(request: PrivacyRequest) -> dict | None:
    """When and by whom sending the data to the organisation the subject named was declined (Art. 20(2)), and the
    reason the subject was told (blank once their personal data is purged, as the right's other details are); None
    when it was not."""
    event = request.events.filter(action="transmission_declined").select_related("actor").first()
    if event is None:
        return None
    reason = request.rights.filter(right=RequestType.PORTABILITY).values_list("transmission_decline_reason", flat=True).first()
    return {"at": event.created_at, "by": event.actor.get_username() if event.actor else "", "reason": reason or ""}


def outcome(request: PrivacyRequest) -> str:
    """How the request ended, in a line for the certificate's head, whatever its status ("" while it is open): the
    status alone, beside its date, would leave a reader of a certificate to guess what "Completed" granted, or
    whether a rejected or withdrawn request was answered at all. A rejection refuses every right asked, and is
    refused once any was answered (handling.request_reject); a withdrawal may follow work already done, which the
    actions below say."""
    if request.status == Status.COMPLETED and request.granted_rights:
        # What was kept, or not searched, is said here too, as the letter says it: "every right granted" would deny it.
        shortfalls = "; ".join(not_granted_in_full(request))
        if not request.refused_rights:
            if shortfalls:
                return _("Completed, granted in part: %(shortfalls)s.") % {"shortfalls": shortfalls}
            return _("Completed: every right asked was granted.")
        if shortfalls:
            return _(
                "Completed: some of the rights asked were granted, the others refused, each on its own ground (above); "
                "those granted only in part: %(shortfalls)s."
            ) % {"shortfalls": shortfalls}
        return _("Completed: some of the rights asked were granted, the others refused, each on its own ground (above).")
    if request.status == Status.COMPLETED:
        # Each right refused on its own ground (above), not rejected.
        return _("Every right asked was refused, each on its own ground: none was carried out.")
    return {
        Status.REJECTED: _("Rejected: every right asked was refused, on the ground below."),
        Status.WITHDRAWN: _("Withdrawn before it was answered."),
        Status.FORWARDED: _("Forwarded to the controller of the data, which answers it."),
        Status.EXPIRED: _("Expired: the email address was never confirmed, so the request was never handled."),
    }.get(request.status, "")


def answered_on_time(request: PrivacyRequest) -> bool | None:
    """Whether a completed, rejected or forwarded request was closed on or before its due date (in Brussels
    time, as the due date is counted); None while it is open, or when it was withdrawn or expired: the
    subject ended those, or never confirmed them, and there was no answer to give. Forwarding to the controller is
    our answer: the letter saying so is owed within the same period (Art. 12(3), (4)).

    A refusal, whole or of some rights, is judged by the original due date (refused_late): the extension does not
    move it."""
    answered = (Status.COMPLETED, Status.REJECTED, Status.FORWARDED)
    if request.status not in answered or request.closed_at is None or request.due_on is None:
        return None
    if refused_late(request):
        return False
    return timezone.localdate(request.closed_at) <= request.due_on


def refused_late(request: PrivacyRequest) -> bool:
    """Whether a closed request refused the subject (rejected, or completed refusing some rights) after the first
    period to answer ended: its original due date, which closing moved on by every day paused
    (deadline_service.refusal_due_on). Art. 12(4) wants a refusal within one month of receipt; the extension of
    Art. 12(3) extends the time to act, not to refuse (EDPB Guidelines 01/2022, para. 191)."""
    refused = request.status == Status.REJECTED or (request.status == Status.COMPLETED and request.refused_rights)
    if not refused or request.closed_at is None or request.original_due_on is None:
        return False
    return timezone.localdate(request.closed_at) > request.original_due_on


# The audit events of sending a package to the organisation the subject named, each naming the package.
TRANSMISSION_EVENTS = ("export_transmitted", "transmission_resent", "transmission_email_rejected", "export_downloaded_by_recipient")


def packages(request: PrivacyRequest, exports) -> list[dict]:
    """`exports`, data packages of `request` (the certificate's: those compiled, and those ended before they were
    compiled, the request closed while one was queued, say; the staff request page's: all), with when each was
    downloaded, by the subject or the organisation it was shared with, when it was sent to the organisation the
    subject named and downloaded there, and when and why one ended (from the audit
    trail: the counts alone do not say when, and an ended package's status says only that it is deleted). Each with
    the status the certificate and the staff pages give it: an ended one's says whether it was compiled, and whether
    it expired or something else ended it (package_ending)."""
    downloads, deleted = {}, {}
    # Art. 20(2), a package sent to the organisation the subject named (services.transmission): each sending (the
    # first, and each after its mail server refused the address) with who sent it, each refusal, and its downloads.
    sent, sending_refused, recipient_downloads = {}, {}, {}
    events = request.events.filter(
        action__in=("export_downloaded", "export_deleted", *TRANSMISSION_EVENTS)
    ).select_related("actor").order_by("sequence")
    for event in events:
        key = event.data.get("export")
        if event.action == "export_deleted":
            deleted[key] = event.created_at
        elif event.action == "export_downloaded":
            downloads.setdefault(key, []).append(event.created_at)
        elif event.action == "export_downloaded_by_recipient":
            recipient_downloads.setdefault(key, []).append(event.created_at)
        elif event.action == "transmission_email_rejected":
            sending_refused.setdefault(key, []).append(event.created_at)
        else:
            sent.setdefault(key, []).append((event.created_at, event.actor.get_username() if event.actor else ""))
    items = []
    for export in exports:
        export.request = request
        key = str(export.public_id)
        item = {
            "export": export, "downloaded_at": downloads.get(key, []),
            "status": export.get_status_display(), "compiled": True,
            "sent": sent.get(key, []), "sending_refused_at": sending_refused.get(key, []),
            "recipient_downloaded_at": recipient_downloads.get(key, []),
        }
        if export.status == ExportStatus.EXPIRED:
            deleted_at = deleted.get(str(export.public_id))
            item["ended_at"], cause = package_ending(export, deleted_at=deleted_at)
            item["ended_because"] = _ending_in_words(export, cause)
            # An ended package is one of the kind: it may never have been compiled (queued, collecting, waiting for
            # manual extracts or failed when the request closed), and "expired" says its download period ran out.
            item["compiled"] = _compiled(export)
            if not item["compiled"]:
                item["status"] = _("Not compiled: it ended before it was compiled")
            elif cause != ENDED_DOWNLOAD_PERIOD:
                item["status"] = _("Ended and deleted")
        items.append(item)
    return items


def _compiled(export) -> bool:
    """Whether an ended package had been compiled: released, or a ZIP made (its digest, and its manifest, stay when
    it ends: exports.delete_export). One queued, collecting, waiting for manual extracts or failed has neither."""
    return export.released_at is not None or bool(export.sha256) or bool(export.manifest)


def _download_period_ran_out(export, *, ended_at: datetime) -> bool:
    """Whether a package was released and its download period was over by the time it ended: it expired."""
    return export.released_at is not None and export.expires_at is not None and export.expires_at <= ended_at


# What ended a package first (package_ending): the certificate and the staff pages (_ending_in_words) and the
# subject's status page (ended_downloads_in_words) each say it in their reader's words.
ENDED_DOWNLOAD_PERIOD = "download_period"
ENDED_DOWNLOADS_USED = "downloads_used"
ENDED_REQUEST_CLOSED = "request_closed"
ENDED_RIGHT_REFUSED = "right_refused"
ENDED_DATA_PURGED = "personal_data_purged"
ENDED_NOT_RELEASED = "not_released"


def package_ending(export, *, deleted_at: datetime | None) -> tuple[datetime | None, str]:
    """When and why a package stopped being available (ended: deleted, its manifest kept; or released and no longer
    downloadable), as the record shows it, what ended it first, as its download link says (exports.download_refusal):
    a released one's download period running out (at its expiry, before the hourly clean-up deleted it) or its
    downloads used up; then the request closed without its data (withdrawn, rejected, forwarded, never verified) or
    the completion refusing the right it answers, which ended it at once; the purge of the subject's personal data;
    or, never released, the time a compiled package awaits review. `deleted_at` is its "export_deleted" event's time
    (None while it is not deleted); the reason is one of the ENDED_ codes, "" when none of these fits."""
    # Imported here: the exports service reads the selectors, which read this module.
    from requests_app.services.exports import right_refused

    request = export.request
    ended_at = deleted_at or timezone.now()
    if _download_period_ran_out(export, ended_at=ended_at):
        return export.expires_at, ENDED_DOWNLOAD_PERIOD
    used_up = (
        export.download_count >= export.max_downloads
        and (not export.shared_with_organisation or export.organisation_download_count >= export.max_downloads)
        and (export.transmitted_at is None or export.recipient_download_count >= export.max_downloads)
    )
    if export.released_at is not None and used_up:
        return deleted_at, ENDED_DOWNLOADS_USED
    # A package ended before the request closed (left unreleased, say) was not ended by the closing.
    closed = request.closed_at is not None and ended_at >= request.closed_at
    if closed and request.status in NO_DATA_DELIVERED:
        return deleted_at, ENDED_REQUEST_CLOSED
    if closed and right_refused(export):
        return deleted_at, ENDED_RIGHT_REFUSED
    if request.personal_data_purged_at is not None and ended_at >= request.personal_data_purged_at:
        return deleted_at, ENDED_DATA_PURGED
    if export.released_at is None and export.finished_at is not None and _compiled(export):
        return deleted_at, ENDED_NOT_RELEASED
    return deleted_at, ""


_ENDING_TEXT = {
    ENDED_DOWNLOAD_PERIOD: gettext_lazy("Its download period ran out."),
    ENDED_DOWNLOADS_USED: gettext_lazy("All its downloads were used."),
    ENDED_RIGHT_REFUSED: gettext_lazy("The completion refused the right it answers."),
    ENDED_DATA_PURGED: gettext_lazy("Deleted with the subject's personal data."),
    ENDED_NOT_RELEASED: gettext_lazy("It was not released within the time a compiled package awaits review."),
}


def _ending_in_words(export, cause: str) -> str:
    """What ended `export` (package_ending's `cause`), as the certificate and the staff pages say it."""
    if cause == ENDED_REQUEST_CLOSED:
        return _("The request was closed (%(status)s): no data is delivered for it.") % {
            "status": export.request.get_status_display()
        }
    return str(_ENDING_TEXT.get(cause, ""))


# What the subject's status page says of a package released to them that can no longer be downloaded: "our answer"
# where it found nothing (as its link said), "the copy of your data" otherwise, or, to an agent who filed for the
# subject, "the copy of the data of the person you are acting for".
_ENDED_DOWNLOAD_TEXT = {
    ENDED_DOWNLOAD_PERIOD: (
        gettext_lazy("Our answer, which we made available here, can no longer be downloaded: its download period ended on %(moment)s."),
        gettext_lazy("The copy of your data we made available can no longer be downloaded: its download period ended on %(moment)s."),
        gettext_lazy(
            "The copy of the data of the person you are acting for, which we made available, can no longer be downloaded: "
            "its download period ended on %(moment)s."
        ),
    ),
    ENDED_DOWNLOADS_USED: (
        gettext_lazy("Our answer, which we made available here, can no longer be downloaded: it was downloaded as many times as allowed."),
        gettext_lazy("The copy of your data we made available can no longer be downloaded: it was downloaded as many times as allowed."),
        gettext_lazy(
            "The copy of the data of the person you are acting for, which we made available, can no longer be downloaded: "
            "it was downloaded as many times as allowed."
        ),
    ),
    ENDED_REQUEST_CLOSED: (
        gettext_lazy("Our answer, which we made available here, was deleted when the request was withdrawn."),
        gettext_lazy("The copy of your data we made available was deleted when the request was withdrawn."),
        gettext_lazy(
            "The copy of the data of the person you are acting for, which we made available, was deleted when the "
            "request was withdrawn."
        ),
    ),
}


def ended_downloads_in_words(request: PrivacyRequest, exports) -> list[str]:
    """What became of `exports`, packages released to the subject of `request` that can no longer be downloaded, as
    their status page says it in the active language: what ended each first (package_ending), as the certificate
    and the staff pages say it, so a package the withdrawal deleted does not read as expired, nor one that expired
    before the withdrawal as deleted by it. Said once for packages alike.

    A package the withdrawal ended is said to be deleted once it is (ended at once as a rule, by the hourly clean-up
    where another transaction held it locked): never downloadable meanwhile, it is not mentioned. No other ending
    reaches a released package: a rejection, a forwarding or a refusal at completion follows no release
    (actions.answered_already), and the purge of the subject's data comes years after its download period."""
    deleted = dict(request.events.filter(action="export_deleted").values_list("data__export", "created_at"))
    sentences = []
    for export in exports:
        export.request = request
        ended_at, cause = package_ending(export, deleted_at=deleted.get(str(export.public_id)))
        if not cause and export.download_count >= export.max_downloads:
            # Shared with the organisation, which has downloads left: the package lives on, but not for the subject.
            cause = ENDED_DOWNLOADS_USED
        deleted_by_withdrawal = request.status == Status.WITHDRAWN and export.status == ExportStatus.EXPIRED
        if cause not in _ENDED_DOWNLOAD_TEXT or cause == ENDED_REQUEST_CLOSED and not deleted_by_withdrawal:
            continue
        answer, copy, copy_to_agent = _ENDED_DOWNLOAD_TEXT[cause]
        if not export.found_nothing:
            answer = copy_to_agent if request.filed_by_agent else copy
        sentence = str(answer) % {"moment": date_in_words(ended_at, "DATETIME_FORMAT")}
        if sentence not in sentences:
            sentences.append(sentence)
    return sentences


def _sources_with_data(request: PrivacyRequest, done: list) -> list[SourceSystem]:
    """The sources where the subject's data was found, with their recipients as the inventory lists them:
    those a package extracted rows from, and those where a finished action found rows (changed, kept under
    a hold, or already correct). A source that could not be searched, or where nothing matched, is not one."""
    slugs = set()
    for manifest in request.exports.exclude(manifest={}).values_list("manifest", flat=True):
        for entry in manifest.get("files", []):
            if entry.get("rows") and source_of_data_file(entry["path"]):
                slugs.add(source_of_data_file(entry["path"]))
    source_ids = {
        action.source_id
        for action in done
        if not searched_nothing(action)
        and (
            action.changed_anything()
            or kept(action)
            or any(counts.get("rows") for counts in action.result.get("categories", []))
        )
    }
    recipients = Prefetch("recipients", queryset=Recipient.objects.order_by("name").prefetch_related("translations"))
    return list(
        SourceSystem.objects.filter(Q(slug__in=slugs) | Q(id__in=source_ids))
        .prefetch_related(recipients, "translations")
        .order_by("name")
    )


def render_certificate_html(request: PrivacyRequest) -> str:
    """The certificate as a self-contained HTML page (inline CSS, prints as it shows)."""
    return render_to_string("certificate/certificate.html", certificate_context(request))


def render_certificate_pdf(request: PrivacyRequest) -> bytes:
    """The certificate as a PDF, for the file and for the subject."""
    # Imported here: WeasyPrint loads Pango when imported, and the rest of the
    # app must run on machines without it.
    from weasyprint import HTML

    return HTML(string=render_certificate_html(request)).write_pdf()


def _names(items) -> str:
    return ", ".join(str(item) for item in items)


def _to_whoever_filed(request: PrivacyRequest, subjects_words: str, agents_words: str) -> str:
    """The line as the subject reads it, or, to an agent who filed for them, as said of the person they act for: an
    agent reads in the letter and on the status page of "the data of the person you are acting for", not "your data"."""
    return agents_words if request.filed_by_agent else subjects_words


def not_granted_in_full(request: PrivacyRequest) -> list[str]:
    """What the rights a request granted fell short of, a phrase each, for the certificate's outcome (in the active
    language, each ground as the request's law cites it): the data an erasure kept under a legal hold, or replaced
    with codes that can still be matched to the subject (their data, kept: Recital 26); a source an action or a
    released package could not search; a use of their data they asked to stop that staff recorded could not be
    stopped. Empty when every right granted was carried out in full.

    The one rule for "granted in part": the letter then states the right to complain (answered_in_part, Art. 12(4)),
    the status page says the request was not granted in full, and the certificate says what was not. Reads
    `source_actions.all()`, `exports.all()`, so that actions.prefetch_for_completion serves it."""
    shortfalls = []
    for action in request.source_actions.all():
        if action.status != ActionStatus.DONE:
            continue
        if searched_nothing(action):
            item = {"reason": NO_VERIFIED_IDENTIFIER, "kind": action.source.identity_kind}
            shortfalls.append(_("%(source)s not searched (%(reason)s)") % {"source": action.source.name, "reason": not_searched_reason(item)})
            continue
        if action.kind != ActionKind.ERASE:
            continue
        holds = kept(action)
        if holds:
            grounds = dict.fromkeys(in_sentence(label_citing_its_law(ErasureException(hold["ground"]).label, request.regime)) for hold in holds)
            shortfalls.append(
                _("data kept in %(source)s under a legal hold, to which the right to erasure does not apply: %(grounds)s")
                % {"source": action.source.name, "grounds": _names(grounds)}
            )
        fields = _pseudonymised_fields(action)
        if fields:
            shortfalls.append(
                _("codes that can still be matched to the subject kept in %(source)s in place of %(fields)s")
                % {"source": action.source.name, "fields": _names(f"{slug}.{name}" for slug, name in fields)}
            )
    for export in request.exports.all():
        if export.released_at is not None:
            for item in export.manifest.get("sources_not_searched", []):
                shortfalls.append(
                    _("%(source)s not searched (%(reason)s)")
                    % {"source": item.get("name") or item["source"], "reason": not_searched_reason(item)}
                )
    not_stopped = CoveredPurpose.objects.filter(
        right__request=request, right__right__in=request.granted_rights, applied_at__isnull=True
    ).exclude(not_applied_reason="").select_related("purpose")
    for cover in not_stopped:
        shortfalls.append(_("the use of their data for %(purpose)s not stopped") % {"purpose": cover.purpose.name})
    return list(dict.fromkeys(shortfalls))  # a source not searched for two rights, or by a package too, once


def answered_in_part(request: PrivacyRequest) -> bool:
    """Whether the answer falls short of what was asked where the subject may want to challenge it: a right granted
    in part (not_granted_in_full), or a released package that found no data. The letter then states the right to
    complain, as for a refusal (Art. 12(4))."""
    if not_granted_in_full(request):
        return True
    return any(export.released_at is not None and export.manifest.get("rows") == 0 for export in request.exports.all())


def nothing_corrected(request: PrivacyRequest) -> bool:
    """Whether a rectification was asked, not refused, and no data was corrected: none entered (the data was
    accurate, say), none matched, or the source could not be searched. Not acting is a refusal, whose reasons
    the subject is owed (Art. 12(4)): completion waits until a correction is made or the right is refused
    (actions.completion_blockers). A request where some values were corrected and others not is explained
    by the DPO's letter alone. A correction that found nothing left where the request's erasure had erased the
    data is answered: the data to correct is gone, as the subject asked, and the letter says so.

    Reads `source_actions.all()`, so that actions.prefetch_for_completion serves it."""
    if RequestType.RECTIFICATION not in request.granted_rights:
        return False  # not asked, or refused: the letter gives the ground
    done = [action for action in request.source_actions.all() if action.status == ActionStatus.DONE]
    changed = [action for action in done if action.changed_anything() and not searched_nothing(action)]
    erased_in = {action.source_id for action in changed if action.kind == ActionKind.ERASE}
    return not any(
        action.kind == ActionKind.RECTIFY and (action in changed or action.source_id in erased_in) for action in done
    )


def searched_nothing(action) -> bool:
    """Whether an automated action's dry run had no verified identifier of the kind its source finds data by."""
    return not action.result.get("manual") and action.dry_run.get("identities") == 0


def done_without_searching(action) -> bool:
    """Whether an action is done but searched nothing (searched_nothing): it is finished, yet changed nothing of
    the subject's in its source, so it neither answers its right nor restricted, erased or corrected anything."""
    return action.status == ActionStatus.DONE and searched_nothing(action)


def status_label(action) -> str:
    """An action's status as staff and the certificate read it. One done without searching its source is
    finished, but changed nothing of the subject's there: its "0 rows" would read as a source searched that
    held nothing, which the letter does not claim either. One its request's closing left undone says it never
    will be (not_carried_out), not "Approved"."""
    if done_without_searching(action):
        return _("Done: not searched")
    return not_carried_out(action) or str(action.get_status_display())


# Why an action the request's closing left undone is never carried out, by the status it closed in.
_NOT_CARRIED_OUT = {
    Status.REJECTED: gettext_lazy("Not carried out: the request was rejected on %(day)s."),
    Status.WITHDRAWN: gettext_lazy("Not carried out: the request was withdrawn on %(day)s."),
    Status.FORWARDED: gettext_lazy("Not carried out: the request was forwarded to the controller on %(day)s."),
    Status.EXPIRED: gettext_lazy("Not carried out: the request expired on %(day)s."),
}


def not_carried_out(action) -> str:
    """Why the action will never be carried out, its request being closed, or "" when it was (or may still be).

    Once the request is closed, a dry run or an execution of an action that answers it never starts
    (actions.may_run_now): one planned, dry-run, approved or waiting for the system owner stays so for ever, and
    would read as work under way or about to be (an auditor reading "Approved" sees an erasure that never ran). A
    completed request leaves undone only the actions of the rights its completion refused (completion_blockers).

    Derived, not recorded at the closing as the Art. 19 notices are (queue_due_notices): a notice settles into
    what the finished actions changed, which only the closing can tell, whereas this follows from the closing
    alone, and holds too for a dry run that finishes after it, which no status written at the closing would cover.
    Left to read as they are: a lifting of a restriction (it goes on whatever the request's status), an execution
    still running (it ends done or failed: actions._finish) and one that stopped part-way, having changed rows
    (its failure stands, with what it changed)."""
    request = action.request
    if action.kind == ActionKind.LIFT_RESTRICTION or request.is_open or request.closed_at is None:
        return ""
    if action.status in (ActionStatus.DONE, ActionStatus.RUNNING, ActionStatus.CANCELLED) or action.changed_anything():
        return ""
    day = date_in_words(request.closed_at)
    if request.status == Status.COMPLETED:
        refused = {kind for right, kind in ACTION_FOR_RIGHT.items() if right in request.refused_rights}
        if action.kind not in refused:
            return ""
        return _("Not carried out: its right was refused when the request was completed on %(day)s.") % {"day": day}
    return str(_NOT_CARRIED_OUT[request.status]) % {"day": day}


def outcome_summary(request: PrivacyRequest) -> str:
    """What was erased, kept (and why, Art. 17(3)), rectified and restricted, what a data package found,
    which uses an objection, a consent withdrawal or a limit on use stopped, and which recipients were told
    or are being told (Art. 19), in the request's language, citing each provision as the law of the request's regime
    has it, or not at all where it has none (wording.CITATIONS, wording.label_citing_its_law). Empty when no source action was carried out and no package says more
    than its data.

    It claims only what the actions' results and the packages' manifests record: each line names the
    right it answers, a source where nothing matched, or that could not be searched, is said to be so,
    and a thing is said once."""
    done = list(
        request.source_actions.filter(status=ActionStatus.DONE).select_related("source").prefetch_related("source__categories")
    )
    paragraphs = []

    def say(paragraph: str) -> None:
        # A source that could not be searched is so for each of its actions, and for the package too.
        if paragraph not in paragraphs:
            paragraphs.append(paragraph)

    with translation.override(request.language):
        # An erasure that ran first leaves nothing for a correction or a restriction to find.
        erased_in = {action.source_id for action in done if action.kind == ActionKind.ERASE and action.changed_anything()}
        # Each provision cited as the subject's own law has it (wording.CITATIONS), or not at all where it has none.
        lift_notice_law = citation(request.regime, "restriction_lift_notice")
        # Telling the recipients is cited as the law has it for what they were told (recipients_told_citation): under
        # the CCPA, a deletion and a correction under provisions of their own, a limit on use under another.
        told_kinds = recipients_told_kinds(request, done)
        changed_kinds = [kind for kind in told_kinds if kind != "limit_use"]
        limit_told = "limit_use" in told_kinds
        changes_law = _recipients_law(request, changed_kinds)
        limit_law = recipients_told_citation(request.regime, ["limit_use"])
        recipients_law = _recipients_law(request, told_kinds)
        for action in done:
            for paragraph in _action_outcome(action, erased_before=action.source_id in erased_in):
                say(paragraph)
        if _restrictions_in_force(request, done):
            # Art. 18(3), under every regime (lifting.plan_lift writes first whatever the law): the subject is not left
            # to wonder whether the restriction may quietly end. Once, however many systems were restricted.
            if lift_notice_law:
                say(_to_whoever_filed(
                    request,
                    _("We will write to you before we lift a restriction of your data, telling you when and why (%(law)s)."),
                    _("We will write to you before we lift a restriction of the data of the person you are acting for, "
                      "telling you when and why (%(law)s)."),
                ) % {"law": lift_notice_law})
            else:
                say(_to_whoever_filed(
                    request,
                    _("We will write to you before we lift a restriction of your data, telling you when and why."),
                    _("We will write to you before we lift a restriction of the data of the person you are acting for, "
                      "telling you when and why."),
                ))
        for paragraph in _package_outcome(request):
            say(paragraph)
        for paragraph in _suppression_outcome(request):
            say(paragraph)
        notices = list(request.recipient_notices.select_related("recipient").prefetch_related("recipient__translations"))
        names = {notice.pk: notice.recipient.texts_in(request.language)["name"] for notice in notices}  # as the reader reads them
        recipients_by_status = (
            (
                NoticeStatus.SENT,
                _to_whoever_filed(
                    request,
                    _("We told the following recipients of your data about these changes (%(law)s): %(names)s."),
                    _("We told the following recipients of the data of the person you are acting for about these changes "
                      "(%(law)s): %(names)s."),
                ),
                _to_whoever_filed(
                    request,
                    _("We told the following recipients of your data about these changes: %(names)s."),
                    _("We told the following recipients of the data of the person you are acting for about these "
                      "changes: %(names)s."),
                ),
                _to_whoever_filed(
                    request,
                    _("We told the following recipients of your data of your request to limit the use and disclosure of "
                      "your sensitive personal information, and asked them to limit their own use of any of it we "
                      "disclosed to them since you made it, and to pass your request on (%(law)s): %(names)s."),
                    _("We told the following recipients of the data of the person you are acting for of the request to "
                      "limit the use and disclosure of their sensitive personal information, and asked them to limit "
                      "their own use of any of it we disclosed to them since the request, and to pass it on (%(law)s): "
                      "%(names)s."),
                ),
            ),
            # Still pending as the letter is written: a notice that waited only for a refused right's action, which
            # request_complete has just queued (completion waits for every other). It goes out after the letter.
            (
                NoticeStatus.PENDING,
                _to_whoever_filed(
                    request,
                    _("We are telling the following recipients of your data about these changes (%(law)s): %(names)s."),
                    _("We are telling the following recipients of the data of the person you are acting for about these "
                      "changes (%(law)s): %(names)s."),
                ),
                _to_whoever_filed(
                    request,
                    _("We are telling the following recipients of your data about these changes: %(names)s."),
                    _("We are telling the following recipients of the data of the person you are acting for about these "
                      "changes: %(names)s."),
                ),
                _to_whoever_filed(
                    request,
                    _("We are telling the following recipients of your data of your request to limit the use and "
                      "disclosure of your sensitive personal information, and asking them to limit their own use of any "
                      "of it we disclosed to them since you made it, and to pass your request on (%(law)s): %(names)s."),
                    _("We are telling the following recipients of the data of the person you are acting for of the "
                      "request to limit the use and disclosure of their sensitive personal information, and asking them "
                      "to limit their own use of any of it we disclosed to them since the request, and to pass it on "
                      "(%(law)s): %(names)s."),
                ),
            ),
        )
        for status, citing, elsewhere, limiting in recipients_by_status:
            recipients = [names[notice.pk] for notice in notices if notice.status == status]
            if recipients and (changed_kinds or not limit_told):
                say((citing if changes_law else elsewhere) % {"names": _names(recipients), "law": changes_law})
            if recipients and limit_told:
                # CCPA Regulations § 7027(g): the third parties told of the limit (notices.plan_limit_notices).
                say(limiting % {"names": _names(recipients), "law": limit_law})
        for notice in notices:
            if notice.status == NoticeStatus.WAIVED and notice.waiver_reason == WaiverReason.NEVER_DISCLOSED:
                # Not an Art. 19 exception: there was no disclosure to tell of, which the letter says as a fact.
                say(
                    _to_whoever_filed(
                        request,
                        _("We never disclosed your data to %(name)s, so there was nothing to tell it. %(note)s"),
                        _("We never disclosed the data of the person you are acting for to %(name)s, so there was nothing "
                          "to tell it. %(note)s"),
                    )
                    % {"name": names[notice.pk], "note": notice.waiver_note}
                )
            elif notice.status == NoticeStatus.WAIVED:
                say(
                    (
                        _("We did not tell %(name)s (%(law)s): %(reason)s. %(note)s")
                        if recipients_law
                        else _to_whoever_filed(
                            request,
                            _("We did not tell %(name)s, a recipient of your data, about these changes: %(reason)s. %(note)s"),
                            _("We did not tell %(name)s, a recipient of the data of the person you are acting for, about "
                              "these changes: %(reason)s. %(note)s"),
                        )
                    )
                    % {
                        "name": names[notice.pk],
                        "law": recipients_law,
                        "reason": in_sentence(notice.get_waiver_reason_display()),
                        "note": notice.waiver_note,
                    }
                )
    return "\n\n".join(paragraphs)


def categories_instead_of_pieces(request: PrivacyRequest) -> str:
    """What the letter refusing a CCPA request to know on an identity that could not be verified gives instead, in the
    subject's language: the request is then treated as one for the categories of personal information (CCPA Regulations
    § 7024(a)), so the letter says so, and gives the categories the inventory records of each active source, where they
    come from, why they are used and who receives them. As our general practice, never as what we hold of this person,
    which would itself disclose their data to someone we could not verify (categories too need an identity verified to
    a reasonable degree, § 7024(b), which nothing here records: the general practice is what (b) leaves them).
    Empty for any other request."""
    if request.regime != Regime.CCPA or RequestType.ACCESS not in request.requested_rights:
        return ""
    language = request.language
    sources = SourceSystem.objects.filter(active=True).prefetch_related(
        "categories", "translations", Prefetch("recipients", queryset=Recipient.objects.prefetch_related("translations"))
    )
    with translation.override(language):
        paragraphs = [
            _to_whoever_filed(
                request,
                _(
                    "As we could not verify your identity, we cannot give you specific pieces of personal information, so "
                    "we treated your request as one for the categories of personal information (Cal. Code Regs. tit. 11, "
                    "§ 7024(a)). Without verifying who you are, we cannot tell you which of them we hold about you: this "
                    "is what we collect about the people whose data we process, system by system."
                ),
                _(
                    "As we could not verify the identity of the person you are acting for, we cannot give you specific "
                    "pieces of their personal information, so we treated the request as one for the categories of "
                    "personal information (Cal. Code Regs. tit. 11, § 7024(a)). Without verifying who they are, we cannot "
                    "tell you which of them we hold about them: this is what we collect about the people whose data we "
                    "process, system by system."
                ),
            )
        ]
        for source in sources:
            texts = source.texts_in(language)
            words = {
                "source": texts["name"],
                "categories": _names(dict.fromkeys(in_sentence(DataCategory(c.category).label) for c in source.categories.all())),
                "origin": texts["origin"].strip().rstrip("."),
                "purposes": texts["purposes"].strip().rstrip("."),
                "recipients": _names(recipient.texts_in(language)["name"] for recipient in source.recipients.all()),
            }
            paragraphs.append(
                _("%(source)s: %(categories)s. Where it comes from: %(origin)s. Why we use it: %(purposes)s. "
                  "Who receives it: %(recipients)s.") % words
                if words["recipients"]
                else _("%(source)s: %(categories)s. Where it comes from: %(origin)s. Why we use it: %(purposes)s. "
                       "We disclose it to no one.") % words
            )
    return "\n\n".join(paragraphs)


def recipients_told_kinds(request: PrivacyRequest, done: list) -> list[str]:
    """What the request's recipients are told of (wording.recipients_told_citation): the kinds of the finished actions
    (`done`) that changed something in their source, and "limit_use" for a CCPA request to limit that was applied."""
    kinds = [
        kind for kind in ANSWERING_KINDS
        if any(action.kind == kind and action.changed_anything() and not searched_nothing(action) for action in done)
    ]
    return kinds + (["limit_use"] if limit_applied(request).exists() else [])


def _recipients_law(request: PrivacyRequest, kinds: list[str]) -> str:
    """What is cited for telling the recipients of `kinds`; with none (every notice waived, say), the regime's general
    provision for it."""
    return recipients_told_citation(request.regime, kinds) if kinds else citation(request.regime, "recipients_told")


def _restrictions_in_force(request: PrivacyRequest, done: list) -> bool:
    """Whether the request's finished actions restricted data in a source (a restriction that found nothing, or could
    not search its source, restricted nothing) whose lifting is not planned yet: the subject, told of a lifting
    planned already by its own letter, is told beforehand of the others'."""
    restricted = {
        action.source_id for action in done
        if action.kind == ActionKind.RESTRICT and action.changed_anything() and not searched_nothing(action)
    }
    if not restricted:
        return False
    lifting = request.source_actions.filter(kind=ActionKind.LIFT_RESTRICTION).exclude(status=ActionStatus.CANCELLED)
    return bool(restricted - set(lifting.values_list("source_id", flat=True)))


def _suppression_outcome(request: PrivacyRequest) -> list[str]:
    """What an objection, a consent withdrawal or a limit on use stopped: for each right asked and not refused, the
    purposes whose suppression lists staff put the subject on for it (CoveredPurpose), with the consequence the law
    says the subject must be told of a consent withdrawn (Art. 7(3)); then each purpose it covers that could not be
    stopped, and why, so that the letter never reads as granting in full what was done in part."""
    objection_law = citation(request.regime, "objection")
    consent_law = citation(request.regime, "consent_withdrawal")
    if objection_law:
        objection = _to_whoever_filed(
            request,
            _("Following your objection (%(law)s), we no longer use your data for: %(purposes)s."),
            _("Following the objection of the person you are acting for (%(law)s), we no longer use their data for: "
              "%(purposes)s."),
        )
    else:
        objection = _to_whoever_filed(
            request,
            _("Following your objection, we no longer use your data for: %(purposes)s."),
            _("Following the objection of the person you are acting for, we no longer use their data for: %(purposes)s."),
        )
    if consent_law:
        consent_withdrawn = _to_whoever_filed(
            request,
            _(
                "Following the withdrawal of your consent (%(law)s), we no longer use your data for: %(purposes)s. "
                "What we did with your consent before you withdrew it remains lawful."
            ),
            _(
                "Following the withdrawal of the consent of the person you are acting for (%(law)s), we no longer use "
                "their data for: %(purposes)s. What we did with their consent before it was withdrawn remains lawful."
            ),
        )
    else:
        consent_withdrawn = _to_whoever_filed(
            request,
            _(
                "Following the withdrawal of your consent, we no longer use your data for: %(purposes)s. "
                "What we did with your consent before you withdrew it remains lawful."
            ),
            _(
                "Following the withdrawal of the consent of the person you are acting for, we no longer use their data "
                "for: %(purposes)s. What we did with their consent before it was withdrawn remains lawful."
            ),
        )
    law_for = {RequestType.OBJECTION: objection_law, RequestType.WITHDRAW_CONSENT: consent_law}
    lines = {
        RequestType.OBJECTION: objection,
        RequestType.WITHDRAW_CONSENT: consent_withdrawn,
        RequestType.LIMIT_USE: _to_whoever_filed(
            request,
            _("As you asked, we limited the use and disclosure of your data, and no longer use it for: %(purposes)s."),
            _("As you asked, we limited the use and disclosure of the data of the person you are acting for, and no "
              "longer use it for: %(purposes)s."),
        ),
    }
    granted = set(request.granted_rights)
    paragraphs = []
    for asked in request.rights.filter(right__in=granted).prefetch_related(
        Prefetch("covered_purposes", queryset=CoveredPurpose.objects.select_related("purpose").prefetch_related("purpose__translations"))
    ):
        covers = list(asked.covered_purposes.all())
        names = {cover.pk: cover.purpose.texts_in(request.language)["name"] for cover in covers}  # as the reader reads them
        applied = [names[cover.pk] for cover in covers if cover.applied_at is not None]
        if applied and asked.right in lines:
            paragraphs.append(lines[asked.right] % {"purposes": _names(applied), "law": law_for.get(asked.right, "")})
        for cover in covers:
            if cover.applied_at is None and cover.not_applied_reason:
                paragraphs.append(
                    _to_whoever_filed(
                        request,
                        _("We could not stop using your data for %(purpose)s, as you asked. The reason: %(reason)s"),
                        _("For %(purpose)s, we could not stop using the data of the person you are acting for, as you "
                          "asked. The reason: %(reason)s"),
                    )
                    % {"purpose": names[cover.pk], "reason": with_full_stop(cover.not_applied_reason)}
                )
    return paragraphs


def _kept_line(hold: dict, source: str, regime: str) -> str:
    """What an erasure kept under one legal hold, why, and until when."""
    words = {
        **hold,
        "category": in_sentence(hold["category"]),  # inside the sentence: "We kept electronic communications data"
        "basis": hold["basis"].rstrip(". "),  # the sentence adds its own full stop
        # It cites its article itself, "… (Art. 17(3)(b) GDPR)", under the GDPR only (label_citing_its_law).
        "ground": in_sentence(label_citing_its_law(hold["ground"], regime)),
        "source": source,
        "until": date_in_words(date.fromisoformat(hold["until"])),
    }
    if hold["kept_from"]:
        return _(
            "We kept %(category)s dated %(kept_from)s or later in %(source)s, because: %(basis)s. The right to "
            "erasure does not apply to this data: %(ground)s. We will keep it until %(until)s at the latest."
        ) % {**words, "kept_from": date_in_words(date.fromisoformat(hold["kept_from"]))}
    return _(
        "We kept %(category)s in %(source)s, because: %(basis)s. The right to erasure does not apply "
        "to this data: %(ground)s. We will keep it until %(until)s at the latest."
    ) % words


def _codes_kept_line(hold: dict, action, source: str) -> str:
    """Why an erasure kept the codes it wrote in place of fields of one category, and until when."""
    words = {
        "fields": _field_names(action, [(hold["category"], name) for name in hold["fields"]]),
        "basis": (hold.get("basis_translations", {}).get(action.request.language) or hold["basis"]).rstrip(". "),
        "ground": in_sentence(label_citing_its_law(str(ErasureException(hold["ground"]).label), action.request.regime)),
        "source": source,
        "until": date_in_words(date.fromisoformat(hold["until"])),
    }
    return _(
        "We kept the codes that replaced %(fields)s in %(source)s, because: %(basis)s. The right to erasure does not "
        "apply to this data: %(ground)s. We will keep them until %(until)s at the latest."
    ) % words


def _changed_label(slug: str, labels: dict[str, str], action) -> str:
    """A category the action changed, as the letter names it: with its limit where an erasure took only
    the records older than a rolling legal hold keeps (the next line says those were kept)."""
    label = in_sentence(labels.get(slug, slug))
    only_before = only_records_before(action).get(slug)
    if only_before is None:
        return label
    day = date_in_words(date.fromisoformat(only_before["date"]))
    return _("%(category)s dated before %(day)s") % {"category": label, "day": day}


def _action_outcome(action, *, erased_before: bool) -> list[str]:
    """What one finished action did, in a line naming its right (and the data it kept, for an erasure)."""
    request = action.request
    source = action.source.texts_in(request.language)["name"]  # the letter's reader's name for it
    labels = _category_labels(action.source)
    if searched_nothing(action):
        # A source that could not be searched kept nothing of theirs that we know of.
        return [_could_not_search(request, source, action.source.identity_kind)]
    if action.kind == ActionKind.LIFT_RESTRICTION:
        # The subject was told before (Art. 18(3)); a lifting that found nothing set is not one.
        if not action.changed_anything():
            return []
        return [_to_whoever_filed(
            request,
            _("We lifted the restriction of the processing of your data in %(source)s, as we told you beforehand."),
            _("We lifted the restriction of the processing of the data of the person you are acting for in %(source)s, as "
              "we told you beforehand."),
        ) % {"source": source}]
    # The codes an erasure kept are said with what it erased (_codes_kept_line), not as a category kept.
    held = [hold for hold in _held(action, labels) if not hold["codes"]] if action.kind == ActionKind.ERASE else []
    # A letter names a category by its kind of data: two of a source's categories of one kind (the calls a subject
    # made and those they received) read alike, and are said once.
    kept_lines = list(dict.fromkeys(_kept_line(hold, source, action.request.regime) for hold in held))
    if action.changed_anything():
        changed = _names(dict.fromkeys(_changed_label(slug, labels, action) for slug in action.changed_categories()))
        pseudonymised = []
        if action.kind == ActionKind.ERASE:
            fields = _pseudonymised_fields(action)
            if fields:
                # A keyed hash is a pseudonym, not erasure (GDPR Recital 26): we could still match it to them. The
                # sentence that says what was erased says what was not, and the next lines why it was kept.
                done = _to_whoever_filed(
                    request,
                    _(
                        "We erased your data in %(source)s: %(categories)s, except %(fields)s, which we replaced with "
                        "codes that we can still match to you: they remain your personal data."
                    ),
                    _(
                        "We erased the data of the person you are acting for in %(source)s: %(categories)s, except "
                        "%(fields)s, which we replaced with codes that we can still match to them: they remain their "
                        "personal data."
                    ),
                ) % {"source": source, "categories": changed, "fields": _field_names(action, fields)}
            elif changed:
                done = _to_whoever_filed(
                    request,
                    _("We erased your data in %(source)s: %(categories)s."),
                    _("We erased the data of the person you are acting for in %(source)s: %(categories)s."),
                ) % {"source": source, "categories": changed}
            else:
                # A manual source reports rows, not categories.
                done = _to_whoever_filed(
                    request,
                    _("We erased your data in %(source)s."),
                    _("We erased the data of the person you are acting for in %(source)s."),
                ) % {"source": source}
            pseudonymised = list(dict.fromkeys(_codes_kept_line(hold, action, source) for hold in codes_kept(action)))
            pseudonymised += _left_as_they_were(action, source, {slug for slug, _name in fields})
        elif action.kind == ActionKind.RECTIFY:
            fields = _field_names(action, [(change["category"], change["field"]) for change in corrected_values(action)])
            done = _("We corrected the following in %(source)s: %(fields)s.") % {"source": source, "fields": fields}
        else:
            done = _to_whoever_filed(
                request,
                _("We restricted the processing of your data in %(source)s."),
                _("We restricted the processing of the data of the person you are acting for in %(source)s."),
            ) % {"source": source}
        return [done, *pseudonymised, *kept_lines]
    if action.kind == ActionKind.ERASE:
        # What was kept is said with its reason; with nothing kept, nothing was found.
        return kept_lines or [_to_whoever_filed(
            request,
            _("We found no data of yours to erase in %(source)s."),
            _("We found no data of the person you are acting for to erase in %(source)s."),
        ) % {"source": source}]
    if action.kind == ActionKind.RECTIFY:
        if any(counts.get("rows") for counts in action.result.get("categories", [])):
            return [_to_whoever_filed(
                request,
                _("Your data in %(source)s already held the values you asked for: nothing needed correcting."),
                _("The data of the person you are acting for in %(source)s already held the values you asked for: "
                  "nothing needed correcting."),
            ) % {"source": source}]
        if erased_before:
            return [_to_whoever_filed(
                request,
                _("There was nothing left to correct in %(source)s: we had erased your data there."),
                _("There was nothing left to correct in %(source)s: we had erased the data of the person you are acting "
                  "for there."),
            ) % {"source": source}]
        return [_to_whoever_filed(
            request,
            _("We found no data of yours to correct in %(source)s."),
            _("We found no data of the person you are acting for to correct in %(source)s."),
        ) % {"source": source}]
    if erased_before:
        return [_to_whoever_filed(
            request,
            _("There was nothing left to restrict in %(source)s: we had erased your data there."),
            _("There was nothing left to restrict in %(source)s: we had erased the data of the person you are acting for "
              "there."),
        ) % {"source": source}]
    return [_to_whoever_filed(
        request,
        _("We found no data of yours to restrict in %(source)s."),
        _("We found no data of the person you are acting for to restrict in %(source)s."),
    ) % {"source": source}]


def changes_made(request: PrivacyRequest) -> list[str]:
    """What the request's finished actions changed in the source systems, a line each, as the letter says it:
    what a withdrawal does not undo."""
    done = request.source_actions.filter(status=ActionStatus.DONE).select_related("source", "request").order_by("id")
    return [_action_outcome(action, erased_before=False)[0] for action in done if action.changed_anything()]


def _left_as_they_were(action, source: str, with_codes: set[str]) -> list[str]:
    """The fields an erasure left as they were in the rows it anonymised (the inventory's "keep"), so that the subject
    who finds the record still there knows what is in it: not in a category where it kept codes, which still identify
    them (the line before says so).

    Not "this no longer identifies you": whether it does is the DPO's judgement of each field, which nothing checks
    but that the column the source is searched by is never kept (SourceField.clean). The subject is told where to
    say it still does: the request is closed by then, its status page takes no message."""
    left = [
        (slug, name)
        for slug, names in action.dry_run.get("kept_fields", {}).items()
        if slug in action.changed_categories() and slug not in with_codes
        for name in names
    ]
    if not left:
        return []
    return [_to_whoever_filed(
        action.request,
        _("In %(source)s, we kept %(fields)s, and erased the other details about you there. If you believe that what we "
          "kept still identifies you, write to our data protection officer at %(address)s, quoting the reference "
          "%(reference)s."),
        _("In %(source)s, we kept %(fields)s, and erased the other details about the person you are acting for there. "
          "If you or they believe that what we kept still identifies them, write to our data protection officer at "
          "%(address)s, quoting the reference %(reference)s."),
    ) % {
        "source": source, "fields": _field_names(action, left), "address": settings.DPO_CONTACT_EMAIL,
        "reference": action.request.reference,
    }]


def _pseudonymised_fields(action) -> list[tuple[str, str]]:
    """The (category slug, field name) an erasure replaced with a keyed hash in the categories it changed,
    as its dry run planned them: the execution ran that plan, whatever the inventory says today."""
    planned = action.dry_run.get("pseudonymised", {})
    return [(slug, name) for slug in action.changed_categories() for name in planned.get(slug, [])]


def _could_not_search(request: PrivacyRequest, source_name: str, identity_kind: str) -> str:
    return _to_whoever_filed(
        request,
        _("We could not search %(source)s: it finds data by %(kind)s, and we hold no verified one of yours."),
        _("We could not search %(source)s: it finds data by %(kind)s, and we hold none verified for the person you are "
          "acting for."),
    ) % {"source": source_name, "kind": in_sentence(IdentityKind(identity_kind).label)}


def _package_outcome(request: PrivacyRequest) -> list[str]:
    """What the data packages released to the subject found, as their manifests record it (the latest
    of each kind), and where the subject gets them: that one found no data (of a portability package that
    left data out, none that the right covers), or, where it found some, the systems it found none in (as its
    report lists them); the sources it could not search, and why; then whether it is on their status page,
    until when and for how many more downloads, or no longer is. Completion waits for the package of each
    access or portability right granted (actions.completion_blockers): the letter of such a right always
    says this, whatever the ready email said."""
    latest = {}
    for export in request.exports.filter(released_at__isnull=False).order_by("released_at"):
        latest[export.kind] = export
    paragraphs = []
    for export in latest.values():
        manifest = export.manifest
        if manifest.get("rows") == 0 and export.kind == ExportKind.PORTABILITY and manifest.get("categories_left_out"):
            # What the package left out was not read: the subject gave or produced some of it, maybe (its report).
            paragraphs.append(_(
                "We found no data that the right to data portability covers in the systems we searched; the package "
                "lists the data that right does not cover, which we did not read for it."
            ))
        elif manifest.get("rows") == 0 and export.kind == ExportKind.PORTABILITY:
            # Portability covers only what they gave us or their use produced (Art. 20), not all data.
            paragraphs.append(_to_whoever_filed(
                request,
                _("We found no data that you gave us or that your use of our services produced in the systems we searched."),
                _("We found no data that the person you are acting for gave us or that their use of our services "
                  "produced in the systems we searched."),
            ))
        elif manifest.get("rows") == 0:
            paragraphs.append(_to_whoever_filed(
                request,
                _("We found no personal data about you in the systems we searched."),
                _("We found no personal data about the person you are acting for in the systems we searched."),
            ))
        else:
            paragraphs.extend(_package_delivery(request, export))
            paragraphs.extend(_sources_found_empty(request, export))
        for item in manifest.get("sources_not_searched", []):
            name = item.get("name") or item["source"]
            if item.get("reason") == NO_VERIFIED_IDENTIFIER:
                paragraphs.append(_could_not_search(request, name, item["kind"]))
            else:
                paragraphs.append(_("We could not search %(source)s: %(reason)s.") % {"source": name, "reason": not_searched_reason(item)})
        if manifest.get("rows") == 0:
            paragraphs.extend(_package_delivery(request, export))  # after what it found: "our answer" is that
    return paragraphs


def _package_delivery(request: PrivacyRequest, export) -> list[str]:
    """Where the subject gets a released package, as it stands when the letter is written: on their status page
    until its expiry, with the downloads they have left; or that it can no longer be downloaded, and why. A package
    that found nothing is our answer (with the systems searched), not "your data". Nothing for a subject with no
    email address (a request recorded from a letter): they have no status page, and staff deliver it otherwise."""
    if not request.correspondence_email:
        return []
    words = {"expires": date_in_words(export.expires_at, "DATETIME_FORMAT"), "count": export.downloads_left}
    # Used up first: the hourly clean-up marks a package used up as expired too (exports.delete_expired_exports).
    if not export.downloads_left:
        return [_(
            "The data package we made available on your request's status page can no longer be downloaded: you have "
            "used all its downloads."
        )]
    if export.status == ExportStatus.EXPIRED or export.expires_at <= timezone.now():
        return [_(
            "The data package we made available on your request's status page could be downloaded until %(expires)s: "
            "it has expired."
        ) % words]
    if export.found_nothing:
        return [ngettext(
            "Our answer, with the list of the systems we searched, is on your request's status page: you can download "
            "it until %(expires)s (%(count)s download left).",
            "Our answer, with the list of the systems we searched, is on your request's status page: you can download "
            "it until %(expires)s (%(count)s downloads left).",
            words["count"],
        ) % words]
    if export.kind == ExportKind.PORTABILITY:
        return [_to_whoever_filed(
            request,
            ngettext(
                "The data you gave us or that your use of our services produced is ready on your request's status page, "
                "in structured, machine-readable formats: you can download it until %(expires)s (%(count)s download left).",
                "The data you gave us or that your use of our services produced is ready on your request's status page, "
                "in structured, machine-readable formats: you can download it until %(expires)s (%(count)s downloads left).",
                words["count"],
            ),
            ngettext(
                "The data that the person you are acting for gave us or that their use of our services produced is ready "
                "on your request's status page, in structured, machine-readable formats: you can download it until "
                "%(expires)s (%(count)s download left).",
                "The data that the person you are acting for gave us or that their use of our services produced is ready "
                "on your request's status page, in structured, machine-readable formats: you can download it until "
                "%(expires)s (%(count)s downloads left).",
                words["count"],
            ),
        ) % words]
    return [_to_whoever_filed(
        request,
        ngettext(
            "Your copy of your data is ready on your request's status page: you can download it until %(expires)s "
            "(%(count)s download left).",
            "Your copy of your data is ready on your request's status page: you can download it until %(expires)s "
            "(%(count)s downloads left).",
            words["count"],
        ),
        ngettext(
            "The copy of the data of the person you are acting for is ready on your request's status page: you can "
            "download it until %(expires)s (%(count)s download left).",
            "The copy of the data of the person you are acting for is ready on your request's status page: you can "
            "download it until %(expires)s (%(count)s downloads left).",
            words["count"],
        ),
    ) % words]


def _sources_found_empty(request: PrivacyRequest, export) -> list[str]:
    """The systems a package that found data searched and found none in, as its report lists them: those whose every
    data file holds no row, less those it could not search and, of a portability package, those it left data out
    of (never said to hold none of the subject's data: what was left out was not read)."""
    manifest = export.manifest
    rows_by_source = {}
    for entry in manifest.get("files", []):
        slug = source_of_data_file(entry["path"])
        if slug:
            rows_by_source[slug] = rows_by_source.get(slug, 0) + (entry.get("rows") or 0)
    not_read = {item["source"] for item in manifest.get("sources_not_searched", []) + manifest.get("categories_left_out", [])}
    empty = sorted(slug for slug, rows in rows_by_source.items() if not rows and slug not in not_read)
    if not empty:
        return []
    sources = {source.slug: source for source in SourceSystem.objects.filter(slug__in=empty).prefetch_related("translations")}
    # As the subject reads them; a source since removed from the inventory by its slug, the only name left.
    names = _names(sources[slug].texts_in(request.language)["name"] if slug in sources else slug for slug in empty)
    if export.kind == ExportKind.PORTABILITY:
        return [_to_whoever_filed(
            request,
            _("We found no data that you gave us or that your use of our services produced in these systems: %(sources)s."),
            _("We found no data that the person you are acting for gave us or that their use of our services produced in "
              "these systems: %(sources)s."),
        ) % {"sources": names}]
    return [_to_whoever_filed(
        request,
        _("We found no personal data about you in these systems: %(sources)s."),
        _("We found no personal data about the person you are acting for in these systems: %(sources)s."),
    ) % {"sources": names}]
