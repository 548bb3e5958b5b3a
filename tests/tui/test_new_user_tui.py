"""What a new user found in the TUI at 80x24 (issue 22): the detail pane's analysis and lyrics out of reach
of the keyboard, a player that fails without a word, operation forms without a submit key, a footer of
their own or a checkbox state readable without colour."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from textual.widgets import Footer

from dgx_music.tui.ops_screens import StemsScreen
from dgx_music.tui.player import Player
from tests.tui.fakes import FakeDaemon
from tests.tui.screen_text import screen_text
from tests.tui.test_track_operations import error_text, library, wait_for
from tests.tui.test_views import make_app

LAST_LINE = "and the very last line"


def song(fake: FakeDaemon) -> str:
    """The first track shown becomes a song whose lyrics run far below the pane's first lines."""
    t = fake.tracks[-1]
    t["lyrics"] = "[verse]\n" + "\n".join(f"line {i}" for i in range(24)) + f"\n[chorus]\n{LAST_LINE}"
    t["params"] = {**t["params"], "family": "ace-step", "language": "en"}
    return str(t["id"])


async def test_the_detail_pane_reads_to_its_last_line_by_keyboard(tmp_path: Path) -> None:
    fake = FakeDaemon()
    song(fake)
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await library(pilot, app)
        await wait_for(pilot, lambda: "lyrics" in screen_text(app) or "id " in screen_text(app))
        assert LAST_LINE not in screen_text(app)
        await pilot.press("d")
        await wait_for(pilot, lambda: app.focused is not None and app.focused.id == "detail-scroll")
        await pilot.press("end")
        await wait_for(pilot, lambda: LAST_LINE in screen_text(app))
        assert "key " in screen_text(app) or "file " in screen_text(app)
        # Back to the list: escape (or d again); the table's keys work again.
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.focused is app.library_view.table)
        assert not app.library_view.has_class("-details")
        await pilot.press("d", "d")
        await wait_for(pilot, lambda: app.focused is app.library_view.table)


async def test_a_player_that_exits_at_once_is_a_notice(tmp_path: Path, monkeypatch: Any) -> None:
    """ffplay without an audio device exits 0 at once: the preview did not play, and the user is told."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ffplay").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "ffplay").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("DGX_MUSIC_PLAYER", "ffplay")
    fake = FakeDaemon()
    app = make_app(fake, tmp_path, player=Player(use_sounddevice=False))
    async with app.run_test(size=(80, 24)) as pilot:
        await library(pilot, app)
        await pilot.press("space")
        await wait_for(pilot, lambda: any("The player stopped" in (n.title or "") for n in app._notifications))
        note = next(n for n in app._notifications if "The player stopped" in (n.title or ""))
        assert "ffplay stopped after" in str(note.message) and "no sound device" in str(note.message)
        assert not app.player.playing and app.status_bar.playing is None


async def test_operation_forms_submit_with_ctrl_s_show_their_keys_and_ticks_in_text(tmp_path: Path) -> None:
    fake = FakeDaemon()
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        tid = await library(pilot, app)
        await pilot.press("S")
        await wait_for(pilot, lambda: isinstance(app.screen, StemsScreen), what="stems form")
        # Ticked and unticked parts read differently without colour; the form's own footer shows its keys.
        await wait_for(pilot, lambda: "^s Submit" in screen_text(app), what="the form's footer")
        text = screen_text(app)
        # The separation model by default: its stems, none ticked (all the model makes).
        assert "separate: separation model" in text and "[ ] vocals" in text and "[ ] piano" in text, text
        assert "strings" not in text, text  # ACE-Step's parts show with --method generate only
        assert app.screen.query(Footer) and "esc Cancel" in text, text
        # ctrl+s submits from any field, here a checkbox (where enter would tick it).
        app.screen.query_one("#sep-vocals").focus()
        await pilot.press("enter")  # enter on a checkbox ticks it
        await wait_for(pilot, lambda: "[x] vocals" in screen_text(app))
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: bool(fake.methods_called("op.stems")))
        assert fake.methods_called("op.stems") == [{"source": tid, "method": "separate", "parts": ["vocals"]}]
        # The cover form: ctrl+s from the lyrics editor, where enter is a new line.
        await wait_for(pilot, lambda: app.screen is app.screen_stack[0], what="form closed")
        app.library_view.table.focus()
        await pilot.press("C")
        await wait_for(pilot, lambda: app.screen.query("#cover-prompt"), what="cover form")
        await pilot.press(*"bossa nova")
        app.screen.query_one("#op-lyrics").focus()
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: bool(fake.methods_called("op.cover")))
        # A refusal from ctrl+s is shown like one from the button.
        await wait_for(pilot, lambda: app.screen is app.screen_stack[0], what="form closed")
        app.library_view.table.focus()
        await pilot.press("C")
        await wait_for(pilot, lambda: app.screen.query("#cover-prompt"), what="cover form")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "prompt" in error_text(app), what="empty prompt refused")
        assert len(fake.methods_called("op.cover")) == 1
