"""Continuing a track: a real daemon, the tiny model through the real loaders, real files."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import soundfile as sf

from dgx_music.common.client import Client
from dgx_music.common.protocol import RemoteError
from tests.cli.test_cli_e2e import cli, cli_json
from tests.conftest import wait_event


async def test_a_track_continued_is_the_track_then_new_music(studio: Any) -> None:
    async with await Client.connect(studio.server.path) as c:
        await c.subscribe("job")
        src = await c.call("job.submit", {"prompt": "slow piano", "duration": 4.0, "seed": 3})
        await wait_event(c, "job.finished", src["id"])
        src_track = await c.call("track.get", {"id": f"{src['id']}-0"})
        job = await c.call("job.submit", {"prompt": "slow piano, strings join", "duration": 3.0,
                                          "extend": src_track["id"], "count": 2})
        seen: list[Any] = []
        await wait_event(c, "job.finished", job["id"], seen=seen)
        progress = [e.data for e in seen if e.name == "job.progress"]
        assert progress[-1]["step"] == progress[-1]["total"] == 150 + 3  # only the new 3 s are decoded
        done = await c.call("job.get", {"id": job["id"]})
        a, sr = sf.read(str(studio.data_dir / src_track["path"]))
        for tid in done["track_ids"]:
            t = await c.call("track.get", {"id": tid})
            assert abs(t["duration"] - 7.0) < 0.05 and t["params"]["extend"] == src_track["id"]
            b, _ = sf.read(str(studio.data_dir / t["path"]))
            # The first seconds are the source (loudness is normalised again over the whole, so
            # compare shapes: the same music, one gain apart).
            head = b[: 3 * sr]
            gain = np.dot(head, a[: 3 * sr]) / np.dot(a[: 3 * sr], a[: 3 * sr])
            assert np.allclose(head, gain * a[: 3 * sr], atol=0.02)


async def test_bad_extensions_are_refused_before_queueing(studio: Any) -> None:
    async with await Client.connect(studio.server.path) as c:
        await c.subscribe("job")
        src = await c.call("job.submit", {"prompt": "short loop", "duration": 2.0})
        await wait_event(c, "job.finished", src["id"])
        tid = f"{src['id']}-0"
        for params, field, words in (
                ({"extend": "999-0"}, "extend", "no track 999-0"),
                ({"extend": "../x"}, "extend", "track id"),
                ({"extend": tid, "duration": 299.0}, "duration", "past the 300 s limit"),
                ({"extend": tid, "duration": 100.0, "count": 5}, "count", "480 s")):
            with pytest.raises(RemoteError) as e:
                await c.call("job.submit", {"prompt": "x", **params})
            # A track that is not there is not_found (naming the field), as track.get answers it.
            code = "not_found" if "999-0" in params.values() else "invalid_params"
            assert e.value.code == code and e.value.data.get("field") == field, params
            assert words in e.value.message, (params, e.value.message)
        assert len((await c.call("job.list", {"all": True}))["jobs"]) == 1


async def test_a_deleted_source_fails_the_job_saying_so(daemon_factory: Callable[..., Any], tiny_model: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGX_MUSIC_TEST_STEP_DELAY", "0.03")
    d = await daemon_factory(engine__model=str(tiny_model))
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        src = await c.call("job.submit", {"prompt": "source", "duration": 1.0})
        await wait_event(c, "job.finished", src["id"], timeout=120)
        blocker = await c.call("job.submit", {"prompt": "keeps the worker busy", "duration": 2.0})
        job = await c.call("job.submit", {"prompt": "more", "duration": 1.0, "extend": f"{src['id']}-0"})
        await c.call("track.delete", {"id": f"{src['id']}-0"})  # while the job waits its turn
        failed = await wait_event(c, "job.failed", job["id"], timeout=120)
        assert "was deleted" in failed.data["error"] and not failed.data["retrying"]
        assert (await c.call("job.get", {"id": blocker["id"]}))["state"] in ("running", "done", "processing")


async def test_cli_extend(studio: Any) -> None:
    sock = studio.server.path
    src = await cli_json(sock, "generate", "warm rhodes chords", "--duration", "2", "--seed", "5", "--wait")
    tid = src["tracks"][0]["id"]
    res = await cli_json(sock, "extend", tid, "--by", "1.5", "--wait")
    job = res
    assert job["state"] == "done" and job["prompt"] == "warm rhodes chords"  # the source's prompt
    assert job["params"]["extend"] == tid and abs(res["tracks"][0]["duration"] - 3.5) < 0.05
    rc, out, _ = await cli(sock, "show", res["tracks"][0]["id"])
    assert rc == 0 and f"extends   {tid} (the first 2.00 s are it)" in out
    rc, _, err = await cli(sock, "extend", tid, "--by", "0")
    assert rc == 2 and "--by" in err
    rc, _, err = await cli(sock, "extend", tid, "--by", "2", "--before")  # MusicGen only continues forward
    assert rc == 2 and "--before" in err and "ACE-Step" in err, err
    # A remix of a continuation continues the same source again, with a new seed.
    again = await cli_json(sock, "remix", res["tracks"][0]["id"], "--wait")
    assert again["params"]["extend"] == tid and again["seed"] != job["seed"]
    assert abs(again["tracks"][0]["duration"] - 3.5) < 0.05
