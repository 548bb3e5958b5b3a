"""Small text formatters shared by the views (pure functions, easy to test)."""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text

from dgx_music.common.fmt import duration, nbytes  # noqa: F401  (re-exported for the views)

BAR_FULL, BAR_EMPTY = "█", "░"
STATE_STYLE = {
    "queued": "yellow", "running": "bold cyan", "processing": "cyan", "done": "green",
    "failed": "bold red", "cancelled": "dim",
}


def gib(n: Any) -> str:
    try:
        v = float(n) / 1024 ** 3
    except (TypeError, ValueError):
        return "-"
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def bar(fraction: float, width: int = 12, style: str = "cyan") -> Text:
    fraction = min(1.0, max(0.0, fraction))
    full = int(round(fraction * width))
    t = Text(BAR_FULL * full, style=style)
    t.append(BAR_EMPTY * (width - full), style="grey37")
    t.append(f" {fraction * 100:3.0f}%")
    return t


def stars(rating: Any) -> str:
    try:
        r = max(0, min(5, int(rating or 0)))
    except (TypeError, ValueError):
        r = 0
    return "★" * r + "·" * (5 - r) if r else ""


def timestamp(ts: Any) -> str:
    if ts is None:
        return "-"
    try:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(float(ts)))
    except (TypeError, ValueError, OverflowError, OSError):
        return "-"


def number(value: Any, fmt: str = "{:.0f}") -> str:
    if value is None:
        return "-"
    try:
        return fmt.format(float(value))
    except (TypeError, ValueError):
        return "-"


def one_line(text: Any, limit: int = 200) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= limit else s[: limit - 1] + "…"
