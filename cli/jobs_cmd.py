"""generate, remix, extend, queue, job, cancel, retry, move: the job queue from the command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from dgx_music.cli.common import (EXIT_FAILED, EXIT_OK, EXIT_USAGE, add_client_flags, emit, fail,
                                  human_duration, job_document, print_json, run_client)
from dgx_music.common.client import Client
from dgx_music.common.families import CONTINUE, DEFAULT_FAMILY, MUSICGEN, REGISTRY, REPAINT_TASK, family_for_name
from dgx_music.common.fmt import with_article
from dgx_music.common.fitloop import METHODS as FITLOOP_METHODS
from dgx_music.common.fitloop import remix_request as fitloop_remix
from dgx_music.common.fitloop import validate as fitloop_validate
from dgx_music.common.operations import EXTEND, METHODS, remix_request, validate_operation
from dgx_music.common.params import TRACK_ID_RE, ParamError
from dgx_music.common.schemas import (ACE_MAX_DURATION, ACE_MIN_DURATION, COMMON_FIELDS, LANGUAGES,
                                      check_for_model, fields_of)
from dgx_music.common.protocol import RemoteError
from dgx_music.common.speaker import remote_session_problem
from dgx_music.common.stream_audio import PipePlayer, StreamPlayerError, chunk_array, open_player

TERMINAL = ("done", "failed", "cancelled")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate", help="queue a generation job (add --wait to follow it)",
        description="Queue a generation job. The model's family decides which options apply: MusicGen "
                    "(small, medium, large, melody: instrumental clips) or ACE-Step (ace-step, ace-step-base: "
                    "whole songs, with sung lyrics or instrumental). Without --wait, prints the job id and "
                    "returns at once (the job is already safe on disk). With --wait, shows live progress and "
                    "ends with the tracks' ids and file paths.",
        epilog='examples:\n  dgx-music generate "dark ambient drone, slow pads" --duration 20 --count 3 --wait\n'
               '  dgx-music generate "upbeat funk, slap bass" --seed 1234 --cfg 4 --json\n'
               '  dgx-music generate "80s synth pop" --model melody --melody hum.wav --wait\n'
               '  dgx-music generate "synthwave, female vocals" --model ace-step --lyrics song.txt --language en \\\n'
               '      --bpm 96 --key "A minor" --time-signature 4 --duration 120 --wait\n'
               '  echo "[verse] ... [chorus] ..." | dgx-music generate "indie folk" --model ace-step --lyrics -\n'
               '  dgx-music generate "lofi beat" --model ace-step --steps 8 --lora my-style:0.8  '
               '(a LoRA in <data>/loras/my-style)',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("prompt", help="what the music should sound like (ACE-Step: the caption)")
    p.add_argument("--duration", type=float, metavar="S",
                   help="seconds of audio per variation. MusicGen: 0.5 to 300 (default 8; past 30 s the model "
                        f"continues its own music in 30 s windows). ACE-Step: {ACE_MIN_DURATION:g} to "
                        f"{ACE_MAX_DURATION:g} (default 30)")
    p.add_argument("--count", type=int, metavar="N", help="variations of the same prompt, made as one batch (default 1)")
    p.add_argument("--seed", type=int, metavar="N", help="fix the seed to reproduce a result (default: random, stored)")
    p.add_argument("--model", metavar="M", help="model for this job (default: the daemon's): small, medium, large, "
                                                "melody, ace-step, ace-step-base, a hub id or a directory")
    p.add_argument("--lufs", type=float, metavar="L", dest="target_lufs", help="loudness target (default -14)")
    mg = p.add_argument_group("MusicGen options")
    mg.add_argument("--temperature", type=float, metavar="T", help="sampling temperature (default 1.0)")
    mg.add_argument("--top-k", type=int, metavar="K", help="sample from the K likeliest tokens (default 250)")
    mg.add_argument("--top-p", type=float, metavar="P", help="nucleus sampling, 0 = off (default 0)")
    mg.add_argument("--cfg", type=float, metavar="C", help="classifier-free guidance (default 3.0)")
    mg.add_argument("--melody", metavar="SRC",
                    help="a melody to follow (melody models): a library track id such as 12-0, or an audio "
                         "file here (WAV, FLAC, OGG, MP3; its first 30 s)")
    ace = p.add_argument_group("ACE-Step options")
    ace.add_argument("--lyrics", metavar="FILE", help="lyrics from FILE ('-': standard input), with section tags "
                                                      "such as [verse] and [chorus]; none: instrumental")
    ace.add_argument("--language", metavar="CODE", help="vocal language: en, de, fr, es, ja, zh, ... or unknown "
                                                        f"({len(LANGUAGES)} codes; default en)")
    ace.add_argument("--bpm", type=int, metavar="N", help="tempo, 30 to 300 (default: the model picks)")
    ace.add_argument("--key", metavar="KEY", help='one of the 24 keys: "A minor", "F# major", "Bb major", "Am"')
    ace.add_argument("--time-signature", type=int, metavar="N", help="beats per bar: 2, 3, 4 or 6")
    ace.add_argument("--steps", type=int, metavar="N", help="denoising steps (default: the variant's; 8 for turbo)")
    ace.add_argument("--guidance", type=float, metavar="G", help="classifier-free guidance (turbo: 1.0, off)")
    ace.add_argument("--shift", type=float, metavar="S", help="timestep shift of the schedule (default 3.0)")
    ace.add_argument("--lora", metavar="NAME[:SCALE]", help="a style `dgx-music train` made (`dgx-music loras`), "
                                                           "or a LoRA directory under the daemon's <data>/loras "
                                                           "(a bare name) or <data>/models; scale default 1.0")
    p.add_argument("--wait", action="store_true", help="follow the job until it ends")
    p.add_argument("--listen", action="store_true", help="play the audio as it is made (MusicGen; implies --wait; "
                                                        "`dgx-music listen JOB --to FILE.wav` without a sound card)")
    add_client_flags(p)
    p.set_defaults(func=generate_cmd)

    p = sub.add_parser(
        "remix", help="generate again from a track's prompt and parameters, with a new seed",
        description="Queue a job with the same prompt, duration, model and sampling parameters as TRACK "
                    "and a new random seed (or --seed). For a track an operation made (repaint, cover, "
                    "stems, add part), that operation is run again on the same source (the daemon's stored "
                    "copy of it), with the same settings and a new seed; --count does not apply there.")
    p.add_argument("track", metavar="TRACK")
    p.add_argument("--seed", type=int, metavar="N")
    p.add_argument("--count", type=int, metavar="N")
    p.add_argument("--wait", action="store_true", help="follow the job until it ends")
    add_client_flags(p)
    p.set_defaults(func=lambda a: run_client(a, remix))

    p = sub.add_parser(
        "extend", help="continue a track: the same music, longer (ACE-Step: at either end)",
        description="Queue a job whose track is TRACK with --by more seconds that carry it on. A MusicGen "
                    "track is continued forward: the model hears the last 10 s and goes on from there. An "
                    "ACE-Step track (or any track, with --model ace-step) gets the new music after its end, or "
                    "with --before ahead of its start: a repaint of silence added there, every sample of TRACK "
                    "kept but for a 20 ms crossfade into the new part. Prompt, sampling parameters and model "
                    "default to TRACK's. TRACK itself is left as it is; the result is a new track.",
        epilog="examples:\n  dgx-music extend 12-0 --by 30 --wait\n"
               '  dgx-music extend 12-0 --by 20 --prompt "the same groove, the drums drop out" --count 2\n'
               "  dgx-music extend 14-0 --by 15 --before --wait      # an ACE-Step track: an intro\n"
               "  dgx-music extend 12-0 --by 10 --before --model ace-step --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("track", metavar="TRACK")
    p.add_argument("--by", type=float, required=True, metavar="S",
                   help="seconds to add (the whole track may be at most 300 s with MusicGen, 600 s with ACE-Step)")
    p.add_argument("--before", action="store_true",
                   help="add the new music ahead of the start (ACE-Step; MusicGen only continues forward)")
    p.add_argument("--prompt", help="what the new music should sound like (default: TRACK's prompt)")
    p.add_argument("--model", metavar="M", help="model (default: TRACK's; melody models cannot continue)")
    p.add_argument("--seed", type=int, metavar="N")
    p.add_argument("--count", type=int, metavar="N",
                   help="different continuations, made as one batch (MusicGen; an ACE-Step extension makes one)")
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


#: Where a field of the request comes from on the command line, when not --FIELD.
FLAGS = {"target_lufs": "--lufs"}
MUSICGEN_ONLY = frozenset(fields_of(MUSICGEN)) - COMMON_FIELDS


def flag_of(field: str, flags: dict[str, str] | None = None) -> str:
    return {**FLAGS, **(flags or {})}.get(field, f"--{field.replace('_', '-')}")


def check_offline(raw: dict[str, Any], model: str | None) -> None:
    """The check the daemon makes, before connecting, as far as the family is known here
    (schemas.check_for_model): the whole check when the model's name tells the family; for the
    daemon's own model only what every family refuses, the rest the daemon names for its family."""
    check_for_model(raw, model)


