"""Validation of every value the store accepts: a refused value is StoreError("invalid")
naming the field, so the handlers can pass it on as ``invalid_params``."""

from __future__ import annotations

import json
import math
import numbers
import re
import unicodedata
from pathlib import PurePosixPath
from typing import Any

from .errors import StoreError

try:  # one source of truth for generation limits when the package is installed
    from dgx_music.common.params import MAX_COUNT, MAX_PROMPT_CHARS, MAX_SEED
except Exception:  # pragma: no cover - store used stand-alone
    MAX_COUNT, MAX_PROMPT_CHARS, MAX_SEED = 16, 2000, 2**32 - 1

MAX_TITLE_CHARS = 200
MAX_NOTES_CHARS = 10_000
MAX_TAG_CHARS = 48
MAX_TAGS_PER_TRACK = 64
TITLE_FROM_PROMPT_CHARS = 60


def _invalid(field: str, message: str) -> StoreError:
    return StoreError("invalid", f"{field}: {message}", field=field)


def _int(field: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _invalid(field, f"must be an integer, got {type(value).__name__}")
    value = int(value)  # numpy integers too
    if lo is not None and value < lo:
        raise _invalid(field, f"must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise _invalid(field, f"must be <= {hi}, got {value}")
    return value


def _float(field: str, value: Any, *, lo: float | None = None, hi: float | None = None,
           optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _invalid(field, f"must be a number, got {type(value).__name__}")
    value = float(value)  # numpy floats too
    if not math.isfinite(value):
        raise _invalid(field, "must be a finite number")
    if lo is not None and value < lo:
        raise _invalid(field, f"must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise _invalid(field, f"must be <= {hi}, got {value}")
    return value


def _text(field: str, value: Any, *, max_chars: int, optional: bool = False,
          allow_empty: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _invalid(field, f"must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise _invalid(field, "must not contain NUL characters")
    if len(value) > max_chars:
        raise _invalid(field, f"is too long ({len(value)} chars, max {max_chars})")
    if not allow_empty and not value.strip():
        raise _invalid(field, "must not be empty")
    return value


def _job_id(value: Any) -> int:
    return _int("job_id", value, 1)


def _track_id(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 64:
        raise _invalid("track_id", f"must be a non-empty string id, got {value!r}")
    return value


def _json_dict(field: str, value: Any) -> str:
    if not isinstance(value, dict):
        raise _invalid(field, f"must be a dict, got {type(value).__name__}")
    try:
        return json.dumps(value, allow_nan=False, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise _invalid(field, f"must be JSON-serialisable ({e})") from None


_TAG_SPACE = re.compile(r"\s+")


def normalise_tag(value: Any) -> str:
    """Lowercase, trimmed, inner whitespace -> '-'.  ``"Lo Fi "`` -> ``"lo-fi"``."""
    if not isinstance(value, str):
        raise _invalid("tag", f"must be a string, got {type(value).__name__}")
    tag = _TAG_SPACE.sub("-", unicodedata.normalize("NFC", value).strip().lower())
    if not tag:
        raise _invalid("tag", "must not be empty")
    if len(tag) > MAX_TAG_CHARS:
        raise _invalid("tag", f"{tag[:20]!r}... is too long (max {MAX_TAG_CHARS} chars)")
    if any(unicodedata.category(c).startswith("C") for c in tag):
        raise _invalid("tag", f"{tag!r} contains control characters")
    if tag.startswith(("+", "-")):
        # `dgx-music tag TRACK +a -b` uses the sign as the operation.
        raise _invalid("tag", f"{tag!r} must not start with '+' or '-'")
    return tag


def _tag_list(field: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):  # a bare string is one tag, not its characters
        value = [value]
    try:
        items = list(value)
    except TypeError:
        raise _invalid(field, f"must be a list of strings, got {type(value).__name__}") from None
    out: list[str] = []
    for item in items:
        tag = normalise_tag(item)
        if tag not in out:
            out.append(tag)
    return out


def _rel_path(value: Any) -> str:
    path = _text("path", value, max_chars=4096, allow_empty=False)
    assert path is not None
    p = PurePosixPath(path.replace("\\", "/"))
    if p.is_absolute() or re.match(r"^[A-Za-z]:", path):
        raise _invalid("path", f"must be relative to the data dir, got {path!r}")
    if ".." in p.parts:
        raise _invalid("path", f"must not contain '..', got {path!r}")
    return str(p)


def _analysis_float(field: str, value: Any) -> float | None:
    """Analysis numbers: a non-finite value (-inf LUFS of silence, NaN) or a
    tempo outside (0, 1000] means "unknown" and is stored as NULL, so a finished
    generation is never refused over its analysis.  A non-number is an error."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _invalid(field, f"must be a number or None, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or (field == "bpm" and not 0 < value <= 1000):
        return None
    return value


def _bool(field: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _invalid(field, f"must be true or false, got {value!r}")


def default_title(prompt: str) -> str:
    """A track's title when the user gave none: the prompt's start, cut at a word."""
    text = " ".join(prompt.split())
    if len(text) <= TITLE_FROM_PROMPT_CHARS:
        return text
    cut = text[:TITLE_FROM_PROMPT_CHARS]
    if " " in cut[TITLE_FROM_PROMPT_CHARS // 2:]:
        cut = cut[:cut.rindex(" ")]
    return cut.rstrip(" ,.;:-") + "…"
