"""Data sets for the lab, each checked before use: MNIST-1D, digits, Fashion-MNIST, your own.

Every loader returns a :class:`Dataset` through :func:`validate`, which turns bad shapes,
dtypes, label ranges and non-finite values into a :class:`DataError` with a message that
names the problem and the fix (never a traceback from deep inside numpy or torch).

Sources:
    MNIST-1D (Greydanus & Kobak 2024), generated locally with the ``mnist1d`` package
    (4000 train / 1000 test, identical to the published set for generator seed 42);
    scikit-learn's bundled 8x8 digits; Fashion-MNIST (Xiao et al. 2017) from the Debian
    package ``dataset-fashion-mnist``; an ``.npz`` with ``x_train, y_train, x_test,
    y_test``; a folder of MNIST-format IDX files.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dropkit.lab._deps import need

__all__ = [
    "FASHION_DIR",
    "DataError",
    "Dataset",
    "load_data",
    "load_digits",
    "load_fashion_mnist",
    "load_idx_folder",
    "load_mnist1d",
    "load_npz",
    "read_idx",
    "validate",
]

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
_IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DataError(ValueError):
    """A data set that cannot be used as given; the message says why and what to do."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Standardised features and integer labels; ``fingerprint`` hashes the arrays.

    Shape: ``x_train [N, D] float32``, ``y_train [N] int64``, ``x_test [M, D]``, ``y_test [M]``.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    fingerprint: str

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])


