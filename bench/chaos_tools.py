"""The fault campaign's tools scenario (bench/chaos.py): kill -9 of the daemon mid loop and mid fit.

A loop from a prompt is one job across the model worker (generation) and the audio thread (the
cut, the crossfade, a Rubber Band stretch); a fit is a job with no worker at all (a `rubberband`
child process). Killed at random points of either, the job must end once, with one track of
exactly the asked length, and nothing seen before a kill may go.
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
    """kill -9 mid loop (prompt, tiny MusicGen) and mid fit (an uploaded file, Rubber Band);
    restart; drain. Each job ends done with exactly one track: a loop exactly `bars` long at its
    tempo (to the sample), a fit of the stretched length; no track seen before a kill is lost."""
    import soundfile as sf

    out = Outcome("tools")
    if shutil.which("rubberband") is None:
        out.skipped = "no rubberband (scripts/ensure-test-tools installs rubberband-cli)"
        return out
    d = Daemon(root, model, DGX_MUSIC_TEST_STEP_DELAY="0.05")
    d.start()
    jobs: dict[int, int] = {}
    loops: dict[int, tuple[int, float]] = {}  # job id -> bars, bpm
    fits: dict[int, float] = {}  # job id -> seconds expected
    seen: dict[str, dict[str, Any]] = {}
    source = _tone(4.0)
    for i in range(n):
        if i % 2 == 0:
            bars, bpm = rng.choice([(1, 120.0), (2, 125.0)])
            j = call(d.socket, "op.loop", {"prompt": f"chaos loop {i}", "bars": bars, "bpm": bpm,
                                           "seed": rng.randrange(1000)})
            loops[j["id"]] = (bars, bpm)
        else:
            j = call(d.socket, "op.fit", {"source_audio": source, "source_name": f"chaos-{i}.flac",
                                          "from_bpm": 100.0, "bpm": 120.0})
            fits[j["id"]] = 4.0 * 100.0 / 120.0
        jobs[j["id"]] = 1
        out.tried += 1
        if not _wait_started(d, j["id"]):
            out.notes.append(f"job {j['id']} never ran")
            continue
        time.sleep(rng.uniform(0.0, 1.5))
        seen.update(library(d))
        if not kill9_and_restart(d, out):
            return out
    if not wait_drained(d, 300 + 60 * n):
        out.notes.append("queue did not drain")
    audit(d, jobs, seen, out)
    tracks = library(d)
    for job_id in jobs:
        job = call(d.socket, "job.get", {"id": job_id})
        if job["state"] != "done":
            out.notes.append(f"job {job_id} ended {job['state']}: {job.get('error')}")
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
