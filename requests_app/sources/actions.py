"""What erasure, rectification, restriction and its lifting ask of a connector, and the parts every connector shares.

A connector that can act on its rows has two methods:

    preview(plan) -> {"categories": [{"category", "rows", "fields"}], "list_entries", "fingerprint"}
        Counts what `plan` would change, changing nothing (the dry run).
    apply(plan, fingerprint, on_progress) -> {"categories": [...], "list_entries"}
        Makes the change, first checking that the rows still have the
        dry run's fingerprint (StaleDryRun otherwise), taken of the part of
        each row that decides what the action does (fingerprinted). Calls
        on_progress between steps: an exception it raises (the run lost its claim) stops
        the change there. A connector whose changes take effect one by one
        (no transaction) reports them as they are made, in "changed".

"rows" are the rows matched (deleted, or updated), "fields" the field values
that change. Applying twice changes nothing the second time: a deleted row
is gone, an anonymised or corrected value is already what it would be set
to, a keyed hash is not hashed again, a flag already set stays set, and a
restriction-list entry is added once. Lifting a restriction is its mirror:
the flag is cleared where it is set, and the subject's restriction-list
entries are removed where they are (counted in "list_entries" too).
"""

import datetime
import decimal
import hashlib
import json
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.translation import gettext as _

from requests_app.models import ActionKind, EraseMethod, EraseStrategy, FieldType, normalised_identifier
from requests_app.phones import to_e164
from requests_app.sources.base import SourceError

HASH_PREFIX = "anon:"


class StaleDryRun(SourceError):
    """The source's rows changed since the dry run: its counts no longer describe what would happen."""


class IdentifierHeld(SourceError):
    """A rectification would write into the subject's rows an identifier that rows not theirs already hold."""


@dataclass
class CategoryWork:
    """One category's part of an action: the anonymised fields (erasure) or corrected values (rectification)."""

    category: object
    anonymise: dict = field(default_factory=dict)  # field name -> SourceField (erasure by anonymisation)
    changes: dict = field(default_factory=dict)  # field name -> typed new value (rectification)
    # Erasure under a rolling legal hold: only the records whose `dated_by` field is before `kept_from`.
    dated_by: str = ""
    kept_from: datetime.date | None = None

    @property
    def deletes(self) -> bool:
        return self.category.erase_method == EraseMethod.DELETE


@dataclass
class ActionPlan:
    kind: str
    identities: list[str]
    categories: list[CategoryWork]
    restriction_list: str = ""  # the source's list, for restriction and its lifting
    # Rectification: {category slug: rows} that earlier runs of it corrected before failing part-way (an HTTP
    # source has no rollback). Where it corrects the identity field, those rows hold the new value: the subject's.
    corrected_before: dict = field(default_factory=dict)
    # Erasure: per category whose fields it replaces with a keyed hash, the legal hold on the codes that says why
    # they are kept (services.actions.pseudonyms_kept). Not the connector's concern: the approval's and the letter's.
    pseudonym_holds: list = field(default_factory=list)


def keyed_hash(value):
    """A stable pseudonym for `value`: the same input gives the same output, and it cannot be reversed
    without the key (ANONYMISATION_KEY). Hashing a pseudonym again leaves it as it is."""
    if value is None:
        return None
    text = str(value)
    if text.startswith(HASH_PREFIX):
        return text
    return HASH_PREFIX + salted_hmac("requests_app.anonymise", text, secret=settings.ANONYMISATION_KEY, algorithm="sha256").hexdigest()[:32]


def anonymised(source_field, value):
    """The value a field takes when its row is anonymised."""
    strategy = source_field.erase_strategy
    if strategy == EraseStrategy.NULL:
        return None
    if strategy == EraseStrategy.FIXED:
        return source_field.fixed_text
    if strategy == EraseStrategy.HASH:
        return keyed_hash(value)
    return value


def differs(old, new) -> bool:
    """Whether setting a field from `old` to `new` changes it (databases and APIs may hand back text
    for dates and numbers, and write the same instant with another offset)."""
    if old is None or new is None:
        return (old is None) != (new is None)
    old, new = _comparable(old), _comparable(new)
    return old != new and str(old) != str(new)


