"""The scripting contract over the socket: one track shape, answers before the events they cause,
unknown fields refused by name, `field` on every invalid_params, `not_cancellable`, `job_id` filter."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from dgx_music.common import protocol
from dgx_music.common.client import Client
from dgx_music.common.protocol import RemoteError
from tests.conftest import wait_event


def write_wav(path: Path, seconds: float = 0.5, rate: int = 32000) -> None:
    import numpy as np
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 440 * t)).astype("float32"), rate, subtype="PCM_16")


async def import_track(daemon: Any, track_id: str, prompt: str = "imported") -> dict[str, Any]:
    rel = f"library/imported/{track_id}.wav"
    write_wav(daemon.data_dir / rel)
    await daemon.store.import_tracks([{"id": track_id, "prompt": prompt, "path": rel, "duration": 0.5,
                                       "sample_rate": 32000, "channels": 1, "peaks": [[-0.3, 0.3]] * 8}])
    return await daemon.store.get_track(track_id)


async def test_every_track_map_has_path_and_file(daemon: Any, client: Client) -> None:
    await import_track(daemon, "900-0")
    expected = str(daemon.data_dir / "library/imported/900-0.wav")
    got = await client.call("track.get", {"id": "900-0"})
    listed = (await client.call("track.list", {}))["tracks"][0]
    await client.subscribe("track")
    updated = await client.call("track.update", {"id": "900-0", "rating": 4})
    event = await wait_event(client, "track.updated", timeout=10)
    for t in (got, listed, updated, event.data):
        assert t["path"] == "library/imported/900-0.wav"
        assert t["file"] == expected and Path(t["file"]).is_file()


@pytest.mark.parametrize("fields, bad", [({"tags": ["x"]}, "tags"), ({"favourite": True}, "favourite"),
                                         ({"rating": 2, "stars": 5}, "stars")])
async def test_track_update_refuses_unknown_fields_by_name(daemon: Any, client: Client, fields: dict[str, Any],
                                                           bad: str) -> None:
    await import_track(daemon, "901-0")
    with pytest.raises(RemoteError) as e:
        await client.call("track.update", {"id": "901-0", **fields})
    assert e.value.code == protocol.INVALID_PARAMS and e.value.data["field"] == bad
    assert bad in e.value.message
    assert (await client.call("track.get", {"id": "901-0"}))["rating"] == 0  # nothing changed


async def test_rating_out_of_range_names_its_field(daemon: Any, client: Client) -> None:
    await import_track(daemon, "902-0")
    with pytest.raises(RemoteError) as e:
        await client.call("track.update", {"id": "902-0", "rating": 9})
    assert e.value.code == protocol.INVALID_PARAMS and e.value.data.get("field") == "rating"


async def test_track_list_job_filter_checks_its_value(daemon: Any, client: Client) -> None:
    await import_track(daemon, "903-0")  # imported: no job
    assert (await client.call("track.list", {"job_id": 903}))["tracks"] == []
    with pytest.raises(RemoteError) as e:
        await client.call("track.list", {"job_id": "x"})
    assert e.value.data["field"] == "job_id"
    with pytest.raises(RemoteError) as e:
        await client.call("track.list", {"jobid": 904})
    assert e.value.data["field"] == "jobid"


async def test_answer_comes_before_the_events_it_causes(studio: Any) -> None:
    """Read raw frames: after `subscribe`, job.submit's answer is on the wire before job.queued."""
    reader, writer = await asyncio.open_unix_connection(str(studio.server.path))
    try:
        writer.write(protocol.pack({"id": 1, "method": "subscribe", "params": {"topics": ["job"]}}))
        for i in range(2, 7):  # several, to give the runner every chance to overtake
            writer.write(protocol.pack({"id": i, "method": "job.submit",
                                        "params": {"prompt": f"order {i}", "duration": 0.5}}))
        await writer.drain()
        frames: list[dict[str, Any]] = []
        answered: dict[int, int] = {}  # request id -> frame index
        job_of: dict[int, int] = {}
        queued: dict[int, int] = {}  # job id -> frame index of job.queued
        while len(answered) < 6 or len(queued) < 5:
            f = await protocol.read_frame(reader, timeout=30)
            assert f is not None
            frames.append(f)
            if "result" in f:
                answered[f["id"]] = len(frames)
                if f["id"] >= 2:
                    job_of[f["id"]] = f["result"]["id"]
            elif f.get("event") == "job.queued":
                queued.setdefault(f["data"]["id"], len(frames))
        for req, job_id in job_of.items():
            assert answered[req] < queued[job_id], f"job.queued for job {job_id} came before its answer"
    finally:
        writer.close()


async def test_cancelling_a_finished_job_is_not_cancellable(studio: Any) -> None:
    async with await Client.connect(studio.server.path) as c:
        await c.subscribe("job")
        other = await c.call("job.submit", {"prompt": "another", "duration": 0.5})
        job = await c.call("job.submit", {"prompt": "short", "duration": 0.5, "count": 2})
        await wait_event(c, "job.finished", job["id"], timeout=120)
        with pytest.raises(RemoteError) as e:
            await c.call("job.cancel", {"id": job["id"]})
        assert e.value.code == protocol.NOT_CANCELLABLE and e.value.data["state"] == "done"
        done = await c.call("job.get", {"id": job["id"]})
        assert done["state"] == "done"
        page = await c.call("track.list", {"job_id": job["id"], "limit": 1, "sort": "created", "order": "asc"})
        rest = await c.call("track.list", {"job_id": job["id"], "limit": 1, "sort": "created", "order": "asc",
                                           "cursor": page["next_cursor"]})
        tracks = page["tracks"] + rest["tracks"]
        assert page["total"] == 2 and sorted(t["id"] for t in tracks) == sorted(done["track_ids"])
        assert other["id"] not in {t["job_id"] for t in tracks}
        assert Path(tracks[0]["file"]).is_file()
