"""Small display widgets: the status bar, the disconnected banner, the waveform."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.content import Content
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Checkbox, Static

from dgx_music.tui import fmt

MODEL_STYLE = {"unloaded": "grey62", "loading": "yellow", "ready": "green", "busy": "bold cyan"}


class TickBox(Checkbox):
    """A checkbox whose state reads without colour: `[x]` ticked, `[ ]` not (Textual's draws the same
    X both ways and tells them apart by colour alone)."""

    @property
    def _button(self) -> Content:
        return Content.assemble(("[x]" if self.value else "[ ]", self.get_visual_style("toggle--button")))


class StatusBar(Static):
    """One line, always visible: connection, model state, device, memory, queue, player."""

    connected: reactive[bool] = reactive(False)

    def __init__(self, **kw: Any) -> None:
        super().__init__("", **kw)
        self.model: dict[str, Any] = {}
        self.loading_progress: float | None = None
        self.queue: dict[str, int] = {}
        self.playing: str | None = None
        self.socket = ""
        self.disk_full = False  # the daemon's disk is full: its queue is paused until there is room

    def set_model(self, state: dict[str, Any] | None) -> None:
        if state:
            self.model = dict(state)
        self.refresh_text()

    def refresh_text(self) -> None:
        t = Text(no_wrap=True, overflow="ellipsis")
        if not self.connected:
            t.append(" ● disconnected ", style="bold white on red")
        else:
            t.append(" ● ", style="bold green")
            m = self.model
            state = m.get("state") or "unknown"
            name = str(m.get("model") or "-").removeprefix("facebook/")
            t.append(f"{name} ", style="bold")
            label = state
            if state == "loading" and self.loading_progress is not None:
                label = f"loading {self.loading_progress * 100:.0f}%"
            t.append(label, style=MODEL_STYLE.get(state, ""))
            if m.get("device"):
                t.append(f" on {m['device']}")
            mem = m.get("memory") or {}
            if mem.get("cuda_total"):
                t.append(f" │ GPU {fmt.gib(mem.get('cuda_allocated') or 0)}/{fmt.gib(mem['cuda_total'])} GiB")
            if mem.get("rss"):
                t.append(f" │ RSS {fmt.gib(mem['rss'])} GiB")
            q = self.queue
            active = [f"{q[k]} {k}" for k in ("running", "processing", "queued") if q.get(k)]
            t.append(" │ queue " + (", ".join(active) if active else "idle"))
            if self.disk_full:
                t.append(" │ ", style="")
                t.append(" disk full: queue paused ", style="bold white on red")
        if self.playing:
            t.append(f" │ ▶ {self.playing}", style="bold magenta")
        self.update(t)

    def watch_connected(self) -> None:
        self.refresh_text()


class Banner(Static):
    """Shown across the top while the daemon is unreachable."""


class Waveform(Widget):
    """Peaks ([min, max] pairs) drawn with half-block characters; a bar marks the play position."""

    DEFAULT_CSS = """
    Waveform { height: 6; }
    """
    peaks: reactive[list | None] = reactive(None, layout=False)
    position: reactive[float | None] = reactive(None)  # 0..1 while playing (or a cursor)
    span: reactive[tuple[float, float] | None] = reactive(None)  # (in, out) as 0..1: drawn green
    #: Columns before the position drawn as played (a playing track); a cursor leaves them as they are.
    show_played = True

    def render(self) -> Text:
        width, height = self.size.width, self.size.height
        peaks = self.peaks
        if not peaks or width <= 0 or height <= 0:
            return Text("no waveform", style="dim")
        cols = _buckets(peaks, width)
        scale = max((max(abs(lo), abs(hi)) for lo, hi in cols), default=0.0) or 1.0
        halves = height * 2
        pos_col = None if self.position is None else min(width - 1, int(self.position * width))
        span = None if self.span is None else (int(self.span[0] * width), max(int(self.span[0] * width),
                                                                           min(width - 1, int(self.span[1] * width))))
        rows = [Text(no_wrap=True) for _ in range(height)]
        for x, (lo, hi) in enumerate(cols):
            # half-row indices, 0 at the top
            top = int(round((1 - hi / scale) / 2 * (halves - 1)))
            bot = int(round((1 - lo / scale) / 2 * (halves - 1)))
            if x == pos_col:
                style = "bold yellow"
            elif span is not None and span[0] <= x <= span[1]:
                style = "bold green"
            elif pos_col is None or not self.show_played:
                style = "cyan"
            elif x < pos_col:
                style = "magenta"
            else:
                style = "grey50"
            for r in range(height):
                upper = top <= 2 * r <= bot
                lower = top <= 2 * r + 1 <= bot
                ch = "█" if upper and lower else "▀" if upper else "▄" if lower else " "
                if x == pos_col and ch == " ":
                    ch = "│"
                rows[r].append(ch, style=style)
        return Text("\n").join(rows)


def _buckets(peaks: list, width: int) -> list[tuple[float, float]]:
    n = len(peaks)
    out: list[tuple[float, float]] = []
    for x in range(width):
        a = x * n // width
        b = max(a + 1, (x + 1) * n // width)
        lo, hi = 0.0, 0.0
        for p in peaks[a:b]:
            try:
                pl, ph = float(p[0]), float(p[1])
            except (TypeError, ValueError, IndexError):
                continue
            lo, hi = min(lo, pl), max(hi, ph)
        out.append((lo, hi))
    return out
