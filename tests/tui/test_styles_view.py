"""The Styles view against the scripted daemon: train from the marked tracks, live progress, delete."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Input, Label

from dgx_music.tui.screens import ConfirmScreen, TextPromptScreen
from tests.tui.fakes import FakeDaemon
from tests.tui.test_views import make_app, open_library, wait_for


async def test_train_from_marked_tracks_then_follow_and_delete_the_style(tmp_path: Path) -> None:
    fake = FakeDaemon()
    fake.styles = [{"name": "older", "base_model": "ace-step", "steps": 500, "rank": 8, "tracks": ["1-0", "2-0"],
                    "final_loss": 0.61234, "size": 3_145_728, "created": 1_700_000_000.0}]
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_library(pilot, app)
        await pilot.press("v", "v", "Y")  # mark two tracks, train a style on them
        await wait_for(pilot, lambda: isinstance(app.screen, TextPromptScreen))
        app.screen.query_one(Input).value = "mysound"
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(fake.methods_called("style.train")))
        assert fake.methods_called("style.train") == [{"name": "mysound", "tracks": ["30-1", "30-0"]}]

        await pilot.press("f5")
        view = app.styles_view
        table = view.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        assert [str(c) for c in table.get_row_at(0)][:5] == ["older", "ace-step", "500", "2", "0.6123"]
        fake.push("job.progress", {"id": 101, "step": 40, "total": 500, "elapsed": 20.0, "eta": 230.0,
                                   "loss": 0.8123, "rate": 2.0, "phase": "training"})
        label = view.query_one("#styles-progress", Label)
        await wait_for(pilot, lambda: "step 40/500" in str(label.render()))
        assert "loss 0.8123" in str(label.render()) and "2.00 steps/s" in str(label.render())

        table.focus()
        await pilot.press("delete")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: bool(fake.methods_called("style.delete")) and table.row_count == 0)
        assert fake.methods_called("style.delete") == [{"name": "older"}]
