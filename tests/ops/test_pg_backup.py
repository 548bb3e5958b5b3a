"""Backup and restore with the library in PostgreSQL: the same backup format as SQLite's, so a
backup of either backend restores into either (and restoring into a database that holds a
library is refused, naming it)."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dgx_music.daemon import backup as bk
from dgx_music.daemon import migrate as mg
from dgx_music.daemon import pgbackup
from dgx_music.daemon.store import DB_NAME
from tests.ops.test_migrate import build_library, tree_digest

pytest.importorskip("asyncpg")

#: What a user sees of a library, read straight from a SQLite file (an independent reader).
QUERIES = {
    "tracks": "SELECT id, job_id, path, prompt, title, seed, duration, rating, favorite, notes, bpm, key, "
              "midi_path, created FROM tracks ORDER BY seq",
    "tags": "SELECT t.id, g.name FROM track_tags tt JOIN tags g ON g.id = tt.tag_id "
            "JOIN tracks t ON t.seq = tt.track_seq ORDER BY t.id, g.name",
    "lineage": "SELECT t.id, l.source_id, l.operation, l.part FROM track_lineage l JOIN tracks t ON t.seq = l.track_seq",
    "peaks": "SELECT t.id, p.peaks FROM track_peaks p JOIN tracks t ON t.seq = p.seq ORDER BY t.id",
    "jobs": "SELECT id, state, prompt, params, count, seed FROM jobs ORDER BY id",
    "search": "SELECT t.id FROM tracks_fts f JOIN tracks t ON t.seq = f.rowid WHERE tracks_fts MATCH 'night' ",
}


def library_view(db: Path) -> dict[str, Any]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {k: con.execute(q).fetchall() for k, q in QUERIES.items()}
    finally:
        con.close()


@pytest.fixture
def second_pg_url(pg_cluster: Any) -> Any:
    schema = pg_cluster.new_schema()
    try:
        yield pg_cluster.url(schema=schema)
    finally:
        pg_cluster.drop_schema(schema)


def test_a_postgresql_backup_restores_into_sqlite_and_into_postgresql(pg_url: str, second_pg_url: str,
                                                                     tmp_path: Path) -> None:
    data, shared = tmp_path / "data", tmp_path / "shared"
    data.mkdir()
    shared.mkdir()
    lib = asyncio.run(build_library(data))
    mg.migrate(data, pg_url, shared)
    want = library_view(data / DB_NAME)

    lines: list[str] = []
    report = pgbackup.backup_pg(pg_url, tmp_path / "bk", storage=shared, with_audio=True, progress=lines.append)
    assert (report.tracks, report.jobs, report.files, report.sources) == (3, 4, 4, 1)
    manifest = json.loads((tmp_path / "bk" / bk.MANIFEST).read_text())
    assert manifest["backend"] == "postgresql" and "database: 3 tracks, 4 jobs" in lines[0]

    # Into SQLite, with the existing restore: the same library, its search index rebuilt.
    fresh = tmp_path / "fresh"
    bk.restore(tmp_path / "bk", fresh)
    assert library_view(fresh / DB_NAME) == want
    assert want["search"] == [(lib["first"],)]
    for rel, content in lib["files"].items():
        assert (fresh / rel).read_bytes() == content

    # Into another (empty) PostgreSQL database; then back out, to compare with an independent reader.
    shared2 = tmp_path / "shared2"
    shared2.mkdir()
    pgbackup.restore_pg(tmp_path / "bk", second_pg_url, storage=shared2)
    assert tree_digest(shared2) == tree_digest(shared)
    pgbackup.backup_pg(second_pg_url, tmp_path / "bk2", storage=shared2)
    assert library_view(tmp_path / "bk2" / DB_NAME) == want

    # A database that holds a library is refused, naming it, and left as it was.
    with pytest.raises(bk.BackupError, match=r"already holds a library \(3 tracks, 4 jobs\)"):
        pgbackup.restore_pg(tmp_path / "bk", second_pg_url, storage=shared2)


def test_a_sqlite_backup_restores_into_postgresql(pg_url: str, tmp_path: Path) -> None:
    data, shared = tmp_path / "data", tmp_path / "shared"
    data.mkdir()
    shared.mkdir()
    lib = asyncio.run(build_library(data))
    bk.backup(data, tmp_path / "bk", with_audio=True)
    pgbackup.restore_pg(tmp_path / "bk", pg_url, storage=shared)
    for rel, content in lib["files"].items():
        assert (shared / rel).read_bytes() == content
    pgbackup.backup_pg(pg_url, tmp_path / "out", storage=shared)
    assert library_view(tmp_path / "out" / DB_NAME) == library_view(data / DB_NAME)


def test_the_cli_backs_up_and_restores_postgresql(pg_url: str, second_pg_url: str, tmp_path: Path) -> None:
    data, shared = tmp_path / "data", tmp_path / "shared"
    data.mkdir()
    shared.mkdir()
    asyncio.run(build_library(data))
    mg.migrate(data, pg_url, shared)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DGX_MUSIC_")}
    env.update(DGX_MUSIC_STORE=pg_url, DGX_MUSIC_STORAGE=str(shared))
    (tmp_path / "c.toml").touch()
    out = subprocess.run([sys.executable, "-m", "dgx_music.cli.main", "backup", str(tmp_path / "bk"), "--with-audio",
                          "--json", "--config", str(tmp_path / "c.toml"), "--data-dir", str(tmp_path / "d")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["tracks"] == 3
    assert library_view(tmp_path / "bk" / DB_NAME) == library_view(data / DB_NAME)
    shared2 = tmp_path / "shared2"
    shared2.mkdir()
    env.update(DGX_MUSIC_STORE=second_pg_url, DGX_MUSIC_STORAGE=str(shared2))
    args = [sys.executable, "-m", "dgx_music.cli.main", "restore", str(tmp_path / "bk"), "--json",
            "--config", str(tmp_path / "c.toml"), "--data-dir", str(tmp_path / "d")]
    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    restored = json.loads(out.stdout)
    assert (restored["dest"], restored["tracks"], restored["files"]) == (second_pg_url, 3, 4)
    again = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 1 and "already holds a library" in json.loads(again.stdout)["error"]["message"]
