"""library, show, tag, rate, favorite, rename, notes, rm: the track library from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dgx_music.cli.common import (EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError, add_client_flags, emit, fail,
                                  human_duration, run_client)
from dgx_music.common.audio import confidence
from dgx_music.common.client import Client
from dgx_music.common.fmt import plural

SORTS = ("created", "duration", "bpm", "rating", "title", "relevance")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "library", help="list and search tracks",
        description="List tracks, newest first. --search is full-text over prompt, title, tags and notes "
                    "(any text is safe; the last word matches as a prefix); search results come best match "
                    "first (--sort relevance) unless --sort says otherwise.",
        epilog='examples:\n  dgx-music library --search "piano rain"            best matches first\n'
               '  dgx-music library --search "piano rain" --favorite --sort bpm',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--search", metavar="TEXT")
    p.add_argument("--tag", metavar="T")
    p.add_argument("--favorite", action="store_true", default=None, help="only favourites")
    p.add_argument("--model", metavar="M")
    p.add_argument("--bpm-min", type=float, metavar="BPM")
    p.add_argument("--bpm-max", type=float, metavar="BPM")
    p.add_argument("--key", metavar="KEY", help='e.g. "A minor"')
    p.add_argument("--sort", choices=SORTS,
                   help="default: relevance with --search (best match first, needs a search), else created")
    p.add_argument("--asc", action="store_true", help="ascending order (default: descending)")
    p.add_argument("--limit", type=int, default=50, metavar="N", help="tracks per page (1-500)")
    p.add_argument("--cursor", metavar="C", help="next_cursor from a previous --json page")
    p.add_argument("--empty-trash", action="store_true", help="delete the files of deleted tracks for good")
    add_client_flags(p)
    p.set_defaults(func=lambda a: run_client(a, library))

    p = sub.add_parser("show", help="show one track", description="All metadata, analysis and parameters of a track.")
    p.add_argument("id", metavar="TRACK")
    add_client_flags(p)
    p.set_defaults(func=lambda a: run_client(a, show))

    p = sub.add_parser("tag", help="add or remove tags: tag TRACK +drums -draft",
                       description="Add (+name) or remove (-name) tags. Put options before the track id.",
                       epilog="example: dgx-music tag 12-0 +drums +keeper -draft")
    p.add_argument("id", metavar="TRACK")
    p.add_argument("changes", nargs=argparse.REMAINDER, metavar="+TAG|-TAG")
    add_client_flags(p)
    p.set_defaults(func=lambda a: run_client(a, tag))

    p = sub.add_parser("rate", help="rate a track 0-5", description="Rate a track from 0 (unrated) to 5.")
    p.add_argument("id", metavar="TRACK")
    p.add_argument("rating", type=int, choices=range(6), metavar="N")
    add_client_flags(p)
    p.set_defaults(func=lambda a: run_client(a, lambda c, args: update(c, args, rating=args.rating)))

    p = sub.add_parser("favorite", help="mark a track as a favourite (--off to unmark)")
    p.add_argument("id", metavar="TRACK")
    p.add_argument("--off", action="store_true")
    add_client_flags(p)
    p.set_defaults(func=lambda a: run_client(a, lambda c, args: update(c, args, favorite=not args.off)))

    p = sub.add_parser("rename", help="set a track's title")
    p.add_argument("id", metavar="TRACK")
    p.add_argument("title")
    add_client_flags(p)
    p.set_defaults(func=lambda a: run_client(a, lambda c, args: update(c, args, title=args.title)))

    p = sub.add_parser("notes", help="set a track's notes (searchable)")
    p.add_argument("id", metavar="TRACK")
    p.add_argument("text")
    add_client_flags(p)
    p.set_defaults(func=lambda a: run_client(a, lambda c, args: update(c, args, notes=args.text)))

    p = sub.add_parser(
        "play", help="play a track where you are",
        description="Play a track on this machine's audio output: the library file when it is local, "
                    "else a copy fetched over the socket into the cache. Uses sounddevice when installed, "
                    "else the first of pw-play, paplay, aplay, afplay, ffplay (DGX_MUSIC_PLAYER picks one). "
                    "Ctrl-C stops. With --to, write it to a WAV file here instead (no sound card needed: "
                    "a laptop with a client install and a forwarded socket gets the track's own samples).",
        epilog="examples:\n  dgx-music play 12-0\n  dgx-music play 12-0 --to take.wav",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("id", metavar="TRACK")
    p.add_argument("--to", metavar="FILE.wav", help="write the track to this WAV file instead of playing it")
    add_client_flags(p)
    p.set_defaults(func=play_cmd)

    p = sub.add_parser("rm", help="delete a track (its file goes to the trash)",
                       description="Delete tracks from the library. Files move to the trash in the data "
                                   "directory until `dgx-music library --empty-trash`.")
    p.add_argument("ids", nargs="+", metavar="TRACK")
    add_client_flags(p)
    p.set_defaults(func=lambda a: run_client(a, rm))


def searching(text: str | None) -> bool:
    """Does this --search text search at all? (the daemon ignores text without a letter or digit)"""
    return bool(text) and any(c.isalnum() for c in text)  # type: ignore[union-attr]


def track_line(t: dict[str, Any]) -> str:
    title = t["title"] if len(t["title"]) <= 40 else t["title"][:37] + "..."
    bpm = f"{t['bpm']:.0f}" if t.get("bpm") else "-"
    lufs = f"{t['lufs']:.1f}" if t.get("lufs") is not None else "-"
    stars = "*" * int(t.get("rating") or 0)
    fav = "♥" if t.get("favorite") else " "
    return (f"{t['id']:>8} {fav} {title:<40} {human_duration(t['duration']):>6} {bpm:>4} "
            f"{(t.get('key') or '-'):<9} {lufs:>6} {stars:<5}")


async def library(client: Client, args: argparse.Namespace) -> int:
    if args.empty_trash:
        res = await client.call("library.empty_trash", timeout=args.timeout)
        emit(args, res, lambda r: f"removed {plural(r['removed'], 'file')} from the trash")
        return EXIT_OK
    sort = args.sort or ("relevance" if searching(args.search) else "created")
    params = {"search": args.search, "tag": args.tag, "favorite": args.favorite, "model": args.model,
              "bpm_min": args.bpm_min, "bpm_max": args.bpm_max, "key": args.key, "sort": sort,
              "order": "asc" if args.asc else "desc", "limit": args.limit, "cursor": args.cursor}
    page = await client.call("track.list", {k: v for k, v in params.items() if v is not None}, timeout=args.timeout)

    def human(page: dict[str, Any]) -> str:
        if not page["tracks"]:
            return "no tracks" + (" match" if args.search or args.tag or args.favorite else " yet")
        head = f"{'ID':>8}   {'TITLE':<40} {'LENGTH':>6} {'BPM':>4} {'KEY':<9} {'LUFS':>6} RATING"
        lines = [head, *map(track_line, page["tracks"])]
        total = page.get("total")
        if page.get("next_cursor"):
            in_all = f"{total:,}{'+' if page.get('total_exact') is False else ''} in all; " if total else ""
            lines.append(f"... {in_all}next page: --cursor {page['next_cursor']}")
        ranked = page.get("ranked")
        if ranked is not None and total is not None and (ranked < total or page.get("total_exact") is False):
            lines.append(f"(best first among the {ranked:,} newest matches; later pages rank older ones)")
        return "\n".join(lines)

    emit(args, page, human)
    return EXIT_OK


def format_track(t: dict[str, Any], data_dir: str | None = None) -> str:
    p = t.get("params") or {}
    rows = [
        ("title", t["title"]), ("prompt", t["prompt"]),
        ("file", t.get("file") or (str(Path(data_dir) / t["path"]) if data_dir else t["path"])),
        ("length", f"{t['duration']:.2f} s, {t['sample_rate']} Hz, {t['channels']} ch"),
        ("model", f"{t.get('model') or '-'} ({t.get('backend') or '-'}), seed {t.get('seed')}, variation {t.get('index', 0)}"),
        ("sampling", ", ".join(f"{k} {p[k]}" for k in ("temperature", "top_k", "top_p", "cfg", "steps", "guidance",
                                                       "shift") if p.get(k) is not None) or "-"),
        *([("asked", asked)] if (asked := requested_song(t)) else []),
        *([("lora", f"{p['lora']} (scale {p.get('lora_scale', 1.0)})")] if p.get("lora") else []),
        *([("melody", str(p["melody_source"]))] if p.get("melody_source") else []),
        *([("extends", f"{p['extend']} (the first {t['duration'] - float(p.get('duration') or 0):.2f} s are it)")]
          if p.get("extend") else []),
        ("loudness", f"{t['lufs']:.1f} LUFS (was {t['lufs_before']:.1f}), true peak {t['true_peak']:.1f} dBTP"
         if t.get("lufs") is not None and t.get("lufs_before") is not None and t.get("true_peak") is not None else "-"),
        ("tempo", f"{t['bpm']:.1f} BPM ({confidence.describe('bpm', t.get('bpm_confidence'))})" if t.get("bpm") else "-"),
        ("key", f"{t['key']} ({confidence.describe('key', t.get('key_confidence'))})" if t.get("key") else "-"),
        ("rating", f"{t.get('rating', 0)}/5" + (", favourite" if t.get("favorite") else "")),
        ("tags", " ".join(t.get("tags") or []) or "-"),
    ]
    if t.get("midi_path"):  # `dgx-music midi`: on the daemon's machine; `midi ID --to FILE` fetches a fresh one
        rows.append(("midi", t["midi_path"]))
    if t.get("loudness_note"):
        rows.append(("note", t["loudness_note"]))
    if t.get("notes"):
        rows.append(("notes", t["notes"]))
    out = f"track {t['id']}\n" + "\n".join(f"  {k:<9} {v}" for k, v in rows)
    lyrics = lyrics_of(t)
    if lyrics:
        out += f"\n  lyrics ({t.get('language') or p.get('language') or '-'}):\n" + "\n".join(f"    {line}" for line in lyrics.splitlines())
    return out


def lyrics_of(t: dict[str, Any]) -> str:
    """A track's lyrics (ACE-Step songs), from the library's column when it has one, else the request."""
    return str(t.get("lyrics") or (t.get("params") or {}).get("lyrics") or "").strip()


def requested_song(t: dict[str, Any]) -> str:
    """What an ACE-Step request asked for (tempo, key, metre): the library's columns, else the request's
    parameters. The analysis of the audio is shown beside."""
    p = t.get("params") or {}
    bpm, key = t.get("req_bpm") or p.get("bpm"), t.get("req_key") or p.get("key")
    sig = t.get("req_time_signature") or p.get("time_signature")
    parts = [f"{bpm:g} BPM" if bpm else "", str(key or ""), f"{sig} beats per bar" if sig else ""]
    return ", ".join(x for x in parts if x)


async def show(client: Client, args: argparse.Namespace) -> int:
    t = await client.call("track.get", {"id": args.id}, timeout=args.timeout)
    if args.json:
        emit(args, t, format_track)  # exactly what track.get answers, `file` included
    elif t.get("stale"):  # the database is away: the row the daemon last saw, without its lineage
        emit(args, t, format_track)
    else:
        lineage = await client.call("track.lineage", {"id": args.id}, timeout=args.timeout)
        emit(args, t, lambda t: format_track(t) + format_lineage(lineage))
    return EXIT_OK


def format_lineage(lin: dict[str, Any]) -> str:
    """The track's source (if derived) and the tracks made from it, for `show`."""
    lines = []
    src = lin.get("source")
    if src:
        what = src["operation"].replace("_", " ") + (f" {src['part']}" if src.get("part") else "")
        if src.get("id"):
            where = f"track {src['id']} ({src['title']})" if src.get("exists") else \
                f"track {src['id']} ({src['name']}; deleted since)"
        else:
            where = f"file {src['name']}"
        lines.append(f"  source    {what} of {where}")
    for d in lin.get("derived") or []:
        what = d["operation"].replace("_", " ") + (f" {d['part']}" if d.get("part") else "")
        lines.append(f"  derived   {d['id']}  {what}  {d['title']}")
    return ("\n" + "\n".join(lines)) if lines else ""


