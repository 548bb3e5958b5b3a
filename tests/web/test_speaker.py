"""The browser tab as the speaker: one real daemon (tiny MusicGen, HTTP on loopback) and one headless Chromium.

The tab is the page the daemon serves, with speaker.js; it plays a track the TUI sends it (space in the
library when local playback is not possible), plays a running job's stream before the job ends (samples
reach its Web Audio graph), and follows stop and seek. Without a tab, speaker.play is a clear error
naming the page's URL, and `dgx-music play` says the same in one line.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator

import pytest
import pytest_asyncio

from dgx_music.common import speaker
from dgx_music.common.client import Client
from dgx_music.common.protocol import RemoteError
from tests.conftest import make_settings, wait_event

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

CHROMIUM = "/usr/bin/chromium"
SSH_ENV = {"SSH_CONNECTION": "10.0.0.2 50000 10.0.0.1 22"}


async def until(cond: Callable[[], Awaitable[Any]], timeout: float, what: str, step: float = 0.05) -> Any:
    """Poll `cond` until it returns something true, or fail after `timeout` seconds saying what."""
    deadline = time.monotonic() + timeout
    while True:
        value = await cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout}s: {what} (last: {value!r})")
        await asyncio.sleep(step)


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="dgxw-", dir="/tmp"))
    with pytest.MonkeyPatch.context() as mp:
        # Slow decode steps: a 12 s job runs for several seconds, long enough to hear it while it runs.
        mp.setenv("DGX_MUSIC_TEST_STEP_DELAY", "0.02")
        mp.setenv("DGX_MUSIC_NO_SOUNDDEVICE", "1")
        yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def studio(root: Path, tiny_model: Path) -> AsyncIterator[SimpleNamespace]:
    """The daemon with its HTTP API on 127.0.0.1 (an ephemeral port), and one finished 2 s track."""
    from dgx_music.daemon.app import Daemon

    from dgx_music.daemon import http
    settings = make_settings(root, engine__model=str(tiny_model), http__listen="127.0.0.1:0")
    d = Daemon(settings)
    await d.start()
    plan = http.plan(settings)
    api = await http.start(d, plan)
    d.extras.append(api)
    token = getattr(plan, "token", None)
    try:
        async with await Client.connect(d.server.path) as c:
            await c.subscribe("job")
            job = await c.call("job.submit", {"prompt": "speaker test", "duration": 2.0, "seed": 1})
            await wait_event(c, "job.finished", job["id"], timeout=120)
        yield SimpleNamespace(daemon=d, port=api.port, token=token, settings=settings, track=f"{job['id']}-0",
                              sock=d.server.path, root=root)
    finally:
        await d.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tab(studio: SimpleNamespace) -> AsyncIterator[Any]:
    """One headless Chromium tab on the daemon's page, its speaker connected."""
    if not os.path.exists(CHROMIUM):
        pytest.skip("needs Debian's chromium (scripts/ensure-test-tools)")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM,
                                          args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        context = await browser.new_context(viewport={"width": 1280, "height": 800})  # tabs share its cookies
        page = await context.new_page()
        await page.goto(speaker.page_url(studio.port, studio.token, host="127.0.0.1"))
        if not await page.evaluate("() => !!window.dgxSpeaker"):  # the listening room's page has not landed
            await page.add_script_tag(url=speaker.SCRIPT_PATH)
        await until(lambda: page.evaluate("() => window.dgxSpeaker.connected()"), 10, "tab connected")
        yield page
        await browser.close()


async def call(studio: SimpleNamespace, method: str, params: dict[str, Any] | None = None) -> Any:
    async with await Client.connect(studio.sock) as c:
        return await c.call(method, params or {})


