"""The staff queue: scope and sorting, filters and their facet counts, search,
pagination, its query count, and bulk actions."""

import html
import re
from datetime import date, datetime, time

import pytest
import time_machine
from django.contrib.messages import constants as message_levels
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from requests_app.audit import Actor
from requests_app.models import (
    ActionKind,
    ActionStatus,
    ConnectorKind,
    CoveredPurpose,
    DataCategory,
    IdentityKind,
    LegalBasis,
    NoticeStatus,
    Organisation,
    PrivacyRequest,
    Recipient,
    RecipientNotice,
    RectificationChange,
    RequestType,
    SourceAction,
    SourceCategory,
    SourceSystem,
    Status,
    SuppressionPurpose,
    Team,
)
from requests_app.services.intake import RightDetails
from requests_app.staff.views import PAGE_SIZE
from tests.conftest import login_staff
from tests.factories import released_package, request_in_status, staff_in_role, submit_request

BRUSSELS = timezone.get_default_timezone()
QUEUE = reverse("staff:queue")


def at(day: date, hour: int = 10) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=BRUSSELS)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def dpo(db):
    return staff_in_role("DPO", username="dora")


@pytest.fixture
def handler(db):
    return staff_in_role("Handler", username="hanna")


@pytest.fixture
def dpo_client(client, dpo):
    return login_staff(client, dpo)


def make(status=Status.NEW, *, assignee=None, team=None, **overrides) -> PrivacyRequest:
    """A request in `status`; requests by email, post or phone are recorded by staff and start as new."""
    if overrides.get("channel", "web") != "web":
        assert status == Status.NEW
        privacy_request = submit_request(actor=Actor.system(), **overrides)
    else:
        privacy_request = request_in_status(status, **overrides)
    if assignee is not None or team is not None:
        PrivacyRequest.objects.filter(pk=privacy_request.pk).update(assignee=assignee, team=team)
    privacy_request.refresh_from_db()
    return privacy_request


def received(day: date, status=Status.NEW, **overrides) -> PrivacyRequest:
    with time_machine.travel(at(day), tick=False):
        return make(status, **overrides)


def listed(response) -> list[str]:
    """The references on the page, in order."""
    assert response.status_code == 200
    return [r.reference for r in response.context["page"].object_list]


def refs(*requests) -> set[str]:
    return {r.reference for r in requests}


def shown_total(response) -> int:
    return int(re.search(r"<h1>Queue <small>\((\d+)\)</small></h1>", response.content.decode()).group(1))


def shown_facets(response) -> dict[str, dict[str, int]]:
    """The facet options as the page shows them: {facet: {value: count}}."""
    page = response.content.decode()
    facets = {}
    for name, options in re.findall(r'<select name="(\w+)" id="filter-\w+"[^>]*>(.*?)</select>', page, re.S):
        facets[name] = {
            value: int(count)
            for value, count in re.findall(r'<option value="([^"]+)"[^>]*>[^<]*?\((\d+)\)</option>', options)
        }
    return facets


def warnings_and_successes(response):
    found = list(get_messages(response.wsgi_request))
    return (
        [m.message for m in found if m.level == message_levels.WARNING],
        [m.message for m in found if m.level == message_levels.SUCCESS],
    )


def statuses(*requests) -> list[str]:
    return [PrivacyRequest.objects.get(pk=r.pk).status for r in requests]


# --- Scope and sorting -------------------------------------------------------------


@pytest.mark.django_db
def test_default_queue_shows_open_requests_only_sorted_by_due_date(client, dpo):
    # LGPD: due 15 days after receipt, so the due dates are plain arithmetic.
    third = received(date(2026, 3, 5), Status.IN_PROGRESS, regime="lgpd")  # due 20 March
    first = received(date(2026, 3, 1), Status.NEW, regime="lgpd")  # due 16 March
    second = received(date(2026, 3, 2), Status.AWAITING_VERIFICATION, regime="lgpd")  # due 17 March, still open
    fourth = received(date(2026, 3, 6), Status.AWAITING_SUBJECT, regime="lgpd")  # due 21 March
    completed = received(date(2026, 2, 20), Status.COMPLETED, regime="lgpd")
    rejected = received(date(2026, 2, 21), Status.REJECTED, regime="lgpd")
    withdrawn = received(date(2026, 2, 22), Status.WITHDRAWN, regime="lgpd")
    assert [r.due_on for r in (first, second, third, fourth)] == [
        date(2026, 3, 16), date(2026, 3, 17), date(2026, 3, 20), date(2026, 3, 21)
    ]

    with time_machine.travel(at(date(2026, 3, 9)), tick=False):
        login_staff(client, dpo)
        default = client.get(QUEUE)
        closed = client.get(QUEUE, {"scope": "closed"})
        everything = client.get(QUEUE, {"scope": "all"})
        unknown_order = client.get(QUEUE, {"sort": "bogus"})  # an order no longer offered, in an old bookmark

    assert listed(default) == [first.reference, second.reference, third.reference, fourth.reference]
    assert listed(unknown_order) == listed(default) and "nothing matches" not in unknown_order.content.decode()
    assert shown_total(default) == 4
    assert set(listed(closed)) == refs(completed, rejected, withdrawn)
    assert len(listed(everything)) == 7


@pytest.mark.django_db
def test_each_row_shows_its_status_and_channel_by_their_labels(dpo_client):
    from requests_app.templatetags.staff_tags import channel_label, status_label

    make(Status.NEW, channel="post")
    page = dpo_client.get(QUEUE).content.decode()
    assert "<td>New</td>" in page and "<td>Post</td>" in page
    # A code that is not (or no longer) a choice shows as stored, as get_FOO_display() showed it.
    assert (status_label("archived"), channel_label("fax")) == ("archived", "fax")


# --- Filters and facet counts ----------------------------------------------------


@pytest.fixture
def mixed(dpo, handler):
    """Open requests of every kind, and one closed request that the open queue never counts."""
    proximus = Organisation.objects.create(name="Proximus")
    telenet = Organisation.objects.create(name="Telenet")
    access, erasure, portability = (RightDetails(RequestType.ACCESS), RightDetails(RequestType.ERASURE),
                                    RightDetails(RequestType.PORTABILITY))
    requests = {
        "a": make(Status.NEW, regime="gdpr", organisation=proximus, assignee=dpo),
        "b": make(Status.NEW, regime="ccpa", rights=[access, erasure]),
        "c": make(Status.IN_PROGRESS, regime="gdpr", rights=[erasure], organisation=telenet, assignee=handler),
        "d": make(Status.NEW, regime="lgpd", channel="email", organisation=proximus),
        "e": make(Status.AWAITING_VERIFICATION, regime="gdpr"),
        "g": make(Status.IDENTITY_CHECK, regime="uk_gdpr", rights=[portability], organisation=telenet, assignee=handler),
        "closed": make(Status.COMPLETED, regime="gdpr", organisation=proximus, assignee=dpo),
    }
    requests["organisations"] = {"proximus": str(proximus.public_id), "telenet": str(telenet.public_id)}
    return requests


FILTER_CASES = [
    ({"status": "new"}, "abd"),
    ({"status": "identity_check"}, "g"),
    ({"type": "erasure"}, "bc"),
    ({"type": "access"}, "abde"),
    ({"regime": "gdpr"}, "ace"),
    ({"regime": "ccpa"}, "b"),
    ({"channel": "email"}, "d"),
    ({"channel": "web"}, "abceg"),
    ({"organisation": "proximus"}, "ad"),
    ({"organisation": "telenet"}, "cg"),
    ({"assignee": "me"}, "a"),
    ({"assignee": "none"}, "bd"),  # not e: awaiting the subject's confirmation, it is nobody's work yet
    ({"assignee": "hanna"}, "cg"),
    ({"status": "new", "regime": "gdpr"}, "a"),
    ({"type": "erasure", "assignee": "none"}, "b"),
    ({}, "abcdeg"),
]


@pytest.mark.parametrize(("query", "expected"), FILTER_CASES, ids=[str(q) or "none" for q, _e in FILTER_CASES])
@pytest.mark.django_db
def test_each_filter_narrows_the_list(dpo_client, mixed, query, expected):
    query = {k: mixed["organisations"].get(v, v) if k == "organisation" else v for k, v in query.items()}
    response = dpo_client.get(QUEUE, query)
    assert set(listed(response)) == {mixed[key].reference for key in expected}
    assert shown_total(response) == len(expected)


@pytest.mark.parametrize("organisation", ["00000000-0000-0000-0000-000000000000", "not-a-uuid"])
@pytest.mark.django_db
def test_an_unknown_organisation_matches_nothing(dpo_client, mixed, organisation):
    response = dpo_client.get(QUEUE, {"organisation": organisation})
    assert listed(response) == []
    assert shown_total(response) == 0


