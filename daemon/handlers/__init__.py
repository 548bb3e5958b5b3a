"""Request handlers: one module per family of methods, registered by name.

`@method("job.submit")` adds a coroutine `fn(ctx, params) -> result` to the
registry. A handler raises HandlerError (or one of the domain errors mapped in
`map_error`) for an answer the client should see; anything else is a bug,
logged with its traceback and answered as `internal`.
"""

from __future__ import annotations

import errno
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from dgx_music.common import protocol
from dgx_music.common.params import ParamError
from dgx_music.common.paths import OutsideRoot

if TYPE_CHECKING:
    from dgx_music.daemon.app import Daemon
    from dgx_music.daemon.server import Connection


class HandlerError(Exception):
    def __init__(self, code: str, message: str, **data: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


@dataclass
class Context:
    """What a handler may touch: the daemon and, for socket requests, the connection."""

    daemon: "Daemon"
    conn: "Connection | None" = None


Handler = Callable[[Context, dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class MethodSpec:
    name: str
    fn: Handler
    doc: str


REGISTRY: dict[str, MethodSpec] = {}

#: Modules that register methods; imported once by `load_all`.
MODULES = ("core", "models", "jobs", "tracks", "operations", "midi", "styles", "stream", "speaker")


def method(name: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        if name in REGISTRY:
            raise RuntimeError(f"method {name} registered twice")
        REGISTRY[name] = MethodSpec(name, fn, (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "")
        return fn

    return deco


def load_all() -> dict[str, MethodSpec]:
    for mod in MODULES:
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as exc:
            # Families land one issue at a time; a missing module is fine, a broken one is not.
            if exc.name != f"{__name__}.{mod}":
                raise
    return REGISTRY


def map_error(exc: BaseException) -> HandlerError | None:
    """Turn domain errors into protocol errors; None means 'a bug, answer internal'."""
    if isinstance(exc, HandlerError):
        return exc
    if isinstance(exc, ParamError):
        return HandlerError(protocol.INVALID_PARAMS, str(exc), field=exc.field)
    if isinstance(exc, OutsideRoot):  # a stored path or a planted symlink that would lead out of the data dir
        return HandlerError(protocol.FORBIDDEN, str(exc))
    code = getattr(exc, "code", None)
    name = type(exc).__name__
    if name == "StoreError" and isinstance(code, str):
        mapped = {"not_found": protocol.NOT_FOUND, "conflict": protocol.CONFLICT,
                  "queue_full": protocol.QUEUE_FULL, "invalid": protocol.INVALID_PARAMS,
                  "disk_full": protocol.DISK_FULL, "unavailable": protocol.STORE_UNAVAILABLE}
        extra = {"field": exc.field} if code == "invalid" and getattr(exc, "field", None) else {}
        return HandlerError(mapped.get(code, protocol.INTERNAL), str(exc), **extra)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return HandlerError(protocol.DISK_FULL, f"the daemon's disk is full ({exc.strerror}); free some space")
    if name == "EngineError" and isinstance(code, str):
        return HandlerError(protocol.ENGINE_ERROR, getattr(exc, "message", str(exc)), reason=code)
    return None


async def dispatch(ctx: Context, name: str, params: dict[str, Any]) -> Any:
    """Run one method; the socket server and the HTTP API both come through here."""
    spec = REGISTRY.get(name)
    if spec is None:
        raise HandlerError(protocol.UNKNOWN_METHOD, f"unknown method {name!r}; `hello` lists them")
    return await spec.fn(ctx, params)
