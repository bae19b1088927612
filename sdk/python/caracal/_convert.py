"""Exact amounts and RFC 3339 times, to and from the API's JSON."""

from __future__ import annotations

import datetime as _dt
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Optional, Union

AmountLike = Union[Decimal, int, str]

# The API's amount syntax (openapi.yaml, components.schemas.Amount); the
# server refuses anything else, so the client refuses it before sending.
_AMOUNT = re.compile(r"^-?[0-9]+(\.[0-9]{1,9})?$")


def parse_amount(value: Any) -> Optional[Decimal]:
    """Parses an amount the API sent (a decimal string) into a Decimal.

    None stays None. A JSON number is accepted only when the JSON decoder
    already made it a Decimal or an int: a float would have lost digits.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"amount {value!r} is not a decimal")
    if isinstance(value, (Decimal, int)):
        return Decimal(value)
    if isinstance(value, str):
        try:
            d = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"amount {value!r} is not a decimal") from None
        if not d.is_finite():
            raise ValueError(f"amount {value!r} is not a finite decimal")
        return d
    raise ValueError(f"amount {value!r} ({type(value).__name__}) is not a decimal string")


def format_amount(value: AmountLike, what: str = "amount") -> str:
    """Formats an amount for the API: a plain decimal string, never a float.

    Floats are refused because 0.1 is not 0.1 in binary: money is exact.
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError(f"{what} {value!r}: pass a Decimal, an int or a decimal string, not a {type(value).__name__} (amounts are exact)")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{what} {value!r} is not a decimal") from None
    elif isinstance(value, Decimal):
        d = value
    else:
        raise TypeError(f"{what} {value!r}: pass a Decimal, an int or a decimal string, not a {type(value).__name__}")
    if not d.is_finite():
        raise ValueError(f"{what} {value!r} is not a finite decimal")
    s = format(d, "f")
    if not _AMOUNT.match(s):
        # More than nine decimals (or an exponent the format kept): the
        # server would refuse it, and rounding money silently is worse.
        trimmed = format(d.normalize(), "f")
        if not _AMOUNT.match(trimmed):
            raise ValueError(f"{what} {value!r} has more than nine decimals")
        s = trimmed
    return s


# RFC 3339: date, 'T' (or 't' or ' '), time, optional fraction of any
# length (the server sends nanoseconds), then 'Z' or an offset.
_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})$"
)


def parse_time(value: Any) -> Optional[_dt.datetime]:
    """Parses an RFC 3339 time into an aware datetime (None stays None).

    Python's datetime holds microseconds: a nanosecond fraction is
    truncated to them.
    """
    if value is None or value == "":
        return None
    if isinstance(value, _dt.datetime):
        return value
    if not isinstance(value, str):
        raise ValueError(f"time {value!r} is not an RFC 3339 string")
    m = _TIME.match(value)
    if not m:
        raise ValueError(f"time {value!r} is not RFC 3339")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    if zone in ("Z", "z"):
        tz = _dt.timezone.utc
    else:
        sign = 1 if zone[0] == "+" else -1
        tz = _dt.timezone(sign * _dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    return _dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=tz)


def format_time(value: Union[_dt.datetime, _dt.date, str], what: str = "time") -> str:
    """Formats a time for the API as RFC 3339.

    A naive datetime is refused: guessing its zone would move a ledger
    filter by hours. A date is midnight UTC.
    """
    if isinstance(value, str):
        if not _TIME.match(value):
            raise ValueError(f"{what} {value!r} is not RFC 3339")
        return value
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            raise ValueError(f"{what} {value!r} has no time zone; use an aware datetime (e.g. tzinfo=datetime.timezone.utc)")
        s = value.isoformat()
        return s[:-6] + "Z" if s.endswith("+00:00") else s
    if isinstance(value, _dt.date):
        return value.isoformat() + "T00:00:00Z"
    raise TypeError(f"{what} {value!r}: pass a datetime, a date or an RFC 3339 string")