def _fingerprint(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _check_x(x: object, what: str, name: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise DataError(f"{name}: {what} must be a numpy array, but got {type(x).__name__}")
    if x.dtype.kind not in "biuf":
        raise DataError(f"{name}: {what} must hold numbers, but has dtype {x.dtype}")
    if x.ndim < 2:
        raise DataError(
            f"{name}: {what} must have shape [n_examples, ...features], but has shape "
            f"{x.shape}; reshape a single feature vector to [n, 1]"
        )
    if x.shape[0] == 0 or x[0].size == 0:
        raise DataError(f"{name}: {what} is empty (shape {x.shape})")
    flat = x.reshape(x.shape[0], -1).astype(np.float32)
    bad = ~np.isfinite(flat)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise DataError(
            f"{name}: {what} has {int(bad.sum())} NaN or infinite values (first in row {row}); "
            "clean or impute them first"
        )
    return flat


def _check_y(y: object, what: str, name: str, n: int) -> np.ndarray:
    if not isinstance(y, np.ndarray):
        raise DataError(f"{name}: {what} must be a numpy array, but got {type(y).__name__}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(
            f"{name}: {what} must be a 1-D array of class indices, but has shape {y.shape}; "
            "pass integer labels, not one-hot rows"
        )
    if y.shape[0] != n:
        raise DataError(f"{name}: {what} has {y.shape[0]} labels but there are {n} examples")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or not np.equal(np.round(y), y).all():
            raise DataError(f"{name}: {what} must be whole class indices, but has {y.dtype} values")
    elif y.dtype.kind not in "biu":
        raise DataError(f"{name}: {what} must be integer class indices, but has dtype {y.dtype}")
    return y.astype(np.int64)


def validate(
    name: str,
    x_train: object,
    y_train: object,
    x_test: object,
    y_test: object,
    n_classes: int | None = None,
) -> Dataset:
    """Check four arrays and return a standardised :class:`Dataset` (or raise DataError).

    Features are flattened to ``[n, D]`` float32 and standardised with the training set's
    mean and standard deviation (one scalar each). Labels must be ``0 .. n_classes - 1``.

    Example:
        >>> import numpy as np
        >>> ds = validate("toy", np.zeros((4, 3)), np.array([0, 1, 0, 1]),
        ...               np.ones((2, 3)), np.array([1, 0]))
        >>> ds.x_train.shape, ds.n_classes
        ((4, 3), 2)
        >>> validate("toy", np.zeros((4, 3)), np.array([0, 1, 0, 5]),
        ...          np.ones((2, 3)), np.array([1, 0]), n_classes=3)
        Traceback (most recent call last):
        ...
        dropkit.lab.data.DataError: toy: y_train has labels outside 0..2: [5]
    """
    xtr = _check_x(x_train, "x_train", name)
    xte = _check_x(x_test, "x_test", name)
    if xtr.shape[1] != xte.shape[1]:
        raise DataError(
            f"{name}: x_train has {xtr.shape[1]} features per example but x_test has "
            f"{xte.shape[1]}; both must have the same shape after the first axis"
        )
    ytr = _check_y(y_train, "y_train", name, xtr.shape[0])
    yte = _check_y(y_test, "y_test", name, xte.shape[0])
    k = int(max(ytr.max(), yte.max())) + 1 if n_classes is None else int(n_classes)
    for what, y in (("y_train", ytr), ("y_test", yte)):
        bad = np.unique(y[(y < 0) | (y >= k)])
        if bad.size:
            raise DataError(f"{name}: {what} has labels outside 0..{k - 1}: {bad[:10].tolist()}")
    if k < 2 or np.unique(ytr).size < 2:
        raise DataError(f"{name}: y_train needs at least two classes, but has {np.unique(ytr)}")
    if n_classes is None:  # classes are 0..C-1, each present: a stray label is no new class
        absent = sorted(set(range(k)) - set(np.unique(ytr).tolist()))
        if absent:
            rare = {c: int((ytr == c).sum() + (yte == c).sum()) for c in range(k)}
            raise DataError(
                f"{name}: labels must be the classes 0..C-1, each in y_train, but classes "
                f"{absent[:10]} never occur there (label counts: {rare}); remap the labels "
                "to 0..C-1, or drop the stray ones"
            )
    mean, std = float(xtr.mean()), float(xtr.std())
    std = std if std > 0 else 1.0
    xtr = ((xtr - mean) / std).astype(np.float32)
    xte = ((xte - mean) / std).astype(np.float32)
    fp = _fingerprint(xtr, ytr, xte, yte)
    return Dataset(name, xtr, ytr, xte, yte, k, fp)


def _cache_dir(cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dropkit"


def load_mnist1d(seed: int = 42, cache_dir: str | Path | None = None) -> Dataset:
    """MNIST-1D generated locally (no network); cached as ``mnist1d-seed{seed}.npz``.

    ``seed=42`` is the published data set: 4000 training and 1000 test sequences of 40.
    """
    path = _cache_dir(cache_dir) / f"mnist1d-seed{seed}.npz"
    if path.exists():
        with np.load(path) as z:
            arrays = {k: z[k] for k in ("x", "y", "x_test", "y_test")}
    else:
        mdata = need("mnist1d.data")
        args = mdata.get_dataset_args()
        args.seed = seed
        args.num_samples, args.train_split = 5000, 0.8  # 4000 / 1000, the published split
        raw = mdata.make_dataset(args)  # no network, no pickle in the working directory
        arrays = {k: np.asarray(raw[k]) for k in ("x", "y", "x_test", "y_test")}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    return validate(
        "mnist1d" if seed == 42 else f"mnist1d-seed{seed}",
        arrays["x"], arrays["y"], arrays["x_test"], arrays["y_test"], n_classes=10,
    )


def load_digits() -> Dataset:
    """scikit-learn's bundled 8x8 digits (1797 images): a fixed split of 1297 / 500."""
    datasets = need("sklearn.datasets")
    bunch = datasets.load_digits()
    order = np.random.default_rng(0).permutation(len(bunch.target))
    x, y = bunch.data[order], bunch.target[order]
    return validate("digits", x[:1297], y[:1297], x[1297:], y[1297:], n_classes=10)


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (``.gz`` or plain); DataError if it is malformed or truncated.

    Format: two zero bytes, a dtype code, the number of dimensions, one big-endian uint32
    per dimension, then the values in row-major order.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                raw = fh.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: cannot read IDX file ({err}); the file may be truncated") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: IDX header is truncated or has 0 dimensions")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    need_bytes = int(np.prod(dims)) * dtype.itemsize
    body = raw[4 + 4 * ndim :]
    if len(body) != need_bytes:
        raise DataError(
            f"{path}: header says shape {dims} ({need_bytes} bytes) but the file holds "
            f"{len(body)} bytes of data; the file is truncated or corrupt"
        )
    return np.frombuffer(body, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def _find_idx(folder: Path, stem: str) -> Path:
    for cand in (folder / stem, folder / f"{stem}.gz"):
        if cand.exists():
            return cand
    raise DataError(
        f"{folder}: missing {stem}[.gz]; an IDX folder needs "
        + ", ".join(f"{s}[.gz]" for s in _IDX_NAMES.values())
    )


def load_idx_folder(folder: str | Path, name: str | None = None) -> Dataset:
    """A folder of MNIST-format IDX files (``train-images-idx3-ubyte[.gz]`` and the other three)."""
    folder = Path(folder)
    arrays = {k: read_idx(_find_idx(folder, stem)) for k, stem in _IDX_NAMES.items()}
    if arrays["x_train"].dtype == np.uint8:
        arrays["x_train"] = arrays["x_train"] / np.float32(255)
        arrays["x_test"] = arrays["x_test"] / np.float32(255)
    return validate(name or str(folder), **arrays)


def load_fashion_mnist(folder: str | Path = FASHION_DIR) -> Dataset:
    """Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (60000 / 10000)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(
            f"Fashion-MNIST not found in {folder}; install the Debian package "
            "dataset-fashion-mnist (sudo apt install dataset-fashion-mnist), or pass "
            "--data DIR with its four IDX files"
        )
    ds = load_idx_folder(folder, "fashion-mnist")
    if ds.n_classes != 10:
        raise DataError(f"{folder}: Fashion-MNIST should have 10 classes, found {ds.n_classes}")
    return ds


def load_npz(path: str | Path) -> Dataset:
    """Your own arrays: an ``.npz`` holding ``x_train, y_train, x_test, y_test``."""
    path = Path(path)
    try:  # our own handle: numpy leaks its own when the zip is truncated
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
            missing = [k for k in _IDX_NAMES if k not in z.files]
            if missing:
                raise DataError(
                    f"{path}: missing arrays {missing}; an .npz needs x_train, y_train, "
                    f"x_test, y_test (found {sorted(z.files)})"
                )
            arrays = {k: z[k] for k in _IDX_NAMES}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: cannot read .npz file, is it truncated? ({err})") from err
    return validate(str(path), **arrays)


def load_data(data: str, cache_dir: str | Path | None = None) -> Dataset:
    """Resolve ``--data``: a name (mnist1d, digits, fashion-mnist) or a path (.npz, folder).

    Example:
        >>> load_data("digits").x_train.shape
        (1297, 64)
    """
    name = data.lower()
    if name in ("mnist1d", "mnist-1d"):
        return load_mnist1d(42, cache_dir)
    if name.startswith("mnist1d-seed"):
        return load_mnist1d(int(name.removeprefix("mnist1d-seed")), cache_dir)
    if name == "digits":
        return load_digits()
    if name in ("fashion-mnist", "fashion"):
        return load_fashion_mnist()
    path = Path(data)
    if path.is_dir():
        return load_idx_folder(path)
    if path.suffix == ".npz" and path.is_file():
        return load_npz(path)
    if not path.exists() and (path.suffix or len(path.parts) > 1):
        where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
        raise DataError(f"--data {data!r}: file not found{where}")
    raise DataError(
        f"unknown data {data!r}: use mnist1d, digits, fashion-mnist, a .npz file with "
        "x_train/y_train/x_test/y_test, or a folder of MNIST-format IDX files"
    )
