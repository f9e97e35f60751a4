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
from rtengine._runner import lib
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
    runs = {}
    with BridgeServer(chain, name=env["RTENGINE_BRIDGE"]) as srv:
        aborted = 0
        for mode in ("wet", "dry"):
            # Ardour 7.3's luasession aborts now and then in its own export code
            # (heap corruption reported in ~PortExportChannel): 2 of 12 runs
            # here with rtengine inserted, 1 of 12 with Debian's ZamCompX2 VST3
            # instead, none of 6 with only Ardour's Lua plugins.  A run that died
            # before its export is repeated, at most twice
            for attempt in range(3):
                session = tmp_path / f"{mode}{attempt}"
                runs[mode] = subprocess.run(["ardour7-lua", str(HERE / "ardour_session.lua")],
                                            env=dict(env, RT_MODE=mode,
                                                     RT_SESSION_DIR=str(session)),
                                            capture_output=True, text=True, timeout=300)
                if f"RT exported {mode}" in runs[mode].stdout:
                    break
                aborted += 1
        print(f"Ardour runs that aborted before exporting: {aborted}")
        requests = sum(srv.seg.lanes[i].counters.requests for i in range(lib.RTB_MAX_LANES))
    log = "\n".join(r.stdout[-2000:] + r.stderr[-2000:] for r in runs.values())
    # judged by the exported files (VST3.md: Ardour's luasession may crash at
    # teardown after an export, with its own plugins too)
    for mode, r in runs.items():
        assert f"RT exported {mode}" in r.stdout, log
    wet = sf.read(tmp_path / "export" / "wet.wav")[0]
    dry = sf.read(tmp_path / "export" / "dry.wav")[0]
    assert wet.shape == dry.shape == (96000, 2)
    # the same sine generator with rtengine on and off: the engine's -12 dB
    ratio_db = 20 * np.log10(np.sqrt(np.mean(wet ** 2)) / np.sqrt(np.mean(dry ** 2)))
    assert ratio_db == pytest.approx(-12.0, abs=0.01), log
    assert requests > 100, "the lanes answered no audio requests"
