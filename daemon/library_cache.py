"""What this host last read from the library, to answer reads while the database is away (issue 21).

Every successful library read refreshes the cache: track rows by id (from `track.get`, with peaks;
rows seen in list pages are kept too, enough to find a track's audio) and list/search pages keyed by
their exact normalised parameters.  Both are LRU and bounded in entries and in (estimated) bytes.

The cache is *only* read when the store raises StoreError("unavailable"): while the database is up
every read goes to it, so a deleted track is never served from here.  Library events (local or
relayed from the other hosts) keep it honest for the next outage: a deleted track leaves its row
and every cached page, an edited one is replaced everywhere, and a new one is remembered by id (its
audio can be fetched) but not added to pages, which stay what this host last saw.

A fallback answer carries ``stale: true`` and ``stale_since`` (Unix time the database was last
reached), so clients can say they are showing what this host last saw.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from typing import Any, Awaitable, Callable

from dgx_music.daemon.store import StoreError

#: Bounds: a few thousand rows and a few hundred pages cover a user's browsing; bytes cap the worst case.
MAX_ROWS = 5000
MAX_PAGES = 256
MAX_BYTES = 32 * 1024 * 1024


def _size(obj: Any) -> int:
    """An estimate of an entry's memory: its JSON length (C-fast, and what the client would receive)."""
    return len(json.dumps(obj, default=str, separators=(",", ":")))


def page_key(params: dict[str, Any]) -> str:
    """The exact normalised parameters of a list/search (None-valued ones left out, keys sorted)."""
    return json.dumps({k: v for k, v in params.items() if v is not None}, sort_keys=True, default=str)


