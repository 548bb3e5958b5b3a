"""The fault campaign's harness (bench/chaos.py): a killable daemon in a child process, calls to it,
and the audit every scenario ends with (no track lost, no job stuck or made twice)."""

from __future__ import annotations

import asyncio
import os
import random
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


from dgx_music.common.client import Client, RemoteError


STEP_DELAY = "0.02"  # seconds per decode step in the worker: room to kill mid-generation


@dataclass
class Outcome:
    scenario: str
    tried: int = 0
    survived: int = 0
    lost: int = 0
    internal: int = 0
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return self.skipped is not None or (self.lost == 0 and self.internal == 0 and self.survived == self.tried)


class Daemon:
    """One daemon process on a data directory; restartable, killable."""

    def __init__(self, root: Path, model: Path, data_dir: Path | None = None, http: str = "off",
                 nofile: int | None = None, wrap: Callable[[list[str]], list[str]] | None = None, **env: str) -> None:
        self.root = root
        self.wrap = wrap  # e.g. tests/netns.py's command: the daemon in a network namespace of its own
        self.http = http  # off unless a scenario needs it: parallel campaigns must not share a port
        self.nofile = nofile  # RLIMIT_NOFILE for the daemon, or None for ours
        self.socket = root / "d.sock"
        self.data_dir = data_dir or root / "data"
        self.model = model
        self.log = root / "daemon.log"
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0, **extra_env: str) -> "Daemon":
        env = {k: v for k, v in os.environ.items() if not k.startswith("DGX_MUSIC_")}
        # The HTTP token file goes into the campaign's directory, never the user's config.
        env.update({"PYTHONUNBUFFERED": "1", "DGX_MUSIC_TEST_STEP_DELAY": STEP_DELAY,
                    "XDG_CONFIG_HOME": str(self.root / "config"), **self.env, **extra_env})
        nofile = self.nofile

        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        argv = [sys.executable, "-m", "dgx_music", "daemon", "--socket", str(self.socket),
                "--data-dir", str(self.data_dir), "--model", str(self.model), "--log-level", "info",
                "--http", self.http]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.wrap(argv) if self.wrap else argv,
                                         stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=limit)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}; see {self.log}")
            if self.socket.exists() and _served(self.socket):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"daemon not ready in {timeout:g} s; see {self.log}")

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(30)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _served(sock: Path, timeout: float = 2.0) -> bool:
    try:
        asyncio.run(_call(sock, "status", timeout=timeout))
        return True
    except Exception:
        return False


async def _call(sock: Path, method: str, params: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
    async with await Client.connect(sock, timeout=timeout) as c:
        return await c.call(method, params or {}, timeout=timeout)


def call(sock: Path, method: str, params: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
    return asyncio.run(_call(sock, method, params, timeout))


def submit(d: Daemon, rng: random.Random) -> dict[str, Any]:
    return call(d.socket, "job.submit", {"prompt": f"chaos {rng.randrange(10**6)}",
                                         "duration": rng.choice([0.5, 1.0]), "count": rng.choice([1, 2])})


def library(d: Daemon) -> dict[str, dict[str, Any]]:
    """Every track the daemon lists, by id."""
    out: dict[str, dict[str, Any]] = {}
    cursor = None
    while True:
        page = call(d.socket, "track.list", {"limit": 500, **({"cursor": cursor} if cursor else {})})
        out.update({t["id"]: t for t in page["tracks"]})
        cursor = page.get("next_cursor")
        if not cursor:
            return out


def readable(d: Daemon, track: dict[str, Any]) -> bool:
    import soundfile as sf

    try:
        info = sf.info(str(d.data_dir / track["path"]))
        return info.frames > 0
    except Exception:
        return False


def kill9_and_restart(d: Daemon, out: Outcome) -> bool:
    """kill -9 the daemon and start it again: a restart counts as survived; False (noted) if it fails."""
    d.kill9()
    try:
        d.start()
    except RuntimeError as exc:
        out.notes.append(f"restart failed: {exc}")
        return False
    out.survived += 1
    return True


def wait_drained(d: Daemon, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        q = call(d.socket, "status")["queue"]
        if not q.get("queued") and not q.get("running") and not q.get("processing"):
            return True
        time.sleep(0.2)
    return False


def audit(d: Daemon, jobs: dict[int, int], seen_tracks: dict[str, dict[str, Any]], out: Outcome) -> None:
    """After the queue drains: every job is there, finished ones own exactly `count` readable tracks,
    and every track seen before a kill is still there."""
    tracks = library(d)
    for tid in seen_tracks:
        if tid not in tracks:
            out.lost += 1
            out.notes.append(f"track {tid} vanished")
    by_job: dict[int, int] = {}
    for t in tracks.values():
        by_job[t["job_id"]] = by_job.get(t["job_id"], 0) + 1
        if not readable(d, t):
            out.lost += 1
            out.notes.append(f"track {t['id']}: file unreadable")
    for job_id, count in jobs.items():
        try:
            job = call(d.socket, "job.get", {"id": job_id})
        except RemoteError as exc:
            out.lost += 1
            out.notes.append(f"job {job_id} lost: {exc.code}")
            continue
        if job["state"] == "done" and by_job.get(job_id, 0) != count:
            out.lost += 1
            out.notes.append(f"job {job_id}: {by_job.get(job_id, 0)} tracks for count {count}")
        elif job["state"] not in ("done", "failed", "cancelled"):
            out.lost += 1
            out.notes.append(f"job {job_id} stuck {job['state']}")
