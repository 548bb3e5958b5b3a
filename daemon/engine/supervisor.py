"""EngineSupervisor: owns the worker process from the daemon's asyncio loop.

Why a process: a model that segfaults, hangs in a CUDA kernel or exhausts GPU
memory must not take the daemon with it, and ending the process is the only
way to hand all GPU memory back. Everything here is non-blocking: pipes are
asyncio streams, waits are bounded, and the watchdog kills a silent worker.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dgx_music.common.params import GenerationParams
from dgx_music.daemon.engine import framing
from dgx_music.daemon.engine.errors import EngineError
from dgx_music.daemon.engine.models import is_cached, known_models, resolve_model
from dgx_music.daemon.melodies import SAMPLE_RATE as AUDIO_IN_SAMPLE_RATE

__all__ = ["EngineSettings", "EngineError", "EngineSupervisor", "GenerateResult"]

log = logging.getLogger("dgx_music.engine")
worker_log = logging.getLogger("dgx_music.engine.worker")

LOAD_IDLE_LIMIT = 600.0  # loading may be silent for long (reading 13 GB from disk); downloads report progress
STOP_GRACE = 10.0  # seconds a worker gets to exit on request before SIGKILL
MAX_CRASH_RESTARTS = 3  # consecutive crash restarts without a successful job before giving up


@dataclass
class EngineSettings:
    model: str = "small"
    backend: str = "transformers"
    device: str = "auto"
    keep_alive: float = 600.0  # idle seconds before unloading; 0 = after each job; -1 = never
    hang_timeout: float = 120.0  # seconds without progress before the worker is killed
    offline: bool = False
    preload: bool = False
    cache_dir: Path | None = None
    python: str = sys.executable
    dtype: str = "auto"
    worker_env: dict[str, str] = field(default_factory=dict)  # extra environment (tests, CUDA_VISIBLE_DEVICES)


@dataclass
class GenerateResult:
    audio: np.ndarray  # float32 [batch, channels, samples]
    sample_rate: int
    model: str
    backend: str
    device: str
    seconds: float


EventCb = Callable[[str, dict[str, Any]], None]
ProgressCb = Callable[[dict[str, Any]], None]


def _exit_reason(rc: int | None) -> str:
    if rc is None:
        return "worker stopped"
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return f"worker was killed by {name} (signal {-rc})"
    return f"worker exited with code {rc}"


class EngineSupervisor:
    """Start, watch, stop and restart the model worker; never block the event loop."""

    def __init__(self, settings: EngineSettings, on_event: EventCb | None = None) -> None:
        self.settings = settings
        self._on_event = on_event or (lambda name, data: None)
        self._lock = asyncio.Lock()
        self._proc: asyncio.subprocess.Process | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._exited: asyncio.Event | None = None
        self._pending: asyncio.Future[dict[str, Any]] | None = None
        self._last_activity = time.monotonic()
        self._state = "unloaded"
        self._model: str | None = None
        self._loaded: dict[str, Any] = {}
        self._memory: dict[str, Any] = {}
        self._job: int | None = None
        self._on_progress: ProgressCb | None = None
        self._waiting: set[int] = set()
        self._cancel_requested: set[int] = set()
        self._idle_task: asyncio.Task[None] | None = None
        self._restart_task: asyncio.Task[None] | None = None
        self._expected_exit: str | None = None  # reason when we stop/kill it on purpose
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=30)
        self._restarts = 0
        self._crash_streak = 0
        self._closing = False

    # ------------------------------------------------------------------ public API
    async def start(self) -> None:
        """Check the configured model name; load it now when preload is set."""
        resolve_model(self.settings.model)
        if self.settings.preload:
            await self.load()

    async def close(self, timeout: float = 10.0) -> None:
        """Stop the worker; a running job is cancelled, and killed if it does not stop within `timeout`."""
        self._closing = True
        self._cancel_idle()
        if self._restart_task is not None:
            self._restart_task.cancel()
        if self._job is not None:
            await self.cancel(self._job)
        try:
            await asyncio.wait_for(self._lock.acquire(), timeout)
        except asyncio.TimeoutError:
            if self._alive():
                assert self._proc is not None
                self._expected_exit = "daemon shutting down"
                self._proc.kill()
            await self._lock.acquire()
        try:
            await self._stop("daemon shutting down")
        finally:
            self._lock.release()

    def state(self) -> dict[str, Any]:
        proc = self._proc
        mem = dict(self._memory)
        if proc is not None and proc.returncode is None:
            rss = _proc_rss(proc.pid)
            if rss is not None:
                mem["rss"] = rss
        return {
            "model": self._model or self.settings.model,
            "backend": self.settings.backend,
            "state": self._state,
            "device": self._loaded.get("device"),
            "dtype": self._loaded.get("dtype"),
            "memory": {"rss": mem.get("rss"), "cuda_allocated": mem.get("cuda_allocated"),
                       "cuda_total": mem.get("cuda_total")},
            "worker_pid": proc.pid if proc is not None and proc.returncode is None else None,
            "restarts": self._restarts,
            "job_id": self._job,
            "keep_alive": self.settings.keep_alive,
        }

    def last_memory(self) -> dict[str, Any]:
        """The worker's last memory report (rss, rss_peak, cuda_* when on CUDA), for bench."""
        return dict(self._memory)

    def models(self) -> list[dict[str, Any]]:
        out = known_models(self.settings.cache_dir)
        names = {m["name"] for m in out}
        for extra in {self.settings.model, self._model} - {None} - names:
            try:
                spec = resolve_model(str(extra))
            except EngineError:
                continue
            out.append({"name": spec.name, "source": spec.ref, "kind": spec.kind,
                        "cached": is_cached(spec, self.settings.cache_dir), "path": spec.ref
                        if spec.kind == "local" else None, "description": "configured model"})
        for m in out:
            m["configured"] = m["name"] == self.settings.model
            m["loaded"] = m["name"] == self._model and self._state in ("ready", "busy")
        return out

    async def load(self, model: str | None = None) -> dict[str, Any]:
        """Load `model` (default: the configured one) now; returns state()."""
        self._cancel_idle()
        async with self._lock:
            await self._ensure_loaded(model or self.settings.model)
        if self.settings.keep_alive > 0:
            self._schedule_idle()
        return self.state()

    async def unload(self) -> None:
        self._cancel_idle()
        async with self._lock:
            await self._stop("unload requested")

    async def cancel(self, job_id: int) -> bool:
        """Cancel a job that is running or waiting for the engine; False if unknown here."""
        if self._job == job_id:
            self._cancel_requested.add(job_id)  # also stops an OOM split between its halves
            if self._alive():
                try:
                    await self._send({"type": "cancel", "job_id": job_id})
                except EngineError:
                    pass  # the worker died meanwhile; the job fails with worker_crashed
            return True
        if job_id in self._waiting:
            self._cancel_requested.add(job_id)
            return True
        return False

    async def generate(self, job_id: int, prompts: list[str], params: GenerationParams,
                       on_progress: ProgressCb | None = None, melody: np.ndarray | None = None,
                       prefix: np.ndarray | None = None) -> GenerateResult:
        """Generate one batch (prompts share params); loads or switches the model as needed.

        `melody`: float32 mono at 32 kHz for a melody model to follow (see daemon/melodies.py).
        `prefix`: the same format, music to continue; the result starts with it.

        Raises EngineError: cancelled, oom (after splitting the batch down to one),
        worker_crashed, hung, model_not_found, bad_model, bad_request, internal.
        """
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) and p.strip()
                                                                   for p in prompts):
            raise EngineError("bad_request", "prompts must be a non-empty list of non-empty strings")
        if not isinstance(params, GenerationParams):
            raise EngineError("bad_request", "params must be GenerationParams (use validate_params)")
        params = params.with_seed()
        model = params.model or self.settings.model
        resolve_model(model)
        self._cancel_idle()
        self._waiting.add(job_id)
        t0 = time.perf_counter()
        try:
            async with self._lock:
                self._waiting.discard(job_id)
                self._raise_if_cancelled(job_id)
                await self._ensure_loaded(model)
                self._raise_if_cancelled(job_id)
                self._job, self._on_progress, self._state = job_id, on_progress, "busy"
                try:
                    audio_in = {k: v for k, v in (("melody", melody), ("prefix", prefix)) if v is not None}
                    audio, sr = await self._generate_split(job_id, prompts, params, model, audio_in)
                finally:
                    self._job, self._on_progress = None, None
                    self._cancel_requested.discard(job_id)
                    self._state = "ready" if self._alive() else "unloaded"
                self._crash_streak = 0
                result = GenerateResult(audio, sr, model, self.settings.backend,
                                        str(self._loaded.get("device")), time.perf_counter() - t0)
        finally:
            self._waiting.discard(job_id)
            if not self._closing and self._alive():
                self._schedule_idle()
        return result

    # ------------------------------------------------------------------ generation
    def _raise_if_cancelled(self, job_id: int) -> None:
        if job_id in self._cancel_requested:
            self._cancel_requested.discard(job_id)
            raise EngineError("cancelled", f"job {job_id} was cancelled")

    async def _generate_split(self, job_id: int, prompts: list[str], params: GenerationParams,
                              model: str, audio_in: dict[str, np.ndarray] | None = None
                              ) -> tuple[np.ndarray, int]:
        """Run a batch; on OOM restart the worker and retry as two halves, down to single prompts."""
        try:
            return await self._generate_once(job_id, prompts, params, audio_in)
        except EngineError as exc:
            if exc.code != "oom":
                raise
            # A fresh process starts from unfragmented memory.
            await self._stop(f"out of memory on a batch of {len(prompts)}; restarting", kill=True)
            if len(prompts) == 1:
                raise EngineError("oom", f"out of memory generating {params.duration:g} s with {model} on "
                                         f"{self._loaded.get('device')} even as a batch of one; try a shorter "
                                         f"duration or a smaller model ({exc.message})") from None
            log.warning("job %s: out of memory on a batch of %d, retrying as two smaller batches",
                        job_id, len(prompts))
            half = len(prompts) // 2
            parts = []
            for chunk in (prompts[:half], prompts[half:]):
                self._raise_if_cancelled(job_id)
                await self._ensure_loaded(model)
                self._state = "busy"
                parts.append(await self._generate_split(job_id, chunk, params, model, audio_in))
            return np.concatenate([p[0] for p in parts], axis=0), parts[0][1]

    async def _generate_once(self, job_id: int, prompts: list[str], params: GenerationParams,
                             audio_in: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, int]:
        wire = {"duration": params.duration, "temperature": params.temperature, "top_k": params.top_k,
                "top_p": params.top_p, "cfg": params.cfg, "seed": params.seed}
        msg: dict[str, Any] = {"type": "generate", "job_id": job_id, "prompts": prompts, "params": wire}
        for name, audio in (audio_in or {}).items():  # melody, prefix: 32 kHz mono, as the worker expects
            msg[name] = {"pcm": np.ascontiguousarray(audio, dtype=np.float32).tobytes(),
                         "sample_rate": AUDIO_IN_SAMPLE_RATE}
        reply = await self._request(msg, idle_limit=self.settings.hang_timeout, what=f"generating job {job_id}")
        shape = tuple(int(x) for x in reply["shape"])
        audio = np.frombuffer(reply["pcm"], dtype=np.float32).reshape(shape).copy()
        return audio, int(reply["sample_rate"])

    # ------------------------------------------------------------------ process lifecycle
    def _alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def _ensure_loaded(self, model: str) -> None:
        """Called with the lock held: make the worker hold `model`, switching if needed."""
        if self._alive() and self._model == model and self._state in ("ready", "busy"):
            return
        spec = resolve_model(model)
        if self.settings.offline and not is_cached(spec, self.settings.cache_dir, self.settings.backend):
            raise EngineError("model_not_found", f"model {model} ({spec.ref}) is not cached and offline mode "
                                                 f"forbids downloading it; run once without --offline, or pass "
                                                 f"a local model directory")
        if self._proc is not None:
            await self._stop(f"switching to model {model}")
        await self._spawn()
        self._state = "loading"
        self._model = model
        self._emit("model.loading", {"model": model, "progress": None, "message": "starting the worker"})
        t0 = time.perf_counter()
        try:
            reply = await self._request({"type": "load", "model": model, "backend": self.settings.backend,
                                         "device": self.settings.device, "dtype": self.settings.dtype,
                                         "offline": self.settings.offline,
                                         "cache_dir": str(self.settings.cache_dir) if self.settings.cache_dir
                                         else None},
                                        idle_limit=max(self.settings.hang_timeout, LOAD_IDLE_LIMIT),
                                        what=f"loading {model}")
        except EngineError as exc:
            await self._stop(f"loading {model} failed: {exc.message}", kill=True, quiet=True)
            raise
        self._loaded = reply
        self._memory = dict(reply.get("memory") or {})
        self._state = "ready"
        self._emit("model.loaded", {"model": model, "device": reply.get("device"),
                                    "backend": self.settings.backend, "dtype": reply.get("dtype"),
                                    "load_seconds": round(time.perf_counter() - t0, 3)})

    async def _spawn(self) -> None:
        env = dict(os.environ)
        env.update(self.settings.worker_env)
        env["PYTHONUNBUFFERED"] = "1"
        if self.settings.offline:
            env["HF_HUB_OFFLINE"] = "1"
            env["TRANSFORMERS_OFFLINE"] = "1"
        self._stderr_tail.clear()
        self._expected_exit = None
        # A new session: Ctrl-C on the daemon's terminal must not kill the worker behind our back.
        self._proc = await asyncio.create_subprocess_exec(
            self.settings.python, "-m", "dgx_music.daemon.engine.worker_main",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=env, start_new_session=True, limit=4 * 1024 * 1024,
        )
        self._exited = asyncio.Event()
        self._last_activity = time.monotonic()
        log.info("started model worker pid %d", self._proc.pid)
        proc = self._proc
        self._tasks = [asyncio.create_task(self._read_stdout(proc), name="engine-worker-stdout"),
                       asyncio.create_task(self._read_stderr(proc), name="engine-worker-stderr")]

    async def _stop(self, reason: str, *, kill: bool = False, quiet: bool = False) -> None:
        """Stop the worker (politely unless kill) and wait until it is really gone."""
        proc = self._proc
        if proc is None:
            return
        self._expected_exit = reason
        if proc.returncode is None:
            if not kill:
                try:
                    await self._send({"type": "exit"})
                except EngineError:
                    pass
                try:
                    await asyncio.wait_for(proc.wait(), STOP_GRACE)
                except asyncio.TimeoutError:
                    kill = True
            if kill and proc.returncode is None:
                try:
                    proc.kill()
                except ProcessLookupError:
                    pass
            await proc.wait()
        if self._exited is not None:
            await self._exited.wait()
        was_loaded = self._state in ("ready", "busy", "loading")
        self._proc = None
        self._state = "unloaded"
        self._loaded = {}
        self._memory = {}
        if was_loaded and not quiet:
            self._emit("model.unloaded", {"model": self._model, "reason": reason})

    async def _send(self, msg: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            raise EngineError("worker_crashed", "the model worker is not running")
        try:
            proc.stdin.write(framing.encode(msg))
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise EngineError("worker_crashed", f"cannot write to the model worker: {exc}") from None

    async def _request(self, msg: dict[str, Any], *, idle_limit: float, what: str) -> dict[str, Any]:
        """Send one request and await its reply; kill the worker if it goes silent for idle_limit."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending = fut
        self._last_activity = time.monotonic()
        try:
            await self._send(msg)
            while True:
                remaining = self._last_activity + idle_limit - time.monotonic()
                if remaining <= 0:
                    reason = f"no progress for {idle_limit:g} s while {what}; killed the worker"
                    self._pending = None
                    self._restarts += 1
                    self._crash_streak += 1
                    self._emit("model.crashed", {"reason": f"hung: {reason}"})
                    await self._stop(f"hung: {reason}", kill=True, quiet=True)
                    if self._job is not None:  # a hang while loading would only hang again
                        self._schedule_restart()
                    raise EngineError("hung", reason)
                done, _ = await asyncio.wait({fut}, timeout=min(remaining, 1.0))
                if done:
                    break
        finally:
            if self._pending is fut:
                self._pending = None
            if not fut.done():
                fut.cancel()
        reply = fut.result()
        if reply.get("type") == "error":
            raise EngineError.from_dict(reply)
        return reply

    async def _read_stdout(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        error: str | None = None
        try:
            while True:
                msg = await framing.read_frame_async(proc.stdout)
                if msg is None:
                    break
                self._last_activity = time.monotonic()
                self._dispatch(msg)
        except Exception as exc:  # a corrupt frame: the worker is unusable
            error = f"protocol error from the worker: {exc}"
            log.error("%s", error)
            if proc.returncode is None:
                proc.kill()
        rc = await proc.wait()
        for t in self._tasks:
            if t is not asyncio.current_task():
                try:
                    await asyncio.wait_for(asyncio.shield(t), 2.0)
                except (asyncio.TimeoutError, asyncio.CancelledError):
                    pass
        self._on_exit(proc, rc, error)

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "loading":
            self._emit("model.loading", {"model": self._model, "progress": msg.get("progress"),
                                         "message": msg.get("message")})
        elif kind == "progress":
            if self._on_progress is not None and msg.get("job_id") == self._job:
                try:
                    self._on_progress({"job_id": msg.get("job_id"), "step": msg["step"], "total": msg["total"],
                                       "elapsed": msg["elapsed"]})
                except Exception:
                    log.exception("progress callback failed")
        elif kind in ("loaded", "result", "error", "stats"):
            if msg.get("memory"):
                self._memory = dict(msg["memory"])
            if self._pending is not None and not self._pending.done():
                self._pending.set_result(msg)
            elif kind == "error":
                log.warning("worker error with no request waiting: %s", msg.get("message"))
        elif kind == "hello":
            log.debug("worker pid %s ready (python %s)", msg.get("pid"), msg.get("python"))

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
                    self._stderr_tail.append(line)
                    worker_log.debug("%s", line)
        if buf.strip():
            self._stderr_tail.append(buf.decode("utf-8", "replace").rstrip())

    def _on_exit(self, proc: asyncio.subprocess.Process, rc: int, error: str | None) -> None:
        if self._exited is not None and proc is self._proc:
            self._exited.set()
        if proc is not self._proc:
            return
        expected = self._expected_exit
        if expected is not None:
            log.info("model worker pid %d stopped (%s)", proc.pid, expected)
            if self._pending is not None and not self._pending.done():
                self._pending.set_exception(EngineError("worker_crashed", f"worker stopped: {expected}"))
            return
        reason = error or _exit_reason(rc)
        tail = [line for line in self._stderr_tail if line.strip()]
        if tail:
            reason += f"; last output: {tail[-1][:300]}"
        was_busy = self._job is not None
        if was_busy:
            reason = f"{reason} (while running job {self._job})"
        log.error("model worker pid %d crashed: %s", proc.pid, reason)
        self._proc = None
        self._state = "unloaded"
        self._loaded = {}
        self._restarts += 1
        self._crash_streak += 1
        self._emit("model.crashed", {"reason": reason, "pid": proc.pid, "returncode": rc})
        if self._pending is not None and not self._pending.done():
            self._pending.set_exception(EngineError("worker_crashed", reason))
        if was_busy:  # a crash while loading would only crash again
            self._schedule_restart()

    def _schedule_restart(self) -> None:
        """Bring a crashed worker back with the same model, so the retry finds it ready."""
        if self._closing or self.settings.keep_alive == 0 or self._model is None:
            return
        if self._crash_streak > MAX_CRASH_RESTARTS:
            log.error("not restarting the worker: %d crashes in a row", self._crash_streak)
            return
        model = self._model

        async def restart() -> None:
            async with self._lock:
                if self._closing or self._alive():
                    return
                try:
                    await self._ensure_loaded(model)
                except EngineError as exc:
                    log.error("restarting the worker failed: %s", exc)
                    return
            if self.settings.keep_alive > 0:
                self._schedule_idle()

        self._restart_task = asyncio.get_running_loop().create_task(restart(), name="engine-restart")

    # ------------------------------------------------------------------ keep-alive
    def _cancel_idle(self) -> None:
        if self._idle_task is not None and self._idle_task is not asyncio.current_task():
            self._idle_task.cancel()
        self._idle_task = None

    def _schedule_idle(self) -> None:
        self._cancel_idle()
        ka = self.settings.keep_alive
        if ka < 0:
            return

        async def idle() -> None:
            await asyncio.sleep(ka)
            async with self._lock:
                if self._job is None and not self._waiting and self._proc is not None:
                    await self._stop("right after the job (keep_alive 0)" if ka == 0
                                     else f"idle for {ka:g} s (keep_alive)")

        self._idle_task = asyncio.get_running_loop().create_task(idle(), name="engine-keep-alive")

    def _emit(self, name: str, data: dict[str, Any]) -> None:
        try:
            self._on_event(name, data)
        except Exception:
            log.exception("engine event handler failed for %s", name)


def _proc_rss(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
