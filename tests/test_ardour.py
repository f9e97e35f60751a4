"""Ardour 7 headless (ardour7-lua): a session with a track and the rtengine VST3
plugin exports audio processed by the engine.  Runs where Ardour is installed
(`./run.sh setup` installs it as root; marker: ardour)."""
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rtengine import vst3
from rtengine.bridge import BridgeServer

HERE = Path(__file__).resolve().parent
SCANNER = Path("/usr/lib/ardour7/ardour-vst3-scanner")

pytestmark = [pytest.mark.ardour,
              pytest.mark.skipif(shutil.which("ardour7-lua") is None or not SCANNER.exists(),
                                 reason="Ardour 7 is not installed (apt-get install ardour)")]


def test_an_ardour_session_exports_audio_processed_by_the_engine(tmp_path):
    home = tmp_path / "home"
    bundle = vst3.build(home / ".vst3")
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_CACHE_HOME=str(home / ".cache"), RT_SESSION_DIR=str(tmp_path / "session"),
               RT_EXPORT_DIR=str(tmp_path / "export"), RTENGINE_BRIDGE=f"ard{os.getpid()}")
    (tmp_path / "export").mkdir()
    # Ardour loads VST3 plugins from its scanner's cache, and only from a cache
    # strictly newer than the module (the build and the scan share a second here)
    so = next(bundle.glob("Contents/*/rtengine.so"))
    old = so.stat().st_mtime - 60
    os.utime(so, (old, old))
    r = subprocess.run([str(SCANNER), str(bundle)], capture_output=True, text=True, timeout=120,
                       env=dict(env, LD_LIBRARY_PATH=str(SCANNER.parent)))
    assert r.returncode == 0 and "Found Plugin: rtengine" in r.stdout + r.stderr, r.stderr
    chain = [("gain", {"gain_db": -12.0})]
    with BridgeServer(chain, name=env["RTENGINE_BRIDGE"]) as srv:
        r = subprocess.run(["ardour7-lua", str(HERE / "ardour_session.lua")], env=env,
                           capture_output=True, text=True, timeout=300)
        requests = sum(srv.seg.lanes[i].counters.requests for i in range(32))
    log = r.stdout[-3000:] + r.stderr[-3000:]
    assert "RT exported wet" in r.stdout and "RT exported dry" in r.stdout, log
    wet = sf.read(tmp_path / "export" / "wet.wav")[0]
    dry = sf.read(tmp_path / "export" / "dry.wav")[0]
    assert wet.shape == dry.shape == (96000, 2)
    # the same sine generator with rtengine on and off: the engine's -12 dB
    ratio_db = 20 * np.log10(np.sqrt(np.mean(wet ** 2)) / np.sqrt(np.mean(dry ** 2)))
    assert ratio_db == pytest.approx(-12.0, abs=0.01), log
    assert requests > 100, "the lanes answered no audio requests"
    assert r.returncode == 0, log            # no crash at Ardour's teardown either
