"""The socket server against hostile and ordinary clients, on a real socket."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import struct
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest

from dgx_music.common import protocol
from dgx_music.common.client import Client, DaemonUnavailable
from dgx_music.common.protocol import RemoteError
from dgx_music.daemon.server import PeerPolicy


async def raw(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_unix_connection(str(path))


async def answer(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    return await protocol.read_frame(reader, timeout=5)


async def test_status_and_hello(client: Client, daemon: Any) -> None:
    st = await client.call("status")
    assert st["pid"] == os.getpid()
    assert st["protocol"] == protocol.PROTOCOL_VERSION
    assert st["clients"] == 1
    assert st["data_dir"] == str(daemon.data_dir)
    hello = await client.call("hello", {"client": "test"})
    assert {"hello", "status", "subscribe", "unsubscribe"} <= set(hello["methods"])
    assert hello["protocol"] == protocol.PROTOCOL_VERSION


async def test_socket_is_owner_only(daemon: Any) -> None:
    mode = stat.S_IMODE(os.stat(daemon.server.path).st_mode)
    assert mode == 0o600


async def test_unknown_method_and_bad_params(client: Client) -> None:
    with pytest.raises(RemoteError) as e:
        await client.call("no.such.thing")
    assert e.value.code == protocol.UNKNOWN_METHOD
    with pytest.raises(RemoteError) as e:
        await client.call("subscribe", {"topics": 5})
    assert e.value.code == protocol.INVALID_PARAMS and "topics" in e.value.message
    with pytest.raises(RemoteError) as e:
        await client.call("subscribe", {"topics": ["nope"]})
    assert e.value.code == protocol.INVALID_PARAMS
    # The connection is still fine afterwards.
    assert (await client.call("status"))["clients"] == 1


async def test_non_map_and_malformed_requests(daemon: Any, client: Client) -> None:
    r, w = await raw(daemon.server.path)
    body = msgpack.packb([1, 2, 3])
    w.write(struct.pack(">I", len(body)) + body)
    msg = await answer(r)
    assert msg and msg["error"]["code"] == protocol.BAD_REQUEST
    w.close()

    r, w = await raw(daemon.server.path)
    w.write(protocol.pack({"id": 7, "method": 12}))
    msg = await answer(r)
    assert msg == {"id": 7, "error": {"code": protocol.BAD_REQUEST, "message": msg["error"]["message"]}}
    w.write(protocol.pack({"id": 8, "method": "status", "params": "x"}))
    assert (await answer(r))["error"]["code"] == protocol.BAD_REQUEST
    w.write(protocol.pack({"id": 9, "method": "status"}))  # params may be omitted
    assert "result" in (await answer(r))
    w.close()
    assert (await client.call("status"))["pid"] == os.getpid()


async def test_garbage_bytes_get_an_error_and_a_hangup(daemon: Any, client: Client) -> None:
    r, w = await raw(daemon.server.path)
    w.write(b"\x00\x00\x00\x05\xc1\xc1\xc1\xc1\xc1")  # 0xc1 is never valid msgpack
    msg = await answer(r)
    assert msg and msg["error"]["code"] == protocol.BAD_FRAME
    assert await r.read() == b""  # closed
    assert (await client.call("status"))["pid"] == os.getpid()


async def test_oversized_frame_is_refused_from_the_header(daemon_factory: Any) -> None:
    d = await daemon_factory(daemon__max_frame=1024)
    r, w = await raw(d.server.path)
    w.write(struct.pack(">I", 10**9))  # announce a gigabyte, send nothing more
    msg = await answer(r)
    assert msg and msg["error"]["code"] == protocol.FRAME_TOO_LARGE
    assert "1024" in msg["error"]["message"]
    assert await r.read() == b""


async def test_truncated_frame_times_out_without_hurting_others(daemon_factory: Any) -> None:
    d = await daemon_factory(daemon__read_timeout=0.3)
    r, w = await raw(d.server.path)
    w.write(struct.pack(">I", 100) + b"\x81")  # promise 100 bytes, send 1
    async with await Client.connect(d.server.path) as other:
        assert (await other.call("status"))["clients"] == 2
    msg = await answer(r)
    assert msg and msg["error"]["code"] == protocol.BAD_FRAME
    # A client that hangs up mid-frame does not take the daemon down either.
    r2, w2 = await raw(d.server.path)
    w2.write(struct.pack(">I", 100) + b"\x81\xa1")
    w2.close()
    async with await Client.connect(d.server.path) as other:
        assert (await other.call("status"))["pid"] == os.getpid()


async def test_many_requests_in_flight_on_one_connection(client: Client) -> None:
    results = await asyncio.gather(*(client.call("status") for _ in range(200)))
    assert len(results) == 200 and all(r["pid"] == os.getpid() for r in results)


@pytest.mark.parametrize("n", [2, 50])
async def test_concurrent_clients(daemon: Any, n: int) -> None:
    clients = [await Client.connect(daemon.server.path) for _ in range(n)]
    try:
        counts = await asyncio.gather(*(c.call("status") for c in clients))
        assert all(c["clients"] == n for c in counts)
        again = await asyncio.gather(*(c.call("hello") for c in clients for _ in range(5)))
        assert len(again) == 5 * n
    finally:
        for c in clients:
            await c.close()


async def test_subscribers_get_events_by_topic(daemon: Any) -> None:
    async with await Client.connect(daemon.server.path) as jobs, \
            await Client.connect(daemon.server.path) as tracks:
        assert await jobs.subscribe("job") == ["job"]
        await tracks.subscribe("track")
        daemon.publish("job.progress", {"id": 1, "step": 3})
        daemon.publish("track.added", {"id": "1-0"})
        ev = await asyncio.wait_for(jobs.events().__anext__(), 5)
        assert (ev.name, ev.data) == ("job.progress", {"id": 1, "step": 3})
        ev = await asyncio.wait_for(tracks.events().__anext__(), 5)
        assert ev.name == "track.added"
        await jobs.call("unsubscribe")
        daemon.publish("job.progress", {"id": 1, "step": 4})
        await jobs.call("status")  # a round trip: any event would have arrived before its answer
        assert jobs._events.empty()


async def test_slow_subscriber_is_dropped_not_waited_for(daemon_factory: Any) -> None:
    d = await daemon_factory(daemon__subscriber_buffer=64)  # 64 KiB
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, str(d.server.path))
    await loop.sock_sendall(sock, protocol.pack(protocol.request(1, "subscribe", {"topics": ["*"]})))
    frames = _FrameReader(sock)
    assert (await frames.next())["result"] == {"topics": ["*"]}  # subscribed for sure
    payload = {"blob": "x" * 4000}
    for i in range(2000):  # ~8 MB of events that nobody reads
        d.publish("job.progress", {"i": i, **payload})
        if i % 100 == 0:
            await asyncio.sleep(0)
    # Now read what the daemon managed to queue: some events, then why it gave up, then the end.
    names = []
    while (msg := await asyncio.wait_for(frames.next(), 10)) is not None:
        names.append(msg.get("event"))
    assert names[-1] == "daemon.dropped" and set(names[:-1]) == {"job.progress"}
    assert len(names) < 2000
    assert d.events.subscriber_count == 0
    async with await Client.connect(d.server.path) as c:
        assert (await c.call("status"))["clients"] == 1
    sock.close()


class _FrameReader:
    """Frames from a raw non-blocking socket, read only when asked (so the socket can fall behind)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    async def _fill(self, n: int) -> bool:
        while len(self.buf) < n:
            chunk = await asyncio.get_running_loop().sock_recv(self.sock, 65536)
            if not chunk:
                return False
            self.buf += chunk
        return True

    async def next(self) -> dict[str, Any] | None:
        if not await self._fill(4):
            return None
        (n,) = struct.unpack(">I", self.buf[:4])
        assert await self._fill(4 + n), "connection closed inside a frame"
        body, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
        return msgpack.unpackb(body, raw=False)


