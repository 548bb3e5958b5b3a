"""Which commands need more than the client install, and the one message that says so.

`pip install dgx-music` is the client: the TUI and every command that talks to a daemon.
The commands that run on the daemon's machine (`daemon`, `analyze`, `doctor`, `bench`,
`make-test-model`, `backup`, `restore`, `service install`) need the `daemon` extra. They are
marked with `requires_extra(parser, ...)`; `check()` runs before the command and, when what it
needs is missing, prints one line naming the extra and exits EXIT_MISSING_EXTRA instead of an
ImportError traceback halfway through. A command that runs everything (the daemon) checks every
distribution of the extra, read from the installed metadata, so a package added to
pyproject.toml's `daemon` list is checked without touching this file; a tool that uses a part
(analyze: the analysis; doctor: torch) checks the modules it imports, so it still runs where
only those are installed (the device bench's wheel sets, for one).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import importlib.util
import re
from typing import Iterable, Sequence

from dgx_music.cli.common import EXIT_MISSING_EXTRA, fail

DIST = "dgx-music"
DAEMON = "daemon"

_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def requires_extra(p: argparse.ArgumentParser, extra: str = DAEMON, modules: Sequence[str] = ()) -> None:
    """Mark a subcommand as running code that needs `extra` on this machine: the top-level
    `modules` it imports, or (none given) every distribution of the extra."""
    p.set_defaults(requires_extra=extra, requires_modules=tuple(modules))
    note = f"Needs the '{extra}' extra, which a client install lacks: pip install 'dgx-music[{extra}]'."
    raw = issubclass(p.formatter_class, argparse.RawDescriptionHelpFormatter)
    p.description = f"{p.description}{chr(10) * 2 if raw else ' '}{note}" if p.description else note


def installed() -> md.Distribution | None:
    """dgx-music's metadata as an installer wrote it (INSTALLER), in preference to a build's
    leftover `dgx_music.egg-info` in a checkout, which `python -m` from there would find first."""
    found = list(md.distributions(name=DIST))
    return next((d for d in found if d.read_text("INSTALLER")), found[0] if found else None)


def extra_requirements(extra: str, requires: Iterable[str] | None = None) -> list[str]:
    """Distribution names the `extra` adds, from requirement strings (default: the installed
    dgx-music's metadata; [] when it is not installed, e.g. run from a bare checkout).
    A requirement with another marker beside the extra (a platform, a Python version) is
    left out: whether it applies here is not ours to guess, and the import would tell."""
    if requires is None:
        dist = installed()
        if dist is None:
            return []
        requires = dist.requires or []
    names = []
    for req in requires:
        spec, _, marker = req.partition(";")
        found = _EXTRA.findall(marker)
        rest = _EXTRA.sub("", marker).strip()
        m = _NAME.match(spec)
        if m and found == [extra] and not rest:
            names.append(m.group(1))
    return names


def importable(module: str) -> bool:
    """Whether a top-level module is installed, without importing it."""
    return importlib.util.find_spec(module) is not None


def missing(extra: str, modules: Sequence[str] = ()) -> list[str]:
    """The `modules` that cannot be imported here (found, not imported: cheap), or with none
    given, the extra's distributions that are not installed."""
    if modules:
        return [m for m in modules if not importable(m)]
    out = []
    for name in extra_requirements(extra):
        try:
            md.distribution(name)
        except md.PackageNotFoundError:
            out.append(name)
    return out


def report(args: argparse.Namespace, extra: str, absent: list[str]) -> int:
    """One line (one JSON document with --json) naming the extra and the first missing packages."""
    command = getattr(args, "command", None) or "this command"
    shown = ", ".join(absent[:4]) + (f" and {len(absent) - 4} more" if len(absent) > 4 else "")
    message = (f"`dgx-music {command}` needs the '{extra}' extra, which this install lacks ({shown} not "
               f"found): pip install 'dgx-music[{extra}]'")
    return fail(args, "missing_extra", message, EXIT_MISSING_EXTRA, extra=extra, missing=absent)


def check(args: argparse.Namespace) -> int | None:
    """Before a marked command runs: its exit code when its extra is incomplete, else None."""
    extra = getattr(args, "requires_extra", None)
    if not extra:
        return None
    absent = missing(extra, getattr(args, "requires_modules", ()))
    return report(args, extra, absent) if absent else None


def on_missing_module(args: argparse.Namespace, exc: ModuleNotFoundError) -> int | None:
    """The safety net for an import the metadata check could not foresee (a bare checkout, a
    transitive package uninstalled by hand): a marked command that fails to import a module
    outside this package gets the same one line. None: not ours to explain, re-raise."""
    extra = getattr(args, "requires_extra", None)
    name = (exc.name or "").split(".")[0]
    if not extra or not name or name == "dgx_music":
        return None
    return report(args, extra, [name])
