"""Out-of-range and oversized input is the caller's mistake: `invalid_params` naming the field, never `internal`."""

from __future__ import annotations

from typing import Any

import pytest

from dgx_music.common import protocol
from dgx_music.common.client import Client
from dgx_music.common.protocol import RemoteError

BOGUS = [
    ("job.get", {"id": 2**63}, "id"),
    ("job.cancel", {"id": 2**64 - 1}, "id"),  # msgpack carries integers up to 2^64 - 1
    ("job.retry", {"id": 2**63 + 5}, "id"),
    ("job.move", {"id": 2**63, "to": "top"}, "id"),
    ("job.submit", {"prompt": "piano", "model": "x" * 300}, "model"),
    ("job.submit", {"prompt": "piano", "model": "a/" + "b" * 300}, "model"),
    ("job.submit", {"prompt": "piano", "model": "/tmp/" + "d" * 256 + "/m"}, "model"),
    ("job.submit", {"prompt": "piano", "model": "small\x00"}, "model"),
    ("model.load", {"model": "x" * 300}, "model"),
    # `~user` for a user that does not exist: expanding it raised RuntimeError, answered `internal`
    ("job.submit", {"prompt": "piano", "model": "~0"}, "model"),
    ("model.load", {"model": "~0"}, "model"),
    ("model.load", {"model": "~no-such-user-dgx/models/m"}, "model"),
    ("op.repaint", {"source": "1-0", "start": 1, "end": 2, "model": "~0"}, "model"),
    ("op.stems", {"source": "1-0", "model": "~0"}, "model"),
    ("job.submit", {"prompt": "piano", "model": "ace-step", "lora": "~0/lora"}, "lora"),
    # a NUL in the upload's name was accepted, and the job failed after the work (libsndfile)
    ("op.cover", {"source_audio": b"RIFF....", "source_name": "a\x00b.wav", "prompt": "jazz"}, "source_name"),
]


@pytest.mark.parametrize("method,params,field", BOGUS, ids=[f"{m}-{f}-{i}" for i, (m, _, f) in enumerate(BOGUS)])
async def test_bogus_input_is_invalid_params_naming_the_field(client: Client, method: str,
                                                              params: dict[str, Any], field: str) -> None:
    with pytest.raises(RemoteError) as e:
        await client.call(method, params)
    assert e.value.code == protocol.INVALID_PARAMS, e.value
    assert e.value.data.get("field") == field, e.value
    assert (await client.call("status"))["clients"] == 1  # and the connection is fine


@pytest.mark.parametrize("body", [b"\xc1", b"\x91\xc1"], ids=["reserved-byte", "reserved-inside-array"])
async def test_a_malformed_frame_is_refused_with_a_reason(daemon: Any, body: bytes) -> None:
    """msgpack raises these with an empty message: the refusal must still say what was wrong."""
    import asyncio

    r, w = await asyncio.open_unix_connection(str(daemon.server.path))
    try:
        w.write(protocol.HEADER.pack(len(body)) + body)
        msg = await asyncio.wait_for(protocol.read_frame(r), 10)
        assert msg is not None and msg["error"]["code"] == protocol.BAD_FRAME, msg
        text = msg["error"]["message"]
        assert not text.rstrip().endswith(":") and "malformed" in text, text
    finally:
        w.close()
