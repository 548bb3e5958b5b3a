"""Client side of streaming preview: write or play a job's audio as the daemon streams it.

The daemon pushes `job.audio` events (PCM at a sample offset) and one `job.audio_end` after
`job.listen` (docs/protocol.md, "Streaming audio"). A sink places each chunk at its offset:
`WavSink` writes a WAV file (the header is brought up to date after every chunk, so the file
is playable while it grows); `PipePlayer` pipes 16-bit PCM into a command-line player that
reads raw audio from stdin (pw-play, paplay, aplay, ffplay), the same players tui/player.py
uses for files. Without a working audio output it fails with a message that says what to do.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any, Protocol

import numpy as np

NO_PLAYER = ("no audio output for streaming: install one of pw-play, paplay, aplay or ffplay (and have a sound "
             "device; over SSH forward PulseAudio/PipeWire, docs/tui.md), or write the stream to a file with "
             "`dgx-music listen JOB --to FILE.wav`")


class StreamPlayerError(RuntimeError):
    pass


def chunk_array(data: dict[str, Any]) -> np.ndarray:
    """A job.audio event's PCM -> float32 [frames, channels]."""
    fmt, ch = data["format"], int(data["channels"])
    if fmt == "s16":
        return np.frombuffer(data["pcm"], dtype="<i2").reshape(-1, ch).astype(np.float32) / 32767.0
    return np.frombuffer(data["pcm"], dtype="<f4").reshape(-1, ch)


class Sink(Protocol):
    def write(self, offset: int, audio: np.ndarray, sample_rate: int) -> None: ...
    async def finish(self) -> None: ...


class WavSink:
    """Writes chunks at their offsets into a WAV (16-bit PCM by default; `subtype` as soundfile names it)."""

    def __init__(self, path: str | Path, subtype: str = "PCM_16") -> None:
        self.path = Path(path)
        self.subtype = subtype
        self.file: Any = None
        self.frames = 0

    def write(self, offset: int, audio: np.ndarray, sample_rate: int) -> None:
        import soundfile as sf

        if self.file is None:
            self.file = sf.SoundFile(str(self.path), "w", samplerate=sample_rate, channels=audio.shape[1],
                                     subtype=self.subtype, format="WAV")
        if offset > self.frames:  # never happens with the daemon's streams; keep the timeline anyway
            self.file.seek(self.frames)
            self.file.write(np.zeros((offset - self.frames, audio.shape[1]), np.float32))
            self.frames = offset
        self.file.seek(offset)  # an earlier offset replaces what followed it (the engine started over)
        self.file.write(audio)
        self.frames = offset + audio.shape[0]
        self.file.flush()  # header up to date: the file plays while it grows

    async def finish(self) -> None:
        if self.file is not None:
            self.file.truncate(self.frames)
            self.file.close()


def raw_player_command(rate: int, channels: int) -> list[str] | None:
    """The first player on PATH that reads raw s16le PCM from stdin (DGX_MUSIC_PLAYER picks one)."""
    cmds = {
        "pw-play": ["--rate", str(rate), "--channels", str(channels), "--format", "s16", "-"],
        "paplay": ["--raw", f"--rate={rate}", f"--channels={channels}", "--format=s16le"],
        "aplay": ["-q", "-t", "raw", "-f", "S16_LE", "-r", str(rate), "-c", str(channels)],
        "ffplay": ["-nodisp", "-autoexit", "-loglevel", "error", "-f", "s16le", "-ar", str(rate),
                   "-ch_layout", "stereo" if channels == 2 else "mono", "-i", "-"],
    }
    names = list(cmds)
    if os.environ.get("PULSE_SERVER"):
        names.insert(0, names.pop(names.index("paplay")))
    wanted = os.environ.get("DGX_MUSIC_PLAYER", "").strip()
    if wanted in names:
        names.insert(0, names.pop(names.index(wanted)))
    for name in names:
        exe = shutil.which(name)
        if exe:
            return [exe, *cmds[name]]
    return None


