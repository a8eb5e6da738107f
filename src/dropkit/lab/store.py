"""Results that survive: one SQLite file (stdlib ``sqlite3``) in the output folder.

Two tables. ``trials``: one row per training run, written the moment it finishes, keyed by
the trial spec's hash (unique on data, config hash, p, seed and training subset; the
experiment that first asked for it is recorded, and experiments share trials). Arrays
(test probabilities, weights) are kept as one ``.npz`` blob. ``experiments``: each
experiment's analysed result (its verdict and the numbers behind every figure), keyed by
name, with the hash of its config. A rerun with the same ``--out`` reads both and
recomputes nothing that is stored; the report is built from this file alone.
"""

from __future__ import annotations

import dataclasses
import io
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np

from dropkit.lab.config import TrialSpec

__all__ = ["Store", "pack", "unpack"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
    key TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,
    data TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    p REAL NOT NULL,
    seed INTEGER NOT NULL,
    subset TEXT NOT NULL,
    spec TEXT NOT NULL,
    result TEXT NOT NULL,
    arrays BLOB NOT NULL,
    wall_s REAL NOT NULL,
    created REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS trials_by_config
    ON trials (data, config_hash, p, seed, subset);
CREATE TABLE IF NOT EXISTS experiments (
    name TEXT PRIMARY KEY,
    config_hash TEXT NOT NULL,
    config TEXT NOT NULL,
    result TEXT NOT NULL,
    wall_s REAL NOT NULL,
    created REAL NOT NULL
);
"""


def pack(arrays: dict[str, np.ndarray]) -> bytes:
    """Arrays as one ``.npz`` blob."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def unpack(blob: bytes) -> dict[str, np.ndarray]:
    """Inverse of :func:`pack`."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


class Store:
    """The lab's database at ``<out>/results.sqlite``; every write is committed at once.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     s = Store(d)
        ...     s.put_experiment("x", "h", {"a": 1}, {"holds": True}, 0.5)
        ...     s.get_experiment("x", "h")["holds"]
        True
    """

    FILENAME = "results.sqlite"

    def __init__(self, out: str | Path) -> None:
        self.path = Path(out) / self.FILENAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path)
        try:
            self._db.executescript(_SCHEMA)
            self._db.commit()
        except sqlite3.DatabaseError as err:
            self._db.close()
            raise RuntimeError(
                f"{self.path} is not a readable dropkit results store ({err}); it may be "
                "corrupt: move it away to start over, or use another --out"
            ) from err

    def close(self) -> None:
        self._db.close()

    def get_trial(self, spec: TrialSpec) -> tuple[dict[str, Any], bytes] | None:
        """(result, arrays blob) of a stored trial, or None."""
        row = self._db.execute(
            "SELECT result, arrays FROM trials WHERE key = ?", (spec.key(),)
        ).fetchone()
        return None if row is None else (json.loads(row[0]), row[1])

    def has_trial(self, spec: TrialSpec) -> bool:
        return self._db.execute(
            "SELECT 1 FROM trials WHERE key = ?", (spec.key(),)
        ).fetchone() is not None

    def put_trial(
        self, experiment: str, spec: TrialSpec, result: dict[str, Any], blob: bytes
    ) -> None:
        """Store one finished trial (committed before returning)."""
        self._db.execute(
            "INSERT OR REPLACE INTO trials VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                spec.key(), experiment, spec.data, spec.config_hash(), spec.p, spec.seed,
                spec.subset, json.dumps(dataclasses.asdict(spec), sort_keys=True),
                json.dumps(result), blob, float(result.get("wall_s", 0.0)), time.time(),
            ),
        )
        self._db.commit()

    def count_trials(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM trials").fetchone()[0])

    def get_experiment(self, name: str, config_hash: str | None = None) -> dict[str, Any] | None:
        """The stored result of ``name`` (only if its config hash matches, when given)."""
        row = self._db.execute(
            "SELECT config_hash, result, wall_s FROM experiments WHERE name = ?", (name,)
        ).fetchone()
        if row is None or (config_hash is not None and row[0] != config_hash):
            return None
        result = json.loads(row[1])
        result["wall_s"] = row[2]
        return result

    def put_experiment(
        self, name: str, config_hash: str, config: dict[str, Any], result: dict[str, Any],
        wall_s: float,
    ) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO experiments VALUES (?, ?, ?, ?, ?, ?)",
            (name, config_hash, json.dumps(config, sort_keys=True), json.dumps(result),
             float(wall_s), time.time()),
        )
        self._db.commit()

    def experiments(self) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        """Every stored experiment as (name, config, result with ``wall_s``)."""
        rows = self._db.execute("SELECT name, config, result, wall_s FROM experiments").fetchall()
        out = []
        for name, config, result, wall in rows:
            res = json.loads(result)
            res["wall_s"] = wall
            out.append((name, json.loads(config), res))
        return out
