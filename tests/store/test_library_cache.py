"""The daemon's library read cache (daemon/library_cache.py, issue 21): its bounds, its invalidation,
and the handlers answering from it only while the store is unavailable."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dgx_music.common import protocol
from dgx_music.daemon import handlers, libfiles
from dgx_music.daemon.handlers import Context, HandlerError, map_error
from dgx_music.daemon.library_cache import LibraryCache, page_key
from dgx_music.daemon.store import Store

from tests.outage import AwayStore

from .conftest import make_job


def _t(i: int, **kw: Any) -> dict[str, Any]:
    return {"id": f"t{i}", "path": f"tracks/{i}.wav", "duration": 1.0, "title": f"song {i}", **kw}


def test_rows_are_bounded_in_entries_and_evict_the_least_recently_used() -> None:
    c = LibraryCache(max_rows=3, max_pages=3)
    for i in range(3):
        c.remember_track(_t(i, peaks=[]))
    assert c.track("t0") is not None  # t0 used: t1 is now the oldest
    c.remember_track(_t(3, peaks=[]))
    assert len(c.rows) == 3
    assert c.track("t1") is None and c.track("t0") is not None and c.track("t3") is not None


def test_pages_and_rows_are_bounded_in_bytes() -> None:
    c = LibraryCache(max_rows=1000, max_pages=1000, max_bytes=20_000)
    for i in range(100):
        c.remember_track(_t(i, peaks=[[0.1, 0.2]] * 50))  # about 900 bytes each
    assert 0 < c.rows.bytes <= 10_000 and len(c.rows) < 100
    assert c.track("t99") is not None and c.track("t0") is None
    for i in range(100):
        c.remember_page(page_key({"search": f"q{i}"}), {"tracks": [_t(i, notes="n" * 300)], "next_cursor": None,
                                                        "total": 1})
    assert 0 < c.pages.bytes <= 10_000 and len(c.pages) < 100
    assert c.page(page_key({"search": "q99"})) is not None and c.page(page_key({"search": "q0"})) is None
    huge = {"tracks": [_t(0, notes="x" * 20_000)], "next_cursor": None, "total": 1}
    c.remember_page("huge", huge)  # larger than the whole budget: not kept, nothing else lost for it
    assert c.page("huge") is None and c.page(page_key({"search": "q99"})) is not None


def test_page_keys_are_the_exact_normalised_parameters() -> None:
    assert page_key({"search": "rain", "limit": 5, "tag": None}) == page_key({"limit": 5, "search": "rain"})
    assert page_key({"search": "rain", "limit": 5}) != page_key({"search": "rain", "limit": 6})


def test_events_drop_deleted_tracks_everywhere_and_show_edits() -> None:
    c = LibraryCache()
    c.remember_track(_t(1, peaks=[[0, 1]]))
    c.remember_page("k", {"tracks": [_t(1), _t(2)], "next_cursor": None, "total": 2})
    c.on_event("track.updated", _t(1, title="renamed"))
    row = c.track("t1")
    assert row is not None and row["title"] == "renamed" and row["peaks"] == [[0, 1]]
    assert [t["title"] for t in c.page("k")["tracks"]] == ["renamed", "song 2"]
    c.on_event("track.added", _t(3))  # remembered by id (its audio), pages stay what was seen
    assert c.track("t3", full=False) is not None and len(c.page("k")["tracks"]) == 2
    c.on_event("track.deleted", {"id": "t2"})
    assert c.track("t2", full=False) is None
    assert [t["id"] for t in c.page("k")["tracks"]] == ["t1"] and c.page("k")["total"] == 1
    c.on_event("job.finished", {"id": 1})  # not a library event: nothing happens
    assert c.track("t1") is not None


@pytest.fixture
async def ctx(tmp_path: Path):
    store = await Store.open(tmp_path / "dgx.sqlite", synchronous="NORMAL")
    handlers.load_all()
    cache = LibraryCache()
    daemon = SimpleNamespace(store=AwayStore(store), library_cache=cache, storage=libfiles.Storage(tmp_path))
    yield Context(daemon)  # type: ignore[arg-type]
    await store.close()


async def _call(ctx: Context, method: str, params: dict[str, Any]) -> Any:
    try:
        return await handlers.dispatch(ctx, method, params)
    except HandlerError:
        raise
    except Exception as exc:
        mapped = map_error(exc)
        if mapped is None:
            raise
        raise mapped from exc


async def test_reads_fall_back_to_what_was_seen_only_while_the_store_is_away(ctx: Context) -> None:
    store = ctx.daemon.store.store
    job = await make_job(store, "rain on a tin roof", count=2,
                         tracks=[{"path": "tracks/a.wav", "duration": 1.0, "sample_rate": 32000, "channels": 1},
                                 {"path": "tracks/b.wav", "duration": 1.0, "sample_rate": 32000, "channels": 1}])
    (ctx.daemon.storage.root / "tracks").mkdir()
    (ctx.daemon.storage.root / "tracks" / "a.wav").write_bytes(b"RIFF" + b"\0" * 100)
    ids = sorted(job["track_ids"])
    page = await _call(ctx, "track.list", {"search": "rain", "limit": 5})
    shown = await _call(ctx, "track.get", {"id": ids[0]})
    assert "stale" not in page and "stale" not in shown

    ctx.daemon.store.away = True
    again = await _call(ctx, "track.list", {"limit": 5, "search": "rain"})
    assert again["stale"] is True and again["stale_since"] == 1_700_000_000.0
    assert sorted(t["id"] for t in again["tracks"]) == ids
    assert all(t["file"].endswith(t["path"]) for t in again["tracks"])
    got = await _call(ctx, "track.get", {"id": ids[0]})
    assert got["stale"] is True and got["id"] == ids[0] and "peaks" in got
    audio = await _call(ctx, "track.audio", {"id": ids[0]})
    assert audio["data"].startswith(b"RIFF") and audio["stale"] is True
    with pytest.raises(HandlerError) as never:  # a search this host never made
        await _call(ctx, "track.list", {"search": "thunder"})
    assert never.value.code == protocol.STORE_UNAVAILABLE and "database is back" in never.value.message
    with pytest.raises(HandlerError) as write:
        await _call(ctx, "track.update", {"id": ids[0], "title": "x"})
    assert write.value.code == protocol.STORE_UNAVAILABLE

    ctx.daemon.store.away = False
    fresh = await _call(ctx, "track.list", {"search": "rain", "limit": 5})
    assert "stale" not in fresh and len(fresh["tracks"]) == 2


async def test_a_deleted_track_is_not_served_in_the_next_outage(ctx: Context) -> None:
    store = ctx.daemon.store.store
    job = await make_job(store, "gone soon", count=1)
    tid = job["track_ids"][0]
    await _call(ctx, "track.get", {"id": tid})
    await _call(ctx, "track.list", {})
    await store.delete_track(tid)
    ctx.daemon.library_cache.on_event("track.deleted", {"id": tid})  # as the daemon's EventHub passes it on
    ctx.daemon.store.away = True
    with pytest.raises(HandlerError) as exc:
        await _call(ctx, "track.get", {"id": tid})
    assert exc.value.code == protocol.STORE_UNAVAILABLE
    page = await _call(ctx, "track.list", {})  # the page this host saw, without the deleted track
    assert page["stale"] is True and page["tracks"] == [] and page["total"] == 0


def test_an_edit_of_an_evicted_track_is_remembered_without_its_old_row() -> None:
    c = LibraryCache(max_rows=2)
    c.remember_track(_t(1, peaks=[[0, 1]]))
    c.remember_page("k", {"tracks": [_t(2), _t(3)], "next_cursor": None, "total": 2})  # t1 evicted
    c.on_event("track.updated", _t(1, title="renamed"))
    assert c.track("t1") is None and c.track("t1", full=False)["title"] == "renamed"
