"""SQL sources: any SQLAlchemy database URL, with a COPY fast path for PostgreSQL.

A category's query uses the placeholder :identities, expanded into an IN
list. Rows stream through a server-side cursor in chunks of CHUNK_ROWS; on
PostgreSQL, `copy_export` has the server format both files with COPY.
"""

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

import sqlalchemy
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
    new_values,
    refuse_identifiers_held,
)
from requests_app.sources.base import KEEP_TAIL_FROM_LENGTH, MASK, SourceError, mask_value, secret_from_env
from requests_app.spreadsheets import FORMULA_SQL, spreadsheet_safe

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
        schema, _, name = table.rpartition(".")
        try:
            inspector = sqlalchemy.inspect(self.engine)
            if not inspector.has_table(name, schema=schema or None):
                return None
            return [column["name"] for column in inspector.get_columns(name, schema=schema or None)]
        except SQLAlchemyError as error:
            raise self._failed(error) from error

    def stream(self, category, identities: list[str]) -> tuple[list[str], Iterator[tuple]]:
        """The category's columns, and its rows for `identities` with other people's fields masked."""
        try:
            connection = self.engine.connect().execution_options(stream_results=True, yield_per=CHUNK_ROWS)
        except SQLAlchemyError as error:
            raise self._failed(error) from error
        try:
            result = connection.execute(self._statement(category), {"identities": list(identities)})
            columns = list(result.keys())
        except SQLAlchemyError as error:
            connection.close()  # back to the pool: a failing source must not use it up
            raise self._failed(error) from error
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
        the dry run, not at execution."""
        try:
            with self.engine.connect() as connection:
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
            raise self._failed(error) from error
        return {
            "categories": [scan["counts"] for scan in scans],
            "list_entries": len(list_entries),
            "fingerprint": _combined(scans),
        }

    def apply(self, plan: ActionPlan, fingerprint: str, on_progress=lambda progress: None) -> dict:
        """All categories change in one transaction: a failure anywhere leaves the source as it was."""
        try:
            with self.engine.begin() as connection:
                # Locking the rows (where the database can) keeps them as the check saw them until commit.
                scans = [self._scan(connection, plan, work, lock=True) for work in plan.categories]
                if _combined(scans) != fingerprint:
                    raise StaleDryRun(f"{self.source.slug}: the rows changed since the dry run")
                self._refuse_identifiers_held(connection, plan, scans)  # raised, it rolls back: nothing changed
                list_entries = self._change_all(connection, plan, scans, on_progress)
        except StaleDryRun:
            raise
        except SQLAlchemyError as error:
            raise self._failed(error) from error
        return {"categories": [scan["counts"] for scan in scans], "list_entries": len(list_entries)}

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
            fingerprint.add(row)
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
        try:
            raw = self.engine.raw_connection()
        except Exception as error:  # the driver's own errors come through here, not SQLAlchemy's
            raise self._failed(error) from error
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
