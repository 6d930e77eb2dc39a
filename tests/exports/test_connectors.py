"""The connector contract, run against a real SQLite file, a real PostgreSQL
database and a real HTTP server; and how each kind of source failure surfaces."""

import contextlib
import csv
import gc
import hashlib
import inspect
import io
import json
import os
import sqlite3
import time
import traceback
import zipfile
from urllib.parse import quote

import pytest
from django.conf import settings
from django.utils import timezone

from requests_app.exports.package import PackageWriter
from requests_app.models import ConnectorKind, IdentityKind, SourceCategory, SourceSystem, Status, SubjectIdentity
from requests_app.sources import SourceError, connector_for, mask_value
from requests_app.sources import base as sources_base
from requests_app.sources import http as http_sources
from tests.exports.conftest import closed_port, pg_connect
from tests.factories import request_in_status

pytestmark = pytest.mark.usefixtures("export_settings")

COLUMNS = ["caller", "callee", "started_at", "duration_s"]
ALICE, BOB, CAROL = "+32470000001", "+32470000002", "+32470000003"
CALLS = [
    {"caller": ALICE, "callee": "+32499123401", "started_at": "2026-01-05 10:00:00", "duration_s": 61},
    {"caller": BOB, "callee": "+32499123499", "started_at": "2026-01-05 11:00:00", "duration_s": 300},
    {"caller": ALICE, "callee": "+32499123402", "started_at": "2026-01-06 09:30:00", "duration_s": 5},
    {"caller": CAROL, "callee": "+32488000077", "started_at": "2026-01-07 18:15:00", "duration_s": 42},
    {"caller": ALICE, "callee": None, "started_at": "2026-01-08 08:00:00", "duration_s": 0},
    {"caller": CAROL, "callee": "+32488000078", "started_at": "2026-01-09 12:00:00", "duration_s": 7},
]
# An identity nobody has, with quote characters that would widen an unsafely built query.
HOSTILE = "nobody' OR '1'='1"
ASKED = [ALICE, CAROL, HOSTILE]
SQL_QUERY = "SELECT caller, callee, started_at, duration_s FROM contract_calls WHERE caller IN :identities ORDER BY id"
CREATE_TABLE = (
    "CREATE TABLE contract_calls (id INTEGER PRIMARY KEY, caller VARCHAR(20) NOT NULL, callee VARCHAR(20), "
    "started_at VARCHAR(30) NOT NULL, duration_s INTEGER NOT NULL)"
)


def expected_rows(identities):
    return [
        (call["caller"], mask_value(call["callee"]), call["started_at"], call["duration_s"])
        for call in CALLS
        if call["caller"] in identities
    ]


def unordered(rows):
    return sorted(rows, key=repr)


def make_source(slug, connector, *, url="", env="", query=SQL_QUERY, masked="callee"):
    """Unsaved inventory rows: the connectors read only their fields."""
    source = SourceSystem(
        slug=slug, name=slug, connector=connector, connection_url=url, connection_env=env,
        identity_kind=IdentityKind.PHONE, purposes="-", legal_basis="contract", retention="-", origin="-",
    )
    category = SourceCategory(source=source, slug="calls", category="electronic_communications", query=query,
                              masked_fields=masked)
    return source, category


def insert_calls(connection, placeholder):
    cursor = connection.cursor()
    cursor.execute(CREATE_TABLE)
    cursor.executemany(
        f"INSERT INTO contract_calls VALUES ({', '.join([placeholder] * 5)})",
        [(i + 1, c["caller"], c["callee"], c["started_at"], c["duration_s"]) for i, c in enumerate(CALLS)],
    )
    connection.commit()


@pytest.fixture
def sqlite_backend(tmp_path):
    path = tmp_path / "contract_sources.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as connection:
        insert_calls(connection, "?")
    return make_source("billing-sqlite", ConnectorKind.SQL, url=f"sqlite:///{path}")


@pytest.fixture
def postgres_backend(pg_sources, monkeypatch):
    with contextlib.closing(pg_connect()) as connection:
        insert_calls(connection, "%s")
    # As deployed: the full database URL is a secret in the environment.
    monkeypatch.setenv("SOURCE_CONTRACT_PG_URL", pg_sources)
    return make_source("billing-pg", ConnectorKind.SQL, env="SOURCE_CONTRACT_PG_URL")


@pytest.fixture
def http_backend(partner_api):
    for call in CALLS:
        partner_api.records.setdefault(call["caller"], []).append(call)
    return make_source(
        "partner-api", ConnectorKind.HTTP, url=partner_api.base_url, env="SOURCE_PARTNER_API_TOKEN",
        query="/subscribers/{identity}/calls",
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "http"])
def backend(request):
    return request.getfixturevalue(f"{request.param}_backend")


def stream_all(source, category, identities):
    columns, rows = connector_for(source).stream(category, identities)
    return columns, list(rows)


# --- The contract --------------------------------------------------------------------------


def test_mask_value_keeps_only_the_last_two_characters_and_only_of_a_value_long_enough():
    assert mask_value("+32499123456") == "*****56"
    assert mask_value(123456) == "*****56"
    # Two kept characters would be half of these, or all: nothing is kept.
    assert mask_value(12345) == "*****"
    assert mask_value("ab") == "*****"
    assert mask_value("7") == "*****"
    assert mask_value(None) is None


