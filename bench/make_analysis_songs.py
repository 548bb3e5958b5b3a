"""Write the analysis test set: short multi-instrument General MIDI songs with known tempo and key.

The songs live in tests/audio/songs/ as .mid files plus songs.json (the ground truth); the tests
and bench/analysis_accuracy.py render them with fluidsynth and a GM soundfont (scripts/
ensure-test-tools installs both). Only regenerating them needs mido, which is not a project
dependency: use any Python that has it, e.g.

    python3 -m venv /tmp/midi && /tmp/midi/bin/pip install mido
    /tmp/midi/bin/python bench/make_analysis_songs.py

Each song is a realistic loop for its genre: a drum pattern (General MIDI channel 10), bass on the
chord roots, a chord instrument (pad, strings, piano, guitar...) and, for most, a melody that
moves on chord tones and rests on the tonic at the end of each 4-bar phrase; the song ends on the
tonic chord, as songs do. Humanised timing and velocity come from a seeded RNG (reproducible).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import mido

OUT = Path(__file__).resolve().parents[1] / "tests" / "audio" / "songs"
TPB = 480  # ticks per beat
NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
MAJOR_SCALE = [0, 2, 4, 5, 7, 9, 11]
MINOR_SCALE = [0, 2, 3, 5, 7, 8, 10]

# GM percussion notes
K, S, CLAP, RIM, CH, PH, OH, RIDE, CRASH, SHAKER = 36, 38, 39, 37, 42, 44, 46, 51, 49, 70

# (note, beat position in the bar, velocity); 4/4 unless the name says 3/4
DRUMS: dict[str, list[tuple[int, float, int]]] = {
    # slow R&B / neo-soul groove: eighth-note hats over a sparse kick, backbeat snare
    "groove": [(K, 0, 110), (K, 1.75, 80), (K, 2.5, 95), (S, 1, 105), (S, 3, 105)]
    + [(CH, i / 2, 80 if i % 2 == 0 else 60) for i in range(8)],
    # boom bap: swingless 16th hats, kick on 1 and the "and" of 3
    "boombap": [(K, 0, 115), (K, 0.75, 80), (K, 2.5, 100), (S, 1, 115), (S, 3, 115)]
    + [(CH, i / 4, 75 if i % 2 == 0 else 50) for i in range(16)],
    # dembow (reggaeton): four-on-the-floor kick, snare/clap on the 3-3-2 figure
    "dembow": [(K, b, 115) for b in range(4)]
    + [(S, p, 100) for p in (0.75, 1.5, 2.75, 3.5)] + [(CLAP, p, 70) for p in (0.75, 1.5, 2.75, 3.5)]
    + [(CH, i / 2, 60) for i in range(8)],
    "rock": [(K, 0, 120), (K, 2, 110), (K, 2.5, 90), (S, 1, 120), (S, 3, 120)]
    + [(CH, i / 2, 90 if i % 2 == 0 else 70) for i in range(8)],
    "pop": [(K, 0, 115), (K, 1.5, 85), (K, 2, 105), (CLAP, 1, 110), (S, 3, 100), (CLAP, 3, 110)]
    + [(CH, i / 4, 70 if i % 2 == 0 else 45) for i in range(16)],
    "house": [(K, b, 120) for b in range(4)] + [(CLAP, 1, 105), (CLAP, 3, 105)]
    + [(OH, b + 0.5, 85) for b in range(4)] + [(CH, i / 4, 50) for i in range(16) if i % 2 == 1],
    "funk": [(K, 0, 120), (K, 0.75, 85), (K, 2.5, 100), (K, 3.25, 80), (S, 1, 120), (S, 3, 120),
             (S, 1.75, 45), (S, 2.25, 40), (S, 3.75, 45)]
    + [(CH, i / 4, 80 if i % 4 == 0 else 55) for i in range(16)],
    # drum and bass two-step at ~170
    "dnb": [(K, 0, 120), (K, 2.5, 105), (S, 1, 120), (S, 3, 120), (S, 3.75, 60)]
    + [(CH, i / 2, 70) for i in range(8)] + [(RIDE, i / 2, 50) for i in range(8)],
    "punk": [(K, b + h, 110) for b in (0, 2) for h in (0, 0.5)] + [(S, 1, 125), (S, 3, 125)]
    + [(CRASH if i == 0 else CH, i / 2, 90) for i in range(8)],
    # ballad: cross-stick backbeat, soft eighth hats
    "ballad": [(K, 0, 90), (K, 2.5, 70), (RIM, 1, 80), (RIM, 3, 80)] + [(CH, i / 2, 45) for i in range(8)],
    # swing: ride "ding ding-a ding", hi-hat foot on 2 and 4, light kick
    "swing": [(RIDE, 0, 90), (RIDE, 1, 95), (RIDE, 1 + 2 / 3, 70), (RIDE, 2, 90), (RIDE, 3, 95),
              (RIDE, 3 + 2 / 3, 70), (PH, 1, 80), (PH, 3, 80), (K, 0, 60), (K, 2, 50)],
    # waltz 3/4: kick on 1, snare (brushed) on 2 and 3
    "waltz": [(K, 0, 105), (S, 1, 60), (S, 2, 60), (CH, 0, 60), (CH, 1, 50), (CH, 2, 50)],
    "none": [],
}

# progressions: (semitones above the tonic, "maj"/"min"/"dom"), one chord per bar unless doubled
PROGRESSIONS = {
    "I-V-vi-IV": [(0, "maj"), (7, "maj"), (9, "min"), (5, "maj")],
    "I-IV-V-I": [(0, "maj"), (5, "maj"), (7, "dom"), (0, "maj")],
    "I-vi-IV-V": [(0, "maj"), (9, "min"), (5, "maj"), (7, "maj")],
    "ii-V-I-I": [(2, "min"), (7, "dom"), (0, "maj"), (0, "maj")],
    "I-IV-I-V": [(0, "maj"), (5, "maj"), (0, "maj"), (7, "maj")],
    "i-VI-III-VII": [(0, "min"), (8, "maj"), (3, "maj"), (10, "maj")],
    "i-iv-V-i": [(0, "min"), (5, "min"), (7, "dom"), (0, "min")],
    "i-VII-VI-V": [(0, "min"), (10, "maj"), (8, "maj"), (7, "dom")],
    "i-iv-VII-III": [(0, "min"), (5, "min"), (10, "maj"), (3, "maj")],
    "i-VI-iv-v": [(0, "min"), (8, "maj"), (5, "min"), (7, "min")],
    "i-i-iv-V": [(0, "min"), (0, "min"), (5, "min"), (7, "dom")],
    # only the second held-out set uses these
    "i-III-VII-VI": [(0, "min"), (3, "maj"), (10, "maj"), (8, "maj")],
    "I-iii-IV-V": [(0, "maj"), (4, "min"), (5, "maj"), (7, "maj")],
    "IV-V-I-I": [(5, "maj"), (7, "dom"), (0, "maj"), (0, "maj")],
    "i-v-VI-VII": [(0, "min"), (7, "min"), (8, "maj"), (10, "maj")],
}
TRIADS = {"maj": [0, 4, 7], "min": [0, 3, 7], "dom": [0, 4, 7, 10]}

# GM programs: (bass, chords, lead or None)
BANDS = {
    "groove": (33, 4, 11),  # finger bass, Rhodes, vibraphone
    "boombap": (33, 0, None),  # finger bass, piano
    "dembow": (38, 90, 81),  # synth bass, polysynth pad, saw lead
    "rock": (34, 29, 30),  # pick bass, overdriven guitar, distortion lead
    "pop": (33, 0, 80),  # finger bass, piano, square lead
    "house": (38, 89, 81),  # synth bass, warm pad, saw lead
    "funk": (36, 7, 61),  # slap bass, clavinet, brass
    "dnb": (38, 89, None),  # synth bass, warm pad
    "punk": (34, 29, None),
    "ballad": (32, 48, 73),  # acoustic bass, strings, flute
    "swing": (32, 0, 65),  # upright, piano, alto sax
    "waltz": (32, 0, 40),  # upright, piano, violin
    "pads": (32, 89, 48),  # no drums: pad and strings melody
    "strings": (32, 48, 0),  # no drums: strings, piano melody
    # arrangements only the held-out set uses (other instruments over the same patterns)
    "dembow-keys": (39, 0, 80),  # synth bass 2, piano, square lead
    "boombap-rhodes": (32, 4, 66),  # acoustic bass, Rhodes, tenor sax
    "funk-organ": (33, 17, 56),  # finger bass, percussive organ, trumpet
    "punk-clean": (33, 27, None),  # finger bass, clean electric guitar (power chords)
    "ballad-piano": (32, 0, 68),  # acoustic bass, piano, oboe
    "pads-choir": (33, 91, 71),  # finger bass, choir pad, clarinet
}

#: (name, genre, drums, bpm, tonic, mode, progression, meter, seconds)
SONGS = [
    ("groove_72_Bm", "slow groove", "groove", 72, "B", "minor", "i-VI-III-VII", 4, 20),
    ("groove_97_Fsm", "slow groove", "groove", 97, "F#", "minor", "i-iv-VII-III", 4, 18),
    ("groove_68_Eb", "slow groove", "groove", 68, "D#", "major", "ii-V-I-I", 4, 20),
    ("groove_84_Am", "slow groove", "groove", 84, "A", "minor", "i-VI-iv-v", 4, 18),
    ("boombap_90_Cm", "hip-hop", "boombap", 90, "C", "minor", "i-VI-III-VII", 4, 18),
    ("boombap_86_F", "hip-hop", "boombap", 86, "F", "major", "I-vi-IV-V", 4, 18),
    ("dembow_95_Bm", "reggaeton", "dembow", 95, "B", "minor", "i-VI-III-VII", 4, 18),
    ("dembow_92_Gm", "reggaeton", "dembow", 92, "G", "minor", "i-iv-VII-III", 4, 18),
    ("dembow_100_Fsm", "reggaeton", "dembow", 100, "F#", "minor", "i-VI-iv-v", 4, 18),
    ("dembow_98_A", "reggaeton", "dembow", 98, "A", "major", "I-V-vi-IV", 4, 18),
    ("rock_120_E", "rock", "rock", 120, "E", "major", "I-IV-I-V", 4, 16),
    ("rock_140_Am", "rock", "rock", 140, "A", "minor", "i-VII-VI-V", 4, 16),
    ("rock_108_D", "rock", "rock", 108, "D", "major", "I-IV-V-I", 4, 16),
    ("rock_160_Em", "rock", "rock", 160, "E", "minor", "i-VI-III-VII", 4, 15),
    ("punk_180_G", "rock", "punk", 180, "G", "major", "I-IV-V-I", 4, 15),
    ("pop_116_C", "pop", "pop", 116, "C", "major", "I-V-vi-IV", 4, 16),
    ("pop_104_Bb", "pop", "pop", 104, "A#", "major", "I-vi-IV-V", 4, 18),
    ("pop_128_Dm", "pop", "pop", 128, "D", "minor", "i-VI-III-VII", 4, 16),
    ("pop_100_Csm", "pop", "pop", 100, "C#", "minor", "i-VI-iv-v", 4, 18),
    ("house_124_Am", "house", "house", 124, "A", "minor", "i-VI-III-VII", 4, 16),
    ("house_128_G", "house", "house", 128, "G", "major", "I-V-vi-IV", 4, 16),
    ("funk_105_Em", "funk", "funk", 105, "E", "minor", "i-i-iv-V", 4, 18),
    ("funk_112_Ab", "funk", "funk", 112, "G#", "major", "I-IV-I-V", 4, 17),
    ("dnb_174_Fm", "drum and bass", "dnb", 174, "F", "minor", "i-VI-III-VII", 4, 15),
    ("dnb_170_Gsm", "drum and bass", "dnb", 170, "G#", "minor", "i-iv-VII-III", 4, 15),
    ("ballad_66_Bm", "ballad", "ballad", 66, "B", "minor", "i-VI-III-VII", 4, 20),
    ("ballad_76_Fsm", "ballad", "ballad", 76, "F#", "minor", "i-iv-V-i", 4, 20),
    ("ballad_60_F", "ballad", "ballad", 60, "F", "major", "I-vi-IV-V", 4, 20),
    ("ballad_80_Ebm", "ballad", "ballad", 80, "D#", "minor", "i-VII-VI-V", 4, 20),
    ("swing_140_Bb", "swing", "swing", 140, "A#", "major", "ii-V-I-I", 4, 16),
    ("swing_120_Cm", "swing", "swing", 120, "C", "minor", "i-iv-V-i", 4, 16),
    ("waltz_90_D", "waltz 3/4", "waltz", 90, "D", "major", "I-IV-V-I", 3, 18),
    ("waltz_144_Gm", "waltz 3/4", "waltz", 144, "G", "minor", "i-iv-V-i", 3, 16),
    ("waltz_174_A", "waltz 3/4", "waltz", 174, "A", "major", "I-V-vi-IV", 3, 15),
    ("pads_70_Csm", "pads, no drums", "none", 70, "C#", "minor", "i-VI-III-VII", 4, 20),
    ("strings_88_Em", "pads, no drums", "none", 88, "E", "minor", "i-iv-VII-III", 4, 20),
]

#: The held-out set: the same generator with other seeds, tempos, keys, progressions and some other
#: instruments (last field: a BANDS entry, or None for the genre's own). The analysis is never tuned
#: on these; bench/analysis_accuracy.py reports them apart (``--set heldout``).
HELDOUT = [
    ("h_groove_78_Gm", "slow groove", "groove", 78, "G", "minor", "i-VI-III-VII", 4, 18, None),
    ("h_groove_92_E", "slow groove", "groove", 92, "E", "major", "I-V-vi-IV", 4, 18, "boombap-rhodes"),
    ("h_boombap_82_Am", "hip-hop", "boombap", 82, "A", "minor", "i-iv-VII-III", 4, 18, None),
    ("h_boombap_94_Dm", "hip-hop", "boombap", 94, "D", "minor", "i-VI-iv-v", 4, 18, "boombap-rhodes"),
    ("h_boombap_88_G", "hip-hop", "boombap", 88, "G", "major", "I-V-vi-IV", 4, 18, None),
    ("h_dembow_90_Em", "reggaeton", "dembow", 90, "E", "minor", "i-VI-III-VII", 4, 18, None),
    ("h_dembow_96_Cm", "reggaeton", "dembow", 96, "C", "minor", "i-iv-VII-III", 4, 18, "dembow-keys"),
    ("h_dembow_94_D", "reggaeton", "dembow", 94, "D", "major", "I-vi-IV-V", 4, 18, None),
    ("h_dembow_102_Asm", "reggaeton", "dembow", 102, "A#", "minor", "i-VI-iv-v", 4, 17, "dembow-keys"),
    ("h_rock_132_C", "rock", "rock", 132, "C", "major", "I-V-vi-IV", 4, 16, None),
    ("h_punk_170_D", "rock", "punk", 170, "D", "major", "I-IV-I-V", 4, 15, "punk-clean"),
    ("h_pop_112_Fm", "pop", "pop", 112, "F", "minor", "i-VI-III-VII", 4, 16, None),
    ("h_pop_96_Eb", "pop", "pop", 96, "D#", "major", "I-IV-V-I", 4, 18, None),
    ("h_house_120_Fm", "house", "house", 120, "F", "minor", "i-iv-VII-III", 4, 16, None),
    ("h_funk_100_Bm", "funk", "funk", 100, "B", "minor", "i-i-iv-V", 4, 18, "funk-organ"),
    ("h_funk_116_D", "funk", "funk", 116, "D", "major", "I-IV-I-V", 4, 17, None),
    ("h_dnb_172_Cm", "drum and bass", "dnb", 172, "C", "minor", "i-VII-VI-V", 4, 15, None),
    ("h_ballad_70_Gm", "ballad", "ballad", 70, "G", "minor", "i-VI-III-VII", 4, 20, "ballad-piano"),
    ("h_ballad_64_Bb", "ballad", "ballad", 64, "A#", "major", "I-V-vi-IV", 4, 20, None),
    ("h_swing_132_F", "swing", "swing", 132, "F", "major", "ii-V-I-I", 4, 16, None),
    ("h_waltz_120_Em", "waltz 3/4", "waltz", 120, "E", "minor", "i-VI-iv-v", 3, 16, None),
    ("h_pads_64_Gm", "pads, no drums", "none", 64, "G", "minor", "i-iv-V-i", 4, 20, "pads-choir"),
    ("h_strings_80_Bbm", "pads, no drums", "none", 80, "A#", "minor", "i-VI-III-VII", 4, 20, None),
    ("h_pads_100_D", "pads, no drums", "none", 100, "D", "major", "I-vi-IV-V", 4, 18, None),
]


#: The second held-out set, written after the rules of the third round were fitted on the 60 songs
#: above and measured once: new seeds, tempos (60-180), keys, four new progressions (two of them
#: starting off the tonic: IV-V-I-I, and minor loops i-III-VII-VI, i-v-VI-VII), drumless songs at
#: 60 and 120, pop at 90 with 16th hats. Never tuned on (``--set heldout2``).
HELDOUT2 = [
    ("h2_groove_74_Cm", "slow groove", "groove", 74, "C", "minor", "i-III-VII-VI", 4, 18, None),
    ("h2_groove_100_A", "slow groove", "groove", 100, "A", "major", "I-iii-IV-V", 4, 18, None),
    ("h2_boombap_84_Fsm", "hip-hop", "boombap", 84, "F#", "minor", "i-VI-III-VII", 4, 18, None),
    ("h2_boombap_92_Bb", "hip-hop", "boombap", 92, "A#", "major", "I-IV-V-I", 4, 18, "boombap-rhodes"),
    ("h2_boombap_78_Em", "hip-hop", "boombap", 78, "E", "minor", "i-v-VI-VII", 4, 18, None),
    ("h2_dembow_88_Am", "reggaeton", "dembow", 88, "A", "minor", "i-VI-III-VII", 4, 18, None),
    ("h2_dembow_97_Gsm", "reggaeton", "dembow", 97, "G#", "minor", "i-iv-VII-III", 4, 18, "dembow-keys"),
    ("h2_dembow_93_F", "reggaeton", "dembow", 93, "F", "major", "I-V-vi-IV", 4, 18, None),
    ("h2_rock_150_B", "rock", "rock", 150, "B", "major", "I-iii-IV-V", 4, 16, None),
    ("h2_rock_126_Dm", "rock", "rock", 126, "D", "minor", "i-VI-III-VII", 4, 16, None),
    ("h2_punk_176_E", "rock", "punk", 176, "E", "major", "I-V-vi-IV", 4, 15, "punk-clean"),
    ("h2_pop_108_G", "pop", "pop", 108, "G", "major", "IV-V-I-I", 4, 18, None),
    ("h2_pop_122_Bm", "pop", "pop", 122, "B", "minor", "i-III-VII-VI", 4, 16, None),
    ("h2_pop_90_Am", "pop", "pop", 90, "A", "minor", "i-VI-III-VII", 4, 18, None),
    ("h2_house_126_Csm", "house", "house", 126, "C#", "minor", "i-VI-III-VII", 4, 16, None),
    ("h2_house_122_F", "house", "house", 122, "F", "major", "I-vi-IV-V", 4, 16, None),
    ("h2_funk_108_Gm", "funk", "funk", 108, "G", "minor", "i-i-iv-V", 4, 17, "funk-organ"),
    ("h2_funk_96_C", "funk", "funk", 96, "C", "major", "I-IV-I-V", 4, 18, None),
    ("h2_dnb_176_Dsm", "drum and bass", "dnb", 176, "D#", "minor", "i-VI-III-VII", 4, 15, None),
    ("h2_ballad_62_D", "ballad", "ballad", 62, "D", "major", "I-V-vi-IV", 4, 20, "ballad-piano"),
    ("h2_ballad_72_Cm", "ballad", "ballad", 72, "C", "minor", "i-VII-VI-V", 4, 20, None),
    ("h2_swing_150_Eb", "swing", "swing", 150, "D#", "major", "ii-V-I-I", 4, 16, None),
    ("h2_swing_110_Am", "swing", "swing", 110, "A", "minor", "i-iv-V-i", 4, 16, None),
    ("h2_waltz_100_F", "waltz 3/4", "waltz", 100, "F", "major", "I-IV-V-I", 3, 18, None),
    ("h2_waltz_160_Dm", "waltz 3/4", "waltz", 160, "D", "minor", "i-iv-V-i", 3, 16, None),
    ("h2_pads_76_Fm", "pads, no drums", "none", 76, "F", "minor", "i-VI-III-VII", 4, 20, "pads-choir"),
    ("h2_strings_92_C", "pads, no drums", "none", 92, "C", "major", "I-iii-IV-V", 4, 18, None),
    ("h2_pads_60_Bm", "pads, no drums", "none", 60, "B", "minor", "i-v-VI-VII", 4, 20, None),
    ("h2_pads_120_E", "pads, no drums", "none", 120, "E", "major", "I-V-vi-IV", 4, 16, None),
]


#: The third held-out set, written after heldout2 had been measured and then seen during further
#: development (docs/audio.md), before any measurement of its own: the clean figure for the final
#: rules (``--set heldout3``). Never tuned on.
HELDOUT3 = [
    ("h3_groove_66_Fm", "slow groove", "groove", 66, "F", "minor", "i-iv-VII-III", 4, 20, None),
    ("h3_groove_88_D", "slow groove", "groove", 88, "D", "major", "I-vi-IV-V", 4, 18, "boombap-rhodes"),
    ("h3_boombap_80_Gm", "hip-hop", "boombap", 80, "G", "minor", "i-VI-III-VII", 4, 18, None),
    ("h3_boombap_96_Ab", "hip-hop", "boombap", 96, "G#", "major", "I-V-vi-IV", 4, 18, None),
    ("h3_boombap_86_Csm", "hip-hop", "boombap", 86, "C#", "minor", "i-III-VII-VI", 4, 18, "boombap-rhodes"),
    ("h3_dembow_91_Dm", "reggaeton", "dembow", 91, "D", "minor", "i-VI-III-VII", 4, 18, None),
    ("h3_dembow_99_Bm", "reggaeton", "dembow", 99, "B", "minor", "i-v-VI-VII", 4, 18, None),
    ("h3_dembow_95_E", "reggaeton", "dembow", 95, "E", "major", "I-IV-I-V", 4, 18, "dembow-keys"),
    ("h3_rock_116_A", "rock", "rock", 116, "A", "major", "I-V-vi-IV", 4, 16, None),
    ("h3_rock_144_Fsm", "rock", "rock", 144, "F#", "minor", "i-VII-VI-V", 4, 16, None),
    ("h3_punk_164_C", "rock", "punk", 164, "C", "major", "I-IV-V-I", 4, 15, None),
    ("h3_pop_118_Eb", "pop", "pop", 118, "D#", "major", "I-vi-IV-V", 4, 16, None),
    ("h3_pop_94_Gm", "pop", "pop", 94, "G", "minor", "i-VI-iv-v", 4, 18, None),
    ("h3_pop_130_E", "pop", "pop", 130, "E", "major", "IV-V-I-I", 4, 16, None),
    ("h3_house_124_Gm", "house", "house", 124, "G", "minor", "i-III-VII-VI", 4, 16, None),
    ("h3_house_118_Bb", "house", "house", 118, "A#", "major", "I-V-vi-IV", 4, 16, None),
    ("h3_funk_102_Am", "funk", "funk", 102, "A", "minor", "i-iv-VII-III", 4, 17, None),
    ("h3_funk_110_F", "funk", "funk", 110, "F", "major", "I-IV-I-V", 4, 17, "funk-organ"),
    ("h3_dnb_168_Em", "drum and bass", "dnb", 168, "E", "minor", "i-v-VI-VII", 4, 15, None),
    ("h3_ballad_68_A", "ballad", "ballad", 68, "A", "major", "I-iii-IV-V", 4, 20, None),
    ("h3_ballad_78_Em", "ballad", "ballad", 78, "E", "minor", "i-VI-III-VII", 4, 20, "ballad-piano"),
    ("h3_swing_126_G", "swing", "swing", 126, "G", "major", "ii-V-I-I", 4, 16, None),
    ("h3_swing_160_Dm", "swing", "swing", 160, "D", "minor", "i-iv-V-i", 4, 15, None),
    ("h3_waltz_84_Bb", "waltz 3/4", "waltz", 84, "A#", "major", "I-V-vi-IV", 3, 18, None),
    ("h3_waltz_138_Am", "waltz 3/4", "waltz", 138, "A", "minor", "i-VI-iv-v", 3, 16, None),
    ("h3_pads_72_D", "pads, no drums", "none", 72, "D", "major", "I-V-vi-IV", 4, 20, "pads-choir"),
    ("h3_strings_66_Gsm", "pads, no drums", "none", 66, "G#", "minor", "i-VI-III-VII", 4, 20, None),
    ("h3_pads_84_Em", "pads, no drums", "none", 84, "E", "minor", "i-iv-V-i", 4, 20, None),
    ("h3_pads_110_F", "pads, no drums", "none", 110, "F", "major", "I-IV-V-I", 4, 16, None),
    ("h3_strings_96_Cm", "pads, no drums", "none", 96, "C", "minor", "i-v-VI-VII", 4, 18, None),
]


#: The fourth held-out set, written in the fourth round after heldout3 had been seen and tuned on,
#: before that round's final rules were measured on it: the clean figure for those rules
#: (``--set heldout4``). Never tuned on.
HELDOUT4 = [
    ("h4_groove_70_Dm", "slow groove", "groove", 70, "D", "minor", "i-VI-III-VII", 4, 20, None),
    ("h4_groove_92_Bb", "slow groove", "groove", 92, "A#", "major", "ii-V-I-I", 4, 18, "boombap-rhodes"),
    ("h4_boombap_76_Am", "hip-hop", "boombap", 76, "A", "minor", "i-iv-VII-III", 4, 18, None),
    ("h4_boombap_82_Eb", "hip-hop", "boombap", 82, "D#", "major", "I-iii-IV-V", 4, 18, None),
    ("h4_boombap_88_Fm", "hip-hop", "boombap", 88, "F", "minor", "i-VI-III-VII", 4, 18, "boombap-rhodes"),
    ("h4_boombap_94_Bm", "hip-hop", "boombap", 94, "B", "minor", "i-v-VI-VII", 4, 18, None),
    ("h4_dembow_90_Csm", "reggaeton", "dembow", 90, "C#", "minor", "i-III-VII-VI", 4, 18, None),
    ("h4_dembow_96_G", "reggaeton", "dembow", 96, "G", "major", "I-V-vi-IV", 4, 18, "dembow-keys"),
    ("h4_rock_112_Em", "rock", "rock", 112, "E", "minor", "i-VI-iv-v", 4, 16, None),
    ("h4_rock_136_D", "rock", "rock", 136, "D", "major", "I-iii-IV-V", 4, 16, None),
    ("h4_punk_180_A", "rock", "punk", 180, "A", "major", "I-IV-V-I", 4, 15, "punk-clean"),
    ("h4_pop_100_C", "pop", "pop", 100, "C", "major", "I-vi-IV-V", 4, 18, None),
    ("h4_pop_116_Fsm", "pop", "pop", 116, "F#", "minor", "i-VI-III-VII", 4, 16, None),
    ("h4_pop_86_Ab", "pop", "pop", 86, "G#", "major", "IV-V-I-I", 4, 18, None),
    ("h4_house_120_Am", "house", "house", 120, "A", "minor", "i-VI-III-VII", 4, 16, None),
    ("h4_house_128_D", "house", "house", 128, "D", "major", "I-V-vi-IV", 4, 16, None),
    ("h4_funk_98_Bm", "funk", "funk", 98, "B", "minor", "i-iv-VII-III", 4, 18, None),
    ("h4_funk_106_G", "funk", "funk", 106, "G", "major", "I-IV-I-V", 4, 17, "funk-organ"),
    ("h4_dnb_172_Am", "drum and bass", "dnb", 172, "A", "minor", "i-VI-III-VII", 4, 15, None),
    ("h4_ballad_64_C", "ballad", "ballad", 64, "C", "major", "I-iii-IV-V", 4, 20, "ballad-piano"),
    ("h4_ballad_74_Gm", "ballad", "ballad", 74, "G", "minor", "i-VII-VI-V", 4, 20, None),
    ("h4_swing_132_F", "swing", "swing", 132, "F", "major", "ii-V-I-I", 4, 16, None),
    ("h4_swing_176_Cm", "swing", "swing", 176, "C", "minor", "i-iv-V-i", 4, 15, None),
    ("h4_waltz_90_E", "waltz 3/4", "waltz", 90, "E", "major", "I-IV-V-I", 3, 18, None),
    ("h4_waltz_150_Gm", "waltz 3/4", "waltz", 150, "G", "minor", "i-VI-iv-v", 3, 16, None),
    ("h4_pads_64_Ab", "pads, no drums", "none", 64, "G#", "major", "I-V-vi-IV", 4, 20, None),
    ("h4_strings_78_Dm", "pads, no drums", "none", 78, "D", "minor", "i-VI-III-VII", 4, 20, None),
    ("h4_pads_88_Bbm", "pads, no drums", "none", 88, "A#", "minor", "i-iv-V-i", 4, 18, "pads-choir"),
    ("h4_strings_104_A", "pads, no drums", "none", 104, "A", "major", "ii-V-I-I", 4, 16, None),
    ("h4_pads_126_Cm", "pads, no drums", "none", 126, "C", "minor", "i-v-VI-VII", 4, 16, None),
    ("h4_pads_70_E", "pads, no drums", "none", 70, "E", "major", "I-iii-IV-V", 4, 20, None),
    ("h4_strings_60_Fm", "pads, no drums", "none", 60, "F", "minor", "i-VII-VI-V", 4, 20, None),
]


def _band(drums: str) -> str:
    return drums if drums != "none" else "pads"


def make_song(name, genre, drums, bpm, tonic, mode, prog, meter, seconds, seed, cut, band=None) -> mido.MidiFile:
    """``cut``: the clip stops mid-loop (no closing tonic bar), and the melody's phrases end on any
    tonic-triad note instead of the tonic: what a clip cut from a longer song sounds like.
    ``band``: a BANDS entry other than the genre's own (other instruments, same patterns)."""
    rng = random.Random(seed)
    root = NAMES.index(tonic)
    chords = PROGRESSIONS[prog]
    scale = MAJOR_SCALE if mode == "major" else MINOR_SCALE
    if band is None:
        band = _band(drums) if "strings" not in name else "strings"
    bass_prog, chord_prog, lead_prog = BANDS[band]
    bars = max(4, int(round(seconds * bpm / 60 / meter)))
    bars -= bars % 4  # whole 4-bar phrases
    events: list[tuple[int, int, int, int, int]] = []  # (tick, channel, note, velocity, duration)

    def jitter() -> int:
        return int(rng.gauss(0, 8))  # ~8 ticks = ~8-17 ms at these tempos

    def hit(ch: int, beat: float, note: int, vel: int, dur_beats: float) -> None:
        t = max(0, int(beat * TPB) + jitter())
        v = max(1, min(127, vel + rng.randint(-8, 8)))
        events.append((t, ch, note, v, max(30, int(dur_beats * TPB))))

    chord_root_oct = 48 + root if root < 7 else 36 + root  # chords around C3-F#4
    for bar in range(bars):
        last = bar == bars - 1 and not cut
        deg, quality = (0, "min" if mode == "minor" else "maj") if last else chords[bar % len(chords)]
        start = bar * meter
        croot = chord_root_oct + deg
        tones = [croot + i for i in TRIADS[quality]]
        if croot > 57:  # keep voicings compact
            tones = [t - 12 for t in tones]
        # drums
        if last:
            for note, pos, vel in ((K, 0, 115), (CRASH, 0, 110)):
                hit(9, start + pos, note, vel, 0.5)
        else:
            for note, pos, vel in DRUMS[drums]:
                if pos < meter:
                    hit(9, start + pos, note, vel, 0.25)
            if bar % 4 == 3 and drums not in ("none", "swing", "waltz", "ballad"):  # fill into the next phrase
                for i in range(4):
                    hit(9, start + meter - 1 + i / 4, S, 70 + 10 * i, 0.2)
        # bass: root on 1, genre rhythm around it; last bar holds the tonic
        broot = 36 + (root + deg) % 12
        if last:
            hit(1, start, broot, 100, meter)
        elif drums == "waltz":
            hit(1, start, broot, 100, 1)
        elif drums == "swing":
            walk = [broot, broot + (3 if quality == "min" else 4), broot + 7, broot + 9 - (1 if quality == "min" else 0)]
            for b in range(4):
                hit(1, start + b, walk[b], 90, 0.9)
        elif drums in ("none", "ballad"):
            hit(1, start, broot, 90, 2)
            hit(1, start + 2, broot + (7 if drums == "ballad" else 0), 80, 2)
        elif drums in ("house", "dembow"):
            for b in range(4):
                hit(1, start + b + (0.5 if drums == "house" else 0), broot, 100, 0.4)
            if drums == "dembow":
                hit(1, start + 0.75, broot, 85, 0.4)
                hit(1, start + 2.75, broot, 85, 0.4)
        elif drums in ("funk", "boombap"):
            for pos, off in ((0, 0), (0.75, 0), (1.5, 12), (2.5, 0), (3.25, 7)):
                hit(1, start + pos, broot + off, 100, 0.3)
        else:  # rock, pop, groove, punk, dnb: eighths or root-fifth
            step = 0.5 if drums in ("rock", "punk") else 1
            for i in range(int(meter / step)):
                hit(1, start + i * step, broot + (7 if drums == "groove" and i == 2 else 0), 95, step * 0.9)
        # chords
        if last:
            for t in tones:
                hit(2, start, t, 85, meter)
        elif drums == "waltz":
            for b in (1, 2):
                for t in tones:
                    hit(2, start + b, t, 70, 0.8)
        elif drums in ("none", "ballad", "dnb", "house") or chord_prog in (48, 89, 90):
            for t in tones:
                hit(2, start, t, 75, meter)  # sustained pad / strings
            if drums == "none" or chord_prog == 48:  # arpeggiated piano/harp-like motion on top
                arp = tones + [tones[1] + 12]
                for i in range(meter * 2):
                    hit(4, start + i / 2, arp[i % len(arp)] + 12, 55, 0.5)
        elif drums in ("rock", "punk"):
            for i in range(meter * 2):  # power chords in eighths
                for t in (tones[0], tones[0] + 7, tones[0] + 12):
                    hit(2, start + i / 2, t, 90, 0.45)
        elif drums == "funk":
            for pos in (0, 0.5, 1.25, 1.75, 2.5, 3, 3.75):
                for t in tones:
                    hit(2, start + pos, t + 12, 80, 0.2)
        else:  # piano / EP comping: on 1 and the "and" of 2
            for pos, d in ((0, 1.5), (1.5, 2.5)):
                for t in tones:
                    hit(2, start + pos, t + 12, 75, d)
        # melody: chord tones on strong beats, scale steps between; phrase ends on the tonic
        if lead_prog is None:
            continue
        phrase_end = bar % 4 == 3
        scale_notes = [60 + (root + s) % 12 + 12 * o for o in (0, 1) for s in scale]
        scale_notes.sort()
        if last:
            hit(3, start, 60 + root + (12 if root < 5 else 0), 90, meter)
            continue
        pos = 0.0
        prev = rng.choice([n for n in scale_notes if n % 12 in {t % 12 for t in tones}])
        while pos < meter - 1e-6:
            strong = pos == int(pos)
            dur = rng.choice([0.5, 0.5, 1.0, 1.0, 1.5] if meter == 4 else [0.5, 1.0, 1.0])
            dur = min(dur, meter - pos)
            if phrase_end and pos >= meter - 2:
                note, dur = 60 + root + (12 if root < 5 else 0), meter - pos
                if cut:
                    note += rng.choice([0, 3 if mode == "minor" else 4, 7])
            elif strong:
                cands = [n for n in scale_notes if n % 12 in {t % 12 for t in tones}]
                note = min(cands, key=lambda n: abs(n - prev) + rng.random() * 5)
            else:
                i = scale_notes.index(min(scale_notes, key=lambda n: abs(n - prev)))
                note = scale_notes[max(0, min(len(scale_notes) - 1, i + rng.choice([-1, 1])))]
            if rng.random() > 0.15 or phrase_end:
                hit(3, start + pos, note, 85, dur * 0.95)
            prev, pos = note, pos + dur

    mid = mido.MidiFile(ticks_per_beat=TPB)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    msgs = [(0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))),
            (0, mido.MetaMessage("time_signature", numerator=meter, denominator=4)),
            (0, mido.MetaMessage("track_name", name=name))]
    arp_prog = 46 if chord_prog == 48 else 0  # harp over strings, piano over pads
    for ch, prog in ((1, bass_prog), (2, chord_prog), (3, lead_prog or 0), (4, arp_prog)):
        msgs.append((0, mido.Message("program_change", channel=ch, program=prog)))
    for ch, vol in ((1, 105), (2, 80), (3, 90), (4, 70), (9, 110)):
        msgs.append((0, mido.Message("control_change", channel=ch, control=7, value=vol)))
    for t, ch, note, vel, dur in events:
        msgs.append((t, mido.Message("note_on", channel=ch, note=note, velocity=vel)))
        msgs.append((t + dur, mido.Message("note_off", channel=ch, note=note, velocity=0)))
    msgs.sort(key=lambda m: (m[0], m[1].type == "note_on"))  # offs before ons at the same tick
    now = 0
    for t, m in msgs:
        track.append(m.copy(time=t - now))
        now = t
    track.append(mido.MetaMessage("end_of_track", time=TPB))
    return mid


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    truth = []
    for which, songs, seed0 in (("tuning", [s + (None,) for s in SONGS], 1000), ("heldout", HELDOUT, 5000),
                                ("heldout2", HELDOUT2, 9000), ("heldout3", HELDOUT3, 13000),
                                ("heldout4", HELDOUT4, 17000)):
        for i, (name, genre, drums, bpm, tonic, mode, prog, meter, seconds, band) in enumerate(songs):
            cut = i % 3 == 1 or prog == "i-VI-III-VII"  # a third of the set, and every i-VI-III-VII loop
            make_song(name, genre, drums, bpm, tonic, mode, prog, meter, seconds, seed0 + i, cut,
                      band).save(OUT / f"{name}.mid")
            truth.append({"name": name, "set": which, "genre": genre, "bpm": bpm, "key": f"{tonic} {mode}",
                          "meter": meter, "progression": prog, "ending": "cut" if cut else "cadence",
                          "instruments": band or "genre's own"})
    (OUT / "songs.json").write_text(json.dumps(truth, indent=1) + "\n")
    print(f"wrote {len(truth)} songs to {OUT}")


if __name__ == "__main__":
    main()
