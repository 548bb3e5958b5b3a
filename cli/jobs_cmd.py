"""generate, remix, extend, queue, job, cancel, retry, move: the job queue from the command line."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from dgx_music.cli.common import (EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError, add_client_flags, emit, fail,
                                  human_duration, print_json, run_client)
from dgx_music.common.client import Client
from dgx_music.common.params import TRACK_ID_RE, ParamError, validate_params

TERMINAL = ("done", "failed", "cancelled")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate", help="queue a generation job (add --wait to follow it)",
        description="Queue a MusicGen job. Without --wait, prints the job id and returns at once "
                    "(the job is already safe on disk). With --wait, shows live progress and ends "
                    "with the tracks' ids and file paths.",
        epilog='examples:\n  dgx-music generate "dark ambient drone, slow pads" --duration 20 --count 3 --wait\n'
               '  dgx-music generate "upbeat funk, slap bass" --seed 1234 --cfg 4 --json\n'
               '  dgx-music generate "80s synth pop" --model melody --melody hum.wav --wait',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("prompt", help="what the music should sound like")
    p.add_argument("--duration", type=float, metavar="S", help="seconds of audio, 0.5 to 300 (default 8); past 30 s the model continues "
                        "its own music in 30 s windows")
    p.add_argument("--count", type=int, metavar="N", help="variations of the same prompt, made as one batch (default 1)")
    p.add_argument("--seed", type=int, metavar="N", help="fix the seed to reproduce a result (default: random, stored)")
    p.add_argument("--temperature", type=float, metavar="T", help="sampling temperature (default 1.0)")
    p.add_argument("--top-k", type=int, metavar="K", help="sample from the K likeliest tokens (default 250)")
    p.add_argument("--top-p", type=float, metavar="P", help="nucleus sampling, 0 = off (default 0)")
    p.add_argument("--cfg", type=float, metavar="C", help="classifier-free guidance (default 3.0)")
    p.add_argument("--model", metavar="M", help="model for this job (default: the daemon's)")
    p.add_argument("--lufs", type=float, metavar="L", dest="target_lufs", help="loudness target (default -14)")
    p.add_argument("--melody", metavar="SRC",
                   help="a melody to follow (melody models): a library track id such as 12-0, or an audio "
                        "file here (WAV, FLAC, OGG, MP3; its first 30 s)")
    p.add_argument("--wait", action="store_true", help="follow the job until it ends")
    add_client_flags(p)
    p.set_defaults(func=generate_cmd)

    p = sub.add_parser(
        "remix", help="generate again from a track's prompt and parameters, with a new seed",
        description="Queue a job with the same prompt, duration, model and sampling parameters as TRACK "
                    "and a new random seed (or --seed).")
    p.add_argument("track", metavar="TRACK")
    p.add_argument("--seed", type=int, metavar="N")
    p.add_argument("--count", type=int, metavar="N")
    p.add_argument("--wait", action="store_true", help="follow the job until it ends")
    add_client_flags(p)
    p.set_defaults(func=lambda a: run_client(a, remix))

    p = sub.add_parser(
        "extend", help="continue a track: the same music, longer",
        description="Queue a job whose track is TRACK followed by --by more seconds that carry it on: the "
                    "model hears the last 10 s and continues from there. Prompt, sampling parameters and "
                    "model default to TRACK's. TRACK itself is left as it is; the result is a new track.",
        epilog="examples:\n  dgx-music extend 12-0 --by 30 --wait\n"
               '  dgx-music extend 12-0 --by 20 --prompt "the same groove, the drums drop out" --count 2',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("track", metavar="TRACK")
    p.add_argument("--by", type=float, required=True, metavar="S",
                   help="seconds to add (the whole track may be at most 300 s)")
    p.add_argument("--prompt", help="what the continuation should sound like (default: TRACK's prompt)")
    p.add_argument("--model", metavar="M", help="model (default: TRACK's; melody models cannot continue)")
    p.add_argument("--seed", type=int, metavar="N")
    p.add_argument("--count", type=int, metavar="N", help="different continuations, made as one batch")
    p.add_argument("--wait", action="store_true", help="follow the job until it ends")
    add_client_flags(p)
    p.set_defaults(func=lambda a: run_client(a, extend))

    p = sub.add_parser("queue", help="list jobs waiting and running",
                       description="Jobs waiting and running, in the order they will run.")
    p.add_argument("--all", action="store_true", help="include finished jobs")
    p.add_argument("--limit", type=int, default=200, metavar="N")
    add_client_flags(p)
    p.set_defaults(func=lambda a: run_client(a, queue))

    p = sub.add_parser("job", help="show one job", description="State, progress, attempts, error and tracks of a job.")
    p.add_argument("id", type=int, metavar="JOB")
    add_client_flags(p)
    p.set_defaults(func=lambda a: run_client(a, job))

    for name, helptext in (("cancel", "cancel a job (a running one stops at its next step)"),
                           ("retry", "queue a failed or cancelled job again")):
        p = sub.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:] + ".")
        p.add_argument("id", type=int, metavar="JOB")
        add_client_flags(p)
        p.set_defaults(func=lambda a, m=name: run_client(a, lambda c, args: simple(c, args, f"job.{m}")))

    p = sub.add_parser("move", help="reorder a queued job", description="Move a queued job in the queue.")
    p.add_argument("id", type=int, metavar="JOB")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--top", dest="to", action="store_const", const="top", help="to the front")
    where.add_argument("--up", dest="to", action="store_const", const="up", help="one place earlier")
    where.add_argument("--down", dest="to", action="store_const", const="down", help="one place later")
    add_client_flags(p)
    p.set_defaults(func=lambda a: run_client(a, move))


def _params(args: argparse.Namespace) -> dict[str, Any]:
    raw = {"prompt": args.prompt}
    for key in ("duration", "count", "seed", "temperature", "top_k", "top_p", "cfg", "model", "target_lufs"):
        value = getattr(args, key)
        if value is not None:
            raw[key] = value
    try:
        validate_params(raw)  # the same check the daemon makes, before connecting
        melody = getattr(args, "melody", None)
        if melody is not None:
            raw.update(_melody(melody))
    except ParamError as exc:
        raise UsageError(f"--{exc.field.replace('_', '-')}: {exc.message}" if exc.field != "prompt"
                         else f"prompt {exc.message}") from None
    return raw


def _melody(src: str) -> dict[str, Any]:
    """A track id goes as it is; a local file is decoded here and uploaded (the daemon may be remote)."""
    if TRACK_ID_RE.match(src) and not Path(src).exists():
        return {"melody": src}
    path = Path(src).expanduser()
    if not path.exists():
        raise ParamError("melody", f"{src} is neither a library track id (like 12-0) nor a file")
    from dgx_music.common.audio.melody import encode_upload

    return {"melody_audio": encode_upload(path), "melody_name": path.name}


def format_job(j: dict[str, Any]) -> str:
    p = j.get("params") or {}
    lines = [f"job {j['id']}: {j['state']}", f"  prompt    {j['prompt']}",
             f"  duration  {p.get('duration', '-')} s x {j['count']}, seed {j['seed']}, model {j.get('model') or '-'}",
             f"  attempts  {j['attempts']}/{j['max_attempts']}"]
    prog = j.get("progress")
    if prog:
        lines.append(f"  progress  {prog['step']}/{prog['total']} steps, {human_duration(prog['elapsed'])} elapsed, "
                     f"ETA {human_duration(prog.get('eta'))}")
    if p.get("melody_source"):
        lines.append(f"  melody    {p['melody_source']}")
    if p.get("extend"):
        lines.append(f"  extends   {p['extend']} by {p.get('duration', '-')} s")
    if j.get("error"):
        lines.append(f"  error     {j['error']}")
    if j.get("track_ids"):
        lines.append(f"  tracks    {' '.join(j['track_ids'])}")
    return "\n".join(lines)


def _bar(frac: float, width: int = 30) -> str:
    full = int(frac * width)
    return "#" * full + "-" * (width - full)


def generate_cmd(args: argparse.Namespace) -> int:
    try:
        raw = _params(args)  # bad values are usage errors, found before any connection
    except UsageError as exc:
        return fail(args, "invalid_params", str(exc), EXIT_USAGE)
    return run_client(args, lambda client, args: generate(client, args, raw))


async def generate(client: Client, args: argparse.Namespace, raw: dict[str, Any]) -> int:
    if not args.wait:
        j = await client.call("job.submit", raw, timeout=args.timeout)
        emit(args, j, lambda j: f"queued job {j['id']} (seed {j['seed']}); follow it with `dgx-music job {j['id']}`")
        return EXIT_OK
    await client.subscribe("job", "model")  # before submitting, so no event is missed
    j = await client.call("job.submit", raw, timeout=args.timeout)
    job_id = j["id"]
    tty = sys.stderr.isatty() and not args.json
    if not args.json:
        print(f"job {job_id} queued (seed {j['seed']})", file=sys.stderr)
    last_line = 0.0
    try:
        async for ev in client.events():
            if ev.name == "model.loading" and not args.json:
                # The first job may wait minutes for a download: say what is happening.
                d = ev.data
                pct = f" {d['progress'] * 100:.0f}%" if isinstance(d.get("progress"), (int, float)) else ""
                text = f"loading model {d.get('model')}{pct}: {d.get('message') or ''}"
                if tty:
                    sys.stderr.write("\r" + text[:100].ljust(100))
                    sys.stderr.flush()
                elif time.monotonic() - last_line > 5:
                    last_line = time.monotonic()
                    print(text, file=sys.stderr)
                continue
            if ev.name == "model.loaded" and tty:
                sys.stderr.write("\r" + " " * 100 + "\r")
                continue
            if ev.data.get("id") != job_id:
                continue
            if ev.name == "job.progress" and tty:
                d = ev.data
                frac = d["step"] / d["total"] if d.get("total") else 0.0
                sys.stderr.write(f"\r[{_bar(frac)}] {frac * 100:5.1f}%  {d['step']}/{d['total']}  "
                                 f"ETA {human_duration(d.get('eta'))}   ")
                sys.stderr.flush()
            elif ev.name == "job.progress" and not args.json and time.monotonic() - last_line > 5:
                last_line = time.monotonic()
                print(f"job {job_id}: step {ev.data['step']}/{ev.data['total']}", file=sys.stderr)
            elif ev.name == "job.started" and not args.json:
                print(("\r" if tty else "") + f"job {job_id} started (attempt {ev.data.get('attempt')})",
                      file=sys.stderr)
            elif ev.name == "job.processing" and tty:
                sys.stderr.write(f"\r[{_bar(1.0)}] post-processing (loudness, BPM, key)...        ")
            elif ev.name == "job.failed" and ev.data.get("retrying"):
                if not args.json:
                    print(f"\njob {job_id} hit a transient failure ({ev.data.get('error')}); retrying",
                          file=sys.stderr)
            elif ev.name in ("job.finished", "job.failed", "job.cancelled"):
                break
    except KeyboardInterrupt:
        print(f"\njob {job_id} keeps running in the daemon; `dgx-music cancel {job_id}` stops it", file=sys.stderr)
        return 130
    if tty:
        sys.stderr.write("\n")
    j = await client.call("job.get", {"id": job_id}, timeout=args.timeout)
    status = await client.call("status", timeout=args.timeout)
    tracks = [await client.call("track.get", {"id": t}, timeout=args.timeout) for t in j["track_ids"]]
    for t in tracks:
        t.pop("peaks", None)
        t["path"] = str(Path(status["data_dir"]) / t["path"])
    if args.json:
        print_json({"job": j, "tracks": tracks})
    elif j["state"] == "done":
        for t in tracks:
            extra = ", ".join(x for x in (f"{t['bpm']:.0f} BPM" if t.get("bpm") else "", t.get("key") or "",
                                           f"{t['lufs']:.1f} LUFS" if t.get("lufs") is not None else "") if x)
            print(f"{t['id']}  {t['path']}  ({human_duration(t['duration'])}{', ' + extra if extra else ''})")
    else:
        print(f"job {job_id} {j['state']}" + (f": {j['error']}" if j.get("error") else ""), file=sys.stderr)
    return EXIT_OK if j["state"] == "done" else EXIT_FAILED


REMIX_KEYS = ("duration", "temperature", "top_k", "top_p", "cfg", "target_lufs", "melody", "melody_source", "extend")


async def remix(client: Client, args: argparse.Namespace) -> int:
    t = await client.call("track.get", {"id": args.track}, timeout=args.timeout)
    raw: dict[str, Any] = {k: v for k, v in (t.get("params") or {}).items() if k in REMIX_KEYS and v is not None}
    raw.update(prompt=t["prompt"], model=t.get("model"))
    if args.seed is not None:
        raw["seed"] = args.seed
    if args.count is not None:
        raw["count"] = args.count
    return await generate(client, args, {k: v for k, v in raw.items() if v is not None})


async def extend(client: Client, args: argparse.Namespace) -> int:
    t = await client.call("track.get", {"id": args.track}, timeout=args.timeout)
    keep = [k for k in REMIX_KEYS if k not in ("duration", "melody", "melody_source", "extend")]
    raw: dict[str, Any] = {k: v for k, v in (t.get("params") or {}).items() if k in keep and v is not None}
    raw.update(prompt=args.prompt or t["prompt"], model=args.model or t.get("model"), extend=t["id"],
               duration=args.by)
    for key in ("seed", "count"):
        if getattr(args, key) is not None:
            raw[key] = getattr(args, key)
    raw = {k: v for k, v in raw.items() if v is not None}
    try:
        validate_params(raw)
    except ParamError as exc:
        flag = {"duration": "--by", "prompt": "--prompt"}.get(exc.field, f"--{exc.field.replace('_', '-')}")
        return fail(args, "invalid_params", f"{flag}: {exc.message}", EXIT_USAGE)
    return await generate(client, args, raw)


async def queue(client: Client, args: argparse.Namespace) -> int:
    res = await client.call("job.list", {"all": args.all, "limit": args.limit}, timeout=args.timeout)

    def human(res: dict[str, Any]) -> str:
        if not res["jobs"]:
            return "queue is empty" + ("" if args.all else " (--all shows finished jobs)")
        rows = [f"{'JOB':>5}  {'STATE':<10} {'PROGRESS':<16} {'DUR':>6} {'N':>2}  PROMPT"]
        for j in res["jobs"]:
            prog = j.get("progress")
            ptxt = f"{prog['step']}/{prog['total']} ETA {human_duration(prog.get('eta'))}" if prog else ""
            prompt = j["prompt"] if len(j["prompt"]) <= 50 else j["prompt"][:47] + "..."
            rows.append(f"{j['id']:>5}  {j['state']:<10} {ptxt:<16} {(j['params'] or {}).get('duration', 0):>5.1f}s "
                        f"{j['count']:>2}  {prompt}")
        return "\n".join(rows)

    emit(args, res, human)
    return EXIT_OK


async def job(client: Client, args: argparse.Namespace) -> int:
    emit(args, await client.call("job.get", {"id": args.id}, timeout=args.timeout), format_job)
    return EXIT_OK


async def simple(client: Client, args: argparse.Namespace, method: str) -> int:
    j = await client.call(method, {"id": args.id}, timeout=args.timeout)
    verb = {"job.cancel": "cancel requested for" if j["state"] in ("running", "processing") else "cancelled",
            "job.retry": "queued again:"}[method]
    emit(args, j, lambda j: f"{verb} job {j['id']} ({j['state']})")
    return EXIT_OK


async def move(client: Client, args: argparse.Namespace) -> int:
    j = await client.call("job.move", {"id": args.id, "to": args.to}, timeout=args.timeout)
    emit(args, j, lambda j: f"job {j['id']} moved {args.to} (position {j['position']})")
    return EXIT_OK
