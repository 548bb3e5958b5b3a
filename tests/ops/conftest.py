"""Fixtures for the operations tests: the tiny model, a daemon with the HTTP API on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.conftest import start_http

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def ops_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight MusicGen; the suite-wide one when the root conftest provides it."""
    try:
        return request.getfixturevalue("tiny_model")
    except pytest.FixtureLookupError:
        from dgx_music.daemon.engine.testmodel import build_test_model

        return build_test_model(tmp_path_factory.mktemp("ops-tiny-musicgen"), backend="transformers")


@pytest.fixture
async def http_daemon(daemon_factory: Callable[..., Any], ops_model: Path) -> Any:
    """A real in-process daemon (tiny model) with the HTTP API on 127.0.0.1, an ephemeral port."""
    d = await daemon_factory(engine__model=str(ops_model), http__listen="127.0.0.1:0")
    d.http = await start_http(d)
    return d


def bearer(api: Any) -> dict[str, str]:
    """The header that authenticates to an HttpApi (the daemon makes the token at start)."""
    return {"Authorization": f"Bearer {api.plan.token}"}


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run `dgx-music ARGS` in a subprocess with a clean DGX_MUSIC_* environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("DGX_MUSIC_")}
    base.update(env or {})
    return subprocess.run([sys.executable, "-m", "dgx_music", *args], capture_output=True, text=True,
                          env=base, timeout=timeout)
