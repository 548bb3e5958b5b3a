"""Generation parameters: one validator shared by the CLI, the TUI and the daemon.

Validation happens before anything is queued, so a bad value is reported to the
person who typed it (naming the field) instead of failing later inside the worker.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import asdict, dataclass
from typing import Any, Mapping

MAX_PROMPT_CHARS = 2000
MIN_DURATION = 0.5
MAX_DURATION = 300.0  # past 30 s (one MusicGen window) clips are continued window by window
WINDOW_SECONDS = 30.0
MAX_JOB_AUDIO = 480.0  # count x duration: what 16 clips of 30 s cost; bounds memory and result size
MAX_COUNT = 16
MAX_SEED = 2**32 - 1
MAX_MELODY_SOURCE_CHARS = 200

#: A library track id ("12-0") or a stored melody key (16 hex digits): never a path.
TRACK_ID_RE = re.compile(r"^[0-9]{1,12}-[0-9]{1,4}$")
MELODY_KEY_RE = re.compile(r"^[0-9a-f]{16}$")


class ParamError(ValueError):
    """A parameter failed validation; `field` names it for inline display."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class GenerationParams:
    prompt: str
    duration: float = 8.0
    count: int = 1
    seed: int | None = None
    temperature: float = 1.0
    top_k: int = 250
    top_p: float = 0.0
    cfg: float = 3.0
    model: str | None = None
    target_lufs: float | None = None
    # A melody to follow (melody models only): a track id at submit time, which the daemon
    # turns into the key of its own stored copy, so deleting the track never breaks the job.
    melody: str | None = None
    melody_source: str | None = None
    # A library track id to continue: the job's tracks are that track followed by `duration` new seconds.
    extend: str | None = None

    def with_seed(self) -> "GenerationParams":
        """Pick and fix a seed when the user gave none, so the job can be reproduced."""
        if self.seed is not None:
            return self
        return _replace(self, seed=secrets.randbelow(MAX_SEED + 1))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _replace(p: GenerationParams, **changes: Any) -> GenerationParams:
    d = asdict(p)
    d.update(changes)
    return GenerationParams(**d)


def _number(name: str, value: Any, *, integer: bool = False) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        # Strings from a form or command line are accepted when they parse cleanly.
        if isinstance(value, str):
            try:
                value = int(value) if integer else float(value)
            except ValueError:
                kind = "an integer" if integer else "a number"
                raise ParamError(name, f"must be {kind}, got {value!r}") from None
        else:
            kind = "an integer" if integer else "a number"
            raise ParamError(name, f"must be {kind}, got {type(value).__name__}")
    if integer:
        if isinstance(value, float):
            if not value.is_integer():
                raise ParamError(name, f"must be an integer, got {value!r}")
            value = int(value)
        return int(value)
    value = float(value)
    if not math.isfinite(value):
        raise ParamError(name, "must be a finite number")
    return value


def _in_range(name: str, value: float, lo: float, hi: float, unit: str = "") -> None:
    if not lo <= value <= hi:
        raise ParamError(name, f"must be between {lo:g}{unit} and {hi:g}{unit}, got {value:g}{unit}")


_FIELDS = {f for f in GenerationParams.__dataclass_fields__}

MAX_MODEL_PATH_BYTES = 1024
MAX_MODEL_NAME_BYTES = 200  # a hub id: Hugging Face caps names at 96 characters; its cache dir adds 10


def check_model_name(value: Any, field: str = "model") -> str:
    """A model name, hub id or directory that is safe to hand to the file system.

    Checked before anything looks it up, so an over-long name is the caller's mistake named
    as such, not an OSError (`File name too long`) deep inside model resolution.
    """
    if not isinstance(value, str) or not value.strip():
        raise ParamError(field, "must be a model name, hub id or directory")
    name = value.strip()
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ParamError(field, "must not contain control characters")
    size = len(name.encode("utf-8", "surrogatepass"))
    if name.startswith((".", "/", "~")):
        if size > MAX_MODEL_PATH_BYTES:
            raise ParamError(field, f"a model directory path may be at most {MAX_MODEL_PATH_BYTES} bytes long")
        if any(len(part.encode("utf-8", "surrogatepass")) > 255 for part in name.split("/")):
            raise ParamError(field, "a model directory path has a component longer than 255 bytes")
    elif size > MAX_MODEL_NAME_BYTES:
        raise ParamError(field, f"is {size} bytes long; a model name or hub id is at most {MAX_MODEL_NAME_BYTES}")
    return name


