"""Tempo and key on realistic material: General MIDI songs (tests/audio/songs/) rendered with
fluidsynth, with known tempo and key. Five sets: "tuning", "heldout", "heldout2" and "heldout3" (the
rules of the fourth round were fitted on all four) and "heldout4" (written before the fourth round's
rules were measured on it, measured once); the floors guard each a song under its measured figure
(docs/audio.md). Skips with
a reason where fluidsynth or a GM soundfont is missing (scripts/ensure-test-tools installs them)."""

from __future__ import annotations

import pytest

import songbook
from dgx_music.common.audio import analysis, confidence

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
    """Slow grooves with eighth-note hats (72 and 97 BPM) keep their tempo; the dembow at 95 is not read
    at 190, nor funk at 105 as 140; B minor and F# minor songs carried by pads/strings are not read as
    their relative majors; ballads are not read double. Third round: boom bap with 16th hats and
    drumless arpeggiated songs are not read double; looped minor progressions (dembow, ballad) are
    not read as their relative majors."""
    by_name = {s["name"]: (s, t, k) for s, t, k in readings}
    for name in ("groove_72_Bm", "groove_97_Fsm", "ballad_66_Bm", "ballad_76_Fsm", "ballad_60_F",
                 "dembow_95_Bm", "funk_105_Em", "boombap_90_Cm", "boombap_86_F", "pads_70_Csm",
                 "strings_88_Em"):
        song, (bpm, _), _ = by_name[name]
        assert _tempo_ok(song, bpm), (name, bpm)
    for name in ("groove_72_Bm", "ballad_76_Fsm", "dembow_100_Fsm", "rock_160_Em", "pop_128_Dm", "house_124_Am",
                 "dembow_95_Bm", "ballad_66_Bm", "punk_180_G"):
        song, _, (key, _) = by_name[name]
        assert key == song["key"], (name, key)


def _counts(readings, which):
    rows = [(s, t, k) for s, t, k in readings if s.get("set", "tuning") == which]
    return rows, sum(_tempo_ok(s, t[0]) for s, t, _ in rows), sum(k[0] == s["key"] for s, _, k in rows)


@pytest.mark.parametrize("which, songs, tempo_floor, key_floor",
                         [("tuning", 36, 35, 34), ("heldout", 24, 23, 22), ("heldout2", 29, 25, 27),
                          ("heldout3", 30, 26, 26), ("heldout4", 32, 28, 29)])
def test_accuracy_floor(readings, which, songs, tempo_floor, key_floor):
    """Measured (docs/audio.md): tuning tempo 36/36, key 35/36; held-out tempo 24/24, key 23/24;
    heldout2 tempo 26/29, key 28/29; heldout3 tempo 27/30, key 27/30 (all four tuned on); heldout4
    (fresh) tempo 29/32, key 30/32. The floors guard against regressions with a song of slack; the
    goal (>= 90% on both) is reached on every set but heldout2's tempo (89.7%), narrowly: drumless songs still read double or
    half, a boom bap at 76 and one at 86 read double."""
    rows, tempo, key = _counts(readings, which)
    wrong = [(s["name"], t, k) for s, t, k in rows if not _tempo_ok(s, t[0]) or k[0] != s["key"]]
    assert len(rows) == songs
    assert tempo >= tempo_floor and key >= key_floor, wrong


def test_unsure_readings_are_marked(readings):
    """On the tuning set, most right key readings are not marked low (and at most one wrong key goes
    unmarked); across all sets, right tempo readings are mostly not marked low. (How many wrong
    readings are marked: docs/audio.md; on the fresh heldout4 2 of 3 wrong tempos, 1 of 2 wrong keys.)"""
    rows, _, _ = _counts(readings, "tuning")
    wrong = [k[1] for s, _, k in rows if k[0] != s["key"]]
    right = [k[1] for s, _, k in rows if k[0] == s["key"]]
    assert sum(confidence.is_low("key", c) for c in wrong) >= len(wrong) - 1, wrong
    assert sum(not confidence.is_low("key", c) for c in right) >= 0.8 * len(right), right
    right_t = [t[1] for s, t, _ in readings if _tempo_ok(s, t[0])]
    assert sum(not confidence.is_low("bpm", c) for c in right_t) >= 0.8 * len(right_t), right_t
