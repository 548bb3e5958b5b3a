"""MusicGen generation parameters: the names much of the code has always used.

The typed definitions live in common/schemas.py (one per model family); this module
keeps `GenerationParams` and `validate_params` as the MusicGen view of them, so code
that only knows MusicGen keeps working unchanged.
"""

from __future__ import annotations

from typing import Any, Mapping, cast

from dgx_music.common.families import MUSICGEN
from dgx_music.common.schemas import (MAX_COUNT, MAX_DURATION, MAX_JOB_AUDIO, MAX_MELODY_SOURCE_CHARS,  # noqa: F401
                                      MAX_MODEL_NAME_BYTES, MAX_MODEL_PATH_BYTES, MAX_PROMPT_CHARS, MAX_SEED,
                                      MELODY_KEY_RE, MIN_DURATION, TRACK_ID_RE, WINDOW_SECONDS, MusicGenParams,
                                      ParamError, check_model_name, validate_request)

#: MusicGen's parameters (a frozen msgspec Struct: `msgspec.structs.replace` to change a field).
GenerationParams = MusicGenParams


def validate_params(raw: Mapping[str, Any], *, max_count: int = MAX_COUNT) -> MusicGenParams:
    """Turn untrusted input into checked MusicGen parameters (see schemas.validate_request)."""
    return cast(MusicGenParams, validate_request(raw, MUSICGEN, max_count=max_count))  # MUSICGEN's schema
