"""The browser tab as a speaker: request shapes, the page URL and ssh line, and whether this machine can play.

The daemon keeps a registry of open browser tabs (daemon/speaker_hub.py); the `speaker.*` methods send one of
them a track or a running job's stream. The TUI and the CLI use it when they cannot play locally: no player
or output device, or running under SSH with no forwarded sound server. Everything here is light (no torch,
no numpy): the TUI and the CLI import it on a laptop.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated, Any, Mapping, TypeVar

import msgspec
from msgspec import Meta

from dgx_music.common.schemas import ParamError, TrackId, _explain, _field_of

#: The WebSocket a tab connects to, and the script the page loads.
WS_PATH = "/api/v1/speaker/ws"
SCRIPT_PATH = "/static/speaker.js"
#: The HTTP port when the daemon's settings name none.
DEFAULT_PORT = 8765
MAX_SECONDS = 86400.0
INT64_MAX = 2**63 - 1


class SpeakerPlay(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """speaker.play: a library track, from `position` seconds."""

    track_id: TrackId
    position: Annotated[float, Meta(ge=0, le=MAX_SECONDS, description="Seconds from the start.")] = 0.0


class SpeakerStream(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """speaker.stream: a queued or running MusicGen job's audio as it is made (what `job.listen` streams)."""

    job_id: Annotated[int, Meta(ge=1, le=INT64_MAX)]
    variation: Annotated[int, Meta(ge=0, le=15)] = 0


class SpeakerSeek(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """speaker.seek: move the playing track to `seconds`."""

    seconds: Annotated[float, Meta(ge=0, le=MAX_SECONDS)]


class SpeakerStop(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """speaker.stop: silence (no fields)."""


SCHEMAS = (SpeakerPlay, SpeakerStream, SpeakerSeek, SpeakerStop)
S = TypeVar("S", bound=msgspec.Struct)


def validate(cls: type[S], raw: Mapping[str, Any] | None) -> S:
    """Untrusted params -> the typed request; a ParamError names the field that is wrong."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ParamError("params", "must be a map")
    for name in sorted(set(raw) - set(cls.__struct_fields__)):
        raise ParamError(name, f"unknown field {name}")
    data = {k: v for k, v in raw.items() if v is not None}
    try:
        return msgspec.convert(data, cls, strict=False)
    except msgspec.ValidationError as exc:
        field = _field_of(str(exc))
        raise ParamError(field, _explain(cls, field, data.get(field), str(exc))) from None


# ---------------------------------------------------------------------------------- where the page is
def page_url(port: int, token: str | None = None, host: str = "localhost") -> str:
    """The page as the user's browser reaches it (through `ssh -L` when remote); the token once, in the URL."""
    return f"http://{host}:{port}/" + (f"?token={token}" if token else "")


def ssh_line(port: int, host: str | None = None) -> str:
    """The one line that forwards the page's port from the laptop to this machine."""
    return f"ssh -L {port}:localhost:{port} {host or socket.gethostname()}"


def read_token(settings: Any, token_file: Any = None) -> str | None:
    """The HTTP token the daemon made: from `token_file` (the path the daemon reports in speaker.status and
    no_speaker) when given and readable, else from common/paths.http_token_path; None when there is none."""
    from dgx_music.common import paths

    candidates = [token_file] if isinstance(token_file, str) and token_file else []
    if settings is not None:
        candidates.append(paths.http_token_path(settings))
    for path in candidates:
        try:
            text = Path(path).expanduser().read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text:
            return text
    return None


def port_of(settings: Any) -> int | None:
    """The HTTP port from the settings' `http.listen` (None when HTTP is off)."""
    try:
        listen = str(settings["http.listen"]).strip()
    except KeyError:
        return None
    if not listen:
        return None
    port = listen.rpartition(":")[2]
    return int(port) if port.isdigit() else None


# ---------------------------------------------------------------------------------- can we play here?
def remote_session_problem(env: Mapping[str, str] | None = None) -> str | None:
    """Why local playback would be heard in the wrong place: running under SSH with no forwarded sound
    server (PULSE_SERVER, PIPEWIRE_REMOTE). None when local playback is where the user is, or when
    DGX_MUSIC_PLAYER names a player (an explicit choice to play here)."""
    env = os.environ if env is None else env
    if env.get("DGX_MUSIC_PLAYER", "").strip():  # the user picked a player here: play here
        return None
    if not env.get("SSH_CONNECTION") and not env.get("SSH_CLIENT"):
        return None
    if env.get("PULSE_SERVER") or env.get("PIPEWIRE_REMOTE"):
        return None
    return "running over SSH with no forwarded sound server, so local playback would play on the remote machine"


def no_speaker_text(port: int | None, token: str | None = None, host: str | None = None) -> str:
    """One line for when no tab is open: the URL to open and how to reach it."""
    if port is None:
        return ("no browser tab is open as a speaker, and the daemon's HTTP server is off (set http.listen, "
                "e.g. 127.0.0.1:8765)")
    return (f"no browser tab is open as a speaker: open {page_url(port, token)} "
            f"(from your laptop: {ssh_line(port, host)})")


def speaker_components(ref_template: str = "#/components/schemas/{name}") -> tuple[dict[str, Any], dict[str, Any]]:
    """JSON Schemas of the speaker request bodies for the OpenAPI document: (refs by name, components)."""
    refs, components = msgspec.json.schema_components(SCHEMAS, ref_template=ref_template)
    return {t.__name__: ref for t, ref in zip(SCHEMAS, refs)}, components
