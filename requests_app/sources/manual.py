"""Manual sources: the system owner uploads an extract (CSV with a header row, or JSON lines)."""

import csv
import io
import json
from collections.abc import Iterator

from django.utils.translation import gettext as _

from requests_app.sources.base import SourceError, mask_value


class ManualConnector:
    def __init__(self, source):
        self.source = source

    def stream_upload(self, upload, masked_fields: list[str]) -> tuple[list[str], Iterator[tuple]]:
        """Rows of an uploaded extract, read line by line from storage."""
        if upload.name.lower().endswith(".jsonl"):
            return self._jsonl(upload, masked_fields)
        handle = _text(upload)
        reader = csv.reader(handle)
        columns = next(reader, [])
        masked = {i for i, column in enumerate(columns) if column in masked_fields}

        def rows():
            with handle:
                for row in reader:
                    if row:  # a blank line (one at the end, say) is no record
                        yield tuple(mask_value(value) if i in masked else value for i, value in enumerate(row))

        return columns, rows()

    def _jsonl(self, upload, masked_fields):
        # Records need not share their keys: a first pass collects them all, so that a field only
        # later records have is written too (and masked), not dropped.
        with _text(upload) as handle:
            columns = list(dict.fromkeys(key for record in self._records(handle) for key in record))

        def rows():
            with _text(upload) as handle:
                for record in self._records(handle):
                    yield tuple(mask_value(record.get(c)) if c in masked_fields else record.get(c) for c in columns)

        return columns, rows()

    def _records(self, handle) -> Iterator[dict]:
        for line in handle:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise SourceError(f"{self.source.slug}: the extract is not valid JSON lines") from error
            if not isinstance(record, dict):
                raise SourceError(f"{self.source.slug}: each line of the extract must be a JSON object")
            yield record


def extract_problem(upload) -> str:
    """Why the export could not read `upload` as an extract (CSV with a header row, or JSON lines), or "" when it
    can. Checked whole when the owner uploads it, so that a file that is no extract (a PDF renamed .csv) is never
    read as one holding no data about the subject, and a broken one never stops the export later."""
    upload.seek(0)
    text = io.TextIOWrapper(upload, encoding="utf-8-sig", newline="")
    try:
        if upload.name.lower().endswith(".jsonl"):
            return _jsonl_problem(text)
        return _csv_problem(text)
    except UnicodeDecodeError:
        return _("The extract is not text in UTF-8: save it as UTF-8 (in Excel: CSV UTF-8).")
    finally:
        text.detach()  # the upload stays open: it is stored next
        upload.seek(0)


def _csv_problem(text) -> str:
    # Strict: read leniently, a quote never closed would swallow the rest of the file into one value.
    reader = csv.reader(text, strict=True)
    try:
        header = next(reader, None)
        if not header or not all(name.strip() for name in header):
            return _("The extract's first row must name each column, even when the subject has no rows.")
        for row in reader:
            if row and len(row) != len(header):
                return _("Line %(line)s of the extract has %(count)s values, but its first row names %(columns)s columns.") % {
                    "line": reader.line_num, "count": len(row), "columns": len(header)
                }
    except csv.Error as error:  # a NUL byte, a quote never closed
        return _("The extract is not a CSV file (line %(line)s: %(error)s).") % {"line": reader.line_num, "error": error}
    return ""


def _jsonl_problem(text) -> str:
    for number, line in enumerate(text, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            return _("Line %(line)s of the extract is not JSON: each line must be one JSON object.") % {"line": number}
        if not isinstance(record, dict):
            return _("Line %(line)s of the extract is not a JSON object: each line must be one.") % {"line": number}
    return ""


def _text(upload):
    """The uploaded file as text, read from the start, line by line."""
    return io.TextIOWrapper(upload.open("rb"), encoding="utf-8-sig", newline="")
