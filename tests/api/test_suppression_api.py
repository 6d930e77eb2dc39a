"""The suppression lists over the API: only a suppression-scoped key reads them, and such a key sees no requests."""

import csv
import datetime
import io
import json

import pytest
from django.urls import reverse
from django.utils import timezone

from requests_app.models import IdentityKind, RequestType, SuppressionEntry, SuppressionPurpose
from tests.api.conftest import client_with, key_for
from tests.conftest import login_staff
from tests.factories import staff_in_role


@pytest.fixture
def marketing(db):
    purpose = SuppressionPurpose.objects.create(slug="marketing-email", name="Promotional emails")
    SuppressionEntry.objects.create(purpose=purpose, kind=IdentityKind.EMAIL, value="ana@example.com", right=RequestType.OBJECTION)
    SuppressionEntry.objects.create(purpose=purpose, kind=IdentityKind.PHONE, value="+32470000001", right=RequestType.OBJECTION)
    return purpose


@pytest.fixture
def lists_api(operator):
    return client_with(key_for(operator, scope="suppression"))


def test_the_purposes_and_their_counts(lists_api, marketing):
    SuppressionPurpose.objects.create(slug="telemarketing", name="Telemarketing calls", identity_kinds=["phone"])
    response = lists_api.get("/api/v1/suppression-lists/")
    assert response.status_code == 200
    assert {p["slug"]: p["entries"] for p in response.json()} == {"marketing-email": 2, "telemarketing": 0}
    assert {p["slug"]: p["identity_kinds"] for p in response.json()} == {"marketing-email": [], "telemarketing": ["phone"]}


def test_entries_page_by_cursor_and_filter_by_time_and_kind(lists_api, marketing):
    SuppressionEntry.objects.filter(kind=IdentityKind.EMAIL).update(created_at=timezone.now() - datetime.timedelta(days=3))
    everything = lists_api.get("/api/v1/suppression-lists/marketing-email/entries/").json()
    assert [e["value"] for e in everything["results"]] == ["ana@example.com", "+32470000001"]
    assert everything["next"] is None

    since = (timezone.now() - datetime.timedelta(days=1)).isoformat()
    recent = lists_api.get("/api/v1/suppression-lists/marketing-email/entries/", {"added_since": since}).json()
    assert [e["value"] for e in recent["results"]] == ["+32470000001"]
    phones = lists_api.get("/api/v1/suppression-lists/marketing-email/entries/", {"kind": "email"}).json()
    assert [e["kind"] for e in phones["results"]] == ["email"]
    assert lists_api.get("/api/v1/suppression-lists/marketing-email/entries/", {"kind": "fax"}).status_code == 400
    naive = lists_api.get("/api/v1/suppression-lists/marketing-email/entries/", {"added_since": since[:19]})
    assert naive.status_code == 400 and naive.json()["errors"]["added_since"][0].startswith("Give the time with its offset")
    misspelt = lists_api.get("/api/v1/suppression-lists/marketing-email/entries/", {"since": since})
    assert misspelt.status_code == 400
    assert misspelt.json()["errors"] == {"since": ["Unknown parameter: check its name against the API schema."]}
    # "p=x", and "p=0001-01-01 00:00:00-23:59", out of PostgreSQL's range (a DataError, answered 500).
    for cursor in ["cD14", "cD0wMDAxLTAxLTAxIDAwOjAwOjAwLTIzOjU5"]:
        bad_cursor = lists_api.get("/api/v1/suppression-lists/marketing-email/entries/", {"cursor": cursor})
        assert bad_cursor.status_code == 400 and bad_cursor.json()["errors"] == {"cursor": ["Invalid cursor"]}
    assert lists_api.get("/api/v1/suppression-lists/marketing-email/entries/").status_code == 200  # nothing left broken