def flagged(exc: RemoteError, flags: dict[str, str] | None = None) -> RemoteError:
    """The daemon's `invalid_params` for a request field, named as this command line spells it
    ("duration: ..." -> "--duration: ..."; `flags` maps a command's own names, e.g. extend's --by)."""
    field = exc.data.get("field")
    if exc.code != "invalid_params" or not isinstance(field, str) or not exc.message.startswith(f"{field}: "):
        return exc
    return RemoteError(exc.code, f"{flag_of(field, flags)}: {exc.message[len(field) + 2:]}", exc.data)


def _read_lyrics(src: str) -> str:
    try:
        if src == "-":
            return sys.stdin.read()
        return Path(src).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ParamError("lyrics", f"cannot read {src}: {exc}") from None


def _params(args: argparse.Namespace) -> dict[str, Any]:
    raw = {"prompt": args.prompt}
    try:
        for key in ("duration", "count", "seed", "temperature", "top_k", "top_p", "cfg", "model", "target_lufs",
                    "language", "bpm", "key", "time_signature", "steps", "guidance", "shift", "lora"):
            value = getattr(args, key, None)
            if value is not None:
                raw[key] = value
        if getattr(args, "lyrics", None) is not None:
            raw["lyrics"] = _read_lyrics(args.lyrics)
        check_offline(raw, args.model)  # the same check the daemon makes, before connecting
        melody = getattr(args, "melody", None)
        if melody is not None:
            raw.update(_melody(melody))
    except ParamError as exc:  # named as on this command line; `field` stays the protocol's name
        raise ParamError(exc.field, f"{flag_of(exc.field)}: {exc.message}" if exc.field != "prompt"
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
    if j.get("host"):  # a shared queue: the box that runs (or ran) it
        lines.append(f"  host      {j['host']}")
    prog = j.get("progress")
    if prog:
        lines.append(f"  progress  {prog['step']}/{prog['total']} steps, {human_duration(prog['elapsed'])} elapsed, "
                     f"ETA {human_duration(prog.get('eta'))}")
    fam = REGISTRY.get(p.get("family") or DEFAULT_FAMILY)
    if fam is not None and fam.song_fields:
        song = [f"{p['bpm']} BPM" if p.get("bpm") else "", p.get("key") or "",
                f"{p['time_signature']}/4" if p.get("time_signature") else "",
                f"{p.get('steps')} steps" if p.get("steps") else ""]
        lines.append(f"  {fam.name:<9} {', '.join(x for x in song if x) or 'model picks tempo and key'}; "
                     f"{'lyrics in ' + str(p.get('language')) if p.get('lyrics') else 'instrumental'}")
    if p.get("kind") == "midi":  # dgx-music midi: no track; the MIDI goes with the source track, or is the job's
        lines.append(f"  midi      of {p.get('source_id') or p.get('source_name')}, "
                     f"{p.get('bpm') or 120} BPM, GM program {p.get('program', 0)}")
    if p.get("melody_source"):
        lines.append(f"  melody    {p['melody_source']}")
    if p.get("extend"):
        lines.append(f"  extends   {p['extend']} by {p.get('duration', '-')} s")
    if j.get("error"):
        lines.append(f"  error     {j['error']}")
    if j.get("track_ids"):
        lines.append(f"  tracks    {' '.join(j['track_ids'])}")
    return "\n".join(lines)


def training_extra(d: dict[str, Any]) -> str:
    """A training job's progress beyond step/total: smoothed loss, steps per second, or what it encodes."""
    phase = str(d.get("phase") or "")
    if phase.startswith("encoded"):
        return f"  encoding audio ({phase.removeprefix('encoded ')})"
    out = f"  loss {d['loss']:.4f}" if isinstance(d.get("loss"), (int, float)) else ""
    return out + (f"  {d['rate']:.2f} steps/s" if isinstance(d.get("rate"), (int, float)) else "")


def _bar(frac: float, width: int = 30) -> str:
    full = int(frac * width)
    return "#" * full + "-" * (width - full)


def generate_cmd(args: argparse.Namespace) -> int:
    try:
        raw = _params(args)  # bad values are usage errors, found before any connection
    except ParamError as exc:
        return fail(args, "invalid_params", exc.message, EXIT_USAGE, field=exc.field)
    return run_client(args, lambda client, args: generate(client, args, raw))


async def generate(client: Client, args: argparse.Namespace, raw: dict[str, Any],
                   method: str = "job.submit", flags: dict[str, str] | None = None) -> int:
    """Submit (`method`: job.submit, or an operation such as op.stems) and report it (see submit_job).
    With --listen the job's audio plays as it is made; the player starts first, so no sound device
    fails before anything is queued."""
    player: PipePlayer | None = None
    tab_why: str | None = None  # no local output: the stream goes to the browser tab (cli/speaker_out.py)
    if getattr(args, "listen", False):
        tab_why = remote_session_problem()
        if tab_why is None:
            try:
                player = await open_player()
            except StreamPlayerError as exc:
                tab_why = str(exc).split(". ")[0]
    try:
        return await submit_job(client, args, method, raw, player=player, tab_why=tab_why)
    except RemoteError as exc:
        if player is not None:
            await player.close()
        raise flagged(exc, flags) if method == "job.submit" or flags else exc from None
    except BaseException:
        if player is not None:
            await player.close()
        raise


async def submit_job(client: Client, args: argparse.Namespace, method: str, params: dict[str, Any], *,
                     player: PipePlayer | None = None, tab_why: str | None = None) -> int:
    """Queue a job with `method` (job.submit, or another method that answers a job) and report it:
    at once, or with `args.wait` (or a `player`: the stream plays too) live progress until it ends.
    --json prints `job_document`: the job, plus `tracks` after --wait. Every command that queues a
    job should come through here."""
    if not getattr(args, "wait", False) and player is None and tab_why is None:
        j = await client.call(method, params, timeout=args.timeout)
        emit(args, job_document(j),
             lambda j: f"queued job {j['id']} (seed {j['seed']}); follow it with `dgx-music job {j['id']}`")
        return EXIT_OK
    await client.subscribe("job", "model")  # events of a quick job may come right after the answer
    j = await client.call(method, params, timeout=args.timeout)
    job_id = j["id"]
    tty = sys.stderr.isatty() and not args.json
    if not args.json:
        print(f"job {job_id} queued (seed {j['seed']})", file=sys.stderr)
    if player is not None:
        try:
            await client.call("job.listen", {"id": job_id, "format": "s16"}, timeout=args.timeout)
        except RemoteError as exc:  # e.g. an ACE-Step job: it runs, only without a preview
            print(f"not playing job {job_id} as it generates: {exc.message}", file=sys.stderr)
            await player.close()
            player = None
    if tab_why is not None:  # nothing to hear here: the browser tab plays it, if one is open
        from dgx_music.cli.speaker_out import to_tab

        problem = await to_tab(client, args, "speaker.stream", {"job_id": job_id}, f"job {job_id}", tab_why)
        if problem is not None:
            print(f"dgx-music: not playing job {job_id} as it generates: {problem[1]}; the job keeps going",
                  file=sys.stderr)
    last_line = 0.0
    try:
        async for ev in client.events():
            if ev.name == "job.audio" and player is not None and ev.data.get("job_id") == job_id:
                try:
                    player.write(int(ev.data["offset"]), chunk_array(ev.data), int(ev.data["sample_rate"]))
                except StreamPlayerError as exc:  # the player died after its start: the job goes on
                    await player.close()
                    if tty:
                        sys.stderr.write("\n")
                    return fail(args, "no_audio_output", f"{exc}; job {job_id} keeps running in the daemon "
                                f"(`dgx-music job {job_id}` follows it)", EXIT_FAILED, job_id=job_id)
                continue
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
                                 f"ETA {human_duration(d.get('eta'))}{training_extra(d)}   ")
                sys.stderr.flush()
            elif ev.name == "job.progress" and not args.json and time.monotonic() - last_line > 5:
                last_line = time.monotonic()
                print(f"job {job_id}: step {ev.data['step']}/{ev.data['total']}{training_extra(ev.data)}",
                      file=sys.stderr)
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
    except (KeyboardInterrupt, asyncio.CancelledError):
        # Ctrl-C reaches a coroutine as CancelledError (asyncio.run turns it into KeyboardInterrupt after):
        # the job is the daemon's, so say it goes on and how to stop it, then exit 130.
        print(f"\njob {job_id} keeps running in the daemon; `dgx-music cancel {job_id}` stops it", file=sys.stderr)
        raise
    if tty:
        sys.stderr.write("\n")
    if player is not None:
        if not args.json:
            print("playing out the rest of the stream (Ctrl-C stops it; the track is kept)", file=sys.stderr)
        await player.finish()
    j = await client.call("job.get", {"id": job_id}, timeout=args.timeout)
    tracks = [await client.call("track.get", {"id": t}, timeout=args.timeout) for t in j["track_ids"]]
    if args.json:
        print_json(job_document(j, tracks))
    elif j["state"] == "done":
        for t in tracks:
            extra = ", ".join(x for x in (f"{t['bpm']:.0f} BPM" if t.get("bpm") else "", t.get("key") or "",
                                           f"{t['lufs']:.1f} LUFS" if t.get("lufs") is not None else "") if x)
            print(f"{t['id']}  {t.get('file') or t['path']}  ({human_duration(t['duration'])}"
                  f"{', ' + extra if extra else ''})")
    else:
        print(f"job {job_id} {j['state']}" + (f": {j['error']}" if j.get("error") else ""), file=sys.stderr)
    return EXIT_OK if j["state"] == "done" else EXIT_FAILED