class PipePlayer:
    """Plays a stream through a command-line player's stdin; `start()` checks that it really plays."""

    def __init__(self, rate: int = 32000, channels: int = 1) -> None:
        self.rate, self.channels = rate, channels
        self.proc: asyncio.subprocess.Process | None = None
        self.played = 0

    async def start(self, probe: float = 0.5) -> None:
        """Start the player and feed it a moment of silence; one that exits at once (no sound device)
        raises StreamPlayerError with what it said."""
        cmd = raw_player_command(self.rate, self.channels)
        if cmd is None:
            raise StreamPlayerError(NO_PLAYER)
        try:
            self.proc = await asyncio.create_subprocess_exec(*cmd, stdin=asyncio.subprocess.PIPE,
                                                             stdout=asyncio.subprocess.DEVNULL,
                                                             stderr=asyncio.subprocess.PIPE, start_new_session=True)
        except OSError as exc:  # on PATH but not runnable
            raise StreamPlayerError(f"cannot run {cmd[0]}: {exc.strerror or exc}. {NO_PLAYER}") from None
        self._feed(np.zeros((self.rate // 10, self.channels), np.float32))
        try:
            await asyncio.wait_for(self.proc.wait(), probe)
        except asyncio.TimeoutError:
            return  # still playing: it works
        await self._died()

    async def _died(self) -> None:
        err = b""
        if self.proc is not None and self.proc.stderr is not None:
            err = await self.proc.stderr.read()
        said = err.decode("utf-8", "replace").strip().splitlines()
        raise StreamPlayerError(f"the audio player stopped at once{': ' + said[-1] if said else ''} "
                                f"(no sound device?). {NO_PLAYER}")

    def _feed(self, audio: np.ndarray) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()
        try:
            self.proc.stdin.write(pcm)  # buffered by the transport: the loop never waits for playback
        except (BrokenPipeError, ConnectionResetError):
            raise StreamPlayerError(f"the audio player stopped. {NO_PLAYER}") from None

    def write(self, offset: int, audio: np.ndarray, sample_rate: int) -> None:
        if self.proc is None or self.proc.returncode is not None:
            raise StreamPlayerError(f"the audio player stopped. {NO_PLAYER}")
        if offset > self.played:
            audio = np.concatenate([np.zeros((offset - self.played, audio.shape[1]), np.float32), audio])
        elif offset < self.played:  # what was played cannot be unplayed: go on from where we are
            audio = audio[self.played - offset:]
        if audio.shape[0]:
            self._feed(audio)
            self.played += audio.shape[0]

    async def finish(self) -> None:
        """Let the player play out what it has, then end."""
        if self.proc is None or self.proc.stdin is None:
            return
        try:
            await self.proc.stdin.drain()
            self.proc.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass
        await self.proc.wait()

    def stop(self) -> None:
        """Silence now (SIGTERM); `close()` also waits for the player to go."""
        if self.proc is not None and self.proc.returncode is None:
            try:
                self.proc.terminate()
            except ProcessLookupError:
                pass

    async def close(self) -> None:
        self.stop()
        if self.proc is not None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()  # the transport closes once every pipe has
            try:
                await asyncio.wait_for(self.proc.wait(), 5.0)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def open_player(rate: int = 32000, channels: int = 1) -> PipePlayer:
    """Where a stream is heard: the one place that decides, for `listen` and `generate --listen`.
    Today the first command-line player that really plays here; raises StreamPlayerError saying
    what to do instead (write the stream to a file)."""
    player = PipePlayer(rate, channels)
    await player.start()
    return player


async def receive(client: Any, job_id: int, sink: Sink, *, variation: int = 0, fmt: str = "s16",
                  on_chunk: Any = None) -> dict[str, Any]:
    """job.listen, then feed every chunk to `sink` until job.audio_end; returns that event's data."""
    await client.call("job.listen", {"id": job_id, "variation": variation, "format": fmt})
    async for ev in client.events():
        if ev.data.get("job_id") != job_id:
            continue
        if ev.name == "job.audio":
            audio = chunk_array(ev.data)
            sink.write(int(ev.data["offset"]), audio, int(ev.data["sample_rate"]))
            if on_chunk is not None:
                on_chunk(ev.data)
        elif ev.name == "job.audio_end":
            await sink.finish()
            return dict(ev.data)
    raise ConnectionError("the connection to the daemon ended before the stream did")
