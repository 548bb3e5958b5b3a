"""Training a style (a LoRA) on your own tracks or files, as a queued job (`style.train`).

Submitting checks the request (common/training.py) and what only the daemon knows: the model
is one whose family can train (ACE-Step; a MusicGen daemon refuses naming the model), the name
is free, the tracks exist, a directory is inside the data directory and every file in it has a
caption. The row keeps what the run needs: the track ids, or the files with their captions.

Running is not a generation: `Work.compute` asks the worker to train (engine supervisor
`train`), reporting step, smoothed loss, steps per second and ETA; the worker caches latents and
writes checkpoints in the job's work directory (<data>/styles/.work/job-N), so a killed daemon
or worker resumes at the last checkpoint when the job runs again. `Work.commit` moves the
finished adapter to <storage>/styles/NAME (one rename) and records the style with the job's end in
one transaction; a cancel removes the work directory, so nothing half-written is left.

Styles live under the storage root (`store.storage`, by default the data directory), their row's
path relative to it, so on shared storage a style trained on one host is used on every host. The
work directory stays on the training host's data directory; on shared storage the adapter is
copied into a temporary directory named for this host next to its place, then renamed into it, so
another host never sees half a style.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shutil
import threading
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from dgx_music.common import families, protocol
from dgx_music.common.families import TRAIN
from dgx_music.common.paths import temp_prefix
from dgx_music.common.fmt import plural
from dgx_music.common.schemas import MAX_SEED, ParamError
from dgx_music.common.training import AUDIO_SUFFIXES, validate_train
from dgx_music.daemon import libfiles
from dgx_music.daemon.engine.errors import EngineError
from dgx_music.daemon.handlers import HandlerError
from dgx_music.daemon.engine.supervisor import GenerateResult
from dgx_music.daemon.jobs.kinds import JobContext, JobKind, JobRow, StepProgress, Work
from dgx_music.daemon.store import StoreError

log = logging.getLogger("dgx_music.queue")

TRAIN_KIND = "train"
STYLES = "styles"
WORK = ".work"
TRAINING = "training"  # where a bare directory name is looked up: <data>/training/NAME
STYLE_META = "style.json"


def styles_dir(data_dir: Path) -> Path:
    return libfiles.plain(data_dir, STYLES)


def style_dir(root: Path, name: str) -> Path:
    """A style's adapter directory under `root`, the storage root (shared by every host)."""
    return styles_dir(root) / name


def work_dir(data_dir: Path, job_id: int) -> Path:
    return styles_dir(data_dir) / WORK / f"job-{int(job_id)}"


def directory_files(data_dir: Path, directory: str, caption: str | None) -> list[dict[str, str]]:
    """The audio files of a training directory with their captions (NAME.txt beside NAME.wav, else
    `caption`) and lyrics (NAME.lyrics.txt); the directory must be inside the data directory, as
    every path a request names (blocking: run in a thread)."""
    root = data_dir.resolve()
    p = Path(directory).expanduser()
    path = (p if p.is_absolute() else root / TRAINING / p).resolve()
    if path != root and root not in path.parents:
        raise HandlerError(protocol.FORBIDDEN, f"directory: the daemon reads training audio only inside its data "
                                               f"directory; copy the files to {root / TRAINING}/NAME and give NAME",
                           field="directory")
    if not path.is_dir():
        raise HandlerError(protocol.NOT_FOUND, f"directory: no directory {path} (bare names are looked up in "
                                               f"{root / TRAINING})", field="directory")
    out = []
    for f in sorted(path.iterdir()):
        if f.suffix.lower() not in AUDIO_SUFFIXES or not f.is_file():
            continue
        side, lyr = f.with_suffix(".txt"), f.with_name(f.stem + ".lyrics.txt")
        text = side.read_text(errors="replace").strip() if side.is_file() else (caption or "").strip()
        if not text:
            raise ParamError("caption", f"{f.name} has no caption: give one (--caption) or put it in {side.name}")
        out.append({"path": str(f), "caption": text[:2000], "name": f.name,
                    "lyrics": lyr.read_text(errors="replace").strip() if lyr.is_file() else ""})
    if not out:
        raise ParamError("directory", f"{path} holds no audio files ({', '.join(AUDIO_SUFFIXES)})")
    return out


