"""Training a style (a LoRA) on your own tracks: the request, checked the same way by every surface.

The socket (`style.train`), HTTP (`POST /api/v1/styles`, OpenAPI from this struct), the CLI
(`dgx-music train`) and the TUI's Styles view all send a `TrainRequest`. The defaults are
upstream ACE-Step 1.5's LoRA recipe (docs/engine.md, "Training a style").
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Mapping

import msgspec
from msgspec import Meta

from dgx_music.common.schemas import (MAX_SEED, TRACK_ID_RE, ModelName, ParamError, Seed, _explain, _field_of,
                                      check_model_name, refuse_loose_bools)

#: A style's name: a directory name, and what `--lora NAME[:scale]` types.
STYLE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
DEFAULT_STEPS, DEFAULT_RANK, DEFAULT_LR = 500, 8, 1e-4
MAX_TRAIN_TRACKS = 200
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


class TrainRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Train a style: library tracks (their prompt and lyrics are the captions) or a directory of audio
    files on the daemon's machine (caption from `caption` or a sidecar NAME.txt beside each file)."""

    name: Annotated[str, Meta(pattern=STYLE_NAME_PATTERN, description="The style's name: letters, digits, "
                                                                      "'_', '-', '.'; up to 64.")]
    tracks: Annotated[list[Annotated[str, Meta(pattern=TRACK_ID_RE.pattern)]],
                      Meta(max_length=MAX_TRAIN_TRACKS, description="Library track ids to train on.")] | None = None
    directory: Annotated[str, Meta(min_length=1, max_length=1000, pattern=r"^[^\x00]*$",
                                   description="A directory of audio files under the daemon's data directory "
                                               "(a bare name: <data>/training/NAME).")] | None = None
    caption: Annotated[str, Meta(max_length=2000, description="The caption of a directory's files that have "
                                                              "no sidecar .txt.")] | None = None
    steps: Annotated[int, Meta(ge=1, le=100_000, description="Optimizer steps (upstream: ~500).")] = DEFAULT_STEPS
    rank: Annotated[int, Meta(ge=1, le=256, description="LoRA rank (upstream: 8; alpha is twice it).")] = DEFAULT_RANK
    lr: Annotated[float, Meta(gt=0.0, le=0.1, description="Learning rate (upstream: 1e-4).")] = DEFAULT_LR
    checkpoint_every: Annotated[int, Meta(ge=1, le=100_000, description="Steps between checkpoints; a "
                                                                        "restart resumes from the last.")] = 50
    seed: Seed | None = None
    model: ModelName | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__struct_fields__}


def validate_train(raw: Any) -> TrainRequest:
    """An untrusted request -> TrainRequest; ParamError names the field."""
    if not isinstance(raw, Mapping):
        raise ParamError("params", "must be a map")
    data = {k: v for k, v in raw.items() if v is not None}  # null is the same as absent (as the OpenAPI says)
    if isinstance(data.get("tracks"), str):
        data["tracks"] = [t.strip() for t in data["tracks"].split(",") if t.strip()]
    if "model" in data and data["model"] is not None:
        data["model"] = check_model_name(data["model"])
    name = data.get("name")
    if isinstance(name, str) and not re.match(STYLE_NAME_PATTERN, name):
        raise ParamError("name", f"{name!r} is not a style name: 1-64 letters, digits, '_', '-' or '.', "
                                 "starting with a letter or digit")
    lr = data.get("lr")
    if isinstance(lr, (int, float)) and not isinstance(lr, bool) and not lr > 0:
        raise ParamError("lr", f"must be greater than 0, got {lr:g}")
    try:
        refuse_loose_bools(TrainRequest, data)
        req = msgspec.convert(data, TrainRequest, strict=False)
    except msgspec.ValidationError as exc:
        field = _field_of(str(exc))
        raise ParamError(field, _explain(TrainRequest, field, data.get(field), str(exc))) from None
    if (req.tracks is None or not req.tracks) == (req.directory is None):
        raise ParamError("tracks", "give library tracks (tracks) or a directory of audio files (directory), "
                                   "one of them")
    if req.tracks is not None and len(set(req.tracks)) != len(req.tracks):
        raise ParamError("tracks", "names a track twice")
    if req.seed is not None and not 0 <= req.seed <= MAX_SEED:
        raise ParamError("seed", f"must be 0-{MAX_SEED}")
    return req


def training_components(ref_template: str = "#/components/schemas/{name}") -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON Schema of the request body, for the OpenAPI document."""
    from dgx_music.common.schema_openapi import nullable_optionals

    refs, components = msgspec.json.schema_components([TrainRequest], ref_template=ref_template)
    component = nullable_optionals(components["TrainRequest"])
    # Exactly one of the two sources, as validate_train checks (null is the same as absent).
    component["oneOf"] = [{"required": ["tracks"], "properties": {"tracks": {"type": "array", "minItems": 1}}},
                          {"required": ["directory"], "properties": {"directory": {"type": "string"}}}]
    return {"TrainRequest": refs[0]}, components
