"""The HTTP surface's defences, each attack from a browser page or a local user reproduced and refused:
cross-site POSTs (text/plain, foreign Origin), DNS rebinding (a foreign Host), no token, the cookie
exchange, WebSocket and SSE from another origin, idle connections that would starve the Unix socket,
malformed Range headers."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dgx_music.common.client import Client
from tests.conftest import start_http

from .conftest import bearer
from .test_http import import_track

pytestmark = pytest.mark.slow

EVIL = "http://evil.example"


async def queued_jobs(d: Any) -> list[Any]:
    async with await Client.connect(d.server.path) as c:
        return (await c.call("job.list", {"all": True}))["jobs"]


async def test_cross_site_posts_are_refused_and_change_nothing(http_daemon: Any) -> None:
    """A page the user visits POSTs as an HTML form or a no-cors fetch: text/plain, Origin of the page."""
    api = http_daemon.http
    url = api.url + "/api/v1"
    t = await import_track(http_daemon, "960-0", "to be trashed")
    async with aiohttp.ClientSession(headers=bearer(api)) as s:
        async with s.delete(f"{url}/tracks/960-0") as r:
            assert r.status == 200
    trashed = list((http_daemon.data_dir / "trash").rglob("*.wav"))
    assert trashed, t
    form = {"Content-Type": "text/plain", "Origin": EVIL}
    body = '{"prompt":"x","duration":1}'
    async with aiohttp.ClientSession() as s:
        # No credential at all (what the issue reproduced): 403 for the Origin, before anything runs.
        for path in ("/jobs", "/library/empty-trash"):
            async with s.post(url + path, data=body, headers=form) as r:
                assert r.status == 403, (path, await r.text())
                assert (await r.json())["error"]["field"] == "Origin"
        # The cookie a browser would attach (SameSite=Strict keeps it off cross-site requests, but a
        # same-site attacker page or an old browser): a foreign Origin is still refused.
        cookies = {"dgx_music_token": api.plan.token}
        for path in ("/jobs", "/library/empty-trash"):
            async with s.post(url + path, data=body, headers=form, cookies=cookies) as r:
                assert r.status == 403, path
            # No Origin (an old browser, a form from a file:// page): text/plain is not JSON, 415.
            async with s.post(url + path, data=body, headers={"Content-Type": "text/plain"}, cookies=cookies) as r:
                assert r.status == 415 and (await r.json())["error"]["code"] == "unsupported_media_type", path
        # Without the token: 401 on loopback too.
        async with s.post(url + "/jobs", json={"prompt": "x", "duration": 1}) as r:
            assert r.status == 401
        async with s.post(url + "/library/empty-trash") as r:
            assert r.status == 401
    assert await queued_jobs(http_daemon) == []
    assert list((http_daemon.data_dir / "trash").rglob("*.wav")) == trashed  # nothing deleted for good
    # The page's own origin with JSON and the cookie is served.
    same = {"Origin": api.url, "Content-Type": "application/json"}
    async with aiohttp.ClientSession(cookies={"dgx_music_token": api.plan.token}) as s:
        async with s.post(url + "/library/empty-trash", headers=same, data="{}") as r:
            assert r.status == 200 and (await r.json())["removed"] == 1
        async with s.get(url + "/status") as r:
            assert r.status == 200
            assert "Access-Control-Allow-Origin" not in r.headers


async def test_dns_rebinding_host_is_refused(daemon_factory: Any, short_tmp: Path) -> None:
    d = await daemon_factory(http__listen="127.0.0.1:0", http__allowed_hosts="music.lan, studio.example")
    api = await start_http(d)
    await import_track(d, "970-0", "private")
    async with aiohttp.ClientSession(headers=bearer(api)) as s:
        for host in (f"rebind.evil.example:{api.port}", "rebind.evil.example", f"localhost.evil.example:{api.port}",
                     "10.0.0.1:80"):
            for path in ("/api/v1/tracks", "/api/v1/tracks/970-0/audio", "/"):
                async with s.get(api.url + path, headers={"Host": host}) as r:
                    assert r.status == 403, (host, path)
                    got = await r.json()
                    assert got["error"]["field"] == "Host" and "private" not in str(got)
        for host in (f"localhost:{api.port}", f"127.0.0.1:{api.port}", "LOCALHOST", f"music.lan:{api.port}",
                     "studio.example"):
            async with s.get(api.url + "/api/v1/tracks", headers={"Host": host}) as r:
                assert r.status == 200, host


async def test_cookie_exchange_moves_the_token_out_of_the_url(http_daemon: Any) -> None:
    api = http_daemon.http
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:  # unsafe: an IP host
        async with s.get(api.url + "/?token=" + api.plan.token + "&view=queue", allow_redirects=False) as r:
            assert r.status == 303
            assert r.headers["Location"] == "/?view=queue"
            cookie = r.headers["Set-Cookie"]
            assert cookie.startswith(f"dgx_music_token={api.plan.token};")
            attrs = {a.strip().split("=")[0].lower(): a.strip() for a in cookie.split(";")[1:]}
            assert "httponly" in attrs and attrs["samesite"].lower() == "samesite=strict"
            assert attrs["path"] == "Path=/"
        # The session now holds the cookie: the page and the API answer without a header.
        async with s.get(api.url + "/") as r:
            assert r.status == 200 and r.content_type == "text/html"
        async with s.get(api.url + "/api/v1/status") as r:
            assert r.status == 200
    async with aiohttp.ClientSession() as s:
        async with s.get(api.url + "/?token=wrong-token-xxxxxxxxxxxxxxxx", allow_redirects=False) as r:
            assert r.status == 401 and "Set-Cookie" not in r.headers
        # An API route never trades a token in its query for a cookie.
        async with s.get(api.url + "/api/v1/status?token=" + api.plan.token, allow_redirects=False) as r:
            assert r.status == 401 and "Set-Cookie" not in r.headers


async def test_event_streams_refuse_a_foreign_origin(http_daemon: Any) -> None:
    api = http_daemon.http
    url = api.url + "/api/v1"
    async with aiohttp.ClientSession(cookies={"dgx_music_token": api.plan.token}) as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            async with s.ws_connect(url + "/events/ws", origin=EVIL):
                pass
        assert e.value.status == 403
        async with s.get(url + "/events", headers={"Origin": EVIL}) as r:
            assert r.status == 403
        async with s.get(url + "/events", headers={"Origin": "null"}) as r:
            assert r.status == 403
        async with s.ws_connect(url + "/events/ws", origin=api.url) as ws:  # the page's own origin
            assert not ws.closed
        async with s.get(url + "/events", headers={"Origin": api.url}) as r:
            assert r.status == 200 and (await r.content.readline()).startswith(b": ")


async def test_malformed_range_is_416_or_the_whole_file_never_a_crash(http_daemon: Any,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    t = await import_track(http_daemon, "980-0", "ranges")
    size = (http_daemon.data_dir / t["path"]).stat().st_size
    url = http_daemon.http.url + "/api/v1/tracks/980-0/audio"
    caplog.set_level(logging.DEBUG)
    bad = ["bytes=abc", "bytes=--1", "bytes=5-2", "bytes=0-1,2-3", "bytes=-0", "bytes=-", "bytes=1-2-3",
           "bytes=99999999999999999999999999-", "bytes=0-99999999999999999999999999", "bytes=\u00e9-1",
           "bytes= 0 - 1", "bytes=0x10-", "bytes=-99999999999999999999", "bytes=,", "bytes=0-0,-1",
           f"bytes={size}-", f"bytes={size}-{size + 5}", "items=0-1", "Bytes=0-1 ", "bytes=+1-2", "bytes=1_0-",
           "bytes=\u0661-2"]
    async with aiohttp.ClientSession(headers=bearer(http_daemon.http)) as s:
        for rng in bad:
            async with s.get(url, headers={"Range": rng}) as r:
                body = await r.read()
                assert r.status in (200, 206, 416), (rng, r.status)
                if r.status == 416:
                    assert r.headers["Content-Range"] == f"bytes */{size}", rng
                elif r.status == 206:  # what it says it sent is what came (a range past the end: to the end)
                    first, last = map(int, r.headers["Content-Range"].split(" ")[1].split("/")[0].split("-"))
                    assert len(body) == last - first + 1 and r.headers["Content-Range"].endswith(f"/{size}"), rng
                else:  # a unit we do not know is ignored (RFC 9110 14.2): the whole file
                    assert len(body) == size, rng
        async with s.get(url, headers={"Range": "bytes=0-9"}) as r:
            assert r.status == 206 and len(await r.read()) == 10
    crashes = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert not crashes, crashes


async def test_an_undocumented_method_is_405_on_every_route(http_daemon: Any) -> None:
    from dgx_music.daemon.http.routes import ROUTES

    paths = {r.path.replace("{id}", "1-0" if "/tracks/" in r.path else "1").replace("{name}", "mysound")
             for r in ROUTES}
    async with aiohttp.ClientSession(headers=bearer(http_daemon.http)) as s:
        for path in sorted(paths):
            for method in ("TRACE", "OPTIONS", "PUT"):
                async with s.request(method, http_daemon.http.url + path) as r:
                    assert r.status == 405, (method, path, r.status)
                    assert (await r.json())["error"]["code"] == "method_not_allowed"
                    assert "Access-Control-Allow-Origin" not in r.headers


async def test_connections_past_the_cap_get_503_and_slow_headers_are_cut(daemon_factory: Any) -> None:
    d = await daemon_factory(http__listen="127.0.0.1:0", http__max_connections=5, http__header_timeout=1.0)
    api = await start_http(d)
    held = []
    try:
        for _ in range(5):
            held.append(await asyncio.open_connection("127.0.0.1", api.port))
        held[0][1].write(b"GET /api/v1/status HTTP/1.1\r\nHost: localhost\r\n")  # half a header, then nothing
        reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 503") and b"http.max_connections" in answer
        # Idle and half-header connections are closed after http.header_timeout (1 s here).
        for r, _w in held:
            assert await asyncio.wait_for(r.read(), 10) == b""
        deadline = time.monotonic() + 10
        while len(api.site.guard.server.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        async with aiohttp.ClientSession(headers=bearer(api)) as s:
            async with s.get(api.url + "/api/v1/status") as r:
                assert r.status == 200
    finally:
        for _r, w in held:
            w.close()


def _limit_fds() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


def test_idle_http_connections_never_lock_out_the_socket(short_tmp: Path) -> None:
    """300 idle TCP connections against a daemon with 256 descriptors: the Unix socket still answers."""
    sock = short_tmp / "d.sock"
    log = short_tmp / "daemon.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DGX_MUSIC_")}
    # No cap from the count: only the descriptor reserve can save the socket.
    env.update(XDG_CONFIG_HOME=str(short_tmp / "cfg"), DGX_MUSIC_MAX_CONNECTIONS="100000",
               PYTHONUNBUFFERED="1")
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dgx_music", "daemon", "--socket", str(sock), "--data-dir",
                                 str(short_tmp / "data"), "--http", "127.0.0.1:0"], stdout=out,
                                stderr=subprocess.STDOUT, env=env, preexec_fn=_limit_fds)
    conns: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 60
        port = None
        while port is None:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            m = re.search(r"HTTP API on http://127\.0\.0\.1:(\d+)", log.read_text())
            port = int(m.group(1)) if m else None
            time.sleep(0.05)
        for _ in range(300):
            c = socket.socket()
            c.settimeout(5)
            try:
                c.connect(("127.0.0.1", port))
            except OSError:
                c.close()
                continue
            conns.append(c)

        async def status() -> dict[str, Any]:
            async with await Client.connect(sock, timeout=5) as cl:
                return await cl.call("status", timeout=5)

        for _ in range(3):  # more than once: a refusal must not be a lucky gap
            assert asyncio.run(status())["pid"] == proc.pid
        assert proc.poll() is None
        assert "out of system resource" not in log.read_text()
    finally:
        for c in conns:
            c.close()
        proc.terminate()
        proc.wait(20)
