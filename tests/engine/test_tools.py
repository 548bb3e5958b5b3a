"""doctor, models, bench and the CLI subcommands that expose them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dgx_music.daemon.engine.doctor import doctor, format_report


def test_doctor_reports_verdicts(tmp_path: Path) -> None:
    sock_dir = tmp_path / "run"
    sock_dir.mkdir(mode=0o700)
    rep = doctor(model="small", data_dir=tmp_path / "data", socket_path=sock_dir / "d.sock",
                 cache_dir=tmp_path / "cache", device="cpu")
    by = {c["name"]: c for c in rep["checks"]}
    assert by["torch"]["status"] == "ok" and rep["info"]["torch"]
    assert by["matmul"]["status"] == "ok" and rep["info"]["matmul"]["relative_error"] < 1e-3
    assert by["model"]["status"] == "warn" and "not cached" in by["model"]["detail"]
    assert by["disk"]["status"] in ("ok", "warn") and rep["info"]["disk"]["free"] > 0
    assert by["socket-dir"]["status"] == "ok"
    assert rep["ok"] is True
    text = format_report(rep)
    assert "verdict: ready" in text and "[WARN] model:" in text

    # Offline with an uncached model, and a group-writable socket dir, are failures.
    os.chmod(sock_dir, 0o777)
    bad = doctor(model="small", offline=True, socket_path=sock_dir / "d.sock", cache_dir=tmp_path / "cache",
                 device="cpu")
    by = {c["name"]: c for c in bad["checks"]}
    assert bad["ok"] is False and by["model"]["status"] == "fail" and by["socket-dir"]["status"] == "fail"
    assert "chmod 700" in by["socket-dir"]["detail"] and "NOT READY" in format_report(bad)
    assert doctor(model="no-such-thing", device="cpu")["ok"] is False


def test_cli_doctor_json(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    """(`models` asks the daemon now: tests/cli/test_models_cli.py.)"""
    from dgx_music.cli.main import main

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))  # no user config leaks in
    rc = main(["doctor", "--json", "--device", "cpu", "--model", "random:small"])
    rep = json.loads(capsys.readouterr().out)
    assert rc == (0 if rep["ok"] else 1) and {"torch", "matmul", "model"} <= {c["name"] for c in rep["checks"]}


def test_cli_make_test_model_and_bench(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from dgx_music.cli.main import main

    out = tmp_path / "m"
    assert main(["make-test-model", str(out), "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert Path(made["path"]) == out.resolve() and (out / "config.json").is_file()
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()

    assert main(["bench", "--model", str(out), "--duration", "0.5", "--batch", "2", "--device", "cpu",
                 "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["output_shape"] == [2, 1, 16000] and r["steps"] == 28 and r["device"] == "cpu"
    assert r["load_seconds"] > 0 and r["time_to_first_step"] > 0 and r["steps_per_second"] > 0
    # both figures are rounded to 3 decimals: a fast run (tens of ms) needs the absolute slack
    assert r["rtf"] == pytest.approx(r["generate_seconds"] / 0.5, rel=0.01, abs=0.002) and r["peak_rss"] > 10_000_000

    assert main(["bench", "--model", str(out), "--duration", "301", "--json"]) == 2
