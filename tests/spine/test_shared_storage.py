"""Shared audio storage (`store.storage`): several daemons, each with its own data dir and
database, keep their audio under one directory, and none moves or deletes what another may
still be writing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import aiohttp
import numpy as np
import pytest

from dgx_music.common.client import Client
from dgx_music.common.config import load_settings
from dgx_music.common.paths import TEMP_RE, host_tag
from dgx_music.daemon import backup as bk
from dgx_music.daemon.app import Daemon
from dgx_music.daemon.server import StartupError
from tests.conftest import make_settings, start_http, wait_event

HOUR = 3600.0


@pytest.fixture
async def host(short_tmp: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start in-process daemons, each in its own folder (socket, data dir, database) under
    short_tmp; `close` them (or let the fixture) so one can be started again on the same folder."""
    running: list[Daemon] = []

    async def start(name: str, **overrides: Any) -> Daemon:
        root = short_tmp / name
        root.mkdir(exist_ok=True)
        d = Daemon(make_settings(root, **overrides))
        await d.start()
        running.append(d)
        return d

    async def close(d: Daemon) -> None:
        running.remove(d)
        await d.close()

    start.close = close  # type: ignore[attr-defined]
    yield start
    for d in reversed(running):
        await d.close()


async def _make_track(d: Daemon, prompt: str) -> dict[str, Any]:
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        job = await c.call("job.submit", {"prompt": prompt, "duration": 0.5, "seed": 1})
        done = await wait_event(c, "job.finished", job["id"])
        return await c.call("track.get", {"id": done.data["track_ids"][0]})


async def _audio_bytes(d: Daemon, track_id: str) -> bytes:
    """The track's audio as a remote client fetches it over the socket."""
    chunks, offset = [], 0
    async with await Client.connect(d.server.path) as c:
        while True:
            part = await c.call("track.audio", {"id": track_id, "offset": offset, "size": 1 << 18})
            chunks.append(part["data"])
            offset += len(part["data"])
            if part["eof"]:
                return b"".join(chunks)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()  # reaped: its pid names no process now
    return proc.pid


def _temp(folder: Path, host: str, pid: int, age: float) -> Path:
    """A temporary file as write_wav_atomic names it, last written `age` seconds ago."""
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / f".9-0-a-song.dgxtmp-{host}-{pid}-ab12cd34.tmp"
    p.write_bytes(b"RIFF half a file")
    t = time.time() - age
    os.utime(p, (t, t))
    return p


async def test_two_daemons_share_one_storage_and_never_sweep_each_other(
        host: Callable[..., Any], short_tmp: Path, tiny_model: Path) -> None:
    shared = short_tmp / "shared"
    shared.mkdir()
    opts = {"engine__model": str(tiny_model), "store__storage": str(shared)}
    a, b = await host("a", **opts), await host("b", **opts)
    ta, tb = await _make_track(a, "first host, warm piano"), await _make_track(b, "second host, dub chords")
    for d, t in ((a, ta), (b, tb)):
        # Stored relative to the storage root, the file there, nothing in the host's own data dir.
        assert not Path(t["path"]).is_absolute() and t["path"].startswith("library/")
        assert t["file"] == str(shared / t["path"]) and (shared / t["path"]).is_file()
        assert not list(d.data_dir.rglob("*.wav"))
        assert await _audio_bytes(d, t["id"]) == (shared / t["path"]).read_bytes()
        async with await Client.connect(d.server.path) as c:
            assert (await c.call("status"))["storage"] == str(shared)

    month = (shared / ta["path"]).parent
    theirs = _temp(month, "another-host", _dead_pid(), 2 * HOUR)  # another host's write: its pid means nothing here
    mine_young = _temp(month / "young", host_tag(), _dead_pid(), 60)  # this host's, too recent to judge
    mine_stale = _temp(shared / "sources", host_tag(), _dead_pid(), 2 * HOUR)  # this host's, abandoned
    before = sorted(str(p.relative_to(shared)) for p in shared.rglob("*") if p.is_file())

    await host.close(a)  # type: ignore[attr-defined]
    a = await host("a", **opts)  # the restart's scan: b's track is no row of a's, and stays
    assert a.recovery["orphans"] == [] and a.recovery["swept"] == [str(mine_stale)]
    after = sorted(str(p.relative_to(shared)) for p in shared.rglob("*") if p.is_file())
    assert after == [p for p in before if p != str(mine_stale.relative_to(shared))]
    assert theirs.is_file() and mine_young.is_file() and (shared / tb["path"]).is_file()
    assert await _audio_bytes(a, ta["id"]) == (shared / ta["path"]).read_bytes()


async def test_moving_the_storage_root_still_finds_every_track(
        host: Callable[..., Any], short_tmp: Path, tiny_model: Path) -> None:
    old, new = short_tmp / "nfs-old", short_tmp / "nfs-new"
    old.mkdir()
    d = await host("a", engine__model=str(tiny_model), store__storage=str(old))
    t = await _make_track(d, "moving day, soft synths")
    audio = (old / t["path"]).read_bytes()
    await host.close(d)  # type: ignore[attr-defined]
    shutil.move(str(old), str(new))  # the share mounted elsewhere: a config change, no database change

    d = await host("a", engine__model=str(tiny_model), store__storage=str(new), http__listen="127.0.0.1:0")
    async with await Client.connect(d.server.path) as c:
        moved = await c.call("track.get", {"id": t["id"]})
    assert moved["path"] == t["path"] and moved["file"] == str(new / t["path"])
    assert await _audio_bytes(d, t["id"]) == audio
    http = await start_http(d)  # the browser's routes resolve against the new root too
    base = f"http://127.0.0.1:{http.port}/api/v1/tracks/{t['id']}"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {http.plan.token}"}) as s:
        async with s.get(f"{base}/audio") as r:
            assert r.status == 200 and await r.read() == audio
        async with s.get(f"{base}/export", params={"format": "flac"}) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "audio/flac" and len(await r.read()) > 1000
    report = bk.backup(d.data_dir, short_tmp / "bk", with_audio=True, storage=d.storage.root)
    assert report.files == 1 and (short_tmp / "bk" / t["path"]).read_bytes() == audio
    await host.close(d)  # type: ignore[attr-defined]
    (new / t["path"]).unlink()
    bk.restore(short_tmp / "bk", d.data_dir, storage=new)  # the audio goes back under the storage root
    assert (new / t["path"]).read_bytes() == audio and not (d.data_dir / t["path"]).exists()
    assert not [p for p in new.rglob("*.tmp")]  # written through a temporary file, renamed


