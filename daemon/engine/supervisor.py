"""EngineSupervisor: the policy around the model worker, from the daemon's asyncio loop.

Why a process: a model that segfaults, hangs in a CUDA kernel or exhausts GPU
memory must not take the daemon with it, and ending the process is the only
way to hand all GPU memory back. transport.py owns the process and its frames
(request ids, readers); this module decides what runs there: which model,
keep-alive, restarts after a crash or hang, OOM halving, model switches.
Everything here is non-blocking: pipes are asyncio streams, waits are bounded,
disk scans run in a thread, and the watchdog kills a silent worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dgx_music.common.families import REGISTRY
from dgx_music.common.params import GenerationParams
from dgx_music.common.schemas import SCHEMAS
from dgx_music.daemon.engine.errors import EngineError
from dgx_music.daemon.engine.models import is_cached, known_models, resolve_model
from dgx_music.daemon.engine.transport import WorkerSilent, WorkerTransport
from dgx_music.common.audio.melody import SAMPLE_RATE as AUDIO_IN_SAMPLE_RATE

__all__ = ["EngineSettings", "EngineError", "EngineSupervisor", "GenerateResult"]

log = logging.getLogger("dgx_music.engine")

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
#: on_audio({job_id, variation, offset, sample_rate, audio: float32 [batch, channels, n]}): a streamed chunk;
#: `variation` is the batch's first variation (an OOM split sends each half, its offsets from 0 again).
AudioCb = Callable[[dict[str, Any]], None]


def wire_params(params: Any) -> dict[str, Any]:
    """The generate frame's `params`: the object's own wire() (any model family), else MusicGen's."""
    wire = getattr(params, "wire", None)
    if callable(wire):
        return dict(wire())
    return {"duration": params.duration, "temperature": params.temperature, "top_k": params.top_k,
            "top_p": params.top_p, "cfg": params.cfg, "seed": params.seed}


#: The rate of multichannel audio inputs ([channels, samples]): ACE-Step's sources.
SOURCE_SAMPLE_RATE = 48000


