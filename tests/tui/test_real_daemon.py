"""The TUI against a real in-process daemon with the tiny model: the whole product, no GPU.

Covers: submit from the composer, live progress, the track appearing in the
library, search, playing it (player stubbed at the process boundary), fetching
audio over the socket, cancelling a job, a daemon restart with reconnect,
continuing a track (`+`) and following a melody file uploaded from the composer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
from textual.widgets import Input, Select

from dgx_music.tui.app import DgxMusicApp
from dgx_music.tui.player import Player

from tests.tui.fakes import stub_player_process

pytestmark = pytest.mark.slow


@pytest.fixture
def stub_player(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    return stub_player_process(monkeypatch, "pw-play")


async def wait_for(pilot: Any, cond: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    for _ in range(int(timeout / 0.05)):
        if cond():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"not reached in {timeout}s: {what}")


def job_state(app: DgxMusicApp, jid: int) -> str | None:
    return app.queue_view.jobs.get(jid, {}).get("state")


def make_app(sock: Path, tmp_path: Path) -> DgxMusicApp:
    return DgxMusicApp(sock, cache_dir=tmp_path, player=Player(use_sounddevice=False))


async def compose(pilot: Any, app: DgxMusicApp, prompt: str, duration: str) -> None:
    """Once connected, type a prompt and a duration into the composer (not yet sent)."""
    await wait_for(pilot, lambda: app.connected, 10, "connected")
    await pilot.press(*prompt)
    app.query_one("#duration", Input).value = duration


async def test_submit_progress_library_search_play(studio: Any, tmp_path: Path, stub_player: list[list[str]],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGX_MUSIC_TEST_STEP_DELAY", "0.01")
    app = make_app(studio.server.path, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await compose(pilot, app, "calm piano with rain", "1")
        await pilot.press("enter")
        await wait_for(pilot, lambda: 1 in app.queue_view.jobs, 10, "job queued")
        await pilot.press("f3")
        # live progress from the daemon's events
        await wait_for(pilot, lambda: (app.queue_view.jobs[1].get("progress") or {}).get("step", 0) > 0,
                       60, "progress")
        await wait_for(pilot, lambda: job_state(app, 1) == "done", 60, "job done")
        lib = app.library_view
        await wait_for(pilot, lambda: "1-0" in lib.tracks, 10, "track in the library")
        # search as you type
        await pilot.press("f4", "slash", *"rain")
        await wait_for(pilot, lambda: lib.last_query.get("search") == "rain" and "1-0" in lib.tracks, 10, "search")
        await pilot.press(*" violin")
        await wait_for(pilot, lambda: lib.last_query.get("search") == "rain violin" and not lib.tracks, 10,
                       "no hit")
        for _ in range(len(" violin")):
            await pilot.press("backspace")
        await wait_for(pilot, lambda: lib.last_query.get("search") == "rain" and "1-0" in lib.tracks, 10, "back")
        await pilot.press("enter")  # to the table
        await wait_for(pilot, lambda: lib.detail is not None and lib.detail.get("peaks"), 10, "detail with peaks")
        # play: same machine as the daemon, so the library file is played in place
        await pilot.press("space")
        await wait_for(pilot, lambda: bool(stub_player), 10, "player started")
        track = lib.detail
        assert stub_player == [["/usr/bin/pw-play", str(studio.data_dir / track["path"])]]
        await pilot.press("space")
        assert not app.player.playing
        # a forwarded socket: the file is streamed over the protocol into the cache
        monkeypatch.setattr(app, "local_file", lambda t: None)
        await pilot.press("space")
        await wait_for(pilot, lambda: len(stub_player) == 2, 10, "player started again")
        fetched = Path(stub_player[1][1])
        assert fetched.parent == tmp_path / "previews"
        assert fetched.read_bytes() == (studio.data_dir / track["path"]).read_bytes()
        await pilot.press("space")  # stops the fetched copy too
        assert not app.player.playing and app.status_bar.playing is None


async def test_cancel_jobs(studio: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancel a queued job (at once) and a running one (the daemon stops it at a decode step)."""
    monkeypatch.setenv("DGX_MUSIC_TEST_STEP_DELAY", "0.02")
    app = make_app(studio.server.path, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.connected, 10, "connected")
        await pilot.press(*"long ambient drone")
        app.query_one("#duration", Input).value = "8"
        await pilot.press("enter")
        await wait_for(pilot, lambda: 1 in app.queue_view.jobs, 10, "first queued")
        await pilot.press("enter")
        await wait_for(pilot, lambda: 2 in app.queue_view.jobs, 10, "second queued")
        await pilot.press("f3")
        await wait_for(pilot, lambda: (app.queue_view.jobs[1].get("progress") or {}).get("step", 0) > 0, 60,
                       "first running")
        await pilot.press("down")
        assert app.queue_view.selected_id() == 2 and job_state(app, 2) == "queued"
        await pilot.press("c")
        await wait_for(pilot, lambda: job_state(app, 2) == "cancelled", 10, "queued job cancelled")
        # the cancelled job sorts below the running one; the cursor follows it, so go back up
        await pilot.press("home", "ctrl+home")
        assert app.queue_view.selected_id() == 1
        await pilot.press("c")
        await wait_for(pilot, lambda: job_state(app, 1) == "cancelled" or
                       app.queue_view.jobs[1].get("cancel_requested"), 10, "cancel requested")
        await wait_for(pilot, lambda: job_state(app, 1) in ("cancelled", "done"), 60, "running job ended")
        assert job_state(app, 1) == "cancelled"


