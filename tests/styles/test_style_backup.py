"""Styles travel with backup and restore: the row in the database, the adapter's files beside it."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from dgx_music.daemon import backup
from dgx_music.daemon.components import DB_NAME
from dgx_music.daemon.store import Store


def make_style(data: Path, name: str = "mine") -> bytes:
    """A finished style as a training job leaves it: its row (with the job's end) and its directory."""
    weights = os.urandom(4096)

    async def build() -> None:
        s = await Store.open(data / DB_NAME, synchronous="NORMAL")
        try:
            job = await s.add_job(prompt=f"style {name}", params={"operation": "train", "name": name}, count=1,
                                  seed=1, model="ace-step", backend="diffusers", max_attempts=3)
            await s.mark_running(job["id"])
            await s.finish_training(job["id"], {"name": name, "base_model": "ace-step", "steps": 20, "rank": 8,
                                                "tracks": ["1-0", "1-1"], "final_loss": 0.5, "size": 4096,
                                                "path": f"styles/{name}"})
        finally:
            await s.close()

    data.mkdir(parents=True, exist_ok=True)
    asyncio.run(build())
    d = data / "styles" / name
    d.mkdir(parents=True)
    (d / "pytorch_lora_weights.safetensors").write_bytes(weights)
    (d / "style.json").write_text(json.dumps({"name": name}))
    (data / "styles" / ".work" / "job-9").mkdir(parents=True)  # a training's leftovers: not backed up
    return weights


def test_backup_carries_styles_and_restore_brings_them_back(tmp_path: Path) -> None:
    data = tmp_path / "data"
    weights = make_style(data)
    report = backup.backup(data, tmp_path / "bk")  # styles go even without --with-audio
    assert report.styles == 1 and json.loads((tmp_path / "bk" / backup.MANIFEST).read_text())["styles"] == 1
    assert (tmp_path / "bk" / "styles" / "mine" / "pytorch_lora_weights.safetensors").read_bytes() == weights
    assert not (tmp_path / "bk" / "styles" / ".work").exists()

    fresh = tmp_path / "restored"
    assert backup.restore(tmp_path / "bk", fresh).styles == 1
    assert (fresh / "styles" / "mine" / "pytorch_lora_weights.safetensors").read_bytes() == weights

    async def rows() -> list[dict]:
        s = await Store.open(fresh / DB_NAME)
        try:
            return await s.list_styles()
        finally:
            await s.close()

    [row] = asyncio.run(rows())
    assert (row["name"], row["steps"], row["tracks"]) == ("mine", 20, ["1-0", "1-1"])


def test_a_backup_whose_style_file_is_a_symlink_is_refused_whole(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_style(data)
    backup.backup(data, tmp_path / "bk")
    secret = tmp_path / "secret"
    secret.write_text("not yours")
    (tmp_path / "bk" / "styles" / "mine" / "style.json").unlink()
    (tmp_path / "bk" / "styles" / "mine" / "style.json").symlink_to(secret)
    with pytest.raises(backup.BackupError, match="symlink"):
        backup.restore(tmp_path / "bk", tmp_path / "restored")
    assert not (tmp_path / "restored" / "styles").exists()


def test_store_migrate_and_a_postgresql_backup_carry_styles_under_the_shared_storage(
        tmp_path: Path, pg_url: str, pg_cluster: Any) -> None:
    # Issue 21: on shared storage a style's files live under --storage, where every host reads them.
    from dgx_music.daemon import migrate, pgbackup

    data, shared = tmp_path / "data", tmp_path / "shared"
    shared.mkdir()
    weights = make_style(data)
    report = migrate.migrate(data, pg_url, shared)
    assert report.rows["styles"] == 1
    assert (shared / "styles" / "mine" / "pytorch_lora_weights.safetensors").read_bytes() == weights
    assert not (shared / "styles" / ".work").exists()
    assert pgbackup.backup_pg(pg_url, tmp_path / "bk", storage=shared).styles == 1
    assert (tmp_path / "bk" / "styles" / "mine" / "pytorch_lora_weights.safetensors").read_bytes() == weights
    other = pg_cluster.new_schema()
    try:  # into an empty schema and another storage directory: the files come back beside the row
        again = tmp_path / "again"
        again.mkdir()
        assert pgbackup.restore_pg(tmp_path / "bk", pg_cluster.url(schema=other), storage=again).styles == 1
        assert (again / "styles" / "mine" / "pytorch_lora_weights.safetensors").read_bytes() == weights
    finally:
        pg_cluster.drop_schema(other)
