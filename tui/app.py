"""The DGX Music TUI: compose, watch the queue live, browse the library, play previews.

Structure (after Harlequin, Posting and Memray's live TUI):
- `DaemonLink` (tui/connection.py) runs as a worker owning the Client; it posts
  typed messages (tui/messages.py) and reconnects by itself forever.
- The App routes those messages to three views (Compose, Queue, Library) and
  owns the status bar, the player and every request to the daemon. Requests
  run in workers; errors become notifications or inline messages, never a
  traceback. Playing previews is tui/playback.py, mixed into the App.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
from pathlib import Path
from typing import Any, Callable, Iterable

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, TabbedContent, TabPane

from dgx_music.common import paths
from dgx_music.common.client import START_HINT, DaemonUnavailable, RemoteError, RequestTimeout
from dgx_music.common.params import ParamError
from dgx_music.tui import commands, export_flow, track_actions
from dgx_music.tui.compose import ComposeView
from dgx_music.tui.connection import ConnectFn, DaemonLink, RETRY_DELAYS
from dgx_music.tui.library import LibraryView
from dgx_music.tui.messages import Connected, DaemonEvent, Disconnected, JobProgress, ModelState, Snapshot
from dgx_music.tui.playback import Playback
from dgx_music.tui.player import Player
from dgx_music.tui.queue import QueueView
from dgx_music.tui.screens import HelpScreen
from dgx_music.tui.speaker_out import SEEK_STEP, TabSpeaker
from dgx_music.tui.styles import StylesView
from dgx_music.tui.widgets import Banner, StatusBar

log = logging.getLogger("dgx_music.tui")

MODEL_POLL_S = 5.0



def _while_views(handler: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    """For messages from the connection's reader: one can arrive while the app is closing and its
    views are already gone; it is dropped then instead of failing on a missing widget."""
    @functools.wraps(handler)
    def guarded(self: Any, message: Any) -> None:
        if self.query(StatusBar):
            handler(self, message)
    return guarded


class DgxMusicApp(Playback, App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "DGX Music"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    BINDINGS = [
        Binding("f2", "show_tab('compose')", "Compose", id="app.compose", show=False),
        Binding("f3", "show_tab('queue')", "Queue", id="app.queue", show=False),
        Binding("f4", "show_tab('library')", "Library", id="app.library", show=False),
        Binding("f5", "show_tab('styles')", "Styles", id="app.styles", show=False),
        Binding("space", "toggle_play", "Play/Stop", id="app.play"),
        Binding("b", "toggle_tab_output", "Browser tab", id="app.tab_output", show=False),
        Binding("left_square_bracket", f"seek({-SEEK_STEP})", "Back", id="app.seek_back", show=False),
        Binding("right_square_bracket", f"seek({SEEK_STEP})", "On", id="app.seek_on", show=False),
        Binding("f1,question_mark", "help", "Help", id="app.help"),
        Binding("ctrl+r", "reconnect", "Reconnect", show=False, id="app.reconnect"),
    ]

    def __init__(self, socket: str | Path | None = None, *, connect: ConnectFn | None = None,
                 player: Player | None = None, cache_dir: Path | None = None,
                 retry_delays: tuple[float, ...] = RETRY_DELAYS, poll_model: bool = True) -> None:
        super().__init__()
        self.socket_path = Path(socket) if socket else paths.default_socket()
        self.link = DaemonLink(self.socket_path, self.post_message, connect=connect, retry_delays=retry_delays)
        self.player = player or Player()
        self.tab = TabSpeaker(self)  # the browser tab as the speaker (tui/speaker_out.py)
        self.cache_dir = Path(cache_dir) if cache_dir else paths.default_cache_dir()
        self.poll_model = poll_model
        self.snapshot: Snapshot | None = None
        self.connected = False
        self.ever_connected = False
        self.model_state: dict[str, Any] = {}
        self.last_track: dict[str, Any] | None = None

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Banner("", id="banner")
        with TabbedContent(initial="compose", id="tabs"):
            with TabPane("Compose F2", id="compose"):
                yield ComposeView(id="compose-view")
            with TabPane("Queue F3", id="queue"):
                yield QueueView(id="queue-view")
            with TabPane("Library F4", id="library"):
                yield LibraryView(id="library-view")
            with TabPane("Styles F5", id="styles"):
                yield StylesView(id="styles-view")
        yield StatusBar(id="status")
        yield Footer()

    @property
    def compose_view(self) -> ComposeView:
        return self.query_one(ComposeView)

    @property
    def queue_view(self) -> QueueView:
        return self.query_one(QueueView)

    @property
    def library_view(self) -> LibraryView:
        return self.query_one(LibraryView)

    @property
    def styles_view(self) -> StylesView:
        return self.query_one(StylesView)

    @property
    def status_bar(self) -> StatusBar:
        return self.query_one(StatusBar)

    def on_mount(self) -> None:
        self.show_banner(f"connecting to {self.socket_path}…", error=False)
        # Paint first, then connect: the first frame never waits for the daemon.
        self.call_after_refresh(lambda: self.run_worker(self.link.run(), name="daemon-link", group="link",
                                                        exit_on_error=False))
        self.set_interval(0.1, self._tick_player)
        if self.poll_model:
            self.set_interval(MODEL_POLL_S, self._poll_model)
        self.call_after_refresh(self._focus_prompt)
        self.call_after_refresh(self._freeze_heap)

    @staticmethod
    def _freeze_heap() -> None:
        """After the first paint, move everything alive (modules, widgets, styles) out of the
        cyclic GC's reach. Otherwise a full collection walks all of it: 40-50 ms every few
        seconds while typing a search, the library table's discarded caches being what
        triggers it. Collected first, so no garbage gets frozen."""
        gc.collect()
        gc.freeze()

    def _focus_prompt(self) -> None:
        try:
            self.query_one("#prompt").focus()
        except Exception:
            pass

    def on_resize(self) -> None:
        self.call_after_refresh(self._relayout)

    def _relayout(self) -> None:
        try:
            width = self.size.width
            self.queue_view.relayout(width - 2)
            # the detail pane takes 44 columns beside the table on wide screens
            self.library_view.relayout(width - 2 - (45 if self.screen.has_class("-wide") else 0))
        except Exception:
            log.exception("relayout")

    # ------------------------------------------------------------------ requests

    async def call(self, method: str, params: dict[str, Any] | None = None, *, timeout: float = 30.0) -> Any:
        """One request; raises DaemonUnavailable (not connected), RemoteError or RequestTimeout."""
        return await self.link.call(method, params, timeout=timeout)

    def request(self, method: str, params: dict[str, Any] | None = None, *,
                done: Callable[[Any], None] | None = None, what: str | None = None,
                on_error: Callable[[RemoteError], bool] | None = None) -> None:
        """Fire a request in a worker; the answer goes to `done`, errors to a notice."""

        async def go() -> None:
            try:
                result = await self.call(method, params)
            except RemoteError as exc:
                if on_error is not None and on_error(exc):
                    return
                self.notify(f"{exc.message}", title=f"{what or method} failed [{exc.code}]", severity="error",
                            timeout=8)
                return
            except DaemonUnavailable:
                self.notify(f"Not connected to the daemon; {START_HINT}.", title=what or method, severity="warning")
                return
            except RequestTimeout as exc:
                self.notify(str(exc), title=f"{what or method}: no answer", severity="error")
                return
            except Exception as exc:  # never a traceback on screen
                log.exception("request %s", method)
                self.notify(f"{type(exc).__name__}: {exc}", title=f"{what or method} failed", severity="error")
                return
            if done is not None:
                try:
                    done(result)
                except Exception as exc:
                    log.exception("handling %s", method)
                    self.notify(f"{type(exc).__name__}: {exc}", title=f"{what or method}", severity="error")

        self.run_worker(go(), group="rpc", exit_on_error=False)

    def refresh_job(self, job_id: int) -> None:
        self.request("job.get", {"id": job_id}, done=self.queue_view.upsert, what="refresh job",
                     on_error=lambda exc: True)

    def refresh_jobs(self) -> None:
        self.request("job.list", {"all": True, "limit": 200}, done=lambda r: self.queue_view.load(r.get("jobs", [])),
                     what="refresh queue", on_error=lambda exc: True)

    # ------------------------------------------------------------------ connection messages

    def show_banner(self, text: str, *, error: bool = True) -> None:
        banner = self.query_one(Banner)
        banner.update(text)
        banner.set_class(error, "-error")
        banner.display = bool(text)

    @_while_views
    def on_connected(self, message: Connected) -> None:
        snap = message.snapshot
        self.snapshot = snap
        self.connected = True
        self.show_banner("")
        bar = self.status_bar
        bar.socket = str(self.socket_path)
        bar.queue = dict(snap.status.get("queue") or {})
        bar.disk_full = bool(snap.status.get("disk_full"))
        self.model_state = dict(snap.model or {})
        bar.set_model(self.model_state)
        bar.connected = True
        self.queue_view.load(snap.jobs)
        self._refresh_counts()
        default_model = self.model_state.get("model")
        self.compose_view.set_models(snap.models, default_model)
        models = [str(m.get("name")) for m in snap.models if m.get("name")]
        self.library_view.set_models(models)
        self.compose_view.set_history(snap.prompts)
        self.library_view.request_query()
        self.styles_view.action_refresh()
        self.request("track.list", {"limit": 100}, done=self._library_prompts, what="prompt history",
                     on_error=lambda exc: True)
        self.run_worker(self.tab.refresh(), group="speaker", exit_on_error=False)
        if self.ever_connected:
            self.notify("Reconnected to the daemon.", title="dgx-music", timeout=3)
        self.ever_connected = True

    def _library_prompts(self, res: dict[str, Any]) -> None:
        prompts = list(self.snapshot.prompts if self.snapshot else [])
        prompts += [str(t.get("prompt")) for t in res.get("tracks") or [] if t.get("prompt")]
        self.compose_view.set_history(prompts)

    @_while_views
    def on_disconnected(self, message: Disconnected) -> None:
        self.connected = False
        self.status_bar.connected = False
        verb = "disconnected" if self.ever_connected else "not running"
        self.show_banner(f"Daemon {verb} — start it with `dgx-music daemon`; retrying… "
                         f"({message.reason.split('; start it')[0]})")

    @_while_views
    def on_model_state(self, message: ModelState) -> None:
        self.model_state = dict(message.state)
        if message.state.get("state") != "loading":
            self.status_bar.loading_progress = None
        self.status_bar.set_model(self.model_state)

    async def _poll_model(self) -> None:
        if not self.connected or self.link.client is None:
            return
        try:
            state = await self.call("model.state", timeout=5.0)
        except Exception:
            return
        if isinstance(state, dict):
            self.post_message(ModelState(state))

    def on_job_progress(self, message: JobProgress) -> None:
        self.on_daemon_event(message)

    @_while_views
    def on_daemon_event(self, message: DaemonEvent) -> None:
        name, data = message.name, message.data
        topic = message.topic
        if topic == "job":
            self.queue_view.apply(name, data)
            if name == "job.moved":
                self.refresh_jobs()
            self._refresh_counts()
            if name in ("job.started", "job.progress") and self.model_state.get("state") == "ready":
                self.model_state["state"] = "busy"
                self.status_bar.set_model(self.model_state)
            elif name in ("job.finished", "job.failed", "job.cancelled"):
                if self.model_state.get("state") == "busy":
                    self.model_state["state"] = "ready"
                    self.status_bar.set_model(self.model_state)
                self.run_worker(self._poll_model(), group="model-poll", exit_on_error=False)
            if name == "job.progress" and ("loss" in data or "phase" in data):  # a training job (styles)
                self.styles_view.on_progress(data)
            elif name in ("job.finished", "job.failed", "job.cancelled") and data.get("id") is not None:
                self.styles_view.on_job_end(int(data["id"]), name)
            if name == "job.finished":
                n = len(data.get("track_ids") or [])
                self.notify(f"Job {data.get('id')} finished: {n} track{'s' if n != 1 else ''} in the library."
                            if n else f"Job {data.get('id')} finished.", timeout=4)
            elif name == "job.failed" and not data.get("retrying"):
                self.notify(str(data.get("error") or "failed"), title=f"Job {data.get('id')} failed",
                            severity="error", timeout=8)
        elif topic == "track":
            self.library_view.on_track_event(name, data)
        elif topic == "model":
            self._model_event(name, data)
        elif name == "daemon.speaker":
            self.tab.on_event(data)
        elif name == "daemon.disk":
            self.status_bar.disk_full = bool(data.get("full"))
            self.status_bar.refresh_text()
        elif name == "daemon.shutdown":
            self.show_banner(f"The daemon is shutting down ({data.get('reason', '')}); waiting for it to come back…")

    def _model_event(self, name: str, data: dict[str, Any]) -> None:
        m = self.model_state
        bar = self.status_bar
        if name == "model.loading":
            m.update(state="loading", model=data.get("model", m.get("model")))
            p = data.get("progress")
            bar.loading_progress = float(p) if isinstance(p, (int, float)) else None
        elif name == "model.loaded":
            m.update(state="ready", model=data.get("model", m.get("model")), device=data.get("device"),
                     backend=data.get("backend", m.get("backend")))
            bar.loading_progress = None
        elif name == "model.unloaded":
            m.update(state="unloaded")
            bar.loading_progress = None
        elif name == "model.crashed":
            m.update(state="unloaded")
            self.notify(str(data.get("reason") or "the model worker died; it restarts on the next job"),
                        title="Model crashed", severity="error", timeout=8)
        bar.set_model(m)

    def _refresh_counts(self) -> None:
        self.status_bar.queue = self.queue_view.counts()
        self.status_bar.refresh_text()

    # ------------------------------------------------------------------ view messages

    def on_compose_view_submit(self, message: ComposeView.Submit) -> None:
        compose = self.compose_view

        def done(job: dict[str, Any]) -> None:
            compose.submitted(job)
            self.queue_view.upsert(job)
            self._refresh_counts()
            self.notify(f"Job {job.get('id')} queued (seed {job.get('seed')}).", timeout=3)

        def on_error(exc: RemoteError) -> bool:
            if exc.code == "invalid_params":
                compose.show_remote_invalid(exc.data.get("field"), exc.message)
                return True
            return False

        params = dict(message.params)
        melody_file = params.pop("melody_file", None)
        if melody_file is None:
            self.request("job.submit", params, done=done, what="Generate", on_error=on_error)
            return

        async def upload_then_submit() -> None:
            from dgx_music.common.audio.melody import encode_upload

            try:  # decode, mix down and resample here, off the UI thread: only ~1-2 MB travel
                data = await asyncio.to_thread(encode_upload, Path(melody_file))
            except ParamError as exc:
                compose.show_remote_invalid("melody", exc.message)
                return
            params.update(melody_audio=data, melody_name=Path(melody_file).name)
            self.request("job.submit", params, done=done, what="Generate", on_error=on_error)

        self.run_worker(upload_then_submit(), group="melody-upload", exit_on_error=False)

    def on_queue_view_job_action(self, message: QueueView.JobAction) -> None:
        verb = {"job.cancel": "Cancel", "job.retry": "Retry", "job.move": "Move"}.get(message.method, message.method)
        self.request(message.method, message.params, done=self.queue_view.upsert, what=verb)

    def on_library_view_track_action(self, message: LibraryView.TrackAction) -> None:
        track_actions.handle(self, message.action, message.track)

    def on_library_view_export_tracks(self, message: LibraryView.ExportTracks) -> None:
        export_flow.start(self, message.tracks)

    # ------------------------------------------------------------------ playback: tui/playback.py

    # ------------------------------------------------------------------ app actions

    def action_show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        target = {"compose": "#prompt", "queue": "#queue-table", "library": "#lib-table",
                  "styles": "#styles-table"}[tab]
        self.call_after_refresh(lambda: self.query_one(target).focus())

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_reconnect(self) -> None:
        self.link.retry_now()
        self.notify("Reconnecting…", timeout=2)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.refresh_bindings()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield from commands.palette(self)

    def _handle_exception(self, error: Exception) -> None:
        """A bug in the TUI: leave a short message and a log file, not a traceback on the screen."""
        if self.is_headless:  # tests: let Textual re-raise it
            super()._handle_exception(error)
            return
        import traceback

        path = self.cache_dir / "tui-crash.log"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(traceback.format_exception(error)))
            where = f"the details are in {path}"
        except OSError:
            where = "no log could be written"
        try:
            self.player.stop()
        except Exception:
            pass
        self.exit(1, return_code=1, message=f"dgx-music tui stopped on an internal error: "
                                            f"{type(error).__name__}: {error}\n({where}; please report it)")

    async def action_quit(self) -> None:
        self.player.stop()
        self.exit(0)


def run(socket: str | Path | None = None) -> int:
    app = DgxMusicApp(socket)
    app.run()
    return int(app.return_code or 0)
