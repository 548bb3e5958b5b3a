"""systemd socket activation: take over listening sockets passed as fds 3, 4, ...

systemd (or any supervisor speaking the same convention) sets LISTEN_PID to our
pid and LISTEN_FDS to the number of sockets; LISTEN_FDNAMES optionally names
them (`FileDescriptorName=` in the .socket unit). The variables are removed from
the environment once read, so the model worker and other children never think
the sockets are theirs.
"""

from __future__ import annotations

import os
import socket
import stat
from typing import MutableMapping

SD_LISTEN_FDS_START = 3


class ActivationError(RuntimeError):
    """systemd handed over sockets we cannot use (wrong count, type or owner)."""


def listen_fds(env: MutableMapping[str, str] | None = None, unset: bool = True) -> list[tuple[str, socket.socket]]:
    """(name, socket) for each inherited fd; empty when we were not socket-activated."""
    env = os.environ if env is None else env
    pid, count = env.get("LISTEN_PID", ""), env.get("LISTEN_FDS", "")
    names = env.get("LISTEN_FDNAMES", "")
    if unset:
        for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            env.pop(key, None)
    if not pid or not count:
        return []
    if not pid.isdigit() or int(pid) != os.getpid():
        return []  # meant for another process (e.g. a wrapper that did not exec us)
    if not count.isdigit():
        raise ActivationError(f"LISTEN_FDS={count!r} is not a number")
    n = int(count)
    labels = names.split(":") if names else []
    out: list[tuple[str, socket.socket]] = []
    for i in range(n):
        fd = SD_LISTEN_FDS_START + i
        try:
            st = os.fstat(fd)
        except OSError as exc:
            raise ActivationError(f"LISTEN_FDS={n} but fd {fd} is not open: {exc}") from None
        if not stat.S_ISSOCK(st.st_mode):
            raise ActivationError(f"inherited fd {fd} is not a socket")
        os.set_inheritable(fd, False)
        sock = socket.socket(fileno=fd)
        out.append((labels[i] if i < len(labels) else "", sock))
    return out


def inherited_socket(env: MutableMapping[str, str] | None = None) -> socket.socket | None:
    """The listening Unix stream socket systemd handed us for the protocol, or None.

    With several sockets, the one named `daemon` (FileDescriptorName=daemon), else
    the first Unix stream socket, is ours; the rest are closed.
    """
    found = listen_fds(env)
    chosen: socket.socket | None = None
    unix = [(name, s) for name, s in found if s.family == socket.AF_UNIX and s.type == socket.SOCK_STREAM]
    for name, s in unix:
        if name == "daemon":
            chosen = s
            break
    if chosen is None and unix:
        chosen = unix[0][1]
    if found and chosen is None:
        kinds = ", ".join(f"{s.family.name}/{s.type.name}" for _, s in found)
        for _, s in found:
            s.close()
        raise ActivationError(f"socket activation passed no Unix stream socket (got {kinds}); "
                              "the .socket unit needs ListenStream=/path/to/daemon.sock")
    for _, s in found:
        if s is not chosen:
            s.close()
    if chosen is not None:
        if not chosen.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            chosen.listen(256)
        chosen.setblocking(False)
    return chosen
