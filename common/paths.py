"""Where things live: socket, data, config and cache directories (platformdirs)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

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
