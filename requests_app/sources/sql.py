"""SQL sources: any SQLAlchemy database URL, with a COPY fast path for PostgreSQL.

A category's query uses the placeholder :identities, expanded into an IN
list. Rows stream through a server-side cursor in chunks of CHUNK_ROWS; on
PostgreSQL, `copy_export` has the server format both files with COPY.

A failure that may pass (the connection refused, reset or cut by the server,
a serialization failure or deadlock that rolled the transaction back, a lock
not had in time, SQLite's "database is locked") is tried again after each of
SQL_SOURCE_RETRY_DELAYS; one that says the statement is wrong (bad SQL, a
missing table or column, a permission refused, a constraint) fails at once.
What is tried again is a whole unit that changed nothing: connecting and
starting a read (not a read part-way, whose rows are already handed on), a dry
run (always rolled back), or an execution's whole transaction, which the
failure rolled back. Its commit is the one step whose failure may hide a
change made: a connection cut as the COMMIT went leaves it unknown whether the
server committed. Made again, the change would be made twice (a keyed hash
taken of the hash), or refused as stale though made. So the execution asks:
PostgreSQL tells from another connection whether the transaction committed
(txid_status), and a failed COMMIT on SQLite left its transaction open, to be
rolled back. Committed, the run is done; rolled back, it is tried again; not
known (another database, or a server not reached again), it fails without
another attempt, saying so, for staff to run a new dry run, which shows what is
left to change.
"""

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from functools import lru_cache, partial
from pathlib import Path
from time import sleep
from urllib.parse import quote

import psycopg2
import sqlalchemy
from django.conf import settings
from psycopg2.extensions import encodings
from sqlalchemy import bindparam, text
from sqlalchemy.exc import SQLAlchemyError

from requests_app.models import ActionKind, IdentityKind, normalised_identifier
from requests_app.sources.actions import (
    ActionPlan,
    CategoryWork,
    Fingerprint,
    StaleDryRun,
    changed_fields,
    combined_fingerprint,
    fingerprinted,
    new_values,
    refuse_identifiers_held,
)
from requests_app.sources.base import (
    KEEP_TAIL_FROM_LENGTH,
    MASK,
    PassingFailure,
    SourceError,
    mask_value,
    retrying,
    secret_from_env,
)
from requests_app.spreadsheets import FORMULA_SQL, spreadsheet_safe

CHUNK_ROWS = 5000
# Run by path: it needs only psycopg2 and SQLAlchemy, not Django or the project on sys.path.
COPY_PART_SCRIPT = Path(__file__).resolve().parent.parent / "exports" / "copy_part.py"
# SQLSTATEs that speak of the moment, not of the statement: the transaction was rolled back to let another go first
# (serialization failure, deadlock), a lock was not had in time (lock_timeout), the server cut the session, is
# shutting down or is starting up. Every code of class 08 (connection exception) too.
PASSING_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03"})
# SQLite's "database is locked" and "database table is locked": another writer holds the file for a moment.
PASSING_SQLITE_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def normalise_url(url: str) -> str:
    """PostgreSQL URLs use psycopg2 (the driver the app already has, and the COPY path needs)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


@lru_cache(maxsize=32)
def _engine(url: str) -> sqlalchemy.Engine:
    # One engine (and pool) per source database; connections are checked before use. SQLAlchemy's errors quote a
    # statement's parameters (the subject's identifiers) unless hidden: a logged traceback would carry them.
    return sqlalchemy.create_engine(_existing_only(normalise_url(url)), pool_pre_ping=True, hide_parameters=True)


def _existing_only(url: str) -> str | sqlalchemy.URL:
    """A SQLite file is opened read-write but never created: at a path where the file is missing (moved,
    a typing mistake), SQLite would make an empty database there, and every search would find nothing.
    The path goes into a file: URI quoted (a "#" or "%" in it is a name, not URI syntax), beside the URL's own
    options."""
    parsed = sqlalchemy.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:" or parsed.database.startswith("file:"):
        return url
    return parsed.set(database=f"file:{quote(parsed.database)}").update_query_dict({"mode": "rw", "uri": "true"})


def _passing(error: Exception) -> bool:
    """Whether `error` says the source failed for a moment (see the module docstring): SQLAlchemy saw the connection
    lost, or the database's code for it is one that passes."""
    if getattr(error, "connection_invalidated", False):
        return True
    original = getattr(error, "orig", None) or error
    code = getattr(original, "pgcode", None) or ""
    if code in PASSING_SQLSTATES or code.startswith("08"):
        return True
    # The primary result code: an extended one (SQLITE_BUSY_SNAPSHOT) carries it in its low byte.
    return (getattr(original, "sqlite_errorcode", 0) & 0xFF) in PASSING_SQLITE_CODES


