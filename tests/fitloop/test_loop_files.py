"""Loop points in files (read back with an independent RIFF walk and ffprobe) and the key arithmetic."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dgx_music.common.audio.export import export_track
from dgx_music.common.audio.files import write_wav_atomic
from dgx_music.common.fitloop import loop_samples, remix_request, semitone_shift, shifted_key, validate
from tests.fitloop.test_fit_loop_jobs import smpl_loop


def test_semitone_shift_takes_the_shortest_way_and_crosses_modes_to_the_relative_key() -> None:
    assert semitone_shift("A minor", "C minor") == 3
    assert semitone_shift("C major", "A major") == -3  # not +9
    assert semitone_shift("C major", "F# major") == 6
    assert semitone_shift("B major", "C major") == 1
    assert semitone_shift("A minor", "C major") == 0  # same notes
    assert semitone_shift("A minor", "D major") == 2 and shifted_key("A minor", 2) == "B minor"
    assert semitone_shift("C major", "Am") == 0 and semitone_shift("Eb major", "C minor") == 0
    assert loop_samples(8, 4, 124, 48000) == round(8 * 4 * 60 / 124 * 48000) == 743226


def test_loop_points_survive_writing_and_exporting(tmp_path: Path) -> None:
    sr, n = 48000, 96000
    t = np.arange(n) / sr
    audio = np.stack([0.3 * np.sin(2 * np.pi * 220 * t)] * 2).astype(np.float32)
    src = write_wav_atomic(tmp_path / "loop.wav", audio, sr, "PCM_16", {"title": "a loop", "bpm": 120,
                                                                      "loop": (0, n)})
    assert smpl_loop(src) == (1, 0, n - 1)
    data, rate = sf.read(str(src))  # libsndfile still reads the file, tags and all
    assert rate == sr and data.shape == (n, 2)
    wav = export_track(src, tmp_path, "at 44k", "wav", sample_rate=44100)
    assert smpl_loop(wav) == (1, 0, 88200 - 1)
    if shutil.which("ffprobe") is None:
        pytest.skip("ffprobe not installed: scripts/ensure-test-tools")
    flac = export_track(src, tmp_path, "loop", "flac")
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format_tags", "-of", "json", str(flac)],
                           capture_output=True, text=True, check=True)
    tags = {k.upper(): v for k, v in json.loads(probe.stdout)["format"]["tags"].items()}
    assert tags["LOOPSTART"] == "0" and tags["LOOPLENGTH"] == str(n)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ardour7-lua") is None, reason="ardour7-lua not installed (scripts/ensure-test-tools)")
def test_an_ardour_export_of_a_loop_sets_the_loop_range_over_its_region(tmp_path: Path) -> None:
    """Loaded in real Ardour (headless): the loop's region, and the session's loop range exactly over it."""
    from dgx_music.common.audio.ardour import Clip, write_ardour_session
    from tests.audio import synth

    sr = 48000
    a = synth.song(120, "A", "minor", seconds=4, sr=sr, stereo=True)
    n = loop_samples(2, 4, 120, sr)
    loop = write_wav_atomic(tmp_path / "loop.wav", a[:, :n], sr, "PCM_16", {"loop": (0, n)})
    plain = write_wav_atomic(tmp_path / "plain.wav", a, sr, "PCM_16", {})
    root = write_ardour_session(tmp_path, "Loops", [Clip(plain, "Song", 120.0), Clip(loop, "Loop", 120.0)],
                                sequence=True)
    script = tmp_path / "check.lua"
    script.write_text(f'''
load_session("{root}", "Loops")
for t in Session:get_tracks():iter() do
  for r in t:to_track():playlist():region_list():iter() do
    print("REGION", t:name(), r:position():samples(), r:length():samples())
  end
end
local l = Session:locations():auto_loop_location()
print("LOOP", l:start():samples(), l:_end():samples())
''')
    out = subprocess.run(["stdbuf", "-oL", "ardour7-lua", str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    regions = {l.split()[1]: tuple(int(float(v)) for v in l.split()[2:]) for l in lines if l.startswith("REGION")}
    assert regions == {"Song": (0, a.shape[1]), "Loop": (a.shape[1], n)}
    assert f"LOOP {a.shape[1]} {a.shape[1] + n}" in lines, out.stdout


def test_remix_of_a_prompt_loop_asks_for_the_same_loop_with_a_new_seed() -> None:
    track = {"model": "small", "prompt": "funk drums, 124 bpm",
             "params": {"operation": "loop", "loop_prompt": "funk drums", "bars": 8, "bpm": 124.0,
                        "beats_per_bar": 4, "start_bar": 0, "duration": 16.0, "top_k": 250}}
    op, req = remix_request(track)
    assert op == "loop" and req == {"prompt": "funk drums", "bars": 8, "bpm": 124.0, "beats_per_bar": 4,
                                    "start_bar": 0, "model": "small"}
    validate(op, req)
    assert remix_request({"params": {"operation": "stems", "source_key": "0" * 16}}) is None
