"""Terms and renewal dates: calendar months from a fixed anchor, so that a term that
started on the 31st renews on the last day of short months and back on the 31st."""

from __future__ import annotations

import calendar
from datetime import datetime


def add_months(t: datetime, months: int) -> datetime:
    month_index = t.month - 1 + months
    year, month = t.year + month_index // 12, month_index % 12 + 1
    day = min(t.day, calendar.monthrange(year, month)[1])
    return t.replace(year=year, month=month, day=day)


def months_between(start: datetime, end: datetime) -> int:
    return (end.year - start.year) * 12 + end.month - start.month


def next_renewal(anchor: datetime, renewal: datetime, term_months: int) -> datetime:
    """The renewal date after ``renewal`` for terms of ``term_months`` counted from ``anchor``."""
    return add_months(anchor, months_between(anchor, renewal) + term_months)
