"""cffi (API mode) build of the native runner into ``rtengine._runner``."""
from pathlib import Path
import re

from cffi import FFI

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CFLAGS = ["-O3", "-fno-math-errno", "-std=gnu11", "-Wall", "-Wextra", "-pthread"]


def cdef_text(header: Path) -> str:
    text = re.sub(r"/\*.*?\*/", "", header.read_text(), flags=re.S)
    return "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))


ffibuilder = FFI()
ffibuilder.cdef(cdef_text(HERE / "runner.h"))
ffibuilder.set_source(
    "rtengine._runner",
    '#include "runner.h"',
    sources=[str((HERE / "runner.c").relative_to(ROOT))],
    include_dirs=[str(HERE.relative_to(ROOT))],
    extra_compile_args=CFLAGS,
    extra_link_args=["-pthread"],
    libraries=["m"],
)

if __name__ == "__main__":
    import os
    os.chdir(ROOT)
    ffibuilder.compile(verbose=False)
