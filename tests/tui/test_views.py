"""Pilot tests against the scripted daemon (tests/tui/fakes.py): fast, exact, deterministic."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from textual.message import Message
from textual.widgets import Input

from dgx_music.tui.app import DgxMusicApp
from dgx_music.tui.messages import JobProgress
from dgx_music.tui.player import Player
from tests.tui.fakes import FakeDaemon, stub_player_process


def make_app(fake: FakeDaemon, tmp_path: Path, **kw: Any) -> DgxMusicApp:
    return DgxMusicApp("/nonexistent/daemon.sock", connect=fake.connect, poll_model=False, cache_dir=tmp_path, **kw)


async def wait_for(pilot: Any, cond: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if cond():
            return
        await pilot.pause(0.02)
    raise AssertionError("condition not reached in time")


async def test_inline_validation_blocks_bad_values(tmp_path: Path) -> None:
    fake = FakeDaemon()
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.connected)
        await pilot.press(*"piano")
        app.query_one("#duration", Input).value = "450"
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert "duration must be between 0.5 s and 300 s" in str(app.query_one("#form-error").render())
        assert app.query_one("#duration").has_class("-invalid")
        assert fake.methods_called("job.submit") == []
        # An advanced field: the panel opens to show it.
        app.query_one("#duration", Input).value = "4"
        app.query_one("#top-p", Input).value = "1.5"
        await pilot.press("ctrl+g")
        await pilot.pause(0.1)
        assert not app.query_one("#advanced").collapsed
        assert "top-p must be between 0 and 1" in str(app.query_one("#form-error").render())
        assert fake.methods_called("job.submit") == []
        app.query_one("#top-p", Input).value = "0.9"
        app.query_one("#seed-lock").value = True
        app.query_one("#seed", Input).value = "42"
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: bool(fake.methods_called("job.submit")))
        sent = fake.methods_called("job.submit")[0]
        assert sent == {"prompt": "piano", "duration": 4.0, "count": 1, "seed": 42, "temperature": 1.0,
                        "top_k": 250, "top_p": 0.9, "cfg": 3.0}
        await wait_for(pilot, lambda: 101 in app.queue_view.jobs)


async def test_ctrl_a_opens_advanced_while_typing_the_prompt(tmp_path: Path) -> None:
    """The footer offers ctrl+a; the focused prompt Input must not swallow it as "home"."""
    app = make_app(FakeDaemon(), tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.connected)
        assert app.focused is app.query_one("#prompt") and app.query_one("#advanced").collapsed
        await pilot.press("ctrl+a")
        await pilot.pause(0.1)
        assert not app.query_one("#advanced").collapsed


async def test_prompt_history_recall(tmp_path: Path) -> None:
    fake = FakeDaemon()
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.connected and app.library_view.queries > 0)
        await pilot.pause(0.1)
        prompt = app.query_one("#prompt", Input)
        await pilot.press("up")
        assert prompt.value == fake.jobs[0]["prompt"]
        await pilot.press("up")
        assert prompt.value == fake.jobs[1]["prompt"]
        await pilot.press("down", "down")
        assert prompt.value == ""


async def test_progress_is_coalesced(tmp_path: Path) -> None:
    """A burst of progress events for one job costs one update, not one per event."""
    fake = FakeDaemon()
    seen: list[Message] = []
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(80, 24), message_hook=seen.append) as pilot:
        await wait_for(pilot, lambda: app.connected)
        for step in range(1, 201):
            app.post_message(JobProgress({"id": 12, "step": step, "total": 200, "elapsed": step / 10, "eta": 1.0}))
        await wait_for(pilot, lambda: (app.queue_view.jobs[12].get("progress") or {}).get("step") == 200)
        handled = [m for m in seen if isinstance(m, JobProgress)]
        assert len(handled) < 50, len(handled)  # replaced while queued
        # and events from the daemon reach the table
        fake.push("job.progress", {"id": 12, "step": 390, "total": 400, "elapsed": 9.0, "eta": 0.5})
        await wait_for(pilot, lambda: app.queue_view.jobs[12]["progress"]["step"] == 390)
        row = app.queue_view.table.get_row("12")
        assert "390/400" in [str(c) for c in row]


async def test_queue_actions(tmp_path: Path) -> None:
    fake = FakeDaemon()
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.connected)
        await pilot.press("f3")
        await pilot.pause(0.1)
        await pilot.press("down")  # job 13, queued
        await pilot.press("K")
        await wait_for(pilot, lambda: bool(fake.methods_called("job.move")))
        assert fake.methods_called("job.move") == [{"id": 13, "to": "up"}]
        await pilot.press("c")
        await wait_for(pilot, lambda: bool(fake.methods_called("job.cancel")))
        assert fake.methods_called("job.cancel") == [{"id": 13}]
        await wait_for(pilot, lambda: app.queue_view.jobs[13]["state"] == "cancelled")
        assert app.queue_view.selected_id() == 13  # the cursor stays on the job it acted on
        await pilot.press("r")  # retry the cancelled job: it is queued again
        await wait_for(pilot, lambda: bool(fake.methods_called("job.retry")))
        assert fake.methods_called("job.retry") == [{"id": 13}]
        await wait_for(pilot, lambda: app.queue_view.jobs[13]["state"] == "queued")
        assert "queued" in [str(c) for c in app.queue_view.table.get_row("13")]
        await pilot.press("r")  # a queued job cannot be retried: a warning, nothing sent
        await wait_for(pilot, lambda: any("only failed or cancelled jobs can be retried" in str(n.message)
                                          for n in app._notifications))
        assert fake.methods_called("job.retry") == [{"id": 13}]


async def test_the_queue_names_the_host_that_runs_a_job(tmp_path: Path) -> None:
    """A shared queue: job.started names the box that claimed the job; the queue shows it while
    the job runs (one box sends no host and shows none)."""
    fake = FakeDaemon()
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.connected and 13 in app.queue_view.jobs)
        fake.push("job.started", {"id": 13, "attempt": 1, "host": "spark-2"})
        await wait_for(pilot, lambda: app.queue_view.jobs[13]["state"] == "running")
        await wait_for(pilot, lambda: str(app.queue_view.table.get_row("13")[1]).startswith("[spark-2] "))
        fake.push("job.started", {"id": 14, "attempt": 1})
        await wait_for(pilot, lambda: app.queue_view.jobs[14]["state"] == "running")
        assert not str(app.queue_view.table.get_row("14")[1]).startswith("[")


async def test_pruned_history_leaves_the_queue_view(tmp_path: Path) -> None:
    fake = FakeDaemon()
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.connected and 9 in app.queue_view.jobs)
        fake.push("job.pruned", {"ids": [9, 10, 999], "removed": 3, "kept_with_tracks": 1})
        await wait_for(pilot, lambda: 9 not in app.queue_view.jobs)
        assert 10 not in app.queue_view.jobs and {11, 12, 13, 14} <= set(app.queue_view.jobs)
        assert app.queue_view.table.row_count == len(app.queue_view.jobs)


async def test_library_shows_a_bounded_total_as_at_least(tmp_path: Path) -> None:
    """Past the daemon's counting bound (total_exact false) the count reads "200+ tracks";
    an exact total reads as before."""
    fake = FakeDaemon(n_tracks=450)
    fake.total_bound = 200
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.connected and app.library_view.queries > 0)
        count = app.library_view.query_one("#lib-count")
        await wait_for(pilot, lambda: "200+ tracks" in str(count.render()))
        assert "450" not in str(count.render())
        fake.total_bound = None
        app.library_view.request_query()
        await wait_for(pilot, lambda: "450 tracks" in str(count.render()))


async def test_library_pages_instead_of_loading_everything(tmp_path: Path) -> None:
    fake = FakeDaemon(n_tracks=450)
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.connected and app.library_view.queries > 0)
        lib = app.library_view
        assert len(lib.tracks) == 100 and lib.total == 450
        await pilot.press("f4")
        await pilot.pause(0.1)
        lib.table.scroll_end(animate=False)  # what the mouse wheel does
        await wait_for(pilot, lambda: len(lib.tracks) == 200)
        await pilot.press("ctrl+end")  # the keyboard
        await wait_for(pilot, lambda: len(lib.tracks) == 300)
        calls = fake.methods_called("track.list")
        assert all(c["limit"] == 100 for c in calls)


async def test_library_search_filters_sort(tmp_path: Path) -> None:
    fake = FakeDaemon()
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.connected and app.library_view.queries > 0)
        lib = app.library_view
        await pilot.press("f4", "slash", *"techno")
        await wait_for(pilot, lambda: lib.last_query.get("search") == "techno")
        assert lib.tracks and all("techno" in t["prompt"] for t in lib.tracks.values())
        assert lib.last_query.get("sort") == "relevance"  # best match first while searching
        await pilot.press("escape")
        lib.table.focus()
        await pilot.press("s")  # relevance -> created
        await wait_for(pilot, lambda: lib.last_query.get("sort") == "created")
        await pilot.press("s")  # created -> title
        await wait_for(pilot, lambda: lib.last_query.get("sort") == "title")
        await pilot.press("o")
        await wait_for(pilot, lambda: lib.last_query.get("order") == "asc")
        lib.query_one("#f-fav").value = True
        await wait_for(pilot, lambda: lib.last_query.get("favorite") is True)
        assert all(t["favorite"] for t in lib.tracks.values())


async def test_library_sorts_by_relevance_while_searching(tmp_path: Path) -> None:
    fake = FakeDaemon()
    fake.tracks[3]["title"] = "Drums at dawn"  # 2-1: old, the word in its title
    # newer tracks have "drums" only in their notes (29-0 is the newest of them)
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.connected and app.library_view.queries > 0)
        lib = app.library_view
        count = lib.query_one("#lib-count")

        def first() -> str:
            return str(lib.table.coordinate_to_cell_key((0, 0)).row_key.value)

        async def sorted_by(sort: str, search: str | None = None) -> None:
            await wait_for(pilot, lambda: lib.last_query.get("sort") == sort
                           and lib.last_query.get("search") == search and not lib._inflight)

        await pilot.press("f4")
        lib.table.focus()
        await pilot.press("s", "s", "s")  # the list's own sort: created -> title -> duration -> bpm
        await sorted_by("bpm")
        await pilot.press("slash", *"drums")
        await sorted_by("relevance", "drums")
        assert lib.last_query["order"] == "desc" and first() == "2-1"
        assert "relevance ↓" in str(count.render())
        lib.table.focus()
        await pilot.press("s")  # relevance -> created
        await sorted_by("created", "drums")
        assert first() == "29-0"
        await pilot.press("s", "s", "s", "s", "s")  # ... title, duration, bpm, rating -> relevance again
        await sorted_by("relevance", "drums")
        assert first() == "2-1"
        # Cleared: the list's sort comes back, and relevance is not offered without a search.
        lib.query_one("#search", Input).value = ""
        await sorted_by("bpm")
        seen = []
        for _ in range(6):
            await pilot.press("s")
            await wait_for(pilot, lambda: lib.last_query.get("sort") != (seen or ["bpm"])[-1])
            seen.append(lib.last_query["sort"])
        assert seen == ["rating", "created", "title", "duration", "bpm", "rating"]
        assert all(p.get("sort") != "relevance" for p in fake.methods_called("track.list") if not p.get("search"))
        # A search without a letter or digit searches nothing: no relevance either.
        lib.query_one("#search", Input).value = "--"
        await wait_for(pilot, lambda: lib.last_query.get("search") == "--" and not lib._inflight)
        assert lib.last_query["sort"] == "rating"


async def test_track_actions(tmp_path: Path) -> None:
    fake = FakeDaemon()
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.connected and app.library_view.queries > 0)
        lib = app.library_view
        await pilot.press("f4")
        await wait_for(pilot, lambda: lib.detail is not None)
        tid = lib.selected_id()
        assert tid == "30-1"
        await pilot.press("f")
        await wait_for(pilot, lambda: bool(fake.methods_called("track.update")))
        assert fake.methods_called("track.update")[-1] == {"id": tid, "favorite": True}
        await pilot.press("3")
        await wait_for(pilot, lambda: fake.methods_called("track.update")[-1].get("rating") == 3)
        await pilot.press("e")
        await pilot.pause(0.1)
        inp = app.screen.query_one("#prompt-input", Input)
        inp.value = "My take"
        await pilot.press("enter")
        await wait_for(pilot, lambda: fake.methods_called("track.update")[-1].get("title") == "My take")
        await pilot.press("t")
        await pilot.pause(0.1)
        app.screen.query_one("#prompt-input", Input).value = "keeper night"
        await pilot.press("enter")
        await wait_for(pilot, lambda: "tags_add" in fake.methods_called("track.update")[-1])
        # remix: composer prefilled, new seed
        await pilot.press("m")
        await pilot.pause(0.1)
        assert app.query_one("#prompt", Input).value == fake.track(tid)["prompt"]
        assert app.query_one("#seed", Input).value == ""
        # delete asks first
        await pilot.press("f4")
        await pilot.pause(0.1)
        await pilot.press("delete")
        await pilot.pause(0.1)
        await pilot.press("n")
        await pilot.pause(0.1)
        assert fake.methods_called("track.delete") == []
        await pilot.press("delete")
        await pilot.pause(0.1)
        await pilot.press("y")
        await wait_for(pilot, lambda: fake.methods_called("track.delete") == [{"id": tid}])
        await wait_for(pilot, lambda: tid not in lib.tracks)


async def open_library(pilot: Any, app: DgxMusicApp) -> str:
    """Connect, switch to the Library and wait for a selected track; return its id."""
    await wait_for(pilot, lambda: app.connected and app.library_view.queries > 0)
    await pilot.press("f4")
    await wait_for(pilot, lambda: app.library_view.detail is not None)
    return str(app.library_view.selected_id())


async def test_use_a_track_as_the_melody_of_the_next_job(tmp_path: Path) -> None:
    fake = FakeDaemon()
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        tid = await open_library(pilot, app)
        await pilot.press("u")
        await pilot.pause(0.1)
        assert app.query_one("#melody", Input).value == tid
        assert app.query_one("#model").value == "melody"  # a melody needs a melody model: picked for you
        await pilot.press(*"hummed tune as a string quartet")
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: bool(fake.methods_called("job.submit")))
        sent = fake.methods_called("job.submit")[0]
        assert sent["melody"] == tid and sent["model"] == "melody"
        assert sent["prompt"] == "hummed tune as a string quartet"
        # Neither a track id nor a file here: caught in the form, before anything is sent.
        app.query_one("#melody", Input).value = str(tmp_path / "no-such-hum.wav")
        await pilot.press("ctrl+g")
        await pilot.pause(0.1)
        assert "neither a library track id" in str(app.query_one("#form-error").render())
        assert len(fake.methods_called("job.submit")) == 1
        # A file here is decoded, reduced to 30 s of 32 kHz mono FLAC and uploaded with its name.
        import numpy as np
        import soundfile as sf

        hum = tmp_path / "hum.wav"
        t = np.arange(44100 * 3) / 44100
        sf.write(hum, np.stack([0.3 * np.sin(2 * np.pi * 440 * t)] * 2, axis=1), 44100)
        app.query_one("#melody", Input).value = str(hum)
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: len(fake.methods_called("job.submit")) == 2)
        sent = fake.methods_called("job.submit")[1]
        assert sent["melody_name"] == "hum.wav" and "melody" not in sent and "melody_file" not in sent
        info = sf.info(__import__("io").BytesIO(sent["melody_audio"]))
        assert (info.format, info.samplerate, info.channels) == ("FLAC", 32000, 1)
        assert abs(info.duration - 3.0) < 0.01
        # An audio file the daemon could not use is refused here too, naming the field.
        bad = tmp_path / "notes.txt"
        bad.write_text("not audio")
        app.query_one("#melody", Input).value = str(bad)
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: "cannot decode" in str(app.query_one("#form-error").render()))
        assert len(fake.methods_called("job.submit")) == 2


async def test_extend_a_track_from_the_library(tmp_path: Path) -> None:
    fake = FakeDaemon()
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        track = fake.track(await open_library(pilot, app))
        await pilot.press("plus")
        await pilot.pause(0.1)
        note = app.query_one("#extend-note")
        assert note.display and f"Continues track {track['id']}" in str(note.render())
        assert app.query_one("#duration", Input).value == "30"  # seconds to add
        assert app.query_one("#prompt", Input).value == track["prompt"]
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: bool(fake.methods_called("job.submit")))
        sent = fake.methods_called("job.submit")[0]
        assert sent["extend"] == track["id"] and sent["duration"] == 30.0 and sent["prompt"] == track["prompt"]
        await pilot.pause(0.1)
        assert not note.display  # the next job is a new piece again
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: len(fake.methods_called("job.submit")) == 2)
        assert "extend" not in fake.methods_called("job.submit")[1]
        # ctrl+n drops a continuation before it is sent.
        await pilot.press("f4")
        await pilot.press("plus")
        await pilot.pause(0.1)
        assert note.display
        await pilot.press("ctrl+n")
        await pilot.pause(0.1)
        assert not note.display and app.compose_view.extending is None
        # Remixing a track that continued another continues that one again.
        app.compose_view.prefill({**track, "params": {**track.get("params", {}), "extend": "7-0"}})
        await pilot.pause(0.1)
        assert app.compose_view.extending == "7-0" and note.display


async def test_play_fetches_over_the_socket_and_runs_the_player(tmp_path: Path, monkeypatch: Any) -> None:
    """Remote daemon (the file is not readable here): audio is streamed into the cache, then played."""
    started = stub_player_process(monkeypatch, "ffplay")
    fake = FakeDaemon()
    app = make_app(fake, tmp_path, player=Player(use_sounddevice=False))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.connected and app.library_view.queries > 0)
        await pilot.press("f4")
        await wait_for(pilot, lambda: app.library_view.detail is not None)
        await pilot.press("space")
        await wait_for(pilot, lambda: bool(started))
        cached = tmp_path / "previews" / "30-1-1028.wav"
        assert started == [["/usr/bin/ffplay", "-nodisp", "-autoexit", "-loglevel", "quiet", str(cached)]]
        assert cached.read_bytes().startswith(b"RIFF")
        assert app.player.playing
        await pilot.pause(0.3)
        assert app.query_one("#waveform").position is not None  # the position bar moves
        await pilot.press("space")
        assert not app.player.playing
        assert app.query_one("#waveform").position is None


async def test_no_player_is_a_notice_not_a_crash(tmp_path: Path, monkeypatch: Any) -> None:
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    fake = FakeDaemon()
    app = make_app(fake, tmp_path, player=Player(use_sounddevice=False))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.connected and app.library_view.queries > 0)
        await pilot.press("f4")
        await pilot.pause(0.1)
        await pilot.press("space")
        await wait_for(pilot, lambda: any("No audio output" in (n.title or "") for n in app._notifications))
        assert not app.player.playing


async def test_disconnect_and_reconnect(tmp_path: Path) -> None:
    fake = FakeDaemon()
    app = make_app(fake, tmp_path, retry_delays=(0.05,))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.connected)
        fake.drop()
        await wait_for(pilot, lambda: not app.connected)
        banner = str(app.query_one("#banner").render())
        assert "disconnected" in banner and "dgx-music daemon" in banner and "retrying" in banner
        fake.jobs.append({**fake.jobs[1], "id": 50, "prompt": "made while we were away"})
        fake.up = True
        await wait_for(pilot, lambda: app.connected)
        assert 50 in app.queue_view.jobs  # state refreshed on reconnect
        assert not app.query_one("#banner").display


async def test_daemon_errors_are_notices(tmp_path: Path) -> None:
    from dgx_music.common.protocol import RemoteError

    fake = FakeDaemon()
    orig = fake.answer

    def answer(method: str, p: dict[str, Any]) -> Any:
        if method == "job.submit":
            raise RemoteError("queue_full", "the queue holds 1000 jobs already")
        return orig(method, p)

    fake.answer = answer  # type: ignore[method-assign]
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.connected)
        await pilot.press(*"piano", "enter")
        await wait_for(pilot, lambda: any("queue_full" in (n.title or "") for n in app._notifications))
        assert app.is_running


async def test_command_palette_lists_actions(tmp_path: Path) -> None:
    app = make_app(FakeDaemon(), tmp_path)
    async with app.run_test(size=(80, 24)):
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for want in ("Generate", "Cancel job", "Retry job", "Play / stop", "Remix", "Delete track", "Help"):
            assert want in titles


def test_player_preference(monkeypatch: Any) -> None:
    from dgx_music.tui import player as player_mod

    monkeypatch.setattr(player_mod.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.delenv("PULSE_SERVER", raising=False)
    monkeypatch.delenv("DGX_MUSIC_PLAYER", raising=False)
    assert player_mod.find_command() == ("pw-play", ["/usr/bin/pw-play"])
    monkeypatch.setenv("PULSE_SERVER", "tcp:localhost:24713")
    assert player_mod.find_command() == ("paplay", ["/usr/bin/paplay"])
    monkeypatch.setenv("DGX_MUSIC_PLAYER", "ffplay")
    p = Player(use_sounddevice=True)
    assert p.detect() == "ffplay"
    assert p.command_for(Path("/x/a.wav")) == ["/usr/bin/ffplay", "-nodisp", "-autoexit", "-loglevel", "quiet",
                                               "/x/a.wav"]


def test_library_table_uses_only_public_datatable_api() -> None:
    """LibraryTable overrides no private DataTable member (the textual pin was there for those)."""
    from textual.widgets import DataTable

    from dgx_music.tui.library import LibraryTable

    class Bare(DataTable):  # what Textual itself sets on every subclass
        pass

    private = [name for name in vars(LibraryTable) if name.startswith("_") and name not in vars(Bare)
               and any(name in vars(cls) for cls in DataTable.__mro__)]
    assert private == []
    assert "_scrolled" in vars(LibraryTable)  # its own private names are fine


async def test_library_table_renders_its_cells() -> None:
    """What the table shows for tracks of every shape (wide, long, empty, tabs, marks), read off the screen."""
    from rich.cells import cell_len
    from textual.app import App, ComposeResult

    from dgx_music.tui.library import LibraryTable, track_cells

    class TableApp(App[None]):
        def compose(self) -> ComposeResult:
            yield LibraryTable(cursor_type="row", zebra_stripes=True)

    tracks = [
        {"id": "a", "title": "short", "duration": 4.0, "bpm": 120, "key": "C major", "lufs": -14.0, "rating": 3,
         "favorite": True, "created": 1_700_000_000},
        {"id": "b", "prompt": "a very long prompt that is much wider than the title column of the table " * 2,
         "duration": 12.5, "rating": 0, "favorite": False},
        {"id": "c", "title": "日本語のタイトル、とても長いタイトルです 🎹🎹🎹", "bpm": 87.4, "key": "F# minor"},
        {"id": "d", "title": "tab\there", "rating": 5},
        {"id": "f", "title": "x" * 21},  # one over the column width
        {"id": "h", "title": "café au lait — crème brûlée ★ with a few more words", "rating": 1},
    ]
    app = TableApp()
    async with app.run_test(size=(100, 20)) as pilot:
        table = app.query_one(LibraryTable)
        for key, label, w in [("title", "Title", 20), ("duration", "Dur", 5), ("bpm", "BPM", 4), ("key", "Key", 8),
                              ("lufs", "LUFS", 5), ("rating", "Rating", 6), ("favorite", "♥", 1),
                              ("created", "Created", 16)]:
            table.add_column(label, key=key, width=w)
        for t in tracks:
            table.add_row(*track_cells(t), key=t["id"])
        await pilot.pause(0.1)
        lines = [strip.text for strip in (table.render_line(y) for y in range(len(tracks) + 1))]
        assert lines[0].split() == ["Title", "Dur", "BPM", "Key", "LUFS", "Rating", "♥", "Created"]
        assert lines[1].split() == ["short", "4.0", "120", "C", "major", "-14.0", "★★★··", "♥", "2023-11-14", "22:13"]
        assert lines[2].startswith(" a very long prompt …   12.5 ")  # cropped with an ellipsis at the column
        assert "日本語のタイトル、 …" in lines[3] and "87  F# minor" in lines[3]
        assert lines[4].startswith(" tab here ") and "★★★★★" in lines[4]
        assert lines[5].startswith(" " + "x" * 19 + "… ")
        assert lines[6].startswith(" café au lait — crèm… ") and "★····" in lines[6]
        assert {cell_len(line) for line in lines} == {100}  # every row fills the screen, wide characters too


async def test_library_says_when_the_database_is_away(tmp_path: Path) -> None:
    """A stale page (the daemon's database is away, issue 21) shows a visible note with the time the
    daemon last reached it; a fresh page takes the note away."""
    import time

    from textual.widgets import Label

    fake = FakeDaemon()
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.connected and app.library_view.queries > 0)
        lib = app.library_view
        await pilot.press("f4")
        note = lib.query_one("#lib-stale", Label)
        assert not note.display or note.region.height == 0
        since = time.mktime((2026, 12, 7, 4, 42, 0, 0, 0, -1))
        fake.stale_since = since
        await pilot.press("slash", *"techno")
        await wait_for(pilot, lambda: lib.stale is not None)
        await pilot.pause(0.05)
        shown = str(note.render())
        assert "database away — showing what this host last saw at 04:42" in shown
        assert note.display and note.region.height >= 1  # laid out on screen, not only set
        fake.stale_since = None
        await pilot.press("backspace")
        await wait_for(pilot, lambda: lib.stale is None)
        await pilot.pause(0.05)
        assert note.region.height == 0
