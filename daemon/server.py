"""The Unix-socket server: owner-only socket, peer-uid check, bounded reads and writes.

One reader loop per connection decodes frames and starts one task per request,
so a slow request never holds up a quick one on the same connection. Writes go
straight to the transport; its buffer size is the backpressure signal, which
lets a subscriber that stops reading be dropped instead of stalling the daemon.
"""

from __future__ import annotations

import asyncio
import errno
import grp
import logging
import os
import pwd
import socket
import stat
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dgx_music.common import protocol
from dgx_music.common.paths import UnsafeDirectory, ensure_private_dir, runtime_dir
from dgx_music.common.peer import peer_credentials, private_dir_problem
from dgx_music.daemon import handlers
from dgx_music.daemon.handlers import Context, HandlerError

if TYPE_CHECKING:
    from dgx_music.daemon.app import Daemon

log = logging.getLogger(__name__)

#: Requests one connection may have in flight; beyond it the reader waits (backpressure).
MAX_IN_FLIGHT = 64
#: Buffered outgoing bytes at which a response write waits for the client to read.
WRITE_HIGH_WATER = 1 * 1024 * 1024
WRITE_TIMEOUT = 30.0
#: How long a refused connection is drained (its input dropped) so that the peer can read why.
LINGER_SECONDS = 1.0


#: Methods whose answer is written before any event they cause (docs/protocol.md, "Order of answers
#: and events"): quick state changes, so a client that subscribed first sees `job.submit`'s answer
#: (the job id) before `job.queued` for it. Long methods (model.load) stream their events meanwhile.
ANSWER_FIRST = frozenset({"job.submit", "job.cancel", "job.retry", "job.move", "job.prune", "track.update",
                          "track.delete", "library.empty_trash"})


@dataclass(eq=False)
class _Pending:
    """A request in ANSWER_FIRST whose answer is not written yet; events it causes wait for it."""

    conn: "Connection"
    answered: bool = False


#: The request whose handler is running in this task (and in tasks it starts), if it is ANSWER_FIRST.
_CURRENT: ContextVar[_Pending | None] = ContextVar("dgx_music_current_request", default=None)


class StartupError(RuntimeError):
    """The daemon cannot start; the message says why and what to do."""


@dataclass(frozen=True)
class PeerPolicy:
    """Who may connect: the daemon's own uid, root, and members of an optional group."""

    uid: int
    group_gid: int | None = None
    group_members: frozenset[str] = frozenset()

    @classmethod
    def for_group(cls, group: str) -> "PeerPolicy":
        if not group:
            return cls(os.getuid())
        try:
            g = grp.getgrnam(group)
        except KeyError:
            raise StartupError(f"socket_group {group!r} does not exist") from None
        return cls(os.getuid(), g.gr_gid, frozenset(g.gr_mem))

    def needs_lookup(self, uid: int, gid: int) -> bool:
        """Whether deciding needs the user database (NSS: files, LDAP...), which may block."""
        return uid not in (self.uid, 0) and self.group_gid is not None and gid != self.group_gid

    def allows(self, uid: int, gid: int) -> bool:
        if uid in (self.uid, 0):
            return True
        if self.group_gid is None:
            return False
        if gid == self.group_gid:
            return True
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            return False
        return name in self.group_members


