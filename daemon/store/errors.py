"""The store's one exception type, with the codes callers map to protocol errors."""

from __future__ import annotations


class StoreError(Exception):
    """A refused or failed store operation.

    ``code`` is one of: not_found, invalid, conflict, queue_full, corrupt, disk_full,
    unavailable (the database server cannot be reached: PostgreSQL only).
    ``field`` names the offending input for ``invalid`` when there is one.
    """

    CODES = ("not_found", "invalid", "conflict", "queue_full", "corrupt", "disk_full", "unavailable")

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        assert code in self.CODES, code
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def __repr__(self) -> str:
        return f"StoreError({self.code!r}, {self.message!r})"

