"""MIDI of a part: the request that transcribes a track, a stem or an audio file to a MIDI file.

One typed msgspec Struct, used by every surface: the CLI checks it before sending, the daemon
(`op.midi`, daemon/jobs/midi.py) checks it again plus the source, and the HTTP API
(`POST /api/v1/ops/midi`) publishes it in /openapi.json. Failures are ParamError naming the field.

A source is a library track id (the MIDI is stored with that track: `midi_path`, shown by `show`,
downloaded by `track.midi`), the key of audio the daemon stored earlier (what a retry sends), or
an audio file's bytes (`source_audio`): an uploaded file's MIDI is the job's own result,
downloaded by job id (`track.midi` with `job`), kept until the job is pruned.
"""

from __future__ import annotations

from typing import Annotated, Any, Mapping

import msgspec
from msgspec import Meta

from dgx_music.common.operations import MAX_SOURCE_NAME, SourceRef, check_source, convert_request
from dgx_music.common.schema_openapi import nullable_optionals
from dgx_music.common.schemas import ParamError

MIDI = "midi"  # the job kind, and the name the job rows carry (params.kind)
METHOD = "op.midi"
ROUTE = "midi"
MODEL = "basic-pitch"  # the job's model column: Spotify's Basic Pitch (ICASSP 2022), run with onnxruntime
MAX_MIDI_BYTES = 7 * 1024 * 1024  # one protocol frame; a 10-minute dense transcription is ~100 KB


class MidiRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Transcribe a track (or stem, or an uploaded audio file) to a standard MIDI file."""

    source: SourceRef | None = None
    source_audio: Annotated[bytes, Meta(description="An audio file's bytes (WAV, FLAC, OGG, MP3) instead of a "
                                                    "track; socket only.")] | None = None
    source_name: Annotated[str, Meta(max_length=MAX_SOURCE_NAME, pattern=r"^[^\x00]*$",
                                     description="The uploaded file's name (the MIDI track's name).")] | None = None
    program: Annotated[int, Meta(ge=0, le=127, description="General MIDI program of the notes (0: piano).")] = 0
    bpm: Annotated[float, Meta(ge=20.0, le=400.0, description="Tempo written in the file; default: the track's "
                                                              "analysed tempo (120 for a file).")] | None = None

    def to_dict(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)


def validate_midi(raw: Mapping[str, Any]) -> MidiRequest:
    """Untrusted input (a protocol map, CLI flags, a form) -> the checked request."""
    if not isinstance(raw, Mapping):
        raise ParamError("params", "must be a map")
    for name in sorted(set(raw) - set(MidiRequest.__struct_fields__)):
        raise ParamError(name, f"unknown field {name} for midi")
    data = {k: v for k, v in raw.items() if v is not None}
    for name in ("source", "source_name"):
        if isinstance(data.get(name), str):
            data[name] = data[name].strip()
            if not data[name]:
                del data[name]
    req = convert_request(MidiRequest, data)
    check_source(req)
    return req


def midi_component(ref_template: str = "#/components/schemas/{name}") -> tuple[dict[str, Any], dict[str, Any]]:
    """The request body's JSON Schema, for the OpenAPI document."""
    (ref,), components = msgspec.json.schema_components([MidiRequest], ref_template=ref_template)
    comp = nullable_optionals(components["MidiRequest"])
    comp["oneOf"] = [{"required": [name], "properties": {name: {"type": "string"}}}
                     for name in ("source", "source_audio")]
    return {"MidiRequest": ref}, components


__all__ = ["MAX_MIDI_BYTES", "METHOD", "MIDI", "MODEL", "MidiRequest", "ROUTE", "midi_component", "validate_midi"]