async def test_daemon_restart_and_reconnect(daemon_factory: Callable[..., Any], tmp_path: Path) -> None:
    d = await daemon_factory()
    sock = d.server.path
    app = DgxMusicApp(sock, cache_dir=tmp_path, retry_delays=(0.1,))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.connected, 10, "connected")
        await d.close()
        await wait_for(pilot, lambda: not app.connected, 10, "disconnected")
        banner = str(app.query_one("#banner").render())
        assert "disconnected" in banner and "dgx-music daemon" in banner and "retrying" in banner
        await pilot.pause(0.3)  # a few failed attempts while nothing listens
        d2 = await daemon_factory()
        assert d2.server.path == sock
        await wait_for(pilot, lambda: app.connected, 10, "reconnected")
        assert not app.query_one("#banner").display
        assert any("Reconnected" in n.message for n in app._notifications)


async def test_continue_a_track_from_the_library(studio: Any, tmp_path: Path) -> None:
    """`+` on a library track, then ctrl+g: the daemon makes a longer track that starts with it."""
    app = make_app(studio.server.path, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await compose(pilot, app, "lofi keys", "2")
        await pilot.press("enter")
        lib = app.library_view
        await wait_for(pilot, lambda: "1-0" in lib.tracks, 60, "source track in the library")
        await pilot.press("f4")
        await wait_for(pilot, lambda: lib.detail is not None and lib.detail.get("id") == "1-0", 10, "selected")
        await pilot.press("plus")
        await wait_for(pilot, lambda: app.compose_view.extending == "1-0", 5, "composer continues 1-0")
        app.query_one("#duration", Input).value = "1.5"
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: "2-0" in lib.tracks, 60, "continuation in the library")
        t = lib.tracks["2-0"]
        assert abs(t["duration"] - 3.5) < 0.05 and t["params"]["extend"] == "1-0"
        assert t["prompt"] == "lofi keys"


