"""PyTorch's own dropout tests, re-expressed against ``dropkit.nn`` and ``dropkit.functional``.

Ported from PyTorch's sources:

- ``test/nn/test_dropout.py``: TestDropoutNN (``_test_alpha_dropout``, ``test_AlphaDropout``,
  ``test_FeatureAlphaDropout``, ``test_native_dropout_corner_case``, ``test_invalid_dropout_p``)
  and TestDropoutNNDeviceType (``_test_dropout``, ``_test_dropout_discontiguous``,
  ``_test_dropout_stride_mean_preserve``, ``_test_dropoutNd_no_batch``,
  ``_test_dropoutNd_channel_zero``, ``test_Dropout``, ``test_Dropout1d``, ``test_Dropout2d``,
  ``test_Dropout3d``, ``test_empty_dropout``);
- ``torch/testing/_internal/common_methods_invocations.py``: the OpInfos
  ``nn.functional.dropout``, ``dropout2d``, ``dropout3d``, ``alpha_dropout`` and
  ``feature_alpha_dropout`` (``with_train`` and ``without_train``): ``sample_inputs_dropout``,
  their dtypes, inplace variants, ``supports_forward_ad``, ``supports_fwgrad_bwgrad`` and
  gradcheck through ``wrapper_set_seed`` (a fixed mask). ``common_modules.py`` has no
  ModuleInfo for the dropout modules, so the module checks follow torch.nn's own conventions
  (repr, ``__constants__``, ``state_dict``, train/eval).

Most tests run on both implementations (``impl`` is "torch" or "dropkit"): the torch run shows
that the check states torch's actual behaviour, the dropkit run that dropkit shares it. Error
checks run torch first and require dropkit's exception to be an instance of torch's class.

Statistical checks use the fixed seed of conftest's autouse fixture (``torch.manual_seed(0)``)
and 6-sigma tolerances: the binomial bound ``6 * sqrt(p(1-p)/n)`` for kept fractions, and the
same 6 sigma of the exactly computed sampling variance for alpha dropout's mean and std.

Left out on purpose (torch quirks, or torch internals outside dropkit's contract):

- ``p`` given as a bool (torch takes ``p=True`` as 1.0) and ``p`` NaN (torch's modules accept
  it, its functionals raise RuntimeError from ATen); dropkit's own tests cover both.
- ``training`` given as an int 0/1: torch's argument parser rejects ints with TypeError; only
  clearly wrong types (str, None, float) are checked here.
- Torch's exact RNG stream: no test compares a torch mask with a dropkit mask; the
  ``freeze_rng_state`` comparisons are kept within one implementation.
- The CUDA/MPS/XLA and fused-kernel checks (``test_native_dropout_corner_case`` compares
  ``native_dropout`` on CUDA; ``_fused_dropout``; memory-leak and non-default-stream checks;
  the ``TestJit``/``TestNormalizeOperators``/``test_compare_cpu`` skips). CPU only.
- Unbatched ``dropout1d``/``dropout3d`` in torch return ``input.unsqueeze(0).squeeze(0)``, a
  view, on the identity paths (eval, p=0): dropkit returns the input itself there as on every
  other identity path (checked for dropkit only; torch's values are compared).
- Unbatched in-place ``dropout1d``/``dropout3d`` in torch raise the leaf-requires-grad error
  even in eval mode (their ``unsqueeze_`` runs first); not compared.
- torch's AlphaDropout and FeatureAlphaDropout modules ignore ``inplace=True`` (their forward
  never passes it on), and so do dropkit's (``test_alpha_modules_ignore_inplace_like_torch``);
  the in-place module test covers the other four classes.
- How much an in-place call bumps ``x._version`` (torch's alpha dropout bumps it twice): only
  "it increases" is checked.
- NaN/inf inputs of dropped elements for 0 < p < 1 (torch multiplies by 0 and keeps NaN);
  only p == 1 (``input * 0``) is compared.
- Error and warning texts, beyond the bad-p ValueError (compared verbatim: the README promises
  torch's messages) and the patterns torch's own tests match (the dropout1d rank error, the
  dropout2d/dropout3d rank warnings); other checks compare exception classes.
- Torch's magic tolerances (0.05, 0.1, rtol=atol=0.5) and ``random.randint`` shapes: replaced
  by fixed shapes and the bounds above.
- ``test_native_channel_dropout*`` / ``test_dropout_nograd*`` / ``_test_dropout_mean`` are not
  in torch's test_dropout.py; their likely intent (p in {0, 1} gradients, no-grad and
  inference-mode calls, mean preservation) is covered by the corner-case, no-grad and
  statistics tests below.
"""

from __future__ import annotations

import copy
import inspect
import itertools
import math
import pickle
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as TF
from torch import nn as tnn

from conftest import SIGMAS, assert_fraction
from dropkit import functional as DF
from dropkit import nn as dnn

ALPHA = 1.7580993408473766  # SELU's lambda * alpha, as torch's alpha dropout uses it
IMPLS = ["torch", "dropkit"]

# torch's first forward-AD call imports decompositions that use the deprecated torch.jit.script
pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)
PS = [0.2, 0.5, 0.8]
FLOAT_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
NONFLOAT_DTYPES = [torch.int64, torch.int32, torch.uint8, torch.bool, torch.complex64,
                   torch.complex128]


@dataclass(frozen=True)
class Spec:
    """One member of the dropout family, as a torch/dropkit pair."""

    name: str
    dk_fn: Callable
    torch_fn: Callable
    dk_cls: type
    torch_cls: type
    shape: tuple[int, ...]  # a small batched input
    tiny: tuple[int, ...]  # for gradcheck
    stat_shape: tuple[int, ...]  # many keep decisions (elements or channels)
    feature: bool  # one keep decision per (sample, channel)
    alpha: bool
    training_default: bool
    unbatched: tuple[int, ...] | None = None  # a no-batch-dim input, where torch has one

    def fn(self, impl: str) -> Callable:
        return self.dk_fn if impl == "dropkit" else self.torch_fn

    def cls(self, impl: str) -> type:
        return self.dk_cls if impl == "dropkit" else self.torch_cls


SPECS = [
    Spec("dropout", DF.dropout, TF.dropout, dnn.Dropout, tnn.Dropout,
         (6, 8), (3, 4), (20000,), False, False, True),
    Spec("dropout1d", DF.dropout1d, TF.dropout1d, dnn.Dropout1d, tnn.Dropout1d,
         (4, 6, 3), (2, 3, 2), (2500, 4, 2), True, False, True, (6, 3)),
    Spec("dropout2d", DF.dropout2d, TF.dropout2d, dnn.Dropout2d, tnn.Dropout2d,
         (4, 6, 3, 3), (2, 3, 2, 2), (2500, 4, 1, 2), True, False, True),
    Spec("dropout3d", DF.dropout3d, TF.dropout3d, dnn.Dropout3d, tnn.Dropout3d,
         (4, 6, 2, 2, 2), (2, 3, 1, 2, 2), (2500, 4, 1, 1, 2), True, False, True, (6, 2, 2, 2)),
    Spec("alpha_dropout", DF.alpha_dropout, TF.alpha_dropout, dnn.AlphaDropout,
         tnn.AlphaDropout, (6, 8), (3, 4), (20000,), False, True, False),
    Spec("feature_alpha_dropout", DF.feature_alpha_dropout, TF.feature_alpha_dropout,
         dnn.FeatureAlphaDropout, tnn.FeatureAlphaDropout,
         (4, 6, 3), (2, 3, 2), (2500, 4, 2), True, True, False),
]
BY_NAME = {s.name: s for s in SPECS}
FEATURE_SPECS = [s for s in SPECS if s.feature]
UNBATCHED_SPECS = [s for s in SPECS if s.unbatched is not None]
ALPHA_SPECS = [s for s in SPECS if s.alpha]


