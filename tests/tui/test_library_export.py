"""Exporting from the library against the scripted daemon: marks, one dialog, N files written here."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from textual.widgets import Input, Label

from dgx_music.tui.library import MARK
from dgx_music.tui.screens import ExportScreen
from tests.tui.fakes import FakeDaemon
from tests.tui.test_views import make_app, open_library, wait_for

RATE = 32000


def frames_of(tid: str) -> int:
    """A different length per track, so each exported file can be told from the others."""
    job, idx = (int(x) for x in tid.split("-"))
    return 1600 * job + 400 * idx + 800


def fake_with_audio() -> FakeDaemon:
    """FakeDaemon whose track.audio serves a real WAV per track."""
    fake = FakeDaemon()
    for t in fake.tracks:
        buf = io.BytesIO()
        n = frames_of(t["id"])
        sf.write(buf, 0.2 * np.sin(np.arange(n) / 7.0), RATE, format="WAV", subtype="PCM_16")
        fake.audio[t["id"]] = buf.getvalue()
    return fake


def exported(out: Path) -> dict[str, sf._SoundFileInfo]:
    """Track id -> info of the file written for it (file names end in "(<id>).wav")."""
    return {f.stem.rsplit("(", 1)[1].rstrip(")"): sf.info(str(f)) for f in sorted(out.glob("*.wav"))}


def notices(app: Any) -> list[str]:
    return [f"{n.title or ''}: {n.message}" for n in app._notifications]


def marks_shown(app: Any) -> set[str]:
    """Ids whose title cell carries the mark, as the table draws it."""
    table = app.library_view.table
    return {str(k.value) for k in table.rows if str(table.get_cell(k, "title")).startswith(MARK)}


async def export_to(pilot: Any, app: Any, out: Path) -> str:
    """Press x, fill the dialog's directory, confirm; return the dialog's title."""
    await pilot.press("x")
    await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
    title = str(app.screen.query_one(".modal-title", Label).render())
    app.screen.query_one("#export-dir", Input).value = str(out)
    await pilot.click("#export-go")
    await wait_for(pilot, lambda: not isinstance(app.screen, ExportScreen))
    return title


async def test_export_the_marked_tracks_through_one_dialog(tmp_path: Path) -> None:
    fake = fake_with_audio()
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        lib = app.library_view
        first = await open_library(pilot, app)
        assert first == "30-1"
        await pilot.press("v", "v")  # marks 30-1, steps down, marks 30-0
        assert list(lib.marked) == ["30-1", "30-0"]
        assert lib.selected_id() == "29-1"
        assert marks_shown(app) == {"30-1", "30-0"}
        assert "2 marked" in str(app.query_one("#lib-count", Label).render())
        # Marks outlive a refresh that still lists the tracks, and one that hides them.
        await pilot.press("slash", *"synthwave")
        await wait_for(pilot, lambda: lib.last_query.get("search") == "synthwave" and not lib._inflight)
        assert marks_shown(app) == {"30-1", "30-0"}
        lib.query_one("#search", Input).value = "techno"
        await wait_for(pilot, lambda: lib.last_query.get("search") == "techno" and not lib._inflight)
        assert marks_shown(app) == set() and "2 marked" in str(app.query_one("#lib-count", Label).render())
        lib.query_one("#search", Input).value = ""
        await wait_for(pilot, lambda: lib.last_query.get("search") is None and not lib._inflight)
        assert marks_shown(app) == {"30-1", "30-0"}
        lib.table.focus()
        await pilot.pause()

        out = tmp_path / "out" / "marked"  # missing: made, as `dgx-music export --to` does
        title = await export_to(pilot, app, out)
        assert title == "Export 2 tracks (30-1, 30-0)"
        await wait_for(pilot, lambda: any("Exported 2 of 2 tracks" in n for n in notices(app)))
        files = exported(out)
        assert sorted(files) == ["30-0", "30-1"]
        for tid, info in files.items():
            assert (info.frames, info.samplerate) == (frames_of(tid), RATE)
        assert len(fake.methods_called("track.audio")) >= 2

        # Unmark all clears every mark, on the rows and in the count.
        await pilot.press("V")
        await pilot.pause()
        assert lib.marked == {} and marks_shown(app) == set()
        assert "marked" not in str(app.query_one("#lib-count", Label).render())


async def test_without_marks_x_exports_the_cursor_track_only(tmp_path: Path) -> None:
    fake = fake_with_audio()
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        lib = app.library_view
        await open_library(pilot, app)
        await pilot.press("v", "v", "V")  # marked two, then unmarked all: back to the cursor's track
        assert lib.marked == {} and lib.selected_id() == "29-1"
        out = tmp_path / "one" / "track"  # missing: made, as for several tracks and `dgx-music export --to`
        assert await export_to(pilot, app, out) == "Export track 29-1"
        await wait_for(pilot, lambda: any(n.startswith("Exported: 29-1 → ") for n in notices(app)))
        files = exported(out)
        assert list(files) == ["29-1"] and files["29-1"].frames == frames_of("29-1")


async def test_a_deleted_marked_track_is_not_exported_and_failures_are_named(tmp_path: Path) -> None:
    fake = fake_with_audio()
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        lib = app.library_view
        await open_library(pilot, app)
        await pilot.press("v", "v", "v")  # 30-1, 30-0, 29-1
        await pilot.press("up")  # back on 29-1, which is marked: delete it here
        assert lib.selected_id() == "29-1"
        await pilot.press("delete")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen")
        await pilot.press("y")
        await wait_for(pilot, lambda: "29-1" not in lib.tracks)
        assert list(lib.marked) == ["30-1", "30-0"] and marks_shown(app) == {"30-1", "30-0"}
        # Another client deletes a marked track: the daemon's event drops the mark too.
        fake.push("track.deleted", {"id": "30-0"})
        await wait_for(pilot, lambda: list(lib.marked) == ["30-1"])
        # A marked track whose audio the daemon refuses is named in the notice; the rest is written.
        await pilot.press("home")
        await pilot.press("down", "down")
        tid = lib.selected_id()
        await pilot.press("v")
        assert list(lib.marked) == ["30-1", tid]
        del fake.audio[tid]
        fake.tracks.remove(fake.track(tid))  # gone from the daemon without an event (track.audio: not_found)
        out = tmp_path / "out"
        assert await export_to(pilot, app, out) == f"Export 2 tracks (30-1, {tid})"
        await wait_for(pilot, lambda: any("Exported 1 of 2 tracks" in n for n in notices(app)))
        note = next(n for n in notices(app) if "Exported 1 of 2 tracks" in n)
        assert f"✗ {tid}: no track" in note
        assert list(exported(out)) == ["30-1"]
