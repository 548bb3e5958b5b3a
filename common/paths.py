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


def resolve_under(root: str | Path, rel: str | Path) -> Path:
    """`root/rel` resolved (symlinks followed), refusing anything that lands outside `root`.

    For paths read from the database or a peer (a track's `path`): a tampered row holding an
    absolute path, `..` components or a symlink out of the data directory must never make a
    reader touch another file. Lexical for the parts that do not exist (a client checking a
    path on another machine). Raises ValueError naming the path and the root.
    """
    rel_s = str(rel)
    if not rel_s or "\x00" in rel_s:
        raise ValueError(f"stored path {rel_s!r} is empty or contains a NUL byte")
    base = Path(root).resolve()
    target = (base / rel_s).resolve()
    if target == base or not target.is_relative_to(base):
        raise ValueError(f"stored path {rel_s!r} is not inside {base}")
    return target