def validate_params(raw: Mapping[str, Any], *, max_count: int = MAX_COUNT) -> GenerationParams:
    """Turn untrusted input (a protocol map, CLI flags, a form) into checked parameters."""
    if not isinstance(raw, Mapping):
        raise ParamError("params", "must be a map")
    unknown = set(raw) - _FIELDS
    if unknown:
        raise ParamError(sorted(unknown)[0], "is not a known generation parameter")

    prompt = raw.get("prompt")
    if not isinstance(prompt, str):
        raise ParamError("prompt", "is required and must be text")
    prompt = prompt.strip()
    if not prompt:
        raise ParamError("prompt", "must not be empty")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ParamError("prompt", f"is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
    if "\x00" in prompt:
        raise ParamError("prompt", "must not contain NUL characters")

    out: dict[str, Any] = {"prompt": prompt}
    if raw.get("duration") is not None:
        out["duration"] = _number("duration", raw["duration"])
        _in_range("duration", out["duration"], MIN_DURATION, MAX_DURATION, " s")
    if raw.get("count") is not None:
        out["count"] = _number("count", raw["count"], integer=True)
        _in_range("count", out["count"], 1, max_count)
    if out.get("count", 1) * out.get("duration", GenerationParams.duration) > MAX_JOB_AUDIO:
        raise ParamError("count", f"{out.get('count', 1)} x {out.get('duration', GenerationParams.duration):g} s is "
                                  f"more audio than one job makes (at most {MAX_JOB_AUDIO:g} s in all); "
                                  "ask for fewer variations or split the job")
    if raw.get("seed") is not None:
        out["seed"] = _number("seed", raw["seed"], integer=True)
        _in_range("seed", out["seed"], 0, MAX_SEED)
    if raw.get("temperature") is not None:
        out["temperature"] = _number("temperature", raw["temperature"])
        _in_range("temperature", out["temperature"], 0.05, 5.0)
    if raw.get("top_k") is not None:
        out["top_k"] = _number("top_k", raw["top_k"], integer=True)
        _in_range("top_k", out["top_k"], 0, 2048)
    if raw.get("top_p") is not None:
        out["top_p"] = _number("top_p", raw["top_p"])
        _in_range("top_p", out["top_p"], 0.0, 1.0)
    if raw.get("cfg") is not None:
        out["cfg"] = _number("cfg", raw["cfg"])
        _in_range("cfg", out["cfg"], 0.0, 20.0)
    if raw.get("target_lufs") is not None:
        out["target_lufs"] = _number("target_lufs", raw["target_lufs"])
        _in_range("target_lufs", out["target_lufs"], -40.0, -5.0, " LUFS")
    if raw.get("model") is not None:
        out["model"] = check_model_name(raw["model"])
    if raw.get("melody") is not None:
        melody = raw["melody"]
        if not isinstance(melody, str) or not (TRACK_ID_RE.match(melody.strip())
                                                or MELODY_KEY_RE.match(melody.strip())):
            raise ParamError("melody", f"must be a library track id like 12-0, got {melody!r}")
        out["melody"] = melody.strip()
    if raw.get("extend") is not None:
        extend = raw["extend"]
        if not isinstance(extend, str) or not TRACK_ID_RE.match(extend.strip()):
            raise ParamError("extend", f"must be a library track id like 12-0, got {extend!r}")
        out["extend"] = extend.strip()
    if raw.get("melody_source") is not None:
        source = raw["melody_source"]
        if not isinstance(source, str) or "\x00" in source:
            raise ParamError("melody_source", "must be text")
        out["melody_source"] = source.strip()[:MAX_MELODY_SOURCE_CHARS] or None
    return GenerationParams(**out)
