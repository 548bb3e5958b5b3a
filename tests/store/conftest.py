from __future__ import annotations

from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

from dgx_music.daemon.store import Store, open_url


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "dgx.sqlite"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str:
    """Every test that uses a store runs once per backend: "" (SQLite) or a fresh
    PostgreSQL database (skipped, saying why, when PostgreSQL is not installed)."""
    return "" if request.param == "sqlite" else request.getfixturevalue("pg_url")


@pytest.fixture
def opener(store_url: str, db_path: Path) -> Callable[..., Awaitable[Any]]:
    """Open (another) store on this test's database, whichever the backend."""
    async def open_(**kw: Any) -> Any:
        if not store_url:
            # NORMAL keeps the suite fast; durability (FULL) is exercised in test_jobs.
            kw.setdefault("synchronous", "NORMAL")
            return await Store.open(db_path, **kw)
        return await open_url(store_url, data_dir=db_path.parent, **kw)
    return open_


@pytest.fixture
async def store(opener: Callable[..., Awaitable[Any]]):
    s = await opener(queue_limit=10)
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
