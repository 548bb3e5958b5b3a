"""Note accuracy of `dgx-music midi` (daemon/audio/transcribe.py) on single-instrument melodies.

The melodies are the lead lines (channel 4) of the analysis test set (tests/audio/songs/*.mid,
bench/make_analysis_songs.py), each written alone to a MIDI file, cut to its first `--seconds`
and rendered with fluidsynth and the GM soundfont (its own GM program: flute, piano, strings,
synth...). The transcription is scored against the MIDI notes with mir_eval: note onset F1
(pitch within 50 cents, onset within 50 ms, offsets ignored), the standard figure for
transcription.

    .venv/bin/python bench/midi_accuracy.py [--songs 20] [--seconds 20] [--json]

Needs fluidsynth and a GM soundfont (scripts/ensure-test-tools), mido, mir_eval (`test` extra).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "audio"))
import songbook  # noqa: E402  (the analysis set's renderer and soundfont lookup)

from dgx_music.daemon.audio import transcribe  # noqa: E402

SR = 32000


def score(ref: list[tuple[float, float, int]], est: list[transcribe.Note]) -> tuple[float, float, float]:
    import mir_eval

    def arrays(notes: list[tuple[float, float, int]]) -> tuple[np.ndarray, np.ndarray]:
        iv = np.array([[a, max(b, a + 0.01)] for a, b, _ in notes]).reshape(-1, 2)
        hz = np.array([440.0 * 2 ** ((p - 69) / 12) for _, _, p in notes])
        return iv, hz

    ri, rp = arrays(ref)
    ei, ep = arrays([(n.start, n.end, n.pitch) for n in est])
    p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(ri, rp, ei, ep, onset_tolerance=0.05,
                                                                     offset_ratio=None)
    return p, r, f


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--songs", type=int, default=20, help="how many songs of the set (in its order)")
    ap.add_argument("--seconds", type=float, default=20.0, help="the first seconds of each melody")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if songbook.missing():
        print(songbook.missing(), file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for song in songbook.truth():
            if len(rows) >= args.songs:
                break
            path = songbook.SONGS / f"{song['name']}.mid"
            ref = songbook.melody_midi(path, args.seconds, Path(tmp) / "m.mid")
            if len(ref) < 4:
                continue  # a song without a lead line
            audio = songbook.render_midi(Path(tmp) / "m.mid", Path(tmp) / "m.wav", SR)
            t0 = time.monotonic()
            est = transcribe.transcribe(audio, SR)
            secs = time.monotonic() - t0
            p, r, f = score(ref, est)
            rows.append({"song": song["name"], "notes": len(ref), "found": len(est), "precision": round(p, 3),
                         "recall": round(r, 3), "f1": round(f, 3), "seconds": round(secs, 2),
                         "audio_seconds": round(audio.shape[1] / SR, 1)})
            if not args.json:
                print(f"{song['name']:24s} notes {len(ref):3d} found {len(est):3d}  P {p:.3f} R {r:.3f} "
                      f"F1 {f:.3f}  ({secs:.2f} s)", flush=True)
    mean_f1 = float(np.mean([r["f1"] for r in rows])) if rows else 0.0
    speed = sum(r["audio_seconds"] for r in rows) / max(sum(r["seconds"] for r in rows), 1e-9)
    summary = {"songs": len(rows), "mean_onset_f1": round(mean_f1, 3), "min_onset_f1": min(r["f1"] for r in rows),
               "x_realtime": round(speed, 1), "rows": rows}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{len(rows)} melodies: mean onset F1 {mean_f1:.3f} (min {summary['min_onset_f1']:.3f}), "
              f"{speed:.0f}x real time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
