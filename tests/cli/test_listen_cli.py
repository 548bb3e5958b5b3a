"""`dgx-music listen JOB --to FILE.wav` and `generate --listen`, as a user types them, with the tiny model."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from dgx_music.common.client import Client
from tests.cli.test_cli_e2e import cli


async def test_listen_writes_the_stream_to_a_wav(studio: Any, tmp_path: Path) -> None:
    sock = studio.server.path
    async with await Client.connect(sock) as c:
        job = await c.call("job.submit", {"prompt": "wav stream", "duration": 2.0, "seed": 9})
    out = tmp_path / "preview.wav"
    rc, stdout, err = await cli(sock, "listen", str(job["id"]), "--to", str(out), "--json")
    assert rc == 0, err
    res = json.loads(stdout)
    assert res["reason"] == "complete" and res["samples"] == 2 * 32000 and res["path"] == str(out.resolve())
    # An independent reader agrees: a 16-bit mono WAV at the model's rate, the whole clip, not silence.
    info = sf.info(str(out))
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (32000, 1, 2 * 32000, "PCM_16")
    probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(out)],
                                      capture_output=True, text=True, check=True).stdout)["streams"][0]
    assert probe["codec_name"] == "pcm_s16le" and abs(float(probe["duration"]) - 2.0) < 0.01
    audio, _ = sf.read(str(out), dtype="float32")
    assert np.abs(audio).max() > 1e-3

    bad = await cli(sock, "listen", str(job["id"]), "--to", str(tmp_path / "x.mp3"))
    assert bad[0] == 2 and "WAV" in bad[2]


async def test_generate_listen_without_audio_output_or_tab_keeps_the_job_going(studio: Any, tmp_path: Path) -> None:
    """No player here and no browser tab open: one line that says how to hear it, and the job still runs."""
    sock = studio.server.path
    empty = tmp_path / "bin"
    empty.mkdir()
    import sys
    (empty / "python").symlink_to(sys.executable)
    rc, out, err = await cli(sock, "generate", "no speakers", "--duration", "1", "--listen", "--json",
                             env={"PATH": str(empty), "DGX_MUSIC_NO_SOUNDDEVICE": "1"})
    assert rc == 0, err
    assert "Traceback" not in err
    said = [line for line in err.splitlines() if "not playing job" in line]
    assert len(said) == 1 and "no browser tab is open as a speaker" in said[0] and "http.listen" in said[0]
    res = json.loads(out)
    assert res["state"] == "done" and len(res["tracks"]) == 1  # the job kept going


async def test_generate_listen_plays_the_whole_clip(studio: Any, tmp_path: Path) -> None:
    """The player is a stand-in at the process boundary: an `aplay` that keeps the raw PCM it is fed."""
    import os

    sink = tmp_path / "played.raw"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "aplay"
    fake.write_text(f"#!/bin/sh\ncat > {sink}\n")
    fake.chmod(0o755)
    rc, out, err = await cli(studio.server.path, "generate", "heard live", "--duration", "1.5", "--listen", "--json",
                             env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "DGX_MUSIC_PLAYER": "aplay",
                                  "DGX_MUSIC_NO_SOUNDDEVICE": "1"})
    assert rc == 0, err
    res = json.loads(out)
    assert res["state"] == "done" and len(res["tracks"]) == 1
    pcm = np.frombuffer(sink.read_bytes(), dtype="<i2")
    # 0.1 s of silence that checks the player works, then the whole clip, as 16-bit mono at 32 kHz.
    assert pcm.size == 3200 + int(1.5 * 32000)
    assert not pcm[:3200].any() and np.abs(pcm[3200:]).max() > 30
