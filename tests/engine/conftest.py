"""Engine fixtures: one tiny model per session, supervisors that always close."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest

from dgx_music.daemon.engine.supervisor import EngineSettings, EngineSupervisor


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny transformers MusicGen with random weights, built once per session."""
    from dgx_music.daemon.engine.testmodel import build_test_model

    return build_test_model(tmp_path_factory.mktemp("tiny-musicgen"), backend="transformers")


class Recorder:
    """Collects supervisor events in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, data: dict[str, Any]) -> None:
        self.events.append((name, data))

    def names(self) -> list[str]:
        return [n for n, _ in self.events]

    def of(self, name: str) -> list[dict[str, Any]]:
        return [d for n, d in self.events if n == name]


@pytest.fixture
async def make_supervisor(tiny_model: Path, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """make_supervisor(**settings) -> (supervisor, recorder); every one is closed after the test."""
    made: list[EngineSupervisor] = []

    def make(**kw: Any) -> tuple[EngineSupervisor, Recorder]:
        kw.setdefault("model", str(tiny_model))
        kw.setdefault("keep_alive", -1)
        kw.setdefault("device", "cpu")
        kw.setdefault("cache_dir", tmp_path / "hf-cache")  # never the user's cache
        rec = Recorder()
        sup = EngineSupervisor(EngineSettings(**kw), rec)
        made.append(sup)
        return sup, rec

    yield make
    for sup in made:
        await sup.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


