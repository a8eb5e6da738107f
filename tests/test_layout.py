"""The package layout is part of the API: public class paths, old checkpoints, one-way imports.

``torch.save(model)`` pickles every module by its class's ``__module__``; a private path in a
user's checkpoint breaks it at the next refactor. Classes live in their variant's public
module under ``dropkit.layers``; 0.1.0's private paths stay as aliases.
"""

from __future__ import annotations

import ast
import inspect
import io
import pathlib
import pickletools
import subprocess
import sys
import zipfile

import pytest
import torch
from torch import nn

import dropkit

ROOT = pathlib.Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "dropkit"
FIXTURE = ROOT / "tests" / "fixtures" / "model-0.1.0.pt"


def _public_classes() -> list[type]:
    return [obj for name in dropkit.nn.__all__ if inspect.isclass(obj := getattr(dropkit.nn, name))]


def _every_module() -> nn.Module:
    """One instance of every public dropkit module class."""
    return nn.Sequential(
        dropkit.nn.Dropout(0.1), dropkit.nn.Dropout1d(0.2), dropkit.nn.Dropout2d(0.3),
        dropkit.nn.Dropout3d(0.4), dropkit.nn.AlphaDropout(0.1),
        dropkit.nn.FeatureAlphaDropout(0.2), dropkit.nn.GaussianDropout(0.3),
        dropkit.nn.LockedDropout(0.2), dropkit.nn.DropPath(0.1), dropkit.nn.DropBlock2d(0.1, 3),
        dropkit.nn.DropConnect(nn.Linear(4, 3), 0.5, scaling="classic"),
        dropkit.nn.EmbeddingDropout(nn.Embedding(10, 4), 0.1),
        dropkit.nn.ConcreteDropout(nn.Linear(4, 2), p=0.2),
        dropkit.nn.StochasticModule(), dropkit.nn.DropoutBase(0.3),
    )


def _pickled_globals(data: bytes) -> set[str]:
    """Every ``module.qualname`` a pickle refers to (GLOBAL and STACK_GLOBAL opcodes)."""
    found, strings = set(), []
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            found.add(str(arg).replace(" ", "."))
        elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(str(arg))
        elif op.name == "STACK_GLOBAL":
            found.add(f"{strings[-2]}.{strings[-1]}")
    return found


def test_every_public_class_has_a_public_module_path() -> None:
    classes = _public_classes()
    assert len(classes) >= 15
    for cls in classes:
        assert not any(part.startswith("_") for part in cls.__module__.split(".")), cls
        assert getattr(sys.modules[cls.__module__], cls.__name__) is cls
    assert dropkit.DtypeError.__module__ == "dropkit.errors"


def test_torch_save_writes_no_private_module_path() -> None:
    model = _every_module()
    buffer = io.BytesIO()
    torch.save(model, buffer, pickle_protocol=2)  # protocol 2: GLOBAL opcodes, easy to read
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    paths = {g for g in _pickled_globals(data) if g.startswith("dropkit")}
    assert len(paths) >= 13, paths
    private = [g for g in paths if any(p.startswith("_") for p in g.split(".")[:-1])]
    assert not private, private
    loaded = torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)
    assert [type(m) for m in loaded] == [type(m) for m in model]


def test_a_checkpoint_written_by_dropkit_0_1_0_still_loads() -> None:
    """The fixture was pickled by 0.1.0, with its private paths (``dropkit._variants.*``)."""
    raw = FIXTURE.read_bytes()
    assert b"dropkit._variants.nn_structured" in raw  # the old paths really are in it
    model = torch.load(FIXTURE, weights_only=False)
    names = [type(m).__name__ for m in model]
    assert names == [
        "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout",
        "FeatureAlphaDropout", "GaussianDropout", "LockedDropout", "DropPath", "DropBlock2d",
        "DropConnect", "EmbeddingDropout", "ConcreteDropout",
    ]
    for m in model:
        assert type(m) is getattr(dropkit.nn, type(m).__name__)  # today's classes
    assert model[10].scaling == "classic" and model[10].linear.weight.shape == (3, 4)
    model.eval()
    x = torch.randn(2, 4)
    assert torch.equal(model[0](x), x)
    assert model[12](x).shape == (2, 2)
    assert repr(model[8]) == "DropPath(p=0.1, scale_by_keep=True)"


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


@pytest.mark.parametrize(
    "path", sorted(p.relative_to(SRC).as_posix() for p in (SRC / "layers").glob("*.py"))
)
def test_layers_never_import_the_reexporting_modules(path: str) -> None:
    """nn -> functional -> layers -> backends: a layer never imports nn, functional or mc."""
    imported = _imports(SRC / path)
    for upper in ("dropkit.nn", "dropkit.functional", "dropkit.mc", "dropkit.modes", "dropkit.lab"):
        assert not any(i == upper or i.startswith(upper + ".") for i in imported), (path, upper)


def test_the_library_never_imports_the_lab_or_the_cli_or_the_aliases() -> None:
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith(("lab/", "_variants/")) or rel == "cli.py":
            continue
        imported = _imports(path)
        for top in ("dropkit.lab", "dropkit.cli", "dropkit._variants"):
            assert not any(i == top or i.startswith(top + ".") for i in imported), (rel, top)


def test_each_layer_module_imports_on_its_own() -> None:
    """No import circle: every variant module imports first in a fresh interpreter."""
    names = sorted(p.stem for p in (SRC / "layers").glob("*.py") if p.stem != "__init__")
    for name in names:
        code = f"import dropkit.layers.{name}"
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, (name, done.stderr[-2000:])


def test_import_dropkit_stays_light() -> None:
    """``import dropkit`` loads no compiler, no DTensor, no Dask: those load on first use
    (``dropkit.sample_keys``, a DTensor input, ``--scheduler``)."""
    code = (
        "import sys, dropkit\n"
        "heavy = ['torch._dynamo', 'torch.distributed.tensor', 'distributed',\n"
        "         'dropkit.sampling', 'dropkit.backends.sharded']\n"
        "print([m for m in heavy if m in sys.modules])\n"
        "dropkit.sample_keys\n"
        "print('dropkit.sampling' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout.split("\n")
    assert out[0] == "[]" and out[1] == "True", out
