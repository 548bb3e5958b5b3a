"""Settings layering and the frame codec, without a daemon."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import msgpack
import pytest

from dgx_music.common import protocol
from dgx_music.common.config import ConfigError, load_settings, render_default_toml


def test_layers_default_file_env_flag(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[engine]\nmodel = "medium"\nkeep_alive = 30\n[daemon]\nqueue_limit = 10\n')
    s = load_settings(cfg, env={})
    assert (s["engine.model"], s.source("engine.model")) == ("medium", f"file {cfg}")
    assert s["engine.keep_alive"] == 30.0 and s["daemon.queue_limit"] == 10
    assert s.source("engine.device") == "default"
    s = load_settings(cfg, env={"DGX_MUSIC_MODEL": "large"})
    assert (s["engine.model"], s.source("engine.model")) == ("large", "env DGX_MUSIC_MODEL")
    s = load_settings(cfg, {"engine.model": "random:small"}, env={"DGX_MUSIC_MODEL": "large"})
    assert (s["engine.model"], s.source("engine.model")) == ("random:small", "flag")
    s = load_settings(cfg, env={"DGX_MUSIC_SOCKET": "/x/y.sock", "DGX_MUSIC_OFFLINE": "yes"})
    assert str(s.socket) == "/x/y.sock" and s["engine.offline"] is True


@pytest.mark.parametrize("body, needle", [
    ("[engine]\nkeep_alive = 'soon'\n", "engine.keep_alive"),
    ("[engine]\nmodle = 'small'\n", "engine.modle"),
    ("[engine]\nbackend = 'onnx'\n", "engine.backend"),
    ("model = 'small'\n", "model"),
    ("[engine\n", "cannot read config"),
])
def test_config_errors_name_the_key(tmp_path: Path, body: str, needle: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(body)
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_settings(cfg, env={})


def test_env_type_errors_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DGX_MUSIC_QUEUE_LIMIT"):
        load_settings(None, env={"DGX_MUSIC_QUEUE_LIMIT": "many", "DGX_MUSIC_CONFIG": ""})


def test_named_config_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml", env={})


def test_rendered_default_config_loads(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(render_default_toml().replace("# model = ", "model = "))
    assert load_settings(cfg, env={})["engine.model"] == "small"


def feed(data: bytes) -> asyncio.StreamReader:
    r = asyncio.StreamReader()
    r.feed_data(data)
    r.feed_eof()
    return r


async def test_round_trip_keeps_types() -> None:
    msg = {"id": 3, "method": "x", "params": {"b": b"\x00\xff", "f": 1.5, "u": "ünï", "l": [1, None, True]}}
    frame = protocol.pack(msg)
    assert struct.unpack(">I", frame[:4])[0] == len(frame) - 4
    assert await protocol.read_frame(feed(frame + frame)) == msg
    r = feed(frame)
    assert await protocol.read_frame(r) == msg and await protocol.read_frame(r) is None


@pytest.mark.parametrize("data, code", [
    (struct.pack(">I", 100) + b"\x80", protocol.BAD_FRAME),          # truncated body
    (b"\x00\x00", protocol.BAD_FRAME),                                # truncated header
    (struct.pack(">I", 1) + b"\xc1", protocol.BAD_FRAME),            # not msgpack
    (struct.pack(">I", 3) + msgpack.packb("hi"), protocol.BAD_REQUEST),  # not a map
    (struct.pack(">I", 2**31), protocol.FRAME_TOO_LARGE),            # over the cap, body never read
])
async def test_bad_frames(data: bytes, code: str) -> None:
    with pytest.raises(protocol.ProtocolError) as e:
        await protocol.read_frame(feed(data), max_frame=1 << 20)
    assert e.value.code == code
