"""Operations on tracks through a real daemon: the tiny AceStepPipeline through the real loader and worker.

Every result is read back with soundfile (an independent reader of the library files)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from dgx_music.common.client import Client
from dgx_music.common.protocol import RemoteError
from tests.conftest import wait_event

SR = 48000


def tone(seconds: float = 3.0, sr: int = 44100, fmt: str = "FLAC") -> bytes:
    """A stereo test file: two sines, one per channel, at a rate the daemon must convert."""
    t = np.arange(int(seconds * sr)) / sr
    a = np.stack([0.4 * np.sin(2 * np.pi * 220 * t), 0.3 * np.sin(2 * np.pi * 331 * t)], axis=1)
    buf = io.BytesIO()
    sf.write(buf, a.astype(np.float32), sr, format=fmt, subtype="PCM_16" if fmt != "OGG" else "VORBIS")
    return buf.getvalue()


async def run(c: Client, method: str, params: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
    """Submit, wait for the job's end (any end: a failure fails the test at once, with its error)."""
    job = await c.call(method, params)

    async def end() -> None:
        async for ev in c.events():
            if ev.data.get("id") == job["id"] and (ev.name in ("job.finished", "job.cancelled") or
                                                   (ev.name == "job.failed" and not ev.data.get("retrying"))):
                return

    await asyncio.wait_for(end(), timeout)
    done = await c.call("job.get", {"id": job["id"]})
    assert done["state"] == "done", done
    return done


def read(d: Any, track: dict[str, Any], dtype: str = "int16") -> np.ndarray:
    a, sr = sf.read(str(d.data_dir / track["path"]), dtype=dtype, always_2d=True)
    assert sr == SR
    return a


@pytest.fixture
async def daemon(daemon_factory: Callable[..., Any], tiny_acestep: Path) -> Any:
    return await daemon_factory(engine__model=str(tiny_acestep))


async def test_repaint_keeps_the_source_outside_the_span_and_records_lineage(daemon: Any) -> None:
    d = daemon
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        song = await run(c, "job.submit", {"prompt": "synth pop", "duration": 10, "steps": 2, "seed": 3,
                                           "lyrics": "[verse]\nla la"})
        src = await c.call("track.get", {"id": song["track_ids"][0]})
        done = await run(c, "op.repaint", {"source": src["id"], "start": 2.5, "end": 4.0, "steps": 2, "seed": 5})
        assert done["state"] == "done" and len(done["track_ids"]) == 1
        new = await c.call("track.get", {"id": done["track_ids"][0]})
        a, b = read(d, src), read(d, new)
        assert a.shape == b.shape and new["sample_rate"] == SR and new["channels"] == 2
        s, e = int(2.5 * SR), int(4.0 * SR)
        assert np.array_equal(a[:s], b[:s]) and np.array_equal(a[e:], b[e:])  # bit-exact outside the span
        assert not np.array_equal(a[s:e], b[s:e])  # and the span is new
        assert new["lyrics"] == "[verse]\nla la"  # sung with the source's words unless told otherwise

        lin = await c.call("track.lineage", {"id": new["id"]})
        assert lin["source"]["id"] == src["id"] and lin["source"]["operation"] == "repaint"
        assert lin["source"]["exists"] and lin["source"]["params"]["start"] == 2.5
        assert lin["source"]["params"]["seed"] == 5
        assert [x["id"] for x in (await c.call("track.lineage", {"id": src["id"]}))["derived"]] == [new["id"]]
        page = await c.call("track.list", {"source": src["id"]})
        assert [t["id"] for t in page["tracks"]] == [new["id"]]

        # Deleting the source keeps the derived track, which now says its source is gone; a remix
        # from the job's stored source still works, and the same seed makes the same audio.
        await c.call("track.delete", {"id": src["id"]})
        lin = await c.call("track.lineage", {"id": new["id"]})
        assert lin["source"]["id"] == src["id"] and lin["source"]["exists"] is False
        internal = ("family", "operation", "source_key", "source_id", "source_name", "duration")
        remix = {k: v for k, v in done["params"].items() if k not in internal}  # what a remix resubmits
        again = await run(c, "op.repaint", {**remix, "prompt": done["prompt"], "source": done["params"]["source_key"],
                                            "seed": done["seed"]})
        redo = await c.call("track.get", {"id": again["track_ids"][0]})
        assert np.array_equal(read(d, redo), b)


