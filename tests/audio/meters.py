"""Independent meters for the audio tests: ffmpeg ebur128 and ffprobe."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest


needs_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="ffmpeg/ffprobe not installed (apt-get install -y ffmpeg)",
)


def ebur128(path: Path) -> tuple[float, float]:
    """(integrated LUFS, true peak dBTP) of a file by ffmpeg's ebur128 filter."""
    err = subprocess.run(
        ["ffmpeg", "-nostats", "-hide_banner", "-i", str(path), "-af", "ebur128=peak=true", "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    ).stderr
    summary = err[err.rfind("Summary:"):]
    lufs = float(re.search(r"I:\s+(-?[\d.]+|-inf) LUFS", summary).group(1))
    peak = float(re.search(r"Peak:\s+(-?[\d.]+|-inf) dBFS", summary).group(1))
    return lufs, peak


def ffprobe_tags(path: Path, streams: bool = False) -> dict[str, str]:
    """The container's tags by lower-case name; with `streams` the first stream's too (Ogg keeps
    its Vorbis comments there), the container's winning a clash."""
    out = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout)
    tags = dict(out["streams"][0].get("tags", {})) if streams and out.get("streams") else {}
    tags.update(out["format"].get("tags", {}))
    return {k.lower(): v for k, v in tags.items()}


def id3_frames(path: Path) -> dict[str, str]:
    """Text frames of a WAV file's ``id3 `` chunk, parsed here without the writer's code (ffprobe
    shows a WAV's ID3 tags only when it has no INFO chunk). TXXX frames come as "TXXX:<desc>"."""
    data = Path(path).read_bytes()
    i = data.index(b"id3 ")
    size = struct.unpack("<I", data[i + 4 : i + 8])[0]
    tag = data[i + 8 : i + 8 + size]
    assert tag[:3] == b"ID3" and tag[3] == 4, "expected an ID3v2.4 tag"
    body = tag[10:]
    frames, pos = {}, 0
    while pos + 10 <= len(body) and body[pos : pos + 4] != b"\0\0\0\0":
        fid = body[pos : pos + 4].decode("ascii")
        n = (body[pos + 4] << 21) | (body[pos + 5] << 14) | (body[pos + 6] << 7) | body[pos + 7]
        assert body[pos + 10] == 3, f"{fid}: expected UTF-8 text"
        text = body[pos + 11 : pos + 10 + n].decode("utf-8").removesuffix("\0")  # v2.4 may terminate
        if fid == "TXXX":
            desc, _, text = text.partition("\0")
            fid = f"TXXX:{desc}"
        elif fid == "COMM":
            text = text[3:].partition("\0")[2]  # language, empty description
        frames[fid] = text
        pos += 10 + n
    return frames
