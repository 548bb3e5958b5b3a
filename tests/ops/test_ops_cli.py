"""`service install`, `config`, config errors at start, docs listing every key, backup/restore."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from dgx_music.cli import ops_cmd
from dgx_music.common.config import OPTIONS, load_settings
from dgx_music.common.client import Client

from .conftest import REPO, cli

# ----------------------------------------------------------------------------- systemd units


def _home_env(root: Path) -> dict[str, str]:
    return {"HOME": str(root / "home"), "XDG_CONFIG_HOME": str(root / "home/.config"),
            "XDG_DATA_HOME": str(root / "home/.local/share"), "XDG_CACHE_HOME": str(root / "home/.cache"),
            "XDG_RUNTIME_DIR": str(root / "run")}


def test_service_install_print_writes_nothing(short_tmp: Path) -> None:
    env = _home_env(short_tmp)
    r = cli("service", "install", "--user", "--print", env=env)
    assert r.returncode == 0, r.stderr
    assert not (short_tmp / "home").exists()  # nothing written, not even directories
    unit = r.stdout
    assert f"ExecStart={ops_cmd.exec_start_for()}" in unit  # this installation's python / script
    assert f"--data-dir {short_tmp}/home/.local/share/dgx-music" in unit
    for line in ("Type=notify", "Restart=on-failure", "WatchdogSec=", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "ProtectHome=read-only", "PrivateTmp=yes", "ReadWritePaths=",
                 "LimitNOFILE=65536", "ConfigurationDirectory=dgx-music", f"-{short_tmp}/home/.config/dgx-music"):
        assert line in unit, line
    system = cli("service", "install", "--system", "--print", env=env).stdout
    assert "User=dgx-music" in system and "DevicePolicy=closed" in system and "LimitNOFILE=65536" in system
    assert "Environment=DGX_MUSIC_TOKEN_FILE=/var/lib/dgx-music/http-token" in system  # the HTTP token, writable
    assert "DeviceAllow=/dev/nvidiactl rw" in system and "DeviceAllow=char-nvidia-frontend rw" in system
    assert not re.search(r"^(PrivateDevices|MemoryDenyWriteExecute)=", system, re.M)


def test_service_install_writes_units_and_prints_commands(short_tmp: Path) -> None:
    env = _home_env(short_tmp)
    r = cli("service", "install", "--user", env=env)
    assert r.returncode == 0, r.stderr
    unit_dir = short_tmp / "home/.config/systemd/user"
    assert (unit_dir / "dgx-music.service").is_file() and (unit_dir / "dgx-music.socket").is_file()
    assert "systemctl --user enable --now dgx-music.socket dgx-music.service" in r.stdout
    sock = (unit_dir / "dgx-music.socket").read_text()
    assert f"ListenStream={short_tmp}/run/dgx-music/daemon.sock" in sock and "SocketMode=0600" in sock
    assert (short_tmp / "home/.local/share/dgx-music").is_dir()


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)")
@pytest.mark.parametrize("mode", ["user", "system"])
def test_systemd_analyze_verify_accepts_rendered_units(short_tmp: Path, mode: str) -> None:
    settings = load_settings(None,
                             {"daemon.data_dir": str(short_tmp / "data"),
                              "daemon.socket": str(short_tmp / "run/dgx-music/daemon.sock")},
                             env={})
    up = ops_cmd.unit_paths(mode, settings)
    d = short_tmp / mode
    d.mkdir()
    (d / "dgx-music.service").write_text(ops_cmd.render_service(up))
    (d / "dgx-music.socket").write_text(ops_cmd.render_socket(up))
    r = subprocess.run([SYSTEMD_ANALYZE, "verify", "--man=no", str(d / "dgx-music.service"),
                        str(d / "dgx-music.socket")], capture_output=True, text=True, timeout=60)
    problems = [line for line in (r.stdout + r.stderr).splitlines()
                if re.search(r"dgx-music\.(service|socket)", line) and not re.search(r"ignoring inaccessible", line)]
    assert r.returncode == 0 and not problems, r.stdout + r.stderr


def test_repository_units_match_the_renderer() -> None:
    for rel, text in ops_cmd.example_units().items():
        path = REPO / "systemd" / rel
        assert path.read_text() == text, f"systemd/{rel} is stale: regenerate with ops_cmd.example_units()"


# ----------------------------------------------------------------------------- config
def test_config_show_says_where_each_value_came_from(short_tmp: Path) -> None:
    cfg = short_tmp / "c.toml"
    cfg.write_text('[daemon]\nqueue_limit = 7\n[engine]\nmodel = "medium"\n')
    r = cli("config", "show", "--json", "--config", str(cfg), "--data-dir", str(short_tmp / "d"),
            env={"DGX_MUSIC_MAX_ATTEMPTS": "5"})
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    rows = {s["key"]: s for s in doc["settings"]}
    assert set(rows) == {o.key for o in OPTIONS}
    assert rows["daemon.queue_limit"]["value"] == 7 and rows["daemon.queue_limit"]["source"] == f"file {cfg}"
    assert rows["daemon.max_attempts"]["value"] == 5
    assert rows["daemon.max_attempts"]["source"] == "env DGX_MUSIC_MAX_ATTEMPTS"
    assert rows["daemon.data_dir"]["source"] == "flag"
    assert rows["audio.bit_depth"]["source"] == "default"
    text = cli("config", "show", "--config", str(cfg)).stdout
    assert re.search(r"^engine\.model\s+\"medium\"\s+file ", text, re.M)
    assert cli("config", "path", "--config", str(cfg)).stdout.strip() == str(cfg)


def test_config_init_writes_a_file_that_loads(short_tmp: Path) -> None:
    target = short_tmp / "conf/config.toml"
    assert cli("config", "init", str(target)).returncode == 0
    assert load_settings(target, env={}).config_file == target
    again = cli("config", "init", str(target))
    assert again.returncode == 1 and "--force" in again.stderr


@pytest.mark.parametrize("body, message", [
    ('[daemon]\nbogus = 1\n', "unknown setting 'daemon.bogus'"),
    ('[daemon]\nqueue_limit = "many"\n', "daemon.queue_limit (from file"),
    ('[engine]\nbackend = "onnx"\n', "engine.backend"),
    ('[audio]\nbit_depth = 20\n', "audio.bit_depth"),
    ('stray = 1\n', "must be a [section] table"),
    ('[daemon\n', "cannot read config"),
])
def test_config_errors_stop_the_daemon_naming_the_key(short_tmp: Path, body: str, message: str) -> None:
    cfg = short_tmp / "bad.toml"
    cfg.write_text(body)
    r = cli("daemon", "--config", str(cfg), "--socket", str(short_tmp / "d.sock"),
            "--data-dir", str(short_tmp / "data"))
    assert r.returncode == 2
    assert message in r.stderr, r.stderr
    assert not (short_tmp / "data").exists() and not (short_tmp / "d.sock").exists()


def test_env_type_error_names_the_variable(short_tmp: Path) -> None:
    r = cli("daemon", "--socket", str(short_tmp / "d.sock"), "--data-dir", str(short_tmp / "data"),
            env={"DGX_MUSIC_KEEP_ALIVE": "soon"})
    assert r.returncode == 2 and "engine.keep_alive (from env DGX_MUSIC_KEEP_ALIVE)" in r.stderr


def test_operations_doc_lists_every_config_key() -> None:
    doc = (REPO / "docs/operations.md").read_text()
    for opt in OPTIONS:
        assert f"`{opt.key}`" in doc, f"docs/operations.md does not document {opt.key}"
        assert opt.env_name in doc, f"docs/operations.md does not name {opt.env_name}"
    for path in ("/healthz", "/metrics", "/openapi.json", "/api/v1/jobs", "/api/v1/tracks/{id}/audio"):
        assert path in doc, path


# ----------------------------------------------------------------------------- backup / restore
async def _submit_many(sock: Path, n: int) -> list[int]:
    ids = []
    async with await Client.connect(sock, timeout=5.0) as c:
        for i in range(n):
            job = await c.call("job.submit", {"prompt": f"backup load {i}", "duration": 0.5, "seed": i})
            ids.append(job["id"])
    return ids


async def _wait_done(sock: Path, ids: list[int], timeout: float = 90.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    async with await Client.connect(sock, timeout=5.0) as c:
        while True:
            jobs = [await c.call("job.get", {"id": i}) for i in ids]
            if all(j["state"] in ("done", "failed", "cancelled") for j in jobs) or time.monotonic() > deadline:
                return jobs
            await asyncio.sleep(0.2)


def _rows(db: Path) -> tuple[list[str], int, list[str]]:
    conn = sqlite3.connect(db)
    try:
        check = [r[0] for r in conn.execute("PRAGMA integrity_check")]
        jobs = conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
        paths = [r[0] for r in conn.execute("SELECT path FROM tracks")]
    finally:
        conn.close()
    return check, jobs, paths


@pytest.mark.slow
def test_backup_while_jobs_run_restores_a_consistent_library(daemon_process: Any, short_tmp: Path,
                                                            ops_model: Path) -> None:
    proc = daemon_process("--model", str(ops_model), "--keep-alive", "-1").start()
    first = asyncio.run(_submit_many(proc.socket, 2))
    done = asyncio.run(_wait_done(proc.socket, first))
    assert all(j["state"] == "done" for j in done), done
    # More jobs go in and run while the backup is taken.
    more = asyncio.run(_submit_many(proc.socket, 3))
    dest = short_tmp / "bk"
    env = {"DGX_MUSIC_CONFIG": str(short_tmp / "empty.toml")}
    (short_tmp / "empty.toml").touch()
    r = cli("backup", str(dest), "--with-audio", "--json", "--data-dir", str(proc.data_dir), env=env)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["tracks"] >= 2 and report["files"] == report["tracks"] - len(report["missing"])
    check, jobs, paths = _rows(dest / "dgx-music.db")
    assert check == ["ok"] and jobs >= 2 + 1 and len(paths) >= 2
    for p in paths:
        assert (dest / p).is_file(), p
    assert json.loads((dest / "manifest.json").read_text())["with_audio"] is True
    asyncio.run(_wait_done(proc.socket, more))

    # Restore is refused while the daemon runs, and the refusal changes nothing.
    r = cli("restore", str(dest), "--data-dir", str(proc.data_dir), "--socket", str(proc.socket), env=env)
    assert r.returncode == 1 and "stop the daemon first" in r.stderr, r.stderr
    assert proc.stop() == 0
    live_before = _rows(proc.data_dir / "dgx-music.db")

    # Into a fresh data dir: the library comes back whole, and a daemon starts on it.
    fresh = short_tmp / "restored"
    r = cli("restore", str(dest), "--data-dir", str(fresh), "--json", env=env)
    assert r.returncode == 0, r.stderr
    check, jobs2, paths2 = _rows(fresh / "dgx-music.db")
    assert check == ["ok"] and sorted(paths2) == sorted(paths) and jobs2 == jobs
    for p in paths2:
        assert (fresh / p).read_bytes() == (dest / p).read_bytes()

    # Over the old data dir: the old database is kept aside.
    r = cli("restore", str(dest), "--data-dir", str(proc.data_dir), "--socket", str(proc.socket), "--json", env=env)
    assert r.returncode == 0, r.stderr
    aside = [Path(p) for p in json.loads(r.stdout)["kept_aside"]]
    assert aside and aside[0].is_file()
    assert _rows(aside[0]) == live_before
    assert sorted(_rows(proc.data_dir / "dgx-music.db")[2]) == sorted(paths)

    restarted = daemon_process("--model", str(ops_model)).start()
    listed = asyncio.run(_list_tracks(restarted.socket))
    assert sorted(t["path"] for t in listed) == sorted(paths)
    assert restarted.stop() == 0


async def _list_tracks(sock: Path) -> list[dict[str, Any]]:
    async with await Client.connect(sock, timeout=5.0) as c:
        return (await c.call("track.list", {"limit": 500}))["tracks"]


def test_backup_refuses_a_non_empty_destination(short_tmp: Path) -> None:
    from dgx_music.daemon import backup

    data = short_tmp / "data"
    data.mkdir()
    with pytest.raises(backup.BackupError, match="no database"):
        backup.backup(data, short_tmp / "b1")
    sqlite3.connect(data / "dgx-music.db").close()
    (short_tmp / "full").mkdir()
    (short_tmp / "full/x").touch()
    with pytest.raises(backup.BackupError, match="not an empty directory"):
        backup.backup(data, short_tmp / "full")
    with pytest.raises(backup.BackupError, match="not a dgx-music backup"):
        backup.restore(short_tmp / "full", data)


def test_backup_and_restore_of_an_unreachable_postgresql_store_fail_naming_it(short_tmp: Path) -> None:
    """With store.url naming PostgreSQL they read (or fill) that database: one that cannot be
    reached fails naming it, and leaves no backup directory that looks like a backup."""
    env = {"DGX_MUSIC_CONFIG": str(short_tmp / "empty.toml"), "DGX_MUSIC_STORE": "postgresql://dgx@db.lan/dgx"}
    (short_tmp / "empty.toml").touch()
    r = cli("backup", str(short_tmp / "b"), "--json", "--data-dir", str(short_tmp / "data"), env=env)
    assert r.returncode == 1, r.stderr
    assert "cannot reach the database at postgresql://dgx@db.lan/dgx" in json.loads(r.stdout)["error"]["message"]
    assert not (short_tmp / "b").exists()
    r = cli("restore", str(short_tmp / "b"), "--json", "--data-dir", str(short_tmp / "data"), env=env)
    assert r.returncode == 1 and "not a dgx-music backup" in json.loads(r.stdout)["error"]["message"]
