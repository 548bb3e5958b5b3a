"""Export from the library: the dialog, then the files written here, like `dgx-music export`.

The daemon never writes outside its data directory, so the TUI writes the
export itself, from the track's local file or one fetched over the socket.
Kept out of app.py: it only needs the app's `call`, `local_file`,
`fetch_audio`, `notify` and workers.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dgx_music.common import daw
from dgx_music.common.client import RemoteError
from dgx_music.tui.screens import ExportScreen

if TYPE_CHECKING:
    from dgx_music.tui.app import DgxMusicApp


def start(app: DgxMusicApp, t: dict[str, Any]) -> None:
    """Export runs here, like `dgx-music export`: the daemon never writes outside its data dir."""

    def go(choice: dict[str, Any] | None) -> None:
        if choice and choice.get("dir"):
            app.run_worker(write(app, t, choice), group="export", exit_on_error=False)

    app.push_screen(ExportScreen(str(t.get("id")), str(Path.home() / "Music")), go)


async def write(app: DgxMusicApp, t: dict[str, Any], choice: dict[str, Any]) -> None:
    tid = str(t.get("id"))
    try:
        from dgx_music.common.audio import ardour, export as exporter

        dest = Path(os.path.expanduser(choice["dir"]))
        title = str(t.get("title") or t.get("prompt") or tid)
        if choice["format"] == "ardour":
            plan = await daw.plan_session(lambda m, p: app.call(m, p), [t], bool(choice.get("with_stems")))
            clips = [ardour.Clip(path=app.local_file(st.track) or await app.fetch_audio(st.track),
                                 title=st.name, bpm=t.get("bpm")) for st in plan.tracks]
            out = await asyncio.to_thread(ardour.write_ardour_session, dest.parent, dest.name, clips)
            if plan.without_stems:
                app.notify(f"No stems were made from {tid} yet (library: S); the session has the mix only.",
                           severity="warning", timeout=6)
        else:
            src = app.local_file(t) or await app.fetch_audio(t)
            tags = {"title": title, "comment": t.get("prompt"), "bpm": t.get("bpm"), "key": t.get("key")}
            out = await asyncio.to_thread(
                exporter.export_track, src, dest, f"{title} ({tid})", format=choice["format"],
                sample_rate=choice.get("sample_rate"), tags=tags)
    except RemoteError as exc:
        app.notify(exc.message, title=f"Export of {tid} failed [{exc.code}]", severity="error", timeout=8)
    except Exception as exc:  # ExportError, ExportExistsError, OSError, not connected…
        app.notify(str(exc), title=f"Export of {tid} failed", severity="error", timeout=8)
    else:
        app.notify(f"{tid} → {out}", title="Exported", timeout=6)
