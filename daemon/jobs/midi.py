"""The MIDI job: a track, a stem or an uploaded audio file transcribed to a standard MIDI file.

Submitting: the request is checked (common/midi.py), the source decoded and stored as the
operations store theirs (daemon/audio_store.SOURCES, before the job row is committed, so a
retry reads the same audio), and the tempo written in the file is fixed: the request's `bpm`,
else the track's analysed tempo, else what it was asked to be, else 120.

Running needs no model worker (Work.compute): Basic Pitch (daemon/audio/transcribe.py) runs
with onnxruntime in the audio thread, reporting progress per batch of 2 s windows and checking
the cancel flag between them. The .mid is written atomically, then ONE store transaction
attaches it to the track (`midi_path`) and marks the job done (Store.attach_midi); the file it
replaces goes to the trash. An uploaded file's MIDI is the job's own result: <data>/midi/<job>.mid,
outside library/ (no track row names it), read back by job id.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Mapping

import numpy as np

from dgx_music.common.midi import MIDI, MODEL, validate_midi
from dgx_music.common.schemas import MELODY_KEY_RE, ParamError
from dgx_music.daemon import libfiles, render
from dgx_music.daemon.audio_store import SOURCES
from dgx_music.daemon.engine.errors import EngineError
from dgx_music.daemon.engine.supervisor import GenerateResult
from dgx_music.daemon.jobs.kinds import JobContext, JobKind, JobRow, Work
from dgx_music.daemon.store import StoreError

THREADS = 2  # onnxruntime intra-op threads: the box's other cores serve the model worker and the loop


def upload_midi_path(job_id: int) -> str:
    """Where an uploaded file's MIDI is kept (relative to the data dir)."""
    return f"midi/{int(job_id)}.mid"


def track_midi_path(track: Mapping[str, Any], job_id: int) -> str:
    """A track's MIDI: beside its audio, named by the job (a new transcription never overwrites the
    file the row names until the row names the new one)."""
    audio = PurePosixPath(str(track["path"]))
    return str(audio.with_name(f"{audio.stem}.midi-{int(job_id)}.mid"))


class MidiKind(JobKind):
    name = MIDI

    def owns(self, job: Mapping[str, Any]) -> bool:
        return (job.get("params") or {}).get("kind") == MIDI

    def describe(self, job: Mapping[str, Any]) -> str:
        p = job.get("params") or {}
        return f"MIDI of {p.get('source_id') or p.get('source_name')}"

    async def check(self, ctx: JobContext, raw: dict[str, Any]) -> JobRow:
        req = validate_midi(raw)
        loop = asyncio.get_running_loop()
        data_dir = ctx.storage
        track: dict[str, Any] | None = None
        if req.source_audio is not None:
            audio = await loop.run_in_executor(ctx.submit_pool, SOURCES.from_bytes, req.source_audio, "source_audio")
            key = await loop.run_in_executor(ctx.submit_pool, SOURCES.save, data_dir, audio)
            seconds, source_name = SOURCES.seconds(audio), (req.source_name or "uploaded audio")
        elif MELODY_KEY_RE.match(req.source or ""):  # audio the daemon stored earlier: its MIDI is the job's
            key = str(req.source)
            if not await loop.run_in_executor(ctx.submit_pool, SOURCES.refresh, data_dir, key):
                raise ParamError("source", f"no stored source {key}; give a track id instead")
            seconds = await loop.run_in_executor(ctx.submit_pool, SOURCES.seconds_of, data_dir, key)
            source_name = req.source_name or f"source {key}"
        else:
            track = await ctx.library_track("source", str(req.source))
            path = libfiles.library_file(data_dir, track["path"])
            audio = await loop.run_in_executor(ctx.submit_pool, SOURCES.from_file, path, "source")
            key = await loop.run_in_executor(ctx.submit_pool, SOURCES.save, data_dir, audio)
            seconds, source_name = SOURCES.seconds(audio), track["title"]
        bpm = req.bpm or (track or {}).get("bpm") or (track or {}).get("req_bpm") or None
        params = {"kind": MIDI, "source_key": key, "source_id": track["id"] if track else None,
                  "source_name": source_name[:200], "duration": round(seconds, 3),
                  "bpm": round(float(bpm), 3) if bpm else None, "program": req.program}
        what = track["id"] if track else source_name
        return JobRow(prompt=f"MIDI of {source_name}"[:500], params=params, count=1, seed=0, model=MODEL,
                      summary=f"MIDI of {what} ({seconds:.1f} s)")

    async def prepare(self, ctx: JobContext, job: dict[str, Any]) -> Work:
        p = job["params"]
        job_id = int(job["id"])
        notes: list[Any] = []

        def transcribe(progress: Callable[[int, int], None], cancel: threading.Event) -> GenerateResult:
            from dgx_music.daemon.audio import transcribe as bp

            try:
                audio = SOURCES.load(ctx.storage, p["source_key"])
            except (OSError, ValueError, RuntimeError) as exc:
                raise EngineError("bad_request", f"the job's source audio cannot be read: {exc}") from None
            try:
                notes.extend(bp.transcribe(audio, SOURCES.sample_rate, progress=progress, cancel=cancel,
                                           threads=THREADS))
            except bp.Cancelled:
                raise EngineError("cancelled", f"job {job_id} was cancelled") from None
            return GenerateResult(audio=np.zeros((1, 1, 1), np.float32), sample_rate=SOURCES.sample_rate,
                                  model=MODEL, backend="onnxruntime", device="cpu", seconds=0.0)

        async def compute(progress: Callable[[int, int], None], cancel: threading.Event) -> GenerateResult:
            if p.get("source_id"):
                try:
                    track = await ctx.store.get_track(p["source_id"])
                except StoreError as exc:
                    if exc.code == "not_found":
                        raise EngineError("bad_request", f"track {p['source_id']} was deleted; its MIDI has "
                                                         "nowhere to go") from None
                    raise
                target["path"] = track_midi_path(track, job_id)
            return await asyncio.get_running_loop().run_in_executor(ctx.pool, transcribe, progress, cancel)

        target: dict[str, str] = {"path": upload_midi_path(job_id)}

        def write(data_dir: Path, job: dict[str, Any], audio: Any, sr: int,
                  opts: render.RenderOptions) -> list[dict[str, Any]]:
            from dgx_music.daemon.audio import transcribe as bp

            data = bp.midi_bytes(notes, bpm=p.get("bpm"), program=int(p.get("program") or 0),
                                 name=str(p.get("source_name") or ""))
            libfiles.write_bytes_atomic(data_dir, target["path"], data)
            return [{"path": target["path"], "notes": len(notes)}]

        async def finish(job_id: int, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            if not p.get("source_id"):
                return await ctx.store.finish_job_bare(job_id)
            track, old = await ctx.store.attach_midi(job_id, p["source_id"], rows[0]["path"])
            if old:
                await asyncio.get_running_loop().run_in_executor(ctx.pool, libfiles.move_to_trash, ctx.storage, old)
            publish = getattr(ctx, "publish", None)
            if publish is not None:
                publish("track.updated", libfiles.with_file(ctx.storage, track))
            return []

        return Work(prompts=[job["prompt"]], params=None, render=write, compute=compute, finish=finish)


KIND = MidiKind()
