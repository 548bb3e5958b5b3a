"""The CLI as a user types it, against a real daemon with the tiny model."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import soundfile as sf


async def cli(sock: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run `dgx-music ARGS` in a subprocess against `sock`; `env` adds or replaces variables."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DGX_MUSIC_")}, **(env or {})}
    env["DGX_MUSIC_SOCKET"] = str(sock)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "dgx_music", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    return proc.returncode or 0, out.decode(), err.decode()


async def cli_json(sock: Path, *args: str) -> Any:
    rc, out, err = await cli(sock, *args, "--json")
    assert rc == 0, err
    return json.loads(out)


async def test_generate_browse_edit_delete(studio: Any, tmp_path: Path) -> None:
    sock = studio.server.path
    res = await cli_json(sock, "generate", "funky bass groove", "--duration", "1", "--count", "2",
                         "--seed", "42", "--wait")
    assert res["state"] == "done" and res["seed"] == 42  # the job itself, as job.get answers, plus tracks
    ids = [t["id"] for t in res["tracks"]]
    for t in res["tracks"]:
        assert Path(t["file"]).is_file() and t["file"] == str(studio.data_dir / t["path"]) and t["seed"] == 42 and t["sample_rate"] == 32000
        assert t["prompt"] == "funky bass groove" and abs(t["duration"] - 1.0) < 0.05

    rc, out, _ = await cli(sock, "library", "--search", "funk")  # prefix of the last word
    assert rc == 0 and all(i in out for i in ids)
    rc, out, _ = await cli(sock, "queue", "--all")
    assert rc == 0 and "done" in out and "funky bass groove" in out

    rc, _, err = await cli(sock, "tag", ids[0], "+Bass", "+keeper", "-nothing")
    assert rc == 0, err
    await cli(sock, "rate", ids[0], "4")
    await cli(sock, "favorite", ids[0])
    await cli(sock, "rename", ids[0], "Groove One")
    await cli(sock, "notes", ids[0], "use for the intro")
    t = await cli_json(sock, "show", ids[0])
    assert (t["title"], t["rating"], t["favorite"], t["notes"]) == ("Groove One", 4, True, "use for the intro")
    assert t["tags"] == ["bass", "keeper"] and Path(t["file"]).is_file()
    assert [x["id"] for x in (await cli_json(sock, "library", "--favorite"))["tracks"]] == [ids[0]]
    assert [x["id"] for x in (await cli_json(sock, "library", "--tag", "keeper"))["tracks"]] == [ids[0]]
    assert [x["id"] for x in (await cli_json(sock, "library", "--search", "intro"))["tracks"]] == [ids[0]]
    rc, out, _ = await cli(sock, "show", ids[0])
    assert "Groove One" in out and "LUFS" in out and "bass keeper" in out

    rc, _, err = await cli(sock, "rate", ids[0], "9")
    assert rc == 2
    rc, _, err = await cli(sock, "show", "999-0")
    assert rc == 1 and "999-0" in err

    file = Path(t["file"])
    rc, out, err = await cli(sock, "rm", ids[1])
    assert rc == 0 and "trash" in out
    assert (await cli_json(sock, "library"))["tracks"][0]["id"] == ids[0]
    assert not (studio.data_dir / res["tracks"][1]["path"]).exists()
    assert list((studio.data_dir / "trash").iterdir())
    assert (await cli_json(sock, "library", "--empty-trash"))["removed"] == 1
    assert file.is_file()  # the other track is untouched


async def test_export_and_analyze(studio: Any, tmp_path: Path) -> None:
    sock = studio.server.path
    res = await cli_json(sock, "generate", "ambient pad", "--duration", "1", "--wait")
    tid = res["tracks"][0]["id"]
    out_dir = tmp_path / "out"
    exp = await cli_json(sock, "export", tid, "--to", str(out_dir), "--format", "flac", "--sample-rate", "48000")
    flac = Path(exp["exported"][0]["file"])
    assert flac.parent == out_dir and flac.suffix == ".flac"
    info = sf.info(str(flac))
    assert info.samplerate == 48000 and abs(info.duration - 1.0) < 0.05
    # No overwrite without asking; nothing else in the folder changes.
    before = flac.read_bytes()
    rc, out, err = await cli(sock, "export", tid, "--to", str(out_dir), "--format", "flac",
                             "--sample-rate", "48000")
    assert rc == 1 and flac.read_bytes() == before
    rc, _, err = await cli(sock, "export", tid, "--to", str(out_dir), "--format", "flac",
                           "--sample-rate", "48000", "--overwrite")
    assert rc == 0, err
    # Bulk selection by search.
    wav = await cli_json(sock, "export", "--search", "ambient", "--to", str(tmp_path / "bulk"))
    assert [e["id"] for e in wav["exported"]] == [tid]

    a = await cli_json(sock, "analyze", str(flac))
    assert a["sample_rate"] == 48000 and abs(a["lufs"] - (-14.0)) < 0.6 and a["true_peak"] <= -1.0
    assert {"bpm", "key", "bpm_confidence", "key_confidence", "duration"} <= set(a)
    rc, _, err = await cli(sock, "analyze", str(tmp_path / "missing.wav"))
    assert rc == 2 and "missing.wav" in err  # a file that is not there is bad input, like one that is not audio

    session = await cli_json(sock, "export", tid, "--ardour", str(tmp_path / "sess" / "sketch"))
    s = Path(session["session"])
    assert (s / "sketch.ardour").is_file() and list((s / "interchange" / "sketch" / "audiofiles").iterdir())


async def test_export_needs_a_selection(studio: Any, tmp_path: Path) -> None:
    rc, _, err = await cli(studio.server.path, "export", "--to", str(tmp_path))
    assert rc == 2 and "--search" in err


async def test_remix_and_play(studio: Any, tmp_path: Path) -> None:
    sock = studio.server.path
    first = await cli_json(sock, "generate", "steel drums", "--duration", "1", "--temperature", "0.8",
                           "--wait")
    src = first["tracks"][0]
    again = await cli_json(sock, "remix", src["id"], "--wait")
    job = again
    assert job["prompt"] == "steel drums" and job["params"]["temperature"] == 0.8
    assert job["seed"] != first["seed"] and again["tracks"][0]["id"] == f"{job['id']}-0"

    # Play with the player stubbed at the process boundary: a fake aplay that records its argv.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "argv"
    (bindir / "aplay").write_text(f"#!/bin/sh\necho \"$@\" > {log}\n")
    (bindir / "aplay").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DGX_MUSIC_")}
    env.update(DGX_MUSIC_SOCKET=str(sock), DGX_MUSIC_PLAYER="aplay", DGX_MUSIC_NO_SOUNDDEVICE="1",
               PATH=f"{bindir}:{env['PATH']}")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "dgx_music", "play", src["id"], env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert log.read_text().split() == ["-q", src["file"]]  # the library file itself: same machine
    assert "aplay" in out.decode()
