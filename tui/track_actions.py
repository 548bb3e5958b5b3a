"""What the app does with one library track: edits, the composer hand-offs, delete, the
operation forms and the family view. The library asks with a typed TrackAction; kept out of
app.py, which only routes the message here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.widgets import TabbedContent

from dgx_music.common.client import DaemonUnavailable, RemoteError, RequestTimeout
from dgx_music.common.families import ACE_STEP, DEFAULT_FAMILY, REGISTRY, REPAINT_TASK
from dgx_music.common.midi import METHOD as MIDI_METHOD
from dgx_music.common.midi import MIDI
from dgx_music.common.operations import EXTEND, METHODS, remix_request
from dgx_music.common.fitloop import METHODS as FITLOOP_METHODS
from dgx_music.common.fitloop import remix_request as fitloop_remix
from dgx_music.tui.fitloop_screens import SCREENS as FITLOOP_SCREENS
from dgx_music.tui.ops_screens import OP_SCREENS, LineageScreen, RepaintScreen
from dgx_music.tui.screens import ConfirmScreen, TextPromptScreen

if TYPE_CHECKING:
    from dgx_music.tui.app import DgxMusicApp


def handle(app: DgxMusicApp, action: str, t: dict[str, Any]) -> None:
    """One library action on one track (the library's TrackAction)."""
    tid = t.get("id")
    lib = app.library_view

    def updated(track: dict[str, Any]) -> None:
        lib.on_track_event("track.updated", track)

    if action == "favorite":
        app.request("track.update", {"id": tid, "favorite": not t.get("favorite")}, done=updated,
                    what="Favourite")
    elif action.startswith("rate:"):
        app.request("track.update", {"id": tid, "rating": int(action[5:])}, done=updated, what="Rate")
    elif action == "rename":
        def rename(value: str | None) -> None:
            if value is not None and value.strip():
                app.request("track.update", {"id": tid, "title": value.strip()}, done=updated, what="Rename")
        app.push_screen(TextPromptScreen(f"Title of {tid}", str(t.get("title") or "")), rename)
    elif action == "notes":
        def notes(value: str | None) -> None:
            if value is not None:
                app.request("track.update", {"id": tid, "notes": value}, done=updated, what="Notes")
        app.push_screen(TextPromptScreen(f"Notes for {tid}", str(t.get("notes") or "")), notes)
    elif action == "tags":
        old = [str(x) for x in t.get("tags") or []]

        def tags(value: str | None) -> None:
            if value is None:
                return
            new = [x for x in value.replace(",", " ").split() if x]
            add = [x for x in new if x not in old]
            remove = [x for x in old if x not in new]
            if add or remove:
                app.request("track.update", {"id": tid, "tags_add": add, "tags_remove": remove},
                            done=updated, what="Tags")
        app.push_screen(TextPromptScreen(f"Tags for {tid}", " ".join(old),
                                         hint="space-separated; delete a word to remove that tag"), tags)
    elif action == "remix" and (op := remix_request(t) or fitloop_remix(t)) is not None:
        # An operation's track: the same operation again on the same stored source, a new seed.
        op_name, op_params = op
        name = op_name.replace("_", " ")

        def remixing(job: dict[str, Any]) -> None:
            app.queue_view.upsert(job)
            src = (t.get("params") or {}).get("source_id") or (t.get("params") or {}).get("source_name") \
                or "the source"
            app.notify(f"Remixing: {name} of {src} again with a new seed (job {job.get('id')}).", timeout=4)

        app.request({**METHODS, **FITLOOP_METHODS}[op_name], op_params, done=remixing, what="Remix")
    elif action == "remix":
        app.query_one(TabbedContent).active = "compose"
        app.compose_view.prefill(t)
        app.notify("Composer filled from the track, with a new random seed.", timeout=3)
    elif action == "extend" and _repaints(t):  # ACE-Step: a form, after the end or before the start
        app.run_worker(operation(app, EXTEND, t), group="operation", exit_on_error=False)
    elif action == "extend":  # MusicGen: the composer continues the track (forward only)
        app.query_one(TabbedContent).active = "compose"
        app.compose_view.extend(t)
        app.notify(f"The next job continues {tid}; set how many seconds to add.", timeout=4)
    elif action == "use_melody":
        app.query_one(TabbedContent).active = "compose"
        app.compose_view.use_melody(t)
        app.notify(f"The next job follows the melody of {tid} (needs a melody model).", timeout=4)
    elif action == "delete":
        def confirmed(yes: bool | None) -> None:
            if yes:
                if app.player.track_id == tid:
                    app.stop_playing()
                app.request("track.delete", {"id": tid},
                            done=lambda r: lib.on_track_event("track.deleted", {"id": tid}), what="Delete")
        title = t.get("title") or t.get("prompt") or tid
        app.push_screen(ConfirmScreen(f"Delete track {tid} ({title})? It goes to the trash."), confirmed)
    elif action in ("repaint", *OP_SCREENS, *FITLOOP_SCREENS):
        app.run_worker(operation(app, action, t), group="operation", exit_on_error=False)
    elif action == "lineage":
        app.run_worker(lineage(app, t), group="lineage", exclusive=True, exit_on_error=False)


def _repaints(t: dict[str, Any]) -> bool:
    """Whether the track's family extends by repainting (either end) rather than by continuing."""
    fam = REGISTRY.get(t.get("family") or (t.get("params") or {}).get("family") or DEFAULT_FAMILY)
    return fam is not None and fam.does(REPAINT_TASK)


async def operation(app: DgxMusicApp, operation: str, t: dict[str, Any]) -> None:
    """The operation's form, then `op.<operation>` on the track; the job shows in the queue.
    Repaint needs the waveform and length: the full track document is fetched for it."""
    tid = str(t.get("id"))
    try:
        if operation == "repaint" and "peaks" not in t:
            t = await app.call("track.get", {"id": tid})
    except (RemoteError, DaemonUnavailable, RequestTimeout) as exc:
        app.notify(str(exc), title=f"Repaint of {tid}", severity="error")
        return
    models = app.compose_view.models_of(ACE_STEP)
    if operation in FITLOOP_SCREENS:
        screen: Any = FITLOOP_SCREENS[operation](t)
    elif operation == "repaint":
        playing = app.player.playing and app.player.track_id == tid
        screen = RepaintScreen(t, app.player.position if playing else 0.0, models=models)
    else:
        screen = OP_SCREENS[operation](t, models)
    what = "MIDI" if operation == MIDI else operation.replace("_", " ").capitalize()

    def go(result: tuple[str, dict[str, Any]] | None) -> None:
        if result is None:
            return
        op, params = result

        def queued(job: dict[str, Any]) -> None:
            app.queue_view.upsert(job)
            where = (f"it is stored with the track (dgx-music midi {tid} --to FILE.mid fetches one)" if op == MIDI
                     else "its tracks appear in the library")
            app.notify(f"{what} of {tid} queued as job {job.get('id')}; {where}.", timeout=5)

        app.request({**METHODS, **FITLOOP_METHODS, MIDI: MIDI_METHOD}[op], params, done=queued, what=what)

    app.push_screen(screen, go)


async def lineage(app: DgxMusicApp, t: dict[str, Any]) -> None:
    tid = str(t.get("id"))
    try:
        lin = await app.call("track.lineage", {"id": tid})
    except (RemoteError, DaemonUnavailable, RequestTimeout) as exc:
        app.notify(str(exc), title=f"Family of {tid}", severity="error")
        return

    async def jump(target: str | None) -> None:
        if target and not await app.library_view.focus_track(target):
            app.notify(f"{target} is not in the list shown (a search or filter hides it); its details are "
                       "in the pane.", severity="warning", timeout=5)

    app.push_screen(LineageScreen(t, lin), lambda target: app.run_worker(jump(target), group="lineage-jump",
                                                                         exit_on_error=False))
