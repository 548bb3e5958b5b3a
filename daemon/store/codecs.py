"""Encodings between Python values and what the database or a client holds:
waveform peaks as a compact BLOB, user text as a safe FTS5 query, list_tracks
cursors, and rows as the dicts the store returns."""

from __future__ import annotations

import base64
import json
import math
import numbers
import sqlite3
import struct
import unicodedata
from typing import Any

from .errors import StoreError
from .validate import _invalid

MAX_PEAK_PAIRS = 100_000
MAX_SEARCH_TOKENS = 32
RELEVANCE = "relevance"

_PEAKS_MAGIC = b"P1"  # version tag: float16 little-endian (min, max) pairs follow


def pack_peaks(peaks: Any) -> bytes | None:
    """[[min, max], ...] -> compact BLOB (float16 pairs, 4 bytes per pair)."""
    if peaks is None:
        return None
    if isinstance(peaks, (str, bytes)):
        raise _invalid("peaks", "must be a list of [min, max] pairs")
    if hasattr(peaks, "tolist"):  # a numpy array of shape (n, 2)
        peaks = peaks.tolist()
    try:
        pairs = list(peaks)
    except TypeError:
        raise _invalid("peaks", "must be a list of [min, max] pairs") from None
    if len(pairs) > MAX_PEAK_PAIRS:
        raise _invalid("peaks", f"too many pairs ({len(pairs)}, max {MAX_PEAK_PAIRS})")
    flat: list[float] = []
    for i, pair in enumerate(pairs):
        try:
            lo, hi = pair
        except (TypeError, ValueError):
            raise _invalid("peaks", f"item {i} must be a [min, max] pair") from None
        for v in (lo, hi):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) \
                    or abs(v) > 65504.0:
                raise _invalid("peaks", f"item {i} has a non-finite or out-of-range value {v!r}")
        flat += (float(lo), float(hi))  # type: ignore[arg-type]
    return _PEAKS_MAGIC + struct.pack(f"<{len(flat)}e", *flat)


def unpack_peaks(blob: bytes | None) -> list[list[float]] | None:
    if blob is None:
        return None
    if not blob.startswith(_PEAKS_MAGIC) or (len(blob) - 2) % 4:
        raise StoreError("corrupt", "peaks blob has an unknown format")
    vals = struct.unpack(f"<{(len(blob) - 2) // 2}e", blob[2:])
    return [[vals[i], vals[i + 1]] for i in range(0, len(vals), 2)]


# ---------------------------------------------------------------- full-text


def search_tokens(text: str | None) -> list[str]:
    """The words of a search as both backends take them: whitespace-separated tokens with
    control characters as spaces, tokens without a letter or digit dropped, at most
    MAX_SEARCH_TOKENS.  Empty: no search."""
    if text is None:
        return []
    if not isinstance(text, str):
        raise _invalid("search", f"must be a string, got {type(text).__name__}")
    cleaned = "".join(" " if unicodedata.category(c) in ("Cc", "Cs") else c for c in text)
    tokens = [tok for tok in cleaned.split() if any(c.isalnum() for c in tok)]
    return tokens[:MAX_SEARCH_TOKENS]


def fts_query(text: str | None) -> str | None:
    """Turn ANY user text into a safe FTS5 MATCH expression, or None for "no search".

    Each whitespace-separated token becomes an FTS5 string ("..." with inner
    quotes doubled), so operators (AND, OR, NOT, NEAR), `*`, `-`, `:`, `^`,
    parentheses and quotes are plain text, never syntax.  Tokens are ANDed;
    the last one is a prefix match ("tok"*) so search-as-you-type works.
    Control characters (NUL would end the FTS string early) become spaces;
    tokens with no letter or digit are dropped (the tokenizer would index
    nothing for them).  At most MAX_SEARCH_TOKENS tokens are used.
    """
    tokens = search_tokens(text)
    if not tokens:
        return None
    parts = ['"' + tok.replace('"', '""') + '"' for tok in tokens]
    parts[-1] += "*"
    return " ".join(parts)


# ---------------------------------------------------------------- cursors


def _encode_cursor(sort: str, order: str, fingerprint: str, value: Any, seq: int,
                   drive: bool, *extra: Any) -> str:
    raw = json.dumps([1, sort, order, fingerprint, value, seq, int(drive), *extra],
                     separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: Any, sort: str, order: str,
                   fingerprint: str) -> tuple[Any, int, bool, list[Any]]:
    """(value, seq, drive, extra); extra is [ranking id or None, position, window bound] for relevance."""
    if not isinstance(cursor, str) or not cursor or len(cursor) > 2000:
        raise _invalid("cursor", "is not a cursor returned by list_tracks")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, c_sort, c_order, c_fp, value, seq, drive, *extra = json.loads(raw)
    except Exception:
        raise _invalid("cursor", "is not a cursor returned by list_tracks") from None
    if version != 1 or isinstance(seq, bool) or not isinstance(seq, int):
        raise _invalid("cursor", "is not a cursor returned by list_tracks")
    if (c_sort, c_order) != (sort, order):
        raise _invalid("cursor", f"was made for sort={c_sort} order={c_order}, "
                                 f"not sort={sort} order={order}")
    if c_fp != fingerprint:
        raise _invalid("cursor", "was made for different search/filters; start from the first page")
    want = str if sort == "title" else (int, float)
    if isinstance(value, bool) or not isinstance(value, want):
        raise _invalid("cursor", "is not a cursor returned by list_tracks")
    if sort == RELEVANCE:
        # [ranking id or None, position, the window's seq bound or None (absent in older cursors)]
        ok = (len(extra) in (2, 3) and (extra[0] is None or isinstance(extra[0], str) and len(extra[0]) <= 32)
              and type(extra[1]) is int and extra[1] >= 0
              and (len(extra) == 2 or extra[2] is None or type(extra[2]) is int and extra[2] >= 0))
    else:
        ok = not extra
    if not ok:
        raise _invalid("cursor", "is not a cursor returned by list_tracks")
    return value, seq, bool(drive), extra



# ---------------------------------------------------------------- rows -> dicts


def _job_dict(row: sqlite3.Row, track_ids: list[str]) -> dict:
    d = dict(row)
    d["params"] = json.loads(d["params"]) if d["params"] else {}
    d["track_ids"] = track_ids
    return d


def _track_dict(row: sqlite3.Row, tags: list[str], peaks: bytes | None | bool = False) -> dict:
    d = dict(row)
    d.pop("seq", None)
    d.pop("peaks", None)
    d["index"] = d.pop("idx")
    d["params"] = json.loads(d["params"]) if d["params"] else {}
    d["favorite"] = bool(d["favorite"])
    d["tags"] = tags
    if peaks is not False:
        d["peaks"] = unpack_peaks(peaks)  # type: ignore[arg-type]
    return d


