"""The fault campaign's paths scenario (bench/chaos.py): requests naming paths outside the data
directory, and symlinks planted in it."""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path
from typing import Any, Callable


from dgx_music.common.client import RemoteError

from chaos_harness import Daemon, Outcome, call


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
