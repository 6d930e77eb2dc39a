"""Statutory deadlines: pure functions of dates, no database access.

GDPR Art. 12(3) gives one month from receipt, extendable by two further
months (counted from the end of the first). "One month" is counted as
Regulation 1182/71 Art. 3 says: the same date in the next month, or that
month's last day when it has no such date; a period ending on a Saturday,
Sunday or public holiday ends on the next working day. Which holidays count
is a setting per regime, so a controller in another member state can change it.
"""

import calendar
import datetime
from collections.abc import Collection, Iterable
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays
from django.conf import settings
from django.utils import timezone

REGIMES = ("gdpr", "uk_gdpr", "ccpa", "lgpd")
# Regimes whose periods end on the next working day (Regulation 1182/71 Art. 3(4)).
ROLL_TO_WORKING_DAY = {"gdpr", "uk_gdpr"}
# Regimes whose clock stops while the controller waits for the subject (information needed to
# identify them or to understand the request: Art. 12(6), EDPB Guidelines 01/2022). The CCPA's
# 45 days run "regardless of time required to verify the request" (CCPA Regulations
# s. 7021(b)); the LGPD says nothing, and the earlier date is the safe one.
CLOCK_STOPS_WHILE_WAITING = {"gdpr", "uk_gdpr"}
CCPA_DAYS, CCPA_EXTENDED_DAYS = 45, 90
LGPD_DAYS = 15
CCPA_ACKNOWLEDGEMENT_BUSINESS_DAYS = 10
# CCPA Regulations (Cal. Code Regs. tit. 11) s. 7027(g)(1): a business complies with a request to limit the use of
# sensitive personal information by ceasing that use "as soon as feasibly possible, but no later than 15 business days
# from the date the business receives the request". Not a verifiable consumer request (s. 7027(e)), so not s. 7021's
# 45 days, and no extension.
CCPA_LIMIT_BUSINESS_DAYS = 15
# The right whose request the CCPA answers in CCPA_LIMIT_BUSINESS_DAYS (models.RequestType.LIMIT_USE).
CCPA_LIMIT_RIGHT = "limit_use"


# Where each regime's data subjects are (for the GDPR, the westernmost of the EU/EEA: its outermost
# regions in the Caribbean, Guadeloupe, Martinique and Saint-Martin, UTC-4, are EU territory). A request
# sent late in the evening in California is already the next day in Brussels: counted from the Brussels
# date, its period would end a day late.
REGIME_TIME_ZONES = {
    "gdpr": "America/Guadeloupe",
    "uk_gdpr": "Europe/London",
    "ccpa": "America/Los_Angeles",
    "lgpd": "America/Sao_Paulo",
}


def receipt_day(regime: str, received_at: datetime.datetime) -> datetime.date:
    """The day a period starts from: the earlier of the controller's date and the date where the
    regime's subjects are, so that no period ends later than the law allows."""
    _check_regime(regime)
    where_the_subject_is = received_at.astimezone(ZoneInfo(REGIME_TIME_ZONES[regime])).date()
    return min(timezone.localdate(received_at), where_the_subject_is)


