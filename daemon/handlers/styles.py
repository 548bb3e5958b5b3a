"""style.*: styles (LoRAs) trained on your own tracks: train one, list, show, delete."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from dgx_music.daemon import libfiles
from dgx_music.daemon.handlers import Context, method
from dgx_music.daemon.handlers.args import Args
from dgx_music.daemon.jobs.train import TRAIN_KIND, style_dir


def _with_dir(ctx: Context, style: dict[str, Any]) -> dict[str, Any]:
    """A style leaves the daemon with `dir`: its adapter directory on the daemon's machine (under the
    storage root: on shared storage every host names the same files)."""
    return {**style, "dir": str(ctx.daemon.storage.root / style["path"])}


@method("style.train")
async def train(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Queue training a style (a LoRA) on library tracks or a directory of audio files (ACE-Step)."""
    return await ctx.daemon.scheduler.submit(params, kind=TRAIN_KIND)


@method("style.list")
async def list_styles(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Every style: name, base model, steps, tracks it was trained on, final loss, size, created."""
    Args(params).only()
    return {"styles": [_with_dir(ctx, s) for s in await ctx.daemon.store.list_styles()]}


@method("style.get")
async def get_style(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """One style."""
    name = Args(params).only("name").str("name", max_len=64)
    return _with_dir(ctx, await ctx.daemon.store.get_style(name))


@method("style.delete")
async def delete_style(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Delete a style: its row first, then its directory goes to the trash."""
    name = Args(params).only("name").str("name", max_len=64)
    style = await ctx.daemon.store.delete_style(name)
    root = ctx.daemon.storage.root

    def trash() -> None:  # the trash of the storage root: a rename, never a copy across filesystems
        src = style_dir(root, style["name"])
        if src.exists():
            dest = libfiles.trash_dir(root)
            dest.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest / f"{int(time.time())}-style-{style['name']}")

    await asyncio.get_running_loop().run_in_executor(None, trash)
    ctx.daemon.publish("style.deleted", {"name": name})
    return {"deleted": name}
