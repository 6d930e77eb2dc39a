"""Erasure, rectification and restriction through the HTTP connector, against a real partner API on 127.0.0.1."""

import copy
import datetime
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest

from requests_app.models import (
    ActionKind,
    ConnectorKind,
    DataCategory,
    EraseMethod,
    EraseStrategy,
    IdentityKind,
    LegalBasis,
    SourceCategory,
    SourceField,
    SourceSystem,
)
from requests_app.sources.actions import (
    ActionPlan,
    CategoryWork,
    StaleDryRun,
    combined_fingerprint,
    keyed_hash,
)
from requests_app.sources.base import SourceError
from requests_app.sources.http import HTTPConnector

TOKEN_ENV = "SOURCE_PARTNER_ACTIONS_TOKEN"
TOKEN = "partner-actions-token-3c2b1a"
ALICE = "+32470000001"
BOB = "+32470000002"


class PartnerAPI:
    """A partner's JSON API: /api/subscribers/<identity>/<collection>[/<id>], POST /api/restricted and
    DELETE /api/restricted/<identity>.

    `data` maps (collection, identity) to that subscriber's records, each
    named by its "id"; unknown subscribers get a 404. Reads are paginated
    `page_size` at a time with relative `next` links. `forced` maps a method to
    (status, n): after n successful calls of that method, it answers with
    that status and a body quoting the request. `hiccups` maps a method to
    what its next calls meet first, one each: an HTTP status answered instead,
    or "lost" (the call is carried out, but the connection drops before the
    answer). Every request is kept in `requests` as (method, raw path, JSON
    body or None, auth header).
    """

    def __init__(self, token: str, page_size: int = 2):
        self.token = token
        self.page_size = page_size
        self.data: dict[tuple[str, str], list[dict]] = {}
        self.restricted: list[str] = []
        self.forced: dict[str, tuple[int, int]] = {}
        self.hiccups: dict[str, list] = {}
        self.requests: list[tuple[str, str, object, str | None]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/api/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def writes(self) -> list[tuple[str, str, object]]:
        return [(method, path, body) for method, path, body, _ in self.requests if method != "GET"]

    def answer(self, method: str, target: str, body) -> tuple[int, object]:
        parts = urlsplit(target)
        if method == "POST" and parts.path == "/api/restricted":
            if body["identity"] not in self.restricted:  # a repeat is a no-op, as the contract asks
                self.restricted.append(body["identity"])
            return 201, {}
        if method == "DELETE" and parts.path.startswith("/api/restricted/"):
            identity = unquote(parts.path.removeprefix("/api/restricted/"))
            if identity not in self.restricted:
                return 404, {"detail": "not on the list"}
            self.restricted.remove(identity)
            return 204, None
        # Split before unquoting: a key may hold a quoted "/".
        segments = parts.path.strip("/").split("/")
        if segments[:2] != ["api", "subscribers"] or len(segments) not in (4, 5):
            return 404, {"detail": "not found"}
        records = self.data.get((segments[3], unquote(segments[2])))
        if records is None:
            return 404, {"detail": "no such subscriber"}
        if len(segments) == 4 and method == "GET":
            page = int(parse_qs(parts.query).get("page", ["1"])[0])
            start = (page - 1) * self.page_size
            more = start + self.page_size < len(records)
            return 200, {"results": records[start : start + self.page_size], "next": f"{parts.path}?page={page + 1}" if more else None}
        if len(segments) == 5:
            key = unquote(segments[4])
            record = next((r for r in records if str(r.get("id")) == key), None)
            if record is None:
                return 404, {"detail": "no such record"}
            if method == "PATCH":
                record.update(body)
                return 200, record
            if method == "DELETE":
                records.remove(record)
                return 204, None
        return 405, {"detail": "method not allowed"}

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def handle_request(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                api.requests.append((self.command, self.path, body, self.headers.get("Authorization")))
                if self.headers.get("Authorization") != f"Bearer {api.token}":
                    return self.send(401, {"detail": "invalid token"})
                if self.command in api.forced:
                    status, successes = api.forced[self.command]
                    if successes == 0:
                        return self.send(status, {"detail": "upstream error", "request": body, "path": self.path})
                    api.forced[self.command] = (status, successes - 1)
                hiccup = api.hiccups[self.command].pop(0) if api.hiccups.get(self.command) else None
                if hiccup == "lost":
                    api.answer(self.command, self.path, body)
                    self.close_connection = True
                    return None
                if hiccup is not None:
                    return self.send(hiccup, {"detail": "try later"})
                self.send(*api.answer(self.command, self.path, body))

            do_GET = do_PATCH = do_DELETE = do_POST = handle_request

            def send(self, status: int, answer) -> None:
                encoded = b"" if answer is None else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(encoded)))
                self.end_headers()
                self.wfile.write(encoded)

        return Handler

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def api(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    with PartnerAPI(TOKEN) as server:
        yield server


def make_source(base_url: str) -> SourceSystem:
    return SourceSystem.objects.create(
        slug="roaming-partner", name="Roaming partner", connector=ConnectorKind.HTTP, connection_url=base_url,
        connection_env=TOKEN_ENV, identity_kind=IdentityKind.PHONE, legal_basis=LegalBasis.CONTRACT,
        purposes="Roaming billing.", retention="12 months.", origin="The network.",
    )


@pytest.fixture
def source(db, api):
    return make_source(api.base_url)


def add_category(source, slug="calls", record_key="id", **fields) -> SourceCategory:
    return SourceCategory.objects.create(
        source=source, slug=slug, category=DataCategory.ELECTRONIC_COMMUNICATIONS,
        query=f"/subscribers/{{identity}}/{slug}", record_key=record_key, **fields,
    )


def add_field(category, name, strategy, fixed_text="") -> SourceField:
    return SourceField.objects.create(category=category, name=name, label=name, erase_strategy=strategy, fixed_text=fixed_text)


def calls(identity: str, count: int, collection="calls") -> list[dict]:
    return [
        {"id": f"{collection}-{identity[-1]}-{i}", "caller": identity, "callee": f"+3249900000{i}", "minutes": i, "restricted": False}
        for i in range(count)
    ]


def seed(api, collection="calls", alice=3, bob=1) -> None:
    """By default Alice's three records span two pages (page size 2) and Bob has one."""
    api.data[(collection, ALICE)] = calls(ALICE, alice, collection)
    api.data[(collection, BOB)] = calls(BOB, bob, collection)


def anonymising_work(category) -> CategoryWork:
    category.erase_method = EraseMethod.ANONYMISE
    category.save()
    return CategoryWork(
        category=category,
        anonymise={
            "caller": add_field(category, "caller", EraseStrategy.HASH),
            "callee": add_field(category, "callee", EraseStrategy.FIXED, fixed_text="withheld"),
            "minutes": add_field(category, "minutes", EraseStrategy.NULL),
        },
    )


def plan_for(case: str, source) -> ActionPlan:
    """One category of calls, for Alice and Bob, under each kind of change."""
    category = add_category(source)
    if case == "delete":
        return ActionPlan(ActionKind.ERASE, [ALICE, BOB], [CategoryWork(category=category)])
    if case == "anonymise":
        return ActionPlan(ActionKind.ERASE, [ALICE, BOB], [anonymising_work(category)])
    if case == "rectify":
        return ActionPlan(ActionKind.RECTIFY, [ALICE, BOB], [CategoryWork(category=category, changes={"callee": "+32499123456"})])
    category.restriction_flag = "restricted"
    category.save()
    return ActionPlan(ActionKind.RESTRICT, [ALICE, BOB], [CategoryWork(category=category)])


def test_preview_counts_rows_and_changed_fields_and_changes_nothing(api, source):
    seed(api)
    api.data[("calls", ALICE)][0]["callee"] = "withheld"  # already what anonymising sets: not counted
    before = copy.deepcopy(api.data)
    plan = plan_for("anonymise", source)

    preview = HTTPConnector(source).preview(plan)

    # 4 records with caller, callee and minutes changing on each, but for that one callee.
    assert preview["categories"] == [{"category": "calls", "rows": 4, "fields": 4 * 3 - 1}]
    assert preview["list_entries"] == 0
    assert isinstance(preview["fingerprint"], str) and preview["fingerprint"]
    assert api.data == before
    assert api.writes() == []


def test_every_page_of_every_identity_is_read(api, source):
    seed(api, alice=5, bob=1)
    plan = plan_for("delete", source)
    connector = HTTPConnector(source)

    preview = connector.preview(plan)

    assert preview["categories"] == [{"category": "calls", "rows": 6, "fields": 6 * 5}]
    assert [path for method, path, *_ in api.requests] == [
        "/api/subscribers/%2B32470000001/calls",
        "/api/subscribers/%2B32470000001/calls?page=2",
        "/api/subscribers/%2B32470000001/calls?page=3",
        "/api/subscribers/%2B32470000002/calls",
    ]
    connector.apply(plan, preview["fingerprint"])
    assert api.data == {("calls", ALICE): [], ("calls", BOB): []}


def test_erase_by_delete_removes_every_record_category_by_category(api, source):
    seed(api, "calls")
    seed(api, "sms", alice=1, bob=0)
    api.data[("sms", ALICE)][0]["id"] = "thread/7 a"  # a key that must be quoted into the URL
    works = [CategoryWork(category=add_category(source, "calls")), CategoryWork(category=add_category(source, "sms"))]
    plan = ActionPlan(ActionKind.ERASE, [ALICE, BOB], works)
    connector = HTTPConnector(source)
    progress = []

    preview = connector.preview(plan)
    result = connector.apply(plan, preview["fingerprint"], on_progress=progress.append)

    counts = [{"category": "calls", "rows": 4, "fields": 4 * 5}, {"category": "sms", "rows": 1, "fields": 5}]
    assert preview["categories"] == counts
    assert result == {"categories": counts, "list_entries": 0}
    # After every write, what is changed for good so far (no rollback: a run that dies leaves it to be counted).
    calls_deleted = [{"category": "calls", "rows": rows, "fields": rows * 5, "deleted": True} for rows in (1, 2, 3, 4)]
    all_deleted = [calls_deleted[-1], {"category": "sms", "rows": 1, "fields": 5, "deleted": True}]
    assert progress == [
        *({"categories_done": 0, "categories_total": 2, "changed": [counts]} for counts in calls_deleted),
        {"categories_done": 1, "categories_total": 2, "changed": [calls_deleted[-1]]},
        {"categories_done": 1, "categories_total": 2, "changed": all_deleted},
        {"categories_done": 2, "categories_total": 2, "changed": all_deleted},
    ]
    assert all(records == [] for records in api.data.values())
    assert [method for method, _, _ in api.writes()] == ["DELETE"] * 5
    assert ("DELETE", "/api/subscribers/%2B32470000001/sms/thread%2F7%20a", None) in api.writes()
    assert {auth for *_, auth in api.requests} == {f"Bearer {TOKEN}"}  # writes carry the token reads do


def test_a_delete_answered_404_counts_as_already_deleted(api, source):
    seed(api)
    plan = plan_for("delete", source)
    connector = HTTPConnector(source)
    fingerprint = connector.preview(plan)["fingerprint"]
    api.forced["DELETE"] = (404, 0)

    result = connector.apply(plan, fingerprint)

    assert result["categories"] == [{"category": "calls", "rows": 4, "fields": 4 * 5}]
    assert len(api.writes()) == 4


def test_erase_by_anonymising_patches_only_the_fields_that_change(api, source):
    seed(api, alice=2, bob=1)
    api.data[("calls", ALICE)][1]["callee"] = "withheld"
    plan = plan_for("anonymise", source)
    connector = HTTPConnector(source)

    result = connector.apply(plan, connector.preview(plan)["fingerprint"])

    assert result == {"categories": [{"category": "calls", "rows": 3, "fields": 3 * 3 - 1}], "list_entries": 0}
    assert api.writes() == [
        ("PATCH", "/api/subscribers/%2B32470000001/calls/calls-1-0", {"caller": keyed_hash(ALICE), "callee": "withheld", "minutes": None}),
        ("PATCH", "/api/subscribers/%2B32470000001/calls/calls-1-1", {"caller": keyed_hash(ALICE), "minutes": None}),
        ("PATCH", "/api/subscribers/%2B32470000002/calls/calls-2-0", {"caller": keyed_hash(BOB), "callee": "withheld", "minutes": None}),
    ]
    alice, bob = api.data[("calls", ALICE)], api.data[("calls", BOB)]
    assert all(record["caller"].startswith("anon:") for record in alice + bob)
    assert alice[0]["caller"] == alice[1]["caller"] != bob[0]["caller"]  # stable: same number, same pseudonym
    assert [record["callee"] for record in alice + bob] == ["withheld"] * 3
    assert [record["minutes"] for record in alice + bob] == [None] * 3
    assert [record["restricted"] for record in alice + bob] == [False] * 3  # fields without a strategy are kept


def test_rectify_patches_the_records_whose_values_differ(api, source):
    api.data[("contact", ALICE)] = [
        {"id": "main", "name": "Alise Peeters", "born": "1990-01-01", "email": "alice@example.com"},
        {"id": "billing", "name": "Alice Peeters", "born": "1990-01-02", "email": "alice@example.com"},
    ]
    changes = {"name": "Alice Peeters", "born": datetime.date(1990, 1, 2)}
    plan = ActionPlan(ActionKind.RECTIFY, [ALICE], [CategoryWork(category=add_category(source, "contact"), changes=changes)])
    connector = HTTPConnector(source)

    preview = connector.preview(plan)
    connector.apply(plan, preview["fingerprint"])

    assert preview["categories"] == [{"category": "contact", "rows": 2, "fields": 2}]
    assert api.writes() == [
        ("PATCH", "/api/subscribers/%2B32470000001/contact/main", {"name": "Alice Peeters", "born": "1990-01-02"}),
    ]
    assert [(r["name"], r["born"], r["email"]) for r in api.data[("contact", ALICE)]] == [
        ("Alice Peeters", "1990-01-02", "alice@example.com")
    ] * 2


def test_restrict_by_flag_sets_it_where_it_is_not_set(api, source):
    seed(api)
    api.data[("calls", ALICE)][2]["restricted"] = True
    plan = plan_for("restrict", source)
    connector = HTTPConnector(source)

    preview = connector.preview(plan)
    result = connector.apply(plan, preview["fingerprint"])

    assert preview["categories"] == [{"category": "calls", "rows": 4, "fields": 3}]
    assert result == {"categories": preview["categories"], "list_entries": 0}
    assert [(method, body) for method, _, body in api.writes()] == [("PATCH", {"restricted": True})] * 3
    assert all(record["restricted"] is True for records in api.data.values() for record in records)


def test_restrict_by_list_posts_every_identity_to_it(api, source):
    api.restricted = [BOB]  # already on the partner's list: posting him again is a no-op there
    plan = ActionPlan(ActionKind.RESTRICT, [ALICE, BOB], [], restriction_list="/restricted")
    connector = HTTPConnector(source)

    preview = connector.preview(plan)
    result = connector.apply(plan, preview["fingerprint"])

    assert preview["list_entries"] == 2 and preview["categories"] == []
    assert result == {"categories": [], "list_entries": 2}
    assert api.writes() == [("POST", "/api/restricted", {"identity": ALICE}), ("POST", "/api/restricted", {"identity": BOB})]
    assert api.restricted == [BOB, ALICE]


def test_lifting_a_restriction_clears_the_flag_and_deletes_the_list_entries_once(api, source):
    seed(api)
    category = add_category(source)
    category.restriction_flag = "restricted"
    category.save()
    for records in api.data.values():
        for record in records:
            record["restricted"] = True
    api.data[("calls", ALICE)][2]["restricted"] = False  # cleared by hand already: left alone
    api.restricted = [ALICE]  # Bob is not on the list: his entry's 404 counts as removed
    plan = ActionPlan(ActionKind.LIFT_RESTRICTION, [ALICE, BOB], [CategoryWork(category=category)], restriction_list="/restricted")
    connector = HTTPConnector(source)

    preview = connector.preview(plan)
    result = connector.apply(plan, preview["fingerprint"])

    assert preview["categories"] == [{"category": "calls", "rows": 4, "fields": 3}]
    assert result == {"categories": preview["categories"], "list_entries": 2}
    assert [(method, body) for method, _, body in api.writes()] == [("PATCH", {"restricted": False})] * 3 + [("DELETE", None)] * 2
    assert [path for method, path, _ in api.writes() if method == "DELETE"] == [
        f"/api/restricted/{quote(ALICE, safe='')}", f"/api/restricted/{quote(BOB, safe='')}"
    ]
    assert api.restricted == []
    assert all(record["restricted"] is False for records in api.data.values() for record in records)

    api.requests.clear()
    again = connector.preview(plan)
    connector.apply(plan, again["fingerprint"])
    assert again["categories"] == [{"category": "calls", "rows": 4, "fields": 0}]
    assert [method for method, _, _ in api.writes()] == ["DELETE", "DELETE"]  # both 404 now: harmless


@pytest.mark.parametrize("case", ["delete", "anonymise", "rectify", "restrict"])
def test_running_again_changes_nothing(api, source, case):
    seed(api)
    plan = plan_for(case, source)
    first = HTTPConnector(source)
    first.apply(plan, first.preview(plan)["fingerprint"])
    after_first = copy.deepcopy(api.data)
    api.requests.clear()

    again = HTTPConnector(source)  # a retried task: a new connector, a new dry run
    preview = again.preview(plan)
    result = again.apply(plan, preview["fingerprint"])

    assert [counts["fields"] for counts in preview["categories"]] == [0]
    assert result["categories"] == preview["categories"]
    assert api.writes() == []
    assert api.data == after_first


@pytest.mark.parametrize(
    "change",
    [
        lambda data: data[("calls", BOB)][0].update(minutes=42),
        lambda data: data[("calls", ALICE)].append(calls(ALICE, 4)[3]),
        lambda data: data[("calls", ALICE)].pop(),
    ],
    ids=["edited", "added", "removed"],
)
def test_records_changed_since_the_dry_run_are_refused_untouched(api, source, change):
    seed(api)
    plan = plan_for("anonymise", source)
    connector = HTTPConnector(source)
    fingerprint = connector.preview(plan)["fingerprint"]
    change(api.data)  # the partner's own change after the dry run
    changed = copy.deepcopy(api.data)

    with pytest.raises(StaleDryRun, match="roaming-partner"):
        connector.apply(plan, fingerprint)

    assert api.writes() == []
    assert api.data == changed


@pytest.mark.parametrize("case, field, value", [("rectify", "callee", "+32499000999"), ("restrict", "restricted", True)])
def test_records_changed_where_a_rectification_or_a_restriction_acts_are_refused_untouched(api, source, case, field, value):
    """Their dry run's fingerprint covers the fields they set (sources.actions.fingerprinted): changed there, the
    records no longer match what staff approved."""
    seed(api)
    plan = plan_for(case, source)
    connector = HTTPConnector(source)
    fingerprint = connector.preview(plan)["fingerprint"]
    api.data[("calls", BOB)][0][field] = value
    changed = copy.deepcopy(api.data)

    with pytest.raises(StaleDryRun, match="roaming-partner"):
        connector.apply(plan, fingerprint)

    assert api.writes() == []
    assert api.data == changed


@pytest.mark.parametrize("first", [0, 1], ids=["rectification first", "restriction first"])
def test_a_rectification_and_a_restriction_of_the_same_records_keep_each_others_dry_run_valid(api, source, first):
    """The number corrected does not change what the restriction does (set the flag), nor the flag what the
    rectification does: carried out in either order after both dry runs, the second is not stale."""
    seed(api)
    category = add_category(source, restriction_flag="restricted")
    plans = [
        ActionPlan(ActionKind.RECTIFY, [ALICE, BOB], [CategoryWork(category=category, changes={"callee": "+32499123456"})]),
        ActionPlan(ActionKind.RESTRICT, [ALICE, BOB], [CategoryWork(category=category)]),
    ]
    connector = HTTPConnector(source)
    fingerprints = [connector.preview(plan)["fingerprint"] for plan in plans]

    connector.apply(plans[first], fingerprints[first])
    connector.apply(plans[1 - first], fingerprints[1 - first])

    records = [record for records in api.data.values() for record in records]
    assert [(record["callee"], record["restricted"]) for record in records] == [("+32499123456", True)] * 4


@pytest.mark.parametrize("case", ["delete", "anonymise"])
@pytest.mark.parametrize("kind", [ActionKind.RESTRICT, ActionKind.LIFT_RESTRICTION])
def test_a_restriction_or_its_lifting_of_the_same_records_keeps_an_erasures_dry_run_valid(api, source, case, kind):
    """The flag set or cleared is not the subject's data, and does not change what the erasure erases: it ran as its
    dry run showed, not refused as stale."""
    seed(api)
    erasure = plan_for(case, source)
    category = erasure.categories[0].category
    category.restriction_flag = "restricted"
    category.save()
    if kind == ActionKind.LIFT_RESTRICTION:
        for record in api.data[("calls", ALICE)] + api.data[("calls", BOB)]:
            record["restricted"] = True
    connector = HTTPConnector(source)
    fingerprint = connector.preview(erasure)["fingerprint"]

    flagging = ActionPlan(kind, [ALICE, BOB], [CategoryWork(category=category)])
    connector.apply(flagging, connector.preview(flagging)["fingerprint"])
    assert {record["restricted"] for records in api.data.values() for record in records} == {kind == ActionKind.RESTRICT}
    result = connector.apply(erasure, fingerprint)

    assert result["categories"] == [{"category": "calls", "rows": 4, "fields": 4 * 5 if case == "delete" else 4 * 3}]


def test_a_failed_patch_names_the_source_and_not_the_data(api, source):
    seed(api)
    plan = plan_for("anonymise", source)
    connector = HTTPConnector(source)
    fingerprint = connector.preview(plan)["fingerprint"]
    api.forced["PATCH"] = (500, 0)  # its body quotes the request

    with pytest.raises(SourceError) as raised:
        connector.apply(plan, fingerprint)

    message = str(raised.value)
    assert not isinstance(raised.value, StaleDryRun)
    assert "roaming-partner" in message and "HTTP 500" in message
    for data in ("32470000001", "32470000002", "+32499", "withheld", "anon:", "upstream"):
        assert data not in message
    assert len(api.writes()) == 1  # it stopped at the first failure


@pytest.mark.parametrize("case, method", [("delete", "DELETE"), ("anonymise", "PATCH"), ("rectify", "PATCH"), ("restrict", "PATCH")])
@pytest.mark.parametrize("hiccup", [503, "lost"])
def test_a_write_that_failed_for_a_moment_is_made_again_and_changes_each_record_once(api, source, case, method, hiccup):
    """A 503 on the second write stopped the erasure part-way, for a new dry run and approval. Made again, a write
    whose answer was lost after the partner carried it out changes nothing twice: a DELETE then meets a 404, which
    is done, and a PATCH sets the values it set."""
    seed(api)
    plan = plan_for(case, source)
    connector = HTTPConnector(source)
    preview = connector.preview(plan)
    expected = copy.deepcopy(api.data)
    connector.apply(plan, preview["fingerprint"])
    changed, api.data = api.data, expected
    api.requests.clear()
    api.hiccups[method] = [hiccup] if hiccup == "lost" else [hiccup, hiccup]  # the first write

    result = connector.apply(plan, preview["fingerprint"])

    assert result["categories"] == preview["categories"]
    assert api.data == changed
    assert len(api.writes()) == preview["categories"][0]["rows"] + (1 if hiccup == "lost" else 2)


def test_restricting_by_list_posts_again_an_identity_whose_answer_was_lost(api, source):
    """The list must take an identity already on it as a no-op (the module's contract): it is what makes
    posting it again safe."""
    plan = ActionPlan(ActionKind.RESTRICT, [ALICE, BOB], [], restriction_list="/restricted")
    connector = HTTPConnector(source)
    preview = connector.preview(plan)
    api.hiccups["POST"] = ["lost", 503]

    result = connector.apply(plan, preview["fingerprint"])

    assert result["list_entries"] == 2
    assert api.restricted == [ALICE, BOB]
    assert [method for method, *_ in api.writes()] == ["POST"] * 4


def test_a_write_that_keeps_failing_is_given_up_counting_what_was_changed_before(api, source):
    seed(api)
    plan = plan_for("anonymise", source)
    connector = HTTPConnector(source)
    fingerprint = connector.preview(plan)["fingerprint"]
    api.forced["PATCH"] = (503, 1)  # the first record is changed, the second never

    with pytest.raises(SourceError) as raised:
        connector.apply(plan, fingerprint)

    assert str(raised.value) == "roaming-partner: HTTP 503, tried 3 times"
    assert raised.value.changed_before_failing == {"categories": [{"category": "calls", "rows": 1, "fields": 3, "deleted": False}]}
    assert len(api.writes()) == 1 + 3


def test_a_failure_part_way_makes_the_retry_stale_until_a_new_dry_run(api, source):
    seed(api)
    plan = plan_for("anonymise", source)
    connector = HTTPConnector(source)
    fingerprint = connector.preview(plan)["fingerprint"]
    api.forced["PATCH"] = (500, 1)  # the first record is changed, the second fails

    with pytest.raises(SourceError):
        connector.apply(plan, fingerprint)
    api.forced.clear()
    with pytest.raises(StaleDryRun):
        connector.apply(plan, fingerprint)
    assert len(api.writes()) == 2

    preview = connector.preview(plan)
    result = connector.apply(plan, preview["fingerprint"])

    assert result["categories"] == [{"category": "calls", "rows": 4, "fields": 4 * 3 - 3}]
    assert all(record["callee"] == "withheld" for records in api.data.values() for record in records)


def test_a_record_without_its_key_is_refused_naming_the_category(api, source):
    seed(api)
    del api.data[("calls", BOB)][0]["id"]
    plan = plan_for("delete", source)
    connector = HTTPConnector(source)

    with pytest.raises(SourceError) as raised:
        connector.preview(plan)
    with pytest.raises(SourceError):
        connector.apply(plan, "any fingerprint")

    message = str(raised.value)
    assert "roaming-partner" in message and "calls" in message and "'id'" in message
    assert "32470000002" not in message and "+32499" not in message
    assert api.writes() == []  # Alice's records, read first, are not deleted either


def test_a_category_without_a_record_key_is_refused_before_any_request(api, source):
    plan = ActionPlan(ActionKind.ERASE, [ALICE], [CategoryWork(category=add_category(source, record_key=""))])

    with pytest.raises(SourceError, match="roaming-partner: category calls has no record key"):
        HTTPConnector(source).preview(plan)

    assert api.requests == []


def test_an_unreachable_partner_is_a_connection_failure(api, db):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    source = make_source(f"http://127.0.0.1:{closed}/api/")
    plan = plan_for("delete", source)

    with pytest.raises(SourceError, match="roaming-partner: connection failed"):
        HTTPConnector(source).preview(plan)


def test_a_link_to_another_host_is_not_followed_and_gets_no_credential(api, source, monkeypatch):
    seed(api, alice=5, bob=0)
    with PartnerAPI("not-the-partner") as elsewhere:
        answer = api.answer

        def next_page_elsewhere(method, target, body):
            status, page = answer(method, target, body)
            if isinstance(page, dict) and page.get("next"):
                page["next"] = elsewhere.base_url + "subscribers/x/calls?page=2"  # a compromised partner API, say
            return status, page

        monkeypatch.setattr(api, "answer", next_page_elsewhere)
        with pytest.raises(SourceError, match=r"roaming-partner: a link leads outside the source \(http://127\.0\.0\.1:\d+\)"):
            HTTPConnector(source).preview(plan_for("delete", source))
        assert elsewhere.requests == []  # the token never left for it


def test_a_redirect_is_refused_rather_than_followed(api, source):
    seed(api)
    api.forced["GET"] = (302, 0)
    with pytest.raises(SourceError, match="roaming-partner: redirected \\(HTTP 302\\)"):
        HTTPConnector(source).preview(plan_for("delete", source))


# --- Identities and record keys that look like paths ----------------------------------------------------------
# Each goes into the URL as one segment. Before, ".." took /subscribers/{identity}/calls up to /calls (every
# subscriber's records) and "." to /subscribers/calls; a key or a list entry of "." to the collection itself.

DOTS_ONLY = "roaming-partner: an identifier or record key of only dots cannot go in a path"


@pytest.mark.parametrize("identity", ["..", "."])
def test_an_identity_of_dots_is_refused_before_any_request(api, source, identity):
    seed(api)
    plan = ActionPlan(ActionKind.ERASE, [identity], [CategoryWork(category=add_category(source))])
    connector = HTTPConnector(source)

    with pytest.raises(SourceError) as raised:
        connector.preview(plan)
    with pytest.raises(SourceError):
        connector.apply(plan, "any fingerprint")

    assert str(raised.value) == DOTS_ONLY
    assert api.requests == []


@pytest.mark.parametrize("identity", ["a/../b", "%2e%2e", "../calls", "..."])
def test_an_identity_that_looks_like_a_path_reaches_only_its_own_records(api, source, identity):
    seed(api)
    api.data[("calls", identity)] = [{"id": f"call-{i}", "caller": identity} for i in range(3)]
    plan = ActionPlan(ActionKind.ERASE, [identity], [CategoryWork(category=add_category(source))])
    connector = HTTPConnector(source)

    result = connector.apply(plan, connector.preview(plan)["fingerprint"])

    own = f"/api/subscribers/{quote(identity, safe='')}/calls"
    assert {path.split("?")[0] for _, path, *_ in api.requests} == {own, *(f"{own}/call-{i}" for i in range(3))}
    assert result["categories"] == [{"category": "calls", "rows": 3, "fields": 3 * 2}]
    assert api.data[("calls", identity)] == []
    assert (len(api.data[("calls", ALICE)]), len(api.data[("calls", BOB)])) == (3, 1)


@pytest.mark.parametrize("key", ["..", "."])
def test_a_record_key_of_dots_is_refused_before_anything_changes(api, source, key):
    seed(api)
    api.data[("calls", BOB)][0]["id"] = key
    plan = plan_for("delete", source)
    before = copy.deepcopy(api.data)

    with pytest.raises(SourceError, match=DOTS_ONLY):
        HTTPConnector(source).preview(plan)

    assert api.writes() == []
    assert api.data == before


def test_a_record_key_that_looks_like_a_path_is_acted_on_at_its_own_path(api, source):
    seed(api, alice=3, bob=0)
    keys = ["a/../b", "%2E%2E", "..."]
    for record, key in zip(api.data[("calls", ALICE)], keys):
        record["id"] = key
    plan = plan_for("delete", source)
    connector = HTTPConnector(source)

    connector.apply(plan, connector.preview(plan)["fingerprint"])

    assert api.writes() == [("DELETE", f"/api/subscribers/%2B32470000001/calls/{quote(key, safe='')}", None) for key in keys]
    assert api.data[("calls", ALICE)] == []


@pytest.mark.parametrize("identity", ["..", "."])
def test_lifting_a_restriction_refuses_a_list_entry_of_dots_before_anything_changes(api, source, identity):
    """"." would DELETE the list itself; ".." what is above it. Alice, first, keeps her entry too."""
    api.restricted = [ALICE, identity]
    plan = ActionPlan(ActionKind.LIFT_RESTRICTION, [ALICE, identity], [], restriction_list="/restricted")
    connector = HTTPConnector(source)

    with pytest.raises(SourceError, match=DOTS_ONLY):
        connector.preview(plan)
    with pytest.raises(SourceError, match=DOTS_ONLY):
        connector.apply(plan, combined_fingerprint([]))  # no records: the dry run's fingerprint

    assert api.requests == []
    assert api.restricted == [ALICE, identity]


def test_a_url_that_climbs_out_of_its_path_once_sent_is_not_sent(api, source):
    """The last check, whatever built the URL: requests decodes %2E to ".", and the partner's server would then
    take this path up to /api/calls."""
    seed(api)
    category = add_category(source)
    category.query = "/subscribers/{identity}/%2E%2E/%2E%2E/calls"
    category.save()
    plan = ActionPlan(ActionKind.ERASE, [ALICE], [CategoryWork(category=category)])

    with pytest.raises(SourceError, match="roaming-partner: a request would leave the path it was built under; not sent"):
        HTTPConnector(source).preview(plan)

    assert api.requests == []


def test_an_http_source_deletes_only_the_records_dated_before_the_first_kept_day(api, source):
    seed(api, alice=3, bob=0)
    records = api.data[("calls", ALICE)]
    records[0]["started_at"] = "2025-01-31T23:30:00+00:00"  # older: erased
    records[1]["started_at"] = "2025-03-10"  # the first kept day: kept
    records[2]["started_at"] = "not a date"  # cannot be told older: kept
    work = CategoryWork(category=add_category(source), dated_by="started_at", kept_from=datetime.date(2025, 3, 10))
    plan = ActionPlan(ActionKind.ERASE, [ALICE], [work])
    connector = HTTPConnector(source)

    preview = connector.preview(plan)
    connector.apply(plan, preview["fingerprint"])

    assert preview["categories"] == [{"category": "calls", "rows": 1, "fields": 6}]
    assert [record["started_at"] for record in api.data[("calls", ALICE)]] == ["2025-03-10", "not a date"]


@pytest.fixture
def failed_part_way(api, source, erasure_request, dpo_actor, django_capture_on_commit_callbacks):
    """run(method): Alice's 3 calls (the request's verified phone) erased through the services until
    the partner fails after changing one record; then run_rest() runs what is left to the end."""
    from requests_app.models import ErasureException, LegalHold, SourceAction
    from requests_app.services import actions

    def step(action, *services):
        for service in services:
            with django_capture_on_commit_callbacks(execute=True):
                service(action=SourceAction.objects.get(pk=action.pk), actor=dpo_actor)
            action = SourceAction.objects.get(pk=action.pk)
        return action

    def run(method):
        seed(api)
        category = add_category(source)
        if method == EraseMethod.ANONYMISE:
            anonymising_work(category)
            # Its caller becomes a keyed hash: a code kept, which only a hold on the codes lets erasure write.
            LegalHold.objects.create(source=source, category=category, ground=ErasureException.LEGAL_CLAIMS, basis="Dispute",
                                     until=datetime.date.today() + datetime.timedelta(days=30), pseudonyms_only=True)
        actions.plan_actions(request=erasure_request, actor=dpo_actor)
        action = step(erasure_request.source_actions.get(source=source), actions.dry_run_start, actions.approve)
        api.forced["DELETE" if method == EraseMethod.DELETE else "PATCH"] = (500, 1)  # one record changed, then a failure
        action = step(action, actions.execute)
        api.forced.clear()
        return category, action

    def run_rest(action):  # staff run the dry run again, approve what is left and execute it
        return step(action, actions.dry_run_start, actions.approve, actions.execute)

    return run, run_rest


@pytest.mark.parametrize("method, rows, fields", [(EraseMethod.DELETE, 3, 3 * 5), (EraseMethod.ANONYMISE, 3, 3 * 3)])
def test_what_a_failed_run_changed_counts_in_the_final_result(failed_part_way, erasure_request, method, rows, fields):
    """A partner failing part-way keeps the records it changed (no rollback); the retry counts only the rest,
    and the action's final result, which the letter and the certificate read, counts both."""
    from requests_app.models import ActionStatus

    run, run_rest = failed_part_way
    _category, action = run(method)
    assert action.status == ActionStatus.FAILED
    assert action.result["categories"][0]["rows"] == 1 and action.result["changed_before_failing"]

    action = run_rest(action)
    assert action.status == ActionStatus.DONE
    assert action.dry_run["categories"][0]["fields"] < fields  # the retry saw only what was left...
    (counts,) = action.result["categories"]
    assert (counts["rows"], counts["fields"]) == (rows, fields)  # ...the result counts it all
    assert "changed_before_failing" not in action.result
    # The trail counts what each run did.
    runs = erasure_request.events.filter(action__in=["source_action_failed", "source_action_done"]).order_by("sequence")
    assert [event.data["categories"][0]["rows"] for event in runs] == [1, rows - 1 if method == EraseMethod.DELETE else rows]


def test_records_changed_before_a_failure_stay_counted_when_a_hold_keeps_the_rest(failed_part_way, source):
    """Anonymised in part, then held: the retry reads nothing there, yet one record was changed (Art. 19)."""
    import datetime

    from requests_app.models import ActionStatus, ErasureException, LegalHold

    run, run_rest = failed_part_way
    category, action = run(EraseMethod.ANONYMISE)
    LegalHold.objects.create(source=source, category=category, ground=ErasureException.LEGAL_CLAIMS, basis="Dispute",
                             until=datetime.date.today() + datetime.timedelta(days=30))
    action = run_rest(action)
    assert action.status == ActionStatus.DONE
    (counts,) = action.result["categories"]
    assert (counts["rows"], counts["fields"]) == (1, 3)
    assert action.changed_anything()  # so its recipients are told


def test_rectify_refuses_a_number_other_subscribers_records_are_listed_under(api, source):
    """Corrected to Bob's number, Alice's records would be searched by it ever after, and Bob's found as hers: the dry
    run refuses it, and so does the execution (when his records came since), before any write."""
    from requests_app.sources.actions import IdentifierHeld

    seed(api, alice=3, bob=0)
    category = add_category(source, identity_field="caller")
    plan = ActionPlan(ActionKind.RECTIFY, [ALICE], [CategoryWork(category=category, changes={"caller": BOB})])
    connector = HTTPConnector(source)
    fingerprint = connector.preview(plan)["fingerprint"]  # Bob has no record: nothing to refuse
    api.data[("calls", BOB)] = calls(BOB, 2)

    with pytest.raises(IdentifierHeld, match=r"^roaming-partner: the corrected calls\.caller .* \(2 rows in calls\)"):
        connector.preview(plan)
    with pytest.raises(IdentifierHeld):
        connector.apply(plan, fingerprint)
    assert api.writes() == []


def test_rectify_counts_as_the_subjects_the_records_an_earlier_run_corrected(api, source):
    """A run that failed part-way left some of Alice's records under the corrected number (no rollback): the dry run
    again must not take them for someone else's, or the rectification could never be finished."""
    seed(api, alice=3, bob=0)
    api.data[("calls", "+32470000009")] = [{**record, "caller": "+32470000009"} for record in calls(ALICE, 1)]
    category = add_category(source, identity_field="caller")
    plan = ActionPlan(ActionKind.RECTIFY, [ALICE], [CategoryWork(category=category, changes={"caller": "+32470000009"})])
    plan.corrected_before = {"calls": 1}

    preview = HTTPConnector(source).preview(plan)

    assert preview["categories"] == [{"category": "calls", "rows": 3, "fields": 3}]
