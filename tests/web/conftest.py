"""Fixtures for the listening room tests: one real daemon (tiny MusicGen, HTTP on loopback) and one
headless Chromium (Debian's, driven by Playwright) for a whole test module."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import pytest_asyncio

from tests.conftest import make_settings, start_http

CHROMIUM = os.environ.get("DGX_MUSIC_TEST_CHROMIUM", "/usr/bin/chromium")
#: No sound card is needed: media elements play (their clock runs) with autoplay allowed.
CHROMIUM_ARGS = ["--no-sandbox", "--autoplay-policy=no-user-gesture-required", "--mute-audio"]


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or scripts/ensure-test-tools)"
    return None


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def room_daemon(tiny_model: Path) -> AsyncIterator[Any]:
    """A real in-process daemon with the tiny model and the HTTP API on 127.0.0.1 (a free port).
    Decode steps are slowed a little (the worker reads it when it starts) so a running job is seen."""
    from dgx_music.daemon.app import Daemon

    root = Path(tempfile.mkdtemp(prefix="dgxm-web-", dir="/tmp"))
    old = os.environ.get("DGX_MUSIC_TEST_STEP_DELAY")
    os.environ["DGX_MUSIC_TEST_STEP_DELAY"] = "0.02"
    d = Daemon(make_settings(root, engine__model=str(tiny_model), http__listen="127.0.0.1:0"))
    try:
        await d.start()
        d.http = await start_http(d)
        yield d
    finally:
        await d.close()
        if old is None:
            os.environ.pop("DGX_MUSIC_TEST_STEP_DELAY", None)
        else:
            os.environ["DGX_MUSIC_TEST_STEP_DELAY"] = old
        shutil.rmtree(root, ignore_errors=True)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    """One headless Chromium for the module (starting it is the slow part)."""
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


def page_url(daemon: Any) -> str:
    """The page's address as `dgx-music web` gives it: with the token when the daemon has one (the
    page moves it into a cookie at once)."""
    token = daemon.http.plan.token
    return daemon.http.url + (f"/?token={token}" if token else "/")


def base_url(daemon: Any) -> str:
    """The page's address without the token (a tab that has the cookie already)."""
    return daemon.http.url + "/"