def add_months(day: datetime.date, months: int) -> datetime.date:
    """The same date `months` later; the month's last day when it has no such date."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return datetime.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


@lru_cache(maxsize=16)
def _holiday_calendar(country: str, subdivision: str) -> holidays.HolidayBase:
    return holidays.country_holidays(country, subdiv=subdivision or None, categories=("public",))


def holiday_calendar(regime: str) -> holidays.HolidayBase | None:
    """The public holidays that count for `regime`, from the DEADLINE_HOLIDAYS setting."""
    country_and_subdivision = settings.DEADLINE_HOLIDAYS.get(regime)
    if not country_and_subdivision:
        return None
    return _holiday_calendar(*country_and_subdivision)


def is_working_day(day: datetime.date, calendar_: holidays.HolidayBase | None) -> bool:
    return day.weekday() < 5 and (calendar_ is None or day not in calendar_)


def next_working_day(day: datetime.date, calendar_: holidays.HolidayBase | None) -> datetime.date:
    """`day` itself if it is a working day, else the first working day after it."""
    while not is_working_day(day, calendar_):
        day += datetime.timedelta(days=1)
    return day


def _check_regime(regime: str) -> None:
    if regime not in REGIMES:
        raise ValueError(f"Unknown regime {regime!r}: expected one of {', '.join(REGIMES)}")


# A clock pause: its first day (the controller's date) and the calendar days it lasted (paused_day_count).
Pause = tuple[datetime.date, int]


def due_date(
    regime: str, received_at: datetime.datetime, *, rights: Iterable[str] = (), extended: bool = False,
    pauses: Iterable[Pause] = (),
) -> datetime.date:
    """The last day to answer a request for `rights` received at `received_at` under `regime`: the earlier of the
    GDPR's date and the regime's own, each counted from its own receipt day (receipt_day). The controller is
    established in the Union, so the GDPR applies to every request, wherever the subject lives (Art. 3(1), Recital
    14); another regime adds its rules for those it protects."""
    pauses = list(pauses)
    own = statutory_due_date(regime, receipt_day(regime, received_at), rights=rights, extended=extended, pauses=pauses)
    if regime == "gdpr":
        return own
    gdpr = statutory_due_date("gdpr", receipt_day("gdpr", received_at), extended=extended, pauses=pauses)
    return min(own, gdpr)


def statutory_due_date(
    regime: str, received_on: datetime.date, *, rights: Iterable[str] = (), extended: bool = False,
    pauses: Iterable[Pause] = (),
) -> datetime.date:
    """The last day to answer a request for `rights` (RequestType values) received on `received_on`, under
    `regime`'s own rules alone (due_date adds the GDPR's).

    gdpr / uk_gdpr: one month (three when extended) per Regulation 1182/71,
    plus the days the clock was paused (_moved_on_by_pauses), rolled forward
    past weekends and the regime's public holidays. ccpa: 45 calendar days
    (90 when extended); a request that asks to limit the use of sensitive personal information, when
    that right's 15 business days end, never extended (a request has one due
    date: the earliest of its rights'). lgpd: 15 calendar days and no
    extension. Raises ValueError for an unknown regime, a pause of negative
    days, or an extension the regime does not allow.
    """
    _check_regime(regime)
    pauses = sorted(pauses)
    if any(days < 0 for _first_day, days in pauses):
        raise ValueError(f"A pause cannot last negative days (got {pauses})")
    pause = datetime.timedelta(days=sum(days for _first_day, days in pauses))

    if regime in ROLL_TO_WORKING_DAY:
        first_month_ends = add_months(received_on, 1)
        # The two further months run from the end of the first: received on 31 January, the
        # period ends on 28 February, then on 28 April (not 30 April, three months on).
        end = add_months(first_month_ends, 2) if extended else first_month_ends
        return next_working_day(_moved_on_by_pauses(end, pauses, holiday_calendar(regime)), holiday_calendar(regime))
    if regime == "ccpa":
        end = received_on + datetime.timedelta(days=CCPA_EXTENDED_DAYS if extended else CCPA_DAYS) + pause
        if CCPA_LIMIT_RIGHT in rights:
            return min(end, business_days_after(received_on, CCPA_LIMIT_BUSINESS_DAYS, holiday_calendar(regime)))
        return end
    if extended:
        raise ValueError("LGPD allows no extension of the 15-day period")
    return received_on + datetime.timedelta(days=LGPD_DAYS) + pause


def _moved_on_by_pauses(end: datetime.date, pauses: list[Pause], calendar_: holidays.HolidayBase | None) -> datetime.date:
    """A period's `end` moved on by the days of each pause (in order). A pause that began after the period's own
    end, in the days Art. 3(4) of Regulation 1182/71 added up to the next working day, counts from that working
    day: it was the due date in force, and a request paused on it must not be overdue once the clock restarts."""
    for first_day, days in pauses:
        if first_day > end:
            end = next_working_day(end, calendar_)
        end += datetime.timedelta(days=days)
    return end


def acknowledgement_due_date(regime: str, received_on: datetime.date) -> datetime.date | None:
    """When receipt must be confirmed: 10 business days under CCPA; None where no rule applies."""
    _check_regime(regime)
    if regime != "ccpa":
        return None
    return business_days_after(received_on, CCPA_ACKNOWLEDGEMENT_BUSINESS_DAYS, holiday_calendar(regime))


def business_days_after(day: datetime.date, count: int, calendar_: holidays.HolidayBase | None) -> datetime.date:
    """The `count`th working day after `day` (which itself does not count)."""
    remaining = count
    while remaining:
        day += datetime.timedelta(days=1)
        if is_working_day(day, calendar_):
            remaining -= 1
    return day


def paused_day_count(started_on: datetime.date, ended_on: datetime.date) -> int:
    """Calendar days a pause added: paused Monday and resumed Wednesday is two days."""
    return max((ended_on - started_on).days, 0)


def alert_schedule(due_on: datetime.date, reminder_days: tuple[int, ...]) -> list[tuple[datetime.date, str]]:
    """The (date, key) of each reminder before `due_on`, then the escalation the day after it."""
    stages = [(due_on - datetime.timedelta(days=days), f"remind-{days}") for days in sorted(set(reminder_days), reverse=True)]
    stages.append((due_on + datetime.timedelta(days=1), "overdue"))
    return stages


def next_alert(
    due_on: datetime.date, today: datetime.date, reminder_days: tuple[int, ...]
) -> tuple[datetime.date, str] | None:
    """The first alert still to come (today's included); None once the escalation is past."""
    return next(((day, key) for day, key in alert_schedule(due_on, reminder_days) if day >= today), None)


def alert_due_now(
    due_on: datetime.date, today: datetime.date, reminder_days: tuple[int, ...]
) -> tuple[str | None, tuple[datetime.date, str] | None]:
    """The alert to send today (the most urgent one crossed) and the one after it.

    Thresholds crossed earlier and never sent (a missed sweep, an old letter
    recorded late) are not sent late: only the current one is.
    """
    schedule = alert_schedule(due_on, reminder_days)
    crossed = [index for index, (day, _) in enumerate(schedule) if day <= today]
    if not crossed:
        return None, next_alert(due_on, today, reminder_days)
    current = crossed[-1]
    following = schedule[current + 1] if current + 1 < len(schedule) else None
    return schedule[current][1], following


def alert_to_schedule(
    due_on: datetime.date, today: datetime.date, reminder_days: tuple[int, ...], *, sent: Collection[str] = ()
) -> tuple[datetime.date | None, str]:
    """The (day, key) to store as a running clock's next alert: today when a threshold is already
    crossed (a letter recorded late), so the sweep sends it at once; else the next one.

    `sent`: the alerts ("remind-7", ...) that already went out for the request, for any due date. A crossed
    one among them is not sent again for the new date: a pause gives back the days it lasted, so once the
    clock restarts as many days are left as when it stopped (a weekend or holiday aside), and the reminder
    sent before said it already ("due in 7 days" the day before a one-day pause; "due in 6 days" after it
    would only repeat it). Thresholds still ahead of the new date are sent when they come, those sent before
    included: an extension's months give the request a whole run-up again, and its reminders with it.
    """
    current_key, following = alert_due_now(due_on, today, reminder_days)
    if current_key and current_key not in sent:
        return today, current_key
    return following or (None, "")


def days_left(due_on: datetime.date, today: datetime.date) -> int:
    """Days until `due_on`: 0 on the day itself, negative when overdue."""
    return (due_on - today).days
