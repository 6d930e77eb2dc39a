"""The pure deadline functions: worked examples for every rule, then properties."""

import datetime
from datetime import date
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from requests_app.deadlines import (
    acknowledgement_due_date,
    add_months,
    alert_due_now,
    alert_schedule,
    alert_to_schedule,
    due_date,
    holiday_calendar,
    next_alert,
    paused_day_count,
    receipt_day,
    statutory_due_date,
)


@pytest.mark.parametrize(
    ("regime", "received", "options", "due", "why"),
    [
        ("gdpr", date(2026, 1, 30), {}, date(2026, 3, 2), "no 30 Feb: 28 Feb, a Saturday, rolls to Monday"),
        ("gdpr", date(2026, 9, 3), {}, date(2026, 10, 5), "3 Oct is a Saturday"),
        ("gdpr", date(2026, 8, 31), {}, date(2026, 9, 30), "no 31 Sep: the month's last day"),
        ("gdpr", date(2024, 1, 31), {}, date(2024, 2, 29), "leap year"),
        ("gdpr", date(2025, 1, 31), {}, date(2025, 2, 28), "not a leap year; a Friday"),
        ("gdpr", date(2026, 2, 10), {}, date(2026, 3, 10), "a plain Tuesday"),
        ("gdpr", date(2026, 12, 15), {}, date(2027, 1, 15), "across the year end"),
        ("gdpr", date(2026, 6, 21), {}, date(2026, 7, 22), "21 Jul, Belgian National Day"),
        ("gdpr", date(2026, 10, 11), {}, date(2026, 11, 12), "11 Nov, Armistice"),
        ("gdpr", date(2026, 10, 1), {}, date(2026, 11, 2), "1 Nov, All Saints, is a Sunday"),
        ("gdpr", date(2026, 11, 25), {}, date(2026, 12, 28), "Christmas Friday, then the weekend"),
        ("gdpr", date(2026, 3, 6), {}, date(2026, 4, 7), "Easter Monday"),
        ("gdpr", date(2026, 4, 14), {}, date(2026, 5, 15), "14 May 2026 is Ascension Day"),
        ("gdpr", date(2026, 7, 31), {}, date(2026, 8, 31), "31 Aug is no Belgian holiday"),
        ("uk_gdpr", date(2026, 7, 31), {}, date(2026, 9, 1), "31 Aug is the English summer bank holiday"),
        ("uk_gdpr", date(2026, 6, 21), {}, date(2026, 7, 21), "21 Jul is no English holiday"),
        ("uk_gdpr", date(2026, 11, 26), {}, date(2026, 12, 29), "Boxing Day substitute on Monday 28 Dec"),
        ("gdpr", date(2026, 11, 26), {}, date(2026, 12, 28), "Belgium has no Boxing Day"),
        ("gdpr", date(2026, 1, 30), {"extended": True}, date(2026, 4, 28), "two months from the first's end, 28 Feb"),
        ("gdpr", date(2026, 2, 10), {"extended": True}, date(2026, 5, 11), "10 May is a Sunday"),
        ("gdpr", date(2026, 5, 31), {"extended": True}, date(2026, 8, 31), "30 Jun, then 30 Aug, a Sunday"),
        ("gdpr", date(2025, 11, 30), {"extended": True}, date(2026, 3, 2), "30 Dec, then 28 Feb, a Saturday"),
        ("gdpr", date(2026, 1, 30), {"pauses": [(date(2026, 2, 2), 3)]}, date(2026, 3, 3), "pause added after the month"),
        ("gdpr", date(2026, 1, 30), {"pauses": [(date(2026, 2, 2), 1)]}, date(2026, 3, 2), "pause lands on Sunday, rolls"),
        ("gdpr", date(2026, 1, 30), {"pauses": [(date(2026, 2, 2), 1), (date(2026, 2, 9), 2)]}, date(2026, 3, 3), "two pauses"),
        ("gdpr", date(2026, 1, 30), {"extended": True, "pauses": [(date(2026, 2, 2), 10)]}, date(2026, 5, 8), "extended and paused"),
        # A pause from the due date Art. 3(4) moved on to (the month ended on a Saturday): counted from that day.
        ("gdpr", date(2026, 1, 30), {"pauses": [(date(2026, 3, 2), 1)]}, date(2026, 3, 3), "paused on the Monday it was due"),
        ("gdpr", date(2026, 3, 4), {"pauses": [(date(2026, 4, 7), 2)]}, date(2026, 4, 9), "4 Apr a Saturday, 6 Easter Monday"),
        ("gdpr", date(2026, 3, 4), {"pauses": [(date(2026, 3, 20), 1)]}, date(2026, 4, 7), "paused before: 5 Apr, a Sunday"),
        ("ccpa", date(2026, 1, 1), {}, date(2026, 2, 15), "45 days, a Sunday, no roll"),
        ("ccpa", date(2026, 1, 1), {"extended": True}, date(2026, 4, 1), "90 days"),
        ("ccpa", date(2026, 1, 1), {"pauses": [(date(2026, 1, 5), 2)]}, date(2026, 2, 17), "plus paused days"),
        ("lgpd", date(2026, 1, 1), {}, date(2026, 1, 16), "15 days"),
        ("lgpd", date(2026, 1, 1), {"pauses": [(date(2026, 1, 5), 5)]}, date(2026, 1, 21), "plus paused days"),
    ],
)
def test_worked_examples(regime, received, options, due, why):
    assert statutory_due_date(regime, received, **options) == due, why


