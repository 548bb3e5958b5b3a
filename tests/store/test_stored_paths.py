"""Stored track paths are validated wherever they are used: a tampered row cannot reach outside the data dir."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from dgx_music.common.client import Client
from dgx_music.common.paths import OutsideRoot, resolve_under
from dgx_music.common.protocol import RemoteError
from dgx_music.daemon import libfiles
from dgx_music.daemon.components import DB_NAME


# ------------------------------------------------------------------ resolve_under


def test_resolve_under_accepts_paths_inside(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "library").mkdir(parents=True)
    assert resolve_under(root, "library/a.wav") == (root / "library" / "a.wav").resolve()
    (root / "alias").symlink_to(root / "library")  # a symlink that stays inside is fine
    assert resolve_under(root, "alias/a.wav") == (root / "library" / "a.wav").resolve()


@pytest.mark.parametrize("rel", ["/etc/passwd", "../outside.wav", "library/../../outside.wav", "",
                                 "C:/x.wav", "a\x00b", ".", "library/.."])
def test_resolve_under_refuses_paths_that_leave(tmp_path: Path, rel: str) -> None:
    with pytest.raises(OutsideRoot):
        resolve_under(tmp_path / "data", rel)


def test_resolve_under_refuses_a_symlink_leading_out(tmp_path: Path) -> None:
    root, outside = tmp_path / "data", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.wav").write_bytes(b"secret")
    (root / "library").symlink_to(outside)
    with pytest.raises(OutsideRoot, match="outside"):
        resolve_under(root, "library/secret.wav")
    with pytest.raises(ValueError):  # what the daemon's callers already catch
        libfiles.library_file(root, "library/secret.wav")
    loop = root / "loop"
    loop.symlink_to(loop)
    with pytest.raises(OutsideRoot):
        resolve_under(root, "loop/x.wav")


# ------------------------------------------------------------------ through the daemon


def tamper(daemon: Any, track_id: str, path: str) -> None:
    """Rewrite a row's path behind the store's back, as an edited database or backup would."""
    con = sqlite3.connect(daemon.data_dir / DB_NAME)
    try:
        con.execute("UPDATE tracks SET path = ? WHERE id = ?", (path, track_id))
        con.commit()
    finally:
        con.close()


async def stored_track(daemon: Any, track_id: str = "t-1") -> dict[str, Any]:
    rel = f"library/{track_id}.wav"
    (daemon.data_dir / "library").mkdir(parents=True, exist_ok=True)
    (daemon.data_dir / rel).write_bytes(b"RIFF....WAVE")
    await daemon.store.import_tracks([{"id": track_id, "prompt": "tampered", "path": rel, "duration": 0.5,
                                       "sample_rate": 32000, "channels": 1}])
    return await daemon.store.get_track(track_id)


@pytest.fixture
def secret(short_tmp: Path) -> Path:
    """A file outside the data dir that no track may touch."""
    p = short_tmp / "outside" / "passwd"
    p.parent.mkdir()
    p.write_bytes(b"root:x:0:0:secret\n")
    return p


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
async def test_delete_of_a_tampered_track_is_refused_and_keeps_the_row(
        daemon: Any, client: Client, secret: Path, how: str) -> None:
    await stored_track(daemon)
    if how == "absolute":
        tamper(daemon, "t-1", str(secret))
    elif how == "dotdot":
        tamper(daemon, "t-1", os.path.relpath(secret, daemon.data_dir))
    else:
        (daemon.data_dir / "evil").symlink_to(secret.parent)
        tamper(daemon, "t-1", "evil/passwd")
    with pytest.raises(RemoteError) as err:
        await client.call("track.delete", {"id": "t-1"})
    assert err.value.code == "forbidden" and "not deleted" in err.value.message
    assert (await client.call("track.get", {"id": "t-1"}))["id"] == "t-1"  # the row is not lost
    assert secret.read_bytes() == b"root:x:0:0:secret\n"  # and the outside file is untouched
    assert not (daemon.data_dir / "trash").exists()


async def test_audio_of_a_tampered_track_is_refused(daemon: Any, client: Client, secret: Path) -> None:
    await stored_track(daemon)
    tamper(daemon, "t-1", str(secret))
    with pytest.raises(RemoteError) as err:
        await client.call("track.audio", {"id": "t-1"})
    assert err.value.code == "forbidden"


async def test_delete_of_a_sound_track_still_trashes_its_file(daemon: Any, client: Client) -> None:
    await stored_track(daemon)
    out = await client.call("track.delete", {"id": "t-1"})
    assert out["trashed"].startswith("trash/") and (daemon.data_dir / out["trashed"]).is_file()
    assert not (daemon.data_dir / "library" / "t-1.wav").exists()
