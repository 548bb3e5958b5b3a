"""Fault campaign scenarios that kill (bench/chaos.py): the daemon (kill9), its model worker (worker),
the daemon at failpoints in post-processing (postproc), and a disk that fills up (diskfull)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any


from dgx_music.common.client import RemoteError

from chaos_harness import Daemon, Outcome, _served, audit, call, kill9_and_restart, library, submit, wait_drained


def scenario_kill9(root: Path, model: Path, n: int, rng: random.Random) -> Outcome:
    out = Outcome("kill9")
    d = Daemon(root, model)
    d.start()
    jobs: dict[int, int] = {}
    seen: dict[str, dict[str, Any]] = {}
    for _ in range(n):
        for _ in range(rng.randint(1, 3)):
            j = submit(d, rng)
            jobs[j["id"]] = j["count"]
        time.sleep(rng.uniform(0.05, 2.5))
        seen.update(library(d))
        out.tried += 1
        if not kill9_and_restart(d, out):
            return out
    if not wait_drained(d, 120 + 20 * len(jobs)):
        out.notes.append("queue did not drain")
    audit(d, jobs, seen, out)
    d.stop()
    return out


def scenario_worker(root: Path, model: Path, n: int, rng: random.Random) -> Outcome:
    out = Outcome("worker")
    d = Daemon(root, model)
    d.start()
    jobs: dict[int, int] = {}
    for _ in range(n):
        j = submit(d, rng)
        jobs[j["id"]] = j["count"]
        deadline = time.monotonic() + 60
        pid = None
        while time.monotonic() < deadline:
            st = call(d.socket, "model.state")
            if st.get("state") == "busy" and st.get("worker_pid"):
                pid = st["worker_pid"]
                break
            time.sleep(0.02)
        out.tried += 1
        if pid is None:
            out.notes.append(f"job {j['id']}: never saw the worker busy")
            continue
        time.sleep(rng.uniform(0.0, 0.3))
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if d.alive() and _served(d.socket):
            out.survived += 1
        wait_drained(d, 120)
    audit(d, jobs, {}, out)
    d.stop()
    return out


def scenario_postproc(root: Path, model: Path, n: int, rng: random.Random) -> Outcome:
    out = Outcome("postproc")
    d = Daemon(root, model)
    jobs: dict[int, int] = {}
    seen: dict[str, dict[str, Any]] = {}
    points = ["processing", "after_files"]
    for i in range(n):
        d.start(DGX_MUSIC_FAILPOINT=points[i % len(points)])
        j = submit(d, rng)
        jobs[j["id"]] = j["count"]
        out.tried += 1
        assert d.proc is not None
        try:
            d.proc.wait(120)  # the failpoint kills the daemon
        except subprocess.TimeoutExpired:
            out.notes.append(f"failpoint {points[i % len(points)]} did not fire")
            d.kill9()
        d.start()
        if wait_drained(d, 120):
            out.survived += 1
        seen.update(library(d))
        d.stop()
    d.start()
    audit(d, jobs, seen, out)
    d.stop()
    return out


def scenario_diskfull(root: Path, model: Path, rng: random.Random) -> Outcome:
    out = Outcome("diskfull")
    if os.geteuid() != 0:
        out.skipped = "needs root to mount a tmpfs"
        return out
    mnt = root / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        out.skipped = "mount -t tmpfs is not allowed here"
        return out
    try:
        # A 1 MiB margin: the default 200 MiB (daemon.min_free_mb) is more than this whole tmpfs.
        d = Daemon(root, model, data_dir=mnt / "data", DGX_MUSIC_MIN_FREE_MB="1")
        d.start()
        jobs: dict[int, int] = {}
        for _ in range(3):
            j = submit(d, rng)
            jobs[j["id"]] = j["count"]
        wait_drained(d, 120)
        seen = library(d)
        # Fill the disk while a job runs, then queue more work.
        running = call(d.socket, "job.submit", {"prompt": "fills up", "duration": 3.0, "count": 2})
        jobs[running["id"]] = running["count"]
        log_before = d.log.stat().st_size
        filler = mnt / "filler"
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * (1 << 20))
            except OSError:
                pass
        out.tried += 1
        try:
            j = submit(d, rng)
            jobs[j["id"]] = j["count"]
            out.notes.append("a submission was accepted on a full disk")
        except RemoteError as exc:
            if exc.code == "internal":
                out.internal += 1
            elif exc.code != "disk_full":
                out.notes.append(f"submission on a full disk answered {exc.code}")
        status = call(d.socket, "status")
        if not _says_disk_full(status):
            out.notes.append("status does not say the disk is full")
        time.sleep(3.0)  # let the runner meet the full disk for a while: it must pause, not spin
        logged = d.log.stat().st_size - log_before
        if logged > 200_000:
            out.notes.append(f"{logged} bytes of log in 3 s on a full disk (spinning?)")
        filler.unlink()
        # Space is back: work resumes by itself.
        j = submit(d, rng)
        jobs[j["id"]] = j["count"]
        if wait_drained(d, 120) and d.alive():
            out.survived += 1
        audit(d, jobs, seen, out)
        d.stop()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    return out


def _says_disk_full(status: dict[str, Any]) -> bool:
    return "disk_full" in json.dumps(status, default=str)
