"""One typed request shape per model family: the single definition every surface validates with.

The CLI and the TUI check a request with `validate_request` before sending it, the
daemon checks it again before queueing, and the HTTP API's OpenAPI document is
generated from these Structs (`openapi_components`, common/schema_openapi.py), so the limits written here are
the limits everywhere. A model's family (common/families.py) decides which Struct
applies; a field of the other family is refused naming it, before anything is queued.

msgspec does the typed conversion (lax: "8" from a form or a command line is 8);
the few checks a type cannot express (cross-field bounds, stripping, key spellings)
live in `validate_request`, and every failure becomes a ParamError naming the field.
"""

from __future__ import annotations

import math
import re
import secrets
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Mapping, get_args, get_origin

import msgspec
from msgspec import Meta

from dgx_music.common.families import ACE_STEP, FAMILIES, MUSICGEN, family_for_name
from dgx_music.common.families import family as family_spec
from dgx_music.common.fmt import with_article


class ParamError(ValueError):
    """A parameter failed validation; `field` names it for inline display."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# ---------------------------------------------------------------------------------- limits
MAX_PROMPT_CHARS = 2000
MAX_SEED = 2**32 - 1
MAX_COUNT = 16
MAX_MELODY_SOURCE_CHARS = 200
MAX_MODEL_CHARS = 1000

# MusicGen
MIN_DURATION = 0.5
MAX_DURATION = 300.0  # past 30 s (one MusicGen window) clips are continued window by window
WINDOW_SECONDS = 30.0
MAX_JOB_AUDIO = family_spec(MUSICGEN).job_audio  # count x duration (declared in the registry)

# ACE-Step
ACE_MIN_DURATION = 10.0
ACE_MAX_DURATION = 600.0
ACE_MAX_JOB_AUDIO = family_spec(ACE_STEP).job_audio
MAX_LYRICS_CHARS = 4096  # the pipeline reads at most 2048 lyric tokens; 4096 characters stays under that
TIME_SIGNATURES = (2, 3, 4, 6)
#: Vocal languages ACE-Step 1.5 was trained on ("unknown": let the model guess).
LANGUAGES = ("ar", "az", "bg", "bn", "ca", "cs", "da", "de", "el", "en", "es", "fa", "fi", "fr", "he", "hi", "hr",
             "ht", "hu", "id", "is", "it", "ja", "ko", "la", "lt", "ms", "ne", "nl", "no", "pa", "pl", "pt", "ro",
             "ru", "sa", "sk", "sr", "sv", "sw", "ta", "te", "th", "tl", "tr", "uk", "ur", "vi", "yue", "zh",
             "unknown")
Language = Literal["ar", "az", "bg", "bn", "ca", "cs", "da", "de", "el", "en", "es", "fa", "fi", "fr", "he", "hi",
                   "hr", "ht", "hu", "id", "is", "it", "ja", "ko", "la", "lt", "ms", "ne", "nl", "no", "pa", "pl",
                   "pt", "ro", "ru", "sa", "sk", "sr", "sv", "sw", "ta", "te", "th", "tl", "tr", "uk", "ur", "vi",
                   "yue", "zh", "unknown"]
assert get_args(Language) == LANGUAGES
#: Variant defaults: turbo is distilled for 8 steps without classifier-free guidance (1.0 = off).
ACE_TURBO_DEFAULTS = {"steps": 8, "guidance": 1.0, "shift": 3.0}
ACE_BASE_DEFAULTS = {"steps": 50, "guidance": 7.0, "shift": 3.0}

#: A library track id ("12-0") or a stored melody key (16 hex digits): never a path.
TRACK_ID_RE = re.compile(r"^[0-9]{1,12}-[0-9]{1,4}$")
MELODY_KEY_RE = re.compile(r"^[0-9a-f]{16}$")

# A key: a root spelled the usual way (C, C#, Db, ... B) and a mode (major when left out).
_ROOTS = "C C# Db D D# Eb E F F# Gb G G# Ab A A# Bb B".split()
KEYS = tuple(f"{r} {m}" for m in ("major", "minor") for r in _ROOTS)
KEY_PATTERN = r"^(?:[A-Ga-g]|[CDFGAcdfga]#|[DEGABdegab]b) ?(?:[Mm]ajor|[Mm]inor|maj|min|m)?$"
_KEY_RE = re.compile(r"^([A-Ga-g])([#b]?) ?([Mm]ajor|[Mm]inor|maj|min|m)?$")

# ---------------------------------------------------------------------------------- field types
Prompt = Annotated[str, Meta(min_length=1, max_length=MAX_PROMPT_CHARS, pattern=r"^[^\x00]*$",
                             description="What the music should sound like.")]
#: What the OpenAPI document promises for `model` (a safe subset of check_model_name, which counts
#: bytes: 4 per character at worst): a name or hub id of up to 50 characters, or a directory path
#: (starting with . / or ~) of up to 256 characters whose parts are at most 63; no control characters.
_MODEL_JSON = {"anyOf": [
    {"maxLength": 50, "pattern": "^(?=[^\\x00-\\x1f\\x7f]*[^\\s\\x00-\\x1f\\x7f])[^\\x00-\\x1f\\x7f]+$"},
    {"maxLength": 256, "pattern": "^[./~][^/\\x00-\\x1f\\x7f]{0,62}(?:/[^/\\x00-\\x1f\\x7f]{0,63})*$"},
]}
ModelName = Annotated[str, Meta(min_length=1, max_length=MAX_MODEL_CHARS,
                                description="A model name (small, ace-step, ...), hub id or directory under "
                                            "<data>/models; the daemon's model when left out.",
                                extra={"hint": "a model name, hub id or directory"}, extra_json_schema=_MODEL_JSON)]
# The upper bound is the daemon's engine.max_count (default 16), checked in validate_request; the
# schema states the default.
Count = Annotated[int, Meta(ge=1, description="Variations to make (one batch when memory allows).",
                            extra_json_schema={"maximum": MAX_COUNT})]
Seed = Annotated[int, Meta(ge=0, le=MAX_SEED, description="Same seed, model and parameters: same audio. "
                                                           "Picked and recorded when left out.")]
TargetLufs = Annotated[float, Meta(ge=-40.0, le=-5.0, extra={"unit": " LUFS"},
                                   description="Loudness to normalise to (the daemon's audio.target_lufs when "
                                               "left out).")]
TrackId = Annotated[str, Meta(pattern=TRACK_ID_RE.pattern, extra={"hint": "a library track id like 12-0"})]
MelodyRef = Annotated[str, Meta(pattern=f"{TRACK_ID_RE.pattern}|{MELODY_KEY_RE.pattern}",
                                extra={"hint": "a library track id like 12-0"},
                                description="A library track id whose melody to follow (melody models only).")]


class _Params(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Fields and helpers both families share."""

    family: ClassVar[str]

    def with_seed(self) -> Any:
        """Pick and fix a seed when the user gave none, so the job can be reproduced."""
        if getattr(self, "seed") is not None:
            return self
        return msgspec.structs.replace(self, seed=secrets.randbelow(MAX_SEED + 1))

    def to_dict(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)

    def wire(self) -> dict[str, Any]:  # pragma: no cover - each family defines it
        raise NotImplementedError


