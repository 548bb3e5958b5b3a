"""op.midi (queue a transcription) and track.midi (read a MIDI file back: a track's, or a job's)."""

from __future__ import annotations

import asyncio
from typing import Any

from dgx_music.common import protocol
from dgx_music.common.midi import MAX_MIDI_BYTES, MIDI
from dgx_music.daemon import libfiles
from dgx_music.daemon.handlers import Context, HandlerError, method
from dgx_music.daemon.handlers.args import Args
from dgx_music.daemon.jobs.midi import upload_midi_path


@method("op.midi")
async def midi(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Queue a transcription of a track (or an uploaded audio file) to a standard MIDI file."""
    return await ctx.daemon.scheduler.submit(params, kind=MIDI)


async def midi_file(ctx: Context, params: dict[str, Any]) -> tuple[str, bytes, dict[str, Any]]:
    """(name, bytes, about) of the MIDI a request names: `id` a track (its latest transcription) or
    `job` a MIDI job (the track's MIDI it made, or an uploaded file's). Shared with HTTP."""
    a = Args(params).only("id", "job")
    track_id, job_id = a.str("id", None, max_len=64), a.int("job", None, lo=1)
    if (track_id is None) == (job_id is None):
        raise HandlerError(protocol.INVALID_PARAMS, "id: give a track id (id) or a MIDI job (job), one of them",
                           field="id")
    store = ctx.daemon.store
    if job_id is not None:
        job = await store.get_job(job_id)
        p = job.get("params") or {}
        if p.get("kind") != MIDI:
            raise HandlerError(protocol.NOT_FOUND, f"job: job {job_id} is not a MIDI job; it made no MIDI", field="job")
        if job["state"] != "done":
            raise HandlerError(protocol.NOT_FOUND, f"job: job {job_id} is {job['state']}; its MIDI is written "
                                                   "when it is done", field="job")
        if p.get("source_id"):
            track_id = p["source_id"]
        else:
            rel, name = upload_midi_path(job_id), str(p.get("source_name") or f"job {job_id}")
    if track_id is not None:
        track = await store.get_track(track_id)
        if not track.get("midi_path"):
            raise HandlerError(protocol.NOT_FOUND, f"id: track {track_id} has no MIDI yet (dgx-music midi "
                                                   f"{track_id})", field="id")
        rel, name = track["midi_path"], track["title"]
    loop = asyncio.get_running_loop()
    try:
        path = await loop.run_in_executor(None, libfiles.library_file, ctx.daemon.storage.root, rel)
    except libfiles.OutsideRoot as exc:
        raise HandlerError(protocol.FORBIDDEN, str(exc)) from None
    try:
        data = await loop.run_in_executor(None, _read, path)
    except FileNotFoundError:
        raise HandlerError(protocol.NOT_FOUND, f"the MIDI file {rel} is missing") from None
    return name, data, {"path": rel, "track_id": track_id, "job_id": job_id}


def _read(path: Any) -> bytes:
    with open(path, "rb") as f:
        data = f.read(MAX_MIDI_BYTES + 1)
    if len(data) > MAX_MIDI_BYTES:
        raise HandlerError(protocol.INVALID_PARAMS, f"the MIDI file {path.name} is over {MAX_MIDI_BYTES} bytes")
    return data


@method("track.midi")
async def track_midi(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """A MIDI file's bytes: a track's (`id`) or a MIDI job's result (`job`)."""
    name, data, about = await midi_file(ctx, params)
    return {"name": name, "data": data, **about}