REMIX_KEYS = ("duration", "temperature", "top_k", "top_p", "cfg", "target_lufs", "melody", "melody_source", "extend",
              "lyrics", "language", "bpm", "key", "time_signature", "steps", "guidance", "shift", "lora",
              "lora_scale")


async def remix(client: Client, args: argparse.Namespace) -> int:
    t = await client.call("track.get", {"id": args.track}, timeout=args.timeout)
    op = remix_request(t)
    methods = METHODS
    if op is None and (op := fitloop_remix(t)) is not None:  # a fit or loop: the same request again
        methods = FITLOOP_METHODS
        if args.seed is not None and "prompt" not in op[1]:
            return fail(args, "invalid_params", f"--seed: {t['id']} was made by {op[0]} of a source, which takes "
                                                "no seed", EXIT_USAGE, field="seed")
    if op is not None:  # an operation's track: the same operation on the same stored source, a new seed
        operation, req = op
        if args.count is not None:
            return fail(args, "invalid_params", f"--count: {t['id']} was made by {operation.replace('_', ' ')}, "
                                                "which makes one job's tracks at a time; leave --count out",
                        EXIT_USAGE, field="count")
        if args.seed is not None:
            req["seed"] = args.seed
        try:
            (validate_operation if methods is METHODS else fitloop_validate)(operation, req)
        except ParamError as exc:
            flag = "--seed" if exc.field == "seed" else exc.field
            return fail(args, "invalid_params", f"{flag}: {exc.message}", EXIT_USAGE, field=exc.field)
        return await generate(client, args, req, methods[operation])
    raw: dict[str, Any] = {k: v for k, v in (t.get("params") or {}).items() if k in REMIX_KEYS and v is not None}
    raw.update(prompt=t["prompt"], model=t.get("model"))
    if args.seed is not None:
        raw["seed"] = args.seed
    if args.count is not None:
        raw["count"] = args.count
    return await generate(client, args, {k: v for k, v in raw.items() if v is not None})


