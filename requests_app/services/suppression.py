"""Suppression lists: identifiers that must no longer be used for a purpose.

An objection (GDPR Art. 21), a consent withdrawal (Art. 7(3)) or a CCPA
request to limit use and disclosure is honoured for the future by putting the
subject's verified identifiers on the list of each purpose concerned (e.g.
marketing emails). A CCPA request to limit the use of sensitive personal
information uses every identifier the consumer gave, verified or not: it is not
a verifiable consumer request (CCPA Regulations § 7027(e)). The systems that run the purpose read the list (CSV from
the dashboard, or the API: api/suppression.py) or look identifiers up.

The subject names what they object to, or withdraw consent for, in their own
words, which no rule can match to the lists: staff choose the lists each right
covers, and those are recorded (CoveredPurpose) even when one cannot be applied
yet. The request completes only once each is applied, or staff recorded why it
cannot be, which the letter then tells the subject.

Entries outlive the request: purging a request's personal data keeps them,
since forgetting them would let the processing start again.
"""

import csv
from collections.abc import Iterable, Iterator

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from requests_app import roles
from requests_app.audit import Actor, record_event
from requests_app.lifecycle import VERIFIED_OPEN, RequestError
from requests_app.models import (
    CoveredPurpose,
    PrivacyRequest,
    RequestedRight,
    RequestType,
    SuppressionEntry,
    SuppressionPurpose,
    is_ccpa_limit_request,
    normalised_identifier,
)
from requests_app.services import notices
from requests_app.services.webhooks import api_datetime
from requests_app.spreadsheets import spreadsheet_safe
from requests_app.wording import cites_gdpr_articles, in_sentence

# The rights honoured by a suppression, in the order that picks an entry's `right`.
SUPPRESSION_RIGHTS = (RequestType.OBJECTION, RequestType.WITHDRAW_CONSENT, RequestType.LIMIT_USE)

CSV_HEADER = ["kind", "value", "right", "added_at"]

# A colleague removed the list from what the right covers (uncover) since the page was loaded: the click that
# comes after is answered with this, on the page, not with an error.
COVER_REMOVED = gettext_lazy("This list is no longer among the lists this right covers: it was removed since you loaded the page.")


def suppression_right(request: PrivacyRequest) -> str | None:
    """The first of SUPPRESSION_RIGHTS the request asks for, or None."""
    asked = set(request.requested_rights)
    return next((right for right in SUPPRESSION_RIGHTS if right in asked), None)


def must_be_applied(asked: RequestedRight) -> bool:
    """Whether the right must be applied to every list it covers, with no reason for leaving one out: an objection
    to direct marketing, after which the data shall no longer be used for it (Art. 21(3) knows no exception)."""
    return asked.right == RequestType.OBJECTION and asked.direct_marketing


def verified_only(asked: RequestedRight) -> bool:
    """Whether only the subject's verified identifiers may put them on a list for `asked`: for every right but a CCPA
    request to limit the use of sensitive personal information, for which "A business shall not require a verifiable
    consumer request" (CCPA Regulations § 7027(e)): the identifiers the consumer gave are used as given."""
    return not is_ccpa_limit_request(asked)


def usable_kinds(request: PrivacyRequest, asked: RequestedRight) -> set[str]:
    """The kinds of identifier that may put the subject on a list for `asked`, one of the request's rights
    (verified_only): verified by a method that proves them, as the source systems are searched (a phone number
    verified by an identity document may be someone else's, whom a list would then stop contacting). Reads request.identities.all(): prefetch it for many."""
    check = verified_only(asked)
    return {identity.kind for identity in request.identities.all() if identity.is_searchable or not check}


