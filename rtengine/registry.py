"""Plugin registry: plugins are found by name through the ``rtengine.plugins``
entry-point group (rtengine's own and any installed package's), or registered
at run time with ``register``."""
from __future__ import annotations

from importlib.metadata import entry_points

from .errors import PluginError
from .processor import Processor

GROUP = "rtengine.plugins"
_extra: dict[str, type[Processor]] = {}
_loaded: dict[str, type[Processor]] | None = None


def register(cls: type[Processor]) -> type[Processor]:
    """Register a Processor subclass under ``cls.name`` (usable as a decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Processor)) or not cls.name:
        raise PluginError(f"{cls!r} is not a named rtengine Processor subclass")
    _extra[cls.name] = cls
    return cls


def _load() -> dict[str, type[Processor]]:
    global _loaded
    if _loaded is None:
        found: dict[str, type[Processor]] = {}
        for ep in entry_points(group=GROUP):
            try:
                cls = ep.load()
            except Exception as exc:  # a broken third-party plugin must not hide the rest
                raise PluginError(f"plugin {ep.name!r} ({ep.value}) failed to load: {exc}; "
                                  "reinstall or remove the package that provides it") from exc
            if not (isinstance(cls, type) and issubclass(cls, Processor)):
                raise PluginError(f"entry point {ep.name!r} ({ep.value}) is not a Processor")
            found[ep.name] = cls
        _loaded = found
    return _loaded


def plugins() -> dict[str, type[Processor]]:
    """All plugins by name, sorted."""
    allp = dict(_load())
    allp.update(_extra)
    return dict(sorted(allp.items()))


def get(name: str) -> type[Processor]:
    allp = plugins()
    if name not in allp:
        raise PluginError(f"no plugin named {name!r}; available: {', '.join(allp) or 'none'} "
                          "(is rtengine installed with 'pip install .'?)")
    return allp[name]
