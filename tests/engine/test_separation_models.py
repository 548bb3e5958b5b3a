"""Separation models: the family's backend and capabilities, the named models' download (progress,
checksum, then offline from the cache) and `make-test-model --family separation`.

The download is served from a local HTTP server holding a tiny HTDemucs checkpoint under the
name scheme of Meta's (`<sig>-<sha256 prefix>.th`); loading goes through demucs-infer's loader."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from dgx_music.common import families
from dgx_music.daemon.engine import separation_models
from dgx_music.daemon.engine.backend import get_backend
from dgx_music.daemon.engine.errors import EngineError
from dgx_music.daemon.engine.models import is_cached, resolve_model


def test_the_separation_family_declares_its_backend_and_names() -> None:
    fam = families.family(families.SEPARATION)
    caps = get_backend("demucs", families.SEPARATION).capabilities
    assert caps.family == fam.name and caps.tasks == (families.SEPARATE_TASK,) and not caps.streams
    assert dict(caps.audio_inputs) == dict(fam.audio_inputs)
    assert all(families.family_for_name(m) == fam.name for m in fam.operation_models)
    assert resolve_model("htdemucs_6s").family == families.SEPARATION
    assert families.SEPARATION not in families.FAMILIES  # not a generation family: no prompt schema


@pytest.fixture
def served(tmp_path: Path, tiny_separator: Path) -> Iterator[tuple[str, str]]:
    """A local server with the tiny checkpoint; yields (root URL, its file name)."""
    root = tmp_path / "www"
    root.mkdir()
    th = next(tiny_separator.glob("*.th"))
    shutil.copy(th, root / th.name)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/", th.name
    finally:
        server.shutdown()


def test_a_named_model_downloads_once_with_progress_then_loads_offline(
        served: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, name = served
    monkeypatch.setitem(separation_models.CHECKPOINTS, "htdemucs", (name,))
    monkeypatch.setenv("DGX_MUSIC_DEMUCS_URL", url)
    cache = tmp_path / "cache"
    spec = resolve_model("htdemucs")
    assert not is_cached(spec, cache)
    with pytest.raises(EngineError) as offline:
        separation_models.fetch("htdemucs", offline=True, cache_dir=cache)
    assert offline.value.code == "model_not_found" and "--offline" in offline.value.message
    seen: list[tuple[float | None, str]] = []
    d = separation_models.fetch("htdemucs", offline=False, cache_dir=cache,
                                progress_cb=lambda p, m: seen.append((p, m)))
    assert is_cached(spec, cache) and (d / name).is_file() and not list(d.glob("*.part"))
    assert seen[-1] == (1.0, "download complete") and any("downloading htdemucs" in m for _, m in seen)
    # Offline from now on (the server is not asked again): the real loader, the real backend.
    monkeypatch.setenv("DGX_MUSIC_DEMUCS_URL", "http://127.0.0.1:9/")
    b = get_backend("demucs", families.SEPARATION)
    b.load("htdemucs", "cpu", "auto", lambda p, m: None, offline=True, cache_dir=str(cache))
    src = (np.random.default_rng(1).standard_normal((2, 48000)) * 0.1).astype(np.float32)
    steps: list[tuple[int, int]] = []
    out, sr = b.run(["x"], {"parts": ["vocals", "other"]}, lambda s, t: steps.append((s, t)), {"source": src})
    assert out.shape == (2, 2, 48000) and sr == 48000 and steps[-1][0] == steps[-1][1] >= 1
    every, _ = b.run(["x"], {"parts": []}, lambda s, t: None, {"source": src})  # all four, the model's order
    assert every.shape == (4, 2, 48000) and np.abs(every.sum(axis=0) - src).max() < 1e-6  # exact: "other" is the rest
    # drums, bass, other, vocals: the same stems as asked by name, and deterministic (no random shifts)
    assert np.abs(every).max() > 1e-4
    assert np.allclose(every[3], out[0], atol=1e-6) and np.allclose(every[2], out[1], atol=1e-6)
    assert json.loads((d / "dgx-music.json").read_text())["sources"] == ["drums", "bass", "other", "vocals"]


def test_a_download_that_does_not_match_its_checksum_is_not_kept(
        served: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, name = served
    wrong = name.split("-")[0] + "-00000000.th"
    www = tmp_path / "www"
    shutil.copy(www / name, www / wrong)
    monkeypatch.setitem(separation_models.CHECKPOINTS, "htdemucs", (wrong,))
    with pytest.raises(EngineError) as bad:
        separation_models.fetch("htdemucs", offline=False, cache_dir=tmp_path / "c", root_url=url)
    assert bad.value.code == "bad_model" and "checksum" in bad.value.message
    assert not any((tmp_path / "c").rglob("*.th")) and not any((tmp_path / "c").rglob("*.part"))


def test_make_test_model_writes_a_repository_demucs_loads(tmp_path: Path) -> None:
    out = tmp_path / "sep"
    r = subprocess.run([sys.executable, "-m", "dgx_music.cli.main", "make-test-model", str(out), "--family",
                        "separation", "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["family"] == "separation" and info["backend"] == "demucs"
    th = next(out.glob("*.th"))
    assert hashlib.sha256(th.read_bytes()).hexdigest().startswith(th.stem.split("-")[1])  # demucs checks this
    from demucs_infer.pretrained import get_model

    model = get_model("test", repo=out)
    assert list(model.sources) == ["drums", "bass", "other", "vocals"] and model.samplerate == 44100
    assert resolve_model(str(out)).family == families.SEPARATION
