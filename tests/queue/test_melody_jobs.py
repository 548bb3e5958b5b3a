"""Jobs that follow a melody: a real daemon, the tiny melody model through the real loaders."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from dgx_music.common.client import Client
from dgx_music.common.protocol import RemoteError

from tests.cli.test_cli_e2e import cli, cli_json
from tests.conftest import wait_event


def wav_bytes(seconds: float, sr: int = 44100, channels: int = 2, freq: float = 440.0, fmt: str = "WAV") -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    tone = (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, np.stack([tone] * channels, axis=1), sr, format=fmt)
    return buf.getvalue()


async def run_job(c: Client, params: dict[str, Any]) -> dict[str, Any]:
    job = await c.call("job.submit", {"duration": 1.0, **params})
    await wait_event(c, "job.finished", job["id"], timeout=120)
    return await c.call("job.get", {"id": job["id"]})


async def test_follow_a_track_an_upload_and_remix_after_the_source_is_gone(
        daemon_factory: Callable[..., Any], tiny_melody_model: Path) -> None:
    d = await daemon_factory(engine__model=str(tiny_melody_model))
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        source = await run_job(c, {"prompt": "solo flute line"})  # text only: a melody model can do that
        src_track = source["track_ids"][0]

        follow = await run_job(c, {"prompt": "string quartet", "melody": src_track, "seed": 5})
        assert follow["state"] == "done" and len(follow["track_ids"]) == 1
        key = follow["params"]["melody"]
        assert follow["params"]["melody_source"] == f"track {src_track}"
        stored = d.data_dir / "melodies" / f"{key}.wav"
        info = sf.info(str(stored))
        assert (info.samplerate, info.channels) == (32000, 1)
        track = await c.call("track.get", {"id": follow["track_ids"][0]})
        assert track["params"]["melody_source"] == f"track {src_track}"  # the library says what it followed

        # The job owns its copy: deleting the source track does not stop a remix of it.
        await c.call("track.delete", {"id": src_track})
        remix = await run_job(c, {"prompt": "string quartet", "melody": key,
                                  "melody_source": follow["params"]["melody_source"]})
        assert remix["state"] == "done" and remix["params"]["melody"] == key

        # An uploaded file (44.1 kHz stereo FLAC here) is decoded, reduced to 32 kHz mono and kept.
        up = await run_job(c, {"prompt": "synth lead", "melody_audio": wav_bytes(3.0, fmt="FLAC"),
                               "melody_name": "/home/me/hum.flac"})
        assert up["state"] == "done" and up["params"]["melody_source"] == "file hum.flac"
        kept, sr = sf.read(str(d.data_dir / "melodies" / f"{up['params']['melody']}.wav"))
        assert sr == 32000 and kept.ndim == 1 and abs(kept.shape[0] / sr - 3.0) < 0.01
        # The same melody uploaded twice is stored once.
        again = await c.call("job.submit", {"prompt": "synth lead", "duration": 1.0,
                                            "melody_audio": wav_bytes(3.0, fmt="FLAC")})
        assert again["params"]["melody"] == up["params"]["melody"]
        await wait_event(c, "job.finished", again["id"], timeout=120)

    # A backup with audio carries the melodies, so a restored library can still remix them.
    from dgx_music.daemon import backup

    report = backup.backup(d.data_dir, d.data_dir.parent / "bk", with_audio=True)
    assert report.melodies == 2
    restored = backup.restore(d.data_dir.parent / "bk", d.data_dir.parent / "restored")
    assert restored.melodies == 2
    assert (d.data_dir.parent / "restored" / "melodies" / f"{key}.wav").read_bytes() == stored.read_bytes()


async def test_bad_melodies_are_refused_before_queueing(daemon_factory: Callable[..., Any],
                                                        tiny_melody_model: Path) -> None:
    d = await daemon_factory(engine__model=str(tiny_melody_model))
    silent = io.BytesIO()
    sf.write(silent, np.zeros(32000 * 2, dtype=np.float32), 32000, format="WAV")
    async with await Client.connect(d.server.path) as c:
        for params, field, words in (
                ({"melody": "999-0"}, "melody", "no track 999-0"),
                ({"melody": "../../etc/passwd"}, "melody", "track id"),
                ({"melody": "00000000deadbeef"}, "melody", "no stored melody"),
                ({"melody_audio": b"definitely not audio"}, "melody_audio", "cannot decode"),
                ({"melody_audio": "a string, not bytes"}, "melody_audio", "bytes of an audio file"),
                ({"melody_audio": silent.getvalue()}, "melody_audio", "silent"),
                ({"melody_audio": wav_bytes(0.3)}, "melody_audio", "at least 1 s"),
                ({"duration": 40}, "duration", "at most 30 s")):
            with pytest.raises(RemoteError) as e:
                await c.call("job.submit", {"prompt": "x", **params})
            # A track that is not there is not_found (naming the field), as track.get answers it.
            code = "not_found" if "999-0" in params.values() else "invalid_params"
            assert e.value.code == code and e.value.data.get("field") == field, params
            assert words in e.value.message, (params, e.value.message)
        assert (await c.call("job.list", {"all": True}))["jobs"] == []
        assert not (d.data_dir / "melodies").exists() or not any((d.data_dir / "melodies").iterdir())


async def test_a_text_model_refuses_a_melody(studio: Any) -> None:
    async with await Client.connect(studio.server.path) as c:
        with pytest.raises(RemoteError) as e:
            await c.call("job.submit", {"prompt": "x", "melody_audio": wav_bytes(2.0)})
        assert e.value.code == "invalid_params" and e.value.data.get("field") == "melody"
        assert "does not follow a melody" in e.value.message and "--model melody" in e.value.message
        assert (await c.call("job.list", {"all": True}))["jobs"] == []


async def test_cli_uploads_a_local_file_as_the_melody(daemon_factory: Callable[..., Any],
                                                      tiny_melody_model: Path, tmp_path: Path) -> None:
    d = await daemon_factory(engine__model=str(tiny_melody_model))
    hum = tmp_path / "hum.wav"
    hum.write_bytes(wav_bytes(40.0, sr=48000))  # longer than a melody model reads: only 30 s travel
    res = await cli_json(d.server.path, "generate", "brass fanfare", "--duration", "1", "--melody", str(hum),
                         "--wait")
    assert res["state"] == "done" and res["params"]["melody_source"] == "file hum.wav"
    rc, out, _ = await cli(d.server.path, "show", res["tracks"][0]["id"])
    assert rc == 0 and "melody" in out and "file hum.wav" in out  # the track says what it followed
    kept = sf.info(str(d.data_dir / "melodies" / f"{res['params']['melody']}.wav"))
    assert kept.samplerate == 32000 and abs(kept.duration - 30.0) < 0.01


async def test_pruning_forgets_melodies_no_job_uses(daemon_factory: Callable[..., Any],
                                                   tiny_melody_model: Path) -> None:
    import os
    import time

    d = await daemon_factory(engine__model=str(tiny_melody_model))
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        gone = await run_job(c, {"prompt": "forgotten", "melody_audio": wav_bytes(2.0, freq=330.0)})
        kept = await run_job(c, {"prompt": "kept", "melody_audio": wav_bytes(2.0, freq=550.0)})
        await c.call("track.delete", {"id": gone["track_ids"][0]})
        files = {j["params"]["melody"]: d.data_dir / "melodies" / f"{j['params']['melody']}.wav"
                 for j in (gone, kept)}
        old = time.time() - 3 * 86400
        for f in files.values():
            os.utime(f, (old, old))
        # The job finished 40 days ago (the store's own clock is what prune compares with).
        await d.store._write(lambda: d.store._conn.execute("UPDATE jobs SET finished = ? WHERE id = ?",
                                                           (time.time() - 40 * 86400, gone["id"])))
        res = await c.call("job.prune", {"older_than_days": 30})
        assert res["removed"] == 1 and res["melodies_removed"] == 1
        assert not files[gone["params"]["melody"]].exists()
        assert files[kept["params"]["melody"]].exists()  # its job still owns a track
        # A fresh, unreferenced melody (a submit in progress writes it before its job row) stays.
        fresh = d.data_dir / "melodies" / "0123456789abcdef.wav"
        fresh.write_bytes(files[kept["params"]["melody"]].read_bytes())
        assert (await c.call("job.prune", {"older_than_days": 30}))["melodies_removed"] == 0
        assert fresh.exists()


def test_storing_a_known_melody_again_marks_it_fresh(tmp_path: Path) -> None:
    """Pruning spares melodies younger than a day; re-using a stored one (same audio) must count
    as new, or a prune racing with that submit could delete the file its new job needs."""
    import os
    import time

    from dgx_music.daemon.audio_store import MELODIES

    mono = np.sin(np.linspace(0, 2000, 32000 * 2)).astype(np.float32) * 0.5
    key = MELODIES.save(tmp_path, mono)
    path = MELODIES.path(tmp_path, key)
    os.utime(path, (time.time() - 3 * 86400,) * 2)
    assert MELODIES.remove_unreferenced(tmp_path, set(), 86400) == 1 and not path.exists()
    assert MELODIES.save(tmp_path, mono) == key and path.exists()  # written again when gone
    os.utime(path, (time.time() - 3 * 86400,) * 2)
    assert MELODIES.save(tmp_path, mono) == key
    assert time.time() - path.stat().st_mtime < 60
    assert MELODIES.remove_unreferenced(tmp_path, set(), 86400) == 0 and path.exists()