def run_cli(studio: SimpleNamespace, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DGX_MUSIC_", "SSH_", "PULSE"))}
    base.update(env or {})
    return subprocess.run([sys.executable, "-m", "dgx_music", *args, "--socket", str(studio.sock),
                           "--config", str(studio.root / "config.toml")],
                          capture_output=True, text=True, env=base, timeout=60)


# ---------------------------------------------------------------------------------- no tab yet
async def test_without_a_tab_play_names_the_page(studio: SimpleNamespace) -> None:
    with pytest.raises(RemoteError) as err:
        await call(studio, "speaker.play", {"track_id": studio.track})
    assert err.value.code == "no_speaker"
    assert f"http://localhost:{studio.port}/" in err.value.message
    assert err.value.data["port"] == studio.port
    status = await call(studio, "speaker.status")
    assert status["tabs"] == 0 and status["url"] == f"http://localhost:{studio.port}/"
    with pytest.raises(RemoteError) as bad:
        await call(studio, "speaker.play", {"track_id": "../etc/passwd"})
    assert bad.value.code == "invalid_params" and bad.value.data["field"] == "track_id"
    # the HTTP mirror says the same, as a 409
    import aiohttp

    headers = {"Authorization": f"Bearer {studio.token}"} if studio.token else {}
    async with aiohttp.ClientSession(headers=headers) as s:
        async with s.post(f"http://127.0.0.1:{studio.port}/api/v1/speaker/play",
                          json={"track_id": studio.track}) as r:
            body = await r.json()
    assert r.status == 409 and body["error"]["code"] == "no_speaker" and body["error"]["port"] == studio.port


async def test_cli_play_over_ssh_without_a_tab_is_one_line(studio: SimpleNamespace) -> None:
    out = await asyncio.to_thread(run_cli, studio, "play", studio.track, env=SSH_ENV)
    assert out.returncode == 1, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert f":{studio.port}/" in lines[0] and f"ssh -L {studio.port}:localhost:{studio.port}" in lines[0]


# ---------------------------------------------------------------------------------- with a tab
async def test_tab_connects_and_plays_stops_and_seeks(studio: SimpleNamespace, tab: Any) -> None:
    status = await until(lambda: call(studio, "speaker.status"), 5, "status")
    assert status["tabs"] == 1 and status["target"] is not None
    await call(studio, "speaker.play", {"track_id": studio.track})
    await until(lambda: tab.evaluate("() => { const a = window.dgxSpeaker.audio();"
                                     " return a && !a.paused && a.currentTime > 0.1 }"), 10, "the tab plays")
    await call(studio, "speaker.seek", {"seconds": 0.0})
    await until(lambda: tab.evaluate("() => window.dgxSpeaker.audio().currentTime < 0.1"), 5, "seeked to 0")
    await call(studio, "speaker.stop")
    await until(lambda: tab.evaluate("() => window.dgxSpeaker.audio().paused"), 5, "stopped")
    # `dgx-music play` over SSH, with the tab open: it plays there, and says so on stderr
    out = await asyncio.to_thread(run_cli, studio, "play", studio.track, env=SSH_ENV)
    assert out.returncode == 0 and "in the browser tab" in out.stderr, out
    await until(lambda: tab.evaluate("() => !window.dgxSpeaker.audio().paused"), 10, "the CLI's play in the tab")
    await call(studio, "speaker.stop")
    await until(lambda: tab.evaluate("() => window.dgxSpeaker.audio().paused"), 5, "stopped")
    # what the tab reports reaches the daemon's status
    status = await until(lambda: call(studio, "speaker.status"), 5, "status")
    assert status["target"]["state"].get("playing") is False


async def test_tui_space_plays_the_track_in_the_tab(studio: SimpleNamespace, tab: Any, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Over SSH with no forwarded sound, space in the library plays the track in the browser tab."""
    from dgx_music.tui.app import DgxMusicApp
    from dgx_music.tui.player import Player

    for k, v in SSH_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("PULSE_SERVER", raising=False)
    monkeypatch.delenv("DGX_MUSIC_PLAYER", raising=False)
    await call(studio, "speaker.stop")
    await until(lambda: tab.evaluate("() => { const a = window.dgxSpeaker.audio(); return !a || a.paused }"), 5,
                "the tab is silent first")
    app = DgxMusicApp(studio.sock, cache_dir=tmp_path, player=Player(use_sounddevice=False))
    async with app.run_test(size=(120, 40)) as pilot:
        async def tui(cond: Callable[[], Any]) -> Any:
            await pilot.pause(0)
            return cond()

        await until(lambda: tui(lambda: app.connected and app.tab.tabs == 1), 10, "the TUI sees the tab")
        await pilot.press("f4")
        await until(lambda: tui(lambda: app.library_view.selected() is not None), 10, "a track selected")
        await pilot.press("space")
        await until(lambda: tab.evaluate("() => { const a = window.dgxSpeaker.audio();"
                                         " return a && !a.paused && a.currentTime > 0.05 }"), 10, "the tab plays")
        assert app.tab.track_id == studio.track and "browser tab" in (app.status_bar.playing or "")
        notices = " ".join(str(n.message) for n in app._notifications)
        assert f"ssh -L {studio.port}:localhost:{studio.port}" in notices and f":{studio.port}/" in notices
        await pilot.press("space")  # stops it there too
        await until(lambda: tab.evaluate("() => window.dgxSpeaker.audio().paused"), 5, "stopped by space")
        assert not app.tab.playing


async def test_running_job_streams_into_the_tab_before_it_ends(studio: SimpleNamespace, tab: Any) -> None:
    async with await Client.connect(studio.sock) as c:
        await c.subscribe("job")
        job = await c.call("job.submit", {"prompt": "a long drone", "duration": 12.0, "seed": 2})
        await wait_event(c, "job.started", job["id"], timeout=60)
        answer = await c.call("speaker.stream", {"job_id": job["id"]})
        assert answer["job_id"] == job["id"]
        try:
            counters = await until(lambda: tab.evaluate("() => window.dgxSpeaker.counters().chunks >= 1 && "
                                                        "window.dgxSpeaker.counters()"), 60, "chunks scheduled")
        except AssertionError as exc:
            seen = await tab.evaluate("() => [window.dgxSpeaker.counters(), window.dgxSpeaker.state()]")
            raise AssertionError(f"{exc}; tab {seen}; job {await c.call('job.get', {'id': job['id']})}") from None
        level = await until(lambda: tab.evaluate("() => window.dgxSpeaker.level()"), 10, "samples reach the analyser")
        state = (await c.call("job.get", {"id": job["id"]}))["state"]
        assert state == "running", f"the job ended ({state}) before the tab was heard"
        assert counters["seconds"] > 0 and level > 0
        await c.call("job.cancel", {"id": job["id"]})
        await wait_event(c, "job.cancelled", job["id"], timeout=60)


async def test_web_json(studio: SimpleNamespace) -> None:
    out = await asyncio.to_thread(run_cli, studio, "web", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["port"] == studio.port
    assert doc["url"].startswith(f"http://localhost:{studio.port}/")
    if studio.token:
        assert doc["url"] == f"http://localhost:{studio.port}/?token={studio.token}"
    assert doc["ssh"] == f"ssh -L {studio.port}:localhost:{studio.port} {os.uname().nodename}"


async def test_the_tab_focused_last_plays(studio: SimpleNamespace, tab: Any) -> None:
    second = await tab.context.new_page()
    try:
        await second.goto(speaker.page_url(studio.port, None, host="127.0.0.1"))
        if not await second.evaluate("() => !!window.dgxSpeaker"):
            await second.add_script_tag(url=speaker.SCRIPT_PATH)
        await until(lambda: second.evaluate("() => window.dgxSpeaker.tab()"), 10, "second tab connected")
        first_id, second_id = await tab.evaluate("() => window.dgxSpeaker.tab()"), await second.evaluate(
            "() => window.dgxSpeaker.tab()")
        await tab.evaluate("() => window.dispatchEvent(new Event('focus'))")  # the user clicks into the first
        await until(lambda: call(studio, "speaker.status"), 5, "status")
        status = await until(lambda: _target_is(studio, first_id), 5, "the first tab is the target again")
        assert status["tabs"] == 2
        await call(studio, "speaker.play", {"track_id": studio.track})
        await until(lambda: tab.evaluate("() => !window.dgxSpeaker.audio().paused"), 10, "the focused tab plays")
        assert await second.evaluate("() => { const a = window.dgxSpeaker.audio(); return !a || a.paused }")
        await second.evaluate("() => window.dispatchEvent(new Event('focus'))")
        await until(lambda: _target_is(studio, second_id), 5, "focus moves the target")
    finally:
        await second.close()
    await until(lambda: _tabs(studio, 1), 10, "a closed tab leaves the registry")
    await call(studio, "speaker.stop")


async def _target_is(studio: SimpleNamespace, tab_id: int) -> Any:
    status = await call(studio, "speaker.status")
    return status if (status["target"] or {}).get("id") == tab_id else None


async def _tabs(studio: SimpleNamespace, n: int) -> bool:
    return (await call(studio, "speaker.status"))["tabs"] == n
