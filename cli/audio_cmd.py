"""analyze and export: the audio pipeline from the command line.

Export runs in this process, not in the daemon: the daemon never writes outside
its data directory, and over a forwarded socket the files are fetched first.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

from dgx_music.cli.common import (EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError, add_client_flags, emit, fail,
                                  print_json, run_client)
from dgx_music.cli.extras import requires_extra
from dgx_music.common import daw, transfer
from dgx_music.common.client import Client
from dgx_music.common.fmt import plural


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze", help="measure loudness, true peak, BPM and key of any audio file",
        description="Run the library's analysis on any audio file (WAV, FLAC, OGG, ...). Works without a daemon.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=analyze)
    requires_extra(p, modules=("scipy", "pyloudnorm", "librosa"))  # the library's analysis, run here

    p = sub.add_parser(
        "export", help="export tracks as WAV/FLAC, or as an Ardour session",
        description="Copy tracks out of the library: resampled with a proper resampler, FLAC tagged with "
                    "BPM and INITIALKEY. Never overwrites a file unless --overwrite. Select tracks by id, "
                    "or with --search / --tag / --favorite.",
        epilog="examples:\n  dgx-music export 12-0 12-1 --to ~/Music --format flac --sample-rate 48000\n"
               "  dgx-music export --favorite --to ~/Music/keepers\n"
               "  dgx-music export --ardour ~/sessions/sketch --sequence 12-0 12-1 13-0\n"
               "  dgx-music export 12-0 --ardour ~/sessions/split --with-stems   # mix + one track per stem\n"
               "  dgx-music export --tag keep --ardour ~/sessions/keepers --with-stems\n"
               "  dgx-music export 12-0 --ardour ~/sessions/parts --with-stems --with-midi   # + MIDI tracks",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ids", nargs="*", metavar="TRACK")
    dest = p.add_mutually_exclusive_group(required=True)
    dest.add_argument("--to", metavar="DIR", help="folder to write the files into")
    dest.add_argument("--ardour", metavar="DIR", help="write an Ardour 7 session folder here")
    p.add_argument("--format", choices=("wav", "flac"), default="wav")
    p.add_argument("--sample-rate", type=int, choices=(32000, 44100, 48000),
                   help="default: each track's own rate (32000 for MusicGen tracks, 48000 for ACE-Step ones)")
    p.add_argument("--bit-depth", type=int, choices=(16, 24), default=24)
    p.add_argument("--overwrite", action="store_true", help="replace files that already exist")
    p.add_argument("--sequence", action="store_true", help="Ardour: lay clips end to end instead of stacking them")
    p.add_argument("--with-stems", action="store_true",
                   help="Ardour: add the stems made from each track (dgx-music stems) as tracks named after "
                        "their part, next to the mix, all at 0")
    p.add_argument("--with-midi", action="store_true",
                   help="Ardour: add each session track's MIDI (dgx-music midi) as a MIDI track after the audio, "
                        "its region at 0")
    p.add_argument("--search", metavar="TEXT", help="export every track matching this search")
    p.add_argument("--tag", metavar="T", help="export every track with this tag")
    p.add_argument("--favorite", action="store_true", help="export every favourite")
    add_client_flags(p)
    p.set_defaults(func=export_cmd)


def analyze(args: argparse.Namespace) -> int:
    from dgx_music.common.audio import pipeline

    results: list[dict[str, Any]] = []
    code = EXIT_OK
    for f in args.files:
        try:
            r = pipeline.analyze_file(f)
            results.append({"file": f, **r})
        except (FileNotFoundError, ValueError) as exc:  # not there, or not audio: bad input (exit 2), go on
            results.append({"file": f, "error": str(exc), "code": "invalid_params"})
            code = max(code, EXIT_USAGE)
        except Exception as exc:  # the analysis itself failed: report it and go on
            results.append({"file": f, "error": str(exc), "code": "failed"})
            code = max(code, EXIT_FAILED)
    if args.json:
        print_json(results[0] if len(results) == 1 else results)
        return code
    for r in results:
        if "error" in r:
            print(f"{r['file']}: {r['error']}", file=sys.stderr)
            continue
        bpm = f"{r['bpm']:.1f} BPM (confidence {r['bpm_confidence']:.2f})" if r.get("bpm") else "no clear tempo"
        key = f"{r['key']} (confidence {r['key_confidence']:.2f})" if r.get("key") else "no clear key"
        lufs = f"{r['lufs']:.1f} LUFS" if r.get("lufs") is not None else "silent"
        tp = f"{r['true_peak']:.1f} dBTP" if r.get("true_peak") is not None else "-"
        print(f"{r['file']}\n  {r['duration']:.2f} s, {r['sample_rate']} Hz, {r['channels']} ch\n"
              f"  loudness {lufs}, true peak {tp}\n  tempo {bpm}\n  key {key}")
    return code


def export_cmd(args: argparse.Namespace) -> int:
    if not args.ids and not (args.search or args.tag or args.favorite):
        return fail(args, "usage", "name tracks to export, or select them with --search, --tag or --favorite",
                    EXIT_USAGE)
    if args.with_stems and not args.ardour:
        return fail(args, "usage", "--with-stems needs --ardour DIR", EXIT_USAGE)
    if args.with_stems and args.sequence:
        return fail(args, "usage", "--with-stems stacks each mix with its stems at 0; it does not go with --sequence",
                    EXIT_USAGE)
    if args.with_midi and not args.ardour:
        return fail(args, "usage", "--with-midi needs --ardour DIR", EXIT_USAGE)
    if args.ardour:
        from dgx_music.common.audio.ardour import check_session_name

        dest = Path(args.ardour).expanduser()
        try:
            check_session_name(dest.name)
        except ValueError as exc:
            return fail(args, "invalid_params", f"--ardour: {exc}", EXIT_USAGE, field="ardour")
        if dest.exists():
            return fail(args, "exists", f"--ardour: {dest} exists; name a new folder for the session", EXIT_FAILED)
    return run_client(args, export)


async def _select(client: Client, args: argparse.Namespace) -> list[dict[str, Any]]:
    tracks = [await client.call("track.get", {"id": i}, timeout=args.timeout) for i in args.ids]
    if args.search or args.tag or args.favorite:
        params: dict[str, Any] = {"limit": 500, "sort": "created", "order": "asc"}
        for k in ("search", "tag"):
            if getattr(args, k):
                params[k] = getattr(args, k)
        if args.favorite:
            params["favorite"] = True
        while True:
            page = await client.call("track.list", params, timeout=args.timeout)
            tracks += page["tracks"]
            if not page.get("next_cursor"):
                break
            params["cursor"] = page["next_cursor"]
    seen: set[str] = set()
    return [t for t in tracks if not (t["id"] in seen or seen.add(t["id"]))]  # type: ignore[func-returns-value]


async def export(client: Client, args: argparse.Namespace) -> int:
    from dgx_music.common.audio import ardour, export as exporter

    tracks = await _select(client, args)
    if not tracks:
        raise UsageError("no tracks matched")
    plan = await daw.plan_session(lambda m, p: client.call(m, p, timeout=args.timeout), tracks,
                                  bool(args.ardour and args.with_stems))
    if args.ardour:
        tracks = [st.track for st in plan.tracks]
    st = await client.call("status", timeout=args.timeout)
    data_dir = st.get("storage") or st["data_dir"]  # what track paths are relative to
    with tempfile.TemporaryDirectory(prefix="dgx-music-export-") as tmp:
        sources: list[tuple[Path, dict[str, Any]]] = []
        errors: list[dict[str, Any]] = []
        for t in tracks:
            try:  # a stored path outside the daemon's data directory is refused before any read
                sources.append((await transfer.obtain(client, t, data_dir, Path(tmp)), t))
            except transfer.UnsafeTrackPath as exc:
                errors.append({"id": t["id"], "error": str(exc)})
        loop = asyncio.get_running_loop()
        if args.ardour:
            if errors:  # a session missing a clip is not what was asked for
                return _report(args, [], errors)
            clips = [ardour.Clip(path=src, title=st.name, bpm=t.get("bpm"))
                     for (src, t), st in zip(sources, plan.tracks)]
            midi_clips: list[Any] = []
            midi_tracks: list[dict[str, Any]] = []
            without_midi: list[str] = []
            if args.with_midi:  # fetched over the socket, so a remote daemon's MIDI comes too
                for st in plan.tracks:
                    if not st.track.get("midi_path"):
                        without_midi.append(st.track["id"])
                        continue
                    got = await client.call("track.midi", {"id": st.track["id"]}, timeout=args.timeout)
                    mpath = Path(tmp) / f"{st.track['id']}.mid"
                    mpath.write_bytes(got["data"])
                    midi_clips.append(ardour.MidiClip(path=mpath, title=f"{st.name} MIDI"))
                    midi_tracks.append({"name": f"{st.name} MIDI", "id": st.track["id"]})
            dest = Path(args.ardour).expanduser()
            session = await loop.run_in_executor(None, lambda: ardour.write_ardour_session(
                dest.parent, dest.name, clips, sequence=args.sequence, midi=midi_clips))
            result: dict[str, Any] = {
                "session": str(session), "tracks": [t["id"] for t in tracks],
                "session_tracks": [{"name": st.name, "id": st.track["id"], "part": st.part} for st in plan.tracks],
                "without_stems": plan.without_stems}
            if args.with_midi:
                result.update(midi_tracks=midi_tracks, without_midi=without_midi)
            emit(args, result, lambda r: f"wrote Ardour session {r['session']} with {plural(len(tracks), 'track')}: "
                 + ", ".join([st["name"] for st in r["session_tracks"]] + [m["name"] for m in midi_tracks]))
            if args.with_midi and without_midi and not args.json:
                print(f"dgx-music: no MIDI yet for {', '.join(without_midi)} (make it with: dgx-music midi TRACK)",
                      file=sys.stderr)
            if args.with_stems and plan.without_stems and not args.json:
                print(f"dgx-music: no stems were made from {', '.join(plan.without_stems)}; only the mix is in "
                      f"the session (make them with: dgx-music stems TRACK)", file=sys.stderr)
            return EXIT_OK
        written: list[dict[str, Any]] = []
        out_dir = Path(args.to).expanduser()
        out_dir.mkdir(parents=True, exist_ok=True)
        for src, t in sources:
            tags = {"title": t["title"], "comment": t["prompt"], "bpm": t.get("bpm"), "key": t.get("key")}
            try:
                out = await loop.run_in_executor(None, lambda: exporter.export_track(
                    src, out_dir, f"{t['title']} ({t['id']})", format=args.format,
                    sample_rate=args.sample_rate, bit_depth=args.bit_depth, overwrite=args.overwrite, tags=tags))
                written.append({"id": t["id"], "file": str(out)})
            except FileExistsError as exc:
                errors.append({"id": t["id"], "error": f"{exc} (use --overwrite)"})
            except (ValueError, OSError) as exc:  # ExportError and disk trouble: report, go on
                errors.append({"id": t["id"], "error": str(exc)})
        return _report(args, written, errors)


def _report(args: argparse.Namespace, written: list[dict[str, Any]], errors: list[dict[str, Any]]) -> int:
    emit(args, {"exported": written, "errors": errors},
         lambda r: "\n".join(f"{w['id']} -> {w['file']}" for w in r["exported"]))
    if not args.json:
        for e in errors:
            print(f"dgx-music: {e['id']}: {e['error']}", file=sys.stderr)
    return EXIT_FAILED if errors else EXIT_OK