def test_stream_returns_only_the_rows_of_the_given_identities(backend):
    source, category = backend
    columns, rows = stream_all(source, category, ASKED)
    assert unordered(rows) == unordered(expected_rows({ALICE, CAROL}))
    assert {row[0] for row in rows} == {ALICE, CAROL}


def test_stream_gives_the_columns_in_the_source_order(backend):
    source, category = backend
    columns, rows = stream_all(source, category, [ALICE])
    assert columns == COLUMNS
    assert all(len(row) == len(COLUMNS) for row in rows)


def test_stream_masks_other_peoples_numbers_keeping_the_last_two_digits(backend):
    source, category = backend
    columns, rows = stream_all(source, category, [ALICE, CAROL])
    callees = [row[columns.index("callee")] for row in rows]
    assert sorted(c for c in callees if c is not None) == ["*****01", "*****02", "*****77", "*****78"]
    assert callees.count(None) == 1  # an unknown other party stays empty, not "*****ne"
    raw_numbers = {call["callee"] for call in CALLS if call["callee"]}
    assert not raw_numbers & {str(value) for row in rows for value in row}


def test_stream_without_masked_fields_returns_the_values_as_stored(backend):
    source, category = backend
    category.masked_fields = ""
    columns, rows = stream_all(source, category, [CAROL])
    assert unordered(rows) == unordered(
        [(c["caller"], c["callee"], c["started_at"], c["duration_s"]) for c in CALLS if c["caller"] == CAROL]
    )


def test_stream_of_an_unknown_identity_is_empty_not_an_error(backend):
    source, category = backend
    columns, rows = stream_all(source, category, [HOSTILE])
    assert rows == []


def test_http_connector_follows_next_links_and_sends_the_token_on_every_page(http_backend, partner_api):
    source, category = http_backend
    columns, rows = stream_all(source, category, [ALICE])
    assert len(rows) == 3  # two pages of two
    alice_pages = [path for path, _ in partner_api.seen if "%2B32470000001" in path]
    assert len(alice_pages) == 2 and alice_pages[1].endswith("page=2")
    assert {auth for _, auth in partner_api.seen} == {"Bearer partner-token-9f8e7d"}


def test_http_connector_keeps_a_field_only_later_records_have(http_backend, partner_api):
    """Records need not share their keys: one on the second page with a field of its own loses nothing."""
    source, category = http_backend
    category.masked_fields = "callee"
    partner_api.records[ALICE] = [
        {"caller": ALICE, "callee": "+32470000077"},
        {"caller": ALICE},
        {"caller": ALICE, "callee": "+32470000078", "note": "refund promised"},  # page 2
    ]
    columns, rows = stream_all(source, category, [ALICE])
    assert columns == ["caller", "callee", "note"]
    assert rows == [(ALICE, "*****77", None), (ALICE, None, None), (ALICE, "*****78", "refund promised")]


@pytest.mark.parametrize("identity", ["..", "."])
def test_http_connector_refuses_an_identity_of_dots_before_asking_the_partner(http_backend, partner_api, identity):
    """".." took /subscribers/{identity}/calls up to /calls: every subscriber's records in one subject's package."""
    source, category = http_backend
    message = assert_source_error(source, category, [identity])
    assert message == "partner-api: an identifier or record key of only dots cannot go in a path"
    assert partner_api.seen == []


@pytest.mark.parametrize("identity", ["a/../b", "%2e%2e", "../calls"])
def test_http_connector_reads_an_identity_that_looks_like_a_path_as_one_subscriber(http_backend, partner_api, identity):
    source, category = http_backend
    partner_api.records[identity] = [{"caller": identity, "callee": None, "started_at": "2026-01-10 10:00:00", "duration_s": 1}]
    columns, rows = stream_all(source, category, [identity])
    assert rows == [(identity, None, "2026-01-10 10:00:00", 1)]
    assert [path for path, _ in partner_api.seen] == [f"/api/subscribers/{quote(identity, safe='')}/calls"]


def test_http_connector_sends_the_token_in_a_custom_header_without_bearer(partner_api):
    source, category = make_source("partner-api", ConnectorKind.HTTP, url=partner_api.base_url,
                                   env="SOURCE_PARTNER_API_TOKEN", query="/subscribers/{identity}/calls")
    source.http_auth_header = "X-Api-Key"
    connector = connector_for(source)
    assert connector.session.headers["X-Api-Key"] == "partner-token-9f8e7d"
    assert "Authorization" not in connector.session.headers


# --- PostgreSQL: the COPY fast path gives what the generic path gives ---------------------


def run_copy_export(connector, category, identities, tmp_path):
    """Run `copy_export` and return (row count, {"jsonl": bytes, "csv": bytes}).

    Two signatures are in use in this code base: the original
    copy_export(category, identities, open_entry, *, on_progress) that writes
    both files through open_entry(suffix), and the newer
    copy_export(category, identities, open_jsonl, csv_part_path, compresslevel)
    whose CSV a child process writes into a one-member ZIP and which returns
    (rows, {"sha256", "bytes"}) for it. Both must give the same files.
    """
    written = {}

    @contextlib.contextmanager
    def capture(suffix):
        buffer = io.BytesIO()
        yield buffer
        written[suffix] = buffer.getvalue()

    parameters = inspect.signature(connector.copy_export).parameters
    if "csv_part_path" in parameters:
        part_path = tmp_path / "csv-part.zip"
        rows, csv_part = connector.copy_export(category, identities, lambda: capture("jsonl"), str(part_path), 1)
        with zipfile.ZipFile(part_path) as part:
            assert part.testzip() is None
            written["csv"] = part.read("part")
        assert csv_part == {"sha256": hashlib.sha256(written["csv"]).hexdigest(), "bytes": len(written["csv"])}
    else:
        rows = connector.copy_export(category, identities, capture)
    return rows, written


