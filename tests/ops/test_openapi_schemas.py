"""/openapi.json describes the real request and response bodies (generated from common/schemas.py),
and its request schema rejects what the daemon rejects."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import jsonschema
import pytest

from dgx_music.common.families import family_for_name
from dgx_music.common.schemas import MODEL_NAME_PATTERNS, ParamError, validate_request
from dgx_music.daemon.http import openapi

from .conftest import bearer

LYRICS = "[verse]\nstreetlights hum\n[chorus]\nwe are the night"

#: Bodies the daemon refuses (each with the field it names).
BAD = [
    ({"prompt": "x", "model": "ace-step", "top_k": 50}, "top_k"),
    ({"prompt": "x", "model": "ace-step", "lyrics": "a" * 4097}, "lyrics"),
    ({"prompt": "x", "model": "ace-step", "bpm": 0}, "bpm"),
    ({"prompt": "x", "model": "ace-step", "key": "H major"}, "key"),
    ({"prompt": "x", "model": "ace-step", "duration": 700}, "duration"),
    ({"prompt": "x", "model": "ace-step", "time_signature": 5}, "time_signature"),
    ({"prompt": "x", "model": "ace-step", "language": "xx"}, "language"),
    ({"prompt": "x", "model": "small", "lyrics": "la la"}, "lyrics"),
    ({"prompt": "x", "duration": 301}, "duration"),
    ({"prompt": "x", "top_p": 2}, "top_p"),
    ({"prompt": "x", "colour": "blue"}, "colour"),
    ({"prompt": ""}, "prompt"),
    ({"duration": 8}, "prompt"),
]
#: Bodies both accept.
GOOD = [
    {"prompt": "warm analog synth arpeggio", "duration": 1.0, "top_k": 100},
    {"prompt": "synthwave, female vocals", "model": "ace-step", "lyrics": LYRICS, "language": "en", "bpm": 96,
     "key": "A minor", "time_signature": 4, "duration": 30, "steps": 8},
    {"prompt": "instrumental post-rock", "model": "ace-step-base", "key": "F# major", "guidance": 5.5},
]


def _validator(doc: dict[str, Any], component: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({**doc, "$ref": f"#/components/schemas/{component}"})


def test_request_schema_rejects_what_the_validator_rejects() -> None:
    doc = openapi()
    req = _validator(doc, "JobRequest")
    for body, field in BAD:
        assert not req.is_valid(body), body
        family = family_for_name(body.get("model")) or "musicgen"
        with pytest.raises(ParamError) as e:
            validate_request(body, family)
        assert e.value.field == field
    for body in GOOD:
        assert req.is_valid(body), list(req.iter_errors(body))
        validate_request(body, family_for_name(body.get("model")) or "musicgen")
    # Named fields really are described, not {"type": "object"}.
    ace = doc["components"]["schemas"]["AceStepParams"]
    assert ace["properties"]["duration"]["minimum"] == 10 and ace["properties"]["duration"]["maximum"] == 600
    assert ace["properties"]["lyrics"]["maxLength"] == 4096 and ace["additionalProperties"] is False
    post = doc["paths"]["/api/v1/jobs"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/JobRequest"}
    assert post["responses"]["201"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Job"}


@pytest.mark.parametrize("name", ["small", "random:melody", "facebook/musicgen-large", "ace-step", "ace-step-xl",
                                  "random:ace-step-base", "ACE-Step/acestep-v15-xl-turbo-diffusers",
                                  "someone/AceStep-finetune", "/srv/models/x", "./ace-step", "someone/other",
                                  "random:huge"])
def test_model_name_patterns_agree_with_family_for_name(name: str) -> None:
    matched = [fam for fam, pattern in MODEL_NAME_PATTERNS.items() if re.match(pattern, name)]
    assert matched == ([family_for_name(name)] if family_for_name(name) else [])


async def test_daemon_agrees_with_the_openapi_document(http_daemon: Any) -> None:
    base = http_daemon.http.url
    async with aiohttp.ClientSession(headers=bearer(http_daemon.http)) as s:
        async with s.get(base + "/openapi.json") as r:
            doc = await r.json()
        req, job_schema = _validator(doc, "JobRequest"), _validator(doc, "Job")
        for body, field in BAD:
            async with s.post(base + "/api/v1/jobs", json=body) as r:
                err = await r.json()
            assert r.status == 400 and err["error"]["code"] == "invalid_params", (body, err)
            assert err["error"].get("field") == field and not req.is_valid(body)
            assert _validator(doc, "Error").is_valid(err)
        async with s.get(base + "/api/v1/jobs?all=true") as r:
            assert (await r.json())["jobs"] == []  # nothing was queued
        for body in GOOD:
            assert req.is_valid(body)
            async with s.post(base + "/api/v1/jobs", json=body) as r:
                job = await r.json()
            assert r.status == 201, job
            assert job_schema.is_valid(job), list(job_schema.iter_errors(job))
            if body.get("model", "").startswith("ace-step"):
                assert job["params"]["family"] == "ace-step"
                async with s.post(base + f"/api/v1/jobs/{job['id']}/cancel") as r:
                    assert r.status == 200
        async with s.get(base + "/api/v1/jobs?all=true") as r:
            listing = await r.json()
        assert _validator(doc, "JobList").is_valid(listing) and len(listing["jobs"]) == len(GOOD)


def test_the_document_declares_stale_library_answers() -> None:
    """A read answered from the daemon's cache while the database is away (issue 21) carries
    `stale` and `stale_since`: the document names both, and such an answer validates."""
    doc = openapi()
    for component in ("Track", "TrackPage"):
        props = doc["components"]["schemas"][component]["properties"]
        assert props["stale"]["type"] == "boolean", component
        assert {"type": "number"} in props["stale_since"]["anyOf"], component
    page = {"tracks": [], "next_cursor": None, "total": 0, "stale": True, "stale_since": 1_700_000_000.5}
    assert _validator(doc, "TrackPage").is_valid(page)
    assert not _validator(doc, "TrackPage").is_valid({**page, "stale": "yes"})
    audio = doc["paths"]["/api/v1/tracks/{id}/audio"]["get"]["responses"]["200"]
    assert "X-Dgx-Stale-Since" in audio["headers"]
