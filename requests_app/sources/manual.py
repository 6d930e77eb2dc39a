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
        name = upload.name.lower()
        handle = io.TextIOWrapper(upload.open("rb"), encoding="utf-8-sig", newline="")
        if name.endswith(".jsonl"):
            return self._jsonl(handle, masked_fields)
        reader = csv.reader(handle)
        columns = next(reader, [])
        masked = {i for i, column in enumerate(columns) if column in masked_fields}

        def rows():
            with handle:
                for row in reader:
                    yield tuple(mask_value(value) if i in masked else value for i, value in enumerate(row))

        return columns, rows()

    def _jsonl(self, handle, masked_fields):
        lines = (line for line in handle if line.strip())
        try:
            first = json.loads(next(lines, "{}"))
        except json.JSONDecodeError as error:
            raise SourceError(f"{self.source.slug}: the extract is not valid JSON lines") from error
        columns = list(first)

        def rows():
            with handle:
                record = first
                while record:
                    yield tuple(mask_value(record.get(c)) if c in masked_fields else record.get(c) for c in columns)
                    line = next(lines, None)
                    if line is None:
                        return
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as error:
                        raise SourceError(f"{self.source.slug}: the extract is not valid JSON lines") from error

        return columns, rows()
