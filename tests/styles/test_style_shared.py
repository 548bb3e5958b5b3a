"""Styles on shared storage (issue 21): a style trained on one host is used on another.

Host A (tiny ACE-Step, real worker) trains a style on two short files; host B, on the same
PostgreSQL queue and the same --storage directory, lists it, and a generation on B naming it
resolves to the adapter files A wrote under the shared directory. Skips without PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from dgx_music.common.client import Client
from tests.conftest import wait_event
from tests.styles.test_style_jobs import training_set


async def test_a_style_trained_on_one_host_is_used_by_name_on_another(
        pg_url: str, daemon_factory: Callable[..., Any], short_tmp: Path, tiny_acestep: Path) -> None:
    shared = short_tmp / "shared"
    shared.mkdir()

    def host(name: str, **kw: Any) -> Any:
        return daemon_factory(daemon__socket=str(short_tmp / f"{name}.sock"), daemon__data_dir=str(short_tmp / name),
                              daemon__host=name, store__url=pg_url, store__storage=str(shared),
                              engine__model=str(tiny_acestep), **kw)

    a = await host("a")
    training_set(a.data_dir)
    async with await Client.connect(a.server.path) as ca:
        await ca.subscribe("job")
        job = await ca.call("style.train", {"name": "mine", "directory": "set", "steps": 2, "checkpoint_every": 1})
        await wait_event(ca, "job.finished", job["id"], timeout=180)
    adapter = shared / "styles" / "mine"
    assert (adapter / "pytorch_lora_weights.safetensors").is_file() and (adapter / "style.json").is_file()
    assert not (a.data_dir / "styles" / "mine").exists()  # not in A's own data directory
    assert not [n for n in os.listdir(shared / "styles") if n.startswith(".")]  # no temporary left behind

    # B, on another machine in real life, is started with A's style already made; A stops, so B runs the job.
    await a.close()
    b = await host("b")
    async with await Client.connect(b.server.path) as cb:
        await cb.subscribe("job")
        styles = (await cb.call("style.list"))["styles"]
        assert [(s["name"], s["path"]) for s in styles] == [("mine", "styles/mine")]
        assert Path(styles[0]["dir"]) == adapter
        submitted = await cb.call("job.submit", {"prompt": "dream pop", "duration": 10.0, "steps": 2,
                                                 "lora": "mine:0.5"})
        assert Path(submitted["params"]["lora"]) == adapter.resolve()
        done = await wait_event(cb, "job.finished", submitted["id"], timeout=180)
        track = await cb.call("track.get", {"id": done.data["track_ids"][0]})
        assert (track["params"]["style"], track["params"]["lora"]) == ("mine", str(adapter.resolve()))
