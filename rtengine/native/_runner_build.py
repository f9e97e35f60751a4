"""cffi (API mode) build of the native runner and the JACK backend into
``rtengine._runner``."""
from pathlib import Path
import re

from cffi import FFI

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CFLAGS = ["-O3", "-fno-math-errno", "-std=gnu11", "-Wall", "-Wextra", "-pthread"]


DEFINE = re.compile(r"\s*#define\s+\w+\s+\d+\s*$")   # integer constants cffi can read


def cdef_text(header: Path) -> str:
    """The declarations of a header (and its integer #defines) for cffi."""
    text = re.sub(r"/\*.*?\*/", "", header.read_text(), flags=re.S)
    return "\n".join(ln for ln in text.splitlines()
                     if not ln.lstrip().startswith("#") or DEFINE.match(ln))


ffibuilder = FFI()
ffibuilder.cdef(cdef_text(HERE / "runner.h"))
ffibuilder.cdef(cdef_text(HERE / "jack.h"))
ffibuilder.cdef(cdef_text(HERE / "pa.h"))
ffibuilder.cdef(cdef_text(HERE / "worker.h"))
BRIDGE = HERE.parent / "bridge"
ffibuilder.cdef(cdef_text(BRIDGE / "protocol.h"))
ffibuilder.cdef(cdef_text(BRIDGE / "bridge.h"))
ffibuilder.set_source(
    "rtengine._runner",
    '#include "runner.h"\n#include "jack.h"\n#include "pa.h"\n#include "worker.h"\n'
    '#include "../bridge/bridge.h"',
    sources=[str((HERE / name).relative_to(ROOT))
             for name in ("runner.c", "jack.c", "pa.c", "worker.c")] +
            [str((BRIDGE / name).relative_to(ROOT)) for name in ("server.c", "client.c")],
    include_dirs=[str(HERE.relative_to(ROOT))],
    extra_compile_args=CFLAGS,
    extra_link_args=["-pthread"],
    libraries=["m", "dl", "rt"],
)

if __name__ == "__main__":
    import os
    os.chdir(ROOT)
    ffibuilder.compile(verbose=False)
