"""track.*, library.*, prompt.history: browse, edit, delete and stream library tracks."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from dgx_music.common import protocol
from dgx_music.daemon import libfiles
from dgx_music.daemon.audio import stream
from dgx_music.daemon.handlers import Context, HandlerError, method
from dgx_music.daemon.handlers.args import Args
from dgx_music.daemon.store import MAX_TAG_CHARS, MAX_TAGS_PER_TRACK, StoreError

MAX_CHUNK = stream.MAX_CHUNK
LIST_PARAMS = ("search", "tag", "favorite", "model", "bpm_min", "bpm_max", "key", "sort", "order", "limit",
               "cursor", "job_id", "source")
UPDATE_PARAMS = ("id", "title", "rating", "favorite", "notes", "tags_add", "tags_remove")


def with_file(ctx: Context, track: dict[str, Any]) -> dict[str, Any]:
    """Every track map leaves the daemon with `file`: the absolute path on the daemon's machine,
    beside `path` (relative to the data dir), so no client has to join them itself."""
    return ctx.daemon.storage.with_file(track)


async def read_track(ctx: Context, track_id: str, *, full: bool = True) -> dict[str, Any]:
    """The store's row of ``track_id``; while the database is away, the row this host last read
    (marked ``stale``) or store_unavailable. ``full=False`` also takes a row seen in a list page
    (enough to find the audio file, which lives on shared storage)."""
    store = ctx.daemon.store
    return await ctx.daemon.library_cache.get_track(lambda: store.get_track(track_id), track_id, full=full,
                                                   since=getattr(store, "last_reached", None))


def _stale_of(track: dict[str, Any]) -> dict[str, Any]:
    """The stale marks of a fallback answer, to carry over to a reply built from it."""
    return {k: track[k] for k in ("stale", "stale_since") if k in track}


def _read(path: Path, offset: int, size: int) -> tuple[bytes, int]:
    return stream.read_chunk(path, offset, size), stream.file_size(path)


@method("track.list")
async def list_tracks(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """One page of tracks, filtered, searched and sorted; pass next_cursor for the next.

    ``sort`` is one of store.LIST_SORTS; ``relevance`` (best match first) needs a
    ``search``. The default stays ``created`` with or without a search (protocol 1).
    """
    a = Args(params).only(*LIST_PARAMS)
    lo, hi = a.float("bpm_min", None), a.float("bpm_max", None)
    if lo is not None and hi is not None and lo > hi:  # an empty range matches nothing; not an error
        a.str("cursor", None, max_len=1000)
        return {"tracks": [], "next_cursor": None, "total": 0, "total_exact": True}
    query = dict(
        search=a.str("search", None, max_len=1000), tag=a.str("tag", None, max_len=MAX_TAG_CHARS),
        favorite=a.bool("favorite", None), model=a.str("model", None, max_len=500),
        bpm_min=a.float("bpm_min", None), bpm_max=a.float("bpm_max", None),
        key=a.str("key", None, max_len=100), source=a.str("source", None, max_len=64),
        sort=a.str("sort", "created", max_len=20),
        order=a.str("order", "desc", max_len=4), limit=a.int("limit", 50, lo=1, hi=500),
        cursor=a.str("cursor", None, max_len=1000), job_id=a.int("job_id", None, lo=1))
    store = ctx.daemon.store
    try:  # while the database is away: the same page as this host last read, marked stale
        page = await ctx.daemon.library_cache.list_tracks(lambda: store.list_tracks(**query), query,
                                                          since=getattr(store, "last_reached", None))
    except StoreError as exc:  # name the parameter (`field`), e.g. sort=relevance without a search
        if exc.code == "invalid" and exc.field:
            raise HandlerError(protocol.INVALID_PARAMS, str(exc), field=exc.field) from None
        raise
    page["tracks"] = [with_file(ctx, t) for t in page["tracks"]]
    return page


@method("track.get")
async def get(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """One track with its waveform peaks."""
    return with_file(ctx, await read_track(ctx, Args(params).only("id").str("id", max_len=64)))


@method("track.peaks")
async def peaks(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Only the waveform peaks (min/max pairs) and duration, for seek bars."""
    t = await read_track(ctx, Args(params).str("id", max_len=64))
    return {"id": t["id"], "duration": t["duration"], "peaks": t.get("peaks") or [], **_stale_of(t)}


