"""Tempo and key on realistic material: General MIDI songs (tests/audio/songs/) rendered with
fluidsynth, with known tempo and key. Skips with a reason where fluidsynth or a GM soundfont is
missing (scripts/ensure-test-tools installs them)."""

from __future__ import annotations

import pytest

import songbook
from dgx_music.common.audio import analysis, confidence, files

pytestmark = pytest.mark.skipif(songbook.missing() is not None, reason=songbook.missing() or "")


@pytest.fixture(scope="module")
def readings(tmp_path_factory):
    out = tmp_path_factory.mktemp("songs")
    rows = []
    for song in songbook.truth():
        y, sr = songbook.render(song["name"], out)
        rows.append((song, analysis.estimate_tempo(y, sr), analysis.estimate_key(y, sr)))
    return rows


def _tempo_ok(song, bpm):
    return bpm is not None and abs(bpm - song["bpm"]) / song["bpm"] <= 0.02


def test_the_issues_cases_read_right(readings):
    """Slow grooves with eighth-note hats (72 and 97 BPM) keep their tempo; B minor and F# minor songs
    carried by pads/strings are not read as their relative majors; ballads are not read double."""
    by_name = {s["name"]: (s, t, k) for s, t, k in readings}
    for name in ("groove_72_Bm", "groove_97_Fsm", "ballad_66_Bm", "ballad_76_Fsm", "ballad_60_F"):
        song, (bpm, _), _ = by_name[name]
        assert _tempo_ok(song, bpm), (name, bpm)
    for name in ("groove_72_Bm", "ballad_76_Fsm", "dembow_100_Fsm", "rock_160_Em", "pop_128_Dm", "house_124_Am"):
        song, _, (key, _) = by_name[name]
        assert key == song["key"], (name, key)


def test_accuracy_floor(readings):
    """Measured: tempo 27/36, key 32/36 (docs/audio.md). The floor guards against regressions; the
    goal (>= 90% on both) is not reached for tempo: dembow and no-drum songs still read double."""
    tempo = sum(_tempo_ok(s, t[0]) for s, t, _ in readings)
    key = sum(k[0] == s["key"] for s, _, k in readings)
    wrong = [(s["name"], t, k) for s, t, k in readings if not _tempo_ok(s, t[0]) or k[0] != s["key"]]
    assert tempo >= 27 and key >= 32, wrong


def test_unsure_key_readings_are_marked(readings):
    """Most wrong key readings carry a low confidence, and most right ones do not."""
    wrong = [k[1] for s, _, k in readings if k[0] != s["key"]]
    right = [k[1] for s, _, k in readings if k[0] == s["key"]]
    assert sum(confidence.is_low("key", c) for c in wrong) >= len(wrong) - 1, wrong
    assert sum(not confidence.is_low("key", c) for c in right) >= 0.8 * len(right), right


def test_low_confidence_is_said_in_the_file_tags():
    tag = files.id3_tag({"bpm": 95.2, "key": "B minor",
                         "analysis": confidence.tag_text(95.2, 0.2, "B minor", 0.8)})
    assert b"DGX Music analysis\x00tempo 95.2 BPM (low confidence 0.20); key B minor (confidence 0.80)" in tag
    assert confidence.describe("key", 0.1) == "low confidence 0.10"
    assert confidence.describe("bpm", 0.9) == "confidence 0.90"