class _Lru:
    """An LRU map bounded in entries and bytes."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[str, tuple[Any, int]] = OrderedDict()

    def get(self, key: str) -> Any:
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: str, value: Any, size: int) -> None:
        self.pop(key)
        if size > self.max_bytes:
            return  # one entry larger than the whole budget is not kept
        self._items[key] = (value, size)
        self.bytes += size
        while len(self._items) > self.max_entries or self.bytes > self.max_bytes:
            _, (_, dropped) = self._items.popitem(last=False)
            self.bytes -= dropped

    def peek(self, key: str) -> Any:
        """The value without making it the most recently used."""
        return self._items[key][0]

    def size_of(self, key: str) -> int:
        return self._items[key][1]

    def keys(self) -> list[str]:
        return list(self._items)

    def replace(self, key: str, value: Any, size: int) -> None:
        """Change an entry in place (its place in the LRU order stays)."""
        self.bytes += size - self._items[key][1]
        self._items[key] = (value, size)
        while self.bytes > self.max_bytes and self._items:
            _, (_, dropped) = self._items.popitem(last=False)
            self.bytes -= dropped

    def pop(self, key: str) -> Any:
        item = self._items.pop(key, None)
        if item is None:
            return None
        self.bytes -= item[1]
        return item[0]

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items


class LibraryCache:
    """Bounded copies of recent library reads; see the module docstring."""

    def __init__(self, *, max_rows: int = MAX_ROWS, max_pages: int = MAX_PAGES, max_bytes: int = MAX_BYTES,
                 clock: Callable[[], float] = time.time, enabled: bool = True) -> None:
        # Off for a store that cannot go away (SQLite in the data directory): copying and sizing every
        # page a read returns would cost each read on the event loop for nothing.
        self.enabled = enabled
        # Rows and pages share the byte budget half and half: a flood of pages cannot evict every row.
        self.rows = _Lru(max_rows, max_bytes // 2)
        self.pages = _Lru(max_pages, max_bytes // 2)
        self._full: set[str] = set()  # ids whose cached row came from track.get (with peaks)
        self._clock = clock
        self.last_ok: float | None = None  # the last successful library read here
        self.served_stale = 0

    # ------------------------------------------------------------ filling

    def _put_row(self, track: dict[str, Any], *, full: bool, size: int | None = None) -> None:
        tid = str(track.get("id"))
        if not full and tid in self._full and tid in self.rows:
            return  # a list row (no peaks) does not replace the full row of track.get
        self.rows.put(tid, track, _size(track) if size is None else size)
        (self._full.add if full else self._full.discard)(tid)

    def _evicted(self) -> None:
        if len(self._full) > len(self.rows):
            self._full &= {k for k in self._full if k in self.rows}

    def remember_track(self, track: dict[str, Any]) -> None:
        self._put_row(dict(track), full=True)
        self._evicted()
        self.last_ok = self._clock()

    def remember_page(self, key: str, page: dict[str, Any]) -> None:
        page = {**page, "tracks": [dict(t) for t in page.get("tracks") or []]}
        sizes = [_size(t) for t in page["tracks"]]  # each row measured once, for the page and the row
        # With the ids it holds, so an event finds the pages to edit without walking their rows.
        self.pages.put(key, (page, {str(t.get("id")) for t in page["tracks"]}),
                       sum(sizes) + _size({k: v for k, v in page.items() if k != "tracks"}))
        for t, size in zip(page["tracks"], sizes):
            self._put_row(dict(t), full=False, size=size)
        self._evicted()
        self.last_ok = self._clock()

    # ------------------------------------------------------------ invalidation

    def on_event(self, name: str, data: dict[str, Any]) -> None:
        """An EventHub listener: library changes from this host or relayed from another."""
        if not self.enabled:
            return
        if name == "track.deleted":
            tid = str(data.get("id"))
            self.rows.pop(tid)
            self._full.discard(tid)
            self._edit_pages(tid, None)
        elif name in ("track.added", "track.updated") and "id" in data:
            tid = str(data["id"])
            row = {k: v for k, v in data.items() if k not in ("stale", "stale_since")}
            if "peaks" not in row and tid in self._full and tid in self.rows:  # an edit keeps the peaks
                row = {**self.rows.get(tid), **row}
            self._put_row(row, full="peaks" in row)
            self._evicted()
            if name == "track.updated":
                self._edit_pages(tid, {k: v for k, v in row.items() if k != "peaks"})

    def _edit_pages(self, tid: str, row: dict[str, Any] | None) -> None:
        """Replace (or, with None, remove) track ``tid`` in every cached page.

        A new track is not added to pages: a page stays what this host last saw, and an answer
        from it says so (stale).  A deleted one must not be offered, an edited one shows its edit.
        Sizes change by the row's own size (never re-measuring whole pages: this runs on the loop)."""
        new_size = _size(row) if row is not None else 0
        for key in self.pages.keys():
            page, ids = self.pages.peek(key)
            if tid not in ids:
                continue
            tracks = page["tracks"]
            old = next(t for t in tracks if str(t.get("id")) == tid)
            if row is None:
                total = page.get("total")
                page = {**page, "tracks": [t for t in tracks if t is not old],
                        "total": total - 1 if isinstance(total, int) and total else total}
                ids = ids - {tid}
            else:
                page = {**page, "tracks": [row if t is old else t for t in tracks]}
            self.pages.replace(key, (page, ids), self.pages.size_of(key) + new_size - _size(old))

    def clear(self) -> None:
        self.rows.clear()
        self.pages.clear()
        self._full.clear()

    # ------------------------------------------------------------ answering

    def _stale(self, since: float | None) -> dict[str, Any]:
        self.served_stale += 1
        return {"stale": True, "stale_since": since if since is not None else self.last_ok}

    def track(self, track_id: str, *, full: bool = True) -> dict[str, Any] | None:
        """The cached row of ``track_id`` (full: one read with track.get, peaks included)."""
        if track_id not in self.rows or (full and track_id not in self._full):
            return None
        return dict(self.rows.get(track_id))

    def page(self, key: str) -> dict[str, Any] | None:
        entry = self.pages.get(key)
        if entry is None:
            return None
        p = entry[0]
        return {**p, "tracks": [dict(t) for t in p.get("tracks") or []]}

    async def get_track(self, read: Callable[[], Awaitable[dict[str, Any]]], track_id: str, *,
                        since: float | None = None, full: bool = True) -> dict[str, Any]:
        """``read()`` (the store's get_track), remembered; on "unavailable" the cached row, marked stale."""
        if not self.enabled:
            return await read()
        try:
            track = await read()
        except StoreError as exc:
            if exc.code != "unavailable":
                if exc.code == "not_found":
                    self.rows.pop(track_id)
                    self._full.discard(track_id)
                raise
            cached = self.track(track_id, full=full)
            if cached is None:
                raise StoreError("unavailable", f"{exc.message}; track {track_id} was not read on this host "
                                                "before, so it cannot be shown until the database is back") from exc
            return {**cached, **self._stale(since)}
        self.remember_track(track)
        return track

    async def list_tracks(self, read: Callable[[], Awaitable[dict[str, Any]]], params: dict[str, Any], *,
                          since: float | None = None) -> dict[str, Any]:
        """``read()`` (the store's list_tracks with ``params``), remembered; on "unavailable" the
        same page as last read here, marked stale."""
        if not self.enabled:
            return await read()
        key = page_key(params)
        try:
            page = await read()
        except StoreError as exc:
            if exc.code != "unavailable":
                raise
            cached = self.page(key)
            if cached is None:
                raise StoreError("unavailable", f"{exc.message}; this host has not listed the library with "
                                                "these parameters before, so it cannot answer until the "
                                                "database is back") from exc
            return {**cached, **self._stale(since)}
        self.remember_page(key, page)
        return page
