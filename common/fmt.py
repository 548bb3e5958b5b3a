"""Human-readable numbers shared by the CLI and the TUI."""

from __future__ import annotations

from typing import Any


def duration(seconds: Any) -> str:
    if seconds is None:
        return "-"
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return "-"
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m}:{sec:02d}"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def nbytes(n: Any) -> str:
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "-"


def noun(count: Any, word: str, many: str | None = None) -> str:
    """The word as the count wants it: 'field' for 1, 'fields' otherwise (`many`: an irregular plural)."""
    return word if int(count) == 1 else (many or word + "s")


def plural(count: Any, word: str, many: str | None = None) -> str:
    """'1 track', '2 tracks', '1,200 tracks': a count with its noun agreeing (`many`: an irregular plural).

    One helper so no message says "1 tracks" or "(s)"."""
    return f"{int(count):,} {noun(count, word, many)}"


def plural_total(count: Any, exact: bool | None, word: str) -> str:
    """'1,200 tracks', or '10,000+ tracks' when the count is a lower bound (a reply's
    ``total_exact`` False: the library counts matches only up to a bound)."""
    if exact is False:
        return f"{int(count):,}+ {noun(count, word)}"
    return plural(count, word)


def with_article(word: str) -> str:
    """'a musicgen', 'an ace-step', "an 'llama'": the indefinite article by the word's first letter
    (quotes and brackets skipped), so no message says "a ace-step job"."""
    first = word.lstrip("'\"([`").lower()[:1]
    return f"{'an' if first and first in 'aeiou' else 'a'} {word}"


def stale_note(reply: Any) -> str | None:
    """The one line a client shows for a reply the daemon answered from its cache while its database
    was away (`stale: true`, issue 21); None for a fresh reply."""
    if not isinstance(reply, dict) or not reply.get("stale"):
        return None
    import time

    since = reply.get("stale_since")
    when = time.strftime("%H:%M", time.localtime(float(since))) if isinstance(since, (int, float)) else "its last read"
    return f"database away — showing what this host last saw at {when}"
