"""`dgx-music store migrate`: a SQLite library (tracks, tags, lineage, MIDI, a stored source)
moved into PostgreSQL and a shared storage directory, then served by a daemon on them."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from dgx_music.common.client import Client
from dgx_music.common.transfer import fetch
from dgx_music.daemon import migrate as mg
from dgx_music.daemon.store import DB_NAME, Store, open_url

pytest.importorskip("asyncpg")

WAV = b"RIFF\x24\x00\x00\x00WAVEfmt "  # the bytes only need to come back identical


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under root (the database included), by relative path.  SQLite's
    shared-memory index and an EMPTY write-ahead log are left out: any reader of a WAL database
    (a read-only one too) creates them, and they hold no data."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()
            and not p.name.endswith("-shm") and not (p.name.endswith("-wal") and p.stat().st_size == 0)}


async def build_library(data: Path) -> dict[str, Any]:
    """A library as a daemon leaves it: finished jobs with tags, peaks, analysis, a MIDI,
    a derived track with lineage, a queued job, and a stored operation source."""
    s = await Store.open(data / DB_NAME, synchronous="NORMAL")
    try:
        files = {}
        job = await s.add_job(prompt="café piano at dusk, rain", params={"duration": 8.0}, count=2, seed=7, model="small")
        await s.mark_running(job["id"])
        tracks = []
        for i in range(2):
            rel = f"library/{job['id']}/{i}.wav"
            files[rel] = WAV + bytes([i]) * 4000
            tracks.append({"path": rel, "duration": 8.0, "sample_rate": 32000, "channels": 2,
                           "tags": ["lofi", "piano"], "peaks": [[-0.5, 0.5]] * 10, "bpm": 92.5, "key": "A minor"})
        made = await s.finish_job(job["id"], tracks)
        await s.update_track(made[0]["id"], title="Rainy café", rating=4, favorite=True, notes="keeper",
                             tags_add=["night"])
        midi = await s.add_job(prompt="transcribe", params={}, count=1, seed=1, model=None)
        await s.mark_running(midi["id"])
        mrel = f"library/{job['id']}/0.mid"
        files[mrel] = b"MThd\x00\x00\x00\x06" + b"\x01" * 64
        await s.attach_midi(midi["id"], made[0]["id"], mrel)
        op = await s.add_job(prompt="stems of Rainy café", params={}, count=1, seed=3, model=None)
        await s.mark_running(op["id"])
        drel = f"library/{op['id']}/0.wav"
        files[drel] = WAV + b"\x09" * 3000
        await s.finish_job(op["id"], [{"path": drel, "duration": 8.0, "sample_rate": 44100, "channels": 2,
                                       "lineage": {"source_id": made[0]["id"], "source_name": "Rainy café",
                                                   "operation": "stems", "part": "drums", "params": {}}}])
        queued = await s.add_job(prompt="held over for later", params={}, count=1, seed=9, model=None)
    finally:
        await s.close()
    for rel, content in files.items():
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(content)
    (data / "sources").mkdir()
    files["sources/ab12.wav"] = WAV + b"\x05" * 2000
    (data / "sources" / "ab12.wav").write_bytes(files["sources/ab12.wav"])
    return {"files": files, "first": made[0]["id"], "derived": f"{op['id']}-0", "queued": queued["id"]}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dgx_music.cli.main", *args], capture_output=True, text=True,
                          timeout=120)


async def test_migrate_moves_everything_and_a_daemon_serves_it(pg_url: str, short_tmp: Path,
                                                               daemon_factory: Callable[..., Any]) -> None:
    data, shared = short_tmp / "data", short_tmp / "shared"
    data.mkdir()
    shared.mkdir()
    lib = await build_library(data)
    before = tree_digest(data)

    out = run_cli("store", "migrate", "--to", pg_url, "--storage", str(shared), "--data-dir", str(data), "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["rows"] == {"jobs": 4, "tracks": 3, "track_peaks": 2, "tags": 3, "track_tags": 5,
                               "track_lineage": 1, "styles": 0}
    assert summary["files"] == len(lib["files"]) == 5 and summary["sampled_rows"] >= 15
    assert "tracks: 3 rows" in out.stderr  # progress on stderr, the summary alone on stdout
    assert tree_digest(data) == before  # the source (database and files) is unchanged
    for rel, content in lib["files"].items():
        assert (shared / rel).read_bytes() == content

    # Rerun: refused, naming the database that already holds the library; nothing changes.
    again = run_cli("store", "migrate", "--to", pg_url, "--storage", str(shared), "--data-dir", str(data), "--json")
    assert again.returncode != 0
    assert "already holds a library (3 tracks, 4 jobs" in json.loads(again.stdout)["error"]["message"]

    d = await daemon_factory(store__url=pg_url, store__storage=str(shared), daemon__data_dir=str(short_tmp / "d2"))
    async with await Client.connect(d.server.path) as c:
        listed = await c.call("track.list", {"limit": 50})
        assert {t["id"] for t in listed["tracks"]} == {lib["first"], f"{lib['first'][:-2]}-1", lib["derived"]}
        found = await c.call("track.list", {"search": "rainy dusk", "sort": "relevance"})
        assert [t["id"] for t in found["tracks"]] == [lib["first"]]
        assert [t["id"] for t in (await c.call("track.list", {"search": "night"}))["tracks"]] == [lib["first"]]
        first = await c.call("track.get", {"id": lib["first"]})
        assert (first["title"], first["rating"], first["favorite"], first["notes"]) == ("Rainy café", 4, True, "keeper")
        assert sorted(first["tags"]) == ["lofi", "night", "piano"] and first["bpm"] == 92.5
        assert first["midi_path"] == f"library/{lib['first'].split('-')[0]}/0.mid"
        assert (await c.call("job.get", {"id": lib["queued"]}))["prompt"] == "held over for later"  # the queue moved too
        got = await fetch(c, first, short_tmp / "back.wav")
        assert got.read_bytes() == lib["files"][first["path"]]
        lineage = await c.call("track.lineage", {"id": lib["derived"]})
        assert lib["first"] in json.dumps(lineage) and "drums" in json.dumps(lineage)
        # New rows get fresh ids past the copied ones.
        job = await c.call("job.submit", {"prompt": "after the move", "duration": 0.5})
        assert job["id"] > lib["queued"]


async def test_a_failed_copy_leaves_the_database_empty_and_a_rerun_completes(pg_url: str, tmp_path: Path) -> None:
    data, shared = tmp_path / "data", tmp_path / "shared"
    data.mkdir()
    shared.mkdir()
    lib = await build_library(data)
    # A file already at the target that differs: refused before anything is written.
    (shared / "sources").mkdir()
    (shared / "sources" / "ab12.wav").write_bytes(b"other")
    with pytest.raises(mg.MigrateError, match="differs"):
        await _in_thread(mg.migrate, data, pg_url, shared)
    (shared / "sources" / "ab12.wav").unlink()
    # Files copied, then the database copy fails (a track row PostgreSQL refuses): rolled back whole.
    snap_fail = tmp_path / "bad.db"
    import sqlite3
    src = sqlite3.connect(data / DB_NAME)
    src.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    src.close()
    snap_fail.write_bytes((data / DB_NAME).read_bytes())
    bad = sqlite3.connect(snap_fail)
    bad.execute("INSERT INTO track_tags (tag_id, track_seq) VALUES (999, 1)")  # a tag that does not exist
    bad.commit()
    bad.close()
    with pytest.raises(mg.MigrateError):
        await _in_thread(mg.import_database, snap_fail, data, pg_url, shared)
    pg = await open_url(pg_url, data_dir=tmp_path)
    try:
        assert (await pg.list_tracks())["tracks"] == []
    finally:
        await pg.close()
    report = await _in_thread(mg.migrate, data, pg_url, shared)
    assert (report.files, report.files_kept) == (0, len(lib["files"]))  # kept: same sha256
    assert report.rows["tracks"] == 3


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """migrate runs its own event loop (it is the CLI's): run it off the test's loop."""
    import asyncio
    return await asyncio.to_thread(fn, *args)


def test_a_target_that_is_not_postgresql_or_a_missing_storage_is_refused_naming_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    out = run_cli("store", "migrate", "--to", "mysql://x@y/z", "--storage", str(tmp_path), "--data-dir", str(data),
                  "--json")
    err = json.loads(out.stdout)["error"]
    assert out.returncode == 2 and err["field"] == "to" and "postgresql://" in err["message"]
    with pytest.raises(mg.MigrateError, match="no database at"):
        mg.migrate(data, "postgresql://x@/y", tmp_path / "shared")
    (data / DB_NAME).touch()
    with pytest.raises(mg.MigrateError, match="is not a directory .is the shared directory mounted"):
        mg.migrate(data, "postgresql://x@/y", tmp_path / "not-mounted")
