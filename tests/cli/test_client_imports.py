"""The CLI and TUI are clients: they reach the daemon over the socket, never through its modules
(over a forwarded socket those modules would describe the laptop). Only the local admin tools,
which run on the daemon's machine by design, may import daemon/."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: (file, function) allowed to import dgx_music.daemon: the daemon itself and the admin tools.
ALLOWED = {
    ("cli/daemon_cmd.py", "*"),  # starts the daemon
    ("cli/engine_commands.py", "make_test_model_cmd"),
    ("cli/engine_commands.py", "doctor_cmd"),
    ("cli/engine_commands.py", "bench_cmd"),
    ("cli/ops_cmd.py", "_backup"),  # reads the database files directly, daemon stopped or not
    ("cli/ops_cmd.py", "_restore"),
}


def _daemon_imports(path: Path) -> list[tuple[str, int]]:
    """(enclosing top-level function or '<module>', line) of each import of dgx_music.daemon."""
    found = []
    for top in ast.parse(path.read_text()).body:
        where = top.name if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef)) else "<module>"
        for node in ast.walk(top):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            if any(n == "dgx_music.daemon" or n.startswith("dgx_music.daemon.") for n in names):
                found.append((where, node.lineno))
    return found


def test_clients_do_not_import_daemon_internals() -> None:
    bad = []
    for folder in ("cli", "tui"):
        for path in sorted((ROOT / folder).glob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for where, line in _daemon_imports(path):
                if (rel, "*") not in ALLOWED and (rel, where) not in ALLOWED:
                    bad.append(f"{rel}:{line} ({where})")
    assert not bad, "client code imports dgx_music.daemon: " + ", ".join(bad)


def test_loading_the_cli_and_tui_loads_nothing_from_the_daemon() -> None:
    code = ("import sys, dgx_music.cli.main, dgx_music.cli.audio_cmd, dgx_music.cli.jobs_cmd, dgx_music.tui.app;"
            "print(sorted(m for m in sys.modules if m.startswith('dgx_music.daemon')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