@pytest.mark.postgres
def test_copy_export_writes_the_same_rows_as_stream_as_json_lines_and_csv(postgres_backend, tmp_path):
    source, category = postgres_backend
    connector = connector_for(source)
    assert connector.can_copy
    columns, streamed = stream_all(source, category, ASKED)

    count, written = run_copy_export(connector, category, ASKED, tmp_path)

    assert count == len(streamed) == 5
    json_rows = [json.loads(line) for line in written["jsonl"].decode().splitlines()]
    assert unordered(json_rows) == unordered([dict(zip(columns, row)) for row in streamed])
    assert all(list(record) == COLUMNS for record in json_rows)
    csv_rows = list(csv.reader(io.StringIO(written["csv"].decode("utf-8-sig"))))
    assert csv_rows[0] == COLUMNS
    as_csv_text = [["" if value is None else str(value) for value in row] for row in streamed]
    assert unordered(csv_rows[1:]) == unordered(as_csv_text)


# Identifiers a customer reference or an email address may hold, which SQL or the driver give a meaning to.
QUOTED_IDENTIFIERS = ["a%b", "50%%", "o'k", "back\\slash", "%s"]


@pytest.mark.postgres
def test_copy_export_finds_the_rows_of_identifiers_holding_percent_quote_and_backslash(postgres_backend, tmp_path):
    """The query was written out with SQLAlchemy's literal_binds, which doubles every % for a parameterised run;
    run without parameters (COPY), 'a%b' was searched as 'a%%b', found nothing, and the package said no data was
    found, while the erasure (with parameters) found the rows."""
    source, category = postgres_backend
    with contextlib.closing(pg_connect()) as connection, connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO contract_calls VALUES (%s, %s, %s, '2026-02-01 10:00:00', 1)",
            [(100 + i, identifier, f"+3249900000{i}") for i, identifier in enumerate(QUOTED_IDENTIFIERS)],
        )
        # Would be found too if a % were read as a LIKE wildcard or the quoting were widened.
        cursor.execute("INSERT INTO contract_calls VALUES (200, 'aXb', NULL, '2026-02-01 10:00:00', 1)")
        connection.commit()
    columns, streamed = stream_all(source, category, QUOTED_IDENTIFIERS)

    count, written = run_copy_export(connector_for(source), category, QUOTED_IDENTIFIERS, tmp_path)

    assert sorted(row[0] for row in streamed) == sorted(QUOTED_IDENTIFIERS)
    assert count == len(QUOTED_IDENTIFIERS)
    assert sorted(json.loads(line)["caller"] for line in written["jsonl"].decode().splitlines()) == sorted(QUOTED_IDENTIFIERS)
    csv_rows = list(csv.reader(io.StringIO(written["csv"].decode("utf-8-sig"))))
    assert sorted(row[0] for row in csv_rows[1:]) == sorted(QUOTED_IDENTIFIERS)


@pytest.mark.postgres
def test_copy_export_keeps_a_percent_the_categorys_own_query_holds(postgres_backend, tmp_path):
    """A LIKE pattern in the inventory's query is the query's own text: written out for COPY, its % stays one."""
    source, category = postgres_backend
    category.query = "SELECT caller, started_at FROM contract_calls WHERE caller IN :identities AND started_at LIKE '2026-01-0%' ORDER BY id"

    count, written = run_copy_export(connector_for(source), category, [ALICE], tmp_path)

    assert count == 3


@pytest.mark.postgres
def test_copy_export_never_writes_the_unmasked_numbers(postgres_backend, tmp_path):
    source, category = postgres_backend
    count, written = run_copy_export(connector_for(source), category, [ALICE, BOB, CAROL], tmp_path)
    assert count == len(CALLS)
    for data in written.values():
        text = data.decode()
        for call in CALLS:
            if call["callee"]:
                assert call["callee"] not in text
                assert "*****" + call["callee"][-2:] in text


@pytest.mark.postgres
def test_a_copy_export_leaves_the_sources_pooled_connections_writable(postgres_backend, tmp_path):
    """The next erasure or restriction on the source takes a connection from the same pool: a read-only
    session left on it failed them with ReadOnlySqlTransaction until the worker restarted."""
    import sqlalchemy

    source, category = postgres_backend
    connector = connector_for(source)
    run_copy_export(connector, category, [ALICE], tmp_path)
    with connector.engine.begin() as connection:  # the pool's one connection, as the copy just left it
        connection.execute(sqlalchemy.text("UPDATE contract_calls SET duration_s = duration_s + 1"))
        assert connection.execute(sqlalchemy.text("SHOW transaction_read_only")).scalar() == "off"


