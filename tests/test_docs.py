"""The examples in the README and in docstrings run and say what they claim."""

from __future__ import annotations

import doctest
import importlib
import pathlib
import pkgutil
import re

import pytest

import dropkit

ROOT = pathlib.Path(__file__).resolve().parents[1]
def _public_modules() -> list[str]:
    """Every module of the package (walked, not listed), private ones left out."""
    names = ["dropkit"]
    for info in pkgutil.walk_packages(dropkit.__path__, prefix="dropkit."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


MODULES = _public_modules()


def test_the_walk_finds_every_layer_and_the_lab() -> None:
    for name in ("dropkit.layers.drop_block", "dropkit.schedules", "dropkit.lab.config",
                 "dropkit.backends.seeded", "dropkit.keys", "dropkit.errors"):
        assert name in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    try:
        result = doctest.testmod(
            module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
        )
    finally:
        dropkit.set_backend("auto")
    assert result.failed == 0


def _python_blocks(path: pathlib.Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.parametrize(
    "doc", ["README.md", *sorted(p.name for p in (ROOT / "docs").glob("*.md"))]
)
def test_markdown_python_blocks_run(doc, tmp_path, monkeypatch):
    path = ROOT / doc if doc == "README.md" else ROOT / "docs" / doc
    monkeypatch.chdir(tmp_path)
    try:
        for block in _python_blocks(path):  # each block on its own, as a reader copies it
            if "# doc: skip" not in block:
                exec(compile(block, doc, "exec"), {"__name__": "__doc_example__"})
    finally:
        dropkit.set_backend("auto")
