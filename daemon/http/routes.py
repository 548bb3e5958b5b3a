"""The HTTP API's route table and the OpenAPI document generated from it.

One table builds the aiohttp router (daemon/http/api.py) and the OpenAPI 3.1 description, with the
request and response bodies from the typed schemas (common/schemas.py, common/operations.py), so the
document cannot drift from what the daemon serves and enforces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dgx_music import __version__
from dgx_music.common.families import MUSICGEN
from dgx_music.common.fitloop import METHODS as FIT_METHODS
from dgx_music.common.fitloop import components as fitloop_components
from dgx_music.common.operations import METHODS as OP_METHODS
from dgx_music.common.operations import OPERATION_SCHEMAS as OP_SCHEMAS
from dgx_music.common.operations import OPERATIONS, operation_components
from dgx_music.common.operations import ROUTES as OP_ROUTES
from dgx_music.common.midi import METHOD as MIDI_METHOD
from dgx_music.common.midi import ROUTE as MIDI_ROUTE
from dgx_music.common.midi import midi_component
from dgx_music.common.schema_openapi import openapi_components
from dgx_music.common.speaker import SCRIPT_PATH, speaker_components
from dgx_music.common.training import STYLE_NAME_PATTERN, training_components
from dgx_music.common.speaker import WS_PATH as SPEAKER_WS
from dgx_music.daemon.store import LIST_SORTS

API = "/api/v1"
OPENAPI_PATH = "/openapi.json"
#: The longest long poll, GET /api/v1/jobs/{id}?wait=S (s); proxies often cut idle requests at 60 s.
MAX_WAIT_SECONDS = 300.0
INT64_MAX = 2**63 - 1
#: The Range header the audio route takes: one byte range, or any other unit (ignored, RFC 9110 14.2).
RANGE_PATTERN = (r"^(?:[Bb][Yy][Tt][Ee][Ss]=(?:[0-9]{1,18}-[0-9]{0,18}|-[0-9]{1,18})"
                 r"|(?![Bb][Yy][Tt][Ee][Ss]=)[A-Za-z0-9!#$%&'*+.^_`|~-]+=.*)$")


@dataclass(frozen=True)
class Param:
    """A query or path parameter: its type and the JSON Schema constraints the daemon enforces,
    so the OpenAPI document states them (a schema-driven client or fuzzer sends only what passes)."""

    kind: type
    schema: dict[str, Any] = field(default_factory=dict)


def _p(kind: type, **schema: Any) -> Param:
    return Param(kind, schema)


JOB_ID = _p(int, minimum=1, maximum=INT64_MAX)
TRACK_ID = _p(str, minLength=1, maxLength=64)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    rpc: str | None  # the protocol method it mirrors, or None for HTTP-only routes
    summary: str
    query: dict[str, "type | Param"] = field(default_factory=dict)
    path_params: dict[str, "type | Param"] = field(default_factory=dict)
    body: bool = False
    created: bool = False  # 201 instead of 200
    produces: str = "application/json"
    request_schema: str | None = None  # a component in common/schema_openapi.openapi_components
    response_schema: str | None = None
    handler: str | None = None  # an HttpApi method serving it instead of the plain mirror of `rpc`


def _param(spec: "type | Param") -> Param:
    return spec if isinstance(spec, Param) else Param(spec)


ROUTES: tuple[Route, ...] = (
    Route("GET", "/", None, "The listening page (HTML). Open it once with ?token=T: the answer is a 303 to the same "
          "URL without the token, setting the token as an HttpOnly cookie.", produces="text/html"),
    Route("GET", "/healthz", None, "Liveness and readiness: 200 when the daemon serves requests and its queue runner is up, else 503."),
    Route("GET", "/metrics", None, "Prometheus metrics (text exposition format 0.0.4).",
          produces="text/plain"),
    Route("GET", OPENAPI_PATH, None, "This OpenAPI document."),
    Route("GET", f"{API}/hello", "hello", "Protocol version, methods and topics."),
    Route("GET", f"{API}/status", "status", "Daemon version, uptime, clients, model and queue."),
    Route("GET", f"{API}/jobs", "job.list", "Active jobs in queue order (all=true: finished ones too).",
          query={"all": bool, "limit": _p(int, minimum=1, maximum=1000)}, response_schema="JobList"),
    Route("POST", f"{API}/jobs", "job.submit", "Submit a generation job: MusicGen or ACE-Step parameters, "
          "by the model's family (docs/protocol.md, job.submit).", body=True, created=True,
          request_schema="JobRequest", response_schema="Job"),
    Route("POST", f"{API}/jobs/prune", "job.prune", "Forget finished jobs older than N days that own no track "
          "(body: {\"older_than_days\": N, \"dry_run\": bool}, both optional).", body=True,
          request_schema="JobPrune"),
    Route("GET", f"{API}/jobs/{{id}}", "job.get", "One job with its live progress. With ?wait=S (0-300), a long "
          "poll: the answer comes when the job has ended, or after S seconds with the job as it is then.",
          path_params={"id": JOB_ID}, query={"wait": _p(float, minimum=0, maximum=MAX_WAIT_SECONDS)},
          response_schema="Job", handler="_job_get"),
    Route("POST", f"{API}/jobs/{{id}}/cancel", "job.cancel", "Cancel a job (409 not_cancellable once it ended).",
          path_params={"id": JOB_ID}, response_schema="Job"),
    Route("POST", f"{API}/jobs/{{id}}/retry", "job.retry", "Queue a failed or cancelled job again.",
          path_params={"id": JOB_ID}, response_schema="Job"),
    Route("POST", f"{API}/jobs/{{id}}/move", "job.move", "Move a queued job (body: {\"to\": top|up|down}).",
          path_params={"id": JOB_ID}, body=True, request_schema="JobMove", response_schema="Job"),
    Route("GET", f"{API}/tracks", "track.list", "List or search the library (one page; pass next_cursor as cursor).",
          # No pattern on tag: a filter matches any tag the library holds (TAG_PATTERN is a subset).
          query={"search": _p(str, maxLength=1000), "tag": _p(str, minLength=1, maxLength=48),
                 "favorite": bool, "model": _p(str, maxLength=500),
                 "bpm_min": _p(float, minimum=0, maximum=1e300), "bpm_max": _p(float, minimum=0, maximum=1e300),
                 "key": _p(str, maxLength=100), "sort": _p(str, enum=list(LIST_SORTS)),
                 "order": _p(str, enum=["asc", "desc"]), "limit": _p(int, minimum=1, maximum=500),
                 "cursor": _p(str, maxLength=1000), "job_id": JOB_ID,
                 "source": _p(str, minLength=1, maxLength=64, pattern=r"^[0-9]{1,12}-[0-9]{1,4}$")},
          response_schema="TrackPage"),
    Route("GET", f"{API}/tracks/{{id}}", "track.get", "One track with its analysis and peaks.",
          path_params={"id": TRACK_ID}, response_schema="Track"),
    Route("PATCH", f"{API}/tracks/{{id}}", "track.update", "Edit title, rating, favorite, notes or tags; any other "
          "field is invalid_params naming it.", path_params={"id": TRACK_ID}, body=True,
          request_schema="TrackUpdate", response_schema="Track"),
    Route("DELETE", f"{API}/tracks/{{id}}", "track.delete", "Delete a track (its file goes to the trash).",
          path_params={"id": TRACK_ID}),
    Route("GET", f"{API}/tracks/{{id}}/audio", None, "The track's audio file; supports Range requests.",
          path_params={"id": TRACK_ID}, produces="audio/wav"),
    Route("GET", f"{API}/tracks/{{id}}/export", None, "The track's audio as a download: WAV (default) or "
          "FLAC, optionally resampled and at 16 or 24 bits, tagged with title, prompt, BPM and key "
          "(what `dgx-music export` writes).", path_params={"id": TRACK_ID},
          query={"format": _p(str, enum=["wav", "flac"]), "sample_rate": _p(int, enum=[44100, 48000]),
                 "bit_depth": _p(int, enum=[16, 24])}, produces="audio/flac", handler="_export"),
    Route("GET", f"{API}/tracks/{{id}}/waveform", "track.peaks", "Waveform peaks ([min, max] pairs).",
          path_params={"id": TRACK_ID}),
    Route("GET", f"{API}/tracks/{{id}}/lineage", "track.lineage", "Where a track came from and the tracks made "
          "from it.", path_params={"id": TRACK_ID}),
    *(Route("POST", f"{API}/ops/{OP_ROUTES[op]}", OP_METHODS[op], f"Queue an operation on a track: {op.replace('_', ' ')} "
            "(ACE-Step models; docs/operations-on-tracks.md). source_audio: base64 in JSON.", body=True, created=True,
            request_schema=OP_SCHEMAS[op].__name__, response_schema="Job") for op in OPERATIONS),
    Route("POST", f"{API}/ops/{MIDI_ROUTE}", MIDI_METHOD, "Queue a transcription of a track, stem or audio file to "
          "a standard MIDI file (docs/operations-on-tracks.md, MIDI). source_audio: base64 in JSON.", body=True,
          created=True, request_schema="MidiRequest", response_schema="Job"),
    Route("GET", f"{API}/tracks/{{id}}/midi", None, "The track's MIDI file (its latest transcription; 404 "
          "not_found before one).", path_params={"id": TRACK_ID}, produces="audio/midi", handler="_midi"),
    Route("GET", f"{API}/jobs/{{id}}/midi", None, "The MIDI file a done MIDI job made (a track's or an uploaded "
          "file's).", path_params={"id": JOB_ID}, produces="audio/midi", handler="_midi"),
    Route("POST", f"{API}/ops/fit", FIT_METHODS["fit"], "Queue a fit: a new track, the source time-stretched to a "
          "tempo and pitch-shifted to a key (Rubber Band; docs/operations-on-tracks.md). source_audio: base64 in "
          "JSON.", body=True, created=True, request_schema="FitRequest", response_schema="Job"),
    Route("POST", f"{API}/ops/loop", FIT_METHODS["loop"], "Queue a loop: exactly N bars at a tempo, generated from "
          "a prompt (any model) or cut from a source, with loop points in the file. source_audio: base64 in JSON.",
          body=True, created=True, request_schema="LoopRequest", response_schema="Job"),
    Route("GET", f"{API}/styles", "style.list", "Styles (LoRAs trained on your tracks): name, base model, steps, "
          "what it learnt from, final loss, size, created."),
    Route("POST", f"{API}/styles", "style.train", "Queue training a style on library tracks or a directory of "
          "audio files under the data directory (ACE-Step models; docs/engine.md).", body=True, created=True,
          request_schema="TrainRequest", response_schema="Job"),
    Route("GET", f"{API}/styles/{{name}}", "style.get", "One style.",
          path_params={"name": _p(str, pattern=STYLE_NAME_PATTERN, maxLength=64)}),
    Route("DELETE", f"{API}/styles/{{name}}", "style.delete", "Delete a style (its files go to the trash).",
          path_params={"name": _p(str, pattern=STYLE_NAME_PATTERN, maxLength=64)}),
    Route("POST", f"{API}/library/empty-trash", "library.empty_trash", "Delete the files of deleted tracks for "
          "good; answers how many were removed."),
    Route("GET", f"{API}/prompts", "prompt.history", "Distinct recent prompts, newest first.",
          query={"limit": _p(int, minimum=1, maximum=1000)}),
    Route("GET", f"{API}/models", "model.list", "Known models and whether they are cached or loaded."),
    Route("GET", f"{API}/model", "model.state", "The model worker's state and memory."),
    Route("POST", f"{API}/model/load", "model.load", "Load a model (body: {\"model\": name}, optional).", body=True,
          request_schema="ModelLoad"),
    Route("POST", f"{API}/model/unload", "model.unload", "Unload the model and free the GPU."),
    Route("GET", f"{API}/events", None, "Live events as Server-Sent Events (?topics=job,track,model,daemon; "
          "?job=ID: only that job's job.* and track.* events). Each event has an `id:`; reconnecting with "
          "Last-Event-ID replays what was missed while the daemon still holds it (the last 2000 events); "
          "older, a `stream.gap` event says so.",
          query={"topics": _p(str, maxLength=200), "job": JOB_ID}, produces="text/event-stream"),
    Route("GET", f"{API}/events/ws", None, "Live events over a WebSocket, one JSON message per event "
          "(?topics=...).", query={"topics": _p(str, maxLength=200)}),
    Route("GET", f"{API}/speaker", "speaker.status", "Browser tabs open as speakers, the page's URL, what the "
          "playing tab reports."),
    Route("POST", f"{API}/speaker/play", "speaker.play", "Play a library track in the most recently focused "
          "browser tab (409 no_speaker when none is open).", body=True, request_schema="SpeakerPlay"),
    Route("POST", f"{API}/speaker/stream", "speaker.stream", "Play a running MusicGen job's audio in the tab "
          "as it is made.", body=True, request_schema="SpeakerStream"),
    Route("POST", f"{API}/speaker/stop", "speaker.stop", "Silence the speaker tab."),
    Route("POST", f"{API}/speaker/seek", "speaker.seek", "Move the tab's playing track to a position.",
          body=True, request_schema="SpeakerSeek"),
    Route("GET", SPEAKER_WS, None, "The WebSocket a browser tab opens to be a speaker (the page's "
          "speaker.js; docs/protocol.md, \"Speaker tabs\")."),
    Route("GET", SCRIPT_PATH, None, "The speaker tab's script.", produces="text/javascript"),
)


def openapi(routes: tuple[Route, ...] = ROUTES, default_family: str | None = MUSICGEN) -> dict[str, Any]:
    """The OpenAPI 3.1 description, generated from the same table that builds the router and from the
    typed request/response definitions (common/schemas.py). `default_family`: the family of the daemon's
    own model, which a job body without a model uses."""
    paths: dict[str, Any] = {}
    refs, schemas = openapi_components(default_family)
    op_refs, op_schemas = operation_components()  # operations on tracks (common/operations.py)
    sp_refs, sp_schemas = speaker_components()  # browser tabs as speakers (common/speaker.py)
    mi_refs, mi_schemas = midi_component()  # MIDI of a part (common/midi.py)
    fl_refs, fl_schemas = fitloop_components()  # fit and loops (common/fitloop.py)
    tr_refs, tr_schemas = training_components()  # styles (common/training.py)
    refs = {**refs, **op_refs, **sp_refs, **mi_refs, **fl_refs, **tr_refs}
    schemas = {**schemas, **op_schemas, **sp_schemas, **mi_schemas, **fl_schemas, **tr_schemas}
    type_names = {int: "integer", float: "number", bool: "boolean", str: "string"}
    for r in routes:
        params = [{"name": n, "in": "path", "required": True,
                   "schema": {"type": type_names[_param(t).kind], **_param(t).schema}}
                  for n, t in r.path_params.items()]
        params += [{"name": n, "in": "query", "required": False,
                    "schema": {"type": type_names[_param(t).kind], **_param(t).schema}}
                   for n, t in r.query.items()]
        ok = "201" if r.created else "200"
        op: dict[str, Any] = {
            "summary": r.summary,
            "operationId": (r.rpc or r.path.strip("/").replace("/", "_").replace("{", "").replace("}", "")
                            or "root").replace(".", "_") + ("" if r.method == "GET" else "_" + r.method.lower()),
            "responses": {
                ok: {"description": "success", "content": {r.produces: {"schema": {"type": "string"} if
                                                                       r.produces != "application/json"
                                                                       else refs[r.response_schema] if
                                                                       r.response_schema
                                                                       else {"type": "object"}}}},
                "default": {"description": "error", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        }
        if r.rpc:
            op["description"] = f"Mirrors the socket method `{r.rpc}` (docs/protocol.md); same parameters and result."
        if r.path.endswith("/audio"):
            op["parameters"] = params + [{"name": "Range", "in": "header", "required": False,
                                          "schema": {"type": "string", "pattern": RANGE_PATTERN},
                                          "description": "bytes=START-END, START- or -SUFFIX (one range; "
                                                         "malformed or unsatisfiable: 416). A range in another "
                                                         "unit is ignored: the whole file"}]
            op["responses"]["206"] = {"description": "partial content"}
            op["responses"]["416"] = {"description": "range not satisfiable (code range_not_satisfiable)",
                                      "content": {"application/json": {
                                          "schema": {"$ref": "#/components/schemas/Error"}}}}
        elif params:
            op["parameters"] = params
        if r.path.endswith("/export"):  # WAV or FLAC, as ?format= asks
            op["responses"][ok]["content"]["audio/wav"] = {"schema": {"type": "string"}}
        if r.path.endswith(("/audio", "/export")):  # the file is on shared storage; its row may be cached
            op["responses"][ok]["headers"] = {"X-Dgx-Stale-Since": {
                "description": "Only while the database is away: the track's row is what this host last read; "
                               "Unix time the database was last reached", "schema": {"type": "string"}}}
        if r.body:
            body = refs[r.request_schema] if r.request_schema else {"type": "object"}
            # A body whose schema has required fields (move's `to`) must be sent at all.
            required = r.created or bool(r.request_schema and schemas.get(r.request_schema, {}).get("required"))
            op["requestBody"] = {"required": required, "content": {"application/json": {"schema": body}}}
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "DGX Music HTTP API", "version": __version__,
                 "description": "A REST mirror of the DGX Music socket protocol (docs/protocol.md). Errors carry "
                                "the protocol's error code: {\"error\": {\"code\", \"message\", ...}}."},
        "paths": paths,
        "components": {
            "schemas": {**schemas, "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}},
                "required": ["code", "message"]}}}},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "cookie": {"type": "apiKey", "in": "cookie", "name": "dgx_music_token"}},
        },
        "security": [{"bearer": []}, {"cookie": []}],
    }
