"""The listening room in a real headless Chromium against a real daemon with the tiny model.

One daemon and one browser serve the whole module; the track the tests look at is made once by
the daemon (fixture `made`). Covers: the page opens and lists the track, search finds it (and a
word not in it finds nothing), it plays (the audio element's clock runs, the playhead moves,
`dgx:playing` is dispatched for speaker.js), B switches variation at the same position, rating,
favourite, tag and rename reach the daemon, compose submits a job that shows in the live queue
with its progress and is cancelled from there, a bad field shows the daemon's message naming it,
and screenshots at desktop and phone width.
"""

from __future__ import annotations

import asyncio
import struct
import time
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import pytest_asyncio

from dgx_music.common.client import Client

from .conftest import base_url, browser_missing, page_url

pytestmark = [
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or ""),
]

WORD = "zanzibar"  # in the made track's prompt only


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def submitted(room_daemon: Any) -> dict[str, Any]:
    """Two variations of one job, submitted before the browser starts (the two overlap)."""
    return await api(room_daemon, "job.submit", {"prompt": f"{WORD} marimba loop", "duration": 2.0, "count": 2,
                                                 "seed": 11})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def made(room_daemon: Any, submitted: dict[str, Any]) -> dict[str, Any]:
    """The submitted job once the daemon has made its tracks (job map with track_ids)."""
    deadline = time.monotonic() + 240
    while (job := await api(room_daemon, "job.get", {"id": submitted["id"]}))["state"] != "done":
        assert job["state"] in ("queued", "running", "processing") and time.monotonic() < deadline, job
        await asyncio.sleep(0.2)
    assert len(job["track_ids"]) == 2
    return {**job, "track_ids": sorted(job["track_ids"])}


@pytest_asyncio.fixture(loop_scope="module")
async def page(submitted: Any, room_daemon: Any, browser: Any) -> AsyncIterator[Any]:
    """A fresh tab on the page, once its scripts have wired everything; fails on a script error."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    tab = await context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    await tab.goto(page_url(room_daemon))
    await tab.wait_for_selector("html[data-ready]", timeout=20000)
    yield tab
    await context.close()
    assert not errors, errors


async def until(page: Any, expr: str, timeout: float = 5000) -> None:
    """Wait until the JavaScript expression `expr` is true in the page (polled by the browser).
    Passed as a function: the page's CSP forbids evaluating strings, and the test keeps that CSP."""
    await page.wait_for_function(f"() => ({expr})", timeout=timeout)


async def api(daemon: Any, method: str, params: dict[str, Any]) -> Any:
    async with await Client.connect(daemon.server.path) as c:
        return await c.call(method, params)


