"""The whole daemon on the PostgreSQL store (store.url): a job runs, its tracks are
found by search, and the queue and library outlive a daemon restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from dgx_music.common.client import Client
from dgx_music.daemon.server import StartupError
from dgx_music.daemon.store import StoreError, open_url
from tests.conftest import wait_event


async def test_daemon_runs_a_job_on_postgresql(pg_url: str, daemon_factory: Callable[..., Any],
                                               tiny_model: Path) -> None:
    d = await daemon_factory(engine__model=str(tiny_model), engine__keep_alive=-1, store__url=pg_url)
    assert d.store.backend == "postgresql"
    assert not (d.data_dir / "dgx-music.db").exists()  # no SQLite file beside it
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job", "track")
        job = await c.call("job.submit", {"prompt": "café piano at dusk", "duration": 0.5, "count": 1})
        done = await wait_event(c, "job.finished", job["id"])
        assert done.data["track_ids"] == [f"{job['id']}-0"]
        found = await c.call("track.list", {"search": "cafe pia", "sort": "relevance"})
        assert [t["id"] for t in found["tracks"]] == done.data["track_ids"]
        waiting = await c.call("job.submit", {"prompt": "held over", "duration": 0.5})
    await d.close()
    # A second daemon on the same database sees the same library and history.
    d2 = await daemon_factory(engine__model=str(tiny_model), engine__keep_alive=-1, store__url=pg_url)
    async with await Client.connect(d2.server.path) as c:
        assert (await c.call("job.get", {"id": job["id"]}))["state"] == "done"
        assert (await c.call("job.get", {"id": waiting["id"]}))["id"] == waiting["id"]
        assert (await c.call("prompt.history"))["prompts"][:2] == ["held over", "café piano at dusk"]


async def test_an_unreachable_store_url_is_a_startup_error(daemon_factory: Callable[..., Any],
                                                          short_tmp: Path) -> None:
    with pytest.raises(StartupError, match=r"store\.url.*cannot reach the database"):
        await daemon_factory(store__url=f"postgresql://nobody@/dgx?host={short_tmp}")


async def test_a_store_url_of_another_kind_is_refused_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"must be empty .* or a postgresql://") as e:
        await open_url("mysql://root@localhost/dgx", data_dir=tmp_path)
    assert e.value.field == "store.url"
    assert not list(tmp_path.iterdir())  # nothing was created