def test_entries_as_csv(lists_api, marketing):
    response = lists_api.get("/api/v1/suppression-lists/marketing-email/entries/csv/")
    assert response.status_code == 200 and response["Content-Type"] == "text/csv"
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["kind", "value", "right", "added_at"]
    assert [row[1] for row in rows[1:]] == ["ana@example.com", "+32470000001"]
    # The whole list left the product: audited, as the dashboard's download is.
    from requests_app.models import AuditEvent

    downloaded = AuditEvent.objects.get(action="suppression_list_downloaded")
    assert downloaded.actor_kind == "organisation" and downloaded.data == {"purpose": "marketing-email"}


FORMULA = "=HYPERLINK(\"http://evil.example\",\"x\")"


def csv_values(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row[1] for row in csv.reader(io.StringIO(b"".join(response.streaming_content).decode()))][1:]


def test_the_csv_never_hands_a_spreadsheet_a_formula_unless_exact_values_are_asked(lists_api, marketing):
    """A verified value can be typed by anyone (a customer reference, an address's local part); a marketing
    tool's user may open the download in a spreadsheet, as the DPO's (Suppression lists) is guarded for."""
    SuppressionEntry.objects.create(purpose=marketing, kind=IdentityKind.CUSTOMER_REFERENCE, value=FORMULA, right=RequestType.OBJECTION)
    SuppressionEntry.objects.create(purpose=marketing, kind=IdentityKind.EMAIL, value="-ana@example.com", right=RequestType.OBJECTION)
    url = "/api/v1/suppression-lists/marketing-email/entries/csv/"

    guarded = csv_values(lists_api.get(url))
    assert guarded == ["ana@example.com", "+32470000001", f"'{FORMULA}", "'-ana@example.com"]  # a phone number stays a number
    assert csv_values(lists_api.get(url, {"values": "spreadsheet"})) == guarded
    # A system that imports the file matches on the values as stored.
    assert csv_values(lists_api.get(url, {"values": "exact"})) == ["ana@example.com", "+32470000001", FORMULA, "-ana@example.com"]
    assert [e["value"] for e in lists_api.get("/api/v1/suppression-lists/marketing-email/entries/").json()["results"]][2:] == [
        FORMULA, "-ana@example.com"
    ]
    refused = lists_api.get(url, {"values": "raw"})
    assert refused.status_code == 400 and "values" in refused.json()["errors"]


def test_the_schema_documents_the_csvs_values(lists_api):
    schema = lists_api.get("/api/schema/", {"format": "json"}).json()
    operation = schema["paths"]["/api/v1/suppression-lists/{slug}/entries/csv/"]["get"]
    values = next(parameter for parameter in operation["parameters"] if parameter["name"] == "values")
    assert values["schema"]["enum"] == ["spreadsheet", "exact"] and values["schema"]["default"] == "spreadsheet"
    assert "leading `'`" in values["description"] and "as stored" in values["description"]


def test_a_head_of_the_csv_is_not_audited_as_a_download(lists_api, marketing):
    """It was: the audit trail said the whole list had left the product when only its headers had."""
    from requests_app.models import AuditEvent

    response = lists_api.head("/api/v1/suppression-lists/marketing-email/entries/csv/")
    assert response.status_code == 200 and response["Content-Type"] == "text/csv"
    assert not AuditEvent.objects.filter(action="suppression_list_downloaded").exists()


@pytest.mark.django_db(transaction=True)
def test_a_head_of_the_csv_as_gunicorn_serves_it_sends_no_list(operator, marketing):
    """The test client and runserver drop a HEAD's body by themselves; gunicorn sends what the application returns, and
    a HEAD (not audited) handed over the whole list. So the application is called here as gunicorn calls it."""
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import RequestFactory

    from requests_app.models import AuditEvent

    key = key_for(operator, scope="suppression")
    environ = RequestFactory().head(
        "/api/v1/suppression-lists/marketing-email/entries/csv/", HTTP_AUTHORIZATION=f"Api-Key {key}"
    ).environ
    started = []
    body = b"".join(WSGIHandler()(environ, lambda status, headers: started.append((status, dict(headers)))))
    (status, headers), = started
    assert status == "200 OK" and headers["Content-Type"] == "text/csv"
    assert body == b""
    assert not AuditEvent.objects.filter(action="suppression_list_downloaded").exists()