@pytest.mark.django_db
def test_an_organisation_id_is_the_same_id_in_capitals(dpo_client, mixed):
    # UUIDs are case-insensitive on input (RFC 9562): the list and the count must agree with the lower-case id.
    upper = dpo_client.get(QUEUE, {"organisation": mixed["organisations"]["proximus"].upper()})
    assert set(listed(upper)) == refs(mixed["a"], mixed["d"])
    assert shown_total(upper) == 2


@pytest.mark.django_db
def test_without_filters_each_facet_counts_every_open_request(dpo_client, mixed):
    facets = shown_facets(dpo_client.get(QUEUE))
    assert facets["status"] == {"awaiting_verification": 1, "new": 3, "identity_check": 1, "in_progress": 1}
    assert facets["regime"] == {"gdpr": 3, "uk_gdpr": 1, "ccpa": 1, "lgpd": 1}
    assert facets["type"] == {"access": 4, "erasure": 2, "portability": 1}  # b asks for two rights
    assert facets["channel"] == {"web": 5, "email": 1}
    # e, awaiting the subject's confirmation, is no option's: not unassigned work yet (the home page's count).
    assert facets["assignee"] == {"me": 1, "none": 2, "dora": 1, "hanna": 2}
    assert facets["organisation"] == {mixed["organisations"]["proximus"]: 2, mixed["organisations"]["telenet"]: 2}


@pytest.mark.django_db
def test_facet_counts_apply_the_other_filters_but_not_their_own(dpo_client, mixed):
    response = dpo_client.get(QUEUE, {"status": "new"})
    facets = shown_facets(response)

    # The other facets count only the new requests (a, b, d)...
    assert facets["regime"] == {"gdpr": 1, "ccpa": 1, "lgpd": 1}
    assert facets["type"] == {"access": 3, "erasure": 1}
    assert facets["assignee"] == {"me": 1, "dora": 1, "none": 2}
    assert facets["channel"] == {"web": 2, "email": 1}
    # ...while the status options still count every status, to switch to.
    assert facets["status"] == {"awaiting_verification": 1, "new": 3, "identity_check": 1, "in_progress": 1}
    assert '<option value="new" selected>' in response.content.decode()
    assert shown_total(response) == 3


@pytest.mark.django_db
def test_facet_counts_with_two_filters_set(dpo_client, mixed):
    facets = shown_facets(dpo_client.get(QUEUE, {"status": "new", "regime": "gdpr"}))
    # Status counts apply the regime filter only; regime counts apply the status filter only.
    assert facets["status"] == {"awaiting_verification": 1, "new": 1, "in_progress": 1}
    assert facets["regime"] == {"gdpr": 1, "ccpa": 1, "lgpd": 1}
    # Every other facet applies both.
    assert facets["channel"] == {"web": 1}
    assert facets["assignee"] == {"me": 1, "dora": 1}


@pytest.mark.parametrize("scope", ["open", "all"])
@pytest.mark.django_db
def test_an_unknown_assignee_matches_nothing(dpo_client, mixed, scope):
    response = dpo_client.get(QUEUE, {"assignee": "nobody", "scope": scope})
    assert listed(response) == []
    assert shown_total(response) == 0


@pytest.mark.django_db
def test_counting_by_assignee_reads_the_users_id_once_rather_than_joining_the_users(dpo_client, mixed):
    # A join would pair each of the 100,000 open requests with its assignee.
    queries = queue_queries(dpo_client, assignee="hanna", scope="all")
    counts = [sql for sql in queries if "GROUP BY" in sql]
    assert counts and not any('JOIN "auth_user"' in sql for sql in counts), "\n".join(counts)
    assert shown_total(dpo_client.get(QUEUE, {"assignee": "hanna"})) == 2


@pytest.mark.django_db
def test_assignee_me_is_whoever_is_signed_in(client, mixed, handler):
    login_staff(client, handler)
    response = client.get(QUEUE, {"assignee": "me"})
    assert set(listed(response)) == refs(mixed["c"], mixed["g"])
    assert shown_facets(response)["assignee"]["me"] == 2


@pytest.mark.django_db
def test_due_filters_overdue_and_within_a_week(client, dpo):
    today = date(2026, 3, 9)
    overdue = received(date(2026, 2, 20), Status.IN_PROGRESS, regime="lgpd")  # due 7 March
    due_today = received(date(2026, 2, 22), Status.NEW, regime="lgpd")  # due 9 March: not overdue yet
    in_seven_days = received(date(2026, 3, 1), Status.IDENTITY_CHECK, regime="lgpd")  # due 16 March
    in_eight_days = received(date(2026, 3, 2), Status.NEW, regime="lgpd")  # due 17 March
    # Not email-verified: its clock has not started, so it is never overdue.
    unverified = received(date(2026, 2, 10), Status.AWAITING_VERIFICATION, regime="lgpd")  # due 25 February
    received(date(2026, 2, 1), Status.COMPLETED, regime="lgpd")  # closed: not in the queue
    assert [overdue.due_on, due_today.due_on, in_seven_days.due_on] == [date(2026, 3, 7), today, date(2026, 3, 16)]
    assert unverified.due_on < today

    with time_machine.travel(at(today), tick=False):
        login_staff(client, dpo)
        overdue_page = client.get(QUEUE, {"due": "overdue"})
        week_page = client.get(QUEUE, {"due": "week"})
        everything = client.get(QUEUE)

    assert listed(overdue_page) == [overdue.reference]
    assert listed(week_page) == [due_today.reference, in_seven_days.reference]
    assert shown_facets(everything)["due"] == {"overdue": 1, "week": 2}
    assert in_eight_days.reference in listed(everything)
    # The due filter narrows the other facets too.
    assert shown_facets(week_page)["status"] == {"new": 1, "identity_check": 1}


@pytest.mark.django_db
def test_a_request_whose_clock_staff_paused_is_neither_overdue_nor_due_soon(client, dpo):
    """A pause leaves the status as it was; its clock is stopped all the same, as the request's badge says."""
    from requests_app.selectors import workload_summary
    from requests_app.services.deadlines import clock_pause, clock_resume

    today = date(2026, 3, 9)
    late = received(date(2026, 2, 6), Status.IN_PROGRESS)  # due Friday 6 March
    soon = received(date(2026, 2, 12), Status.NEW)  # due 12 March
    with time_machine.travel(at(date(2026, 3, 5)), tick=False):  # before either was due
        for request in (late, soon):
            clock_pause(request=request, actor=Actor.staff(dpo), reason="Waiting for a copy of the ID")
    with time_machine.travel(at(today), tick=False):
        login_staff(client, dpo)
        assert listed(client.get(QUEUE, {"due": "overdue"})) == []
        assert listed(client.get(QUEUE, {"due": "week"})) == []
        # Listed apart instead, on the queue, the home page and in the digest: a pause nobody ends must not
        # hide a request for good.
        assert shown_facets(client.get(QUEUE))["due"] == {"paused": 2}
        assert set(listed(client.get(QUEUE, {"due": "paused"}))) == {late.reference, soon.reference}
        summary = workload_summary(today=today)
        assert summary["overdue_count"] == summary["due_soon_count"] == 0
        assert summary["paused_count"] == 2
        home = client.get(reverse("staff:home")).content.decode()
        assert "<strong>2</strong> clock paused</a>" in home
        from requests_app.emails import render_email

        digest = render_email("daily-digest", {"today": today, **summary}, to=["dpo@example.com"], language="en")
        assert "Clock paused: 2" in digest.body

        clock_resume(request=late, actor=Actor.staff(dpo))  # the 4 paused days move it to 10 March
        assert listed(client.get(QUEUE, {"due": "week"})) == [late.reference]
        assert workload_summary(today=today)["due_soon_count"] == 1


# --- Search ------------------------------------------------------------------------


@pytest.fixture
def people(db):
    return {
        "ana": make(subject_name="Ana Peeters", subject_email="ana@example.com", subject_phone="+32475123456"),
        "bram": make(subject_name="Bram De Smet", subject_email="bram@example.org", subject_phone="+32478999888"),
        "carla": make(subject_name="Carla Janssens", subject_email="carla@example.net", subject_phone=""),
    }


SEARCHES = [
    ("reference", lambda p: p["bram"].reference, "bram"),
    ("reference in lower case", lambda p: p["bram"].reference.lower(), "bram"),
    ("email", lambda p: "ana@example.com", "ana"),
    ("email in another case", lambda p: "Carla@Example.NET", "carla"),
    ("phone in E.164", lambda p: "+32475123456", "ana"),
    ("phone in Belgian national format", lambda p: "0475 12 34 56", "ana"),
    ("phone with spaces after the country code", lambda p: "+32 478 99 98 88", "bram"),
    ("name", lambda p: "Janssens", "carla"),
    ("part of a name in another case", lambda p: "de smet", "bram"),
]


