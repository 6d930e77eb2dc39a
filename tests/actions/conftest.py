"""Fixtures for acting on rights: a real source database (SQLite file or PostgreSQL) holding a
subscriber table and call records, the inventory describing it, and a verified erasure request."""

import psycopg2
import pytest
import sqlalchemy
from django.conf import settings as django_settings
from django.utils import timezone

from requests_app.audit import Actor
from requests_app.models import (
    ConnectorKind,
    DataCategory,
    EraseMethod,
    EraseStrategy,
    FieldType,
    IdentityKind,
    LegalBasis,
    RequestType,
    SourceAction,
    SourceCategory,
    SourceField,
    SourceSystem,
    Status,
    SubjectIdentity,
)
from requests_app.services import actions
from requests_app.services.intake import RightDetails
from tests.factories import request_in_status

ANA_EMAIL = "ana@example.com"
ANA_PHONE = "+32470000001"
BOB_EMAIL = "bob@example.com"

SCHEMA = [
    """CREATE TABLE subscribers (
        id INTEGER PRIMARY KEY, email VARCHAR(200), name VARCHAR(200), city VARCHAR(100),
        birth_year INTEGER, restricted BOOLEAN NOT NULL DEFAULT FALSE)""",
    "CREATE TABLE calls (id INTEGER PRIMARY KEY, caller VARCHAR(30), callee VARCHAR(30), duration_s INTEGER)",
    "CREATE TABLE restriction_list (identity VARCHAR(200) PRIMARY KEY)",
]
ROWS = {
    "subscribers": [
        {"id": 1, "email": ANA_EMAIL, "name": "Ana Peeters", "city": "Gent", "birth_year": 1980, "restricted": False},
        {"id": 2, "email": ANA_EMAIL, "name": "Ana P.", "city": "Gent", "birth_year": None, "restricted": False},
        {"id": 3, "email": BOB_EMAIL, "name": "Bob Janssens", "city": "Leuven", "birth_year": 1975, "restricted": False},
    ],
    "calls": [
        {"id": 1, "caller": ANA_PHONE, "callee": "+32470000099", "duration_s": 60},
        {"id": 2, "caller": ANA_PHONE, "callee": "+32470000098", "duration_s": 30},
        {"id": 3, "caller": "+32470000002", "callee": ANA_PHONE, "duration_s": 10},
    ],
}