def _tags(a: Args, name: str) -> list[str]:
    """A list of tags as the schema states it: at most MAX_TAGS_PER_TRACK items of MAX_TAG_CHARS characters."""
    if isinstance(a.params.get(name), str):  # a list, as the schema says (one tag is a list of one)
        raise HandlerError(protocol.INVALID_PARAMS, f"{name}: must be a list of tags", field=name)
    tags = a.str_list(name, [], max_items=MAX_TAGS_PER_TRACK)
    for tag in tags:
        if len(tag) > MAX_TAG_CHARS:
            raise HandlerError(protocol.INVALID_PARAMS, f"{name}: {tag[:20]!r}... is longer than {MAX_TAG_CHARS} "
                               "characters", field=name)
    return tags


@method("track.update")
async def update(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Change title, rating, favourite, notes or tags."""
    a = Args(params).only(*UPDATE_PARAMS)
    track = await ctx.daemon.store.update_track(
        a.str("id", max_len=64), title=a.str("title", None, max_len=1000),
        rating=a.int("rating", None), favorite=a.bool("favorite", None),
        notes=a.str("notes", None, max_len=20000), tags_add=_tags(a, "tags_add"), tags_remove=_tags(a, "tags_remove"))
    track = with_file(ctx, track)
    ctx.daemon.publish("track.updated", track)
    return track


@method("track.delete")
async def delete(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Remove the row, then move the file to the trash (the order a crash cannot break).

    The stored path is checked first: a row whose path leaves the data dir (a tampered
    database or backup) is refused with ``forbidden`` and kept, never half deleted."""
    track_id = Args(params).str("id", max_len=64)
    track = await ctx.daemon.store.get_track(track_id)
    loop = asyncio.get_running_loop()
    data_dir = ctx.daemon.storage.root
    try:
        await loop.run_in_executor(None, libfiles.library_file, data_dir, track["path"])
        await loop.run_in_executor(None, libfiles.trash_dir, data_dir)  # a symlinked trash/ is refused first
    except libfiles.OutsideRoot as exc:
        raise HandlerError(protocol.FORBIDDEN, f"track {track_id} was not deleted: {exc}") from None
    track = await ctx.daemon.store.delete_track(track_id)
    trashed = await loop.run_in_executor(None, libfiles.move_to_trash, data_dir, track["path"])
    if track.get("midi_path"):  # its MIDI goes with it (dgx-music midi)
        try:
            await loop.run_in_executor(None, libfiles.move_to_trash, data_dir, track["midi_path"])
        except libfiles.OutsideRoot:
            pass  # a tampered path: the row is gone, the file outside is not ours to move
    ctx.daemon.publish("track.deleted", {"id": track["id"]})
    return {"id": track["id"], "trashed": str(trashed.relative_to(data_dir)) if trashed else None}


@method("library.empty_trash")
async def empty_trash(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Delete the files of deleted tracks for good."""
    loop = asyncio.get_running_loop()
    return {"removed": await loop.run_in_executor(None, libfiles.empty_trash, ctx.daemon.storage.root)}


@method("prompt.history")
async def history(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Distinct recent prompts, newest first (the composer's history)."""
    limit = Args(params).int("limit", 100, lo=1, hi=1000)
    return {"prompts": await ctx.daemon.store.prompt_history(limit)}


@method("track.audio")
async def audio(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """The track's WAV file in bounded chunks, so a remote client can play it."""
    a = Args(params)
    track = await read_track(ctx, a.str("id", max_len=64), full=False)
    offset = a.int("offset", 0, lo=0, hi=2**40)
    size = a.int("size", MAX_CHUNK, lo=1, hi=MAX_CHUNK)
    loop = asyncio.get_running_loop()
    try:
        path = await loop.run_in_executor(None, libfiles.library_file, ctx.daemon.storage.root, track["path"])
    except libfiles.OutsideRoot as exc:
        raise HandlerError(protocol.FORBIDDEN, str(exc)) from None
    try:
        data, total = await loop.run_in_executor(None, _read, path, offset, size)
    except FileNotFoundError:
        raise HandlerError(protocol.NOT_FOUND, f"the audio file of track {track['id']} is missing") from None
    return {"id": track["id"], "data": data, "offset": offset, "total": total,
            "eof": offset + len(data) >= total, "format": path.suffix.lstrip("."), **_stale_of(track)}
