"""Ardour 7 session folders written directly (no Ardour needed to write; tested by loading in
``ardour7-lua``). Facts this relies on are in docs/audio.md: session version 7002, superclock
times ("a" + ticks at 282,240,000/s), a region's position inside its length ("a<len>@a<pos>"),
one Source per channel, a Master bus and a session-range Location (else export renders nothing).
Clips are resampled to the 48 kHz session rate here: Ardour would play a 32 kHz file unconverted.
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from .export import resample
from .files import safe_filename, slugify
from .loops import read_smpl

SESSION_RATE = 48000
SUPERCLOCK = 282_240_000
SESSION_VERSION = "7002"


@dataclass(frozen=True)
class Clip:
    path: Path | str
    title: str
    bpm: float | None = None


@dataclass(frozen=True)
class MidiClip:
    """A standard MIDI file to add as a MIDI track (a track's transcription, `dgx-music midi`)."""

    path: Path | str
    title: str


BEAT_TICKS = 1920  # Temporal::Beats ticks per quarter note: MIDI regions' "b" times


def _midi_for_ardour(src: Path | str, dest: Path) -> int:
    """Copy a MIDI file into the session as one track (type 0: Ardour's SMF source reads one track)
    and return its length in Ardour beat ticks (at least one beat)."""
    import mido

    mid = mido.MidiFile(str(src))
    merged = mido.merge_tracks(mid.tracks)
    out = mido.MidiFile(type=0, ticks_per_beat=mid.ticks_per_beat)
    out.tracks.append(mido.MidiTrack(m for m in merged if not (m.is_meta and m.type == "end_of_track")))
    total = sum(m.time for m in out.tracks[0])
    out.tracks[0].append(mido.MetaMessage("end_of_track", time=0))
    out.save(str(dest))
    return max(BEAT_TICKS, -(-total * BEAT_TICKS // mid.ticks_per_beat))


def _sc(samples: int) -> str:
    return f"a{samples * SUPERCLOCK // SESSION_RATE}"


def _ports(parent: ET.Element, io_name: str, direction: str, ident: int, names: list[str], conns: list[str | None]) -> None:
    io = ET.SubElement(parent, "IO", name=io_name, id=str(ident), direction=direction, **{"default-type": "audio"})
    for n, c in zip(names, conns):
        port = ET.SubElement(io, "Port", type="audio", name=n)
        if c:
            ET.SubElement(port, "Connection", other=c)


def _processors(route: ET.Element, name: str, ids: "itertools.count[int]", track: bool) -> None:
    """Trim, fader (Amp), meter and main outs, as Ardour writes them; without the Amp Ardour
    logs "Amp/Fader ... was missing" and rebuilds it."""
    def proc(pname: str, ptype: str, **extra: str) -> ET.Element:
        attrs = {"id": str(next(ids)), "name": pname, "active": "1", "user-latency": "0",
                 "use-user-latency": "0", "type": ptype, **extra}
        return ET.SubElement(route, "Processor", **attrs)

    if track:
        proc(f"recorder:{name}", "diskwriter", **{"record-safe": "0"})
        proc(f"player:{name}", "diskreader")
    proc("Polarity", "polarity")
    trim = proc("Amp", "trim")
    ET.SubElement(trim, "Controllable", name="trimcontrol", id=str(next(ids)), flags="GainLike", value="1")
    amp = proc("Amp", "amp")
    ET.SubElement(amp, "Controllable", name="gaincontrol", id=str(next(ids)), flags="GainLike", value="1")
    proc(f"meter-{name}", "meter")
    outs = proc(name, "main-outs", **{"own-input": "1", "own-output": "0", "output": name, "role": "Main"})
    ET.SubElement(outs, "PannerShell", bypassed="0", **{"user-panner": "", "linked-to-route": "1"})


#: Characters Ardour refuses in a session name (Session::session_name_is_legal).
ILLEGAL_NAME_CHARS = "/\\:;"


def check_session_name(name: str) -> str:
    """The session name as given, when Ardour can open a session of that name; else ValueError
    saying why. The folder is written exactly as asked: a user who types `my_session` finds
    `my_session`, not a slug of it."""
    if not name.strip() or name in (".", ".."):
        raise ValueError("an Ardour session needs a folder name")
    bad = sorted({c for c in name if c in ILLEGAL_NAME_CHARS or ord(c) < 32 or ord(c) == 127})
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise ValueError(f"Ardour cannot open a session whose name holds {shown}: {name!r}")
    if len(name.encode("utf-8", "surrogatepass")) > 200:  # the .ardour file adds its suffix to the name
        raise ValueError(f"a session name may be at most 200 bytes long: {name[:40]!r}...")
    return name


def write_ardour_session(dest_dir: str | Path, name: str, clips: list[Clip], sequence: bool = False,
                         midi: list[MidiClip] | None = None) -> Path:
    """Write ``dest_dir/<name>/<name>.ardour`` with one stereo audio track per clip and return
    the session folder, named exactly `name` (check_session_name). Regions start at 0, or end to
    end with ``sequence``. Tempo is the first clip's BPM (120 if unknown). Each of ``midi`` is a
    MIDI track after them, its region at 0 (no instrument: route its output to a synth in Ardour).
    A clip whose WAV has loop points (a bar-exact loop, `smpl` chunk) sets the session's loop range
    over its region (the first such clip: a session has one), so loop playback repeats it.
    Raises FileExistsError if the folder exists."""
    if not clips:
        raise ValueError("an Ardour session needs at least one clip")
    sname = check_session_name(name)
    root = Path(dest_dir) / sname
    if root.exists():
        raise FileExistsError(f"{root} exists")
    audio_dir = root / "interchange" / sname / "audiofiles"
    for sub in ("analysis", "dead", "export", "externals", "peaks", "plugins", f"interchange/{sname}/midifiles"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    audio_dir.mkdir(parents=True, exist_ok=True)

    ids = itertools.count(1000)
    sess = ET.Element("Session", version=SESSION_VERSION, name=sname, **{"sample-rate": str(SESSION_RATE)})
    ET.SubElement(sess, "ProgramVersion", **{"created-with": "DGX Music", "modified-with": "DGX Music"})
    config = ET.SubElement(sess, "Config")
    for k, v in (("native-file-data-format", "FormatInt24"), ("native-file-header-format", "WAVE")):
        ET.SubElement(config, "Option", name=k, value=v)
    ET.SubElement(sess, "Metadata")
    sources = ET.SubElement(sess, "Sources")
    ET.SubElement(sess, "Regions")
    locations = ET.SubElement(sess, "Locations")
    routes = ET.SubElement(sess, "Routes")
    playlists = ET.SubElement(sess, "Playlists")
    ET.SubElement(sess, "UnusedPlaylists")
    ET.SubElement(sess, "RouteGroups")
    ET.SubElement(sess, "Bundles")

    master = ET.SubElement(routes, "Route", version=SESSION_VERSION, id=str(next(ids)), name="Master",
                           **{"default-type": "audio", "strict-io": "1", "active": "1", "meter-point": "MeterOutput"})
    ET.SubElement(master, "PresentationInfo", order="0", flags="MasterOut,OrderSet", color="0")
    _ports(master, "Master", "Input", next(ids), ["Master/audio_in 1", "Master/audio_in 2"], [None, None])
    _ports(master, "Master", "Output", next(ids), ["Master/audio_out 1", "Master/audio_out 2"],
           ["system:playback_1", "system:playback_2"])
    _processors(master, "Master", ids, track=False)

    cursor = 0
    end = 0
    loop_range: tuple[int, int] | None = None  # the session's loop range: the first loop clip's region
    used: set[str] = set()
    names: set[str] = set()
    for order, clip in enumerate(clips, start=1):
        data, sr = sf.read(str(clip.path), dtype="float32", always_2d=True)
        audio = resample(data.T, sr, SESSION_RATE)
        if audio.shape[0] == 1:
            audio = audio.repeat(2, axis=0)
        audio = audio[:2]
        length = audio.shape[1]
        base = safe_filename(f"{order:02d}-{slugify(clip.title, 40)}.wav")
        while base in used:
            base = f"x{base}"
        used.add(base)
        sf.write(str(audio_dir / base), audio.T, SESSION_RATE, subtype="PCM_24")
        pos = cursor if sequence else 0
        cursor = pos + length if sequence else cursor
        end = max(end, pos + length)
        smpl = read_smpl(clip.path) if str(clip.path).lower().endswith(".wav") else None
        if smpl is not None and loop_range is None:  # a bar-exact loop (loops.py): Ardour's loop range over it
            start = int(round(smpl[0] * SESSION_RATE / sr))
            loop_range = (pos + start, pos + min(length, start + int(round(smpl[1] * SESSION_RATE / sr))))

        track = safe_filename(clip.title or f"Clip {order}")[:40] or f"Clip {order}"
        if track in names:  # Ardour route names are unique: two clips titled alike get a number
            track = next(f"{track[:36]} {n}" for n in itertools.count(2) if f"{track[:36]} {n}" not in names)
        names.add(track)
        src_ids = []
        for ch in range(2):
            sid = next(ids)
            src_ids.append(sid)
            ET.SubElement(sources, "Source", name=base, type="audio", flags="", id=str(sid),
                          **{"captured-for": track, "channel": str(ch), "origin": ""})
        route_id, pl_id = next(ids), next(ids)
        route = ET.SubElement(routes, "Route", version=SESSION_VERSION, id=str(route_id), name=track,
                              **{"default-type": "audio", "strict-io": "0", "active": "1", "meter-point": "MeterPostFader",
                                 "disk-io-point": "DiskIOPreFader", "audio-playlist": str(pl_id), "mode": "Normal"})
        ET.SubElement(route, "PresentationInfo", order=str(order), flags="AudioTrack,OrderSet", color="0")
        _ports(route, track, "Input", next(ids), [f"{track}/audio_in 1", f"{track}/audio_in 2"], [None, None])
        _ports(route, track, "Output", next(ids), [f"{track}/audio_out 1", f"{track}/audio_out 2"],
               ["Master/audio_in 1", "Master/audio_in 2"])
        _processors(route, track, ids, track=True)
        playlist = ET.SubElement(playlists, "Playlist", id=str(pl_id), name=track, type="audio",
                                 **{"orig-track-id": str(route_id), "shared-with-ids": "", "frozen": "0", "combine-ops": "0"})
        region = ET.SubElement(playlist, "Region", name=Path(base).stem, id=str(next(ids)), type="audio",
                               **{"muted": "0", "opaque": "1", "locked": "0", "whole-file": "0", "import": "0",
                                  "external": "0", "start": "a0", "length": f"{_sc(length)}@{_sc(pos)}",
                                  "sync-position": "a0", "layering-index": "0", "envelope-active": "0",
                                  "default-fade-in": "0", "default-fade-out": "0", "fade-in-active": "1",
                                  "fade-out-active": "1", "scale-amplitude": "1", "first-edit": "nothing",
                                  "channels": "2", "source-0": str(src_ids[0]), "master-source-0": str(src_ids[0]),
                                  "source-1": str(src_ids[1]), "master-source-1": str(src_ids[1])})
        ET.SubElement(region, "Envelope", default="yes")

    midi_dir = root / "interchange" / sname / "midifiles"
    for order, mclip in enumerate(midi or [], start=len(clips) + 1):
        base = safe_filename(f"{order:02d}-{slugify(mclip.title, 40)}.mid")
        while base in used:
            base = f"x{base}"
        used.add(base)
        ticks = _midi_for_ardour(mclip.path, midi_dir / base)
        track = safe_filename(mclip.title or f"MIDI {order}")[:40] or f"MIDI {order}"
        if track in names:
            track = next(f"{track[:36]} {n}" for n in itertools.count(2) if f"{track[:36]} {n}" not in names)
        names.add(track)
        sid, route_id, pl_id = next(ids), next(ids), next(ids)
        ET.SubElement(sources, "Source", name=base, type="midi", flags="", id=str(sid),
                      **{"captured-for": track, "origin": ""})
        route = ET.SubElement(routes, "Route", version=SESSION_VERSION, id=str(route_id), name=track,
                              **{"default-type": "midi", "strict-io": "1", "active": "1",
                                 "meter-point": "MeterPostFader", "disk-io-point": "DiskIOPreFader",
                                 "midi-playlist": str(pl_id), "mode": "Normal"})
        ET.SubElement(route, "PresentationInfo", order=str(order), flags="MidiTrack,OrderSet", color="0")
        for direction, port in (("Input", "midi_in 1"), ("Output", "midi_out 1")):
            io = ET.SubElement(route, "IO", name=track, id=str(next(ids)), direction=direction,
                               **{"default-type": "midi"})
            ET.SubElement(io, "Port", type="midi", name=f"{track}/{port}")
        _processors(route, track, ids, track=True)
        playlist = ET.SubElement(playlists, "Playlist", id=str(pl_id), name=track, type="midi",
                                 **{"orig-track-id": str(route_id), "shared-with-ids": "", "frozen": "0",
                                    "combine-ops": "0"})
        ET.SubElement(playlist, "Region", name=Path(base).stem, id=str(next(ids)), type="midi",
                      **{"muted": "0", "opaque": "1", "locked": "0", "whole-file": "0", "import": "0",
                         "external": "0", "start": "b0", "length": f"b{ticks}@a0", "sync-position": "b0",
                         "layering-index": "0", "first-edit": "nothing", "source-0": str(sid),
                         "master-source-0": str(sid)})

    ET.SubElement(locations, "Location", id=str(next(ids)), name="session", start=_sc(0), end=_sc(end),
                  flags="IsSessionRange", locked="0", timestamp="0", cue="0")
    if loop_range is not None:
        ET.SubElement(locations, "Location", id=str(next(ids)), name="Loop", start=_sc(loop_range[0]),
                      end=_sc(loop_range[1]), flags="IsAutoLoop,IsHidden", locked="0", timestamp="0", cue="0")
    bpm = next((float(c.bpm) for c in clips if c.bpm), 120.0) if clips[0].bpm is None else float(clips[0].bpm)
    tmap = ET.SubElement(sess, "TempoMap", **{"superclocks-per-second": str(SUPERCLOCK)})
    tempos = ET.SubElement(tmap, "Tempos")
    ET.SubElement(tempos, "Tempo", npm=f"{bpm:g}", enpm=f"{bpm:g}", **{"note-type": "4", "type": "Tempo::Constant",
                  "active": "1", "locked-to-meter": "0", "continuing": "0", "sclock": "0", "quarters": "0:0",
                  "bbt": "1|1|0", "omega": "0"})
    meters = ET.SubElement(tmap, "Meters")
    ET.SubElement(meters, "Meter", **{"note-value": "4", "divisions-per-bar": "4", "sclock": "0", "quarters": "0:0", "bbt": "1|1|0"})
    ET.SubElement(tmap, "MusicTimes")
    ET.indent(sess, "  ")
    (root / f"{sname}.ardour").write_bytes(b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(sess, encoding="utf-8"))
    return root
