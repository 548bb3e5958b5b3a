"""The model worker: one process, one model, driven over stdin/stdout frames.

Run as `python -m dgx_music.daemon.engine.worker_main`. The daemon starts it,
and stopping it is the only way to give all GPU memory back, so a worker loads
at most one model in its life; switching models means a new process.

Supervisor -> worker: {"type": "load", model, backend, device, dtype, offline, cache_dir, [family], [lora]}
                      {"type": "generate", job_id, prompts, params: {duration, temperature, top_k, top_p, cfg, seed}
                       (MusicGen) or the ACE-Step map (acestep_backend.PARAM_KEYS),
                       melody: {pcm: float32 mono bytes, sample_rate} or absent,
                       prefix: the same, music to continue, or absent}
                      {"type": "cancel", job_id}   (read by a thread, honoured at the next decode step)
                      {"type": "stats"} | {"type": "exit"}
Worker -> supervisor: hello, loading {progress, message}, loaded {...}, progress {job_id, step, total, elapsed},
                      result {job_id, pcm, shape, sample_rate, seconds, memory}, stats {memory},
                      error {op, job_id, code, message, transient}
"""

from __future__ import annotations

import os
import sys

# The protocol owns the real stdout; everything else (library prints, C-level
# writes, tqdm) goes to stderr. This must happen before torch/transformers load.
_PROTO_OUT = os.fdopen(os.dup(1), "wb", buffering=0)
os.dup2(2, 1)
sys.stdout = sys.stderr

import queue  # noqa: E402
import resource  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from dgx_music.daemon.engine import framing  # noqa: E402
from dgx_music.daemon.engine.errors import Cancelled, EngineError  # noqa: E402

PROGRESS_INTERVAL = 0.1  # seconds between progress frames (~10/s)

_send_lock = threading.Lock()


def send(msg: dict[str, Any]) -> None:
    data = framing.encode(msg)
    with _send_lock:
        _PROTO_OUT.write(data)


def memory() -> dict[str, Any]:
    """Current and peak RSS, and CUDA memory when torch already uses CUDA."""
    mem: dict[str, Any] = {"rss_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    try:
        with open("/proc/self/statm") as f:
            mem["rss"] = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        mem["rss"] = mem["rss_peak"]
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        free, total = torch.cuda.mem_get_info()
        mem.update(cuda_allocated=int(torch.cuda.memory_allocated()), cuda_reserved=int(torch.cuda.memory_reserved()),
                   cuda_peak=int(torch.cuda.max_memory_allocated()), cuda_total=int(total), cuda_free=int(free))
    return mem


def classify(exc: BaseException) -> EngineError:
    """Map any exception to a classified EngineError (oom, cancelled, ...)."""
    if isinstance(exc, EngineError):
        return exc
    if isinstance(exc, Cancelled):
        return EngineError("cancelled", "cancelled")
    torch = sys.modules.get("torch")
    oom_type = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None) if torch else None
    text = str(exc)
    if (oom_type is not None and isinstance(exc, oom_type)) or "out of memory" in text.lower() \
            or isinstance(exc, MemoryError):
        return EngineError("oom", f"out of memory: {text.splitlines()[0] if text else type(exc).__name__}")
    if isinstance(exc, (FileNotFoundError,)):
        return EngineError("model_not_found", text)
    return EngineError("internal", f"{type(exc).__name__}: {text}")


