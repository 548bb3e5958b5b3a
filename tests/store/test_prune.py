"""Job history pruning: old finished jobs without tracks go; tracks and active jobs never do."""

from __future__ import annotations

import time

import pytest
from dgx_music.daemon.store import Store, StoreError

from .conftest import make_job

DAY = 86400.0
LATER = 40 * DAY  # "now" for a prune that should find today's jobs 40 days old


async def add(store: Store, prompt: str = "p") -> dict:
    return await store.add_job(prompt=prompt, params={"duration": 8.0}, count=1, seed=1, model=None)


async def ids(store: Store) -> set[int]:
    return {j["id"] for j in await store.list_jobs(include_finished=True)}


async def history(store: Store) -> dict[str, dict]:
    """One job in every state: done with tracks, done whose track was deleted,
    failed, cancelled (queued and running), queued, running, processing."""
    h: dict[str, dict] = {}
    h["done_with_tracks"] = await make_job(store, "kept", count=2)
    h["done_tracks_deleted"] = await make_job(store, "emptied")
    await store.delete_track(h["done_tracks_deleted"]["track_ids"][0])
    h["failed"] = await add(store, "failed")
    await store.set_job_state(h["failed"]["id"], "failed", error="bad model")
    h["cancelled_queued"] = await add(store, "cancelled early")
    await store.cancel_queued(h["cancelled_queued"]["id"])
    h["cancelled_running"] = await add(store, "cancelled late")
    await store.mark_running(h["cancelled_running"]["id"])
    await store.set_job_state(h["cancelled_running"]["id"], "cancelled")
    h["queued"] = await add(store, "waiting")
    h["running"] = await add(store, "running")
    await store.mark_running(h["running"]["id"])
    h["processing"] = await add(store, "processing")
    await store.mark_running(h["processing"]["id"])
    await store.set_job_state(h["processing"]["id"], "processing")
    return h


async def test_prunes_old_finished_jobs_without_tracks_only(store: Store) -> None:
    h = await history(store)
    before_tracks = await store.list_tracks(limit=100)
    res = await store.prune_jobs(older_than=30 * DAY, now=time.time() + LATER)
    gone = {h[k]["id"] for k in ("done_tracks_deleted", "failed", "cancelled_queued", "cancelled_running")}
    assert res["removed"] == 4 and res["ids"] == sorted(gone)
    assert res["kept_with_tracks"] == 1
    left = await ids(store)
    assert left == {h[k]["id"] for k in ("done_with_tracks", "queued", "running", "processing")}
    for k in ("done_tracks_deleted", "failed", "cancelled_queued"):
        with pytest.raises(StoreError) as e:
            await store.get_job(h[k]["id"])
        assert e.value.code == "not_found"
    # the library is exactly as it was, and the kept job still lists its tracks
    assert await store.list_tracks(limit=100) == before_tracks
    kept = await store.get_job(h["done_with_tracks"]["id"])
    assert kept["state"] == "done" and kept["track_ids"] == h["done_with_tracks"]["track_ids"]
    assert (await store.get_track(kept["track_ids"][0]))["job_id"] == kept["id"]
    # active jobs are untouched, state and place in the queue included
    assert (await store.next_queued_job())["id"] == h["queued"]["id"]
    assert (await store.get_job(h["running"]["id"]))["state"] == "running"
    assert (await store.get_job(h["processing"]["id"]))["state"] == "processing"
    depth = await store.queue_depth()
    assert (depth["done"], depth["failed"], depth["cancelled"], depth["active"]) == (1, 0, 0, 3)
    # nothing left to do: a second prune removes nothing
    again = await store.prune_jobs(older_than=30 * DAY, now=time.time() + LATER)
    assert (again["removed"], again["kept_with_tracks"], again["ids"]) == (0, 1, [])


async def test_job_goes_once_its_last_track_is_deleted(store: Store) -> None:
    job = await make_job(store, count=2)
    later = time.time() + LATER
    await store.delete_track(job["track_ids"][0])
    res = await store.prune_jobs(older_than=DAY, now=later)
    assert (res["removed"], res["kept_with_tracks"]) == (0, 1)  # one track is still in the library
    await store.delete_track(job["track_ids"][1])
    res = await store.prune_jobs(older_than=DAY, now=later)
    assert (res["removed"], res["kept_with_tracks"], res["ids"]) == (1, 0, [job["id"]])


