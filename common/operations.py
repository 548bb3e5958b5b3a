"""Operations on tracks you have: repaint a span, cover/restyle, split into stems, add a part, extend
(repaint past either end).

All run on ACE-Step but `stems`, which by default (`method: separate`) runs a source-separation model
(HTDemucs: vocals, drums, bass, other, and guitar, piano with a six-stem model); `method: generate`
is ACE-Step's generative extract.

One typed msgspec Struct per operation: the CLI and the TUI check a request with
`validate_operation` before sending it, the daemon checks it again (plus what only
it can know: the source's length, the model's family) before anything is queued, and
the HTTP API's OpenAPI document describes the same Structs. Every failure is a
ParamError naming the field.

A source is a library track id (`source`), a key of audio the daemon already stored
for an earlier operation (`source`, 16 hex digits: what a retry or remix sends), or
the bytes of an audio file (`source_audio`, with its `source_name`).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Mapping, TypeVar, get_args

import msgspec
from msgspec import Meta

from dgx_music.common.schema_openapi import nullable_optionals
from dgx_music.common.schemas import (LANGUAGES, MAX_LYRICS_CHARS, MAX_PROMPT_CHARS, MAX_SEED, MELODY_KEY_RE,
                                      TRACK_ID_RE, Language, ModelName, ParamError, Seed, TargetLufs,
                                      _explain, _field_of, check_model_name, refuse_loose_bools, split_lora)

T = TypeVar("T")

#: The operations, as protocol methods name them (`op.<name>`) and as jobs record them.
REPAINT, COVER, STEMS, ADD_PART, EXTEND = "repaint", "cover", "stems", "add_part", "extend"
OPERATIONS = (REPAINT, COVER, STEMS, ADD_PART, EXTEND)
#: The ACE-Step task each operation runs. Extend is a repaint of silence added past an end: the
#: turbo model is trained for repaint; upstream's `complete` only on the base model.
TASKS = {REPAINT: "repaint", COVER: "cover", STEMS: "extract", ADD_PART: "lego", EXTEND: "repaint"}

#: The part (track class) names ACE-Step 1.5 was trained on for extract and lego.
PARTS = ("vocals", "backing_vocals", "drums", "bass", "guitar", "keyboard", "synth", "strings", "brass",
         "woodwinds", "percussion", "fx")
Part = Literal["vocals", "backing_vocals", "drums", "bass", "guitar", "keyboard", "synth", "strings", "brass",
               "woodwinds", "percussion", "fx"]
assert get_args(Part) == PARTS
DEFAULT_STEM_PARTS = ("vocals", "drums", "bass")  # method generate's default

#: How `stems` splits a source: a separation model (default; the stems add up to the source) or
#: ACE-Step's generative extract (each part made anew, on the base model).
SEPARATE, GENERATE = "separate", "generate"
STEM_METHODS = (SEPARATE, GENERATE)
#: The stems separation models make (htdemucs: the first four; htdemucs_6s: all six).
SEPARATION_PARTS = ("vocals", "drums", "bass", "other", "guitar", "piano")
StemPart = Literal["vocals", "backing_vocals", "drums", "bass", "guitar", "keyboard", "synth", "strings", "brass",
                   "woodwinds", "percussion", "fx", "other", "piano"]
assert set(get_args(StemPart)) == set(PARTS) | set(SEPARATION_PARTS)
#: Fields only ACE-Step's sampler reads: refused with method separate, which has no sampler.
SAMPLER_FIELDS = ("steps", "guidance", "shift")
#: A style (LoRA) adapts ACE-Step: refused with method separate too.
STYLE_FIELDS = ("lora", "lora_scale")

MIN_SPAN = 0.5  # seconds: a shorter repaint has nothing to regenerate
MIN_SOURCE_SECONDS = 1.0
MAX_SOURCE_SECONDS = 600.0  # ACE-Step's duration limit (common/schemas.ACE_MAX_DURATION)
MAX_SOURCE_NAME = 200
MAX_UPLOAD_BYTES = 7 * 1024 * 1024  # fits one protocol frame (8 MiB) with the rest of the request
CROSSFADE_SECONDS = 0.02  # repaint splices: complementary fades this long, inside the span

SourceRef = Annotated[str, Meta(pattern=f"{TRACK_ID_RE.pattern}|{MELODY_KEY_RE.pattern}",
                                extra={"hint": "a library track id like 12-0"},
                                description="A library track id (or the key of audio the daemon stored for an "
                                            "earlier operation).")]
Steps = Annotated[int, Meta(ge=1, le=200, description="Denoising steps (the variant's default when left out).")]
Guidance = Annotated[float, Meta(ge=0.0, le=20.0, description="Classifier-free guidance (turbo: 1.0, off).")]
Shift = Annotated[float, Meta(ge=0.1, le=10.0, description="Timestep shift of the flow schedule.")]
Lyrics = Annotated[str, Meta(max_length=MAX_LYRICS_CHARS, pattern=r"^[^\x00]*$",
                             description="Lyrics with section tags such as [verse]; empty: instrumental.")]
Caption = Annotated[str, Meta(min_length=1, max_length=MAX_PROMPT_CHARS, pattern=r"^[^\x00]*$",
                              description="The caption: genre, instruments, mood, voice.")]


class _Operation(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What every operation takes: a source, a seed, the model and its sampler settings."""

    operation: ClassVar[str]

    source: SourceRef | None = None
    source_audio: Annotated[bytes, Meta(description="An audio file's bytes (WAV, FLAC, OGG, MP3) instead of a "
                                                    "track; socket only.")] | None = None
    source_name: Annotated[str, Meta(max_length=MAX_SOURCE_NAME, pattern=r"^[^\x00]*$",
                                     description="The uploaded file's name, kept as the derived tracks' "
                                                 "source.")] \
        | None = None
    seed: Seed | None = None
    model: ModelName | None = None
    steps: Steps | None = None
    guidance: Guidance | None = None
    shift: Shift | None = None
    lora: Annotated[str, Meta(min_length=1, max_length=1000, pattern=r"^[^\x00]*$",
                              description="A style's name (style.list) or a LoRA directory under <data>/loras, "
                                          "optionally NAME:scale.")] | None = None
    lora_scale: Annotated[float, Meta(ge=0.0, le=4.0, description="How strongly the LoRA applies.")] | None = None

    def to_dict(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)

    def outputs(self) -> int:
        """How many tracks the job makes."""
        return 1