def missing_identifier(
    purpose: SuppressionPurpose, kinds_usable: set[str], *, regime: str, reason_allowed: bool = True,
    verification_needed: bool = True,
) -> str | None:
    """Why the subject cannot be put on the purpose's list with the identifiers usable (`kinds_usable`: usable_kinds),
    and what to do about it; None when they can. On the list, they would still be reached otherwise: the purpose's
    systems know them by something else. `reason_allowed` is False for a list that must be applied (must_be_applied):
    staff are then not offered to record why it cannot be. `verification_needed` is False for a right applied with
    unverified identifiers (verified_only): staff are then not asked to verify one. The GDPR's article is cited only
    where the request's `regime` numbers it so (wording.cites_gdpr_articles)."""
    if any(purpose.uses(kind) for kind in kinds_usable):
        return None
    # None ticked: its systems look people up by any kind, and the request has no identifier usable at all.
    names = {"purpose": purpose.name, "kinds": ", ".join(in_sentence(label) for label in purpose.identity_kind_labels)}
    if not verification_needed:
        # Only a CCPA request to limit, which no reason is refused for leaving a list out (must_be_applied).
        if purpose.identity_kinds:
            why = _("%(purpose)s looks people up by %(kinds)s, and the subject gave no identifier of that kind.") % names
        else:
            why = _("The subject gave no identifier, and %(purpose)s needs one of any kind.") % names
        todo = _(
            "Ask the subject for one and add them to the list again, or record why it cannot be applied. A request to "
            "limit the use of sensitive personal information under the CCPA needs no verification (CCPA Regulations § 7027(e))."
        )
        return f"{why} {todo}"
    if purpose.identity_kinds:
        why = _("%(purpose)s looks people up by %(kinds)s, and no identifier of that kind is verified for this request.") % names
    else:
        why = _("No identifier of this request is verified, and %(purpose)s needs one of any kind.") % names
    if reason_allowed:
        todo = _("Verify one (ask the subject for it if they gave none) and add them to the list again, or record why it cannot be applied.")
    elif cites_gdpr_articles(regime):
        todo = _(
            "Verify one (ask the subject for it if they gave none) and add them to the list again, or remove the list if "
            "the subject did not ask for it: an objection to direct marketing cannot be left unapplied (Art. 21(3))."
        )
    else:
        todo = _(
            "Verify one (ask the subject for it if they gave none) and add them to the list again, or remove the list if "
            "the subject did not ask for it: an objection to direct marketing cannot be left unapplied."
        )
    return f"{why} {todo}"


def _locked_open(request: PrivacyRequest) -> PrivacyRequest:
    locked = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
    if locked.status not in VERIFIED_OPEN:
        raise RequestError(_("Only an open, verified request can be acted on."))
    return locked


def _asked_right(request: PrivacyRequest, right: str) -> RequestedRight:
    if suppression_right(request) is None:
        raise RequestError(_("This request asks for no objection, consent withdrawal or limit on use."))
    asked = request.rights.filter(right=right).first()
    if asked is None or right not in SUPPRESSION_RIGHTS:
        raise RequestError(_("This request does not ask for %(right)s.") % {"right": right})
    return asked


def suppress(*, request: PrivacyRequest, actor: Actor, right: str, purposes: Iterable[SuppressionPurpose]) -> dict[str, int]:
    """Record that the request's `right` (an objection, a consent withdrawal or a limit on use it asks for) covers
    each of `purposes`, as staff read the subject's words, and put the request's verified identifiers on the list
    of each purpose one of them can be used for; for a CCPA request to limit, every identifier the consumer gave,
    verified or not (verified_only).

    Allowed for an open, verified request. Unverified identifiers are left out (but for that CCPA request), and so
    are those of a kind the purpose's systems do not look people up by. A purpose left with none is covered but not
    applied: completion waits for it (actions.completion_blockers) until an identifier of its kind is verified (or,
    for that CCPA request, given) and this is done again, or staff record why it cannot be applied
    (record_not_applied); the others are applied meanwhile. Idempotent: an
    identifier already on a list (from this request or an earlier one) stays as it is. Returns the number of
    entries added per purpose applied; writes a "suppression_added" event (the right, slugs and counts, and the
    slugs not applied; never the identifiers).
    """
    roles.require_can_work(actor, request)
    purposes = list(purposes)
    if not purposes:
        raise RequestError(_("Choose at least one suppression list."))
    with transaction.atomic():
        locked = _locked_open(request)
        asked = _asked_right(locked, right)
        usable = locked.identities.searchable() if verified_only(asked) else locked.identities.all()
        identities = {(kind, normalised_identifier(kind, value)) for kind, value in usable.values_list("kind", "value")}
        kinds_usable = {kind for kind, _value in identities}
        added, not_applied = {}, []
        for purpose in purposes:
            covered, _created = CoveredPurpose.objects.get_or_create(right=asked, purpose=purpose)
            if missing_identifier(purpose, kinds_usable, regime=locked.regime):
                not_applied.append(purpose.slug)
                continue
            added[purpose.slug] = 0
            for kind, value in sorted(identities):
                if not purpose.uses(kind):
                    continue  # data minimisation: the list holds only what its systems look up
                # get_or_create, not bulk_create(ignore_conflicts=True): it tells what was new,
                # and a request has a handful of identifiers.
                _entry, created = SuppressionEntry.objects.get_or_create(
                    purpose=purpose, kind=kind, value=value, defaults={"right": right, "request": locked}
                )
                added[purpose.slug] += created
            # Applied even when every identifier was on the list already (an earlier request put it there):
            # this request's objection is honoured all the same.
            covered.applied_at, covered.not_applied_reason = timezone.now(), ""
            covered.save(update_fields=["applied_at", "not_applied_reason"])
        if added and is_ccpa_limit_request(asked):
            # Complying with a CCPA request to limit includes telling the third parties (CCPA Regulations § 7027(g)).
            notices.plan_limit_notices(locked)
        record_event(
            locked,
            "suppression_added",
            actor=actor,
            data={
                "right": right,
                "purposes": [{"purpose": slug, "added": count} for slug, count in added.items()],
                "not_applied": not_applied,
            },
        )
    return added