#: extend's own name for the request's duration.
EXTEND_FLAGS = {"duration": "--by"}


async def extend(client: Client, args: argparse.Namespace) -> int:
    t = await client.call("track.get", {"id": args.track}, timeout=args.timeout)
    params = t.get("params") or {}
    family = (family_for_name(args.model) if args.model else None) or t.get("family") or params.get("family") \
        or DEFAULT_FAMILY
    fam = REGISTRY.get(family)
    if fam is not None and fam.does(REPAINT_TASK):  # ACE-Step: op.extend, a repaint past either end
        return await _extend_by_repaint(client, args, t)
    keep = [k for k in REMIX_KEYS if k not in ("duration", "melody", "melody_source", "extend")
            and k in MUSICGEN_ONLY | COMMON_FIELDS]
    raw: dict[str, Any] = {k: v for k, v in params.items() if k in keep and v is not None}
    raw.update(prompt=args.prompt or t["prompt"], model=args.model or t.get("model"), extend=t["id"],
               duration=args.by)
    for key in ("seed", "count"):
        if getattr(args, key) is not None:
            raw[key] = getattr(args, key)
    raw = {k: v for k, v in raw.items() if v is not None}
    try:
        if (fam is None or not fam.does(CONTINUE)) and not args.model:
            raise ParamError("model", f"{t['id']} is {with_article(params['family'])} track; continuing a track is a "
                                      "MusicGen feature (give --model small, medium or large)")
        if args.before:
            raise ParamError("before", "MusicGen can only continue a track forward, from its end; to add music "
                                       "ahead of it, extend it with an ACE-Step model (--model ace-step)")
        check_offline(raw, raw.get("model"))
    except ParamError as exc:
        return fail(args, "invalid_params", f"{flag_of(exc.field, EXTEND_FLAGS)}: {exc.message}", EXIT_USAGE,
                    field=exc.field)
    return await generate(client, args, raw, flags=EXTEND_FLAGS)


