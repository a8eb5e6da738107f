"""One rank of the DDP world-size test (run by tests/test_distributed.py, not by pytest).

``python tests/dist_worker.py RANK WORLD STORE_FILE OUT_FILE MODE``: joins a gloo process
group through a file store (no TCP store; gloo's own sockets bind to the loopback device),
trains two models for two SGD steps on this rank's share of a fixed global batch, and saves
the gradients of step 1 and the parameters after step 2. ``MODE`` is ``sample`` (masks keyed
by sample ids), ``generator`` (every rank seeded alike, masks drawn from torch's
generator: the transformers#31412 setting) or ``fsdp`` (FSDP2 with activation
checkpointing, sample-keyed: one step's gradients).
"""

from __future__ import annotations

import datetime
import math
import os
import sys
import warnings

os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.checkpoint import checkpoint

import dropkit

GLOBAL_BATCH = 8
SEED = 1234


class Block(nn.Module):
    """A pre-norm transformer block with dropkit dropout on the attention weights, after
    the attention projection and inside the MLP (each mask has the batch in dim 0)."""

    def __init__(self, dim: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.attn_drop, self.proj_drop = dropkit.nn.Dropout(0.2), dropkit.nn.Dropout(0.2)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), dropkit.nn.Dropout(0.3),
                                 nn.Linear(4 * dim, dim))
        self.head = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).unbind(2)
        q, k, v = (a.transpose(1, 2) for a in (q, k, v))  # [B, H, T, d/H]
        att = self.attn_drop((q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)).softmax(-1))
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj_drop(self.proj(y))
        x = x + self.mlp(self.norm2(x))
        return self.head(x).mean(1)  # [B, 1]


def models() -> dict[str, tuple[nn.Module, torch.Tensor, torch.Tensor]]:
    """name -> (model, global inputs, global targets), the same on every rank."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), dropkit.nn.Dropout(0.5),
                        nn.Linear(32, 32), nn.ReLU(), dropkit.nn.Dropout(0.5), nn.Linear(32, 1))
    block = Block()
    g = torch.Generator().manual_seed(1)
    return {
        "mlp": (mlp, torch.randn(GLOBAL_BATCH, 12, generator=g),
                torch.randn(GLOBAL_BATCH, 1, generator=g)),
        "block": (block, torch.randn(GLOBAL_BATCH, 5, 16, generator=g),
                  torch.randn(GLOBAL_BATCH, 1, generator=g)),
    }


def train(rank: int, world: int, mode: str) -> dict[str, object]:
    """Two SGD steps on rows ``rank::world`` of a shuffled global batch (ids = dataset index)."""
    out: dict[str, object] = {}
    out["ids"] = None
    order = torch.randperm(GLOBAL_BATCH, generator=torch.Generator().manual_seed(2))
    mine = order[rank::world]  # this rank's dataset indices, as a DistributedSampler gives
    out["ids"] = mine
    for name, (model, x, y) in models().items():
        net = DistributedDataParallel(model)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        for step in range(2):
            opt.zero_grad()
            torch.manual_seed(99)  # every rank alike: what breaks masks drawn from torch
            with dropkit.record() as rec:
                if mode == "sample":
                    with dropkit.sample_keys(mine, seed=SEED + step):
                        loss = nn.functional.mse_loss(net(x[mine]), y[mine])
                else:
                    loss = nn.functional.mse_loss(net(x[mine]), y[mine])
            if step == 0:
                out[f"{name}.mask0"] = dropkit.replay(rec[0])  # this rank's rows, first call
            loss.backward()  # DDP averages the rank means: the global mean's gradient
            if step == 0:
                out[f"{name}.grads"] = [p.grad.clone() for p in model.parameters()]
            opt.step()
        out[f"{name}.params"] = [p.detach().clone() for p in model.parameters()]
    return out


class CheckpointedBlock(nn.Module):
    """Linear, ReLU, dropkit dropout, recomputed in backward (activation checkpointing)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.drop = nn.Linear(12, 12), dropkit.nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return checkpoint(lambda t: self.drop(torch.relu(self.fc(t))), x, use_reentrant=False)


def fsdp_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(CheckpointedBlock(), CheckpointedBlock(), nn.Linear(12, 1))


def train_fsdp(rank: int, world: int) -> dict[str, object]:
    """FSDP2 (fully_shard per block and at the root) with activation checkpointing, on this
    rank's share of the batch under sample keys: one step's full gradients."""
    from torch.distributed.fsdp import fully_shard

    model = fsdp_model()
    for block in list(model)[:2]:
        fully_shard(block)
    fully_shard(model)
    x, y = models()["mlp"][1:]
    mine = torch.arange(GLOBAL_BATCH)[rank::world]
    with dropkit.sample_keys(mine, seed=SEED):
        loss = nn.functional.mse_loss(model(x[mine]), y[mine])
    loss.backward()  # after the block: the checkpointed blocks recompute their masks here
    return {"fsdp.grads": [p.grad.full_tensor() for p in model.parameters()]}


def main() -> None:
    rank, world, store_file, out_file, mode = (
        int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
    torch.set_num_threads(1)
    store = dist.FileStore(store_file, world)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = train_fsdp(rank, world) if mode == "fsdp" else train(rank, world, mode)
        result["warnings"] = [str(w.message) for w in caught
                              if issubclass(w.category, dropkit.DistributedSeedWarning)]
        torch.save(result, out_file)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