@pytest.mark.parametrize(("what", "q", "expected"), SEARCHES, ids=[s[0] for s in SEARCHES])
@pytest.mark.django_db
def test_search(dpo_client, people, what, q, expected):
    response = search(dpo_client, q(people))
    assert listed(response) == [people[expected].reference]
    assert shown_total(response) == 1


def search(client, text, query=""):
    """Search as the page does: the text is posted and kept in the session, the URL carries a token."""
    response = client.post(reverse("staff:queue_search"), {"q": text, "query": query}, follow=True)
    final_url = response.redirect_chain[-1][0]
    assert text not in final_url and "search=" in final_url
    return response


@pytest.mark.parametrize("q", ["élodie", "ELODIE", "lefevre", "Dubois Lefèvre", "duboislefevre", "o'brien", "obrien"])
@pytest.mark.django_db
def test_a_name_is_found_whatever_its_accents_capitals_hyphens_and_spaces(dpo_client, people, q):
    """A DPO types "elodie" or "dubois lefevre" for Élodie Dubois-Lefèvre O'Brien."""
    elodie = make(subject_name="Élodie Dubois-Lefèvre O'Brien", subject_email="elodie@example.com")
    response = search(dpo_client, q)
    assert listed(response) == [elodie.reference]


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_name_search_can_read_the_trigram_index_instead_of_every_request(people, dpo):
    """At 1,000,000 requests a search by name read them all (benchmarks/dashboard.py); migration 0057's index
    serves the search's own SQL (name_for_search::text LIKE '%…%'). With sequential and plain index scans priced
    out (these few rows would not need the index), the planner takes it if, and only if, it fits that expression."""
    from requests_app.models import PrivacyRequest
    from requests_app.selectors import QueueFilters, queue_queryset

    sql, params = queue_queryset(QueueFilters(scope="all", q="dubois lefevre"), user=dpo).query.sql_with_params()
    assert "LIKE" in sql
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")  # nor reading the list's order from the due-date index
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "request_name_trgm_idx" in plan, plan
    assert PrivacyRequest.objects.count()  # the plan is for a table with rows


@pytest.fixture
def numbered(db):
    """Requests whose references share digits, as a reference misheard on the phone or half legible on a letter
    might: {reference: request}."""
    references = ["DSR-2026-00123", "DSR-2025-00123", "DSR-2026-01230", "DSR-2026-12300", "DSR-2026-100123"]
    numbered = {}
    for n, reference in enumerate(references):
        privacy_request = make(subject_name=f"Person {n}", subject_email=f"person{n}@example.com")
        PrivacyRequest.objects.filter(pk=privacy_request.pk).update(reference=reference)
        numbered[reference] = privacy_request
    return numbered


PARTIAL_REFERENCES = [
    # The number's last digits: 00123 is also how DSR-2026-100123 ends.
    ("00123", {"DSR-2026-00123", "DSR-2025-00123", "DSR-2026-100123"}),
    ("0123", {"DSR-2026-00123", "DSR-2025-00123", "DSR-2026-01230", "DSR-2026-100123"}),
    ("12300", {"DSR-2026-12300"}),
    # Without "DSR-", with a hyphen, a space or nothing for it.
    ("2026-00123", {"DSR-2026-00123"}),
    ("2025 00123", {"DSR-2025-00123"}),
    ("202600123", {"DSR-2026-00123"}),
    ("r-2026-01230", {"DSR-2026-01230"}),
    # Whole, in lower case or with spaces: that reference only, not a longer one it is the start of.
    ("dsr 2026 00123", {"DSR-2026-00123"}),
    ("dsr-2026-10012", set()),
    ("DSR2026 100123", {"DSR-2026-100123"}),
    ("  Dsr-2026-12300 ", {"DSR-2026-12300"}),
    # Digits no reference holds find nothing, nor does a part too short to narrow anything.
    ("99123", set()),
    ("23", set()),
]


@pytest.mark.parametrize(("q", "expected"), PARTIAL_REFERENCES, ids=[q for q, _ in PARTIAL_REFERENCES])
@pytest.mark.django_db
def test_a_reference_is_found_by_a_part_of_it_in_any_case_and_spacing(dpo_client, people, numbered, q, expected):
    """Staff have a reference from a phone call or a letter: its last digits, or without its "DSR-", in lower
    case or with spaces. The people's requests (DSR-<year>-00001 to 00003) share no such digits: never listed."""
    response = search(dpo_client, q, query="scope=all")
    assert set(listed(response)) == expected
    assert shown_total(response) == len(expected)


SEARCH_TOO_SHORT = (
    "That search is too short to narrow the list, so nothing matches. Give at least 4 digits of a reference's number "
    "(as in 2026-00123 or 00123), 3 letters of a name, a whole email address or a phone number."
)


# "2026-0", "2026-001" and "2026 01" were taken for phone numbers, and listed nothing without a word.
@pytest.mark.parametrize("q", ["2", "DSR", "dsr-2026", "DSR-2026-0", "R 2026 012", "an", ".", " - ", "2026-0", "2026-001", "2026 01", "+32 47"])
@pytest.mark.django_db
def test_a_search_too_short_to_narrow_the_list_shows_nothing_and_says_so(dpo_client, people, numbered, q):
    """"2026" or "DSR" is the start of almost every reference, "an" in most names: the search listed most requests,
    round the queue's other filters. It lists none, the page says why, and the box keeps what was typed."""
    # Posted as search() does, without its check that the text is not in the URL: "2" may be in the token.
    response = dpo_client.post(reverse("staff:queue_search"), {"q": q, "query": "scope=all"}, follow=True)
    assert listed(response) == [] and shown_total(response) == 0
    assert errors(response) == [SEARCH_TOO_SHORT]
    assert f'value="{html.escape(q.strip())}"' in response.content.decode()


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        # Four digits of the number are enough, with or without the year; the year's digits do not count.
        ("0123", {"DSR-2026-00123", "DSR-2025-00123", "DSR-2026-01230", "DSR-2026-100123"}),
        ("DSR-2026-0123", {"DSR-2026-01230"}),
        # Four digits alone are looked for in the number only, not the year: no number here holds 2026.
        ("2026", set()),
        # Five digits, but across the year and the number: "2026-0" is the start of almost every reference.
        ("20260", set()),
    ],
)
@pytest.mark.django_db
def test_a_part_of_a_reference_must_give_four_digits_of_its_number(dpo_client, numbered, q, expected):
    response = search(dpo_client, q, query="scope=all")
    assert set(listed(response)) == expected
    assert errors(response) == []


@pytest.mark.django_db
def test_bulk_everything_with_a_search_too_short_changes_nothing(dpo_client, handler):
    make(), make(Status.IN_PROGRESS)
    token_query = search(dpo_client, "DSR-2026").redirect_chain[-1][0].split("?", 1)[1]

    response = bulk(dpo_client, action="assign", assignee=handler.username, everything="on", query=token_query)

    assert PrivacyRequest.objects.filter(assignee__isnull=False).count() == 0
    assert errors(dpo_client.get(response.url))[-1] == SEARCH_TOO_SHORT


@pytest.mark.django_db
def test_digits_are_looked_for_in_phone_numbers_and_references_at_once(dpo_client, people, numbered):
    """Digits may be a phone number or part of a reference: "0475 12 34 56" is Ana's phone number, and its digits
    are part of DSR-2004-75123456 too. Both are listed."""
    PrivacyRequest.objects.filter(pk=numbered["DSR-2026-12300"].pk).update(reference="DSR-2004-75123456")
    response = search(dpo_client, "0475 12 34 56", query="scope=all")
    assert set(listed(response)) == {people["ana"].reference, "DSR-2004-75123456"}


@pytest.mark.parametrize(
    ("q", "indexes"),
    [
        ("00123", {"request_reference_trgm_idx"}),
        # Also a phone number, as far as its look goes: both indexes, combined (a BitmapOr).
        ("2026-00123", {"request_reference_trgm_idx", "request_phone_idx"}),
    ],
)
@pytest.mark.postgres
@pytest.mark.django_db
def test_a_search_by_part_of_a_reference_can_read_its_indexes_instead_of_every_request(numbered, dpo, q, indexes):
    """Migration 0070's indexes serve the search's own SQL (REPLACE(reference, '-', '')::text LIKE '%…%', and the
    phone number's equality). With sequential and plain index scans priced out (these few rows would not need an
    index), the planner takes them if, and only if, they fit those expressions."""
    from requests_app.selectors import QueueFilters, queue_queryset

    sql, params = queue_queryset(QueueFilters(scope="all", q=q), user=dpo).query.sql_with_params()
    assert "REPLACE" in sql
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")  # nor reading the list's order from the due-date index
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert {index for index in ("request_reference_trgm_idx", "request_phone_idx") if index in plan} == indexes, plan


