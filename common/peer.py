"""Trust checks on the socket: who owns its directory, and who is on the other end.

With $XDG_RUNTIME_DIR unset the socket lives in /tmp/dgx-music-<uid>, a name any
local user could create first. Both sides therefore check the directory before
using it, and the client checks the daemon's uid (SO_PEERCRED) before it sends a
single byte, so a stranger's listener never receives a prompt.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
from pathlib import Path


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process on the other end, from the kernel (SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)


def private_dir_problem(path: Path) -> str | None:
    """Why `path` is not a directory that only this user controls; None when it is (or is absent).

    Refused: a symlink, anything but a directory, another owner, group or other write bits.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return f"{path} is a symbolic link, not a plain directory"
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory"
    if st.st_uid != os.getuid():
        return f"{path} is owned by uid {st.st_uid}, not by you (uid {os.getuid()})"
    if st.st_mode & 0o022:
        return f"{path} has mode {stat.S_IMODE(st.st_mode):04o}: other users may write to it"
    return None


def trusted_daemon_uids(socket_path: Path, default_dir: Path) -> set[int]:
    """The uids a daemon listening on `socket_path` may have: ours and root; for a socket outside
    the default directory (a shared daemon, named with --socket, e.g. /run/dgx-music), also the
    owners of the socket file and of its directory: whoever set that place up runs the daemon."""
    uids = {os.getuid(), 0}
    if socket_path.parent == default_dir:
        return uids
    try:
        parent = os.stat(socket_path.parent)
        uids.add(parent.st_uid)
        if not parent.st_mode & 0o002:  # in a world-writable directory anyone could have made the socket
            uids.add(os.stat(socket_path).st_uid)
    except OSError:
        pass
    return uids
