"""Modal screens: help, confirm, a one-line text prompt, an error report."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

HELP_SECTIONS: list[tuple[str, list[tuple[str, str]]]] = [
    ("Everywhere", [
        ("F2 / F3 / F4", "Compose / Queue / Library"),
        ("space", "play or stop the selected track (outside text fields)"),
        ("[ / ]", "5 s back / on, while a track plays in the browser tab"),
        ("b", "previews to the browser tab even where this machine could play them"),
        ("ctrl+p", "command palette: every action by name"),
        ("F1 or ?", "this help"),
        ("ctrl+r", "reconnect now"),
        ("ctrl+q", "quit"),
    ]),
    ("Compose", [
        ("enter / ctrl+g", "generate (errors show inline before anything is sent)"),
        ("↑ / ↓ in the prompt", "recall earlier prompts (also from the library)"),
        ("ctrl+l", "lock the seed (unlocked: a new random seed each time)"),
        ("ctrl+a", "show / hide the advanced sampling parameters"),
    ]),
    ("Queue", [
        ("c", "cancel the selected job"),
        ("r", "retry a failed or cancelled job"),
        ("K / J", "move a queued job up / down"),
        ("T", "move a queued job to the top"),
    ]),
    ("Library", [
        ("/", "search (full text, as you type)"),
        ("F", "filters: tag, favourites, model, BPM range, key, sort"),
        ("s / o", "next sort field / flip the order"),
        ("enter", "open the track in the detail pane"),
        ("d", "read the details (analysis, lyrics): ↑/↓, page keys scroll them; d or esc: back to the list"),
        ("f", "favourite"),
        ("0-5", "rate"),
        ("t / e / n", "tags / rename / notes"),
        ("m", "remix: the composer with the same prompt and parameters, new seed"),
        ("u", "use as melody: the next job follows this track's melody (melody models)"),
        ("+", "extend: MusicGen, the next job continues it (Duration = seconds added); ACE-Step, a form: "
              "seconds to add, after the end or before the start"),
        ("v / V", "mark the track and step down (again: unmark) / unmark all"),
        ("x", "export the marked tracks, else the selected one: WAV, FLAC (44.1/48 kHz) or one Ardour "
              "session (optionally with stems)"),
        ("R", "repaint a span (ACE-Step): ←/→ move the cursor, i / o set the in / out marks"),
        ("C / S / A", "cover in a new style / split into stems (a separation model, or ACE-Step's extract) / "
                      "add a part (ACE-Step)"),
        ("M", "MIDI: transcribe the track (or stem) to a MIDI file stored with it"),
        ("T / B", "fit to a tempo and key / a bar-exact loop cut from the track"),
        ("Y", "train a style (a LoRA, ACE-Step) on the marked tracks"),
        ("L", "family: the track's source, stems, repaints, covers; enter goes to one"),
        ("delete", "delete (asks first)"),
    ]),
]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,f1,question_mark", "dismiss", "Close", id="help.close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box", classes="modal-box"):
            yield Label("DGX Music — keys", classes="modal-title")
            with VerticalScroll():
                for title, rows in HELP_SECTIONS:
                    table = Table.grid(padding=(0, 2))
                    table.add_column(style="bold cyan", no_wrap=True)
                    table.add_column()
                    for key, what in rows:
                        table.add_row(key, what)
                    yield Static(Text(title, style="bold underline"))
                    yield Static(table, classes="help-section")
                yield Static("Audio over SSH: run `dgx-music web` and open the URL it prints in a browser on "
                             "your laptop (after `ssh -L 8765:localhost:8765 HOST`); while that tab is open, "
                             "space plays there. Or forward PulseAudio/PipeWire (docs/tui.md).", classes="dim")
            yield Button("Close", id="help-close")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)

    async def action_dismiss(self, result: Any = None) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [Binding("escape,n", "no", "No", id="confirm.no"), Binding("y", "yes", "Yes", id="confirm.yes")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box"):
            yield Label(self.question, classes="modal-title")
            with Horizontal(classes="modal-buttons"):
                yield Button("Yes (y)", variant="error", id="yes")
                yield Button("No (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)


class TextPromptScreen(ModalScreen["str | None"]):
    """One line of text; Enter accepts, Escape cancels (dismisses None)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="prompt.cancel")]

    def __init__(self, title: str, value: str = "", *, placeholder: str = "", hint: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.value = value
        self.placeholder = placeholder
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box"):
            yield Label(self.title_text, classes="modal-title")
            yield Input(self.value, placeholder=self.placeholder, id="prompt-input")
            if self.hint:
                yield Label(self.hint, classes="dim")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ExportScreen(ModalScreen["dict[str, Any] | None"]):
    """Where and how to export tracks: WAV or FLAC files (one per track) or one Ardour session."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="export.cancel")]

    def __init__(self, what: str, default_dir: str) -> None:
        """`what`: the title's object, "track 3-0" or "2 tracks (3-0, 5-1)"."""
        super().__init__()
        self.what = what
        self.default_dir = default_dir

    def compose(self) -> ComposeResult:
        from textual.widgets import Select

        from dgx_music.tui.widgets import TickBox

        with Vertical(classes="modal-box"):
            yield Label(f"Export {self.what}", classes="modal-title")
            yield Label("Directory (for Ardour: the session directory to create)", classes="dim")
            yield Input(self.default_dir, id="export-dir")
            with Horizontal(classes="modal-row"):
                yield Select([("WAV", "wav"), ("FLAC", "flac"), ("Ardour session", "ardour")], value="wav",
                             allow_blank=False, id="export-format", compact=True)
                yield Select([("rate unchanged", 0), ("44100 Hz", 44100), ("48000 Hz", 48000)], value=0,
                             allow_blank=False, id="export-rate", compact=True)
            yield TickBox("Ardour: add its stems as tracks (mix + one per part)", id="export-stems", compact=True)
            with Horizontal(classes="modal-buttons"):
                yield Button("Export", variant="primary", id="export-go")
                yield Button("Cancel", id="export-cancel")

    def on_mount(self) -> None:
        self.query_one("#export-dir", Input).focus()

    def _result(self) -> dict[str, Any]:
        from textual.widgets import Checkbox, Select

        rate = self.query_one("#export-rate", Select).value
        return {"dir": self.query_one("#export-dir", Input).value.strip(),
                "format": self.query_one("#export-format", Select).value,
                "with_stems": self.query_one("#export-stems", Checkbox).value,
                "sample_rate": rate if isinstance(rate, int) and rate else None}

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(self._result())

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(self._result() if event.button.id == "export-go" else None)

    def action_cancel(self) -> None:
        self.dismiss(None)