@pytest.mark.django_db
def test_a_renamed_subject_is_found_by_the_new_name_only(dpo_client, people):
    """Staff correct a name in the admin (a save with update_fields, say): the search follows."""
    people["ana"].subject_name = "Anaïs Peeters"
    people["ana"].save(update_fields=["subject_name"])
    assert listed(search(dpo_client, "anais")) == [people["ana"].reference]
    assert listed(search(dpo_client, "ana peeters")) == []


@pytest.mark.django_db
def test_a_search_that_matches_nothing_shows_nothing(dpo_client, people):
    response = search(dpo_client, "nobody@example.com")
    assert listed(response) == []
    assert "Nothing here." in response.content.decode()


@pytest.mark.django_db
def test_search_text_never_reaches_a_url_and_is_kept_with_the_filters(dpo_client, people):
    response = search(dpo_client, "0475 12 34 56", query="scope=all")
    url = response.redirect_chain[-1][0]
    assert "scope=all" in url and "0475" not in url
    # A search text typed into the URL is refused: it matches nothing, never everything.
    assert shown_total(dpo_client.get(QUEUE, {"q": "nobody@example.com"})) == 0


# --- Pagination and query count -----------------------------------------------------


def many_requests(count: int, *, users, organisations) -> list[PrivacyRequest]:
    """`count` open requests spread over statuses, assignees and organisations, one paused in five."""
    created = []
    statuses_cycle = [Status.NEW, Status.IN_PROGRESS, Status.IDENTITY_CHECK, Status.AWAITING_SUBJECT, Status.NEW]
    for index in range(count):
        created.append(
            make(
                statuses_cycle[index % len(statuses_cycle)],
                assignee=users[index % len(users)],
                organisation=organisations[index % len(organisations)],
                subject_email=f"subject{index}@example.com",
            )
        )
    return created


@pytest.fixture
def crowd(dpo, handler):
    users = [dpo, handler, staff_in_role("Handler", username="hugo")]
    organisations = [Organisation.objects.create(name=name) for name in ("Proximus", "Telenet", "Orange")]
    return {"users": users, "organisations": organisations}


@pytest.mark.django_db
def test_sixty_requests_make_two_pages_of_fifty_and_ten(dpo_client, crowd):
    assert PAGE_SIZE == 50
    created = many_requests(60, **crowd)

    first = dpo_client.get(QUEUE)
    second = dpo_client.get(QUEUE, {"page": 2})

    assert len(listed(first)) == 50 and len(listed(second)) == 10
    assert set(listed(first)) | set(listed(second)) == refs(*created)
    assert shown_total(first) == shown_total(second) == 60
    assert "Page 1 of 2" in first.content.decode() and "Page 2 of 2" in second.content.decode()


def page_link(response, text: str) -> str:
    href = re.search(rf'<a href="([^"]*)">{text}</a>', response.content.decode()).group(1)
    return html.unescape(href)


@pytest.mark.django_db
def test_the_page_links_keep_the_filters(dpo_client, crowd):
    many_requests(60, **crowd)
    first = dpo_client.get(QUEUE, {"scope": "open", "sort": "reference"})
    second = dpo_client.get(QUEUE, {"scope": "open", "sort": "reference", "page": 2})

    assert page_link(first, "Next") == "?scope=open&sort=reference&page=2"
    assert page_link(second, "Previous") == "?scope=open&sort=reference&page=1"
    assert listed(first) + listed(second) == sorted(PrivacyRequest.objects.values_list("reference", flat=True))


def queue_queries(client, **params) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(QUEUE, params)
    assert response.status_code == 200
    return [query["sql"] for query in captured.captured_queries]


@pytest.mark.django_db
def test_the_queue_page_costs_the_same_queries_whatever_its_size(dpo_client, crowd):
    filtered = {"status": "new", "organisation": str(crowd["organisations"][0].public_id), "assignee": "dora"}
    many_requests(5, **crowd)
    queue_queries(dpo_client)  # warm up whatever is cached once per process
    with_five = queue_queries(dpo_client)
    filtered_with_five = queue_queries(dpo_client, **filtered)

    many_requests(55, **crowd)
    with_sixty = queue_queries(dpo_client)  # a full page of 50 rows
    second_page = queue_queries(dpo_client, page=2)
    filtered_with_sixty = queue_queries(dpo_client, **filtered)

    assert len(with_sixty) == len(with_five), "\n".join(with_sixty)
    assert len(second_page) == len(with_five), "\n".join(second_page)
    assert len(filtered_with_sixty) == len(filtered_with_five), "\n".join(filtered_with_sixty)
    assert len(with_five) <= 15


# --- Bulk actions ------------------------------------------------------------------


def bulk(client, **data):
    data.setdefault("query", "")
    return client.post(reverse("staff:bulk"), data)


@pytest.mark.django_db
def test_bulk_assign_assigns_the_selected_requests_only(dpo_client, handler):
    chosen, also_chosen, left_alone = make(), make(Status.IN_PROGRESS), make()

    response = bulk(
        dpo_client,
        action="assign",
        assignee=handler.username,
        references=[chosen.reference, also_chosen.reference],
        query="assignee=none",
    )

    assert response.status_code == 302
    assert response.url == f"{QUEUE}?assignee=none"
    assignees = dict(PrivacyRequest.objects.values_list("reference", "assignee_id"))
    assert assignees == {chosen.reference: handler.id, also_chosen.reference: handler.id, left_alone.reference: None}
    assert PrivacyRequest.objects.get(pk=chosen.pk).events.filter(action="assigned").count() == 1
    assert warnings_and_successes(response) == ([], ["Done for 2 requests."])


@pytest.mark.django_db
def test_bulk_action_on_everything_matching_the_filter(dpo_client):
    new_gdpr = [make(regime="gdpr"), make(regime="gdpr")]
    new_ccpa = make(regime="ccpa")
    checking_gdpr = make(Status.IDENTITY_CHECK, regime="gdpr")
    unverified_gdpr = make(Status.AWAITING_VERIFICATION, regime="gdpr")

    response = bulk(dpo_client, action="start_work", everything="on", query="status=new&regime=gdpr")

    assert response.status_code == 302
    assert response.url == f"{QUEUE}?status=new&regime=gdpr"
    assert statuses(*new_gdpr) == [Status.IN_PROGRESS, Status.IN_PROGRESS]
    assert statuses(new_ccpa, checking_gdpr, unverified_gdpr) == [
        Status.NEW, Status.IDENTITY_CHECK, Status.AWAITING_VERIFICATION
    ]
    assert warnings_and_successes(response) == ([], ["Done for 2 requests."])


@pytest.mark.django_db
def test_bulk_everything_with_a_search_acts_on_the_matches_only(dpo_client):
    ana = make(subject_email="ana@example.com")
    bob = make(subject_email="bob@example.com")
    token_query = search(dpo_client, "ana@example.com").redirect_chain[-1][0].split("?", 1)[1]
    bulk(dpo_client, action="start_identity_check", everything="on", query=token_query)
    assert statuses(ana, bob) == [Status.IDENTITY_CHECK, Status.NEW]
    # The old form, search text in the query, acts on nothing.
    bulk(dpo_client, action="start_work", everything="on", query="q=bob%40example.com")
    assert statuses(ana, bob) == [Status.IDENTITY_CHECK, Status.NEW]


def errors(response) -> list[str]:
    return [m.message for m in get_messages(response.wsgi_request) if m.level == message_levels.ERROR]


SEARCH_LOST = (
    "This search is no longer kept (newer searches replaced it, or it was made in another session), "
    "so nothing matches: search again."
)


@pytest.mark.django_db
def test_a_search_no_longer_kept_shows_nothing_and_says_so_on_every_page_of_the_queue(dpo_client, people):
    """Twenty newer searches in another tab push the first one out of the session: its URL must not
    then show the whole queue, nor its next page, nor its filter form."""
    first = search(dpo_client, "ana@example.com", query="scope=all").redirect_chain[-1][0]
    for n in range(20):
        search(dpo_client, f"someone{n}@example.com")

    for url in (first, f"{first}&page=2", f"{first}&status=new"):
        page = dpo_client.get(url)
        assert listed(page) == [] and shown_total(page) == 0
        assert errors(page) == [SEARCH_LOST]


@pytest.mark.django_db
def test_a_search_made_in_another_session_shows_nothing_and_says_so(dpo_client, people):
    url = search(dpo_client, "ana@example.com").redirect_chain[-1][0]
    colleague = login_staff(Client(), staff_in_role("DPO", username="colleague"))
    page = colleague.get(url)
    assert listed(page) == [] and shown_total(page) == 0
    assert errors(page) == [SEARCH_LOST]


