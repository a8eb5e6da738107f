"""Mode safety: mc_mode, guard, active_dropout, convert (dropkit.modes)."""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Callable

import pytest
import torch
from torch import nn

import dropkit
from dropkit.modes import ActiveDropoutWarning, Conversion


def small_cnn(dropout: type[nn.Module] = dropkit.nn.Dropout) -> nn.Sequential:
    """Conv -> BatchNorm -> ReLU -> pool -> dropout head, in training mode."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        dropout(0.5),
        nn.Linear(16, 3),
    )


def flags(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


def bn_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "batches" in k}


# ------------------------------------------------------------------------------- mc_mode


@pytest.mark.parametrize("dropout", [dropkit.nn.Dropout, nn.Dropout])
def test_mc_mode_keeps_batchnorm_in_eval_and_restores(dropout: type[nn.Module]) -> None:
    model = small_cnn(dropout)
    model[3].eval()  # a mixed state, to check each module gets back its own flag
    before_flags, before_bn = flags(model), bn_state(model)
    x = torch.randn(6, 3, 5, 5)
    with dropkit.mc_mode(model) as m:
        assert m is model
        assert not model.training and not model[1].training  # BN in eval
        assert model[5].training  # only the dropout samples
        assert dropkit.active_dropout(model) == ["5"]
        a, b = model(x), model(x)
    assert not torch.equal(a, b)  # dropout did sample
    assert all(torch.equal(v, bn_state(model)[k]) for k, v in before_bn.items())
    assert flags(model) == before_flags
    # The same forward without mc_mode (training) moves BN's statistics: the check bites.
    model(x)
    assert not torch.equal(before_bn["1.running_mean"], model[1].running_mean)


def test_mc_mode_restores_after_exception() -> None:
    model = small_cnn().eval()
    model[5].train()
    before = flags(model)
    with pytest.raises(KeyError), dropkit.mc_mode(model):
        model.train()  # user code may even change modes inside
        raise KeyError("boom")
    assert flags(model) == before


def test_mc_mode_nested_restores_outer_state() -> None:
    model = small_cnn()
    with dropkit.mc_mode(model):
        inner_flags = flags(model)
        with dropkit.mc_mode(model):
            pass
        assert flags(model) == inner_flags
    assert all(flags(model))


def run_threads(*targets: Callable[[], None], timeout: float = 60.0) -> None:
    """Run each target in its own thread; re-raise the first error; fail on a hang."""
    errors: list[BaseException] = []

    def wrap(fn: Callable[[], None]) -> Callable[[], None]:
        def body() -> None:
            try:
                fn()
            except BaseException as err:  # surfaced in the test thread below
                errors.append(err)

        return body

    threads = [threading.Thread(target=wrap(fn), daemon=True) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]


@pytest.mark.parametrize("start", ["train", "eval"])
def test_mc_mode_overlapping_entries_from_two_threads_restore_original_flags(start: str) -> None:
    # A enters, B enters, A exits, B exits. Each entry used to save the flags it found, so B
    # saved A's MC flags and, exiting last, left them: BN in eval, or dropout in training.
    model = small_cnn()
    if start == "eval":
        model.eval()
    before = flags(model)
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, tuple[bool, bool]] = {}
    wait = 30.0

    def thread_a() -> None:
        with dropkit.mc_mode(model):
            seen["a"] = (model[1].training, model[5].training)
            a_in.set()
            assert b_in.wait(wait)
        a_out.set()

    def thread_b() -> None:
        assert a_in.wait(wait)
        with dropkit.mc_mode(model):
            b_in.set()
            assert a_out.wait(wait)
            seen["b"] = (model[1].training, model[5].training)  # A gone, B still inside

    run_threads(thread_a, thread_b)
    assert seen == {"a": (False, True), "b": (False, True)}  # MC mode while either is in
    assert flags(model) == before
    assert model[1].training == (start == "train")  # BN back to its own flag
    assert model[5].training == (start == "train")  # the dropout too


def test_mc_mode_reentry_after_overlap_and_after_an_exception() -> None:
    model = small_cnn()
    before = flags(model)
    with pytest.raises(KeyError), dropkit.mc_mode(model), dropkit.mc_mode(model):
        raise KeyError("boom")
    assert flags(model) == before
    model.eval()  # a new first entry saves the flags of now
    with dropkit.mc_mode(model):
        assert model[5].training and not model[1].training
    assert not any(flags(model))


def test_concurrent_mc_predict_keeps_flags_and_batchnorm_statistics() -> None:
    model = small_cnn()
    with torch.no_grad():
        model(torch.randn(8, 3, 5, 5))  # non-trivial running statistics
    model[3].eval()  # a mixed state
    before_flags, before_bn = flags(model), bn_state(model)
    x = torch.randn(4, 3, 5, 5)
    reference = dropkit.mc.mc_predict(model, x, samples=8, seed=3, chunk=2)

    def predict(start: threading.Barrier, outputs: list[torch.Tensor]) -> None:
        start.wait()  # both threads call mc_predict at once
        for _ in range(4):
            outputs.append(dropkit.mc.mc_predict(model, x, samples=8, seed=3, chunk=2))

    for _ in range(5):
        job = functools.partial(predict, threading.Barrier(2, timeout=30), outputs := [])
        run_threads(job, job)
        assert flags(model) == before_flags
        # A forward run while the other thread had restored training flags would move BN's
        # statistics and change the samples.
        assert all(torch.equal(v, bn_state(model)[k]) for k, v in before_bn.items())
        assert len(outputs) == 8 and all(torch.equal(y, reference) for y in outputs)


# ------------------------------------------------------------------------------- guard


def record(fn) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [w for w in caught if issubclass(w.category, ActiveDropoutWarning)]


@pytest.mark.parametrize("dropout", [dropkit.nn.Dropout, nn.Dropout])
@pytest.mark.parametrize("no_grad", [torch.no_grad, torch.inference_mode])
def test_guard_fires_once_on_forgotten_eval(dropout: type[nn.Module], no_grad) -> None:
    model = small_cnn(dropout)  # training mode: eval() forgotten
    x = torch.randn(2, 3, 5, 5)
    with dropkit.guard(model) as handle:
        assert handle.layers == 1

        def twice() -> None:
            with no_grad():
                model(x)
                model(x)

        caught = record(twice)
    assert len(caught) == 1  # once per module
    assert "'5'" in str(caught[0].message) and "model.eval()" in str(caught[0].message)
    assert issubclass(ActiveDropoutWarning, UserWarning)


def test_guard_strict_raises() -> None:
    model = small_cnn()
    handle = dropkit.guard(model, strict=True)
    with pytest.raises(RuntimeError, match=r"forget model\.eval"), torch.no_grad():
        model(torch.randn(2, 3, 5, 5))
    handle.remove()
    with torch.no_grad():
        model(torch.randn(2, 3, 5, 5))  # hooks gone: silent


def test_guard_silent_when_correct() -> None:
    model = small_cnn()
    x = torch.randn(2, 3, 5, 5)
    with dropkit.guard(model, strict=True):
        model(x)  # training with autograd on: intended
        with torch.no_grad():
            model.eval()(x)  # inference in eval: right
            with dropkit.mc_mode(model):
                model(x)  # intended MC dropout
            model.train()
            model[5].p = 0.0
            model(x)  # a p=0 layer drops nothing
    with torch.no_grad():
        model[5].p = 0.5
        model(x)  # the context manager removed the hooks


def test_active_dropout_lists_only_dropping_layers() -> None:
    model = nn.Sequential(
        dropkit.nn.Dropout(0.1), nn.Dropout(0.2), dropkit.nn.Dropout(0.0), nn.Linear(2, 2)
    )
    assert dropkit.active_dropout(model) == ["0", "1"]
    model[1].eval()
    assert dropkit.active_dropout(model) == ["0"]
    assert dropkit.active_dropout(model.eval()) == []


# ------------------------------------------------------------------------------- convert


class TinyVGG(nn.Module):
    """Built like torchvision's classifiers: features, avgpool, a dropout classifier head."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
            nn.Dropout2d(0.1),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(32, 16), nn.ReLU(True),
            nn.Dropout(p=0.3, inplace=True), nn.Linear(16, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def test_convert_torchvision_like_classifier_round_trip() -> None:
    torch.manual_seed(0)
    model = TinyVGG()
    model(torch.randn(4, 3, 8, 8))  # give BN non-trivial running statistics
    model.eval()
    model.classifier[0].train()  # a mixed train/eval state to preserve
    reference = TinyVGG()
    reference.load_state_dict(model.state_dict())
    reference.eval()
    x = torch.randn(3, 3, 8, 8)
    changes = dropkit.convert(model)
    assert changes == [
        Conversion("features.7", nn.Dropout2d, dropkit.nn.Dropout2d),
        Conversion("classifier.0", nn.Dropout, dropkit.nn.Dropout),
        Conversion("classifier.3", nn.Dropout, dropkit.nn.Dropout),
    ]
    head = model.classifier
    assert type(head[3]) is dropkit.nn.Dropout and head[3].p == 0.3 and head[3].inplace
    assert head[0].training and not head[3].training and not model.features[7].training
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))  # eval outputs unchanged
    # A torch checkpoint loads strictly into the converted model (dropouts hold no tensors).
    fresh = TinyVGG()
    dropkit.convert(fresh)
    fresh.load_state_dict(reference.state_dict(), strict=True)
    assert fresh.state_dict().keys() == reference.state_dict().keys()
    # Nothing left to convert: baal-style warning.
    with pytest.warns(UserWarning, match="No layer was modified"):
        assert dropkit.convert(model) == []


