"""Manual sources: the system owner uploads an extract (CSV with a header row, or JSON lines)."""

import csv
import io
import json
from collections.abc import Iterator

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


def _text(upload):
    """The uploaded file as text, read from the start, line by line."""
    return io.TextIOWrapper(upload.open("rb"), encoding="utf-8-sig", newline="")