async def test_lists_finds_and_plays_a_track(page: Any, made: dict[str, Any], tmp_path: Path) -> None:
    a, b = made["track_ids"]
    rows = page.locator("#tracks li")
    await page.locator(f'#tracks li[data-id="{a}"]').wait_for(timeout=10000)

    # The same full-text search as the API: the word finds the job's two tracks, another word none.
    await page.fill("#search", "nothingmatchesthis")
    await until(page, "document.querySelectorAll('#tracks li').length === 0")
    assert "0 tracks" in await page.inner_text("#lib-count")
    await page.fill("#search", WORD)
    await until(page, "document.querySelectorAll('#tracks li').length === 2")
    assert sorted(await rows.evaluate_all("els => els.map(e => e.dataset.id)")) == [a, b]
    row = page.locator(f'#tracks li[data-id="{a}"]')
    assert "0:02" in await row.inner_text()

    # Open it: the waveform is drawn from the daemon's peaks (pixels that are not background).
    await page.evaluate("window.played = []; addEventListener('dgx:playing', e => played.push(e.detail.trackId))")
    await row.click()
    await until(page, f"document.querySelector('#title').value !== '' && "
                                 f"document.querySelector('#meta').textContent.startsWith('{a}')")
    assert WORD in await page.inner_text("#prompt")
    assert "seed" in await page.inner_text("#params")
    await page.screenshot(path=str(tmp_path / "room-1280x800.png"))
    drawn = await page.evaluate("""() => {
        const c = document.querySelector('#wave'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n / (c.width * c.height); }""")
    assert drawn > 0.05, f"waveform covers {drawn:.1%} of the canvas"

    # Play: the media clock runs, the page says so, the playhead is drawn past the start.
    await page.click("#play")
    await until(page, "document.querySelector('#audio').currentTime > 0.3", timeout=15000)
    assert await page.evaluate("window.played") == [a]
    assert await page.evaluate("window.dgxPlayer.current().trackId") == a
    assert await page.evaluate("document.querySelector('#wave') && document.querySelector('#play').textContent") \
        == "❚❚"

    # B: the other variation, at the same position (and still playing).
    await page.evaluate("document.querySelector('#audio').pause()")
    pos = await page.evaluate("document.querySelector('#audio').currentTime")
    await page.locator("body").press("b")
    await until(page, f"window.dgxPlayer.current().trackId === '{b}' && document.querySelector('#audio').readyState > 0",
                timeout=10000)
    await until(page, f"Math.abs(document.querySelector('#audio').currentTime - {pos}) < 0.05")
    assert (await page.evaluate("document.querySelector('#audio').src")).endswith(f"/tracks/{b}/audio")
    assert (await page.inner_text("#meta")).startswith(b)

    # Click on the waveform seeks: three quarters of the way into a 2 s track.
    box = await page.locator("#wave").bounding_box()
    assert box is not None
    await page.mouse.click(box["x"] + box["width"] * 0.75, box["y"] + box["height"] / 2)
    await until(page, "Math.abs(document.querySelector('#audio').currentTime - 1.5) < 0.3")

    # Downloads: the library WAV, and FLAC made by the daemon's export route.
    for link, magic, suffix in (("#dl-wav", b"RIFF", ".wav"), ("#dl-flac", b"fLaC", ".flac")):
        async with page.expect_download() as info:
            await page.click(link)
        download = await info.value
        saved = tmp_path / f"download{suffix}"
        await download.save_as(saved)
        assert saved.read_bytes()[:4] == magic and download.suggested_filename.endswith(suffix)


async def test_the_library_says_when_the_database_is_away(page: Any, room_daemon: Any,
                                                          made: dict[str, Any]) -> None:
    """While the daemon's database is away (issue 21) the search it answered before comes back from
    its cache: the page lists the same tracks, says so beside the count, and the audio still plays
    (fetched by id from storage, the row from the cache)."""
    from tests.outage import AwayStore

    a, b = made["track_ids"]
    room_daemon.library_cache.enabled = True  # on for a database that can go away, as AwayStore's will
    await page.fill("#search", "nothingmatchesthis")
    await until(page, "document.querySelectorAll('#tracks li').length === 0")
    await page.fill("#search", WORD)  # the search the daemon answers, and so remembers
    await until(page, "document.querySelectorAll('#tracks li').length === 2")
    real = room_daemon.store
    room_daemon.store = AwayStore(real)
    room_daemon.store.away = True
    try:
        await page.fill("#search", "nothingmatchesthis")  # asked before too: stale, and no track
        await until(page, "document.querySelector('#lib-count').textContent.includes('database away')")
        await until(page, "document.querySelectorAll('#tracks li').length === 0")
        await page.fill("#search", WORD)
        await until(page, "document.querySelectorAll('#tracks li').length === 2")
        ids = await page.locator("#tracks li").evaluate_all("els => els.map(e => e.dataset.id)")
        assert sorted(ids) == [a, b]
        assert "showing what this host last saw at" in await page.inner_text("#lib-count")
        got = await page.evaluate(f"""async () => {{ const r = await fetch('/api/v1/tracks/{a}/audio');
            return [r.status, r.headers.get('X-Dgx-Stale-Since'), (await r.arrayBuffer()).byteLength]; }}""")
        assert got[0] == 200 and got[1] and got[2] > 1000, got
    finally:
        room_daemon.store = real
    await page.fill("#search", "nothingmatchesthis")
    await until(page, "document.querySelectorAll('#tracks li').length === 0")
    await page.fill("#search", WORD)
    await until(page, "!document.querySelector('#lib-count').textContent.includes('database away')")