@pytest.mark.postgres
def test_the_copy_paths_csv_never_hands_a_spreadsheet_a_formula(postgres_backend, tmp_path):
    """Text someone typed into a source (=HYPERLINK…, =cmd|…) gets a leading ' in the CSV, as in the Python
    path's (package.csv_values); a signed number stays a number, and the JSON lines keep every value as it is."""
    source, category = postgres_backend
    with contextlib.closing(pg_connect()) as connection, connection.cursor() as cursor:
        cursor.execute("UPDATE contract_calls SET started_at = '=1+1' WHERE id = 1")
        cursor.execute("UPDATE contract_calls SET started_at = '-5' WHERE id = 3")
        connection.commit()

    count, written = run_copy_export(connector_for(source), category, [ALICE], tmp_path)

    rows = list(csv.reader(io.StringIO(written["csv"].decode("utf-8-sig"))))
    assert [row[2] for row in rows[1:]] == ["'=1+1", "-5", "2026-01-08 08:00:00"]
    assert [row[3] for row in rows[1:]] == ["61", "5", "0"]  # numbers as COPY writes them
    assert '"started_at":"=1+1"' in written["jsonl"].decode()


@pytest.mark.postgres
def test_the_copy_paths_csv_header_never_hands_a_spreadsheet_a_formula(postgres_backend, tmp_path):
    """COPY's header row is the query's column names, which may be anything; the JSON lines keep them as they are."""
    source, category = postgres_backend
    category.query = (
        'SELECT caller AS "=HYPERLINK(""http://evil.example"")", duration_s AS "@cost", started_at AS "-5" '
        "FROM contract_calls WHERE caller IN :identities ORDER BY id"
    )

    count, written = run_copy_export(connector_for(source), category, [CAROL], tmp_path)

    rows = list(csv.reader(io.StringIO(written["csv"].decode("utf-8-sig"))))
    assert rows[0] == ["'=HYPERLINK(\"http://evil.example\")", "'@cost", "-5"]
    assert rows[1] == [CAROL, "42", "2026-01-07 18:15:00"]
    assert list(json.loads(written["jsonl"].decode().splitlines()[0])) == ['=HYPERLINK("http://evil.example")', "@cost", "-5"]


def test_the_python_paths_csv_header_never_hands_a_spreadsheet_a_formula(db, http_backend, partner_api, tmp_path):
    """An HTTP source's columns are the partner's JSON keys: one named like a formula ran when the subject opened the CSV."""
    source, category = http_backend
    source.save()
    category.source = source
    category.save()
    partner_api.records[ALICE] = [{"caller": ALICE, "=HYPERLINK(\"http://evil.example\")": "x", "+cmd": "-5"}]
    request = request_in_status(Status.IN_PROGRESS, subject_phone=ALICE)
    SubjectIdentity.objects.filter(request=request, kind=IdentityKind.PHONE).update(verified_at=timezone.now())
    os.makedirs(settings.EXPORT_WORK_DIR, exist_ok=True)

    writer = PackageWriter(str(tmp_path / "package.zip"), request=request, kind="access")
    writer.add_source(source)
    writer.finish([source])

    with zipfile.ZipFile(tmp_path / "package.zip") as package:
        rows = list(csv.reader(io.StringIO(package.read("data/partner-api/calls.csv").decode("utf-8-sig"))))
        record = json.loads(package.read("data/partner-api/calls.jsonl").decode().splitlines()[0])
    assert rows == [["caller", "'=HYPERLINK(\"http://evil.example\")", "'+cmd"], [ALICE, "x", "-5"]]
    assert list(record) == ["caller", '=HYPERLINK("http://evil.example")', "+cmd"]


def test_the_python_paths_csv_never_hands_a_spreadsheet_a_formula():
    from requests_app.exports.package import csv_values

    assert csv_values(("=1+1", "@SUM(A1)", "-5", "+32470000001", -5, True, {"a": "=x"})) == (
        "'=1+1", "'@SUM(A1)", "-5", "+32470000001", -5, "true", '{"a": "=x"}'
    )


@pytest.mark.postgres
def test_copy_export_of_an_unknown_identity_writes_only_the_csv_header(postgres_backend, tmp_path):
    source, category = postgres_backend
    count, written = run_copy_export(connector_for(source), category, [HOSTILE], tmp_path)
    assert count == 0
    assert written["jsonl"] == b""
    assert written["csv"].decode("utf-8-sig").splitlines() == [",".join(COLUMNS)]


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_package_from_the_copy_path_holds_the_same_rows_as_stream(postgres_backend, tmp_path):
    """Through PackageWriter, the way compile_export uses the COPY path."""
    source, category = postgres_backend
    source.save()
    category.source = source
    category.save()
    request = request_in_status(Status.IN_PROGRESS, subject_phone=ALICE)
    SubjectIdentity.objects.filter(request=request, kind=IdentityKind.PHONE).update(verified_at=timezone.now())
    SubjectIdentity.objects.create(request=request, kind=IdentityKind.PHONE, value=CAROL, verified_at=timezone.now())
    SubjectIdentity.objects.create(request=request, kind=IdentityKind.PHONE, value=BOB)  # not verified
    path = tmp_path / "package.zip"
    os.makedirs(settings.EXPORT_WORK_DIR, exist_ok=True)

    writer = PackageWriter(str(path), request=request, kind="access")
    writer.add_source(source)
    manifest = writer.finish([source])

    columns, streamed = stream_all(source, category, [ALICE, CAROL])
    with zipfile.ZipFile(path) as package:
        assert package.testzip() is None
        jsonl = package.read("data/billing-pg/calls.jsonl").decode()
        csv_text = package.read("data/billing-pg/calls.csv").decode("utf-8-sig")
        for entry in manifest["files"]:
            assert hashlib.sha256(package.read(entry["path"])).hexdigest() == entry["sha256"]
    assert unordered([json.loads(line) for line in jsonl.splitlines()]) == unordered(
        [dict(zip(columns, row)) for row in streamed]
    )
    csv_rows = list(csv.reader(io.StringIO(csv_text)))
    assert csv_rows[0] == COLUMNS
    assert unordered(csv_rows[1:]) == unordered([["" if v is None else str(v) for v in row] for row in streamed])
    assert manifest["rows"] == len(streamed) == 5
    assert BOB not in jsonl and BOB not in csv_text