@pytest.mark.parametrize("accept", ["text/csv", "text/csv, application/json;q=0.5", "text/html"])
def test_entries_as_csv_whatever_accept_asks(lists_api, marketing, accept):
    """Asked for as the schema documents it (text/csv), the CSV was refused 406: only JSON could be rendered."""
    response = lists_api.get("/api/v1/suppression-lists/marketing-email/entries/csv/", HTTP_ACCEPT=accept)
    assert response.status_code == 200 and response["Content-Type"] == "text/csv"
    unknown = lists_api.get("/api/v1/suppression-lists/nope/entries/csv/", HTTP_ACCEPT=accept)
    assert unknown.status_code == 404 and unknown["Content-Type"] == "application/problem+json"


def test_lookup_finds_identifiers_however_they_are_written(lists_api, marketing):
    response = lists_api.post(
        "/api/v1/suppression-lists/marketing-email/lookup/",
        {"identifiers": [
            {"kind": "email", "value": " ANA@Example.com"},
            {"kind": "phone", "value": "+32 470 00 00 01"},
            {"kind": "email", "value": "bob@example.com"},
            {"kind": "phone", "value": "ana@example.com"},
        ]},
        format="json",
    )
    assert response.status_code == 200
    assert [r["suppressed"] for r in response.json()["results"]] == [True, True, False, False]


def test_lookup_validates_its_body(lists_api, marketing):
    response = lists_api.post("/api/v1/suppression-lists/marketing-email/lookup/", {"identifiers": []}, format="json")
    assert response.status_code == 400 and response["Content-Type"].startswith("application/problem+json")
    too_many = {"identifiers": [{"kind": "email", "value": f"p{i}@example.com"} for i in range(1001)]}
    assert lists_api.post("/api/v1/suppression-lists/marketing-email/lookup/", too_many, format="json").status_code == 400
    # Fields it does not take are named, not ignored: an "exact" flag would have been silently dropped.
    extra = {"identifiers": [{"kind": "email", "value": "a@example.com", "exact": True}], "purpose": "x"}
    unknown = lists_api.post("/api/v1/suppression-lists/marketing-email/lookup/", extra, format="json")
    assert unknown.status_code == 400 and set(unknown.json()["errors"]) == {"identifiers", "purpose"}
    assert unknown.json()["errors"]["identifiers"] == {"0": {"exact": ["Unknown field: check its name against the API schema. Nothing was done."]}}


def test_an_unknown_list_is_404(lists_api, marketing):
    assert lists_api.get("/api/v1/suppression-lists/nope/entries/").status_code == 404


@pytest.mark.parametrize("scope", ["read", "write"])
def test_a_customer_portals_key_cannot_read_the_lists(operator, marketing, scope):
    portal = client_with(key_for(operator, scope=scope))
    assert portal.get("/api/v1/suppression-lists/").status_code == 403
    assert portal.get("/api/v1/suppression-lists/marketing-email/entries/").status_code == 403
    lookup = portal.post("/api/v1/suppression-lists/marketing-email/lookup/", {"identifiers": [{"kind": "email", "value": "a@b.c"}]}, format="json")
    assert lookup.status_code == 403


def test_a_suppression_key_sees_no_requests(lists_api):
    assert lists_api.get("/api/v1/requests/").status_code == 403


def test_a_suppression_key_can_be_checked_with_ping(lists_api, operator):
    """It was a 403, so the controller's own systems could not check the one key they hold."""
    answer = lists_api.get("/api/v1/ping/")
    assert answer.status_code == 200 and answer.json() == {"organisation": operator.name}


def test_no_key_is_401(marketing):
    from rest_framework.test import APIClient

    assert APIClient().get("/api/v1/suppression-lists/").status_code == 401


