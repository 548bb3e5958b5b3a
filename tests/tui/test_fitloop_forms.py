"""The fit (T) and loop (B) forms in the library, against the scripted fake daemon, on 80x24:
what they send, what they refuse before sending (the field named and marked)."""

from __future__ import annotations

from pathlib import Path

from textual.geometry import Region
from textual.widgets import Input

from dgx_music.tui.fitloop_screens import FitScreen, LoopScreen
from tests.tui.fakes import FakeDaemon
from tests.tui.test_op_form_fields import go
from tests.tui.test_track_operations import error_text, library, make_app, wait_for


async def test_fit_and_loop_forms_on_80x24(tmp_path: Path) -> None:
    fake = FakeDaemon()
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        tid = await library(pilot, app)
        await pilot.press("T")
        await wait_for(pilot, lambda: isinstance(app.screen, FitScreen), what="the fit form")
        scr = app.screen
        await pilot.pause()
        for bid in ("#op-go", "#op-cancel", "#op-error", "#fit-bpm", "#fit-key"):
            assert Region(0, 0, 80, 24).contains_region(scr.query_one(bid).region), bid
        await go(pilot, app)  # nothing filled in: refused, naming the tempo
        await wait_for(pilot, lambda: "bpm" in error_text(app), what="the refusal")
        assert not fake.methods_called("op.fit")
        assert scr.query_one("#fit-bpm", Input).has_class("-invalid")
        await pilot.press(*"124", "tab", *"Am")
        await go(pilot, app)
        await wait_for(pilot, lambda: bool(fake.methods_called("op.fit")), what="op.fit sent")
        assert fake.methods_called("op.fit") == [{"source": tid, "bpm": 124.0, "key": "Am"}]
        await wait_for(pilot, lambda: app.screen is app.screen_stack[0], what="form closed")

        app.library_view.table.focus()
        await pilot.press("B")
        await wait_for(pilot, lambda: isinstance(app.screen, LoopScreen), what="the loop form")
        bars = app.screen.query_one("#loop-bars", Input)
        bars.value = "100"
        await go(pilot, app)
        await wait_for(pilot, lambda: "bars" in error_text(app), what="too many bars refused")
        bars.value = "4"
        app.screen.query_one("#loop-bpm", Input).value = "120"
        await go(pilot, app)
        await wait_for(pilot, lambda: bool(fake.methods_called("op.loop")), what="op.loop sent")
        assert fake.methods_called("op.loop") == [{"source": tid, "bars": 4, "bpm": 120.0, "beats_per_bar": 4,
                                                   "start_bar": 0}]
