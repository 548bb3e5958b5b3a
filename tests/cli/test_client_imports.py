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
    ("cli/store_cmd.py", "_migrate"),  # reads the SQLite library (a snapshot), writes PostgreSQL
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


#: The model stack and the daemon-only audio analysis: never loaded by a client path (README: `pip install
#: dgx-music` is the client, without them). test_light_install.py checks the same in a real client install.
HEAVY = ("torch", "transformers", "diffusers", "peft", "accelerate", "librosa", "scipy", "pyloudnorm", "aiosqlite")


def test_client_modules_load_nothing_from_the_model_stack() -> None:
    """Every CLI and TUI module, and the common/ modules client commands load when they run (export,
    Ardour sessions, melody uploads, play/listen --to, fetching audio), without torch & co."""
    client = [f"dgx_music.{p.parent.name}.{p.stem}" for folder in ("cli", "tui")
              for p in sorted((ROOT / folder).glob("*.py")) if p.stem != "__init__"]
    client += ["dgx_music.common.audio.export", "dgx_music.common.audio.ardour", "dgx_music.common.audio.melody",
               "dgx_music.common.audio.files", "dgx_music.common.stream_audio", "dgx_music.common.transfer",
               "dgx_music.common.daw", "dgx_music.common.operations", "dgx_music.common.schemas",
               "dgx_music.common.schema_openapi"]
    code = (f"import importlib, sys\nfor m in {client!r}:\n    importlib.import_module(m)\n"
            f"print(sorted({{n.split('.')[0] for n in sys.modules}} & set({HEAVY!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"a client module loads {out.strip()}"
