"""Claiming jobs under a lease (several daemons on one queue), on both backends."""

from __future__ import annotations

import asyncio

import pytest

from dgx_music.daemon.store import Store, StoreError, clock

from .conftest import track


async def add(store: Store, prompt: str = "p", model: str | None = None) -> dict:
    return await store.add_job(prompt=prompt, params={}, count=1, seed=1, model=model)


async def test_claims_go_in_queue_order_and_hold_the_job(store: Store) -> None:
    a, b = await add(store, "a"), await add(store, "b")
    assert await store.claim_next_job("host-1", lease_s=30) is not None
    job = await store.get_job(a["id"])
    assert job["state"] == "running" and job["attempts"] == 1 and job["started"] is not None
    assert await store.claims() == [{"id": a["id"], "state": "running", "claimed_by": "host-1",
                                     "lease_until": pytest.approx(clock.now() + 30, abs=5)}]
    assert (await store.claim_next_job("host-2", lease_s=30))["id"] == b["id"]
    assert await store.claim_next_job("host-1", lease_s=30) is None  # nothing queued


async def test_a_host_prefers_the_model_it_has_loaded(store: Store) -> None:
    first = await add(store, "head of the queue", model="small")
    medium = await add(store, "later, medium", model="medium")
    assert (await store.claim_next_job("h", lease_s=30, prefer_model="medium"))["id"] == medium["id"]
    # no queued job for the loaded model: the queue's head, whatever its model
    assert (await store.claim_next_job("h", lease_s=30, prefer_model="large"))["id"] == first["id"]


async def test_two_hosts_never_claim_the_same_job(store: Store, opener) -> None:
    ids = [(await add(store, f"j{i}"))["id"] for i in range(8)]
    other = await opener()  # a second daemon: its own connection to the same database
    try:
        async def drain(s: Store, host: str) -> list[int]:
            got = []
            while (job := await s.claim_next_job(host, lease_s=30)) is not None:
                got.append(job["id"])
            return got
        one, two = await asyncio.gather(drain(store, "host-1"), drain(other, "host-2"))
    finally:
        await other.close()
    assert sorted(one + two) == ids and not set(one) & set(two)
    assert {c["claimed_by"] for c in await store.claims() if c["id"] in one} <= {"host-1"}


async def test_a_dead_hosts_job_goes_back_to_the_queue_once_its_lease_ends(store: Store) -> None:
    a, b = await add(store, "a"), await add(store, "b")
    job = await store.claim_next_job("dead-host", lease_s=60)
    t0 = clock.now()
    assert await store.requeue_expired(now=t0 + 30) == {"requeued": [], "failed": [], "cancelled": []}  # still held
    assert await store.requeue_expired(now=t0 + 61) == {"requeued": [a["id"]], "failed": [], "cancelled": []}
    back = await store.get_job(a["id"])
    assert back["state"] == "queued" and back["attempts"] == 1 and "dead-host" in back["error"]
    assert back["position"] < b["position"]  # its old place, ahead of b
    # The dead host, back from the dead, has lost it: its renewal says stop.
    with pytest.raises(StoreError) as e:
        await store.renew_lease(job["id"], "dead-host", lease_s=60)
    assert e.value.code == "conflict" and "no longer holds" in str(e.value)
    # Another host runs it once more.
    again = await store.claim_next_job("live-host", lease_s=60)
    assert again["id"] == a["id"] and again["attempts"] == 2


async def test_a_job_whose_hosts_keep_dying_fails_after_its_attempts(store: Store) -> None:
    job = await store.add_job(prompt="cursed", params={}, count=1, seed=1, model=None, max_attempts=2)
    for attempt in (1, 2):
        assert (await store.claim_next_job(f"h{attempt}", lease_s=1))["attempts"] == attempt
        out = await store.requeue_expired(now=clock.now() + 2)
    assert out == {"requeued": [], "failed": [job["id"]], "cancelled": []}
    failed = await store.get_job(job["id"])
    assert failed["state"] == "failed" and "gave up after 2 attempts" in failed["error"]
    assert await store.claim_next_job("h3", lease_s=1) is None


async def test_renewing_keeps_the_job_and_finishing_ends_the_lease(store: Store) -> None:
    a = await add(store)
    await store.claim_next_job("h", lease_s=10)
    until = await store.renew_lease(a["id"], "h", lease_s=600)
    assert until > clock.now() + 500
    assert await store.requeue_expired(now=clock.now() + 20) == {"requeued": [], "failed": [], "cancelled": []}
    with pytest.raises(StoreError) as e:  # another host cannot renew what h holds
        await store.renew_lease(a["id"], "intruder", lease_s=10)
    assert e.value.code == "conflict" and "held by h" in str(e.value)
    await store.set_job_state(a["id"], "processing")
    await store.finish_job(a["id"], [track("t/a.flac")])
    assert await store.requeue_expired(now=clock.now() + 10_000) == {"requeued": [], "failed": [], "cancelled": []}
    assert (await store.get_job(a["id"]))["state"] == "done"