async def test_rate_favourite_tag_rename(page: Any, room_daemon: Any, made: dict[str, Any]) -> None:
    a = made["track_ids"][0]
    await page.goto(base_url(room_daemon) + f"#track={a}")
    await until(page, f"document.querySelector('#meta').textContent.startsWith('{a}')", timeout=10000)
    await page.click('#stars button[data-rating="4"]')
    await page.click("#fav")
    await page.fill("#tag-input", "keeper")
    await page.press("#tag-input", "Enter")
    await page.fill("#title", "Marimba sketch")
    await page.press("#title", "Enter")
    await until(page, "document.querySelector('#tags').textContent.includes('keeper')")

    async def edited() -> dict[str, Any]:
        for _ in range(100):
            t = await api(room_daemon, "track.get", {"id": a})
            if t["title"] == "Marimba sketch" and t["rating"] == 4 and t["favorite"] and "keeper" in t["tags"]:
                return t
            await asyncio.sleep(0.1)
        return t
    t = await edited()
    assert (t["title"], t["rating"], t["favorite"], t["tags"]) == ("Marimba sketch", 4, True, ["keeper"])
    # The list shows it too, and the favourite and tag filters find it.
    row = page.locator(f'#tracks li[data-id="{a}"]')
    await until(page, f"document.querySelector('#tracks li[data-id=\"{a}\"]').textContent"
                                 ".includes('Marimba sketch')")
    assert "★★★★" in await row.inner_text()
    await page.check("#fav-only")
    await until(page, "document.querySelectorAll('#tracks li').length === 1")
    await page.uncheck("#fav-only")
    await page.fill("#tag-filter", "keeper")
    await until(page, f"[...document.querySelectorAll('#tracks li')].map(e => e.dataset.id).join() === '{a}'")
    # Undo, so the other tests see the track as made.
    await api(room_daemon, "track.update", {"id": a, "title": f"{WORD} marimba loop", "rating": 0,
                                            "favorite": False, "tags_remove": ["keeper"]})


