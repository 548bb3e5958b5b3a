"""What a job kind is, and the registry the scheduler looks kinds up in.

Every job goes the same way: a checked submit -> a durable row -> a render in the model
worker -> its tracks (and lineage) committed with the job's end -> events. The scheduler
owns that flow and its policy (order, cancel, retries, a full disk); a `JobKind` owns only
what differs: which requests it takes and what row they make (`check`), what it asks the
worker for (`prepare`) and how the worker's audio becomes library files (`Work.render`).
So a new kind is one class registered here; the scheduler does not change.
"""

from __future__ import annotations

import abc
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
import threading
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping, Protocol

if TYPE_CHECKING:
    import numpy as np

    from dgx_music.daemon.engine.supervisor import EngineSupervisor, GenerateResult
    from dgx_music.daemon.render import RenderOptions
    from dgx_music.daemon.store import Store

#: the storage root, job, audio [batch, channels, samples], sample rate, options -> rows for Store.finish_job.
Render = Callable[[Path, dict[str, Any], "np.ndarray", int, "RenderOptions"], list[dict[str, Any]]]
#: progress(step, total, **extra): safe to call from any thread (a compute running in an executor);
#: extra keys loss, rate, phase and eta (training's) go into the job's progress as they are.
StepProgress = Callable[..., None]
#: A job's own computation in place of the model worker's (fitting with Rubber Band, a loop cut from a
#: stored track, a transcription): given progress and a cancel flag it checks between steps, it returns
#: what the worker would (audio [batch, channels, samples], its rate, the model and backend named in the
#: tracks' metadata); cancelled, it raises EngineError("cancelled"). Heavy work runs off the loop
#: (`ctx.pool`, a subprocess): the daemon's event loop never waits on it.
Compute = Callable[[StepProgress, threading.Event], Awaitable["GenerateResult"]]
#: job id, rendered rows -> the committed tracks: the job's end and its results in one transaction.
Finish = Callable[[int, list[dict[str, Any]]], Awaitable[list[dict[str, Any]]]]


class JobContext(Protocol):
    """What a kind may use of the daemon (the scheduler provides it): public members only."""

    store: "Store"
    engine: "EngineSupervisor"
    pool: Executor  # the audio thread: a running job's reads, its render and file writes
    submit_pool: Executor  # submit-time decoding, storing and look-ups: never behind a render
    max_count: int

    @property
    def data_dir(self) -> Path: ...  # local state (models, LoRAs): not the audio

    @property
    def storage(self) -> Path: ...  # the storage root: every audio file (library, stored copies) is under it

    @property
    def settings(self) -> Mapping[str, Any]: ...

    def check_model(self, name: str | None) -> str: ...

    def family_of(self, model: str) -> str: ...

    async def library_track(self, field: str, track_id: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class JobRow:
    """A checked request, as the durable job row keeps it (committed before submit answers)."""

    prompt: str
    params: dict[str, Any]
    count: int
    seed: int
    model: str
    summary: str  # for the "queued" log line


@dataclass
class Work:
    """One run of a job: the engine call, and how its output becomes library files."""

    prompts: list[str]
    params: Any  # the family's typed parameters (the engine sends `params.wire()`)
    render: Render
    inputs: dict[str, Any] = field(default_factory=dict)  # engine.generate keyword arguments: melody, prefix, audio_in
    stream: bool = False  # offer the audio as it is made (stream_relay.py)
    target_lufs: float | None = None  # None: the daemon's audio.target_lufs
    compute: Compute | None = None  # None: the model worker makes the audio (engine.generate)
    finish: Finish | None = None  # None: Store.finish_job (rendered rows become library tracks)


class JobKind(abc.ABC):
    """One kind of job. `name` is what `Scheduler.submit` is asked for."""

    name: str = ""

    @abc.abstractmethod
    def owns(self, job: Mapping[str, Any]) -> bool:
        """Whether a stored job (any version's row) is of this kind."""

    @abc.abstractmethod
    async def check(self, ctx: JobContext, raw: dict[str, Any]) -> JobRow:
        """Untrusted request -> the row to commit; ParamError / HandlerError refuse it. Anything the
        job needs later (a stored source or melody) is on disk before this returns."""

    @abc.abstractmethod
    async def prepare(self, ctx: JobContext, job: dict[str, Any]) -> Work:
        """The running job's engine call. EngineError (e.g. `bad_request` for a source that went
        missing) ends the job as the engine's own errors do."""

    def describe(self, job: Mapping[str, Any]) -> str:
        """A few words for the "started" log line."""
        return self.name


_KINDS: list[JobKind] = []


def register(kind: JobKind) -> JobKind:
    """Add (or replace, by name) a kind. Later registrations are asked first in `kind_of`, so a
    specific kind (an operation) is found before the general one it could be mistaken for."""
    _KINDS[:] = [k for k in _KINDS if k.name != kind.name]
    _KINDS.insert(0, kind)
    return kind


def unregister(name: str) -> None:
    _KINDS[:] = [k for k in _KINDS if k.name != name]


def named(name: str) -> JobKind:
    for k in _KINDS:
        if k.name == name:
            return k
    raise KeyError(f"no job kind {name!r}")


def kind_of(job: Mapping[str, Any]) -> JobKind:
    """The kind of a stored job."""
    for k in _KINDS:
        if k.owns(job):
            return k
    raise LookupError(f"job {job.get('id')} is of no known kind")
