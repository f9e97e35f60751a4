"""Build and install the rtengine VST3 plugin (``rtengine vst3 build|install``).

The plugin is C (plugin.c, plus the bridge's client.c), libc only, compiled
with the system's C compiler into a standard bundle:
``rtengine.vst3/Contents/<arch>-linux/rtengine.so``.
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

from ..errors import RtEngineError

HERE = Path(__file__).resolve().parent
SOURCES = [HERE / "plugin.c", HERE.parent / "bridge" / "client.c"]
CFLAGS = ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror=implicit-function-declaration",
          "-shared", "-fPIC", "-fvisibility=hidden", "-Wl,--no-undefined"]


def bundle_arch() -> str:
    machine = platform.machine()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine.lower(), machine)


def build(out_dir, cc: str | None = None) -> Path:
    """Compile the bundle into ``out_dir``; returns the bundle's path."""
    cc = cc or os.environ.get("CC") or "gcc"
    if shutil.which(cc) is None:
        raise RtEngineError(f"no C compiler '{cc}' to build the VST3 plugin: install gcc "
                            "(apt-get install gcc) or set CC")
    bundle = Path(out_dir) / "rtengine.vst3"
    target = bundle / "Contents" / f"{bundle_arch()}-linux" / "rtengine.so"
    target.parent.mkdir(parents=True, exist_ok=True)
    cmd = [cc, *CFLAGS, "-o", str(target), *map(str, SOURCES), "-lm", "-lpthread", "-lrt"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RtEngineError(f"building the VST3 plugin failed:\n{r.stderr[-3000:]}")
    return bundle


def install(dest=None) -> Path:
    """Build into ``dest`` (default ~/.vst3), replacing an earlier build."""
    dest = Path(dest) if dest else Path.home() / ".vst3"
    dest.mkdir(parents=True, exist_ok=True)
    old = dest / "rtengine.vst3"
    if old.exists():
        shutil.rmtree(old)
    return build(dest)
