"""dropkit.lab.data: every loader on good files and on each kind of bad one."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("mnist1d")

from dropkit.lab import data as D


def _arrays(n: int = 30, m: int = 10, d: int = 6, k: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.normal(size=(n, d)).astype(np.float32),
        "y_train": np.arange(n) % k,
        "x_test": rng.normal(size=(m, d)).astype(np.float32),
        "y_test": np.arange(m) % k,
    }


def _npz(tmp_path: Path, **arrays: np.ndarray) -> Path:
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return path


def _idx_bytes(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + \
        arr.astype(np.uint8).tobytes()


def _idx_folder(tmp_path: Path, gz: bool = True, truncate: str | None = None) -> Path:
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (20, 4, 4)),
        "train-labels-idx1-ubyte": np.arange(20) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (10, 4, 4)),
        "t10k-labels-idx1-ubyte": np.arange(10) % 10,
    }
    folder = tmp_path / "idx"
    folder.mkdir()
    for stem, arr in arrays.items():
        raw = _idx_bytes(np.asarray(arr))
        if stem == truncate:
            raw = raw[:-7]
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)
    return folder


def test_npz_good(tmp_path: Path) -> None:
    ds = D.load_data(str(_npz(tmp_path, **_arrays())))
    assert ds.x_train.shape == (30, 6) and ds.x_train.dtype == np.float32
    assert ds.y_train.dtype == np.int64 and ds.n_classes == 3
    assert abs(float(ds.x_train.mean())) < 1e-5  # standardised with the train statistics
    assert ds.fingerprint == D.load_npz(_npz(tmp_path, **_arrays())).fingerprint


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"x_train": np.zeros(30)}, "shape"),
        ({"x_test": np.zeros((10, 5))}, "features"),
        ({"y_train": np.arange(31) % 3}, "31 labels"),
        ({"y_test": np.full(10, -1)}, "outside"),
        ({"y_train": np.eye(3)[np.arange(30) % 3]}, "one-hot"),
        ({"y_train": (np.arange(30) % 3) + 0.5}, "whole class"),
        ({"x_train": np.full((30, 6), np.nan)}, "NaN"),
        ({"x_test": np.array([["a"] * 6] * 10)}, "numbers"),
        ({"y_train": np.zeros(30, dtype=np.int64)}, "two classes"),
    ],
)
def test_npz_bad(tmp_path: Path, change: dict[str, np.ndarray], message: str) -> None:
    arrays = {**_arrays(), **change}
    with pytest.raises(D.DataError, match=message):
        D.load_data(str(_npz(tmp_path, **arrays)))


def test_npz_missing_array_and_garbage(tmp_path: Path) -> None:
    arrays = _arrays()
    arrays.pop("y_test")
    with pytest.raises(D.DataError, match=r"missing arrays \['y_test'\]"):
        D.load_npz(_npz(tmp_path, **arrays))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(D.DataError, match="cannot read"):
        D.load_npz(bad)


def test_labels_beyond_declared_classes() -> None:
    a = _arrays()
    with pytest.raises(D.DataError, match=r"outside 0\.\.1"):
        D.validate("toy", a["x_train"], a["y_train"], a["x_test"], a["y_test"], n_classes=2)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_good(tmp_path: Path, gz: bool) -> None:
    ds = D.load_data(str(_idx_folder(tmp_path, gz=gz)))
    assert ds.x_train.shape == (20, 16) and ds.x_test.shape == (10, 16)
    assert ds.n_classes == 10


def test_idx_truncated(tmp_path: Path) -> None:
    with pytest.raises(D.DataError, match="truncated"):
        D.load_data(str(_idx_folder(tmp_path, truncate="t10k-images-idx3-ubyte")))


def test_idx_truncated_gzip_stream(tmp_path: Path) -> None:
    folder = _idx_folder(tmp_path)
    path = folder / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(D.DataError, match="truncated"):
        D.load_idx_folder(folder)


def test_idx_bad_magic_and_missing_file(tmp_path: Path) -> None:
    folder = _idx_folder(tmp_path, gz=False)
    (folder / "train-labels-idx1-ubyte").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(D.DataError, match="magic"):
        D.load_idx_folder(folder)
    (folder / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(D.DataError, match="missing train-labels-idx1-ubyte"):
        D.load_idx_folder(folder)


def test_fashion_missing_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(D.DataError, match="dataset-fashion-mnist"):
        D.load_fashion_mnist(tmp_path / "nowhere")


def test_unknown_name() -> None:
    with pytest.raises(D.DataError, match="unknown data 'nosuch'"):
        D.load_data("nosuch")


def test_digits() -> None:
    ds = D.load_digits()
    assert ds.x_train.shape == (1297, 64) and ds.x_test.shape == (500, 64)
    assert ds.n_classes == 10


def test_mnist1d_is_the_published_split(tmp_path: Path) -> None:
    ds = D.load_mnist1d(cache_dir=tmp_path)
    assert ds.x_train.shape == (4000, 40) and ds.x_test.shape == (1000, 40)
    assert sorted(np.unique(ds.y_train).tolist()) == list(range(10))
    assert (tmp_path / "mnist1d-seed42.npz").exists()  # cached there, not in the cwd
    again = D.load_mnist1d(cache_dir=tmp_path)
    assert again.fingerprint == ds.fingerprint


@pytest.mark.skipif(
    not Path(D.FASHION_DIR).is_dir(), reason="Debian package dataset-fashion-mnist not installed"
)
def test_fashion_mnist_from_the_debian_package() -> None:
    d = D.load_fashion_mnist()
    assert d.x_train.shape == (60000, 784) and d.x_test.shape == (10000, 784)
    assert d.n_classes == 10 and set(d.y_train.tolist()) == set(range(10))
