"""Screenshots of each main view at 80x24 and 120x40, against fixed data (tests/tui/fakes.py).

Update the baselines after an intended change with
`.venv/bin/python -m pytest tests/tui/test_snapshots.py --snapshot-update` and look at
the SVGs under tests/tui/__snapshots__ before committing them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from dgx_music.tui.app import DgxMusicApp
from tests.tui.fakes import FakeDaemon

SIZES = [(80, 24), (120, 40)]


def make_app(fake: FakeDaemon, tmp_path: Path) -> DgxMusicApp:
    return DgxMusicApp("/nonexistent/daemon.sock", connect=fake.connect, poll_model=False, cache_dir=tmp_path)


async def settle(pilot: Pilot, until: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if until():
            break
        await pilot.pause(0.05)
    for inp in pilot.app.query(Input):
        inp.cursor_blink = False
    await pilot.pause(0.1)


def ready(app: Any) -> Callable[[], bool]:
    return lambda: app.connected and app.library_view.queries > 0


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_compose(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    app = make_app(FakeDaemon(), tmp_path)

    async def run_before(pilot: Pilot) -> None:
        await settle(pilot, ready(app))
        if size[1] >= 40:
            app.compose_view.action_toggle_advanced()
        await pilot.press(*"warm analog synth arpeggio")
        await settle(pilot, lambda: True)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_compose_invalid(snap_compare: Any, tmp_path: Path) -> None:
    app = make_app(FakeDaemon(), tmp_path)

    async def run_before(pilot: Pilot) -> None:
        await settle(pilot, ready(app))
        await pilot.press(*"piano")
        app.query_one("#duration", Input).value = "450"
        await settle(pilot, lambda: True)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_queue(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    app = make_app(FakeDaemon(), tmp_path)

    async def run_before(pilot: Pilot) -> None:
        await settle(pilot, ready(app))
        await pilot.press("f3")
        await settle(pilot, lambda: True)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_library(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    app = make_app(FakeDaemon(), tmp_path)

    async def run_before(pilot: Pilot) -> None:
        await settle(pilot, ready(app))
        await pilot.press("f4", "down")
        await settle(pilot, lambda: app.library_view.detail is not None and "peaks" in app.library_view.detail)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_library_filters(snap_compare: Any, tmp_path: Path) -> None:
    app = make_app(FakeDaemon(), tmp_path)

    async def run_before(pilot: Pilot) -> None:
        await settle(pilot, ready(app))
        await pilot.press("f4", "F")
        await pilot.press(*"keeper")
        await settle(pilot, lambda: app.library_view.last_query.get("tag") == "keeper")

    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)


def test_disconnected(snap_compare: Any, tmp_path: Path) -> None:
    fake = FakeDaemon()
    fake.up = False
    app = make_app(fake, tmp_path)

    async def run_before(pilot: Pilot) -> None:
        await settle(pilot, lambda: "retrying" in str(app.query_one("#banner").render()))

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_help(snap_compare: Any, tmp_path: Path) -> None:
    app = make_app(FakeDaemon(), tmp_path)

    async def run_before(pilot: Pilot) -> None:
        await settle(pilot, ready(app))
        await pilot.press("f1")
        await settle(pilot, lambda: True)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