async def test_dry_run_counts_and_deletes_nothing(store: Store) -> None:
    h = await history(store)
    before = await store.list_jobs(include_finished=True)
    dry = await store.prune_jobs(older_than=30 * DAY, now=time.time() + LATER, dry_run=True)
    assert (dry["removed"], dry["kept_with_tracks"]) == (4, 1)
    assert await store.list_jobs(include_finished=True) == before
    real = await store.prune_jobs(older_than=30 * DAY, now=time.time() + LATER)
    assert real["ids"] == dry["ids"] and h["failed"]["id"] in real["ids"]


async def test_cutoff_is_respected(store: Store) -> None:
    a = await add(store, "a")
    await store.cancel_queued(a["id"])
    b = await add(store, "b")
    await store.cancel_queued(b["id"])
    fin_a = (await store.get_job(a["id"]))["finished"]
    fin_b = (await store.get_job(b["id"]))["finished"]
    assert fin_a <= fin_b
    # finished exactly at the cutoff is not older than it: kept
    res = await store.prune_jobs(older_than=0, now=fin_a, dry_run=True)
    assert res["removed"] == 0 and res["cutoff"] == fin_a
    # today's jobs are younger than 30 days: kept
    assert (await store.prune_jobs(older_than=30 * DAY))["removed"] == 0
    assert await ids(store) == {a["id"], b["id"]}
    # 29 days later, 30 days is not reached yet; 31 days later it is
    assert (await store.prune_jobs(older_than=30 * DAY, now=fin_b + 29 * DAY))["removed"] == 0
    res = await store.prune_jobs(older_than=30 * DAY, now=fin_b + 31 * DAY)
    assert res["ids"] == [a["id"], b["id"]]
    # a cutoff between the two finish times takes only the older job
    c = await add(store, "c")
    await store.cancel_queued(c["id"])
    d = await make_job(store, "d")
    await store.delete_track(d["track_ids"][0])
    fin_c = (await store.get_job(c["id"]))["finished"]
    res = await store.prune_jobs(older_than=0, now=fin_c + 1e-6)
    assert res["ids"] == [c["id"]] and await ids(store) == {d["id"]}


async def test_older_than_zero_takes_every_finished_job_without_tracks(store: Store) -> None:
    h = await history(store)
    res = await store.prune_jobs(older_than=0, now=time.time() + 1)
    assert res["removed"] == 4 and res["kept_with_tracks"] == 1
    assert h["queued"]["id"] in await ids(store)


async def test_states_selects_which_finished_states(store: Store) -> None:
    h = await history(store)
    res = await store.prune_jobs(older_than=0, states=["failed"], now=time.time() + 1)
    assert res["ids"] == [h["failed"]["id"]]
    res = await store.prune_jobs(older_than=0, states="cancelled", now=time.time() + 1)
    assert res["ids"] == sorted([h["cancelled_queued"]["id"], h["cancelled_running"]["id"]])


async def test_pruned_ids_are_never_reused(store: Store) -> None:
    """Track ids are "<job id>-<index>": a new job must not take a pruned job's id."""
    a = await add(store)
    await store.cancel_queued(a["id"])
    await store.prune_jobs(older_than=0, now=time.time() + 1)
    assert (await add(store))["id"] > a["id"]


@pytest.mark.parametrize("kw, field", [
    ({"older_than": -1.0}, "older_than"), ({"older_than": float("nan")}, "older_than"),
    ({"older_than": "30"}, "older_than"), ({"older_than": 1.0, "states": ["queued"]}, "states"),
    ({"older_than": 1.0, "states": ["running", "done"]}, "states"), ({"older_than": 1.0, "states": []}, "states"),
    ({"older_than": 1.0, "dry_run": "yes"}, "dry_run"), ({"older_than": 1e308, "now": -1e308}, "older_than"),
])
async def test_invalid_arguments_are_refused(store: Store, kw: dict, field: str) -> None:
    a = await add(store)
    await store.cancel_queued(a["id"])
    with pytest.raises(StoreError) as e:
        await store.prune_jobs(**kw)
    assert e.value.code == "invalid" and e.value.field == field
    assert await ids(store) == {a["id"]}