def test_a_lookup_keeps_no_copy_of_the_identifiers(lists_api, marketing):
    from requests_app.models import IdempotencyRecord

    response = lists_api.post(
        "/api/v1/suppression-lists/marketing-email/lookup/",
        {"identifiers": [{"kind": "email", "value": "ana@example.com"}]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="lookup-1",
    )
    assert response.status_code == 200
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db
def test_a_business_customer_cannot_hold_or_use_a_suppression_key(operator, client):
    """The lists name everyone who objected: only the controller's own systems read them."""
    from django.core.exceptions import ValidationError

    from requests_app.models import OrganisationAPIKey

    key = OrganisationAPIKey(name="crm", organisation=operator, scope="suppression")
    with pytest.raises(ValidationError, match="Only the controller's own systems"):
        key.full_clean()
    # A key issued anyway (in the shell, or before the rule) reads nothing.
    _, raw = OrganisationAPIKey.objects.create_key(name="crm", organisation=operator, scope="suppression")
    refused = client_with(raw).get("/api/v1/suppression-lists/")
    assert refused.status_code == 403
    assert refused.json()["detail"] == "Only the controller's own systems may read the suppression lists."
    operator.own_systems = True
    operator.save()
    assert client_with(raw).get("/api/v1/suppression-lists/").status_code == 200


@pytest.mark.django_db
def test_upgrading_keeps_a_suppression_key_issued_before_the_rule_working(operator, other_operator):
    import importlib

    from django.apps import apps

    from requests_app.models import OrganisationAPIKey

    migration = importlib.import_module("requests_app.migrations.0031_organisation_own_systems")
    OrganisationAPIKey.objects.create_key(name="crm", organisation=operator, scope="suppression")
    OrganisationAPIKey.objects.create_key(name="portal", organisation=other_operator, scope="read")
    migration.keep_existing_suppression_keys_working(apps, None)
    operator.refresh_from_db()
    other_operator.refresh_from_db()
    assert operator.own_systems and not other_operator.own_systems


def test_a_lookup_of_a_thousand_identifiers_at_their_longest_fits_the_body_limit(lists_api, marketing):
    """The README promises it; 64 KiB, then 256 KiB, did not hold it."""
    longest = "a" * 242 + "@example.com"
    assert len(longest) == 254
    body = json.dumps({"identifiers": [{"kind": "email", "value": longest}] * 1000})
    response = lists_api.post("/api/v1/suppression-lists/marketing-email/lookup/", body, content_type="application/json")
    assert response.status_code == 200, response.content[:200]


def test_an_entry_added_on_a_whole_second_keeps_six_digits_of_microseconds(lists_api, marketing):
    whole_second = datetime.datetime(2026, 7, 1, 10, 0, tzinfo=datetime.UTC)
    SuppressionEntry.objects.filter(kind=IdentityKind.EMAIL).update(created_at=whole_second)
    entries = lists_api.get("/api/v1/suppression-lists/marketing-email/entries/").json()["results"]
    assert entries[0]["added_at"] == "2026-07-01T12:00:00.000000+02:00"


def test_the_csv_writes_added_at_as_the_json_list_does(lists_api, marketing, client):
    """The CSV wrote isoformat() in UTC, leaving the fraction out on a whole second: a reader parsing one fixed
    format failed on those rows, and the same entry read differently in the JSON list. The dashboard's download
    is the same CSV."""
    whole_second = datetime.datetime(2026, 7, 1, 10, 0, tzinfo=datetime.UTC)
    SuppressionEntry.objects.filter(kind=IdentityKind.EMAIL).update(created_at=whole_second)
    entries = lists_api.get("/api/v1/suppression-lists/marketing-email/entries/").json()["results"]
    in_json = {entry["value"]: entry["added_at"] for entry in entries}
    downloads = [
        lists_api.get("/api/v1/suppression-lists/marketing-email/entries/csv/"),
        login_staff(client, staff_in_role("DPO", username="dpo1")).get(reverse("staff:suppression_download", args=[marketing.slug])),
    ]

    for response in downloads:
        assert response.status_code == 200
        rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))[1:]
        assert {row[1]: row[3] for row in rows} == in_json
        assert rows[0][3] == "2026-07-01T12:00:00.000000+02:00"