def test_convert_every_class_shared_modules_and_subclasses() -> None:
    class MyDropout(nn.Dropout):
        pass

    shared = nn.Dropout(0.25)
    model = nn.ModuleDict({
        "a": shared, "b": nn.Sequential(shared), "d1": nn.Dropout1d(0.1),
        "d3": nn.Dropout3d(0.2), "al": nn.AlphaDropout(0.3),
        "fa": nn.FeatureAlphaDropout(0.4, inplace=True), "mine": MyDropout(0.5),
    })
    changes = dropkit.convert(model)
    assert {c.name: c.new for c in changes} == {
        "a": dropkit.nn.Dropout, "b.0": dropkit.nn.Dropout, "d1": dropkit.nn.Dropout1d,
        "d3": dropkit.nn.Dropout3d, "al": dropkit.nn.AlphaDropout,
        "fa": dropkit.nn.FeatureAlphaDropout,
    }
    assert model["a"] is model["b"][0]  # sharing preserved
    assert model["fa"].p == 0.4 and model["fa"].inplace
    assert type(model["mine"]) is MyDropout  # a subclass may override forward: left alone
    with pytest.raises(ValueError, match=r"dropkit\.nn\.Dropout"):
        dropkit.convert(nn.Dropout(0.5))
    with pytest.raises(TypeError):
        dropkit.convert("model")  # type: ignore[arg-type]


