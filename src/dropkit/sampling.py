"""Sample-keyed masks: a sample's mask follows the sample, not the batch it sits in.

Inside ``with dropkit.sample_keys(ids, seed=s):`` every dropkit random call on a tensor
whose dim 0 is the batch keys row ``r`` by ``(s, ids[r], c)``, ``c`` the index of the call
within the block (docs/mask-spec.md, "Sample keys"). A sample's mask then depends only on
the seed, its id, the call and its shape: not on the batch size, its row, the order of the
rows, or which data-parallel rank holds it. So one process with a batch of ``B`` rows and
``N`` DDP processes with ``B / N`` rows each draw the same masks for the same samples, and
compute the same gradients (up to float summation order). See docs/distributed.md.
"""

from __future__ import annotations

import threading
from typing import Any

import torch

from dropkit import _sample_context, keys
from dropkit.backends import keyed

__all__ = ["IndexedDataset", "SampleKeys", "sample_keys"]


def _check_ids(ids: object) -> torch.Tensor:
    """``ids`` as a ``[B]`` int64 CPU tensor of non-negative values, else a clear error."""
    if not isinstance(ids, torch.Tensor):
        raise TypeError(
            f"sample_keys: ids must be a 1-D integer tensor (one id per row), but got "
            f"{type(ids).__name__}; e.g. torch.as_tensor(batch_indices)"
        )
    if ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex():
        raise TypeError(
            f"sample_keys: ids must be an integer tensor, but got dtype {ids.dtype}; pass "
            "the dataset indices of the rows (see dropkit.IndexedDataset)"
        )
    if ids.dim() != 1:
        raise ValueError(
            f"sample_keys: ids must be 1-D (one id per row of the batch), but got shape "
            f"{tuple(ids.shape)}"
        )
    if ids.dtype == torch.uint64 and ids.numel() and bool((ids.view(torch.int64) < 0).any()):
        raise ValueError("sample_keys: ids must be below 2**63; pass dataset indices")
    # A copy: editing the caller's tensor later (a reused buffer) changes no key. (Integer
    # tensors never require grad; a copy of a 1-D tensor is contiguous: nothing else to do.)
    ids = ids.to(device="cpu", dtype=torch.int64, copy=True)
    if ids.shape[0] and ids.numpy().min() < 0:
        raise ValueError(
            f"sample_keys: ids must be non-negative, but got {int(ids.min())}; pass dataset "
            "indices"
        )
    return ids


def sample_keys(ids: torch.Tensor, seed: int | torch.Tensor | None = None) -> SampleKeys:
    r"""Key every dropkit mask in the block by the sample ids of the batch's rows.

    .. math::
        m_{r,j} = \big[\text{Philox}(k_r, j) \ge \lfloor p\,2^{32} \rceil\big],\quad
        k_r = \text{Philox4x32-10}\big((\text{lo}(id_r), \text{hi}(id_r), c,
        \texttt{SKEY}),\ s\big)_{0:2}

    for call ``c`` of the block (0, 1, ...) and element ``j`` of row ``r`` (the mask spec
    within the row). Every random dropkit call in the block must draw a mask whose dim 0
    is the batch (``len(ids)`` rows): channel, locked, drop-path and DropBlock masks are
    keyed per row the same way. An explicit ``seed=`` on a call inside is overridden.
    Backward regenerates the masks from the keys; activation checkpointing
    (``torch.utils.checkpoint``, with its default ``preserve_rng_state=True``) recomputes
    the same masks, also after the block has closed (a block lives as long as a graph holds
    its masks' keys, and the last 16 stay for reentrant checkpointing); ``torch.compile``
    gives the masks of eager; ``mc_predict`` inside the block
    draws MC samples of sample-keyed rows (:func:`dropkit.keys.derive_mc_sample_keys`).
    Each thread has its own block (other threads' calls are not keyed by it).

    Args:
        ids: ``[B]`` integer tensor, the id of each row of the batch (the dataset indices
            the sampler yields; see :class:`IndexedDataset`), non-negative.
        seed: the key of the run, an int in ``[0, 2**64)`` or a 0-d integer tensor;
            None draws one from torch's default generator on entry (seed every rank alike
            for masks that agree across ranks).

    Raises:
        SampleKeyError: (inside the block) a call whose mask does not have ``len(ids)`` rows
            in dim 0, or has no per-sample meaning (DropConnect without ``per_sample``).

    Example:
        >>> import torch, dropkit
        >>> x = torch.ones(4, 6)
        >>> with dropkit.sample_keys(torch.tensor([10, 11, 12, 13]), seed=0):
        ...     a = dropkit.functional.dropout(x, 0.5)
        >>> with dropkit.sample_keys(torch.tensor([12, 10]), seed=0):  # another batch
        ...     b = dropkit.functional.dropout(x[:2], 0.5)
        >>> torch.equal(a[2], b[0]) and torch.equal(a[0], b[1])  # same sample, same mask
        True

    Paper: the per-element counter keys of Salmon et al. 2011, "Parallel random numbers: as
    easy as 1, 2, 3" (SC), applied to (sample id, element).
    """
    return SampleKeys(ids, seed)


