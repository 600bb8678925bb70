"""transformers caches whose beam reorder runs in place through :func:`pysample.cache.reorder_kv_cache_`:
:func:`reorder_cache_`, :class:`BeamCache` and :class:`BeamStaticCache`. Needs transformers
(``pip install 'pysample[transformers]'``); ``import pysample`` loads this module on first use of its classes."""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer, StaticCache, StaticLayer

from .cache import reorder_kv_cache_


def reorder_cache_(cache, beam_idx: torch.Tensor) -> None:
    """Reorders a transformers ``Cache`` in place by ``beam_idx``, as its ``reorder_cache`` does: every dynamic layer
    whole and every static layer over its filled positions through one :func:`reorder_kv_cache_` call each; layers of
    other kinds (quantized, sliding window) with their own ``reorder_cache``. An ``EncoderDecoderCache`` has both its
    caches reordered. A static layer's filled length is read on the host (a synchronisation on CUDA).

    Examples
    --------
    >>> cache = transformers.DynamicCache()
    >>> _ = cache.update(torch.arange(2.0).reshape(2, 1, 1, 1), torch.zeros(2, 1, 1, 1), layer_idx=0)
    >>> pysample.beam_cache.reorder_cache_(cache, torch.tensor([1, 1]))
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
