"""The status bar says when the daemon's disk is full (its queue is paused), and when it is not any more."""

from __future__ import annotations

from pathlib import Path

from tests.tui.fakes import FakeDaemon
from tests.tui.test_views import make_app, wait_for


def bar_text(app: object) -> str:
    return str(app.status_bar.render())  # type: ignore[attr-defined]


async def test_status_bar_shows_a_full_disk(tmp_path: Path) -> None:
    fake = FakeDaemon()
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_for(pilot, lambda: app.connected and "queue" in bar_text(app))
        assert "disk full" not in bar_text(app)
        fake.push("daemon.disk", {"full": True, "free": 0, "needed": 200 << 20, "min_free": 200 << 20})
        await wait_for(pilot, lambda: "disk full" in bar_text(app))
        fake.push("daemon.disk", {"full": False, "free": 1 << 30, "needed": 200 << 20, "min_free": 200 << 20})
        await wait_for(pilot, lambda: "disk full" not in bar_text(app))


async def test_a_daemon_already_full_at_connect_shows_it(tmp_path: Path) -> None:
    fake = FakeDaemon()
    real = fake.answer

    def answer(method: str, p: dict) -> object:
        out = real(method, p)
        return {**out, "disk_full": True} if method == "status" else out

    fake.answer = answer  # type: ignore[method-assign]
    app = make_app(fake, tmp_path)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_for(pilot, lambda: app.connected and "disk full" in bar_text(app))
