"""Model name resolution and offline behaviour: no torch, no network."""

from __future__ import annotations

from pathlib import Path

import pytest

from dgx_music.daemon.engine.errors import EngineError
from dgx_music.daemon.engine.models import (cached_snapshot, fetch_model, is_cached, known_models,
                                            resolve_model)


def test_aliases_map_to_facebook_repos() -> None:
    for alias in ("small", "medium", "large", "melody"):
        spec = resolve_model(alias)
        assert spec.kind == "hub" and spec.ref == f"facebook/musicgen-{alias}"
    assert resolve_model("melody").is_melody


def test_random_sizes_and_unknown_size() -> None:
    assert resolve_model("random:medium").kind == "random"
    with pytest.raises(EngineError) as ei:
        resolve_model("random:huge")
    assert ei.value.code == "model_not_found" and "random:small" in ei.value.message


def test_directory_hub_id_and_garbage(tmp_path: Path) -> None:
    spec = resolve_model(str(tmp_path))
    assert spec.kind == "local" and spec.ref == str(tmp_path.resolve())
    assert resolve_model("someone/musicgen-finetune").kind == "hub"
    for bad in ("not-a-model", "/no/such/dir", "a/b/c", ""):
        with pytest.raises(EngineError) as ei:
            resolve_model(bad)
        assert ei.value.code == "model_not_found"


def test_offline_without_cache_fails_clearly(tmp_path: Path) -> None:
    spec = resolve_model("small")
    assert not is_cached(spec, tmp_path)
    with pytest.raises(EngineError) as ei:
        fetch_model(spec, "transformers", offline=True, cache_dir=tmp_path)
    err = ei.value
    assert err.code == "model_not_found" and not err.transient
    assert "facebook/musicgen-small" in err.message and "offline" in err.message and str(tmp_path) in err.message


def test_cache_layout_is_detected(tmp_path: Path) -> None:
    root = tmp_path / "models--facebook--musicgen-small"
    snap = root / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text("a" * 40)
    assert cached_snapshot("facebook/musicgen-small", tmp_path) is None  # empty snapshot: not usable
    (snap / "config.json").write_text("{}")
    assert cached_snapshot("facebook/musicgen-small", tmp_path) == snap
    assert fetch_model(resolve_model("small"), "transformers", offline=True, cache_dir=tmp_path) == snap
    listed = {m["name"]: m for m in known_models(tmp_path)}
    assert listed["small"]["cached"] is True and listed["medium"]["cached"] is False
    assert listed["random:large"]["kind"] == "random"
    assert set(listed) >= {"small", "medium", "large", "melody", "random:small", "random:medium", "random:large"}


def test_download_progress_reports_bytes() -> None:
    """snapshot_download's byte bars (unit "B") become (fraction, message) callbacks; file counters do not."""
    from dgx_music.daemon.engine.models import _byte_tqdm

    seen: list[tuple[float | None, str]] = []
    cls = _byte_tqdm(lambda p, m: seen.append((p, m)))
    bar = cls(total=200_000_000, unit="B", unit_scale=True, desc="Reconstructing", mininterval=0)
    bar.update(50_000_000)
    bar.update(150_000_000)
    bar.close()
    files = cls(total=3, desc="Fetching 3 files", name="ignored")
    files.update(3)
    files.close()
    assert seen and seen[-1][0] == pytest.approx(1.0) and "200 MB" in seen[-1][1]
    assert all(p is None or 0 <= p <= 1 for p, _ in seen)
    assert any(p == pytest.approx(0.25) for p, _ in seen)
