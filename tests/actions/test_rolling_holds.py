"""A rolling legal hold keeps a category's recent records (call records for 12 months, say) and lets an
erasure take the older ones: in SQL sources (HTTP: test_http_actions), in the letter and on the staff pages."""

import datetime
import html

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone, translation

from requests_app.deadlines import add_months
from requests_app.models import ActionStatus, ErasureException, LegalHold, Message, Recipient, RequestType
from requests_app.services import actions, handling, notices
from requests_app.sources.actions import dated_before
from requests_app.staff.forms import LegalHoldForm
from tests.actions.conftest import ANA_PHONE, verified_request
from tests.actions.test_source_actions import _planned
from tests.conftest import login_staff
from tests.factories import staff_in_role

BASIS = "Telecom law: call records kept 12 months"
DRY_RUN_DAY = datetime.datetime(2026, 3, 10, 15, 0, tzinfo=datetime.UTC)


def rolling_hold(source, months=12, **overrides) -> LegalHold:
    return LegalHold.objects.create(**{
        "source": source, "category": source.categories.get(), "ground": ErasureException.LEGAL_OBLIGATION,
        "basis": BASIS, "keep_months": months, "dated_by": "started_at", "until": datetime.date(2036, 12, 31), **overrides,
    })


@pytest.fixture
def dated_calls(source_db):
    """Ana's calls: one 13 months before the dry run (erasable), one 10 days before it (kept), one undated (kept)."""
    source_db("ALTER TABLE calls ADD COLUMN started_at TIMESTAMP")
    source_db("UPDATE calls SET started_at = :at WHERE id = 1", at=datetime.datetime(2025, 2, 9, 12, 0))
    source_db("UPDATE calls SET started_at = :at WHERE id = 2", at=datetime.datetime(2026, 2, 28, 9, 30))
    source_db("INSERT INTO calls (id, caller, callee, duration_s) VALUES (4, :caller, '+32470000097', 5)", caller=ANA_PHONE)


def test_an_erasure_keeps_the_records_of_the_last_months_and_erases_the_older(
    cdr, dated_calls, erasure_request, dpo_actor, source_db, run
):
    rolling_hold(cdr)
    with time_machine.travel(DRY_RUN_DAY, tick=False):
        action = run(_planned(erasure_request, dpo_actor, cdr).id, "dry_run", "approve", actor=dpo_actor)

    kept_from = datetime.date(2025, 3, 10)
    assert action.dry_run["categories"] == [{"category": "calls", "rows": 1, "fields": 5}]
    assert action.dry_run["held_rows"] == {"calls": 2}  # the recent call and the undated one
    # Carried out days later: the records kept are the ones the dry run said, not a newer cut (nor refused as changed).
    with time_machine.travel(DRY_RUN_DAY + datetime.timedelta(days=40), tick=False):
        action = run(action.id, "execute", actor=dpo_actor)

    assert action.status == ActionStatus.DONE, action.error
    assert source_db("SELECT id FROM calls ORDER BY id") == [{"id": 2}, {"id": 3}, {"id": 4}]
    assert action.result["categories"] == [{"category": "calls", "rows": 1, "fields": 5}]
    assert action.result["held"] == [{
        "category": "calls", "ground": "legal_obligation", "basis": BASIS, "basis_translations": {}, "dated_by": "started_at",
        "kept_from": kept_from.isoformat(), "until": "2027-03-10",  # the newest kept record's 12 months
    }]
    assert action.changed_categories() == ["calls"]


def test_a_dry_run_started_again_reads_the_holds_anew(cdr, dated_calls, erasure_request, dpo_actor, source_db, run):
    rolling_hold(cdr)
    with time_machine.travel(DRY_RUN_DAY, tick=False):
        action = run(_planned(erasure_request, dpo_actor, cdr).id, "dry_run", actor=dpo_actor)
    assert action.dry_run["held"][0]["kept_from"] == "2025-03-10"
    with time_machine.travel(datetime.datetime(2027, 3, 1, 12, 0, tzinfo=datetime.UTC), tick=False):
        action = run(action.id, "dry_run", "approve", "execute", actor=dpo_actor)
    # A year on, the call of 28 Feb 2026 is no longer within 12 months: erased with the older one.
    assert action.result["held"][0]["kept_from"] == "2026-03-01"
    assert source_db("SELECT id FROM calls ORDER BY id") == [{"id": 3}, {"id": 4}]


