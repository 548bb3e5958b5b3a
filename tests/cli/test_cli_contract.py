"""The CLI's scripting contract: JSON documents shaped like the protocol's, one error vocabulary,
exit codes by kind of error, --json for usage errors, global options, shell completion."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dgx_music.cli.common import CLI_CODES
from dgx_music.common.client import Client

from .test_cli_e2e import cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


async def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`dgx-music ARGS` with no DGX_MUSIC_* from the environment (the socket only from ARGS)."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DGX_MUSIC_")}, **(env or {})}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "dgx_music", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_generate_json_is_the_job_with_and_without_wait(studio: Any) -> None:
    sock = studio.server.path
    rc, out, err = await cli(sock, "generate", "glass harmonica", "--duration", "0.5", "--json")
    assert rc == 0, err
    queued = json.loads(out)
    async with await Client.connect(sock) as c:
        stored = await c.call("job.get", {"id": queued["id"]})
    assert set(queued) == set(stored) and queued["prompt"] == "glass harmonica" and "tracks" not in queued

    rc, out, err = await cli(sock, "generate", "glass harmonica", "--duration", "0.5", "--count", "3", "--wait",
                             "--json")
    assert rc == 0, err
    done = json.loads(out)
    async with await Client.connect(sock) as c:
        job = await c.call("job.get", {"id": done["id"]})
        first = await c.call("track.get", {"id": job["track_ids"][0]})
    assert {k: v for k, v in done.items() if k != "tracks"} == job  # the job, unchanged
    assert [t["id"] for t in done["tracks"]] == job["track_ids"]
    first.pop("peaks")
    assert done["tracks"][0] == first  # each track exactly as track.get answers (less peaks)
    assert Path(done["tracks"][0]["file"]).is_file() and not Path(done["tracks"][0]["path"]).is_absolute()

    # rm --json: what track.delete answers; a list for several ids.
    rc, out, err = await cli(sock, "rm", job["track_ids"][0], "--json")
    one = json.loads(out)
    assert rc == 0 and one["id"] == job["track_ids"][0] and one["trashed"].startswith("trash")
    rc, out, _ = await cli(sock, "rm", *job["track_ids"][1:], "--json")
    assert rc == 0 and [d["id"] for d in json.loads(out)] == job["track_ids"][1:]


async def test_errors_have_one_vocabulary_and_exit_by_kind(studio: Any, tmp_path: Path) -> None:
    sock = studio.server.path
    # A bad --limit (checked by the daemon) and a bad --duration (checked here) exit the same way.
    rc_limit, out_limit, _ = await cli(sock, "queue", "--limit", "0", "--json")
    rc_dur, out_dur, _ = await cli(sock, "generate", "x", "--duration", "9999", "--json")
    assert rc_limit == rc_dur == 2
    assert json.loads(out_limit)["error"]["code"] == json.loads(out_dur)["error"]["code"] == "invalid_params"
    assert json.loads(out_limit)["error"]["field"] == "limit" and json.loads(out_dur)["error"]["field"] == "duration"
    # Usage errors found by argparse: with --json, one JSON document on stdout, exit 2.
    rc, out, err = await cli(sock, "generate", "--json")
    assert rc == 2 and json.loads(out)["error"]["code"] == "usage" and "prompt" in json.loads(out)["error"]["message"]
    rc, out, _ = await cli(sock, "--json", "rate")
    assert rc == 2 and json.loads(out)["error"]["code"] == "usage"
    # Request failures exit 1; no daemon exits 3; each with its documented code.
    rc, out, _ = await cli(sock, "show", "999-0", "--json")
    assert rc == 1 and json.loads(out)["error"]["code"] == "not_found"
    rc, out, _ = await run("--socket", str(tmp_path / "none.sock"), "--json", "status")
    assert rc == 3 and json.loads(out)["error"]["code"] == "unreachable"
    table = DOC.read_text()
    for code in (*CLI_CODES, "too_many_clients", "not_cancellable", "forbidden"):
        assert f"| `{code}` |" in table, f"{code} is missing from the error table in docs/protocol.md"


async def test_global_options_before_the_subcommand(studio: Any) -> None:
    rc, out, err = await run("--socket", str(studio.server.path), "--json", "status")
    assert rc == 0, err
    assert json.loads(out)["data_dir"] == str(studio.data_dir)
    rc, out, _ = await run("--help")
    assert "--socket" in out and "--json" in out and "completion" in out


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_load_in_their_shell(shell: str, tmp_path: Path) -> None:
    pytest.importorskip("shtab", reason="shell completion needs shtab (pip install shtab)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DGX_MUSIC_")}
    r = subprocess.run([sys.executable, "-m", "dgx_music", "completion", shell], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "generate" in r.stdout and "--duration" in r.stdout and "library" in r.stdout
    script = tmp_path / f"completion.{shell}"
    script.write_text(r.stdout)
    exe = shutil.which(shell)
    if exe is None:
        return  # the script is generated; the shell to load it is not installed here
    check = {"bash": [exe, "-n", str(script)], "zsh": [exe, "-n", str(script)],
             "fish": [exe, "--no-execute", str(script)]}[shell]
    r = subprocess.run(check, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
