"""A throwaway PostgreSQL cluster for tests: initdb in a temp dir, Unix socket only.

One cluster per test session (initdb + start take seconds) with one database; each test
gets a fresh schema in it (the store's URL sets search_path), made by the store's own
migrations (~0.1 s; CREATE DATABASE from a template measured ~1 s on a loaded box).
As root (sessions, CI) the server runs as the unprivileged user ``postgres`` via
runuser, since PostgreSQL refuses to run as root.  Without PostgreSQL installed,
``find_bin`` is None and the PostgreSQL tests skip saying so.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

DATABASE = "dgx_tests"
SKIP_REASON = ("PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin or on PATH): the "
               "PostgreSQL half of the store suite skips; scripts/ensure-test-tools installs it")


def find_bin() -> Path | None:
    """The directory holding initdb, pg_ctl and psql (the newest installed), or None.
    DGX_MUSIC_PG_BIN names another directory, or "none" to run without PostgreSQL."""
    chosen = os.environ.get("DGX_MUSIC_PG_BIN")
    if chosen:
        return None if chosen == "none" else Path(chosen)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


class PgCluster:
    """initdb + pg_ctl start in a temp dir; ``url(db)`` names a database in it."""

    def __init__(self, bindir: Path) -> None:
        self.bin = bindir
        self.root = Path(tempfile.mkdtemp(prefix="dgxpg-", dir="/tmp"))  # short: socket paths are limited
        self._as_root = os.geteuid() == 0
        self._names = itertools.count(1)

    def _server(self, *cmd: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_root else []
        subprocess.run([*prefix, *cmd], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        if self._as_root:
            shutil.chown(self.root, "postgres")
        os.chmod(self.root, 0o755)
        locale = ["--locale=C.UTF-8"] if "C.utf8" in _locales() else []
        self._server(str(self.bin / "initdb"), "-D", str(self.root / "db"), "-A", "trust", "-U", "postgres",
                     "--encoding=UTF8", "--no-sync", *locale)
        # Throwaway data: no fsync, so CREATE DATABASE per test stays fast.
        opts = f"-k {self.root} -c listen_addresses='' -c fsync=off -c synchronous_commit=off " \
               "-c full_page_writes=off"
        self._server(str(self.bin / "pg_ctl"), "-D", str(self.root / "db"), "-o", opts,
                     "-l", str(self.root / "log"), "-w", "start")

    def stop(self) -> None:
        try:
            self._server(str(self.bin / "pg_ctl"), "-D", str(self.root / "db"), "-m", "immediate", "stop")
        except (subprocess.SubprocessError, OSError):
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, db: str = DATABASE, schema: str | None = None) -> str:
        return f"postgresql://postgres@/{db}?host={self.root}" + (f"&search_path={schema}" if schema else "")

    def psql(self, sql: str, db: str = "postgres") -> str:
        out = subprocess.run([str(self.bin / "psql"), "-h", str(self.root), "-U", "postgres", "-d", db,
                              "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
                             check=True, capture_output=True, text=True, timeout=60)
        return out.stdout

    def setup_database(self) -> None:
        """The tests' database, with the one extension the schema needs (per database)."""
        self.psql(f"CREATE DATABASE {DATABASE}")
        self.psql("CREATE EXTENSION unaccent", DATABASE)

    def new_schema(self) -> str:
        name = f"t{next(self._names)}"
        self.psql(f"CREATE SCHEMA {name}", DATABASE)
        return name

    def drop_schema(self, name: str) -> None:
        # A connection a test left open (a daemon not closed yet) would block the DROP: end it.
        self.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                  f"WHERE datname = '{DATABASE}' AND pid <> pg_backend_pid()", DATABASE)
        self.psql(f"DROP SCHEMA IF EXISTS {name} CASCADE", DATABASE)


def _locales() -> str:
    try:
        return subprocess.run(["locale", "-a"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
