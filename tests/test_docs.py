"""The examples in the README and in docstrings run and say what they claim."""

from __future__ import annotations

import doctest
import importlib
import pathlib
import re

import pytest

import dropkit

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODULES = [
    "dropkit.rng",
    "dropkit.mask",
    "dropkit.functional",
    "dropkit.nn",
    "dropkit.backends",
    "dropkit.modes",
    "dropkit.mc",
    "dropkit.mc.predict",
    "dropkit.mc.uncertainty",
    "dropkit.mc.calibration",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def _python_blocks(path: pathlib.Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.parametrize(
    "doc", ["README.md", *sorted(p.name for p in (ROOT / "docs").glob("*.md"))]
)
def test_markdown_python_blocks_run(doc, tmp_path, monkeypatch):
    path = ROOT / doc if doc == "README.md" else ROOT / "docs" / doc
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__doc_example__"}  # blocks run in order
    try:
        for block in _python_blocks(path):
            if "# doc: skip" not in block:
                exec(compile(block, doc, "exec"), namespace)
    finally:
        dropkit.set_backend("auto")
