"""The queue view and a running job's stream, against a real daemon with the tiny model.

The audio player is a stand-in at the process boundary: a script named `aplay` that writes the
raw PCM it is fed to a file, so the test hears exactly what a speaker would."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dgx_music.common.client import Client
from tests.tui.screen_text import screen_text
from tests.tui.test_real_daemon import make_app, wait_for

pytestmark = pytest.mark.slow


async def test_space_plays_a_running_jobs_stream(studio: Any, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    sink = tmp_path / "played.raw"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "aplay"
    fake.write_text(f"#!/bin/sh\ncat > {sink}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("DGX_MUSIC_PLAYER", "aplay")
    monkeypatch.setenv("DGX_MUSIC_TEST_STEP_DELAY", "0.02")
    async with await Client.connect(studio.server.path) as c:
        job = await c.call("job.submit", {"prompt": "streamed drone", "duration": 8.0})
    jid = job["id"]
    app = make_app(studio.server.path, tmp_path)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: app.connected, 10, "connected")
        await pilot.press("f3")
        q = app.queue_view
        await wait_for(pilot, lambda: jid in q.jobs and (q.jobs[jid].get("stream_seconds") or 0) >= 1, 120,
                       "a second of audio ready")
        await wait_for(pilot, lambda: "▶" in screen_text(app), 10, "seconds ready shown in the row")
        assert q.selected_id() == jid
        await pilot.press("space")
        await wait_for(pilot, lambda: sink.exists() and sink.stat().st_size > 32000 * 2, 60,
                       "the player received a second of audio")
        assert q.stream_job == jid
        pcm = np.frombuffer(sink.read_bytes()[: sink.stat().st_size // 2 * 2], dtype="<i2")
        assert np.abs(pcm[3200:]).max() > 0  # after the 0.1 s of probe silence: the music
        await pilot.press("space")  # stops the stream
        await wait_for(pilot, lambda: q.stream_player is None, 10, "stream stopped")