def test_the_hold_that_keeps_most_decides(cdr, source_db):
    today = timezone.localdate()
    rolling_hold(cdr, months=6, basis="Six months")
    rolling_hold(cdr, months=12, basis="Twelve months", until=today + datetime.timedelta(days=30))
    held = actions.held_categories(cdr, today)
    # Twelve months keep more; the records are kept until the last day either hold keeps one.
    assert [(hold["basis"], hold["kept_from"], hold["until"]) for hold in held] == [
        ("Twelve months", add_months(today, -12).isoformat(), add_months(today, 6).isoformat())
    ]

    LegalHold.objects.create(
        source=cdr, ground=ErasureException.LEGAL_CLAIMS, basis="Disputed invoices", until=today + datetime.timedelta(days=3)
    )
    held = actions.held_categories(cdr, today)
    # A hold on the whole source keeps every record, whatever their dates.
    assert [(hold["basis"], "kept_from" in hold, hold["until"]) for hold in held] == [
        ("Disputed invoices", False, add_months(today, 6).isoformat())
    ]


def test_the_letter_says_which_records_were_kept_and_that_the_older_were_erased(
    cdr, dated_calls, dpo_actor, django_capture_on_commit_callbacks, run
):
    rolling_hold(cdr)
    with time_machine.travel(DRY_RUN_DAY, tick=False):
        request = verified_request(RequestType.ERASURE)
        action = run(_planned(request, dpo_actor, cdr).id, "dry_run", "approve", "execute", actor=dpo_actor)
        assert action.status == ActionStatus.DONE, action.error
        handling.request_complete(request=request, actor=dpo_actor, letter="Done.", expected_status=request.status)

    body = Message.objects.filter(request=request).latest("created_at").body
    category = "electronic communications data (call detail records)"  # inside the sentence
    assert f"We erased your data in Call records: {category} dated before 10 March 2025." in body
    assert (
        f"We kept {category} dated 10 March 2025 or later in Call records, because: {BASIS}. The right to "
        "erasure does not apply to this data: compliance with a legal obligation (Art. 17(3)(b) GDPR). We will keep it "
        "until 10 March 2027 at the latest.\n" in body
    )


def test_the_recipients_are_told_that_only_the_older_records_were_erased(
    cdr, dated_calls, erasure_request, dpo_actor, run, mailoutbox
):
    rolling_hold(cdr)
    partner = Recipient.objects.create(source=cdr, name="Interconnect", country="Belgium", notification_email="art19@ic.example")
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    with time_machine.travel(DRY_RUN_DAY, tick=False):
        action = run(erasure_request.source_actions.get().id, "dry_run", "approve", "execute", actor=dpo_actor)

    # The webhook's JSON says it for machines (notice_content), the email for people: a recipient told
    # "erased: calls" would delete the call records we must keep.
    assert action.changed_categories() == ["calls"]
    assert notices.only_records_before(action) == {"calls": {"field": "started_at", "date": "2025-03-10"}}
    [message] = mailoutbox
    assert message.to == [partner.notification_email]
    assert ": calls (only the records whose started_at is before 10 March 2025)" in message.body


def test_a_subject_with_only_older_records_is_not_told_anything_was_kept(
    cdr, dated_calls, dpo_actor, source_db, django_capture_on_commit_callbacks, run
):
    source_db("DELETE FROM calls WHERE id IN (2, 4)")
    rolling_hold(cdr)
    with time_machine.travel(DRY_RUN_DAY, tick=False):
        request = verified_request(RequestType.ERASURE)
        action = run(_planned(request, dpo_actor, cdr).id, "dry_run", "approve", "execute", actor=dpo_actor)
        handling.request_complete(request=request, actor=dpo_actor, letter="Done.", expected_status=request.status)
    assert action.dry_run["held_rows"] == {"calls": 0}
    body = Message.objects.filter(request=request).latest("created_at").body
    assert "We erased your data in Call records" in body and "We kept" not in body


def test_records_without_the_date_field_cannot_be_told_apart(cdr, erasure_request, dpo_actor, source_db, run):
    """The export query does not return the hold's date field: the dry run says so rather than guess."""
    rolling_hold(cdr, dated_by="answered_at")
    action = run(_planned(erasure_request, dpo_actor, cdr).id, "dry_run", actor=dpo_actor)
    assert action.status == ActionStatus.PLANNED
    assert action.error == "cdr: the records of category calls have no field 'answered_at' for the legal hold to date them by"
    assert source_db("SELECT count(*) AS n FROM calls") == [{"n": 3}]


