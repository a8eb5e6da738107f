"""dropkit on sharded tensors (DTensor, gloo on CPU, 127.0.0.1): the global mask, per shard.

Every elementwise and channel variant (functional and modules), on every placement of a
1-D (2 ranks) and a 2-D (2 x 2) mesh, uneven shards included, returns a DTensor with the
input's placements whose full tensor equals the variant on the full tensor, bit for bit,
forward and backward; a Partial input takes the mask per summand (and is refused with a
bias). A tensor-parallel MLP (Colwise, Rowwise)
and attention block (SequenceParallel, Colwise, Rowwise) train with the losses and
gradients of the unsharded blocks. The checks run in tests/dtensor_worker.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("dtensor_worker.py")
TIMEOUT_S = 120


def _run(tmp_path: Path, world: int) -> dict[str, str | None]:
    """Run the worker on ``world`` ranks (killed after ``TIMEOUT_S``); rank 0's results,
    after checking every rank agrees."""
    store, outs = tmp_path / "store", [tmp_path / f"out-{r}.pt" for r in range(world)]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(r), str(world), str(store),
                               str(outs[r])], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in range(world)]
    logs = []
    try:
        logs = [p.communicate(timeout=TIMEOUT_S)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log
    results = [torch.load(o) for o in outs]
    for other in results[1:]:
        assert other.keys() == results[0].keys()
    return {k: next((r[k] for r in results if r[k]), None) for k in results[0]}


@pytest.mark.parametrize("world", [2, 4])
def test_every_check_passes_on_every_rank(tmp_path: Path, world: int) -> None:
    results = _run(tmp_path, world)
    expected = 13 * 5 + (5 if world == 2 else 0)  # variants x placements; 2 partial, control, 2 TP
    assert len(results) == expected, sorted(results)
    failed = {name: msg for name, msg in results.items() if msg is not None}
    assert not failed, "\n\n".join(f"{k}:\n{v}" for k, v in failed.items())
