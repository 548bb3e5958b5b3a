"""`pip install dgx-music` on a laptop: the TUI and every client command, without the model stack.

Builds the wheel from this checkout, installs it with its real dependencies (resolved by pip, from
its cache or the index) into a fresh virtual environment without system site packages, and drives
that install against a real daemon running from the main environment with the tiny model.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import soundfile as sf

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
#: Never in a client install, whatever the extras say.
HEAVY = {"torch", "transformers", "diffusers", "peft", "accelerate", "librosa", "scipy"}
#: What the wheel is built from (everything pyproject.toml's package-dir maps, and its readme).
SOURCES = ("pyproject.toml", "README.md", "dgx_music", "common", "cli", "tui", "daemon")
#: pip's words when the package index cannot be reached: then there is nothing to test here.
OFFLINE = re.compile(r"NewConnectionError|Temporary failure in name resolution|Network is unreachable|"
                     r"No matching distribution found for (msgpack|numpy|textual|setuptools)")

pytestmark = pytest.mark.slow  # ~45 s on a 2-core box: most of it is pip resolving the install


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def daemon_extra() -> set[str]:
    """The distributions of pyproject.toml's `daemon` extra, normalised."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_norm(re.match(r"[A-Za-z0-9._-]+", r).group(0)) for r in project["optional-dependencies"]["daemon"]}


