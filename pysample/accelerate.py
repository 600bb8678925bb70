"""One line to run a transformers model's ``generate()`` through pysample: :func:`accelerate`."""

from __future__ import annotations

from typing import Optional

import torch

from .processors import EncoderNoRepeatNGramLogitsProcessor, fuse

# What accelerate() sets on the model, so that it can be undone.
_PATCHED = ("_get_logits_processor", "_reorder_cache")


def accelerate(model, enabled: bool = True):
    """Makes ``model.generate()`` process logits and reorder beam caches with pysample; returns ``model``.

    generate() still builds its own processors from the generation config and the call's arguments (temperature,
    top_k, top_p, min_p, typical_p, epsilon_cutoff, eta_cutoff, repetition_penalty, encoder_repetition_penalty,
    no_repeat_ngram_size, encoder_no_repeat_ngram_size, bad_words_ids, sequence_bias, and any the user passes), in
    its own order; pysample then runs them as one :func:`pysample.fuse` chain, where every processor it has a kernel
    for runs as that kernel (consecutive warpers as one call) and any other processor as it is. Beam search
    (``num_beams > 1``) reorders the KV cache in place (:func:`pysample.beam_cache.reorder_cache_`) instead of with an
    ``index_select`` per tensor. The tokens are those generate() produces without pysample (see the README's
    Semantics section for the boundary cases of top-p, typical and eta).

    Parameters
    ----------
    model : transformers.GenerationMixin
        A model with ``generate()``; patched in place (instance attributes only: other instances are untouched).
    enabled : bool
        False undoes a previous ``accelerate(model)``.

    Returns
    -------
    The same model.

    Examples
    --------
    >>> model = pysample.accelerate(model)  # doctest: +SKIP
    >>> model.generate(**inputs, do_sample=True, top_p=0.9, repetition_penalty=1.2)  # doctest: +SKIP
    """
    if not enabled:
        for name in _PATCHED:
            model.__dict__.pop(name, None)
        return model
    from transformers import LogitsProcessorList  # a transformers model is given: transformers is there

    from .beam_cache import reorder_cache_

    accelerate(model, enabled=False)  # idempotent: wrap the class's methods, never a previous wrapper
    build_processors = model._get_logits_processor

    def _get_logits_processor(*args, **kwargs):
        processors = build_processors(*args, **kwargs)
        encoder_ids: Optional[torch.Tensor] = kwargs.get("encoder_input_ids")
        return LogitsProcessorList([fuse([_with_kernel(p, encoder_ids) for p in processors])])

    def _reorder_cache(cache, beam_idx):
        reorder_cache_(cache, beam_idx)
        return cache

    model._get_logits_processor = _get_logits_processor
    model._reorder_cache = _reorder_cache
    return model


def _with_kernel(processor, encoder_ids: Optional[torch.Tensor]):
    """`processor`, or pysample's processor for it where fuse() cannot convert it by its attributes alone."""
    import transformers

    if type(processor) is transformers.EncoderNoRepeatNGramLogitsProcessor and encoder_ids is not None:
        # transformers keeps only the encoder's n-grams; pysample bans from the ids themselves.
        return EncoderNoRepeatNGramLogitsProcessor(processor.ngram_size, encoder_ids)
    return processor
