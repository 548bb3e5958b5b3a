"""The HTTP API's listen and token policy, checked before anything starts.

On by default at 127.0.0.1:8765; `http.listen = "off"` (or `dgx-music daemon --http off`) turns
it off. Every request needs the token, loopback included: another local user of a shared box, or
a web page the user visits, must not reach the API. The token lives in a file only its owner can
read (mode 0600; common/paths.http_token_path); the daemon writes a random one at its first
start, so `dgx-music web` and scripts find it in the same place.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import stat
from dataclasses import dataclass, field
from pathlib import Path

from dgx_music.common.config import Settings
from dgx_music.common.paths import http_token_path
from dgx_music.daemon.server import StartupError

MIN_TOKEN_CHARS = 16
#: Values of http.listen that turn HTTP off.
OFF = ("", "off", "none", "no", "false", "0")


@dataclass(frozen=True)
class HttpPlan:
    host: str
    port: int
    token: str | None
    #: Host names (lower case, no port) answered besides the loopback ones.
    allowed_hosts: frozenset[str] = frozenset()
    #: False when http.listen is the default: a busy port then only costs the HTTP API, not the daemon.
    explicit: bool = True
    max_connections: int = 100
    header_timeout: float = 15.0
    body_timeout: float = 60.0
    fd_reserve: int = 64
    token_path: Path | None = field(default=None, compare=False)


def parse_listen(value: str) -> tuple[str, int]:
    """"HOST:PORT" or "[v6]:PORT" -> (host, port)."""
    text = value.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise StartupError(f"http.listen {value!r}: write an IPv6 address as [addr]:PORT")
        port_s = rest[1:]
    else:
        host, sep, port_s = text.rpartition(":")
        if not sep:
            raise StartupError(f"http.listen {value!r}: expected HOST:PORT, e.g. 127.0.0.1:8765")
    if not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise StartupError(f"http.listen {value!r}: {port_s!r} is not a port number")
    return host, int(port_s)


def is_loopback(host: str) -> bool:
    """True only if every address `host` stands for is a loopback address."""
    if not host:
        return False  # "" binds every interface
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    addrs = {info[4][0] for info in infos}
    return bool(addrs) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs)


def read_token(path_text: str) -> str:
    """The bearer token from a file only its owner may read; refuses anything else, naming the problem."""
    path = Path(path_text).expanduser()
    try:
        st = os.stat(path)
    except OSError as exc:
        raise StartupError(f"http.token_file {path}: cannot read it: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise StartupError(f"http.token_file {path} is not a regular file")
    if st.st_mode & 0o077:
        raise StartupError(
            f"http.token_file {path} has mode {stat.S_IMODE(st.st_mode):04o}; other users could read the token. "
            f"Run `chmod 600 {path}`")
    if st.st_uid != os.getuid():
        raise StartupError(f"http.token_file {path} is owned by uid {st.st_uid}, not by the daemon's uid {os.getuid()}")
    token = path.read_text(encoding="utf-8", errors="strict").strip()
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise StartupError(f"http.token_file {path}: the token must be one word of at least {MIN_TOKEN_CHARS} "
                           "characters (e.g. `openssl rand -hex 32`)")
    return token


def ensure_token(path: Path) -> str:
    """The token in `path`; when there is no such file, a new random one written there first.

    Written owner-only (0600, in a 0700 directory when it makes one) and atomically: a temporary
    file linked into place, so a reader never sees half a token and two daemons starting at once
    end up with the same one (the second reads what the first wrote).
    """
    path = path.expanduser()
    if not os.path.lexists(path):
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(secrets.token_urlsafe(32) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                try:
                    os.link(tmp, path)  # never replaces a token another daemon just wrote
                except FileExistsError:
                    pass
            finally:
                tmp.unlink(missing_ok=True)
        except OSError as exc:
            raise StartupError(f"cannot write the HTTP token file {path}: {exc.strerror or exc} (set "
                               "http.token_file to a writable place, or turn HTTP off with --http off)") from None
    return read_token(str(path))


def _allowed_hosts(value: str) -> frozenset[str]:
    names = set()
    for item in value.split(","):
        name = item.strip().lower()
        if not name:
            continue
        if "/" in name or name.count(":") == 1 or any(c.isspace() for c in name):
            raise StartupError(f"http.allowed_hosts: {item.strip()!r} is not a host name (write names without "
                               "scheme or port, separated by commas)")
        names.add(name if not (":" in name and not name.startswith("[")) else f"[{name}]")
    return frozenset(names)


def plan(settings: Settings) -> HttpPlan | None:
    """Check the HTTP settings and make the token before anything starts; None when the API is off."""
    listen = settings["http.listen"].strip()
    if listen.lower() in OFF:
        return None
    host, port = parse_listen(listen)
    for key in ("http.max_connections", "http.fd_reserve"):
        if settings[key] < 1:
            raise StartupError(f"{key} must be at least 1, got {settings[key]}")
    for key in ("http.header_timeout", "http.body_timeout"):
        if not settings[key] > 0:
            raise StartupError(f"{key} must be more than 0 seconds, got {settings[key]}")
    path = http_token_path(settings)
    return HttpPlan(host, port, ensure_token(path), allowed_hosts=_allowed_hosts(settings["http.allowed_hosts"]),
                    explicit=settings.source("http.listen") != "default",
                    max_connections=settings["http.max_connections"],
                    header_timeout=settings["http.header_timeout"], body_timeout=settings["http.body_timeout"],
                    fd_reserve=settings["http.fd_reserve"], token_path=path)