class SampleKeys:
    """The block :func:`sample_keys` returns (a context manager; see there).

    Entering and leaving run eagerly, also inside a ``torch.compile``d function (they are
    excluded from the graph: a graph break, so not under ``fullgraph=True``, where the
    block is opened outside the compiled function); the calls inside read the block as
    compiled code.
    """

    def __init__(self, ids: torch.Tensor, seed: int | torch.Tensor | None = None) -> None:
        self._ids, self._seed = ids, seed
        self._state: _sample_context.SampleState | None = None

    def __enter__(self) -> None:
        if torch.compiler.is_compiling():  # (a compiled function opens it: run it eagerly)
            return _disabled(self._enter)()
        self._enter()

    def __exit__(self, *exc: object) -> None:
        if torch.compiler.is_compiling():
            return _disabled(self._exit)()
        self._exit()

    def _enter(self) -> None:
        if self._state is not None:
            raise RuntimeError(
                "this sample_keys block was entered already (open now, or closed: a block is "
                "entered once); make a new one, dropkit.sample_keys(ids, seed=...)"
            )
        ids = _check_ids(self._ids)
        seed_t = _seed_tensor(self._seed)
        derive = keyed.id_deriver(int(seed_t), ids, keys.SAMPLE_DOMAIN)
        state = _sample_context.SampleState(seed_t, ids, threading.get_ident(), derive)
        _sample_context.open_block(state)
        self._state = state

    def _exit(self) -> None:
        if self._state is not None:
            _sample_context.closed(self._state)


_LAST_SEED: tuple[int, torch.Tensor] | None = None  # (seed, its tensor): runs reuse one seed


def _seed_tensor(seed: int | torch.Tensor | None) -> torch.Tensor:
    """``keys.scalar_seed(seed, None)``, the tensor of a repeated int seed made once (the
    block only reads it; making one is about 3 us of the block's 15 us set-up)."""
    global _LAST_SEED
    if type(seed) is not int:
        return keys.scalar_seed(seed, None)
    last = _LAST_SEED
    if last is not None and last[0] == seed:
        return last[1]
    tensor = keys.scalar_seed(seed, None)
    _LAST_SEED = (seed, tensor)
    return tensor


def _disabled(f: Any) -> Any:
    """``f`` excluded from torch.compile's graph (it runs eagerly, a graph break). Applied
    only while compiling: the wrapper costs several microseconds on every eager call."""
    return torch.compiler.disable(f)


class IndexedDataset(torch.utils.data.Dataset):
    """Wrap a map-style dataset so that item ``i`` is ``(i, dataset[i])``: the ids for
    :func:`sample_keys`, batched by the default collate into a ``[B]`` int64 tensor.

    Works with any sampler, ``DistributedSampler`` included (each rank's ids are the
    global dataset indices it holds).

    Args:
        dataset: a map-style dataset (``__getitem__`` and ``__len__``).

    Example:
        >>> import torch, dropkit
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> data = dropkit.IndexedDataset(TensorDataset(torch.randn(6, 3)))
        >>> ids, (x,) = next(iter(DataLoader(data, batch_size=4, shuffle=True)))
        >>> with dropkit.sample_keys(ids, seed=0):
        ...     y = dropkit.functional.dropout(x, 0.5)
        >>> ids.shape, y.shape
        (torch.Size([4]), torch.Size([4, 3]))

        With ``DistributedSampler``: ``DataLoader(data, batch_size=B // world,
        sampler=DistributedSampler(data))``; every rank enters
        ``sample_keys(ids, seed=s)`` with the same ``s``.
    """

    def __init__(self, dataset: Any) -> None:
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(
                f"IndexedDataset wraps a map-style dataset (__getitem__ and __len__), but "
                f"got {type(dataset).__name__}"
            )
        self.dataset = dataset

    def __getitem__(self, index: int) -> tuple[int, Any]:
        i = int(index)
        if i < 0:  # (a negative index counts from the end, as in a list: its id is its place)
            i += len(self.dataset)
            if i < 0:
                raise IndexError(f"IndexedDataset index {index} out of range for "
                                 f"{len(self.dataset)} items")
        return i, self.dataset[i]

    def __len__(self) -> int:
        return len(self.dataset)
