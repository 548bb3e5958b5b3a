"""Audio previews: `sounddevice` where it works, else the first command-line player found.

Order: sounddevice (PortAudio) if importable and it reports an output device;
then pw-play, paplay, aplay, afplay, ffplay (first found on PATH). With
PULSE_SERVER set (audio forwarded over SSH, docs/tui.md) paplay comes first;
DGX_MUSIC_PLAYER=<name> (sounddevice or a player above) picks one explicitly. Players are
started with `subprocess.Popen` in their own session and stopped with SIGTERM.
No player and no output device: `PlayerUnavailable` with a message that says
what to install; the TUI shows it as a notice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

#: Command-line players in order of preference, each with its arguments before the file.
COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("pw-play", ()),
    ("paplay", ()),
    ("aplay", ("-q",)),
    ("afplay", ()),
    ("ffplay", ("-nodisp", "-autoexit", "-loglevel", "quiet")),
)
#: Players that read only WAV: other formats are decoded to a WAV in the cache first.
WAV_ONLY = {"aplay"}

NO_OUTPUT_HINT = ("no audio output: install the `player` extra (pip install 'dgx-music[player]') or one of "
                  "pw-play, paplay, aplay, afplay, ffplay; over SSH, forward PulseAudio/PipeWire (docs/tui.md)")
#: A player that ends this long (seconds, at least) before the track does did not play it: ffplay without
#: an audio device exits 0 at once, and a missing device makes aplay exit 1.
EARLY_END = 1.0


class PlayerUnavailable(RuntimeError):
    pass


def _sounddevice() -> Any | None:
    if os.environ.get("DGX_MUSIC_NO_SOUNDDEVICE"):
        return None
    try:
        import sounddevice as sd  # type: ignore[import-not-found]
    except (ImportError, OSError):  # OSError: PortAudio library missing
        return None
    try:
        sd.query_devices(kind="output")
    except Exception:  # no default output device
        return None
    return sd


def preference() -> list[str]:
    """Player names in the order to try. `DGX_MUSIC_PLAYER=<name>` puts one first; with
    PULSE_SERVER set (audio forwarded over SSH) paplay goes first, as pw-play ignores it."""
    names = [n for n, _ in COMMANDS]
    if os.environ.get("PULSE_SERVER"):
        names.remove("paplay")
        names.insert(0, "paplay")
    wanted = os.environ.get("DGX_MUSIC_PLAYER", "").strip()
    if wanted in names:
        names.remove(wanted)
        names.insert(0, wanted)
    return names


def find_command() -> tuple[str, list[str]] | None:
    args_of = dict(COMMANDS)
    for name in preference():
        exe = shutil.which(name)
        if exe:
            return name, [exe, *args_of[name]]
    return None


class Player:
    """One preview at a time. Call `poll()` (the TUI does, 10x a second) to notice the end."""

    def __init__(self, *, use_sounddevice: bool = True) -> None:
        self._use_sd = use_sounddevice
        self._detected = False
        self.backend: str | None = None  # "sounddevice", a command name, or None (no output)
        self._base: list[str] = []
        self._sd: Any = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.track_id: str | None = None
        self.path: Path | None = None
        self.duration: float = 0.0
        self._started = 0.0
        self.last_command: list[str] | None = None
        #: Why the last preview did not play (the player failed, or ended long before the track): set
        #: by `poll()`, cleared by `play()`; the TUI and `dgx-music play` say it.
        self.failure: str | None = None

    def detect(self) -> str | None:
        if not self._detected:
            self._detected = True
            wanted = os.environ.get("DGX_MUSIC_PLAYER", "").strip()
            use_sd = self._use_sd and (wanted in ("", "sounddevice")) and not (
                os.environ.get("PULSE_SERVER") and not wanted)
            self._sd = _sounddevice() if use_sd else None
            if self._sd is not None:
                self.backend = "sounddevice"
            else:
                found = find_command()
                if found:
                    self.backend, self._base = found[0], found[1]
        return self.backend

    def command_for(self, path: Path) -> list[str]:
        return [*self._base, str(path)]

    @property
    def needs_wav(self) -> bool:
        return self.detect() in WAV_ONLY

    @property
    def playing(self) -> bool:
        return self.track_id is not None

    @property
    def position(self) -> float:
        """Seconds since playback started (clamped to the track's duration)."""
        if not self.playing:
            return 0.0
        pos = time.monotonic() - self._started
        return min(pos, self.duration) if self.duration else pos

    def play(self, path: Path, *, track_id: str, duration: float) -> None:
        self.stop()
        self.failure = None
        backend = self.detect()
        if backend is None:
            raise PlayerUnavailable(NO_OUTPUT_HINT)
        if backend == "sounddevice":
            self._play_sd(path)
        else:
            cmd = self.command_for(path)
            self.last_command = cmd
            try:
                self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL, start_new_session=True)
            except OSError as exc:
                raise PlayerUnavailable(f"cannot start {backend}: {exc.strerror or exc}") from None
        self.track_id = track_id
        self.path = path
        self.duration = float(duration or 0.0)
        self._started = time.monotonic()

    def _play_sd(self, path: Path) -> None:
        import soundfile as sf

        try:
            data, rate = sf.read(str(path), dtype="float32", always_2d=True)
            self._sd.play(data, rate)
        except Exception as exc:
            raise PlayerUnavailable(f"sounddevice could not play {path.name}: {exc}") from None

    def poll(self) -> bool:
        """True while playing; notices a player that ended on its own."""
        if self.track_id is None:
            return False
        if self._proc is not None:
            code = self._proc.poll()
            if code is not None:
                self._judge_end(code)
                self._clear()
                return False
            return True
        if self.backend == "sounddevice":
            try:
                active = self._sd.get_stream().active
            except Exception:
                active = self.position < self.duration
            if not active:
                self._clear()
                return False
        return True

    def _judge_end(self, code: int) -> None:
        """A player that ended on its own with an error, or well before the track's end, failed."""
        played = time.monotonic() - self._started
        early = self.duration - played > max(EARLY_END, 0.1 * self.duration)
        if code != 0 or early:
            self.failure = (f"{self.backend} stopped after {played:.1f} s of {self.duration:.1f} s (exit code {code}): "
                            "no sound device? Set DGX_MUSIC_PLAYER to another player; " + NO_OUTPUT_HINT)

    def stop(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                proc.terminate()
            except OSError:
                pass
            try:
                proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                proc.kill()
            except Exception:
                pass
        if self.backend == "sounddevice" and self._sd is not None and self.track_id is not None:
            try:
                self._sd.stop()
            except Exception:
                pass
        self._clear()

    def _clear(self) -> None:
        self._proc = None
        self.track_id = None
        self.path = None
        self.duration = 0.0


def to_wav(src: Path, dst: Path) -> Path:
    """Decode any soundfile-readable file to 16-bit WAV (for WAV-only players)."""
    import soundfile as sf

    data, rate = sf.read(str(src), dtype="int16", always_2d=True)
    tmp = dst.with_suffix(".part")
    sf.write(str(tmp), data, rate, format="WAV", subtype="PCM_16")
    tmp.replace(dst)
    return dst
