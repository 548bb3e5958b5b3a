"""The analysis test set: General MIDI songs with known tempo and key (tests/audio/songs/, written by
bench/make_analysis_songs.py), rendered to audio with fluidsynth and a GM soundfont.

Rendering needs the `fluidsynth` program and a GM soundfont (Debian: fluidsynth,
fluid-soundfont-gm; scripts/ensure-test-tools installs them); without them `missing()` says why
and the tests that need the set skip.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

SONGS = Path(__file__).parent / "songs"
SR = 32000
SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2",
              "/usr/share/soundfonts/FluidR3_GM.sf2", "/usr/share/soundfonts/default.sf2")


def soundfont() -> str | None:
    return next((p for p in SOUNDFONTS if Path(p).is_file()), None)


def missing() -> str | None:
    """Why the set cannot be rendered here, or None."""
    if shutil.which("fluidsynth") is None:
        return "fluidsynth is not installed (scripts/ensure-test-tools installs it)"
    if soundfont() is None:
        return "no General MIDI soundfont (Debian: fluid-soundfont-gm)"
    return None


def truth() -> list[dict]:
    """[{name, set ("tuning", "heldout", "heldout2", "heldout3" or "heldout4"), genre, bpm, key, meter, progression, ...}] in a fixed order."""
    return json.loads((SONGS / "songs.json").read_text())


def render(name: str, out_dir: Path) -> tuple[np.ndarray, int]:
    """Render one song to a 32 kHz stereo WAV in ``out_dir`` (reused when present): [2, samples], sr."""
    wav = out_dir / f"{name}.wav"
    if not wav.exists():
        tmp = out_dir / f".{name}.tmp.wav"
        subprocess.run(["fluidsynth", "-ni", "-q", "-g", "0.5", "-r", str(SR), "-F", str(tmp), "-T", "wav",
                        soundfont(), str(SONGS / f"{name}.mid")],
                       check=True, capture_output=True, timeout=120)
        tmp.replace(wav)
    audio, sr = sf.read(wav, dtype="float32", always_2d=True)
    return audio.T, sr
