"""op.*: operations on tracks (repaint, cover, stems, add a part, extend), and track.lineage."""

from __future__ import annotations

from typing import Any

from dgx_music.common.fitloop import FIT, LOOP
from dgx_music.common.operations import ADD_PART, COVER, EXTEND, REPAINT, STEMS
from dgx_music.daemon.handlers import Context, method
from dgx_music.daemon.handlers.args import Args
from dgx_music.daemon.jobs.operations import KINDS


@method("op.repaint")
async def repaint(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Queue a repaint: a new track, the source with [start, end) regenerated."""
    return await ctx.daemon.scheduler.submit(params, kind=REPAINT)


@method("op.cover")
async def cover(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Queue a cover: the source's structure in the prompt's style."""
    return await ctx.daemon.scheduler.submit(params, kind=COVER)


@method("op.stems")
async def stems(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Queue a stem split: one new track per part, aligned with the source."""
    return await ctx.daemon.scheduler.submit(params, kind=STEMS)


@method("op.add_part")
async def add_part(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Queue an added part (and, with mix, the source with it mixed in)."""
    return await ctx.daemon.scheduler.submit(params, kind=ADD_PART)


@method("op.extend")
async def extend(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Queue an extension: a new track, the source with `by` seconds of new music after it (or before)."""
    return await ctx.daemon.scheduler.submit(params, kind=KINDS[EXTEND].name)
@method("op.fit")
async def fit(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Queue a fit: a new track, the source stretched to a tempo and shifted to a key."""
    return await ctx.daemon.scheduler.submit(params, kind=FIT)


@method("op.loop")
async def loop(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Queue a loop: exactly N bars at a tempo, generated from a prompt or cut from a source."""
    return await ctx.daemon.scheduler.submit(params, kind=LOOP)


@method("track.lineage")
async def lineage(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Where a track came from (source, operation, parameters) and the tracks made from it."""
    return await ctx.daemon.store.lineage(Args(params).str("id", max_len=64))
