"""The library's detail pane: every field of one track, its lyrics, its waveform and play position.

Kept apart from the table and its paging (tui/library.py), which only hands it a track to show.
"""

from __future__ import annotations

import re
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Static

from dgx_music.common.audio import confidence
from dgx_music.tui import fmt
from dgx_music.tui.widgets import Waveform


def _conf(kind: str, value: Any) -> str:
    """'80%', or '21%, low confidence' for a reading too unsure to take at face value."""
    return f"{float(value):.0%}" + (", low confidence" if confidence.is_low(kind, value) else "")


class DetailPane(Vertical):
    """All metadata of one track, its waveform, and the position bar while it plays.

    Its fields scroll (#detail-scroll takes the focus: `d` in the library, or tab), so the analysis
    and the lyrics below the first lines are reachable from the keyboard; escape gives the focus back."""

    BINDINGS = [Binding("escape", "leave", "Back to the list", id="detail.leave")]

    class Leave(Message):
        """The user is done reading the details: the owner takes the focus back."""

    def action_leave(self) -> None:
        self.post_message(self.Leave())

    def compose(self) -> ComposeResult:
        yield Static("Select a track", id="detail-title")
        yield Waveform(id="waveform")
        with VerticalScroll(id="detail-scroll"):
            yield Static("", id="detail-meta")

    _empty = False

    def show(self, t: dict[str, Any] | None) -> None:
        title = self.query_one("#detail-title", Static)
        meta = self.query_one("#detail-meta", Static)
        wave = self.query_one(Waveform)
        if t is None:
            if self._empty:  # e.g. every keystroke of a search that matches nothing: no layout needed
                return
            self._empty = True
            title.update(Text("Select a track", style="dim"))
            meta.update("")
            wave.peaks = None
            return
        self._empty = False
        head = Text(fmt.one_line(t.get("title") or t.get("prompt"), 200), style="bold")
        if t.get("favorite"):
            head.append("  ♥", style="bold red")
        if t.get("rating"):
            head.append("  " + "★" * int(t["rating"]), style="yellow")
        title.update(head)
        if "peaks" in t:
            wave.peaks = t.get("peaks") or None
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold cyan", no_wrap=True)
        grid.add_column()
        p = t.get("params") or {}

        def row(k: str, v: Any) -> None:
            if v not in (None, "", []):
                grid.add_row(k, v if isinstance(v, Text) else str(v))

        row("id", t.get("id"))
        row("prompt", t.get("prompt"))
        row("model", f"{t.get('model') or '-'} [{t.get('backend') or '-'}]")
        row("seed", t.get("seed"))
        row("length", f"{fmt.number(t.get('duration'), '{:.2f}')} s, {t.get('sample_rate') or '-'} Hz, "
                      f"{t.get('channels') or '-'} ch")
        if t.get("bpm") is not None:
            row("tempo", f"{fmt.number(t.get('bpm'), '{:.1f}')} BPM"
                         + (f" ({_conf('bpm', t['bpm_confidence'])})" if t.get("bpm_confidence") is not None else ""))
        if t.get("key"):
            row("key", str(t["key"]) + (f" ({_conf('key', t['key_confidence'])})"
                                        if t.get("key_confidence") is not None else ""))
        if t.get("lufs") is not None:
            row("loudness", f"{fmt.number(t.get('lufs'), '{:.1f}')} LUFS (was "
                            f"{fmt.number(t.get('lufs_before'), '{:.1f}')}, gain {fmt.number(t.get('gain_db'), '{:+.1f}')} dB, "
                            f"peak {fmt.number(t.get('true_peak'), '{:.1f}')} dBTP)")
        row("note", t.get("loudness_note"))
        row("tags", ", ".join(t.get("tags") or []))
        row("notes", t.get("notes"))
        row("created", fmt.timestamp(t.get("created")))
        sampling = ", ".join(f"{k}={p[k]}" for k in ("temperature", "top_k", "top_p", "cfg", "steps", "guidance",
                                                     "shift") if p.get(k) is not None)
        row("sampling", sampling)
        req_bpm, sig = t.get("req_bpm") or p.get("bpm"), t.get("req_time_signature") or p.get("time_signature")
        asked = [f"{req_bpm:g} BPM" if req_bpm else "", str(t.get("req_key") or p.get("key") or ""),
                 f"{sig} beats/bar" if sig else ""]
        row("asked", ", ".join(a for a in asked if a))
        if p.get("lora"):
            row("lora", f"{p['lora']} ×{p.get('lora_scale', 1.0)}")
        lyrics = str(t.get("lyrics") or p.get("lyrics") or "").strip()
        if lyrics:
            row(f"lyrics ({t.get('language') or p.get('language') or '-'})", lyrics_text(lyrics))
        row("melody", p.get("melody_source"))
        if p.get("extend"):
            row("extends", f"{p['extend']} (+{fmt.number(p.get('duration'), '{:g}')} s)")
        row("file", t.get("path"))
        row("midi", t.get("midi_path"))  # `M` in the library, or dgx-music midi
        meta.update(grid)

    def set_position(self, fraction: float | None) -> None:
        # Playback can start before a freshly shown pane has composed its children.
        for wave in self.query(Waveform):
            wave.position = fraction


_SECTION_TAG = re.compile(r"\[[^\]\n]{1,40}\]")


def lyrics_text(lyrics: str) -> Text:
    """Lyrics as written, with section tags ([verse], [chorus], ...) highlighted."""
    out = Text(lyrics)
    for m in _SECTION_TAG.finditer(lyrics):
        out.stylize("bold magenta", m.start(), m.end())
    return out


