"""In-place beam reordering of KV caches: :func:`reorder_kv_cache_` for tensors, legacy tuples and transformers
caches (transformers' cache classes built on it are in :mod:`pysample.beam_cache`)."""

from __future__ import annotations

from typing import List, Optional

import torch

from . import ops  # noqa: F401  (loads the library)


def _cache_tensors(caches) -> List[torch.Tensor]:
    """The key and value tensors of a transformers ``Cache``, of legacy ``((k, v), ...)`` tuples, or a list."""
    if hasattr(caches, "layers"):
        return [
            t for layer in caches.layers if getattr(layer, "is_initialized", False) for t in (layer.keys, layer.values)
        ]
    tensors: List[torch.Tensor] = []
    for item in caches:
        if isinstance(item, torch.Tensor):
            tensors.append(item)
        else:
            tensors.extend(item)
    return tensors


def reorder_kv_cache_(caches, beam_idx: torch.Tensor, filled_length: Optional[int] = None) -> None:
    """Reorders every KV-cache tensor by ``beam_idx`` in place, all of them in one call: row ``i`` (dim 0) becomes
    the old row ``beam_idx[i]``, what ``index_select(0, beam_idx)`` returns, without allocating.

    Rows with ``beam_idx[i] == i`` are not touched (identity costs nothing); a parent copied to several children
    needs no scratch, and each permutation cycle one row of it.

    Parameters
    ----------
    caches : list of Tensor, transformers Cache, or tuple of (key, value) tuples
        Tensors ``(batch * beams, heads, seq, head_dim)`` (any trailing shape without ``filled_length``),
        contiguous, on one device.
    beam_idx : torch.Tensor
        ``(batch * beams,)`` int64 or int32, every value in ``[0, batch * beams)`` (checked on the CPU).
    filled_length : int, optional
        Moves only positions ``[0, filled_length)`` of dim 2: the part of a preallocated (static) cache that holds
        data.

    Examples
    --------
    >>> keys = torch.arange(4.0).reshape(4, 1, 1, 1)
    >>> pysample.reorder_kv_cache_([keys], torch.tensor([1, 0, 0, 3]))
    >>> keys.flatten()
    tensor([1., 0., 0., 3.])
    """
    tensors = _cache_tensors(caches)
    if not tensors:
        return
    if beam_idx.device != tensors[0].device:
        beam_idx = beam_idx.to(tensors[0].device)
    torch.ops.pysample.reorder_kv_cache_(tensors, beam_idx, filled_length)
