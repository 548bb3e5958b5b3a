"""The CLI and TUI are clients: they reach the daemon over the socket, never through its modules
(over a forwarded socket those modules would describe the laptop). The commands that run on the
daemon's machine by design (backup, restore, store migrate, make-test-model, doctor, bench) keep
their flags in cli/ and their code in daemon/admin/, reached through one bridge, cli/daemon_cmd.py."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]

#: The one client file allowed to import dgx_music.daemon: it starts the daemon and is the bridge
#: to daemon/admin/ (the before-stop hook's grep allows the same file).
BRIDGE = "cli/daemon_cmd.py"


def _is_daemon(name: object) -> bool:
    return isinstance(name, str) and (name == "dgx_music.daemon" or name.startswith("dgx_music.daemon."))


def _imports_of(path: Path, is_target: Callable[[object], bool]) -> list[int]:
    """Lines that import a module `is_target` accepts: `import`/`from` statements at any depth
    (inside functions too, where the lazy imports are) and importlib.import_module/__import__
    called with such a name as a literal."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[object] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            f = node.func
            called = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if called in ("import_module", "__import__"):
                names = [node.args[0].value]
        if any(is_target(n) for n in names):
            found.append(node.lineno)
    return found


def test_clients_do_not_import_daemon_internals() -> None:
    bad = []
    for folder in ("cli", "tui"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel != BRIDGE:
                bad += [f"{rel}:{line}" for line in _imports_of(path, _is_daemon)]
    assert not bad, "client code imports dgx_music.daemon (go through cli/daemon_cmd.py): " + ", ".join(bad)


def test_the_checker_sees_an_indented_import(tmp_path: Path) -> None:
    """The lazy imports the box-side commands once had, inside functions, count as imports."""
    f = tmp_path / "x.py"
    f.write_text("import importlib\ndef run():\n    from dgx_music.daemon import backup\n"
                 "    import dgx_music.daemon.migrate\n    importlib.import_module('dgx_music.daemon.engine')\n"
                 "    from dgx_music import daemon\n")
    assert sorted(_imports_of(f, _is_daemon)) == [3, 4, 5, 6]


def test_only_the_box_side_commands_import_the_cli_from_the_daemon() -> None:
    """daemon/admin/ is the CLI's code that runs on the daemon's machine (it prints with the CLI's
    helpers); the daemon proper never depends on its clients."""
    bad = [f"{p.relative_to(ROOT).as_posix()}:{line}" for p in sorted((ROOT / "daemon").rglob("*.py"))
           if p.parent.name != "admin"
           for line in _imports_of(p, lambda n: isinstance(n, str) and n.startswith("dgx_music.cli"))]
    assert not bad, "the daemon imports the CLI: " + ", ".join(bad)


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
