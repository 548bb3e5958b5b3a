"""Fixtures for the TUI tests: a tiny model, a real daemon, screen dumps."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import pytest


@pytest.fixture(autouse=True)
def _utc_and_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Timestamps render in UTC; no real audio device or player is ever used by accident."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setenv("DGX_MUSIC_NO_SOUNDDEVICE", "1")


@pytest.fixture(scope="session")
def tui_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dgx_music.daemon.engine.testmodel import build_test_model

    return build_test_model(tmp_path_factory.mktemp("tui-tiny-musicgen"), backend="transformers")


@pytest.fixture
async def studio(daemon_factory: Callable[..., Any], tui_tiny_model: Path) -> Any:
    """An in-process daemon with the tiny model."""
    return await daemon_factory(engine__model=str(tui_tiny_model), engine__keep_alive=-1)
