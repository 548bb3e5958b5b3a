"""CPU time of all post-processing (normalise + analysis + peaks) of a 30 s 32 kHz clip, warm.

Run: .venv/bin/python bench/audio_postprocess.py
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "audio"))
import synth  # noqa: E402

from dgx_music.common.audio import pipeline  # noqa: E402

pipeline.warm_up()
for stereo in (False, True):
    x = synth.song(120, "A", "minor", seconds=30, stereo=stereo)
    pipeline.process(x, 32000)
    runs = []
    for _ in range(5):
        t = time.process_time()
        pipeline.process(x, 32000)
        runs.append(time.process_time() - t)
    print(f"{'stereo' if stereo else 'mono'} 30 s @ 32 kHz: median CPU {sorted(runs)[2]*1000:.0f} ms (min {min(runs)*1000:.0f})")