def _audio_frame(a: np.ndarray) -> dict[str, Any]:
    """One named audio input of a generate frame (worker_main documents the format)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    if a.ndim == 2:
        return {"pcm": a.tobytes(), "sample_rate": SOURCE_SAMPLE_RATE, "channels": int(a.shape[0])}
    return {"pcm": a.tobytes(), "sample_rate": AUDIO_IN_SAMPLE_RATE}


def _variations_from(params: Any, offset: int) -> Any:
    """The params for a half batch starting at variation `offset`. ACE-Step draws variation i from
    seed + i, so the second half of a split batch shifts its seed and makes the same clips the whole
    batch would have; MusicGen samples a batch from one stream, so there is nothing to keep."""
    shifted = getattr(params, "from_variation", None)
    if offset and callable(shifted):
        return shifted(offset)
    return params


def load_extra(params: Any) -> dict[str, Any]:
    """Extra keys for the load frame (e.g. a LoRA) that a params object asks for; none for MusicGen."""
    extra = getattr(params, "load_extra", None)
    return {k: v for k, v in dict(extra()).items() if v is not None} if callable(extra) else {}


class EngineSupervisor:
    """Start, watch, stop and restart the model worker; never block the event loop."""

    def __init__(self, settings: EngineSettings, on_event: EventCb | None = None) -> None:
        self.settings = settings
        self._on_event = on_event or (lambda name, data: None)
        self._lock = asyncio.Lock()
        self._worker: WorkerTransport | None = None
        self._state = "unloaded"
        self._model: str | None = None
        self._load_extra: dict[str, Any] = {}
        self._families: dict[str, str] = {}
        self._loaded: dict[str, Any] = {}
        self._memory: dict[str, Any] = {}
        self._job: int | None = None
        self._job_req: int | None = None  # the worker request id of the running job's current batch
        self._waiting: set[int] = set()
        self._cancel_requested: set[int] = set()
        self._idle_task: asyncio.Task[None] | None = None
        self._restart_task: asyncio.Task[None] | None = None
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
            if self._worker is not None:
                self._worker.kill("daemon shutting down")
            await self._lock.acquire()
        try:
            await self._stop("daemon shutting down")
        finally:
            self._lock.release()

    @property
    def worker(self) -> WorkerTransport | None:
        """The current worker process's transport (pid, returncode, ...), None when none was started."""
        return self._worker

    def state(self) -> dict[str, Any]:
        worker = self._worker
        alive = worker is not None and worker.alive()
        mem = dict(self._memory)
        if alive and worker is not None and worker.pid is not None:
            rss = _proc_rss(worker.pid)
            if rss is not None:
                mem["rss"] = rss
        state = self._state
        if state == "ready" and alive and worker is not None and worker.in_flight():
            state = "busy"  # a cancelled job is still winding down in the worker
        model = self._model or self.settings.model
        return {
            "model": model,
            "family": self._family_of(model),
            "backend": self.settings.backend,
            "state": state,
            "device": self._loaded.get("device"),
            "dtype": self._loaded.get("dtype"),
            "memory": {"rss": mem.get("rss"), "cuda_allocated": mem.get("cuda_allocated"),
                       "cuda_total": mem.get("cuda_total")},
            "worker_pid": worker.pid if alive and worker is not None else None,
            "restarts": self._restarts,
            "job_id": self._job,
            "keep_alive": self.settings.keep_alive,
        }

    def _family_of(self, model: str) -> str | None:
        """The model's family, remembered per name (a local directory's is read from its files once)."""
        if model not in self._families:
            try:
                self._families[model] = resolve_model(model).family
            except EngineError:
                return None
        return self._families[model]

    def last_memory(self) -> dict[str, Any]:
        """The worker's last memory report (rss, rss_peak, cuda_* when on CUDA), for bench."""
        return dict(self._memory)

    async def models(self) -> list[dict[str, Any]]:
        """Known and configured models, with cached/configured/loaded flags.

        The cache scan reads the disk (the HF cache can hold thousands of files), so it runs in a thread.
        """
        out = await asyncio.to_thread(_scan_models, self.settings.cache_dir, [self.settings.model, self._model])
        for m in out:
            m["configured"] = m["name"] == self.settings.model
            m["loaded"] = m["name"] == self._model and self._state in ("ready", "busy")
            spec = REGISTRY.get(m.get("family") or "")
            m["family_label"] = spec.label if spec is not None else m.get("family")  # the pickers' group
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
            if self._worker is not None and self._job_req is not None:
                self._worker.cancel(self._job_req)
            return True
        if job_id in self._waiting:
            self._cancel_requested.add(job_id)
            return True
        return False

    async def generate(self, job_id: int, prompts: list[str], params: GenerationParams,
                       on_progress: ProgressCb | None = None, melody: np.ndarray | None = None,
                       prefix: np.ndarray | None = None,
                       audio_in: dict[str, np.ndarray] | None = None,
                       on_audio: AudioCb | None = None) -> GenerateResult:
        """Generate one batch (prompts share params); loads or switches the model as needed.

        `melody`: float32 mono at 32 kHz for a melody model to follow (see daemon/audio_store.py).
        `prefix`: the same format, music to continue; the result starts with it.
        `audio_in`: more named inputs in that format, for model families that take others.
        `on_audio`: chunks of the clip as it is made, for backends that stream (see AudioCb).

        Cancelling the awaiting task cancels the job in the worker too.
        Raises EngineError: cancelled, oom (after splitting the batch down to one),
        worker_crashed, hung, model_not_found, bad_model, bad_request, internal.
        """
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) and p.strip()
                                                                   for p in prompts):
            raise EngineError("bad_request", "prompts must be a non-empty list of non-empty strings")
        if not isinstance(params, tuple(SCHEMAS.values())):
            raise EngineError("bad_request", "params must be a family's typed params (common/schemas.py)")
        params = params.with_seed()
        model = params.model or self.settings.model
        resolve_model(model)
        extra = load_extra(params)
        inputs = dict(audio_in or {})
        inputs.update({k: v for k, v in (("melody", melody), ("prefix", prefix)) if v is not None})
        self._cancel_idle()
        self._waiting.add(job_id)
        t0 = time.perf_counter()
        try:
            async with self._lock:
                self._waiting.discard(job_id)
                self._raise_if_cancelled(job_id)
                await self._ensure_loaded(model, extra)
                self._raise_if_cancelled(job_id)
                self._job, self._state = job_id, "busy"
                try:
                    audio, sr = await self._generate_split(job_id, prompts, params, model, extra, inputs,
                                                           on_progress, on_audio)
                finally:
                    self._job, self._job_req = None, None
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

    async def train(self, job_id: int, model: str, items: list[dict[str, Any]], params: dict[str, Any],
                    work_dir: str, on_progress: ProgressCb | None = None) -> dict[str, Any]:
        """Train a LoRA on `model` in the worker (worker_main's `train` request); one model in memory,
        so the queue waits as it does for a generation. Cancel stops it at the next step; a crash or
        hang is `worker_crashed`/`hung` (transient: the retry resumes from the last checkpoint).
        Returns the worker's result: steps, final_loss, path (work_dir/final), size, ..."""
        resolve_model(model)
        self._cancel_idle()
        self._waiting.add(job_id)
        try:
            async with self._lock:
                self._waiting.discard(job_id)
                self._raise_if_cancelled(job_id)
                # A worker already holding the model keeps its load extras: training takes any LoRA off.
                await self._ensure_loaded(model, self._load_extra if model == self._model else {})
                self._raise_if_cancelled(job_id)
                self._job, self._state = job_id, "busy"

                def on_frame(frame: dict[str, Any]) -> None:
                    if frame.get("type") == "progress" and on_progress is not None:
                        on_progress({"job_id": job_id, **{k: frame.get(k) for k in
                                                          ("step", "total", "elapsed", "loss", "phase")}})

                def on_sent(req_id: int) -> None:
                    self._job_req = req_id
                    if job_id in self._cancel_requested and self._worker is not None:
                        self._worker.cancel(req_id)

                msg = {"type": "train", "job_id": job_id, "items": items, "params": params, "work_dir": work_dir}
                try:
                    # Encoding a long song on a slow device reports once per item: allow what loading allows.
                    reply = await self._call(msg, idle_limit=max(self.settings.hang_timeout, LOAD_IDLE_LIMIT),
                                             what=f"training job {job_id}", on_frame=on_frame, on_sent=on_sent)
                finally:
                    self._job, self._job_req = None, None
                    self._cancel_requested.discard(job_id)
                    self._state = "ready" if self._alive() else "unloaded"
                self._crash_streak = 0
        finally:
            self._waiting.discard(job_id)
            if not self._closing and self._alive():
                self._schedule_idle()
        return {k: v for k, v in reply.items() if k not in ("type", "id", "memory")}

    # ------------------------------------------------------------------ generation
    def _raise_if_cancelled(self, job_id: int) -> None:
        if job_id in self._cancel_requested:
            self._cancel_requested.discard(job_id)
            raise EngineError("cancelled", f"job {job_id} was cancelled")

    async def _generate_split(self, job_id: int, prompts: list[str], params: GenerationParams, model: str,
                              extra: dict[str, Any], audio_in: dict[str, np.ndarray],
                              on_progress: ProgressCb | None, on_audio: AudioCb | None = None,
                              first: int = 0) -> tuple[np.ndarray, int]:
        """Run a batch; on OOM restart the worker and retry as two halves, down to single prompts."""
        try:
            return await self._generate_once(job_id, prompts, params, audio_in, on_progress, on_audio, first)
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
            for offset, chunk in ((0, prompts[:half]), (half, prompts[half:])):
                self._raise_if_cancelled(job_id)
                await self._ensure_loaded(model, extra)
                self._state = "busy"
                parts.append(await self._generate_split(job_id, chunk, _variations_from(params, offset), model,
                                                        extra, audio_in, on_progress, on_audio, first + offset))
            return np.concatenate([p[0] for p in parts], axis=0), parts[0][1]

    async def _generate_once(self, job_id: int, prompts: list[str], params: GenerationParams,
                             audio_in: dict[str, np.ndarray], on_progress: ProgressCb | None,
                             on_audio: AudioCb | None = None, first: int = 0) -> tuple[np.ndarray, int]:
        msg: dict[str, Any] = {"type": "generate", "job_id": job_id, "prompts": prompts,
                               "params": wire_params(params), "stream": on_audio is not None}
        if audio_in:  # mono: 32 kHz, as the daemon stores melodies and prefixes; [channels, samples]: 48 kHz
            msg["audio"] = {name: _audio_frame(a) for name, a in audio_in.items()}

        def on_frame(frame: dict[str, Any]) -> None:
            if frame.get("type") == "progress" and on_progress is not None:
                on_progress({"job_id": job_id, "step": frame["step"], "total": frame["total"],
                             "elapsed": frame["elapsed"]})
            elif frame.get("type") == "audio" and on_audio is not None:
                shape = tuple(int(x) for x in frame["shape"])
                on_audio({"job_id": job_id, "variation": first, "offset": int(frame["offset"]),
                          "sample_rate": int(frame["sample_rate"]),
                          "audio": np.frombuffer(frame["pcm"], dtype=np.float32).reshape(shape)})

        def on_sent(req_id: int) -> None:
            self._job_req = req_id
            if job_id in self._cancel_requested and self._worker is not None:  # cancelled while sending
                self._worker.cancel(req_id)

        reply = await self._call(msg, idle_limit=self.settings.hang_timeout, what=f"generating job {job_id}",
                                 on_frame=on_frame, on_sent=on_sent)
        shape = tuple(int(x) for x in reply["shape"])
        audio = np.frombuffer(reply["pcm"], dtype=np.float32).reshape(shape).copy()
        return audio, int(reply["sample_rate"])

    # ------------------------------------------------------------------ process lifecycle
    def _alive(self) -> bool:
        return self._worker is not None and self._worker.alive()

    async def _ensure_loaded(self, model: str, extra: dict[str, Any] | None = None) -> None:
        """Called with the lock held: make the worker hold `model` (with `extra`), switching if needed."""
        extra = extra or {}
        if self._alive() and self._model == model and self._load_extra == extra \
                and self._state in ("ready", "busy"):
            return
        spec = resolve_model(model)
        if self.settings.offline and not await asyncio.to_thread(is_cached, spec, self.settings.cache_dir,
                                                                 self.settings.backend):
            raise EngineError("model_not_found", f"model {model} ({spec.ref}) is not cached and offline mode "
                                                 f"forbids downloading it; run once without --offline, or pass "
                                                 f"a local model directory")
        if self._worker is not None:
            await self._stop(f"switching to model {model}")
        await self._spawn()
        self._state = "loading"
        self._model, self._load_extra = model, dict(extra)
        self._emit("model.loading", {"model": model, "progress": None, "message": "starting the worker"})
        t0 = time.perf_counter()

        def on_frame(frame: dict[str, Any]) -> None:
            if frame.get("type") == "loading":
                self._emit("model.loading", {"model": model, "progress": frame.get("progress"),
                                             "message": frame.get("message")})

        msg = {"type": "load", "model": model, "backend": self.settings.backend, "device": self.settings.device,
               "dtype": self.settings.dtype, "offline": self.settings.offline,
               "cache_dir": str(self.settings.cache_dir) if self.settings.cache_dir else None, **extra}
        try:
            reply = await self._call(msg, idle_limit=max(self.settings.hang_timeout, LOAD_IDLE_LIMIT),
                                     what=f"loading {model}", on_frame=on_frame)
        except EngineError as exc:
            await self._stop(f"loading {model} failed: {exc.message}", kill=True, quiet=True)
            raise
        except asyncio.CancelledError:
            # Loading cannot be interrupted inside the worker, and a half-loaded worker is of no use.
            if self._worker is not None:
                self._worker.kill(f"loading {model} cancelled")
            self._state = "unloaded"
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
        worker = WorkerTransport([self.settings.python, "-m", "dgx_music.daemon.engine.worker_main"], env,
                                 on_exit=self._on_worker_exit)
        self._worker = worker
        await worker.start()

    async def _stop(self, reason: str, *, kill: bool = False, quiet: bool = False) -> None:
        """Stop the worker (politely unless kill) and wait until it is really gone."""
        worker = self._worker
        if worker is None:
            return
        await worker.stop(reason, grace=STOP_GRACE, kill=kill)
        was_loaded = self._state in ("ready", "busy", "loading")
        if self._worker is worker:
            self._worker = None
        self._state = "unloaded"
        self._loaded = {}
        self._memory = {}
        if was_loaded and not quiet:
            self._emit("model.unloaded", {"model": self._model, "reason": reason})

    async def _call(self, msg: dict[str, Any], *, idle_limit: float, what: str,
                    on_frame: Callable[[dict[str, Any]], None] | None = None,
                    on_sent: Callable[[int], None] | None = None) -> dict[str, Any]:
        """One request to the worker; a worker silent for idle_limit is killed (and restarted for a job)."""
        worker = self._worker
        if worker is None:
            raise EngineError("worker_crashed", "the model worker is not running")
        req_id, fut = await worker.request(msg, on_frame=on_frame)
        if on_sent is not None:
            on_sent(req_id)
        try:
            reply = await worker.wait(req_id, fut, idle_limit=idle_limit)
        except WorkerSilent:
            reason = f"no progress for {idle_limit:g} s while {what}; killed the worker"
            self._restarts += 1
            self._crash_streak += 1
            self._emit("model.crashed", {"reason": f"hung: {reason}"})
            await self._stop(f"hung: {reason}", kill=True, quiet=True)
            if self._job is not None:  # a hang while loading would only hang again
                self._schedule_restart()
            raise EngineError("hung", reason) from None
        if reply.get("memory"):
            self._memory = dict(reply["memory"])
        return reply

    def _on_worker_exit(self, worker: WorkerTransport, rc: int, reason: str, expected: bool) -> str:
        """Crash policy: an exit we did not ask for fails the job, is reported, and restarts the worker."""
        if expected or worker is not self._worker:
            return reason
        was_busy = self._job is not None
        if was_busy:
            reason = f"{reason} (while running job {self._job})"
        log.error("model worker pid %s crashed: %s", worker.pid, reason)
        self._worker = None
        self._state = "unloaded"
        self._loaded = {}
        self._restarts += 1
        self._crash_streak += 1
        self._emit("model.crashed", {"reason": reason, "pid": worker.pid, "returncode": rc})
        if was_busy:  # a crash while loading would only crash again
            self._schedule_restart()
        return reason

    def _schedule_restart(self) -> None:
        """Bring a crashed worker back with the same model, so the retry finds it ready."""
        if self._closing or self.settings.keep_alive == 0 or self._model is None:
            return
        if self._crash_streak > MAX_CRASH_RESTARTS:
            log.error("not restarting the worker: %d crashes in a row", self._crash_streak)
            return
        model, extra = self._model, dict(self._load_extra)

        async def restart() -> None:
            async with self._lock:
                if self._closing or self._alive():
                    return
                try:
                    await self._ensure_loaded(model, extra)
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
                if self._job is None and not self._waiting and self._worker is not None:
                    await self._stop("right after the job (keep_alive 0)" if ka == 0
                                     else f"idle for {ka:g} s (keep_alive)")

        self._idle_task = asyncio.get_running_loop().create_task(idle(), name="engine-keep-alive")

    def _emit(self, name: str, data: dict[str, Any]) -> None:
        try:
            self._on_event(name, data)
        except Exception:
            log.exception("engine event handler failed for %s", name)


def _scan_models(cache_dir: Path | None, extras: list[str | None]) -> list[dict[str, Any]]:
    """Known models plus the configured/loaded ones, with what the disk cache holds (blocking: run in a thread)."""
    out = known_models(cache_dir)
    names = {m["name"] for m in out}
    for extra in dict.fromkeys(e for e in extras if e is not None and e not in names):
        try:
            spec = resolve_model(str(extra))
        except EngineError:
            continue
        out.append({"name": spec.name, "family": spec.family, "source": spec.ref, "kind": spec.kind,
                    "cached": is_cached(spec, cache_dir), "path": spec.ref if spec.kind == "local" else None,
                    "description": "configured model"})
    return out


def _proc_rss(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
