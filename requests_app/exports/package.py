"""The export package: one ZIP streamed from the source systems.

    data/<source>/<category>.jsonl and .csv   the rows, per source and category (the CSV for spreadsheets)
    report.html                               the Art. 15 information, in the subject's language
    manifest.json                             files, row counts, SHA-256 of each, identities searched, when reading began

Rows go from the source into the ZIP entry as they arrive; nothing holds a
whole category in memory. The CSV of a generic source is spooled to a
temporary file while its JSON lines go straight into the ZIP (a ZIP can only
write one entry at a time), then copied in.
"""

import codecs
import contextlib
import csv
import datetime
import hashlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field

import pyzipper
from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from requests_app import selectors
from requests_app.exports.zipmerge import copy_only_member
from requests_app.services.webhooks import api_datetime
from requests_app.models import (
    LEGAL_BASIS_NOT_PORTABLE,
    ConnectorKind,
    DataCategory,
    ExportKind,
    IdentityKind,
    LegalBasis,
    PrivacyRequest,
    SourceSystem,
    normalised_identifier,
)
from requests_app.sources import SourceError, connector_for
from requests_app.sources.manual import ManualConnector
from requests_app.spreadsheets import spreadsheet_safe
from requests_app.wording import citations, in_sentence

PROGRESS_EVERY_ROWS = 20_000
# Each CSV file starts with UTF-8's byte-order mark: Excel, opening a CSV by a double-click, reads the bytes as the
# computer's legacy code page unless the mark says UTF-8 ("LiÃ¨ge" for Liège). The CSV is the spreadsheet's copy (its
# formulas are already defused, spreadsheet_safe); the JSON lines, every value as held and no mark, are the copy
# for other programs. copy_part.py writes the same mark for the COPY path.
CSV_BYTE_ORDER_MARK = codecs.BOM_UTF8


class _HashingWriter(io.RawIOBase):
    """Passes bytes to a ZIP entry while counting them (and their lines) and computing their SHA-256.

    It sits under a 1 MiB buffer, so hashing, line counting and compression
    work on large chunks, not row by row.
    """

    def __init__(self, target, on_lines: Callable[[int], None] | None = None):
        self.target, self.digest, self.size, self.lines, self.on_lines = target, hashlib.sha256(), 0, 0, on_lines

    def writable(self):
        return True

    def write(self, data):
        self.digest.update(data)
        self.size += len(data)
        if self.on_lines:
            self.lines += bytes(data).count(b"\n")
            self.on_lines(self.lines)
        self.target.write(data)
        return len(data)


# A package's data files are data/<source slug>/<category slug>.<format>.
DATA_DIR = "data"


def source_of_data_file(path: str) -> str | None:
    """The slug of the source a manifest's file `path` holds data of, or None for another file (the report)."""
    parts = path.split("/")
    return parts[1] if len(parts) == 3 and parts[0] == DATA_DIR else None


@contextlib.contextmanager
def _buffered(raw, on_lines=None):
    hashing = _HashingWriter(raw, on_lines)
    buffered = io.BufferedWriter(hashing, buffer_size=1024 * 1024)
    yield buffered, hashing
    buffered.flush()


# Why a source was not searched, as the manifest records it.
NO_VERIFIED_IDENTIFIER = "no_verified_identifier"
NO_EXTRACT_ASKED = "no_extract_asked"


def not_searched_reason(item: dict) -> str:
    """A manifest's `sources_not_searched` entry, said in the active language."""
    if item.get("reason") == NO_VERIFIED_IDENTIFIER:
        return _("no verified %(kind)s") % {"kind": in_sentence(IdentityKind(item["kind"]).label)}
    if item.get("reason") == NO_EXTRACT_ASKED:
        return _("no extract was asked for with this export")
    return item.get("reason", "")  # a package compiled before the reasons were codes


def left_out_reason(item: dict) -> str:
    """Why a manifest's `categories_left_out` entry is not in the portability package, in the active language."""
    if item["reason"] == LEGAL_BASIS_NOT_PORTABLE:
        return _("we process it on another legal basis than your consent or a contract: %(basis)s") % {
            "basis": in_sentence(LegalBasis(item["legal_basis"]).label)
        }
    return _("it is not data you gave us or that your use of our services produced")


