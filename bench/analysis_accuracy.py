"""Tempo and key accuracy on the General MIDI test set (tests/audio/songs/), per genre.

Renders each song with fluidsynth (cached in --cache, default /tmp/dgx-analysis-songs), runs
analysis.estimate_tempo / estimate_key and prints one line per song and a per-genre table
(tempo right = within 2% of the notated tempo; key right = tonic and mode exact), plus the mean
analysis CPU time per second of audio.

Run: .venv/bin/python bench/analysis_accuracy.py [--cache DIR] [--markdown]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "audio"))
import songbook  # noqa: E402

from dgx_music.common.audio import analysis  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/dgx-analysis-songs"))
    ap.add_argument("--markdown", action="store_true", help="print the per-genre table as Markdown")
    args = ap.parse_args()
    why = songbook.missing()
    if why:
        print(why, file=sys.stderr)
        return 2
    args.cache.mkdir(parents=True, exist_ok=True)
    analysis.warm_up()
    per = defaultdict(lambda: [0, 0, 0])
    cpu = audio_s = 0.0
    for song in songbook.truth():
        y, sr = songbook.render(song["name"], args.cache)
        t = time.process_time()
        bpm, bconf = analysis.estimate_tempo(y, sr)
        key, kconf = analysis.estimate_key(y, sr)
        cpu += time.process_time() - t
        audio_s += y.shape[1] / sr
        t_ok = bpm is not None and abs(bpm - song["bpm"]) / song["bpm"] <= 0.02
        k_ok = key == song["key"]
        g = per[song["genre"]]
        g[0] += 1
        g[1] += t_ok
        g[2] += k_ok
        print(f"{song['name']:<16} {song['bpm']:>4} {'ok ' if t_ok else 'BAD'} {bpm!s:>7} ({bconf:.2f})   "
              f"{song['key']:<9} {'ok ' if k_ok else 'BAD'} {key!s:<9} ({kconf:.2f})")
    total = [sum(v[i] for v in per.values()) for i in range(3)]
    print()
    if args.markdown:
        print("| genre | songs | tempo within 2% | key exact |\n|---|---|---|---|")
        for genre, (n, t_ok, k_ok) in per.items():
            print(f"| {genre} | {n} | {t_ok}/{n} | {k_ok}/{n} |")
        print(f"| **all** | {total[0]} | {total[1]}/{total[0]} ({total[1]/total[0]:.0%}) "
              f"| {total[2]}/{total[0]} ({total[2]/total[0]:.0%}) |")
    else:
        for genre, (n, t_ok, k_ok) in per.items():
            print(f"{genre:<16} {n:>3}  tempo {t_ok:>2}/{n}  key {k_ok:>2}/{n}")
        print(f"{'all':<16} {total[0]:>3}  tempo {total[1]:>2}/{total[0]} ({total[1]/total[0]:.0%})  "
              f"key {total[2]:>2}/{total[0]} ({total[2]/total[0]:.0%})")
    print(f"analysis CPU: {cpu / audio_s * 30 * 1000:.0f} ms per 30 s of stereo 32 kHz audio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
