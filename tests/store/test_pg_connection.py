"""What only the PostgreSQL store has: a server that can go away, and its URL."""

from __future__ import annotations

from typing import Any

import pytest

from dgx_music.common import protocol
from dgx_music.daemon.handlers import map_error
from dgx_music.daemon.store import StoreError, open_url


def end_connections(pg_cluster: Any) -> None:
    from tests.pgcluster import DATABASE
    pg_cluster.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    f"WHERE datname = '{DATABASE}' AND pid <> pg_backend_pid()", DATABASE)


async def test_a_lost_connection_is_unavailable_then_the_store_connects_again(pg_url: str, pg_cluster: Any,
                                                                             tmp_path) -> None:
    store = await open_url(pg_url, data_dir=tmp_path)
    try:
        job = await store.add_job(prompt="before", params={}, count=1, seed=1, model=None)
        end_connections(pg_cluster)  # the server (or a network) drops the daemon's connection
        with pytest.raises(StoreError) as e:
            await store.add_job(prompt="lost", params={}, count=1, seed=1, model=None)
        assert e.value.code == "unavailable" and "lost the database" in str(e.value)
        assert map_error(e.value).code == protocol.STORE_UNAVAILABLE  # not `internal`: no daemon bug
        # The next operation connects again; what was committed before is there, nothing half-done.
        assert [j["prompt"] for j in await store.list_jobs()] == ["before"]
        await store.add_job(prompt="after", params={}, count=1, seed=1, model=None)
        assert [j["id"] > job["id"] for j in await store.list_jobs()] == [False, True]
    finally:
        await store.close()


async def test_the_url_password_never_appears_in_messages(pg_cluster: Any, tmp_path) -> None:
    url = pg_cluster.url(db="no_such_db").replace("postgres@", "postgres:s3cret@")
    with pytest.raises(StoreError) as e:
        await open_url(url, data_dir=tmp_path)
    assert e.value.field == "store.url" and "no_such_db" in str(e.value)
    assert "s3cret" not in str(e.value) and "***" in str(e.value)
