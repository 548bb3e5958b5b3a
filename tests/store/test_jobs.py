"""Job queue: lifecycle, bound, ordering, retry/cancel rules, crash recovery, finish_job."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

from dgx_music.daemon.store import Store, StoreError

from .conftest import make_job, track


async def add(store: Store, prompt: str = "p", **kw) -> dict:
    kw.setdefault("count", 1)
    return await store.add_job(prompt=prompt, params={"duration": 8.0}, seed=1, model=None, **kw)


async def test_lifecycle(store: Store) -> None:
    job = await add(store, "warm lofi", count=2)
    assert job["state"] == "queued" and job["attempts"] == 0 and job["track_ids"] == []
    assert job["params"] == {"duration": 8.0} and job["seed"] == 1
    assert (await store.next_queued_job())["id"] == job["id"]
    job = await store.mark_running(job["id"], backend="transformers")
    assert job["state"] == "running" and job["attempts"] == 1 and job["started"]
    assert job["backend"] == "transformers"
    assert await store.next_queued_job() is None
    job = await store.set_job_state(job["id"], "processing")
    assert job["state"] == "processing"
    tracks = await store.finish_job(job["id"], [track("a.flac"), track("b.flac", index=1)])
    assert [t["id"] for t in tracks] == [f"{job['id']}-0", f"{job['id']}-1"]
    assert all(t["seed"] == 1 and t["prompt"] == "warm lofi" for t in tracks)
    job = await store.get_job(job["id"])
    assert job["state"] == "done" and job["finished"] and job["track_ids"] == [t["id"] for t in tracks]
    depth = await store.queue_depth()
    assert depth["done"] == 1 and depth["active"] == 0 and depth["limit"] == 10


async def test_list_jobs_order(store: Store) -> None:
    a, b, c, d = [await add(store, f"p{i}") for i in range(4)]
    await store.mark_running(c["id"])
    await store.cancel_queued(d["id"])
    assert [j["id"] for j in await store.list_jobs()] == [c["id"], a["id"], b["id"]]
    everything = await store.list_jobs(include_finished=True)
    assert [j["id"] for j in everything] == [c["id"], a["id"], b["id"], d["id"]]


async def test_queue_bound(store: Store) -> None:
    jobs = [await add(store) for _ in range(10)]
    with pytest.raises(StoreError) as e:
        await add(store)
    assert e.value.code == "queue_full" and "limit 10" in str(e.value)
    assert (await store.queue_depth())["queued"] == 10  # refused, not accepted and dropped
    await store.cancel_queued(jobs[0]["id"])
    await add(store)  # room again
    with pytest.raises(StoreError) as e:  # a retry counts against the bound too
        await store.retry_job(jobs[0]["id"])
    assert e.value.code == "queue_full"


@pytest.mark.parametrize("kw, field", [
    ({"prompt": ""}, "prompt"), ({"prompt": "   "}, "prompt"), ({"prompt": "x" * 5000}, "prompt"),
    ({"count": 0}, "count"), ({"count": 17}, "count"), ({"count": True}, "count"),
    ({"seed": -1}, "seed"), ({"seed": 2**32}, "seed"), ({"params": {"x": float("nan")}}, "params"),
    ({"params": [1]}, "params"), ({"model": 3}, "model"), ({"prompt": "a\x00b"}, "prompt"),
])
async def test_add_job_validation(store: Store, kw: dict, field: str) -> None:
    args = dict(prompt="ok", params={}, count=1, seed=1, model=None)
    args.update(kw)
    with pytest.raises(StoreError) as e:
        await store.add_job(**args)
    assert e.value.code == "invalid" and e.value.field == field and field in str(e.value)


async def test_move(store: Store) -> None:
    a, b, c = [await add(store, p) for p in "abc"]

    async def order() -> list[int]:
        return [j["id"] for j in await store.list_jobs()]

    await store.move_job(c["id"], "top")
    assert await order() == [c["id"], a["id"], b["id"]]
    await store.move_job(c["id"], "down")
    assert await order() == [a["id"], c["id"], b["id"]]
    await store.move_job(b["id"], "up")
    assert await order() == [a["id"], b["id"], c["id"]]
    await store.move_job(a["id"], "up")  # already first: no-op
    await store.move_job(c["id"], "down")  # already last: no-op
    assert await order() == [a["id"], b["id"], c["id"]]
    assert (await store.next_queued_job())["id"] == a["id"]
    await store.mark_running(a["id"])
    with pytest.raises(StoreError) as e:
        await store.move_job(a["id"], "top")
    assert e.value.code == "conflict"
    with pytest.raises(StoreError) as e:
        await store.move_job(b["id"], "bottom")
    assert e.value.code == "invalid"
    with pytest.raises(StoreError) as e:
        await store.move_job(999, "up")
    assert e.value.code == "not_found"


async def test_cancel_and_retry_rules(store: Store) -> None:
    a, b = await add(store), await add(store)
    await store.cancel_queued(a["id"])
    with pytest.raises(StoreError) as e:
        await store.cancel_queued(a["id"])
    assert e.value.code == "conflict"
    await store.mark_running(b["id"])
    with pytest.raises(StoreError) as e:  # running jobs are cancelled by the runner
        await store.cancel_queued(b["id"])
    assert e.value.code == "conflict"
    with pytest.raises(StoreError) as e:
        await store.retry_job(b["id"])
    assert e.value.code == "conflict"
    await store.set_job_state(b["id"], "failed", error="bad model path")
    c = await add(store)
    # retry puts the job at the END with attempts reset
    b2 = await store.retry_job(b["id"])
    assert b2["state"] == "queued" and b2["attempts"] == 0 and b2["error"] is None
    a2 = await store.retry_job(a["id"])
    assert [j["id"] for j in await store.list_jobs()] == [c["id"], b["id"], a["id"]]
    assert a2["finished"] is None
    done = await make_job(store)
    with pytest.raises(StoreError) as e:
        await store.retry_job(done["id"])
    assert e.value.code == "conflict"


async def test_set_job_state_rules(store: Store) -> None:
    j = await add(store)
    for state, code in [("done", "invalid"), ("running", "invalid"), ("queued", "invalid"),
                        ("bogus", "invalid"), ("processing", "conflict")]:
        with pytest.raises(StoreError) as e:
            await store.set_job_state(j["id"], state)
        assert e.value.code == code, state
    await store.mark_running(j["id"])
    j = await store.set_job_state(j["id"], "cancelled")
    assert j["state"] == "cancelled" and j["finished"]
    with pytest.raises(StoreError) as e:
        await store.set_job_state(j["id"], "failed")
    assert e.value.code == "conflict"


async def test_requeue_keeps_position_then_fails_past_cap(store: Store) -> None:
    a = await add(store, max_attempts=2)
    b = await add(store)
    await store.mark_running(a["id"])
    a = await store.requeue_job(a["id"], error="worker crashed (OOM)")
    assert a["state"] == "queued" and a["attempts"] == 1 and "OOM" in a["error"]
    assert (await store.next_queued_job())["id"] == a["id"]  # kept its place before b
    await store.mark_running(a["id"])
    a = await store.requeue_job(a["id"], error="worker crashed again")
    assert a["state"] == "failed" and "gave up after 2 attempts" in a["error"]
    with pytest.raises(StoreError) as e:
        await store.requeue_job(b["id"], error="x")
    assert e.value.code == "conflict"


async def test_recover_after_crash(opener) -> None:
    """open, mark running, close without finishing, reopen: back in the queue,
    the attempt counted; past the cap: failed with the reason."""
    s = await opener()
    a = await s.add_job(prompt="a", params={}, count=1, seed=1, model=None)
    b = await s.add_job(prompt="b", params={}, count=1, seed=1, model=None)
    await s.mark_running(a["id"])
    await s.close()
    for round_ in range(1, 4):
        s = await opener()
        out = await s.recover()
        if round_ < 3:
            assert out == {"requeued": [a["id"]], "failed": []}
            job = await s.get_job(a["id"])
            assert job["state"] == "queued" and job["attempts"] == round_
            assert "interrupted" in job["error"]
            assert (await s.next_queued_job())["id"] == a["id"]  # still ahead of b
            await s.mark_running(a["id"])
        else:
            assert out == {"requeued": [], "failed": [a["id"]]}
            job = await s.get_job(a["id"])
            assert job["state"] == "failed" and "gave up after 3 attempts" in job["error"]
        await s.close()
    s = await opener()
    assert (await s.get_job(b["id"]))["state"] == "queued"
    assert await s.recover() == {"requeued": [], "failed": []}
    await s.close()


async def test_recover_cap_override_and_processing(store: Store) -> None:
    a = await add(store)
    await store.mark_running(a["id"])
    await store.set_job_state(a["id"], "processing")
    assert await store.recover(max_attempts=1) == {"requeued": [], "failed": [a["id"]]}


def test_accepted_job_survives_kill9(db_path, tmp_path) -> None:
    """A child process submits a job, prints its id, and is SIGKILLed with the
    store still open: the job is there after reopening."""
    script = textwrap.dedent(f"""
        import asyncio, os, signal, sys
        from dgx_music.daemon.store import Store
        async def main():
            s = await Store.open({str(db_path)!r})
            job = await s.add_job(prompt="survive", params={{}}, count=1, seed=3, model=None)
            await s.mark_running(job["id"])
            print(job["id"], flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        asyncio.run(main())
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == -9, proc.stderr
    job_id = int(proc.stdout.strip())

    async def check() -> None:
        s = await Store.open(db_path)
        assert await s.recover() == {"requeued": [job_id], "failed": []}
        assert (await s.get_job(job_id))["prompt"] == "survive"
        await s.close()

    asyncio.run(check())


async def test_finish_job_atomic_and_never_twice(store: Store) -> None:
    job = await add(store, "twice", count=3)
    with pytest.raises(StoreError):  # not running yet
        await store.finish_job(job["id"], [track("x.flac")])
    await store.mark_running(job["id"])
    # a bad third track: nothing of the first two may be written
    bad = [track("a.flac"), track("b.flac"), track("c.flac", duration=float("inf"))]
    with pytest.raises(StoreError) as e:
        await store.finish_job(job["id"], bad)
    assert e.value.code == "invalid"
    # an index outside the job's count is refused inside the transaction
    with pytest.raises(StoreError) as e:
        await store.finish_job(job["id"], [track("a.flac"), track("b.flac", index=7)])
    assert e.value.code == "invalid"
    assert (await store.list_tracks())["total"] == 0
    assert (await store.get_job(job["id"]))["state"] == "running"
    tracks = await store.finish_job(job["id"], [track(f"{i}.flac") for i in range(3)])
    assert len(tracks) == 3
    with pytest.raises(StoreError) as e:
        await store.finish_job(job["id"], [track("again.flac")])
    assert e.value.code == "conflict"
    assert (await store.list_tracks())["total"] == 3


async def test_finish_job_conflict_rolls_back_everything(store: Store) -> None:
    """A track id that already exists (e.g. imported) -> conflict, no half-written job."""
    job = await add(store, "clash", count=2)
    await store.import_tracks([{**track("old.flac"), "id": f"{job['id']}-1", "prompt": "old"}])
    await store.mark_running(job["id"])
    with pytest.raises(StoreError) as e:
        await store.finish_job(job["id"], [track("n0.flac", tags=["new"]), track("n1.flac")])
    assert e.value.code == "conflict"
    page = await store.list_tracks()
    assert [t["id"] for t in page["tracks"]] == [f"{job['id']}-1"]
    assert (await store.list_tracks(search="new"))["total"] == 0
    assert (await store.get_job(job["id"]))["state"] == "running"


async def test_finish_job_validates_fields(store: Store) -> None:
    job = await add(store, count=2)
    await store.mark_running(job["id"])
    cases = [
        ([{"path": "a.flac"}], "missing"),
        ([track("a.flac", colour="red")], "unknown"),
        ([track("/abs/a.flac")], "relative"),
        ([track("../a.flac")], ".."),
        ([track("a.flac", sample_rate=0)], "sample_rate"),
        ([track("a.flac"), track("b.flac", index=0)], "duplicate"),
        ([], "non-empty"),
        ([track("a.flac", peaks=[[0.1]])], "peaks"),
        ([track("a.flac", bpm="fast")], "bpm"),
    ]
    for tracks, words in cases:
        with pytest.raises(StoreError) as e:
            await store.finish_job(job["id"], tracks)
        assert e.value.code == "invalid" and words in str(e.value), (tracks, str(e.value))


async def test_analysis_unknowns_do_not_refuse_a_generation(store: Store) -> None:
    """-inf LUFS (silence), NaN, a zero tempo: stored as unknown (None), the job
    still finishes; numpy scalars and arrays are accepted."""
    np = pytest.importorskip("numpy")
    job = await add(store, count=1)
    await store.mark_running(job["id"])
    [t] = await store.finish_job(job["id"], [track(
        "quiet.flac", duration=np.float32(8.0), sample_rate=np.int64(32000),
        lufs_before=float("-inf"), true_peak=float("nan"), bpm=0.0, key_confidence=np.float32(0.5),
        peaks=np.array([[-0.5, 0.5], [0.0, 0.25]], dtype=np.float32))])
    assert (t["lufs_before"], t["true_peak"], t["bpm"]) == (None, None, None)
    assert t["key_confidence"] == 0.5 and t["duration"] == 8.0 and t["sample_rate"] == 32000
    assert (await store.get_track(t["id"]))["peaks"] == [[-0.5, 0.5], [0.0, 0.25]]


async def test_cancelled_caller_cannot_leave_half_transaction(store: Store) -> None:
    """Cancelling the awaiting task does not interrupt the operation midway."""
    task = asyncio.ensure_future(add(store, "cancel me"))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.2)
    # the store still works and is not stuck inside a transaction
    job = await add(store, "after")
    assert job["state"] == "queued"
    assert [j["prompt"] for j in await store.list_jobs()][-1] == "after"


async def test_prompt_history(store: Store) -> None:
    for p in ["a", "b", "a", "c"]:
        await add(store, p)
    assert await store.prompt_history() == ["c", "a", "b"]
    assert await store.prompt_history(limit=1) == ["c"]


async def test_closed_store(opener) -> None:
    s = await opener()
    await s.close()
    await s.close()  # idempotent
    with pytest.raises(StoreError):
        await s.queue_depth()