async def test_stems_from_an_upload_are_aligned_and_as_long_as_the_source(daemon: Any) -> None:
    d = daemon
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        done = await run(c, "op.stems", {"source_audio": tone(3.0), "source_name": "take1.flac",
                                         "parts": ["vocals", "drums"], "steps": 2, "seed": 1,
                                         "method": "generate"})
        tracks = [await c.call("track.get", {"id": t}) for t in done["track_ids"]]
        assert len(tracks) == 2
        stems = [read(d, t, "float32") for t in tracks]
        assert stems[0].shape == stems[1].shape == (3 * SR, 2)
        assert not np.allclose(stems[0], stems[1])
        for t, part in zip(tracks, ("vocals", "drums")):
            assert t["title"] == f"take1.flac ({part})" and t["duration"] == pytest.approx(3.0, abs=1e-3)
            lin = (await c.call("track.lineage", {"id": t["id"]}))["source"]
            assert (lin["id"], lin["name"], lin["operation"], lin["part"]) == (None, "take1.flac", "stems", part)
        assert sorted(p.name for p in (d.data_dir / "sources").iterdir()) == [done["params"]["source_key"] + ".wav"]


async def test_pruning_forgets_sources_no_job_uses(daemon: Any) -> None:
    """A stored source stays while any job names its key, and a young unreferenced one stays
    (a submit in progress writes it before its job row); an old one no job names is deleted."""
    import os
    import time

    d = daemon
    folder = d.data_dir / "sources"

    def age(path: Path, days: float) -> None:
        os.utime(path, (time.time() - days * 86400,) * 2)

    async def finished_long_ago(job: dict[str, Any]) -> None:
        """Delete the job's tracks and move its end 40 days back: prunable (the store's clock)."""
        for t in job["track_ids"]:
            await c.call("track.delete", {"id": t})
        await d.store._write(lambda: d.store._conn.execute("UPDATE jobs SET finished = ? WHERE id = ?",
                                                           (time.time() - 40 * 86400, job["id"])))

    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        op = {"parts": ["drums"], "steps": 2, "seed": 1, "method": "generate"}
        first = await run(c, "op.stems", {"source_audio": tone(3.0), "source_name": "a.flac", **op})
        shared = first["params"]["source_key"]
        remix = await run(c, "op.stems", {"source": shared, **op})  # names the same stored copy
        other = await run(c, "op.stems", {"source_audio": tone(4.0), "source_name": "b.flac", **op})
        alone = other["params"]["source_key"]
        assert remix["params"]["source_key"] == shared != alone
        files = {k: folder / f"{k}.wav" for k in (shared, alone)}
        for f in files.values():
            age(f, 3)

        # Old files, but every job still exists: nothing goes.
        res = await c.call("job.prune", {"older_than_days": 30})
        assert (res["removed"], res["sources_removed"]) == (0, 0)
        assert all(f.exists() for f in files.values())

        # Two jobs pruned: the copy only one of them used goes, the one the remix names stays.
        await finished_long_ago(first)
        await finished_long_ago(other)
        res = await c.call("job.prune", {"older_than_days": 30})
        assert (res["removed"], res["sources_removed"]) == (2, 1)
        assert not files[alone].exists() and files[shared].exists()

        # A young unreferenced copy (its submit has not committed the job row yet) stays.
        fresh = folder / "0123456789abcdef.wav"
        fresh.write_bytes(files[shared].read_bytes())
        age(fresh, 0.5)
        await finished_long_ago(remix)
        res = await c.call("job.prune", {"older_than_days": 30})
        assert (res["removed"], res["sources_removed"]) == (1, 1)  # the last job naming `shared` went
        assert not files[shared].exists() and fresh.exists()
        assert sorted(p.name for p in folder.iterdir()) == [fresh.name]

        assert "sources_removed" not in await c.call("job.prune", {"older_than_days": 30, "dry_run": True})


async def test_cover_and_add_part_with_mix(daemon: Any) -> None:
    d = daemon
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        up = tone(2.0, sr=48000, fmt="WAV")
        cover = await run(c, "op.cover", {"source_audio": up, "source_name": "riff.wav", "prompt": "bossa nova",
                                          "strength": 0.7, "steps": 2})
        t = await c.call("track.get", {"id": cover["track_ids"][0]})
        assert read(d, t).shape == (2 * SR, 2) and t["lufs"] is not None and t["prompt"] == "bossa nova"
        added = await run(c, "op.add_part", {"source_audio": up, "source_name": "riff.wav", "part": "drums",
                                             "mix": True, "steps": 2})
        part, mixed = [await c.call("track.get", {"id": x}) for x in added["track_ids"]]
        assert read(d, part).shape == read(d, mixed).shape == (2 * SR, 2)
        assert (await c.call("track.lineage", {"id": mixed["id"]}))["source"]["params"]["mix"] is True
        assert (await c.call("track.lineage", {"id": part["id"]}))["source"]["part"] == "drums"