def test_a_package_searches_an_http_source_by_the_number_its_rectification_wrote_there(db, http_backend, tmp_path):
    """Alice's calls were filed under a wrong number (Carol's record here stands for them), which the rectification,
    carried out first, corrected: the partner now lists them under the corrected number only, which the package
    must ask for too, or the subject's copy says no call of theirs was found there."""
    from requests_app.models import ActionKind, ActionStatus, RectificationChange, RequestType, SourceAction
    from requests_app.services.intake import RightDetails

    source, category = http_backend
    source.save()
    category.source, category.identity_field = source, "caller"
    category.save()
    request = request_in_status(
        Status.IN_PROGRESS, subject_phone=ALICE, rights=[RightDetails(RequestType.RECTIFICATION), RightDetails(RequestType.ACCESS)]
    )
    SubjectIdentity.objects.filter(request=request, kind=IdentityKind.PHONE).update(verified_at=timezone.now())
    RectificationChange.objects.create(request=request, category=category, field="caller", value=CAROL)
    SourceAction.objects.create(
        request=request, source=source, kind=ActionKind.RECTIFY, status=ActionStatus.DONE,
        result={"categories": [{"category": "calls", "rows": 2, "fields": 2}]},
    )
    os.makedirs(settings.EXPORT_WORK_DIR, exist_ok=True)

    writer = PackageWriter(str(tmp_path / "package.zip"), request=request, kind="access")
    writer.add_source(source)
    manifest = writer.finish([source])

    with zipfile.ZipFile(tmp_path / "package.zip") as package:
        callers = [json.loads(line)["caller"] for line in package.read("data/partner-api/calls.jsonl").decode().splitlines()]
    assert sorted(callers) == sorted([ALICE] * 3 + [CAROL] * 2)
    assert manifest["identities_searched"] == [
        {"source": "partner-api", "kind": "phone", "value": ALICE},
        {"source": "partner-api", "kind": "phone", "value": CAROL, "corrected": True},
    ]


# --- Failures: each is a SourceError that names the source -----------------------------------


def assert_source_error(source, category, identities=(ALICE,), match=""):
    with pytest.raises(SourceError) as caught:
        columns, rows = connector_for(source).stream(category, list(identities))
        list(rows)
    message = str(caught.value)
    assert message.startswith(f"{source.slug}:")
    assert match in message
    return message


def test_http_connection_refused_is_a_source_error(monkeypatch):
    monkeypatch.setenv("SOURCE_PARTNER_API_TOKEN", "anything")
    source, category = make_source("partner-down", ConnectorKind.HTTP, url=f"http://127.0.0.1:{closed_port()}/api/",
                                   env="SOURCE_PARTNER_API_TOKEN", query="/subscribers/{identity}/calls")
    assert_source_error(source, category, match="connection failed")


def test_sql_connection_refused_is_a_source_error_without_the_password(monkeypatch):
    monkeypatch.setenv("SOURCE_DOWN_DB_URL", "postgres://reader:s3cret-pw@127.0.0.1:1/sources")
    source, category = make_source("cdr-down", ConnectorKind.SQL, env="SOURCE_DOWN_DB_URL")
    message = assert_source_error(source, category, match="OperationalError")
    assert "s3cret-pw" not in message


def test_sql_copy_path_connection_refused_is_a_source_error(monkeypatch, tmp_path):
    monkeypatch.setenv("SOURCE_DOWN_DB_URL", "postgres://reader:s3cret-pw@127.0.0.1:1/sources")
    source, category = make_source("cdr-down", ConnectorKind.SQL, env="SOURCE_DOWN_DB_URL")
    with pytest.raises(SourceError, match=r"^cdr-down: ") as caught:
        run_copy_export(connector_for(source), category, [ALICE], tmp_path)
    assert "s3cret-pw" not in str(caught.value)


def test_sql_missing_table_is_a_source_error(sqlite_backend):
    source, category = sqlite_backend
    category.query = "SELECT * FROM no_such_table WHERE caller IN :identities"
    message = assert_source_error(source, category)
    # The kind of error, and what SQLite names of the schema: database messages can quote the subject's data.
    assert message.split(": ", 1)[1] in ("OperationalError: no such table: no_such_table", "UndefinedTable (SQLSTATE 42P01)")