@pytest.mark.parametrize(
    ("value", "before"),
    [
        (datetime.date(2025, 3, 9), True),
        (datetime.date(2025, 3, 10), False),
        (datetime.datetime(2025, 3, 9, 23, 30, tzinfo=datetime.UTC), False),  # 10 March in Brussels
        (datetime.datetime(2025, 3, 9, 23, 30), True),  # no offset: the source's own day
        ("2025-03-09", True),
        ("2025-03-09T12:00:00+01:00", True),
        ("", False),
        (None, False),
        (20250309, False),
    ],
)
def test_what_counts_as_dated_before_the_first_kept_day(value, before):
    assert dated_before(value, datetime.date(2025, 3, 10)) is before


def _hold_form(cdr, **data):
    return LegalHoldForm(data={
        "source": cdr.pk, "category": cdr.categories.get().pk, "ground": ErasureException.LEGAL_OBLIGATION,
        "basis": BASIS, "until": "2036-12-31", "keep_months": "12", "dated_by": "started_at", **data,
    })


PLAIN_NAME = "Use a plain name: letters, digits and underscores."


@pytest.mark.parametrize(
    ("data", "errors"),
    [
        ({"category": ""}, {"__all__": ["A hold on the last months names one category: the date field is that category's."]}),
        ({"dated_by": ""}, {"__all__": ["Name the field that dates each record, to tell the recent ones from the older."]}),
        ({"keep_months": ""}, {"__all__": ["Give the number of months to keep, or leave the date field empty."]}),
        # A wrong number is said once, as a number: not also as missing.
        ({"keep_months": "0"}, {"keep_months": ["Ensure this value is greater than or equal to 1."]}),
        ({"keep_months": "-3"}, {"keep_months": ["Ensure this value is greater than or equal to 1."]}),
        ({"keep_months": "121"}, {"keep_months": ["Ensure this value is less than or equal to 120."]}),
        ({"dated_by": "started_at; DROP TABLE calls"}, {"dated_by": [PLAIN_NAME]}),
        # The records' own field, as the export reads them: not table.column.
        ({"dated_by": "cdrs.started_at"}, {"dated_by": [PLAIN_NAME]}),
    ],
)
def test_a_rolling_hold_needs_a_category_a_date_field_and_months(cdr, data, errors):
    form = _hold_form(cdr, **data)
    assert not form.is_valid()
    assert form.errors == errors
    assert not LegalHold.objects.exists()


def test_a_hold_on_the_codes_keeps_no_records_the_recent_ones_no_more_than_the_others(cdr, dated_calls):
    form = _hold_form(cdr, pseudonyms_only="on")
    assert not form.is_valid()
    assert form.errors == {"__all__": ["A hold on the codes keeps no records: leave the number of months empty."]}


def test_a_hold_on_the_codes_is_saved_for_a_source_or_a_category(cdr):
    for category in ("", cdr.categories.get().pk):
        form = _hold_form(cdr, category=category, keep_months="", dated_by="", pseudonyms_only="on")
        assert form.is_valid(), form.errors
        assert form.save().pseudonyms_only


def test_a_hold_keeping_every_record_needs_neither_months_nor_date_field(cdr):
    form = _hold_form(cdr, category="", keep_months="", dated_by="")
    assert form.is_valid(), form.errors
    form.save()
    assert LegalHold.objects.get().keep_months is None


def test_the_end_date_is_shown_in_the_form_as_the_browser_reads_it(cdr, dated_calls):
    """A date input takes ISO dates only: in French, '31/12/2036' would show an empty field."""
    hold = rolling_hold(cdr)
    with translation.override("fr"):
        page = str(LegalHoldForm(instance=hold)["until"])
    assert 'type="date"' in page and 'value="2036-12-31"' in page
    with translation.override("fr"):
        form = _hold_form(cdr, until="2036-12-31")
        assert form.is_valid(), form.errors