async def tag(client: Client, args: argparse.Namespace) -> int:
    changes = list(args.changes)
    # Options typed after the track id land in the remainder; pick out the ones we know.
    for flag in ("--json",):
        if flag in changes:
            changes.remove(flag)
            args.json = True
    add = [c[1:] for c in changes if c.startswith("+") and len(c) > 1]
    remove = [c[1:] for c in changes if c.startswith("-") and len(c) > 1]
    bad = [c for c in changes if not (c.startswith(("+", "-")) and len(c) > 1)]
    if bad or not changes:
        raise UsageError(f"tags must be written +name or -name, got {' '.join(bad) or 'nothing'}")
    return await update(client, args, tags_add=add, tags_remove=remove)


async def update(client: Client, args: argparse.Namespace, **fields: Any) -> int:
    t = await client.call("track.update", {"id": args.id, **fields}, timeout=args.timeout)
    emit(args, t, lambda t: f"{t['id']}: {t['title']} | rating {t['rating']}/5"
         f"{' | favourite' if t['favorite'] else ''} | tags {' '.join(t['tags']) or '-'}")
    return EXIT_OK


def play_cmd(args: argparse.Namespace) -> int:
    if args.to is not None and Path(args.to).suffix.lower() != ".wav":
        return fail(args, "invalid_params", "--to: the track is written as a WAV file; name it FILE.wav", EXIT_USAGE)
    return run_client(args, play)


