"""The fault campaign's tools scenario (bench/chaos.py): kill -9 of the daemon mid separation, mid
loop and mid fit.

Stems by separation run a second model in the worker (a tiny HTDemucs, random weights, demucs'
own checkpoint format); a loop from a prompt is one job across the model worker (generation) and
the audio thread (the cut, the crossfade, a Rubber Band stretch); a fit is a job with no worker at
all (a `rubberband` child process). Killed at random points of any, the job must end once, with
its tracks exactly as long as asked, and nothing seen before a kill may go.
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path
from typing import Any

from chaos_harness import Daemon, Outcome, audit, call, kill9_and_restart, library, readable, wait_drained
from chaos_ops import _tone


def _wait_started(d: Daemon, job_id: int, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if call(d.socket, "job.get", {"id": job_id})["state"] in ("running", "processing", "done"):
            return True
        time.sleep(0.02)
    return False


def _loop_frames(bars: int, bpm: float, rate: int, beats: int = 4) -> int:
    return round(bars * beats * 60.0 / bpm * rate)


def scenario_tools(root: Path, model: Path, n: int, rng: random.Random) -> Outcome:
    """kill -9 mid separation (an uploaded file), mid loop (prompt, tiny MusicGen) and mid fit (an
    uploaded file, Rubber Band); restart; drain. Each job ends done: a separation with one stem per
    part, each exactly as long as the file; a loop with one track exactly `bars` long at its tempo
    (to the sample); a fit with one track of the stretched length. No track seen before a kill is
    lost."""
    import soundfile as sf

    from dgx_music.daemon.engine.testmodel import build_test_model

    out = Outcome("tools")
    if shutil.which("rubberband") is None:
        out.skipped = "no rubberband (scripts/ensure-test-tools installs rubberband-cli)"
        return out
    separator = build_test_model(root / "tiny-htdemucs", family="separation")
    d = Daemon(root, model, DGX_MUSIC_TEST_STEP_DELAY="0.05", DGX_MUSIC_SEPARATOR=str(separator))
    d.start()
    jobs: dict[int, int] = {}
    loops: dict[int, tuple[int, float]] = {}  # job id -> bars, bpm
    fits: dict[int, float] = {}  # job id -> seconds expected
    stems: set[int] = set()
    kinds: dict[int, str] = {}
    mid: dict[str, int] = {}  # kills that landed while the job ran, by kind (a job may finish first)
    seen: dict[str, dict[str, Any]] = {}
    source = _tone(4.0)
    for i in range(n):
        if i % 3 == 2:
            j = call(d.socket, "op.stems", {"source_audio": source, "source_name": f"chaos-{i}.flac",
                                            "method": "separate"})
            stems.add(j["id"])
        elif i % 3 == 0:
            bars, bpm = rng.choice([(1, 120.0), (2, 125.0)])
            j = call(d.socket, "op.loop", {"prompt": f"chaos loop {i}", "bars": bars, "bpm": bpm,
                                           "seed": rng.randrange(1000)})
            loops[j["id"]] = (bars, bpm)
        else:
            j = call(d.socket, "op.fit", {"source_audio": source, "source_name": f"chaos-{i}.flac",
                                          "from_bpm": 100.0, "bpm": 120.0})
            fits[j["id"]] = 4.0 * 100.0 / 120.0
        jobs[j["id"]] = j["count"]
        kinds[j["id"]] = "separation" if j["id"] in stems else "loop" if j["id"] in loops else "fit"
        out.tried += 1
        if not _wait_started(d, j["id"]):
            out.notes.append(f"job {j['id']} never ran")
            continue
        time.sleep(rng.uniform(0.0, 1.5))
        seen.update(library(d))
        if call(d.socket, "job.get", {"id": j["id"]})["state"] in ("running", "processing"):
            mid[kinds[j["id"]]] = mid.get(kinds[j["id"]], 0) + 1
        if not kill9_and_restart(d, out):
            return out
    out.notes.append("kills mid job: " + ", ".join(f"{k} {v}" for k, v in sorted(mid.items())))
    if not wait_drained(d, 300 + 60 * n):
        out.notes.append("queue did not drain")
    audit(d, jobs, seen, out)
    tracks = library(d)
    for job_id in jobs:
        job = call(d.socket, "job.get", {"id": job_id})
        if job["state"] != "done":
            out.notes.append(f"job {job_id} ended {job['state']}: {job.get('error')}")
            continue
        if job_id in stems:
            for tid in job["track_ids"]:
                t = tracks.get(tid)
                if t is None or not readable(d, t) or sf.info(str(d.data_dir / t["path"])).frames != 4 * 44100:
                    out.lost += 1
                    out.notes.append(f"stem {tid} of job {job_id} missing, unreadable or not as long as the file")
            continue
        if len(job["track_ids"]) != 1 or job["track_ids"][0] not in tracks:
            out.lost += 1
            out.notes.append(f"job {job_id} owns {job['track_ids']}, want one listed track")
            continue
        t = tracks[job["track_ids"][0]]
        if not readable(d, t):
            out.lost += 1
            out.notes.append(f"track {t['id']} unreadable")
            continue
        info = sf.info(str(d.data_dir / t["path"]))
        if job_id in loops:
            want = _loop_frames(*loops[job_id], info.samplerate)
            if info.frames != want:
                out.lost += 1
                out.notes.append(f"loop {t['id']}: {info.frames} frames, want exactly {want}")
        elif abs(info.frames / info.samplerate - fits[job_id]) > 0.01:
            out.lost += 1
            out.notes.append(f"fit {t['id']}: {info.frames / info.samplerate:.3f} s, want {fits[job_id]:.3f} s")
    d.stop()
    return out
