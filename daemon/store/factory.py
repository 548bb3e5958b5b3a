"""open_store: the one place that picks the store's backend from ``store.url``.

Empty (the default): SQLite, one file in the data directory.  ``postgresql://...``:
PostgreSQL, the job queue and library shared by every daemon that names the same
database.  The daemon above gets one interface either way (the Store's methods).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union
from urllib.parse import urlsplit

from .validate import _invalid

#: The SQLite database's file name in the data directory.
DB_NAME = "dgx-music.db"


def store_kind(url: str) -> str:
    """"sqlite" for an empty url, "postgresql" for a PostgreSQL URL; StoreError naming
    ``store.url`` for anything else."""
    url = (url or "").strip()
    if not url:
        return "sqlite"
    if urlsplit(url).scheme in ("postgresql", "postgres"):
        return "postgresql"
    raise _invalid("store.url", f"must be empty (SQLite in the data directory) or a "
                                f"postgresql://user@host/db URL, got {url.split('://')[0]!r}://...")


async def open_url(url: str, *, data_dir: Path | str, queue_limit: int = 1000, **sqlite_kw: Any) -> Any:
    """Open the store ``url`` names (empty: SQLite at ``data_dir``/DB_NAME).
    ``sqlite_kw`` (synchronous, check) apply to SQLite only."""
    if store_kind(url) == "sqlite":
        from . import Store
        return await Store.open(Path(data_dir) / DB_NAME, queue_limit=queue_limit, **sqlite_kw)
    from .pg import PgStore  # asyncpg is imported only when PostgreSQL is configured
    return await PgStore.open(url.strip(), queue_limit=queue_limit)


async def open_store(settings: Any, *, data_dir: Union[Path, str, None] = None) -> Any:
    """The daemon's store as ``settings`` (common.config.Settings) configure it."""
    return await open_url(str(settings["store.url"] or ""),
                          data_dir=settings.data_dir if data_dir is None else data_dir,
                          queue_limit=int(settings["daemon.queue_limit"]))