@pytest.mark.parametrize(
    ("regime", "received_at", "day", "why"),
    [
        ("ccpa", "2026-03-02T06:30:00+00:00", date(2026, 3, 1), "22:30 on 1 March in California"),
        ("lgpd", "2026-03-03T02:30:00+00:00", date(2026, 3, 2), "23:30 on 2 March in São Paulo"),
        ("uk_gdpr", "2026-01-15T23:30:00+00:00", date(2026, 1, 15), "23:30 in London, already the 16th in Brussels"),
        ("gdpr", "2026-01-15T23:30:00+00:00", date(2026, 1, 15), "00:30 in Brussels, 23:30 in Lisbon"),
        ("gdpr", "2026-01-16T08:00:00+00:00", date(2026, 1, 16), "a morning anywhere in Europe"),
        ("gdpr", "2026-01-16T02:30:00+00:00", date(2026, 1, 15), "22:30 on the 15th in Guadeloupe, EU territory"),
        ("ccpa", "2026-03-02T12:00:00+00:00", date(2026, 3, 2), "the same day in both places"),
    ],
)
def test_a_period_starts_on_the_earlier_of_the_controllers_and_the_subjects_date(regime, received_at, day, why):
    assert receipt_day(regime, datetime.datetime.fromisoformat(received_at)) == day, why


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("hipaa", date(2026, 1, 1)), {}, "Unknown regime 'hipaa'"),
        (("gdpr", date(2026, 1, 1)), {"pauses": [(date(2026, 1, 5), -1)]}, "A pause cannot last negative days"),
        (("lgpd", date(2026, 1, 1)), {"extended": True}, "LGPD allows no extension"),
    ],
)
def test_bad_arguments_raise_clear_value_errors(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        statutory_due_date(*args, **kwargs)


def test_holiday_country_is_a_setting(settings):
    # A controller in the Netherlands: 21 Jul is an ordinary day, King's Day (27 Apr) is not.
    settings.DEADLINE_HOLIDAYS = {**settings.DEADLINE_HOLIDAYS, "gdpr": ("NL", "")}
    assert statutory_due_date("gdpr", date(2026, 6, 21)) == date(2026, 7, 21)
    assert statutory_due_date("gdpr", date(2026, 3, 27)) == date(2026, 4, 28)


def test_ccpa_receipt_must_be_confirmed_within_ten_business_days():
    assert acknowledgement_due_date("ccpa", date(2026, 3, 2)) == date(2026, 3, 16)
    # Thanksgiving and the day after are California holidays.
    assert acknowledgement_due_date("ccpa", date(2026, 11, 20)) == date(2026, 12, 8)
    assert acknowledgement_due_date("gdpr", date(2026, 3, 2)) is None


@pytest.mark.parametrize(
    ("received", "rights", "due", "why"),
    [
        (date(2026, 3, 2), ["limit_use"], date(2026, 3, 23), "15 business days, three weekends: not the 45 days"),
        (date(2026, 5, 15), ["limit_use"], date(2026, 6, 8), "Memorial Day (25 May) and three weekends skipped"),
        (date(2026, 11, 20), ["limit_use"], date(2026, 12, 15), "Thanksgiving and the day after skipped"),
        (date(2026, 3, 2), ["access", "limit_use"], date(2026, 3, 23), "the earliest of its rights' dates governs"),
        (date(2026, 3, 2), ["access"], date(2026, 4, 16), "a request to know: 45 calendar days"),
    ],
)
def test_a_ccpa_request_to_limit_is_due_within_fifteen_business_days(received, rights, due, why):
    """CCPA Regulations s. 7027(g)(1): no later than 15 business days from receipt, with no extension."""
    assert statutory_due_date("ccpa", received, rights=rights) == due, why
    assert statutory_due_date("ccpa", received, rights=rights, extended=True) == (
        due if "limit_use" in rights else date(2026, 5, 31)
    ), why


def test_add_months_keeps_the_day_or_takes_the_last_one():
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2026, 11, 30), 3) == date(2027, 2, 28)
    assert add_months(date(2026, 12, 31), 1) == date(2027, 1, 31)


