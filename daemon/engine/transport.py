"""WorkerTransport: one model worker process and the request/reply traffic with it.

This is the mechanism only: spawn the process, write frames, give every request
an id, match each reply to its request by that id, read stderr for crash
reasons, stop or kill the process. Policy (which model, keep-alive, restarts,
OOM halving) lives in supervisor.py.

Why ids: a request whose caller gave up (its task was cancelled) is still being
worked on in the worker. Without ids its late reply would be taken as the answer
to the next request; with them it is recognised and dropped, and the worker is
told to stop working on it. See worker_main.py for the frames.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import signal
import time
from typing import Any, Callable

from dgx_music.common import protocol
from dgx_music.daemon.engine.errors import EngineError

__all__ = ["WORKER_MAX_FRAME", "WorkerSilent", "WorkerTransport", "exit_reason"]

log = logging.getLogger("dgx_music.engine")
worker_log = logging.getLogger("dgx_music.engine.worker")

#: Pipes carry audio both ways (a job makes at most 480 s; ~60 MB of float32 stereo), so the cap is generous
#: but finite: a corrupt length must not make either side allocate gigabytes.
WORKER_MAX_FRAME = 512 * 1024 * 1024
#: Reply types that end a request; "loading", "progress" and "audio" (streamed chunks) are interim frames.
FINAL = frozenset({"loaded", "result", "stats", "error"})
INTERIM = frozenset({"loading", "progress", "audio"})

FrameCb = Callable[[dict[str, Any]], None]
#: on_exit(transport, returncode, reason, expected) -> the reason to fail pending requests with.
ExitCb = Callable[["WorkerTransport", int, str, bool], str]


class WorkerSilent(EngineError):
    """No frame at all from the worker for the idle limit; the worker itself never sends this."""

    def __init__(self, idle_limit: float) -> None:
        super().__init__("hung", f"no progress for {idle_limit:g} s")
        self.idle_limit = idle_limit


def exit_reason(rc: int | None) -> str:
    """A returncode in words: 'worker was killed by SIGKILL (signal 9)'."""
    if rc is None:
        return "worker stopped"
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return f"worker was killed by {name} (signal {-rc})"
    return f"worker exited with code {rc}"


class _Pending:
    __slots__ = ("future", "on_frame")

    def __init__(self, future: asyncio.Future[dict[str, Any]], on_frame: FrameCb | None) -> None:
        self.future = future
        self.on_frame = on_frame


class WorkerTransport:
    """Spawn one worker process and exchange id-tagged frames with it; never blocks the loop."""

    def __init__(self, argv: list[str], env: dict[str, str], on_exit: ExitCb | None = None) -> None:
        self.argv = argv
        self.env = env
        self._on_exit = on_exit
        self.proc: asyncio.subprocess.Process | None = None
        self.returncode: int | None = None  # set once the process has exited and been reaped
        self.killed = False  # whether we had to SIGKILL it
        self.exit_reason: str | None = None
        self.last_activity = time.monotonic()
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=30)
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._abandoned: set[int] = set()  # cancelled by the caller, still running in the worker
        self._expected_exit: str | None = None  # reason when we stop/kill it on purpose
        self._exited = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []

    # ------------------------------------------------------------------ lifecycle
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None and not self._exited.is_set()

    def in_flight(self) -> int:
        """Requests the worker still works on, including ones whose caller gave up."""
        return len(self._pending) + len(self._abandoned)

    async def start(self) -> None:
        # A new session: Ctrl-C on the daemon's terminal must not kill the worker behind our back.
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=self.env, start_new_session=True, limit=4 * 1024 * 1024,
        )
        self.last_activity = time.monotonic()
        log.info("started model worker pid %d", self.proc.pid)
        self._tasks = [asyncio.create_task(self._read_stderr(self.proc), name="engine-worker-stderr")]
        self._tasks.insert(0, asyncio.create_task(self._read_stdout(self.proc), name="engine-worker-stdout"))

    async def stop(self, reason: str, *, grace: float, kill: bool = False) -> None:
        """Ask the worker to exit (it stops a running job first); SIGKILL it after `grace` or when `kill`.

        Returns once the process is reaped and every pending request has failed.
        """
        proc = self.proc
        if proc is None:
            return
        self._expected_exit = reason
        if proc.returncode is None and not self._exited.is_set():
            if not kill:
                try:
                    await self.send({"type": "exit", "id": next(self._ids)})
                except EngineError:
                    pass
                try:
                    await asyncio.wait_for(proc.wait(), grace)
                except asyncio.TimeoutError:
                    log.warning("model worker pid %d did not exit within %g s; killing it", proc.pid, grace)
                    kill = True
            if kill:
                self.kill(reason)
        await self._exited.wait()

    def kill(self, reason: str) -> None:
        """SIGKILL now (synchronous, so a cancelled task can still do it); the readers finish the rest."""
        proc = self.proc
        if self._expected_exit is None:
            self._expected_exit = reason
        if proc is not None and proc.returncode is None:
            try:
                proc.kill()
                self.killed = True
            except ProcessLookupError:
                pass

    # ------------------------------------------------------------------ frames
    async def send(self, msg: dict[str, Any]) -> None:
        proc = self.proc
        if proc is None or proc.stdin is None or not self.alive():
            raise EngineError("worker_crashed", "the model worker is not running")
        try:
            proc.stdin.write(protocol.pack(msg, max_frame=WORKER_MAX_FRAME))
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise EngineError("worker_crashed", f"cannot write to the model worker: {exc}") from None
        except protocol.ProtocolError as exc:
            raise EngineError("bad_request", exc.message) from None

    def cancel(self, req_id: int) -> None:
        """Tell the worker to stop request `req_id` (a queued one never starts); no wait, no error."""
        proc = self.proc
        if proc is None or proc.stdin is None or not self.alive():
            return
        try:  # write() only buffers: safe from a cancelled task and from a finally
            proc.stdin.write(protocol.pack({"type": "cancel", "id": req_id}))
        except (BrokenPipeError, ConnectionResetError, RuntimeError):
            pass

    async def request(self, msg: dict[str, Any], *, on_frame: FrameCb | None = None
                      ) -> tuple[int, asyncio.Future[dict[str, Any]]]:
        """Send `msg` with a fresh id; return (id, future of its final reply).

        Interim frames (loading, progress) of this request go to `on_frame`. Use
        wait() to await the future under the hang watchdog.
        """
        req_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = _Pending(fut, on_frame)
        self.last_activity = time.monotonic()
        try:
            await self.send({**msg, "id": req_id})
        except asyncio.CancelledError:  # cancelled in drain(): the frame is written, so the worker will run it
            self._abandon(req_id)
            raise
        except BaseException:
            self._pending.pop(req_id, None)
            raise
        return req_id, fut

    async def wait(self, req_id: int, fut: asyncio.Future[dict[str, Any]], *, idle_limit: float) -> dict[str, Any]:
        """Await the reply to `req_id`. Raises EngineError: the worker's error, worker_crashed, or hung
        (no frame at all for idle_limit s; the caller decides what to do with the worker).

        If the awaiting task is cancelled, the worker is told to cancel the request and its late
        reply will be dropped.
        """
        try:
            while True:
                remaining = self.last_activity + idle_limit - time.monotonic()
                if remaining <= 0:
                    self._abandon(req_id)
                    raise WorkerSilent(idle_limit)
                done, _ = await asyncio.wait({fut}, timeout=min(remaining, 1.0))
                if done:
                    break
        except asyncio.CancelledError:
            self._abandon(req_id)
            raise
        finally:
            self._pending.pop(req_id, None)
        reply = fut.result()
        if reply.get("type") == "error":
            raise EngineError.from_dict(reply)
        return reply

    async def call(self, msg: dict[str, Any], *, idle_limit: float, on_frame: FrameCb | None = None
                   ) -> dict[str, Any]:
        """request() then wait(): one round trip."""
        req_id, fut = await self.request(msg, on_frame=on_frame)
        return await self.wait(req_id, fut, idle_limit=idle_limit)

    def _abandon(self, req_id: int) -> None:
        pending = self._pending.pop(req_id, None)
        if pending is None:
            return
        if pending.future.done():  # the reply came in just as the caller gave up: nothing runs any more
            if not pending.future.cancelled():
                pending.future.exception()  # mark retrieved
            return
        pending.future.cancel()
        self._abandoned.add(req_id)
        self.cancel(req_id)
        log.info("request %d to the model worker abandoned by its caller; asked the worker to cancel it", req_id)

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        req_id = msg.get("id")
        if kind == "hello":
            log.debug("worker pid %s ready (python %s)", msg.get("pid"), msg.get("python"))
            return
        pending = self._pending.get(req_id) if isinstance(req_id, int) else None
        if pending is not None:
            if kind in INTERIM:
                if pending.on_frame is not None:
                    try:
                        pending.on_frame(msg)
                    except Exception:
                        log.exception("engine frame callback failed")
                return
            if kind in FINAL:
                if not pending.future.done():
                    pending.future.set_result(msg)
                return
        elif req_id in self._abandoned:
            if kind in FINAL:
                self._abandoned.discard(req_id)
                log.debug("dropped the %s reply to abandoned request %s", kind, req_id)
            return
        log.warning("dropped a %r frame from the model worker that matches no request (id %r)%s", kind, req_id,
                    f": {msg.get('message')}" if kind == "error" else "")

    # ------------------------------------------------------------------ readers
    async def _read_stdout(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        error: str | None = None
        try:
            while True:
                msg = await protocol.read_frame(proc.stdout, max_frame=WORKER_MAX_FRAME, timeout=None,
                                                body_timeout=None)
                if msg is None:
                    break
                self.last_activity = time.monotonic()
                self._dispatch(msg)
        except Exception as exc:  # a corrupt frame: the worker is unusable
            error = f"protocol error from the worker: {exc}"
            log.error("%s", error)
            if proc.returncode is None:
                proc.kill()
        rc = await proc.wait()
        for t in self._tasks:  # the stderr tail explains the exit
            if t is not asyncio.current_task():
                try:
                    await asyncio.wait_for(asyncio.shield(t), 2.0)
                except (asyncio.TimeoutError, asyncio.CancelledError):
                    pass
        self._finish(proc, rc, error)

    def _finish(self, proc: asyncio.subprocess.Process, rc: int, error: str | None) -> None:
        self.returncode = rc
        expected = self._expected_exit
        if expected is not None:
            reason = f"worker stopped: {expected}"
            log.info("model worker pid %d stopped (%s; %s)", proc.pid, expected, exit_reason(rc))
        else:
            reason = error or exit_reason(rc)
            tail = [line for line in self.stderr_tail if line.strip()]
            if tail:
                reason += f"; last output: {tail[-1][:300]}"
        self.exit_reason = reason
        if self._on_exit is not None:
            try:
                reason = self._on_exit(self, rc, reason, expected is not None)
            except Exception:
                log.exception("engine exit handler failed")
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(EngineError("worker_crashed", reason))
        self._abandoned.clear()
        self._exited.set()

    async def _read_stderr(self, proc: asyncio.subprocess.Process) -> None:
        """Log the worker's stderr and keep its tail to explain a crash."""
        assert proc.stderr is not None
        buf = b""
        while True:
            chunk = await proc.stderr.read(65536)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.replace(b"\r", b"\n").split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", "replace").rstrip()
                if line:
                    self.stderr_tail.append(line)
                    worker_log.debug("%s", line)
        if buf.strip():
            self.stderr_tail.append(buf.decode("utf-8", "replace").rstrip())
