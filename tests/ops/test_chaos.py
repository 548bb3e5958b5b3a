"""The fault campaign's quick mode (bench/chaos.py --quick): kills (also mid operation, loop and fit), disk full, lock-out,
hostile frames.

The full campaign's figures are in docs/benchmarks.md; this keeps every scenario passing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_fault_campaign_loses_nothing() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DGX_MUSIC_")}
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "chaos.py"), "--quick", "--json"],
                       capture_output=True, text=True, timeout=900, env=env, cwd=ROOT)
    outcomes = json.loads(r.stdout)
    by_name = {o["scenario"]: o for o in outcomes}
    assert set(by_name) == {"kill9", "worker", "postproc", "diskfull", "lockout", "httplock", "frames", "paths",
                            "ops", "tools", "hosts"}, r.stderr[-2000:]
    for o in outcomes:
        if o["skipped"]:
            continue
        assert o["tried"] > 0, o
        assert o["lost"] == 0 and o["internal"] == 0, o
        assert o["survived"] == o["tried"], o
    assert r.returncode == 0, r.stderr[-2000:]
