"""Lineage of derived tracks (repaint, cover, stems, add a part, extend): where each came from.

A row per derived track, written in the same transaction as the track (finish_job with
a track's `lineage`), deleted with it. The source is kept by id as text, so deleting a
source keeps its derived tracks and their rows: they report the source as gone.
"""

from __future__ import annotations

import json
from typing import Any

from dgx_music.common.fmt import noun

from .base import StoreBase
from .validate import _invalid, _json_dict, _text, _track_id

#: Operations a lineage row may record (common/operations.py OPERATIONS).
LINEAGE_OPERATIONS = ("repaint", "cover", "stems", "add_part", "extend", "mix", "fit", "loop")


def lineage_row(value: Any) -> dict[str, Any] | None:
    """A track's `lineage` as finish_job accepts it: {source_id|None, source_name, operation, part, params}."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid("lineage", f"must be a dict, got {type(value).__name__}")
    unknown = set(value) - {"source_id", "source_name", "operation", "part", "params"}
    if unknown:
        raise _invalid("lineage", f"unknown {noun(len(unknown), 'field')}: {', '.join(sorted(unknown))}")
    op = value.get("operation")
    if op not in LINEAGE_OPERATIONS:
        raise _invalid("lineage.operation", f"one of {', '.join(LINEAGE_OPERATIONS)}, got {op!r}")
    source_id = value.get("source_id")
    return {
        "source_id": None if source_id is None else _track_id(source_id),
        "source_name": _text("lineage.source_name", value.get("source_name"), max_chars=300, allow_empty=False),
        "operation": op,
        "part": _text("lineage.part", value.get("part"), max_chars=50, optional=True),
        "params": _json_dict("lineage.params", value.get("params") or {}),
    }


class LineageMixin(StoreBase):
    """Writing lineage rows (inside finish_job's transaction) and reading a track's family."""

    async def _insert_lineage(self, seq: int, row: dict[str, Any]) -> None:
        await self._exec(
            "INSERT INTO track_lineage (track_seq, source_id, source_name, operation, part, params) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (seq, row["source_id"], row["source_name"], row["operation"], row["part"], row["params"]))

    async def source_of_key(self, key: str) -> str | None:
        """The library track an earlier operation stored as source `key`, or None (an upload).

        A retry or remix names the daemon's stored copy by key; this finds the track that copy
        was made from, so the new tracks' lineage points at it too. Tracks first (they outlive
        pruned jobs), then jobs (one still queued or running)."""

        async def op() -> str | None:
            source_id, source_key = self._json_text("params", "source_id"), self._json_text("params", "source_key")
            for table, newest in (("tracks", "seq"), ("jobs", "id")):
                found = await self._scalar(
                    f"SELECT {source_id} FROM {table} WHERE {source_key} = ? "
                    f"AND {source_id} IS NOT NULL ORDER BY {newest} DESC LIMIT 1", (key,))
                if isinstance(found, str) and found:
                    return found
            return None

        return await self._run(op)

    async def lineage(self, track_id: str) -> dict[str, Any]:
        """{"id", "source": {...} | None, "derived": [...]} for a track.

        source: {id, name, operation, part, params, exists, title}: id is None for an upload,
        exists False when the source track was deleted since. derived: the tracks made from
        this one, oldest first: {id, title, operation, part, duration}."""
        track_id = _track_id(track_id)

        async def op() -> dict[str, Any]:
            seq = await self._seq(track_id)
            row = await self._one(
                "SELECT l.source_id, l.source_name, l.operation, l.part, l.params, s.title AS source_title "
                "FROM track_lineage l LEFT JOIN tracks s ON s.id = l.source_id WHERE l.track_seq = ?", (seq,))
            source = None
            if row is not None:
                source = {"id": row["source_id"], "name": row["source_name"], "operation": row["operation"],
                          "part": row["part"], "params": json.loads(row["params"] or "{}"),
                          "exists": row["source_title"] is not None, "title": row["source_title"]}
            derived = [{"id": r["id"], "title": r["title"], "operation": r["operation"], "part": r["part"],
                        "duration": r["duration"]}
                       for r in await self._all(
                           "SELECT t.id, t.title, t.duration, l.operation, l.part FROM track_lineage l "
                           "JOIN tracks t ON t.seq = l.track_seq WHERE l.source_id = ? ORDER BY t.seq",
                           (track_id,))]
            return {"id": track_id, "source": source, "derived": derived}

        return await self._run(op)