@pytest.mark.django_db
def test_bulk_everything_with_a_search_no_longer_kept_changes_nothing(dpo_client, handler):
    make(subject_name="Maria Silva"), make(), make(Status.IN_PROGRESS)
    token_query = search(dpo_client, "maria silva").redirect_chain[-1][0].split("?", 1)[1]
    for n in range(20):
        search(dpo_client, f"someone{n}@example.com")

    response = bulk(dpo_client, action="assign", assignee=handler.username, everything="on", query=token_query)

    assert response.status_code == 302 and response.url == f"{QUEUE}?{token_query}"
    assert PrivacyRequest.objects.filter(assignee__isnull=False).count() == 0
    assert errors(dpo_client.get(response.url)) == [
        "Nothing was changed: the action was for every request matching the filter, and the filter cannot be read.",
        SEARCH_LOST,
    ]


@pytest.mark.django_db
def test_bulk_everything_with_an_unreadable_filter_changes_nothing_and_says_so(dpo_client):
    waiting = make()
    response = bulk(dpo_client, action="start_work", everything="on", query="status=nonsense")
    assert statuses(waiting) == [Status.NEW]
    assert errors(response) == [
        "Nothing was changed: the action was for every request matching the filter, and the filter cannot be read."
    ]


@pytest.mark.parametrize("case", ["lower", "upper"])
@pytest.mark.django_db
def test_bulk_everything_acts_on_exactly_the_requests_the_queue_shows(dpo_client, case):
    proximus = Organisation.objects.create(name="Proximus")
    make(organisation=proximus), make(organisation=proximus), make()
    organisation = str(proximus.public_id)
    query = f"organisation={organisation.upper() if case == 'upper' else organisation}"

    page = dpo_client.get(f"{QUEUE}?{query}")
    bulk(dpo_client, action="start_work", everything="on", query=query)

    acted_on = set(PrivacyRequest.objects.filter(status=Status.IN_PROGRESS).values_list("reference", flat=True))
    assert acted_on == set(listed(page))
    assert len(acted_on) == shown_total(page)


@pytest.mark.django_db
def test_bulk_status_action_skips_requests_whose_state_does_not_allow_it(dpo_client):
    first, in_progress, last = make(Status.NEW), make(Status.IN_PROGRESS), make(Status.NEW)
    events_before = in_progress.events.count()

    response = bulk(
        dpo_client, action="start_identity_check", references=[first.reference, in_progress.reference, last.reference]
    )

    assert statuses(first, in_progress, last) == [Status.IDENTITY_CHECK, Status.IN_PROGRESS, Status.IDENTITY_CHECK]
    assert in_progress.events.count() == events_before
    warnings, successes = warnings_and_successes(response)
    assert successes == ["Done for 2 requests."]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{in_progress.reference}: ")
    assert "cannot be moved to identity check" in warnings[0]


@pytest.mark.django_db
def test_bulk_start_applies_to_the_requests_as_the_queue_showed_them(dpo_client):
    """The queue showed them new; meanwhile a colleague asked one's subject a question and started checking
    another's identity. "Start work" must neither end the wait for the subject nor skip the identity check."""
    from requests_app.audit import Actor
    from requests_app.services import handling

    waiting, checking, untouched = make(), make(), make()
    colleague = Actor.staff(staff_in_role("DPO", username="colleague"))
    handling.request_information(request=waiting, actor=colleague, body="Please send a copy of your ID.", expected_status=Status.NEW)
    handling.request_transition(request=checking, actor=colleague, name="start_identity_check", expected_status=Status.NEW)

    response = bulk(dpo_client, action="start_work", references=[f"{r.reference} new" for r in (waiting, checking, untouched)])

    assert statuses(waiting, checking, untouched) == [Status.AWAITING_SUBJECT, Status.IDENTITY_CHECK, Status.IN_PROGRESS]
    assert PrivacyRequest.objects.get(pk=waiting.pk).clock_paused
    warnings, successes = warnings_and_successes(response)
    assert successes == ["Done for 1 request."]
    assert sorted(warnings) == sorted([
        f"{waiting.reference}: It is waiting for the subject: resume it from its page.",
        f"{checking.reference}: Request {checking.reference} has changed since you loaded it (it is now Identity check). Reload and try again.",
    ])


@pytest.mark.django_db
def test_bulk_start_on_everything_matching_leaves_the_requests_waiting_for_the_subject(dpo_client):
    from requests_app.audit import Actor
    from requests_app.services import handling

    waiting = make(Status.IN_PROGRESS)
    handling.request_information(
        request=waiting, actor=Actor.staff(staff_in_role("DPO", username="colleague")), body="Which account?", expected_status=Status.IN_PROGRESS
    )

    response = bulk(dpo_client, action="start_work", everything="on", query="")

    assert statuses(waiting) == [Status.AWAITING_SUBJECT]
    assert warnings_and_successes(response)[0] == [f"{waiting.reference}: It is waiting for the subject: resume it from its page."]


@pytest.mark.django_db
def test_bulk_complete_completes_in_progress_requests_and_skips_the_others(dpo_client):
    working, new = make(Status.IN_PROGRESS), make(Status.NEW)
    released_package(working)

    asked = bulk(dpo_client, action="complete", references=[working.reference, new.reference])
    # Closing requests and sending letters cannot be undone: first, how many will close (the new one
    # cannot be completed), and a second click.
    assert asked.status_code == 200 and "1 request will be closed" in asked.content.decode()
    page = asked.content.decode()
    assert "1 other selected request cannot be completed now and is left as it is:" in page
    # Each one named, with its own reason.
    assert f'{new.reference}</a>: it is not in progress but new</li>' in page
    assert statuses(working, new) == [Status.IN_PROGRESS, Status.NEW] and not working.messages.exists()
    fields = confirmation_fields(asked)
    assert fields["references"] == [working.reference] and fields["confirmed_letters"][0].startswith(f"{working.reference}:")

    response = dpo_client.post(reverse("staff:bulk"), fields)

    assert statuses(working, new) == [Status.COMPLETED, Status.NEW]
    assert working.messages.filter(subject__contains="is complete").count() == 1  # the standard letter
    assert warnings_and_successes(response) == ([], ["Done for 1 request."])


def confirmation_fields(page) -> dict:
    """The hidden fields of the confirmation page's form, as its second click sends them."""
    pairs = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.content.decode())
    fields = {}
    for name, value in pairs:
        if name != "csrfmiddlewaretoken":
            fields.setdefault(name, []).append(value)
    return fields


@pytest.mark.django_db
def test_bulk_completion_closes_exactly_the_requests_it_listed(dpo_client):
    """"All matching the filter": a request that matches only after the confirmation page is not closed unseen."""
    listed_one = make(Status.IN_PROGRESS)
    released_package(listed_one)  # an access request is answered with its data
    asked = bulk(dpo_client, action="complete", everything="on", query="status=in_progress")
    assert "1 request will be closed" in asked.content.decode() and listed_one.reference in asked.content.decode()
    started_meanwhile = make(Status.IN_PROGRESS)
    released_package(started_meanwhile)

    dpo_client.post(reverse("staff:bulk"), confirmation_fields(asked))

    assert statuses(listed_one, started_meanwhile) == [Status.COMPLETED, Status.IN_PROGRESS]


@pytest.mark.django_db
def test_bulk_completion_lists_apart_the_requests_it_will_not_close_and_closes_exactly_the_others(dpo_client):
    """A request completion would refuse (an access request answered without its data, a rectification
    that corrected nothing and is not refused) is listed with its reason, not counted on the button, and
    left open by the second click."""
    closable, blocked = make(Status.IN_PROGRESS), make(Status.IN_PROGRESS)
    released_package(closable)
    corrected_nothing = make(
        Status.IN_PROGRESS, rights=[RightDetails(RequestType.RECTIFICATION, rectification_data="City", rectification_value="Gent")]
    )
    selected = [closable.reference, blocked.reference, corrected_nothing.reference]

    asked = bulk(dpo_client, action="complete", references=selected)

    page = html.unescape(asked.content.decode())
    will_close, will_not_close = page.split("Will not be closed")
    assert "1 request will be closed" in will_close and closable.reference in will_close
    assert blocked.reference not in will_close and corrected_nothing.reference not in will_close
    assert f"{blocked.reference}</a>: Access (Art. 15): no data package has been released to the subject yet." in will_not_close
    assert f"{corrected_nothing.reference}</a>: No data has been corrected. Enter the corrected values" in will_not_close
    assert "Complete 1 request<" in page
    fields = confirmation_fields(asked)
    assert fields["references"] == [closable.reference] and fields["confirmed_letters"][0].startswith(f"{closable.reference}:")

    response = dpo_client.post(reverse("staff:bulk"), fields)

    assert statuses(closable, blocked, corrected_nothing) == [Status.COMPLETED, Status.IN_PROGRESS, Status.IN_PROGRESS]
    assert not blocked.messages.exists() and not corrected_nothing.messages.exists()
    assert warnings_and_successes(response) == ([], ["Done for 1 request."])