class Worker:
    def __init__(self) -> None:
        self.inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.cancel_event = threading.Event()
        self.current_job: int | None = None
        self.cancelled_early: set[int] = set()
        self.state_lock = threading.Lock()
        self.backend: Any = None
        # Fault injection for tests of the supervisor (never set in production).
        self.test_step_delay = float(os.environ.get("DGX_MUSIC_TEST_STEP_DELAY", "0") or 0)
        self.test_oom_min_batch = int(os.environ.get("DGX_MUSIC_TEST_OOM_MIN_BATCH", "0") or 0)

    # -- input thread: cancel must be seen while the main thread is inside generate()
    def reader(self) -> None:
        stdin = sys.stdin.buffer
        try:
            while True:
                msg = framing.read_frame(stdin)
                if msg is None:
                    break
                if msg.get("type") == "cancel":
                    job = msg.get("job_id")
                    with self.state_lock:
                        if job == self.current_job:
                            self.cancel_event.set()
                        else:
                            self.cancelled_early.add(job)
                    continue
                self.inbox.put(msg)
        except Exception as exc:  # a broken pipe means the daemon is gone
            print(f"worker: input error: {exc}", file=sys.stderr)
        self.cancel_event.set()
        self.inbox.put(None)

    def run(self) -> int:
        send({"type": "hello", "pid": os.getpid(), "python": sys.version.split()[0]})
        threading.Thread(target=self.reader, name="worker-stdin", daemon=True).start()
        while True:
            msg = self.inbox.get()
            if msg is None or msg.get("type") in ("exit", "unload"):
                break
            kind = msg.get("type")
            try:
                if kind == "load":
                    self.load(msg)
                elif kind == "generate":
                    self.generate(msg)
                elif kind == "stats":
                    send({"type": "stats", "memory": memory()})
                else:
                    raise EngineError("bad_request", f"unknown message type {kind!r}")
            except BaseException as exc:  # noqa: BLE001 - every failure is reported, then we carry on
                err = classify(exc)
                if err.code == "internal":
                    traceback.print_exc(file=sys.stderr)
                send({"type": "error", "op": kind, "job_id": msg.get("job_id"), **err.to_dict()})
        if self.backend is not None:
            self.backend.close()
        return 0

    def load(self, msg: dict[str, Any]) -> None:
        if self.backend is not None:
            raise EngineError("bad_request", f"this worker already holds {self.backend.model_name}; "
                                             "start a new worker to switch models")
        # Environment first: huggingface_hub reads it when first imported.
        if msg.get("offline"):
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ["TRANSFORMERS_OFFLINE"] = "1"
        if msg.get("cache_dir"):
            os.environ["HF_HUB_CACHE"] = str(msg["cache_dir"])
        model = str(msg["model"])
        backend_name = str(msg.get("backend") or "transformers")
        if backend_name == "audiocraft" and os.path.isdir(os.path.join(model, "hf-cache")):
            # A test model carries the t5-base its text conditioner loads by hub name.
            os.environ["HF_HUB_CACHE"] = os.path.abspath(os.path.join(model, "hf-cache"))
            os.environ["HF_HUB_OFFLINE"] = "1"
        last = [0.0]

        def progress(p: float | None, message: str) -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_INTERVAL or p in (0.0, 1.0):
                last[0] = now
                send({"type": "loading", "progress": p, "message": message})

        t0 = time.perf_counter()
        progress(None, "starting torch")
        from dgx_music.daemon.engine.backend import get_backend, pick_device

        from dgx_music.daemon.engine.models import resolve_model

        family = str(msg.get("family") or resolve_model(model).family)
        device = pick_device(str(msg.get("device") or "auto"))
        backend = get_backend(backend_name, family)
        backend_name = backend.name
        progress(None, f"loading {model} with {backend_name} on {device}")
        extra = {"lora": msg["lora"]} if msg.get("lora") else {}  # ace-step only
        backend.load(model, device, str(msg.get("dtype") or "auto"), progress,
                     offline=bool(msg.get("offline")), cache_dir=msg.get("cache_dir"), **extra)
        self.backend = backend
        send({"type": "loaded", "model": model, "backend": backend_name, "family": family, "device": backend.device,
              "dtype": backend.dtype, "sample_rate": backend.sample_rate,
              "load_seconds": round(time.perf_counter() - t0, 3), "memory": memory()})

    def _mono(self, m: Any, what: str) -> Any:
        """A {pcm, sample_rate} audio input -> float32 mono array (None when absent)."""
        if not m:
            return None
        audio = np.frombuffer(m["pcm"], dtype=np.float32)
        if int(m.get("sample_rate", 0)) != self.backend.sample_rate or audio.size == 0:
            raise EngineError("bad_request", f"the {what} must be mono float32 at {self.backend.sample_rate} Hz")
        return audio

    def generate(self, msg: dict[str, Any]) -> None:
        if self.backend is None:
            raise EngineError("bad_request", "generate before load")
        job_id = msg.get("job_id")
        prompts = msg.get("prompts")
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) and p for p in prompts):
            raise EngineError("bad_request", "prompts must be a non-empty list of non-empty strings")
        p = msg.get("params") or {}
        musicgen = getattr(self.backend, "family", "musicgen") == "musicgen"
        melody, prefix = (self._mono(msg.get(k), k) for k in ("melody", "prefix")) if musicgen else (None, None)
        with self.state_lock:
            self.current_job = job_id
            self.cancel_event.clear()
            if job_id in self.cancelled_early:
                self.cancelled_early.discard(job_id)
                self.cancel_event.set()
        t0 = time.perf_counter()
        last = [0.0]

        def on_step(step: int, total: int) -> None:
            if self.cancel_event.is_set():
                raise Cancelled()
            if self.test_step_delay:
                time.sleep(self.test_step_delay)
            now = time.perf_counter()
            if step == 1 or step == total or now - last[0] >= PROGRESS_INTERVAL:
                last[0] = now
                send({"type": "progress", "job_id": job_id, "step": step, "total": total,
                      "elapsed": round(now - t0, 4)})

        try:
            if self.cancel_event.is_set():
                raise Cancelled()
            if self.test_oom_min_batch and len(prompts) >= self.test_oom_min_batch:
                raise RuntimeError(f"CUDA out of memory (simulated for tests: batch {len(prompts)} >= "
                                   f"{self.test_oom_min_batch})")
            if musicgen:
                audio, sr = self.backend.generate(
                    prompts, float(p.get("duration", 8.0)), float(p.get("temperature", 1.0)),
                    int(p.get("top_k", 250)), float(p.get("top_p", 0.0)), float(p.get("cfg", 3.0)),
                    int(p.get("seed", 0)), on_step, melody=melody, prefix=prefix)
            else:  # other families take their own parameter map (acestep_backend.PARAM_KEYS)
                audio_in = {k: msg[k] for k in ("melody", "prefix", "src_audio") if msg.get(k)}
                audio, sr = self.backend.generate_params(prompts, p, on_step, audio_in)
        finally:
            with self.state_lock:
                self.current_job = None
        send({"type": "result", "job_id": job_id, "pcm": audio.tobytes(), "shape": list(audio.shape),
              "dtype": "float32", "sample_rate": int(sr), "seconds": round(time.perf_counter() - t0, 4),
              "memory": memory()})


def die_with_parent() -> None:
    """Ask Linux to SIGKILL us when the daemon dies (even by kill -9), so a model never
    holds the GPU for a daemon that is gone; closing stdin covers the other systems."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def main() -> int:
    die_with_parent()
    code = Worker().run()
    # Skip interpreter teardown (a second or more with torch loaded): nothing is left to flush,
    # and the process ending is what frees the memory.
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    raise SystemExit(main())
