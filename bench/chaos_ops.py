"""The fault campaign's ops scenario (bench/chaos.py): kill -9 of the daemon mid stems job."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any



from chaos_harness import Daemon, Outcome, audit, call, kill9_and_restart, library, readable, wait_drained


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
                                        "steps": 2, "seed": 1, "method": "generate"})
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
        j = call(d.socket, "op.stems", {"source": src, "parts": OP_PARTS, "steps": 4, "seed": rng.randrange(1000),
                                          "method": "generate"})
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