def _comparable(value):
    if isinstance(value, str):
        try:
            parsed = parse_datetime(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            value = parsed
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value.astimezone(datetime.UTC)
    return value


def new_values(work: CategoryWork, kind: str, row: dict) -> dict:
    """The fields of `row` that the action sets, with their new values (empty for a deletion)."""
    if kind == ActionKind.ERASE:
        return {name: anonymised(rule, row.get(name)) for name, rule in work.anonymise.items()}
    if kind == ActionKind.RECTIFY:
        return dict(work.changes)
    if kind == ActionKind.RESTRICT and work.category.restriction_flag:
        return {work.category.restriction_flag: True}
    if kind == ActionKind.LIFT_RESTRICTION and work.category.restriction_flag:
        return {work.category.restriction_flag: False}
    return {}


def fingerprinted(work: CategoryWork, kind: str, row: dict) -> dict:
    """The part of `row` its dry run's fingerprint covers: what decides what the action does to it, so that the
    execution is refused as stale (StaleDryRun) only when that changed. For a rectification, the fields it corrects;
    for a restriction or its lifting, the flag it sets or clears; for an erasure by anonymisation, the fields it
    anonymises (their values are what it erases, and what a keyed hash is taken of); each with the identity field and
    record key, which pick the row. The rest of the row is not theirs: carried out on the same rows, a rectification
    of the city leaves a restriction's dry run valid, and a restriction's flag a rectification's, while a
    rectification of the identity field does not (it changes which rows the restriction finds, and its plan's
    identities, plan_digest). Rows added or removed change the fingerprint whatever it covers (Fingerprint counts
    them, and a row's record key or identity is in it).

    An erasure by deletion erases every field of the row: any of them changed is a change to what it erases, and
    makes it stale, but the restriction flag. That one our own restriction sets and its lifting clears on the same
    rows (a restriction pending an erasure's decision, Art. 18(1)(d), is the usual case), it is not the subject's
    data, and the deletion removes the row whatever it holds. A rectification of a deleted row's fields still makes
    the deletion stale: nothing tells our correction from the source's own change, and both change what it erases.
    An anonymisation leaves the fields it keeps as they are: a change to them (the city corrected) leaves its dry run
    valid."""
    category = work.category
    if kind == ActionKind.ERASE and work.deletes:
        return {name: value for name, value in row.items() if name != category.restriction_flag}
    names = {category.identity_field, category.record_key, *new_values(work, kind, row)}
    return {name: row.get(name) for name in sorted(names) if name}


def changed_fields(work: CategoryWork, kind: str, row: dict) -> int:
    """How many of the row's field values the action changes."""
    if kind == ActionKind.ERASE and work.deletes:
        return len(row)
    return sum(differs(row.get(name), value) for name, value in new_values(work, kind, row).items())


def dated_before(value, day: datetime.date) -> bool:
    """Whether a record's date (a date, a datetime, or either as ISO text) is before `day`. A record
    without a readable date is not: a legal hold keeps what it cannot tell is older (as SQL's
    `dated_by < day` leaves out a NULL)."""
    if isinstance(value, str):
        try:
            value = parse_datetime(value) or parse_date(value)
        except ValueError:
            value = None
    if isinstance(value, datetime.datetime):
        value = timezone.localdate(value) if value.tzinfo is not None else value.date()
    return isinstance(value, datetime.date) and value < day


class Fingerprint:
    """An order-independent digest of rows: the sum of their hashes, so a source may return them in any order."""

    MODULUS = 2**256

    def __init__(self):
        self.total = 0
        self.count = 0

    def add(self, row: dict) -> None:
        encoded = json.dumps(row, sort_keys=True, default=str).encode()
        self.total = (self.total + int.from_bytes(hashlib.sha256(encoded).digest(), "big")) % self.MODULUS
        self.count += 1

    def hexdigest(self) -> str:
        return f"{self.count}:{self.total:064x}"


def combined_fingerprint(hexdigests: list[str]) -> str:
    """A source's fingerprint from its categories' (in the plan's order): what a dry run hands to apply."""
    return hashlib.sha256("|".join(hexdigests).encode()).hexdigest()


def identifiers_written(plan: ActionPlan, rows_found: list[int], identity_kind: str) -> dict[str, str]:
    """{new value: "category.field"} of the values a rectification writes into the field its source is searched
    by (a category's identity field), in the categories (in the plan's order, with `rows_found` of the subject's
    rows each) where it has rows to write them in. Not one of the subject's own identifiers: rows holding that
    are found as theirs already."""
    if plan.kind != ActionKind.RECTIFY:
        return {}
    own = {normalised_identifier(identity_kind, identity) for identity in plan.identities}
    written = {}
    for work, rows in zip(plan.categories, rows_found, strict=True):
        identity_field = work.category.identity_field
        if rows and identity_field and identity_field in work.changes:
            value = str(work.changes[identity_field])
            if normalised_identifier(identity_kind, value) not in own:
                written[value] = f"{work.category.slug}.{identity_field}"
    return written


def refuse_identifiers_held(source, plan: ActionPlan, rows_found: list[int], count_found_by) -> None:
    """Refuse (IdentifierHeld) a rectification that would write into the subject's rows an identifier that rows
    not theirs already hold in `source`. Every search for the subject there after it (erasure, restriction, the
    access package: selectors.corrected_identifiers) looks for the corrected identifier too, and would take those
    rows for the subject's: "correcting" an address to another subscriber's would have the erasure delete that
    subscriber's rows. Connectors call it before changing anything, in the dry run and again in the execution,
    in case the data changed meanwhile; `count_found_by(category, value)` counts the rows of a category that a
    search by `value` finds (a manual source, changed by its owner and never searched by the corrected value,
    has nothing to count). The message names fields and counts, never the value."""
    written = identifiers_written(plan, rows_found, source.identity_kind)
    if not written:
        return
    held = {}
    for category in source.categories.all():
        found = sum(count_found_by(category, value) for value in written) - plan.corrected_before.get(category.slug, 0)
        if found > 0:
            held[category.slug] = found
    if held:
        rows = ", ".join(f"{count} row{'s' if count != 1 else ''} in {slug}" for slug, count in held.items())
        raise IdentifierHeld(
            f"{source.slug}: the corrected {', '.join(sorted(set(written.values())))} is already held by rows that are not "
            f"the subject's ({rows}); searched by it later, an erasure, a restriction or the access package would take them "
            "for the subject's. Check the corrected value with the subject."
        )


def plan_digest(plan: ActionPlan, held: list[dict]) -> str:
    """A digest of everything that decides what an action does besides the rows: the identities, each
    category's target and method, the erasure strategies, the corrected values, the restriction
    settings and the legal holds (not their bases' translations, which change only the letter's words).
    Execution compares it with the dry run's, so what runs is what was approved."""
    described = {
        "kind": plan.kind,
        "identities": plan.identities,
        "restriction_list": plan.restriction_list,
        "held": [{key: value for key, value in hold.items() if key != "basis_translations"} for hold in held],
        # Only where there are some: a dry run approved before pseudonyms needed a hold keeps its digest.
        **({"pseudonym_holds": [
            {key: value for key, value in hold.items() if key != "basis_translations"} for hold in plan.pseudonym_holds
        ]} if plan.pseudonym_holds else {}),
        "categories": [
            {
                "category": work.category.slug,
                "table": work.category.table,
                "identity_field": work.category.identity_field,
                "record_key": work.category.record_key,
                "erase_method": work.category.erase_method,
                "restriction_flag": work.category.restriction_flag,
                "anonymise": {name: [rule.erase_strategy, rule.fixed_text] for name, rule in sorted(work.anonymise.items())},
                "changes": {name: str(value) for name, value in sorted(work.changes.items())},
            }
            for work in plan.categories
        ],
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def pseudonymised_fields(plan: ActionPlan) -> dict[str, list[str]]:
    """{category slug: [field names]} of the fields the erasure plan replaces with a keyed hash: a
    pseudonym, not erasure (GDPR Recital 26), which the letter must name as such."""
    return {
        work.category.slug: hashed
        for work in plan.categories
        if (hashed := sorted(name for name, rule in work.anonymise.items() if rule.erase_strategy == EraseStrategy.HASH))
    }


def kept_fields(plan: ActionPlan) -> dict[str, list[str]]:
    """{category slug: [field names]} of the fields the erasure plan leaves as they are in the rows it anonymises
    (the inventory's "keep"), which the letter names as kept. None for another
    kind of action: a restriction or a correction leaves every field it does not set as it is, and erases nothing."""
    if plan.kind != ActionKind.ERASE:
        return {}
    return {
        work.category.slug: kept
        for work in plan.categories
        if not work.deletes
        and (kept := sorted(rule.name for rule in work.category.fields.all() if rule.erase_strategy == EraseStrategy.KEEP))
    }


# --- Rectification values, checked against the field's type ---------------


def typed_value(field_type: str, text: str):
    """The corrected value as the field's type, or ValidationError saying what is wrong."""
    text = text.strip()
    if field_type == FieldType.INTEGER:
        try:
            return int(text)
        except ValueError:
            raise ValidationError(_("Enter a whole number.")) from None
    if field_type == FieldType.DECIMAL:
        try:
            number = decimal.Decimal(text)
        except decimal.InvalidOperation:
            raise ValidationError(_("Enter a number, e.g. 12.50.")) from None
        if not number.is_finite():
            raise ValidationError(_("Enter a number, e.g. 12.50."))
        return number
    if field_type == FieldType.DATE:
        try:
            parsed = parse_date(text)
        except ValueError:
            parsed = None
        if parsed is None:
            raise ValidationError(_("Enter a date as YYYY-MM-DD."))
        return parsed
    if field_type == FieldType.DATETIME:
        try:
            parsed = parse_datetime(text)
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            raise ValidationError(_("Enter a date and time with its UTC offset, e.g. 2026-03-01T14:00:00+01:00."))
        return parsed.astimezone(datetime.UTC)
    if field_type == FieldType.BOOLEAN:
        # Staff may work in any of the portal's languages.
        if text.lower() in ("true", "yes", "1", "oui", "ja"):
            return True
        if text.lower() in ("false", "no", "0", "non", "nee", "nein"):
            return False
        raise ValidationError(_("Enter yes or no."))
    if field_type == FieldType.EMAIL:
        validate_email(text)
        return text
    if field_type == FieldType.PHONE:
        number = to_e164(text)
        if number is None:
            raise ValidationError(_("Enter a phone number in international format, e.g. +32 2 234 56 78."))
        return number
    if not text:
        raise ValidationError(_("Enter the corrected value."))
    return text
