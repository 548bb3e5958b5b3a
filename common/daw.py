"""Which library tracks go into an Ardour session, and what each is called there.

Shared by `dgx-music export --ardour` and the TUI's export so both lay out the same
session. With stems, each chosen track brings the tracks the stems operation made from
it (found through `track.lineage`): the mix first, then one track per part, all at 0.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from dgx_music.common.operations import STEMS

#: An RPC call: `client.call` or the TUI's `App.call` (method, params) -> result.
Call = Callable[[str, dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class SessionTrack:
    track: dict[str, Any]  # the track.get document (its `path` is what is read)
    name: str  # the Ardour track name
    part: str | None = None  # the stem's part; None for a mix or a plain track


@dataclass
class SessionPlan:
    tracks: list[SessionTrack] = field(default_factory=list)
    without_stems: list[str] = field(default_factory=list)  # chosen tracks no stems were made from


def _title(t: dict[str, Any]) -> str:
    return str(t.get("title") or t.get("prompt") or t.get("id"))


async def plan_session(call: Call, tracks: list[dict[str, Any]], with_stems: bool) -> SessionPlan:
    """The session's tracks in order. Without stems: each chosen track under its title. With
    stems: per chosen track, "mix" and each part's name (prefixed by the title when several
    tracks are chosen, so names stay unique); when a part was split out more than once the
    newest stem of that part is used. A chosen track that is itself a stem of another chosen
    track is not added twice."""
    plan = SessionPlan()
    if not with_stems:
        plan.tracks = [SessionTrack(t, _title(t)) for t in tracks]
        return plan
    chosen = {t["id"] for t in tracks}
    prefix_titles = len(tracks) > 1
    for t in tracks:
        lin = await call("track.lineage", {"id": t["id"]})
        src = lin.get("source") or {}
        if src.get("operation") == STEMS and src.get("id") in chosen:
            continue  # it comes in as a stem of its chosen source
        parts: dict[str, str] = {}
        for d in lin.get("derived") or []:
            if d.get("operation") == STEMS and d.get("part"):
                parts.pop(d["part"], None)  # the newest stem of a part wins
                parts[d["part"]] = d["id"]
        prefix = f"{_title(t)} " if prefix_titles else ""
        if not parts:
            plan.without_stems.append(t["id"])
            plan.tracks.append(SessionTrack(t, _title(t)))
            continue
        plan.tracks.append(SessionTrack(t, f"{prefix}mix"))
        for part, sid in parts.items():
            plan.tracks.append(SessionTrack(await call("track.get", {"id": sid}), f"{prefix}{part}", part))
    return plan