async def test_follow_a_hummed_file(daemon_factory: Callable[..., Any], tiny_melody_model: Path,
                                    tmp_path: Path) -> None:
    """A melody daemon; the composer's Melody field names a WAV here, which is uploaded."""
    import numpy as np
    import soundfile as sf

    hum = tmp_path / "hum.wav"
    t = np.arange(48000 * 2) / 48000
    sf.write(hum, 0.3 * np.sin(2 * np.pi * 392 * t), 48000)
    d = await daemon_factory(engine__model=str(tiny_melody_model))
    app = make_app(d.server.path, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await compose(pilot, app, "brass band", "1")
        app.query_one("#melody", Input).value = str(hum)
        await pilot.press("ctrl+g")
        lib = app.library_view
        await wait_for(pilot, lambda: "1-0" in lib.tracks, 60, "track in the library")
        assert lib.tracks["1-0"]["params"]["melody_source"] == "file hum.wav"
        assert len(list((d.data_dir / "melodies").glob("*.wav"))) == 1


async def test_a_song_with_lyrics_from_the_composer_found_by_its_lyrics(
        daemon_factory: Callable[..., Any], tiny_acestep: Path, tmp_path: Path) -> None:
    """The daemon's model is a tiny ACE-Step pipeline: the composer offers the song fields, the song
    is generated through the real loader and worker, and the library finds it by a word of its lyrics."""
    from textual.widgets import TextArea

    d = await daemon_factory(engine__model=str(tiny_acestep))
    app = make_app(d.server.path, tmp_path)
    async with app.run_test(size=(120, 50)) as pilot:
        await wait_for(pilot, lambda: app.connected, 10, "connected")
        lyrics = app.query_one("#lyrics", TextArea)
        await wait_for(pilot, lambda: lyrics.is_on_screen, 10, "the daemon's ACE-Step model gives the song fields")
        await pilot.click("#prompt")
        await pilot.press(*"dream pop, female vocal")
        app.query_one("#duration", Input).value = "10"
        app.query_one("#bpm", Input).value = "96"
        app.query_one("#key", Input).value = "A minor"
        lyrics.text = "[verse]\nlanterns over harbour water\n[chorus]\nhold on"
        await pilot.click("#prompt")
        await pilot.press("enter")
        await wait_for(pilot, lambda: 1 in app.queue_view.jobs, 20, "job queued")
        await wait_for(pilot, lambda: job_state(app, 1) == "done", 240, "song done")
        lib = app.library_view
        await pilot.press("f4", "slash", *"harbour")
        await wait_for(pilot, lambda: lib.last_query.get("search") == "harbour" and "1-0" in lib.tracks, 20,
                       "found by a word of its lyrics")
        await pilot.press("enter")
        await wait_for(pilot, lambda: lib.detail is not None and lib.detail.get("id") == "1-0", 10, "detail")
        assert lib.detail["lyrics"].startswith("[verse]\nlanterns over harbour water")
        assert lib.detail["family"] == "ace-step" and lib.detail["sample_rate"] == 48000


async def test_repaint_stems_family_and_ardour_export_with_stems_from_the_library(
        daemon_factory: Callable[..., Any], tiny_acestep: Path, tmp_path: Path) -> None:
    """The library's operations against a real daemon with the tiny ACE-Step pipeline: a repaint span set
    with the keyboard, stems, the family view jumping to a stem, and the export dialog's Ardour session
    with the stems (read back with soundfile)."""
    import soundfile as sf
    from textual.widgets import Checkbox, OptionList

    from dgx_music.common.client import Client
    from dgx_music.tui.ops_screens import LineageScreen, RepaintScreen, StemsScreen
    from dgx_music.tui.screens import ExportScreen
    from tests.operations.test_operation_jobs import run, tone

    d = await daemon_factory(engine__model=str(tiny_acestep))
    async with await Client.connect(d.server.path) as c:  # a 3 s library track to work on
        await c.subscribe("job")
        await run(c, "op.stems", {"source_audio": tone(3.0), "source_name": "take.flac", "parts": ["vocals"],
                                  "steps": 1, "method": "generate"})
    app = make_app(d.server.path, tmp_path)
    async with app.run_test(size=(120, 45)) as pilot:
        await wait_for(pilot, lambda: app.connected, 10, "connected")
        lib = app.library_view
        await pilot.press("f4")
        await wait_for(pilot, lambda: lib.detail is not None and lib.detail["id"] == "1-0", 20, "1-0 selected")
        lib.table.focus()
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, RepaintScreen), 10, "repaint form")
        await pilot.press("right", "right", "i", "right", "right", "right", "o", "tab", "enter")  # 1.0 .. 2.5 s
        await wait_for(pilot, lambda: job_state(app, 2) == "done", 240, "repaint done")
        job = await app.call("job.get", {"id": 2})
        assert (job["params"]["start"], job["params"]["end"]) == (1.0, 2.5)
        lib.table.focus()
        await pilot.press("S")
        await wait_for(pilot, lambda: isinstance(app.screen, StemsScreen), 10, "stems form")
        app.screen.query_one("#op-method", Select).value = "generate"  # ACE-Step's extract (no separator here)
        app.screen.query_one("#part-vocals", Checkbox).value = False  # drums and bass
        await pilot.press("enter")
        await wait_for(pilot, lambda: job_state(app, 3) == "done", 240, "stems done")
        await wait_for(pilot, lambda: "3-1" in lib.tracks, 20, "stems in the library")
        # The family of 1-0: its upload source, the repaint and the two stems; jump to the bass stem.
        lib.table.move_cursor(row=lib.table.get_row_index("1-0"))
        lib.table.focus()
        await wait_for(pilot, lambda: lib.selected_id() == "1-0", 10, "1-0 selected again")
        await pilot.press("L")
        await wait_for(pilot, lambda: isinstance(app.screen, LineageScreen), 10, "family view")
        options = app.screen.query_one(OptionList)
        text = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert "uploaded file take.flac" in text[0] and "(stems vocals)" in text[0]
        assert ["2-0  repaint" in text[1], "3-0  stems drums" in text[2], "3-1  stems bass" in text[3]] == [True] * 3
        assert options.has_focus and options.highlighted == 1  # the source row (an upload) cannot be gone to
        await pilot.press("down", "down", "enter")
        await wait_for(pilot, lambda: lib.selected_id() == "3-1", 10, "jumped to the bass stem")
        # Export 1-0 as an Ardour session with its stems, from the export dialog.
        lib.table.move_cursor(row=lib.table.get_row_index("1-0"))
        await wait_for(pilot, lambda: lib.selected_id() == "1-0", 10, "1-0 selected")
        lib.table.focus()
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen), 10, "export dialog")
        app.screen.query_one("#export-dir", Input).value = str(tmp_path / "sessions" / "take")
        app.screen.query_one("#export-format", Select).value = "ardour"
        app.screen.query_one("#export-stems", Checkbox).value = True
        await pilot.click("#export-go")
        session = tmp_path / "sessions" / "take"
        await wait_for(pilot, lambda: (session / "take.ardour").is_file(), 30, "the session written")
        files = sorted((session / "interchange" / "take" / "audiofiles").iterdir())
        assert [f.name for f in files] == ["01-mix.wav", "02-drums.wav", "03-bass.wav"]
        assert {sf.info(str(f)).frames for f in files} == {3 * 48000}
        assert all(name in (session / "take.ardour").read_text() for name in ('name="mix"', 'name="drums"',
                                                                               'name="bass"'))
