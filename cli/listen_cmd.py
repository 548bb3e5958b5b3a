"""`dgx-music listen JOB`: a running MusicGen job's audio as it is made, to a WAV file or the speakers."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from dgx_music.cli.common import EXIT_FAILED, EXIT_OK, add_client_flags, emit, fail, run_client
from dgx_music.common.client import Client
from dgx_music.common.stream_audio import PipePlayer, StreamPlayerError, WavSink, open_player, receive

#: Seconds between progress lines when stderr is not a terminal.
LINE_EVERY = 2.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "listen", help="hear a running MusicGen job while it generates, or write its stream to a WAV",
        description="Stream a queued or running MusicGen job's audio as it is made: from the start (what is "
                    "made so far comes first), then each new chunk until the job ends. With --to, write it to a "
                    "WAV file as it arrives (no sound card needed; the file plays while it grows); otherwise "
                    "play it. ACE-Step jobs do not stream (a diffusion model makes the whole clip at once).",
        epilog="examples:\n  dgx-music listen 12\n  dgx-music listen 12 --to preview.wav\n"
               "  dgx-music listen 12 --variation 1 --to v1.wav --float\n"
               "  dgx-music generate \"lofi piano\" --duration 60 --listen",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job", type=int, help="the job id")
    p.add_argument("--to", metavar="FILE.wav", help="write the stream to this WAV file instead of playing it")
    p.add_argument("--variation", type=int, default=0, metavar="N", help="which variation of the batch (default 0)")
    p.add_argument("--float", action="store_true", help="with --to: 32-bit float samples (default 16-bit PCM)")
    add_client_flags(p)
    p.set_defaults(func=listen_cmd)


def listen_cmd(args: argparse.Namespace) -> int:
    if args.to is not None and Path(args.to).suffix.lower() != ".wav":
        return fail(args, "invalid_params", "--to: the stream is written as a WAV file; name it FILE.wav", 2)
    return run_client(args, listen)


async def listen(client: Client, args: argparse.Namespace) -> int:
    sink: Any
    if args.to is not None:
        sink = WavSink(args.to, "FLOAT" if args.float else "PCM_16")
        fmt = "f32" if args.float else "s16"
    else:
        fmt = "s16"
        try:
            sink = await open_player()
        except StreamPlayerError as exc:
            return fail(args, "no_audio_output", str(exc), EXIT_FAILED)
    tty = sys.stderr.isatty() and not args.json
    last_line: list[float] = []  # when the last progress line was written (not a TTY)

    def progress(d: dict[str, Any]) -> None:
        """Seconds received, on stderr: one line redrawn on a terminal, else a line now and then
        (the first chunk, then at most one every LINE_EVERY s), so a pipe or a log sees it move."""
        end = (d["offset"] + d["frames"]) / d["sample_rate"]
        if tty:
            sys.stderr.write(f"\rjob {args.job}: {end:6.1f} s received ")
            sys.stderr.flush()
        elif not args.json and (not last_line or time.monotonic() - last_line[0] >= LINE_EVERY):
            last_line[:] = [time.monotonic()]
            print(f"job {args.job}: {end:.1f} s received", file=sys.stderr, flush=True)

    try:
        end = await receive(client, args.job, sink, variation=args.variation, fmt=fmt, on_chunk=progress)
    except StreamPlayerError as exc:
        return fail(args, "no_audio_output", str(exc), EXIT_FAILED)
    except BaseException:
        if isinstance(sink, PipePlayer):
            await sink.close()  # Ctrl-C or a lost daemon: silence now, not after the buffered audio
        raise
    if tty:
        sys.stderr.write("\n")
    seconds = end["samples"] / end["sample_rate"] if end.get("sample_rate") else 0.0
    out = {**end, "seconds": round(seconds, 3), "path": str(Path(args.to).resolve()) if args.to else None}
    emit(args, out, lambda o: f"job {args.job}: {o['seconds']:.1f} s streamed ({o['reason']})"
         + (f" to {o['path']}" if o["path"] else "") + (f": {o['message']}" if o.get("message") else ""))
    return EXIT_OK if end["reason"] == "complete" else EXIT_FAILED
