"""Job history pruning through a real daemon: job.prune, the job.pruned event, pruning at start."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from dgx_music.common.client import Client
from dgx_music.common.protocol import RemoteError
from dgx_music.daemon.store import clock as store_clock
from dgx_music.daemon.components import DB_NAME
from dgx_music.daemon.history import HistoryPruner
from dgx_music.daemon.store import Store

from tests.conftest import wait_event

DAY = 86400.0


def _track(path: str) -> dict[str, Any]:
    return {"path": path, "duration": 1.0, "sample_rate": 32000, "channels": 1}


async def seed_history(data_dir: Path) -> dict[str, int]:
    """Before the daemon starts: finished jobs from 40 days ago (one done that still has
    its track, one done whose track was deleted, one failed, one cancelled) and one job
    cancelled just now. Returns their ids by name. (No queued job: the daemon would run
    it; that active jobs are never pruned is tested on the store, tests/store/test_prune.py.)"""
    clock = SimpleNamespace(time=lambda: time.time() - 40 * DAY)  # the store's clock only
    mp = pytest.MonkeyPatch()
    mp.setattr(store_clock, "now", clock.time)
    ids: dict[str, int] = {}
    s = await Store.open(data_dir / DB_NAME, synchronous="NORMAL")
    try:
        async def job(prompt: str) -> int:
            j = await s.add_job(prompt=prompt, params={"duration": 1.0}, count=1, seed=7, model=None)
            return j["id"]

        ids["kept"] = await job("old but still in the library")
        await s.mark_running(ids["kept"])
        await s.finish_job(ids["kept"], [_track("library/kept.wav")])
        ids["emptied"] = await job("old, its track deleted")
        await s.mark_running(ids["emptied"])
        [t] = await s.finish_job(ids["emptied"], [_track("library/emptied.wav")])
        await s.delete_track(t["id"])
        ids["failed"] = await job("old failure")
        await s.set_job_state(ids["failed"], "failed", error="bad model")
        ids["cancelled"] = await job("old cancelled")
        await s.cancel_queued(ids["cancelled"])
        mp.undo()  # from here on, today
        ids["recent"] = await job("cancelled today")
        await s.cancel_queued(ids["recent"])
    finally:
        mp.undo()
        await s.close()
    return ids


OLD_WITHOUT_TRACKS = ("emptied", "failed", "cancelled")


async def history_ids(c: Client) -> set[int]:
    return {j["id"] for j in (await c.call("job.list", {"all": True}))["jobs"]}


async def test_job_prune_over_the_socket(daemon_factory: Callable[..., Any], short_tmp: Path) -> None:
    ids = await seed_history(short_tmp / "data")
    d = await daemon_factory(daemon__keep_finished_days=0)  # automatic pruning off
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        assert await history_ids(c) == set(ids.values())
        queue = (await c.call("status"))["queue"]
        assert (queue["done"], queue["failed"], queue["cancelled"]) == (2, 1, 2)

        dry = await c.call("job.prune", {"dry_run": True})
        assert (dry["removed"], dry["kept_with_tracks"], dry["dry_run"]) == (3, 1, True)
        assert dry["older_than_days"] == 30  # the option's default while automatic pruning is off
        assert await history_ids(c) == set(ids.values())

        res = await c.call("job.prune", {})
        assert (res["removed"], res["kept_with_tracks"], res["dry_run"]) == (3, 1, False)
        ev = await wait_event(c, "job.pruned", timeout=10)
        assert sorted(ev.data["ids"]) == sorted(ids[k] for k in OLD_WITHOUT_TRACKS)
        assert ev.data["removed"] == 3
        assert await history_ids(c) == {ids["kept"], ids["recent"]}
        for k in OLD_WITHOUT_TRACKS:
            with pytest.raises(RemoteError) as e:
                await c.call("job.get", {"id": ids[k]})
            assert e.value.code == "not_found"
        kept = await c.call("job.get", {"id": ids["kept"]})
        assert kept["track_ids"] == [f"{ids['kept']}-0"]
        assert (await c.call("track.get", {"id": kept["track_ids"][0]}))["job_id"] == ids["kept"]
        queue = (await c.call("status"))["queue"]  # the status counts follow at once
        assert (queue["done"], queue["failed"], queue["cancelled"]) == (1, 0, 1)

        for bad in ({"older_than_days": -1}, {"older_than_days": "30"}, {"older_than_days": float("nan")},
                    {"older_than_days": float("inf")}, {"dry_run": "yes"}):
            with pytest.raises(RemoteError) as e:
                await c.call("job.prune", bad)
            assert e.value.code == "invalid_params" and e.value.data.get("field") == next(iter(bad)), bad
        assert await history_ids(c) == {ids["kept"], ids["recent"]}

        # a younger cutoff reaches today's cancelled job
        res = await c.call("job.prune", {"older_than_days": 0})
        assert (res["removed"], res["kept_with_tracks"]) == (1, 1)
        assert await history_ids(c) == {ids["kept"]}
        # once its track is deleted, the old done job goes too
        await c.call("track.delete", {"id": kept["track_ids"][0]})
        res = await c.call("job.prune", {"older_than_days": 1})
        assert (res["removed"], res["kept_with_tracks"]) == (1, 0)
        assert await history_ids(c) == set()


async def _wait_for(cond: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_daemon_prunes_at_start_with_keep_finished_days(daemon_factory: Callable[..., Any],
                                                             short_tmp: Path) -> None:
    ids = await seed_history(short_tmp / "data")
    d = await daemon_factory(daemon__keep_finished_days=35)
    async with await Client.connect(d.server.path) as c:
        expected = {ids["kept"], ids["recent"]}

        async def pruned() -> bool:
            return await history_ids(c) == expected

        await _wait_for(pruned)
        assert d.pruner._task is not None and not d.pruner._task.done()  # and again in a day


def record_rounds(monkeypatch: pytest.MonkeyPatch) -> tuple[list[tuple[float, dict[str, Any]]], asyncio.Event]:
    """Every real (not dry-run) prune the pruner completes, as (days, result); the event is set after each."""
    rounds: list[tuple[float, dict[str, Any]]] = []
    done = asyncio.Event()
    real = HistoryPruner.prune

    async def recording(self: HistoryPruner, days: float, *, dry_run: bool = False) -> dict[str, Any]:
        res = await real(self, days, dry_run=dry_run)
        if not dry_run:
            rounds.append((days, res))
            done.set()
        return res

    monkeypatch.setattr(HistoryPruner, "prune", recording)
    return rounds, done


async def test_keep_finished_days_older_than_the_jobs_keeps_them(daemon_factory: Callable[..., Any],
                                                                 short_tmp: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    ids = await seed_history(short_tmp / "data")
    rounds, done = record_rounds(monkeypatch)
    d = await daemon_factory(daemon__keep_finished_days=45)
    await asyncio.wait_for(done.wait(), 10)  # the prune at start has run, with 45 days
    assert [(days, res["removed"], res["kept_with_tracks"]) for days, res in rounds] == [(45, 0, 0)]
    async with await Client.connect(d.server.path) as c:
        assert await history_ids(c) == set(ids.values())
        # with no age given, job.prune uses the configured 45 days too
        res = await c.call("job.prune", {"dry_run": True})
        assert (res["removed"], res["older_than_days"]) == (0, 45)


@pytest.mark.parametrize("keep", [0, -1])
async def test_keep_finished_days_zero_or_less_never_prunes(daemon_factory: Callable[..., Any],
                                                            short_tmp: Path, keep: float,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    ids = await seed_history(short_tmp / "data")
    rounds, _ = record_rounds(monkeypatch)
    d = await daemon_factory(daemon__keep_finished_days=keep)
    # No background task exists to prune later (start() creates it synchronously when it prunes at all).
    assert d.pruner._task is None and not [t for t in asyncio.all_tasks() if t.get_name() == "history-pruner"]
    assert rounds == []
    async with await Client.connect(d.server.path) as c:
        assert await history_ids(c) == set(ids.values())
        # ...though three of these jobs are old enough for the option's default of 30 days.
        dry = await c.call("job.prune", {"dry_run": True})
        assert (dry["removed"], dry["older_than_days"]) == (3, 30)
        assert await history_ids(c) == set(ids.values())


async def test_pruner_repeats_survives_errors_and_stops_cleanly(tmp_path: Path) -> None:
    """The background task prunes at start and every interval, keeps going after a failed
    round, and close() ends it without leaving anything running."""
    store = await Store.open(tmp_path / "db.sqlite", synchronous="NORMAL")
    events: list[tuple[str, dict[str, Any]]] = []
    fake = SimpleNamespace(settings={"daemon.keep_finished_days": 1.0}, store=store, scheduler=None,
                           publish=lambda name, data: events.append((name, data)))
    pruner = HistoryPruner(fake, interval=0.05)  # type: ignore[arg-type]
    calls = completed = 0
    real = store.prune_jobs

    async def flaky(**kw: Any) -> dict[str, Any]:
        nonlocal calls, completed
        calls += 1
        if calls == 2:
            raise RuntimeError("disk hiccup")
        res = await real(**kw)
        completed += 1
        return res

    store.prune_jobs = flaky  # type: ignore[method-assign]
    try:
        pruner.start()

        async def first_round_done() -> bool:
            return completed >= 1

        await _wait_for(first_round_done, timeout=5)
        assert events == []  # at start: nothing old yet, so nothing published
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(store_clock, "now", lambda: time.time() - 2 * DAY)
            old = await store.add_job(prompt="old", params={}, count=1, seed=1, model=None)
            await store.cancel_queued(old["id"])

        async def published() -> bool:
            return bool(events)

        await _wait_for(published, timeout=5)
        assert calls >= 3  # the failed second round did not stop the loop
        assert events == [("job.pruned", {"ids": [old["id"]], "removed": 1, "kept_with_tracks": 0})]
        task = pruner._task
        await pruner.close()
        assert task is not None and task.cancelled()
        # Stopped for good: no pruner task is left to run another round.
        assert pruner._task is None and not [t for t in asyncio.all_tasks() if t.get_name() == "history-pruner"]
    finally:
        await pruner.close()
        await store.close()


def test_keep_finished_days_setting(tmp_path: Path) -> None:
    from dgx_music.common.config import ConfigError, load_settings, render_default_toml

    cfg = tmp_path / "c.toml"
    cfg.touch()
    assert load_settings(cfg, env={})["daemon.keep_finished_days"] == 30.0
    cfg.write_text("[daemon]\nkeep_finished_days = 7\n")
    s = load_settings(cfg, env={})
    assert s["daemon.keep_finished_days"] == 7.0 and s.source("daemon.keep_finished_days") == f"file {cfg}"
    s = load_settings(cfg, env={"DGX_MUSIC_KEEP_FINISHED_DAYS": "0.5"})
    assert s["daemon.keep_finished_days"] == 0.5
    cfg.write_text("[daemon]\nkeep_finished_days = 'forever'\n")
    with pytest.raises(ConfigError, match=r"daemon\.keep_finished_days"):
        load_settings(cfg, env={})
    assert "# keep_finished_days = 30.0" in render_default_toml()
