"""The styles over HTTP: POST /api/v1/styles matches its OpenAPI schema and trains; list, get, delete."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema

from dgx_music.common.client import Client
from tests.conftest import start_http, wait_event
from tests.styles.test_style_jobs import training_set


async def test_http_trains_lists_and_deletes_a_style(daemon_factory: Callable[..., Any], tiny_acestep: Path) -> None:
    d = await daemon_factory(engine__model=str(tiny_acestep), http__listen="127.0.0.1:0")
    api = await start_http(d)
    base = api.url + "/api/v1"
    training_set(d.data_dir)
    body = {"name": "web", "directory": "set", "steps": 3, "checkpoint_every": 2}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {api.plan.token}"}) as s, \
            await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        async with s.get(api.url + "/openapi.json") as r:
            doc = await r.json()
        schema = {**doc["paths"]["/api/v1/styles"]["post"]["requestBody"]["content"]["application/json"]["schema"],
                  "components": doc["components"]}
        jsonschema.validate(body, schema)
        for bad in ({"name": "web"}, {"name": "no good", "directory": "set"}, {**body, "lr": 0}):
            try:
                jsonschema.validate(bad, schema)
            except jsonschema.ValidationError:
                pass
            else:
                raise AssertionError(f"the schema takes {bad}")
            async with s.post(base + "/styles", json=bad) as r:
                assert r.status == 400, await r.text()
        async with s.post(base + "/styles", json={**body, "directory": "/etc"}) as r:
            err = await r.json()
            assert r.status == 403 and err["error"]["field"] == "directory"
        async with s.post(base + "/styles", json=body) as r:
            assert r.status == 201, await r.text()
            job = await r.json()
        await wait_event(c, "job.finished", job["id"], timeout=300)
        async with s.get(base + "/styles") as r:
            assert [x["name"] for x in (await r.json())["styles"]] == ["web"]
        async with s.get(base + "/styles/web") as r:
            got = await r.json()
            assert got["steps"] == 3 and got["tracks"] == ["take0.flac", "take1.flac"]
        async with s.delete(base + "/styles/web") as r:
            assert r.status == 200
        async with s.get(base + "/styles/web") as r:
            assert r.status == 404
