"""Where things live: socket, data, config and cache directories (platformdirs)."""

from __future__ import annotations

import os
import re
import socket
import stat
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dgx_music.common.config import Settings

import platformdirs

APP = "dgx-music"


def runtime_dir() -> Path:
    """The per-user directory holding the socket.

    $XDG_RUNTIME_DIR is per-user and mode 0700 by design; without it we fall back
    to /tmp/dgx-music-<uid>, which `ensure_private_dir` creates and verifies.
    """
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / APP
    return Path("/tmp") / f"{APP}-{os.getuid()}"


def default_socket() -> Path:
    return runtime_dir() / "daemon.sock"


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP, appauthor=False))


def default_config_file() -> Path:
    return Path(platformdirs.user_config_dir(APP, appauthor=False)) / "config.toml"


def default_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir(APP, appauthor=False))


def default_http_token_file() -> Path:
    return Path(platformdirs.user_config_dir(APP, appauthor=False)) / "http-token"


def http_token_path(settings: "Settings") -> Path:
    """The HTTP API's token file: `http.token_file`, else http-token in the config directory.

    The daemon writes it (mode 0600) at its first start with HTTP on; `dgx-music web` and
    scripts read the same file, so both sides must resolve it here.
    """
    configured = str(settings["http.token_file"]).strip()
    return Path(configured).expanduser() if configured else default_http_token_file()


def host_tag() -> str:
    """This host's name as it goes into temporary file names (letters, digits, '-')."""
    return re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname()).strip("-")[:63] or "host"


#: ``.<stem>.dgxtmp-<host>-<pid>-<random>.tmp``: whose temporary file it is, so a host sharing the
#: storage directory sweeps only its own (daemon/libfiles.py, `sweep_stale_temp`).
TEMP_RE = re.compile(r"\.dgxtmp-(?P<host>[A-Za-z0-9-]+)-(?P<pid>[0-9]+)-[a-z0-9_]+\.tmp$")


def temp_prefix(stem: str) -> str:
    """The prefix of a temporary file written next to its destination (mkstemp adds the random
    part and ``.tmp``): it names this host and process, which TEMP_RE reads back."""
    return f".{stem[:40]}.dgxtmp-{host_tag()}-{os.getpid()}-"


class UnsafeDirectory(RuntimeError):
    """A directory we would trust (the socket's) is not ours alone."""


def ensure_private_dir(path: Path, mode: int = 0o700) -> Path:
    """Create `path` owner-only, refusing one that another user owns or a symlink.

    A world-writable /tmp fallback is only safe if nobody else could have made
    the directory first, so ownership and type are checked after creation.
    """
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectory(f"{path} is not a plain directory")
    if st.st_uid != os.getuid():
        raise UnsafeDirectory(f"{path} is owned by uid {st.st_uid}, not by you (uid {os.getuid()})")
    return path


class OutsideRoot(ValueError):
    """A stored relative path that would leave its root directory (a tampered database or
    backup): absolute, with '..', or through a symlink that leads out."""


def resolve_under(root: str | os.PathLike[str], rel: str | os.PathLike[str]) -> Path:
    """The real path of ``rel`` inside ``root``, or OutsideRoot saying why it is refused.

    Track rows hold paths relative to the data directory; anything that reads, streams,
    exports or deletes a track's file goes through here, so a tampered row cannot make
    the daemon or a client touch a file elsewhere.  Refused: an empty path, an absolute
    one (or a Windows drive), a NUL, any '..' component, and a path that resolves outside
    ``root`` or onto ``root`` itself (symlinks followed, so one leading out is caught).
    Symlinks that stay inside ``root`` are fine; the file need not exist.
    """
    raw = os.fspath(rel) if isinstance(rel, (str, os.PathLike)) else None
    if not isinstance(raw, str) or not raw or "\x00" in raw:
        raise OutsideRoot(f"stored path {rel!r} is not inside {root}: not a relative path")
    base = Path(root).resolve()

    def refuse(why: str) -> OutsideRoot:
        return OutsideRoot(f"stored path {raw!r} is not inside {base}: {why}")

    lexical = PurePosixPath(raw.replace("\\", "/"))
    if lexical.is_absolute() or re.match(r"^[A-Za-z]:", raw):
        raise refuse("it is an absolute path")
    if ".." in lexical.parts:
        raise refuse("it contains '..'")
    try:
        path = (base / lexical).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise refuse(f"it cannot be resolved ({exc})") from None
    if base not in path.parents:
        raise refuse("it resolves outside, through a symlink" if path != base else "it names the directory itself")
    return path
