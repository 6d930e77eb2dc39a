"""SQL sources: any SQLAlchemy database URL, with a COPY fast path for PostgreSQL.

A category's query uses the placeholder :identities, expanded into an IN
list. Rows stream through a server-side cursor in chunks of CHUNK_ROWS; on
PostgreSQL, `copy_export` has the server format both files with COPY.
"""

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from functools import lru_cache

import sqlalchemy
from sqlalchemy import bindparam, text
from sqlalchemy.exc import SQLAlchemyError

from requests_app.sources.base import MASK, SourceError, mask_value, secret_from_env

CHUNK_ROWS = 5000
# Run by path: it needs only psycopg2 and SQLAlchemy, not Django or the project on sys.path.
COPY_PART_SCRIPT = Path(__file__).resolve().parent.parent / "exports" / "copy_part.py"


def normalise_url(url: str) -> str:
    """PostgreSQL URLs use psycopg2 (the driver the app already has, and the COPY path needs)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


@lru_cache(maxsize=32)
def _engine(url: str) -> sqlalchemy.Engine:
    # One engine (and pool) per source database; connections are checked before use.
    return sqlalchemy.create_engine(normalise_url(url), pool_pre_ping=True)


def _describe(error: Exception) -> str:
    """The kind of a database error (class and SQLSTATE): its text may quote the subject's data."""
    original = getattr(error, "orig", None) or error
    code = getattr(original, "pgcode", None)
    return f"{type(original).__name__}" + (f" (SQLSTATE {code})" if code else "")


class SQLConnector:
    def __init__(self, source):
        self.source = source
        self.url = secret_from_env(source) or source.connection_url
        if not self.url:
            raise SourceError(f"{source.slug}: no database URL configured")

    @property
    def engine(self) -> sqlalchemy.Engine:
        try:
            return _engine(self.url)
        except (SQLAlchemyError, ValueError) as error:
            raise SourceError(f"{self.source.slug}: bad database URL ({type(error).__name__})") from error

    def _statement(self, category):
        return text(category.query).bindparams(bindparam("identities", expanding=True, type_=sqlalchemy.String()))

    def stream(self, category, identities: list[str]) -> tuple[list[str], Iterator[tuple]]:
        """The category's columns, and its rows for `identities` with other people's fields masked."""
        try:
            connection = self.engine.connect().execution_options(stream_results=True, yield_per=CHUNK_ROWS)
        except SQLAlchemyError as error:
            raise SourceError(f"{self.source.slug}: {_describe(error)}") from error
        try:
            result = connection.execute(self._statement(category), {"identities": list(identities)})
            columns = list(result.keys())
        except SQLAlchemyError as error:
            connection.close()  # back to the pool: a failing source must not use it up
            raise SourceError(f"{self.source.slug}: {_describe(error)}") from error
        masked = [index for index, column in enumerate(columns) if column in category.masked_field_list]

        def rows():
            try:
                for row in result:
                    if masked:
                        row = list(row)
                        for index in masked:
                            row[index] = mask_value(row[index])
                    yield tuple(row)
            except SQLAlchemyError as error:
                raise SourceError(f"{self.source.slug}: {_describe(error)}") from error
            finally:
                connection.close()

        return columns, rows()

    # --- PostgreSQL: let the server format the files -----------------------

    @property
    def can_copy(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def copy_export(self, category, identities: list[str], open_jsonl, csv_part_path: str, compresslevel: int) -> tuple[int, dict]:
        """Write the category as JSON lines into `open_jsonl()` and as CSV into a one-member ZIP at `csv_part_path`.

        COPY streams the rows in bounded chunks and the server formats them,
        so neither memory nor Python work per row grows with the row count.
        The CSV is written at the same time by a child process (see
        exports/copy_part.py) that imports this transaction's snapshot: both
        files hold exactly the same rows and both cores compress. Returns the
        row count and the CSV's {"sha256", "bytes"}.
        """
        query = str(
            self._statement(category)
            .bindparams(identities=list(identities))
            .compile(dialect=self.engine.dialect, compile_kwargs={"literal_binds": True})
        )
        try:
            raw = self.engine.raw_connection()
        except Exception as error:  # the driver's own errors come through here, not SQLAlchemy's
            raise SourceError(f"{self.source.slug}: {_describe(error)}") from error
        child = None
        try:
            raw.set_session(isolation_level="REPEATABLE READ", readonly=True)
            with raw.cursor() as cursor:
                cursor.execute("SELECT pg_export_snapshot()")
                snapshot = cursor.fetchone()[0]
                cursor.execute(f"SELECT * FROM ({query}) AS source_rows LIMIT 0")
                columns = [column.name for column in cursor.description]
                select = ", ".join(self._select_column(column, category.masked_field_list) for column in columns)
                masked_query = f"SELECT {select} FROM ({query}) AS source_rows"
                child = subprocess.Popen(
                    [sys.executable, str(COPY_PART_SCRIPT)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                )
                job = {
                    "connect": {
                        **self.engine.url.translate_connect_args(username="user", database="dbname"),
                        **self.engine.url.query,
                    },
                    "snapshot": snapshot,
                    "query": masked_query,
                    "path": csv_part_path,
                    "compresslevel": compresslevel,
                }
                child.stdin.write(json.dumps(job).encode())
                child.stdin.close()
                # JSON text never holds the raw bytes \x01 or \x02, so CSV mode
                # with them as quote and delimiter writes each JSON object as is.
                with open_jsonl() as jsonl_out:
                    cursor.copy_expert(
                        f"COPY (SELECT row_to_json(r) FROM ({masked_query}) AS r) TO STDOUT "
                        "WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')",
                        jsonl_out,
                    )
                rows = cursor.rowcount
                # The child writes a few bytes to each pipe, so reading one then the other cannot block.
                output, errors = child.stdout.read(), child.stderr.read()
                child.wait()
                if child.returncode != 0:
                    # Its traceback may quote data: only the exception's class is kept.
                    last_line = (errors.decode(errors="replace").strip().splitlines()[-1:] or ["?"])[0]
                    raise SourceError(f"{self.source.slug}: the CSV copy failed ({last_line.split(':')[0][:80]})")
            raw.rollback()
            return rows, json.loads(output)
        except Exception as error:  # psycopg2 errors are not SQLAlchemy's
            if isinstance(error, SourceError):
                raise
            raise SourceError(f"{self.source.slug}: {_describe(error)}") from error
        finally:
            if child is not None and child.poll() is None:
                child.kill()
                child.wait()
            raw.close()

    @staticmethod
    def _select_column(column: str, masked: list[str]) -> str:
        quoted = '"' + column.replace('"', '""') + '"'
        if column not in masked:
            return quoted
        return f"CASE WHEN {quoted} IS NULL THEN NULL ELSE '{MASK}' || right({quoted}::text, 2) END AS {quoted}"
