"""One rank of the DTensor tests (run by tests/test_dtensor.py, not by pytest).

``python tests/dtensor_worker.py RANK WORLD STORE_FILE OUT_FILE``: joins a gloo group
through a file store (gloo's sockets on the loopback device), runs every check, and saves a
dict ``check name -> None (passed) or a message``. World 2: a 1-D mesh and the
tensor-parallel MLP and attention block; world 4: a 2 x 2 mesh.
"""

from __future__ import annotations

import datetime
import math
import os
import sys
import traceback
from collections.abc import Callable

os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import (
    DTensor,
    Partial,
    Replicate,
    Shard,
    distribute_tensor,
    init_device_mesh,
)
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)

import dropkit
import dropkit.functional as DF

# name -> f(x): elementwise and channel variants, functional and modules, seeded
VARIANTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "dropout": lambda x: DF.dropout(x, 0.5, seed=3),
    "dropout classic": lambda x: DF.dropout(x, 0.4, scaling="classic", seed=3),
    "dropout broadcast": lambda x: DF.dropout(x, 0.5, seed=8, broadcast_dims=(1,)),
    "dropout2d": lambda x: DF.dropout2d(x, 0.5, seed=4),
    "alpha_dropout": lambda x: DF.alpha_dropout(x, 0.3, True, seed=5),
    "feature_alpha_dropout": lambda x: DF.feature_alpha_dropout(x, 0.3, True, seed=6),
    "gaussian_dropout": lambda x: DF.gaussian_dropout(x, 0.3, seed=7),
    "nn.Dropout": lambda x: _seeded(lambda: dropkit.nn.Dropout(0.5), x),
    "nn.Dropout2d": lambda x: _seeded(lambda: dropkit.nn.Dropout2d(0.5), x),
    "nn.AlphaDropout": lambda x: _seeded(lambda: dropkit.nn.AlphaDropout(0.2), x),
    "nn.GaussianDropout": lambda x: _seeded(lambda: dropkit.nn.GaussianDropout(0.2), x),
    "sample-keyed dropout2d": lambda x: _sample_keyed(lambda t: DF.dropout2d(t, 0.5), x),
    "sample-keyed gaussian": lambda x: _sample_keyed(lambda t: DF.gaussian_dropout(t, 0.3), x),
}
SHAPE = (5, 6, 3, 7)  # uneven on 2 and 4 ranks in dims 0, 2 and 3


def _seeded(make: Callable[[], nn.Module], x: torch.Tensor) -> torch.Tensor:
    """A module forward with the seed torch's generator gives (the same on every rank)."""
    torch.manual_seed(11)
    return make().train()(x)


def _sample_keyed(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``fn`` inside a sample-keys block (per-row keys: the rows are dim 0)."""
    with dropkit.sample_keys(torch.tensor([9, 4, 2**33, 0, 17]), seed=21):
        return fn(x)


def _check(results: dict[str, str | None], name: str, fn: Callable[[], None]) -> None:
    try:
        fn()
        results[name] = None
    except Exception:
        results[name] = traceback.format_exc()


def variants(mesh: object, placements_list: list[list[object]], results: dict) -> None:
    """Forward and backward of every variant on every placement equal the full tensor's."""
    g = torch.Generator().manual_seed(0)
    full, grad = torch.randn(SHAPE, generator=g), torch.randn(SHAPE, generator=g)
    for name, fn in VARIANTS.items():
        leaf = full.clone().requires_grad_()
        ref = fn(leaf)
        (ref_grad,) = torch.autograd.grad(ref, leaf, grad)
        for placements in placements_list:

            def one(fn: Callable = fn, placements: list = placements, ref: torch.Tensor = ref,
                    ref_grad: torch.Tensor = ref_grad) -> None:
                x = distribute_tensor(full, mesh, placements).requires_grad_()
                y = fn(x)
                assert isinstance(y, DTensor), type(y)
                assert tuple(y.placements) == tuple(placements), y.placements
                assert torch.equal(y.full_tensor(), ref), "forward differs"
                (y * distribute_tensor(grad, mesh, placements)).sum().backward()
                assert torch.equal(x.grad.full_tensor(), ref_grad), "backward differs"

            _check(results, f"{name} {placements}", one)


def control(mesh: object, results: dict) -> None:
    """The checks can fail: each shard masking its local tensor by local indices (what a
    sharding rule without global offsets computes) is not the global mask's shard."""

    def one() -> None:
        full = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
        for placements in ([Shard(0)], [Shard(1)]):
            x = distribute_tensor(full, mesh, placements)
            right = DF.dropout(x, 0.5, seed=3).to_local()
            local = DF.dropout(x.to_local(), 0.5, seed=3)
            assert dist.get_rank() == 0 or not torch.equal(right, local), placements

    _check(results, "control: local indices differ", one)


def partial(mesh: object, results: dict) -> None:
    """A Partial tensor's summands each take the mask (exact without a bias: the backward
    of dropout before a column-parallel layer gets a Partial gradient); with a bias
    (alpha dropout) it is refused."""

    def forward() -> None:
        x = DTensor.from_local(torch.ones(4, 4), mesh, [Partial()], run_check=False)
        y = DF.dropout(x, 0.5, seed=1)
        assert tuple(y.placements) == (Partial(),)
        assert torch.equal(y.full_tensor(), DF.dropout(x.full_tensor(), 0.5, seed=1))
        try:
            DF.alpha_dropout(x, 0.5, True, seed=1)
        except ValueError as err:
            assert "Partial" in str(err) and "redistribute" in str(err), err
        else:
            raise AssertionError("a Partial DTensor took a bias")

    def column_parallel_backward() -> None:
        g = torch.Generator().manual_seed(5)
        full, weight = torch.randn(6, 8, generator=g), torch.randn(10, 8, generator=g)
        leaf = full.clone().requires_grad_()
        nn.functional.linear(DF.dropout(leaf, 0.5, seed=2), weight).pow(2).sum().backward()
        x = distribute_tensor(full, mesh, [Replicate()]).requires_grad_()
        w = distribute_tensor(weight, mesh, [Shard(0)])  # columnwise: output features split
        z = nn.functional.linear(DF.dropout(x, 0.5, seed=2), w)
        z.full_tensor().pow(2).sum().backward()  # dropout's backward gets a Partial grad
        assert torch.allclose(x.grad.full_tensor(), leaf.grad, rtol=1e-5, atol=1e-5)

    _check(results, "partial forward", forward)
    _check(results, "partial gradient (column parallel)", column_parallel_backward)


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 16)
        self.drop1, self.drop2 = dropkit.nn.Dropout(0.5), dropkit.nn.Dropout(0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(torch.relu(self.fc1(x)))))


