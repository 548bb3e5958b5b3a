"""Fuzz the live HTTP API from its own OpenAPI document with schemathesis (a test dependency),
with the token and `--checks all`: no request the document calls valid may be refused, none the
document calls invalid may be accepted, none may cause a 500, every answer must match the
documented schema and content type, 405s must list the right methods, auth must be enforced.

The daemon runs the tiny ACE-Step pipeline so that the operations on tracks (/ops/*) run too,
on a real source track. Bounded: a few examples per operation. Left out, and why:
  * /model/load and /model/unload load and stop real models (minutes, and an engine_error 502
    for every made-up model name is the right answer, not a bug);
  * /events and /events/ws never end, /metrics is text for Prometheus;
  * /speaker/* (play, stream, stop, seek, and the tab's WebSocket) need a browser tab open:
    without one `no_speaker` (409) is the right answer; tests/web/test_speaker.py drives them;
  * `cursor` is opaque (only a `next_cursor` the daemon gave is valid: nothing a generator can
    make); likewise a job's `extend` and `melody` (a library track that exists, with a model that
    can use it) and `lora` (a directory that exists under the data dir): left out of generated
    bodies. An operation's source is pinned to the one track that exists (no uploads: socket-sized
    base64 bodies), its model left out (the daemon's), a repaint's span pinned inside the source,
    an extension's `by` to a length the 600 s limit allows.
    The long poll's `wait` is left out so that no example waits 300 s.
Set SCHEMATHESIS_CMD to a schemathesis executable (`st`) installed elsewhere to run it without
schemathesis in this environment.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import start_http

from .test_http import import_track

pytestmark = pytest.mark.slow

EXAMPLES = 8
CHECKS = "all"
SOURCE = "900-0"  # not "<job>-0" of a job the fuzzer makes
VICTIM = "901-0"  # the one track DELETE may take


def schemathesis_cmd() -> list[str] | None:
    if os.environ.get("SCHEMATHESIS_CMD"):
        return shlex.split(os.environ["SCHEMATHESIS_CMD"])
    if importlib.util.find_spec("schemathesis") is not None:
        return [sys.executable, "-m", "schemathesis.cli"]
    return None


def fuzzable(doc: dict[str, Any]) -> dict[str, Any]:
    """The document with the two parameters no generator can fill meaningfully adjusted (see above)."""
    for ops in doc["paths"].values():
        for op in ops.values():
            params = op.get("parameters", [])
            # The long poll's `wait` (up to 300 s) is left out too: tests/ops/test_http_contract.py covers it.
            # `tag` too: the library takes any tag without control or format characters (Unicode
            # category C), which no portable JSON Schema regex states; test_schema_agreement.py covers it.
            # `search` and `sort` too: `sort=relevance` needs a search with a word to rank (refused naming
            # `sort` otherwise), a rule between two query parameters that OpenAPI cannot state;
            # tests/store/test_relevance.py and tests/cli/test_library_cli.py cover both.
            op["parameters"] = [p for p in params if p["name"] not in ("cursor", "wait", "tag", "search", "sort")]
    for name, schema in doc["components"]["schemas"].items():
        if name == "TrainRequest":  # styles: trained on the source track; model and directory are refused when made up
            props = schema["properties"]
            for key in ("model", "directory", "caption"):
                props.pop(key, None)
            props["tracks"] = {"type": "array", "items": {"type": "string", "enum": [SOURCE]}, "minItems": 1,
                               "maxItems": 1}
            schema.pop("oneOf", None)
            schema["required"] = sorted({*schema.get("required", ()), "tracks"})
            continue
        if name.endswith("Request") and name != "JobRequest":  # the operations on tracks
            props = schema["properties"]
            props["source"] = {"type": "string", "enum": [SOURCE]}
            for key in ("source_audio", "source_name", "model", "lora", "lora_scale"):  # a made-up style is refused
                props.pop(key, None)
            schema.pop("oneOf", None)
            if name == "LoopRequest":  # pinned to the source: a loop cut from it, not generated
                props.pop("prompt", None)
            schema["required"] = sorted({*schema.get("required", ()), "source"})
            if "start" in props:
                props["start"], props["end"] = {"type": "number", "enum": [1.0]}, {"type": "number", "enum": [2.5]}
            if "by" in props:  # an extension: the source (4 s) plus `by` within 600 s, as a span within the source
                props["by"] = {"type": "number", "enum": [1.5]}
            if name == "StemsRequest":  # the parts both methods take: a four-stem model makes no guitar
                props["parts"] = {"type": "array", "items": {"type": "string", "enum": ["vocals", "drums", "bass"]},
                                  "minItems": 1, "uniqueItems": True}
                for branch in schema.get("anyOf", ()):  # each method's rule stays (separation: no sampler)
                    branch["properties"].pop("parts", None)
    for name in ("MusicGenParams", "AceStepParams"):
        props = doc["components"]["schemas"][name]["properties"]
        # `model` too: a made-up name is rightly refused (model_not_found), and the daemon's own is the default.
        for key in ("extend", "melody", "melody_source", "lora", "lora_scale", "model"):
            props.pop(key, None)
    # Deleting a track takes only the victim, never the operations' source.
    for p in doc["paths"]["/api/v1/tracks/{id}"]["delete"]["parameters"]:
        if p["name"] == "id":
            p["schema"] = {"type": "string", "enum": [VICTIM]}
    return doc


async def test_schemathesis_finds_nothing(daemon_factory: Any, tiny_acestep: Path, tmp_path: Path) -> None:
    cmd = schemathesis_cmd()
    if cmd is None:
        pytest.skip("schemathesis is not installed (pip install 'dgx-music[test]'), nor SCHEMATHESIS_CMD set")

    # A short queue: generated jobs (up to 16 x 300 s) are accepted or refused queue_full, not all run.
    d = await daemon_factory(engine__model=str(tiny_acestep), http__listen="127.0.0.1:0", daemon__queue_limit=2,
                             engine__offline=True)
    await import_track(d, SOURCE, "the source of the operations", seconds=4.0)
    await import_track(d, VICTIM, "a track to delete")
    api = await start_http(d)
    base = api.url
    auth = f"Authorization: Bearer {api.plan.token}"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {api.plan.token}"}) as s:
        async with s.get(base + "/openapi.json") as r:
            doc = await r.json()
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(fuzzable(doc)))
    # 416 is the right refusal of a malformed Range (schemathesis's lists leave it out), and of a
    # well-formed one past the end of the file.
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        '[checks.negative_data_rejection]\nexpected-statuses = ["400", "401", "403", "404", "405", "406", "409", '
        '"413", "415", "416", "422", "428", "429", "5xx"]\n'
        '[checks.positive_data_acceptance]\nexpected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "416", '
        '"429", "5xx"]\n')
    report = tmp_path / "st.txt"
    proc = await asyncio.create_subprocess_exec(
        *cmd, "--config-file", str(config), "run", str(spec), "--url", base, "--max-examples", str(EXAMPLES),
        "--checks", CHECKS, "-H", auth,
        "--phases", "examples,coverage,fuzzing", "--exclude-path-regex", "/events|/metrics|/model/(load|unload)|/speaker/",
        "--workers", "1", "--request-timeout", "60", "--max-response-time", "60", "--seed", "1", "--no-color",
        stdout=report.open("w"), stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "SCHEMATHESIS_HOOKS"})
    rc = await asyncio.wait_for(proc.wait(), 900)
    text = report.read_text()
    assert rc == 0, text[-20000:]
