"""``backward=``: what eager autograd keeps ("seed": keys only; "bits": a 1-bit mask).

Every policy gives the same bits forward and backward; "bits" keeps ceil(n / 8) bytes, "seed"
none; :func:`dropkit.backward_bytes` reports it per layer.
"""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.autograd.forward_ad as fwAD

import dropkit
import dropkit.functional as F
from dropkit import rng
from dropkit.backends import keyed, packed

POLICIES = ("auto", "seed", "bits")
# sizes: tiny (kept under "auto"), odd (a partial byte), one serial block, parallel parts
SIZES = (7, 1001, 4099, 2**17 + 3)


def _run(x: torch.Tensor, g: torch.Tensor, policy: str, **kw: object) -> tuple:
    leaf = x.detach().clone().requires_grad_()
    y = F.dropout(leaf, 0.3, seed=5, backward=policy, **kw)  # type: ignore[arg-type]
    y.backward(g)
    return y.detach(), leaf.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("n", SIZES)
def test_every_policy_gives_the_same_bits(dtype: torch.dtype, n: int) -> None:
    gen = torch.Generator().manual_seed(n)
    x = torch.randn(n, generator=gen).to(dtype)
    g = torch.randn(n, generator=gen).to(dtype)
    y0, g0 = _run(x, g, "seed")
    assert bool((y0 == 0).any()) and bool((g0 == 0).any())  # something dropped
    for policy in ("auto", "bits"):
        y, grad = _run(x, g, policy)
        assert torch.equal(y, y0) and torch.equal(grad, g0), policy


@pytest.mark.parametrize("kw", [{"broadcast_dims": (1,)}, {"scaling": "classic"}])
def test_bits_with_broadcast_masks_and_classic_scaling(kw: dict) -> None:
    x = torch.randn(6, 5, 7)
    g = torch.randn(6, 5, 7)
    bits, seed = _run(x, g, "bits", **kw), _run(x, g, "seed", **kw)
    assert torch.equal(bits[0], seed[0]) and torch.equal(bits[1], seed[1])


def test_bits_with_per_row_keys_and_in_mc_folds() -> None:
    x, g = torch.randn(4, 300), torch.randn(4, 300)
    ids = torch.tensor([9, 2, 7, 4])
    got = {}
    for policy in ("seed", "bits"):
        leaf = x.clone().requires_grad_()
        with dropkit.sample_keys(ids, seed=3):
            y = F.dropout(leaf, 0.4, backward=policy)
        y.backward(g)
        got[policy] = (y.detach(), leaf.grad)
    assert torch.equal(got["seed"][0], got["bits"][0])
    assert torch.equal(got["seed"][1], got["bits"][1])


def test_double_backward_through_bits() -> None:
    x = torch.randn(3000, dtype=torch.float64, requires_grad=True)
    out = {}
    for policy in ("seed", "bits"):
        y = F.dropout(x, 0.5, seed=2, backward=policy)
        (gx,) = torch.autograd.grad((y * y).sum(), x, create_graph=True)
        (ggx,) = torch.autograd.grad(gx.sum(), x)
        out[policy] = (gx.detach(), ggx)
    assert torch.equal(out["seed"][0], out["bits"][0])
    assert torch.equal(out["seed"][1], out["bits"][1])


# forward AD's first use compiles a TorchScript helper inside torch (a deprecation warning)
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_forward_ad_under_bits_regenerates() -> None:
    x, t = torch.randn(500), torch.randn(500)
    with fwAD.dual_level():
        y = F.dropout(fwAD.make_dual(x, t), 0.5, seed=1, backward="bits")
        primal, tangent = fwAD.unpack_dual(y)
    assert torch.equal(primal, F.dropout(x, 0.5, seed=1))
    assert torch.equal(tangent, F.dropout(t, 0.5, seed=1))


def test_in_place_bits_counts_one_write_and_autograd_sees_it() -> None:
    w = torch.randn(2000, requires_grad=True)
    h = torch.randn(2000).requires_grad_()
    a = h * 1.0  # a non-leaf we may write in place
    before = a._version
    F.dropout(a, 0.5, True, True, seed=4, backward="bits")
    assert a._version == before + 1
    b = h * 1.0
    y = w * b  # saves b for w's gradient
    F.dropout(b, 0.5, True, True, seed=4, backward="bits")
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_pack_round_trip_and_the_kernel_packs_as_torch_does() -> None:
    gen = torch.Generator().manual_seed(0)
    for n in (1, 8, 9, 1000, 2**16 + 5):
        keep = torch.rand(n, generator=gen) < 0.5
        assert torch.equal(packed.unpack(packed.pack(keep), n), keep)
    n, seed, thresh = 2**17 + 3, 11, rng.threshold(0.3)
    x = torch.randn(n)
    bits = torch.empty((n + 7) // 8, dtype=torch.uint8)
    with dropkit.use_backend("numba"):
        out = torch.empty_like(x)
        assert dropkit.backends.resolve(x).scale_pack(x, out, bits, seed, thresh, 2.0, 0.0)
    want = packed.pack(keyed.keep_mask(torch.tensor(seed), 0, n, thresh, x.device))
    assert torch.equal(bits, want)
    assert not torch.equal(bits, packed.pack(keyed.keep_mask(torch.tensor(seed + 1), 0, n,
                                                             thresh, x.device)))


def _net(policy: str, width: int = 4096) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(8, width), dropkit.nn.Dropout(0.5, backward=policy),
        torch.nn.Linear(width, 3), dropkit.nn.Dropout(0.2, backward=policy),
    ).train()


