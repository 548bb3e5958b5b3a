"""A track row whose stored path leads outside the data directory (a tampered database or backup):
`dgx-music export` refuses it and reads nothing, instead of exporting whatever file it names."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from dgx_music.common.paths import resolve_under
from dgx_music.common.transfer import UnsafeTrackPath, checked_path
from tests.cli.test_cli_e2e import cli, cli_json


def _tamper(data_dir: Path, track_id: str, path: str) -> None:
    with sqlite3.connect(data_dir / "dgx-music.db") as con:
        con.execute("UPDATE tracks SET path = ? WHERE id = ?", (path, track_id))


async def test_export_refuses_a_stored_path_outside_the_data_dir(studio: Any, tmp_path: Path) -> None:
    sock = studio.server.path
    res = await cli_json(sock, "generate", "outside", "--duration", "1", "--count", "2", "--wait")
    bad, good = (t["id"] for t in res["tracks"])
    secret = tmp_path / "secret.wav"  # a readable audio file the daemon never made
    sf.write(str(secret), np.full((32000, 1), 0.25, np.float32), 32000)

    for stored in (str(secret), f"../../{secret.name}", "library/../../secret.wav"):
        _tamper(studio.data_dir, bad, stored)
        out_dir = tmp_path / "out"
        rc, out, err = await cli(sock, "export", bad, good, "--to", str(out_dir), "--overwrite")
        assert rc == 1, err
        assert f"{bad}: track {bad}: stored path {stored!r} is not inside" in err and "not reading it" in err
        exported = sorted(p.name for p in out_dir.iterdir())
        assert len(exported) == 1 and f"({good})" in exported[0]  # the good track still goes out

    rc, _, err = await cli(sock, "export", bad, "--ardour", str(tmp_path / "sess" / "s"))
    assert rc == 1 and "is not inside" in err and not (tmp_path / "sess").exists()


@pytest.mark.parametrize("stored", ["/etc/passwd", "../x.wav", "library/../../x.wav", "", "."])
def test_checked_path_refuses_escapes(tmp_path: Path, stored: str) -> None:
    with pytest.raises(UnsafeTrackPath, match="not reading it"):
        checked_path(tmp_path, {"id": "1-0", "path": stored})


def test_resolve_under_follows_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "library").mkdir(parents=True)
    (root / "library" / "ok.wav").write_bytes(b"x")
    assert resolve_under(root, "library/ok.wav") == (root / "library" / "ok.wav").resolve()
    (root / "library" / "link.wav").symlink_to(tmp_path / "elsewhere.wav")
    with pytest.raises(ValueError, match="is not inside"):
        resolve_under(root, "library/link.wav")
