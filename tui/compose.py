"""The composer: prompt with history, duration, count, seed, model, and the chosen model's own fields.

The fields follow the model's family (common/families.py): MusicGen gets melody and sampling,
ACE-Step a lyrics editor, language, bpm, key and time signature. Both validate with the
daemon's own schema (common/schemas.py) on every change."""

from __future__ import annotations

import re
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.suggester import SuggestFromList
from textual.widgets import Button, Checkbox, Collapsible, Input, Label, OptionList, Select, Static, TextArea

from pathlib import Path

from dgx_music.common.families import ACE_STEP, FAMILIES, MUSICGEN, REGISTRY, family_for_name
from dgx_music.common.params import MELODY_KEY_RE, TRACK_ID_RE, ParamError
from dgx_music.common.schemas import AceStepParams, MusicGenParams, validate_request
from dgx_music.tui import fmt

DEFAULTS = MusicGenParams(prompt="x")
ACE_DEFAULTS = AceStepParams(prompt="x")

#: form field id -> parameter name, fields every family has
COMMON = {"prompt": "prompt", "duration": "duration", "count": "count", "seed": "seed"}
#: the inputs of each family
FAMILY_FIELDS = {
    MUSICGEN: {"temperature": "temperature", "top-k": "top_k", "top-p": "top_p", "cfg": "cfg", "melody": "melody"},
    ACE_STEP: {"language": "language", "bpm": "bpm", "key": "key", "time-signature": "time_signature",
               "steps": "steps", "guidance": "guidance", "shift": "shift", "lora": "lora"},
}
FIELDS = {**COMMON, **FAMILY_FIELDS[MUSICGEN], **FAMILY_FIELDS[ACE_STEP]}
ADVANCED = ("temperature", "top_k", "top_p", "cfg")
ACE_ADVANCED = ("steps", "guidance", "shift", "lora")
DEFAULT_DURATION = {MUSICGEN: DEFAULTS.duration, ACE_STEP: ACE_DEFAULTS.duration}


def _num(v: float) -> str:
    return f"{v:g}"


class PromptInput(Input):
    """The prompt line: ↑/↓ walk through earlier prompts."""

    BINDINGS = [
        Binding("up", "history(1)", "Older prompt", show=False, id="compose.history_older"),
        Binding("down", "history(-1)", "Newer prompt", show=False, id="compose.history_newer"),
    ]

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.history: list[str] = []
        self._pos = -1
        self._draft = ""

    def set_history(self, prompts: list[str]) -> None:
        self.history = list(dict.fromkeys(p for p in prompts if p))
        self._pos = -1
        self.suggester = SuggestFromList(self.history, case_sensitive=False)

    def action_history(self, step: int) -> None:
        if not self.history:
            return
        if self._pos == -1:
            self._draft = self.value
        pos = max(-1, min(len(self.history) - 1, self._pos + step))
        self._pos = pos
        self.value = self._draft if pos == -1 else self.history[pos]
        self.cursor_position = len(self.value)


_SECTION_TAG = re.compile(r"\[[^\]\n]{1,40}\]")


class LyricsArea(TextArea):
    """The lyrics editor: text kept exactly as typed, section tags ([verse], [chorus]) highlighted.

    TextArea highlights through tree-sitter grammars; lyrics have none, so the tags are found
    with a regex and put in the same highlight map (byte columns, the "heading" style)."""

    def _build_highlight_map(self) -> None:
        super()._build_highlight_map()
        try:
            highlights = self._highlights
            for row, line in enumerate(self.document.lines):
                for m in _SECTION_TAG.finditer(line):
                    start = len(line[:m.start()].encode())
                    highlights[row].append((start, start + len(m.group().encode()), "heading"))
        except AttributeError:  # a Textual without the private map: tags stay plain, text is unchanged
            pass


