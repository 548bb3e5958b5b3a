"""`dgx-music library --search ... --sort relevance` as a user types it, against a real daemon."""

from __future__ import annotations

import json
from typing import Any

import pytest
from dgx_music.common.client import Client, RemoteError

from tests.cli.test_cli_e2e import cli, cli_json


def row(i: int, prompt: str, **kw: Any) -> dict[str, Any]:
    return {"id": f"9{i}-0", "path": f"tracks/r{i}.flac", "duration": 8.0, "sample_rate": 32000, "channels": 1,
            "prompt": prompt, "title": kw.pop("title", f"Take {i}"), **kw}


async def test_search_results_come_best_match_first(daemon: Any) -> None:
    sock = daemon.server.path
    # oldest first: newest-first order is the reverse of the best-match order
    await daemon.store.import_tracks([
        row(1, "slow ambient pads", title="Nightfall"),
        row(2, "nightfall over the city"),
        row(3, "slow ambient pads", notes="call it nightfall?"),
        row(4, "dark techno"),
    ])

    async def ids(*args: str) -> list[str]:
        return [t["id"] for t in (await cli_json(sock, "library", *args))["tracks"]]

    best = ["91-0", "92-0", "93-0"]
    assert await ids("--search", "nightfall") == best  # relevance is the default with --search
    assert await ids("--search", "nightfall", "--sort", "relevance") == best
    assert await ids("--search", "nightfall", "--sort", "relevance", "--asc") == best[::-1]
    assert await ids("--search", "nightfall", "--sort", "created") == best[::-1]
    assert await ids() == ["94-0", "93-0", "92-0", "91-0"]  # no search: newest first, as before
    assert await ids("--search", "** ()") == ["94-0", "93-0", "92-0", "91-0"]  # no words: no search

    page = await cli_json(sock, "library", "--search", "nightfall", "--limit", "2")
    assert [t["id"] for t in page["tracks"]] == best[:2] and page["total"] == 3 and page["next_cursor"]
    page2 = await cli_json(sock, "library", "--search", "nightfall", "--limit", "2", "--cursor", page["next_cursor"])
    assert [t["id"] for t in page2["tracks"]] == best[2:] and page2["next_cursor"] is None

    rc, out, err = await cli(sock, "library", "--search", "nightfall", "--limit", "2")
    assert rc == 0, err
    lines = out.splitlines()
    assert "Nightfall" in lines[1] and "92-0" in lines[2] and "3 in all; next page: --cursor" in lines[3]

    rc, out, err = await cli(sock, "library", "--sort", "relevance")
    assert rc == 2 and "sort: relevance needs a search" in err, err  # invalid_params: exit 2, like usage
    rc, out, _ = await cli(sock, "library", "--sort", "relevance", "--json")
    error = json.loads(out)["error"]
    assert rc == 2 and error["code"] == "invalid_params" and error["field"] == "sort"
    rc, _, err = await cli(sock, "library", "--search", "x", "--sort", "best")
    assert rc == 2 and "relevance" in err  # argparse lists the choices
    rc, out, _ = await cli(sock, "library", "--help")
    assert rc == 0 and "relevance" in out and "best match" in out


async def test_track_list_names_the_field(daemon: Any) -> None:
    client = await Client.connect(daemon.server.path)
    try:
        for params, field in (({"sort": "relevance"}, "sort"), ({"sort": "relevance", "search": " ** "}, "sort"),
                              ({"sort": "best"}, "sort"), ({"cursor": "nope"}, "cursor")):
            with pytest.raises(RemoteError) as e:
                await client.call("track.list", params)
            assert e.value.code == "invalid_params" and e.value.data["field"] == field, (params, e.value)
        page = await client.call("track.list", {"search": "anything", "sort": "relevance"})
        assert page == {"tracks": [], "next_cursor": None, "total": 0, "total_exact": True, "ranked": 0}
    finally:
        await client.close()


async def test_a_daemon_on_sqlite_keeps_no_outage_cache(daemon: Any) -> None:
    """SQLite in the data directory cannot go away: reads are not copied into the outage cache."""
    await daemon.store.import_tracks([row(2, "tin roof rain", title="Tin")])
    assert [t["id"] for t in (await cli_json(daemon.server.path, "library", "--search", "tin"))["tracks"]] == ["92-0"]
    rc, out, _err = await cli(daemon.server.path, "show", "92-0")
    assert rc == 0 and "Tin" in out
    cache = daemon.library_cache
    assert not cache.enabled and len(cache.rows) == 0 and len(cache.pages) == 0


async def test_stale_replies_warn_on_stderr_and_keep_json_valid(daemon: Any) -> None:
    """While the daemon's database is away, `library` and `show` answer what it last saw: a one-line
    warning on stderr says so, and --json stays one valid document carrying `stale`."""
    from tests.outage import AwayStore

    sock = daemon.server.path
    daemon.library_cache.enabled = True  # on for a database that can go away, as AwayStore's will
    await daemon.store.import_tracks([row(1, "harbour lights at dusk", title="Harbour")])
    fresh = await cli_json(sock, "library", "--search", "harbour")
    rc, out, err = await cli(sock, "show", "91-0")
    assert rc == 0 and "warning" not in err and "stale" not in fresh
    daemon.store = AwayStore(daemon.store)
    daemon.store.away = True
    try:
        rc, out, err = await cli(sock, "library", "--search", "harbour", "--json")
        page = json.loads(out)
        assert rc == 0 and page["stale"] is True and [t["id"] for t in page["tracks"]] == ["91-0"]
        warnings = [line for line in err.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 1 and "database away — showing what this host last saw at" in warnings[0]
        rc, out, err = await cli(sock, "show", "91-0")
        assert rc == 0 and "Harbour" in out and "database away" in err
        rc, out, err = await cli(sock, "library", "--search", "never asked")
        assert rc == 1 and "cannot answer until the database is back" in err, (rc, out, err)
    finally:
        daemon.store = daemon.store.store
    rc, out, err = await cli(sock, "library", "--search", "harbour")
    assert rc == 0 and "warning" not in err


async def test_counts_past_the_bound_read_as_at_least(daemon: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A total past the store's counting bound reads "N+" (never as an exact count), and a
    relevance page over more matches than its window says which matches it ranked."""
    from dgx_music.daemon.store import search as search_module

    monkeypatch.setattr(search_module, "TOTAL_EXACT_MAX", 3)
    monkeypatch.setattr(search_module, "_RANK_WINDOW", 2)
    sock = daemon.server.path
    await daemon.store.import_tracks([row(i, "lofi beat" if i < 5 else "dark techno") for i in range(7)])
    page = await cli_json(sock, "library", "--search", "lofi", "--sort", "created", "--limit", "2")
    assert page["total"] == 3 and page["total_exact"] is False
    rc, out, err = await cli(sock, "library", "--search", "lofi", "--sort", "created", "--limit", "2")
    assert rc == 0 and "3+ in all; next page" in out, (out, err)
    rc, out, err = await cli(sock, "library", "--search", "lofi", "--limit", "1")
    assert rc == 0 and "3+ in all" in out and "best first among the 2 newest matches" in out, (out, err)
    rc, out, err = await cli(sock, "library", "--search", "techno", "--sort", "created", "--limit", "1")
    assert rc == 0 and "2 in all; next page" in out and "+" not in out.splitlines()[-1], (out, err)
