"""Modal forms for the operations on the selected library track (repaint, cover, stems, add a part,
extend) and its lineage view.

Each form checks its request with `common.operations.validate_operation`, the schema every
surface uses, and shows a refusal inline naming the field; it dismisses with
`(operation, params)` for the App to send as `op.<operation>`, or None on Escape.

Besides its own fields every form has what every operation takes (seed, steps, model), and the
ones that sing (repaint, cover, add a part) a lyrics editor and the vocal language, prefilled
from the source track. The fields scroll and the buttons stay put, so an 80x24 terminal works.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Footer, Input, Label, OptionList, Select, Static, TextArea
from textual.widgets.option_list import Option

from dgx_music.common.families import ACE_STEP_ALIASES, SEPARATION_ALIASES
from dgx_music.common.operations import (ADD_PART, COVER, DEFAULT_STEM_PARTS, EXTEND, GENERATE, PARTS, REPAINT,
                                         SEPARATE, SEPARATION_PARTS, STEMS, validate_operation)
from dgx_music.common.params import ParamError
from dgx_music.tui import fmt
from dgx_music.tui.compose import LyricsArea
from dgx_music.tui.widgets import TickBox, Waveform

OpResult = "tuple[str, dict[str, Any]] | None"
STEP, BIG_STEP = 0.5, 5.0  # seconds the span cursor moves per arrow key / shift+arrow


def _title(t: dict[str, Any]) -> str:
    return fmt.one_line(t.get("title") or t.get("prompt") or t.get("id"), 60)


class SpanPicker(Waveform):
    """The track's waveform with a cursor and in/out marks, all set from the keyboard (a click
    moves the cursor too). Posts Changed whenever the cursor or a mark moves."""

    can_focus = True
    show_played = False
    DEFAULT_CSS = "SpanPicker { height: 6; border: tall $panel; } SpanPicker:focus { border: tall $accent; }"
    BINDINGS = [
        Binding("left", f"move({-STEP})", "Back", id="span.back", show=False),
        Binding("right", f"move({STEP})", "On", id="span.on", show=False),
        Binding("shift+left", f"move({-BIG_STEP})", "Back 5 s", id="span.back_big", show=False),
        Binding("shift+right", f"move({BIG_STEP})", "On 5 s", id="span.on_big", show=False),
        Binding("home", "to(0)", "Start", id="span.start", show=False),
        Binding("end", "to(1)", "End", id="span.end", show=False),
        Binding("i", "mark_in", "In mark", id="span.in"),
        Binding("o", "mark_out", "Out mark", id="span.out"),
    ]

    class Changed(Message):
        pass

    def __init__(self, peaks: list | None, duration: float, cursor: float = 0.0, **kw: Any) -> None:
        super().__init__(**kw)
        self.duration = max(float(duration), 0.001)
        self.cursor = min(max(cursor, 0.0), self.duration)
        self.mark_in: float | None = None
        self.mark_out: float | None = None
        self.set_reactive(Waveform.peaks, peaks or [[-0.0, 0.0]])

    def on_mount(self) -> None:
        self._redraw()

    def _redraw(self) -> None:
        self.position = self.cursor / self.duration
        both = self.mark_in is not None and self.mark_out is not None
        self.span = (self.mark_in / self.duration, self.mark_out / self.duration) if both else None  # type: ignore[operator]
        self.post_message(self.Changed())

    def action_move(self, seconds: float) -> None:
        self.cursor = round(min(max(self.cursor + seconds, 0.0), self.duration), 3)
        self._redraw()

    def action_to(self, fraction: float) -> None:
        self.cursor = round(fraction * self.duration, 3)
        self._redraw()

    def action_mark_in(self) -> None:
        self.mark_in = self.cursor
        if self.mark_out is not None and self.mark_out < self.mark_in:
            self.mark_in, self.mark_out = self.mark_out, self.mark_in
        self._redraw()

    def action_mark_out(self) -> None:
        self.mark_out = self.cursor
        if self.mark_in is not None and self.mark_in > self.mark_out:
            self.mark_in, self.mark_out = self.mark_out, self.mark_in
        self._redraw()

    def on_click(self, event: Any) -> None:
        if self.size.width > 0:
            self.cursor = round(min(max(event.x / self.size.width, 0.0), 1.0) * self.duration, 3)
            self._redraw()


class _OpScreen(ModalScreen[OpResult]):
    """A form for one operation: subclasses compose their own fields and build their params; the
    fields every operation shares (lyrics and language where it sings, seed, steps, model) are
    composed and read here, so all four forms ask for them alike."""

    operation = ""
    #: Whether the operation sings: its request takes lyrics and a vocal language.
    sings = True
    #: What empty lyrics mean for this operation (the placeholder says so).
    no_lyrics = "empty: instrumental"
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="op.cancel"),
                # ctrl+s from any field, the lyrics editor included (enter there is a new line; in a
                # one-line field enter submits too)
                Binding("ctrl+s", "submit", "Submit", id="op.submit", priority=True)]
    #: request field -> the widget that edits it, to mark and focus on a refusal
    SHARED_FIELDS = {"lyrics": "op-lyrics", "language": "op-language", "seed": "op-seed", "steps": "op-steps",
                     "model": "op-model", "lora": "op-lora", "lora_scale": "op-lora"}

    def __init__(self, track: dict[str, Any], models: list[str] | None = None) -> None:
        """`models`: ACE-Step models the daemon offers, for the picker (its aliases are always there)."""
        super().__init__()
        self.track = track
        self.models = list(dict.fromkeys([*(models or []), *ACE_STEP_ALIASES]))

    def fields(self) -> ComposeResult:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        raise NotImplementedError

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box op-box"):
            yield Label(f"{self.operation.replace('_', ' ').capitalize()} {self.track.get('id')}: "
                        f"{_title(self.track)}", classes="modal-title")
            with VerticalScroll(classes="op-fields"):
                yield from self.fields()
                yield from self.shared_fields()
            yield Static("", id="op-error")
            with Horizontal(classes="modal-buttons"):
                yield Button(self.operation.replace("_", " ").capitalize(), variant="primary", id="op-go")
                yield Button("Cancel", id="op-cancel")
        yield Footer()  # this form's keys (ctrl+s, esc), not the library's behind it

    def shared_fields(self) -> ComposeResult:
        """Lyrics (the source's own to start from: editing words is what a repaint or cover is
        often for), then seed, steps and model, each empty for the daemon's choice."""
        if self.sings:
            params = self.track.get("params") or {}
            lyrics = str(self.track.get("lyrics") or params.get("lyrics") or "")
            language = str(self.track.get("language") or params.get("language") or "en")
            yield Label(f"Lyrics, with [verse] / [chorus] tags ({self.no_lyrics}):", classes="dim", markup=False)
            yield LyricsArea(lyrics, id="op-lyrics", soft_wrap=True, show_line_numbers=False, tab_behavior="focus")
            with Horizontal(classes="modal-row"):
                yield Label("vocal language ")
                yield Input(language, id="op-language", compact=True, classes="num-s")
        with Horizontal(classes="modal-row"):
            yield Label("seed ")
            yield Input("", placeholder="random", id="op-seed", compact=True, classes="num-l")
            yield Label(" steps ")
            yield Input("", placeholder="model's", id="op-steps", compact=True, classes="num")
            yield Label(" model ")
            yield Select([("daemon default", ""), *((m, m) for m in self.models)], value="", allow_blank=False,
                         id="op-model", compact=True)
        with Horizontal(classes="modal-row", id="op-lora-row"):
            yield Label("style ")
            yield Input("", placeholder="none, or a trained style (F5): NAME[:scale]", id="op-lora", compact=True)

    def shared_params(self) -> dict[str, Any]:
        """The shared fields as request params; empty ones are left out (the daemon's default).
        Language goes with lyrics only: it is the language they are sung in."""
        out: dict[str, Any] = {"seed": _integer("seed", self.query_one("#op-seed", Input).value),
                               "steps": _integer("steps", self.query_one("#op-steps", Input).value)}
        model = self.query_one("#op-model", Select).value
        if isinstance(model, str) and model:
            out["model"] = model
        lora = self.query_one("#op-lora", Input).value.strip()
        if lora and self.query_one("#op-lora-row").display:  # hidden where the method takes no style
            out["lora"] = lora
        if self.sings:
            lyrics = self.query_one("#op-lyrics", TextArea).text
            if lyrics.strip():
                out["lyrics"] = lyrics
                out["language"] = self.query_one("#op-language", Input).value.strip() or "en"
        return {k: v for k, v in out.items() if v is not None}

    def submit(self) -> None:
        for wid in self.SHARED_FIELDS.values():
            for w in self.query(f"#{wid}"):
                w.remove_class("-invalid")
        try:
            params = {"source": str(self.track.get("id")), **self.params(), **self.shared_params()}
            validate_operation(self.operation, params)
        except ParamError as exc:
            self.show_error(exc.field, exc.message)
            return
        self.dismiss((self.operation, params))

    def show_error(self, field: str | None, message: str) -> None:
        """The refusal, naming the field; a shared field is also marked and focused (scrolled to)."""
        self.query_one("#op-error", Static).update(Text(f"✗ {field + ': ' if field else ''}{message}",
                                                        style="bold red"))
        wid = self.SHARED_FIELDS.get(field or "")
        for w in self.query(f"#{wid}") if wid else ():
            w.add_class("-invalid")
            w.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "op-go":
            self.submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_submit(self) -> None:
        self.submit()