class ComposeView(Vertical):
    """Submit a job. Validation runs on every change with the daemon's own validator."""

    BINDINGS = [
        Binding("ctrl+g", "generate", "Generate", id="compose.generate"),
        Binding("ctrl+l", "toggle_lock", "Lock seed", id="compose.lock_seed"),
        # priority: the focused Input would take ctrl+a as "home" (the Home key still does that)
        Binding("ctrl+a", "toggle_advanced", "Advanced", id="compose.advanced", priority=True),
        Binding("ctrl+n", "drop_extend", "New track", id="compose.drop_extend"),
    ]

    #: The library track the next job continues (None: a new piece).
    extending: str | None = None
    #: The family of the chosen model: which fields show and which schema checks them.
    family: str = MUSICGEN

    class Submit(Message):
        def __init__(self, params: dict[str, Any]) -> None:
            super().__init__()
            self.params = params

    def compose(self) -> ComposeResult:
        with Horizontal(classes="form-row"):
            yield Label("Prompt", classes="form-label")
            yield PromptInput(placeholder="describe the music: genre, mood, instruments, tempo…",
                              id="prompt", compact=True, max_length=2000)
        with Horizontal(classes="form-row"):
            yield Label("Duration", classes="form-label")
            yield Input(_num(DEFAULTS.duration), id="duration", compact=True, classes="num")
            yield Label("s  Count", classes="form-label2")
            yield Input(str(DEFAULTS.count), id="count", compact=True, classes="num-s")
            yield Label("Seed", classes="form-label2")
            yield Input("", placeholder="random", id="seed", compact=True, classes="num-l")
            yield Checkbox("lock", id="seed-lock", compact=True)
        with Horizontal(classes="form-row"):
            yield Label("Model", classes="form-label")
            yield Select([("daemon default", "")], value="", allow_blank=False, id="model", compact=True)
            yield Label("Melody", classes="form-label2 musicgen-only", id="melody-label")
            yield Input("", placeholder="track id or file", id="melody", compact=True, classes="musicgen-only")
        with Vertical(id="ace-fields", classes="ace-only"):
            with Horizontal(classes="form-row"):
                yield Label("Lyrics", classes="form-label")
                yield Label("[verse] [chorus] [bridge] tags mark sections; empty: instrumental", classes="dim")
            yield LyricsArea("", id="lyrics", soft_wrap=True, show_line_numbers=False, tab_behavior="focus")
            with Horizontal(classes="form-row"):
                yield Label("Language", classes="form-label")
                yield Input(ACE_DEFAULTS.language, id="language", compact=True, classes="num-s")
                yield Label("BPM", classes="form-label2")
                yield Input("", placeholder="auto", id="bpm", compact=True, classes="num-s")
                yield Label("Key", classes="form-label2")
                yield Input("", placeholder="auto (A minor)", id="key", compact=True, classes="num-l")
                yield Label("Beats/bar", classes="form-label2")
                yield Input("", placeholder="auto", id="time-signature", compact=True, classes="num-s")
            with Collapsible(title="Advanced (ACE-Step)", collapsed=True, id="ace-advanced"):
                with Horizontal(classes="form-row"):
                    yield Label("Steps", classes="form-label")
                    yield Input("", placeholder="8 (turbo)", id="steps", compact=True, classes="num")
                    yield Label("Guidance", classes="form-label2")
                    yield Input("", placeholder="1 (turbo)", id="guidance", compact=True, classes="num")
                    yield Label("Shift", classes="form-label2")
                    yield Input("", placeholder="3", id="shift", compact=True, classes="num")
                with Horizontal(classes="form-row"):
                    yield Label("LoRA", classes="form-label")
                    yield Input("", placeholder="a trained style (F5): NAME[:scale]", id="lora", compact=True)
        with Collapsible(title="Advanced sampling", collapsed=True, id="advanced", classes="musicgen-only"):
            with Horizontal(classes="form-row"):
                yield Label("Temperature", classes="form-label")
                yield Input(_num(DEFAULTS.temperature), id="temperature", compact=True, classes="num")
                yield Label("Top-k", classes="form-label2")
                yield Input(str(DEFAULTS.top_k), id="top-k", compact=True, classes="num")
            with Horizontal(classes="form-row"):
                yield Label("Top-p", classes="form-label")
                yield Input(_num(DEFAULTS.top_p), id="top-p", compact=True, classes="num")
                yield Label("Guidance", classes="form-label2")
                yield Input(_num(DEFAULTS.cfg), id="cfg", compact=True, classes="num")
            yield Label("top-p 0 = off; guidance = classifier-free guidance scale", classes="dim")
        yield Static("", id="extend-note")
        with Horizontal(classes="form-row buttons"):
            yield Button("Generate (ctrl+g)", id="generate", variant="primary", compact=True)
            yield Static("", id="form-error")
        yield Label("Recent prompts (enter to use)", classes="section-title")
        yield OptionList(id="history")

    # ---------------------------------------------------------------- data in

    def set_history(self, prompts: list[str]) -> None:
        prompts = list(dict.fromkeys(p for p in prompts if p))
        self.query_one(PromptInput).set_history(prompts)
        ol = self.query_one("#history", OptionList)
        ol.clear_options()
        ol.add_options([fmt.one_line(p, 300) for p in prompts[:100]])
        self._history = prompts[:100]

    def add_history(self, prompt: str) -> None:
        hist = [prompt, *getattr(self, "_history", [])]
        self.set_history(hist)

    def set_models(self, models: list[dict[str, Any]], default: str | None) -> None:
        sel = self.query_one("#model", Select)
        current = sel.value
        opts = [(f"daemon default ({default})" if default else "daemon default", "")]
        self._families: dict[str, str] = {}
        for m in models:
            name = str(m.get("name") or "")
            if m.get("family") and m["family"] not in FAMILIES:
                continue  # a separation model makes stems of a track, not music from a prompt
            if name:
                opts.append((name + ("" if m.get("cached", True) else " (download)"), name))
                if m.get("family") in FAMILY_FIELDS:  # the daemon knows the family of a directory or hub id
                    self._families[name] = str(m["family"])
        self._default_model = default or ""
        self._model_opts = opts
        sel.set_options(opts)
        values = {v for _, v in opts}
        sel.value = current if current in values else ""
        self._apply_family()

    def family_of(self, model: str) -> str:
        """The family of a model in the picker ("": the daemon's own); MusicGen when nothing tells."""
        name = model or getattr(self, "_default_model", "")
        families = getattr(self, "_families", {})
        return families.get(name) or family_for_name(name or None) or MUSICGEN

    def models_of(self, family: str) -> list[str]:
        """The daemon's models of one family, in the picker's order: the operation forms offer
        the ACE-Step ones."""
        return [v for _, v in getattr(self, "_model_opts", []) if isinstance(v, str) and v
                and self.family_of(v) == family]

    def _apply_family(self) -> None:
        """Show the chosen model's fields; a duration still at the other family's default follows along."""
        model = self.query_one("#model", Select).value
        family = self.family_of(model if isinstance(model, str) else "")
        if family == self.family:
            return
        old, self.family = self.family, family
        for spec in REGISTRY.values():
            if spec.css_class:
                self.set_class(spec.name == family, spec.css_class)
        duration = self.query_one("#duration", Input)
        if duration.value.strip() in ("", _num(DEFAULT_DURATION[old])):
            duration.value = _num(DEFAULT_DURATION[family])
        self.validate(show_empty_prompt=False)

    def prefill(self, track: dict[str, Any]) -> None:
        """Remix: the same prompt and parameters, a new (random) seed."""
        self.action_drop_extend()
        p = dict(track.get("params") or {})
        self.query_one("#prompt", Input).value = str(track.get("prompt") or p.get("prompt") or "")
        dur = p.get("duration") or track.get("duration")
        if dur is not None:
            self.query_one("#duration", Input).value = _num(float(dur))
        self.query_one("#count", Input).value = "1"
        self.query_one("#seed", Input).value = ""
        self.query_one("#seed-lock", Checkbox).value = False
        for fid, key in (("temperature", "temperature"), ("top-k", "top_k"), ("top-p", "top_p"), ("cfg", "cfg")):
            if p.get(key) is not None:
                self.query_one(f"#{fid}", Input).value = _num(p[key]) if isinstance(p[key], float) else str(p[key])
        self._melody_source = p.get("melody_source")
        self._melody_key = p.get("melody")
        self.query_one("#melody", Input).value = str(p.get("melody") or "")
        model = track.get("model") or p.get("model")
        sel = self.query_one("#model", Select)
        if model:
            opts = list(getattr(self, "_model_opts", [("daemon default", "")]))
            if model not in {v for _, v in opts}:
                opts.append((str(model), str(model)))
                self._model_opts = opts
                sel.set_options(opts)
            sel.value = model
        self._apply_family()
        self.query_one("#lyrics", TextArea).text = str(p.get("lyrics") or "")
        for fid, key in FAMILY_FIELDS[ACE_STEP].items():
            value = p.get(key)
            if key == "lora" and value and p.get("lora_scale") not in (None, 1.0):
                value = f"{value}:{p['lora_scale']:g}"
            default = ACE_DEFAULTS.language if key == "language" else ""
            self.query_one(f"#{fid}", Input).value = (_num(value) if isinstance(value, float) else
                                                      str(value) if value is not None else default)
        if p.get("extend"):  # a remix of a continuation continues the same track again
            self._continue(str(p["extend"]))
        self.query_one("#prompt", Input).focus()

    # ---------------------------------------------------------------- validation

    def raw_params(self) -> dict[str, Any]:
        raw: dict[str, Any] = {}
        for fid, key in {**COMMON, **FAMILY_FIELDS[self.family]}.items():
            value = self.query_one(f"#{fid}", Input).value.strip()
            if key == "seed" and not self.query_one("#seed-lock", Checkbox).value:
                continue
            if key == "seed" and not value:
                raw[key] = ""  # locked with no value: report it
                continue
            if value or key == "prompt":
                raw[key] = value
        model = self.query_one("#model", Select).value
        if isinstance(model, str) and model:
            raw["model"] = model
        spec = REGISTRY.get(self.family)
        if spec is not None and spec.song_fields:
            lyrics = self.query_one("#lyrics", TextArea).text
            if lyrics.strip():
                raw["lyrics"] = lyrics  # kept as typed, section tags and blank lines included
        melody = raw.get("melody")
        if melody and not (TRACK_ID_RE.match(melody) or MELODY_KEY_RE.match(melody)):
            raw["melody_file"] = raw.pop("melody")  # a file here: the app uploads it (the daemon may be remote)
        if self.extending is not None:
            raw["extend"] = self.extending
        source = getattr(self, "_melody_source", None)
        if raw.get("melody") and source and raw["melody"] == getattr(self, "_melody_key", raw["melody"]):
            raw["melody_source"] = source  # a remix keeps saying where its stored melody came from
        return raw

    def extend(self, track: dict[str, Any]) -> None:
        """Continue this track: its prompt and parameters, Duration = the seconds to add."""
        self.prefill(track)
        self.query_one("#melody", Input).value = ""
        room = 300.0 - float(track.get("duration") or 0.0)
        self.query_one("#duration", Input).value = _num(max(0.5, min(30.0, room)))
        self._continue(str(track["id"]))

    def _continue(self, track_id: str) -> None:
        self.extending = track_id
        note = self.query_one("#extend-note", Static)
        note.update(f"Continues track {self.extending}: Duration is the time added. ctrl+n: a new track instead.")
        note.add_class("-on")
        self.refresh_bindings()

    def action_drop_extend(self) -> None:
        self.extending = None
        self.query_one("#extend-note", Static).remove_class("-on")
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "drop_extend":
            return self.extending is not None  # the key only shows while a track is being continued
        return True

    def use_melody(self, track: dict[str, Any]) -> None:
        """Follow this track's melody in the next job; a melody model is needed, so pick one."""
        self._melody_source = None
        self.query_one("#melody", Input).value = str(track["id"])
        sel = self.query_one("#model", Select)
        melodic = [v for _, v in getattr(self, "_model_opts", []) if isinstance(v, str) and "melody" in v]
        if melodic and not (isinstance(sel.value, str) and "melody" in sel.value):
            sel.value = melodic[0]
        self.query_one("#prompt", Input).focus()

    def validate(self, *, show_empty_prompt: bool) -> dict[str, Any] | None:
        for fid in FIELDS:
            self.query_one(f"#{fid}", Input).remove_class("-invalid")
        self.query_one("#lyrics", TextArea).remove_class("-invalid")
        err = self.query_one("#form-error", Static)
        raw = self.raw_params()
        if raw.get("seed") == "":
            return self._invalid("seed", "is locked but empty: type a seed or unlock it")
        melody_file = raw.pop("melody_file", None)
        if melody_file is not None and not Path(melody_file).expanduser().is_file():
            return self._invalid("melody", "is neither a library track id (like 12-0) nor an audio file here")
        try:
            params = validate_request(raw, self.family)
        except ParamError as exc:
            if exc.field == "prompt" and not show_empty_prompt and not raw.get("prompt", "").strip():
                err.update("")
                return None
            return self._invalid(exc.field, exc.message)
        err.update("")
        out = {k: v for k, v in params.to_dict().items() if v is not None}
        if melody_file is not None:
            out["melody_file"] = str(Path(melody_file).expanduser())
        return out

    def _invalid(self, field: str, message: str) -> None:
        fid = {v: k for k, v in FIELDS.items()}.get(field, field)
        try:
            widget = self.query_one(f"#{fid}")
            widget.add_class("-invalid")
        except Exception:
            widget = None
        if field in ADVANCED and widget is not None:
            self.query_one("#advanced", Collapsible).collapsed = False
        if field in ACE_ADVANCED and widget is not None:
            self.query_one("#ace-advanced", Collapsible).collapsed = False
        label = field.replace("_", "-").replace("cfg", "guidance")
        self.query_one("#form-error", Static).update(f"✗ {label} {message}")
        return None

    def show_remote_invalid(self, field: str | None, message: str) -> None:
        if field:
            self._invalid(field, message.split(": ", 1)[-1] if message.startswith(field) else message)
        else:
            self.query_one("#form-error", Static).update(f"✗ {message}")

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        if event.input.id in FIELDS:
            self.validate(show_empty_prompt=False)

    @on(Checkbox.Changed, "#seed-lock")
    def _lock_changed(self) -> None:
        self.validate(show_empty_prompt=False)

    @on(TextArea.Changed, "#lyrics")
    def _lyrics_changed(self) -> None:
        self.validate(show_empty_prompt=False)

    @on(Select.Changed, "#model")
    def _model_changed(self) -> None:
        self._apply_family()

    # ---------------------------------------------------------------- actions

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_generate()

    @on(Button.Pressed, "#generate")
    def _pressed(self) -> None:
        self.action_generate()

    @on(OptionList.OptionSelected, "#history")
    def _pick(self, event: OptionList.OptionSelected) -> None:
        hist = getattr(self, "_history", [])
        if 0 <= event.option_index < len(hist):
            prompt = self.query_one("#prompt", Input)
            prompt.value = hist[event.option_index]
            prompt.focus()

    def action_generate(self) -> None:
        params = self.validate(show_empty_prompt=True)
        if params is None:
            self.query_one("#prompt", Input).focus() if not self.query_one("#prompt", Input).value.strip() else None
            return
        self.post_message(self.Submit(params))

    def submitted(self, job: dict[str, Any]) -> None:
        """After the daemon accepted a job: show the seed it used, remember the prompt."""
        if not self.query_one("#seed-lock", Checkbox).value and job.get("seed") is not None:
            self.query_one("#seed", Input).placeholder = f"random (last: {job['seed']})"
        if job.get("prompt"):
            self.add_history(str(job["prompt"]))
        self.action_drop_extend()  # one continuation per request; the next job is a new piece again

    def action_toggle_lock(self) -> None:
        cb = self.query_one("#seed-lock", Checkbox)
        cb.value = not cb.value
        seed = self.query_one("#seed", Input)
        if cb.value and not seed.value and "last: " in str(seed.placeholder):
            seed.value = str(seed.placeholder).split("last: ")[1].rstrip(")")

    def action_toggle_advanced(self) -> None:
        c = self.query_one("#advanced", Collapsible)
        c.collapsed = not c.collapsed