def csv_values(row: tuple) -> tuple:
    """A row as the CSV writes it: a nested object or list (an HTTP record's, a JSON-lines extract's) and a
    true/false as JSON text, as the .jsonl beside it has them, not as Python writes them ("{'k': [1]}", "True");
    text a spreadsheet would run as a formula with a leading ' (the .jsonl keeps it as it is)."""
    return tuple(_csv_value(value) for value in row)


def _csv_value(value):
    if isinstance(value, (dict, list, bool)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return spreadsheet_safe(value) if isinstance(value, str) else value


def _reading_start() -> datetime.datetime:
    """Now, to the even second below: a ZIP entry's date counts seconds in twos, and the report and the
    manifest state the very moment the entries are dated."""
    now = timezone.now().replace(microsecond=0)
    return now - datetime.timedelta(seconds=now.second % 2)


@dataclass
class PackageWriter:
    """Writes one package to `path`. Call `add_source` per source, then `finish`."""

    path: str
    request: PrivacyRequest
    kind: str
    password: str | None = None
    on_progress: Callable[[dict], None] | None = None
    work_prefix: str = ""  # temporary files are named after the package, so a later attempt can remove them
    files: list[dict] = field(default_factory=list)
    searched: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    # Categories of searched sources that a portability package does not cover (Art. 20(1)), with why.
    left_out: list[dict] = field(default_factory=list)
    rows_total: int = 0
    # Rows written per (source slug, category slug): the report describes the processing only of the
    # sources that held data about the subject (GDPR Art. 15(1) asks whether data is processed at all).
    rows_found: dict[tuple[str, str], int] = field(default_factory=dict)
    # The package's one date, when reading the sources began: its entries are dated then (a member opened by
    # name would carry 1980-01-01), and its report and manifest say so. Not when it was finished: an entry's
    # date is written as it is opened, before the end is known.
    reading_started_at: datetime.datetime = field(default_factory=_reading_start)

    def __post_init__(self):
        level = settings.EXPORT_COMPRESSLEVEL
        if self.password:
            self.zip = pyzipper.AESZipFile(
                self.path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level, encryption=pyzipper.WZ_AES
            )
            self.zip.setpassword(self.password.encode())
        else:
            self.zip = zipfile.ZipFile(self.path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level)

    def _member(self, path: str) -> zipfile.ZipInfo:
        """An entry's header as `ZipFile.open(path, "w")` makes it (the same private compression level
        attribute), but dated when reading the sources began."""
        # A ZIP date has no time zone: unzip tools read it as local time, for our subjects the site's (TIME_ZONE).
        date_time = timezone.localtime(self.reading_started_at).timetuple()[:6]
        member = getattr(self.zip, "zipinfo_cls", zipfile.ZipInfo)(path, date_time=date_time)  # pyzipper's for AES
        member.compress_type = self.zip.compression
        member._compresslevel = self.zip.compresslevel
        return member

    @contextlib.contextmanager
    def entry(self, path: str, on_lines=None):
        """An entry open for (buffered) writing; its size and hash are recorded when it closes."""
        with self.zip.open(self._member(path), "w", force_zip64=True) as raw, _buffered(raw, on_lines) as (writer, hashing):
            yield writer
        self.files.append({"path": path, "bytes": hashing.size, "sha256": hashing.digest.hexdigest(), "rows": None})

    def _set_rows(self, count: int, rows: int) -> None:
        """Record the row count on the last `count` entries written."""
        for entry in self.files[-count:]:
            entry["rows"] = rows

    def _progress(self, **extra):
        if self.on_progress:
            self.on_progress({"rows": self.rows_total, **extra})

    def add_source(self, source: SourceSystem, *, manual_upload=None) -> None:
        """Write every category of `source` for the request's verified identities of its kind (verified by a method
        that proves them: SubjectIdentityQuerySet.searchable), and for the identifiers its rectification corrected
        there (see `_corrected_in`)."""
        verified = set(
            self.request.identities.searchable().filter(kind=source.identity_kind).values_list("value", flat=True)
        )
        corrected = self._corrected_in(source) - verified
        identities = sorted(verified | corrected)
        if not identities:
            # Codes, not sentences: the report and the staff page say it in their reader's language.
            self.skipped.append(
                {
                    "source": source.slug, "name": source.texts_in(self.request.language)["name"],  # as the subject reads it
                    "reason": NO_VERIFIED_IDENTIFIER, "kind": source.identity_kind,
                }
            )
            return
        self.searched.extend(
            # Marked, for staff to tell them from the identifiers they verified.
            {"source": source.slug, "kind": source.identity_kind, "value": value, **({"corrected": True} if value in corrected else {})}
            for value in identities
        )
        categories = list(source.categories.all())
        if self.kind == ExportKind.PORTABILITY:
            categories = [category for category in categories if not self._left_out_of_portability(source, category)]
        if manual_upload is not None and len(source.categories.all()) != 1:
            # One extract holds one category: read again for a second, it would be filed twice and masked
            # by the wrong category's list (SourceCategory.clean refuses a second one for a manual source).
            raise SourceError(f"{source.slug}: a manual source must have exactly one data category")
        for category in categories:
            self._progress(current=f"{source.slug}/{category.slug}")
            if manual_upload is not None:
                columns, rows = ManualConnector(source).stream_upload(manual_upload, category.masked_field_list)
                self._write_rows(source, category, columns, rows)
                continue
            connector = connector_for(source)
            if getattr(connector, "can_copy", False):
                self._write_copy(connector, source, category, identities)
            else:
                columns, rows = connector.stream(category, identities)
                self._write_rows(source, category, columns, rows)

    def _corrected_in(self, source: SourceSystem) -> set[str]:
        """The identifiers the request's rectification, carried out before this package, wrote into `source`'s rows:
        found no longer by the identifier the subject gave, the rows would be missing from the copy, which could
        then say no data was found (Art. 15). Searched as the erasure after it searches them (build_plan), so the
        copy holds what that erasure takes (copies_owed).

        A SQL source is also searched by each one as normalised_identifier spells it: its queries are written for
        identifiers spelled so (`lower(email) IN :identities`, say) while its rows hold the value as written, with
        any capitals, and the erasure compares the two in lower case. Never for an HTTP source, which the erasure
        searches by the value as written only, and where a partner ignoring case would list the same records twice.
        """
        corrected = set(selectors.corrected_identifiers(request=self.request, source=source))
        if source.connector == ConnectorKind.SQL:
            corrected |= {normalised_identifier(source.identity_kind, value) for value in corrected}
        return corrected

    def _left_out_of_portability(self, source: SourceSystem, category) -> bool:
        """Whether Art. 20 does not cover the category; if so it is recorded, codes only, for the report."""
        reason = category.portability_exclusion()
        entry = {
            "source": source.slug, "name": source.texts_in(self.request.language)["name"],
            "category": category.category, "reason": reason, "legal_basis": source.legal_basis,
        }
        # Named by their kind of data, two categories of one kind (calls made and calls received) read alike: once.
        if reason and entry not in self.left_out:
            self.left_out.append(entry)
        return bool(reason)

    def _write_copy(self, connector, source, category, identities) -> None:
        base = f"{DATA_DIR}/{source.slug}/{category.slug}"
        reported = [0]
        start_total = self.rows_total

        def progress(lines):
            if lines - reported[0] >= PROGRESS_EVERY_ROWS:
                reported[0] = lines
                self.rows_total = start_total + lines
                self._progress(current=f"{source.slug}/{category.slug}")

        handle, part_path = tempfile.mkstemp(
            prefix=os.path.basename(self.work_prefix or "part"), suffix=".zip", dir=settings.EXPORT_WORK_DIR
        )
        os.close(handle)
        try:
            rows, csv_part = connector.copy_export(
                category,
                identities,
                lambda: self.entry(f"{base}.jsonl", on_lines=progress),
                part_path,
                settings.EXPORT_COMPRESSLEVEL,
            )
            self._append_part(part_path, f"{base}.csv", csv_part)
        finally:
            if os.path.exists(part_path):
                os.unlink(part_path)
        self._set_rows(2, rows)
        self.rows_found[(source.slug, category.slug)] = rows
        self.rows_total = start_total + rows

    def _append_part(self, part_path: str, path: str, part: dict) -> None:
        """Add the CSV a child process compressed into a ZIP of its own."""
        if self.password:
            # An encrypted package cannot take the plain compressed bytes: re-encode.
            with zipfile.ZipFile(part_path) as source_zip, source_zip.open("part") as source, self.entry(path) as target:
                shutil.copyfileobj(source, target, 1024 * 1024)
            return
        copy_only_member(part_path, self.zip, self._member(path))
        self.files.append({"path": path, "bytes": part["bytes"], "sha256": part["sha256"], "rows": None})

    def _write_rows(self, source, category, columns, rows) -> None:
        base = f"{DATA_DIR}/{source.slug}/{category.slug}"
        counter = [0]
        with tempfile.TemporaryFile(dir=settings.EXPORT_WORK_DIR) as spool:  # unlinked at once: nothing to leave behind
            text_spool = io.TextIOWrapper(spool, encoding="utf-8", newline="")
            csv_writer = csv.writer(text_spool)
            # The names too: an HTTP source's are the partner's JSON keys, a manual extract's its owner's header row.
            csv_writer.writerow([spreadsheet_safe(column) for column in columns])
            with self.entry(f"{base}.jsonl") as jsonl:
                for row in rows:
                    jsonl.write(json.dumps(dict(zip(columns, row)), default=str, ensure_ascii=False).encode() + b"\n")
                    csv_writer.writerow(csv_values(row))
                    counter[0] += 1
                    if counter[0] % PROGRESS_EVERY_ROWS == 0:
                        self.rows_total += PROGRESS_EVERY_ROWS
                        self._progress(current=f"{source.slug}/{category.slug}")
            self.rows_total += counter[0] % PROGRESS_EVERY_ROWS
            text_spool.flush()
            spool.seek(0)
            with self.entry(f"{base}.csv") as csv_out:
                csv_out.write(CSV_BYTE_ORDER_MARK)
                shutil.copyfileobj(spool, csv_out, 1024 * 1024)
            text_spool.detach()
        self._set_rows(2, counter[0])
        self.rows_found[(source.slug, category.slug)] = counter[0]

    def finish(self, sources: list[SourceSystem]) -> dict:
        """Write report.html and manifest.json, close the ZIP and return the manifest."""
        skipped = {item["source"] for item in self.skipped}
        found = {source_slug for (source_slug, _category), rows in self.rows_found.items() if rows}
        # A portability package leaves out data that may well be there, unread: such a source is named among
        # those left out, never as holding no data about the subject, even where the categories taken were empty.
        left_out = {item["source"] for item in self.left_out}
        with translation.override(self.request.language):
            report = render_to_string(
                "exports/report.html",
                {
                    "request": self.request,
                    "kind": self.kind,
                    "law": citations(self.request.regime),
                    "holds_records": bool(found),
                    "sources_with_data": [source for source in sources if source.slug in found],
                    # The safeguards of transfers outside the EU/EEA (Art. 15(2)) are said only where the report lists one.
                    "transfers_listed": any(
                        recipient.third_country
                        for source in sources if source.slug in found
                        for recipient in source.recipients.all()
                    ),
                    # Searched whole and empty: said plainly, rather than how data we do not hold is used.
                    "sources_empty": [source for source in sources if source.slug not in found | skipped | left_out],
                    "files": self.files,
                    "skipped": self.skipped,
                    "left_out": [
                        (item["name"], DataCategory(item["category"]).label, left_out_reason(item)) for item in self.left_out
                    ],
                    "reading_started_at": self.reading_started_at,
                    "categories": dict(DataCategory.choices),
                    "masked": [
                        (source, category)
                        for source in sources
                        for category in source.categories.all()
                        if category.masked_field_list and self.rows_found.get((source.slug, category.slug))
                    ],
                },
            )
        with self.entry("report.html") as out:
            out.write(report.encode())
        manifest = {
            "reference": self.request.reference,
            "kind": self.kind,
            # In the site's time zone with its offset, as the API and the webhooks write times.
            "reading_started_at": api_datetime(self.reading_started_at),
            "files": self.files,
            "rows": self.rows_total,
            "identities_searched": self.searched,
            "sources_not_searched": self.skipped,
            "categories_left_out": self.left_out,
        }
        self.zip.writestr(self._member("manifest.json"), json.dumps(manifest, indent=2, ensure_ascii=False))
        self.zip.close()
        return manifest

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.zip.close()


__all__ = ["PackageWriter", "SourceError"]
