"""hello, status, subscribe, unsubscribe: what every client needs first."""

from __future__ import annotations

import logging
from typing import Any

from dgx_music import __version__
from dgx_music.common import protocol
from dgx_music.daemon.handlers import REGISTRY, Context, HandlerError, method
from dgx_music.daemon.handlers.args import Args
from dgx_music.daemon.store import StoreError

log = logging.getLogger(__name__)


@method("hello")
async def hello(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Protocol version and capabilities; optional, any request may come first."""
    args = Args(params)
    client = args.str("client", "", max_len=128)
    if ctx.conn is not None:
        ctx.conn.client_name = client
    return {
        "protocol": protocol.PROTOCOL_VERSION,
        "version": __version__,
        "methods": sorted(REGISTRY),
        "topics": list(protocol.TOPICS),
        "max_frame": ctx.daemon.server.max_frame,
    }


@method("status")
async def status(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Daemon version, uptime, clients; model and queue when present, with the runner and the disk;
    on a shared store every host as its row says now (hosts write theirs when they change)."""
    sched = ctx.daemon.scheduler
    away: StoreError | None = None
    if sched is not None:
        try:
            await sched.hosts.refresh()
        except StoreError as exc:  # the rows read last time, with their age: still worth showing
            log.warning("could not read the hosts' rows: %s", exc.message)
            away = exc if exc.code == "unavailable" else None
    out = ctx.daemon.status()
    if sched is not None:
        # A runner that is down or paused means queued jobs wait: say so, not just the counts.
        out["runner"] = sched.runner_status()
        out["disk"] = sched.disk_status()
        out["disk_full"] = sched.disk_full
        if sched.hosts.enabled:  # a database server that can go away: say whether it is there
            store = ctx.daemon.store
            out["store"] = {"location": getattr(store, "location", None), "reachable": away is None,
                            "last_reached": getattr(store, "last_reached", None),
                            "served_stale": ctx.daemon.library_cache.served_stale}
    return out


def _topics(params: dict[str, Any]) -> set[str]:
    topics = set(Args(params).str_list("topics"))
    unknown = topics - set(protocol.TOPICS) - {"*"}
    if unknown:
        raise HandlerError(protocol.INVALID_PARAMS,
                           f"topics: unknown topic {sorted(unknown)[0]!r}; known: {', '.join(protocol.TOPICS)} or *",
                           field="topics")
    return topics


@method("subscribe")
async def subscribe(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Receive events for the named topics on this connection."""
    if ctx.conn is None:
        raise HandlerError(protocol.BAD_REQUEST, "subscribe needs a socket connection")
    ctx.conn.topics |= _topics(params)
    ctx.daemon.events.add(ctx.conn)
    return {"topics": sorted(ctx.conn.topics)}


@method("unsubscribe")
async def unsubscribe(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Stop events for the named topics (all topics when none are named)."""
    if ctx.conn is None:
        raise HandlerError(protocol.BAD_REQUEST, "unsubscribe needs a socket connection")
    if params.get("topics"):
        ctx.conn.topics -= _topics(params)
    else:
        ctx.conn.topics.clear()
    if not ctx.conn.topics:
        ctx.daemon.events.remove(ctx.conn)
    return {"topics": sorted(ctx.conn.topics)}
