"""The model worker: one process, one model, driven over stdin/stdout frames.

Run as `python -m dgx_music.daemon.engine.worker_main`. The daemon starts it,
and stopping it is the only way to give all GPU memory back, so a worker loads
at most one model in its life; switching models means a new process.

Frames are common/protocol.py's (4-byte big-endian length + one msgpack map), up
to WORKER_MAX_FRAME. Every frame carries an integer `id`: the supervisor numbers
its requests 1, 2, 3... per process, and every reply, interim or final, repeats
the id of the request it belongs to, so a reply to a request the daemon gave up
on can never be taken for the answer to the next one.

Supervisor -> worker:
  {type: load, id, model, backend, device, dtype, offline, cache_dir, [family], **extra}
      family: musicgen or ace-step (resolved from the model name when absent);
      extra keys (e.g. lora) are passed to backend.load() as keyword arguments
  {type: generate, id, job_id, prompts, params: {...}, [stream: bool],
   audio: {name: {pcm: float32 bytes, sample_rate, [channels]}}}   (audio optional)
      channels absent or 1: mono (MusicGen's melody and prefix at 32 kHz); more: the pcm is
      channel-major [channels, samples] at the model's rate (ACE-Step's `source`, stereo 48 kHz)
      params: the family's request (its schema's wire()), handed to backend.run(); the
      audio inputs and streaming allowed are the backend's `capabilities`
  {type: train, id, job_id, items: [{path, caption, lyrics, language}], params: {steps, rank, lr, seed,
   checkpoint_every}, work_dir}   a LoRA on the loaded model (backends whose capabilities list the
      `train` task); resumes from work_dir's checkpoint; the adapter ends in work_dir/final
  {type: cancel, id}   id of the request to stop: a running one stops at its next
                       decode step, a queued one answers "cancelled" without starting,
                       a finished one is ignored (read by a thread)
  {type: stats, id} | {type: exit, id}   exit (and stdin EOF) also stops a running job
Worker -> supervisor:
  hello {id: 0, pid, python}
  loading {id, progress, message} ... loaded {id, model, backend, device, dtype, sample_rate, ...}
  progress {id, step, total, elapsed} ... result {id, pcm, shape, dtype, sample_rate, seconds, memory}
  audio {id, offset, shape: [batch, channels, n], sample_rate, pcm}   interim, when the generate frame
      had stream: true and the backend streams (MusicGen via transformers): n float32 samples per
      channel starting at sample `offset` of the clip, as the clip is made (engine/streaming.py)
  progress {id, step, total, elapsed, loss, phase} ... result {id, steps, final_loss, path, size, ...}   (train)
  stats {id, memory}
  error {id, op, code, message, transient}   the final reply of a failed request
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
from typing import TYPE_CHECKING, Any  # noqa: E402

import numpy as np  # noqa: E402

from dgx_music.common import protocol  # noqa: E402
from dgx_music.common.fmt import with_article
from dgx_music.daemon.engine.errors import Cancelled, EngineError  # noqa: E402
from dgx_music.daemon.engine.transport import WORKER_MAX_FRAME  # noqa: E402

if TYPE_CHECKING:
    from dgx_music.daemon.engine.backend import Capabilities

PROGRESS_INTERVAL = 0.1  # seconds between progress frames (~10/s)

_send_lock = threading.Lock()


def send(msg: dict[str, Any]) -> None:
    data = protocol.pack(msg, max_frame=WORKER_MAX_FRAME)
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


#: Keys of a load frame the worker itself uses; any other key goes to backend.load() as a keyword.
LOAD_KEYS = frozenset({"type", "id", "model", "backend", "device", "dtype", "offline", "cache_dir", "family"})


class Worker:
    def __init__(self) -> None:
        self.inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.cancel_event = threading.Event()
        # Request bookkeeping shared with the reader thread (under state_lock): the request being
        # handled, the highest id started so far, and cancels for requests still in the inbox.
        self.state_lock = threading.Lock()
        self.current: int | None = None
        self.started = 0
        self.cancelled_early: set[int] = set()
        self.exiting = False
        self.backend: Any = None
        # Fault injection for tests of the supervisor (never set in production).
        self.test_step_delay = float(os.environ.get("DGX_MUSIC_TEST_STEP_DELAY", "0") or 0)
        self.test_oom_min_batch = int(os.environ.get("DGX_MUSIC_TEST_OOM_MIN_BATCH", "0") or 0)

    # -- input thread: cancel and exit must be seen while the main thread is inside generate()
    def reader(self) -> None:
        stdin = sys.stdin.buffer
        try:
            while True:
                msg = protocol.read_frame_blocking(stdin, max_frame=WORKER_MAX_FRAME)
                if msg is None:
                    break
                kind = msg.get("type")
                if kind == "cancel":
                    self._cancel(msg.get("id"))
                    continue
                if kind in ("exit", "unload"):
                    break
                self.inbox.put(msg)
        except Exception as exc:  # a broken pipe means the daemon is gone
            print(f"worker: input error: {exc}", file=sys.stderr)
        # exit, EOF or a broken stream: stop the running job at its next step, start nothing more.
        with self.state_lock:
            self.exiting = True
        self.cancel_event.set()
        self.inbox.put(None)

    def _cancel(self, req_id: Any) -> None:
        if not isinstance(req_id, int):
            return
        with self.state_lock:
            if req_id == self.current:
                self.cancel_event.set()
            elif req_id > self.started:  # still in the inbox: answer "cancelled" when it comes up
                self.cancelled_early.add(req_id)
            # else: finished already; its reply is on its way and the daemon drops it

    def _begin(self, req_id: Any) -> bool:
        """Mark `req_id` as the running request; False when it was cancelled before it started."""
        with self.state_lock:
            if self.exiting:
                return False
            self.cancel_event.clear()
            if isinstance(req_id, int):
                self.started = max(self.started, req_id)
                self.current = req_id
                if req_id in self.cancelled_early:
                    self.cancelled_early.discard(req_id)
                    return False
        return True

    def run(self) -> int:
        send({"type": "hello", "id": 0, "pid": os.getpid(), "python": sys.version.split()[0]})
        threading.Thread(target=self.reader, name="worker-stdin", daemon=True).start()
        while True:
            msg = self.inbox.get()
            if msg is None or self.exiting:
                break
            kind = msg.get("type")
            req_id = msg.get("id")
            try:
                if not isinstance(req_id, int) or isinstance(req_id, bool):
                    raise EngineError("bad_request", f"{with_article(repr(kind))} frame needs an integer id")
                if not self._begin(req_id):
                    raise Cancelled()
                if kind == "load":
                    self.load(req_id, msg)
                elif kind == "generate":
                    self.generate(req_id, msg)
                elif kind == "train":
                    self.train(req_id, msg)
                elif kind == "stats":
                    send({"type": "stats", "id": req_id, "memory": memory()})
                else:
                    raise EngineError("bad_request", f"unknown message type {kind!r}")
            except BaseException as exc:  # noqa: BLE001 - every failure is reported, then we carry on
                err = classify(exc)
                if err.code == "internal":
                    traceback.print_exc(file=sys.stderr)
                send({"type": "error", "id": req_id, "op": kind, **err.to_dict()})
            finally:
                with self.state_lock:
                    self.current = None
        if self.backend is not None:
            self.backend.close()
        return 0

    def load(self, req_id: int, msg: dict[str, Any]) -> None:
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
        extra = {k: v for k, v in msg.items() if k not in LOAD_KEYS and v is not None}
        last = [0.0]

        def progress(p: float | None, message: str) -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_INTERVAL or p in (0.0, 1.0):
                last[0] = now
                send({"type": "loading", "id": req_id, "progress": p, "message": message})

        t0 = time.perf_counter()
        progress(None, "starting torch")
        from dgx_music.daemon.engine.backend import get_backend, pick_device
        from dgx_music.daemon.engine.models import resolve_model

        family = str(msg.get("family") or resolve_model(model).family)
        device = pick_device(str(msg.get("device") or "auto"))
        backend = get_backend(backend_name, family)
        backend_name = backend.name
        progress(None, f"loading {model} with {backend_name} on {device}")
        backend.load(model, device, str(msg.get("dtype") or "auto"), progress,
                     offline=bool(msg.get("offline")), cache_dir=msg.get("cache_dir"), **extra)
        self.backend = backend
        send({"type": "loaded", "id": req_id, "model": model, "backend": backend_name, "family": family,
              "device": backend.device,
              "dtype": backend.dtype, "sample_rate": backend.sample_rate,
              "load_seconds": round(time.perf_counter() - t0, 3), "memory": memory()})

    def _audio_in(self, msg: dict[str, Any], caps: "Capabilities") -> dict[str, np.ndarray]:
        """The frame's {name: {pcm, sample_rate, [channels]}} audio inputs -> {name: float32 array}:
        [samples] for mono, [channels, samples] otherwise. Each must be one the backend's
        capabilities name, in its channel count and rate."""
        raw = msg.get("audio") or {}
        if not isinstance(raw, dict):
            raise EngineError("bad_request", "audio must be a map of name -> {pcm, sample_rate}")
        out: dict[str, np.ndarray] = {}
        for name, m in raw.items():
            if name not in caps.audio_inputs:
                takes = " and ".join(caps.audio_inputs) or "no audio inputs"
                raise EngineError("bad_request", f"this {caps.family} backend takes {takes}, not {name!r}")
            if not isinstance(m, dict) or not isinstance(m.get("pcm"), bytes) or len(m["pcm"]) % 4:
                raise EngineError("bad_request", f"the {name} must be {{pcm: float32 bytes, sample_rate}}")
            audio = np.frombuffer(m["pcm"], dtype=np.float32)
            if audio.size == 0:
                raise EngineError("bad_request", f"the {name} is empty")
            channels = m.get("channels", 1)
            if not isinstance(channels, int) or isinstance(channels, bool) or not 1 <= channels <= 8 \
                    or audio.size % channels:
                raise EngineError("bad_request", f"the {name}: channels must be 1-8 and divide the samples")
            want, rate = caps.audio_inputs[name].channels, caps.input_rate(name)
            if channels != want or int(m.get("sample_rate", 0)) != rate:
                layout = "mono" if want == 1 else f"{want}-channel"
                raise EngineError("bad_request", f"the {name} must be {layout} float32 at {rate} Hz")
            if channels > 1:
                audio = audio.reshape(channels, -1)
            out[str(name)] = audio
        return out

    def generate(self, req_id: int, msg: dict[str, Any]) -> None:
        if self.backend is None:
            raise EngineError("bad_request", "generate before load")
        prompts = msg.get("prompts")
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) and p for p in prompts):
            raise EngineError("bad_request", "prompts must be a non-empty list of non-empty strings")
        p = msg.get("params") or {}
        if not isinstance(p, dict):
            raise EngineError("bad_request", "params must be a map")
        caps = self.backend.capabilities
        audio_in = self._audio_in(msg, caps)
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
                send({"type": "progress", "id": req_id, "step": step, "total": total,
                      "elapsed": round(now - t0, 4)})

        if self.cancel_event.is_set():
            raise Cancelled()
        if self.test_oom_min_batch and len(prompts) >= self.test_oom_min_batch:
            raise RuntimeError(f"CUDA out of memory (simulated for tests: batch {len(prompts)} >= "
                               f"{self.test_oom_min_batch})")
        on_audio = None
        if msg.get("stream") and caps.streams:
            sr_out = caps.sample_rate

            def on_audio(offset: int, chunk: np.ndarray) -> None:
                send({"type": "audio", "id": req_id, "offset": int(offset), "shape": list(chunk.shape),
                      "sample_rate": sr_out, "pcm": np.ascontiguousarray(chunk, dtype=np.float32).tobytes()})

        audio, sr = self.backend.run(prompts, p, on_step, audio_in, on_audio=on_audio)
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        send({"type": "result", "id": req_id, "pcm": audio.tobytes(), "shape": list(audio.shape),
              "dtype": "float32", "sample_rate": int(sr), "seconds": round(time.perf_counter() - t0, 4),
              "memory": memory()})


    def train(self, req_id: int, msg: dict[str, Any]) -> None:
        """A LoRA training run: progress per step (with the smoothed loss), then the result."""
        from dgx_music.common.families import TRAIN

        if self.backend is None:
            raise EngineError("bad_request", "train before load")
        caps = self.backend.capabilities
        if TRAIN not in caps.tasks or not callable(getattr(self.backend, "train", None)):
            raise EngineError("bad_request", f"{caps.family} models cannot be trained here: training a style "
                                             f"needs an ACE-Step model")
        items, work_dir = msg.get("items"), msg.get("work_dir")
        if not isinstance(items, list) or not items or not isinstance(work_dir, str) or not work_dir:
            raise EngineError("bad_request", "train needs items (a non-empty list) and a work_dir")
        t0 = time.perf_counter()
        last = [0.0]

        def on_step(step: int, total: int, loss: float | None, phase: str) -> None:
            if self.cancel_event.is_set():
                raise Cancelled()
            if self.test_step_delay:
                time.sleep(self.test_step_delay)
            now = time.perf_counter()
            if step <= 1 or step == total or phase != "training" or now - last[0] >= PROGRESS_INTERVAL:
                last[0] = now
                send({"type": "progress", "id": req_id, "step": step, "total": total,
                      "elapsed": round(now - t0, 4), "loss": loss, "phase": phase})

        if self.cancel_event.is_set():
            raise Cancelled()
        result = self.backend.train(items, msg.get("params") or {}, work_dir, on_step)
        send({"type": "result", "id": req_id, **result, "seconds_total": round(time.perf_counter() - t0, 4),
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
