"""The tamper-evident audit trail: one global hash chain of events.

Appending locks the chain head row, so events get gapless sequence numbers in
commit order and each one's `previous_hash` is the hash of the event before
it. Callers append inside the transaction that makes the change, so the
change and its event commit together or not at all.
"""

import datetime
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC

from django import forms
from django.db import models, transaction
from django.db.models import Max
from django.utils import timezone

from requests_app import url_secrets
from requests_app.models import (
    ActorKind,
    AuditChainCheck,
    AuditChainHead,
    AuditEvent,
    PrivacyRequest,
)

GENESIS_HASH = "0" * 64
# The trail names an organisation "organisation <name>", in English as it keeps its codes; the
# dashboard shows the word in the reader's language (staff_tags.actor_label).
ORGANISATION_LABEL_PREFIX = "organisation "
# Someone acting for the subject (services.agents) acts on the public pages as the subject would: same kind, so what
# the subject's timeline shows still applies, but a label of its own, so that staff see who did it. A role, never a
# name: the trail holds no personal data. Kept in English as a code; staff_tags.actor_label translates it.
AGENT_LABEL = "agent acting for the subject"


@dataclass(frozen=True)
class Actor:
    """Who did something: the system, the data subject, a staff user or an organisation."""

    kind: str
    label: str
    user: object = None

    @classmethod
    def system(cls) -> "Actor":
        return cls(kind=ActorKind.SYSTEM, label="system")

    @classmethod
    def subject(cls) -> "Actor":
        # Deliberately not the subject's name: the trail holds no personal data.
        return cls(kind=ActorKind.SUBJECT, label="data subject")

    @classmethod
    def agent(cls) -> "Actor":
        return cls(kind=ActorKind.SUBJECT, label=AGENT_LABEL)

    @classmethod
    def requester(cls, request: PrivacyRequest) -> "Actor":
        """Whoever holds the request's public links and writes from its status page: the agent who filed it, or
        the subject."""
        return cls.agent() if request.filed_by_agent else cls.subject()

    @classmethod
    def organisation(cls, organisation) -> "Actor":
        return cls(kind=ActorKind.ORGANISATION, label=f"{ORGANISATION_LABEL_PREFIX}{organisation.name}"[:150])

    @classmethod
    def staff(cls, user) -> "Actor":
        return cls(kind=ActorKind.STAFF, label=user.get_username(), user=user)


