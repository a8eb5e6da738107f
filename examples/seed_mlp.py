"""The seed document's example: an MLP with Dropout(p=0.5) and without, on scikit-learn's digits.

Prints train and test accuracy of both models, each evaluated in train mode (dropout on)
and in eval mode (dropout off), so that the effect of ``model.train()`` / ``model.eval()``
(claim 14) is visible next to the effect of dropout itself (claims 1, 7).

Run: ``python examples/seed_mlp.py`` (about 20 s on 2 cores).
"""

from __future__ import annotations

import time

import torch
from torch import nn

import dropkit


def load_digits_split(seed: int = 0) -> tuple[torch.Tensor, ...]:
    """scikit-learn's bundled 8x8 digits, scaled to [0, 1], split 50/50 (train/test)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError("this example needs scikit-learn: pip install dropkit[lab]") from err
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0  # [1797, 64]
    y = torch.tensor(data.target, dtype=torch.int64)  # [1797]
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    half = len(x) // 2
    train, test = order[:half], order[half:]
    return x[train], y[train], x[test], y[test]


def mlp(p: float) -> nn.Sequential:
    """64-512-512-10 ReLU MLP with dropkit's Dropout(p) after each hidden layer."""
    return nn.Sequential(
        nn.Linear(64, 512), nn.ReLU(), dropkit.nn.Dropout(p),
        nn.Linear(512, 512), nn.ReLU(), dropkit.nn.Dropout(p),
        nn.Linear(512, 10),
    )


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 150) -> None:
    """The seed's training loop: model.train(), minibatches, Adam, cross-entropy."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()


def main() -> None:
    torch.manual_seed(0)
    x_tr, y_tr, x_te, y_te = load_digits_split()
    print(f"digits: {len(x_tr)} train / {len(x_te)} test, dropkit {dropkit.__version__}")
    print(f"{'model':<14}{'mode':<7}{'train acc':>10}{'test acc':>10}")
    for p in (0.0, 0.5):
        start = time.perf_counter()
        torch.manual_seed(1)
        model = mlp(p)
        train(model, x_tr, y_tr)
        for mode in ("train", "eval"):
            model.train(mode == "train")
            tr, te = accuracy(model, x_tr, y_tr), accuracy(model, x_te, y_te)
            print(f"{'Dropout(' + str(p) + ')':<14}{mode:<7}{tr:>10.4f}{te:>10.4f}")
        print(f"{'':<14}trained in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