def _combined(scans: list[dict]) -> str:
    return combined_fingerprint([scan["fingerprint"] for scan in scans])


def _describe(error: Exception) -> str:
    """The kind of a database error (class and SQLSTATE), and the table, column and constraint it names, so
    that staff know what to fix; never its message, which may quote the subject's data."""
    original = getattr(error, "orig", None) or error
    code = getattr(original, "pgcode", None)
    kind = f"{type(original).__name__}" + (f" (SQLSTATE {code})" if code else "")
    names = _schema_objects(original)
    return f"{kind}: {names}" if names else kind


def _schema_objects(error: Exception) -> str:
    """What a database error names of the schema: PostgreSQL's diagnostics fields one by one (its message and
    detail may quote values: "Key (email)=(ana@…)"); SQLite's integrity message whole, which names only the
    constraint and its columns ("NOT NULL constraint failed: subscribers.company")."""
    diag = getattr(error, "diag", None)
    if diag is not None:
        named = [("table", diag.table_name), ("column", diag.column_name), ("constraint", diag.constraint_name)]
        return ", ".join(f"{what} {name}" for what, name in named if name)
    if isinstance(error, sqlite3.IntegrityError | sqlite3.OperationalError):
        # "unable to open database file", "database is locked", "no such table: calls": no values.
        return str(error)
    return ""


