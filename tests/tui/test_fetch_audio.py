"""Fetching a track's audio over the socket keeps the UI responsive, and never reads a file the
daemon's stored path puts outside its data directory."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from dgx_music.tui.player import Player
from dgx_music.tui.widgets import Waveform
from tests.tui.fakes import FakeDaemon, stub_player_process
from tests.tui.test_views import make_app, wait_for


async def test_fetching_audio_does_not_freeze_the_ui(tmp_path: Path, monkeypatch: Any) -> None:
    """The preview's .part file is a FIFO: opening it blocks until a reader comes. The reader
    comes only once the test (on the UI's event loop) has run while the fetch was under way; if
    the file were opened on the event loop, the loop could not run and the reader would give up
    waiting (5 s) before unblocking it."""
    started = stub_player_process(monkeypatch, "ffplay")
    fake = FakeDaemon()
    app = make_app(fake, tmp_path, player=Player(use_sounddevice=False))
    loop_ran = threading.Event()
    seen: dict[str, Any] = {}

    def reader(fifo: Path) -> None:
        seen["loop_ran_first"] = loop_ran.wait(5.0)
        with open(fifo, "rb") as f:
            seen["data"] = f.read()

    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.connected and app.library_view.queries > 0)
        await pilot.press("f4")
        await wait_for(pilot, lambda: app.library_view.detail is not None)
        tid = app.library_view.detail["id"]
        (tmp_path / "previews").mkdir()
        fifo = tmp_path / "previews" / f"{tid}-1028.wav.part"  # the fake's audio is 1028 bytes
        os.mkfifo(fifo)
        th = threading.Thread(target=reader, args=(fifo,), daemon=True)
        th.start()
        await pilot.press("space")
        await wait_for(pilot, lambda: "fetching" in str(app.status_bar.playing or "") or bool(started))
        await pilot.pause(0.05)  # the UI keeps drawing while the file is opened and written
        loop_ran.set()
        await wait_for(pilot, lambda: bool(started), 10)
        th.join(5)
    assert seen["loop_ran_first"] is True
    assert seen["data"].startswith(b"RIFF") and len(seen["data"]) == 1028


async def test_a_stored_path_outside_the_data_dir_is_not_played(tmp_path: Path, monkeypatch: Any) -> None:
    started = stub_player_process(monkeypatch, "ffplay")
    fake = FakeDaemon()
    outside = tmp_path / "secret.wav"
    outside.write_bytes(b"RIFF secret")
    app = make_app(fake, tmp_path, player=Player(use_sounddevice=False))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.connected and app.library_view.queries > 0)
        await pilot.press("f4")
        await wait_for(pilot, lambda: app.library_view.detail is not None)
        tid = app.library_view.detail["id"]
        fake.track(tid)["path"] = app.library_view.detail["path"] = str(outside)
        await pilot.press("space")
        await wait_for(pilot, lambda: any(f"Cannot play {tid}" in (n.title or "") for n in app._notifications))
        note = next(n for n in app._notifications if f"Cannot play {tid}" in (n.title or ""))
        assert "is not inside" in str(note.message) and "not reading it" in str(note.message)
        assert not started and not app.player.playing
        assert fake.methods_called("track.audio") == []


async def test_the_player_keeps_ticking_under_a_modal(tmp_path: Path, monkeypatch: Any) -> None:
    """While a track plays, the play position is drawn on every tick; with the help screen (or a
    form) on top, the tick must find the library's pane, not fail on the modal's DOM."""
    started = stub_player_process(monkeypatch, "ffplay")
    fake = FakeDaemon()
    app = make_app(fake, tmp_path, player=Player(use_sounddevice=False))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.connected and app.library_view.queries > 0)
        await pilot.press("f4")
        await wait_for(pilot, lambda: app.library_view.detail is not None)
        await pilot.press("space")
        await wait_for(pilot, lambda: bool(started) and app.player.playing, 10)
        await pilot.press("f1")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "HelpScreen")
        waves = list(app.library_view.query(Waveform))
        assert waves, "the library's detail pane draws a waveform"
        for wave in waves:
            wave.position = None
        app._tick_player()  # what the timer does (looked up on the active screen: NoMatches, no position)
        assert app.player.playing
        # The tick found the library's pane under the modal and drew the play position on it.
        assert all(isinstance(w.position, float) and 0.0 <= w.position <= 1.0 for w in waves), \
            [w.position for w in waves]