class RepaintRequest(_Operation, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Regenerate the span [start, end) of a source; outside it the new track equals the source."""

    operation: ClassVar[str] = REPAINT
    start: Annotated[float, Meta(ge=0.0, le=MAX_SOURCE_SECONDS, extra={"unit": " s"},
                                 description="Start of the span to regenerate, in seconds.")]
    end: Annotated[float, Meta(ge=0.0, le=MAX_SOURCE_SECONDS, extra={"unit": " s"},
                               description="End of the span, in seconds (at least 0.5 s after start).")]
    prompt: Caption | None = None
    lyrics: Lyrics = ""
    language: Language = "en"


class CoverRequest(_Operation, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The source's structure in a new style."""

    operation: ClassVar[str] = COVER
    prompt: Caption
    lyrics: Lyrics = ""
    language: Language = "en"
    strength: Annotated[float, Meta(ge=0.0, le=1.0, description="How closely to follow the source (1: closest).")] \
        = 0.5
    target_lufs: TargetLufs | None = None


class StemsRequest(_Operation, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One new track per part, each as long as the source and aligned with it sample for sample."""

    operation: ClassVar[str] = STEMS
    method: Annotated[Literal["separate", "generate"], Meta(
        description="separate: a source-separation model splits the source (the stems add up to it; model: "
                    "the daemon's --separator, or htdemucs, htdemucs_ft, htdemucs_6s); generate: ACE-Step's "
                    "extract makes each part anew (on ace-step-base).")] = SEPARATE
    parts: Annotated[list[StemPart], Meta(
        min_length=1, max_length=len(PARTS),
        description="Parts to make. separate: " + ", ".join(SEPARATION_PARTS) + " (guitar and piano: six-stem "
                    "models), default all the model makes; generate: " + ", ".join(PARTS) + ", default "
                    + ", ".join(DEFAULT_STEM_PARTS) + ".")] | None = None
    prompt: Annotated[Caption, Meta(description="A caption of the source (optional): what it sounds like.")] \
        | None = None

    def outputs(self) -> int:
        return len(self.parts) if self.parts else len(DEFAULT_STEM_PARTS) if self.method == GENERATE else 4


class AddPartRequest(_Operation, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A new track holding only one part, played against the source; `mix` also writes the source with it."""

    operation: ClassVar[str] = ADD_PART
    part: Annotated[Part, Meta(description="The part to add: " + ", ".join(PARTS) + ".")]
    prompt: Caption | None = None
    lyrics: Lyrics = ""
    language: Language = "en"
    mix: Annotated[bool, Meta(description="Also write the source with the part mixed in.")] = False

    def outputs(self) -> int:
        return 2 if self.mix else 1


class ExtendRequest(_Operation, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The source with `by` seconds of new music after its end (or, with `before`, ahead of its start):
    a repaint of silence added there. The source's samples are kept, bar a crossfade into the new part."""

    operation: ClassVar[str] = EXTEND
    by: Annotated[float, Meta(ge=MIN_SPAN, le=MAX_SOURCE_SECONDS, extra={"unit": " s"},
                              description="Seconds of new music to add (the result is at most "
                                          f"{MAX_SOURCE_SECONDS:g} s long).")]
    before: Annotated[bool, Meta(description="Add the new music ahead of the start instead of after the end.")] \
        = False
    prompt: Caption | None = None
    lyrics: Lyrics = ""
    language: Language = "en"


OperationRequest = RepaintRequest | CoverRequest | StemsRequest | AddPartRequest | ExtendRequest
OPERATION_SCHEMAS: dict[str, type[_Operation]] = {REPAINT: RepaintRequest, COVER: CoverRequest, STEMS: StemsRequest,
                                                  ADD_PART: AddPartRequest, EXTEND: ExtendRequest}
#: The socket method and HTTP route of each operation.
METHODS = {op: f"op.{op}" for op in OPERATIONS}
ROUTES = {REPAINT: "repaint", COVER: "cover", STEMS: "stems", ADD_PART: "add-part", EXTEND: "extend"}



def convert_request(cls: type[T], data: dict[str, Any]) -> T:
    """Untrusted fields (None already dropped) -> the typed request: an upload's bytearray becomes
    bytes, a loose bool ("yes", 1) is refused, a type or range error names its field."""
    if isinstance(data.get("source_audio"), bytearray):
        data["source_audio"] = bytes(data["source_audio"])
    try:
        refuse_loose_bools(cls, data)
        return msgspec.convert(data, cls, strict=False)
    except msgspec.ValidationError as exc:
        field = _field_of(str(exc))
        raise ParamError(field, _explain(cls, field, data.get(field), str(exc))) from None


def check_source(req: Any, *, required: bool = True) -> None:
    """A request's source: a library track id (`source`) or an uploaded file (`source_audio`), one
    of them (`required`: exactly one; else at most one), and an upload neither empty nor too big."""
    has_track, has_file = getattr(req, "source", None) is not None, getattr(req, "source_audio", None) is not None
    if has_track and has_file:
        raise ParamError("source", "give a library track id (source) or an audio file (source_audio), not both")
    if required and not (has_track or has_file):
        raise ParamError("source", "give a library track id (source) or an audio file (source_audio), one of them")
    if has_file:
        if not req.source_audio:
            raise ParamError("source_audio", "is empty")
        if len(req.source_audio) > MAX_UPLOAD_BYTES:
            raise ParamError("source_audio", f"is {len(req.source_audio) / 2**20:.1f} MiB; at most "
                                             f"{MAX_UPLOAD_BYTES / 2**20:.0f} MiB per upload (import the file "
                                             "into the library first)")

def validate_operation(operation: str, raw: Mapping[str, Any]) -> OperationRequest:
    """Untrusted input (a protocol map, CLI flags, a form) -> the operation's checked request.

    Checks what the request alone tells; the daemon also checks the source (exists, decodes,
    is not silent, fits the duration limit) and that the span lies inside it."""
    cls = OPERATION_SCHEMAS.get(operation)
    if cls is None:
        raise ParamError("operation", f"unknown operation {operation!r}; one of {', '.join(OPERATIONS)}")
    if not isinstance(raw, Mapping):
        raise ParamError("params", "must be a map")
    known = set(cls.__struct_fields__)
    for name in sorted(set(raw) - known):
        raise ParamError(name, f"unknown field {name} for {operation}")
    data = {k: v for k, v in raw.items() if v is not None}
    for name in ("prompt", "source", "source_name"):
        if isinstance(data.get(name), str):
            data[name] = data[name].strip()
            if not data[name] and name != "prompt":
                del data[name]
    if data.get("prompt") == "":
        if operation == COVER:
            raise ParamError("prompt", "must not be empty: a cover needs the style to play it in")
        del data["prompt"]
    if isinstance(data.get("lyrics"), str):
        data["lyrics"] = data["lyrics"].replace("\r\n", "\n").strip()
    if isinstance(data.get("language"), str):
        data["language"] = data["language"].strip().lower() or "en"
    if isinstance(data.get("parts"), str):
        data["parts"] = [p for p in data["parts"].replace(" ", "").split(",") if p]
    if isinstance(data.get("part"), str):
        data["part"] = data["part"].strip().lower()
    if isinstance(data.get("method"), str):
        data["method"] = data["method"].strip().lower()
    method = data.get("method", SEPARATE)
    if operation == STEMS and method == SEPARATE:
        for name in SAMPLER_FIELDS:
            if name in data:
                raise ParamError(name, f"{name} is a sampler setting of --method generate; a separation model "
                                       "has none")
        for name in STYLE_FIELDS:
            if data.get(name) is not None:
                raise ParamError(name, "a style adapts ACE-Step (--method generate); a separation model takes "
                                       "none")
    if isinstance(data.get("parts"), list):
        data["parts"] = [p.strip().lower() if isinstance(p, str) else p for p in data["parts"]]
        known, who = (SEPARATION_PARTS, "separation models make") if operation == STEMS and method == SEPARATE \
            else (PARTS, "ACE-Step knows")
        for p in data["parts"]:
            if p not in known:
                hint = " (or --method generate)" if p in PARTS else ""
                raise ParamError("parts", f"unknown part {p!r}; the parts {who}: {', '.join(known)}{hint}")
        if len(set(data["parts"])) != len(data["parts"]):
            raise ParamError("parts", "names a part twice")
    if "part" in data and data["part"] not in PARTS:
        raise ParamError("part", f"unknown part {data['part']!r}; the parts ACE-Step knows: {', '.join(PARTS)}")
    if "model" in data:
        data["model"] = check_model_name(data["model"])
    if isinstance(data.get("lora"), str):  # NAME:scale, as job.submit takes it
        name, scale = split_lora(data["lora"])
        if not name.strip():
            raise ParamError("lora", "must name a style or a LoRA directory")
        data["lora"] = name.strip()
        if scale is not None:
            if data.get("lora_scale") is not None and data["lora_scale"] != scale:
                raise ParamError("lora_scale", "give the scale once: NAME:scale or lora_scale")
            data["lora_scale"] = scale
    req = convert_request(cls, data)
    check_source(req)
    if isinstance(req, RepaintRequest) and req.end <= req.start:
        raise ParamError("end", f"must be after start ({req.start:g} s), got {req.end:g} s")
    if isinstance(req, RepaintRequest) and req.end - req.start < MIN_SPAN:
        raise ParamError("end", f"the span {req.start:g}-{req.end:g} s is shorter than {MIN_SPAN:g} s")
    return req


def stored_params(req: OperationRequest) -> dict[str, Any]:
    """What a job row keeps of a request (the source goes separately, as the daemon's stored copy)."""
    d = req.to_dict()
    for k in ("source", "source_audio", "source_name", "seed", "model"):
        d.pop(k, None)
    return {k: v for k, v in d.items() if v is not None or k != "parts"}


def remix_request(track: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """A track made by an operation -> (operation, request) that runs the operation again on the
    daemon's stored copy of the same source: the operation's own fields from the track's params,
    `source` = the stored key (with the source's name), the track's prompt and model, and no seed
    (a remix draws a new one). None for a track no operation made (remix that from its prompt)."""
    params = track.get("params") or {}
    operation, key = params.get("operation"), params.get("source_key")
    cls = OPERATION_SCHEMAS.get(operation) if isinstance(operation, str) else None
    if cls is None or not isinstance(key, str) or not key:
        return None
    skip = {"source", "source_audio", "source_name", "seed", "model", "prompt"}
    raw: dict[str, Any] = {k: params[k] for k in cls.__struct_fields__ if k not in skip and params.get(k) is not None}
    if operation == STEMS:
        raw.setdefault("method", GENERATE)  # stems made before separation came: ACE-Step's extract
    # The source's name goes too: the new tracks are titled and traced by it, not by the key.
    name = params.get("source_name")
    raw.update(source=key, source_name=name[:MAX_SOURCE_NAME] if isinstance(name, str) else None,
               prompt=track.get("prompt"), model=track.get("model"))
    return operation, {k: v for k, v in raw.items() if v is not None and v != ""}


def operation_components(ref_template: str = "#/components/schemas/{name}") -> tuple[dict[str, Any], dict[str, Any]]:
    """JSON Schemas of the operations' request bodies, for the OpenAPI document."""
    types = [RepaintRequest, CoverRequest, StemsRequest, AddPartRequest, ExtendRequest]
    refs, components = msgspec.json.schema_components(types, ref_template=ref_template)
    for t in types:
        component = nullable_optionals(components[t.__name__])
        # Exactly one of the two sources, as validate_operation checks (null is the same as absent).
        component["oneOf"] = [{"required": [name], "properties": {name: {"type": "string"}}}
                              for name in ("source", "source_audio")]
        if "parts" in component["properties"]:
            component["properties"]["parts"]["uniqueItems"] = True  # "names a part twice" is refused
        if t is StemsRequest:  # which parts a stems request may name depends on its method
            def parts_of(names: tuple[str, ...]) -> dict[str, Any]:
                return {"anyOf": [{"type": "array", "items": {"type": "string", "enum": list(names)}}, {"type": "null"}]}
            component["anyOf"] = [
                {"required": ["method"], "properties": {"method": {"const": GENERATE}, "parts": parts_of(PARTS)}},
                {"properties": {"method": {"enum": [SEPARATE, None]}, "parts": parts_of(SEPARATION_PARTS),
                                **{name: {"type": "null"} for name in (*SAMPLER_FIELDS, *STYLE_FIELDS)}}}]
                # no sampler and no style there
        prompt = component["properties"].get("prompt", {})
        for caption in prompt.get("anyOf", ()):  # optional: an empty caption is the same as none
            caption.pop("minLength", None)
    return {t.__name__: r for t, r in zip(types, refs)}, components


__all__ = ["GENERATE", "SEPARATE", "SEPARATION_PARTS", "STEM_METHODS",
           "ADD_PART", "COVER", "CROSSFADE_SECONDS", "DEFAULT_STEM_PARTS", "EXTEND", "LANGUAGES",
           "MAX_SOURCE_SECONDS", "MAX_SEED", "METHODS", "MIN_SOURCE_SECONDS", "MIN_SPAN", "OPERATIONS",
           "OPERATION_SCHEMAS", "PARTS", "REPAINT", "ROUTES", "STEMS", "TASKS", "AddPartRequest", "CoverRequest",
           "ExtendRequest", "OperationRequest", "RepaintRequest", "StemsRequest", "operation_components",
           "check_source", "convert_request", "remix_request", "stored_params", "validate_operation"]