def event_hash(event: AuditEvent) -> str:
    """SHA-256 over the event's content and the previous event's hash."""
    content = {
        "sequence": event.sequence,
        "request": event.request_id,
        "actor_kind": event.actor_kind,
        "actor": event.actor_id,
        "actor_label": event.actor_label,
        "action": event.action,
        "from_status": event.from_status,
        "to_status": event.to_status,
        "note": event.note,
        "data": event.data,
        "created_at": event.created_at.astimezone(UTC).isoformat(),
        "previous_hash": event.previous_hash,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def record_event(
    request: PrivacyRequest | None,
    action: str,
    *,
    actor: Actor,
    from_status: str = "",
    to_status: str = "",
    note: str = "",
    data: dict | None = None,
) -> AuditEvent:
    """Append an event to the chain. Must run inside the caller's transaction."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("record_event must run inside the transaction that makes the change")
    head, _ = AuditChainHead.objects.select_for_update().get_or_create(
        pk=1, defaults={"sequence": 0, "hash": GENESIS_HASH}
    )
    event = AuditEvent(
        sequence=head.sequence + 1,
        request=request,
        actor_kind=actor.kind,
        actor=actor.user,
        actor_label=actor.label,
        action=action,
        from_status=from_status,
        to_status=to_status,
        note=note,
        data=data or {},
        created_at=timezone.now(),
        previous_hash=head.hash,
    )
    event.hash = event_hash(event)
    event.save()
    head.sequence, head.hash = event.sequence, event.hash
    head.save(update_fields=["sequence", "hash"])
    from requests_app.selectors import TIMELINE_CHANGES  # selectors imports lifecycle, which imports this module

    # To the entry's own moment, even after a status change whose update moved it already (a moment earlier): a
    # portal that asks for updated_since the time an entry shows must find the request.
    if request is not None and action in TIMELINE_CHANGES:
        PrivacyRequest.objects.filter(pk=request.pk).update(updated_at=event.created_at)
        request.updated_at = event.created_at
    return event


@dataclass(frozen=True)
class ChainBreak:
    sequence: int
    event_id: int | None
    reason: str


def verify_chain() -> tuple[int, ChainBreak | None]:
    """Walk the chain in order; return the number of events checked and the first break.

    The walk goes up to the head as it was when it started: events appended
    meanwhile (submissions go on during the nightly walk) are the next walk's.
    """
    head = AuditChainHead.objects.filter(pk=1).first()
    events = AuditEvent.objects.order_by("sequence")
    if head is not None:
        events = events.filter(sequence__lte=head.sequence)
    expected_sequence, previous_hash = 1, GENESIS_HASH
    checked = 0
    for event in events.iterator(chunk_size=2000):
        if event.sequence != expected_sequence:
            return checked, ChainBreak(
                expected_sequence, event.id, f"event #{expected_sequence} is missing (next is #{event.sequence})"
            )
        if event.previous_hash != previous_hash:
            return checked, ChainBreak(
                event.sequence, event.id, "its previous_hash does not match the event before it"
            )
        if event_hash(event) != event.hash:
            return checked, ChainBreak(event.sequence, event.id, "its content does not match its hash")
        checked += 1
        expected_sequence, previous_hash = event.sequence + 1, event.hash

    if head is None:
        return checked, None
    if (head.sequence, head.hash) != (checked, previous_hash):
        return checked, ChainBreak(
            checked + 1, None, f"the chain head says #{head.sequence}, but the last event is #{checked}"
        )
    # record_event moves the head in the event's own transaction, so a committed event is never
    # past the committed head: one that is was written around it. (The last event is read
    # before the head, so an event committed between the two reads is not mistaken for one.)
    last_sequence = AuditEvent.objects.aggregate(last=Max("sequence"))["last"] or 0
    head_now = AuditChainHead.objects.get(pk=1)
    if last_sequence > head_now.sequence:
        return checked, ChainBreak(
            head_now.sequence + 1, None, f"event #{last_sequence} lies past the chain head (#{head_now.sequence})"
        )
    return checked, None


def check_chain() -> AuditChainCheck:
    """Walk the whole chain and record the result: the latest check is what staff and certificates see."""
    checked, chain_break = verify_chain()
    return AuditChainCheck.objects.create(
        events_checked=checked,
        broken_at_sequence=chain_break.sequence if chain_break else None,
        reason=chain_break.reason if chain_break else "",
    )


def verify_request_events(request: PrivacyRequest) -> tuple[int, ChainBreak | None]:
    """Check one request's events where they sit in the chain, without walking the rest of it.

    Each event must match its hash and be linked to the events on either side
    (the one before by its `previous_hash`, the one after by the next
    `previous_hash`, or be the chain head). Editing one of them, or rewriting
    its hash, shows here; a forgery elsewhere shows in the nightly walk of the
    whole chain (check_chain). Returns the number checked and the first break.
    """
    # In this order: any event up to the head read second has committed, so
    # its neighbours read third are there, however many events are appended meanwhile.
    events = list(request.events.order_by("sequence"))
    head = AuditChainHead.objects.filter(pk=1).first()
    around = {event.sequence + step for event in events for step in (-1, 1)}
    neighbours = {
        sequence: (hash_, previous_hash)
        for sequence, hash_, previous_hash in AuditEvent.objects.filter(sequence__in=around).values_list(
            "sequence", "hash", "previous_hash"
        )
    }
    for checked, event in enumerate(events):
        if event_hash(event) != event.hash:
            return checked, ChainBreak(event.sequence, event.id, "its content does not match its hash")
        if event.sequence == 1:
            expected_previous = GENESIS_HASH
        elif event.sequence - 1 in neighbours:
            expected_previous = neighbours[event.sequence - 1][0]
        else:
            return checked, ChainBreak(event.sequence - 1, None, f"event #{event.sequence - 1} is missing")
        if event.previous_hash != expected_previous:
            return checked, ChainBreak(event.sequence, event.id, "its previous_hash does not match the event before it")
        if event.sequence + 1 in neighbours:
            if neighbours[event.sequence + 1][1] != event.hash:
                return checked, ChainBreak(
                    event.sequence + 1, None, "its previous_hash does not match the event before it"
                )
        elif head is None or (head.sequence, head.hash) != (event.sequence, event.hash):
            return checked, ChainBreak(event.sequence + 1, None, f"event #{event.sequence + 1} is missing")
    return len(events), None


# A changed text is kept this long in the trail: enough to see what changed, not a second copy of every template.
CHANGE_TEXT_CHARS = 200


def form_changes(form, *, values_hidden=()) -> dict[str, list]:
    """What a settings form changed, for its audit event: {field: [before, after]}, values as text (a related
    object by its name, a date as ISO 8601, a long text cut). Only what the form edits, so never a secret.

    `values_hidden`: fields (personal data: the trail is never purged) recorded as changed without their values,
    each value as url_secrets.MASK and a blank as it is, so that the trail still says set, changed or cleared."""

    def shown(name, field, value):
        if name in values_hidden:
            return url_secrets.MASK if value else value
        if isinstance(value, str) and (isinstance(field, forms.URLField) or name == "url" or name.endswith("_url")):
            # A URL's password and query values may be secrets (a saved one is refused, url_secrets), and the
            # trail is never purged: it keeps the URL's shape, each parameter's name without its value.
            value = url_secrets.masked(value)
        # Looked up among all rows, not the field's choices: a rule's person switched off since is no choice.
        if isinstance(field, forms.ModelMultipleChoiceField):
            manager = field.queryset.model._default_manager
            items = value if isinstance(value, models.QuerySet) else manager.filter(pk__in=[getattr(v, "pk", v) for v in value or []])
            return sorted(str(item) for item in items)
        if isinstance(field, forms.ModelChoiceField):
            if value in (None, ""):
                return None
            return str(value if isinstance(value, models.Model) else field.queryset.model._default_manager.filter(pk=value).first())
        if isinstance(value, datetime.date | datetime.datetime):
            return value.isoformat()
        if isinstance(value, str) and len(value) > CHANGE_TEXT_CHARS:
            return value[:CHANGE_TEXT_CHARS] + "…"
        return value if value is None or isinstance(value, bool | int | str) else str(value)

    return {
        # get_initial_for_field: a form may give a field's first value on the field (a staff account's role, teams).
        name: [
            shown(name, form.fields[name], form.get_initial_for_field(form.fields[name], name)),
            shown(name, form.fields[name], form.cleaned_data.get(name)),
        ]
        for name in form.changed_data
        if name in form.cleaned_data
    }

