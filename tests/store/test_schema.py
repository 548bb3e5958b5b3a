"""Schema: migrations from every earlier version, integrity check at open, durability settings."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from dgx_music.daemon.store import Store, StoreError
from dgx_music.daemon.store import LATEST_VERSION

FIXTURES = Path(__file__).parent / "fixtures"


def schema_of(path: Path) -> list[tuple]:
    """Normalised schema (sqlite_master) to compare a migrated DB with a fresh one."""
    con = sqlite3.connect(path)
    try:
        rows = con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master "
                           "WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name").fetchall()
        version = con.execute("PRAGMA user_version").fetchone()[0]
    finally:
        con.close()
    norm = [(t, n, tb, " ".join((sql or "").split())) for t, n, tb, sql in rows]
    return [("version", version)] + norm


def fixture_versions() -> list[int]:
    return sorted(int(p.stem.removeprefix("schema_v")) for p in FIXTURES.glob("schema_v*.sql"))


def test_every_earlier_version_has_a_fixture() -> None:
    # Whoever adds migration N+1 must freeze schema vN here (see daemon/store/schema.py).
    assert fixture_versions() == list(range(1, LATEST_VERSION))


def load_fixture(version: int, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.executescript((FIXTURES / f"schema_v{version}.sql").read_text())
    con.close()
    assert schema_of(path)[0] == ("version", version)


async def test_fresh_database_is_latest(db_path: Path) -> None:
    s = await Store.open(db_path)
    await s.close()
    assert schema_of(db_path)[0] == ("version", LATEST_VERSION)


@pytest.mark.parametrize("version", fixture_versions())
async def test_migrate_from_every_earlier_version(version: int, tmp_path: Path) -> None:
    old = tmp_path / "old.sqlite"
    load_fixture(version, old)
    fresh = tmp_path / "fresh.sqlite"
    s = await Store.open(fresh)
    await s.close()

    s = await Store.open(old)
    try:
        # the data came along and behaves like native rows
        job = await s.get_job(1)
        assert job["state"] == "done" and job["track_ids"] == ["1-0", "1-1"]
        t = await s.get_track("1-0")
        assert t["title"] == "Rainy morning" and t["tags"] == ["chill", "keeper"]
        assert t["peaks"] == [[0.0, 1.0], [-1.0, 1.0]]
        assert t["bpm"] == 84.5 and t["favorite"] is True and t["rating"] == 4
        # v3: every existing track is a MusicGen one, with nothing asked of a song
        assert t["family"] == "musicgen"
        assert [t[f] for f in ("lyrics", "language", "req_bpm", "req_key", "req_time_signature")] == [None] * 5
        assert (await s.list_tracks())["total"] == 2  # every row kept
        assert (await s.get_track("1-1"))["peaks"] is None
        assert {x["id"] for x in (await s.list_tracks(search="vinyl"))["tracks"]} == {"1-0", "1-1"}
        assert [x["id"] for x in (await s.list_tracks(search="keeper"))["tracks"]] == ["1-0"]
        # v9: the index made again with four-letter prefixes still finds what it held
        assert [x["id"] for x in (await s.list_tracks(search="keep"))["tracks"]] == ["1-0"]
        assert {x["id"] for x in (await s.list_tracks(search="viny", sort="relevance"))["tracks"]} == {"1-0", "1-1"}
        assert [x["id"] for x in (await s.list_tracks(sort="bpm"))["tracks"]] == ["1-0", "1-1"]
        assert await s.recover() == {"requeued": [3], "failed": []}
        await s.update_track("1-1", tags_add=["new"], notes="migrated fine")
        assert [x["id"] for x in (await s.list_tracks(search="migrated"))["tracks"]] == ["1-1"]
        # a track finished after the migration is found by a word of its lyrics
        assert (await s.claim_next_job("host-1", lease_s=30))["id"] == 2  # v5: claims on an old library
        await s.finish_job(2, [{"path": "library/song.wav", "duration": 30.0, "sample_rate": 48000,
                                "channels": 2, "family": "ace-step", "lyrics": "[verse] lanterns on the river"}])
        assert [x["id"] for x in (await s.list_tracks(search="lanterns"))["tracks"]] == ["2-0"]
        await s.delete_track("1-0")
        assert (await s.list_tracks(tag="keeper"))["total"] == 0
    finally:
        await s.close()
    assert schema_of(old) == schema_of(fresh), "a migrated database differs from a fresh one"
    assert (tmp_path / f"old.sqlite.v{version}.bak").exists(), "no backup before migrating"
    con = sqlite3.connect(old)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("INSERT INTO tracks_fts(tracks_fts, rank) VALUES('integrity-check', 1)")
    con.close()


async def test_newer_schema_is_refused(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    con = sqlite3.connect(db_path)
    con.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    con.close()
    with pytest.raises(StoreError) as e:
        await Store.open(db_path)
    assert e.value.code == "invalid" and "newer" in str(e.value)


async def test_settings(db_path: Path) -> None:
    s = await Store.open(db_path)
    try:
        conn = s._conn  # the one place a test peeks: durability settings are part of the contract
        assert (await (await conn.execute("PRAGMA journal_mode")).fetchone())[0] == "wal"
        assert (await (await conn.execute("PRAGMA synchronous")).fetchone())[0] == 2  # FULL
        assert (await (await conn.execute("PRAGMA foreign_keys")).fetchone())[0] == 1
    finally:
        await s.close()


async def test_not_a_database(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is not sqlite at all, just some text " * 200)
    with pytest.raises(StoreError) as e:
        await Store.open(db_path)
    assert e.value.code == "corrupt" and str(db_path) in str(e.value)
    assert "not a database" in str(e.value)


async def test_corrupt_pages_reported(db_path: Path) -> None:
    s = await Store.open(db_path, synchronous="NORMAL")
    rows = [{"id": f"t{i}", "path": f"a/{i}.flac", "prompt": f"prompt number {i} " * 5,
             "duration": 8.0, "sample_rate": 32000, "channels": 1, "tags": ["x"]}
            for i in range(400)]
    await s.import_tracks(rows)
    await s.close()  # checkpoints the WAL into the main file
    data = bytearray(db_path.read_bytes())
    page = 4096
    assert len(data) > 20 * page
    # scribble over the middle of the file (b-tree pages), leave the header intact
    for p in range(5, len(data) // page - 2, 3):
        data[p * page + 8: p * page + 200] = b"\xff" * 192
    db_path.write_bytes(bytes(data))
    with pytest.raises(StoreError) as e:
        await Store.open(db_path)
    msg = str(e.value)
    assert e.value.code == "corrupt" and str(db_path) in msg
    assert "quick_check" in msg or "malformed" in msg, msg
