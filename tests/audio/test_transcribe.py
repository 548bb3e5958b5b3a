"""The vendored Basic Pitch model on synthetic tones (no fluidsynth needed): the right pitches and
times, nothing from silence, and a MIDI file whose notes mido reads back at the written tempo."""

from __future__ import annotations

import io
import threading

import mido
import numpy as np
import pytest

from dgx_music.daemon.audio import transcribe as bp

SR = 48000


def tones(pitches: list[int], seconds: float = 0.5, gap: float = 0.25) -> np.ndarray:
    """Harmonic tones (piano-ish decay) one after another: [2, samples]."""
    step = int((seconds + gap) * SR)
    out = np.zeros(step * len(pitches) + SR // 2, np.float32)
    t = np.arange(int(seconds * SR)) / SR
    for i, p in enumerate(pitches):
        f = 440.0 * 2 ** ((p - 69) / 12)
        note = sum(np.sin(2 * np.pi * f * k * t) / k for k in (1, 2, 3)) * np.exp(-t * 3) * 0.3
        out[i * step:i * step + len(t)] += note.astype(np.float32)
    return np.stack([out, out])


def test_a_scale_of_tones_is_transcribed_note_for_note() -> None:
    pitches = [60, 62, 64, 65, 67, 69, 71, 72]
    notes = bp.transcribe(tones(pitches), SR)
    assert [n.pitch for n in notes] == pitches
    starts = [n.start for n in notes]
    assert np.allclose(starts, [i * 0.75 for i in range(len(pitches))], atol=0.05), starts


def test_silence_and_short_audio() -> None:
    assert bp.transcribe(np.zeros((2, SR * 3), np.float32), SR) == []
    assert len(bp.transcribe(tones([69], seconds=0.3, gap=0.0), SR)) == 1  # shorter than one 2 s window


def test_progress_and_cancel_between_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bp, "BATCH", 1)
    steps: list[tuple[int, int]] = []
    cancel = threading.Event()

    def progress(step: int, total: int) -> None:
        steps.append((step, total))
        cancel.set()

    with pytest.raises(bp.Cancelled):
        bp.transcribe(tones([60] * 8), SR, progress=progress, cancel=cancel)
    assert steps == [(1, steps[0][1])] and steps[0][1] > 1


def test_midi_file_round_trip_at_the_written_tempo() -> None:
    notes = [bp.Note(0.5, 1.0, 60, 100), bp.Note(1.0, 1.25, 64, 80), bp.Note(1.0, 2.0, 67, 90)]
    data = bp.midi_bytes(notes, bpm=90.0, program=33, name="bass")
    mid = mido.MidiFile(file=io.BytesIO(data))
    assert mid.type == 1 and [m.tempo for m in mid.tracks[0] if m.type == "set_tempo"] == [mido.bpm2tempo(90.0)]
    assert [m.program for m in mid.tracks[1] if m.type == "program_change"] == [33]
    now, on, got = 0.0, {}, []
    for msg in mid:
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            on[msg.note] = (now, msg.velocity)
        elif msg.type in ("note_on", "note_off") and msg.note in on:
            start, vel = on.pop(msg.note)
            got.append((round(start, 4), round(now, 4), msg.note, vel))
    assert sorted(got) == [(0.5, 1.0, 60, 100), (1.0, 1.25, 64, 80), (1.0, 2.0, 67, 90)]
    assert bp.midi_bytes([], bpm=None)  # no notes: still a valid file (120 BPM)
