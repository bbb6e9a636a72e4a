""".NET ``TimeSpan`` strings, as the v1 dialect uses them: ``[d.]hh:mm:ss[.fffffff]``.

The emulator keeps its own copy rather than importing the client's: it must stay independent of
the code it is there to test.
"""

from __future__ import annotations

import re

# Hours, minutes and seconds take one or two digits so that the short form "4:0:0" parses.
_TIMESPAN = re.compile(r"(?:([0-9]{1,8})\.)?([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})(?:\.([0-9]{1,7}))?")

MAX_LEASE_SECONDS = 24 * 3600


def parse_timespan(text: str) -> float:
    """Parse a ``[d.]hh:mm:ss[.fffffff]`` string into seconds.

    :raises ValueError: with a message fit for an error answer, if the text is not a valid
        non-negative TimeSpan (hours must be below 24, minutes and seconds below 60).
    """
    match = _TIMESPAN.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a TimeSpan of the form [d.]hh:mm:ss[.fffffff]")
    days, hours, minutes, seconds, fraction = match.groups()
    h, m, s = int(hours), int(minutes), int(seconds)
    if h >= 24 or m >= 60 or s >= 60:
        raise ValueError(f"{text!r}: hours must be below 24, minutes and seconds below 60")
    total: float = int(days or 0) * 86400 + h * 3600 + m * 60 + s
    if fraction:
        total += int(fraction.ljust(7, "0")) / 10_000_000
    return total


def format_timespan(seconds: float) -> str:
    """Format seconds as .NET does: ``04:00:00``, ``1.02:00:00``, ``00:00:01.5000000``."""
    ticks = round(max(seconds, 0.0) * 10_000_000)
    whole, fraction = divmod(ticks, 10_000_000)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    if days:
        text = f"{days}.{text}"
    if fraction:
        text += f".{fraction:07d}"
    return text
