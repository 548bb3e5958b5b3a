"""`dgx-music prune` as a user types it, against a real daemon with an old job history."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.cli.test_cli_e2e import cli, cli_json
from tests.queue.test_prune_e2e import OLD_WITHOUT_TRACKS, seed_history


async def test_prune_dry_run_then_for_real(daemon_factory: Callable[..., Any], short_tmp: Path) -> None:
    ids = await seed_history(short_tmp / "data")
    d = await daemon_factory(daemon__keep_finished_days=0)
    sock = d.server.path

    async def history() -> set[int]:
        return {j["id"] for j in (await cli_json(sock, "queue", "--all"))["jobs"]}

    res = await cli_json(sock, "prune", "--dry-run")
    assert (res["removed"], res["kept_with_tracks"], res["dry_run"]) == (3, 1, True)
    rc, out, err = await cli(sock, "prune", "--dry-run", "--older-than", "35")
    assert rc == 0, err
    assert "would prune 3 jobs finished more than 35 days ago" in out
    assert "kept 1 that still own tracks" in out and "without --dry-run" in out
    assert await history() == set(ids.values())

    rc, out, err = await cli(sock, "prune", "--older-than", "35")
    assert rc == 0, err
    assert out.startswith("pruned 3 jobs finished more than 35 days ago") and "kept 1" in out
    assert await history() == {ids["kept"], ids["recent"]}
    assert not {ids[k] for k in OLD_WITHOUT_TRACKS} & await history()
    rc, out, err = await cli(sock, "job", str(ids["failed"]))
    assert rc == 1 and "no job" in err

    res = await cli_json(sock, "prune", "--older-than", "0")
    assert (res["removed"], res["kept_with_tracks"], res["dry_run"]) == (1, 1, False)
    assert (res["melodies_removed"], res["sources_removed"]) == (0, 0)  # --json carries both counts
    assert await history() == {ids["kept"]}
    rc, out, _ = await cli(sock, "prune")
    assert rc == 0 and out.startswith("pruned 0 jobs")


async def test_prune_usage_errors(daemon: Any) -> None:
    sock = daemon.server.path
    for bad in ("-1", "nan", "soon"):
        rc, out, err = await cli(sock, "prune", "--older-than", bad)
        assert rc == 2 and "--older-than" in err, (bad, err)
    rc, out, _ = await cli(sock, "prune", "--older-than", "-1", "--json")
    assert rc == 2 and json.loads(out)["error"]["code"] == "invalid_params"
    rc, _, err = await cli(Path("/nonexistent/dgx.sock"), "prune")
    assert rc == 3 and "dgx-music daemon" in err
    rc, out, _ = await cli(sock, "prune", "--help")
    assert rc == 0 and "keep_finished_days" in out and "--dry-run" in out and "examples" in out


def test_prune_summary_names_removed_copies() -> None:
    from dgx_music.cli.history_cmd import _summary

    res = {"removed": 1, "kept_with_tracks": 0, "dry_run": False, "melodies_removed": 1, "sources_removed": 2}
    out = _summary(res)
    assert "removed 1 stored melody no job uses" in out and "removed 2 stored operation sources no job uses" in out
    assert "operation source" not in _summary({**res, "sources_removed": 0})
