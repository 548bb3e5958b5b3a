"""The Ardour session must load in real Ardour (ardour7-lua, headless dummy backend)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import soundfile as sf

import synth
from dgx_music.common.audio.ardour import Clip, write_ardour_session

LUA = shutil.which("ardour7-lua")


@pytest.mark.slow
@pytest.mark.skipif(LUA is None, reason="ardour7-lua not installed (apt-get install -y ardour)")
@pytest.mark.parametrize("sequence", [False, True])
def test_session_loads_in_ardour(tmp_path, sequence):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(str(a), synth.drums(120, 3)[0], 32000)
    sf.write(str(b), synth.chords("C", "major", 2, sr=32000).T, 32000)
    root = write_ardour_session(tmp_path, "My Session", [Clip(a, "Drums", 120.0), Clip(b, "Keys")], sequence)
    name = root.name
    assert root == tmp_path / "My Session"  # the folder asked for, as written (Ardour opens it)
    assert (root / f"{name}.ardour").is_file() and len(list((root / "interchange" / name / "audiofiles").iterdir())) == 2
    script = tmp_path / "check.lua"
    script.write_text(f'''
load_session("{root}", "{name}")
local n = 0
for t in Session:get_tracks():iter() do
  n = n + 1
  for r in t:to_track():playlist():region_list():iter() do
    print("REGION", r:position():samples(), r:length():samples(), r:to_audioregion():maximum_amplitude(nil))
  end
end
print("TRACKS", n)
''')
    out = subprocess.run(["stdbuf", "-oL", LUA, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert "TRACKS 2" in lines, out.stdout
    regions = [tuple(float(v) for v in l.split()[1:]) for l in lines if l.startswith("REGION")]
    assert [(p, n) for p, n, _ in regions] == ([(0, 144000), (144000, 96000)] if sequence else [(0, 144000), (0, 96000)])
    assert all(peak > 0.1 for _, _, peak in regions)
