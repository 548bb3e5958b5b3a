"""What the OpenAPI document promises and what the daemon does agree (the schemathesis findings of
issue 22): null optional fields, unknown body fields, tag lengths, the operations' one source."""

from __future__ import annotations

from typing import Any

import aiohttp
import jsonschema
import pytest

from dgx_music.common.client import Client, RemoteError
from dgx_music.common.operations import OPERATION_SCHEMAS, validate_operation
from dgx_music.common.schemas import ParamError
from dgx_music.daemon.http import openapi

from .conftest import bearer
from .test_http import import_track

pytestmark = pytest.mark.slow


def _validator(doc: dict[str, Any], component: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({**doc, "$ref": f"#/components/schemas/{component}"})


def test_the_document_states_what_the_validators_take() -> None:
    doc = openapi()
    job = _validator(doc, "JobRequest")
    # null is "the default" for the daemon (docs/protocol.md): the document must say so.
    assert job.is_valid({"prompt": "x", "cfg": None, "seed": None, "top_k": None})
    assert not job.is_valid({"prompt": None})
    for op in OPERATION_SCHEMAS.values():
        v = _validator(doc, op.__name__)
        base = {"start": 1.0, "end": 2.0} if op.__name__ == "RepaintRequest" else {}
        if op.__name__ == "CoverRequest":
            base["prompt"] = "bossa nova"
        if op.__name__ == "AddPartRequest":
            base["part"] = "strings"
        if op.__name__ == "ExtendRequest":
            base["by"] = 30.0
        assert v.is_valid({**base, "source": "1-0"}), op
        assert v.is_valid({**base, "source": None, "source_audio": "UklGRg=="}), op
        assert not v.is_valid({**base, "source": None, "source_audio": None}), op
        assert not v.is_valid(base), op
        assert not v.is_valid({**base, "source": "1-0", "source_audio": "UklGRg=="}), op
        if op.__name__ != "CoverRequest":  # an optional caption may be empty: the daemon takes "" as none
            assert v.is_valid({**base, "source": "1-0", "prompt": ""}), op
            validate_operation(op.operation, {**base, "source": "1-0", "prompt": ""})
    for mix in (0, 1, "yes"):  # true or false, not 0 (the schema says boolean)
        with pytest.raises(ParamError) as e:
            validate_operation("add_part", {"source": "1-0", "part": "strings", "mix": mix})
        assert e.value.field == "mix"
    assert validate_operation("add_part", {"source": "1-0", "part": "strings", "mix": True}).mix is True
    stems = _validator(doc, "StemsRequest")
    assert not stems.is_valid({"source": "1-0", "parts": ["fx", "fx"]})  # the daemon: "names a part twice"


async def test_unknown_fields_and_long_tags_are_refused(http_daemon: Any) -> None:
    await import_track(http_daemon, "990-0", "tags")
    async with await Client.connect(http_daemon.server.path) as c:
        for method, params in (("job.prune", {"older_than_days": 1, "dry_run": True, "bogus": 1}),
                               ("model.load", {"model": "small", "bogus": 1}),
                               ("track.update", {"id": "990-0", "tags_add": ["x" * 49]}),
                               ("track.update", {"id": "990-0", "tags_remove": ["x" * 49]}),
                               ("track.update", {"id": "990-0", "tags_add": [f"t{i}" for i in range(65)]}),
                               ("track.list", {"tag": "x" * 49})):
            with pytest.raises(RemoteError) as e:
                await c.call(method, params)
            assert e.value.code == "invalid_params", (method, e.value)
        assert (await c.call("track.get", {"id": "990-0"}))["tags"] == ["imported"]
    url = http_daemon.http.url + "/api/v1"
    async with aiohttp.ClientSession(headers=bearer(http_daemon.http)) as s:
        for path, body, field in (("/jobs/prune", {"bogus": 1}, "bogus"), ("/model/load", {"bogus": 1}, "bogus")):
            async with s.post(url + path, json=body) as r:
                got = await r.json()
                assert r.status == 400 and got["error"]["field"] == field, got
        async with s.patch(url + "/tracks/990-0", json={"tags_remove": ["y" * 49]}) as r:
            assert r.status == 400 and (await r.json())["error"]["field"] == "tags_remove"
        async with s.get(url + "/tracks", params={"tag": "z" * 49}) as r:
            assert r.status == 400 and (await r.json())["error"]["field"] == "tag"
        async with s.get(url + "/tracks", params={"tag": "imported"}) as r:
            assert r.status == 200 and [t["id"] for t in (await r.json())["tracks"]] == ["990-0"]
        async with s.get(url + "/tracks", params=[("tag", "imported"), ("tag", "other")]) as r:
            assert r.status == 400 and (await r.json())["error"]["field"] == "tag"  # one value, not a list
        async with s.get(url + "/tracks", params={"source": "null"}) as r:
            assert r.status == 400 and (await r.json())["error"]["field"] == "source"
        for body, field in (({"prompt": "x", "model": "~no-such-user-dgxm/m"}, "model"),):
            async with s.post(url + "/jobs", json=body) as r:
                got = await r.json()
                assert r.status == 400 and got["error"]["field"] == field, got  # was 500 internal
        # null optional fields mean the default, as the document now says.
        async with s.post(url + "/jobs", json={"prompt": "nulls", "duration": 0.5, "cfg": None}) as r:
            assert r.status == 201, await r.text()


def test_a_separation_takes_no_sampler_setting_or_style_and_the_document_says_so() -> None:
    stems = _validator(openapi(), "StemsRequest")
    for field, value in (("steps", 8), ("lora", "warm-tape"), ("lora_scale", 0.5)):
        for method in ("separate", None):  # separate is the default
            req = {"source": "1-0", field: value, **({"method": method} if method else {})}
            with pytest.raises(ParamError) as e:
                validate_operation("stems", req)
            assert e.value.field == field and "separation model" in e.value.message, req
            assert not stems.is_valid(req), req
        generate = {"source": "1-0", "method": "generate", field: value}
        assert stems.is_valid(generate), generate
    req = validate_operation("stems", {"source": "1-0", "method": "generate", "lora": "warm-tape:0.5"})
    assert (req.lora, req.lora_scale) == ("warm-tape", 0.5)
