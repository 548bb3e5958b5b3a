"""The worker's frame protocol, spoken directly over its stdin/stdout (no model loaded)."""

from __future__ import annotations

import subprocess
import sys

from dgx_music.daemon.engine import framing


def test_worker_frames_errors_and_exit_on_eof() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "dgx_music.daemon.engine.worker_main"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        hello = framing.read_frame(proc.stdout)
        assert hello is not None and hello["type"] == "hello" and hello["pid"] == proc.pid
        for msg in ({"type": "stats"}, {"type": "generate", "job_id": 3, "prompts": ["x"], "params": {}},
                    {"type": "bogus"}):
            proc.stdin.write(framing.encode(msg))
        proc.stdin.flush()
        stats = framing.read_frame(proc.stdout)
        assert stats is not None and stats["type"] == "stats" and stats["memory"]["rss"] > 0
        err = framing.read_frame(proc.stdout)
        assert err == {"type": "error", "op": "generate", "job_id": 3, "code": "bad_request",
                       "message": "generate before load", "transient": False}
        err = framing.read_frame(proc.stdout)
        assert err is not None and err["code"] == "bad_request" and "bogus" in err["message"]
        proc.stdin.close()  # the daemon went away: the worker must exit by itself
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read() == b""  # nothing but frames ever reached stdout
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