BRUSSELS = ZoneInfo("Europe/Brussels")


@pytest.mark.parametrize(
    ("regime", "received_at", "options", "due", "why"),
    [
        # The GDPR applies to every request (the controller is in Brussels): the earlier of its date and the regime's.
        ("ccpa", datetime.datetime(2026, 1, 1, 12, tzinfo=BRUSSELS), {}, date(2026, 2, 2), "the GDPR's month ends before the 45 days"),
        ("ccpa", datetime.datetime(2026, 1, 1, 12, tzinfo=BRUSSELS), {"extended": True}, date(2026, 4, 1), "both: 1 April"),
        ("lgpd", datetime.datetime(2026, 1, 1, 12, tzinfo=BRUSSELS), {}, date(2026, 1, 16), "the LGPD's 15 days come first"),
        ("uk_gdpr", datetime.datetime(2026, 7, 31, 12, tzinfo=BRUSSELS), {}, date(2026, 8, 31), "31 Aug: an English bank holiday, a Belgian working day"),
        ("uk_gdpr", datetime.datetime(2026, 6, 21, 12, tzinfo=BRUSSELS), {}, date(2026, 7, 21), "21 Jul: a Belgian holiday, an English working day"),
        # 02:00 in London on 1 March is still 28 February in Guadeloupe, where the GDPR's period starts from.
        ("uk_gdpr", datetime.datetime(2026, 3, 1, 2, tzinfo=ZoneInfo("Europe/London")), {}, date(2026, 3, 30), "each from its receipt day"),
    ],
)
def test_a_request_is_due_on_the_earlier_of_the_gdprs_date_and_its_regimes(regime, received_at, options, due, why):
    assert due_date(regime, received_at, **options) == due, why


def test_a_ccpa_request_to_limit_is_due_before_the_gdprs_month():
    received_at = datetime.datetime(2026, 3, 2, 12, tzinfo=BRUSSELS)
    assert due_date("ccpa", received_at, rights=["limit_use"]) == date(2026, 3, 23)
    assert due_date("ccpa", received_at, rights=["access"]) == date(2026, 4, 2)  # the GDPR's month
    # Another regime's request to limit has no such rule of its own: the GDPR's month.
    assert due_date("gdpr", received_at, rights=["limit_use"]) == date(2026, 4, 2)


def test_paused_days_count_calendar_days():
    assert paused_day_count(date(2026, 3, 2), date(2026, 3, 4)) == 2
    assert paused_day_count(date(2026, 3, 2), date(2026, 3, 2)) == 0


def test_alert_schedule_and_the_alert_due_now():
    due = date(2026, 3, 20)
    assert alert_schedule(due, (7, 2, 0)) == [
        (date(2026, 3, 13), "remind-7"),
        (date(2026, 3, 18), "remind-2"),
        (date(2026, 3, 20), "remind-0"),
        (date(2026, 3, 21), "overdue"),
    ]
    assert next_alert(due, date(2026, 3, 1), (7, 2, 0)) == (date(2026, 3, 13), "remind-7")
    assert alert_due_now(due, date(2026, 3, 12), (7, 2, 0)) == (None, (date(2026, 3, 13), "remind-7"))
    assert alert_due_now(due, date(2026, 3, 13), (7, 2, 0)) == ("remind-7", (date(2026, 3, 18), "remind-2"))
    # Missed thresholds are not sent late: only the most urgent one.
    assert alert_due_now(due, date(2026, 3, 19), (7, 2, 0)) == ("remind-2", (date(2026, 3, 20), "remind-0"))
    assert alert_due_now(due, date(2026, 4, 30), (7, 2, 0)) == ("overdue", None)


