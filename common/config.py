"""Settings: defaults < TOML config file < DGX_MUSIC_* environment < command-line flags.

Every option is declared once in OPTIONS with its type, default, environment
variable and help text; `dgx-music config show` prints each effective value and
where it came from. Unknown keys and wrong types are errors naming the key.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from dgx_music.common import paths


class ConfigError(ValueError):
    """A setting is unknown or has the wrong type; the message names the key and its source."""


@dataclass(frozen=True)
class Option:
    key: str  # "section.name"
    type: type
    default: Callable[[], Any] | Any
    help: str
    env: str = ""
    choices: tuple[Any, ...] = ()

    @property
    def env_name(self) -> str:
        return self.env or "DGX_MUSIC_" + self.key.split(".", 1)[1].upper()

    def default_value(self) -> Any:
        return self.default() if callable(self.default) else self.default


def _lazy(fn: Callable[[], Path]) -> Callable[[], str]:
    return lambda: str(fn())


OPTIONS: tuple[Option, ...] = (
    Option("daemon.socket", str, _lazy(paths.default_socket), "Unix socket path."),
    Option("daemon.data_dir", str, _lazy(paths.default_data_dir), "Library, database and trash (the audio moves "
           "to store.storage when that is set)."),
    Option("daemon.socket_mode", str, "0600", "Socket file mode (octal); 0660 with socket_group."),
    Option("daemon.socket_group", str, "", "Group whose members may also connect (empty: none)."),
    Option("daemon.max_frame", int, 8 * 1024 * 1024, "Largest protocol frame accepted, bytes."),
    Option("daemon.read_timeout", float, 30.0, "Seconds a client may take to finish a frame."),
    Option("daemon.idle_timeout", float, 10.0, "Seconds a connection may go without completing a frame, "
           "from connecting or from its last frame, unless it is subscribed or awaiting an answer."),
    Option("daemon.max_clients", int, 256, "Connections served at once (and the listen backlog); more are "
           "told so and closed."),
    Option("daemon.owner_slots", int, 4, "Of max_clients, connections kept for the daemon's own uid."),
    Option("daemon.subscriber_buffer", int, 4096, "KiB of unread events a subscriber may fall behind before it is dropped."),
    Option("daemon.log_level", str, "info", "debug, info, warning or error.",
           choices=("debug", "info", "warning", "error")),
    Option("daemon.queue_limit", int, 1000, "Most jobs waiting or running at once."),
    Option("daemon.max_attempts", int, 3, "Tries per job before a transient failure is final."),
    Option("daemon.min_free_mb", int, 200, "MiB the data directory's disk must keep free beyond a job's "
           "estimated output, or the queue pauses until there is room."),
    Option("daemon.keep_finished_days", float, 30.0, "Days finished jobs stay in the job history; older "
           "ones that no longer own a track are pruned at start and daily (0 or less: never)."),
    Option("daemon.host", str, "", "This daemon's name among the hosts sharing a PostgreSQL store (store.url): "
           "unique per daemon. Empty: the machine's host name and a hash of the data directory."),
    Option("daemon.lease_s", float, 30.0, "Seconds a host holds a job it runs on a shared store without "
           "renewing (it renews every third of it); a dead host's job runs elsewhere after this."),
    Option("store.storage", str, "", "The directory holding the library's audio, stored melodies and operation "
           "sources (paths in the library are relative to it): one every host mounts (NFS) when several "
           "share the library. Empty: the data directory. It must exist, be writable and hold no symlinked "
           "folders."),
    Option("store.url", str, "", "Where the job queue and library live: empty, SQLite in the data directory "
           "(one box); postgresql://user@host/db, PostgreSQL (docs/operations.md, in progress).",
           env="DGX_MUSIC_STORE"),
    Option("engine.model", str, "small", "small, medium, large, melody, random:small, a hub id or a directory."),
    Option("engine.separator", str, "htdemucs", "Source-separation model of `stems` (--method separate): htdemucs, "
           "htdemucs_ft, htdemucs_6s (six stems) or a demucs model directory."),
    Option("engine.backend", str, "transformers", "Model backend.", choices=("transformers", "audiocraft")),
    Option("engine.device", str, "auto", "auto, cuda, cuda:N, mps or cpu."),
    Option("engine.keep_alive", float, 600.0, "Idle seconds before the model unloads; 0 at once, -1 never."),
    Option("engine.hang_timeout", float, 120.0, "Seconds without progress before a worker is killed."),
    Option("engine.decode", str, "fast", "MusicGen decode loop: fast (static KV cache, no host syncs; compiled with "
           "CUDA graphs on CUDA), compiled (fast, torch.compile on any device) or stock (transformers' generate).",
           choices=("fast", "compiled", "stock")),
    Option("engine.sampler", str, "counter", "Sampler of the fast decode loops: counter (the same distribution as "
           "stock, drawn by the Gumbel-max trick from a counter-based hash: a few fused ops per step) "
           "or stock (transformers' own draws: exactly stock's clip for a seed).", choices=("counter", "stock")),
    Option("engine.offline", bool, False, "Never touch the network; fail if the model is not cached."),
    Option("engine.preload", bool, False, "Load the model at start instead of on the first job."),
    Option("engine.max_count", int, 16, "Most variations one job may ask for."),
    Option("engine.python", str, "", "Python for the model worker (empty: this one); the audiocraft "
           "backend runs from its own environment, e.g. .venv-audiocraft/bin/python.", env="DGX_MUSIC_WORKER_PYTHON"),
    Option("audio.target_lufs", float, -14.0, "Loudness target, LUFS integrated."),
    Option("audio.ceiling_dbtp", float, -1.0, "True-peak ceiling, dBTP."),
    Option("audio.bit_depth", int, 16, "Library WAV bit depth: 16, 24 or 32 (float).", choices=(16, 24, 32)),
    Option("http.listen", str, "127.0.0.1:8765", "HOST:PORT for the HTTP API and the listening page; off (or "
           "empty): no HTTP. If the default port is busy the daemon runs on without HTTP; a listen address "
           "you set that fails is a startup error.", env="DGX_MUSIC_HTTP"),
    Option("http.token_file", str, "", "The HTTP token file (mode 0600); empty: http-token in the config "
           "directory. The daemon writes a new random token there at start when the file does not exist."),
    Option("http.allowed_hosts", str, "", "Comma-separated host names (no port) the HTTP API answers besides "
           "loopback ones (localhost, 127.0.0.1, [::1]): a reverse proxy's or a LAN name. Others: 403."),
    Option("http.max_connections", int, 100, "HTTP connections open at once (event streams included); more "
           "are answered 503 and closed."),
    Option("http.header_timeout", float, 15.0, "Seconds an HTTP connection may take to send a request's "
           "headers, and may stay idle between requests, before it is closed."),
    Option("http.body_timeout", float, 60.0, "Seconds a client may take to send a request body."),
    Option("http.fd_reserve", int, 64, "File descriptors kept free for the Unix socket and the daemon's own "
           "files: new HTTP connections are closed at once while fewer are free."),
)
BY_KEY: dict[str, Option] = {o.key: o for o in OPTIONS}


def _coerce(opt: Option, value: Any, source: str) -> Any:
    where = f"{opt.key} (from {source})"
    if opt.type is bool:
        if isinstance(value, bool):
            out: Any = value
        elif isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            out = True
        elif isinstance(value, str) and value.lower() in ("0", "false", "no", "off", ""):
            out = False
        else:
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
    elif opt.type is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            out = int(value) if not isinstance(value, float) or value.is_integer() else None
        except (TypeError, ValueError):
            out = None
        if out is None:
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
    elif opt.type is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    else:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected text, got {type(value).__name__}")
        out = value
    if opt.choices and out not in opt.choices:
        allowed = ", ".join(str(c) for c in opt.choices)
        raise ConfigError(f"{where}: {out!r} is not one of {allowed}")
    return out


class Settings:
    """Effective settings with the source of each value (default, file, env, flag)."""

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}
        self._sources: dict[str, str] = {}
        self.config_file: Path | None = None

    def __getitem__(self, key: str) -> Any:
        if key not in self._values:
            self._values[key] = BY_KEY[key].default_value()
            self._sources[key] = "default"
        return self._values[key]

    def source(self, key: str) -> str:
        self[key]
        return self._sources[key]

    def set(self, key: str, value: Any, source: str) -> None:
        if key not in BY_KEY:
            raise ConfigError(f"unknown setting {key!r}")
        self._values[key] = _coerce(BY_KEY[key], value, source)
        self._sources[key] = source

    def items(self) -> list[tuple[str, Any, str]]:
        return [(o.key, self[o.key], self.source(o.key)) for o in OPTIONS]

    @property
    def socket(self) -> Path:
        return Path(self["daemon.socket"]).expanduser().absolute()

    @property
    def data_dir(self) -> Path:
        return Path(self["daemon.data_dir"]).expanduser().absolute()

    @property
    def storage(self) -> Path:
        """Where the audio lives (`store.storage`, else the data dir): track paths are relative to it."""
        configured = str(self["store.storage"]).strip()
        return Path(configured).expanduser().absolute() if configured else self.data_dir


def _flatten(doc: Mapping[str, Any], source: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section, body in doc.items():
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: top-level key {section!r} must be a [section] table")
        for name, value in body.items():
            key = f"{section}.{name}"
            if key not in BY_KEY:
                raise ConfigError(f"{source}: unknown setting {key!r}")
            flat[key] = value
    return flat


def load_settings(
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Build settings from every layer; a missing default config file is fine, a named one is not."""
    env = os.environ if env is None else env
    s = Settings()
    explicit = config_file or env.get("DGX_MUSIC_CONFIG")
    path = Path(explicit).expanduser() if explicit else paths.default_config_file()
    if path.exists():
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read config: {exc}") from None
        for key, value in _flatten(doc, str(path)).items():
            s.set(key, value, f"file {path}")
        s.config_file = path
    elif explicit:
        raise ConfigError(f"config file {path} does not exist")
    for opt in OPTIONS:
        if opt.env_name in env:
            s.set(opt.key, env[opt.env_name], f"env {opt.env_name}")
    for key, value in (overrides or {}).items():
        if value is not None:
            s.set(key, value, "flag")
    return s


def render_default_toml() -> str:
    """A documented config file with every option commented out at its default."""
    lines = ["# DGX Music configuration. Every option, at its default.", ""]
    section = ""
    for opt in OPTIONS:
        sec, name = opt.key.split(".", 1)
        if sec != section:
            lines += ([""] if section else []) + [f"[{sec}]"]
            section = sec
        value = opt.default_value()
        rendered = (
            ("true" if value else "false") if isinstance(value, bool)
            else repr(value).replace("'", '"') if isinstance(value, str) else str(value)
        )
        lines.append(f"# {opt.help} (env {opt.env_name})")
        lines.append(f"# {name} = {rendered}")
    return "\n".join(lines) + "\n"