def test_the_inventory_and_the_action_panel_show_what_a_rolling_hold_keeps(
    cdr, dated_calls, erasure_request, dpo_actor, client, run
):
    dpo_client = login_staff(client, staff_in_role("DPO", username="dpo1"))
    rolling_hold(cdr)
    assert _hold_form(cdr).is_valid()
    page = dpo_client.get("/staff/inventory/").content.decode()
    assert "calls</a> <small>(the records of the last 12 months, by started_at)</small>" in page

    with time_machine.travel(DRY_RUN_DAY, tick=False):
        action = run(_planned(erasure_request, dpo_actor, cdr).id, "dry_run", actor=dpo_actor)
    page = dpo_client.get(f"/staff/requests/{erasure_request.reference}/").content.decode()
    assert "<strong>Kept: calls (started_at from 10 March 2025 on)</strong>, 2 rows" in page
    assert f"{BASIS} · until 10 March 2027<br>" in page
    assert action.dry_run["categories"] == [{"category": "calls", "rows": 1, "fields": 5}]


def test_a_date_field_the_sources_records_do_not_have_is_refused_when_the_hold_is_saved(cdr, dated_calls):
    """Saved, it would stop every erasure's dry run in the source until someone found the hold."""
    form = _hold_form(cdr, dated_by="answered_at")
    assert not form.is_valid()
    assert form.errors == {
        "dated_by": ["The records of calls have no field answered_at. Their fields: id, caller, callee, duration_s, started_at."]
    }
    assert _hold_form(cdr).is_valid()  # started_at, which the query returns


def test_a_source_that_cannot_be_reached_does_not_stop_the_hold_being_saved(cdr, dated_calls):
    """Its dry runs will check the field, and say so if it is missing."""
    cdr.connection_url = "sqlite:////nonexistent/dir/calls.sqlite3"
    cdr.save()
    assert _hold_form(cdr).is_valid()


def test_an_end_date_already_past_is_refused_for_a_new_hold_but_an_old_hold_can_still_be_edited(cdr, dated_calls):
    form = _hold_form(cdr, until="2020-01-01")
    assert not form.is_valid()
    assert form.errors == {"until": ["This date has passed: a hold that has ended keeps nothing."]}
    ended = rolling_hold(cdr, until=datetime.date(2020, 1, 1))
    edited = LegalHoldForm(instance=ended, data={**_hold_form(cdr).data, "until": "2020-01-01", "basis": "Telecom law, art. 126"})
    assert edited.is_valid(), edited.errors


def test_the_action_panel_writes_a_holds_dates_in_words_in_french(cdr, dated_calls, erasure_request, dpo_actor, client, run):
    """The dates sit inside translated sentences: "à partir du 1er mars 2025", not "à partir du 2025-03-01"."""
    dpo_client = login_staff(client, staff_in_role("DPO", username="dpo1"))
    dpo_client.post(reverse("staff:language"), {"language": "fr", "next": reverse("staff:queue")})
    rolling_hold(cdr)
    with time_machine.travel(datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC), tick=False):
        run(_planned(erasure_request, dpo_actor, cdr).id, "dry_run", actor=dpo_actor)

    page = html.unescape(dpo_client.get(reverse("staff:request", args=[erasure_request.reference])).content.decode())

    assert "<strong>Conservé\u00a0: calls (started_at à partir du 1er mars 2025)</strong>" in page
    assert f"{BASIS} · jusqu'au 1er mars 2027<br>" in page
    assert "2025-03-01" not in page and "2027-03-01" not in page


def test_the_action_panel_calls_nothing_kept_in_a_source_that_was_never_searched(cdr, dated_calls, dpo_actor, client, run):
    """No verified phone number: the call records were not searched, so nothing of the subject's is kept there
    that we know of (the completion letter says the source could not be searched, not that data was kept)."""
    from requests_app.models import IdentityKind

    dpo_client = login_staff(client, staff_in_role("DPO", username="dpo1"))
    request = verified_request(RequestType.ERASURE)
    request.identities.filter(kind=IdentityKind.PHONE).delete()
    rolling_hold(cdr)
    action = run(_planned(request, dpo_actor, cdr).id, "dry_run", actor=dpo_actor)
    assert action.dry_run["identities"] == 0 and action.dry_run["held"]  # the hold applies to the source

    page = dpo_client.get(reverse("staff:request", args=[request.reference])).content.decode()

    assert "Nothing to search by: verify an identifier of the kind this source uses first." in page
    assert "Kept:" not in page
