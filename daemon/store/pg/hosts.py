"""The hosts sharing one PostgreSQL queue (issue 21): each daemon writes its own row as a
heartbeat (daemon/hosts.py), and ``status`` lists them all.  PostgreSQL only: on SQLite
there is one host, the daemon itself."""

from __future__ import annotations

from .. import clock
from ..validate import _float, _int, _text


class HostsMixin:
    """Heartbeats of the daemons sharing the store."""

    async def heartbeat(self, host: str, *, state: str, model: str | None, job_id: int | None,
                        started: float, lease_s: float | None = None) -> None:
        """Write (insert or update) ``host``'s row: what it runs now, seen now."""
        host = _text("host", host, max_chars=255, allow_empty=False)
        state = _text("state", state, max_chars=50, allow_empty=False)
        model = _text("model", model, max_chars=500, optional=True)
        job_id = None if job_id is None else _int("job_id", job_id, 1)
        lease_s = _float("lease_s", lease_s, lo=0.001, optional=True)

        async def op() -> None:
            await self._exec(  # type: ignore[attr-defined]
                "INSERT INTO hosts (name, model, state, job_id, started, last_seen, lease_s)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET model = excluded.model, state = excluded.state, "
                "job_id = excluded.job_id, started = excluded.started, last_seen = excluded.last_seen, "
                "lease_s = excluded.lease_s",
                (host, model, state, job_id, float(started), clock.now(), lease_s))

        await self._run(op)  # type: ignore[attr-defined]

    async def hosts(self) -> list[dict]:
        """Every host that has written a heartbeat: [{name, model, state, job_id, started,
        last_seen, lease_s}], by name.  A host that stopped keeps its row (its last_seen says when)."""
        async def op() -> list[dict]:
            rows = await self._all(  # type: ignore[attr-defined]
                "SELECT name, model, state, job_id, started, last_seen, lease_s FROM hosts ORDER BY name")
            return [dict(r) for r in rows]

        return await self._run(op)  # type: ignore[attr-defined]

    async def leave(self, host: str) -> None:
        """``host`` stopped in order: its row says so (kept, so status shows when it left)."""
        async def op() -> None:
            await self._exec("UPDATE hosts SET state = 'stopped', job_id = NULL, last_seen = ? WHERE name = ?",  # type: ignore[attr-defined]
                             (clock.now(), host))

        await self._run(op)  # type: ignore[attr-defined]
