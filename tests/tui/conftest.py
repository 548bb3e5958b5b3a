"""Fixtures for the TUI tests (the tiny model and the daemon come from tests/conftest.py)."""

from __future__ import annotations

import time

import pytest


@pytest.fixture(autouse=True)
def _utc_and_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Timestamps render in UTC; no real audio device or player is ever used by accident."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setenv("DGX_MUSIC_NO_SOUNDDEVICE", "1")
    for name in ("SSH_CONNECTION", "SSH_CLIENT"):  # a run over SSH would send previews to the browser tab
        monkeypatch.delenv(name, raising=False)
