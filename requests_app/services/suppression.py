"""Suppression lists: identifiers that must no longer be used for a purpose.

An objection (GDPR Art. 21), a consent withdrawal (Art. 7(3)) or a CCPA
request to limit use and disclosure is honoured for the future by putting the
subject's verified identifiers on the list of each purpose concerned (e.g.
marketing emails). The systems that run the purpose read the list (CSV from
the dashboard, or the API: api/suppression.py) or look identifiers up.

Entries outlive the request: purging a request's personal data keeps them,
since forgetting them would let the processing start again.
"""

import csv
from collections.abc import Iterable, Iterator

from django.db import transaction
from django.utils.translation import gettext as _

from requests_app import roles
from requests_app.audit import Actor, record_event
from requests_app.lifecycle import VERIFIED_OPEN, RequestError
from requests_app.models import (
    PrivacyRequest,
    RequestType,
    SuppressionEntry,
    SuppressionPurpose,
    normalised_identifier,
)
from requests_app.spreadsheets import spreadsheet_safe
from requests_app.wording import in_sentence

# The rights honoured by a suppression, in the order that picks an entry's `right`.
SUPPRESSION_RIGHTS = (RequestType.OBJECTION, RequestType.WITHDRAW_CONSENT, RequestType.LIMIT_USE)

CSV_HEADER = ["kind", "value", "right", "added_at"]


def suppression_right(request: PrivacyRequest) -> str | None:
    """The first of SUPPRESSION_RIGHTS the request asks for, or None."""
    asked = set(request.requested_rights)
    return next((right for right in SUPPRESSION_RIGHTS if right in asked), None)


def suppress(*, request: PrivacyRequest, actor: Actor, purposes: Iterable[SuppressionPurpose]) -> dict[str, int]:
    """Put the request's verified identifiers on each purpose's suppression list.

    Allowed for an open, verified request asking for an objection, a consent
    withdrawal or a limit on use; unverified identifiers are left out, and so
    are those of a kind the purpose's systems do not look people up by. Refused
    when that leaves a purpose with none: the suppression would not work.
    Idempotent: an identifier already on a list (from this request or an
    earlier one) stays as it is. Returns the number of entries added per
    purpose slug; writes a "suppression_added" event (slugs and counts, never
    the identifiers) when anything was added.
    """
    roles.require_can_work(actor, request)
    purposes = list(purposes)
    if not purposes:
        raise RequestError(_("Choose at least one suppression list."))
    with transaction.atomic():
        locked = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
        if locked.status not in VERIFIED_OPEN:
            raise RequestError(_("Only an open, verified request can be acted on."))
        right = suppression_right(locked)
        if right is None:
            raise RequestError(_("This request asks for no objection, consent withdrawal or limit on use."))
        identities = {
            (kind, normalised_identifier(kind, value))
            for kind, value in locked.identities.filter(verified_at__isnull=False).values_list("kind", "value")
        }
        if not identities:
            raise RequestError(_("No identifier of this request is verified yet: verify one first."))
        for purpose in purposes:
            if not any(purpose.uses(kind) for kind, _value in identities):
                # On the list, they would still be reached: the purpose's systems know them by something else.
                kinds = ", ".join(in_sentence(label) for label in purpose.identity_kind_labels)
                raise RequestError(
                    _("Nothing was added: %(purpose)s looks people up by %(kinds)s, and no identifier of that kind is "
                      "verified for this request. Verify one first.") % {"purpose": purpose.name, "kinds": kinds}
                )
        added = {}
        for purpose in purposes:
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
        # Recorded even when every identifier was on the lists already (an earlier request put it there):
        # this request's objection is applied all the same, and completing it looks for this event.
        record_event(
            locked,
            "suppression_added",
            actor=actor,
            data={"purposes": [{"purpose": slug, "added": count} for slug, count in added.items()]},
        )
    return added


class Echo:
    """A pseudo-file whose write returns the text, so each CSV row can be streamed as it is made."""

    def write(self, text: str) -> str:
        return text


def entries_csv(entries, out, *, for_spreadsheet: bool = False) -> Iterator:
    """Write suppression entries (a queryset: one purpose's list, maybe filtered) to `out` as
    CSV (kind,value,right,added_at), oldest first.

    A generator yielding what each write returns: with `Echo` as `out` it
    yields the rows for a StreamingHttpResponse; with a file, exhaust it. The
    rows are read with iterator(), so a list of millions is never in memory.
    """
    writer = csv.writer(out)
    yield writer.writerow(CSV_HEADER)
    rows = entries.order_by("created_at", "id").values_list("kind", "value", "right", "created_at")
    for kind, value, right, created_at in rows.iterator(chunk_size=2000):
        yield writer.writerow([kind, spreadsheet_safe(value) if for_spreadsheet else value, right, created_at.isoformat()])


def suppressed(purpose: SuppressionPurpose, identifiers: list[tuple[str, str]]) -> list[bool]:
    """For each (kind, value), however it was typed, whether it is on the purpose's list; one query."""
    wanted = [(kind, normalised_identifier(kind, value)) for kind, value in identifiers]
    found = SuppressionEntry.objects.filter(purpose=purpose, value__in={value for _kind, value in wanted})
    listed = set(found.values_list("kind", "value"))
    return [pair in listed for pair in wanted]
