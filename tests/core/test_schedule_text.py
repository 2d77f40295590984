"""Chat-event schedules in words ("Weekly on Thursday, 12:00 America/New_York"), and
their next dates when a rule has no words: never ``FREQ=`` on a page."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.features.schedule_text import (
    first_dates,
    ordinal,
    plural,
    rule_words,
    schedule_text,
    short_date,
)
from bridge.runtime.schedule import ChatEventConfig

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)  # a Monday


def _rule(rrule: str, start: str = "2026-12-10T12:00:00", zone: str = "America/New_York"
          ) -> ChatEventConfig:
    return ChatEventConfig(id="e", title="t", rrule=rrule, dtstart=datetime.fromisoformat(start),
                           timezone=zone)


def test_weekly_day_and_time() -> None:
    ev = ChatEventConfig(id="w", title="t", day="thursday", time="12:00",
                         timezone="America/New_York")
    assert schedule_text(ev, NOW) == "Weekly on Thursday, 12:00 America/New_York"


@pytest.mark.parametrize(("rrule", "start", "words"), [
    ("FREQ=WEEKLY", "2026-12-10T12:00:00", "Weekly on Thursday, 12:00 America/New_York"),
    ("FREQ=WEEKLY;BYDAY=TH", "2026-12-10T12:00:00",
     "Weekly on Thursday, 12:00 America/New_York"),
    ("FREQ=WEEKLY;INTERVAL=2;BYDAY=TH", "2026-12-10T18:30:00",
     "Every 2 weeks on Thursday, 18:30 America/New_York"),
    ("FREQ=WEEKLY;BYDAY=TH,MO", "2026-12-10T09:05:00",
     "Weekly on Monday and Thursday, 09:05 America/New_York"),
    ("RRULE:FREQ=MONTHLY;BYDAY=-1FR", "2026-12-25T19:00:00",
     "Monthly on the last Friday, 19:00 America/New_York"),
    ("FREQ=MONTHLY;BYDAY=1TU", "2026-01-06T18:00:00",
     "Monthly on the first Tuesday, 18:00 America/New_York"),
    ("FREQ=MONTHLY;BYDAY=WE;BYSETPOS=3", "2026-01-21T18:00:00",
     "Monthly on the third Wednesday, 18:00 America/New_York"),
    ("FREQ=MONTHLY;BYMONTHDAY=15", "2026-01-15T18:00:00",
     "Monthly on the 15th, 18:00 America/New_York"),
    ("FREQ=MONTHLY", "2026-01-22T18:00:00", "Monthly on the 22nd, 18:00 America/New_York"),
    ("FREQ=MONTHLY;BYMONTHDAY=-1", "2026-01-31T18:00:00",
     "Monthly on the last day, 18:00 America/New_York"),
    ("FREQ=MONTHLY;INTERVAL=3;BYDAY=2MO", "2026-01-12T18:00:00",
     "Every 3 months on the second Monday, 18:00 America/New_York"),
    ("FREQ=DAILY;COUNT=6", "2026-12-10T08:00:00", "Daily, 08:00 America/New_York, 6 times"),
    ("FREQ=DAILY;INTERVAL=2;COUNT=1", "2026-12-10T08:00:00",
     "Every 2 days, 08:00 America/New_York, once"),
    ("FREQ=WEEKLY;BYDAY=TH;UNTIL=20270630T235959", "2026-12-10T12:00:00",
     "Weekly on Thursday, 12:00 America/New_York, until 30 Jun 2027"),
    ("FREQ=WEEKLY;BYDAY=TH;BYHOUR=20;BYMINUTE=15", "2026-12-10T12:00:00",
     "Weekly on Thursday, 20:15 America/New_York"),
    ("FREQ=YEARLY", "2026-03-14T15:00:00", "Yearly on 14 March, 15:00 America/New_York"),
    ("FREQ=YEARLY;BYMONTH=11;BYDAY=4TH", "2026-11-26T15:00:00",
     "Yearly on the fourth Thursday of November, 15:00 America/New_York"),
])
def test_rules_in_words(rrule: str, start: str, words: str) -> None:
    assert rule_words(_rule(rrule, start)) == words
    assert schedule_text(_rule(rrule, start), NOW) == words


@pytest.mark.parametrize("rrule", [
    "FREQ=HOURLY;COUNT=50", "FREQ=WEEKLY;BYWEEKNO=20", "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;"
    "BYSETPOS=-1", "FREQ=DAILY;BYHOUR=9,17", "FREQ=YEARLY;BYYEARDAY=100",
    "FREQ=MINUTELY;INTERVAL=30", "FREQ=MONTHLY;BYDAY=6MO",
])
def test_rules_without_words_show_their_next_dates(rrule: str) -> None:
    ev = _rule(rrule, "2026-12-07T09:00:00", "UTC")
    assert rule_words(ev) is None
    text = schedule_text(ev, NOW)
    assert "FREQ" not in text and "=" not in text
    assert text.startswith("Next: ") or text == "No more dates"


def test_hourly_rule_lists_its_first_dates() -> None:
    ev = _rule("FREQ=HOURLY;COUNT=50", "2026-12-07T09:00:00", "Asia/Kolkata")
    # 12:00 UTC is 17:30 in Kolkata; the rule runs on the hour from 09:00 local.
    assert first_dates(ev, NOW) == ("Next: Mon 7 Dec, 18:00; Mon 7 Dec, 19:00; Mon 7 Dec, 20:00 "
                                    "(Asia/Kolkata)")


def test_a_finished_rule_has_no_more_dates() -> None:
    ev = _rule("FREQ=HOURLY;COUNT=2", "2025-01-01T09:00:00", "UTC")
    assert schedule_text(ev, NOW) == "No more dates"


def test_plurals_and_ordinals() -> None:
    assert [plural(n, "answer") for n in (0, 1, 2)] == ["0 answers", "1 answer", "2 answers"]
    assert plural(1, "person") == "1 person" and plural(4, "person") == "4 people"
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st"]
    assert short_date(datetime(2026, 12, 10, 18, 0, tzinfo=UTC)) == "Thu 10 Dec, 18:00"