class Connection:
    """One client. Implements the event hub's Subscriber protocol."""

    _next_id = 0

    def __init__(self, server: "Server", reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        Connection._next_id += 1
        self.id = Connection._next_id
        self.server = server
        self.reader = reader
        self.writer = writer
        self.transport = writer.transport
        self.topics: set[str] = set()
        self.closed = False
        self.client_name = ""
        self.pid = self.uid = -1
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._eof = False  # our side is shut for writing: hanging up
        # Events held back until the answers of ANSWER_FIRST requests that caused them are written;
        # while any are held, later events queue behind them, so events never overtake each other.
        self._held: list[bytes] = []
        self._holding: set[_Pending] = set()

    # -- writing -------------------------------------------------------
    def _write(self, frame: bytes) -> None:
        if not self.closed and not self._eof and not self.transport.is_closing():
            self.transport.write(frame)

    async def send(self, msg: dict[str, Any]) -> None:
        try:
            frame = protocol.pack(msg)
        except (TypeError, ValueError, OverflowError) as exc:
            log.error("cannot encode answer %r: %s", msg.get("id"), exc)
            frame = protocol.pack(protocol.error(msg.get("id"), protocol.INTERNAL, "answer could not be encoded"))
        if len(frame) - protocol.HEADER.size > self.server.max_frame:
            frame = protocol.pack(protocol.error(msg.get("id"), protocol.FRAME_TOO_LARGE,
                                                 "the answer is over the frame limit; ask for less"))
        self._write(frame)
        if self.transport.get_write_buffer_size() > WRITE_HIGH_WATER:
            try:
                await asyncio.wait_for(self.writer.drain(), WRITE_TIMEOUT)
            except (asyncio.TimeoutError, ConnectionError):
                log.warning("client %d stopped reading answers; closing it", self.id)
                self.close()

    def push(self, frame: bytes) -> None:
        """Queue an event; a subscriber whose buffer is full is told why and dropped.

        An event caused by one of this connection's ANSWER_FIRST requests still being answered waits
        for that answer (as do events after it, to keep their order)."""
        if self.closed:
            return
        pending = _CURRENT.get()
        if pending is not None and pending.conn is self and not pending.answered:
            self._holding.add(pending)
        if self._holding:
            self._held.append(frame)
            if sum(map(len, self._held)) > self.server.subscriber_buffer:
                self._holding.clear()
                self._held.clear()
                self._overflow()
            return
        self._push_now(frame)

    def _release(self, pending: _Pending) -> None:
        """The answer of `pending` is written: send the events that waited for it."""
        pending.answered = True
        self._holding.discard(pending)
        if not self._holding and self._held:
            held, self._held = self._held, []
            for frame in held:
                self._push_now(frame)

    def _overflow(self) -> None:
        log.warning("client %d fell behind on events (buffer full); dropping it", self.id)
        self._write(protocol.pack(protocol.event(
            "daemon.dropped", {"reason": "event buffer overflow: the client did not read fast enough"})))
        self.close()

    def _push_now(self, frame: bytes) -> None:
        if self.closed:
            return
        if self.transport.get_write_buffer_size() + len(frame) > self.server.subscriber_buffer:
            self._overflow()
            return
        self._write(frame)

    async def refuse(self, code: str, message: str) -> None:
        """Say why, then hang up. Whatever the peer already sent is read and dropped first: closing
        a Unix socket with unread data makes the peer's read fail (ECONNRESET) before it sees why."""
        await self.send(protocol.error(None, code, message))
        self.server.lingering.add(self)  # the server's close() ends the wait early
        self.server.connections.discard(self)
        self.server.daemon.events.remove(self)
        try:
            if self.writer.can_write_eof():
                self._eof = True
                self.writer.write_eof()
            await asyncio.wait_for(self._discard_input(), LINGER_SECONDS)
        except (asyncio.TimeoutError, ConnectionError, OSError):
            pass
        finally:
            self.server.lingering.discard(self)
            self.close()

    async def _discard_input(self) -> None:
        while await self.reader.read(65536):
            pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.server.daemon.events.remove(self)
        self.server.connections.discard(self)
        try:
            self.transport.close()
            # close() flushes first; a peer that never reads would keep it open forever.
            asyncio.get_running_loop().call_later(5.0, self.transport.abort)
        except Exception:  # closing a dead transport can raise on some loops
            pass

    # -- reading -------------------------------------------------------
    def may_idle(self) -> bool:
        """A subscriber waits for events and a client with requests in flight waits for answers:
        both may stay quiet. Anyone else must complete a frame every `idle_timeout` seconds,
        or a handful of silent connections could hold every slot."""
        return bool(self.topics) or bool(self._tasks)

    async def _next_frame(self) -> dict[str, Any] | None:
        while True:
            try:
                return await protocol.read_frame(
                    self.reader, max_frame=self.server.max_frame, timeout=self.server.idle_timeout,
                    body_timeout=self.server.read_timeout)
            except asyncio.TimeoutError:
                # Only the wait for a header times out here; bytes already read stay buffered.
                if self.may_idle():
                    continue
                raise protocol.ProtocolError(
                    protocol.IDLE_TIMEOUT,
                    f"no complete request within {self.server.idle_timeout:g} s of connecting or of the last "
                    "one; closing (subscribe to wait for events)") from None

    async def serve(self) -> None:
        try:
            while not self.closed:
                try:
                    msg = await self._next_frame()
                except protocol.ProtocolError as exc:
                    # The stream can no longer be trusted: say why, then hang up.
                    await self.refuse(exc.code, exc.message)
                    break
                if msg is None:
                    break
                await self._slots.acquire()
                task = asyncio.create_task(self._handle(msg))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            for task in list(self._tasks):
                if not task.done() and self.closed:
                    task.cancel()
            self.close()

    async def _handle(self, msg: dict[str, Any]) -> None:
        pending: _Pending | None = None
        try:
            req_id = msg.get("id")
            name = msg.get("method")
            if not isinstance(name, str) or "params" in msg and not isinstance(msg["params"], dict):
                await self.send(protocol.error(
                    req_id, protocol.BAD_REQUEST,
                    "a request is a map with 'id', 'method' (text) and 'params' (a map)"))
                return
            if name in ANSWER_FIRST:
                pending = _Pending(self)
                _CURRENT.set(pending)  # this task's context only (and tasks the handler starts)
            try:
                value = await handlers.dispatch(Context(self.server.daemon, self), name, msg.get("params") or {})
                await self.send(protocol.result(req_id, value))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                mapped = handlers.map_error(exc)
                if mapped is None:
                    log.exception("method %s failed", name)
                    mapped = HandlerError(protocol.INTERNAL, f"internal error in {name}: {exc}")
                await self.send(protocol.error(req_id, mapped.code, mapped.message, **mapped.data))
        finally:
            if pending is not None:
                self._release(pending)
            self._slots.release()


class Server:
    def __init__(self, daemon: "Daemon") -> None:
        self.daemon = daemon
        s = daemon.settings
        self.path = s.socket
        self.max_frame = int(s["daemon.max_frame"])
        self.read_timeout = float(s["daemon.read_timeout"])
        self.max_clients = int(s["daemon.max_clients"])
        self.idle_timeout = float(s["daemon.idle_timeout"])
        # Slots only the daemon's own uid may take, so other users cannot lock its owner out.
        self.owner_slots = min(int(s["daemon.owner_slots"]), self.max_clients)
        self.subscriber_buffer = int(s["daemon.subscriber_buffer"]) * 1024
        self.mode = int(s["daemon.socket_mode"], 8)
        self.group = s["daemon.socket_group"]
        self.policy = PeerPolicy.for_group(self.group)
        self.connections: set[Connection] = set()
        self.lingering: set[Connection] = set()  # refused, draining before the hang-up
        self._server: asyncio.AbstractServer | None = None
        self._owns_path = False
        self._claimed = False

    async def start(self, inherited: socket.socket | None = None) -> None:
        """Listen on the configured path, or on a socket handed over by systemd."""
        if inherited is not None:
            self._server = await asyncio.start_unix_server(self._accept, sock=inherited, limit=2**16,
                                                           backlog=self.max_clients)
            log.info("listening on inherited socket %s", inherited.getsockname())
            return
        if not self._claimed:
            await self.claim_path()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # no window in which the socket exists with looser permissions
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        self._owns_path = True
        os.chmod(self.path, self.mode)
        if self.group:
            os.chown(self.path, -1, self.policy.group_gid or -1)
        # asyncio calls listen() again with its own default of 100 unless told the backlog.
        self._server = await asyncio.start_unix_server(self._accept, sock=sock, limit=2**16,
                                                       backlog=self.max_clients)
        log.info("listening on %s (mode %o)", self.path, self.mode)

    async def claim_path(self) -> None:
        """Check the socket's directory and clear a stale socket; refuse a live daemon's."""
        self._claimed = True
        if self.path.parent == runtime_dir():
            # The default place must be ours alone: another user who made it first would get the prompts.
            try:
                ensure_private_dir(self.path.parent)
            except (UnsafeDirectory, OSError) as exc:
                raise StartupError(f"unsafe socket directory: {exc}; remove it or set XDG_RUNTIME_DIR") from None
            problem = private_dir_problem(self.path.parent)
            if problem:
                raise StartupError(f"unsafe socket directory: {problem}; remove it or set XDG_RUNTIME_DIR")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise StartupError(f"{self.path} exists and is not a socket; move it away or choose another --socket")
        try:
            _r, w = await asyncio.wait_for(asyncio.open_unix_connection(str(self.path)), 2.0)
        except (ConnectionRefusedError, FileNotFoundError, asyncio.TimeoutError):
            log.info("removing stale socket %s left by an earlier run", self.path)
            self.path.unlink(missing_ok=True)
            return
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                self.path.unlink(missing_ok=True)
                return
            raise StartupError(f"cannot check existing socket {self.path}: {exc}") from None
        w.close()
        raise StartupError(
            f"another dgx-music daemon is already listening on {self.path}; "
            "stop it first (systemctl --user stop dgx-music) or pass another --socket")

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(self, reader, writer)
        sock = writer.get_extra_info("socket")
        try:
            conn.pid, conn.uid, gid = peer_credentials(sock)
        except OSError:
            conn.uid, gid = -1, -1
        if not await self._admits(conn.uid, gid):
            log.warning("refused connection from uid %d (pid %d)", conn.uid, conn.pid)
            await conn.refuse(protocol.FORBIDDEN, f"uid {conn.uid} may not use this daemon (owner uid {self.policy.uid})")
            return
        limit = self.max_clients if conn.uid == self.policy.uid else self.max_clients - self.owner_slots
        if len(self.connections) >= limit:
            log.warning("refused a connection from uid %d: %d clients already connected", conn.uid,
                        len(self.connections))
            await conn.refuse(protocol.TOO_MANY_CLIENTS, f"the daemon already serves {len(self.connections)} clients "
                              f"(daemon.max_clients {self.max_clients}, of which {self.owner_slots} kept for its owner)")
            return
        if self.daemon.stopping:
            await conn.refuse(protocol.SHUTTING_DOWN, "the daemon is shutting down")
            return
        self.connections.add(conn)
        try:
            await conn.serve()
        finally:
            self.connections.discard(conn)

    async def _admits(self, uid: int, gid: int) -> bool:
        """The peer policy, with any user-database lookup off the event loop."""
        if self.policy.needs_lookup(uid, gid):
            return await asyncio.get_running_loop().run_in_executor(None, self.policy.allows, uid, gid)
        return self.policy.allows(uid, gid)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.push(protocol.pack(protocol.event("daemon.shutdown", {"reason": "daemon stopping"})))
            conn.close()
        for conn in list(self.lingering):
            conn.transport.abort()  # its reader sees the end at once
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            except asyncio.TimeoutError:
                pass
        if self._owns_path:
            self.path.unlink(missing_ok=True)