def traceback_of(source, category, identities) -> str:
    """The whole traceback a log would print for the source's failure, its chained causes included."""
    with pytest.raises(SourceError) as caught:
        columns, rows = connector_for(source).stream(category, list(identities))
        list(rows)
    return "".join(traceback.format_exception(caught.value))


def test_a_failed_query_logs_no_identifier_even_in_its_traceback(sqlite_backend):
    """SQLAlchemy's error quotes the statement's parameters: logged with its traceback, the subject's number was."""
    source, category = sqlite_backend
    category.query = "SELECT * FROM no_such_table WHERE caller IN :identities"
    logged = traceback_of(source, category, [ALICE])
    assert "no_such_table" in logged and ALICE.lstrip("+") not in logged


def test_a_failed_http_call_logs_no_identifier_even_in_its_traceback(monkeypatch):
    """requests' error quotes the URL, whose path holds the identifier here."""
    monkeypatch.setenv("SOURCE_PARTNER_API_TOKEN", "anything")
    source, category = make_source("partner-down", ConnectorKind.HTTP, url=f"http://127.0.0.1:{closed_port()}/api/",
                                   env="SOURCE_PARTNER_API_TOKEN", query="/subscribers/{identity}/calls")
    logged = traceback_of(source, category, [ALICE])
    assert "partner-down: connection failed (ConnectionError)" in logged and ALICE.lstrip("+") not in logged  # "%2B32…" in a URL


def test_a_sqlite_source_moved_away_is_not_created_empty_and_is_found_again_once_back(sqlite_backend, tmp_path):
    """SQLite made an empty database where the file had been, and the pool kept its connection to it: every
    search then failed or found nothing, and putting the file back did not help until a restart."""
    source, category = sqlite_backend
    path = tmp_path / "contract_sources.sqlite3"
    path.rename(tmp_path / "moved.sqlite3")

    message = assert_source_error(source, category)

    assert message == "billing-sqlite: OperationalError: unable to open database file"
    assert not path.exists()
    (tmp_path / "moved.sqlite3").rename(path)
    assert len(list(connector_for(source).stream(category, [ALICE])[1])) > 0


def test_a_failed_query_gives_its_database_connection_back(sqlite_backend):
    """Else every failing export keeps a pooled connection until the garbage collector runs."""
    source, category = sqlite_backend
    category.query = "SELECT * FROM no_such_table WHERE caller IN :identities"
    connector = connector_for(source)
    gc.collect()
    gc.disable()  # a collection would hide a connection that is only freed with a reference cycle
    try:
        with pytest.raises(SourceError):
            connector.stream(category, [ALICE])
        checked_out = connector.engine.pool.checkedout()
    finally:
        gc.enable()
    assert checked_out == 0


def test_a_fully_read_stream_gives_its_database_connection_back(sqlite_backend):
    source, category = sqlite_backend
    connector = connector_for(source)
    columns, rows = connector.stream(category, [ALICE])
    assert connector.engine.pool.checkedout() == 1  # held while the rows stream
    assert len(list(rows)) == 3
    assert connector.engine.pool.checkedout() == 0


def test_http_bad_credentials_are_a_source_error(http_backend, monkeypatch):
    source, category = http_backend
    monkeypatch.setenv("SOURCE_PARTNER_API_TOKEN", "wrong-token")
    assert_source_error(source, category, match="credentials refused (HTTP 401)")


def test_http_malformed_json_is_a_source_error(http_backend, partner_api):
    source, category = http_backend
    partner_api.behaviour[ALICE] = "malformed"
    assert_source_error(source, category, match="not valid JSON")


def test_http_page_over_its_size_limit_is_a_source_error_not_a_worker_out_of_memory(http_backend, partner_api, settings):
    """A partner API that ignores paging answered 300 MB on one page, read whole: the worker used 1.8 GB."""
    source, category = http_backend
    settings.HTTP_SOURCE_MAX_PAGE_BYTES = 64  # a page of two records is larger
    assert_source_error(source, category, match="a page is larger than 64 bytes (HTTP_SOURCE_MAX_PAGE_BYTES)")
    settings.HTTP_SOURCE_MAX_PAGE_BYTES = 4096
    assert len(stream_all(source, category, [ALICE])[1]) == 3


def test_http_next_links_in_a_loop_are_a_source_error_not_100000_pages(http_backend, partner_api):
    source, category = http_backend
    partner_api.behaviour[ALICE] = "loop"
    assert_source_error(source, category, match="a next link leads back to a page already read")
    # The first page, the second, the first again by its own link (another URL), and no more.
    assert len([path for path, _ in partner_api.seen if "%2B32470000001" in path]) == 3


def test_http_error_on_a_later_page_is_a_source_error(http_backend, partner_api):
    source, category = http_backend
    partner_api.behaviour[ALICE] = ("fail_page", 2, 502)
    assert_source_error(source, category, match="HTTP 502")


@pytest.mark.parametrize("connector", [ConnectorKind.HTTP, ConnectorKind.SQL])
def test_a_missing_environment_variable_is_a_source_error_naming_it(connector, monkeypatch):
    monkeypatch.delenv("SOURCE_UNSET_SECRET", raising=False)
    source, category = make_source("needs-secret", connector, url="http://127.0.0.1:9/api/", env="SOURCE_UNSET_SECRET")
    with pytest.raises(SourceError) as caught:
        connector_for(source)
    assert str(caught.value).startswith("needs-secret:")
    assert "SOURCE_UNSET_SECRET" in str(caught.value)