class TrainKind(JobKind):
    """A LoRA trained on the model the job names; its result is a style, not tracks."""

    name = TRAIN_KIND

    def owns(self, job: Mapping[str, Any]) -> bool:
        return (job.get("params") or {}).get("operation") == TRAIN_KIND

    def describe(self, job: Mapping[str, Any]) -> str:
        p = job.get("params") or {}
        return f"training style {p.get('name')} ({p.get('steps')} steps)"

    async def check(self, ctx: JobContext, raw: dict[str, Any]) -> JobRow:
        req = validate_train(raw)
        model = ctx.check_model(req.model)
        family = ctx.family_of(model)
        if not families.family(family).does(TRAIN):
            able = [families.family(f) for f in families.with_task(TRAIN)]
            names = ", ".join(m for f in able for m in f.operation_models)
            raise ParamError("model", f"training a style needs an ACE-Step model ({names}); {model} is "
                                      f"{families.family(family).title}: start the daemon with --model ace-step "
                                      "or name one with --model")
        await self._check_name_free(ctx, req.name)
        loop = asyncio.get_running_loop()
        files: list[dict[str, str]] = []
        if req.tracks:
            for tid in req.tracks:
                await ctx.library_track("tracks", tid)
            what = plural(len(req.tracks), "track")
        else:
            files = await loop.run_in_executor(ctx.submit_pool, directory_files, ctx.data_dir,
                                               str(req.directory), req.caption)
            what = plural(len(files), "file")
        params = {"family": family, "operation": TRAIN_KIND, "name": req.name, "steps": req.steps,
                  "rank": req.rank, "lr": req.lr, "checkpoint_every": req.checkpoint_every,
                  "tracks": list(req.tracks or []), "files": files, "directory": req.directory}
        seed = req.seed if req.seed is not None else secrets.randbelow(MAX_SEED + 1)
        return JobRow(prompt=f"style {req.name} from {what}", params=params, count=1, seed=seed, model=model,
                      summary=f"train style {req.name} on {what}, {req.steps} steps, rank {req.rank}")

    async def _check_name_free(self, ctx: JobContext, name: str) -> None:
        try:
            await ctx.store.get_style(name)
        except StoreError as exc:
            if exc.code != "not_found":
                raise
        else:
            raise HandlerError(protocol.CONFLICT, f"name: a style named {name} exists already: pick another name, "
                                                  f"or delete it first (dgx-music loras rm {name})", field="name")
        for job in await ctx.store.list_jobs():
            p = job.get("params") or {}
            if p.get("operation") == TRAIN_KIND and p.get("name") == name:
                raise HandlerError(protocol.CONFLICT, f"name: job {job['id']} is already training a style named "
                                                      f"{name}", field="name")

    async def prepare(self, ctx: JobContext, job: dict[str, Any]) -> Work:
        p = job["params"]
        items = await _items(ctx, p)
        data_dir, job_id = ctx.data_dir, int(job["id"])
        work = work_dir(data_dir, job_id)
        loop = asyncio.get_running_loop()
        await _sweep(ctx, job_id)
        wire = {"steps": int(p["steps"]), "rank": int(p["rank"]), "lr": float(p["lr"]), "seed": int(job["seed"]),
                "checkpoint_every": int(p["checkpoint_every"])}
        box: dict[str, Any] = {}

        async def compute(progress: StepProgress, cancel: threading.Event) -> GenerateResult:
            await loop.run_in_executor(ctx.pool, functools_mkdir, work)
            task = asyncio.ensure_future(ctx.engine.train(job_id, job["model"], items, wire, str(work),
                                                          _Rate(progress, job_id)))
            told = False
            while not task.done():  # the scheduler's cancel sets the flag: pass it on to the worker
                if cancel.is_set() and not told:
                    told = await ctx.engine.cancel(job_id)
                await asyncio.wait({task}, timeout=0.1)
            try:
                result = task.result()
                if cancel.is_set():
                    raise EngineError("cancelled", f"job {job_id} was cancelled")
            except EngineError as exc:
                if exc.code == "cancelled":  # nothing half-written stays: checkpoints, latents, adapter
                    await loop.run_in_executor(ctx.pool, shutil.rmtree, work, True)
                raise
            box["result"] = result
            return GenerateResult(audio=np.zeros((0, 2, 0), dtype=np.float32), sample_rate=48000,
                                  model=job["model"], backend="diffusers", device="",
                                  seconds=float(result.get("seconds") or 0.0))

        async def finish(job_id: int, rendered: list[dict[str, Any]]) -> list[dict[str, Any]]:
            result = box["result"]
            final = Path(str(result.get("path") or ""))
            if final.resolve().parent != work.resolve():
                raise EngineError("internal", f"the worker wrote the adapter to {final}, not under {work}")
            meta = {"name": p["name"], "base_model": job["model"], "steps": int(result.get("steps") or 0),
                    "rank": int(p["rank"]), "tracks": _trained_on(p), "final_loss": result.get("final_loss"),
                    "job_id": job_id, "created": time.time()}
            dest = style_dir(ctx.storage, p["name"])
            shared = dest.parent.resolve() != styles_dir(data_dir).resolve()
            size = await loop.run_in_executor(ctx.pool, _place, final, dest, meta, shared)
            row = {**meta, "size": size, "path": f"{STYLES}/{p['name']}"}
            try:
                style = await ctx.store.finish_training(job_id, row)
            except StoreError:
                await loop.run_in_executor(ctx.pool, shutil.rmtree, dest, True)
                raise
            await loop.run_in_executor(ctx.pool, shutil.rmtree, work, True)
            loss = style.get("final_loss")
            log.info("job %d: style %s saved (%d steps, smoothed loss %s, %.1f KiB)", job_id, style["name"],
                     style["steps"], "?" if loss is None else format(loss, ".4f"), style["size"] / 1024)
            return []  # no tracks: the style is the result (style.list)

        return Work(prompts=[], params=None, render=_no_render, compute=compute, finish=finish)