def _number(field: str, text: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise ParamError(field, f"must be a number, got {text!r}") from None


def _integer(field: str, text: str) -> int | None:
    """A whole number typed in a form (None when empty); its range is the schema's to check."""
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ParamError(field, f"must be a whole number, got {text!r}") from None


class RepaintScreen(_OpScreen):
    """The span to regenerate: in/out marks on the waveform (i / o at the cursor; arrows move it)."""

    operation = REPAINT
    no_lyrics = "empty: the track's own"  # the daemon sings the source's words when none are given

    def __init__(self, track: dict[str, Any], cursor: float = 0.0, models: list[str] | None = None) -> None:
        super().__init__(track, models)
        self.cursor = cursor

    def fields(self) -> ComposeResult:
        yield SpanPicker(self.track.get("peaks"), float(self.track.get("duration") or 0.0), self.cursor,
                         id="repaint-wave")
        yield Label("", id="repaint-span")
        yield Label("←/→ move 0.5 s (shift: 5 s), home/end · i: in mark · o: out mark · tab: prompt", classes="dim")
        yield Input(placeholder="caption for the new span (empty: the track's)", id="repaint-prompt")

    def on_mount(self) -> None:
        self.query_one(SpanPicker).focus()

    def on_span_picker_changed(self, event: SpanPicker.Changed) -> None:
        p = self.query_one(SpanPicker)
        span = (f"in {p.mark_in:.2f} s" if p.mark_in is not None else "in -") + " · " + \
               (f"out {p.mark_out:.2f} s" if p.mark_out is not None else "out -")
        if p.mark_in is not None and p.mark_out is not None:
            span += f" ({p.mark_out - p.mark_in:.2f} s)"
        self.query_one("#repaint-span", Label).update(f"cursor {p.cursor:.2f} s · {span}")

    def params(self) -> dict[str, Any]:
        p = self.query_one(SpanPicker)
        if p.mark_in is None:
            raise ParamError("start", "set the in mark (i) at the cursor")
        if p.mark_out is None:
            raise ParamError("end", "set the out mark (o) at the cursor")
        return {"start": p.mark_in, "end": p.mark_out,
                "prompt": self.query_one("#repaint-prompt", Input).value.strip() or None}


class CoverScreen(_OpScreen):
    operation = COVER

    def fields(self) -> ComposeResult:
        yield Input(placeholder="the new style, e.g. bossa nova, nylon guitar", id="cover-prompt")
        with Horizontal(classes="modal-row"):
            yield Label("strength 0-1 (1: closest to the source) ")
            yield Input("0.5", id="cover-strength", compact=True)

    def on_mount(self) -> None:
        self.query_one("#cover-prompt", Input).focus()

    def params(self) -> dict[str, Any]:
        return {"prompt": self.query_one("#cover-prompt", Input).value,
                "strength": _number("strength", self.query_one("#cover-strength", Input).value)}


class StemsScreen(_OpScreen):
    """Stems by a separation model (default: they add up to the source) or by ACE-Step's extract;
    each method shows its own parts."""

    operation = STEMS
    sings = False
    SHARED_FIELDS = {**_OpScreen.SHARED_FIELDS, "method": "op-method"}

    def __init__(self, track: dict[str, Any], models: list[str] | None = None) -> None:
        super().__init__(track, models)
        self.models = list(dict.fromkeys([*self.models, *SEPARATION_ALIASES]))  # for --method separate

    def fields(self) -> ComposeResult:
        with Horizontal(classes="modal-row"):
            yield Label("method ")
            yield Select([("separate: separation model", SEPARATE),
                          ("generate: ACE-Step extract (ace-step-base)", GENERATE)],
                         value=SEPARATE, allow_blank=False, id="op-method", compact=True)
        with Vertical(id="stems-separate"):
            yield Label("Stems that add up to the source (none ticked: all):", classes="dim")
            with Horizontal(classes="modal-row"):
                for part in SEPARATION_PARTS:
                    yield TickBox(part, False, id=f"sep-{part}", compact=True)
        with Vertical(id="stems-generate"):
            yield Label("Parts to make anew, one new track each:", classes="dim")
            for i in range(0, len(PARTS), 4):
                with Horizontal(classes="modal-row"):
                    for part in PARTS[i:i + 4]:
                        yield TickBox(part, part in DEFAULT_STEM_PARTS, id=f"part-{part}", compact=True)

    def on_mount(self) -> None:
        self._show_method(SEPARATE)
        self.query_one("#op-go", Button).focus()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "op-method" and isinstance(event.value, str):
            self._show_method(event.value)

    def _show_method(self, method: str) -> None:
        self.query_one("#stems-separate").display = method == SEPARATE
        self.query_one("#stems-generate").display = method == GENERATE
        self.query_one("#op-lora-row").display = method == GENERATE  # a style applies to ACE-Step only

    @property
    def method(self) -> str:
        value = self.query_one("#op-method", Select).value
        return value if isinstance(value, str) and value else SEPARATE

    def params(self) -> dict[str, Any]:
        if self.method == SEPARATE:
            parts = [p for p in SEPARATION_PARTS if self.query_one(f"#sep-{p}", Checkbox).value]
            return {"method": SEPARATE, **({"parts": parts} if parts else {})}
        parts = [p for p in PARTS if self.query_one(f"#part-{p}", Checkbox).value]
        if not parts:
            raise ParamError("parts", "tick at least one part")
        return {"method": GENERATE, "parts": parts}


class AddPartScreen(_OpScreen):
    operation = ADD_PART

    def fields(self) -> ComposeResult:
        with Horizontal(classes="modal-row"):
            yield Select([(p, p) for p in PARTS], value="drums", allow_blank=False, id="addpart-part", compact=True)
            yield TickBox("also write the mix", id="addpart-mix", compact=True)
        yield Input(placeholder="what the part plays (optional), e.g. tight funk kit", id="addpart-prompt")

    def on_mount(self) -> None:
        self.query_one("#addpart-prompt", Input).focus()

    def params(self) -> dict[str, Any]:
        return {"part": self.query_one("#addpart-part", Select).value,
                "prompt": self.query_one("#addpart-prompt", Input).value.strip() or None,
                "mix": self.query_one("#addpart-mix", Checkbox).value}


class ExtendScreen(_OpScreen):
    """New music after the track's end or ahead of its start (ACE-Step: a repaint of added silence)."""

    operation = EXTEND
    no_lyrics = "empty: the track's own"  # the daemon sings the source's words when none are given

    def fields(self) -> ComposeResult:
        with Horizontal(classes="modal-row"):
            yield Label("seconds to add ")
            yield Input("", placeholder="e.g. 30", id="extend-by", compact=True, classes="num")
            yield Label(" ")
            yield Select([("after the end", "after"), ("before the start", "before")], value="after",
                         allow_blank=False, id="extend-where", compact=True)
        yield Label(f"The track is {fmt.number(self.track.get('duration'), '{:.1f}')} s; at most 600 s in all. "
                    "Its samples are kept, bar a 20 ms crossfade.", classes="dim")
        yield Input(placeholder="caption for the new part (empty: the track's)", id="extend-prompt")

    def on_mount(self) -> None:
        self.query_one("#extend-by", Input).focus()

    def params(self) -> dict[str, Any]:
        by = _number("by", self.query_one("#extend-by", Input).value)
        if by is None:
            raise ParamError("by", "how many seconds to add")
        return {"by": by, "before": self.query_one("#extend-where", Select).value == "before",
                "prompt": self.query_one("#extend-prompt", Input).value.strip() or None}


OP_SCREENS: dict[str, type[_OpScreen]] = {COVER: CoverScreen, STEMS: StemsScreen, ADD_PART: AddPartScreen,
                                          EXTEND: ExtendScreen}


def _derived_label(d: dict[str, Any]) -> str:
    what = d.get("operation") or "?"
    if d.get("part"):
        what += f" {d['part']}"
    return f"{d.get('id')}  {what:<16} {fmt.one_line(d.get('title'), 50)}"


class LineageScreen(ModalScreen["str | None"]):
    """A track's family from `track.lineage`: its source and the tracks made from it. Enter on one
    dismisses with its id, for the library to jump to it."""

    BINDINGS = [Binding("escape", "cancel", "Close", id="lineage.close")]

    def __init__(self, track: dict[str, Any], lineage: dict[str, Any]) -> None:
        super().__init__()
        self.track = track
        self.lineage = lineage

    def compose(self) -> ComposeResult:
        src = self.lineage.get("source")
        derived = self.lineage.get("derived") or []
        options: list[Option] = []
        if src:
            what = src.get("operation", "?") + (f" {src['part']}" if src.get("part") else "")
            if src.get("id") and src.get("exists"):
                options.append(Option(f"source   {src['id']}  {fmt.one_line(src.get('title'), 50)}  ({what})",
                                      id=f"t:{src['id']}"))
            else:
                gone = "deleted track " + str(src["id"]) if src.get("id") else "uploaded file"
                options.append(Option(f"source   {gone} {src.get('name')}  ({what})", id="none:source",
                                      disabled=True))
        for d in derived:
            options.append(Option("made     " + _derived_label(d), id=f"t:{d['id']}"))
        with Vertical(classes="modal-box", id="lineage-box"):
            yield Label(f"Family of {self.track.get('id')}: {_title(self.track)}", classes="modal-title")
            if options:
                yield OptionList(*options, id="lineage-list")
                yield Label("enter: go to that track · escape: close", classes="dim")
            else:
                yield Label("Made from nothing in the library, and nothing made from it yet "
                            "(repaint R, cover C, stems S, add a part A).", id="lineage-empty")
            with Horizontal(classes="modal-buttons"):
                yield Button("Close", id="lineage-close")

    def on_mount(self) -> None:
        for ol in self.query(OptionList):  # on the first track one can go to
            ol.focus()
            ol.highlighted = next((i for i in range(ol.option_count) if not ol.get_option_at_index(i).disabled),
                                  None)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        oid = event.option.id or ""
        if oid.startswith("t:"):
            self.dismiss(oid[2:])

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
