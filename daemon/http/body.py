"""Bounded JSON request bodies for the HTTP API.

A body with a 5,001-digit integer or 100,000 levels of nesting must be `invalid_params` naming the
problem, never a RecursionError or a slow int parse answered `internal`; this module checks both
before (or while) decoding.
"""

from __future__ import annotations

import json
import re
from typing import Any

from dgx_music.common import protocol
from dgx_music.daemon.handlers import HandlerError


MAX_JSON_DEPTH = 64
MAX_JSON_INT_DIGITS = 20  # every integer parameter fits in 64 bits
JSON_INLINE_BYTES = 64 * 1024  # bodies up to this size are parsed on the event loop
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_EMPTY_PAIR = re.compile(r"\[\]|\{\}")


class _LongInt:
    """Stands in for an integer literal with too many digits, so the error can name its field."""

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _parse_int(text: str) -> int | _LongInt:
    digits = len(text.lstrip("-"))
    return _LongInt(digits) if digits > MAX_JSON_INT_DIGITS else int(text)


def _json_depth_exceeds(text: str, limit: int) -> bool:
    """Whether a (syntactically valid) JSON text nests arrays and objects deeper than `limit`.

    Strings and scalars are cut away and innermost bracket pairs removed `limit` times, all in
    C regex code: no recursion and no Python loop per character.
    """
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    for _ in range(limit):
        if not brackets:
            return False
        brackets = _EMPTY_PAIR.sub("", brackets)
    return bool(brackets)


def _has_long_int(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _LongInt):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """A request body as params: a JSON object, within depth and integer-size limits.

    Not JSON, or not an object: `bad_request`. Too deep, or an integer too long to be any
    parameter: `invalid_params` naming the field (`body` when it cannot tell). Never `internal`.
    """
    def bad(field: str, message: str) -> HandlerError:
        return HandlerError(protocol.INVALID_PARAMS, f"{field}: {message}", field=field)

    not_object = HandlerError(protocol.BAD_REQUEST, "the body must be a JSON object")
    try:
        text = raw.decode("utf-8")
        body = json.loads(text, parse_int=_parse_int)
    except RecursionError:
        raise bad("body", f"JSON nested more than {MAX_JSON_DEPTH} levels deep") from None
    except ValueError:  # JSONDecodeError and UnicodeDecodeError included
        raise not_object from None
    if not isinstance(body, dict):
        raise not_object
    if _json_depth_exceeds(text, MAX_JSON_DEPTH):
        raise bad("body", f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
    for key, value in body.items():
        if _has_long_int(value):
            raise bad(key, f"an integer with more than {MAX_JSON_INT_DIGITS} digits")
    return body
