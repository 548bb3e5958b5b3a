"""File tags, written by mutagen: what players, DJ software and DAWs read from our files.

ID3v2.4 in WAV (an ``id3 `` chunk, beside the RIFF LIST/INFO chunk libsndfile writes: INFO has
no BPM or key field, and DJ software reads ID3 in WAV) and in MP3; Vorbis comments in FLAC and
Ogg (libsndfile can only write a fixed set of strings there, not BPM or INITIALKEY). The frames:
title, artist, comment (the prompt), date, software, BPM, key ("A minor" as "Am"), and the job's
parameters and analysis as ID3 TXXX / Vorbis fields.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any, Mapping

from mutagen.flac import FLAC
from mutagen.id3 import COMM, TBPM, TDRC, TIT2, TKEY, TPE1, TSSE, TXXX, Encoding, Frame
from mutagen.mp3 import MP3
from mutagen.oggvorbis import OggVorbis
from mutagen.wave import WAVE

SOFTWARE = "DGX Music"
PARAMS_DESC = "DGX Music parameters"  # TXXX description; ffprobe shows it as a tag of that name
ANALYSIS_DESC = "DGX Music analysis"  # TXXX: the BPM/key readings with how sure they are
ID3_FORMATS = ("wav", "mp3")
VORBIS_FORMATS = ("flac", "ogg")
FORMATS = ID3_FORMATS + VORBIS_FORMATS


def id3_key(key: str) -> str:
    """'A minor' -> 'Am', 'C# major' -> 'C#' (the TKEY / INITIALKEY convention)."""
    parts = key.split()
    if len(parts) == 2 and parts[1].lower() in ("major", "minor"):
        return parts[0] + ("m" if parts[1].lower() == "minor" else "")
    return key[:3]


def _texts(meta: Mapping[str, Any]) -> dict[str, str]:
    """The tag values as text, by meta key; absent and empty ones left out."""
    out = {k: str(meta[k]) for k in ("title", "artist", "comment", "date", "software", "analysis") if meta.get(k)}
    if meta.get("bpm"):
        out["bpm"] = str(int(round(float(meta["bpm"]))))
    if meta.get("key"):
        out["key"] = id3_key(str(meta["key"]))
    if meta.get("params"):
        params = meta["params"]
        out["params"] = params if isinstance(params, str) else json.dumps(
            params, sort_keys=True, separators=(",", ":"), default=str)
    return out


def id3_frames(meta: Mapping[str, Any]) -> list[Frame]:
    """ID3v2.4 frames (UTF-8) for `meta` (see write_wav_atomic's keys)."""
    text = _texts(meta)
    simple = {"title": TIT2, "artist": TPE1, "software": TSSE, "bpm": TBPM, "key": TKEY, "date": TDRC}
    frames: list[Frame] = [cls(encoding=Encoding.UTF8, text=[text[k]]) for k, cls in simple.items() if k in text]
    if "comment" in text:
        frames.append(COMM(encoding=Encoding.UTF8, lang="eng", desc="", text=[text["comment"]]))
    for key, desc in (("params", PARAMS_DESC), ("analysis", ANALYSIS_DESC)):
        if key in text:
            frames.append(TXXX(encoding=Encoding.UTF8, desc=desc, text=[text[key]]))
    return frames


def vorbis_comments(meta: Mapping[str, Any]) -> dict[str, str]:
    """Vorbis comment fields for `meta`: the names DJ software reads (BPM, INITIALKEY)."""
    names = {"title": "TITLE", "artist": "ARTIST", "comment": "COMMENT", "date": "DATE", "bpm": "BPM",
             "key": "INITIALKEY", "software": "ENCODER", "params": PARAMS_DESC, "analysis": ANALYSIS_DESC}
    out = {names[k]: v for k, v in _texts(meta).items()}
    if meta.get("loop"):  # (start, length) in samples: a bar-exact loop's points (loops.py)
        start, length = meta["loop"]
        out.update(LOOPSTART=str(int(start)), LOOPLENGTH=str(int(length)))
    return out


def write_tags(file: str | Path | IO[bytes], fmt: str, meta: Mapping[str, Any]) -> None:
    """Replace the tags of a written audio file (a path, or a file open read-write) of format
    `fmt` (one of FORMATS: the name, since a temp file's suffix does not say) with `meta`'s.

    WAV keeps its RIFF INFO chunk; FLAC and Ogg keep nothing of the encoder's comments."""
    meta = {"software": SOFTWARE, **{k: v for k, v in meta.items() if v not in (None, "")}}
    target = str(file) if isinstance(file, Path) else file
    if fmt in ID3_FORMATS:
        audio = WAVE(target) if fmt == "wav" else MP3(target)
        if audio.tags is None:
            audio.add_tags()
        audio.tags.clear()
        for frame in id3_frames(meta):
            audio.tags.add(frame)
        audio.save(target, v2_version=4)
    elif fmt in VORBIS_FORMATS:
        audio = FLAC(target) if fmt == "flac" else OggVorbis(target)
        if audio.tags is None:
            audio.add_tags()
        audio.tags.clear()
        audio.tags.vendor = SOFTWARE
        for name, value in vorbis_comments(meta).items():
            audio.tags[name] = value
        audio.save(target)
    else:
        raise ValueError(f"cannot tag {fmt!r} files; expected one of {FORMATS}")