class Attention(nn.Module):
    """Multi-head self-attention, dropout on the weights and the output; the heads split
    across ranks under tensor parallelism (q, k, v columnwise, the projection rowwise)."""

    def __init__(self, dim: int = 16, heads: int = 4) -> None:
        super().__init__()
        self.heads, self.dim = heads, dim
        self.norm = nn.LayerNorm(dim)
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop, self.out_drop = dropkit.nn.Dropout(0.2), dropkit.nn.Dropout(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        q, k, v = (f(h).unflatten(-1, (self.heads, -1)).transpose(1, 2)
                   for f in (self.q, self.k, self.v))  # [B, H, T, d]
        att = self.attn_drop((q @ k.transpose(-1, -2) / math.sqrt(self.dim // self.heads))
                             .softmax(-1))
        y = (att @ v).transpose(1, 2).flatten(2)  # [B, T, D]
        return x + self.out_drop(self.proj(y))


def _full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if isinstance(t, DTensor) else t


def tensor_parallel(mesh: object, results: dict) -> None:
    """Two SGD steps of the sharded blocks: the same losses and gradients as unsharded."""
    g = torch.Generator().manual_seed(1)
    x_mlp, x_att = torch.randn(6, 16, generator=g), torch.randn(3, 4, 16, generator=g)
    plans = {
        "mlp": (MLP, x_mlp, {
            "fc1": ColwiseParallel(use_local_output=False),
            "fc2": RowwiseParallel(use_local_output=False),
        }),
        "attention": (Attention, x_att, {
            "norm": SequenceParallel(use_local_output=False),
            "q": ColwiseParallel(input_layouts=Shard(1), use_local_output=False),
            "k": ColwiseParallel(input_layouts=Shard(1), use_local_output=False),
            "v": ColwiseParallel(input_layouts=Shard(1), use_local_output=False),
            "proj": RowwiseParallel(output_layouts=Shard(1), use_local_output=False),
        }),
    }
    for name, (make, x, plan) in plans.items():

        def one(make: Callable = make, x: torch.Tensor = x, plan: dict = plan,
                name: str = name) -> None:
            torch.manual_seed(0)
            ref_model, tp_model = make().train(), make().train()
            tp_model.load_state_dict(ref_model.state_dict())
            parallelize_module(tp_model, mesh, plan)
            opts = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (ref_model, tp_model)]
            for step in range(2):
                losses, grads = [], []
                for model, opt, inp in ((ref_model, opts[0], x), (tp_model, opts[1], None)):
                    opt.zero_grad()
                    torch.manual_seed(100 + step)  # the same draws on every rank and model
                    if inp is None:  # the sharded model's input: sequence-sharded for attention
                        inp = (distribute_tensor(x, mesh, [Shard(1)]) if name == "attention"
                               else x)
                    loss = _full(model(inp)).pow(2).mean()
                    loss.backward()
                    losses.append(loss.detach())
                    grads.append([_full(p.grad) for p in model.parameters()])
                    opt.step()
                assert torch.allclose(losses[0], losses[1], rtol=1e-5, atol=1e-6), losses
                for a, b in zip(*grads, strict=True):
                    assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), (step, (a - b).abs().max())

        _check(results, f"tensor parallel {name}", one)


def main() -> None:
    rank, world, store_file, out_file = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3],
                                         sys.argv[4])
    torch.set_num_threads(1)
    dist.init_process_group("gloo", store=dist.FileStore(store_file, world), rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=60))
    results: dict[str, str | None] = {}
    try:
        if world == 2:
            mesh = init_device_mesh("cpu", (2,))
            variants(mesh, [[Shard(0)], [Shard(1)], [Shard(2)], [Shard(3)], [Replicate()]],
                     results)
            partial(mesh, results)
            control(mesh, results)
            tensor_parallel(mesh, results)
        else:
            mesh = init_device_mesh("cpu", (2, 2))
            variants(mesh, [[Shard(0), Shard(1)], [Shard(3), Shard(0)], [Replicate(), Shard(2)],
                            [Shard(0), Shard(0)], [Replicate(), Replicate()]], results)
        torch.save(results, out_file)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
