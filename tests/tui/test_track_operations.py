"""The library's operations on the selected track (repaint, cover, stems, add a part) and its family view,
against the scripted fake daemon: what each form sends, and what it refuses before sending."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from textual.widgets import Checkbox, Input, OptionList, Select

from dgx_music.tui.app import DgxMusicApp
from dgx_music.tui.fitloop_screens import MidiScreen
from dgx_music.tui.ops_screens import LineageScreen, RepaintScreen, SpanPicker
from tests.tui.fakes import FakeDaemon


def make_app(fake: FakeDaemon, tmp_path: Path) -> DgxMusicApp:
    return DgxMusicApp("/nonexistent/daemon.sock", connect=fake.connect, poll_model=False, cache_dir=tmp_path)


async def wait_for(pilot: Any, cond: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    for _ in range(int(timeout / 0.02)):
        if cond():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"not reached in {timeout}s: {what}")


async def library(pilot: Any, app: DgxMusicApp) -> str:
    await wait_for(pilot, lambda: app.connected, what="connected")
    await pilot.press("f4")
    lib = app.library_view
    await wait_for(pilot, lambda: lib.detail is not None, what="a track selected")
    lib.table.focus()
    return str(lib.selected_id())


def error_text(app: DgxMusicApp) -> str:
    return str(app.screen.query_one("#op-error").render())


async def test_repaint_span_from_in_and_out_marks_set_with_the_keyboard(tmp_path: Path) -> None:
    fake = FakeDaemon()
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        tid = await library(pilot, app)
        assert tid == "30-1"  # 12 s long
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, RepaintScreen), what="the repaint form")
        picker = app.screen.query_one(SpanPicker)
        assert picker.has_focus and picker.peaks and picker.duration == 12.0
        # Only an out mark: refused inline, nothing sent.
        await pilot.press("shift+right", "o")
        await pilot.click("#op-go")
        await wait_for(pilot, lambda: "set the in mark" in error_text(app), what="missing in mark refused")
        # A span shorter than 0.5 s: the shared schema refuses it, naming the field.
        picker.focus()
        await pilot.press("left", "i")  # in 4.5, out 5.0: exactly 0.5 s is allowed; make it shorter
        await pilot.press("right", "o")  # out 5.0 -> in 4.5 .. out 5.0
        assert (picker.mark_in, picker.mark_out) == (4.5, 5.0)
        await pilot.press("left", "o")  # out at 4.5: span 0, the end not after the start
        await pilot.click("#op-go")
        await wait_for(pilot, lambda: "end: must be after start (4.5 s)" in error_text(app), what="empty span")
        assert fake.methods_called("op.repaint") == []
        # Marks in either order: in after out swaps them. The span is drawn on the waveform.
        picker.focus()
        await pilot.press("end", "left", "left", "i")  # in at 11.0, after the out mark at 4.5: swapped
        assert (picker.mark_in, picker.mark_out) == (4.5, 11.0) and picker.span is not None
        assert "in 4.50 s · out 11.00 s (6.50 s)" in str(app.screen.query_one("#repaint-span").render())
        await pilot.press("tab", *"brighter chorus", "enter")
        await wait_for(pilot, lambda: bool(fake.methods_called("op.repaint")), what="op.repaint sent")
        assert fake.methods_called("op.repaint") == [{"source": "30-1", "start": 4.5, "end": 11.0,
                                                      "prompt": "brighter chorus"}]
        await wait_for(pilot, lambda: 101 in app.queue_view.jobs, what="the job in the queue")


async def test_cover_stems_and_add_part_forms_send_their_operation(tmp_path: Path) -> None:
    fake = FakeDaemon()
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        tid = await library(pilot, app)
        # Cover: a prompt is required; strength is checked by the shared schema.
        await pilot.press("C")
        await wait_for(pilot, lambda: app.screen.query("#cover-prompt"), what="cover form")
        await pilot.press("enter")
        await wait_for(pilot, lambda: "prompt" in error_text(app), what="empty prompt refused")
        app.screen.query_one("#cover-strength", Input).value = "1.5"
        await pilot.press(*"bossa nova", "enter")
        await wait_for(pilot, lambda: "strength" in error_text(app), what="strength refused")
        app.screen.query_one("#cover-strength", Input).value = "0.8"
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(fake.methods_called("op.cover")))
        assert fake.methods_called("op.cover") == [{"source": tid, "prompt": "bossa nova", "strength": 0.8}]
        # Stems by ACE-Step: vocals, drums, bass ticked by default; untick drums, tick strings.
        await wait_for(pilot, lambda: app.screen is app.screen_stack[0], what="form closed")
        app.library_view.table.focus()
        await pilot.press("S")
        await wait_for(pilot, lambda: app.screen.query("#part-drums"), what="stems form")
        app.screen.query_one("#op-method", Select).value = "generate"
        await wait_for(pilot, lambda: app.screen.query_one("#stems-generate").display, what="ACE-Step's parts")
        app.screen.query_one("#part-drums", Checkbox).value = False
        app.screen.query_one("#part-strings", Checkbox).value = True
        await pilot.press("enter")  # the Stems button has focus
        await wait_for(pilot, lambda: bool(fake.methods_called("op.stems")))
        assert fake.methods_called("op.stems") == [{"source": tid, "method": "generate",
                                                    "parts": ["vocals", "bass", "strings"]}]
        # Add a part, with the mix.
        await wait_for(pilot, lambda: app.screen is app.screen_stack[0], what="form closed")
        app.library_view.table.focus()
        await pilot.press("A")
        await wait_for(pilot, lambda: app.screen.query("#addpart-part"), what="add part form")
        app.screen.query_one("#addpart-part", Select).value = "bass"
        app.screen.query_one("#addpart-mix", Checkbox).value = True
        await pilot.press(*"walking upright", "enter")
        await wait_for(pilot, lambda: bool(fake.methods_called("op.add_part")))
        assert fake.methods_called("op.add_part") == [{"source": tid, "part": "bass", "prompt": "walking upright",
                                                       "mix": True}]
        # Escape sends nothing.
        await wait_for(pilot, lambda: app.screen is app.screen_stack[0], what="form closed")
        app.library_view.table.focus()
        await pilot.press("C")
        await wait_for(pilot, lambda: app.screen.query("#cover-prompt"), what="cover form")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.screen_stack[0], what="form closed")
        assert len(fake.methods_called("op.cover")) == 1


async def test_family_view_lists_source_and_derived_and_jumps(tmp_path: Path) -> None:
    fake = FakeDaemon()
    fake.lineage["30-1"] = {"id": "30-1",
                            "source": {"id": "2-0", "name": "x", "operation": "repaint", "part": None,
                                       "params": {}, "exists": True, "title": "the original"},
                            "derived": [{"id": "29-0", "title": "a (vocals)", "operation": "stems",
                                         "part": "vocals", "duration": 8.0},
                                        {"id": "5-1", "title": "a (drums)", "operation": "stems",
                                         "part": "drums", "duration": 8.0}]}
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await library(pilot, app)
        await pilot.press("L")
        await wait_for(pilot, lambda: isinstance(app.screen, LineageScreen), what="family view")
        options = app.screen.query_one(OptionList)
        text = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert text[0].startswith("source   2-0  the original  (repaint)")
        assert "29-0  stems vocals" in text[1] and "5-1  stems drums" in text[2]
        # Enter on a derived track moves the library's cursor to it.
        assert options.has_focus and options.highlighted == 0
        await pilot.press("down", "down", "enter")
        lib = app.library_view
        await wait_for(pilot, lambda: lib.selected_id() == "5-1", what="jumped to 5-1")
        await wait_for(pilot, lambda: lib.detail is not None and lib.detail["id"] == "5-1", what="its details")
        # A track with no family says so.
        await pilot.press("L")
        await wait_for(pilot, lambda: isinstance(app.screen, LineageScreen), what="family view")
        assert app.screen.query("#lineage-empty")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.screen_stack[0], what="closed")
        assert lib.selected_id() == "5-1"


async def test_remix_of_an_operation_track_runs_the_operation_again_on_its_source(tmp_path: Path) -> None:
    fake = FakeDaemon()
    stem = next(t for t in fake.tracks if t["id"] == "30-1")
    stem.update(model="acestep-v15-turbo", prompt="a live take", params={
        "operation": "stems", "source_key": "0123456789abcdef", "source_id": "12-0", "source_name": "night drive",
        "family": "ace-step", "duration": 12.0, "parts": ["vocals", "drums"], "steps": 2})
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        assert await library(pilot, app) == "30-1"
        await pilot.press("m")
        await wait_for(pilot, lambda: bool(fake.methods_called("op.stems")), what="op.stems sent")
        # The same operation on the stored source: no seed (the daemon draws a new one), no internal key.
        assert fake.methods_called("op.stems") == [{"source": "0123456789abcdef", "parts": ["vocals", "drums"],
                                                    "method": "generate",  # stored before separation came
                                                    "steps": 2, "source_name": "night drive",
                                                    "prompt": "a live take",
                                                    "model": "acestep-v15-turbo"}]
        assert fake.methods_called("job.submit") == []
        await wait_for(pilot, lambda: 101 in app.queue_view.jobs, what="the job in the queue")
        assert app.screen is app.screen_stack[0] and app.query_one("TabbedContent").active != "compose"
        # A plain track still goes to the composer.
        app.library_view.table.focus()
        await pilot.press("down")
        await wait_for(pilot, lambda: app.library_view.selected_id() != "30-1", what="another track")
        await pilot.press("m")
        await wait_for(pilot, lambda: app.query_one("TabbedContent").active == "compose", what="composer")
        assert len(fake.methods_called("op.stems")) == 1


async def test_midi_key_queues_a_transcription_of_the_selected_track_at_80x24(tmp_path: Path) -> None:
    fake = FakeDaemon()
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        tid = await library(pilot, app)
        await pilot.press("M")
        await wait_for(pilot, lambda: isinstance(app.screen, MidiScreen), what="the MIDI form")
        scr = app.screen
        await pilot.press("ctrl+s")  # the defaults: piano, the track's own tempo
        await wait_for(pilot, lambda: bool(fake.methods_called("op.midi")), what="op.midi sent")
        assert fake.methods_called("op.midi") == [{"source": tid}]
        await wait_for(pilot, lambda: app.screen is app.screen_stack[0], what="form closed")
        app.library_view.table.focus()
        await pilot.press("M")
        await wait_for(pilot, lambda: isinstance(app.screen, MidiScreen) and app.screen is not scr,
                       what="the MIDI form again")
        scr = app.screen
        scr.query_one("#midi-program", Select).value = 32  # bass
        scr.query_one("#midi-bpm", Input).value = "900"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "bpm" in error_text(app), what=f"bpm refused: {error_text(app)!r}")
        assert scr.query_one("#midi-bpm", Input).has_class("-invalid") and len(fake.methods_called("op.midi")) == 1
        scr.query_one("#midi-bpm", Input).value = "96.5"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: len(fake.methods_called("op.midi")) == 2, what="the second op.midi")
        assert fake.methods_called("op.midi")[1] == {"source": tid, "program": 32, "bpm": 96.5}
        job_id = fake.jobs[-1]["id"]
        await wait_for(pilot, lambda: job_id in app.queue_view.jobs, what="the MIDI job in the queue")