def test_convert_replaces_every_slot_of_a_module_shared_in_one_parent() -> None:
    # named_children() deduplicates: the second slot of a shared dropout used to stay torch's.
    torch.manual_seed(0)
    shared = nn.Dropout(0.2)
    model = nn.Sequential(nn.Linear(2, 2), shared, nn.Linear(2, 2), shared)
    changes = dropkit.convert(model)
    assert changes == [
        Conversion("1", nn.Dropout, dropkit.nn.Dropout),
        Conversion("3", nn.Dropout, dropkit.nn.Dropout),
    ]
    assert type(model[1]) is dropkit.nn.Dropout and model[1] is model[3]  # one shared twin
    assert model[1].p == 0.2 and model[1].training
    y = dropkit.mc.mc_predict(model, torch.randn(3, 2), samples=4, seed=0)
    assert y.shape == (4, 3, 2)


def test_convert_shared_module_across_parents_and_none_slots() -> None:
    shared = nn.Dropout(0.3).eval()
    inner = nn.Sequential(shared, nn.Linear(2, 2))
    model = nn.ModuleDict({"x": shared, "inner": inner, "again": inner})
    model.register_module("empty", None)
    changes = dropkit.convert(model)
    # One Conversion per replaced slot: "x" and inner's slot 0 (inner itself is shared,
    # so its one slot is replaced once, whichever name reaches it first).
    assert [(c.name, c.old, c.new) for c in changes] == [
        ("x", nn.Dropout, dropkit.nn.Dropout),
        ("inner.0", nn.Dropout, dropkit.nn.Dropout),
    ]
    assert model["x"] is model["inner"][0] is model["again"][0]
    assert type(model["x"]) is dropkit.nn.Dropout and not model["x"].training
    assert model["empty"] is None