async def test_compose_queue_cancel(page: Any, room_daemon: Any, made: dict[str, Any], tmp_path: Path) -> None:
    # The form's fields come from the daemon's schemas: MusicGen's here (the daemon's model).
    assert await page.locator("#f-prompt").count() == 1
    assert await page.locator("#f-top_k").count() == 1 and await page.locator("#f-lyrics").count() == 0
    assert await page.get_attribute("#f-duration", "max") == "300"

    # An ACE-Step model: that family's fields (lyrics, no top_k), its limits; back to the daemon's own.
    await page.select_option("#model", "ace-step")
    await page.locator("#f-lyrics").wait_for()
    assert await page.locator("#f-top_k").count() == 0
    assert await page.get_attribute("#f-duration", "max") == "600"
    own = await page.evaluate("[...document.querySelector('#model').options].find(o => o.dataset.configured).value")
    assert own == str(room_daemon.settings["engine.model"])
    await page.select_option("#model", own)
    await page.locator("#f-top_k").wait_for(state="attached")  # under "More parameters"
    # Separation models (stems of a track) make no music from a prompt: not offered here.
    offered = await page.evaluate("[...document.querySelector('#model').options].map(o => o.value)")
    assert "ace-step" in offered and "htdemucs" not in offered, offered

    # A bad value is the daemon's to judge; its message names the field, shown by the field.
    await page.fill("#f-prompt", "web composed drone")
    await page.fill("#f-duration", "9999")
    await page.click("#submit")
    err = page.locator('.field[data-field="duration"] .field-error')
    await err.wait_for(timeout=10000)
    assert "duration" in (await page.inner_text("#compose-error"))
    jobs = await api(room_daemon, "job.list", {"all": True})
    assert all(j["prompt"] != "web composed drone" for j in jobs["jobs"]), "a refused job was queued"

    # A good one is queued and shows in the queue live, with its progress; cancel it from there.
    await page.fill("#f-duration", "30")
    await page.click("#submit")
    await until(page, "document.querySelector('#compose-error').textContent.startsWith('queued as job #')")
    text = await page.inner_text("#compose-error")
    job_id = int(text.split("#")[1])
    item = page.locator(f'#queue li[data-job="{job_id}"]')
    await item.wait_for(timeout=10000)
    assert "web composed drone" in await item.inner_text()
    job = await api(room_daemon, "job.get", {"id": job_id})
    assert job["params"]["duration"] == 30.0
    bar = f'#queue li[data-job="{job_id}"] progress'
    await until(page, f"document.querySelector('{bar}')?.value > 0", timeout=60000)
    assert "%" in await item.inner_text() and "ETA" in await item.inner_text()

    # At phone width: one section at a time, the queue one has the job.
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.click('.tabs button[data-show="side"]')
    assert await page.locator("#library").is_hidden()
    await page.screenshot(path=str(tmp_path / "room-390x844.png"))
    await page.set_viewport_size({"width": 1280, "height": 800})
    await page.screenshot(path=str(tmp_path / "room-1280x800.png"))
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.click('.tabs button[data-show="library"]')
    assert await page.locator("#library").is_visible() and await page.locator("#side").is_hidden()
    await page.click('.tabs button[data-show="side"]')

    await item.locator("button.cancel").click()
    li = f'#queue li[data-job="{job_id}"]'
    await until(page, f"document.querySelector('{li}')?.dataset.state !== 'running'", timeout=30000)
    assert (await api(room_daemon, "job.get", {"id": job_id}))["state"] == "cancelled"
    for name, size in (("room-1280x800.png", (1280, 800)), ("room-390x844.png", (390, 844))):
        png = (tmp_path / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == size


async def test_export_route_formats(room_daemon: Any, made: dict[str, Any]) -> None:
    """The route behind "Download FLAC": 24-bit 48 kHz FLAC on request; a format it does not make is
    invalid_params naming the field."""
    import aiohttp
    import soundfile as sf

    a = made["track_ids"][0]
    url = f"{room_daemon.http.url}/api/v1/tracks/{a}/export"
    token = room_daemon.http.plan.token
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"} if token else None) as s:
        async with s.get(url, params={"format": "flac", "sample_rate": "48000", "bit_depth": "24"}) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "audio/flac"
            assert r.headers["Content-Disposition"].startswith("attachment;")
            body = await r.read()
        async with s.get(url, params={"format": "ogg"}) as r:
            assert r.status == 400 and (await r.json())["error"]["field"] == "format"
    import io
    info = sf.info(io.BytesIO(body))
    assert (info.format, info.samplerate, info.subtype) == ("FLAC", 48000, "PCM_24")
    assert abs(info.duration - 2.0) < 0.01


async def test_page_files_need_the_token_and_stay_in_their_folder(room_daemon: Any) -> None:
    """The page and its files are served like the API: the token first; only files shipped in
    daemon/web/static, with types a module script needs and a CSP that keeps everything on the origin."""
    import aiohttp

    base = room_daemon.http.url
    token = room_daemon.http.plan.token
    assert token, "the daemon makes a token at start"
    async with aiohttp.ClientSession() as s:
        for path in ("/", "/static/app.js"):
            async with s.get(base + path) as r:
                assert r.status == 401, path
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as s:
        async with s.get(base + "/") as r:
            assert r.status == 200 and r.content_type == "text/html"
            assert "default-src 'self'" in r.headers["Content-Security-Policy"]
            assert 'src="/static/app.js"' in await r.text()
        for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css"), ("icon.svg", "image/svg+xml")):
            async with s.get(f"{base}/static/{name}") as r:
                assert r.status == 200 and r.content_type == kind, name
        for bad in ("/static/nope.js", "/static/page.py", "/static/..%2fpage.py", "/static/.hidden.js",
                    "/static/%2e%2e/page.py"):
            async with s.get(base + bad) as r:
                assert r.status == 404, bad
                assert (await r.json())["error"]["code"] == "unknown_route"
