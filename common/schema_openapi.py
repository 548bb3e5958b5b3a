"""The HTTP API's other bodies and its OpenAPI components, generated from the typed Structs.

The job request body is the family Structs of common/schemas.py; the responses (jobs, tracks,
pages) and the other request bodies (track, job and model changes) are written here, and
`openapi_components` turns them all into the JSON Schemas /openapi.json serves.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from dgx_music.common.families import (ACE_STEP, ACE_STEP_ALIASES, ACE_STEP_RANDOM, MUSICGEN, MUSICGEN_ALIASES,
                                       MUSICGEN_RANDOM)
from dgx_music.common.schemas import AceStepParams, ModelName, MusicGenParams

# ---------------------------------------------------------------------------------- responses
class Job(msgspec.Struct, kw_only=True):
    """A job as job.submit, job.get and job.list return it."""

    id: int
    state: Literal["queued", "running", "processing", "done", "failed", "cancelled"]
    prompt: str
    params: dict[str, Any]
    count: int
    seed: int
    model: str | None
    backend: str | None
    position: int
    attempts: int
    max_attempts: int
    error: str | None
    created: float
    started: float | None
    finished: float | None
    host: str | None = None  # a shared queue: the host that runs (or ran) the job; null on one box
    track_ids: list[str] = []
    progress: dict[str, Any] | None = None
    stream_seconds: float | None = None  # a running MusicGen job: seconds of its audio ready (job.listen)


class Track(msgspec.Struct, kw_only=True):
    """A library track as track.get and track.list return it. `bpm` and `key` are the analysis of the
    audio (null until analysed); `req_bpm`, `req_key`, `req_time_signature` what an ACE-Step request
    asked for; `params` holds the request's parameters."""

    id: str
    job_id: int | None
    index: int
    path: str
    file: str  # `path` as an absolute path on the daemon's machine
    prompt: str
    title: str
    model: str | None
    backend: str | None
    seed: int | None
    params: dict[str, Any]
    duration: float
    sample_rate: int
    channels: int
    created: float
    rating: Annotated[int, Meta(ge=0, le=5)]
    favorite: bool
    notes: str
    tags: list[str]
    lufs_before: float | None = None
    lufs: float | None = None
    true_peak: float | None = None
    gain_db: float | None = None
    loudness_note: str | None = None
    bpm: float | None = None
    bpm_confidence: float | None = None
    key: str | None = None
    key_confidence: float | None = None
    family: str = MUSICGEN
    lyrics: str | None = None
    language: str | None = None
    req_bpm: float | None = None
    req_key: str | None = None
    req_time_signature: int | None = None
    midi_path: str | None = None  # its MIDI transcription (`dgx-music midi`), relative to the data dir
    peaks: list[list[float]] | None = None
    # While the database is away (store_unavailable otherwise): the row this host last read, marked so.
    stale: bool = False
    stale_since: float | None = None  # Unix time the database was last reached


class JobList(msgspec.Struct):
    jobs: list[Job]


class TrackPage(msgspec.Struct):
    """One page of track.list. `stale`: the database is away and this is the same page as this host
    last read (`stale_since`: Unix time the database was last reached); absent on a fresh answer."""

    tracks: list[Track]
    next_cursor: str | None = None
    total: int | None = None  # all matches, on the first page; a lower bound when total_exact is false
    total_exact: bool | None = None  # false: more than `total` match (counting stops there: show "10,000+")
    ranked: int | None = None  # sort=relevance, first page: how many of the newest matches were ranked
    stale: bool = False
    stale_since: float | None = None


# ---------------------------------------------------------------------------------- other request bodies
#: Tags as the OpenAPI document states them: a safe subset of what the library accepts (letters and
#: digits of common scripts, a few marks; not starting with + or -). The library takes any text
#: without control or format characters; a regex that portable cannot name every unassigned code point.
_TAG_CHARS = "0-9A-Za-z\u00c0-\u024f\u0391-\u03a1\u03a3-\u03c9\u0400-\u04ff\u3041-\u3096\u30a1-\u30fa" \
             "\u4e00-\u9fff_.,:;!?'&()#/@*=~%"
TAG_PATTERN = f"^ *[{_TAG_CHARS}][{_TAG_CHARS}+\\- ]*$"
Tag = Annotated[str, Meta(min_length=1, max_length=48, pattern=TAG_PATTERN)]


class TrackUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of track.update (PATCH /api/v1/tracks/{id}): any of these; others are refused by name."""

    title: Annotated[str, Meta(max_length=200)] | None = None
    rating: Annotated[int, Meta(ge=0, le=5)] | None = None
    favorite: bool | None = None
    notes: Annotated[str, Meta(max_length=10000)] | None = None
    tags_add: Annotated[list[Tag], Meta(max_length=64)] | None = None
    tags_remove: Annotated[list[Tag], Meta(max_length=64)] | None = None


class JobMove(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    to: Literal["top", "up", "down"]


class JobPrune(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    older_than_days: Annotated[float, Meta(ge=0, le=1_000_000)] | None = None
    dry_run: bool | None = None


class ModelLoad(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    model: ModelName | None = None


def nullable_optionals(component: dict[str, Any]) -> dict[str, Any]:
    """Say in a body's schema what the daemon does: an optional field sent as null means its default.

    validate_request and validate_operation take null as "absent" (docs/protocol.md); a schema that
    forbids it would make a schema-driven client or fuzzer expect a refusal the daemon never gives."""
    required = set(component.get("required", ()))
    for name, prop in component.get("properties", {}).items():
        if name in required:
            continue
        if "anyOf" in prop:
            if {"type": "null"} not in prop["anyOf"]:
                prop["anyOf"].append({"type": "null"})
        elif isinstance(prop.get("type"), str):
            prop["type"] = [prop["type"], "null"]
            if "enum" in prop and None not in prop["enum"]:
                prop["enum"] = [*prop["enum"], None]
        elif "enum" in prop:
            if None not in prop["enum"]:
                prop["enum"] = [*prop["enum"], None]
        elif "$ref" in prop:
            component["properties"][name] = {"anyOf": [prop, {"type": "null"}]}
    return component


def openapi_components(default_family: str | None = MUSICGEN, ref_template: str = "#/components/schemas/{name}",
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
    """JSON Schemas for the request and response bodies: (refs by name, components).

    The job request body is the schema of the model's family: named by the model when its
    name tells (MODEL_NAME_PATTERNS), `default_family` (the daemon's own model) when the body
    names none, and either shape for a directory or another hub id, which only the daemon
    can place (None: the default model is one of those too)."""
    types = [MusicGenParams, AceStepParams, Job, Track, JobList, TrackPage, TrackUpdate, JobMove, JobPrune,
             ModelLoad]
    refs, components = msgspec.json.schema_components(types, ref_template=ref_template)
    for name in ("MusicGenParams", "AceStepParams"):
        nullable_optionals(components[name])
    names = {t.__name__: ref for t, ref in zip(types, refs)}
    by_family = {MUSICGEN: refs[0], ACE_STEP: refs[1]}
    either = {"anyOf": [refs[0], refs[1]]}
    named = {fam: {"properties": {"model": {"type": "string", "pattern": pattern}}, "required": ["model"]}
             for fam, pattern in MODEL_NAME_PATTERNS.items()}
    no_model = {"anyOf": [{"not": {"required": ["model"]}}, {"properties": {"model": {"type": "null"}}}]}
    components["JobRequest"] = {
        "description": "A generation request. The model's family decides which parameters exist: "
                       "MusicGenParams for musicgen models, AceStepParams for ace-step ones; without a model, "
                       f"the daemon's model ({default_family or 'placed by the daemon'}).",
        "if": named[ACE_STEP], "then": refs[1],
        "else": {"if": named[MUSICGEN], "then": refs[0],
                 "else": {"if": no_model, "then": by_family.get(default_family or "", either), "else": either}},
    }
    names["JobRequest"] = {"$ref": ref_template.format(name="JobRequest")}
    return names, components


def _ci(word: str) -> str:
    """A case-insensitive ECMA regex for a word (JSON Schema patterns take no flags)."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


#: Model names whose family the name alone tells (common/families.family_for_name), as JSON Schema patterns
#: (names and words here are letters, digits, ':' and '-': nothing to escape).
MODEL_NAME_PATTERNS = {
    MUSICGEN: "^(?:" + "|".join(a for a in (*MUSICGEN_ALIASES, *("random:" + s for s in MUSICGEN_RANDOM)))
              + f"|[^/.~][^/]*/.*{_ci('musicgen')}.*)$",
    ACE_STEP: "^(?:" + "|".join(a for a in (*ACE_STEP_ALIASES, *("random:" + s for s in ACE_STEP_RANDOM)))
              + f"|[^/.~][^/]*/(?!.*{_ci('musicgen')}).*(?:{_ci('ace-step')}|{_ci('acestep')}).*)$",
}
