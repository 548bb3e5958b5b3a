"""Independent meters for the audio tests: ffmpeg ebur128 and ffprobe."""

from __future__ import annotations

import json
import re
import shutil
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


def ffprobe_tags(path: Path) -> dict[str, str]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-of", "json", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return {k.lower(): v for k, v in json.loads(out)["format"].get("tags", {}).items()}
