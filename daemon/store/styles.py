"""Styles: LoRAs trained on your own tracks (daemon/jobs/train.py), one row per finished style.

A style's row is written in the same transaction that marks its training job done, after its
adapter directory is in place (files first, then the row, as with tracks); deleting one removes
the row first, then the caller moves the directory to the trash.
"""

from __future__ import annotations

import json
import re
from typing import Any

from . import clock
from .base import StoreBase
from .errors import StoreError
from .validate import _int, _invalid, _text

#: A style's name: used as a directory name and typed after --lora, so kept plain.
STYLE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_COLUMNS = "name, base_model, steps, rank, tracks, final_loss, size, path, job_id, created"


def check_style_name(name: Any, field: str = "name") -> str:
    if not isinstance(name, str) or not STYLE_NAME_RE.match(name) or name in (".", ".."):
        raise _invalid(field, "a style name is 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit")
    return name


def _style(row: Any) -> dict[str, Any]:
    d = dict(row)
    d["tracks"] = json.loads(d.get("tracks") or "[]")
    return d


class StylesMixin(StoreBase):
    """Writing a finished style with its job's end, listing, reading and deleting styles."""

    async def finish_training(self, job_id: int, style: dict[str, Any]) -> dict[str, Any]:
        """ONE transaction: the style's row and its job marked done. `conflict` when the name is
        taken (another job finished a style of that name first) or the job is not running."""
        job_id = _int("job_id", job_id, 1)
        name = check_style_name(style.get("name"))
        tracks = style.get("tracks") or []
        if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
            raise _invalid("tracks", "must be a list of strings")
        loss = style.get("final_loss")
        row = (name, _text("base_model", style.get("base_model"), max_chars=1000),
               _int("steps", style.get("steps"), 0), _int("rank", style.get("rank"), 1),
               json.dumps(tracks), None if loss is None else float(loss), _int("size", style.get("size"), 0),
               _text("path", style.get("path"), max_chars=1000), job_id)

        async def op() -> dict[str, Any]:
            job = await self._one("SELECT state FROM jobs WHERE id = ?", (job_id,))
            if job is None:
                raise StoreError("not_found", f"no job {job_id}")
            if job["state"] not in ("running", "processing"):
                raise StoreError("conflict", f"job {job_id} is {job['state']}, not running")
            if await self._one("SELECT 1 FROM styles WHERE name = ?", (name,)) is not None:
                raise StoreError("conflict", f"a style named {name} exists already")
            now = clock.now()
            await self._exec(f"INSERT INTO styles ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (*row, now))
            await self._mark_done(job_id, now)  # type: ignore[attr-defined]  # TracksMixin, in every Store
            got = await self._one(f"SELECT {_COLUMNS} FROM styles WHERE name = ?", (name,))
            return _style(got)

        return await self._write(op)

    async def list_styles(self) -> list[dict[str, Any]]:
        async def op() -> list[dict[str, Any]]:
            return [_style(r) for r in await self._all(f"SELECT {_COLUMNS} FROM styles ORDER BY created, name")]

        return await self._run(op)

    async def get_style(self, name: str) -> dict[str, Any]:
        name = check_style_name(name)

        async def op() -> dict[str, Any]:
            row = await self._one(f"SELECT {_COLUMNS} FROM styles WHERE name = ?", (name,))
            if row is None:
                raise StoreError("not_found", f"there is no style {name}")
            return _style(row)

        return await self._run(op)

    async def delete_style(self, name: str) -> dict[str, Any]:
        """Remove the row (committed before the caller moves the directory away); returns it."""
        name = check_style_name(name)

        async def op() -> dict[str, Any]:
            row = await self._one(f"SELECT {_COLUMNS} FROM styles WHERE name = ?", (name,))
            if row is None:
                raise StoreError("not_found", f"there is no style {name}")
            await self._exec("DELETE FROM styles WHERE name = ?", (name,))
            return _style(row)

        return await self._write(op)
