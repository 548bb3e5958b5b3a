"""Job kinds: what each kind of job does at submit and at run time (the scheduler runs them all).

    kinds.py       the JobKind interface, JobRow / Work, the registry
    generate.py    text to music (any family; MusicGen with a melody)
    extend.py      continuing a library track
    operations.py  repaint, cover, stems, add a part (ACE-Step)
    midi.py        a track or file transcribed to MIDI (no model worker)
    fitloop.py     fit to a tempo and key, bar-exact loops
    train.py       training a style (a LoRA) on your tracks (ACE-Step): its result is a style

Importing the package registers the built-in kinds.
"""

from __future__ import annotations

from dgx_music.daemon.jobs import kinds
from dgx_music.daemon.jobs.extend import ExtendKind
from dgx_music.daemon.jobs.generate import EXTEND, GENERATE, GenerateKind, submit_kind
from dgx_music.daemon.jobs.kinds import JobContext, JobKind, JobRow, Work, kind_of, named, register, unregister
from dgx_music.daemon.jobs.midi import KIND as MIDI_KIND
from dgx_music.daemon.jobs.fitloop import KINDS as FITLOOP_KINDS
from dgx_music.daemon.jobs.operations import KINDS as OPERATION_KINDS
from dgx_music.daemon.jobs.train import TRAIN_KIND, TrainKind

# Asked in reverse order: an operation, then extend, then plain generation.
register(GenerateKind())
register(ExtendKind())
for _kind in (*OPERATION_KINDS.values(), *FITLOOP_KINDS.values()):
    register(_kind)
register(MIDI_KIND)
register(TrainKind())

__all__ = ["EXTEND", "GENERATE", "JobContext", "JobKind", "JobRow", "TRAIN_KIND", "Work", "kind_of", "kinds", "named", "register",
           "submit_kind", "unregister"]
