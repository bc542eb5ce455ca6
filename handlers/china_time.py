"""China time: stored times are UTC; every time or date a person reads is Asia/Shanghai, through here."""
from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

CHINA = ZoneInfo("Asia/Shanghai")


def china(moment: datetime) -> datetime:
    return moment.astimezone(CHINA)


def text(moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A stored moment as people in China read it; "" for none."""
    return moment.astimezone(CHINA).strftime(fmt) if moment else ""


def today(now: datetime) -> date:
    """The date in China at `now` (a certificate issued at 05:33 on 3 December China time is
    dated 3 December, though it is still 2 December in UTC)."""
    return now.astimezone(CHINA).date()


def day_start(day: date) -> datetime:
    """The first moment of a China day, as an aware datetime (compare it with stored UTC)."""
    return datetime.combine(day, time(0), tzinfo=CHINA)


def long_date(day: date) -> str:
    """2026年12月3日, as certificates and verify pages print a date."""
    return f"{day.year}年{day.month}月{day.day}日"
