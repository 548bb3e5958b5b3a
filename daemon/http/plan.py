"""The HTTP API's listen and token policy, checked before anything starts.

Off by default; `http.listen = "127.0.0.1:8765"` (or `dgx-music daemon --http ...`) turns it on.
On a loopback address the API may run without a token; bound to any other address the daemon
refuses to start unless `http.token_file` names a file that only its owner can read (mode 0600).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from dgx_music.common.config import Settings
from dgx_music.daemon.server import StartupError

MIN_TOKEN_CHARS = 16


@dataclass(frozen=True)
class HttpPlan:
    host: str
    port: int
    token: str | None


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


def plan(settings: Settings) -> HttpPlan | None:
    """Check the HTTP settings before anything starts; None when the API is off."""
    listen = settings["http.listen"].strip()
    if not listen:
        return None
    host, port = parse_listen(listen)
    token_file = settings["http.token_file"].strip()
    token = read_token(token_file) if token_file else None
    if token is None and not is_loopback(host):
        raise StartupError(
            f"http.listen {listen!r} is not a loopback address, and no http.token_file is set: refusing to serve "
            "the API unauthenticated. Create a token file (mode 0600) and set http.token_file, or listen on "
            "127.0.0.1")
    return HttpPlan(host, port, token)