@pytest.mark.django_db
def test_bulk_completion_offers_no_button_when_nothing_can_be_closed(dpo_client):
    blocked = make(Status.IN_PROGRESS)  # an access request with no package released

    asked = bulk(dpo_client, action="complete", everything="on", query="status=in_progress")

    page = asked.content.decode()
    assert asked.status_code == 200 and "Will not be closed" in page and blocked.reference in page
    assert "will be closed and" not in page and 'name="confirmed_letters"' not in page and "Complete 0" not in page
    assert statuses(blocked) == [Status.IN_PROGRESS]


@pytest.mark.django_db
def test_bulk_completion_asks_again_when_the_listed_requests_changed(dpo_client):
    first, second = make(Status.IN_PROGRESS), make(Status.IN_PROGRESS)
    for request in (first, second):
        released_package(request)
    asked = bulk(dpo_client, action="complete", references=[first.reference, second.reference])
    assert "2 requests will be closed" in asked.content.decode()
    PrivacyRequest.objects.filter(pk=second.pk).update(status=Status.AWAITING_SUBJECT)  # a colleague asked the subject meanwhile

    again = dpo_client.post(reverse("staff:bulk"), confirmation_fields(asked))

    assert "The selection changed since you confirmed" in again.content.decode() and "1 request will be closed" in again.content.decode()
    assert statuses(first, second) == [Status.IN_PROGRESS, Status.AWAITING_SUBJECT]
    dpo_client.post(reverse("staff:bulk"), confirmation_fields(again))
    assert statuses(first, second) == [Status.COMPLETED, Status.AWAITING_SUBJECT]


def closable(**overrides) -> PrivacyRequest:
    """An access request in progress whose data package was released: completion with the standard letter closes it."""
    request = make(Status.IN_PROGRESS, **overrides)
    released_package(request)
    return request


@pytest.mark.django_db
def test_bulk_completion_shows_each_letter_once_with_the_requests_it_goes_to(dpo_client):
    """The letters as each completion writes them, subject line and text: those alike but for their request's
    reference once, naming the requests they go to; one in another language apart."""
    with time_machine.travel(at(date(2026, 3, 2)), tick=False):  # the packages' download deadline, in the letters, alike
        first, second, french = closable(), closable(), closable(language="fr")

        asked = bulk(dpo_client, action="complete", references=[first.reference, second.reference, french.reference])

    page = html.unescape(asked.content.decode())
    english, in_french = page.split('<section class="bulk-letter">')[1:]
    assert "Letter to 2 requests" in english and f">{first.reference}</a>, <a" in english and f">{second.reference}</a>" in english
    assert f"Shown as it goes to {first.reference}: the others' differ only in their reference." in english
    assert f"Your privacy request {first.reference} is complete" in english
    assert f"We have completed your request {first.reference} (" in english
    assert "By email. The link to the subject's status page is shown here without its secret." in english
    assert "Letter to 1 request" in in_french and f">{french.reference}</a>" in in_french and 'lang="fr"' in in_french
    assert "is complete" not in in_french and "Shown as it goes to" not in in_french
    assert statuses(first, second, french) == [Status.IN_PROGRESS] * 3 and not first.messages.exists()


@pytest.mark.django_db
def test_bulk_completion_says_which_letters_go_by_post(dpo_client):
    """A subject with no email address (a request recorded from a letter) is emailed nothing: staff post the letter."""
    by_post = closable()
    PrivacyRequest.objects.filter(pk=by_post.pk).update(subject_email="")

    asked = bulk(dpo_client, action="complete", references=[by_post.reference])

    page = html.unescape(asked.content.decode())
    assert "Its subject has no email address, so nothing will be emailed: once sent, the letter is under Messages" in page
    assert "By email." not in page and f"We have completed your request {by_post.reference} (" in page
    dpo_client.post(reverse("staff:bulk"), confirmation_fields(asked))
    assert statuses(by_post) == [Status.COMPLETED] and by_post.messages.get().emailed_at is None


@pytest.mark.django_db
def test_bulk_completion_sends_nothing_when_a_letter_changed_since_it_was_shown(dpo_client):
    """A DPO's completion template saved after the page was shown: none of the letters shown would go as shown, so
    none goes, and the page shows the new ones, naming those that changed. Confirmed again, they go."""
    from requests_app.models import ResponseTemplate, TemplatePurpose

    english, french = closable(), closable(language="fr")
    asked = bulk(dpo_client, action="complete", references=[english.reference, french.reference])
    ResponseTemplate.objects.create(
        purpose=TemplatePurpose.COMPLETION, language="en", subject="Request {{ reference }} done", body="All done: {{ rights }}."
    )

    again = dpo_client.post(reverse("staff:bulk"), confirmation_fields(asked))

    assert again.status_code == 200 and statuses(english, french) == [Status.IN_PROGRESS] * 2
    assert not english.messages.exists() and not french.messages.exists()
    warnings, _successes = warnings_and_successes(again)
    assert warnings == [
        f"Nothing was sent: the letter to {english.reference} changed since you confirmed. Read it again below before you confirm."
    ]
    assert f"Request {english.reference} done" in html.unescape(again.content.decode())
    assert "The selection changed" not in again.content.decode()  # the same requests would close

    done = dpo_client.post(reverse("staff:bulk"), confirmation_fields(again))

    assert statuses(english, french) == [Status.COMPLETED] * 2 and warnings_and_successes(done) == ([], ["Done for 2 requests."])
    assert english.messages.get().subject == f"Request {english.reference} done"


@pytest.mark.django_db
def test_bulk_completion_without_the_letters_confirmed_only_shows_them(dpo_client):
    """A post from a page that showed no letters (an older page, a crafted form) closes nothing: it gets the page."""
    request = closable()

    response = bulk(dpo_client, action="complete", references=[request.reference], confirmed="1")

    assert response.status_code == 200 and 'name="confirmed_letters"' in response.content.decode()
    assert statuses(request) == [Status.IN_PROGRESS] and not request.messages.exists()


