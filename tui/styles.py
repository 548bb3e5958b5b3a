"""The Styles view (F5): styles trained on your tracks (LoRAs), live training progress, delete.

Training starts from the library: mark tracks with `v`, then `T` asks for a name and queues
`style.train` on them (`train_from_marked`). Progress comes from the training job's
`job.progress` events (loss, steps/s, ETA); a finished job refreshes the list.
"""

from __future__ import annotations

import time
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Label

from dgx_music.common.fmt import duration as human_duration, nbytes as human_bytes
from dgx_music.common.training import STYLE_NAME_PATTERN

COLUMNS = ("name", "base model", "steps", "items", "loss", "size", "created")


class StylesView(Vertical):
    BINDINGS = [
        Binding("r", "refresh", "Refresh", id="styles.refresh"),
        Binding("delete", "delete", "Delete", id="styles.delete"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.style_rows: list[dict[str, Any]] = []
        self.training: dict[int, dict[str, Any]] = {}  # job id -> its last progress

    def compose(self) -> ComposeResult:
        yield Label("No training running. Mark tracks in the library (v), then T trains a style on them.",
                    id="styles-progress", classes="dim")
        yield DataTable(id="styles-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*COLUMNS)

    # ------------------------------------------------------------------ data
    def load(self, styles: list[dict[str, Any]]) -> None:
        self.style_rows = list(styles)
        table = self.query_one(DataTable)
        table.clear()
        for s in self.style_rows:
            loss = "?" if s.get("final_loss") is None else f"{s['final_loss']:.4f}"
            table.add_row(s["name"], str(s.get("base_model", ""))[-28:], str(s.get("steps")),
                          str(len(s.get("tracks") or [])), loss, human_bytes(int(s.get("size") or 0)),
                          time.strftime("%Y-%m-%d %H:%M", time.localtime(float(s.get("created") or 0))),
                          key=s["name"])

    def on_progress(self, data: dict[str, Any]) -> None:
        """A training job's progress event (it carries `loss` or `phase`)."""
        self.training[int(data["id"])] = data
        phase = str(data.get("phase") or "")
        if phase.startswith("encoded"):
            text = f"job {data['id']}: encoding the audio ({phase.removeprefix('encoded ')})"
        else:
            loss = f"loss {data['loss']:.4f}" if isinstance(data.get("loss"), (int, float)) else "loss ?"
            rate = f"{data['rate']:.2f} steps/s" if isinstance(data.get("rate"), (int, float)) else "steps/s ?"
            text = (f"job {data['id']} training: step {data.get('step')}/{data.get('total')}  {loss}  {rate}  "
                    f"ETA {human_duration(data.get('eta'))}")
        self.query_one("#styles-progress", Label).update(text)

    def on_job_end(self, job_id: int, name: str) -> None:
        if self.training.pop(job_id, None) is not None:
            self.query_one("#styles-progress", Label).update(f"job {job_id} {name.removeprefix('job.')}")
            self.action_refresh()

    # ------------------------------------------------------------------ actions
    def action_refresh(self) -> None:
        self.app.request("style.list", done=lambda r: self.load(r.get("styles") or []), what="styles",
                         on_error=lambda exc: True)

    def selected(self) -> dict[str, Any] | None:
        table = self.query_one(DataTable)
        if not self.style_rows or table.cursor_row is None or not 0 <= table.cursor_row < len(self.style_rows):
            return None
        return self.style_rows[table.cursor_row]

    def action_delete(self) -> None:
        from dgx_music.tui.screens import ConfirmScreen

        s = self.selected()
        if s is None:
            self.app.notify("No style selected.", severity="warning")
            return

        def confirmed(ok: bool | None) -> None:
            if ok:
                self.app.request("style.delete", {"name": s["name"]}, what="delete style",
                                 done=lambda r: (self.app.notify(f"Style {r['deleted']} deleted."),
                                                 self.action_refresh()))

        self.app.push_screen(ConfirmScreen(f"Delete style {s['name']}? Its files go to the trash."), confirmed)


def train_from_marked(app: Any, ids: list[str]) -> None:
    """Ask for a name, then queue a style trained on these library tracks (default steps, rank, lr)."""
    import re

    from dgx_music.tui.screens import TextPromptScreen

    def named(name: str | None) -> None:
        if not name:
            return
        name = name.strip()
        if not re.match(STYLE_NAME_PATTERN, name):
            app.notify("A style name is 1-64 letters, digits, '_', '-' or '.'.", severity="error")
            return
        app.request("style.train", {"name": name, "tracks": ids}, what="train a style",
                    done=lambda j: app.notify(f"Job {j['id']} trains style {name} on {len(ids)} "
                                              f"track{'s' if len(ids) != 1 else ''}; progress in Styles (F5)."))

    app.push_screen(TextPromptScreen(f"Train a style on {len(ids)} track{'s' if len(ids) != 1 else ''}",
                                     placeholder="name, e.g. mysound",
                                     hint="ACE-Step; use it later with --lora NAME[:scale] or the compose form's "
                                          "LoRA field"), named)