# Properties, over the years the holiday tables cover well.
received_dates = st.dates(min_value=date(2000, 1, 1), max_value=date(2080, 12, 31))
paused = st.integers(min_value=0, max_value=400)
month_regimes = st.sampled_from(["gdpr", "uk_gdpr"])
extendable = st.sampled_from(["gdpr", "uk_gdpr", "ccpa"])


def unrolled(regime, received, extended, paused_days):
    if regime in ("gdpr", "uk_gdpr"):
        first_month_ends = add_months(received, 1)
        return (add_months(first_month_ends, 2) if extended else first_month_ends) + datetime.timedelta(days=paused_days)
    days = {"ccpa": 90 if extended else 45, "lgpd": 15}[regime]
    return received + datetime.timedelta(days=days + paused_days)


@hypothesis_settings(max_examples=300, deadline=None)
@given(regime=st.sampled_from(["gdpr", "uk_gdpr", "ccpa", "lgpd"]), received=received_dates, extended=st.booleans(), paused_days=paused)
def test_due_date_is_never_before_the_unrolled_date(regime, received, extended, paused_days):
    extended = extended and regime != "lgpd"
    due = statutory_due_date(regime, received, extended=extended, pauses=[(received, paused_days)])
    assert due >= unrolled(regime, received, extended, paused_days)
    if regime in ("ccpa", "lgpd"):
        assert due == unrolled(regime, received, extended, paused_days)
    else:
        assert (due - unrolled(regime, received, extended, paused_days)).days <= 6


@hypothesis_settings(max_examples=300, deadline=None)
@given(regime=month_regimes, received=received_dates, extended=st.booleans(), paused_days=paused)
def test_month_based_due_dates_are_working_days(regime, received, extended, paused_days):
    due = statutory_due_date(regime, received, extended=extended, pauses=[(received, paused_days)])
    assert due.weekday() < 5
    assert due not in holiday_calendar(regime)


@hypothesis_settings(max_examples=300, deadline=None)
@given(regime=extendable, first=received_dates, gap=st.integers(min_value=0, max_value=90), extended=st.booleans(), paused_days=paused)
def test_due_date_never_decreases_as_receipt_moves_later(regime, first, gap, extended, paused_days):
    later = first + datetime.timedelta(days=gap)
    assert statutory_due_date(regime, first, extended=extended, pauses=[(first, paused_days)]) <= statutory_due_date(
        regime, later, extended=extended, pauses=[(later, paused_days)]
    )



def test_the_alert_to_store_is_today_once_a_threshold_is_crossed_else_the_next_one():
    due = date(2026, 3, 20)
    assert alert_to_schedule(due, date(2026, 3, 1), (7, 2, 0)) == (date(2026, 3, 13), "remind-7")
    assert alert_to_schedule(due, date(2026, 3, 15), (7, 2, 0)) == (date(2026, 3, 15), "remind-7")
    assert alert_to_schedule(due, date(2026, 4, 30), (7, 2, 0)) == (date(2026, 4, 30), "overdue")


def test_a_crossed_alert_sent_already_is_not_stored_again_but_one_ahead_is():
    due = date(2026, 3, 20)
    assert alert_to_schedule(due, date(2026, 3, 15), (7, 2, 0), sent={"remind-7"}) == (date(2026, 3, 18), "remind-2")
    assert alert_to_schedule(due, date(2026, 3, 1), (7, 2, 0), sent={"remind-7"}) == (date(2026, 3, 13), "remind-7")
    assert alert_to_schedule(due, date(2026, 3, 21), (7, 2, 0), sent={"remind-7", "remind-2", "remind-0", "overdue"}) == (
        None, ""
    )


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    regime=st.sampled_from(["uk_gdpr", "ccpa", "lgpd"]), received=received_dates, hour=st.integers(0, 23),
    extended=st.booleans(),
)
def test_no_regime_gives_more_time_than_the_gdpr(regime, received, hour, extended):
    extended = extended and regime != "lgpd"
    received_at = datetime.datetime.combine(received, datetime.time(hour), tzinfo=ZoneInfo("Europe/Brussels"))
    due = due_date(regime, received_at, extended=extended)
    assert due <= due_date("gdpr", received_at, extended=extended)
    assert due <= statutory_due_date(regime, receipt_day(regime, received_at), extended=extended)
