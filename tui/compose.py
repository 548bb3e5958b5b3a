"""The composer: prompt with history, duration, count, seed, model, advanced sampling."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.suggester import SuggestFromList
from textual.widgets import Button, Checkbox, Collapsible, Input, Label, OptionList, Select, Static

from pathlib import Path

from dgx_music.common.params import MELODY_KEY_RE, TRACK_ID_RE, GenerationParams, ParamError, validate_params
from dgx_music.tui import fmt

DEFAULTS = GenerationParams(prompt="x")
#: form field id -> parameter name
FIELDS = {
    "prompt": "prompt", "duration": "duration", "count": "count", "seed": "seed",
    "temperature": "temperature", "top-k": "top_k", "top-p": "top_p", "cfg": "cfg", "melody": "melody",
}
ADVANCED = ("temperature", "top_k", "top_p", "cfg")


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
            yield Label("Melody", classes="form-label2")
            yield Input("", placeholder="track id or file", id="melody", compact=True)
        with Collapsible(title="Advanced sampling", collapsed=True, id="advanced"):
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
        for m in models:
            name = str(m.get("name") or "")
            if name:
                opts.append((name + ("" if m.get("cached", True) else " (download)"), name))
        self._model_opts = opts
        sel.set_options(opts)
        values = {v for _, v in opts}
        sel.value = current if current in values else ""

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
        if p.get("extend"):  # a remix of a continuation continues the same track again
            self._continue(str(p["extend"]))
        self.query_one("#prompt", Input).focus()

    # ---------------------------------------------------------------- validation

    def raw_params(self) -> dict[str, Any]:
        raw: dict[str, Any] = {}
        for fid, key in FIELDS.items():
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
        err = self.query_one("#form-error", Static)
        raw = self.raw_params()
        if raw.get("seed") == "":
            return self._invalid("seed", "is locked but empty: type a seed or unlock it")
        melody_file = raw.pop("melody_file", None)
        if melody_file is not None and not Path(melody_file).expanduser().is_file():
            return self._invalid("melody", "is neither a library track id (like 12-0) nor an audio file here")
        try:
            params = validate_params(raw)
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
            widget = self.query_one(f"#{fid}", Input)
            widget.add_class("-invalid")
        except Exception:
            widget = None
        if field in ADVANCED and widget is not None:
            self.query_one("#advanced", Collapsible).collapsed = False
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
