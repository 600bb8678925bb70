"""In-place beam reordering of KV caches: :func:`reorder_kv_cache_` for tensors and transformers caches, and
:class:`BeamCache` / :class:`BeamStaticCache`, transformers caches whose ``reorder_cache`` goes through it."""

from __future__ import annotations

from typing import List, Optional

import torch

from . import ops  # noqa: F401  (loads the library)

try:  # transformers is optional: the op works on plain tensors without it
    from transformers.cache_utils import DynamicCache, DynamicLayer, StaticCache, StaticLayer
except ImportError:  # pragma: no cover - exercised only without transformers
    DynamicCache = StaticCache = None


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


def reorder_cache_(cache, beam_idx: torch.Tensor) -> None:
    """Reorders a transformers ``Cache`` in place by ``beam_idx``, as its ``reorder_cache`` does: every dynamic layer
    whole and every static layer over its filled positions through one :func:`reorder_kv_cache_` call each; layers of
    other kinds (quantized, sliding window) with their own ``reorder_cache``. An ``EncoderDecoderCache`` has both its
    caches reordered. A static layer's filled length is read on the host (a synchronisation on CUDA).

    Examples
    --------
    >>> cache = transformers.DynamicCache()
    >>> _ = cache.update(torch.arange(2.0).reshape(2, 1, 1, 1), torch.zeros(2, 1, 1, 1), layer_idx=0)
    >>> pysample.cache.reorder_cache_(cache, torch.tensor([1, 1]))
    >>> cache.layers[0].keys.flatten()
    tensor([1., 1.])
    """
    if hasattr(cache, "self_attention_cache"):
        reorder_cache_(cache.self_attention_cache, beam_idx)
        reorder_cache_(cache.cross_attention_cache, beam_idx)
        return
    ready = [layer for layer in cache.layers if getattr(layer, "is_initialized", False)]
    dynamic = [layer for layer in ready if type(layer) is DynamicLayer]
    static = [layer for layer in ready if type(layer) is StaticLayer]
    reorder_kv_cache_([(layer.keys, layer.values) for layer in dynamic], beam_idx)
    if static:
        filled = int(static[0].get_seq_length())
        reorder_kv_cache_([(layer.keys, layer.values) for layer in static], beam_idx, filled_length=filled)
    for layer in cache.layers:
        if layer not in dynamic and layer not in static:
            layer.reorder_cache(beam_idx)


if DynamicCache is not None:

    class BeamCache(DynamicCache):
        """A ``transformers.DynamicCache`` whose beam reorder runs in place through :func:`reorder_kv_cache_`.

        Constructed like a ``DynamicCache`` (e.g. ``BeamCache(config=model.config)``) and passed to
        ``model.generate(..., num_beams=k, past_key_values=cache)``; generate() then reorders it through pysample.
        Layers of other kinds (quantized, sliding window) keep their own reorder.

        Examples
        --------
        >>> cache = pysample.BeamCache()
        >>> _ = cache.update(torch.arange(2.0).reshape(2, 1, 1, 1), torch.zeros(2, 1, 1, 1), layer_idx=0)
        >>> cache.reorder_cache(torch.tensor([1, 1]))
        >>> cache.layers[0].keys.flatten()
        tensor([1., 1.])
        """

        def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
            reorder_cache_(self, beam_idx)

    class BeamStaticCache(StaticCache):
        """A ``transformers.StaticCache`` whose beam reorder runs in place, moving only the filled positions; unlike
        transformers' (``index_select``), its tensors keep their addresses, as compiled graphs need.

        The filled length is read from the layers (a host synchronisation on CUDA). Constructed like a
        ``StaticCache``; pass it to ``model.generate(..., num_beams=k, past_key_values=cache)``.

        Examples
        --------
        >>> config = transformers.LlamaConfig(num_hidden_layers=1, num_attention_heads=1, num_key_value_heads=1,
        ...                                   hidden_size=4, head_dim=4)
        >>> cache = pysample.BeamStaticCache(config=config, max_cache_len=3)
        >>> keys = torch.arange(2.0).reshape(2, 1, 1, 1).expand(2, 1, 1, 4)
        >>> _ = cache.update(keys, keys, layer_idx=0, cache_kwargs={"cache_position": torch.tensor([0])})
        >>> address = cache.layers[0].keys.data_ptr()
        >>> cache.reorder_cache(torch.tensor([1, 1]))
        >>> cache.layers[0].keys[:, 0, :, 0], cache.layers[0].keys.data_ptr() == address
        (tensor([[1., 0., 0.],
                [1., 0., 0.]]), True)
        """

        def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
            reorder_cache_(self, beam_idx)