async def refused(c: Client, method: str, params: dict[str, Any], field: str) -> str:
    with pytest.raises(RemoteError) as err:
        await c.call(method, params)
    assert err.value.code == "invalid_params" and err.value.data.get("field") == field, err.value
    return err.value.message


async def test_bad_input_is_refused_naming_the_field_and_nothing_changes(daemon: Any, tmp_path: Path) -> None:
    d = daemon
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        ok = await run(c, "op.stems", {"source_audio": tone(2.0), "parts": "bass", "steps": 1,
                                       "method": "generate"})
        src = ok["track_ids"][0]
        before = ((await c.call("status"))["queue"], sorted((d.data_dir / "sources").iterdir()),
                  (await c.call("track.list", {}))["tracks"])
        assert "past the end" in await refused(c, "op.repaint", {"source": src, "start": 1.0, "end": 9.0}, "end")
        await refused(c, "op.repaint", {"source": src, "start": 5.0, "end": 6.0}, "start")
        assert "0.5 s" in await refused(c, "op.repaint", {"source": src, "start": 1.0, "end": 1.2}, "end")
        assert "vocals" in await refused(c, "op.stems", {"source": src, "parts": ["kazoo"]}, "parts")
        await refused(c, "op.add_part", {"source": src, "part": "kazoo"}, "part")
        assert "ACE-Step" in await refused(c, "op.cover", {"source": src, "prompt": "x", "model": "small"}, "model")
        with pytest.raises(RemoteError) as missing:  # a track that does not exist: not_found, naming the field
            await c.call("op.stems", {"source": "99-0"})
        assert missing.value.code == "not_found" and missing.value.data.get("field") == "source"
        assert "silent" in await refused(c, "op.stems", {"source_audio": tone(2.0, fmt="WAV")[:44] +
                                                          bytes(2 * 2 * 44100 * 2)}, "source_audio")
        await refused(c, "op.stems", {"source_audio": b"not audio at all" * 100}, "source_audio")
        long = io.BytesIO()
        sf.write(long, np.full(601 * 8000, 0.1, dtype=np.float32), 8000, format="FLAC")
        assert "600" in await refused(c, "op.cover", {"source_audio": long.getvalue(), "prompt": "x"}, "source_audio")
        await refused(c, "op.cover", {"source": src, "prompt": "x", "strength": 1.5}, "strength")
        await refused(c, "op.cover", {"source": src, "source_audio": tone(), "prompt": "x"}, "source")
        after = ((await c.call("status"))["queue"], sorted((d.data_dir / "sources").iterdir()),
                 (await c.call("track.list", {}))["tracks"])
        assert after == before


async def test_cancel_mid_operation_keeps_nothing_and_a_retry_makes_each_stem_once(
        daemon_factory: Callable[..., Any], tiny_acestep: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("DGX_MUSIC_TEST_STEP_DELAY", "0.3")
    d = await daemon_factory(engine__model=str(tiny_acestep))
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        job = await c.call("op.stems", {"source_audio": tone(2.0), "parts": ["vocals", "bass"], "steps": 4,
                                        "method": "generate"})
        await wait_event(c, "job.progress", job["id"], timeout=300)
        await c.call("job.cancel", {"id": job["id"]})
        await wait_event(c, "job.cancelled", job["id"], timeout=60)
        assert (await c.call("job.get", {"id": job["id"]}))["track_ids"] == []
        assert (await c.call("track.list", {}))["tracks"] == []
        assert not list((d.data_dir / "tracks").rglob("*.wav")) if (d.data_dir / "tracks").exists() else True
        await c.call("job.retry", {"id": job["id"]})
        await wait_event(c, "job.finished", job["id"], timeout=300)
        done = await c.call("job.get", {"id": job["id"]})
        assert done["state"] == "done" and done["track_ids"] == [f"{job['id']}-0", f"{job['id']}-1"]
        assert len((await c.call("track.list", {}))["tracks"]) == 2
