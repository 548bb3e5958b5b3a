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

MELODY_CHANNEL = 3  # 0-based: the lead line in bench/make_analysis_songs.py

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


def melody_midi(song: Path, seconds: float, out: Path) -> list[tuple[float, float, int]]:
    """Write a song's melody alone (its first `seconds`, with the song's tempo) to `out`; return its
    notes as (start s, end s, MIDI pitch), the ground truth of `dgx-music midi` (needs mido)."""
    import mido

    src = mido.MidiFile(song)
    notes: list[tuple[float, float, int]] = []
    on: dict[int, float] = {}
    now = last = 0.0
    tempo = 500000
    keep = mido.MidiTrack()

    def delta() -> int:
        return int(round(mido.second2tick(now - last, src.ticks_per_beat, tempo)))

    for msg in mido.merge_tracks(src.tracks):
        now += mido.tick2second(msg.time, src.ticks_per_beat, tempo)
        if msg.type == "set_tempo":
            tempo = msg.tempo
        if msg.is_meta:
            if msg.type in ("set_tempo", "time_signature"):
                keep.append(msg.copy(time=delta()))
                last = now
            continue
        if now > seconds:  # the cut: notes still sounding stop here, and the file ends
            for pitch in sorted(on):
                keep.append(mido.Message("note_off", channel=MELODY_CHANNEL, note=pitch, velocity=0,
                                         time=int(round(mido.second2tick(seconds - last, src.ticks_per_beat, tempo)))))
                last = seconds
            break
        if getattr(msg, "channel", None) != MELODY_CHANNEL:
            continue
        keep.append(msg.copy(time=delta()))
        last = now
        if msg.type == "note_on" and msg.velocity > 0:
            on[msg.note] = now
        elif msg.type in ("note_off", "note_on") and msg.note in on:
            notes.append((on.pop(msg.note), now, msg.note))
    notes += [(start, seconds, pitch) for pitch, start in on.items()]
    out_mid = mido.MidiFile(ticks_per_beat=src.ticks_per_beat)
    out_mid.tracks.append(keep)
    out_mid.save(out)
    return sorted(notes)


def render_midi(mid: Path, wav: Path, sr: int = SR) -> np.ndarray:
    """Render any MIDI file with fluidsynth to `wav`: [2, samples] float32 at `sr`."""
    subprocess.run(["fluidsynth", "-ni", "-q", "-g", "0.5", "-r", str(sr), "-F", str(wav), "-T", "wav",
                    soundfont(), str(mid)], check=True, capture_output=True, timeout=120)
    audio, _ = sf.read(wav, dtype="float32", always_2d=True)
    return audio.T
