"""ACE-Step task types beyond text to music: repaint, cover, extract (stems), lego (add a part).

The wire keys a generate frame's params may carry for them (see docs/engine.md), checked
here in the worker, and the keyword arguments of the diffusers pipeline calls they make.
The source travels as the named audio input `source`: float32 [2, samples] at 48 kHz.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from dgx_music.daemon.engine.errors import EngineError

SOURCE = "source"
TASKS = ("text2music", "repaint", "cover", "extract", "lego")
#: Wire keys of the task types (all optional; task defaults to text2music).
TASK_KEYS = frozenset({"task", "repaint_start", "repaint_end", "strength", "parts"})


def check_task(p: dict[str, Any], audio_in: Mapping[str, Any] | None, n: int, sample_rate: int) -> str:
    """The frame's task, after checking that its keys and its source agree; normalises p in place."""
    audio_in = audio_in or {}
    task = p.get("task") or "text2music"
    if task not in TASKS:
        raise EngineError("bad_request", f"task: one of {', '.join(TASKS)}, got {task!r}")
    extra = sorted(set(audio_in) - {SOURCE})
    if extra:
        raise EngineError("bad_request", f"{extra[0]}: ACE-Step takes only a `source` audio input")
    if task == "text2music":
        if audio_in:
            raise EngineError("bad_request", "source: text2music takes no source audio")
        return task
    src = audio_in.get(SOURCE)
    if src is None:
        raise EngineError("bad_request", f"source: the {task} task needs source audio")
    if not isinstance(src, np.ndarray) or src.ndim != 2 or src.shape[0] != 2 or src.shape[1] < sample_rate // 10:
        raise EngineError("bad_request", f"source: must be stereo float32 at {sample_rate} Hz")
    if task == "repaint":
        start, end = p.get("repaint_start"), p.get("repaint_end")
        if not isinstance(start, (int, float)) or not isinstance(end, (int, float)) or not 0 <= start < end:
            raise EngineError("bad_request", "repaint_start/repaint_end: need 0 <= start < end, in seconds")
    if task == "cover":
        strength = p.get("strength", 1.0)
        if not isinstance(strength, (int, float)) or not 0.0 <= float(strength) <= 1.0:
            raise EngineError("bad_request", "strength: between 0 and 1")
    if task in ("extract", "lego"):
        parts = p.get("parts")
        if not isinstance(parts, list) or len(parts) < n or not all(isinstance(x, str) and x for x in parts):
            raise EngineError("bad_request", f"parts: the {task} task needs a part name per variation")
        p["parts"] = parts[:n]  # a batch split after an out-of-memory error keeps its own parts
    return task


def task_kwargs(task: str, p: dict[str, Any], prompts: list[str], source: Any) -> list[dict[str, Any]]:
    """The pipeline calls for one frame: each a dict of keyword arguments including `prompt` (a list).

    extract and lego name one part per call (the pipeline formats one instruction per call),
    so a stems job makes one call per part; the other tasks make one call for the batch."""
    n = len(prompts)
    base = dict(src_audio=source, audio_duration=None)  # None: the output and the metadata follow the source
    if task in ("extract", "lego"):
        return [dict(prompt=[prompt], lyrics=[p["lyrics"]], vocal_language=[p["language"]], task_type=task,
                     track_name=part, **base) for prompt, part in zip(prompts, p["parts"])]
    kw: dict[str, Any] = dict(prompt=list(prompts), lyrics=[p["lyrics"]] * n, vocal_language=[p["language"]] * n,
                              task_type=task, **base)
    if task == "repaint":
        kw.update(repainting_start=float(p["repaint_start"]), repainting_end=float(p["repaint_end"]))
    elif task == "cover":
        kw.update(audio_cover_strength=float(p.get("strength", 1.0)))
    return [kw]