def _csv_column(column: str, is_text: bool) -> str:
    """A column as the COPY path's CSV writes it: a text value a spreadsheet would run as a formula with a
    leading ' (spreadsheets.spreadsheet_safe, in SQL); other types as they are (a cast would write a true as
    "true", where COPY writes "t"). Named as spreadsheet_safe writes a name: COPY's header row is the names,
    and a query may name a column anything (AS "=HYPERLINK(...)")."""
    quoted = '"' + column.replace('"', '""') + '"'
    header = '"' + spreadsheet_safe(column).replace('"', '""') + '"'
    if not is_text:
        return f"{quoted} AS {header}"
    condition = FORMULA_SQL.format(column=quoted)
    return f"CASE WHEN {condition} THEN '''' || {quoted} ELSE {quoted} END AS {header}"


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

    def _failed(self, error: SQLAlchemyError) -> SourceError:
        """The SourceError to raise for `error`. After an operational failure (the database went away, its
        file was moved, it is locked) the pool's connections are dropped: a connection kept to a SQLite file
        since deleted would fail every retry, and a server's may have been cut."""
        if isinstance(error, sqlalchemy.exc.OperationalError):
            _engine(self.url).dispose()
        return SourceError(f"{self.source.slug}: {_describe(error)}")

    def _failure(self, error: Exception, *, connecting: bool = False) -> Exception:
        """What an attempt raises for `error`: a PassingFailure, tried again (see the module docstring), or a
        SourceError. Failing to connect to a server passes whatever the reason: the driver gives no SQLSTATE
        then, so a server down for a moment cannot be told from a password refused (asked again in vain, for a
        few seconds). A SQLite file is not reached over a network: one that cannot be opened stays so."""
        failed = self._failed(error)
        original = getattr(error, "orig", None) or error
        refused = connecting and isinstance(original, psycopg2.OperationalError | sqlalchemy.exc.OperationalError)
        if _passing(error) or (refused and _engine(self.url).dialect.name != "sqlite"):
            return PassingFailure(_describe(error))
        return failed

    def _retrying(self, attempt):
        return retrying(self.source, attempt, settings.SQL_SOURCE_RETRY_DELAYS)

    def _connect(self) -> sqlalchemy.Connection:
        try:
            return self.engine.connect()
        except SQLAlchemyError as error:
            raise self._failure(error, connecting=True) from error

    def _statement(self, category):
        return text(category.query).bindparams(bindparam("identities", expanding=True, type_=sqlalchemy.String()))

    def columns(self, category) -> list[str]:
        """The category's columns, as its query names them, read without reading anyone's rows."""
        columns, rows = self.stream(category, [])
        for _row in rows:  # none: reading to the end gives the connection back
            pass
        return columns

    def table_columns(self, table: str) -> list[str] | None:
        """The columns of `table` (an inventory name: table or schema.table), or None when the database has
        no such table."""
        return self._retrying(partial(self._table_columns, table))

    def _table_columns(self, table: str) -> list[str] | None:
        schema, _, name = table.rpartition(".")
        with self._connect() as connection:
            try:
                inspector = sqlalchemy.inspect(connection)
                if not inspector.has_table(name, schema=schema or None):
                    return None
                return [column["name"] for column in inspector.get_columns(name, schema=schema or None)]
            except SQLAlchemyError as error:
                raise self._failure(error) from error

    def stream(self, category, identities: list[str]) -> tuple[list[str], Iterator[tuple]]:
        """The category's columns, and its rows for `identities` with other people's fields masked. Started again
        while it fails in a way that may pass before the first row; a failure while the rows are read is final:
        those read are handed on already."""
        return self._retrying(partial(self._stream, category, identities))

    def _stream(self, category, identities: list[str]) -> tuple[list[str], Iterator[tuple]]:
        connection = self._connect().execution_options(stream_results=True, yield_per=CHUNK_ROWS)
        try:
            result = connection.execute(self._statement(category), {"identities": list(identities)})
            columns = list(result.keys())
        except SQLAlchemyError as error:
            connection.close()  # back to the pool: a failing source must not use it up
            raise self._failure(error) from error
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
                raise self._failed(error) from error
            finally:
                connection.close()

        return columns, rows()

    # --- Erasure, rectification, restriction and its lifting (see sources/actions.py)

    # Databases whose changes a rollback undoes for certain (not MySQL's MyISAM tables, say).
    TRIAL_DIALECTS = ("postgresql", "sqlite")

    def preview(self, plan: ActionPlan) -> dict:
        """Count what would change. On PostgreSQL and SQLite, also make the change and roll it back:
        a constraint or trigger that refuses it (rows other tables still point at, say) shows up in
        the dry run, not at execution. Always rolled back, so tried again whole after a failure that may pass."""
        return self._retrying(partial(self._preview, plan))

    def _preview(self, plan: ActionPlan) -> dict:
        with self._connect() as connection:
            try:
                if self.engine.dialect.name == "postgresql":
                    # Never wait long on the source's own traffic for a trial.
                    connection.execute(text("SET LOCAL lock_timeout = '5s'"))
                scans = [self._scan(connection, plan, work, lock=False) for work in plan.categories]
                self._refuse_identifiers_held(connection, plan, scans)
                if self.engine.dialect.name in self.TRIAL_DIALECTS:
                    list_entries = self._change_all(connection, plan, scans)
                else:
                    list_entries = self._list_entries_to_change(connection, plan)
                connection.rollback()
            except SQLAlchemyError as error:
                raise self._failure(error) from error
        return {
            "categories": [scan["counts"] for scan in scans],
            "list_entries": len(list_entries),
            "fingerprint": _combined(scans),
        }

    def apply(self, plan: ActionPlan, fingerprint: str, on_progress=lambda progress: None) -> dict:
        """All categories change in one transaction: a failure anywhere leaves the source as it was, and one that
        may pass is tried again from the start; a commit whose answer is lost is made at most once (see the module
        docstring)."""
        return self._retrying(partial(self._apply, plan, fingerprint, on_progress))

    def _apply(self, plan: ActionPlan, fingerprint: str, on_progress) -> dict:
        with self._connect() as connection:
            try:
                # Locking the rows (where the database can) keeps them as the check saw them until commit.
                scans = [self._scan(connection, plan, work, lock=True) for work in plan.categories]
                if _combined(scans) != fingerprint:
                    raise StaleDryRun(f"{self.source.slug}: the rows changed since the dry run")
                self._refuse_identifiers_held(connection, plan, scans)  # raised, it rolls back: nothing changed
                list_entries = self._change_all(connection, plan, scans, on_progress)
                transaction_id = self._transaction_id(connection)
            except SQLAlchemyError as error:
                raise self._failure(error) from error
            self._commit(connection, transaction_id)
        return {"categories": [scan["counts"] for scan in scans], "list_entries": len(list_entries)}

    def _transaction_id(self, connection) -> int | None:
        """The open transaction's id on PostgreSQL, for _outcome to ask about should its commit's answer be lost."""
        if self.engine.dialect.name != "postgresql":
            return None
        return connection.execute(text("SELECT txid_current()")).scalar()

    def _commit(self, connection, transaction_id: int | None) -> None:
        """Commit, or raise a PassingFailure only when the transaction is known to be rolled back."""
        try:
            connection.commit()
        except SQLAlchemyError as error:
            failure = self._failure(error)
            if not isinstance(failure, PassingFailure):
                raise failure from error  # the server answered, refusing it (a deferred constraint, say): rolled back
            outcome = self._outcome(transaction_id)
            if outcome == "committed":
                return
            if outcome == "aborted":
                raise failure from error
            raise SourceError(
                f"{self.source.slug}: the commit failed ({_describe(error)}) and whether the change was made cannot be "
                "told; run a new dry run to see what is left to change"
            ) from error

    def _outcome(self, transaction_id: int | None) -> str | None:
        """Whether a transaction whose COMMIT failed was committed ("committed") or rolled back ("aborted"); None
        when that cannot be told. SQLite commits in this process: a COMMIT it refused left the transaction open, and
        closing the connection rolls it back. PostgreSQL says from another connection, asked after each of the
        retry delays while the server cannot be reached or the transaction is still in progress (its session not
        yet ended)."""
        if self.engine.dialect.name == "sqlite":
            return "aborted"
        if transaction_id is None:
            return None
        for delay in (0, *settings.SQL_SOURCE_RETRY_DELAYS):
            sleep(delay)
            try:
                with self.engine.connect() as connection:
                    outcome = connection.execute(text("SELECT txid_status(:id)"), {"id": transaction_id}).scalar()
            except SQLAlchemyError:
                continue  # not reached yet: asked again after the next delay
            if outcome in ("committed", "aborted"):
                return outcome
        return None

    def _change_all(self, connection, plan: ActionPlan, scans: list[dict], on_progress=lambda progress: None) -> list[str]:
        """Every category's change, then the restriction-list entries; returns the identities added to the
        list (restriction) or removed from it (lifting)."""
        for done, (work, scan) in enumerate(zip(plan.categories, scans, strict=True)):
            self._change(connection, plan, work, scan)
            on_progress({"categories_done": done + 1, "categories_total": len(plan.categories)})
        list_entries = self._list_entries_to_change(connection, plan)
        if list_entries:
            table, column = self._list_target(plan.restriction_list)
            if plan.kind == ActionKind.LIFT_RESTRICTION:
                connection.execute(self._identities(f"DELETE FROM {table} WHERE {column} IN :identities"), {"identities": list_entries})
            else:
                connection.execute(text(f"INSERT INTO {table} ({column}) VALUES (:identity)"), [{"identity": v} for v in list_entries])
        return list_entries

    def _quote(self, name: str) -> str:
        """An inventory name (validated as plain identifiers) quoted for this database; table.column keeps its dot."""
        preparer = self.engine.dialect.identifier_preparer
        return ".".join(preparer.quote_identifier(part) for part in name.split("."))

    def _where(self, plan: ActionPlan, work: CategoryWork) -> tuple[str, str, dict]:
        """The category's table, the condition that picks the subject's rows the action touches, and its parameters."""
        category = work.category
        if not category.table or not category.identity_field:
            raise SourceError(f"{self.source.slug}: category {category.slug} has no table and identity field to act on")
        column, identities = self._compared(self._quote(category.identity_field), plan.identities)
        where, parameters = f"{column} IN :identities", {"identities": identities}
        if work.kept_from is not None:
            # A rolling legal hold keeps the recent rows (and those without a date, which NULL < day leaves out).
            where += f" AND {self._quote(work.dated_by)} < :kept_from"
            parameters["kept_from"] = work.kept_from
        return self._quote(category.table), where, parameters

    def _compared(self, column: str, identities: list[str]) -> tuple[str, list[str]]:
        """`column` as it is compared with our identifiers, and the identifiers. Sources keep email addresses as
        people typed them ("Sofia.Rossi@Example.IT") and ours are lower-cased (models.normalised_identifier):
        compared as written, the rows to erase or correct, and the list entries, were not found."""
        if self.source.identity_kind == IdentityKind.EMAIL:
            return f"lower({column})", [identity.lower() for identity in identities]
        return column, identities

    def _identities(self, statement: str):
        return text(statement).bindparams(bindparam("identities", expanding=True, type_=sqlalchemy.String()))

    def _scan(self, connection, plan: ActionPlan, work: CategoryWork, *, lock: bool) -> dict:
        """Read the rows the action touches: their count, the fields it changes, their fingerprint,
        and (for keyed hashes) the distinct values to replace."""
        table, where, parameters = self._where(plan, work)
        locking = " FOR UPDATE" if lock and self.engine.dialect.name == "postgresql" else ""
        result = connection.execute(
            self._identities(f"SELECT * FROM {table} WHERE {where}{locking}"),
            parameters,
            execution_options={"stream_results": True, "yield_per": CHUNK_ROWS},
        )
        fingerprint, rows, fields = Fingerprint(), 0, 0
        hashed = [name for name, rule in work.anonymise.items() if rule.erase_strategy == "hash"]
        hashed_values = set()
        for row in result.mappings():
            row = dict(row)
            fingerprint.add(fingerprinted(work, plan.kind, row))
            rows += 1
            fields += changed_fields(work, plan.kind, row)
            if hashed:
                hashed_values.add(tuple(row.get(name) for name in hashed))
        return {
            "counts": {"category": work.category.slug, "rows": rows, "fields": fields},
            "fingerprint": fingerprint.hexdigest(),
            "hashed": hashed,
            "hashed_values": hashed_values,
        }

    def _refuse_identifiers_held(self, connection, plan: ActionPlan, scans: list[dict]) -> None:
        rows_found = [scan["counts"]["rows"] for scan in scans]
        refuse_identifiers_held(
            self.source, plan, rows_found, lambda category, value: self._count_found_by(connection, category, value)
        )

    def _count_found_by(self, connection, category, value: str) -> int:
        """How many rows of `category` a search by `value` finds: as an erasure or a restriction searches (its table
        and identity field) and as the package does (its query, by the value as written and as identifiers are
        spelled, see PackageWriter._corrected_in), whichever finds more."""
        counts = [0]
        if category.table and category.identity_field:
            column, identities = self._compared(self._quote(category.identity_field), [value])
            statement = f"SELECT count(*) FROM {self._quote(category.table)} WHERE {column} IN :identities"
            counts.append(connection.execute(self._identities(statement), {"identities": identities}).scalar())
        if category.query:
            spellings = sorted({value, normalised_identifier(self.source.identity_kind, value)})
            statement = f"SELECT count(*) FROM ({category.query}) AS found_rows"
            counts.append(connection.execute(self._identities(statement), {"identities": spellings}).scalar())
        return max(counts)

    def _change(self, connection, plan: ActionPlan, work: CategoryWork, scan: dict) -> None:
        table, where, parameters = self._where(plan, work)
        if plan.kind == ActionKind.ERASE and work.deletes:
            connection.execute(self._identities(f"DELETE FROM {table} WHERE {where}"), parameters)
            return
        if not scan["hashed"]:
            values = new_values(work, plan.kind, {})
            if values:
                self._update(connection, table, where, parameters, values, {})
            return
        # A keyed hash depends on the old value: one statement per distinct
        # combination of hashed values, each setting the other fields too.
        for old in scan["hashed_values"]:
            row = dict(zip(scan["hashed"], old, strict=True))
            self._update(connection, table, where, parameters, new_values(work, plan.kind, row), row)

    def _update(self, connection, table, where: str, parameters: dict, values: dict, matching: dict) -> None:
        """Set `values` in the rows that `where` (with its parameters) and `matching` pick."""
        assignments = ", ".join(f"{self._quote(name)} = :set_{i}" for i, name in enumerate(values))
        parameters = {**parameters, **{f"set_{i}": value for i, value in enumerate(values.values())}}
        conditions = [where]
        for i, (name, value) in enumerate(matching.items()):
            if value is None:
                conditions.append(f"{self._quote(name)} IS NULL")
            else:
                conditions.append(f"{self._quote(name)} = :old_{i}")
                parameters[f"old_{i}"] = value
        statement = f"UPDATE {table} SET {assignments} WHERE {' AND '.join(conditions)}"
        connection.execute(self._identities(statement), parameters)

    def _list_target(self, restriction_list: str) -> tuple[str, str]:
        table, _, column = restriction_list.rpartition(".")
        return self._quote(table), self._quote(column)

    def _list_entries_to_change(self, connection, plan: ActionPlan) -> list[str]:
        """The identities a restriction would add to the source's restriction list (those not on it yet),
        or its lifting would remove from it (those on it)."""
        if plan.kind not in (ActionKind.RESTRICT, ActionKind.LIFT_RESTRICTION) or not plan.restriction_list:
            return []
        table, column = self._list_target(plan.restriction_list)
        compared, identities = self._compared(column, plan.identities)
        present = connection.execute(
            self._identities(f"SELECT {column} FROM {table} WHERE {compared} IN :identities"), {"identities": identities}
        ).scalars()
        listed = {str(value) for value in present}
        if plan.kind == ActionKind.LIFT_RESTRICTION:
            return sorted(listed)  # as the list spells them: the lifting deletes those rows
        _, listed_as_compared = self._compared(column, list(listed))
        return sorted(set(identities) - set(listed_as_compared))

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
        raw = self._retrying(self._raw_connection)
        child = None
        try:
            with raw.cursor() as cursor:
                query = self._literal_query(cursor, category, identities)
                # For this transaction only: the connection goes back to the pool, where a read-only session
                # would refuse the next erasure or restriction on this source.
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                cursor.execute("SELECT pg_export_snapshot()")
                snapshot = cursor.fetchone()[0]
                cursor.execute(f"SELECT * FROM ({query}) AS source_rows LIMIT 0")
                description = cursor.description
                columns = [column.name for column in description]
                # The string types (text, varchar, char, citext, a domain over one): what someone may have typed.
                type_oids = list({column.type_code for column in description})
                cursor.execute("SELECT oid FROM pg_type WHERE oid = ANY(%s) AND typcategory = 'S'", [type_oids])
                string_oids = {oid for (oid,) in cursor.fetchall()}
                text_columns = {column.name for column in description if column.type_code in string_oids}
                select = ", ".join(self._select_column(column, category.masked_field_list) for column in columns)
                masked_query = f"SELECT {select} FROM ({query}) AS source_rows"
                csv_select = ", ".join(_csv_column(column, column in text_columns) for column in columns)
                csv_query = f"SELECT {csv_select} FROM ({masked_query}) AS masked_rows"
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
                    "query": csv_query,
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
            raise self._failed(error) from error
        finally:
            if child is not None and child.poll() is None:
                child.kill()
                child.wait()
            raw.close()

    def _raw_connection(self):
        """A connection from the pool, for the COPY path: connecting is tried again while it fails in a way that may
        pass; COPY, writing the files as it reads, is not."""
        try:
            return self.engine.raw_connection()
        except Exception as error:  # the driver's own errors come through here, not SQLAlchemy's
            raise self._failure(error, connecting=True) from error

    def _literal_query(self, cursor, category, identities: list[str]) -> str:
        """The category's query with `identities` written into it by psycopg2's own quoting, for the statements
        that run it without parameters (COPY, here and in the child process). Not SQLAlchemy's literal_binds:
        its psycopg2 dialect doubles every % for a parameterised run, and run without parameters the doubled
        % stayed, so an identifier holding one (a%b@example.com) matched nothing and the package said no data
        was found. mogrify takes the doubled % back to one, as a parameterised run would."""
        compiled = (
            self._statement(category)
            .bindparams(identities=list(identities))
            .compile(dialect=self.engine.dialect, compile_kwargs={"render_postcompile": True})
        )
        return cursor.mogrify(str(compiled), compiled.params).decode(encodings[cursor.connection.encoding])

    @staticmethod
    def _select_column(column: str, masked: list[str]) -> str:
        quoted = '"' + column.replace('"', '""') + '"'
        if column not in masked:
            return quoted
        # As mask_value: the last two characters only where at least four others stay hidden.
        return (
            f"CASE WHEN {quoted} IS NULL THEN NULL WHEN length({quoted}::text) >= {KEEP_TAIL_FROM_LENGTH} "
            f"THEN '{MASK}' || right({quoted}::text, 2) ELSE '{MASK}' END AS {quoted}"
        )
