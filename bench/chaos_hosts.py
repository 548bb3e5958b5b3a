"""Chaos over several hosts (issue 21): daemons on one PostgreSQL and one storage root, killed.

Three daemon processes (their own sockets, data directories, model workers and, where the
machine allows it, network namespaces: tests/netns.py) share a throwaway PostgreSQL cluster
(tests/pgcluster.py, a Unix socket) and one storage directory: all that hosts share. Jobs are
submitted to random hosts while random hosts are killed with kill -9 and restarted; then
the queue drains and the audit checks what users rely on: every job ends exactly once
(done jobs own exactly `count` readable tracks, no track twice, none stuck), a dead
host's job starts again within its lease + 5 s, and a search finds the same tracks on every host.

    .venv/bin/python bench/chaos.py --only hosts
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path
from typing import Any

from chaos_harness import Daemon, Outcome, call

LEASE = 3.0


def _cluster() -> Any:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: `tests.pgcluster`
    from tests.pgcluster import PgCluster, find_bin

    bindir = find_bin()
    return None if bindir is None else PgCluster(bindir)


def _readable(path: str) -> bool:
    import soundfile as sf

    try:
        return sf.info(path).frames > 0
    except Exception:
        return False


def _drained(d: Daemon, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        q = call(d.socket, "status")["queue"]
        if not q.get("queued") and not q.get("running") and not q.get("processing"):
            return True
        time.sleep(0.25)
    return False


def scenario_hosts(root: Path, model: Path, kills: int, rng: random.Random, per_kill: int = 2) -> Outcome:
    out = Outcome("hosts")
    cluster = _cluster()
    if cluster is None:
        out.skipped = "PostgreSQL is not installed (scripts/ensure-test-tools installs it)"
        return out
    cluster.start()
    hosts: list[Daemon] = []
    try:
        cluster.setup_database()
        url = cluster.url(schema=cluster.new_schema())
        shared = root / "shared"
        shared.mkdir()
        from tests import netns  # the repository is on sys.path (_cluster)

        why = netns.reason()
        out.notes.append(f"hosts share this network namespace: {why}" if why else
                         "each host in a network namespace of its own")
        hosts = [Daemon(root / f"h{i}", model, wrap=None if why else netns.command, DGX_MUSIC_STORE=url,
                        DGX_MUSIC_STORAGE=str(shared), DGX_MUSIC_HOST=f"h{i}", DGX_MUSIC_LEASE_S=str(LEASE))
                 for i in range(3)]
        for h in hosts:
            h.root.mkdir()
            h.start()
        spaces = {netns.of(h.proc.pid) for h in hosts if h.proc is not None}
        if not why and len(spaces | {netns.of()}) != 4:  # the scenario's premise: it would prove nothing
            out.lost += 1
            out.notes.append(f"hosts are not in namespaces of their own: {sorted(spaces)}")
        jobs: dict[int, int] = {}
        for _ in range(kills):
            for _ in range(per_kill):  # jobs submitted before each kill
                live = [h for h in hosts if h.alive()]
                j = call(rng.choice(live).socket, "job.submit",
                         {"prompt": f"hosts {rng.randrange(10**6)}", "duration": 0.5, "count": rng.choice([1, 2])})
                jobs[j["id"]] = j["count"]
            time.sleep(rng.uniform(0.5, 2.5))
            victim = rng.choice(hosts)
            running = {h["host"]: h["job_id"] for h in call(victim.socket, "status").get("hosts") or []}
            held = running.get(victim.env["DGX_MUSIC_HOST"])
            victim.kill9()
            out.tried += 1
            died = time.time()
            if held is not None:  # its job must start again elsewhere within the lease + 5 s
                other = next(h for h in hosts if h.alive())
                deadline = time.monotonic() + LEASE + 30
                while time.monotonic() < deadline:
                    job = call(other.socket, "job.get", {"id": held})
                    if job["state"] != "running" or job["attempts"] > 1:
                        break
                    time.sleep(0.2)
                if job["state"] in ("running", "processing", "done") and job["attempts"] > 1 \
                        and job["started"] - died > LEASE + 5:
                    out.notes.append(f"job {held} restarted {job['started'] - died:.1f} s after its host died")
                    out.lost += 1
            try:
                victim.start()
                out.survived += 1
            except RuntimeError as exc:
                out.notes.append(f"restart failed: {exc}")
        if not _drained(hosts[0], 300):
            out.notes.append("the queue did not drain in 300 s")
            out.lost += 1
        tracks = call(hosts[0].socket, "track.list", {"limit": 500})["tracks"]
        by_job: dict[int, int] = {}
        for t in tracks:
            by_job[t["job_id"]] = by_job.get(t["job_id"], 0) + 1
            if not _readable(str(shared / t["path"])):
                out.lost += 1
                out.notes.append(f"track {t['id']}: file unreadable")
        if len({t["id"] for t in tracks}) != len(tracks):
            out.lost += 1
            out.notes.append("a track is listed twice")
        for job_id, count in jobs.items():
            job = call(hosts[1].socket, "job.get", {"id": job_id})
            if job["state"] == "done" and by_job.get(job_id, 0) != count:
                out.lost += 1
                out.notes.append(f"job {job_id}: {by_job.get(job_id, 0)} tracks for count {count}")
            elif job["state"] not in ("done", "failed", "cancelled"):
                out.lost += 1
                out.notes.append(f"job {job_id} stuck {job['state']}")
        listed = {t["id"] for t in tracks}
        for h in hosts:  # `library --search` agrees on every host: every prompt here holds the word
            found: set[str] = set()
            cursor = None
            while True:
                page = call(h.socket, "track.list", {"search": "hosts", "limit": 500,
                                                     **({"cursor": cursor} if cursor else {})})
                found |= {t["id"] for t in page["tracks"]}
                cursor = page.get("next_cursor")
                if not cursor:
                    break
            if found != listed:
                out.lost += 1
                out.notes.append(f"a search on {h.root.name} finds {len(found)} tracks, the library lists {len(listed)}")
        wavs = list(shared.glob("library/**/*.wav"))
        if len(wavs) != len(tracks):
            out.notes.append(f"{len(wavs)} audio files for {len(tracks)} tracks (a killed host's unfinished "
                             "write is set aside by that host at its next start, an hour later)")
        out.notes.append(f"{len(jobs)} jobs on 3 hosts, {len(tracks)} tracks")
    finally:
        for h in hosts:
            h.stop()
        cluster.stop()
    return out