async def test_client_sees_daemon_going_away(daemon_factory: Any) -> None:
    d = await daemon_factory()
    c = await Client.connect(d.server.path)
    await c.subscribe("*")
    await d.close()
    with pytest.raises(DaemonUnavailable):
        async for ev in c.events():
            assert ev.name == "daemon.shutdown"
    with pytest.raises(DaemonUnavailable):
        await c.call("status")
    await c.close()
    assert not d.server.path.exists()  # socket file removed on shutdown


async def test_connect_without_daemon_is_a_clear_error(short_tmp: Path) -> None:
    with pytest.raises(DaemonUnavailable, match="dgx-music daemon"):
        await Client.connect(short_tmp / "none.sock")


def test_peer_policy() -> None:
    me = os.getuid()
    p = PeerPolicy(uid=me)
    assert p.allows(me, 12345) and p.allows(0, 0)
    assert not p.allows(me + 4242, 4242)
    g = PeerPolicy(uid=me, group_gid=4242, group_members=frozenset())
    assert g.allows(me + 4242, 4242)  # primary group matches
    assert not g.allows(me + 4243, 4243)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to connect as another uid")
async def test_other_uid_is_refused_by_the_daemon_itself(daemon_factory: Any) -> None:
    # Open the socket's mode so the kernel lets the stranger connect: the uid check must still
    # refuse, telling the peer why before it hangs up.
    d = await daemon_factory(daemon__socket_mode="0666")
    os.chmod(d.server.path.parent, 0o755)
    code = (
        "import os,socket,struct,msgpack\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "s=socket.socket(socket.AF_UNIX); s.connect(%r)\n"
        "f=s.makefile('rb'); n=struct.unpack('>I',f.read(4))[0]; m=msgpack.unpackb(f.read(n))\n"
        "print(m['error']['code'])\n" % str(d.server.path)
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert out.decode().strip() == protocol.FORBIDDEN, err.decode()


async def test_typed_params_name_the_field(client: Client) -> None:
    for method, params, field in (("job.get", {"id": "seven"}, "id"), ("job.list", {"all": "yes"}, "all"),
                                  ("track.list", {"favorite": 1}, "favorite"), ("track.list", {"limit": 0}, "limit"),
                                  ("job.move", {"id": 1, "to": "sideways"}, "to"), ("track.get", {}, "id")):
        with pytest.raises(RemoteError) as e:
            await client.call(method, params)
        assert e.value.code == protocol.INVALID_PARAMS and e.value.data["field"] == field, (method, e.value)


async def test_connections_beyond_the_cap_are_told_and_closed(daemon_factory: Any) -> None:
    d = await daemon_factory(daemon__max_clients=3)
    held = [await Client.connect(d.server.path) for _ in range(3)]
    try:
        assert (await held[0].call("status"))["clients"] == 3
        r, w = await raw(d.server.path)
        msg = await answer(r)
        assert msg and msg["error"]["code"] == protocol.TOO_MANY_CLIENTS
        assert await r.read() == b""
        await held[2].close()
        await asyncio.sleep(0.05)
        async with await Client.connect(d.server.path) as c:  # room again
            assert (await c.call("status"))["clients"] == 3
    finally:
        for c in held:
            await c.close()