def _locked_unapplied(request: PrivacyRequest, covered: CoveredPurpose) -> tuple[PrivacyRequest, CoveredPurpose]:
    """The open request and its cover, both locked; refused once the subject is on the list (entries outlive
    requests: an applied cover is answered for good), or once the cover is gone."""
    locked = _locked_open(request)
    covered = (
        CoveredPurpose.objects.select_for_update().select_related("right", "purpose").filter(pk=covered.pk, right__request=locked).first()
    )
    if covered is None:  # removed since the caller read it: a colleague's uncover, which this lock waited for
        raise RequestError(str(COVER_REMOVED))
    if covered.applied_at is not None:
        raise RequestError(_("The subject is on the %(purpose)s list already.") % {"purpose": covered.purpose.name})
    return locked, covered


def record_not_applied(*, request: PrivacyRequest, actor: Actor, covered: CoveredPurpose, reason: str) -> CoveredPurpose:
    """Record why a purpose a right covers cannot be applied (the subject has no identifier its systems know, say):
    the request may then be completed, and its letter tells the subject that this use was not stopped, and why,
    with their right to complain. Allowed for an open, verified request, for a purpose not applied, unless the right
    must be applied to it (must_be_applied); recording again replaces the reason. Writes a "suppression_not_applied"
    event (the right and slug, never the reason)."""
    roles.require_can_work(actor, request)
    with transaction.atomic():
        locked, covered = _locked_unapplied(request, covered)
        if must_be_applied(covered.right):
            unapplied = (
                _("An objection to direct marketing cannot be left unapplied (Art. 21(3)): verify an identifier of the kind "
                  "the %(purpose)s list uses (ask the subject for it if they gave none) and add them to it, or remove the list "
                  "if the subject did not ask for it.")
                if cites_gdpr_articles(locked.regime)
                else _("An objection to direct marketing cannot be left unapplied: verify an identifier of the kind "
                       "the %(purpose)s list uses (ask the subject for it if they gave none) and add them to it, or remove "
                       "the list if the subject did not ask for it.")
            )
            raise RequestError(unapplied % {"purpose": covered.purpose.name})
        if not reason.strip():
            raise RequestError(_("Say why the subject cannot be put on this list: the letter tells them."))
        covered.not_applied_reason = reason.strip()
        covered.save(update_fields=["not_applied_reason"])
        record_event(
            locked, "suppression_not_applied", actor=actor, data={"right": covered.right.right, "purpose": covered.purpose.slug}
        )
    return covered


def uncover(*, request: PrivacyRequest, actor: Actor, covered: CoveredPurpose) -> None:
    """Staff read the subject's words again: the right does not cover this purpose after all. Allowed for an open,
    verified request, for a purpose not applied (the subject, on the list, stays there: entries outlive requests).
    Writes a "suppression_uncovered" event."""
    roles.require_can_work(actor, request)
    with transaction.atomic():
        locked, covered = _locked_unapplied(request, covered)
        covered.delete()
        record_event(locked, "suppression_uncovered", actor=actor, data={"right": covered.right.right, "purpose": covered.purpose.slug})


class Echo:
    """A pseudo-file whose write returns the text, so each CSV row can be streamed as it is made."""

    def write(self, text: str) -> str:
        return text


def entries_csv(entries, out, *, for_spreadsheet: bool = False) -> Iterator:
    """Write suppression entries (a queryset: one purpose's list, maybe filtered) to `out` as
    CSV (kind,value,right,added_at), oldest first. added_at is written as the API writes it in the JSON list
    (api_datetime: TIME_ZONE with its offset, always six digits of microseconds): isoformat() left the fraction
    out when it was zero, so a reader parsing one fixed format failed on those rows, and the same entry read
    differently in the JSON and the CSV.

    A generator yielding what each write returns: with `Echo` as `out` it
    yields the rows for a StreamingHttpResponse; with a file, exhaust it. The
    rows are read with iterator(), so a list of millions is never in memory.
    """
    writer = csv.writer(out)
    yield writer.writerow(CSV_HEADER)
    rows = entries.order_by("created_at", "id").values_list("kind", "value", "right", "created_at")
    for kind, value, right, created_at in rows.iterator(chunk_size=2000):
        yield writer.writerow([kind, spreadsheet_safe(value) if for_spreadsheet else value, right, api_datetime(created_at)])


def suppressed(purpose: SuppressionPurpose, identifiers: list[tuple[str, str]]) -> list[bool]:
    """For each (kind, value), however it was typed, whether it is on the purpose's list; one query."""
    wanted = [(kind, normalised_identifier(kind, value)) for kind, value in identifiers]
    found = SuppressionEntry.objects.filter(purpose=purpose, value__in={value for _kind, value in wanted})
    listed = set(found.values_list("kind", "value"))
    return [pair in listed for pair in wanted]
