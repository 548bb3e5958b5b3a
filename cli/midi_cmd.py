"""`dgx-music midi TRACK|FILE [--to FILE.mid]`: transcribe a track, a stem or an audio file to MIDI."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from dgx_music.cli.common import (EXIT_FAILED, EXIT_OK, EXIT_USAGE, add_client_flags, emit, fail, job_document,
                                  print_json, run_client)
from dgx_music.cli.track_ops_cmd import source_fields
from dgx_music.common.client import Client
from dgx_music.common.midi import METHOD, validate_midi
from dgx_music.common.schemas import ParamError

FLAGS = {"source": "SOURCE", "source_audio": "SOURCE", "program": "--program", "bpm": "--bpm"}

EPILOG = """\
SOURCE is a library track id (12-0, a stem too) or an audio file here (WAV, FLAC, OGG, MP3; uploaded).
A track's MIDI is stored with it (`dgx-music show` lists it; a new transcription replaces it);
a file's MIDI is the job's result. The tempo in the file is the track's analysed BPM (--bpm sets it;
120 for a file). Transcription is Basic Pitch on the daemon's CPU: about 14x real time.

examples:
  dgx-music midi 12-0 --wait
  dgx-music midi 12-2 --to bass.mid            # a stem; --to waits and writes the file here
  dgx-music midi riff.wav --to riff.mid --program 33 --json
  dgx-music midi 12-0 --bpm 96                  # queue it; `dgx-music job N` follows it"""


def register(sub: argparse._SubParsersAction) -> None:
    helptext = "transcribe a track, stem or audio file to a standard MIDI file"
    p = sub.add_parser("midi", help=helptext, description="Transcribe a track, a stem or an audio file to a "
                       "standard MIDI file (a job in the queue). Without --wait or --to, prints the job id at once.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="SOURCE", help="a library track id (12-0) or an audio file")
    p.add_argument("--to", metavar="FILE.mid", help="write the MIDI file here when the job is done (implies --wait)")
    p.add_argument("--program", type=int, metavar="N", help="General MIDI program of the notes, 0-127 (default 0)")
    p.add_argument("--bpm", type=float, metavar="BPM", help="tempo written in the file (default: the track's)")
    p.add_argument("--wait", action="store_true", help="follow the job until it ends")
    add_client_flags(p)
    p.set_defaults(func=midi_cmd)


def midi_cmd(args: argparse.Namespace) -> int:
    try:
        raw: dict[str, Any] = {k: v for k, v in (("program", args.program), ("bpm", args.bpm)) if v is not None}
        raw.update(source_fields(args.source))
        validate_midi(raw)
        if args.to is not None and Path(args.to).expanduser().is_dir():
            raise ParamError("to", f"{args.to} is a directory; name the .mid file to write")
    except ParamError as exc:
        return fail(args, "invalid_params", f"{FLAGS.get(exc.field, '--' + exc.field)}: {exc.message}", EXIT_USAGE,
                    field=exc.field)
    return run_client(args, lambda client, args: _run(client, args, raw))


async def _run(client: Client, args: argparse.Namespace, raw: dict[str, Any]) -> int:
    if not (args.wait or args.to):
        j = await client.call(METHOD, raw, timeout=args.timeout)
        emit(args, job_document(j), lambda j: f"queued job {j['id']}; follow it with `dgx-music job {j['id']}`")
        return EXIT_OK
    await client.subscribe("job")
    j = await client.call(METHOD, raw, timeout=args.timeout)
    job_id = j["id"]
    tty = sys.stderr.isatty() and not args.json
    if not args.json:
        print(f"job {job_id} queued: {j['prompt']}", file=sys.stderr)
    try:
        async for ev in client.events():
            if ev.data.get("id") != job_id:
                continue
            if ev.name == "job.progress" and tty:
                d = ev.data
                sys.stderr.write(f"\rtranscribing: {d['step']}/{d['total']} windows   ")
                sys.stderr.flush()
            elif ev.name in ("job.finished", "job.failed", "job.cancelled") and not (
                    ev.name == "job.failed" and ev.data.get("retrying")):
                break
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(f"\njob {job_id} keeps running in the daemon; `dgx-music cancel {job_id}` stops it", file=sys.stderr)
        raise
    if tty:
        sys.stderr.write("\n")
    j = await client.call("job.get", {"id": job_id}, timeout=args.timeout)
    doc = job_document(j)
    if j["state"] != "done":
        if args.json:
            print_json(doc)
        else:
            print(f"job {job_id} {j['state']}" + (f": {j['error']}" if j.get("error") else ""), file=sys.stderr)
        return EXIT_FAILED
    got = await client.call("track.midi", {"job": job_id}, timeout=args.timeout)
    doc["midi"] = {"path": got["path"], "track_id": got["track_id"], "bytes": len(got["data"])}
    if args.to:
        dest = Path(args.to).expanduser()
        tmp = dest.with_name(f".{dest.name}.part")
        tmp.write_bytes(got["data"])
        tmp.replace(dest)
        doc["midi"]["file"] = str(dest.resolve())
    if args.json:
        print_json(doc)
    else:
        where = doc["midi"].get("file") or (f"stored with track {got['track_id']}" if got["track_id"]
                                            else f"job {job_id}'s result (`--to FILE.mid` writes it here)")
        print(f"MIDI of {got['name']}: {where} ({len(got['data'])} bytes)")
    return EXIT_OK
