"""Fault campaign: kill the daemon and its worker at bad moments, fill the disk, send hostile bytes.

Every scenario runs a real daemon in a child process with a tiny random-weight MusicGen
(the real loaders, queue and library) and checks the promises users rely on:
no finished track and no queued job is lost, no job makes its tracks twice, the daemon
keeps serving a well-behaved client, and no request is answered `internal`.

    .venv/bin/python bench/chaos.py --quick          # ~1 minute; the test suite runs this
    .venv/bin/python bench/chaos.py --json > r.json  # the full campaign (docs/benchmarks.md)

Scenarios (each reports tried / survived / lost):
  kill9      kill -9 of the daemon at random moments while jobs run; restart; repeat
  worker     kill -9 of the model worker mid-generation
  postproc   the daemon killed by a failpoint while post-processing and between file and row
  diskfull   the data directory on a small tmpfs that fills up (root only; skipped otherwise)
  lockout    hundreds of connections that send half a header or nothing
  frames     hostile frames: garbage, huge lengths, non-maps, deep nesting, huge numbers
  paths      requests naming paths outside the data directory, and symlinks planted in it (folders
             and a track's file leading outside: refused, nothing outside touched)
  ops        kill -9 of the daemon mid stems job (tiny ACE-Step pipeline): each stem exists once,
             the source track and the daemon's stored source copy are unchanged
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import msgpack

from dgx_music.common import protocol
from dgx_music.common.client import Client, DaemonUnavailable, RemoteError

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

    def __init__(self, root: Path, model: Path, data_dir: Path | None = None, **env: str) -> None:
        self.root = root
        self.socket = root / "d.sock"
        self.data_dir = data_dir or root / "data"
        self.model = model
        self.log = root / "daemon.log"
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0, **extra_env: str) -> "Daemon":
        env = {k: v for k, v in os.environ.items() if not k.startswith("DGX_MUSIC_")}
        env.update({"PYTHONUNBUFFERED": "1", "DGX_MUSIC_TEST_STEP_DELAY": STEP_DELAY, **self.env, **extra_env})
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dgx_music", "daemon", "--socket", str(self.socket),
                 "--data-dir", str(self.data_dir), "--model", str(self.model), "--log-level", "info"],
                stdout=log, stderr=subprocess.STDOUT, env=env)
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


# --------------------------------------------------------------------------- scenarios
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


async def _lockout(sock: Path, conns: int, grace: float) -> tuple[bool, int]:
    """`conns` connections send half a header or nothing; can a new client still get an answer,
    and are the stale ones closed within `grace` seconds?"""
    stale = []
    for i in range(conns):
        try:
            r, w = await asyncio.open_unix_connection(str(sock))
        except OSError:
            break
        if i % 2:
            w.write(b"\0\0")
        stale.append((r, w))
    try:
        # The stale connections share our uid (so the owner's reserved slots are theirs too): a
        # well-behaved client must get an answer once the idle timeout has let them go.
        served = False
        deadline = time.monotonic() + grace
        while not served and time.monotonic() < deadline:
            try:
                async with await Client.connect(sock, timeout=5.0) as c:
                    await c.call("status", timeout=5.0)
                    served = True
            except (RemoteError, DaemonUnavailable, OSError, asyncio.TimeoutError):
                await asyncio.sleep(0.5)
        closed = 0
        for r, _ in stale:
            try:
                await asyncio.wait_for(r.read(), max(0.01, deadline - time.monotonic()))
                closed += 1  # EOF (or an error frame then EOF): the daemon let go
            except (asyncio.TimeoutError, OSError):
                pass
        return served, len(stale) - closed
    finally:
        for _, w in stale:
            w.close()


def scenario_lockout(root: Path, model: Path, rounds: int, conns: int, idle_timeout: float) -> Outcome:
    out = Outcome("lockout")
    d = Daemon(root, model, DGX_MUSIC_IDLE_TIMEOUT=str(idle_timeout))
    d.start()
    grace = idle_timeout + 5.0
    for _ in range(rounds):
        out.tried += 1
        served, held = asyncio.run(_lockout(d.socket, conns, grace=grace))
        if served and held == 0 and _served(d.socket):
            out.survived += 1
        else:
            out.notes.append(f"served={served}, {held} stale connections still held after {grace:g} s")
    d.stop()
    return out


def _hostile_frames(rng: random.Random, n: int) -> list[bytes]:
    def frame(obj: Any) -> bytes:
        body = msgpack.packb(obj, use_bin_type=True)
        return struct.pack(">I", len(body)) + body

    deep = b"\x81\xa6params\x81\xa1a" + b"\x91" * 100_000 + b"\x00"  # {"params": {"a": [[[...]]]}}
    fixed = [
        struct.pack(">I", len(deep)) + deep,
        struct.pack(">I", 0xFFFFFFFF),
        struct.pack(">I", 5) + b"\xc1\xc1\xc1\xc1\xc1",
        frame([1, 2, 3]),
        frame({"id": 1, "method": 7}),
        frame({"id": 1, "method": "status", "params": [1]}),
        frame({"id": 1, "method": "job.get", "params": {"id": 2**63}}),
        frame({"id": 1, "method": "job.get", "params": {"id": -2**63}}),
        frame({"id": 1, "method": "job.submit", "params": {"prompt": "x", "model": "m" * 300}}),
        frame({"id": 1, "method": "job.submit", "params": {"prompt": "x", "duration": float("nan")}}),
        frame({"id": 1, "method": "job.submit", "params": {"prompt": "x", "count": 2**64 - 1}}),
        frame({"id": 1, "method": "track.list", "params": {"limit": 2**62, "search": "\0" * 100}}),
        frame({"id": 1, "method": "track.update", "params": {"id": "1-0", "tags_add": [{"a": 1}]}}),
        frame({"id": 1}),
        frame({"id": {"nested": True}, "method": "status"}),
        frame({"id": 1, "method": "x" * 10000}),
    ]
    methods = ["status", "job.submit", "job.get", "job.cancel", "job.move", "job.list", "track.list",
               "track.get", "track.update", "track.delete", "track.audio", "model.load", "subscribe",
               "job.prune", "prompt.history"]
    values: list[Any] = [None, True, -1, 0, 2**63, 2**64 - 1, -2**63, 1e308, float("inf"), "", "x" * 5000,
                         "../../etc/passwd", "/etc/passwd", b"\0\1", [], {}, [1, "a"], {"a": {"b": None}}]
    fields = ["id", "prompt", "duration", "count", "seed", "model", "limit", "cursor", "search", "to",
              "offset", "size", "title", "tags_add", "melody", "extend", "topics", "older_than_days"]
    out = list(fixed)
    while len(out) < n:
        if rng.random() < 0.1:
            out.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))))
            continue
        params = {rng.choice(fields): rng.choice(values) for _ in range(rng.randrange(0, 4))}
        out.append(frame({"id": rng.randrange(1, 10**6), "method": rng.choice(methods), "params": params}))
    return out


async def _send_frames(sock: Path, frames: list[bytes]) -> tuple[int, int, list[str]]:
    """Send each frame on its own connection; count answers and `internal` errors."""
    answered = internal = 0
    notes: list[str] = []
    for f in frames:
        r, w = await asyncio.open_unix_connection(str(sock))
        try:
            w.write(f)
            await w.drain()
            try:
                msg = await protocol.read_frame(r, max_frame=64 * 1024 * 1024, timeout=10.0)
            except (protocol.ProtocolError, asyncio.TimeoutError, ConnectionError):
                msg = None
            if msg is not None:
                answered += 1
                err = msg.get("error") or {}
                if err.get("code") == "internal":
                    internal += 1
                    if len(notes) < 5:
                        notes.append(f"internal for {f[:80]!r}: {err.get('message')}")
        finally:
            w.close()
    return answered, internal, notes


def scenario_frames(root: Path, model: Path, n: int, rng: random.Random) -> Outcome:
    out = Outcome("frames")
    d = Daemon(root, model)
    d.start()
    frames = _hostile_frames(rng, n)
    answered, internal, notes = asyncio.run(_send_frames(d.socket, frames))
    out.tried = len(frames)
    out.internal = internal
    out.notes += notes
    out.survived = len(frames) if d.alive() and _served(d.socket) else 0
    out.notes.append(f"{answered} answered with a frame, the rest closed")
    d.stop()
    return out


def scenario_paths(root: Path, model: Path, rng: random.Random) -> Outcome:
    """Requests that name paths outside the data directory: refused, never read or written."""
    out = Outcome("paths")
    d = Daemon(root, model)
    d.start()
    secret = root / "outside-secret.txt"
    secret.write_text("do not read me")
    probes: list[tuple[str, dict[str, Any]]] = [
        ("track.audio", {"id": "../../outside-secret.txt"}),
        ("track.audio", {"id": str(secret)}),
        ("track.get", {"id": "../1-0"}),
        ("track.delete", {"id": "/etc/passwd"}),
        ("job.submit", {"prompt": "x", "model": str(root)}),
        ("job.submit", {"prompt": "x", "model": "/etc"}),
        ("job.submit", {"prompt": "x", "model": "../../.."}),
        ("job.submit", {"prompt": "x", "melody": "../outside-secret.txt"}),
        ("job.submit", {"prompt": "x", "melody": str(secret)}),
        ("job.submit", {"prompt": "x", "extend": "../../outside"}),
        ("model.load", {"model": str(secret)}),
    ]
    for method, params in probes:
        out.tried += 1
        try:
            res = call(d.socket, method, params)
            if "do not read me" in json.dumps(res, default=repr):
                out.lost += 1
                out.notes.append(f"{method} {params} leaked the outside file")
            else:
                out.notes.append(f"{method} {params} was accepted")
        except RemoteError as exc:
            if exc.code == "internal":
                out.internal += 1
                out.notes.append(f"{method} {params}: internal: {exc.message}")
            else:
                out.survived += 1
    if secret.read_text() != "do not read me":
        out.lost += 1
    _symlink_cases(d, root, out)
    d.stop()
    return out


def _wait_job(d: Daemon, job_id: int, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = call(d.socket, "job.get", {"id": job_id})
        if job["state"] in ("done", "failed", "cancelled") or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def _symlink_cases(d: Daemon, root: Path, out: Outcome) -> None:
    """Symlinks planted in the data dir (a folder, or a track's file, leading outside): each write or
    delete through one is refused (`forbidden`, a failed job, a refused start) and nothing outside
    changes. Bounded: one tiny job, two probes and one start per folder."""
    import datetime as dt

    outside = root / "outside"
    outside.mkdir()
    precious = outside / "precious.wav"
    precious.write_bytes(b"do not touch")

    def intact() -> bool:
        return sorted(p.name for p in outside.iterdir()) == ["precious.wav"] and precious.read_bytes() == b"do not touch"

    def verdict(case: str, refused: bool, why: str = "") -> None:
        out.tried += 1
        if not intact():
            out.lost += 1
            out.notes.append(f"symlink {case}: a file outside the data dir was touched")
            for p in outside.iterdir():
                if p != precious:
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            precious.write_bytes(b"do not touch")
        elif refused:
            out.survived += 1
        else:
            out.notes.append(f"symlink {case}: not refused {why}")

    def probe(case: str, method: str, params: dict[str, Any]) -> None:
        try:
            call(d.socket, method, params)
            verdict(case, False, "(accepted)")
        except RemoteError as exc:
            if exc.code == "internal":
                out.internal += 1
                out.notes.append(f"symlink {case}: internal: {exc.message}")
            verdict(case, exc.code == "forbidden", f"({exc.code})")

    def plant(rel: str) -> Callable[[], None]:
        """Replace data/rel by a link to `outside` (a real folder is set aside); returns the undo."""
        link = d.data_dir / rel
        aside = link.with_name(link.name + ".aside")
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.exists():
            link.rename(aside)
        link.symlink_to(outside, target_is_directory=True)

        def undo() -> None:
            link.unlink()
            if aside.exists():
                aside.rename(link)
        return undo

    month = f"library/{dt.datetime.now():%Y/%m}"
    undo = plant(month)  # a job's file would be written through it
    job = _wait_job(d, call(d.socket, "job.submit", {"prompt": "chaos link", "duration": 0.5})["id"])
    verdict("job writing through library/YYYY/MM", job["state"] == "failed" and "symlink" in (job.get("error") or ""),
            f"(job {job['state']}: {job.get('error')})")
    undo()
    undo = plant("trash")
    probe("library.empty_trash through trash/", "library.empty_trash", {})
    undo()
    job = _wait_job(d, call(d.socket, "job.submit", {"prompt": "chaos link", "duration": 0.5})["id"])
    if job["state"] == "done":
        tid = job["track_ids"][0]
        f = d.data_dir / call(d.socket, "track.get", {"id": tid})["path"]
        f.rename(f.with_name(f.name + ".aside"))
        f.symlink_to(precious)  # the track's own file now leads outside
        probe("track.audio of a file linked outside", "track.audio", {"id": tid})
        probe("track.delete of a file linked outside", "track.delete", {"id": tid})
        f.unlink()
        f.with_name(f.name + ".aside").rename(f)
    else:
        out.notes.append(f"symlink: a plain job ended {job['state']}")
    d.stop()
    for rel in ("trash", "sources", "melodies", "orphans", "library", month):
        undo = plant(rel)
        size = d.log.stat().st_size if d.log.exists() else 0
        try:
            d.start(timeout=30)
            d.stop()
            verdict(f"start with {rel} linked", False, "(the daemon started)")
        except RuntimeError:
            with open(d.log, "rb") as f:
                f.seek(size)
                said = f.read().decode("utf-8", "replace")
            verdict(f"start with {rel} linked", "symlink" in said, "(no reason given)")
        undo()
    d.start()


OP_PARTS = ["drums", "bass", "guitar"]


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tone(seconds: float) -> bytes:
    """A stereo FLAC for the source upload: two sines (not silent, so the daemon takes it)."""
    import io

    import numpy as np
    import soundfile as sf

    t = np.arange(int(seconds * 44100)) / 44100
    a = np.stack([0.4 * np.sin(2 * np.pi * 220 * t), 0.3 * np.sin(2 * np.pi * 331 * t)], axis=1)
    buf = io.BytesIO()
    sf.write(buf, a.astype(np.float32), 44100, format="FLAC")
    return buf.getvalue()


def _wait_running(d: Daemon, job_id: int, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if call(d.socket, "job.get", {"id": job_id})["state"] == "running":
            return True
        time.sleep(0.05)
    return False


def scenario_ops(root: Path, model: Path, n: int, rng: random.Random) -> Outcome:
    """kill -9 of the daemon while a stems job on a library track runs; restart; drain. Each stem
    job then owns exactly one track per part, each as long as the source, listed once among the
    source's derived tracks; the source track's file and the stored source copies are unchanged."""
    import soundfile as sf

    out = Outcome("ops")
    d = Daemon(root, model, DGX_MUSIC_TEST_STEP_DELAY="0.1")
    d.start()
    first = call(d.socket, "op.stems", {"source_audio": _tone(2.0), "source_name": "chaos.flac", "parts": ["vocals"],
                                        "steps": 2, "seed": 1})
    jobs: dict[int, int] = {first["id"]: 1}
    if not wait_drained(d, 300):
        out.notes.append("the source job did not finish")
        return out
    src = call(d.socket, "job.get", {"id": first["id"]})["track_ids"][0]
    src_track = call(d.socket, "track.get", {"id": src})
    src_file = d.data_dir / src_track["path"]
    src_sha, src_frames = _sha(src_file), sf.info(str(src_file)).frames
    stored: dict[Path, str] = {}  # the daemon's source copies, as first seen
    seen: dict[str, dict[str, Any]] = {}
    for _ in range(n):
        j = call(d.socket, "op.stems", {"source": src, "parts": OP_PARTS, "steps": 4, "seed": rng.randrange(1000)})
        jobs[j["id"]] = len(OP_PARTS)
        for p in (d.data_dir / "sources").glob("*.wav"):
            stored.setdefault(p, _sha(p))
        out.tried += 1
        if not _wait_running(d, j["id"]):
            out.notes.append(f"job {j['id']} never ran")
            continue
        time.sleep(rng.uniform(0.05, 1.0))
        seen.update(library(d))
        if not kill9_and_restart(d, out):
            return out
    if not wait_drained(d, 300 + 60 * n):
        out.notes.append("queue did not drain")
    audit(d, jobs, seen, out)
    tracks = library(d)
    derived = call(d.socket, "track.lineage", {"id": src})["derived"]
    ids = [x["id"] for x in derived]
    if len(ids) != len(set(ids)):
        out.lost += 1
        out.notes.append(f"a derived track listed twice: {ids}")
    for job_id in list(jobs)[1:]:
        job = call(d.socket, "job.get", {"id": job_id})
        if job["state"] != "done":
            out.notes.append(f"job {job_id} ended {job['state']}")
            continue
        parts = sorted(x["part"] for x in derived if x["id"] in job["track_ids"])
        if parts != sorted(OP_PARTS):
            out.lost += 1
            out.notes.append(f"job {job_id}: stems {parts} in the lineage, want {sorted(OP_PARTS)}")
        for tid in job["track_ids"]:
            t = tracks.get(tid)
            if t is None or not readable(d, t) or sf.info(str(d.data_dir / t["path"])).frames != src_frames:
                out.lost += 1
                out.notes.append(f"stem {tid} missing, unreadable or not as long as the source")
    if src not in tracks or _sha(src_file) != src_sha:
        out.lost += 1
        out.notes.append(f"source track {src} changed or vanished")
    for p, sha in stored.items():
        if not p.is_file() or _sha(p) != sha:
            out.lost += 1
            out.notes.append(f"stored source {p.name} changed or vanished")
    d.stop()
    return out


# --------------------------------------------------------------------------- driver
def build_model(root: Path) -> Path:
    from dgx_music.daemon.engine.testmodel import build_test_model

    return build_test_model(root / "tiny-musicgen", backend="transformers")


def _acestep(work: Path) -> Path:
    """A tiny ACE-Step pipeline (the operations need one), built only when its scenario runs."""
    from dgx_music.daemon.engine.testmodel import build_test_model

    return build_test_model(work / "tiny-acestep", family="ace-step")


def run(args: argparse.Namespace) -> list[Outcome]:
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="dgxm-chaos-", dir="/tmp"))
    outcomes: list[Outcome] = []
    try:
        model = build_model(work)
        plan: list[tuple[str, Callable[[Path], Outcome]]] = [
            ("kill9", lambda r: scenario_kill9(r, model, args.kills, rng)),
            ("worker", lambda r: scenario_worker(r, model, args.worker_kills, rng)),
            ("postproc", lambda r: scenario_postproc(r, model, args.post_kills, rng)),
            ("diskfull", lambda r: scenario_diskfull(r, model, rng)),
            ("lockout", lambda r: scenario_lockout(r, model, args.lockout_rounds, args.lockout_conns,
                                                   args.idle_timeout)),
            ("frames", lambda r: scenario_frames(r, model, args.frames, rng)),
            ("paths", lambda r: scenario_paths(r, model, rng)),
            ("ops", lambda r: scenario_ops(r, _acestep(work), args.op_kills, rng)),
        ]
        for name, fn in plan:
            if args.only and name not in args.only:
                continue
            root = work / name
            root.mkdir()
            t0 = time.monotonic()
            try:
                o = fn(root)
            except Exception as exc:  # a scenario that breaks is a finding, not a crash of the campaign
                o = Outcome(name, tried=1, notes=[f"scenario failed: {type(exc).__name__}: {exc}"])
            o.seconds = round(time.monotonic() - t0, 1)
            outcomes.append(o)
            if not args.json:
                print(_row(o), flush=True)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return outcomes


def _row(o: Outcome) -> str:
    if o.skipped:
        return f"{o.scenario:9s} skipped: {o.skipped}"
    verdict = "ok" if o.ok else "FAIL"
    notes = "; ".join(o.notes[:6])
    return (f"{o.scenario:9s} tried {o.tried:5d}  survived {o.survived:5d}  lost {o.lost}  internal {o.internal}"
            f"  {o.seconds:6.1f} s  {verdict}  {notes}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a small campaign (~1-2 minutes), as the tests run it")
    p.add_argument("--kills", type=int, default=40, help="kill -9 cycles of the daemon (default 40)")
    p.add_argument("--worker-kills", type=int, default=12)
    p.add_argument("--post-kills", type=int, default=10)
    p.add_argument("--op-kills", type=int, default=6, help="kill -9 cycles mid stems job (default 6)")
    p.add_argument("--frames", type=int, default=11000, help="hostile frames (default 11000)")
    p.add_argument("--lockout-rounds", type=int, default=3)
    p.add_argument("--lockout-conns", type=int, default=256)
    p.add_argument("--idle-timeout", type=float, default=10.0,
                   help="the daemon's daemon.idle_timeout in the lock-out scenario (default: its default, 10 s)")
    p.add_argument("--only", action="append", help="run only this scenario (repeatable)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print the outcomes as JSON")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, data) for a post-mortem")
    args = p.parse_args(argv)
    if args.quick:
        args.kills, args.worker_kills, args.post_kills, args.frames, args.op_kills = 2, 1, 2, 300, 1
        args.lockout_rounds, args.lockout_conns, args.idle_timeout = 1, 64, 2.0
    outcomes = run(args)
    if args.json:
        print(json.dumps([{**asdict(o), "ok": o.ok} for o in outcomes], indent=2))
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
