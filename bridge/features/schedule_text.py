"""A chat event's schedule as people read schedules, and English plurals.

"Weekly on Thursday, 12:00 America/New_York", "Every 2 weeks on Monday and Thursday,
18:30 UTC", "Monthly on the last Friday, 19:00 Europe/Paris, 6 times".  A rule this
module has no words for (hourly, ``BYWEEKNO``, ``BYSETPOS`` over several days, …) is
shown as its next dates instead, never as ``FREQ=…``.  Pure: no I/O, no clock
(the caller passes *now*).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bridge.runtime.schedule import DAYS, ChatEventConfig, Occurrence, occurrences

_CODES = {"MO": 0, "TU": 1, "WE": 2, "TH": 3, "FR": 4, "SA": 5, "SU": 6}
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_ORDINAL_WORDS = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth", -1: "last",
                  -2: "second-to-last"}
_NOUNS = {"person": "people"}


def plural(n: int, noun: str, many: str | None = None) -> str:
    """``1 answer``, ``2 answers``, ``0 answers``; ``plural(3, "person")`` is ``3 people``."""
    if n == 1:
        return f"1 {noun}"
    return f"{n} {many or _NOUNS.get(noun) or noun + 's'}"


def ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``11th``, ``22nd``."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def short_date(when: datetime) -> str:
    """``Thu 10 Dec, 18:00`` in *when*'s own zone."""
    return f"{when:%a} {when.day} {when:%b}, {when:%H:%M}"


def _parse(rule: str) -> dict[str, str] | None:
    parts: dict[str, str] = {}
    for item in rule.removeprefix("RRULE:").strip().split(";"):
        key, sep, value = item.partition("=")
        key = key.strip().upper()
        if not sep or key in parts:
            return None
        parts[key] = value.strip().upper()
    return parts


_KNOWN = {"FREQ", "INTERVAL", "BYDAY", "BYMONTHDAY", "BYMONTH", "BYSETPOS", "COUNT", "UNTIL",
          "WKST", "BYHOUR", "BYMINUTE", "BYSECOND"}


def _int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _days(byday: str) -> list[tuple[int | None, int]] | None:
    """``1TU,-1FR`` → [(1, 1), (-1, 4)]; ``MO,TH`` → [(None, 0), (None, 3)]."""
    out: list[tuple[int | None, int]] = []
    for item in byday.split(","):
        code = item[-2:]
        if code not in _CODES:
            return None
        prefix = item[:-2].lstrip("+")
        n = _int(prefix) if prefix else None
        if prefix and n is None:
            return None
        out.append((n, _CODES[code]))
    return out


def _nth_weekday(n: int, day: int) -> str | None:
    word = _ORDINAL_WORDS.get(n)
    return f"the {word} {DAYS[day].title()}" if word else None


def _month_day(n: int) -> str | None:
    if n == -1:
        return "the last day"
    return f"the {ordinal(n)}" if 1 <= n <= 31 else None


def _until(value: str) -> str | None:
    for fmt in ("%Y%m%dT%H%M%SZ", "%Y%m%dT%H%M%S", "%Y%m%d"):
        try:
            when = datetime.strptime(value, fmt)
        except ValueError:
            continue
        return f"until {when.day} {when:%b %Y}"
    return None