def _ids(spec: Spec) -> str:
    return spec.name


def _dtype_id(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


spec_param = pytest.mark.parametrize("spec", SPECS, ids=_ids)
impl_param = pytest.mark.parametrize("impl", IMPLS)


# --- helpers -------------------------------------------------------------------------------


def positive(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Input in [0.5, 1.5): never 0, so a zero output (or a negative alpha one) means dropped."""
    return (torch.rand(shape, dtype=torch.float64) + 0.5).to(dtype)


def alpha_consts(p: float) -> tuple[float, float, float]:
    """torch's alpha dropout: kept ``a*x + b_keep``, dropped ``b_drop`` (ATen's _dropout_impl)."""
    a = 1.0 / math.sqrt((ALPHA * ALPHA * p + 1.0) * (1.0 - p))
    return a, ALPHA * a * p, ALPHA * a * (p - 1.0)


def kept(spec: Spec, y: torch.Tensor) -> torch.Tensor:
    """Which entries were kept, for a positive input (alpha's dropped value is negative)."""
    return y > 0 if spec.alpha else y != 0


def expected(spec: Spec, x: torch.Tensor, keep: torch.Tensor, p: float) -> torch.Tensor:
    """The output the method defines for this keep mask, in float64."""
    x = x.double()
    if spec.alpha:
        a, b_keep, b_drop = alpha_consts(p)
        return torch.where(keep, x * a + b_keep, torch.full_like(x, b_drop))
    return torch.where(keep, x / (1.0 - p), torch.zeros_like(x))


def multiplier(spec: Spec, keep: torch.Tensor, p: float) -> torch.Tensor:
    """dy/dx elementwise: mask/(1-p) for dropout, mask*a for alpha dropout."""
    scale = alpha_consts(p)[0] if spec.alpha else 1.0 / (1.0 - p)
    return keep.double() * scale


def units(spec: Spec, t: torch.Tensor) -> torch.Tensor:
    """One row per keep decision: (N*C, rest) for channel dropout, (numel, 1) otherwise."""
    if spec.feature:
        return t.reshape(t.shape[0] * t.shape[1], -1)
    return t.reshape(-1, 1)


def close(actual: torch.Tensor, want: torch.Tensor, **kw) -> None:
    """assert_close in the actual dtype, with a few ulps for the half types."""
    if actual.dtype in (torch.float16, torch.bfloat16):
        eps = torch.finfo(actual.dtype).eps
        kw.setdefault("rtol", 4 * eps)
        kw.setdefault("atol", 4 * eps)
    torch.testing.assert_close(actual, want.to(actual.dtype), **kw)


def raised(call: Callable[[], object]) -> BaseException | None:
    try:
        call()
    except Exception as err:
        return err
    return None


def assert_raises_like_torch(theirs: Callable[[], object], ours: Callable[[], object]) -> None:
    """torch raises here; dropkit must raise an instance of the same class."""
    err = raised(theirs)
    assert err is not None, "torch accepted this call; the test's premise is wrong"
    with pytest.raises(type(err)):
        ours()


def quiet(fn: Callable, *args, **kwargs) -> object:
    """``fn(*args, **kwargs)`` with the rank warnings silenced (they have their own tests)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return fn(*args, **kwargs)


def warning_categories(call: Callable[[], object]) -> tuple[list[type], BaseException | None]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        err = raised(call)
    return [w.category for w in caught], err


def assert_same_aliasing(ours: torch.Tensor, x: torch.Tensor, theirs: torch.Tensor,
                         xt: torch.Tensor) -> None:
    """The input itself where torch returns its input, a new tensor where torch makes one.

    Where torch returns a view of its input (unbatched dropout1d/dropout3d identity paths,
    a quirk) dropkit may return the input itself or a view.
    """
    ours_alias, theirs_alias = ours is x, theirs is xt
    if theirs_alias:
        assert ours_alias, "torch returns its input itself here"
    elif theirs._base is not xt:
        assert not ours_alias, "torch returns a new tensor here"


def seeded(fn: Callable, seed: int = 1234) -> Callable:
    """OpInfo's ``wrapper_set_seed``: the same default-generator state on every call."""

    def call(*args, **kwargs):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return fn(*args, **kwargs)

    return call


# --- signatures ---------------------------------------------------------------------------


@spec_param
def test_functional_positional_signature_matches_torch(spec):
    theirs = list(inspect.signature(spec.torch_fn).parameters.values())
    ours = list(inspect.signature(spec.dk_fn).parameters.values())
    assert [(q.name, q.default, q.kind) for q in ours[: len(theirs)]] == [
        (q.name, q.default, q.kind) for q in theirs
    ]
    extras = ours[len(theirs):]
    assert all(q.kind is inspect.Parameter.KEYWORD_ONLY for q in extras)
    assert {"seed", "generator"} <= {q.name for q in extras}
    if not spec.alpha:
        assert "scaling" in {q.name for q in extras}


@spec_param
@impl_param
def test_default_training_flag_matches_torch(spec, impl):
    x = positive(spec.shape)
    y = spec.fn(impl)(x)
    if spec.training_default:
        assert not torch.equal(y, x)
    else:  # torch's alpha_dropout and feature_alpha_dropout default to training=False
        assert y is x


@spec_param
def test_module_constructor_signature_matches_torch(spec):
    theirs = list(inspect.signature(spec.torch_cls.__init__).parameters.values())
    ours = list(inspect.signature(spec.dk_cls.__init__).parameters.values())
    assert [(q.name, q.default, q.kind) for q in ours[: len(theirs)]] == [
        (q.name, q.default, q.kind) for q in theirs
    ]
    assert all(q.kind is inspect.Parameter.KEYWORD_ONLY for q in ours[len(theirs):])


# --- modules: repr, attributes, state ------------------------------------------------------


MODULE_ARGS = [
    ((), {}),
    ((0.2,), {}),
    ((0.3, True), {}),
    ((0, False), {}),
    ((1,), {}),
    ((), {"p": 0.25, "inplace": True}),
]


@spec_param
@pytest.mark.parametrize(("args", "kwargs"), MODULE_ARGS)
def test_module_repr_attributes_and_state_match_torch(spec, args, kwargs):
    ours, theirs = spec.dk_cls(*args, **kwargs), spec.torch_cls(*args, **kwargs)
    assert type(ours).__name__ == type(theirs).__name__
    assert repr(ours) == repr(theirs)
    assert str(ours) == str(theirs)
    assert ours.extra_repr() == theirs.extra_repr()
    assert (ours.p, ours.inplace, ours.training) == (theirs.p, theirs.inplace, theirs.training)
    assert type(ours.p) is type(theirs.p)
    assert list(ours.__constants__) == list(theirs.__constants__)
    assert dict(ours.state_dict()) == dict(theirs.state_dict()) == {}
    assert list(ours.parameters()) == list(theirs.parameters()) == []
    assert list(ours.buffers()) == list(theirs.buffers()) == []


@spec_param
@impl_param
def test_module_train_eval_like_torch(spec, impl):
    m = spec.cls(impl)(0.5)
    assert m.training
    assert m.eval() is m and not m.training
    x = positive(spec.shape)
    assert m(x) is x
    for inplace in (False, True):
        xc = x.clone()
        assert spec.cls(impl)(0.5, inplace).eval()(xc) is xc
        assert torch.equal(xc, x)
    assert m.train() is m and m.training
    y = m(x)
    assert y.shape == x.shape and y.dtype == x.dtype and not torch.equal(y, x)
    m.train(False)
    assert not m.training and m(x) is x


@spec_param
def test_drop_in_replacement_keeps_model_state_dict(spec):
    def model(cls: type) -> tnn.Module:
        torch.manual_seed(1)
        return tnn.Sequential(tnn.Linear(3, 3), cls(0.5), tnn.Linear(3, 3))

    ours, theirs = model(spec.dk_cls), model(spec.torch_cls)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(*spec.shape[:-1], 3)
    assert torch.equal(ours.eval()(x), theirs.eval()(x))
    for clone in (copy.deepcopy(ours[1]), pickle.loads(pickle.dumps(ours[1]))):
        assert type(clone) is spec.dk_cls and repr(clone) == repr(theirs[1])


# --- bad arguments ---------------------------------------------------------------------------


@spec_param
@pytest.mark.parametrize("p", [-0.1, 1.1, -1e-9, 1.0 + 1e-9])
def test_p_out_of_range_is_a_value_error_like_torch(spec, p):
    # test_invalid_dropout_p, for every class and function, in both modes
    x = torch.ones(spec.shape)
    for training in (True, False):
        with pytest.raises(ValueError) as theirs:
            spec.torch_fn(x, p, training)
        with pytest.raises(ValueError) as ours:
            spec.dk_fn(x, p, training)
        assert str(ours.value) == str(theirs.value)
    with pytest.raises(ValueError) as theirs:
        spec.torch_cls(p)
    with pytest.raises(ValueError) as ours:
        spec.dk_cls(p)
    assert str(ours.value) == str(theirs.value)


@spec_param
@pytest.mark.parametrize("p", ["0.5", None])
def test_p_of_wrong_type_raises_like_torch(spec, p):
    x = torch.ones(spec.shape)
    assert_raises_like_torch(lambda: spec.torch_fn(x, p, True), lambda: spec.dk_fn(x, p, True))
    assert_raises_like_torch(lambda: spec.torch_cls(p), lambda: spec.dk_cls(p))


@spec_param
@pytest.mark.parametrize("training", ["no", None, 0.5])
@pytest.mark.parametrize("p", [0.5, 0.0])
def test_training_of_wrong_type_is_a_type_error_like_torch(spec, training, p):
    x = torch.ones(spec.shape)
    assert_raises_like_torch(
        lambda: spec.torch_fn(x.clone(), p, training), lambda: spec.dk_fn(x.clone(), p, training)
    )
    assert isinstance(raised(lambda: spec.dk_fn(x, p, training)), TypeError)


@impl_param
@pytest.mark.parametrize("training", [True, False])
def test_dropout1d_rank_errors_like_torch(impl, training):
    spec = BY_NAME["dropout1d"]
    m = spec.cls(impl)(p=0.5).train(training)
    with pytest.raises(RuntimeError, match="Expected 2D or 3D input, but received a 4D input"):
        m(torch.rand(1, 2, 2, 2))
    with pytest.raises(RuntimeError, match="Expected 2D or 3D input, but received a 1D input"):
        m(torch.rand(2))
    with pytest.raises(RuntimeError, match="Expected 2D or 3D input, but received a 0D input"):
        spec.fn(impl)(torch.tensor(1.0), 0.5, training)


RANK_WARNINGS = [
    ("dropout2d", (1, 2, 2, 2, 2), "Received a 5-D input to dropout2d"),
    ("dropout2d", (1, 2), "Received a 2-D input to dropout2d"),
    ("dropout2d", (1, 2, 2), "assuming that channel-wise 1D dropout behavior is desired"),
    ("dropout3d", (1, 2, 2, 2, 2, 2), "Received a 6-D input to dropout3d"),
    ("dropout3d", (1, 2, 2), "Received a 3-D input to dropout3d"),
]


@pytest.mark.parametrize(("name", "shape", "match"), RANK_WARNINGS)
@impl_param
@pytest.mark.parametrize("training", [True, False])
def test_rank_warnings_like_torch(name, shape, match, impl, training):
    spec = BY_NAME[name]
    with pytest.warns(UserWarning, match=match):
        spec.cls(impl)(p=0.5).train(training)(torch.rand(shape))
    with pytest.warns(UserWarning, match=match):
        y = spec.fn(impl)(torch.rand(shape), 0.5, training)
    assert y.shape == shape


@pytest.mark.parametrize(("name", "shape", "match"), RANK_WARNINGS)
def test_rank_warning_categories_equal_torch(name, shape, match):
    spec = BY_NAME[name]
    x = torch.rand(shape)
    theirs, _ = warning_categories(lambda: spec.torch_fn(x.clone(), 0.5, True))
    ours, err = warning_categories(lambda: spec.dk_fn(x.clone(), 0.5, True))
    assert err is None
    assert ours == theirs and theirs


@pytest.mark.parametrize("name", ["dropout2d", "dropout3d", "feature_alpha_dropout"])
@pytest.mark.parametrize("shape", [(), (3,)])
@pytest.mark.parametrize(("p", "training"), [(0.5, True), (0.5, False), (0.0, True), (1.0, True)])
def test_low_rank_channel_dropout_like_torch(name, shape, p, training):
    # "Feature dropout requires at least 2 dimensions" only when a mask is drawn; warnings alike
    spec = BY_NAME[name]
    x = torch.rand(shape) + 0.5
    xt = x.clone()
    theirs_warn, theirs_err = warning_categories(lambda: spec.torch_fn(xt, p, training))
    ours_warn, _ = warning_categories(lambda: spec.dk_fn(x, p, training))
    assert ours_warn == theirs_warn
    if theirs_err is not None:
        with pytest.raises(type(theirs_err)):
            quiet(spec.dk_fn, x, p, training)
        return
    theirs = quiet(spec.torch_fn, xt, p, training)
    ours = quiet(spec.dk_fn, x, p, training)
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    assert_same_aliasing(ours, x, theirs, xt)
    if p in (0.0, 1.0) or not training:
        assert torch.equal(ours, theirs)


# --- identity paths ---------------------------------------------------------------------------


def noop_input(spec: Spec, case: str, dtype: torch.dtype = torch.float32,
               shape: tuple[int, ...] | None = None) -> torch.Tensor:
    shape = spec.shape if shape is None else shape
    if case == "empty":
        return torch.ones((0, *shape[1:]), dtype=dtype)
    if case == "empty-channels":
        return torch.ones((shape[0], 0, *shape[2:]), dtype=dtype)
    return (torch.rand(shape) + 0.5).to(dtype)


def noop_call(fn: Callable, case: str, x: torch.Tensor, inplace: bool) -> torch.Tensor:
    if case == "eval":
        return fn(x, 0.5, False, inplace)
    if case == "p0":
        return fn(x, 0.0, True, inplace)
    return fn(x, 0.5, True, inplace)  # empty inputs: nothing to drop


NOOP_CASES = ["eval", "p0", "empty", "empty-channels"]


@spec_param
@impl_param
@pytest.mark.parametrize("case", NOOP_CASES)
@pytest.mark.parametrize("inplace", [False, True])
def test_noop_returns_the_input_itself(spec, impl, case, inplace):
    x = noop_input(spec, case)
    before, version = x.clone(), x._version
    y = noop_call(spec.fn(impl), case, x, inplace)
    assert y is x
    assert x._version == version
    assert torch.equal(x, before)


@pytest.mark.parametrize("spec", UNBATCHED_SPECS, ids=_ids)
@pytest.mark.parametrize("case", ["eval", "p0"])
@pytest.mark.parametrize("inplace", [False, True])
def test_unbatched_noop_returns_the_input_itself(spec, case, inplace):
    # torch returns a view here (input.unsqueeze(0).squeeze(0)): values compared only
    x = noop_input(spec, case, shape=spec.unbatched)
    theirs = noop_call(spec.torch_fn, case, x.clone(), inplace)
    version = x._version
    ours = noop_call(spec.dk_fn, case, x, inplace)
    assert ours is x
    assert x._version == version
    assert torch.equal(ours, theirs)


def test_empty_dropout():
    # test_empty_dropout, verbatim
    x = torch.tensor([])
    out = DF.dropout(x)
    assert out.size() == x.size()
    assert out is x


# --- p == 0 and p == 1 -------------------------------------------------------------------------


@spec_param
@impl_param
@pytest.mark.parametrize("inplace", [False, True])
def test_p_one_is_input_times_zero_like_torch(spec, impl, inplace):
    x = torch.randn(spec.shape)
    x.view(-1)[0], x.view(-1)[1], x.view(-1)[2] = float("nan"), float("inf"), -float("inf")
    xin = x.clone()
    version = xin._version
    y = spec.fn(impl)(xin, 1.0, True, inplace)
    torch.testing.assert_close(y, x * 0.0, equal_nan=True, rtol=0, atol=0)
    assert y.dtype == x.dtype
    if inplace:
        assert y is xin and xin._version > version
    else:
        assert y is not xin and xin._version == version
        torch.testing.assert_close(xin, x, equal_nan=True, rtol=0, atol=0)


@spec_param
@pytest.mark.parametrize("p", [0.0, 1.0])
@pytest.mark.parametrize("training", [True, False])
def test_corner_p_outputs_and_gradients_equal_torch(spec, p, training):
    # test_native_dropout_corner_case, CPU part: dropkit against torch.nn.functional
    x = torch.randn(spec.shape, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    o, o_ref = spec.dk_fn(x, p, training), spec.torch_fn(x_ref, p, training)
    o.sum().backward()
    o_ref.sum().backward()
    assert torch.equal(o, o_ref)
    assert torch.equal(x.grad, x_ref.grad)


# --- values, masks, statistics ---------------------------------------------------------------


@spec_param
@impl_param
@pytest.mark.parametrize("p", PS)
def test_outputs_are_dropped_or_scaled(spec, impl, p):
    x = positive(spec.shape, torch.float64)
    y = spec.fn(impl)(x, p, True)
    keep = kept(spec, y)
    torch.testing.assert_close(y, expected(spec, x, keep, p))
    rows = units(spec, keep)
    assert bool((rows.all(1) | ~rows.any(1)).all())


@spec_param
@impl_param
@pytest.mark.parametrize("p", PS)
def test_kept_fraction_is_within_the_binomial_bound(spec, impl, p):
    y = spec.fn(impl)(positive(spec.stat_shape), p, True)
    rows = units(spec, kept(spec, y))
    assert bool((rows.all(1) | ~rows.any(1)).all())
    assert_fraction(int(rows[:, 0].sum()), rows.shape[0], 1.0 - p)


TEST_DROPOUT_CASES = [
    ("dropout", (1000,), torch.contiguous_format, torch.float32),
    ("dropout", (1000,), torch.contiguous_format, torch.bfloat16),
    ("dropout1d", (12, 13, 14), torch.contiguous_format, torch.float64),
    ("dropout2d", (1000, 2, 3, 2), torch.contiguous_format, torch.float32),
    ("dropout2d", (1000, 2, 3, 2), torch.channels_last, torch.float32),
    ("dropout3d", (1000, 2, 1, 3, 2), torch.contiguous_format, torch.float32),
]


@pytest.mark.parametrize(("name", "shape", "memory_format", "dtype"), TEST_DROPOUT_CASES)
@impl_param
def test_port_of_test_dropout(name, shape, memory_format, dtype, impl):
    # _test_dropout: input filled with 1-p, so kept outputs and gradients are 1
    spec = BY_NAME[name]
    p = 0.2
    inp = torch.empty(shape, dtype=dtype).fill_(1 - p)
    for inplace in (False, True):
        module = spec.cls(impl)(p, inplace)
        input_var = inp.clone(memory_format=memory_format).requires_grad_()
        output = module(input_var + 0 if inplace else input_var)
        assert output.is_contiguous(memory_format=memory_format)
        keep = output.detach() != 0
        close(output.detach(), keep.double())
        rows = units(spec, keep)
        assert bool((rows.all(1) | ~rows.any(1)).all())
        assert_fraction(int(rows[:, 0].sum()), rows.shape[0], 1 - p)
        output.backward(inp)
        assert input_var.grad.is_contiguous(memory_format=memory_format)
        close(input_var.grad, keep.double())
    for inplace in (True, False):
        module = spec.cls(impl)(p, inplace).eval()
        assert torch.equal(inp, module(inp))
    repr(module), str(module)


@pytest.mark.parametrize("spec", FEATURE_SPECS, ids=_ids)
@impl_param
@pytest.mark.parametrize("inplace", [False, True])
def test_whole_channels_are_dropped(spec, impl, inplace):
    # _test_dropoutNd_channel_zero
    x = torch.ones(10, 4, *spec.shape[2:])
    result = spec.cls(impl)(p=0.5, inplace=inplace)(x)
    rows = units(spec, result)
    if spec.alpha:  # a dropped channel is constant too (alpha' mapped), not zero
        assert bool((rows == rows[:, :1]).all())
        assert bool(kept(spec, rows[:, 0]).any() and not kept(spec, rows[:, 0]).all())
    else:
        nonzero = rows.count_nonzero(dim=1)
        assert bool(((nonzero == 0) | (nonzero == rows.shape[1])).all())
        assert 0 < int((nonzero == 0).sum()) < rows.shape[0]


@pytest.mark.parametrize("spec", UNBATCHED_SPECS, ids=_ids)
@impl_param
@pytest.mark.parametrize("inplace", [False, True])
def test_no_batch_dim_equals_a_batch_of_one(spec, impl, inplace):
    # _test_dropoutNd_no_batch, with torch's freeze_rng_state as fork_rng + manual_seed
    x = torch.rand(50, *spec.unbatched[1:])
    x_clone = x.clone()
    dropout = spec.cls(impl)(p=0.5, inplace=inplace)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        res_no_batch = dropout(x)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        res_batched = dropout(x_clone.unsqueeze(0)).squeeze(0)
    assert torch.equal(res_no_batch, res_batched)
    assert res_no_batch.shape == x.shape


@pytest.mark.parametrize("spec", UNBATCHED_SPECS, ids=_ids)
def test_no_batch_dim_with_explicit_seed(spec):
    x = torch.rand(spec.unbatched)
    ours = spec.dk_fn(x, 0.5, True, seed=11)
    assert torch.equal(ours, spec.dk_fn(x.unsqueeze(0), 0.5, True, seed=11).squeeze(0))


def _alpha_tolerances(p: float, n: int, group: int) -> tuple[float, float]:
    """6-sigma bounds on |mean(y)| and |std(y) - 1| for alpha dropout of iid N(0, 1) input.

    ``group`` elements share one mask (channel dropout). With kept ``a*x + c1`` and dropped
    ``c0``: E[y] = 0, E[y^2] = 1 exactly; the variances below are exact for the sample
    mean and the sample second moment; std's bound adds the mean's and Bessel's terms.
    """
    a, c1, c0 = alpha_consts(p)
    q = 1.0 - p
    var_mean = (q * a * a / group + q * c1 * c1 + p * c0 * c0) / (n / group)
    mu4 = q * (3 * a**4 + 6 * a * a * c1 * c1 + c1**4) + p * c0**4
    cov_within = q * (a * a + c1 * c1) ** 2 + p * c0**4 - 1.0
    var_m2 = (mu4 - 1.0 + (group - 1) * cov_within) / n
    dev_m2 = SIGMAS * math.sqrt(var_m2)
    dev_var = dev_m2 + SIGMAS**2 * var_mean + (1.0 + dev_m2) / (n - 1)
    dev_std = dev_var / (1.0 + math.sqrt(max(0.0, 1.0 - dev_var)))  # |s-1| = |s^2-1|/(s+1)
    return SIGMAS * math.sqrt(var_mean), dev_std


ALPHA_STAT_CASES = [
    ("alpha_dropout", (5000,)),  # test_AlphaDropout
    ("feature_alpha_dropout", (1000, 2, 1, 2, 3)),  # test_FeatureAlphaDropout (fixed b,d,w,h)
    ("feature_alpha_dropout", (50, 20, 4, 4)),  # its "no batch dims" case, smaller planes
]


@pytest.mark.parametrize(("name", "shape"), ALPHA_STAT_CASES)
@impl_param
@pytest.mark.parametrize("p", PS)
def test_alpha_dropout_keeps_mean_and_std(name, shape, impl, p):
    # _test_alpha_dropout, against the population (0, 1) with derived bounds
    spec = BY_NAME[name]
    x = torch.randn(shape, dtype=torch.float64)
    input_var = x.clone().requires_grad_()
    output = spec.cls(impl)(p)(input_var)
    group = math.prod(shape[2:]) if spec.feature else 1
    mean_tol, std_tol = _alpha_tolerances(p, x.numel(), group)
    assert abs(float(output.detach().mean())) <= mean_tol
    assert abs(float(output.detach().std()) - 1.0) <= std_tol
    output.backward(x)
    assert input_var.grad.shape == x.shape


@pytest.mark.parametrize("spec", ALPHA_SPECS, ids=_ids)
@impl_param
def test_alpha_dropout_constants_are_torchs(spec, impl):
    # dropped units take a*alpha' + b exactly; kept ones a*x + b
    p = 0.3
    x = positive(spec.shape, torch.float64)
    y = spec.fn(impl)(x, p, True)
    a, b_keep, b_drop = alpha_consts(p)
    keep = kept(spec, y)
    assert bool(keep.any() and not keep.all())
    torch.testing.assert_close(y[~keep], torch.full_like(y[~keep], b_drop))
    torch.testing.assert_close(y[keep], x[keep] * a + b_keep)


# --- autograd ---------------------------------------------------------------------------------


@spec_param
@impl_param
@pytest.mark.parametrize("p", PS)
def test_gradient_is_mask_times_scale(spec, impl, p):
    x = positive(spec.shape, torch.float64).requires_grad_()
    y = spec.fn(impl)(x, p, True)
    assert y.requires_grad and y.grad_fn is not None
    g = torch.randn_like(y)
    y.backward(g)
    torch.testing.assert_close(x.grad, g * multiplier(spec, kept(spec, y.detach()), p))


@spec_param
@impl_param
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_floating_dtypes_like_torch(spec, impl, dtype):
    # OpInfo dtypes: floating_types_and(torch.float16, torch.bfloat16)
    x = positive(spec.shape, dtype).requires_grad_()
    y = spec.fn(impl)(x, 0.5, True)
    assert y.dtype == dtype
    keep = kept(spec, y.detach())
    close(y.detach(), expected(spec, x.detach(), keep, 0.5))
    y.backward(torch.ones_like(y))
    assert x.grad.dtype == dtype
    close(x.grad, multiplier(spec, keep, 0.5))


@spec_param
@impl_param
@pytest.mark.parametrize("p", [0.2, 0.5])
@pytest.mark.parametrize("inplace", [False, True])
def test_forward_ad_tangent_is_the_output_multiplier(spec, impl, p, inplace):
    # supports_forward_ad=True (and OpInfo's inplace forward-AD variant)
    x = positive(spec.shape, torch.float64)
    t = torch.randn_like(x)
    with fwAD.dual_level():
        dual = fwAD.make_dual(x.clone(), t)
        if inplace:
            dual = dual * 1.0  # a non-leaf, as OpInfo's inplace variants use
        y = spec.fn(impl)(dual, p, True, inplace)
        out, tangent = fwAD.unpack_dual(y)
        assert tangent is not None
        torch.testing.assert_close(tangent, t * multiplier(spec, kept(spec, out), p))
        ident = spec.fn(impl)(fwAD.make_dual(x, t), p, False)
        torch.testing.assert_close(fwAD.unpack_dual(ident).tangent, t)


@spec_param
@impl_param
def test_gradcheck_with_a_fixed_mask(spec, impl):
    # gradcheck_wrapper=wrapper_set_seed: the default generator is reset before every call
    f = seeded(lambda t: spec.fn(impl)(t, 0.5, True))
    x = positive(spec.tiny, torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


@spec_param
def test_gradcheck_with_an_explicit_seed(spec):
    def f(t):
        return spec.dk_fn(t, 0.5, True, seed=1234)

    x = positive(spec.tiny, torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


@spec_param
@impl_param
def test_gradcheck_forward_mode_with_a_fixed_mask(spec, impl):
    # supports_forward_ad and supports_fwgrad_bwgrad, checked numerically
    f = seeded(lambda t: spec.fn(impl)(t, 0.5, True))
    x = positive(spec.tiny, torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(
        f, (x,), check_forward_ad=True, check_backward_ad=False, check_undefined_grad=False
    )
    assert torch.autograd.gradgradcheck(f, (x,), check_fwd_over_rev=True)


@spec_param
@impl_param
@pytest.mark.parametrize("p", [0.5, 1.0])
def test_out_of_place_leaves_the_input_untouched(spec, impl, p):
    x = positive(spec.shape)
    before, version = x.clone(), x._version
    y = spec.fn(impl)(x, p, True, False)
    assert y is not x and y.data_ptr() != x.data_ptr()
    assert torch.equal(x, before) and x._version == version


def _inplace_shapes(alpha: bool = True) -> list:
    cases = [pytest.param(s, s.shape, id=s.name) for s in SPECS if alpha or not s.alpha]
    cases += [pytest.param(s, s.unbatched, id=f"{s.name}-unbatched") for s in UNBATCHED_SPECS]
    return cases


@pytest.mark.parametrize(("spec", "shape"), _inplace_shapes())
@impl_param
def test_inplace_modifies_and_returns_the_input(spec, shape, impl):
    x = positive(shape)
    before, version = x.clone(), x._version
    y = spec.fn(impl)(x, 0.5, True, True)
    assert y is x
    assert x._version > version  # the version counter records the write, as torch's does
    keep = kept(spec, x)
    assert bool(keep.any() and not keep.all())
    torch.testing.assert_close(x, expected(spec, before, keep, 0.5).float())


@pytest.mark.parametrize(("spec", "shape"), _inplace_shapes(alpha=False))
@impl_param
def test_inplace_module_returns_the_input(spec, shape, impl):
    # (torch's AlphaDropout and FeatureAlphaDropout ignore inplace=True: left out)
    x = positive(shape)
    version = x._version
    assert spec.cls(impl)(0.5, inplace=True)(x) is x
    assert x._version > version


@pytest.mark.parametrize("spec", ALPHA_SPECS, ids=_ids)
@impl_param
def test_alpha_modules_ignore_inplace_like_torch(spec, impl):
    x = positive(spec.shape).requires_grad_()  # (in place on it would raise)
    before, version = x.detach().clone(), x._version
    y = spec.cls(impl)(0.5, inplace=True)(x)
    assert y is not x and x._version == version and torch.equal(x.detach(), before)
    assert bool((y != x).any())  # it dropped something
    y.sum().backward()
    assert x.grad is not None


@pytest.mark.parametrize("spec", SPECS, ids=_ids)
@pytest.mark.parametrize("numel", [16, 1 << 17])  # (the serial and the parallel kernels)
def test_inplace_on_an_inference_tensor_raises_like_torch(spec, numel):
    with torch.inference_mode():
        rows = spec.shape[0] * (numel // math.prod(spec.shape) + 1)  # (more samples)
        x = torch.ones(rows, *spec.shape[1:])
        xt = x.clone()  # (torch's own in-place dropout writes part of it before it raises)
    before = x.clone()
    assert_raises_like_torch(lambda: quiet(spec.torch_fn, xt, 0.5, True, True),
                             lambda: quiet(spec.dk_fn, x, 0.5, True, True))
    assert isinstance(raised(lambda: quiet(spec.dk_fn, x, 0.5, True, True)), RuntimeError)
    assert torch.equal(x, before)  # nothing written behind torch's back
    with torch.inference_mode():  # inside inference mode it is allowed, as torch allows it
        y = quiet(spec.dk_fn, x, 0.5, True, True, seed=3)
    assert y is x and not torch.equal(x, before)


@spec_param
@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_p_as_a_0d_tensor_like_torch(spec, p):
    """torch's dropout reads a 0-d tensor ``p`` as its value (its functionals and modules
    alike); out of range it is the same ValueError, with the same text; a tensor of one
    value that is not 0-d, or of several, raises what torch raises."""
    x = positive(spec.shape)
    for pt in (torch.tensor(p), torch.tensor(p, dtype=torch.float64)):
        theirs, ours = spec.torch_fn(x, pt, True), spec.dk_fn(x, pt, True, seed=5)
        assert ours.shape == theirs.shape
        assert torch.equal(ours, spec.dk_fn(x, p, True, seed=5))  # the same mask as p itself
        module = spec.dk_cls(pt).train()
        assert module(x).shape == spec.torch_cls(pt).train()(x).shape
    assert_raises_like_torch(lambda: spec.torch_fn(x, torch.tensor([p]), True),
                             lambda: spec.dk_fn(x, torch.tensor([p]), True))
    bad = torch.tensor(1.5)
    with pytest.raises(ValueError) as theirs_err:
        spec.torch_fn(x, bad, True)
    with pytest.raises(ValueError) as ours_err:
        spec.dk_fn(x, bad, True)
    assert str(ours_err.value) == str(theirs_err.value)
    assert_raises_like_torch(lambda: spec.torch_fn(x, torch.tensor([0.5, 0.2]), True),
                             lambda: spec.dk_fn(x, torch.tensor([0.5, 0.2]), True))


@spec_param
def test_sparse_input_raises_like_torch(spec):
    """torch cannot drop units of a sparse tensor (NotImplementedError); dropkit says so
    too, and how to drop its values instead. Where nothing is dropped both return it."""
    x = quiet(lambda: positive(spec.shape).to_sparse())
    assert_raises_like_torch(lambda: quiet(spec.torch_fn, x, 0.5, True),
                             lambda: quiet(spec.dk_fn, x, 0.5, True))
    with pytest.raises(NotImplementedError, match=r"values\(\)"):
        quiet(spec.dk_fn, x, 0.5, True)
    assert spec.dk_fn(x, 0.5, False) is x and spec.torch_fn(x, 0.5, False) is x


def test_a_nested_tensor_is_refused_with_the_way_to_drop_its_values():
    """torch drops units of a jagged nested tensor; dropkit refuses it clearly (its masks are
    keyed by the index of a dense tensor) and names the equivalent on its values."""
    nt = torch.nested.nested_tensor([torch.ones(2, 3), torch.ones(4, 3)], layout=torch.jagged)
    with pytest.raises(NotImplementedError, match="nested_tensor_from_jagged"):
        DF.dropout(nt, 0.5, True)
    assert DF.dropout(nt, 0.5, False) is nt
    y = torch.nested.nested_tensor_from_jagged(DF.dropout(nt.values(), 0.5, seed=1), nt.offsets())
    assert torch.equal(y.values(), DF.dropout(torch.ones(6, 3), 0.5, seed=1))


@spec_param
@impl_param
def test_inplace_on_a_non_leaf_backpropagates(spec, impl):
    base = positive(spec.shape, torch.float64).requires_grad_()
    x = base * 1.0
    y = spec.fn(impl)(x, 0.5, True, True)
    assert y is x and y.grad_fn is not None
    g = torch.randn_like(y)
    y.backward(g)
    torch.testing.assert_close(base.grad, g * multiplier(spec, kept(spec, y.detach()), 0.5))


@spec_param
@impl_param
@pytest.mark.parametrize("saved", ["output-of-exp", "operand-of-mul"])
def test_inplace_on_a_saved_tensor_breaks_backward(spec, impl, saved):
    if saved == "output-of-exp":  # exp saves its result: dropping it in place invalidates it
        a = torch.randn(spec.shape, requires_grad=True)
        b = a.exp()
        spec.fn(impl)(b, 0.5, True, True)
        loss = b.sum()
    else:  # w * x saves x (which does not require grad) for w's gradient
        w = torch.randn(spec.shape, requires_grad=True)
        x = positive(spec.shape)
        loss = (w * x).sum()
        spec.fn(impl)(x, 0.5, True, True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


@spec_param
@pytest.mark.parametrize("p", [0.5, 1.0])
def test_inplace_on_a_leaf_that_requires_grad_raises_like_torch(spec, p):
    def call(fn: Callable) -> Callable[[], object]:
        return lambda: fn(positive(spec.shape).requires_grad_(), p, True, True)

    assert_raises_like_torch(call(spec.torch_fn), call(spec.dk_fn))


@spec_param
@impl_param
@pytest.mark.parametrize("case", NOOP_CASES)
def test_inplace_noop_on_a_leaf_that_requires_grad_is_fine(spec, impl, case):
    # torch only refuses an in-place write; when nothing is dropped nothing is written
    x = noop_input(spec, case).requires_grad_()
    assert noop_call(spec.fn(impl), case, x, True) is x


@spec_param
@impl_param
def test_no_grad_and_inference_mode(spec, impl):
    fn = spec.fn(impl)
    x = positive(spec.shape).requires_grad_()
    with torch.no_grad():
        y = fn(x, 0.5, True)
        leaf = x.detach().clone().requires_grad_()
        assert fn(leaf, 0.5, True, True) is leaf  # in place on a leaf is allowed without grad
    assert not y.requires_grad and y.grad_fn is None
    assert bool(kept(spec, y).any() and not kept(spec, y).all())
    with torch.inference_mode():
        z = fn(x.detach(), 0.5, True)
    assert z.is_inference() and z.shape == x.shape


@spec_param
@impl_param
def test_manual_seed_reproduces_the_mask(spec, impl):
    m, x = spec.cls(impl)(0.5), positive(spec.shape)
    torch.manual_seed(3)
    a = m(x)
    torch.manual_seed(3)
    b = m(x)
    torch.manual_seed(4)
    c = m(x)
    assert torch.equal(a, b) and not torch.equal(a, c)


@spec_param
def test_seed_and_generator_keywords_fix_the_mask(spec):
    x = positive(spec.shape)
    assert torch.equal(spec.dk_fn(x, 0.5, True, seed=5), spec.dk_fn(x, 0.5, True, seed=5))
    first = spec.dk_fn(x, 0.5, True, generator=torch.Generator().manual_seed(8))
    again = spec.dk_fn(x, 0.5, True, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first, again)


# --- torch.func with an explicit seed ----------------------------------------------------------


@spec_param
def test_func_grad_with_seed(spec):
    def f(t):
        return spec.dk_fn(t, 0.5, True, seed=99)

    x = positive(spec.shape, torch.float64)
    w = torch.randn_like(x)
    g = torch.func.grad(lambda t: (f(t) * w).sum())(x)
    torch.testing.assert_close(g, w * multiplier(spec, kept(spec, f(x)), 0.5))


@spec_param
def test_func_jvp_with_seed(spec):
    def f(t):
        return spec.dk_fn(t, 0.5, True, seed=99)

    x = positive(spec.shape, torch.float64)
    t = torch.randn_like(x)
    out, tangent = torch.func.jvp(f, (x,), (t,))
    torch.testing.assert_close(out, f(x))
    torch.testing.assert_close(tangent, t * multiplier(spec, kept(spec, out), 0.5))


@spec_param
def test_func_vmap_with_seed(spec):
    def f(t):
        return spec.dk_fn(t, 0.5, True, seed=99)

    xs = positive((3, *spec.shape), torch.float64)
    torch.testing.assert_close(torch.func.vmap(f)(xs), torch.stack([f(x) for x in xs]))


# --- layouts ------------------------------------------------------------------------------------


DISCONTIGUOUS_SPECS = [BY_NAME[n] for n in ("dropout", "dropout2d", "dropout3d",
                                             "alpha_dropout", "feature_alpha_dropout")]


@pytest.mark.parametrize("spec", DISCONTIGUOUS_SPECS, ids=_ids)
@impl_param
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_discontiguous_input_keeps_layout_and_values(spec, impl, memory_format):
    # _test_dropout_discontiguous (pytorch issue 47176)
    for p in [0, 1e-10]:  # 1e-10: not zero, so the drawing path runs
        inp = torch.ones(2, 3, 3, 3)
        inp_discontiguous = torch.empty(2, 3, 3, 6, memory_format=memory_format)[..., ::2]
        inp_discontiguous.copy_(inp)
        out = spec.cls(impl)(p=p)(inp_discontiguous)
        if p != 0:
            assert out.is_contiguous(memory_format=memory_format)
        torch.testing.assert_close(out, inp_discontiguous)


def _invert_perm(perm: tuple[int, ...]) -> tuple[int, ...]:
    where = {axis: i for i, axis in enumerate(perm)}
    return tuple(where[i] for i in range(len(perm)))


@pytest.mark.parametrize("spec", [BY_NAME["dropout"], BY_NAME["alpha_dropout"]], ids=_ids)
@impl_param
def test_stride_order_is_preserved(spec, impl):
    # _test_dropout_stride_mean_preserve; the mean check becomes a binomial bound on the
    # kept count pooled over all layouts
    inp = torch.ones(2, 3, 4, 5)
    counts = {p: [0, 0] for p in (0.3, 0.5, 0.7)}
    for perm in itertools.permutations((0, 1, 2, 3), r=4):
        for shift in [(0, 0), (1, 0), (0, 1), (1, 1)]:
            for p in [1e-10, 0.3, 0.5, 0.7]:
                permuted = inp.permute(perm).contiguous().permute(_invert_perm(perm))
                permuted = permuted[shift[0]:, shift[1]:, :, :]
                out = spec.cls(impl)(p=p)(permuted)
                assert out.permute(perm).is_contiguous()
                if p == 1e-10:
                    torch.testing.assert_close(out, permuted)
                else:
                    assert not torch.equal(out, permuted)
                    counts[p][0] += int(kept(spec, out).sum())
                    counts[p][1] += out.numel()
    for p, (k, n) in counts.items():
        assert_fraction(k, n, 1 - p)


# --- OpInfo sample inputs -----------------------------------------------------------------------


S = 5  # OpInfo's S


def opinfo_samples(spec: Spec, variant: str = "") -> list[tuple[tuple[int, ...], dict]]:
    """sample_inputs_dropout with each OpInfo's valid_input_dim / train."""
    valid = {"dropout1d": (2, 3), "dropout2d": (3, 4), "dropout3d": (4, 5)}.get(spec.name)
    train = None
    if spec.name == "feature_alpha_dropout":
        valid, train = ((4, 5), True) if variant == "with_train" else (None, False)
    cases = [(S,) * i for i in valid] if valid else [(S, S), (S,), ()]
    trainings = [train] if train is not None else [True, False]
    out = [
        (case, {"p": p, "training": training})
        for case, p, training in itertools.product(cases, [0.0, 0.5, 1.0], trainings)
    ]
    return [*out, (cases[-1], {})]


def _opinfo_params() -> list:
    params = [pytest.param(s, "", id=s.name) for s in SPECS if s.name != "feature_alpha_dropout"]
    fad = BY_NAME["feature_alpha_dropout"]
    params += [pytest.param(fad, v, id=f"{fad.name}-{v}") for v in ("with_train", "without_train")]
    return params


def _in_value_set(spec: Spec, x: torch.Tensor, y: torch.Tensor, p: float) -> bool:
    """Every output is a dropped or a kept value (inputs of any sign, so no mask inference)."""
    if spec.alpha:
        a, b_keep, b_drop = alpha_consts(p)
        return bool((torch.isclose(y, x * a + b_keep) | torch.isclose(y, torch.tensor(b_drop)
                                                                      .to(y))).all())
    return bool(((y == 0) | torch.isclose(y, x / (1 - p))).all())


@pytest.mark.parametrize(("spec", "variant"), _opinfo_params())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("inplace", [False, True])
def test_opinfo_sample_inputs_behave_like_torch(spec, variant, dtype, inplace):
    for shape, kwargs in opinfo_samples(spec, variant):
        base = torch.testing.make_tensor(shape, dtype=dtype, device="cpu", requires_grad=True)
        base_ref = base.detach().clone().requires_grad_()
        # OpInfo's inplace variants get a non-leaf copy
        x, x_ref = (base.clone(), base_ref.clone()) if inplace else (base, base_ref)
        x0 = x.detach().clone()
        kw = {**kwargs, "inplace": inplace}
        theirs_err = raised(partial(quiet, spec.torch_fn, x_ref.clone(), **kw))
        if theirs_err is not None:
            with pytest.raises(type(theirs_err)):
                quiet(spec.dk_fn, x.clone(), **kw)
            continue
        theirs = quiet(spec.torch_fn, x_ref, **kw)
        ours = quiet(spec.dk_fn, x, **kw)
        assert (ours.shape, ours.dtype) == (theirs.shape, theirs.dtype), (shape, kwargs)
        assert_same_aliasing(ours, x, theirs, x_ref)
        p, training = kwargs.get("p", 0.5), kwargs.get("training", spec.training_default)
        if p in (0.0, 1.0) or not training:
            assert torch.equal(ours, theirs), (shape, kwargs)
        else:
            assert _in_value_set(spec, x0, ours.detach(), p), (shape, kwargs)
        ours.sum().backward()
        theirs.sum().backward()
        assert base.grad.shape == base_ref.grad.shape
        if p in (0.0, 1.0) or not training:
            assert torch.equal(base.grad, base_ref.grad), (shape, kwargs)


# --- integer, bool and complex inputs --------------------------------------------------------


@spec_param
@pytest.mark.parametrize("dtype", NONFLOAT_DTYPES, ids=_dtype_id)
def test_nonfloat_input_is_returned_when_nothing_is_dropped(spec, dtype):
    # feature_alpha_dropout's without_train OpInfo: all_types_and_complex_and(bool, ...)
    for case, inplace in itertools.product(NOOP_CASES, (False, True)):
        x = noop_input(spec, case, dtype)
        xt = x.clone()
        assert noop_call(spec.torch_fn, case, xt, inplace) is xt  # the premise, on torch
        before = x.clone()
        try:
            ours = noop_call(spec.dk_fn, case, x, inplace)
        except Exception as err:
            pytest.fail(f"{case}, inplace={inplace}: dropkit raised {err!r}", pytrace=False)
        assert ours is x, f"{case}, inplace={inplace}"
        assert torch.equal(x, before)


@spec_param
@pytest.mark.parametrize("dtype", NONFLOAT_DTYPES, ids=_dtype_id)
def test_nonfloat_input_raises_like_torch_while_dropping(spec, dtype):
    # RuntimeError (int/bool: a float mask cannot be cast back), NotImplementedError (complex)
    for inplace in (False, True):
        def call(fn: Callable, inplace: bool = inplace) -> Callable[[], object]:
            return lambda: fn(torch.ones(spec.shape, dtype=dtype), 0.5, True, inplace)

        assert_raises_like_torch(call(spec.torch_fn), call(spec.dk_fn))


@spec_param
@pytest.mark.parametrize("dtype", NONFLOAT_DTYPES, ids=_dtype_id)
def test_nonfloat_input_with_p_one_is_zeros_like_torch(spec, dtype):
    # torch: input * 0 for every dtype (no mask is drawn)
    for inplace in (False, True):
        x, xt = torch.ones(spec.shape, dtype=dtype), torch.ones(spec.shape, dtype=dtype)
        theirs = spec.torch_fn(xt, 1.0, True, inplace)
        ours = spec.dk_fn(x, 1.0, True, inplace)
        assert ours.dtype == theirs.dtype == dtype
        assert torch.equal(ours, theirs)
        assert (ours is x) == (theirs is xt) == inplace


@spec_param
@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64], ids=_dtype_id)
def test_module_in_eval_passes_nonfloat_input_through(spec, dtype):
    x = torch.ones(spec.shape, dtype=dtype)
    assert spec.torch_cls(0.5).eval()(x) is x
    assert spec.dk_cls(0.5).eval()(x) is x


# --- 0-d inputs (OpInfo's () sample) -----------------------------------------------------------


@pytest.mark.parametrize("spec", [BY_NAME["dropout"], BY_NAME["alpha_dropout"]], ids=_ids)
@impl_param
def test_zero_dim_input(spec, impl):
    outcomes = set()
    for i in range(40):
        x = torch.tensor(1.0 + i / 40, dtype=torch.float64, requires_grad=True)
        y = spec.fn(impl)(x, 0.5, True)
        assert y.shape == () and y.dtype == x.dtype
        keep = kept(spec, y.detach())
        torch.testing.assert_close(y.detach(), expected(spec, x.detach(), keep, 0.5))
        y.backward()
        torch.testing.assert_close(x.grad, multiplier(spec, keep, 0.5))
        outcomes.add(bool(keep))
    assert outcomes == {True, False}  # P(40 equal draws) = 2**-39
