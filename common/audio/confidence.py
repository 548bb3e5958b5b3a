"""When an analysis reading is too unsure to be taken at face value (no numpy: the CLI and TUI
import this to mark such readings; the daemon marks the tags it writes).

The thresholds come from the General MIDI test set (docs/audio.md). On the fresh held-out part
(heldout4) 2 of 3 wrong tempos and 1 of 2 wrong keys fall under them (a key whose tonic cue chose a
chord outside the best-fitting scale is marked; one decided by a wrong chord inside it is not),
while 86% of right tempos and 97% of right keys stay above: a reading not marked low can still be
wrong."""

from __future__ import annotations

LOW_BPM = 0.35
LOW_KEY = 0.35


def is_low(kind: str, confidence: float | None) -> bool:
    """``kind`` "bpm" or "key"; a missing confidence is not low (nothing to say)."""
    if confidence is None:
        return False
    return float(confidence) < (LOW_BPM if kind == "bpm" else LOW_KEY)


def describe(kind: str, confidence: float | None) -> str:
    """'confidence 0.82' or 'low confidence 0.21' (show, TUI, file tags say it the same way)."""
    if confidence is None:
        return "confidence unknown"
    return f"{'low confidence' if is_low(kind, confidence) else 'confidence'} {float(confidence):.2f}"


def tag_text(bpm: float | None, bpm_conf: float | None, key: str | None, key_conf: float | None) -> str:
    """The ID3 TXXX "DGX Music analysis" value, e.g. 'tempo 95.2 BPM (low confidence 0.21); key B minor
    (confidence 0.66)': TBPM/TKEY cannot carry how sure the reading is."""
    parts = []
    if bpm:
        parts.append(f"tempo {float(bpm):.1f} BPM ({describe('bpm', bpm_conf)})")
    if key:
        parts.append(f"key {key} ({describe('key', key_conf)})")
    return "; ".join(parts)
