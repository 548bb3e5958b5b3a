"""Typed access to a request's params map, with errors that name the parameter."""

from __future__ import annotations

import math
from typing import Any, Iterable, TypeVar

from dgx_music.common import protocol
from dgx_music.common.params import ParamError, check_model_name
from dgx_music.daemon.handlers import HandlerError

T = TypeVar("T")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_MISSING = object()


def _bad(name: str, message: str) -> HandlerError:
    return HandlerError(protocol.INVALID_PARAMS, f"{name}: {message}", field=name)


class Args:
    def __init__(self, params: Any) -> None:
        if not isinstance(params, dict):
            raise _bad("params", f"must be a map, got {type(params).__name__}")
        self.params = params

    def only(self, *allowed: str) -> "Args":
        """Refuse parameters the method does not take, naming the first (as job.submit does),
        so a misspelt field (`favourite`, `tags`) is an error instead of a silent no-op."""
        unknown = sorted(k for k in self.params if k not in allowed)
        if unknown:
            name = str(unknown[0])
            raise _bad(name, f"unknown field {name!r}; this method takes {', '.join(allowed)}")
        return self

    def _get(self, name: str, default: Any) -> Any:
        value = self.params.get(name, _MISSING)
        if value is _MISSING or value is None:
            if default is _MISSING:
                raise _bad(name, "is required")
            return default
        return value

    def int(self, name: str, default: Any = _MISSING, *, lo: int | None = None, hi: int | None = None) -> Any:
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON (and JSON Schema) make no difference between 3 and 3.0
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(name, f"must be an integer, got {type(value).__name__}")
        # Unbounded still means "fits in SQLite's 64-bit integer": ids go straight into queries.
        lo = INT64_MIN if lo is None else max(lo, INT64_MIN)
        hi = INT64_MAX if hi is None else min(hi, INT64_MAX)
        if not lo <= value <= hi:
            shown = value if abs(value) < 10**30 else f"a number of {len(str(abs(value)))} digits"
            raise _bad(name, f"must be between {lo} and {hi}, got {shown}")
        return value

    def float(self, name: str, default: Any = _MISSING, *, lo: float | None = None,
              hi: float | None = None) -> Any:
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad(name, f"must be a number, got {type(value).__name__}")
        value = float(value)
        if lo is None and hi is None:
            return value
        # Bounded: NaN and infinities are out of range too.
        if not math.isfinite(value) or lo is not None and value < lo or hi is not None and value > hi:
            if lo is not None and hi is not None:
                raise _bad(name, f"must be between {lo:g} and {hi:g}, got {value:g}")
            raise _bad(name, f"must be >= {lo:g}, got {value:g}" if lo is not None
                       else f"must be <= {hi:g}, got {value:g}")
        return value

    def str(self, name: str, default: Any = _MISSING, *, max_len: int = 4096, choices: Iterable[str] = ()) -> Any:
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str):
            raise _bad(name, f"must be text, got {type(value).__name__}")
        if len(value) > max_len:
            raise _bad(name, f"is longer than {max_len} characters")
        allowed = tuple(choices)
        if allowed and value not in allowed:
            raise _bad(name, f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def bool(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, bool):
            raise _bad(name, f"must be true or false, got {type(value).__name__}")
        return value

    def str_list(self, name: str, default: Any = _MISSING, *, max_items: int = 256) -> Any:
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _bad(name, "must be a list of text")
        if len(value) > max_items:
            raise _bad(name, f"has more than {max_items} items")
        return value

    def map(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if not isinstance(value, dict):
            raise _bad(name, f"must be a map, got {type(value).__name__}")
        return value

    def model(self, name: str, default: Any = _MISSING) -> Any:
        """A model name, hub id or directory, checked before anything touches the file system."""
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        try:
            return check_model_name(value, name)
        except ParamError as exc:
            raise _bad(name, exc.message) from None
