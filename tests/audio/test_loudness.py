"""Loudness normalisation checked on finished 16-bit files by an independent meter (ffmpeg)."""

from __future__ import annotations

import numpy as np
import pytest

import synth
from meters import ebur128, needs_ffmpeg
from dgx_music.common.audio import loudness
from dgx_music.common.audio.files import write_wav_atomic
from dgx_music.common.audio.pipeline import process

SR = synth.SR

MATERIAL = {
    "song-mono": lambda: synth.song(120, "A", "minor", seconds=20),
    "song-stereo": lambda: synth.song(95, "D", "major", seconds=20, stereo=True),
    "drums-70": lambda: synth.drums(70, 20),  # very peaky: needs >20 dB of limiting
    "chords": lambda: synth.chords("F#", "minor", 20),
    "hot-noise": lambda: (np.random.default_rng(3).standard_normal((2, SR * 10)) * 0.3).astype(np.float32),
}


@needs_ffmpeg
@pytest.mark.parametrize(
    "name,target",
    [(n, -14.0) for n in sorted(MATERIAL)] + [(n, -11.0) for n in ("song-mono", "song-stereo", "chords", "hot-noise")],
)
def test_finished_file_meets_target_and_ceiling(tmp_path, name, target):
    out = process(MATERIAL[name](), SR, target_lufs=target, ceiling_dbtp=-1.0)
    assert out.analysis["loudness_note"] is None
    path = write_wav_atomic(tmp_path / "t.wav", out.audio, SR, "PCM_16", {"title": name})
    lufs, peak = ebur128(path)
    assert abs(lufs - target) <= 0.5, (lufs, out.analysis)
    assert peak <= -1.0, (peak, out.analysis)
    assert abs(out.analysis["lufs"] - target) <= 0.1
    assert out.analysis["true_peak"] <= -1.0


@needs_ffmpeg
def test_near_silence_gain_is_capped_and_explained(tmp_path):
    quiet = synth.song(120, "A", "minor", seconds=10) * 0.01  # about -64 LUFS
    out = process(quiet, SR)
    a = out.analysis
    assert a["lufs_before"] < -50
    assert a["gain_db"] == pytest.approx(30.0)
    assert "capped" in a["loudness_note"]
    path = write_wav_atomic(tmp_path / "q.wav", out.audio, SR)
    lufs, peak = ebur128(path)
    assert lufs == pytest.approx(a["lufs_before"] + 30.0, abs=0.5)
    assert peak <= -1.0


def test_digital_silence_and_short_clips_are_left_alone():
    out, info = loudness.normalize(np.zeros((1, SR * 2), np.float32), SR)
    assert not out.any() and info.lufs_before is None and "silent" in info.note
    short = (np.ones((1, SR // 10)) * 0.1).astype(np.float32)
    out, info = loudness.normalize(short, SR)
    assert np.array_equal(out, short) and "shorter" in info.note


def test_limiter_is_smooth_and_holds_the_ceiling():
    x = synth.drums(100, 8) * 8.0  # far over full scale
    y = loudness.limit(x, SR, -1.0)
    assert loudness.true_peak(y, SR) <= -1.0 + 1e-3
    gain = y[0] / np.where(np.abs(x[0]) > 1e-3, x[0], np.nan)
    g = gain[np.isfinite(gain)]
    assert g.min() > 0
    # the gain envelope moves by well under 1 dB between neighbouring (non-silent) samples
    steps = np.abs(np.diff(20 * np.log10(g)))
    assert np.percentile(steps, 99.9) < 0.2


def test_fast_gating_matches_pyloudnorm():
    x = synth.song(120, "A", "minor", seconds=10, stereo=True)
    kw = loudness._k_weighted(x, SR)
    fast = loudness._gated_loudness(np.sum(kw * kw, axis=0), SR)
    assert fast == pytest.approx(loudness.integrated_loudness(x, SR), abs=0.01)


def test_rejects_bad_input():
    with pytest.raises(loudness.LoudnessError):
        loudness.normalize(np.full((1, SR), np.nan, np.float32), SR)
    with pytest.raises(loudness.LoudnessError):
        loudness.normalize(np.zeros((1, SR), np.float32), SR, target_lufs=5.0)
