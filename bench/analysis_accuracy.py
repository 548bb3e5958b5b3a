"""Tempo and key accuracy on the General MIDI test set (tests/audio/songs/), per set and genre.

The set has five parts (songs.json "set"): "tuning", the songs the analysis rules were first
developed on; "heldout", songs from the same generator with other seeds, tempos, keys, progressions
and instruments, held out in the second round and tuned on (with "tuning") in the third; "heldout2",
written in the third round before it was measured, then seen during further development;
"heldout3", written after the third round's rules were final and measured once, then tuned on in the
fourth round; and "heldout4", written before the fourth round's rules were measured on it and
measured once. The figures are
reported apart. Renders each song
with fluidsynth (cached in --cache, default /tmp/dgx-analysis-songs), runs
analysis.estimate_tempo / estimate_key and prints one line per song, a per-genre table (tempo right
= within 2% of the notated tempo; key right = tonic and mode exact), how well the confidence marks
the wrong readings (share of wrong readings under the low-confidence cut-off, share of right ones
above it), plus the mean analysis CPU time per 30 s of audio.

Run: .venv/bin/python bench/analysis_accuracy.py [--set tuning|heldout|heldout2|heldout3|heldout4|all] [--cache DIR] [--markdown]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "audio"))
import songbook  # noqa: E402

from dgx_music.common.audio import analysis, confidence  # noqa: E402


SETS = ("tuning", "heldout", "heldout2", "heldout3", "heldout4")


def _frac(a: int, n: int) -> str:
    return f"{a}/{n} ({a / n:.0%})" if n else "0/0"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=SETS + ("all",), default="all")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/dgx-analysis-songs"))
    ap.add_argument("--markdown", action="store_true", help="print the per-genre table as Markdown")
    args = ap.parse_args()
    why = songbook.missing()
    if why:
        print(why, file=sys.stderr)
        return 2
    args.cache.mkdir(parents=True, exist_ok=True)
    analysis.warm_up()
    sets = SETS if args.set == "all" else (args.set,)
    per = {s: defaultdict(lambda: [0, 0, 0]) for s in sets}
    marks = {s: {"bpm": [0, 0, 0, 0], "key": [0, 0, 0, 0]} for s in sets}  # wrong, wrong&low, right, right&!low
    cpu = audio_s = 0.0
    for song in songbook.truth():
        which = song.get("set", "tuning")
        if which not in sets:
            continue
        y, sr = songbook.render(song["name"], args.cache)
        t = time.process_time()
        bpm, bconf = analysis.estimate_tempo(y, sr)
        key, kconf = analysis.estimate_key(y, sr)
        cpu += time.process_time() - t
        audio_s += y.shape[1] / sr
        t_ok = bpm is not None and abs(bpm - song["bpm"]) / song["bpm"] <= 0.02
        k_ok = key == song["key"]
        g = per[which][song["genre"]]
        g[0] += 1
        g[1] += t_ok
        g[2] += k_ok
        for kind, ok, conf in (("bpm", t_ok, bconf), ("key", k_ok, kconf)):
            m = marks[which][kind]
            low = confidence.is_low(kind, conf)
            if ok:
                m[2] += 1
                m[3] += not low
            else:
                m[0] += 1
                m[1] += low
        print(f"{which[:4]} {song['name']:<18} {song['bpm']:>4} {'ok ' if t_ok else 'BAD'} {bpm!s:>7} ({bconf:.2f})"
              f"   {song['key']:<9} {'ok ' if k_ok else 'BAD'} {key!s:<9} ({kconf:.2f})")
    for which in sets:
        rows = per[which]
        total = [sum(v[i] for v in rows.values()) for i in range(3)]
        print(f"\n{which} set")
        if args.markdown:
            print("| genre | songs | tempo within 2% | key exact |\n|---|---|---|---|")
            for genre, (n, t_ok, k_ok) in rows.items():
                print(f"| {genre} | {n} | {t_ok}/{n} | {k_ok}/{n} |")
            print(f"| **all** | {total[0]} | {_frac(total[1], total[0])} | {_frac(total[2], total[0])} |")
        else:
            for genre, (n, t_ok, k_ok) in rows.items():
                print(f"{genre:<16} {n:>3}  tempo {t_ok:>2}/{n}  key {k_ok:>2}/{n}")
            print(f"{'all':<16} {total[0]:>3}  tempo {_frac(total[1], total[0])}  key {_frac(total[2], total[0])}")
        for kind, name in (("bpm", "tempo"), ("key", "key")):
            w, wl, r, rn = marks[which][kind]
            print(f"{name} confidence: wrong readings marked low {_frac(wl, w)}, right readings not marked low "
                  f"{_frac(rn, r)}")
    print(f"analysis CPU: {cpu / audio_s * 30 * 1000:.0f} ms per 30 s of stereo 32 kHz audio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