def _pattern(p: dict[str, str], start: datetime) -> str | None:
    """The "Weekly on Thursday" part of a parsed rule; None when it has no words."""
    freq = p.get("FREQ")
    interval = _int(p.get("INTERVAL", "1"))
    if interval is None or interval < 1:
        return None
    days = _days(p["BYDAY"]) if "BYDAY" in p else []
    if days is None:
        return None
    setpos = p.get("BYSETPOS")
    monthdays = [_int(v) for v in p["BYMONTHDAY"].split(",")] if "BYMONTHDAY" in p else []
    if any(d is None for d in monthdays):
        return None
    plain_days = all(n is None for n, _ in days)
    if freq == "DAILY":
        if monthdays or setpos or "BYMONTH" in p:
            return None
        if days:
            if interval != 1 or not plain_days:
                return None
            return "Every " + _join([DAYS[d].title() for _, d in sorted(days, key=lambda x: x[1])])
        return "Daily" if interval == 1 else f"Every {interval} days"
    if freq == "WEEKLY":
        if monthdays or setpos or "BYMONTH" in p or not plain_days:
            return None
        names = [DAYS[d].title() for d in sorted({d for _, d in days} or {start.weekday()})]
        lead = "Weekly" if interval == 1 else f"Every {interval} weeks"
        return f"{lead} on {_join(names)}"
    if freq == "MONTHLY":
        if "BYMONTH" in p:
            return None
        lead = "Monthly" if interval == 1 else f"Every {interval} months"
        if days:
            if monthdays or len(days) != 1:
                return None
            n, day = days[0]
            if setpos is not None:
                pos = _int(setpos)
                if n is not None or pos is None:
                    return None
                n = pos
            if n is None:
                return f"{lead} on every {DAYS[day].title()}"
            what = _nth_weekday(n, day)
            return f"{lead} on {what}" if what else None
        if setpos:
            return None
        chosen = [d for d in monthdays if d is not None] or [start.day]
        words = [_month_day(d) for d in chosen]
        if any(w is None for w in words):
            return None
        return f"{lead} on {_join([w for w in words if w])}"
    if freq == "YEARLY":
        if setpos or interval != 1:
            return None
        months = [_int(v) for v in p["BYMONTH"].split(",")] if "BYMONTH" in p else [start.month]
        if len(months) != 1 or months[0] is None or not 1 <= months[0] <= 12:
            return None
        month = _MONTHS[months[0] - 1]
        if days:
            if monthdays or len(days) != 1 or days[0][0] is None:
                return None
            what = _nth_weekday(days[0][0], days[0][1])
            return f"Yearly on {what} of {month}" if what else None
        chosen = [d for d in monthdays if d is not None] or [start.day]
        if len(chosen) != 1 or not 1 <= chosen[0] <= 31:
            return None
        return f"Yearly on {chosen[0]} {month}"
    return None


def _clock(p: dict[str, str], start: datetime) -> str | None:
    hours, minutes = p.get("BYHOUR"), p.get("BYMINUTE")
    if p.get("BYSECOND", "0") != "0":
        return None
    h = _int(hours) if hours is not None else start.hour
    m = _int(minutes) if minutes is not None else start.minute
    if h is None or m is None or not (0 <= h < 24 and 0 <= m < 60):
        return None  # several hours or minutes a day: no words
    return f"{h:02d}:{m:02d}"


def rule_words(ev: ChatEventConfig) -> str | None:
    """``Weekly on Thursday, 12:00 America/New_York`` (with ``, 6 times`` or
    ``, until 30 Jun 2027``); None when the rule has no words here."""
    if ev.day and ev.time:
        return f"Weekly on {ev.day.title()}, {ev.time} {ev.timezone}"
    if not ev.rrule or ev.dtstart is None:
        return None
    p = _parse(ev.rrule)
    if p is None or not set(p) <= _KNOWN:
        return None
    start = ev.dtstart.replace(tzinfo=None)
    pattern = _pattern(p, start)
    clock = _clock(p, start)
    if pattern is None or clock is None:
        return None
    text = f"{pattern}, {clock} {ev.timezone}"
    if "COUNT" in p:
        count = _int(p["COUNT"])
        if count is None or count < 1:
            return None
        text += ", once" if count == 1 else f", {count} times"
    if "UNTIL" in p:
        until = _until(p["UNTIL"])
        if until is None:
            return None
        text += f", {until}"
    return text


def first_dates(ev: ChatEventConfig, now: datetime, n: int = 3) -> str:
    """The next *n* dates in the event's zone: ``Next: Thu 10 Dec, 12:00; Thu 10 Dec,
    13:00; … (America/New_York)``; ``No more dates`` when the rule has ended."""
    upcoming: list[str] = []
    horizon = now
    for step in (7, 62, 800):  # widen until enough dates are found (cheap for hourly rules)
        horizon = now + timedelta(days=step)
        occ = [o for o in occurrences(ev, now, horizon) if o.start >= now][:n]
        if len(occ) >= n or step == 800:
            upcoming = [short_date(o.local_start()) for o in occ]
            break
    if not upcoming:
        return "No more dates"
    return f"Next: {'; '.join(upcoming)} ({ev.timezone})"


def schedule_text(ev: ChatEventConfig, now: datetime) -> str:
    """The rule in words, or, when it has none, its next dates after *now* (never
    ``FREQ=``)."""
    words = rule_words(ev)
    if words is not None:
        return words
    return first_dates(ev, now)


def next_chat(events: list[ChatEventConfig], now: datetime) -> Occurrence | None:
    """The chat running at *now*, or else the soonest to start (None: none ahead)."""
    for days in (15, 400):  # most communities meet weekly: look close first
        found = [o for ev in events
                 for o in occurrences(ev, now - ev.duration, now + timedelta(days=days))
                 if o.end > now]
        if found:
            return min(found, key=lambda o: (o.start, o.event.id))
    return None