async def _sweep(ctx: JobContext, current: int) -> None:
    """Work directories of training jobs that ended (cancelled, done, pruned) go: a cancel that
    landed between the worker's last step and the commit leaves one behind."""
    root = styles_dir(ctx.data_dir) / WORK
    names = await asyncio.get_running_loop().run_in_executor(
        ctx.pool, lambda: [d.name for d in root.iterdir()] if root.is_dir() else [])
    for name in names:
        try:
            job_id = int(name.removeprefix("job-"))
        except ValueError:
            continue
        if job_id == current:
            continue
        try:
            state = (await ctx.store.get_job(job_id))["state"]
        except StoreError as exc:
            if exc.code != "not_found":
                raise
            state = "gone"
        if state in ("cancelled", "done", "gone"):
            await asyncio.get_running_loop().run_in_executor(ctx.pool, shutil.rmtree, root / name, True)


def functools_mkdir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


def _no_render(*args: Any) -> list[dict[str, Any]]:
    return []  # a training job makes no audio: its result goes through `finish`


def _trained_on(p: Mapping[str, Any]) -> list[str]:
    return list(p.get("tracks") or []) or [f["name"] for f in p.get("files") or []]


async def _items(ctx: JobContext, p: Mapping[str, Any]) -> list[dict[str, str]]:
    """What the worker trains on: each track's file, prompt and lyrics, or the stored files."""
    if not p.get("tracks"):
        return [{k: f[k] for k in ("path", "caption", "lyrics")} for f in p.get("files") or []]
    items = []
    for tid in p["tracks"]:
        try:
            t = await ctx.store.get_track(tid)
        except StoreError as exc:
            if exc.code == "not_found":
                raise EngineError("bad_request", f"tracks: track {tid} was deleted after the job was queued") from None
            raise
        items.append({"path": str(libfiles.library_file(ctx.data_dir, t["path"])), "caption": t["prompt"],
                      "lyrics": t.get("lyrics") or "", "language": t.get("language") or "en"})
    return items


def _place(final: Path, dest: Path, meta: dict[str, Any], shared: bool = False) -> int:
    """style.json beside the adapter, then the directory renamed into place (a leftover of a run cut
    between this rename and the row's commit is replaced). `shared`: `dest` is on the shared storage
    (maybe another filesystem): the files are copied into a temporary directory of this host beside
    it first, each fsynced, and that is renamed. Returns the adapter's size in bytes."""
    tmp = final / f".{STYLE_META}.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final / STYLE_META)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if shared:
        final = _copy_beside(final, dest)
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(final, dest)
    fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return sum(f.stat().st_size for f in dest.iterdir() if f.is_file())


def _copy_beside(src: Path, dest: Path) -> Path:
    """`src`'s plain files copied (and fsynced) into a new temporary directory next to `dest`, named
    for this host (common/paths.temp_prefix, so `libfiles.sweep_stale_temp` can tell whose it is)."""
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(dest.name), suffix=".tmp", dir=dest.parent))
    try:
        for f in sorted(src.iterdir()):
            if not f.is_file() or f.is_symlink():
                continue
            with open(f, "rb") as inp, open(tmp / f.name, "xb") as out:
                shutil.copyfileobj(inp, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


class _Rate:
    """Worker progress -> the job's: steps per second and ETA over this run (a resumed run starts
    mid-way, so the step count alone would overstate the rate), the smoothed loss, the phase."""

    def __init__(self, progress: StepProgress, job_id: int) -> None:
        self.progress, self.job_id = progress, job_id
        self.first: tuple[int, float] | None = None

    def __call__(self, p: dict[str, Any]) -> None:
        step, total, now = int(p.get("step") or 0), int(p.get("total") or 0), time.monotonic()
        phase = str(p.get("phase") or "training")
        if phase == "resumed":
            log.info("job %d: training resumes at step %d/%d (its last checkpoint)", self.job_id, step, total)
        rate = eta = None
        if phase in ("training", "resumed"):
            if self.first is None:
                self.first = (step, now)
            done, took = step - self.first[0], now - self.first[1]
            if done > 0 and took > 0:
                rate = done / took
                eta = (total - step) / rate
        loss = p.get("loss")
        self.progress(step, total, phase=phase, loss=None if loss is None else round(float(loss), 5),
                      rate=None if rate is None else round(rate, 4), eta=eta)
