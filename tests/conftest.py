"""Fixtures shared by every test: a real daemon on a short temporary socket path."""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

import pytest

# Daemons started as subprocesses by a test (`dgx-music daemon ...`) have HTTP on by default and write
# their token file into the config directory: a throwaway one, never the user's own.
os.environ["XDG_CONFIG_HOME"] = _config_home = tempfile.mkdtemp(prefix="dgxm-config-")
atexit.register(shutil.rmtree, _config_home, True)

from dgx_music.common.client import Client
from dgx_music.common.config import Settings, load_settings
from tests import netns


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp dir with a short path: Unix socket paths are limited to ~107 bytes."""
    d = Path(tempfile.mkdtemp(prefix="dgxm-", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def make_settings(root: Path, **overrides: Any) -> Settings:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DGX_MUSIC_")}
    base = {
        "daemon.socket": str(root / "d.sock"),
        "daemon.data_dir": str(root / "data"),
        "engine.keep_alive": -1,
        # HTTP is on by default at a fixed port: off here (a test turns it on with http__listen), and the
        # token file in the test's own directory.
        "http.listen": "off",
        "http.token_file": str(root / "http-token"),
    }
    base.update({k.replace("__", "."): v for k, v in overrides.items()})
    cfg = root / "config.toml"  # an empty file, so the user's own config never leaks into a test
    cfg.touch()
    return load_settings(cfg, base, env=env)


async def start_http(d: Any) -> Any:
    """Start the HTTP API of an in-process daemon whose settings name its address (tests use
    127.0.0.1:0, an ephemeral port); closed with the daemon. Returns the running API."""
    from dgx_music.daemon import http as http_api

    plan = http_api.plan(d.settings)
    assert plan is not None, "the daemon's settings turn HTTP off"
    api = await http_api.start(d, plan)
    d.extras.append(api)
    return api


@pytest.fixture
async def daemon_factory(short_tmp: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start in-process daemons; each is closed at the end of the test."""
    from dgx_music.daemon.app import Daemon

    started: list[Daemon] = []

    async def start(**overrides: Any) -> Daemon:
        d = Daemon(make_settings(short_tmp, **overrides))
        await d.start()
        started.append(d)
        return d

    yield start
    for d in reversed(started):
        await d.close()


@pytest.fixture
async def daemon(daemon_factory: Callable[..., Any]) -> Any:
    return await daemon_factory()


@pytest.fixture
async def client(daemon: Any) -> AsyncIterator[Client]:
    c = await Client.connect(daemon.server.path)
    yield c
    await c.close()


class DaemonProcess:
    """A daemon in a child process, for signals, restarts and kill -9."""

    def __init__(self, root: Path, *extra: str, env: dict[str, str] | None = None, netns: bool = False) -> None:
        self.root = root
        self.socket = root / "d.sock"
        self.data_dir = root / "data"
        self.log = root / "daemon.log"
        self.extra = extra
        self.env = env or {}
        self.netns = netns  # a network namespace of its own (tests/netns.py), where the machine allows it
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> "DaemonProcess":
        env = {k: v for k, v in os.environ.items() if not k.startswith("DGX_MUSIC_")}
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        argv = [sys.executable, "-m", "dgx_music", "daemon", "--socket", str(self.socket),
                "--data-dir", str(self.data_dir), "--log-level", "debug", "--http", "off", *self.extra]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(netns.wrap(argv) if self.netns else argv,
                                         stdout=log, stderr=subprocess.STDOUT, env=env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log.read_text()}")
            if self.socket.exists():
                try:
                    asyncio.run(_ping(self.socket))
                    return
                except Exception:
                    pass
            time.sleep(0.05)
        raise AssertionError(f"daemon not ready in {timeout}s:\n{self.log.read_text()}")

    def stop(self, sig: int = 15, timeout: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


async def _ping(sock: Path) -> None:
    async with await Client.connect(sock, timeout=1.0) as c:
        await c.call("status", timeout=2.0)


@pytest.fixture
def daemon_process(short_tmp: Path) -> Iterator[Callable[..., DaemonProcess]]:
    procs: list[DaemonProcess] = []

    def make(*extra: str, env: dict[str, str] | None = None, root: Path | None = None,
             netns: bool = False) -> DaemonProcess:
        p = DaemonProcess(root or short_tmp, *extra, env=env, netns=netns)
        procs.append(p)
        return p

    yield make
    for p in procs:
        if p.proc is not None and p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MusicGen with random weights in the real on-disk format, built once per session."""
    from dgx_music.daemon.engine.testmodel import build_test_model

    return build_test_model(tmp_path_factory.mktemp("tiny-musicgen"), backend="transformers")


@pytest.fixture(scope="session")
def tiny_melody_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MusicGen-melody (text + chroma) with random weights, as saved by save_pretrained."""
    from dgx_music.daemon.engine.testmodel import build_test_model

    return build_test_model(tmp_path_factory.mktemp("tiny-melody"), backend="transformers", melody=True)


@pytest.fixture(scope="session")
def tiny_acestep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny diffusers AceStepPipeline (48 kHz stereo, 25 latents/s) with random weights, once per session."""
    from dgx_music.daemon.engine.testmodel import build_test_model

    return build_test_model(tmp_path_factory.mktemp("tiny-acestep"), family="ace-step")


@pytest.fixture(scope="session")
def tiny_separator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny HTDemucs (vocals, drums, bass, other) with random weights as a demucs repository, once per session."""
    from dgx_music.daemon.engine.testmodel import build_test_model

    return build_test_model(tmp_path_factory.mktemp("tiny-separator"), family="separation")


@pytest.fixture
async def studio(daemon_factory: Callable[..., Any], tiny_model: Path) -> Any:
    """An in-process daemon with the tiny model: the whole product, no GPU."""
    return await daemon_factory(engine__model=str(tiny_model), engine__keep_alive=-1)


async def wait_event(client: Client, name: str, job_id: int | None = None, timeout: float = 60.0,
                     seen: list[Any] | None = None) -> Any:
    """Read events until `name` (for `job_id`, if given) arrives; record everything in `seen`."""
    async def scan() -> Any:
        async for ev in client.events():
            if seen is not None:
                seen.append(ev)
            if ev.name == name and (job_id is None or ev.data.get("id") == job_id):
                return ev
    return await asyncio.wait_for(scan(), timeout)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    """A throwaway PostgreSQL cluster for the session (tests/pgcluster.py).  Skips, saying
    why, when PostgreSQL or asyncpg is not installed."""
    from tests.pgcluster import SKIP_REASON, PgCluster, find_bin

    pytest.importorskip("asyncpg", reason="asyncpg is not installed (pip install 'dgx-music[daemon]')")
    bindir = find_bin()
    if bindir is None:
        pytest.skip(SKIP_REASON)
    cluster = PgCluster(bindir)
    try:
        cluster.start()
        cluster.setup_database()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: Any) -> Iterator[str]:
    """store.url of a fresh, empty PostgreSQL schema (the store migrates it), dropped after the test."""
    schema = pg_cluster.new_schema()
    try:
        yield pg_cluster.url(schema=schema)
    finally:
        pg_cluster.drop_schema(schema)
