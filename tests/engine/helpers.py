"""Small helpers shared by the engine tests (supervisor, transport, audiocraft)."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from dgx_music.common.params import GenerationParams, validate_params


def params(**kw: Any) -> GenerationParams:
    """A 1 s MusicGen request with a fixed seed, overridable per test."""
    return validate_params({"prompt": "calm piano", "duration": 1.0, "seed": 1, **kw})


async def wait_for(cond: Callable[[], Any], timeout: float = 30.0) -> None:
    """Poll `cond` until it holds, failing after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