@pytest.mark.django_db
def test_bulk_completion_closes_the_others_and_names_one_whose_letter_changed_as_it_went(dpo_client):
    """All or nothing holds up to the moment the letters are checked together; then each request closes on its own,
    its letter checked again as written. A template saved in that moment (here, as the first letter is written)
    changes the second letter only: it is not sent, its request stays open and is named with why, and the first
    closes with the letter confirmed."""
    from requests_app.models import ResponseTemplate, TemplatePurpose

    first, second = closable(), closable()
    asked = bulk(dpo_client, action="complete", references=[first.reference, second.reference])
    saved = []

    def template_saved_as_the_first_letter_is_written(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.startswith('INSERT INTO "requests_app_message"') and not saved:
            saved.append(ResponseTemplate.objects.create(
                purpose=TemplatePurpose.COMPLETION, language="en", subject="Done", body="Done: {{ reference }}."
            ))
        return result

    with connection.execute_wrapper(template_saved_as_the_first_letter_is_written):
        response = dpo_client.post(reverse("staff:bulk"), confirmation_fields(asked))

    assert statuses(first, second) == [Status.COMPLETED, Status.IN_PROGRESS]
    assert first.messages.get().subject == f"Your privacy request {first.reference} is complete"
    assert not second.messages.exists() and not second.events.filter(action="completion_letter_sent").exists()
    assert warnings_and_successes(response) == (
        [f"{second.reference}: Its letter changed since you confirmed, so it was not sent and the request is still open: complete it again."],
        ["Done for 1 request."],
    )


def source_with_recipient(slug: str) -> tuple[SourceCategory, Recipient]:
    source = SourceSystem.objects.create(
        slug=slug, name=slug.upper(), connector=ConnectorKind.MANUAL, identity_kind=IdentityKind.EMAIL,
        purposes="Billing", legal_basis=LegalBasis.CONTRACT, retention="5 years", origin="The subject",
    )
    category = SourceCategory.objects.create(source=source, slug="contact", category=DataCategory.CONTACT)
    return category, Recipient.objects.create(source=source, name=f"{slug.upper()} partner", country="Belgium")


def requests_for_every_completion_rule(count: int) -> list[PrivacyRequest]:
    """In-progress requests asking in turn for access (and its package), erasure with an objection
    (an erasure and an Art. 19 notice in each of two sources), and rectification (a corrected value and
    its action in each of two sources). Every other one has all its work done and can be closed."""
    made = []
    for number in range(count):
        done = number % 2 == 0
        status = ActionStatus.DONE if done else ActionStatus.PLANNED
        if number % 3 == 0:
            request = make(Status.IN_PROGRESS)
            if done:
                released_package(request)
        elif number % 3 == 1:
            request = make(Status.IN_PROGRESS, rights=[
                RightDetails(RequestType.ERASURE), RightDetails(RequestType.OBJECTION, objection_processing="Marketing emails"),
            ])
            if done:  # the subject is on the list of what they objected to (suppression.suppress)
                marketing, _ = SuppressionPurpose.objects.get_or_create(
                    slug="marketing-email", defaults={"name": "Marketing emails", "identity_kinds": ["email"]}
                )
                CoveredPurpose.objects.create(
                    right=request.rights.get(right=RequestType.OBJECTION), purpose=marketing, applied_at=timezone.now()
                )
            for letter in "ab":
                category, recipient = source_with_recipient(f"erased-{number}{letter}")
                SourceAction.objects.create(request=request, source=category.source, kind=ActionKind.ERASE, status=status, result={"rows": 1})
                RecipientNotice.objects.create(request=request, recipient=recipient, status=NoticeStatus.SENT if done else NoticeStatus.PENDING)
        else:
            request = make(Status.IN_PROGRESS, rights=[
                RightDetails(RequestType.RECTIFICATION, rectification_data="City", rectification_value="Gent"),
            ])
            for letter in "ab":
                category, _recipient = source_with_recipient(f"corrected-{number}{letter}")
                RectificationChange.objects.create(request=request, category=category, field="city", value="Gent")
                SourceAction.objects.create(
                    request=request, source=category.source, kind=ActionKind.RECTIFY, status=status,
                    result={"categories": [{"category": "contact", "rows": 1, "fields": 1}]},
                )
        made.append(request)
    return made


def bulk_completion_preview(client, requests) -> tuple:
    """The confirmation page, and the queries it took, but for those that wrote each letter: each completion that
    writes one runs (and is rolled back) in a savepoint of the test's transaction."""
    with CaptureQueriesContext(connection) as captured:
        page = bulk(client, action="complete", references=[request.reference for request in requests])
    assert page.status_code == 200
    depth, outside_letters = 0, []
    for sql in (query["sql"] for query in captured.captured_queries):
        if sql.startswith("SAVEPOINT"):
            depth += 1
        elif sql.startswith("RELEASE SAVEPOINT"):
            depth -= 1
        elif depth == 0 and not sql.startswith("ROLLBACK TO SAVEPOINT"):
            outside_letters.append(sql)
    return page, outside_letters


@pytest.mark.django_db
def test_the_bulk_completion_preview_costs_the_same_queries_for_3_requests_as_for_12(dpo_client):
    """Up to BULK_COMPLETE_MAX requests are checked at once, each rule reading a relation of each request:
    checked one request at a time, they cost 4 to 6 queries a request. Only the letters of those that will close are
    then written one by one, by the completion itself."""
    twelve = requests_for_every_completion_rule(12)
    three = twelve[:3]

    page_for_three, with_three = bulk_completion_preview(dpo_client, three)
    page_for_twelve, with_twelve = bulk_completion_preview(dpo_client, twelve)

    # The same rules, whatever was loaded with them: exactly the finished half would close.
    assert html.unescape(page_for_three.content.decode()).count("</a>: ") == 1
    assert confirmation_fields(page_for_three)["references"] == [request.reference for request in three[::2]]
    assert confirmation_fields(page_for_twelve)["references"] == [request.reference for request in twelve[::2]]
    assert len(with_twelve) == len(with_three), "\n".join(with_twelve)
    # 18 (the identities for the actions run too early; the rights, then the suppression lists each covers), and one
    # to name the requests left alone.
    assert len(with_three) <= 19, "\n".join(with_three)


@pytest.mark.django_db
def test_bulk_assign_skips_closed_requests(dpo_client, handler):
    open_request, closed = make(Status.NEW), make(Status.COMPLETED)

    response = bulk(dpo_client, action="assign", assignee=handler.username,
                    references=[open_request.reference, closed.reference])

    assignees = dict(PrivacyRequest.objects.values_list("reference", "assignee_id"))
    assert assignees == {open_request.reference: handler.id, closed.reference: None}
    warnings, _successes = warnings_and_successes(response)
    assert len(warnings) == 1 and warnings[0].startswith(f"{closed.reference}: ") and "closed" in warnings[0]


@pytest.fixture
def handler_world(handler):
    """A request of the handler's own, one of their team's, and one of another team's."""
    teammate = staff_in_role("Handler", username="tom")
    outsider = staff_in_role("Handler", username="olga")
    team = Team.objects.create(name="Telecom")
    team.members.add(handler, teammate)
    other_team = Team.objects.create(name="Retail")
    other_team.members.add(outsider)
    return {
        "own": make(assignee=handler),
        "team": make(assignee=teammate, team=team),
        "other": make(assignee=outsider, team=other_team),
        "unassigned": make(),
        "outsider": outsider,
    }


@pytest.mark.django_db
def test_a_handlers_bulk_action_skips_requests_they_may_not_work(client, handler, handler_world):
    w = handler_world
    login_staff(client, handler)
    selection = [w["own"].reference, w["team"].reference, w["other"].reference, w["unassigned"].reference]

    response = bulk(client, action="start_work", references=selection)

    assert statuses(w["own"], w["team"], w["other"], w["unassigned"]) == [
        Status.IN_PROGRESS, Status.IN_PROGRESS, Status.NEW, Status.NEW
    ]
    warnings, successes = warnings_and_successes(response)
    assert successes == ["Done for 2 requests."]
    assert sorted(w_.split(":")[0] for w_ in warnings) == sorted([w["other"].reference, w["unassigned"].reference])


@pytest.mark.django_db
def test_a_handlers_bulk_action_on_everything_changes_only_what_they_may_work(client, handler, handler_world):
    w = handler_world
    login_staff(client, handler)

    response = bulk(client, action="assign", assignee=handler.username, everything="on", query="")

    assignees = dict(PrivacyRequest.objects.values_list("reference", "assignee_id"))
    assert assignees[w["own"].reference] == handler.id
    assert assignees[w["team"].reference] == handler.id
    assert assignees[w["other"].reference] == w["outsider"].id
    assert assignees[w["unassigned"].reference] is None
    warnings, _successes = warnings_and_successes(response)
    assert sorted(w_.split(":")[0] for w_ in warnings) == sorted([w["other"].reference, w["unassigned"].reference])


@pytest.mark.parametrize(("role", "offered"), [("Auditor", False), ("Handler", True), ("DPO", True)])
@pytest.mark.django_db
def test_the_bulk_form_is_offered_to_those_who_may_use_it(client, role, offered):
    request = make()
    login_staff(client, staff_in_role(role, username="someone"))
    page = client.get(QUEUE).content.decode()
    assert ('id="bulk-form"' in page) is offered
    assert (f'name="references" value="{request.reference} new"' in page) is offered


@pytest.mark.django_db
def test_a_bulk_action_needs_a_selection(dpo_client):
    untouched = make()
    response = bulk(dpo_client, action="start_work")
    assert response.status_code == 302
    assert statuses(untouched) == [Status.NEW]
    errors = [m.message for m in get_messages(response.wsgi_request) if m.level == message_levels.ERROR]
    assert errors and "Select some requests" in errors[0]


@pytest.mark.django_db
def test_counts_including_closed_requests_come_from_running_totals_and_stay_exact(dpo_client):
    request_in_status(Status.COMPLETED)
    request_in_status(Status.NEW)
    assert shown_total(dpo_client.get(QUEUE, {"scope": "all"})) == 2
    request_in_status(Status.WITHDRAWN)
    request_in_status(Status.NEW)
    assert shown_total(dpo_client.get(QUEUE, {"scope": "all"})) == 4
    assert shown_total(dpo_client.get(QUEUE, {"scope": "closed"})) == 2
    assert shown_facets(dpo_client.get(QUEUE, {"scope": "closed"}))["status"] == {"completed": 1, "withdrawn": 1}


@pytest.mark.parametrize(
    "query",
    [
        {"scope": "all"},
        {"scope": "closed"},
        {"scope": "all", "status": "completed"},
        {"scope": "all", "type": "erasure", "regime": "gdpr"},
        {"scope": "all", "assignee": "me"},
        {"scope": "all", "assignee": "none", "channel": "web"},
        {"scope": "all", "assignee": "hanna"},
        {"scope": "closed", "due": "overdue"},
    ],
)
@pytest.mark.django_db
def test_closed_request_totals_give_the_same_counts_as_counting_every_request(dpo, mixed, monkeypatch, query):
    from requests_app import selectors
    from requests_app.audit import Actor
    from requests_app.services import handling, routing
    from requests_app.staff.forms import QueueFilterForm

    from requests_app.lifecycle import rebuild_closed_counts

    # The fixture sets assignees with direct updates (the app never reassigns a
    # closed request), so count its closed request afresh, as after a bulk load.
    rebuild_closed_counts()
    # Close some of the mixed requests through the real services, with assignees and types.
    for name, action in [("a", "complete"), ("c", "reject"), ("g", "complete")]:
        request = mixed[name]
        request.refresh_from_db()
        if request.status not in ("in_progress",):
            routing.request_assign(request=request, assignee=dpo, actor=Actor.staff(dpo))
            handling.request_transition(request=request, actor=Actor.staff(dpo), name="start_work", expected_status=None)
        if action == "complete":
            for right in request.requested_rights:
                released_package(request, kind=right)  # "a" asks for access, "g" for portability
            handling.request_complete(request=request, actor=Actor.staff(dpo), letter="", expected_status=None)
        else:
            handling.request_reject(
                request=request, actor=Actor.staff(dpo), ground="excessive", explanation="The tenth request this week.",
                expected_status=None,
            )

    filters = QueueFilterForm(query).filters()
    from_totals = selectors.queue_facets(filters, user=dpo)
    monkeypatch.setattr(selectors, "_use_closed_totals", lambda filters, closed: False)
    from_scan = selectors.queue_facets(filters, user=dpo)
    assert from_totals == from_scan
    assert from_totals[1] > 0 or query.get("due")


@pytest.mark.django_db
def test_rebuilding_the_closed_totals_matches_the_running_ones(dpo):
    from requests_app.lifecycle import rebuild_closed_counts
    from requests_app.models import ClosedRequestCount

    request_in_status(Status.COMPLETED)
    request_in_status(Status.EXPIRED)
    running = sorted(ClosedRequestCount.objects.values_list("status", "regime", "channel", "assignee_key", "organisation_key", "rights_mask", "count"))
    rebuild_closed_counts()
    rebuilt = sorted(ClosedRequestCount.objects.values_list("status", "regime", "channel", "assignee_key", "organisation_key", "rights_mask", "count"))
    assert running == rebuilt and len(rebuilt) == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_counting_open_and_closed_requests_in_parallel_gives_the_same_counts(dpo, mixed, monkeypatch):
    """Outside a transaction, the open requests and the closed totals are counted on two connections at once."""
    from requests_app import selectors
    from requests_app.lifecycle import rebuild_closed_counts
    from requests_app.staff.forms import QueueFilterForm

    rebuild_closed_counts()
    request_in_status(Status.WITHDRAWN)
    threaded = []
    real_run = selectors._run_on_own_connection
    monkeypatch.setattr(selectors, "_run_on_own_connection", lambda query: threaded.append(1) or real_run(query))
    for query in ({"scope": "all"}, {"scope": "all", "regime": "gdpr", "assignee": "me"}):
        filters = QueueFilterForm(query).filters()
        parallel = selectors.queue_facets(filters, user=dpo)
        with monkeypatch.context() as patch:
            patch.setattr(selectors, "_use_closed_totals", lambda filters, closed: False)
            scanned = selectors.queue_facets(filters, user=dpo)
        assert parallel == scanned
        assert parallel[1] > 0
    assert len(threaded) == 2  # the closed totals really were counted on the second connection


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_open_requests_are_counted_from_an_index_alone(dpo, mixed):
    """At 1,000,000 requests, reading the 100,000 open requests' rows took half of the counting
    (benchmarks/dashboard.py); migration 0061's index holds every column the counts read. With sequential and
    bitmap scans priced out, and the other indexes on the open requests dropped (in this test's transaction: with
    these few rows, never vacuumed, reading the table costs the same whichever index leads to it), the planner
    reads it without the table if, and only if, it holds them all."""
    from requests_app import selectors

    with CaptureQueriesContext(connection) as captured:
        selectors.queue_facets(selectors.QueueFilters(assignee="hanna", due="overdue", type="erasure"), user=dpo)
    [counts] = [query["sql"] for query in captured.captured_queries if "GROUPING SETS" in query["sql"]]
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX request_open_due_idx, request_status_due_idx, request_status_created_idx")
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute(f"EXPLAIN {counts}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
        # Vacuumed often enough for the index to be read alone: by default, not before a fifth of the table changed.
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'requests_app_privacyrequest'")
        [options] = cursor.fetchone()
    assert "Index Only Scan using request_open_facets_idx" in plan, plan
    assert {"autovacuum_vacuum_threshold=1000", "autovacuum_vacuum_insert_threshold=1000"} <= set(options)


@pytest.mark.django_db
def test_facets_counted_together_each_apply_the_others_filter(client, dpo):
    """Status and due, and regime, channel and type, are counted in one grouping set each (selectors.GROUPING_SETS):
    with both filters of a set chosen, each still counts with the other's filter and not its own."""
    today = date(2026, 3, 9)
    received(date(2026, 2, 20), Status.IN_PROGRESS, regime="lgpd")  # due 7 March: overdue
    received(date(2026, 2, 21), Status.NEW, regime="lgpd")  # due 8 March: overdue
    received(date(2026, 3, 1), Status.NEW, regime="lgpd")  # due 16 March: within a week
    received(date(2026, 3, 2), Status.NEW, regime="gdpr", channel="email")
    received(date(2026, 3, 3), Status.NEW, regime="gdpr")
    with time_machine.travel(at(today), tick=False):
        login_staff(client, dpo)
        both = client.get(QUEUE, {"status": "new", "due": "overdue", "regime": "lgpd", "channel": "web"})
    facets = shown_facets(both)
    assert facets["status"] == {"new": 1, "in_progress": 1}  # the overdue ones
    assert facets["due"] == {"overdue": 1, "week": 1}  # the new ones
    assert facets["regime"] == {"lgpd": 1}  # new, overdue and by web
    assert facets["channel"] == {"web": 1}  # new, overdue and under the LGPD
    assert facets["type"] == {"access": 1}
    assert shown_total(both) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_counting_closed_requests_only_takes_one_query_on_the_pages_connection(dpo, mixed, monkeypatch):
    """The second connection serves counting the open requests at the same time; there are none to count."""
    from requests_app import selectors
    from requests_app.lifecycle import rebuild_closed_counts

    rebuild_closed_counts()
    request_in_status(Status.WITHDRAWN)
    threaded = []
    monkeypatch.setattr(selectors, "_run_on_own_connection", lambda query: threaded.append(query))
    with CaptureQueriesContext(connection) as captured:
        facets, total = selectors.queue_facets(selectors.QueueFilters(scope="closed"), user=dpo)
    assert threaded == []
    assert len([query for query in captured.captured_queries if "GROUPING SETS" in query["sql"]]) == 1
    assert total == 2
    assert {option.value: option.count for option in facets["status"]} == {"completed": 1, "withdrawn": 1}


@pytest.mark.parametrize("assign", [{}, {"both": True}])
@pytest.mark.django_db
def test_a_rule_must_assign_to_a_team_or_a_person_and_says_so_plainly(dpo_client, handler, assign):
    from requests_app.models import AssignmentRule, Team

    data = {"position": 1, "name": "Operators", "active": "on"}
    if assign:
        data |= {"assign_team": Team.objects.create(name="Wholesale").pk, "assign_user": handler.pk}
    response = dpo_client.post(reverse("staff:rule_new"), data)
    page = response.content.decode()
    assert response.status_code == 200
    assert "Assign to a team or to a person, not both and not neither." in page
    assert "rule_assigns_team_or_user" not in page and "Constraint" not in page
    assert not AssignmentRule.objects.exists()


@pytest.mark.parametrize("expected", ["abc", "²"])  # "²".isdigit() is true, int("²") fails
def test_an_assignment_from_an_edited_form_is_refused_as_out_of_date(dpo_client, handler, expected):
    """The page sends the assignee it showed; a value no page of ours writes is refused, not a crash."""
    request = make()
    url = reverse("staff:request_action", args=[request.reference, "assign"])
    response = dpo_client.post(url, {"assignee": handler.username, "expected_assignee": expected})
    assert response.status_code == 409  # the page again, with the assignment form as it was sent
    assert "has changed since you loaded it" in response.content.decode()
    request.refresh_from_db()
    assert request.assignee is None


@pytest.mark.parametrize("scope", ["open", "all"])
@pytest.mark.django_db
def test_the_home_pages_unassigned_and_the_queues_unassigned_are_the_same_requests(dpo_client, handler, scope):
    """The home card links to the queue's "Unassigned": a request the subject has not confirmed yet is in
    neither (it is not work for the team yet, and cannot be assigned), and the counts agree."""
    waiting = make()
    make(Status.IN_PROGRESS, assignee=handler)
    unconfirmed = make(Status.AWAITING_VERIFICATION)

    home = dpo_client.get(reverse("staff:home"))
    assert re.search(r'href="[^"]*\?assignee=none"><strong>1</strong> unassigned</a>', home.content.decode())
    assert [r.reference for r in home.context["summary"]["unassigned"]] == [waiting.reference]

    queue = dpo_client.get(f"{QUEUE}?scope={scope}")
    assert shown_facets(queue)["assignee"] == {"none": 1, handler.username: 1}
    assert shown_facets(queue)["status"]["awaiting_verification"] == 1  # still listed, under its status
    unassigned = dpo_client.get(f"{QUEUE}?scope={scope}&assignee=none")
    assert listed(unassigned) == [waiting.reference] and shown_total(unassigned) == 1
    assert unconfirmed.reference in listed(dpo_client.get(f"{QUEUE}?scope={scope}&status=awaiting_verification"))