async def test_a_cancel_recorded_on_the_row_reaches_the_running_host_at_its_renewal(store: Store) -> None:
    # Issue 21: a cancel sent while the running host was not listening is not lost.
    a = await add(store)
    await store.claim_next_job("runner", lease_s=30)
    assert (await store.renew(a["id"], "runner", lease_s=30))["cancel_requested"] is False
    job = await store.request_cancel(a["id"])
    assert job["state"] == "running"  # the running host ends it, not the asker
    assert await store.cancel_requested(a["id"]) is True
    assert (await store.renew(a["id"], "runner", lease_s=30))["cancel_requested"] is True
    # Its host died before it saw the cancel: the job ends cancelled, it does not run again.
    assert await store.requeue_expired(now=clock.now() + 60) == {"requeued": [], "failed": [], "cancelled": [a["id"]]}
    assert (await store.get_job(a["id"]))["state"] == "cancelled"
    assert await store.claim_next_job("other", lease_s=30) is None
    with pytest.raises(StoreError) as e:  # nothing runs any more: nothing to record
        await store.request_cancel(a["id"])
    assert e.value.code == "conflict"
    # An orderly shutdown of the running host ends a job with a cancel on it; it is not queued again.
    b = await add(store)
    await store.claim_next_job("runner", lease_s=30)
    await store.request_cancel(b["id"])
    assert (await store.release_job(b["id"]))["state"] == "cancelled"
    # A retried job starts with no cancel on it.
    await store.retry_job(a["id"])
    await store.claim_next_job("other", lease_s=30)
    assert (await store.renew(a["id"], "other", lease_s=30))["cancel_requested"] is False


async def test_a_job_run_on_one_box_has_no_lease_to_lose(store: Store) -> None:
    a = await add(store)
    await store.mark_running(a["id"])  # the scheduler's path today
    assert await store.requeue_expired(now=clock.now() + 10**9) == {"requeued": [], "failed": [], "cancelled": []}
    assert (await store.get_job(a["id"]))["state"] == "running"


async def test_release_and_requeue_drop_the_claim(store: Store) -> None:
    a = await add(store)
    await store.claim_next_job("h", lease_s=30)
    await store.release_job(a["id"])  # an orderly shutdown
    assert (await store.get_job(a["id"]))["attempts"] == 0 and await store.claims() == []
    await store.claim_next_job("h", lease_s=30)
    await store.requeue_job(a["id"], error="worker crashed")
    assert await store.claims() == []
    with pytest.raises(StoreError):
        await store.renew_lease(a["id"], "h", lease_s=30)


@pytest.mark.parametrize("kw, field", [
    ({"host": ""}, "host"), ({"host": "   "}, "host"), ({"host": 5}, "host"),
    ({"lease_s": 0}, "lease_s"), ({"lease_s": float("nan")}, "lease_s"), ({"lease_s": 10**9}, "lease_s"),
    ({"prefer_model": 3}, "prefer_model"),
])
async def test_claim_arguments_are_checked(store: Store, kw: dict, field: str) -> None:
    args = {"host": "h", "lease_s": 30, **kw}
    with pytest.raises(StoreError) as e:
        await store.claim_next_job(args.pop("host"), **args)
    assert e.value.code == "invalid" and e.value.field == field


async def test_a_host_changes_only_the_jobs_it_holds(store: Store, opener) -> None:
    a, b = await add(store, "a"), await add(store, "b")
    other = await opener()  # host-2's daemon, on its own connection
    try:
        store.hold_as("host-1")
        other.hold_as("host-2")
        await store.claim_next_job("host-1", lease_s=30)
        await other.claim_next_job("host-2", lease_s=30)
        # host-1 may not finish, fail, requeue or release host-2's job: the store refuses it
        for attempt in (lambda: store.finish_job(b["id"], [track(f"library/{b['id']}-0.wav")]),
                        lambda: store.set_job_state(b["id"], "failed", error="x"),
                        lambda: store.requeue_job(b["id"], error="x"),
                        lambda: store.release_job(b["id"])):
            with pytest.raises(StoreError) as e:
                await attempt()
            assert e.value.code == "conflict" and "host-1 no longer holds it" in str(e.value)
        assert (await store.get_job(b["id"]))["state"] == "running"
        # host-1 starting again recovers its own job only; host-2's stays running
        assert await store.recover() == {"requeued": [a["id"]], "failed": []}
        assert (await store.get_job(b["id"]))["state"] == "running"
        done = await other.finish_job(b["id"], [track(f"library/{b['id']}-0.wav")])
        assert [t["id"] for t in done] == [f"{b['id']}-0"]
    finally:
        await other.close()


async def test_a_job_with_a_cancel_recorded_ends_cancelled_at_recovery_not_queued(store: Store) -> None:
    # One box: the daemon crashed between the cancel request and the job's stop.
    a = await add(store)
    await store.mark_running(a["id"])
    await store.request_cancel(a["id"])
    assert await store.recover() == {"requeued": [], "failed": []}
    assert (await store.get_job(a["id"]))["state"] == "cancelled"
