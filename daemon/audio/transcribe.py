"""Audio -> notes -> a standard MIDI file, with Spotify's Basic Pitch model run by onnxruntime.

Why vendored: the basic-pitch wheel (Apache-2.0, LICENSE and NOTICE beside the model in
basic_pitch/) requires TensorFlow on Linux, a dependency of hundreds of MB for a 230 KB network.
We ship its ONNX export (basic_pitch/nmp.onnx, sha256 2c3c1d14..., from basic-pitch 0.4.0) and
re-implement the small pre/post-processing: 2 s windows at 22050 Hz with 30 overlapping frames,
then the note decoding of basic_pitch/note_creation.py (onset peaks, frames held above a
threshold, the "melodia trick" for notes without a clear onset). Pitch bends are not decoded.
So the tests run the real model offline, on the CPU, in well under a second per second of audio.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

MODEL_PATH = Path(__file__).with_name("basic_pitch") / "nmp.onnx"
SR = 22050  # the model's rate
FFT_HOP = 256
WINDOW = SR * 2 - FFT_HOP  # samples per model window (43844)
FRAMES_PER_WINDOW = 172
OVERLAP_FRAMES = 30
OVERLAP = OVERLAP_FRAMES * FFT_HOP
HOP = WINDOW - OVERLAP
FPS = SR // FFT_HOP  # 86 frames per second (the annotation rate the model was trained at)
MIDI_OFFSET = 21  # the model's 88 bins start at A0
N_BINS = 88
BATCH = 8  # windows per onnxruntime call: progress and cancel are checked between batches

#: Defaults of basic-pitch's `predict` (onset 0.5, frame 0.3, 127.7 ms minimum note).
ONSET_THRESHOLD = 0.5
FRAME_THRESHOLD = 0.3
MIN_NOTE_SECONDS = 0.1277
ENERGY_TOL = 11


class Cancelled(Exception):
    """The cancel flag was set between two batches."""


@dataclass(frozen=True)
class Note:
    start: float  # seconds
    end: float
    pitch: int  # MIDI note number
    velocity: int  # 1..127


@functools.lru_cache(maxsize=1)
def _session(threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads  # the box's cores belong to the models and the event loop too
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(MODEL_PATH), sess_options=opts, providers=["CPUExecutionProvider"])


def to_model_rate(audio: np.ndarray, sr: int) -> np.ndarray:
    """[channels, samples] (or [samples]) at `sr` -> mono float32 at 22050 Hz."""
    import soxr

    mono = np.asarray(audio, dtype=np.float32)
    if mono.ndim == 2:
        mono = mono.mean(axis=0)
    if sr != SR:
        mono = soxr.resample(mono, sr, SR, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(mono)


def activations(mono: np.ndarray, *, progress: Callable[[int, int], None] | None = None,
                cancel: threading.Event | None = None, threads: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Model outputs for 22050 Hz mono audio: (frames, onsets), each [n_frames, 88] in 0..1."""
    padded = np.concatenate([np.zeros(OVERLAP // 2, np.float32), mono])
    starts = list(range(0, len(padded), HOP)) or [0]
    windows = np.zeros((len(starts), WINDOW, 1), np.float32)
    for i, s in enumerate(starts):
        chunk = padded[s:s + WINDOW]
        windows[i, :len(chunk), 0] = chunk
    sess = _session(threads)
    notes, onsets = [], []
    total = len(starts)
    for b in range(0, total, BATCH):
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        onset, note, _contour = sess.run(
            ["StatefulPartitionedCall:2", "StatefulPartitionedCall:1", "StatefulPartitionedCall:0"],
            {"serving_default_input_2:0": windows[b:b + BATCH]})
        notes.append(note)
        onsets.append(onset)
        if progress is not None:
            progress(min(b + BATCH, total), total)
    n_out = int(np.floor(len(mono) * (FPS / SR)))
    half = OVERLAP_FRAMES // 2

    def unwrap(parts: list[np.ndarray]) -> np.ndarray:
        out = np.concatenate(parts)[:, half:-half, :]
        return out.reshape(-1, N_BINS)[:n_out]

    return unwrap(notes), unwrap(onsets)


def _frame_times(n_frames: int) -> np.ndarray:
    """basic-pitch's model_frames_to_time: frame index -> seconds, with its per-window correction."""
    frames_per_window = FPS * 2
    t = np.arange(n_frames) * FFT_HOP / SR
    offset = (FFT_HOP / SR) * (frames_per_window - WINDOW / FFT_HOP) + 0.0018
    return t - offset * np.floor(np.arange(n_frames) / frames_per_window)


def _inferred_onsets(onsets: np.ndarray, frames: np.ndarray, n_diff: int = 2) -> np.ndarray:
    diffs = []
    for n in range(1, n_diff + 1):
        shifted = np.concatenate([np.zeros((n, frames.shape[1])), frames])
        diffs.append(shifted[n:, :] - shifted[:-n, :])
    diff = np.min(diffs, axis=0)
    diff[diff < 0] = 0
    diff[:n_diff, :] = 0
    if diff.max() > 0:
        diff = onsets.max() * diff / diff.max()
    return np.maximum(onsets, diff)


def decode(frames: np.ndarray, onsets: np.ndarray, *, onset_threshold: float = ONSET_THRESHOLD,
           frame_threshold: float = FRAME_THRESHOLD, min_note_seconds: float = MIN_NOTE_SECONDS) -> list[Note]:
    """basic-pitch's output_to_notes_polyphonic (with inferred onsets and the melodia trick)."""
    from scipy.signal import argrelmax

    n_frames = frames.shape[0]
    if n_frames < 3:
        return []
    min_len = int(np.round(min_note_seconds * FPS))
    onsets = _inferred_onsets(onsets, frames)
    peaks = np.zeros(onsets.shape)
    idx = argrelmax(onsets, axis=0)
    peaks[idx] = onsets[idx]
    on_t, on_f = np.where(peaks >= onset_threshold)
    energy = frames.astype(np.float64).copy()
    events: list[tuple[int, int, int, float]] = []

    def clear(a: int, b: int, f: int) -> None:
        energy[a:b, max(f - 1, 0):min(f + 2, N_BINS)] = 0

    for start, f in zip(on_t[::-1], on_f[::-1]):  # backwards in time, as upstream
        if start >= n_frames - 1:
            continue
        i, k = start + 1, 0
        while i < n_frames - 1 and k < ENERGY_TOL:
            k = k + 1 if energy[i, f] < frame_threshold else 0
            i += 1
        i -= k
        if i - start <= min_len:
            continue
        clear(start, i, f)
        events.append((start, i, f + MIDI_OFFSET, float(np.mean(frames[start:i, f]))))

    while energy.max() > frame_threshold:  # the melodia trick: strong frames that had no onset
        mid, f = np.unravel_index(np.argmax(energy), energy.shape)
        energy[mid, f] = 0
        i, k = mid + 1, 0
        while i < n_frames - 1 and k < ENERGY_TOL:
            k = k + 1 if energy[i, f] < frame_threshold else 0
            clear(i, i + 1, f)
            i += 1
        end = i - 1 - k
        i, k = mid - 1, 0
        while i > 0 and k < ENERGY_TOL:
            k = k + 1 if energy[i, f] < frame_threshold else 0
            clear(i, i + 1, f)
            i -= 1
        start = i + 1 + k
        if end - start <= min_len:
            continue
        events.append((start, end, f + MIDI_OFFSET, float(np.mean(frames[start:end, f]))))

    times = _frame_times(n_frames)
    notes = [Note(start=max(0.0, float(times[a])), end=float(times[min(b, n_frames - 1)]), pitch=int(p),
                  velocity=int(np.clip(round(127 * amp), 1, 127))) for a, b, p, amp in events]
    return sorted(notes, key=lambda n: (n.start, n.pitch))


def transcribe(audio: np.ndarray, sr: int, *, progress: Callable[[int, int], None] | None = None,
               cancel: threading.Event | None = None, threads: int = 2) -> list[Note]:
    """Audio [channels, samples] at `sr` -> notes, sorted by start. Raises Cancelled."""
    frames, onsets = activations(to_model_rate(audio, sr), progress=progress, cancel=cancel, threads=threads)
    return decode(frames, onsets)


# ------------------------------------------------------------------------------- MIDI file
TICKS_PER_BEAT = 480


def midi_bytes(notes: list[Note], *, bpm: float | None, program: int = 0, name: str = "") -> bytes:
    """A type-1 standard MIDI file: a tempo track (the track's analysed bpm, 120 if unknown) and one
    track of notes on channel 1 with a GM `program`; times exact to the tick at that tempo."""
    import io

    import mido

    tempo = mido.bpm2tempo(bpm if bpm and bpm > 0 else 120.0)
    mid = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    meta = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=tempo, time=0),
                           mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0)])
    mid.tracks.append(meta)
    track = mido.MidiTrack()
    if name:
        track.append(mido.MetaMessage("track_name", name=name[:100], time=0))
    track.append(mido.Message("program_change", channel=0, program=program, time=0))

    def tick(seconds: float) -> int:
        return int(round(mido.second2tick(seconds, TICKS_PER_BEAT, tempo)))

    events: list[tuple[int, int, mido.Message]] = []  # (tick, order: offs first, message)
    for n in notes:
        a, b = tick(n.start), tick(n.end)
        if b <= a:
            b = a + 1
        events.append((a, 1, mido.Message("note_on", channel=0, note=n.pitch, velocity=n.velocity)))
        events.append((b, 0, mido.Message("note_off", channel=0, note=n.pitch, velocity=0)))
    events.sort(key=lambda e: (e[0], e[1]))
    now = 0
    for t, _o, msg in events:
        track.append(msg.copy(time=t - now))
        now = t
    track.append(mido.MetaMessage("end_of_track", time=0))
    mid.tracks.append(track)
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()
