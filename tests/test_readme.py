"""The README runs: its Python snippets execute, its chain files load, and its
two commands are the ones the project and CI use."""
import os
import re
from pathlib import Path

import pytest

import rtengine

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


@pytest.mark.parametrize("code", blocks("python"), ids=lambda c: c.splitlines()[0][:40])
def test_python_snippets_run(code, monkeypatch):
    monkeypatch.chdir(ROOT)
    exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})


@pytest.mark.parametrize("text", blocks("toml"))
def test_toml_examples_are_valid(text, tmp_path):
    if "[[map]]" in text:                         # a MIDI map, checked against the demo chain
        from rtengine.midi import load_map
        for name in ("verse.toml", "chorus.toml"):
            (tmp_path / name).write_text('[[stage]]\nplugin = "gain"\n')
        (tmp_path / "map.toml").write_text(text)
        engine = rtengine.Engine(str(ROOT / "rtengine/chains/demo.toml"), 48000, 64, 2)
        assert len(load_map(tmp_path / "map.toml", engine)) == 7
        return
    chain = rtengine.Chain.from_toml(text, source="README.md")
    channels = 8 if 'output = "separated"' in text else 2      # the 4-stem separated chain
    rtengine.Engine(chain, sample_rate=48000, block_size=64, channels=channels)


def test_the_two_commands():
    console = "\n".join(blocks("console"))
    assert "./run.sh demo" in console and "./run.sh test" in console
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./run.sh test" in ci
    assert os.access(ROOT / "run.sh", os.X_OK) and os.access(ROOT / ".ci" / "run", os.X_OK)


def test_cli_commands_in_the_readme_exist():
    from rtengine.cli import build_parser
    sub = build_parser()._subparsers._group_actions[0].choices
    for cmd in re.findall(r"\.venv/bin/rtengine (\w+)", README):
        assert cmd in sub, f"README mentions 'rtengine {cmd}', which does not exist"
