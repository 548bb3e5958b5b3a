from __future__ import annotations

from pathlib import Path

import pytest

from dgx_music.daemon.store import Store


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "dgx.sqlite"


@pytest.fixture
async def store(db_path: Path):
    # NORMAL keeps the suite fast; durability (FULL) is exercised in test_jobs.
    s = await Store.open(db_path, queue_limit=10, synchronous="NORMAL")
    yield s
    await s.close()


def track(path: str, **kw) -> dict:
    d = {"path": path, "duration": 8.0, "sample_rate": 32000, "channels": 1}
    d.update(kw)
    return d


async def make_job(store: Store, prompt: str = "lofi beats", *, count: int = 1,
                   tracks: list[dict] | None = None, seed: int = 42, model: str | None = None,
                   **params) -> dict:
    """Submit, run and finish a job; returns the finished job."""
    job = await store.add_job(prompt=prompt, params=params or {"duration": 8.0}, count=count,
                              seed=seed, model=model)
    await store.mark_running(job["id"])
    if tracks is None:
        tracks = [track(f"tracks/{job['id']}/{i}.flac") for i in range(count)]
    await store.finish_job(job["id"], tracks)
    return await store.get_job(job["id"])
