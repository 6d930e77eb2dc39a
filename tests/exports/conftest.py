"""Fixtures for the export tests: a PostgreSQL source database, a real local
HTTP partner API, seeded demo sources and per-test export settings."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from urllib.parse import parse_qs, quote, unquote, urlsplit

import psycopg2
import pytest
from django.conf import settings as django_settings
from django.core.management import call_command

from requests_app.models import PrivacyRequest
from requests_app.sms import LocmemBackend
from requests_app.sources import sql as sql_sources

def _sources_db_name() -> str:
    """Beside the run's own database (DATABASE_URL's name), so that two runs against different
    databases, from two clones say, never drop each other's source tables."""
    return f"{django_settings.DATABASES['default']['NAME']}_sources"


@pytest.fixture
def export_settings(settings, tmp_path):
    """Texts stay in memory; the ZIP work folder is per test so leftovers can be seen."""
    settings.SMS_BACKEND = "requests_app.sms.LocmemBackend"
    settings.EXPORT_WORK_DIR = str(tmp_path / "export-work")
    LocmemBackend.outbox.clear()
    yield
    LocmemBackend.outbox.clear()


# --- PostgreSQL source database ------------------------------------------------------


def _admin_params() -> dict:
    default = django_settings.DATABASES["default"]
    return {
        "host": default.get("HOST") or "127.0.0.1",
        "port": int(default.get("PORT") or 5432),
        "user": default.get("USER") or "postgres",
        "password": default.get("PASSWORD") or None,
    }


@pytest.fixture(scope="session")
def pg_sources_database(django_db_setup) -> str:
    """A source database next to the app's (never the app's own), created once. After django_db_setup, which
    renames the app's database (test_...): the name must be the same here and in pg_connect, whichever test
    asks first."""
    params = _admin_params()
    connection = psycopg2.connect(dbname="postgres", **params)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [_sources_db_name()])
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{_sources_db_name()}"')
    finally:
        connection.close()
    auth = params["user"] + (f":{params['password']}" if params["password"] else "")
    return f"postgres://{auth}@{params['host']}:{params['port']}/{_sources_db_name()}"


def pg_connect():
    return psycopg2.connect(dbname=_sources_db_name(), **_admin_params())


@pytest.fixture
def pg_sources(pg_sources_database):
    """The source database URL; every table in it is dropped after the test."""
    yield pg_sources_database
    # Return the connectors' pooled connections first, so nothing holds a lock.
    sql_sources._engine(pg_sources_database).dispose()
    connection = pg_connect()
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '10s'")
            cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            for (table,) in cursor.fetchall():
                cursor.execute(f'DROP TABLE IF EXISTS "{table}" CASCADE')
    finally:
        connection.close()


# --- A partner's JSON API on 127.0.0.1 -------------------------------------------------


class FakePartnerAPI:
    """GET /api/subscribers/<identity>/calls?page=N with bearer-token auth and pagination.

    `records` maps an identity to its records; unknown identities get a 404.
    `behaviour` maps an identity to "malformed" (invalid JSON), "loop" (a next link back to page 1), "slow" (sleeps
    `delay` seconds before answering) or ("fail_page", N, status) (page N
    answers with that HTTP status).
    `hiccups` maps an identity to answers its pages give first, one per request, before answering as above: an
    HTTP status, (status, headers), or "cut" (the page breaks off part-way).
    """

    def __init__(self, token: str, page_size: int = 2):
        self.token = token
        self.page_size = page_size
        self.records: dict[str, list[dict]] = {}
        self.behaviour: dict[str, object] = {}
        self.hiccups: dict[str, list] = {}
        self.delay = 3.0
        self.seen: list[tuple[str, str | None]] = []  # (path with query, auth header)
        self.release = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.handle_error = lambda request, address: None  # the client hung up on a slow answer
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/api/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def page_url(self, identity: str, page: int) -> str:
        return f"http://127.0.0.1:{self.port}/api/subscribers/{quote(identity, safe='')}/calls?page={page}"

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: bytes, content_type="application/json", headers=None):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                api.seen.append((self.path, self.headers.get("Authorization")))
                if self.headers.get("Authorization") != f"Bearer {api.token}":
                    return self._send(401, b'{"detail": "invalid token"}')
                parts = urlsplit(self.path)
                segments = parts.path.strip("/").split("/")
                if len(segments) != 4 or segments[:2] != ["api", "subscribers"] or segments[3] != "calls":
                    return self._send(404, b'{"detail": "not found"}')
                identity = unquote(segments[2])
                page = int(parse_qs(parts.query).get("page", ["1"])[0])
                if api.hiccups.get(identity):
                    hiccup = api.hiccups[identity].pop(0)
                    if hiccup == "cut":
                        self.send_response(200)
                        self.send_header("Content-Length", "1000")
                        self.end_headers()
                        self.wfile.write(b'{"results": [')
                        self.close_connection = True
                        return None
                    status, headers = hiccup if isinstance(hiccup, tuple) else (hiccup, {})
                    return self._send(status, b'{"detail": "try later"}', headers=headers)
                behaviour = api.behaviour.get(identity)
                if behaviour == "slow":
                    api.release.wait(api.delay)
                if behaviour == "malformed":
                    return self._send(200, b'{"results": [{"caller": "+3247', "application/json")
                if isinstance(behaviour, tuple) and behaviour[0] == "fail_page" and behaviour[1] == page:
                    return self._send(behaviour[2], b'{"detail": "upstream error"}')
                if identity not in api.records:
                    return self._send(404, b'{"detail": "no such subscriber"}')
                records = api.records[identity]
                start = (page - 1) * api.page_size
                chunk = records[start : start + api.page_size]
                more = start + api.page_size < len(records)
                body = {"results": chunk, "next": api.page_url(identity, page + 1) if more else None}
                if behaviour == "loop":  # the last page links back to the first
                    body["next"] = body["next"] or api.page_url(identity, 1)
                return self._send(200, json.dumps(body).encode())

        return Handler

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def partner_api(monkeypatch):
    """A running partner API whose token is in SOURCE_PARTNER_API_TOKEN."""
    token = "partner-token-9f8e7d"
    monkeypatch.setenv("SOURCE_PARTNER_API_TOKEN", token)
    with FakePartnerAPI(token) as api:
        yield api


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- The demo sources of seed_demo ------------------------------------------------------


def seed_demo(settings, url: str) -> PrivacyRequest:
    """Seed 3 demo subjects (50 CDRs each) into `url` and return the verified demo request."""
    settings.DEMO_SOURCES_URL = url
    out = StringIO()
    call_command("seed_demo", subjects=3, cdrs_per_subject=50, stdout=out)
    reference = out.getvalue().strip().splitlines()[-1]
    return PrivacyRequest.objects.get(reference=reference)


@pytest.fixture
def demo_sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'demo_sources.sqlite3'}"


@pytest.fixture
def demo_request(db, settings, demo_sqlite_url):
    """The demo request over SQLite demo sources."""
    return seed_demo(settings, demo_sqlite_url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def demo_sources(request, db, settings, tmp_path):
    """(backend name, source database URL, demo request) for SQLite and for PostgreSQL sources."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'demo_sources.sqlite3'}"
    else:
        url = request.getfixturevalue("pg_sources")
    return request.param, url, seed_demo(settings, url)
