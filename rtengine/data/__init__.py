"""Audio material rendered or collected on this machine (never downloaded):
music renders (``music``) and noisy speech (``speech``).  Everything is cached
under ``$RTENGINE_CACHE`` (default ``~/.cache/rtengine``), outside git."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """A folder under the cache root (created)."""
    root = Path(os.environ.get("RTENGINE_CACHE", Path.home() / ".cache" / "rtengine"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