def test_bytes_kept_per_policy() -> None:
    x = torch.randn(16, 8)
    bits = dropkit.backward_bytes(_net("bits"), x)
    assert bits["1"].bytes == 16 * 4096 // 8 and bits["1"].per_element == 0.125
    assert bits["3"].bytes == (16 * 3 + 7) // 8
    seed = dropkit.backward_bytes(_net("seed"), x)
    assert seed["1"].bytes == 0 and seed["3"].bytes == 0
    auto = dropkit.backward_bytes(_net("auto"), x)
    assert auto["1"].bytes == 0  # 256 KiB of multiplier: regenerated
    assert auto["3"].bytes == 16 * 3 * 4  # 192 bytes: kept by torch's autograd
    torch_net = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.Dropout(0.5)).train()
    assert dropkit.backward_bytes(torch_net, x)["1"].bytes > 0  # torch keeps its mask
    assert dropkit.backward_bytes(_net("bits").eval(), x)["1"].bytes == 0  # eval: nothing


def test_bytes_of_a_wrapped_layer_are_its_own() -> None:
    """ConcreteDropout's inner Linear keeps its input: that is the Linear's, not dropout's."""
    net = dropkit.nn.ConcreteDropout(torch.nn.Linear(32, 4), p=0.3).train()
    kept = dropkit.backward_bytes(net, torch.randn(8, 32))
    assert set(kept) == {""}
    assert kept[""].bytes < 8 * 32 * 4 * 3  # not the Linear's input on top of its own


@pytest.mark.parametrize(("value", "error"), [("bit", ValueError), (1, TypeError),
                                              (None, TypeError)])
def test_bad_backward_values(value: object, error: type) -> None:
    with pytest.raises(error, match="backward"):
        F.dropout(torch.ones(4), 0.5, backward=value)  # type: ignore[arg-type]
    with pytest.raises(error, match="backward"):
        dropkit.nn.Dropout(0.5, backward=value)  # type: ignore[arg-type]


def test_module_repr_and_pickles() -> None:
    m = dropkit.nn.Dropout(0.3, backward="bits")
    assert "backward='bits'" in repr(m)
    assert "backward" not in repr(dropkit.nn.Dropout(0.3))
    again = pickle.loads(pickle.dumps(m))
    assert again.backward == "bits"
    old = dropkit.nn.Dropout(0.3)
    del old.__dict__["backward"]  # as a module pickled before the setting existed
    assert old.backward == "auto" and old(torch.ones(4)).shape == (4,)


def test_a_compiled_model_with_bits_matches_eager() -> None:
    """Compiled graphs regenerate from the keys whatever the policy: the same bits."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 300), dropkit.nn.Dropout(0.4, backward="bits"),
                              torch.nn.Linear(300, 2)).train()
    x = torch.randn(5, 6)
    grads = []
    for run in (net, torch.compile(net, backend="aot_eager", fullgraph=True)):
        torch.manual_seed(1)
        net.zero_grad()
        run(x).sum().backward()
        grads.append([p.grad.clone() for p in net.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))


@pytest.mark.parametrize(("fn", "shape"), [
    (F.dropout1d, (4, 6, 50)), (F.dropout2d, (4, 6, 5, 5)), (F.dropout3d, (2, 6, 2, 3, 5)),
    (lambda t, p, **kw: F.alpha_dropout(t, p, True, **kw), (3000,)),
    (lambda t, p, **kw: F.feature_alpha_dropout(t, p, True, **kw), (4, 6, 50)),
])
def test_every_torch_twin_takes_the_policy(fn, shape) -> None:
    x, g = torch.randn(shape), torch.randn(shape)
    got = {}
    for policy in POLICIES:
        leaf = x.clone().requires_grad_()
        y = fn(leaf, 0.4, seed=8, backward=policy)
        y.backward(g)
        got[policy] = (y.detach(), leaf.grad)
    for policy in ("auto", "bits"):
        assert torch.equal(got[policy][0], got["seed"][0])
        assert torch.equal(got[policy][1], got["seed"][1])
    with pytest.raises(ValueError, match="backward"):
        fn(x, 0.4, seed=8, backward="mask")


@pytest.mark.parametrize("cls", [dropkit.nn.Dropout1d, dropkit.nn.Dropout2d,
                                 dropkit.nn.Dropout3d, dropkit.nn.AlphaDropout,
                                 dropkit.nn.FeatureAlphaDropout])
def test_every_torch_twin_module_keeps_bits(cls) -> None:
    m = cls(0.3, backward="bits").train()
    assert "backward='bits'" in repr(m)
    shape = (2, 4096) if cls is dropkit.nn.AlphaDropout else (2, 64, 2, 4, 4)
    if cls is dropkit.nn.Dropout1d:
        shape = (2, 64, 32)
    elif cls is dropkit.nn.Dropout2d:
        shape = (2, 64, 4, 4)
    net = torch.nn.Sequential(torch.nn.Identity(), m)
    x = torch.randn(shape, requires_grad=True)
    kept = dropkit.backward_bytes(net, x)["1"]
    mask = 2 * 4096 if cls is dropkit.nn.AlphaDropout else 2 * 64  # elements of the mask
    assert kept.bytes == (mask + 7) // 8


def test_backward_bytes_refuses_inference_mode() -> None:
    """Under inference mode autograd saves nothing: not 0 bytes, a clear error."""
    model = torch.nn.Sequential(dropkit.nn.Dropout(0.5))
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        dropkit.backward_bytes(model, torch.ones(4, 8))
