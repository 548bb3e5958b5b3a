"""Families are declared once (common/families.py) and asked, never compared by name.

Adding a family must mean a registry entry and a backend, not `if family == ...` branches across
the daemon: the capability API answers what the worker, the stream handler, the job kinds and the
renderer ask, and a structural check keeps new name branches out of daemon/, cli/, tui/ and common/
(the registry aside), the web page's JavaScript included."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dgx_music.common import families
from dgx_music.daemon.engine.backend import MusicGenBackend, get_backend

ROOT = Path(__file__).resolve().parents[2]
#: Where family names must not be compared: the daemon and every client (the registry itself aside).
SCANNED = ("daemon", "cli", "tui", "common")
REGISTRY_FILE = ROOT / "common" / "families.py"
#: The same comparison in the web page's JavaScript (`family === 'ace-step'`).
JS_BRANCH = re.compile(r"""(===?|!==?)\s*["'](musicgen|ace-step)["']|["'](musicgen|ace-step)["']\s*(===?|!==?)""")

#: A comparison with a family's name (constant or literal), or a type test on a family's schema.
BRANCH = re.compile(r"""(==|!=|\bin)\s*\(?\s*((MUSICGEN|ACE_STEP)\b|["'](musicgen|ace-step)["'])"""
                    r"""|\b(MUSICGEN|ACE_STEP)\s*(==|!=)"""
                    r"""|isinstance\([^)]*\b(AceStepParams|MusicGenParams|GenerationParams)\b""")

#: Files that may still branch on a family: none. The per-family tools (doctor, bench, the test-model
#: builder) and the models an operation suggests are declared in the registry like the runtime's
#: capabilities (worker, supervisor, scheduler, job kinds, stream handler, renderer).
KNOWN: dict[str, int] = {}


def branches() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            if path == REGISTRY_FILE:
                continue
            for line in path.read_text().splitlines():
                code = line.split("#", 1)[0]
                if BRANCH.search(code):
                    found.setdefault(str(path.relative_to(ROOT)), []).append(line.strip())
        for path in sorted((ROOT / top).rglob("*.js")):
            for line in path.read_text().splitlines():
                if JS_BRANCH.search(line.split("//", 1)[0]):
                    found.setdefault(str(path.relative_to(ROOT)), []).append(line.strip())
    return found


def test_no_family_name_branches_outside_the_registry() -> None:
    found = branches()
    new = {f: lines for f, lines in found.items() if len(lines) > KNOWN.get(f, 0)}
    assert new == {}, "ask common/families.py (or the backend's capabilities) instead of comparing family names"


def test_the_check_sees_a_family_branch() -> None:
    """The pattern catches the forms the branches took (so the test above can fail)."""
    for line in ('if family == "musicgen":', "if family != MUSICGEN and x:", "if spec.family == ACE_STEP:",
                 "if isinstance(params, AceStepParams):", "if isinstance(params, GenerationParams):",
                 'family = ACE_STEP if x else "y" in ("ace-step",)'):
        assert BRANCH.search(line), line
    assert not BRANCH.search("if family != DEFAULT_FAMILY:")
    for line in ("g.label = family === 'ace-step' ? 'A' : 'M';", 'if ("musicgen" !== f) {'):
        assert JS_BRANCH.search(line), line
    assert not JS_BRANCH.search("g.label = ms[0].family_label || family;")


@pytest.mark.parametrize("name", families.FAMILIES)
def test_each_family_has_a_backend_declaring_its_capabilities(name: str) -> None:
    fam = families.family(name)
    for backend_name in fam.backends:
        if backend_name == "audiocraft":
            continue  # optional: its own environment (tests/engine/test_audiocraft.py)
        b = get_backend(backend_name, name)
        caps = b.capabilities
        assert caps.family == name and caps.tasks == fam.tasks and dict(caps.audio_inputs) == dict(fam.audio_inputs)
        assert caps.streams == (backend_name in fam.streaming_backends)
        assert callable(b.run) and not getattr(b, "generate", None) or isinstance(b, MusicGenBackend)


@pytest.mark.parametrize("name", families.FAMILIES)
def test_each_family_names_its_tools(name: str) -> None:
    """The per-family tools (make-test-model, bench, doctor) are found through the registry, and the
    models an operation's refusal suggests belong to the family."""
    fam = families.family(name)
    for tool in ("test_model", "bench", "bench_format", "doctor_libraries"):
        assert callable(fam.tool(tool)), tool
    assert all(families.family_for_name(m) == name for m in fam.operation_models)
    assert bool(fam.operation_models) == any(t not in (families.TEXT2MUSIC, families.CONTINUE, families.MELODY)
                                             for t in fam.tasks)
