"""Fixtures of the queue tests that several files share."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def shared(short_tmp: Path) -> Path:
    """A short temp dir with a `shared` folder in it: the storage root several hosts mount."""
    (short_tmp / "shared").mkdir()
    return short_tmp
