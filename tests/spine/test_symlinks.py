"""Symlinks planted in the data dir never lead the daemon's writes or deletes outside it.

Each case: a folder (or a track's file) in the data dir replaced by a symlink to a folder
outside; the daemon answers `forbidden` (or refuses to start, or fails the job) and the
files outside are untouched."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from dgx_music.common import protocol
from dgx_music.common.client import Client
from dgx_music.common.protocol import RemoteError
from dgx_music.daemon.server import StartupError
from tests.conftest import wait_event


@pytest.fixture
def outside(short_tmp: Path) -> Path:
    """A folder outside the data dir holding one precious file."""
    d = short_tmp / "outside"
    d.mkdir()
    (d / "precious.wav").write_bytes(b"do not touch")
    return d


def untouched(outside: Path) -> bool:
    return sorted(p.name for p in outside.iterdir()) == ["precious.wav"] and \
        (outside / "precious.wav").read_bytes() == b"do not touch"


def plant(data_dir: Path, rel: str, target: Path) -> None:
    link = data_dir / rel
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_dir() and not link.is_symlink():
        link.rmdir()
    link.symlink_to(target, target_is_directory=True)


def wav(seconds: float = 2.0, sr: int = 48000) -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    buf = io.BytesIO()
    sf.write(buf, np.stack([0.3 * np.sin(2 * np.pi * 220 * t)] * 2, axis=1), sr, format="WAV")
    return buf.getvalue()


async def forbidden(c: Client, method: str, params: dict[str, Any]) -> str:
    with pytest.raises(RemoteError) as e:
        await c.call(method, params)
    assert e.value.code == protocol.FORBIDDEN, e.value
    return e.value.message


async def test_a_symlinked_trash_is_never_emptied(client: Client, daemon: Any, outside: Path) -> None:
    plant(daemon.data_dir, "trash", outside)
    assert "symlink" in await forbidden(client, "library.empty_trash", {})
    assert untouched(outside)


async def test_deleting_a_track_with_a_symlinked_trash_keeps_the_track(daemon: Any, outside: Path) -> None:
    path = daemon.data_dir / "library" / "t.wav"
    path.parent.mkdir(parents=True)
    path.write_bytes(wav(1.0))
    await daemon.store.import_tracks([{"id": "t-1", "prompt": "p", "path": "library/t.wav", "duration": 1.0,
                                       "sample_rate": 48000, "channels": 2}])
    plant(daemon.data_dir, "trash", outside)
    async with await Client.connect(daemon.server.path) as c:
        await forbidden(c, "track.delete", {"id": "t-1"})
        assert (await c.call("track.get", {"id": "t-1"}))["id"] == "t-1"  # the row is kept, not half deleted
    assert path.is_file() and untouched(outside)


@pytest.fixture
async def ace(daemon_factory: Callable[..., Any], tiny_acestep: Path) -> Any:
    return await daemon_factory(engine__model=str(tiny_acestep))


async def test_a_symlinked_sources_folder_is_not_written(ace: Any, outside: Path) -> None:
    plant(ace.data_dir, "sources", outside)
    async with await Client.connect(ace.server.path) as c:
        assert "symlink" in await forbidden(c, "op.stems", {"source_audio": wav(), "source_name": "up.wav"})
        assert (await c.call("job.list", {}))["jobs"] == []  # nothing queued
    assert untouched(outside)


async def test_a_track_file_symlinked_outside_is_forbidden_not_internal(ace: Any, outside: Path) -> None:
    lib = ace.data_dir / "library"
    lib.mkdir(parents=True, exist_ok=True)
    (lib / "t.wav").symlink_to(outside / "precious.wav")
    await ace.store.import_tracks([{"id": "1-0", "prompt": "p", "path": "library/t.wav", "duration": 2.0,
                                    "sample_rate": 48000, "channels": 2}])
    async with await Client.connect(ace.server.path) as c:
        assert "outside" in await forbidden(c, "op.stems", {"source": "1-0"})
    assert untouched(outside)


async def test_a_symlinked_month_folder_fails_the_job_and_writes_nothing_outside(studio: Any, outside: Path) -> None:
    now = dt.datetime.now()
    plant(studio.data_dir, f"library/{now:%Y}/{now:%m}", outside)
    async with await Client.connect(studio.server.path) as c:
        await c.subscribe("job")
        job = await c.call("job.submit", {"prompt": "piano", "duration": 1, "seed": 1})
        ev = await wait_event(c, "job.failed", job["id"], timeout=120)
        assert "symlink" in ev.data["error"]
        assert (await c.call("job.get", {"id": job["id"]}))["state"] == "failed"
    assert untouched(outside)


@pytest.mark.parametrize("rel", ["library", "orphans", "sources", "melodies", "trash", "library/2026"])
async def test_the_daemon_refuses_to_start_on_a_planted_symlink(daemon_factory: Callable[..., Any], short_tmp: Path,
                                                                outside: Path, rel: str) -> None:
    data = short_tmp / "data"
    orphan = data / "library" / "2025" / "01" / "orphan.wav"  # set aside (moved to orphans/) at start
    if rel != "library":
        orphan.parent.mkdir(parents=True)
        orphan.write_bytes(b"orphan")
    else:
        data.mkdir()
    plant(data, rel, outside)
    with pytest.raises(StartupError, match="symlink"):
        await asyncio.wait_for(daemon_factory(), 60)
    assert untouched(outside)
    if rel != "library":
        assert orphan.read_bytes() == b"orphan"
