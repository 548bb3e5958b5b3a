"""Start a process in a network namespace of its own, for the hosts tests and the chaos hosts scenario.

Hosts (issue 21) may talk to each other only through the database and the shared storage: both
are filesystem paths here (PostgreSQL's Unix socket, the storage directory), which work across
network namespaces, while nothing else does. A daemon started through `command()` gets a fresh
network namespace with only `lo` (brought up, so its HTTP listener can bind 127.0.0.1): a host
that reached another over the network would fail there. The namespace is made in a small
trampoline that then execs the command, so the Popen's pid is the daemon's (kill -9 hits it).

Root (as in CI) gets a plain network namespace; elsewhere a user namespace that maps the user to
itself comes with it (uids are unchanged either way: the daemon's peer-uid check still passes).
`reason()` probes once and says why namespaces cannot be used here (None: they can); callers
then run in the shared namespace and print the reason.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import warnings
from pathlib import Path

#: unshare(2) (or setns(2) into $NETNS_ENTER, a /proc/PID/ns/net), bring up lo, exec argv[1:].
#: ioctl rather than `ip link set lo up`: iproute2 is not on every machine; no imports beyond the stdlib.
TRAMPOLINE = r"""
import ctypes, errno, fcntl, os, socket, struct, sys
NEWNET, NEWUSER = 0x40000000, 0x10000000
libc = ctypes.CDLL(None, use_errno=True)
enter = os.environ.pop("NETNS_ENTER", "")
if enter:
    fd = os.open(enter, os.O_RDONLY)
    if libc.setns(fd, NEWNET) != 0:
        sys.exit(f"netns: setns {enter}: {os.strerror(ctypes.get_errno())}")
    os.close(fd)
else:
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(NEWNET) != 0:
        err = ctypes.get_errno()
        if err != errno.EPERM or libc.unshare(NEWUSER | NEWNET) != 0:
            sys.exit(f"netns: unshare: {os.strerror(ctypes.get_errno() or err)}")
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    flags = struct.unpack("16sH14x", fcntl.ioctl(s, 0x8913, struct.pack("16sH14x", b"lo", 0)))[1]
    fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", flags | 1))  # SIOCSIFFLAGS |= IFF_UP
    s.close()
os.execvp(sys.argv[1], sys.argv[1:])
"""

#: Inside a namespace: it differs from the caller's, and 127.0.0.1 works there.
_PROBE = ("import os, socket, sys\ns = socket.create_server(('127.0.0.1', 0))\n"
          "socket.create_connection(s.getsockname(), timeout=2).close()\n"
          "print(os.readlink('/proc/self/ns/net'))")


def command(argv: list[str]) -> list[str]:
    """`argv`, run in a new network namespace."""
    return [sys.executable, "-I", "-S", "-c", TRAMPOLINE, *argv]


def enter(pid: int, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run `argv` inside the network namespace of process `pid` (to look at it from within)."""
    env = {**os.environ, "NETNS_ENTER": f"/proc/{pid}/ns/net"}
    return subprocess.run(command(argv), env=env, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]


def of(pid: int | str = "self") -> str:
    """The network namespace of a process, e.g. 'net:[4026531840]'."""
    return os.readlink(f"/proc/{pid}/ns/net")


@functools.lru_cache(maxsize=1)
def reason() -> str | None:
    """Why a process cannot get a network namespace of its own here; None when it can."""
    if os.environ.get("DGX_MUSIC_TEST_NETNS", "1") == "0":
        return "DGX_MUSIC_TEST_NETNS=0"
    if not Path("/proc/self/ns/net").exists():
        return "no /proc/self/ns/net (not Linux)"
    try:
        out = subprocess.run(command([sys.executable, "-I", "-S", "-c", _PROBE]), capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"probe failed: {exc}"
    if out.returncode != 0:
        return (out.stderr.strip().splitlines() or [f"probe exited {out.returncode}"])[-1]
    if out.stdout.strip() == of():
        return "the probe stayed in this network namespace"
    return None


def wrap(argv: list[str]) -> list[str]:
    """`argv` in a network namespace of its own where the machine allows it; else `argv` as it is,
    with a warning that says why (the hosts then share this namespace, as before issue 21's check)."""
    why = reason()
    if why is None:
        return command(argv)
    warnings.warn(f"hosts share the test's network namespace: {why}", stacklevel=2)
    return argv
