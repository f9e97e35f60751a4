"""Chains: an ordered list of stages, read from and written to TOML.

    [[stage]]
    plugin = "eq"            # required: a plugin name (rtengine plugins)
    name = "tone"            # optional, defaults to the plugin name
    impl = "c"               # optional kernel implementation: "c" or "numba"
    bypass = false           # optional
    [stage.params]           # parameter values by id
    lowcut_on = true
    lowcut_freq = 90.0
    [stage.options]          # construction settings some plugins take (a pyo
    patch = "reverb.py"      # patch file, relative to the chain file's folder)
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import tomli_w

from . import registry
from .errors import ChainError, ParameterError, PluginError

STAGE_KEYS = {"plugin", "name", "impl", "bypass", "params", "options"}


@dataclass
class StageSpec:
    plugin: str
    name: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    impl: str = "c"
    bypass: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not self.name:
            self.name = self.plugin


@dataclass
class Chain:
    stages: list[StageSpec]
    source: str = "<chain>"
    base: Path | None = None          # folder that relative option paths start from

    # ---- reading -------------------------------------------------------------
    @classmethod
    def load(cls, path) -> "Chain":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ChainError(f"chain file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ChainError(f"chain file {path} cannot be read: {exc}") from None
        return cls.from_toml(text, source=str(path), base=path.resolve().parent)

    @classmethod
    def from_toml(cls, text: str, source: str = "<string>",
                  base: Path | None = None) -> "Chain":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ChainError(f"{source}: not valid TOML: {exc}") from None
        stages = data.get("stage")
        if stages is None:
            raise ChainError(f"{source}: no [[stage]] tables; a chain lists its stages as "
                             "[[stage]] with plugin = \"name\"")
        if not isinstance(stages, list):
            raise ChainError(f"{source}: 'stage' must be an array of tables ([[stage]])")
        return cls.from_list(stages, source=source, base=base)

    @classmethod
    def from_list(cls, items: Iterable, source: str = "<list>",
                  base: Path | None = None) -> "Chain":
        """Stages from dicts, (plugin, params) tuples, plugin names or StageSpecs."""
        specs = []
        for i, item in enumerate(items, 1):
            where = f"{source}: stage {i}"
            if isinstance(item, StageSpec):
                specs.append(item)
                continue
            if isinstance(item, str):
                item = {"plugin": item}
            elif isinstance(item, tuple):
                if len(item) != 2 or not isinstance(item[1], Mapping):
                    raise ChainError(f"{where}: a tuple stage is (plugin, {{params}})")
                item = {"plugin": item[0], "params": dict(item[1])}
            if not isinstance(item, Mapping):
                raise ChainError(f"{where}: expected a table, got {type(item).__name__}")
            unknown = set(item) - STAGE_KEYS
            if unknown:
                raise ChainError(f"{where}: unknown keys {', '.join(sorted(unknown))}; a stage "
                                 f"takes {', '.join(sorted(STAGE_KEYS))} (parameter values go "
                                 "under [stage.params])")
            plugin = item.get("plugin")
            if not isinstance(plugin, str) or not plugin:
                raise ChainError(f"{where}: missing plugin = \"name\" "
                                 f"(available: {', '.join(registry.plugins())})")
            name = item.get("name", plugin)
            if not isinstance(name, str) or not name.isidentifier():
                raise ChainError(f"{where}: stage name {name!r} must be an identifier "
                                 "(letters, digits, underscore)")
            params = item.get("params", {})
            if not isinstance(params, Mapping):
                raise ChainError(f"{where}: params must be a table of id = value")
            impl = item.get("impl", "c")
            bypass = item.get("bypass", False)
            if not isinstance(bypass, bool):
                raise ChainError(f"{where}: bypass must be true or false")
            options = item.get("options", {})
            if not isinstance(options, Mapping):
                raise ChainError(f"{where}: options must be a table of name = value")
            specs.append(StageSpec(plugin, name, dict(params), impl, bypass, dict(options)))
        chain = cls(specs, source, base)
        chain.validate()
        return chain

    def validate(self) -> None:
        """Check plugins, names, parameter ids and ranges; raise ChainError."""
        if not self.stages:
            raise ChainError(f"{self.source}: the chain has no stages")
        seen = set()
        for i, s in enumerate(self.stages, 1):
            where = f"{self.source}: stage {i} ({s.name})"
            if s.name in seen:
                raise ChainError(f"{where}: duplicate stage name {s.name!r}; give each stage "
                                 "of the same plugin its own name = \"...\"")
            seen.add(s.name)
            try:
                cls = registry.get(s.plugin)
            except PluginError as exc:
                raise ChainError(f"{where}: {exc}") from None
            if s.impl not in cls.impls:
                raise ChainError(f"{where}: impl {s.impl!r} is not offered by {s.plugin!r} "
                                 f"({', '.join(cls.impls)})")
            try:
                s.options = {k: v for k, v in cls.check_options(s.options, f"{s.name}.",
                                                                self.base).items()
                             if k in s.options}
            except PluginError as exc:
                raise ChainError(f"{where}: {exc}") from None
            if cls.dynamic_params:
                continue                  # declared by a file: checked when the engine is built
            for pid, value in s.params.items():
                try:
                    cls.param(pid).coerce(value, where=f"{s.name}.")
                except ParameterError as exc:
                    raise ChainError(f"{where}: {exc}") from None

    # ---- writing -------------------------------------------------------------
    def to_dict(self) -> dict:
        out = []
        for s in self.stages:
            d: dict[str, Any] = {"plugin": s.plugin}
            if s.name != s.plugin:
                d["name"] = s.name
            if s.impl != "c":
                d["impl"] = s.impl
            if s.bypass:
                d["bypass"] = True
            if s.params:
                d["params"] = dict(s.params)
            if s.options:
                d["options"] = dict(s.options)
            out.append(d)
        return {"stage": out}

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def save(self, path) -> None:
        Path(path).write_text(self.to_toml(), encoding="utf-8")
