"""Provenance sidecars: every offline render and master writes
``OUTPUT.provenance.json`` next to its output, so the credit for a remix or a
master can be traced: the input files with their SHA-256, the chain with every
parameter value, the versions of rtengine, of each plugin's package and of any
model file, the command and the date."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from .errors import RtEngineError

SUFFIX = ".provenance.json"


def sidecar_path(output) -> Path:
    out = Path(output)
    return out.with_name(out.name + SUFFIX)


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _file_entry(path, role: str) -> dict[str, Any]:
    p = Path(path)
    entry: dict[str, Any] = {"role": role, "path": str(p.resolve()), "sha256": sha256(p),
                             "bytes": p.stat().st_size}
    try:
        import soundfile as sf
        info = sf.info(str(p))
        entry.update(frames=info.frames, sample_rate=info.samplerate, channels=info.channels,
                     format=f"{info.format}/{info.subtype}")
    except Exception:                  # not audio (a model, a curve file): hash only
        pass
    return entry


def _plugin_versions(plugins: Iterable[str]) -> dict[str, str]:
    """The distribution (and version) that provides each plugin's entry point."""
    found: dict[str, str] = {}
    for ep in metadata.entry_points(group="rtengine.plugins"):
        if ep.name in plugins and ep.name not in found:
            dist = getattr(ep, "dist", None)
            found[ep.name] = f"{dist.name} {dist.version}" if dist else "unknown"
    for name in plugins:
        found.setdefault(name, "registered at run time")
    return found


def write(output, *, command: str, inputs: Iterable[tuple[str, Any]], chains: dict[str, Any],
          models: Iterable[Any] = (), report: dict[str, Any] | None = None,
          more_outputs: Iterable[Any] = (), sidecar=None) -> Path:
    """Write the sidecar of ``output``.  ``inputs`` are (role, path) pairs;
    ``chains`` maps a label to an Engine (its chain is written with every
    parameter value); ``models`` are model file paths (the stages' own model
    files are added); ``more_outputs`` are further files the same job wrote
    (stems), listed under ``outputs``; ``sidecar`` overrides where the sidecar
    goes (default ``OUTPUT.provenance.json``).  Returns its path."""
    from . import __version__
    from .engine import Engine
    chain_docs, plugin_names = {}, set()
    models = list(models)
    for label, engine in chains.items():
        if not isinstance(engine, Engine):
            raise RtEngineError(f"provenance: chain {label!r} is not an Engine")
        chain_docs[label] = {"stages": engine.to_chain().to_dict()["stage"],
                             "sample_rate": engine.sample_rate,
                             "channels": engine.channels,
                             "latency_samples": engine.latency}
        plugin_names.update(st.plugin for st in engine.stages)
        for st in engine.stages:
            models += [m for m in st.processor.model_files() if m not in models]
    doc = {
        "generator": f"rtengine {__version__}",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "output": _file_entry(output, "output"),
        "inputs": [_file_entry(p, role) for role, p in inputs],
        "chains": chain_docs,
        "plugins": _plugin_versions(plugin_names),
        "models": [_file_entry(m, "model") for m in models],
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    more = list(more_outputs)
    if more:
        doc["outputs"] = [doc["output"]] + [_file_entry(p, "output") for p in more]
    if report:
        doc["report"] = report
    path = Path(sidecar) if sidecar is not None else sidecar_path(output)
    path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path
