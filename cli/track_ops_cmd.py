"""repaint, cover, stems, add-part: operations on a library track or an audio file (ACE-Step models; stems by
default on a source-separation model)."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

from dgx_music.cli.common import EXIT_USAGE, UsageError, add_client_flags, fail, run_client
from dgx_music.common.operations import (ADD_PART, COVER, DEFAULT_STEM_PARTS, MAX_UPLOAD_BYTES, METHODS, PARTS,
                                         REPAINT, SEPARATE, SEPARATION_PARTS, STEM_METHODS, STEMS,
                                         validate_operation)
from dgx_music.common.schemas import TRACK_ID_RE, ParamError

PART_LIST = ", ".join(PARTS)
FLAGS = {"start": "--from", "end": "--to", "source_audio": "SOURCE", "source": "SOURCE", "parts": "--parts",
         "method": "--method",
         "strength": "--strength", "part": "PART"}
#: Fields a message names in words, as this command line spells them ("must be after start" -> "after --from").
FLAG_WORDS = {"after start": "after --from"}


def register(sub: argparse._SubParsersAction) -> None:
    common_epilog = ("SOURCE is a library track id (12-0) or an audio file here (WAV, FLAC, OGG, MP3; uploaded to "
                     "the daemon, which keeps its own copy). The daemon's model must be ACE-Step, or pass --model.")
    p = _parser(sub, "repaint", "regenerate a span of a track; the rest stays exactly as it was",
                f"{common_epilog}\n\nexamples:\n  dgx-music repaint 12-0 --from 12.5 --to 20 --wait\n"
                "  dgx-music repaint 12-0 --from 30 --to 45 --prompt \"guitar solo\" --lyrics solo.txt --json --wait")
    p.add_argument("--from", dest="start", type=float, required=True, metavar="S", help="start of the span (seconds)")
    p.add_argument("--to", dest="end", type=float, required=True, metavar="S",
                   help="end of the span (seconds; at least 0.5 s after --from)")
    p.add_argument("--prompt", metavar="TEXT", help="caption for the new span (default: the track's prompt)")
    _song_flags(p)
    p.set_defaults(operation=REPAINT)

    p = _parser(sub, "cover", "restyle a track or file: its structure in a new style",
                f"{common_epilog}\n\nexamples:\n  dgx-music cover 12-0 \"bossa nova, nylon guitar\" --strength 0.7 --wait\n"
                "  dgx-music cover demo.mp3 \"orchestral\" --lyrics words.txt")
    p.add_argument("prompt", help="the new style (caption)")
    _song_flags(p)
    p.add_argument("--strength", type=float, metavar="0..1", help="how closely to follow the source (default 0.5)")
    p.set_defaults(operation=COVER)

    p = _parser(sub, "stems", "split a track or file into stems, one new track per part",
                "--method separate (default): the daemon's source-separation model (--separator: htdemucs makes "
                "vocals, drums, bass, other; htdemucs_6s adds guitar, piano) splits the source; the stems are as "
                "long as the source, start at its first sample, keep its level and add up to it (other holds "
                "what the rest leave). --model picks another separation model; --steps does not apply.\n"
                "--method generate: ACE-Step's extract makes each part anew (parts: "
                f"{PART_LIST}). Upstream trains extract (and add-part's lego) on the base model only, so it runs "
                "on ace-step-base: a turbo daemon model is swapped for it for the job; a turbo --model is refused.\n"
                "SOURCE is a library track id (12-0) or an audio file here (WAV, FLAC, OGG, MP3; uploaded to the "
                "daemon, which keeps its own copy).\n\nexamples:\n"
                "  dgx-music stems 12-0 --wait\n  dgx-music stems mix.wav --parts vocals,drums --json --wait\n"
                "  dgx-music stems 12-0 --model htdemucs_6s --wait\n"
                "  dgx-music stems 12-0 --method generate --parts vocals,guitar --wait")
    p.add_argument("--method", choices=STEM_METHODS, default=SEPARATE,
                   help="separate: a separation model (default); generate: ACE-Step extract, on ace-step-base")
    p.add_argument("--parts", metavar="A,B,...",
                   help=f"comma-separated parts. separate: any of {', '.join(SEPARATION_PARTS)} (default: all the "
                        f"model makes); generate: any of {PART_LIST} (default {','.join(DEFAULT_STEM_PARTS)})")
    p.set_defaults(operation=STEMS)

    p = _parser(sub, "add-part", "add a part to a track: a new track holding only that part, aligned",
                f"Parts: {PART_LIST}.\n{common_epilog} Runs on ace-step-base (upstream trains lego on the base "
                "model only): a turbo daemon model is swapped for it for the job; a turbo --model is refused.\n\nexamples:\n  dgx-music add-part 12-0 drums --wait\n"
                "  dgx-music add-part 12-0 strings \"lush legato strings\" --mix --wait")
    p.add_argument("part", help=f"the part to add: {PART_LIST}")
    p.add_argument("prompt", nargs="?", help="caption for the part (optional)")
    p.add_argument("--mix", action="store_true", help="also write the source with the part mixed in")
    p.set_defaults(operation=ADD_PART)


def _parser(sub: argparse._SubParsersAction, name: str, helptext: str, epilog: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:] + ". Without --wait, "
                       "prints the job id at once (the job is already safe on disk).", epilog=epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="SOURCE", help="a library track id (12-0) or an audio file")
    p.add_argument("--seed", type=int, metavar="N", help="fix the seed to reproduce a result")
    p.add_argument("--model", metavar="M", help="an ACE-Step model (default: the daemon's); stems --method separate: "
                   "a separation model (default: the daemon's --separator)")
    p.add_argument("--steps", type=int, metavar="N", help="denoising steps (default: the variant's; 8 for turbo)")
    p.add_argument("--lora", metavar="NAME[:SCALE]", help="a style `dgx-music train` made, or a LoRA directory "
                                                           "under the daemon's <data>/loras; scale default 1.0")
    p.add_argument("--wait", action="store_true", help="follow the job until it ends")
    add_client_flags(p)
    p.set_defaults(func=op_cmd)
    return p


def _song_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lyrics", metavar="FILE", help="lyrics from FILE ('-': standard input)")
    p.add_argument("--language", metavar="CODE", help="vocal language (default en)")


def source_fields(src: str) -> dict[str, Any]:
    """A track id goes as it is; a local file is read here and uploaded (the daemon may be remote)."""
    if TRACK_ID_RE.match(src) and not Path(src).exists():
        return {"source": src}
    path = Path(src).expanduser()
    if not path.is_file():
        raise ParamError("source", f"{src} is neither a library track id (like 12-0) nor a file")
    data = path.read_bytes()
    if len(data) > MAX_UPLOAD_BYTES:
        data = _compress(path)
    return {"source_audio": data, "source_name": path.name}


def _compress(path: Path) -> bytes:
    """A file too big for one request, re-encoded to fit: 16-bit FLAC, else Ogg Vorbis (lossy)."""
    import soundfile as sf

    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise ParamError("source", f"cannot decode {path}: {exc}") from None
    for fmt, subtype in (("FLAC", "PCM_16"), ("OGG", "VORBIS")):
        buf = io.BytesIO()
        sf.write(buf, audio[:, :2], sr, format=fmt, subtype=subtype)
        if len(buf.getvalue()) <= MAX_UPLOAD_BYTES:
            return buf.getvalue()
    raise ParamError("source", f"{path} does not fit one upload ({MAX_UPLOAD_BYTES // 2**20} MiB) even as Ogg "
                               "Vorbis; import it into the library first")


def build_request(args: argparse.Namespace) -> dict[str, Any]:
    raw: dict[str, Any] = {"seed": args.seed, "model": args.model, "steps": args.steps,
                           "lora": getattr(args, "lora", None)}
    for name in ("start", "end", "prompt", "strength", "part", "mix", "language", "method"):
        if getattr(args, name, None) is not None:
            raw[name] = getattr(args, name)
    if getattr(args, "parts", None):
        raw["parts"] = args.parts
    if getattr(args, "lyrics", None):
        from dgx_music.cli.jobs_cmd import _read_lyrics

        raw["lyrics"] = _read_lyrics(args.lyrics)
    if raw.get("mix") is False:
        del raw["mix"]
    raw.update(source_fields(args.source))
    raw = {k: v for k, v in raw.items() if v is not None}
    validate_operation(args.operation, raw)  # bad values are usage errors, found before any connection
    return raw


def op_cmd(args: argparse.Namespace) -> int:
    try:
        raw = build_request(args)
    except (ParamError, UsageError) as exc:
        field = getattr(exc, "field", None)
        message = exc.message if field else str(exc)
        for words, flag in FLAG_WORDS.items():
            message = message.replace(words, flag)
        msg = f"{FLAGS.get(field, '--' + field.replace('_', '-'))}: {message}" if field else message
        return fail(args, "invalid_params", msg, EXIT_USAGE, **({"field": field} if field else {}))
    from dgx_music.cli.jobs_cmd import generate

    return run_client(args, lambda client, args: generate(client, args, raw, METHODS[args.operation]))
