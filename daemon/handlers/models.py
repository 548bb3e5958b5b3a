"""model.*: which models exist, load and unload, state."""

from __future__ import annotations

import asyncio
from typing import Any

from dgx_music.daemon.handlers import Context, method
from dgx_music.daemon.handlers.args import Args


@method("model.list")
async def list_models(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Known model names and whether each is cached locally."""
    loop = asyncio.get_running_loop()
    return {"models": await loop.run_in_executor(None, ctx.daemon.engine.models)}  # scans the disk cache


@method("model.state")
async def state(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Model, backend, state, device and memory."""
    return ctx.daemon.engine.state()


@method("model.load")
async def load(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Load a model now (the configured default when none is named)."""
    model = ctx.daemon.scheduler.check_model(Args(params).model("model", None))
    return await ctx.daemon.engine.load(model)


@method("model.unload")
async def unload(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Stop the worker process, which frees the GPU completely."""
    await ctx.daemon.engine.unload()
    return ctx.daemon.engine.state()
