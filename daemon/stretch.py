"""Time stretch and pitch shift with the Rubber Band command-line tool (`rubberband`, R3 engine).

Rubber Band is the stretcher DAWs ship (Ardour, Audacity); its R3 ("fine") engine keeps
transients and stereo image far better than a phase vocoder in numpy. The tool runs as a
child process: a cancel kills it, and the daemon's loop and its GIL never wait on it. It is
a system package (Debian/Ubuntu: rubberband-cli); without it, fit and loop jobs fail with an
error that names it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np
import soundfile as sf

from dgx_music.daemon.engine.errors import EngineError

TOOL = "rubberband"
INSTALL_HINT = "install Rubber Band's command-line tool (Debian/Ubuntu: apt-get install rubberband-cli)"


def tool_path() -> str | None:
    return shutil.which(TOOL)


def stretch(audio: np.ndarray, sr: int, time_ratio: float, semitones: float = 0.0, formant: bool = False,
            cancel: threading.Event | None = None) -> np.ndarray:
    """[channels, n] float -> [channels, ~n * time_ratio]: `time_ratio` > 1 is slower (longer),
    `semitones` shifts pitch. Returns a copy of `audio` when there is nothing to do.
    Raises EngineError: bad_request when the tool is missing or fails, cancelled on `cancel`."""
    a = np.ascontiguousarray(np.asarray(audio, dtype=np.float32))
    if abs(time_ratio - 1.0) < 1e-6 and semitones == 0:
        return a.copy()
    exe = tool_path()
    if exe is None:
        raise EngineError("bad_request", f"time stretching needs the `{TOOL}` tool, which is not installed: "
                                         f"{INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="dgx-stretch-") as tmp:
        src, dst = Path(tmp) / "in.wav", Path(tmp) / "out.wav"
        sf.write(str(src), a.T, sr, subtype="FLOAT")
        cmd = [exe, "-3", "-q", "--time", f"{time_ratio:.9f}", "--pitch", f"{semitones:g}"]
        if formant:
            cmd.append("--formant")
        cmd += [str(src), str(dst)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                env={**os.environ, "LC_ALL": "C"})
        try:
            while True:
                try:
                    proc.wait(timeout=0.1)
                    break
                except subprocess.TimeoutExpired:
                    if cancel is not None and cancel.is_set():
                        proc.kill()
                        proc.wait()
                        raise EngineError("cancelled", "cancelled while stretching") from None
        finally:
            if proc.poll() is None:  # an exception other than cancel (KeyboardInterrupt): leave no child
                proc.kill()
                proc.wait()
        err = (proc.stderr.read() if proc.stderr else b"").decode(errors="replace").strip()
        if proc.returncode != 0 or not dst.exists():
            raise EngineError("bad_request", f"{TOOL} failed (exit {proc.returncode}): {err[-300:]}")
        out, out_sr = sf.read(str(dst), dtype="float32", always_2d=True)
    if out_sr != sr:
        raise EngineError("internal", f"{TOOL} wrote {out_sr} Hz for {sr} Hz input")
    return np.ascontiguousarray(out.T)


__all__ = ["INSTALL_HINT", "TOOL", "stretch", "tool_path"]
