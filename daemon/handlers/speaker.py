"""speaker.*: play a track or a running job's stream in the user's browser tab (daemon/speaker_hub.py)."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from dgx_music.common.speaker import SpeakerPlay, SpeakerSeek, SpeakerStop, SpeakerStream, validate
from dgx_music.daemon.handlers import Context, HandlerError, method
from dgx_music.daemon.handlers.stream import check_streamable
from dgx_music.daemon.handlers.tracks import read_track
from dgx_music.daemon.speaker_hub import SpeakerHubError, hub_of


def _mapped(fn: Callable[[Context, dict[str, Any]], Awaitable[Any]]) -> Callable[[Context, dict[str, Any]], Awaitable[Any]]:
    """The hub's refusals (no_speaker, conflict) as protocol errors."""
    async def run(ctx: Context, params: dict[str, Any]) -> Any:
        try:
            return await fn(ctx, params)
        except SpeakerHubError as exc:
            raise HandlerError(exc.code, exc.message, **exc.data) from None
    run.__doc__ = fn.__doc__
    return run


@method("speaker.status")
@_mapped
async def status(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """How many browser tabs are open as speakers, the page's URL, and what the playing tab reports."""
    validate(SpeakerStop, params)  # no fields
    return hub_of(ctx.daemon).status()


@method("speaker.play")
@_mapped
async def play(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Play a library track in the most recently focused browser tab."""
    req = validate(SpeakerPlay, params)
    hub = hub_of(ctx.daemon)
    hub.target()  # no tab: say so before looking anything up
    # While the database is away, a track this host has seen still plays (its file is on storage).
    track = await read_track(ctx, req.track_id, full=False)
    return hub.play(req, track)


@method("speaker.stream")
@_mapped
async def stream(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Play a queued or running MusicGen job's audio in the tab as it is made."""
    req = validate(SpeakerStream, params)
    hub = hub_of(ctx.daemon)
    hub.target()
    job = await check_streamable(ctx, req.job_id, req.variation, field="job_id")
    return {**hub.stream(req), "state": job["state"]}


@method("speaker.stop")
@_mapped
async def stop(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Silence the speaker tab."""
    validate(SpeakerStop, params)
    return hub_of(ctx.daemon).stop()


@method("speaker.seek")
@_mapped
async def seek(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Move the tab's playing track to a position (a live stream cannot seek)."""
    return hub_of(ctx.daemon).seek(validate(SpeakerSeek, params))
