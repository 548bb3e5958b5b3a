"""Fit a track to a project's tempo and key, and bar-exact loops: the requests and their arithmetic.

One typed msgspec Struct per request (FitRequest, LoopRequest), checked by the CLI and the
TUI before sending and by the daemon again, and described in the OpenAPI document. The
arithmetic every surface agrees on lives here too: a loop's length in samples and the
semitone shift between two keys.

Keys and modes: pitch shifting moves every note by the same interval, so it cannot turn a
minor song into a major one. A shift to a key of the same mode moves the tonic the shortest
way round the circle (at most 6 semitones; +6 for a tritone). A shift to the other mode moves
the source to the target's relative key instead (A minor to C major: no shift, same notes;
A minor to D major: +2, to B minor, which shares D major's notes).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Mapping

import msgspec
from msgspec import Meta

from dgx_music.common.schema_openapi import nullable_optionals
from dgx_music.common.schemas import (KEY_PATTERN, MAX_PROMPT_CHARS, MELODY_KEY_RE, TRACK_ID_RE, ModelName, ParamError,
                                      Seed, check_model_name, normalise_key)
from dgx_music.common.operations import MAX_SOURCE_NAME, check_source, convert_request

FIT, LOOP = "fit", "loop"
METHODS = {FIT: "op.fit", LOOP: "op.loop"}
ROUTES = {FIT: "fit", LOOP: "loop"}

MIN_BPM, MAX_BPM = 40.0, 250.0
#: Rubber Band stays clean within about an octave of time stretch; past it, refuse rather than smear.
MAX_STRETCH = 2.0
MAX_BARS = 64
#: The loop's wrap: the audio just past the loop's end fades into its first samples over this long.
WRAP_CROSSFADE_SECONDS = 0.01
#: A generated loop is made this many bars longer than asked: room to find the first downbeat
#: (one bar) and for the wrap's crossfade and the stretcher's edges (one bar).
LOOP_SPARE_BARS = 2
_PITCHES = {"C": 0, "C#": 1, "Db": 1, "D": 2, "D#": 3, "Eb": 3, "E": 4, "F": 5, "F#": 6, "Gb": 6, "G": 7,
            "G#": 8, "Ab": 8, "A": 9, "A#": 10, "Bb": 10, "B": 11}

Bpm = Annotated[float, Meta(ge=MIN_BPM, le=MAX_BPM, extra={"unit": " BPM"}, description="Target tempo (quarter-note "
                                                                                         "beats per minute).")]
Key = Annotated[str, Meta(pattern=KEY_PATTERN, description="Target key: one of the 24 keys like 'A minor', 'F# major' "
                                                           "(also 'Am', 'Bb').",
                          extra={"hint": "one of the 24 keys like 'A minor', 'F# major' or 'Bb major'"})]
SourceRef = Annotated[str, Meta(pattern=f"{TRACK_ID_RE.pattern}|{MELODY_KEY_RE.pattern}",
                                extra={"hint": "a library track id like 12-0"},
                                description="A library track id (or the key of audio the daemon stored for an "
                                            "earlier operation).")]
SourceAudio = Annotated[bytes, Meta(description="An audio file's bytes (WAV, FLAC, OGG, MP3) instead of a track; "
                                                "socket only.")]
SourceName = Annotated[str, Meta(max_length=MAX_SOURCE_NAME, pattern=r"^[^\x00]*$",
                                 description="The uploaded file's name, kept as the new track's source.")]
SourceBpm = Annotated[float, Meta(ge=MIN_BPM, le=MAX_BPM, description="The source's tempo, when its analysis is wrong "
                                                                      "(left out: the track's analysed tempo).")]
SourceKey = Annotated[str, Meta(pattern=KEY_PATTERN, description="The source's key, when its analysis is wrong.")]


class FitRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A new track: the source time-stretched to `bpm` and pitch-shifted to `key` (Rubber Band R3)."""

    operation: ClassVar[str] = FIT
    source: SourceRef | None = None
    source_audio: SourceAudio | None = None
    source_name: SourceName | None = None
    bpm: Bpm | None = None
    key: Key | None = None
    from_bpm: SourceBpm | None = None
    from_key: SourceKey | None = None
    formant: Annotated[bool, Meta(description="Keep the formants when shifting pitch (voices keep their timbre).")] \
        = False

    def to_dict(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)


class LoopRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A track exactly `bars` bars long at `bpm`, cut on downbeats, that repeats seamlessly.

    From a prompt (generated longer at that tempo, any family) or cut from a source."""

    operation: ClassVar[str] = LOOP
    prompt: Annotated[str, Meta(min_length=1, max_length=MAX_PROMPT_CHARS, pattern=r"^[^\x00]*$",
                                description="What to generate (instead of a source).")] | None = None
    source: SourceRef | None = None
    source_audio: SourceAudio | None = None
    source_name: SourceName | None = None
    bars: Annotated[int, Meta(ge=1, le=MAX_BARS, description="Length in bars.")] = 8
    bpm: Bpm | None = None
    beats_per_bar: Annotated[int, Meta(ge=2, le=7, description="Beats per bar (4: 4/4).")] = 4
    key: Key | None = None
    start_bar: Annotated[int, Meta(ge=0, le=1000, description="Which bar of the source to start from "
                                                               "(0: its first full bar).")] = 0
    seed: Seed | None = None
    model: ModelName | None = None

    def to_dict(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)


SCHEMAS: dict[str, type[FitRequest] | type[LoopRequest]] = {FIT: FitRequest, LOOP: LoopRequest}


def validate(operation: str, raw: Mapping[str, Any]) -> FitRequest | LoopRequest:
    """Untrusted input -> the checked request; every refusal is a ParamError naming the field."""
    cls = SCHEMAS.get(operation)
    if cls is None:
        raise ParamError("operation", f"unknown operation {operation!r}; one of fit, loop")
    if not isinstance(raw, Mapping):
        raise ParamError("params", "must be a map")
    for name in sorted(set(raw) - set(cls.__struct_fields__)):
        raise ParamError(name, f"unknown field {name} for {operation}")
    data = {k: v for k, v in raw.items() if v is not None}
    for name in ("prompt", "source", "source_name", "key", "from_key"):
        if isinstance(data.get(name), str):
            data[name] = data[name].strip()
            if not data[name]:
                del data[name]
    if "model" in data:
        data["model"] = check_model_name(data["model"])
    req = convert_request(cls, data)
    for name in ("key", "from_key"):
        if getattr(req, name, None) is not None:
            try:
                req = msgspec.structs.replace(req, **{name: normalise_key(getattr(req, name))})
            except ParamError as exc:
                raise ParamError(name, exc.message) from None
    check_source(req, required=False)
    has_source = req.source is not None or req.source_audio is not None
    if isinstance(req, LoopRequest):
        if req.prompt is not None and has_source:
            raise ParamError("prompt", "a loop is generated from a prompt or cut from a source, not both")
        if req.prompt is None and not has_source:
            raise ParamError("prompt", "give a prompt to generate a loop from, or a source to cut one from")
        if req.prompt is not None and req.bpm is None:
            raise ParamError("bpm", "a generated loop needs its tempo (--bpm)")
    else:
        if not has_source:
            raise ParamError("source", "give a library track id (source) or an audio file (source_audio)")
        if req.bpm is None and req.key is None:
            raise ParamError("bpm", "give a target tempo (bpm), a target key (key), or both")
    return req


def stored_params(req: FitRequest | LoopRequest) -> dict[str, Any]:
    """What a job row keeps of a request (the source goes separately, as the daemon's stored copy)."""
    d = req.to_dict()
    for k in ("source", "source_audio", "source_name", "seed", "model", "prompt"):
        d.pop(k, None)
    return {k: v for k, v in d.items() if v is not None}


# ------------------------------------------------------------------------------------ arithmetic
def loop_samples(bars: int, beats_per_bar: int, bpm: float, sr: int) -> int:
    """A loop's exact length: bars x beats per bar x 60 / bpm seconds, to the nearest sample."""
    return int(round(bars * beats_per_bar * 60.0 * sr / bpm))


def parse_key(key: str) -> tuple[int, bool]:
    """'A minor' -> (9, True): the tonic's pitch class and whether the mode is minor."""
    name = normalise_key(key)
    root, mode = name.split(" ")
    return _PITCHES[root], mode == "minor"


def semitone_shift(source_key: str, target_key: str) -> int:
    """Semitones to shift `source_key` to `target_key`, the shortest way round (-5..+6); across
    modes, to the target's relative key (see the module's docstring)."""
    s, s_minor = parse_key(source_key)
    t, t_minor = parse_key(target_key)
    if s_minor != t_minor:
        t = (t + 9) % 12 if s_minor else (t + 3) % 12  # the target's relative key in the source's mode
    d = (t - s) % 12
    return d - 12 if d > 6 else d


def shifted_key(source_key: str, semitones: int) -> str:
    """The key `source_key` moves to when shifted by `semitones` (sharps spelled as the analysis does)."""
    s, minor = parse_key(source_key)
    names = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
    return f"{names[(s + semitones) % 12]} {'minor' if minor else 'major'}"


def remix_request(track: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """A track a fit or loop job made -> (operation, request) that makes it again: a loop from a prompt
    with the same prompt, bars, tempo, key and model and no seed (a new one is drawn); a fit or a
    loop cut from a source, the same request on the daemon's stored copy of that source (`source` =
    its key; the stretch is deterministic, so the same audio). None for any other track."""
    params = track.get("params") or {}
    operation = params.get("operation")
    cls = SCHEMAS.get(operation) if isinstance(operation, str) else None
    if cls is None:
        return None
    skip = {"source", "source_audio", "source_name", "seed", "model", "prompt"}
    raw: dict[str, Any] = {k: params[k] for k in cls.__struct_fields__ if k not in skip and params.get(k) is not None}
    if params.get("loop_prompt"):
        raw.update(prompt=params["loop_prompt"], model=track.get("model"))
    elif isinstance(params.get("source_key"), str) and params["source_key"]:
        name = params.get("source_name")
        raw.update(source=params["source_key"], source_name=name[:MAX_SOURCE_NAME] if isinstance(name, str) else None)
        if operation == LOOP:  # the source's tempo as the first run read it
            raw.setdefault("bpm", params.get("from_bpm"))
    else:
        return None
    return operation, {k: v for k, v in raw.items() if v is not None and v != ""}


def components(ref_template: str = "#/components/schemas/{name}") -> tuple[dict[str, Any], dict[str, Any]]:
    """JSON Schemas of the two request bodies, for the OpenAPI document."""
    types = [FitRequest, LoopRequest]
    refs, comps = msgspec.json.schema_components(types, ref_template=ref_template)
    for t in types:
        comps[t.__name__] = nullable_optionals(comps[t.__name__])
    text, number, null = {"type": "string"}, {"type": "number"}, {"type": "null"}
    # The rules validate() checks across fields, as JSON Schema (null is the same as absent).
    fit = comps["FitRequest"]
    fit["oneOf"] = [{"required": [name], "properties": {name: text}} for name in ("source", "source_audio")]
    fit["anyOf"] = [{"required": ["bpm"], "properties": {"bpm": number}},
                    {"required": ["key"], "properties": {"key": text}}]
    comps["LoopRequest"]["oneOf"] = [
        {"required": ["prompt", "bpm"], "properties": {"prompt": text, "bpm": number, "source": null,
                                                        "source_audio": null}},
        {"required": ["source"], "properties": {"source": text, "prompt": null}},
        {"required": ["source_audio"], "properties": {"source_audio": text, "prompt": null}}]
    return {t.__name__: r for t, r in zip(types, refs)}, comps


__all__ = ["FIT", "LOOP", "LOOP_SPARE_BARS", "MAX_STRETCH", "METHODS", "ROUTES", "WRAP_CROSSFADE_SECONDS",
           "FitRequest", "LoopRequest", "components", "remix_request", "loop_samples", "parse_key", "semitone_shift", "shifted_key",
           "stored_params", "validate"]
