"""ruff finds no errors (unused or undefined names, syntax, likely bugs)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed: run ./run.sh setup (it is in the dev extra)")
    r = subprocess.run([ruff, "check", "rtengine", "kernels", "plugins", "latency_bench", "tests"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
