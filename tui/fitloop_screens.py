"""Forms for fit (T), loop (B) and MIDI (M) on the selected library track.

They reuse the operation form's frame (title, scrolling fields, inline refusal naming the field,
buttons that stay on an 80x24 screen, ctrl+s / escape) but take no model, seed or steps: fit, a
loop cut from a track and a transcription are the daemon's own work (Rubber Band, Basic Pitch),
not a generating model's. Requests are checked with the schema every surface uses
(`common.fitloop.validate`, `common.midi.validate_midi`).
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Checkbox, Input, Label, Select

from dgx_music.common.fitloop import FIT, LOOP, validate
from dgx_music.common.midi import MIDI, validate_midi
from dgx_music.common.params import ParamError
from dgx_music.tui.ops_screens import _integer, _number, _OpScreen
from dgx_music.tui.widgets import TickBox


class _FitLoopScreen(_OpScreen):
    sings = False
    #: request field -> the widget that edits it (marked and focused on a refusal)
    FIELDS: dict[str, str] = {}

    def shared_fields(self) -> ComposeResult:
        yield from ()

    def shared_params(self) -> dict[str, Any]:
        return {}

    def check(self, params: dict[str, Any]) -> None:
        """The request's own schema (ParamError naming the field)."""
        validate(self.operation, params)

    def submit(self) -> None:
        for wid in self.FIELDS.values():
            for w in self.query(f"#{wid}"):
                w.remove_class("-invalid")
        try:
            params = {"source": str(self.track.get("id")), **self.params()}
            params = {k: v for k, v in params.items() if v is not None}
            self.check(params)
        except ParamError as exc:
            self.show_error(exc.field, exc.message)
            wid = self.FIELDS.get(exc.field or "")
            for w in self.query(f"#{wid}") if wid else ():
                w.add_class("-invalid")
                w.focus()
            return
        self.dismiss((self.operation, params))


class FitScreen(_FitLoopScreen):
    """Target tempo and key; the source's as the library read them (editable when the reading is wrong)."""

    operation = FIT
    FIELDS = {"bpm": "fit-bpm", "key": "fit-key", "from_bpm": "fit-from-bpm", "from_key": "fit-from-key"}

    def fields(self) -> ComposeResult:
        bpm, key = self.track.get("bpm"), self.track.get("key")
        yield Label(f"Now: {f'{bpm:g} BPM' if bpm else 'tempo unknown'}, {key or 'key unknown'} (the analysis)",
                    classes="dim")
        with Horizontal(classes="modal-row"):
            yield Label("target BPM ")
            yield Input("", placeholder="keep", id="fit-bpm", compact=True, classes="num")
            yield Label(" key ")
            yield Input("", placeholder="e.g. A minor", id="fit-key", compact=True, classes="num-l")
        with Horizontal(classes="modal-row"):
            yield Label("source BPM ")
            yield Input("", placeholder="analysis", id="fit-from-bpm", compact=True, classes="num")
            yield Label(" key ")
            yield Input("", placeholder="analysis", id="fit-from-key", compact=True, classes="num-l")
        yield TickBox("keep formants (vocals)", id="fit-formant", compact=True)

    def on_mount(self) -> None:
        self.query_one("#fit-bpm", Input).focus()

    def params(self) -> dict[str, Any]:
        text = {k: self.query_one(f"#{w}", Input).value.strip() for k, w in self.FIELDS.items()}
        return {"bpm": _number("bpm", text["bpm"]), "key": text["key"] or None,
                "from_bpm": _number("from_bpm", text["from_bpm"]), "from_key": text["from_key"] or None,
                "formant": self.query_one("#fit-formant", Checkbox).value or None}


class LoopScreen(_FitLoopScreen):
    """Bars, tempo (empty: the track's own), beats per bar, the bar to start from, a key."""

    operation = LOOP
    FIELDS = {"bars": "loop-bars", "bpm": "loop-bpm", "beats_per_bar": "loop-beats", "start_bar": "loop-start",
              "key": "loop-key"}

    def fields(self) -> ComposeResult:
        bpm = self.track.get("bpm")
        yield Label(f"Cut from a downbeat; the track reads {f'{bpm:g} BPM' if bpm else 'no tempo'}.", classes="dim")
        with Horizontal(classes="modal-row"):
            yield Label("bars ")
            yield Input("8", id="loop-bars", compact=True, classes="num-s")
            yield Label(" BPM ")
            yield Input("", placeholder="its own", id="loop-bpm", compact=True, classes="num")
            yield Label(" beats/bar ")
            yield Input("4", id="loop-beats", compact=True, classes="num-s")
        with Horizontal(classes="modal-row"):
            yield Label("start at bar ")
            yield Input("0", id="loop-start", compact=True, classes="num-s")
            yield Label(" key ")
            yield Input("", placeholder="keep", id="loop-key", compact=True, classes="num-l")

    def on_mount(self) -> None:
        self.query_one("#loop-bars", Input).focus()

    def params(self) -> dict[str, Any]:
        text = {k: self.query_one(f"#{w}", Input).value.strip() for k, w in self.FIELDS.items()}
        return {"bars": _integer("bars", text["bars"]), "bpm": _number("bpm", text["bpm"]),
                "beats_per_bar": _integer("beats_per_bar", text["beats_per_bar"]),
                "start_bar": _integer("start_bar", text["start_bar"]), "key": text["key"] or None}


#: General MIDI's instrument families, each by its first program: what a transcribed part plays as.
GM_FAMILIES = (("piano", 0), ("chromatic percussion", 8), ("organ", 16), ("guitar", 24), ("bass", 32),
               ("strings", 40), ("ensemble", 48), ("brass", 56), ("reed", 64), ("pipe", 72),
               ("synth lead", 80), ("synth pad", 88), ("synth effects", 96), ("ethnic", 104),
               ("percussive", 112), ("sound effects", 120))


class MidiScreen(_FitLoopScreen):
    """The instrument the notes play as, and the tempo written in the file (empty: the track's)."""

    operation = MIDI
    FIELDS = {"program": "midi-program", "bpm": "midi-bpm"}

    def fields(self) -> ComposeResult:
        bpm = self.track.get("bpm")
        yield Label("Basic Pitch on the daemon's CPU; the MIDI is stored with the track.", classes="dim")
        with Horizontal(classes="modal-row"):
            yield Label("plays as ")
            yield Select([(f"{name} ({n})", n) for name, n in GM_FAMILIES], value=0, allow_blank=False,
                         id="midi-program", compact=True)
        with Horizontal(classes="modal-row"):
            yield Label("tempo in the file ")
            yield Input("", placeholder=f"{bpm:g} (its own)" if bpm else "120", id="midi-bpm", compact=True,
                        classes="num")

    def on_mount(self) -> None:
        self.query_one("#midi-program", Select).focus()

    def check(self, params: dict[str, Any]) -> None:
        validate_midi(params)

    def params(self) -> dict[str, Any]:
        program = self.query_one("#midi-program", Select).value
        return {"program": program if isinstance(program, int) and program else None,
                "bpm": _number("bpm", self.query_one("#midi-bpm", Input).value.strip())}


SCREENS: dict[str, type[_OpScreen]] = {FIT: FitScreen, LOOP: LoopScreen, MIDI: MidiScreen}
__all__ = ["GM_FAMILIES", "SCREENS", "FitScreen", "LoopScreen", "MidiScreen"]
