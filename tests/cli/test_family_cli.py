"""`generate` with ACE-Step options: checked offline with the shared schema, queued with typed params;
`show` prints a song's lyrics."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

LYRICS = "[verse]\nneon rain on the window\n[chorus]\nwe run, we run"


async def cli(sock: Path, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DGX_MUSIC_")}
    env["DGX_MUSIC_SOCKET"] = str(sock)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "dgx_music", *args, env=env,
                                                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else None), 120)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.mark.parametrize("args,flag,words", [
    (("--model", "ace-step", "--top-k", "50"), "--top-k", "top_k is a MusicGen parameter; ace-step does not take it"),
    (("--model", "ace-step", "--bpm", "0"), "--bpm", "between 30 and 300"),
    (("--model", "ace-step", "--key", "H major"), "--key", "24 keys"),
    (("--model", "ace-step", "--duration", "700"), "--duration", "between 10 s and 600 s"),
    (("--model", "ace-step", "--time-signature", "5"), "--time-signature", "2, 3, 4, 6"),
    (("--model", "small", "--bpm", "96"), "--bpm", "bpm is an ACE-Step parameter; musicgen does not take it"),
    (("--model", "ace-step", "--lyrics", "/nonexistent/lyrics.txt"), "--lyrics", "cannot read"),
])
async def test_bad_options_are_refused_before_connecting(tmp_path: Path, args: tuple[str, ...], flag: str,
                                                        words: str) -> None:
    rc, out, err = await cli(tmp_path / "no-daemon.sock", "generate", "synthwave", *args, "--json")
    error = json.loads(out)["error"]
    assert rc == 2 and error["code"] == "invalid_params", (out, err)
    assert error["message"].startswith(flag) and words in error["message"]


async def test_lyrics_over_the_limit_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "long.txt").write_text("[verse]\n" + "la " * 2000)
    rc, out, _ = await cli(tmp_path / "no-daemon.sock", "generate", "x", "--model", "ace-step",
                           "--lyrics", str(tmp_path / "long.txt"))
    assert rc == 2


async def test_generate_ace_step_from_stdin_queues_typed_params(daemon: Any) -> None:
    rc, out, err = await cli(daemon.server.path, "generate", "synthwave, female vocals", "--model", "ace-step",
                             "--lyrics", "-", "--language", "en", "--bpm", "96", "--key", "Am",
                             "--time-signature", "4", "--duration", "20", "--json", stdin=LYRICS + "\n")
    assert rc == 0, err
    job = json.loads(out)
    await daemon.scheduler.cancel(job["id"])  # the engine side is not under test here
    p = job["params"]
    assert p["family"] == "ace-step" and p["lyrics"] == LYRICS and p["key"] == "A minor" and p["bpm"] == 96
    assert p["time_signature"] == 4 and p["steps"] == 8 and p["duration"] == 20.0
    rc, out, _ = await cli(daemon.server.path, "job", str(job["id"]))
    assert rc == 0 and "96 BPM, A minor" in out and "lyrics in en" in out


async def test_show_prints_the_lyrics(daemon: Any) -> None:
    rel = "library/imported/77-0.wav"
    (daemon.data_dir / rel).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(daemon.data_dir / rel), np.zeros((4800, 2), dtype=np.float32), 48000)
    await daemon.store.import_tracks([{
        "id": "77-0", "prompt": "synthwave, female vocals", "path": rel, "duration": 0.1, "sample_rate": 48000,
        "channels": 2, "model": "ace-step",
        "params": {"family": "ace-step", "lyrics": LYRICS, "language": "en", "bpm": 96, "key": "A minor"}}])
    rc, out, err = await cli(daemon.server.path, "show", "77-0")
    assert rc == 0, err
    assert "lyrics (en):" in out and "    [chorus]" in out and "we run, we run" in out
    assert "96 BPM, A minor" in out
