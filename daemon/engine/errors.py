"""Engine errors, shared by the worker process and the supervisor.

One exception type with a machine-readable `code` crosses the process boundary
(as a msgpack map) so the daemon can decide what is worth retrying without
parsing messages.
"""

from __future__ import annotations

from typing import Any

# code -> transient (worth retrying the job later)
ERROR_CODES: dict[str, bool] = {
    "worker_crashed": True,
    "oom": True,
    "hung": True,
    "model_not_found": False,
    "bad_model": False,
    "bad_request": False,
    "cancelled": False,
    "internal": False,
}


class EngineError(Exception):
    """A classified engine failure; `transient` says whether a retry may succeed."""

    def __init__(self, code: str, message: str, transient: bool | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code if code in ERROR_CODES else "internal"
        self.message = message
        self.transient = ERROR_CODES.get(self.code, False) if transient is None else transient

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "transient": self.transient}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EngineError":
        return cls(str(d.get("code", "internal")), str(d.get("message", "")), d.get("transient"))


class Cancelled(Exception):
    """Raised from inside a decode step to abort generation at that step."""
