"""The live queue: every job with state, a progress bar, steps, elapsed and ETA.

A running MusicGen job's row also shows how many seconds of its audio are ready (from the
daemon's `job.stream` events, at most two a second), and space on it plays that audio as it is
made (`job.listen` on a connection of its own; common/stream_audio.py plays it)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Label

from dgx_music.common.client import Client, DaemonUnavailable
from dgx_music.common.protocol import RemoteError
from dgx_music.common.stream_audio import PipePlayer, StreamPlayerError, receive
from dgx_music.tui import fmt

ACTIVE = ("running", "processing", "queued")
COLUMNS = (("id", "#", 4), ("prompt", "Prompt", 30), ("state", "State", 10), ("progress", "Progress", 15),
           ("steps", "Steps", 7), ("elapsed", "Elapsed", 7), ("eta", "ETA", 6))
#: Under this width the Elapsed column goes and the bar shrinks, so the prompt stays readable.
NARROW = 100


def _order(job: dict[str, Any]) -> tuple:
    state = job.get("state")
    if state in ("running", "processing"):
        return (0, job.get("position") or 0, job.get("id") or 0)
    if state == "queued":
        return (1, job.get("position") or 0, job.get("id") or 0)
    return (2, -(job.get("finished") or job.get("created") or 0), -(job.get("id") or 0))


class QueueView(Vertical):
    BINDINGS = [
        Binding("c", "cancel", "Cancel", id="queue.cancel"),
        Binding("r", "retry", "Retry", id="queue.retry"),
        Binding("K", "move('up')", "Move up", id="queue.move_up"),
        Binding("J", "move('down')", "Move down", id="queue.move_down"),
        Binding("T", "move('top')", "To top", id="queue.move_top", show=False),
        Binding("space", "play_stream", "Play/Stop", id="queue.play_stream"),
    ]

    class PlayStream(Message):
        """Space on a queued or running job: the app plays its stream here or in the browser tab."""

        def __init__(self, job_id: int) -> None:
            super().__init__()
            self.job_id = job_id

    class JobAction(Message):
        def __init__(self, method: str, params: dict[str, Any]) -> None:
            super().__init__()
            self.method = method
            self.params = params

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.jobs: dict[int, dict[str, Any]] = {}
        self._order: list[int] = []
        self._columns: tuple = ()
        self._bar = 10
        self.stream_player: PipePlayer | None = None
        self.stream_job: int | None = None

    def compose(self) -> ComposeResult:
        yield Label("No jobs yet: compose something (F2).", id="queue-empty", classes="dim")
        yield DataTable(id="queue-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.relayout(self.app.size.width)

    def relayout(self, width: int) -> None:
        """Pick the columns for this width; the prompt takes what the others leave."""
        narrow = width < NARROW
        self._bar = 5 if narrow else 10
        cols = [c for c in COLUMNS if not (narrow and c[0] == "elapsed")]
        fixed = sum(w + 2 for k, _, w in cols if k != "prompt")
        cols = [(k, label, max(12, width - fixed - 8) if k == "prompt" else
                 (self._bar + 5 if k == "progress" else w)) for k, label, w in cols]
        if tuple(cols) == self._columns:
            return
        self._columns = tuple(cols)
        table = self.table
        with self.app.batch_update():
            table.clear(columns=True)
            for key, label, w in cols:
                table.add_column(label, key=key, width=w)
            self._order = []
            self.rebuild()

    @property
    def table(self) -> DataTable:
        return self.query_one("#queue-table", DataTable)

    # ---------------------------------------------------------------- data in

    def load(self, jobs: list[dict[str, Any]]) -> None:
        self.jobs = {int(j["id"]): dict(j) for j in jobs if "id" in j}
        self.rebuild()

    def rebuild(self) -> None:
        table = self.table
        selected = self.selected_id()
        order = [j["id"] for j in sorted(self.jobs.values(), key=_order)]
        with self.app.batch_update():
            if order != self._order:
                table.clear()
                keys = {c[0] for c in self._columns}
                for jid in order:
                    cells = [v for (k, _, _), v in zip(COLUMNS, self._cells(self.jobs[jid])) if k in keys]
                    table.add_row(*cells, key=str(jid))
                self._order = order
                if selected in self.jobs:
                    table.move_cursor(row=order.index(selected), animate=False)
            else:
                for jid in order:
                    self._update_row(jid)
            self.query_one("#queue-empty").display = not self.jobs

    def _update_row(self, jid: int) -> None:
        job = self.jobs[jid]
        keys = {c[0] for c in self._columns}
        for (key, _, _), value in zip(COLUMNS, self._cells(job)):
            if key == "id" or key not in keys:
                continue
            try:
                self.table.update_cell(str(jid), key, value)
            except Exception:
                pass

    def _cells(self, job: dict[str, Any]) -> list[Any]:
        state = str(job.get("state") or "?")
        prog = job.get("progress") or {}
        step, total = prog.get("step"), prog.get("total")
        style = fmt.STATE_STYLE.get(state, "")
        label = "cancelling" if state == "running" and job.get("cancel_requested") else state
        if state == "running" and total:
            progress: Any = fmt.bar(float(step or 0) / float(total), self._bar)
        elif state == "running":
            progress = Text("starting…", style="cyan")
        elif state == "processing":
            progress = Text("analysing…", style="cyan")
        elif state == "done":
            progress = fmt.bar(1.0, self._bar, style="green")
        elif state == "failed":
            progress = Text(fmt.one_line(job.get("error") or "failed", 60), style="red")
        elif state == "queued":
            progress = Text(f"waiting #{job.get('position', '-')}", style="yellow")
        else:
            progress = Text("-", style="dim")
        steps = f"{step}/{total}" if total else "-"
        elapsed = prog.get("elapsed")
        if elapsed is None and job.get("started") and job.get("finished"):
            elapsed = float(job["finished"]) - float(job["started"])
        eta = prog.get("eta") if state == "running" else None
        prompt = fmt.one_line(job.get("prompt"), 120)
        count = job.get("count") or 1
        if count > 1:
            prompt = f"{prompt} ×{count}"
        ready = job.get("stream_seconds")
        if state == "running" and ready:  # seconds of its audio ready to hear (space plays them)
            prompt = Text.assemble((f"▶{ready:.0f}s ", "green"), prompt)
        if job.get("host") and state in ("running", "processing"):  # a shared queue: the box running it
            prompt = Text.assemble((f"[{job['host']}] ", "cyan"), prompt)
        return [Text(str(job.get("id")), style="dim"), prompt, Text(label, style=style), progress, steps,
                fmt.duration(elapsed), fmt.duration(eta) if eta is not None else "-"]

    def apply(self, name: str, data: dict[str, Any]) -> None:
        """One job event."""
        if name == "job.pruned":  # history the daemon forgot: forget it here too
            gone = [j for j in data.get("ids") or [] if isinstance(j, int) and j in self.jobs]
            for j in gone:
                del self.jobs[j]
            if gone:
                self.rebuild()
            return
        jid = data.get("id")
        if not isinstance(jid, int):
            return
        if name == "job.queued":
            self.jobs[jid] = {**self.jobs.get(jid, {}), **data}
            self.rebuild()
            return
        job = self.jobs.get(jid)
        if job is None:  # an event for a job we have not seen (before our snapshot): fetch it
            self.app.refresh_job(jid)
            return
        if name == "job.stream":  # seconds of audio ready; the daemon sends at most two a second
            job["stream_seconds"] = data.get("seconds")
            if jid in self._order:
                self._update_row(jid)
            return
        if name == "job.progress":
            job["state"] = "running"
            job["progress"] = {k: data.get(k) for k in ("step", "total", "elapsed", "eta")}
            if jid in self._order:
                self._update_row(jid)
            return
        if name == "job.started":
            job["state"] = "running"
            job["host"] = data.get("host")
            job["attempts"] = data.get("attempt", job.get("attempts"))
            job["progress"] = None
        elif name == "job.processing":
            job["state"] = "processing"
        elif name == "job.finished":
            job["state"] = "done"
            job["track_ids"] = data.get("track_ids", [])
        elif name == "job.failed":
            job["state"] = "queued" if data.get("retrying") else "failed"
            job["error"] = data.get("error")
        elif name == "job.cancelled":
            job["state"] = "cancelled"
            job.pop("cancel_requested", None)
        elif name == "job.moved":
            job["position"] = data.get("position")
        self.rebuild()
        if name in ("job.finished", "job.failed", "job.cancelled", "job.moved"):
            self.app.refresh_job(jid)  # authoritative times and positions

    def upsert(self, job: dict[str, Any]) -> None:
        if "id" in job:
            old = self.jobs.get(int(job["id"]), {})
            if old.get("progress") and not job.get("progress") and job.get("state") in ("done", "processing"):
                job = {**job, "progress": old["progress"]}
            self.jobs[int(job["id"])] = dict(job)
            self.rebuild()

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for j in self.jobs.values():
            out[j.get("state", "?")] = out.get(j.get("state", "?"), 0) + 1
        return out

    # ---------------------------------------------------------------- actions

    def selected_id(self) -> int | None:
        table = self.table
        if not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except Exception:
            return None
        return int(key.value) if key.value is not None else None

    def _selected(self) -> dict[str, Any] | None:
        jid = self.selected_id()
        if jid is None:
            self.app.notify("No job selected.", severity="warning")
            return None
        return self.jobs.get(jid)

    def action_cancel(self) -> None:
        job = self._selected()
        if job is None:
            return
        if job.get("state") not in ACTIVE:
            self.app.notify(f"Job {job['id']} is {job.get('state')}: nothing to cancel.", severity="warning")
            return
        self.post_message(self.JobAction("job.cancel", {"id": job["id"]}))

    def action_retry(self) -> None:
        job = self._selected()
        if job is None:
            return
        if job.get("state") not in ("failed", "cancelled"):
            self.app.notify(f"Job {job['id']} is {job.get('state')}: only failed or cancelled jobs can be retried.",
                            severity="warning")
            return
        self.post_message(self.JobAction("job.retry", {"id": job["id"]}))

    def action_move(self, to: str) -> None:
        job = self._selected()
        if job is None:
            return
        if job.get("state") != "queued":
            self.app.notify("Only queued jobs can be moved.", severity="warning")
            return
        self.post_message(self.JobAction("job.move", {"id": job["id"], "to": to}))

    # -- streaming preview ----------------------------------------------------------------------
    def action_play_stream(self) -> None:
        """Space: play a running (or queued) job's audio as it is made; on any other job, the
        app's own play/stop; space again stops the stream."""
        if self.stream_player is not None:
            self.stop_stream()
            return
        jid = self.selected_id()
        job = self.jobs.get(jid) if jid is not None else None
        if job is None or job.get("state") not in ("running", "queued"):
            self.app.action_toggle_play()  # type: ignore[attr-defined]
            return
        self.post_message(self.PlayStream(int(job["id"])))

    def play_local_stream(self, job_id: int) -> None:
        """The stream through a player on this machine."""
        self.run_worker(self._play_stream(job_id), group="stream", exclusive=True, exit_on_error=False)

    def stop_stream(self) -> None:
        if self.stream_player is not None:
            self.stream_player.stop()
        self.stream_player, self.stream_job = None, None
        self.workers.cancel_group(self, "stream")  # its finally closes its connection

    async def _play_stream(self, job_id: int) -> None:
        player = PipePlayer()
        self.stream_player, self.stream_job = player, job_id
        client: Client | None = None
        try:
            await player.start()
            client = await Client.connect(self.app.socket_path)  # type: ignore[attr-defined]
            self.app.notify(f"Playing job {job_id} as it generates (space stops).", timeout=4)
            end = await receive(client, job_id, player)
            if end.get("reason") != "complete":
                self.app.notify(f"Job {job_id}'s stream ended: {end.get('reason')}", severity="warning")
        except StreamPlayerError as exc:
            self.app.notify(str(exc), title="No audio output", severity="warning", timeout=10)
        except RemoteError as exc:
            self.app.notify(exc.message, title=f"Cannot stream job {job_id} [{exc.code}]", severity="error")
        except (DaemonUnavailable, OSError) as exc:
            self.app.notify(str(exc), title=f"Cannot stream job {job_id}", severity="error")
        finally:
            await player.close()
            if client is not None:
                await client.close()
            if self.stream_player is player:
                self.stream_player, self.stream_job = None, None