async def test_a_storage_root_that_cannot_be_used_stops_the_start(short_tmp: Path) -> None:
    """Missing (an unmounted share is never replaced by a local folder), with a symlinked folder,
    or another daemon's data dir (which that daemon would sweep as its own)."""
    (short_tmp / "other").mkdir()
    other = Daemon(make_settings(short_tmp / "other"))  # leaves its data dir behind, lock note included
    await other.start()
    await other.close()
    for problem, why in (("missing", "does not exist"), ("linked", "is a symlink"),
                         ("data", "is the data directory of a daemon")):
        root = short_tmp / problem
        root.mkdir()
        storage = short_tmp / (f"{problem}-storage" if problem != "data" else "other/data")
        if problem == "linked":
            storage.mkdir()
            (storage / "library").symlink_to(short_tmp)
        d = Daemon(make_settings(root, store__storage=str(storage)))
        with pytest.raises(StartupError, match=re.escape(f"store.storage {storage}") + ".*" + why):
            await d.start()
        await d.close()
        assert not (problem == "missing" and storage.exists())


def test_storage_setting_from_env_and_default(short_tmp: Path) -> None:
    cfg = short_tmp / "config.toml"
    cfg.write_text('[daemon]\ndata_dir = "/srv/dgx"\n')
    assert load_settings(cfg, env={}).storage == Path("/srv/dgx")  # one box: the data dir itself
    s = load_settings(cfg, env={"DGX_MUSIC_STORAGE": "/mnt/music"})
    assert s.storage == Path("/mnt/music") and s.source("store.storage") == "env DGX_MUSIC_STORAGE"


async def test_shared_stored_copies_are_not_pruned_by_a_store_of_one_host(
        host: Callable[..., Any], short_tmp: Path) -> None:
    """A stored melody no job of this host's database names may be another host's job's."""
    shared = short_tmp / "shared"
    (shared / "melodies").mkdir(parents=True)
    copy = shared / "melodies" / "0123456789abcdef.wav"
    copy.write_bytes(b"RIFF")
    old = time.time() - 3 * 24 * HOUR
    os.utime(copy, (old, old))
    d = await host("a", store__storage=str(shared))
    async with await Client.connect(d.server.path) as c:
        res = await c.call("job.prune", {})
    assert copy.is_file() and not res.get("melodies_removed")


def test_atomic_writes_name_this_host_and_process(short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The temporary file a library write goes through says whose it is (what the sweep reads)."""
    from dgx_music.common.audio import files

    seen: list[str] = []

    def crash(src: Any, dst: Any) -> None:
        seen.append(Path(src).name)
        raise OSError("disk gone")

    monkeypatch.setattr(files.os, "replace", crash)
    with pytest.raises(OSError):
        files.write_wav_atomic(short_tmp / "x.wav", np.zeros((1, 100), np.float32), 32000)
    m = TEMP_RE.search(seen[0])
    assert m and (m["host"], int(m["pid"])) == (host_tag(), os.getpid())
    assert list(short_tmp.iterdir()) == []  # the failed write left nothing behind


def test_the_service_unit_passes_the_storage_and_may_write_there() -> None:
    """Under ProtectSystem=strict a share left out of ReadWritePaths= would be read-only."""
    from dataclasses import replace

    from dgx_music.cli.ops_cmd import EXAMPLE, render_service

    for mode in ("user", "system"):
        unit = render_service(replace(EXAMPLE, mode=mode, storage="/mnt/music"))
        exec_line = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
        rw_line = next(line for line in unit.splitlines() if line.startswith("ReadWritePaths="))
        assert exec_line.endswith(" --storage /mnt/music"), (mode, exec_line)
        assert "/mnt/music" in [p.lstrip("-") for p in rw_line.split("=", 1)[1].split()], (mode, rw_line)
    assert "--storage" not in render_service(EXAMPLE)  # one box: the unit is as before


def test_an_abandoned_style_copy_of_this_host_is_swept_and_no_other(tmp_path: Path) -> None:
    """A style reaches shared storage as a temporary directory of its host (daemon/jobs/train.py):
    a crash mid-copy leaves one, which only that host removes, once its process is gone."""
    from dgx_music.daemon import libfiles

    def copy(host: str, pid: int, age: float) -> Path:
        d = tmp_path / "styles" / f".mine.dgxtmp-{host}-{pid}-ab12cd34.tmp"
        d.mkdir(parents=True)
        (d / "pytorch_lora_weights.safetensors").write_bytes(b"half")
        t = time.time() - age
        os.utime(d, (t, t))
        return d

    mine = copy(host_tag(), _dead_pid(), 2 * HOUR)
    theirs = copy("another-host", _dead_pid(), 2 * HOUR)
    (tmp_path / "styles" / "done").mkdir()  # a finished style
    assert libfiles.sweep_stale_temp(tmp_path) == [mine]
    assert not mine.exists() and theirs.is_dir() and (tmp_path / "styles" / "done").is_dir()
