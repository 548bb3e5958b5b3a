"""`dgx-music status`: is the daemon up, and what is it doing."""

from __future__ import annotations

import argparse
import time
from typing import Any

from dgx_music.cli.common import add_client_flags, emit, human_bytes, human_duration, run_client
from dgx_music.common.client import Client


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="show the daemon's state",
                       description="Show the daemon's version, uptime, clients, model and queue. "
                                   "Exit code 3 means no daemon answered.")
    add_client_flags(p)
    p.set_defaults(func=lambda args: run_client(args, _status))


async def _status(client: Client, args: argparse.Namespace) -> int:
    emit(args, await client.call("status", timeout=args.timeout), format_status)
    return 0


def format_status(st: dict[str, Any]) -> str:
    lines = [
        f"dgx-music {st['version']} (protocol {st['protocol']}), pid {st['pid']}, up {human_duration(st['uptime'])}",
        f"socket   {st['socket']}",
        f"data     {st['data_dir']}",
        f"clients  {st['clients']} connected, {st['subscribers']} subscribed",
    ]
    model = st.get("model")
    if model:
        mem = model.get("memory") or {}
        where = f" on {model['device']}" if model.get("device") else ""
        extra = f", GPU {human_bytes(mem['cuda_allocated'])}" if mem.get("cuda_allocated") else ""
        lines.append(f"model    {model.get('model')} [{model.get('backend')}] {model.get('state')}{where}{extra}")
    queue = st.get("queue")
    if queue is not None:
        states = ("running", "processing", "queued", "done", "failed", "cancelled")
        parts = [f"{queue[k]} {k}" for k in states if queue.get(k)]
        lines.append("queue    " + (", ".join(parts) if parts else "empty"))
    store = st.get("store")
    if store:  # a shared store (PostgreSQL): is its server there now?
        if store.get("reachable"):
            lines.append(f"store    {store.get('location')}: reachable")
        else:
            since = store.get("last_reached")
            when = f" since {time.strftime('%H:%M:%S', time.localtime(since))}" if since else ""
            lines.append(f"store    {store.get('location')}: DATABASE AWAY{when}; answering the library reads "
                         f"this host has made (stale), refusing writes ({store.get('served_stale', 0)} stale "
                         "answers so far)")
    for h in st.get("hosts") or []:  # several daemons on one shared queue (PostgreSQL)
        doing = f", job {h['job_id']}" if h.get("job_id") else ""
        model = h.get("model") or "no model loaded"
        seen = f", seen {_ago(h['seen_s'])}" if h.get("seen_s") is not None else ""
        if h["state"] == "gone":
            seen += ": unreachable, its jobs go to the other hosts"
        lines.append(f"host     {h['host']}{' (this one)' if h.get('this') else ''}: {h['state']}, {model}{doing}{seen}")
    return "\n".join(lines)


def _ago(seconds: float) -> str:
    """How long ago a host wrote its row, the way a person reads it."""
    if seconds < 1:
        return "just now"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"
