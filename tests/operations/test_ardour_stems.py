"""`export --ardour DIR --with-stems`: a track's stems as Ardour tracks, checked by loading the session
in real Ardour (ardour7-lua, headless). The stems come from the tiny ACE-Step pipeline through a real daemon."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dgx_music.common.client import Client
from tests.cli.test_cli_e2e import cli, cli_json
from tests.operations.test_operation_jobs import run, tone

LUA = shutil.which("ardour7-lua")


def ardour_tracks(session: Path, tmp: Path) -> list[tuple[str, list[tuple[float, float, float]]]]:
    """[(track name, [(region position, length, peak)])] as Ardour itself reads the session."""
    script = tmp / f"check-{session.name}.lua"
    script.write_text(f'''
load_session("{session}", "{session.name}")
print("RATE", Session:nominal_sample_rate())
for t in Session:get_tracks():iter() do
  print("TRACK", t:name())
  for r in t:to_track():playlist():region_list():iter() do
    print("REGION", r:position():samples(), r:length():samples(), r:to_audioregion():maximum_amplitude(nil))
  end
end
''')
    out = subprocess.run(["stdbuf", "-oL", str(LUA), str(script)], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "RATE 48000" in out.stdout.splitlines(), out.stdout
    tracks: list[tuple[str, list[tuple[float, float, float]]]] = []
    for line in out.stdout.splitlines():
        if line.startswith("TRACK "):
            tracks.append((line[6:], []))
        elif line.startswith("REGION "):
            tracks[-1][1].append(tuple(float(v) for v in line.split()[1:]))  # type: ignore[arg-type]
    return tracks


@pytest.mark.slow
@pytest.mark.skipif(LUA is None, reason="ardour7-lua not installed (apt-get install -y ardour)")
async def test_export_with_stems_opens_in_ardour_one_track_per_part(daemon_factory: Callable[..., Any],
                                                                    tiny_acestep: Path, tmp_path: Path) -> None:
    d = await daemon_factory(engine__model=str(tiny_acestep))
    sock = d.server.path
    async with await Client.connect(sock) as c:
        await c.subscribe("job")
        first = await run(c, "op.stems", {"source_audio": tone(2.0), "source_name": "take.flac",
                                          "parts": ["vocals", "guitar"], "steps": 1, "seed": 3, "method": "generate"})
        song, guitar = first["track_ids"]  # two library tracks: one gets stems of its own, one none
        split = await run(c, "op.stems", {"source": song, "parts": ["drums", "bass"], "steps": 1, "seed": 5,
                                          "method": "generate"})
        drums, bass = split["track_ids"]

    # One track with its stems: mix, then each part, all at 0 and as long as the source.
    res = await cli_json(sock, "export", song, "--ardour", str(tmp_path / "split"), "--with-stems")
    assert [(s["name"], s["id"], s["part"]) for s in res["session_tracks"]] == \
        [("mix", song, None), ("drums", drums, "drums"), ("bass", bass, "bass")]
    tracks = ardour_tracks(Path(res["session"]), tmp_path)
    assert [name for name, _ in tracks] == ["mix", "drums", "bass"]
    for name, regions in tracks:
        assert [(pos, length) for pos, length, _ in regions] == [(0, 96000)], name
        assert regions[0][2] > 0, f"{name} is silent in Ardour"

    # A set of tracks chosen in the library: names carry the title; a track without stems comes alone;
    # a chosen stem of a chosen track is not added twice.
    res = await cli_json(sock, "export", song, guitar, drums, "--ardour", str(tmp_path / "set"), "--with-stems")
    assert res["without_stems"] == [guitar]
    tracks = ardour_tracks(Path(res["session"]), tmp_path)
    assert [name for name, _ in tracks] == ["take.flac (vocals) mix", "take.flac (vocals) drums",
                                            "take.flac (vocals) bass", "take.flac (guitar)"]
    assert all(r[0][:2] == (0, 96000) and r[0][2] > 0 for _, r in tracks)

    # Misuse is a usage error before anything is read.
    rc, _, err = await cli(sock, "export", song, "--to", str(tmp_path / "x"), "--with-stems")
    assert rc == 2 and "--ardour" in err
    rc, _, err = await cli(sock, "export", song, "--ardour", str(tmp_path / "y"), "--with-stems", "--sequence")
    assert rc == 2 and "--sequence" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
