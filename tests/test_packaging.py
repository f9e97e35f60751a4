"""`pip install .` builds the C kernels and the runner (cffi API mode) and
ships everything a user needs; the installed package (not this checkout) runs."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(out), str(ROOT)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    (whl,) = out.glob("rtengine-*.whl")
    return whl


def test_wheel_contains_compiled_kernels_and_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("kernels/_ck") and n.endswith(".so") for n in names), names
    assert any(n.startswith("rtengine/_runner") and n.endswith(".so") for n in names), names
    for needed in ("rtengine/chains/demo.toml", "kernels/c/rtk.h", "rtengine/native/runner.h",
                   "latency_bench/chains/reference.toml", "plugins/eq.py",
                   "rtengine/native/worker.h", "rtengine/patches/reverb.py",
                   "plugins/pyopatch.py", "rtengine/bridge/protocol.h",
                   "rtengine/bridge/client.c", "rtengine/vst3/plugin.c",
                   "latency_bench/bridge.py", "rtengine/models/denoise-gru.npz",
                   "rtengine/models/denoise-gru.md"):
        assert needed in names, f"{needed} missing from the wheel"
    meta = [n for n in names if n.endswith("entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(meta[0]).decode()
    assert "[rtengine.plugins]" in text and "limiter = plugins.limiter:Limiter" in text
    assert "pyo = plugins.pyopatch:PyoPatch" in text
    lic = [n for n in names if n.endswith("METADATA")]
    assert "GPL-3.0-or-later" in zipfile.ZipFile(wheel).read(lic[0]).decode()


def test_installed_wheel_runs_outside_the_checkout(wheel, tmp_path):
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                        str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    code = (
        "import numpy as np, rtengine, kernels, sys\n"
        f"assert rtengine.__file__.startswith({str(target)!r}), rtengine.__file__\n"
        f"assert kernels.__file__.startswith({str(target)!r}), kernels.__file__\n"
        "assert sorted(rtengine.plugins()) == ['balance', 'compressor', 'denoise', 'eq', 'gain',\n"
        "                                      'limiter', 'loudness', 'master', 'pyo', 'stems',\n"
        "                                      'vst3']\n"
        "from rtengine.stems.contract import check_model, default_model\n"
        f"assert str(default_model()).startswith({str(target)!r}), default_model()\n"
        "assert check_model(default_model()).stems == ('vocals', 'drums', 'bass', 'other')\n"
        "patch = rtengine.__file__.replace('__init__.py', 'patches/reverb.py')\n"
        "from plugins.denoise import model_path\n"
        f"assert str(model_path()).startswith({str(target)!r}), model_path()\n"
        "e = rtengine.Engine([('denoise', {}), ('eq', {'band1_on': True}), ('limiter', {}),\n"
        "                     {'plugin': 'pyo', 'options': {'patch': patch}}], 44100, 64, 2)\n"
        "x = (np.random.default_rng(0).standard_normal((2, 4410)) * 0.1).astype(np.float32)\n"
        "y = e.render(x)\n"
        "assert y.shape == x.shape and np.isfinite(y).all()\n"
        "print('ok', e.latency)\n")
    env = dict(os.environ, PYTHONPATH=str(target))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok")