def test_http_timeout_is_a_source_error(http_backend, partner_api, monkeypatch):
    source, category = http_backend
    monkeypatch.setattr(http_sources, "TIMEOUT", (2, 0.3))
    partner_api.behaviour[ALICE] = "slow"
    partner_api.delay = 5
    started = time.monotonic()
    assert_source_error(source, category, match="timed out")
    assert time.monotonic() - started < 3


@pytest.mark.postgres
def test_the_copy_paths_mask_in_sql_is_mask_value(pg_sources):
    """PostgreSQL formats the files itself on the COPY path: it must hide exactly what mask_value hides."""
    from requests_app.sources.sql import SQLConnector

    values = ["+32499123456", "123456", "12345", "ab", "7", None]
    expression = SQLConnector._select_column("callee", ["callee"])
    rows = ", ".join("(%s)" for _value in values)
    with contextlib.closing(pg_connect()) as connection, connection.cursor() as cursor:
        cursor.execute(f"SELECT {expression} FROM (VALUES {rows}) AS t(callee)", values)
        masked = [row[0] for row in cursor.fetchall()]
    assert masked == [mask_value(value) for value in values]


# --- Failures that may pass: an HTTP source is asked again -------------------------------------


def alice_pages(partner_api) -> list[str]:
    return [path for path, _ in partner_api.seen if "%2B32470000001" in path]


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    """The waits between attempts, recorded instead of slept."""
    waited = []
    monkeypatch.setattr(sources_base, "sleep", waited.append)
    return waited


@pytest.mark.parametrize("hiccup", [503, 502, 504, 429, "cut"])
def test_an_http_page_that_failed_for_a_moment_is_asked_for_again(http_backend, partner_api, hiccup):
    """One 503 while the partner restarted failed the whole export, rebuilt from the start when staff retried."""
    source, category = http_backend
    partner_api.hiccups[ALICE] = [hiccup, hiccup]

    columns, rows = stream_all(source, category, [ALICE])

    assert unordered(rows) == unordered(expected_rows([ALICE]))
    assert len(alice_pages(partner_api)) == 2 + 2  # twice the first page failed, then both pages were read


def test_an_http_source_is_asked_again_after_each_configured_delay(http_backend, partner_api, settings, waits):
    source, category = http_backend
    settings.HTTP_SOURCE_RETRY_DELAYS = (1, 2, 4)
    partner_api.hiccups[ALICE] = [503, 503, 503]

    assert len(stream_all(source, category, [ALICE])[1]) == 3
    assert waits == [1, 2, 4]


def test_an_http_source_that_keeps_failing_is_given_up_saying_how_often_it_was_tried(http_backend, partner_api, waits):
    source, category = http_backend
    partner_api.hiccups[ALICE] = [503] * 5

    message = assert_source_error(source, category)

    assert message == "partner-api: HTTP 503, tried 3 times"
    assert len(alice_pages(partner_api)) == 3 and waits == [0, 0]


def test_an_http_source_that_never_answers_is_given_up_after_its_attempts(monkeypatch):
    monkeypatch.setenv("SOURCE_PARTNER_API_TOKEN", "anything")
    source, category = make_source("partner-down", ConnectorKind.HTTP, url=f"http://127.0.0.1:{closed_port()}/api/",
                                   env="SOURCE_PARTNER_API_TOKEN", query="/subscribers/{identity}/calls")
    assert assert_source_error(source, category) == "partner-down: connection failed (ConnectionError), tried 3 times"


def test_with_no_retry_delays_an_http_source_is_asked_once(http_backend, partner_api, settings):
    source, category = http_backend
    settings.HTTP_SOURCE_RETRY_DELAYS = ()
    partner_api.hiccups[ALICE] = [503]

    assert assert_source_error(source, category) == "partner-api: HTTP 503"
    assert len(alice_pages(partner_api)) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 405, 409, 422, 500, 501])
def test_an_http_answer_that_says_the_request_is_wrong_is_not_asked_again(http_backend, partner_api, status):
    """A 4xx says the request is wrong, a 500 that the partner failed for a reason of its own (often the same
    record each time): asking again only delays the error, and loads a system already failing."""
    source, category = http_backend
    partner_api.hiccups[ALICE] = [status]

    message = assert_source_error(source, category, match=f"HTTP {status}")

    assert "tried" not in message
    assert len(alice_pages(partner_api)) == 1


def test_an_http_404_is_no_record_and_not_asked_again(http_backend, partner_api):
    source, category = http_backend
    partner_api.hiccups[ALICE] = [404]

    assert stream_all(source, category, [ALICE])[1] == []
    assert len(alice_pages(partner_api)) == 1


def test_an_http_source_is_asked_again_only_after_the_seconds_its_retry_after_asks(http_backend, partner_api):
    source, category = http_backend
    partner_api.hiccups[ALICE] = [(429, {"Retry-After": "1"})]
    started = time.monotonic()

    assert len(stream_all(source, category, [ALICE])[1]) == 3

    assert time.monotonic() - started >= 1
    assert len(alice_pages(partner_api)) == 1 + 2


