"""`dgx-music models` describes the daemon's models, not the machine the CLI runs on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_cli_e2e import cli


def _fake_cached(cache: Path, repo: str) -> None:
    """A hub cache entry as huggingface_hub lays it out (refs/main -> snapshots/<hash>/config.json)."""
    root = cache / ("models--" + repo.replace("/", "--"))
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text("abc123")
    (root / "snapshots" / "abc123").mkdir(parents=True)
    (root / "snapshots" / "abc123" / "config.json").write_text("{}")


async def test_models_come_from_the_daemon(studio: Any, tiny_model: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    daemon_cache, laptop_cache = tmp_path / "daemon-hub", tmp_path / "laptop-hub"
    _fake_cached(daemon_cache, "facebook/musicgen-small")
    laptop_cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(daemon_cache))  # the in-process daemon's cache

    rc, out, err = await cli(studio.server.path, "models", "--json", env={"HF_HUB_CACHE": str(laptop_cache)})
    assert rc == 0, err
    data = json.loads(out)
    names = [m["name"] for m in data["models"]]
    assert names[:4] == ["small", "medium", "large", "melody"] and "random:small" in names
    by = {m["name"]: m for m in data["models"]}
    assert by["small"]["cached"] is True and by["medium"]["cached"] is False  # the daemon's cache, not ours
    assert data["configured"] == by[data["configured"]]["name"] and by[data["configured"]]["configured"]
    assert Path(by[data["configured"]]["path"]) == tiny_model

    rc, out, err = await cli(studio.server.path, "models", env={"HF_HUB_CACHE": str(laptop_cache)})
    assert rc == 0, err
    lines = out.splitlines()
    assert any(line.startswith("  small ") and " cached " in line for line in lines)
    assert any(line.startswith("* ") for line in lines)


async def test_models_without_a_daemon_says_so(tmp_path: Path) -> None:
    rc, out, err = await cli(tmp_path / "no.sock", "models")
    assert rc == 3 and out == ""
    assert "no daemon socket" in err and "dgx-music daemon" in err
    rc, out, _ = await cli(tmp_path / "no.sock", "models", "--json")
    assert rc == 3 and json.loads(out)["error"]["code"] == "unreachable"
