"""Data-parallel training that does not depend on the world size (gloo, CPU, 127.0.0.1).

With ``dropkit.sample_keys`` one process with the global batch and 1, 2 or 4 DDP processes
with a share of it each compute the same gradients (up to float summation order), hence the
same run, for an MLP and a small transformer block. Without sample keys, ranks seeded alike
draw the same masks for different samples, the gradients change with the world size, and
dropkit warns once per process (the transformers#31412 setting).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import dropkit

sys.path.insert(0, str(Path(__file__).parent))
import dist_worker

WORKER = Path(__file__).with_name("dist_worker.py")
TIMEOUT_S = 90


_RUNS: dict[tuple[int, str], list[dict]] = {}


def _world(tmp_path: Path, world: int, mode: str) -> list[dict]:
    """Run ``world`` worker processes (once per module); their results, rank order.

    Bounded in time: each process is killed after ``TIMEOUT_S``.
    """
    if (world, mode) not in _RUNS:
        _RUNS[world, mode] = _spawn(tmp_path, world, mode)
    return _RUNS[world, mode]


def _spawn(tmp_path: Path, world: int, mode: str) -> list[dict]:
    store = tmp_path / f"store-{world}-{mode}"
    outs = [tmp_path / f"out-{world}-{mode}-{r}.pt" for r in range(world)]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), str(r), str(world), str(store),
                          str(outs[r]), mode], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for r in range(world)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=TIMEOUT_S)[0])
    finally:
        for p in procs:
            p.kill()
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log
    return [torch.load(o) for o in outs]


def _reference(mode: str) -> dict[str, list[torch.Tensor]]:
    """One process, no process group, the whole batch in dataset order."""
    out: dict[str, list[torch.Tensor]] = {}
    ids = torch.arange(dist_worker.GLOBAL_BATCH)
    for name, (model, x, y) in dist_worker.models().items():
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for step in range(2):
            opt.zero_grad()
            torch.manual_seed(99)
            if mode == "sample":
                with dropkit.sample_keys(ids, seed=dist_worker.SEED + step):
                    loss = nn.functional.mse_loss(model(x), y)
            else:
                loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            if step == 0:
                out[f"{name}.grads"] = [p.grad.clone() for p in model.parameters()]
            opt.step()
        out[f"{name}.params"] = [p.detach().clone() for p in model.parameters()]
    return out


def _close(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    # float summation order only: a few ulps of the largest entry of each tensor
    return all(torch.allclose(u, v, rtol=1e-5, atol=1e-6 * max(1.0, float(u.abs().max())))
               for u, v in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def reference() -> dict[str, list[torch.Tensor]]:
    return _reference("sample")


@pytest.mark.parametrize("world", [1, 2, 4])
def test_ddp_gradients_do_not_depend_on_the_world_size(
    tmp_path: Path, world: int, reference: dict[str, list[torch.Tensor]]
) -> None:
    results = _world(tmp_path, world, "sample")
    for key, expect in reference.items():
        for r, res in enumerate(results):
            assert _close(res[key], expect), (world, r, key)
    assert all(res["warnings"] == [] for res in results)


def test_sample_keyed_masks_follow_the_samples_across_ranks(tmp_path: Path) -> None:
    """Rank r's mask rows are, for its samples, the rows of the one-process mask."""
    one, four = _world(tmp_path, 1, "sample"), _world(tmp_path, 4, "sample")
    full, ids = one[0]["mlp.mask0"], one[0]["ids"]
    position = {int(i): n for n, i in enumerate(ids)}
    for res in four:
        rows = [position[int(i)] for i in res["ids"]]
        assert torch.equal(res["mlp.mask0"], full[rows])


def test_without_sample_keys_ranks_share_masks_and_dropkit_warns(tmp_path: Path) -> None:
    """The control: masks from torch's generator, every rank seeded alike. Both ranks draw
    the same mask for different samples, the gradients change with the world size, and
    each rank is warned once."""
    one, two = _world(tmp_path, 1, "generator"), _world(tmp_path, 2, "generator")
    assert torch.equal(two[0]["mlp.mask0"], two[1]["mlp.mask0"])
    assert not torch.equal(two[0]["ids"], two[1]["ids"])
    assert not _close(two[0]["mlp.grads"], one[0]["mlp.grads"])
    assert one[0]["warnings"] == []
    for res in two:
        assert len(res["warnings"]) == 1 and "sample_keys" in res["warnings"][0]


def test_fsdp2_with_checkpointing_matches_one_process(tmp_path: Path) -> None:
    """FSDP2 (fully_shard) with activation checkpointing and sample keys on 2 ranks: the
    full gradients of the one-process run on the whole batch."""
    model = dist_worker.fsdp_model()
    x, y = dist_worker.models()["mlp"][1:]
    with dropkit.sample_keys(torch.arange(dist_worker.GLOBAL_BATCH), seed=dist_worker.SEED):
        nn.functional.mse_loss(model(x), y).backward()
    expect = [p.grad for p in model.parameters()]
    for res in _world(tmp_path, 2, "fsdp"):
        assert _close(res["fsdp.grads"], expect)
    # The check can fail: without sample keys the ranks' masks differ from the reference.
    model.zero_grad()
    nn.functional.mse_loss(model(x), y).backward()
    assert not _close([p.grad for p in model.parameters()], expect)