class LightEnv:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.python = root / "venv" / "bin" / "python"
        self.exe = root / "venv" / "bin" / "dgx-music"
        self.home = root / "home"  # XDG dirs of the laptop user: no config, cache or runtime leaks in

    def env(self, sock: Path | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DGX_MUSIC_", "XDG_", "PYTHON"))}
        env.pop("VIRTUAL_ENV", None)
        env.update(HOME=str(self.home), XDG_CONFIG_HOME=str(self.home / ".config"),
                   XDG_CACHE_HOME=str(self.home / ".cache"), XDG_RUNTIME_DIR=str(self.home / "run"))
        if sock is not None:
            env["DGX_MUSIC_SOCKET"] = str(sock)
        return env

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.exe), *args], capture_output=True, text=True, env=self.env(),
                              timeout=timeout, cwd=self.root)

    async def arun(self, sock: Path, *args: str, timeout: float = 180) -> tuple[int, str, str]:
        """The CLI as a subprocess, without blocking the loop the in-process daemon runs on."""
        proc = await asyncio.create_subprocess_exec(str(self.exe), *args, env=self.env(sock), cwd=self.root,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        return proc.returncode or 0, out.decode(), err.decode()


def _pip(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """This environment's pip (the light venv is made --without-pip: ensurepip costs ~20 s)."""
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=timeout)


def _setuptools_major() -> int:
    try:
        return int(importlib.metadata.version("setuptools").split(".")[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return 0


@pytest.fixture(scope="module")
def light(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LightEnv]:
    root = tmp_path_factory.mktemp("light")
    src, wheels = root / "src", root / "wheels"
    src.mkdir()
    for name in SOURCES:  # a copy: an in-tree build would leave build/ and *.egg-info in the checkout
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy2)(
            ROOT / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                        if (ROOT / name).is_dir() else {}))
    t0 = time.monotonic()
    # Without build isolation when this environment's setuptools reads an SPDX license (77+): ~15 s less.
    isolation = [] if _setuptools_major() < 77 else ["--no-build-isolation"]
    built = _pip("wheel", "--no-deps", *isolation, "-w", str(wheels), str(src))
    assert built.returncode == 0, built.stdout + built.stderr
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    env = LightEnv(root)
    installed = _pip("--python", str(env.python), "install", *map(str, wheels.glob("dgx_music-*.whl")))
    if installed.returncode != 0 and OFFLINE.search(installed.stdout + installed.stderr):
        pytest.skip("the package index is not reachable: cannot resolve a fresh install")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    print(f"light install built in {time.monotonic() - t0:.1f} s")
    env.home.mkdir()
    yield env


def test_client_install_has_no_model_stack(light: LightEnv) -> None:
    listed = _pip("--python", str(light.python), "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    names = {_norm(d["name"]) for d in json.loads(listed.stdout)}
    assert "dgx-music" in names and {"textual", "msgpack", "numpy", "soundfile"} <= names
    assert not names & HEAVY, f"a client install pulls {sorted(names & HEAVY)}"
    assert not names & daemon_extra(), f"a client install pulls the daemon extra's {sorted(names & daemon_extra())}"
    # the venv really is separate: the main environment's packages are not visible from it
    r = subprocess.run([str(light.python), "-c", "import torch"], capture_output=True, text=True, env=light.env(),
                       cwd=light.root)
    assert r.returncode != 0 and "No module named 'torch'" in r.stderr


def test_the_wheel_holds_every_module(light: LightEnv) -> None:
    """pyproject.toml lists the packages by hand: a new subpackage left out is missing from every install."""
    site = subprocess.run([str(light.python), "-c", "import dgx_music, os; print(os.path.dirname(dgx_music.__file__))"],
                          capture_output=True, text=True, env=light.env(), cwd=light.root, check=True).stdout.strip()
    installed = {p.relative_to(site).as_posix() for p in Path(site).rglob("*") if p.suffix in (".py", ".tcss", ".toml")}
    expected = set()
    for folder in ("dgx_music", "common", "cli", "tui", "daemon"):
        prefix = "" if folder == "dgx_music" else f"{folder}/"
        expected |= {prefix + p.relative_to(ROOT / folder).as_posix() for p in (ROOT / folder).rglob("*")
                     if p.suffix in (".py", ".tcss", ".toml") and "__pycache__" not in p.parts}
    assert not expected - installed, f"not in the wheel: {sorted(expected - installed)}"


def test_help_for_every_command(light: LightEnv) -> None:
    r = light.run("--help")
    assert r.returncode == 0 and "generate" in r.stdout and "library" in r.stdout, r.stderr
    # Every subcommand's --help, in one process (each one alone would cost a second): nothing missing.
    code = ("import contextlib, io, sys\n"
            "from dgx_music.cli.main import main, build_parser\n"
            "names = list(build_parser()._subparsers._group_actions[0].choices)\n"
            "for n in names:\n"
            "    out = io.StringIO()\n"
            "    with contextlib.redirect_stdout(out):\n"
            "        try:\n"
            "            main([n, '--help'])\n"
            "        except SystemExit as e:\n"
            "            assert e.code == 0, (n, e.code)\n"
            "    assert 'usage: dgx-music ' + n in out.getvalue(), n\n"
            "print(len(names))\n")
    r = subprocess.run([str(light.python), "-c", code], capture_output=True, text=True, env=light.env(), timeout=120,
                       cwd=light.root)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) >= 30


@pytest.mark.parametrize("argv", [["daemon"], ["analyze", "x.wav"], ["doctor"], ["bench"],
                                  ["make-test-model", "tiny"], ["backup", "bk"], ["restore", "bk"],
                                  ["store", "migrate", "--to", "postgresql://dgx@/dgx", "--storage", "bk"]])
def test_daemon_side_commands_name_the_extra(light: LightEnv, argv: list[str]) -> None:
    r = light.run(*argv, timeout=60)
    assert r.returncode == 4, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "pip install 'dgx-music[daemon]'" in r.stderr, r.stderr
    assert f"dgx-music {argv[0]}" in r.stderr
    j = light.run("--json", *argv, timeout=60)
    err = json.loads(j.stdout)["error"]
    assert j.returncode == 4 and err["code"] == "missing_extra" and err["extra"] == "daemon"
    assert err["missing"] and {_norm(m) for m in err["missing"]} <= daemon_extra()
    assert not (light.root / "tiny").exists() and not (light.root / "bk").exists()


TUI_SCRIPT = """
import asyncio, sys
from dgx_music.tui.app import DgxMusicApp
from dgx_music.tui.player import Player

async def main(sock, track):
    app = DgxMusicApp(sock, cache_dir=sys.argv[3], player=Player(use_sounddevice=False))
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(600):
            if app.connected and track in app.library_view.tracks:
                break
            await pilot.pause(0.05)
        else:
            raise SystemExit("the TUI never showed " + track)
        await pilot.press("f4")
        await pilot.pause(0.2)
    print("tui ok")

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_client_commands_and_tui_against_a_real_daemon(light: LightEnv, studio: Any, tmp_path: Path) -> None:
    sock = studio.server.path
    rc, out, err = await light.arun(sock, "status", "--json")
    assert rc == 0, err
    assert json.loads(out)["data_dir"] == str(studio.data_dir)

    rc, out, err = await light.arun(sock, "generate", "light client groove", "--duration", "1", "--seed", "3",
                                    "--wait", "--json")
    assert rc == 0, err
    job = json.loads(out)
    assert job["state"] == "done"
    track = job["tracks"][0]
    tid = track["id"]

    for argv in (["queue", "--all"], ["library", "--search", "groove"], ["show", tid]):
        rc, out, err = await light.arun(sock, *argv)
        assert rc == 0 and ("groove" in out or tid in out), (argv, err)

    wav = tmp_path / "take.wav"
    rc, out, err = await light.arun(sock, "play", tid, "--to", str(wav))
    assert rc == 0, err
    info = sf.info(str(wav))
    assert info.format == "WAV" and info.samplerate == track["sample_rate"]
    assert info.frames == round(track["duration"] * track["sample_rate"])
    assert info.frames == sf.info(track["file"]).frames

    # export resamples on the client (soxr, part of the client install)
    rc, out, err = await light.arun(sock, "export", tid, "--to", str(tmp_path / "out"), "--format", "flac",
                                    "--sample-rate", "48000")
    assert rc == 0, err
    (flac,) = (tmp_path / "out").glob("*.flac")
    assert sf.info(str(flac)).samplerate == 48000

    proc = await asyncio.create_subprocess_exec(str(light.python), "-c", TUI_SCRIPT, str(sock), tid,
                                                str(tmp_path / "tui-cache"), env=light.env(sock), cwd=light.root,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out_b, err_b = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0 and b"tui ok" in out_b, err_b.decode()[-3000:]
