"""fit, loop: a track fitted to a project's tempo and key; bar-exact loops (generated or cut)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dgx_music.cli.common import EXIT_USAGE, UsageError, add_client_flags, fail, run_client
from dgx_music.cli.track_ops_cmd import source_fields
from dgx_music.common.fitloop import FIT, LOOP, METHODS, validate
from dgx_music.common.schemas import TRACK_ID_RE, ParamError

FLAGS = {"source_audio": "SOURCE", "source": "SOURCE", "prompt": "PROMPT", "from_bpm": "--from-bpm",
         "from_key": "--from-key", "beats_per_bar": "--beats", "start_bar": "--start-bar"}


def register(sub: argparse._SubParsersAction) -> None:
    p = _parser(sub, "fit", "fit a track or file to a tempo and key: a new track, time-stretched and pitch-shifted",
                "SOURCE is a library track id (12-0) or an audio file here (uploaded; the daemon keeps its own "
                "copy). The source's tempo and key are the library's analysis (a stem: its song's), or give "
                "--from-bpm / --from-key when the reading is wrong. A key of the other mode moves the source to "
                "the target's relative key (A minor to C major: no shift). Needs Rubber Band (rubberband-cli) "
                "on the daemon's machine.\n\nexamples:\n  dgx-music fit 12-0 --bpm 124 --wait\n"
                "  dgx-music fit 12-0 --bpm 124 --key \"A minor\" --json --wait\n"
                "  dgx-music fit vocals.wav --key Em --formant")
    p.add_argument("source", metavar="SOURCE", help="a library track id (12-0) or an audio file")
    p.add_argument("--bpm", type=float, metavar="BPM", help="target tempo")
    p.add_argument("--key", metavar="KEY", help="target key, e.g. \"A minor\", F#, Bbm")
    p.add_argument("--from-bpm", type=float, metavar="BPM", help="the source's tempo (default: its analysis)")
    p.add_argument("--from-key", metavar="KEY", help="the source's key (default: its analysis)")
    p.add_argument("--formant", action="store_true", help="keep formants when shifting pitch (vocals)")
    p.set_defaults(operation=FIT)

    p = _parser(sub, "loop", "a loop exactly N bars long at a tempo that repeats without a click",
                "WHAT is a prompt (the daemon's model, or --model, generates a few bars more at that tempo, then "
                "the bars are cut) or a library track id / audio file to cut the loop from. The length is bars x "
                "beats x 60 / bpm seconds, to the sample; the file carries its loop points (WAV smpl chunk; "
                "FLAC exports LOOPSTART/LOOPLENGTH).\n\nexamples:\n"
                "  dgx-music loop \"funk drums, clavinet\" --bars 8 --bpm 124 --wait\n"
                "  dgx-music loop \"deep house chords\" --bars 4 --bpm 122 --key \"A minor\" --model ace-step\n"
                "  dgx-music loop 12-0 --bars 4 --start-bar 8 --json --wait")
    p.add_argument("what", metavar="WHAT", help="a prompt, or a library track id / audio file to cut from")
    p.add_argument("--bars", type=int, default=8, metavar="N", help="length in bars (default 8)")
    p.add_argument("--bpm", type=float, metavar="BPM", help="tempo (a prompt needs it; a source: default its own)")
    p.add_argument("--key", metavar="KEY", help="key (asked of ACE-Step, in MusicGen's prompt; a source is shifted)")
    p.add_argument("--beats", dest="beats_per_bar", type=int, metavar="N", help="beats per bar (default 4)")
    p.add_argument("--start-bar", type=int, metavar="N", help="a source's bar to start from (default 0: the first)")
    p.add_argument("--seed", type=int, metavar="N", help="fix the seed (a prompt)")
    p.add_argument("--model", metavar="M", help="the model for a prompt (default: the daemon's)")
    p.set_defaults(operation=LOOP)


def _parser(sub: argparse._SubParsersAction, name: str, helptext: str, epilog: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:] + ". Without --wait, "
                       "prints the job id at once (the job is already safe on disk).", epilog=epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wait", action="store_true", help="follow the job until it ends")
    add_client_flags(p)
    p.set_defaults(func=fitloop_cmd)
    return p


def build_request(args: argparse.Namespace) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for name in ("bpm", "key", "from_bpm", "from_key", "bars", "beats_per_bar", "start_bar", "seed", "model"):
        if getattr(args, name, None) is not None:
            raw[name] = getattr(args, name)
    if getattr(args, "formant", False):
        raw["formant"] = True
    if args.operation == FIT:
        raw.update(source_fields(args.source))
    elif TRACK_ID_RE.match(args.what) or Path(args.what).expanduser().is_file():
        raw.update(source_fields(args.what))
    else:
        raw["prompt"] = args.what
    validate(args.operation, raw)  # bad values are usage errors, found before any connection
    return raw


def fitloop_cmd(args: argparse.Namespace) -> int:
    try:
        raw = build_request(args)
    except (ParamError, UsageError) as exc:
        field = getattr(exc, "field", None)
        message = exc.message if field else str(exc)
        msg = f"{FLAGS.get(field, '--' + field.replace('_', '-'))}: {message}" if field else message
        return fail(args, "invalid_params", msg, EXIT_USAGE, **({"field": field} if field else {}))
    from dgx_music.cli.jobs_cmd import generate

    return run_client(args, lambda client, args: generate(client, args, raw, METHODS[args.operation]))
