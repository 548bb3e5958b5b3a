"""What a new user following the README ran into (issue 22, "A new user's list"), as they would type it:
exit codes by kind of error, messages that name the right limits, export writing exactly the folder asked,
Ctrl-C and a failing player never leaving a traceback or a silent exit, progress on a pipe."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import soundfile as sf

from dgx_music.common.client import Client
from dgx_music.common.fmt import plural, with_article
from tests.cli.test_cli_e2e import cli

ROOT = Path(__file__).resolve().parents[2]


async def import_track(daemon: Any, tid: str = "77-0", seconds: float = 2.0) -> str:
    """A real track in the library without running a model."""
    rel = f"library/imported/{tid}.wav"
    (daemon.data_dir / rel).parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(48000 * seconds)) / 48000
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    sf.write(str(daemon.data_dir / rel), np.stack([tone, tone], axis=1), 48000)
    await daemon.store.import_tracks([{"id": tid, "prompt": "a plain tone", "path": rel, "duration": seconds,
                                       "sample_rate": 48000, "channels": 2, "model": "small"}])
    return tid


# ------------------------------------------------------------------------------------- wording
def test_counts_and_articles_agree() -> None:
    assert [plural(n, "track") for n in (0, 1, 2, 1200)] == ["0 tracks", "1 track", "2 tracks", "1,200 tracks"]
    assert plural(1, "melody", "melodies") == "1 melody" and plural(3, "melody", "melodies") == "3 melodies"
    assert with_article("ace-step") == "an ace-step" and with_article("musicgen") == "a musicgen"
    assert with_article("ACE-Step") == "an ACE-Step" and with_article("'llama'") == "a 'llama'"


def test_no_message_guesses_a_plural_or_an_article() -> None:
    """"1 tracks", "file(s)", "a ace-step job": every count and article goes through common/fmt."""
    import io
    import tokenize

    guessed = re.compile(r"[a-z]\(s\)|\b(?:a|an) \{")
    offenders = []
    for folder in ("cli", "tui", "common", "daemon"):
        for path in (ROOT / folder).rglob("*.py"):
            for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
                # Python 3.11 keeps an f-string one STRING token; 3.12 splits it into FSTRING_* parts.
                if tok.type == tokenize.STRING or tok.type == getattr(tokenize, "FSTRING_MIDDLE", -1):
                    if guessed.search(tok.string):
                        offenders.append(f"{path.relative_to(ROOT)}:{tok.start[0]}: {tok.string[:80]}")
    assert not offenders, "\n".join(offenders)


def test_export_help_states_the_tracks_own_rate() -> None:
    from dgx_music.cli.main import build_parser

    parser = build_parser()
    export = parser._subparsers._group_actions[0].choices["export"]  # type: ignore[union-attr]
    text = " ".join(export.format_help().split())
    assert "each track's own rate (32000 for MusicGen tracks, 48000 for ACE-Step ones)" in text


# ------------------------------------------------------------------------------------- exit codes
#: Every command that takes a track id, with what else it needs; each names the missing track 999-0.
TRACK_COMMANDS = [
    ("show", "999-0"), ("play", "999-0"), ("tag", "999-0", "+x"), ("rate", "999-0", "3"),
    ("favorite", "999-0"), ("rename", "999-0", "t"), ("notes", "999-0", "n"), ("rm", "999-0"),
    ("remix", "999-0"), ("extend", "999-0", "--by", "5"), ("export", "999-0", "--to", "{tmp}/out"),
    ("repaint", "999-0", "--from", "1", "--to", "2", "--model", "ace-step"),
    ("cover", "999-0", "bossa nova", "--model", "ace-step"), ("stems", "999-0"),
    ("add-part", "999-0", "drums", "--model", "ace-step-base"), ("generate", "x", "--melody", "999-0", "--model", "melody"),
]


@pytest.mark.parametrize("argv", TRACK_COMMANDS, ids=lambda a: a[0])
async def test_a_missing_track_is_not_found_with_one_exit_code(daemon: Any, tmp_path: Path,
                                                              argv: tuple[str, ...]) -> None:
    """README: 1 the request failed (not_found among them). Every command, the same code and exit."""
    rc, out, err = await cli(daemon.server.path, *(a.format(tmp=tmp_path) for a in argv), "--json")
    error = json.loads(out)["error"]
    assert (rc, error["code"]) == (1, "not_found"), (out, err)
    assert "999-0" in error["message"]


async def test_analyze_of_a_file_that_is_not_audio_is_bad_input(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not audio at all\n")
    rc, out, err = await cli(tmp_path / "none.sock", "analyze", str(text), "--json")
    res = json.loads(out)
    assert rc == 2 and res["code"] == "invalid_params" and "cannot decode" in res["error"], (out, err)


# ------------------------------------------------------------------------------------- messages
async def test_repaint_with_the_span_backwards_says_so(tmp_path: Path) -> None:
    rc, out, err = await cli(tmp_path / "none.sock", "repaint", "12-0", "--from", "15", "--to", "10", "--json")
    error = json.loads(out)["error"]
    assert rc == 2 and error["field"] == "end", out
    assert error["message"] == "--to: must be after --from (15 s), got 10 s"


@pytest.mark.parametrize("model,args,words", [
    ("small", ("--duration", "0"), "--duration: must be between 0.5 s and 300 s, got 0 s"),
    ("small", ("--bpm", "0"), "--bpm: bpm is an ACE-Step parameter; musicgen does not take it"),
    ("small", ("--bpm", "96"), "--bpm: bpm is an ACE-Step parameter; musicgen does not take it"),
    ("ace-step", ("--duration", "0"), "--duration: must be between 10 s and 600 s, got 0 s"),
    ("ace-step", ("--key", "H major"), "--key: must be one of the 24 keys"),
    ("ace-step", ("--top-k", "5"), "--top-k: top_k is a MusicGen parameter; ace-step does not take it"),
])
async def test_limits_are_the_daemon_models_family(daemon_factory: Callable[..., Any], model: str,
                                                   args: tuple[str, ...], words: str) -> None:
    """No --model: the daemon's model decides the family, so its limits are the ones named."""
    d = await daemon_factory(engine__model=model)
    rc, out, err = await cli(d.server.path, "generate", "synthwave", *args, "--json")
    error = json.loads(out)["error"]
    assert rc == 2 and error["code"] == "invalid_params", (out, err)
    assert error["message"].startswith(words), error["message"]
    async with await Client.connect(d.server.path) as c:
        assert (await c.call("job.list", {"all": True}))["jobs"] == []


