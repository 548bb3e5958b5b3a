"""A store whose database server can be made 'away' in-process (issue 21's read cache tests)."""

from __future__ import annotations

from typing import Any

from dgx_music.daemon.store import StoreError


class AwayStore:
    """Wraps a real store; while ``away`` every call raises StoreError("unavailable"), as the
    PostgreSQL store does when its server is gone."""

    def __init__(self, store: Any, last_reached: float = 1_700_000_000.0) -> None:
        self.store = store
        self.away = False
        self.last_reached = last_reached

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if not callable(attr):
            return attr

        async def call(*a: Any, **kw: Any) -> Any:
            if self.away:
                raise StoreError("unavailable", "lost the database postgresql://db/dgx: connection refused")
            return await attr(*a, **kw)

        return call
