"""model.*: which models exist, load and unload, state."""

from __future__ import annotations

from typing import Any

from dgx_music.daemon.handlers import Context, method
from dgx_music.daemon.handlers.args import Args


@method("model.list")
async def list_models(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Known model names and whether each is cached locally (the engine scans the disk cache in a thread)."""
    return {"models": await ctx.daemon.engine.models()}


@method("model.state")
async def state(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Model, backend, state, device and memory."""
    return ctx.daemon.engine.state()


@method("model.load")
async def load(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Load a model now (the configured default when none is named)."""
    model = ctx.daemon.scheduler.check_model(Args(params).only("model").model("model", None))
    return await ctx.daemon.engine.load(model)


@method("model.unload")
async def unload(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Stop the worker process, which frees the GPU completely."""
    await ctx.daemon.engine.unload()
    return ctx.daemon.engine.state()