async def test_what_every_family_refuses_is_refused_before_connecting(tmp_path: Path) -> None:
    rc, out, _ = await cli(tmp_path / "none.sock", "generate", "x", "--count", "0", "--json")
    assert rc == 2 and json.loads(out)["error"]["field"] == "count"


# ------------------------------------------------------------------------------------- ardour
async def test_export_ardour_writes_exactly_the_folder_asked(daemon: Any, tmp_path: Path) -> None:
    tid = await import_track(daemon)
    dest = tmp_path / "my_session"
    rc, out, err = await cli(daemon.server.path, "export", tid, "--ardour", str(dest), "--json")
    assert rc == 0, err
    assert json.loads(out)["session"] == str(dest)
    assert (dest / "my_session.ardour").is_file() and not (tmp_path / "my-session").exists()
    # Again: the folder exists; an exit code and one line, never a traceback.
    rc, out, err = await cli(daemon.server.path, "export", tid, "--ardour", str(dest))
    assert rc == 1 and "exists" in err and "Traceback" not in err
    rc, out, err = await cli(daemon.server.path, "export", tid, "--ardour", str(tmp_path / "a:b"), "--json")
    assert rc == 2 and json.loads(out)["error"]["field"] == "ardour" and not (tmp_path / "a:b").exists()


# ------------------------------------------------------------------------------------- following a job
async def test_listen_to_a_file_shows_progress_on_a_pipe(studio: Any, tmp_path: Path) -> None:
    async with await Client.connect(studio.server.path) as c:
        job = await c.call("job.submit", {"prompt": "progress", "duration": 2.0, "seed": 3})
    rc, out, err = await cli(studio.server.path, "listen", str(job["id"]), "--to", str(tmp_path / "p.wav"))
    assert rc == 0, err
    assert re.search(rf"^job {job['id']}: \d+\.\d s received$", err, re.M), err  # stderr is a pipe here
    assert "2.0 s streamed" in out


async def test_generate_listen_with_a_player_that_dies_keeps_the_job(studio: Any, tmp_path: Path) -> None:
    """A player that passes the start-up probe and then exits (ffplay without a device): one line,
    exit 1 with no_audio_output, no traceback; the job is the daemon's and finishes."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "aplay").write_text("#!/bin/sh\nsleep 0.7\nexit 0\n")
    (bin_dir / "aplay").chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "DGX_MUSIC_PLAYER": "aplay", "DGX_MUSIC_NO_SOUNDDEVICE": "1"}
    rc, out, err = await cli(studio.server.path, "generate", "dies", "--duration", "2", "--listen", "--json", env=env)
    assert "Traceback" not in err, err
    error = json.loads(out)["error"]
    assert rc == 1 and error["code"] == "no_audio_output" and "keeps running" in error["message"]
    async with await Client.connect(studio.server.path) as c:
        deadline = time.monotonic() + 120
        while (job := await c.call("job.get", {"id": error["job_id"]}))["state"] not in ("done", "failed"):
            assert time.monotonic() < deadline, job
            await asyncio.sleep(0.1)
    assert job["state"] == "done"


async def test_ctrl_c_while_waiting_says_the_job_goes_on(studio: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DGX_MUSIC_")}
    env["DGX_MUSIC_SOCKET"] = str(studio.server.path)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "dgx_music", "generate", "long one",
                                                "--duration", "20", "--wait", env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    line = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
    m = re.match(r"job (\d+) queued", line)
    assert m, line
    job_id = int(m.group(1))
    proc.send_signal(signal.SIGINT)
    out, rest = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 130
    assert f"job {job_id} keeps running in the daemon; `dgx-music cancel {job_id}` stops it" in rest.decode()
    async with await Client.connect(studio.server.path) as c:
        assert (await c.call("job.get", {"id": job_id}))["state"] != "cancelled"
        await c.call("job.cancel", {"id": job_id})


async def test_play_with_a_player_that_exits_at_once_says_so(daemon: Any, tmp_path: Path) -> None:
    """ffplay without an audio device exits 0 at once: `play` must not claim it played."""
    tid = await import_track(daemon, seconds=3.0)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ffplay").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "ffplay").chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "DGX_MUSIC_PLAYER": "ffplay", "DGX_MUSIC_NO_SOUNDDEVICE": "1"}
    rc, out, err = await cli(daemon.server.path, "play", tid, "--json", env=env)
    error = json.loads(out)["error"]
    assert rc == 1 and error["code"] == "no_audio_output" and "ffplay stopped after" in error["message"], (out, err)
