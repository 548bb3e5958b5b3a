"""`dgx-music train` and `dgx-music loras` against a daemon with the tiny ACE-Step pipeline."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.cli.test_family_cli import cli
from tests.styles.test_style_jobs import training_set


async def test_train_wait_then_loras_lists_and_deletes_the_style(daemon_factory: Callable[..., Any],
                                                                 tiny_acestep: Path) -> None:
    d = await daemon_factory(engine__model=str(tiny_acestep))
    training_set(d.data_dir)
    sock = d.server.path
    rc, out, err = await cli(sock, "train", "clisound", "--from", "set", "--steps", "6", "--checkpoint-every", "3",
                             "--seed", "1", "--wait", "--json")
    assert rc == 0, err
    assert json.loads(out)["state"] == "done"
    rc, out, err = await cli(sock, "loras", "--json")
    assert rc == 0, err
    [s] = json.loads(out)["styles"]
    assert (s["name"], s["steps"], s["tracks"]) == ("clisound", 6, ["take0.flac", "take1.flac"])
    assert s["base_model"] == str(tiny_acestep) and s["final_loss"] > 0 and s["size"] > 0 and s["created"] > 0
    rc, out, err = await cli(sock, "loras")
    assert rc == 0 and out.startswith("clisound") and "6 steps on 2 items" in out
    rc, out, err = await cli(sock, "train", "clisound", "--from", "set")  # the name is taken: a conflict, exit 1
    assert rc == 1 and "clisound exists already" in err
    rc, out, err = await cli(sock, "loras", "rm", "clisound", "--json")
    assert rc == 0 and json.loads(out) == {"deleted": "clisound"}
    rc, out, err = await cli(sock, "loras", "rm", "clisound")
    assert rc == 1 and "no style clisound" in err
    rc, out, err = await cli(sock, "loras", "--json")
    assert json.loads(out) == {"styles": []}


async def test_bad_training_options_are_refused_before_connecting(tmp_path: Path) -> None:
    sock = tmp_path / "none.sock"
    for args, words in ((("train", "no good", "--from", "1-0"), "NAME: 'no good' is not a style name"),
                        (("train", "ok", "--from", "1-0", "--steps", "0"), "--steps: "),
                        (("train", "ok", "--from", "1-0", "--lr", "-1"), "--lr: must be greater than 0")):
        rc, out, err = await cli(sock, *args)
        assert rc == 2 and words in err, (args, err)
