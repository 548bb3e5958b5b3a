"""Export from the library: one dialog, then the files written here, like `dgx-music export`.

The daemon never writes outside its data directory, so the TUI writes the
export itself, from each track's local file or one fetched over the socket.
Several tracks (the library's marks) go through the same dialog once: WAV/FLAC
give one file per track, a track that fails is named and the others are still
written; Ardour gives one session holding them all, or nothing if one is missing.
Kept out of app.py: it only needs the app's `call`, `local_file`, `fetch_audio`,
`notify` and workers.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dgx_music.common import daw
from dgx_music.common.client import RemoteError
from dgx_music.common.fmt import plural
from dgx_music.tui.screens import ExportScreen

if TYPE_CHECKING:
    from dgx_music.tui.app import DgxMusicApp

#: Ids named in the dialog's title before "…".
TITLE_IDS = 3


def describe(tracks: list[dict[str, Any]]) -> str:
    """The dialog title's object: "track 3-0", or "2 tracks (3-0, 5-1)"."""
    ids = [str(t.get("id")) for t in tracks]
    if len(ids) == 1:
        return f"track {ids[0]}"
    shown = ", ".join(ids[:TITLE_IDS]) + (", …" if len(ids) > TITLE_IDS else "")
    return f"{plural(len(ids), 'track')} ({shown})"


def start(app: DgxMusicApp, tracks: list[dict[str, Any]]) -> None:
    """Ask where and how, then write in a worker (the UI stays live while files are fetched)."""
    if not tracks:
        return

    def go(choice: dict[str, Any] | None) -> None:
        if choice and choice.get("dir"):
            app.run_worker(write(app, tracks, choice), group="export", exit_on_error=False)

    app.push_screen(ExportScreen(describe(tracks), str(Path.home() / "Music")), go)


def _reason(exc: Exception) -> str:
    return f"{exc.message} [{exc.code}]" if isinstance(exc, RemoteError) else str(exc)


def _failed(app: DgxMusicApp, who: str, exc: Exception) -> None:
    """One error notice for an export that wrote nothing: the daemon's code in the title when it refused."""
    if isinstance(exc, RemoteError):
        app.notify(exc.message, title=f"Export of {who} failed [{exc.code}]", severity="error", timeout=8)
    else:
        app.notify(str(exc), title=f"Export of {who} failed", severity="error", timeout=8)


async def write(app: DgxMusicApp, tracks: list[dict[str, Any]], choice: dict[str, Any]) -> None:
    dest = Path(os.path.expanduser(choice["dir"]))
    if choice["format"] == "ardour":
        await _write_session(app, tracks, choice, dest)
    elif len(tracks) == 1:
        t = tracks[0]
        tid = str(t.get("id"))
        try:  # like `dgx-music export --to` (and a multi-track export): the directory is made if missing
            await asyncio.to_thread(dest.mkdir, parents=True, exist_ok=True)
            out = await _write_file(app, t, choice, dest)
        except Exception as exc:  # ExportError, ExportExistsError, OSError, RemoteError, not connected…
            _failed(app, tid, exc)
        else:
            app.notify(f"{tid} → {out}", title="Exported", timeout=6)
    else:
        await _write_files(app, tracks, choice, dest)


async def _write_file(app: DgxMusicApp, t: dict[str, Any], choice: dict[str, Any], dest: Path) -> Path:
    from dgx_music.common.audio import export as exporter

    tid = str(t.get("id"))
    title = str(t.get("title") or t.get("prompt") or tid)
    src = app.local_file(t) or await app.fetch_audio(t)
    tags = {"title": title, "comment": t.get("prompt"), "bpm": t.get("bpm"), "key": t.get("key")}
    return await asyncio.to_thread(
        exporter.export_track, src, dest, f"{title} ({tid})", format=choice["format"],
        sample_rate=choice.get("sample_rate"), tags=tags)


async def _write_files(app: DgxMusicApp, tracks: list[dict[str, Any]], choice: dict[str, Any],
                       dest: Path) -> None:
    """One file per track; a failure is noted against its track and the rest go on (as the CLI does).
    One notice at the end, not one per track: the count written, then each failure by id."""
    n = len(tracks)
    app.notify(f"Exporting {plural(n, 'track')} to {dest}…", timeout=3)
    failures: list[tuple[str, str]] = []
    written = 0
    try:  # like `dgx-music export --to`: the directory is made if missing
        await asyncio.to_thread(dest.mkdir, parents=True, exist_ok=True)
    except OSError as exc:
        app.notify(str(exc), title=f"Export of {plural(n, 'track')} failed", severity="error", timeout=8)
        return
    for t in tracks:
        try:
            await _write_file(app, t, choice, dest)
            written += 1
        except Exception as exc:  # ExportError, ExportExistsError, OSError, RemoteError, not connected…
            failures.append((str(t.get("id")), _reason(exc)))
    lines = [f"→ {dest}"] + [f"✗ {tid}: {why}" for tid, why in failures]
    app.notify("\n".join(lines), title=f"Exported {written} of {plural(n, 'track')}",
               severity="error" if not written else "warning" if failures else "information",
               timeout=10 if failures else 6)


async def _write_session(app: DgxMusicApp, tracks: list[dict[str, Any]], choice: dict[str, Any],
                         dest: Path) -> None:
    """One Ardour session holding every track (and their stems when asked); a session missing a
    clip is not what was asked for, so any failure writes nothing."""
    from dgx_music.common.audio import ardour

    ids = [str(t.get("id")) for t in tracks]
    who = ids[0] if len(ids) == 1 else f"{len(ids)} tracks"
    try:
        plan = await daw.plan_session(lambda m, p: app.call(m, p), tracks, bool(choice.get("with_stems")))
        clips = [ardour.Clip(path=app.local_file(st.track) or await app.fetch_audio(st.track),
                             title=st.name, bpm=st.track.get("bpm")) for st in plan.tracks]
        out = await asyncio.to_thread(ardour.write_ardour_session, dest.parent, dest.name, clips)
        if plan.without_stems:
            app.notify(f"No stems were made from {', '.join(plan.without_stems)} yet (library: S); the session "
                       "has the mix only.", severity="warning", timeout=6)
    except Exception as exc:  # ExportError, ExportExistsError, OSError, RemoteError, not connected…
        _failed(app, who, exc)
    else:
        app.notify(f"{', '.join(ids) if len(ids) <= TITLE_IDS else who} → {out}", title="Exported", timeout=6)
