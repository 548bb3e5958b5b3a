"""train, loras: teach the daemon your sound (a LoRA style trained on your tracks), list and delete styles."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from dgx_music.cli.common import (EXIT_OK, EXIT_USAGE, add_client_flags, emit, fail, human_bytes, print_json,
                                  run_client)
from dgx_music.common.client import Client
from dgx_music.common.fmt import plural
from dgx_music.common.schemas import TRACK_ID_RE, ParamError
from dgx_music.common.training import DEFAULT_LR, DEFAULT_RANK, DEFAULT_STEPS, validate_train

FLAGS = {"tracks": "--from", "directory": "--from", "checkpoint_every": "--checkpoint-every"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a style (a LoRA) on your own tracks or audio files (ACE-Step)",
        description="Queue a training job: a LoRA on the daemon's ACE-Step model, learnt from library tracks "
                    "(their prompts and lyrics are the captions) or a directory of audio files. It runs in the "
                    "model worker like a generation (the queue waits), checkpoints as it goes and resumes after "
                    "a restart. The result is a style: `--lora NAME[:scale]` in generate and the operations.",
        epilog="--from takes library track ids (12-0,12-1,15-0) or a directory of audio files (WAV, FLAC, OGG, "
               "MP3) inside the daemon's data directory (a bare name: <data>/training/NAME). A directory's "
               "captions come from NAME.txt beside each file, else --caption; lyrics from NAME.lyrics.txt.\n\n"
               "examples:\n  dgx-music train mysound --from 12-0,12-1,14-0 --wait\n"
               "  dgx-music train demos --from demos --caption \"lofi piano, tape hiss\" --steps 800\n"
               "  dgx-music generate \"rainy night\" --model ace-step --lora mysound:0.8 --wait",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help="the style's name (letters, digits, '_', '-', '.')")
    p.add_argument("--from", dest="source", required=True, metavar="TRACKS|DIR",
                   help="comma-separated library track ids, or a directory of audio files")
    p.add_argument("--steps", type=int, metavar="N", help=f"optimizer steps (default {DEFAULT_STEPS})")
    p.add_argument("--rank", type=int, metavar="R", help=f"LoRA rank (default {DEFAULT_RANK})")
    p.add_argument("--lr", type=float, metavar="X", help=f"learning rate (default {DEFAULT_LR:g})")
    p.add_argument("--caption", metavar="TEXT", help="caption for a directory's files without a sidecar .txt")
    p.add_argument("--checkpoint-every", type=int, metavar="K", help="steps between checkpoints (default 50)")
    p.add_argument("--seed", type=int, metavar="N", help="fix the seed (noise, timesteps, order)")
    p.add_argument("--model", metavar="M", help="an ACE-Step model (default: the daemon's)")
    p.add_argument("--wait", action="store_true", help="follow training (step, loss, steps/s, ETA) until it ends")
    add_client_flags(p)
    p.set_defaults(func=train_cmd)

    p = sub.add_parser(
        "loras", help="list your trained styles (LoRAs), or delete one",
        description="The styles `dgx-music train` made: name, base model, steps, what it learnt from, final "
                    "(smoothed) loss, size, when. `loras rm NAME` deletes one (its files go to the trash).",
        epilog="examples:\n  dgx-music loras\n  dgx-music loras --json\n  dgx-music loras rm mysound",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", nargs="?", choices=("list", "rm"), default="list", help="list (default) or rm")
    p.add_argument("name", nargs="?", help="the style to delete (with rm)")
    add_client_flags(p)
    p.set_defaults(func=loras_cmd)


def build_request(args: argparse.Namespace) -> dict[str, Any]:
    raw: dict[str, Any] = {"name": args.name}
    for key in ("steps", "rank", "lr", "caption", "checkpoint_every", "seed", "model"):
        if getattr(args, key, None) is not None:
            raw[key] = getattr(args, key)
    parts = [s.strip() for s in args.source.split(",") if s.strip()]
    if parts and all(TRACK_ID_RE.match(s) for s in parts) and not Path(args.source).exists():
        raw["tracks"] = parts
    else:
        local = Path(args.source).expanduser()
        raw["directory"] = str(local.resolve()) if local.is_dir() else args.source
    validate_train(raw)  # bad values are usage errors, found before any connection
    return raw


def train_cmd(args: argparse.Namespace) -> int:
    try:
        raw = build_request(args)
    except ParamError as exc:
        flag = FLAGS.get(exc.field, "--" + exc.field.replace("_", "-") if exc.field != "name" else "NAME")
        return fail(args, "invalid_params", f"{flag}: {exc.message}", EXIT_USAGE, field=exc.field)
    from dgx_music.cli.jobs_cmd import submit_job

    async def go(client: Client, args: argparse.Namespace) -> int:
        code = await submit_job(client, args, "style.train", raw)
        if code == EXIT_OK and args.wait and not args.json:
            style = await client.call("style.get", {"name": raw["name"]}, timeout=args.timeout)
            print(f"style {style['name']} saved: {describe(style)}; use it with --lora {style['name']}[:scale]")
        return code

    return run_client(args, go)


def describe(style: dict[str, Any]) -> str:
    loss = "?" if style.get("final_loss") is None else f"{style['final_loss']:.4f}"
    return (f"{plural(style['steps'], 'step')} on {plural(len(style.get('tracks') or []), 'item')}, loss {loss}, "
            f"rank {style['rank']}, {human_bytes(style['size'])}")


def loras_cmd(args: argparse.Namespace) -> int:
    if args.action == "rm" and not args.name:
        return fail(args, "invalid_params", "loras rm: name the style to delete", EXIT_USAGE, field="name")

    async def go(client: Client, args: argparse.Namespace) -> int:
        if args.action == "rm":
            res = await client.call("style.delete", {"name": args.name}, timeout=args.timeout)
            emit(args, res, lambda r: f"deleted style {r['deleted']}")
            return EXIT_OK
        styles = (await client.call("style.list", timeout=args.timeout))["styles"]
        if args.json:
            print_json({"styles": styles})
            return EXIT_OK
        if not styles:
            print("no styles yet: `dgx-music train NAME --from TRACK,TRACK` makes one")
        for style in styles:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(style["created"]))
            print(f"{style['name']:<20} {style['base_model'][-30:]:<30} {describe(style)}  {when}")
        return EXIT_OK

    return run_client(args, go)