def write_wav_copy(src: Path, dst: Path) -> None:
    """The track as a WAV at `dst`, atomically: a WAV library file byte for byte (tags kept),
    anything else decoded at its own rate and bit depth where WAV can hold it."""
    import shutil

    import soundfile as sf

    tmp = dst.with_name(f".{dst.name}.part")
    try:
        if src.suffix.lower() == ".wav":
            shutil.copyfile(src, tmp)
        else:
            info = sf.info(str(src))
            subtype = info.subtype if sf.check_format("WAV", info.subtype) else "PCM_24"
            data, rate = sf.read(str(src), dtype="float32", always_2d=True)
            sf.write(str(tmp), data, rate, format="WAV", subtype=subtype)
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)


async def play(client: Client, args: argparse.Namespace) -> int:
    import asyncio

    from dgx_music.common import paths, transfer
    from dgx_music.tui.player import Player, PlayerUnavailable, local_output_problem, to_wav

    t = await client.call("track.get", {"id": args.id}, timeout=args.timeout)
    player = Player()
    why = None if args.to is not None else local_output_problem(player)
    if why is not None:  # nothing to hear here: the browser tab plays it, if one is open
        from dgx_music.cli.speaker_out import to_tab

        problem = await to_tab(client, args, "speaker.play", {"track_id": t["id"]}, t["id"], why)
        if problem is not None:
            return fail(args, problem[0], problem[1], EXIT_FAILED)
        emit(args, {"played": t["id"], "player": "browser tab", "file": None}, lambda r: None)
        return EXIT_OK
    st = await client.call("status", timeout=args.timeout)
    data_dir = st.get("storage") or st["data_dir"]  # what track paths are relative to
    try:
        path = await transfer.obtain(client, t, data_dir, paths.default_cache_dir() / "previews")
    except transfer.UnsafeTrackPath as exc:
        return fail(args, "unsafe_path", str(exc), EXIT_FAILED)
    if args.to is not None:
        dest = Path(args.to).expanduser()
        try:
            await asyncio.get_running_loop().run_in_executor(None, write_wav_copy, path, dest)
        except (OSError, RuntimeError) as exc:  # soundfile raises RuntimeError subclasses
            return fail(args, "write_failed", f"--to: cannot write {dest}: {exc}", EXIT_FAILED)
        emit(args, {"id": t["id"], "file": str(dest.resolve()), "duration": t["duration"]},
             lambda r: f"{r['id']} -> {r['file']}")
        return EXIT_OK
    try:
        if player.needs_wav and path.suffix.lower() != ".wav":
            path = to_wav(path, path.with_suffix(".wav"))
        player.play(path, track_id=t["id"], duration=t["duration"])
    except PlayerUnavailable as exc:
        return fail(args, "no_audio_output", str(exc), EXIT_FAILED)
    if not args.json:
        print(f"playing {t['id']} ({t['title']}, {human_duration(t['duration'])}) with {player.backend}; Ctrl-C stops")
    try:
        while player.poll():
            await asyncio.sleep(0.1)
    finally:
        player.stop()
    if player.failure:
        return fail(args, "no_audio_output", player.failure, EXIT_FAILED)
    emit(args, {"played": t["id"], "player": player.backend, "file": str(path)}, lambda r: None)
    return EXIT_OK


async def rm(client: Client, args: argparse.Namespace) -> int:
    """--json: what track.delete answers; a list of those when several ids are given."""
    results = [await client.call("track.delete", {"id": i}, timeout=args.timeout) for i in args.ids]
    emit(args, results[0] if len(results) == 1 else results,
         lambda r: "\n".join(f"deleted {d['id']} (file in trash: {d['trashed'] or 'already gone'})"
                             for d in results))
    return EXIT_OK
