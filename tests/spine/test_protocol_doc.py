"""docs/protocol.md and the code must not drift: run its example, compare method lists."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

from dgx_music.common import protocol
from dgx_music.daemon import handlers

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def example_script() -> str:
    text = DOC.read_text()
    section = text[text.index("## A complete client"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def test_example_is_short_and_self_contained() -> None:
    code = example_script()
    assert len(code.strip().splitlines()) < 25
    assert "dgx_music" not in code
    imports = set(re.findall(r"^import (.+)$", code, re.M)[0].replace(" ", "").split(","))
    assert imports <= {"os", "socket", "struct", "msgpack", "json"}


async def test_example_asks_a_real_daemon_for_status(daemon: Any, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(example_script())
    env = {**os.environ, "DGX_MUSIC_SOCKET": str(daemon.server.path)}
    proc = await asyncio.create_subprocess_exec(sys.executable, str(script), env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert f"'pid': {os.getpid()}" in out.decode()


def documented_methods() -> set[str]:
    text = DOC.read_text()
    section = text[text.index("## Methods"):text.index("## Events")]
    return set(re.findall(r"^\| `([a-z_.]+)` \|", section, re.M))


def documented_events() -> set[str]:
    text = DOC.read_text()
    section = text[text.index("## Events"):text.index("## A complete client")]
    return set(re.findall(r"^\| `([a-z_.]+)` \|", section, re.M))


def test_every_method_is_documented_and_every_documented_method_exists() -> None:
    registered = set(handlers.load_all())
    assert registered - documented_methods() == set(), "methods missing from docs/protocol.md"
    assert documented_methods() - registered == set(), "docs/protocol.md lists methods the daemon lacks"


def test_documented_events_use_known_topics() -> None:
    for name in documented_events():
        assert protocol.topic_of(name) in protocol.TOPICS, name


def test_error_codes_are_documented() -> None:
    text = DOC.read_text()
    codes = {v for k, v in vars(protocol).items() if k.isupper() and isinstance(v, str) and k not in ("HEADER",)
             and re.fullmatch(r"[a-z_]+", v)}
    for code in codes:
        assert f"`{code}`" in text, code


def lifecycle_script() -> str:
    text = DOC.read_text()
    section = text[text.index("## A whole job"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def test_lifecycle_example_is_as_long_as_the_docs_say() -> None:
    code = lifecycle_script()
    lines = len(code.strip().splitlines())
    assert f"## A whole job in {lines} lines" in DOC.read_text()
    assert f"{lines} lines" in (DOC.parents[1] / "README.md").read_text()
    assert "dgx_music" not in code


async def test_lifecycle_example_generates_and_fetches_audio(studio: Any, tmp_path: Path) -> None:
    """The documented client, run as a user would: a real job on the tiny model, audio saved here."""
    import soundfile as sf

    script = tmp_path / "job.py"
    script.write_text(lifecycle_script())
    env = {**os.environ, "DGX_MUSIC_SOCKET": str(studio.server.path)}
    proc = await asyncio.create_subprocess_exec(sys.executable, str(script), "night drive synthwave", "1",
                                                env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode == 0, err.decode()
    assert "step " in err.decode()  # progress was followed
    saved = sorted(tmp_path.glob("*-0.wav"))
    assert len(saved) == 1 and f"{saved[0].name}: {saved[0].stat().st_size} bytes" in out.decode()
    track = await studio.store.get_track(saved[0].stem)
    assert saved[0].read_bytes() == (studio.data_dir / track["path"]).read_bytes()
    assert abs(sf.info(str(saved[0])).duration - 1.0) < 0.05
