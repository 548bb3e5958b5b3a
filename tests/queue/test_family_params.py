"""One request shape per model family: the schema refuses bad ACE-Step and MusicGen requests naming
the field, and the daemon refuses them before queueing with the same words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dgx_music.common.client import Client
from dgx_music.common.protocol import RemoteError
from dgx_music.common.schemas import (AceStepParams, MusicGenParams, ParamError, normalise_key, validate_request)
from dgx_music.daemon.jobs.generate import params_of

LYRICS = "[verse]\nneon rain on the window\n[chorus]\nwe run, we run"

#: (family, body, field, words the message must contain)
BAD = [
    ("ace-step", {"prompt": "x", "top_k": 50}, "top_k", "top_k is a MusicGen parameter; ace-step does not take it"),
    ("ace-step", {"prompt": "x", "melody": "1-0"}, "melody", "MusicGen parameter"),
    ("musicgen", {"prompt": "x", "lyrics": "la"}, "lyrics", "lyrics is an ACE-Step parameter; musicgen"),
    ("ace-step", {"prompt": "x", "lyrics": "a" * 4097}, "lyrics", "the limit is 4096"),
    ("ace-step", {"prompt": "x", "bpm": 0}, "bpm", "between 30 and 300"),
    ("ace-step", {"prompt": "x", "key": "H major"}, "key", "24 keys"),
    ("ace-step", {"prompt": "x", "duration": 700}, "duration", "between 10 s and 600 s"),
    ("ace-step", {"prompt": "x", "duration": 5}, "duration", "between 10 s and 600 s"),
    ("ace-step", {"prompt": "x", "time_signature": 5}, "time_signature", "one of 2, 3, 4, 6"),
    ("ace-step", {"prompt": "x", "language": "klingon"}, "language", "must be one of"),
    ("ace-step", {"prompt": "x", "count": 3, "duration": 600}, "count", "at most 1200 s"),
    ("ace-step", {"prompt": "x", "steps": 0}, "steps", "between 1 and 200"),
    ("ace-step", {"prompt": "x", "colour": "blue"}, "colour", "unknown field colour"),
    ("ace-step", {"prompt": ""}, "prompt", "empty"),
    ("musicgen", {"prompt": "x", "duration": 301}, "duration", "between 0.5 s and 300 s"),
]


@pytest.mark.parametrize("family,body,field,words", BAD)
def test_schema_refuses_naming_the_field(family: str, body: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ParamError) as e:
        validate_request(body, family)
    assert e.value.field == field and words in e.value.message


def test_ace_step_request_is_typed_with_variant_defaults() -> None:
    p = validate_request({"prompt": " synthwave, female vocals ", "lyrics": LYRICS, "language": "EN", "bpm": "96",
                          "key": "Am", "time_signature": 4, "duration": 45, "lora": "neon:0.7", "seed": 7},
                         "ace-step")
    assert isinstance(p, AceStepParams)
    assert (p.prompt, p.language, p.bpm, p.key, p.time_signature) == ("synthwave, female vocals", "en", 96,
                                                                      "A minor", 4)
    assert (p.steps, p.guidance, p.shift) == (8, 1.0, 3.0)  # turbo
    assert p.lyrics == LYRICS and (p.lora, p.lora_scale) == ("neon", 0.7)
    assert set(p.wire()) == {"duration", "lyrics", "language", "bpm", "key", "time_signature", "steps",
                             "guidance", "shift", "seed", "lora", "lora_scale"}
    base = validate_request({"prompt": "x", "model": "ace-step-base"}, "ace-step")
    assert base.steps == 50 and base.guidance == 7.0 and base.lyrics == "" and base.key is None  # instrumental
    given = validate_request({"prompt": "x", "steps": 12, "guidance": 3}, "ace-step")
    assert given.steps == 12 and given.guidance == 3.0


def test_musicgen_request_unchanged() -> None:
    p = validate_request({"prompt": "x", "duration": "12", "count": 2.0, "top_k": 100}, "musicgen")
    assert isinstance(p, MusicGenParams) and (p.duration, p.count, p.top_k, p.cfg) == (12.0, 2, 100, 3.0)
    assert set(p.wire()) == {"duration", "temperature", "top_k", "top_p", "cfg", "seed"}
    assert p.with_seed().seed is not None and p.with_seed().duration == 12.0


@pytest.mark.parametrize("text,want", [("A minor", "A minor"), ("Am", "A minor"), ("F# major", "F# major"),
                                       ("Bb major", "Bb major"), ("bb", "Bb major"), ("c#m", "C# minor"),
                                       ("Eb min", "Eb minor"), ("G", "G major")])
def test_key_spellings(text: str, want: str) -> None:
    assert normalise_key(text) == want


@pytest.mark.parametrize("text", ["H major", "E# major", "Cb", "A dorian", "", "A  minor minor"])
def test_bad_keys(text: str) -> None:
    with pytest.raises(ParamError) as e:
        normalise_key(text)
    assert e.value.field == "key"


async def test_daemon_refuses_bad_ace_step_requests_before_queueing(daemon: Any) -> None:
    async with await Client.connect(daemon.server.path) as c:
        for family, body, field, words in BAD:
            body = {**body, "model": "ace-step" if family == "ace-step" else "small"}
            with pytest.raises(RemoteError) as e:
                await c.call("job.submit", body)
            assert e.value.code == "invalid_params" and e.value.data.get("field") == field, body
            assert words in e.value.message, (body, e.value.message)
        with pytest.raises(RemoteError) as e:
            await c.call("job.submit", {"prompt": "x", "model": "ace-step", "melody_audio": b"RIFF"})
        assert e.value.data.get("field") == "melody_audio"
        with pytest.raises(RemoteError) as e:
            await c.call("job.submit", {"prompt": "x", "model": "ace-step", "lora": "nowhere"})
        assert e.value.code == "invalid_params" and e.value.data.get("field") == "lora"
        with pytest.raises(RemoteError) as e:
            await c.call("job.submit", {"prompt": "x", "model": "ace-step", "lora": "/tmp"})
        assert e.value.code == "forbidden" and e.value.data.get("field") == "lora"
        assert (await c.call("job.list", {"all": True}))["jobs"] == []


async def test_ace_step_job_is_queued_with_its_typed_params(daemon: Any) -> None:
    lora = Path(daemon.data_dir) / "loras" / "neon"
    lora.mkdir(parents=True)
    async with await Client.connect(daemon.server.path) as c:
        job = await c.call("job.submit", {"prompt": "synthwave, female vocals", "model": "ace-step",
                                          "lyrics": LYRICS, "language": "en", "bpm": 96, "key": "A minor",
                                          "time_signature": 4, "duration": 20, "lora": "neon:0.5"})
        await c.call("job.cancel", {"id": job["id"]})  # the engine side is not under test here
    assert job["model"] == "ace-step" and isinstance(job["seed"], int)
    stored = job["params"]
    assert stored["family"] == "ace-step" and stored["lyrics"] == LYRICS and stored["key"] == "A minor"
    assert stored["steps"] == 8 and stored["lora"] == str(lora.resolve()) and stored["lora_scale"] == 0.5
    assert "top_k" not in stored and "temperature" not in stored
    params = params_of(await daemon.store.get_job(job["id"]), daemon.scheduler.max_count)
    assert isinstance(params, AceStepParams)
    assert params.wire() == {"duration": 20.0, "lyrics": LYRICS, "language": "en", "bpm": 96, "key": "A minor",
                             "time_signature": 4, "steps": 8, "guidance": 1.0, "shift": 3.0, "seed": job["seed"],
                             "lora": str(lora.resolve()), "lora_scale": 0.5}