def _pg_url(name: str) -> str:
    default = django_settings.DATABASES["default"]
    params = {"host": default.get("HOST") or "127.0.0.1", "port": int(default.get("PORT") or 5432), "user": default.get("USER") or "postgres"}
    connection = psycopg2.connect(dbname="postgres", **params)
    connection.autocommit = True
    with connection.cursor() as cursor:
        # Quoted: a database named with capitals (privacy_portal_fixA_action_sources) keeps its name.
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()
    return f"postgresql://{params['user']}@{params['host']}:{params['port']}/{name}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def source_url(request, tmp_path):
    """A real source database with the subscriber and call tables, emptied and refilled per test."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'source.sqlite3'}"
    else:
        # Named after the test database, so parallel runs against other databases do not collide.
        url = _pg_url(django_settings.DATABASES["default"]["NAME"] + "_action_sources")
    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
    with engine.begin() as connection:
        for statement in SCHEMA:
            connection.execute(sqlalchemy.text(statement))
        for table, rows in ROWS.items():
            columns = list(rows[0])
            connection.execute(
                sqlalchemy.text(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"), rows
            )
    engine.dispose()
    yield url
    from requests_app.sources import sql

    sql._engine.cache_clear()  # each test's database is new: drop pooled connections to the old one


@pytest.fixture
def source_db(source_url):
    """Run SQL against the source database, as its owners (or a test) would."""
    engine = sqlalchemy.create_engine(source_url.replace("postgresql://", "postgresql+psycopg2://"))

    def run(statement: str, **params):
        with engine.begin() as connection:
            result = connection.execute(sqlalchemy.text(statement), params)
            return [dict(row) for row in result.mappings()] if result.returns_rows else result.rowcount

    yield run
    engine.dispose()


@pytest.fixture
def crm(db, source_url):
    """The CRM source: subscribers by email, anonymised on erasure (the city kept: not personal once the rest is
    erased); restriction by flag and list."""
    source = SourceSystem.objects.create(
        slug="crm", name="CRM", connector=ConnectorKind.SQL, connection_url=source_url, identity_kind=IdentityKind.EMAIL,
        purposes="Customer care", legal_basis=LegalBasis.CONTRACT, retention="Contract + 1 year", origin="The subject",
        restriction_list="restriction_list.identity",
    )
    category = SourceCategory.objects.create(
        source=source, slug="subscribers", category=DataCategory.CONTACT,
        query="SELECT * FROM subscribers WHERE email IN :identities",
        table="subscribers", identity_field="email", erase_method=EraseMethod.ANONYMISE, restriction_flag="restricted",
    )
    SourceField.objects.bulk_create([
        SourceField(category=category, name="email", label="email address", type=FieldType.EMAIL, erase_strategy=EraseStrategy.NULL),
        SourceField(category=category, name="name", label="name", type=FieldType.TEXT, erase_strategy=EraseStrategy.FIXED, fixed_text="(erased)"),
        SourceField(category=category, name="birth_year", label="year of birth", type=FieldType.INTEGER, erase_strategy=EraseStrategy.NULL),
        SourceField(category=category, name="city", label="city", type=FieldType.TEXT, erase_strategy=EraseStrategy.KEEP),
    ])
    return source


@pytest.fixture
def cdr(db, source_url):
    """Call records by phone number, deleted on erasure."""
    source = SourceSystem.objects.create(
        slug="cdr", name="Call records", connector=ConnectorKind.SQL, connection_url=source_url, identity_kind=IdentityKind.PHONE,
        purposes="Billing", legal_basis=LegalBasis.LEGAL_OBLIGATION, retention="12 months", origin="The network",
    )
    SourceCategory.objects.create(
        source=source, slug="calls", category=DataCategory.ELECTRONIC_COMMUNICATIONS,
        query="SELECT * FROM calls WHERE caller IN :identities", table="calls", identity_field="caller",
        erase_method=EraseMethod.DELETE,
    )
    return source


def verified_request(*rights, **overrides):
    """An open, verified request for `rights` with Ana's email and phone verified by staff."""
    request = request_in_status(
        Status.IN_PROGRESS, rights=[RightDetails(right) for right in rights], subject_email=ANA_EMAIL, **overrides
    )
    SubjectIdentity.objects.filter(request=request, kind=IdentityKind.EMAIL).update(verified_at=timezone.now())
    if not request.identities.filter(kind=IdentityKind.EMAIL).exists():
        SubjectIdentity.objects.create(request=request, kind=IdentityKind.EMAIL, value=ANA_EMAIL, verified_at=timezone.now())
    SubjectIdentity.objects.create(request=request, kind=IdentityKind.PHONE, value=ANA_PHONE, verified_at=timezone.now())
    return request


@pytest.fixture
def erasure_request(db):
    return verified_request(RequestType.ERASURE)


@pytest.fixture
def dpo(db):
    from tests.factories import UserFactory

    return UserFactory(is_superuser=True, username="dpo")


@pytest.fixture
def dpo_actor(dpo):
    return Actor.staff(dpo)


@pytest.fixture
def step(django_capture_on_commit_callbacks):
    """Run one service step on an action, with the task it queues run on commit, as a worker would."""

    def run_step(service, action, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            service(action=SourceAction.objects.get(pk=action.pk), **kwargs)
        return SourceAction.objects.get(pk=action.pk)

    return run_step


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    """Take one action through the given steps, running the Celery task each step queues
    on commit as a worker would right after it."""

    def run_steps(action_id, *steps, actor):
        action = SourceAction.objects.get(pk=action_id)
        for step, service in (("dry_run", actions.dry_run_start), ("approve", actions.approve), ("execute", actions.execute)):
            if step in steps:
                with django_capture_on_commit_callbacks(execute=True):
                    service(action=action, actor=actor)
        action.refresh_from_db()
        return action

    return run_steps
