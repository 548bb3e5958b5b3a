"""`dgx-music play TRACK --to FILE.wav`: the track written where you are, no sound card needed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from tests.cli.test_cli_e2e import cli


async def _library(daemon: Any) -> tuple[np.ndarray, np.ndarray]:
    """Two tracks with real files: a 24-bit WAV (32 kHz mono) and a FLAC (48 kHz stereo)."""
    rng = np.random.default_rng(5)
    mono = (0.4 * rng.standard_normal(32000 + 123)).clip(-1, 1).astype(np.float32)
    stereo = (0.4 * rng.standard_normal((48000, 2))).clip(-1, 1).astype(np.float32)
    (daemon.data_dir / "tracks").mkdir(parents=True, exist_ok=True)
    sf.write(str(daemon.data_dir / "tracks" / "a.wav"), mono, 32000, subtype="PCM_24")
    sf.write(str(daemon.data_dir / "tracks" / "b.flac"), stereo, 48000, subtype="PCM_16")
    await daemon.store.import_tracks([
        {"id": "81-0", "path": "tracks/a.wav", "duration": len(mono) / 32000, "sample_rate": 32000, "channels": 1,
         "prompt": "wav take"},
        {"id": "82-0", "path": "tracks/b.flac", "duration": 1.0, "sample_rate": 48000, "channels": 2,
         "prompt": "flac take"},
    ])
    return mono, stereo


async def test_play_to_writes_the_tracks_own_samples(daemon: Any, tmp_path: Path) -> None:
    await _library(daemon)
    sock = daemon.server.path

    rc, out, err = await cli(sock, "play", "81-0", "--to", str(tmp_path / "a copy.wav"))
    assert rc == 0, err
    assert "81-0 ->" in out and "a copy.wav" in out
    # a WAV library file arrives byte for byte (its tags too)
    assert (tmp_path / "a copy.wav").read_bytes() == (daemon.data_dir / "tracks" / "a.wav").read_bytes()

    rc, out, err = await cli(sock, "play", "82-0", "--to", str(tmp_path / "b.wav"), "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["id"] == "82-0" and doc["file"] == str(tmp_path / "b.wav")
    info = sf.info(str(tmp_path / "b.wav"))
    assert (info.format, info.subtype, info.samplerate, info.channels, info.frames) == ("WAV", "PCM_16", 48000, 2, 48000)
    got, _ = sf.read(str(tmp_path / "b.wav"), dtype="int16")
    want, _ = sf.read(str(daemon.data_dir / "tracks" / "b.flac"), dtype="int16")
    assert np.array_equal(got, want)  # lossless: the FLAC's samples, not a re-quantised copy
    assert not list(tmp_path.glob(".*.part"))


async def test_play_to_refuses_what_it_cannot_write(daemon: Any, tmp_path: Path) -> None:
    await _library(daemon)
    sock = daemon.server.path
    rc, out, _ = await cli(sock, "play", "81-0", "--to", str(tmp_path / "a.mp3"), "--json")
    err = json.loads(out)["error"]
    assert rc == 2 and err["code"] == "invalid_params" and err["message"].startswith("--to")
    rc, out, _ = await cli(sock, "play", "81-0", "--to", str(tmp_path / "no" / "such" / "dir.wav"), "--json")
    err = json.loads(out)["error"]
    assert rc == 1 and err["code"] == "write_failed" and "--to" in err["message"]
    assert not (tmp_path / "a.mp3").exists()