#: How `extend` spells the fields of an ExtendRequest (common/operations.py).
EXTEND_OP_FLAGS = {"by": "--by", "before": "--before", "source": "TRACK", "model": "--model", "seed": "--seed",
                   "prompt": "--prompt"}


async def _extend_by_repaint(client: Client, args: argparse.Namespace, t: dict[str, Any]) -> int:
    """An ACE-Step extension (op.extend): TRACK with --by seconds added after it (or --before), its
    sampler settings and model unless told otherwise; prompt and lyrics default to TRACK's in the daemon."""
    params = t.get("params") or {}
    raw: dict[str, Any] = {k: params[k] for k in ("steps", "guidance", "shift", "language")
                           if params.get(k) is not None}
    raw.update(source=t["id"], by=args.by, before=args.before, prompt=args.prompt, seed=args.seed,
               model=args.model or t.get("model"))
    raw = {k: v for k, v in raw.items() if v is not None}
    try:
        if args.count is not None:
            raise ParamError("count", "an ACE-Step extension makes one track per job; leave --count out (run it "
                                      "again, or remix the result, for another take)")
        validate_operation(EXTEND, raw)
    except ParamError as exc:
        return fail(args, "invalid_params", f"{flag_of(exc.field, EXTEND_OP_FLAGS)}: {exc.message}", EXIT_USAGE,
                    field=exc.field)
    return await generate(client, args, raw, METHODS[EXTEND], flags=EXTEND_OP_FLAGS)


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
            if j.get("host") and j["state"] in ("running", "processing"):  # a shared queue: on which box
                prompt = f"[{j['host']}] {prompt}"
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
