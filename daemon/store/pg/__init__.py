"""The PostgreSQL backend of the store (``store.url = "postgresql://..."``).

The same mixins as SQLite's Store over an asyncpg connection (conn.py), its own
schema (schema.py) and the search dialect (search.py).  Imported only when a
PostgreSQL URL is configured, so SQLite installs need no asyncpg.
"""

from __future__ import annotations

from ..claims import ClaimsMixin
from ..jobs import JobsMixin
from ..lineage import LineageMixin
from ..search import SearchMixin
from ..styles import StylesMixin
from ..tracks import TracksMixin
from .hosts import HostsMixin
from .conn import PgBase, is_pg_url, pg_sql, redact
from .schema import LATEST_VERSION, MIGRATIONS
from .search import PG_SEARCH, pg_tsquery

__all__ = ["PgStore", "LATEST_VERSION", "MIGRATIONS", "is_pg_url", "pg_sql", "pg_tsquery", "redact"]


class PgStore(HostsMixin, ClaimsMixin, JobsMixin, SearchMixin, TracksMixin, LineageMixin, StylesMixin, PgBase):
    """The PostgreSQL store.  Create with ``await PgStore.open(url)`` (or ``open_store``)."""

    _search_sql = PG_SEARCH
    _skip_locked = " FOR UPDATE SKIP LOCKED"  # a claim never waits on, nor takes, a row another holds
