"""Commands that run on the daemon's machine, on an install without the `daemon` extra: one line
naming the extra and exit 4, never an ImportError traceback. Fast, in this environment, by making
the extra name a package that is not installed; test_light_install.py does it for real."""

from __future__ import annotations

import importlib.metadata as md
import json
import sys
from pathlib import Path

import pytest

from dgx_music.cli import extras
from dgx_music.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
#: What the daemon-side commands import between them.
MODEL_STACK = ("torch", "transformers", "scipy", "pyloudnorm", "librosa", "aiosqlite")


def test_the_extra_is_read_from_the_requirements() -> None:
    reqs = ['msgpack>=1.0', 'tomli>=2.0; python_version < "3.11"', 'torch>=2.4; extra == "daemon"',
            'transformers<6,>=5.23; extra == "daemon"', 'pytest>=8; extra == "test"',
            'sounddevice>=0.4; extra == "player"', 'onlylinux; sys_platform == "linux" and extra == "daemon"']
    assert extras.extra_requirements("daemon", reqs) == ["torch", "transformers"]
    assert extras.extra_requirements("test", reqs) == ["pytest"]


def test_the_installed_metadata_names_the_model_stack() -> None:
    """This environment's dgx-music was installed from pyproject.toml with the split (make test does)."""
    names = set(extras.extra_requirements("daemon"))
    if not names:
        pytest.skip("dgx-music's installed metadata predates the daemon extra: reinstall (make test does)")
    assert {"torch", "transformers", "diffusers", "scipy", "aiosqlite"} <= names
    assert extras.missing("daemon") == []


@pytest.mark.parametrize("argv", [["daemon", "--socket", "/nonexistent/d.sock"], ["analyze", "x.wav"],
                                  ["make-test-model", "tiny"], ["doctor"], ["bench"], ["backup", "bk"],
                                  ["restore", "bk"], ["service", "install", "--print"]])
def test_daemon_side_commands_refuse_with_the_extra_to_install(
        argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    # The daemon (and service install) check every distribution of the extra; the tools, the modules they import.
    monkeypatch.setattr(extras, "extra_requirements", lambda extra: ["torch", "dgx-music-not-installed"])
    monkeypatch.setattr(extras, "importable", lambda m: m not in MODEL_STACK)
    assert main(argv) == 4
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and f"`dgx-music {argv[0]}`" in err
    assert "pip install 'dgx-music[daemon]'" in err
    assert not (tmp_path / "tiny").exists() and not (tmp_path / "bk").exists()
    assert main(["--json", *argv]) == 4
    doc = json.loads(capsys.readouterr().out)["error"]
    assert doc["code"] == "missing_extra" and doc["extra"] == "daemon" and doc["missing"]
    assert set(doc["missing"]) <= {"dgx-music-not-installed", *MODEL_STACK}


def test_a_tool_runs_where_the_modules_it_imports_are_installed(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """analyze needs the analysis stack, not torch: a box with only that (or the device bench's
    wheel sets, without aiosqlite) still runs it."""
    import numpy as np
    import soundfile as sf

    monkeypatch.setattr(extras, "extra_requirements", lambda extra: ["dgx-music-not-installed"])
    monkeypatch.setattr(extras, "importable", lambda m: m != "torch")
    wav = tmp_path / "tone.wav"
    sf.write(str(wav), 0.3 * np.sin(np.arange(32000) * 2 * np.pi * 440 / 32000), 32000)
    assert main(["analyze", str(wav), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sample_rate"] == 32000


def test_client_commands_are_not_gated(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    monkeypatch.setattr(extras, "extra_requirements", lambda extra: ["dgx-music-not-installed"])
    assert main(["--socket", str(tmp_path / "none.sock"), "status"]) == 3  # no daemon, not "install an extra"
    assert "dgx-music[daemon]" not in capsys.readouterr().err


def test_an_import_the_metadata_did_not_foresee_gets_the_same_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A bare checkout (no metadata) or a transitive package removed by hand: the import fails inside."""
    monkeypatch.setattr(extras, "extra_requirements", lambda extra: [])
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ModuleNotFoundError
    from dgx_music.cli import engine_commands

    def boom(args: object) -> int:
        import torch  # noqa: F401

        return 0

    monkeypatch.setattr(engine_commands, "doctor_cmd", boom)
    assert main(["doctor"]) == 4
    err = capsys.readouterr().err
    assert "pip install 'dgx-music[daemon]'" in err and "torch" in err


def test_the_exit_code_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "4 the command needs the `daemon` extra" in readme and "pip install 'dgx-music[daemon]'" in readme
    assert "`missing_extra`" in (ROOT / "docs" / "protocol.md").read_text()


def test_a_leftover_egg_info_in_the_checkout_does_not_decide(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`python -m dgx_music` from a checkout puts it first on sys.path, with whatever dgx_music.egg-info
    an old build left there; the metadata pip installed is the one that says what this install has."""
    if not any(d.read_text("INSTALLER") for d in md.distributions(name="dgx-music")):
        pytest.skip("dgx-music is not installed by pip in this environment")
    egg = tmp_path / "dgx_music.egg-info"
    egg.mkdir()
    (egg / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: dgx-music\nVersion: 0.0.1\n")
    (egg / "requires.txt").write_text("msgpack\n\n[daemon]\ndgx-music-long-gone\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert extras.installed().version != "0.0.1"
    assert "dgx-music-long-gone" not in extras.missing("daemon")
