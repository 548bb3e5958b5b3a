"""An upload is decoded and stored while post-processing is busy: submit-time work has its own thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dgx_music.common.client import Client
from tests.spine.test_symlinks import wav


@pytest.fixture
async def ace(daemon_factory: Callable[..., Any], tiny_acestep: Path) -> Any:
    return await daemon_factory(engine__model=str(tiny_acestep))


async def test_an_upload_is_accepted_while_the_audio_thread_renders(ace: Any) -> None:
    sched = ace.scheduler
    release, busy = threading.Event(), threading.Event()

    def long_render() -> None:  # stands in for minutes of post-processing
        busy.set()
        release.wait(120)

    blocker = asyncio.get_running_loop().run_in_executor(sched.pool, long_render)
    try:
        await asyncio.get_running_loop().run_in_executor(None, busy.wait, 30)
        assert busy.is_set()
        async with await Client.connect(ace.server.path) as c:
            # Decoding, checking and storing the upload all happen before the answer.
            job = await asyncio.wait_for(c.call("op.stems", {"source_audio": wav(3.0), "source_name": "up.wav",
                                                             "parts": "drums", "method": "generate"}), 30)
            assert job["state"] == "queued" and job["params"]["source_key"]
            assert (ace.data_dir / "sources" / f"{job['params']['source_key']}.wav").is_file()
            assert not release.is_set()  # the audio thread was busy the whole time
            await c.call("job.cancel", {"id": job["id"]})
    finally:
        release.set()
        await blocker