def test_an_http_retry_after_given_as_a_date_is_waited_for(http_backend, partner_api, waits):
    from email.utils import format_datetime

    source, category = http_backend
    partner_api.hiccups[ALICE] = [(503, {"Retry-After": format_datetime(timezone.now() + timezone.timedelta(seconds=30), usegmt=True)})]

    assert len(stream_all(source, category, [ALICE])[1]) == 3
    assert len(waits) == 1 and 28 <= waits[0] <= 30


def test_an_http_retry_after_longer_than_the_delay_of_that_attempt_is_waited_and_a_shorter_one_is_not(
    http_backend, partner_api, settings, waits
):
    source, category = http_backend
    settings.HTTP_SOURCE_RETRY_DELAYS = (5, 5)
    partner_api.hiccups[ALICE] = [(503, {"Retry-After": "2"}), (503, {"Retry-After": "9"})]

    assert len(stream_all(source, category, [ALICE])[1]) == 3
    assert waits == [5, 9]


@pytest.mark.parametrize("retry_after", ["soon", "", "-5"])
def test_an_unreadable_http_retry_after_leaves_the_own_delays(http_backend, partner_api, settings, waits, retry_after):
    source, category = http_backend
    settings.HTTP_SOURCE_RETRY_DELAYS = (3,)
    partner_api.hiccups[ALICE] = [(503, {"Retry-After": retry_after})]

    assert len(stream_all(source, category, [ALICE])[1]) == 3
    assert waits == [3]


def test_an_http_source_asking_to_wait_longer_than_the_most_waited_fails_at_once_saying_so(
    http_backend, partner_api, settings, waits
):
    """An hour's maintenance is not waited out by a worker: the export fails, saying when the partner expects to be back."""
    source, category = http_backend
    settings.HTTP_SOURCE_RETRY_AFTER_MAX_SECONDS = 60
    partner_api.hiccups[ALICE] = [(503, {"Retry-After": "3600"})]

    message = assert_source_error(source, category)

    assert message == (
        "partner-api: HTTP 503, and the source asks to be called again in 3600 s, "
        "longer than the 60 s waited at most (HTTP_SOURCE_RETRY_AFTER_MAX_SECONDS)"
    )
    assert len(alice_pages(partner_api)) == 1 and waits == []


def test_an_http_retry_logs_no_identifier(http_backend, partner_api, caplog):
    source, category = http_backend
    partner_api.hiccups[ALICE] = [503]

    stream_all(source, category, [ALICE])

    assert "partner-api: HTTP 503 on attempt 1 of 3, trying again in 0 s" in caplog.text
    assert ALICE.lstrip("+") not in caplog.text


def test_an_http_page_that_keeps_breaking_off_is_given_up_as_broken_off(http_backend, partner_api):
    source, category = http_backend
    partner_api.hiccups[ALICE] = ["cut"] * 3

    assert assert_source_error(source, category).startswith("partner-api: the answer broke off (")
    assert len(alice_pages(partner_api)) == 3


# --- A SQL source that fails for a moment is asked again; one whose statement is wrong is not ---------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_backend(request):
    return request.getfixturevalue(f"{request.param}_backend")


def test_a_sql_source_refusing_connections_is_tried_again_then_given_up_saying_so(monkeypatch, waits):
    monkeypatch.setenv("SOURCE_DOWN_DB_URL", f"postgres://reader@127.0.0.1:{closed_port()}/sources")
    source, category = make_source("cdr-down", ConnectorKind.SQL, env="SOURCE_DOWN_DB_URL")

    assert assert_source_error(source, category) == "cdr-down: OperationalError, tried 3 times"
    assert waits == [0, 0]


def test_a_sqlite_source_locked_by_another_writer_is_read_once_it_is_free(sqlite_backend, monkeypatch):
    """SQLite's "database is locked" passes once the writer commits: here during the wait before the second attempt."""
    source, category = sqlite_backend
    writer = sqlite3.connect(source.connection_url.removeprefix("sqlite:///"))
    source.connection_url += "?timeout=0.1"  # waits 0.1 s for the lock, not SQLite's 5
    writer.execute("BEGIN EXCLUSIVE")
    waited = []

    def writer_commits(seconds):
        waited.append(seconds)
        writer.commit()

    monkeypatch.setattr(sources_base, "sleep", writer_commits)
    try:
        assert stream_all(source, category, [ALICE])[1] == expected_rows([ALICE])
    finally:
        writer.close()
    assert waited == [0]


@pytest.mark.parametrize("query", [
    "SELECT * FROM no_such_table WHERE caller IN :identities",  # a table missing
    "SELEC caller FROM contract_calls WHERE caller IN :identities",  # bad SQL
])
def test_a_sql_statement_in_error_fails_at_once_without_another_attempt(sql_backend, query, waits):
    from sqlalchemy import event

    source, category = sql_backend
    category.query = query
    connector = connector_for(source)
    sent = []

    def listener(conn, cursor, statement, *args):
        sent.append(statement)

    event.listen(connector.engine, "before_cursor_execute", listener)
    try:
        message = assert_source_error(source, category)
    finally:
        event.remove(connector.engine, "before_cursor_execute", listener)

    assert "tried" not in message
    assert len([statement for statement in sent if statement.startswith(query.split()[0])]) == 1
    assert waits == []