class MusicGenParams(_Params, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A MusicGen request: instrumental clips, continued window by window past 30 s."""

    family: ClassVar[str] = MUSICGEN

    prompt: Prompt
    duration: Annotated[float, Meta(ge=MIN_DURATION, le=MAX_DURATION, extra={"unit": " s"},
                                    description="Seconds of audio per variation.")] = 8.0
    count: Count = 1
    seed: Seed | None = None
    temperature: Annotated[float, Meta(ge=0.05, le=5.0, description="Sampling temperature.")] = 1.0
    top_k: Annotated[int, Meta(ge=0, le=2048, description="Sample among the k likeliest tokens (0: all).")] = 250
    top_p: Annotated[float, Meta(ge=0.0, le=1.0, description="Nucleus sampling (0: off).")] = 0.0
    cfg: Annotated[float, Meta(ge=0.0, le=20.0, description="Classifier-free guidance scale.")] = 3.0
    model: ModelName | None = None
    target_lufs: TargetLufs | None = None
    # A melody to follow (melody models only): a track id at submit time, which the daemon
    # turns into the key of its own stored copy, so deleting the track never breaks the job.
    melody: MelodyRef | None = None
    # Display text; a longer one is cut to MAX_MELODY_SOURCE_CHARS before this type sees it, so the
    # schema states no maxLength (a longer string is accepted, not refused).
    melody_source: Annotated[str, Meta(description=f"shown as where the melody came from; cut to "
                                                   f"{MAX_MELODY_SOURCE_CHARS} characters")] | None = None
    # A library track id to continue: the job's tracks are that track followed by `duration` new seconds.
    extend: Annotated[TrackId, Meta(description="A library track id to continue (text models only).")] | None = None

    def wire(self) -> dict[str, Any]:
        """What the worker receives for one job (the prompts travel beside it)."""
        return {"duration": self.duration, "temperature": self.temperature, "top_k": self.top_k,
                "top_p": self.top_p, "cfg": self.cfg, "seed": self.seed}


class AceStepParams(_Params, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An ACE-Step 1.5 request: whole songs, sung lyrics or instrumental, 10 s to 10 min."""

    family: ClassVar[str] = ACE_STEP

    prompt: Annotated[Prompt, Meta(description="The caption: genre, instruments, mood, voice.")]
    lyrics: Annotated[str, Meta(max_length=MAX_LYRICS_CHARS, pattern=r"^[^\x00]*$",
                                description="Lyrics with section tags such as [verse], [chorus]; "
                                            "empty: instrumental.")] = ""
    language: Annotated[Language, Meta(description="Vocal language (ISO 639 code; unknown: let the model "
                                                   "guess).")] = "en"
    duration: Annotated[float, Meta(ge=ACE_MIN_DURATION, le=ACE_MAX_DURATION, extra={"unit": " s"},
                                    description="Seconds of audio per variation.")] = 30.0
    bpm: Annotated[int, Meta(ge=30, le=300, description="Tempo to ask for (left out: the model picks).")] | None = None
    key: Annotated[str, Meta(pattern=KEY_PATTERN, description="One of the 24 keys: 'A minor', 'F# major', 'Bb major' "
                                                              "(also 'Am', 'Bb').",
                             extra={"hint": "one of the 24 keys like 'A minor', 'F# major' or 'Bb major'"})] \
        | None = None
    time_signature: Annotated[Literal[2, 3, 4, 6], Meta(description="Beats per bar.")] | None = None
    steps: Annotated[int, Meta(ge=1, le=200, description="Denoising steps (the variant's default when left "
                                                         "out: 8 for turbo).")] | None = None
    guidance: Annotated[float, Meta(ge=0.0, le=20.0, description="Classifier-free guidance (turbo: 1.0, off).")] \
        | None = None
    shift: Annotated[float, Meta(ge=0.1, le=10.0, description="Timestep shift of the flow schedule.")] | None = None
    count: Count = 1
    seed: Seed | None = None
    model: ModelName | None = None
    target_lufs: TargetLufs | None = None
    lora: Annotated[str, Meta(min_length=1, max_length=1000, pattern=r"^[^\x00]*$",
                              description="A style's name (style.list) or a LoRA directory under <data>/loras "
                                          "(or a path there), optionally NAME:scale.")] | None = None
    lora_scale: Annotated[float, Meta(ge=0.0, le=4.0, description="How strongly the LoRA applies.")] = 1.0

    def wire(self) -> dict[str, Any]:
        """What the worker receives for one job (the prompts travel beside it)."""
        return {"duration": self.duration, "lyrics": self.lyrics, "language": self.language, "bpm": self.bpm,
                "key": self.key, "time_signature": self.time_signature, "steps": self.steps,
                "guidance": self.guidance, "shift": self.shift, "seed": self.seed, "lora": self.lora,
                "lora_scale": self.lora_scale}

    def from_variation(self, offset: int) -> "AceStepParams":
        """The half of a split batch from output `offset`: variation i is drawn from seed + i, so the
        half shifts its seed and makes the clips the whole batch would have (see the supervisor)."""
        return msgspec.structs.replace(self, seed=None if self.seed is None else self.seed + offset)


FamilyParams = MusicGenParams | AceStepParams
SCHEMAS: dict[str, type[_Params]] = {MUSICGEN: MusicGenParams, ACE_STEP: AceStepParams}
FAMILY_NAMES = {MUSICGEN: "MusicGen", ACE_STEP: "ACE-Step"}


def fields_of(family: str) -> tuple[str, ...]:
    return SCHEMAS[family].__struct_fields__


#: Fields both families take.
COMMON_FIELDS = frozenset(fields_of(MUSICGEN)) & frozenset(fields_of(ACE_STEP))


def ace_step_defaults(model: str | None) -> dict[str, Any]:
    """steps/guidance/shift for a model's variant: base when its name says so, else turbo."""
    return dict(ACE_BASE_DEFAULTS if model and "base" in model.lower() else ACE_TURBO_DEFAULTS)


def normalise_key(value: Any) -> str:
    """'Am' -> 'A minor', 'f# maj' -> 'F# major'; anything that is not one of the 24 keys is refused."""
    m = _KEY_RE.match(value.strip()) if isinstance(value, str) else None
    if m is None or f"{m.group(1).upper()}{m.group(2)}" not in _ROOTS:
        hint = "one of the 24 keys like 'A minor', 'F# major' or 'Bb major'"
        raise ParamError("key", f"must be {hint}, got {value!r}")
    mode = m.group(3) or "major"
    minor = mode in ("m", "min") or mode.lower() == "minor"
    return f"{m.group(1).upper()}{m.group(2)} {'minor' if minor else 'major'}"


def split_lora(value: str) -> tuple[str, float | None]:
    """'DIR:0.8' -> ('DIR', 0.8); 'DIR' -> ('DIR', None). A colon not followed by a number is part of DIR."""
    head, sep, tail = value.rpartition(":")
    if sep and head:
        try:
            return head, float(tail)
        except ValueError:
            pass
    return value, None


# ---------------------------------------------------------------------------------- validation
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
    check_home(name, field)
    return name


def check_home(path: str, field: str) -> None:
    """A path starting with `~user` must name a user that exists: expanding it later would raise
    a RuntimeError deep inside model or LoRA resolution (answered `internal`), not the caller's error."""
    if not path.startswith("~"):
        return
    try:
        Path(path).expanduser()
    except RuntimeError:
        user = path[1:].split("/", 1)[0]
        who = f"no user {user!r}" if user else "no home directory"
        raise ParamError(field, f"{path.split('/', 1)[0]} names {who} on this machine; "
                                "give the directory's full path") from None


def _number_text(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:g}"
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return repr(value)


def _explain(cls: type, field: str, value: Any, raw_message: str) -> str:
    """A sentence for a field msgspec refused, from the constraints written on the Struct."""
    info = next((f for f in msgspec.inspect.type_info(cls).fields if f.name == field), None)
    t = info.type if info is not None else None
    if isinstance(t, msgspec.inspect.UnionType):  # X | None
        t = next(a for a in t.types if not isinstance(a, msgspec.inspect.NoneType))
    extra = getattr(t, "extra", None) or {}
    shown = getattr(t, "extra_json_schema", None) or {}  # bounds the document states, enforced elsewhere
    if isinstance(t, msgspec.inspect.Metadata):
        t = t.type
    if isinstance(t, (msgspec.inspect.FloatType, msgspec.inspect.IntType)):
        integer = isinstance(t, msgspec.inspect.IntType)
        kind = "an integer" if integer else "a number"
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            return f"must be {kind}, got {type(value).__name__}"
        try:
            num = float(value)
        except ValueError:
            return f"must be {kind}, got {value!r}"
        if not math.isfinite(num):
            return "must be a finite number"
        if integer and not num.is_integer():
            return f"must be an integer, got {value!r}"
        unit = extra.get("unit", "")
        lo, hi = t.ge, t.le if t.le is not None else shown.get("maximum")
        got = f"got {_number_text(value)}{unit}"
        if lo is not None and hi is not None:
            return f"must be between {lo:g}{unit} and {hi:g}{unit}, {got}"
        return f"must be at least {lo:g}{unit}, {got}" if lo is not None else f"must be at most {hi:g}{unit}, {got}"
    if isinstance(t, msgspec.inspect.LiteralType):
        choices = ", ".join(str(v) for v in t.values)
        return f"must be one of {choices}, got {value!r}"
    if isinstance(t, msgspec.inspect.StrType):
        if not isinstance(value, str):
            return "must be text"
        if "hint" in extra:
            return f"must be {extra['hint']}, got {value!r}"
        if t.max_length is not None and len(value) > t.max_length:
            return f"is {len(value)} characters; the limit is {t.max_length}"
        if "\x00" in value:
            return "must not contain NUL characters"
    return raw_message.split(" - at ")[0]


def _field_of(message: str) -> str:
    m = re.search(r"at `\$\.([A-Za-z_][A-Za-z0-9_]*)", message)
    return m.group(1) if m else "params"


def refuse_unknown(raw: Mapping[str, Any], family: str) -> None:
    """A field of the other family names that family; any other unknown field is refused as such."""
    mine = set(fields_of(family))
    for name in sorted(set(raw) - mine):
        for other in FAMILIES:
            if other != family and name in fields_of(other):
                raise ParamError(name, f"{name} is {with_article(FAMILY_NAMES[other])} parameter; "
                                       f"{family} does not take it")
        raise ParamError(name, f"unknown field {name}")


def validate_request(raw: Mapping[str, Any], family: str = MUSICGEN, *,
                     max_count: int = MAX_COUNT) -> MusicGenParams | AceStepParams:
    """Turn untrusted input (a protocol map, CLI flags, a form) into the family's checked parameters."""
    if family not in SCHEMAS:
        raise ParamError("model", f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")
    if not isinstance(raw, Mapping):
        raise ParamError("params", "must be a map")
    refuse_unknown(raw, family)
    cls = SCHEMAS[family]
    data = {k: v for k, v in raw.items() if v is not None}  # absent and null both mean "the default"

    prompt = data.get("prompt")
    if not isinstance(prompt, str):
        raise ParamError("prompt", "is required and must be text")
    prompt = data["prompt"] = prompt.strip()
    if not prompt:
        raise ParamError("prompt", "must not be empty")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ParamError("prompt", f"is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
    for name in ("melody", "extend", "lora"):
        if isinstance(data.get(name), str):
            data[name] = data[name].strip()
    if isinstance(data.get("lora"), str):
        check_home(data["lora"], "lora")
    if "model" in data:
        data["model"] = check_model_name(data["model"])
    if isinstance(data.get("melody_source"), str):
        if "\x00" in data["melody_source"]:
            raise ParamError("melody_source", "must be text")
        data["melody_source"] = data["melody_source"].strip()[:MAX_MELODY_SOURCE_CHARS] or None
        if data["melody_source"] is None:
            del data["melody_source"]
    if family_spec(family).song_fields:
        _prepare_song_fields(data)

    try:
        refuse_loose_bools(cls, data)
        params = msgspec.convert(data, cls, strict=False)
    except msgspec.ValidationError as exc:
        field = _field_of(str(exc))
        raise ParamError(field, _explain(cls, field, data.get(field), str(exc))) from None

    if params.count < 1 or params.count > max_count:
        raise ParamError("count", f"must be between 1 and {max_count:g}, got {params.count}")
    budget = family_spec(family).job_audio
    if params.count * params.duration > budget:
        raise ParamError("count", f"{params.count} x {params.duration:g} s is more audio than one job makes "
                                  f"(at most {budget:g} s in all); ask for fewer variations or split the job")
    if family_spec(family).model_defaults:
        defaults = ace_step_defaults(params.model)
        missing = {k: v for k, v in defaults.items() if getattr(params, k) is None}
        if missing:
            params = msgspec.structs.replace(params, **missing)
    return params


def check_for_model(raw: Mapping[str, Any], model: str | None, *, max_count: int = MAX_COUNT) -> None:
    """The check a client makes before sending a request for `model` (None: the daemon's own).

    When the name tells the family (family_for_name), the family's whole check. When it does not
    (the daemon's model, a directory, an unknown hub id), only the daemon knows which family's
    limits apply, so only what every family refuses in the same words is refused here (an empty
    prompt, a bad count); anything else goes to the daemon, which names the problem as its family
    sees it: `--duration 0` against MusicGen is "between 0.5 s and 300 s", not ACE-Step's range,
    and `--bpm` is "an ACE-Step parameter", not "out of range"."""
    family = family_for_name(model) if model else None
    if family is not None:
        validate_request(raw, family, max_count=max_count)
        return
    errors: list[ParamError] = []
    for fam in FAMILIES:
        try:
            validate_request(raw, fam, max_count=max_count)
            return
        except ParamError as exc:
            errors.append(exc)
    if all((e.field, e.message) == (errors[0].field, errors[0].message) for e in errors):
        raise errors[0]


def _prepare_song_fields(data: dict[str, Any]) -> None:
    """Spellings a person types that the typed schema states one way: key names, language case, DIR:scale."""
    if "key" in data:
        data["key"] = normalise_key(data["key"])
    if isinstance(data.get("language"), str):
        data["language"] = data["language"].strip().lower() or "en"
    if isinstance(data.get("lyrics"), str):
        lyrics = data["lyrics"].replace("\r\n", "\n").strip()
        if len(lyrics) > MAX_LYRICS_CHARS:
            raise ParamError("lyrics", f"are {len(lyrics)} characters; the limit is {MAX_LYRICS_CHARS}")
        if "\x00" in lyrics:
            raise ParamError("lyrics", "must not contain NUL characters")
        data["lyrics"] = lyrics
    if isinstance(data.get("lora"), str):
        path, scale = split_lora(data["lora"])
        if not path.strip():
            raise ParamError("lora", "must name a LoRA directory")
        data["lora"] = path.strip()
        if scale is not None:
            if "lora_scale" in data and data["lora_scale"] != scale:
                raise ParamError("lora_scale", "give the scale once: DIR:scale or lora_scale")
            data["lora_scale"] = scale


def refuse_loose_bools(cls: type, data: Mapping[str, Any]) -> None:
    """A true/false field takes true or false: lax conversion would read 0, 1 or "yes" as one, which
    the schema (type boolean) refuses. Numbers stay lenient (strings that parse as numbers)."""
    for f in msgspec.structs.fields(cls):
        kind = f.type
        while get_origin(kind) is Annotated:
            kind = get_args(kind)[0]
        args = get_args(kind)
        if (kind is bool or bool in args and set(args) <= {bool, type(None)}) and f.name in data \
                and not isinstance(data[f.name], bool):
            raise ParamError(f.name, f"must be true or false, got {data[f.name]!r}")


#: The HTTP API's other bodies and its OpenAPI generation live in common/schema_openapi.py, which
#: imports this module; they stay importable from here, looked up on first use (no import cycle).
_OPENAPI_NAMES = frozenset({"Job", "Track", "JobList", "TrackPage", "TAG_PATTERN", "Tag", "TrackUpdate", "JobMove",
                            "JobPrune", "ModelLoad", "nullable_optionals", "openapi_components",
                            "MODEL_NAME_PATTERNS"})


def __getattr__(name: str) -> Any:
    if name in _OPENAPI_NAMES:
        from dgx_music.common import schema_openapi
        return getattr(schema_openapi, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
