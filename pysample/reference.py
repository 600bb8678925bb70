"""Pure-torch reference implementations of the logits warpers, with exactly transformers' semantics.

These are the ground truth the compiled ops are tested against. Each function computes what the transformers
warper of the same name computes (transformers 5.23, ``generation/logits_process.py``), with the same torch
operations in the same order, so that for float32 inputs it returns the same bits as transformers does. They are
written here rather than imported so that the tests check pysample against an independent statement of the rules,
and so that the reference accepts a per-row tensor for every parameter (a serving batch mixes requests).

Differences from transformers, all deliberate:

* Sorts are stable (``torch.sort(..., stable=True)``). transformers' unstable sort chooses an arbitrary subset of
  tokens with equal values at the top-p and typical boundaries; the stable sort keeps the higher token ids at the
  top-p boundary and the lower token ids at the typical boundary, which is also what pysample's kernels do.
* :func:`eta` computes the entropy with the formula of ``torch.distributions.Categorical(logits=...).entropy()``
  but without its argument validation, so a row holding NaN (or only ``-inf``) is left unfiltered instead of
  raising ``ValueError``.
* Every stage also accepts its "disabled" value (``top_k=0``, ``min_p=0``, ``epsilon=0``, ``eta=0``, ``top_p=1``,
  ``typical_p=1``, ``temperature=1``), which the transformers constructors reject for some stages, with the
  natural meaning (``top_k=0`` keeps everything; the others follow from the formulas).

Every function takes ``scores`` of shape ``(batch, vocab)`` and returns a new tensor of the same shape and dtype;
the input is never modified. A parameter is a Python number, a 0-d tensor, or a ``(batch,)`` tensor holding one
value per row (applied row by row, with the row's value converted to a Python number).
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Union

import numpy as np
import torch

from ._stages import STAGE_NAMES

Param = Union[float, int, torch.Tensor]

__all__ = [
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "typical",
    "epsilon",
    "eta",
    "warp_logits",
    "STAGES",
    "philox4x32_10",
    "draw_bits",
    "draw_bits_array",
    "draw_target",
    "exp_nonpos",
    "sample_weight",
    "sample",
    "sample_distribution",
    "apply_penalties",
    "no_repeat_ngram",
    "bias_sequences",
    "apply_token_bitmask",
    "token_logprobs",
    "beam_search_step",
]


# ---- helpers ---------------------------------------------------------------------------------------------------


def _per_row(value: Param, batch: int) -> Optional[list]:
    """The per-row values of `value` as Python numbers, or None when it is one value for every row."""
    if isinstance(value, torch.Tensor):
        if value.dim() == 0:
            return None
        if value.dim() != 1 or value.shape[0] != batch:
            raise ValueError(f"a per-row parameter must have shape ({batch},), got {tuple(value.shape)}")
        return value.tolist()
    return None


def _scalar(value: Param):
    """`value` as a Python number (a 0-d tensor is read)."""
    return value.item() if isinstance(value, torch.Tensor) else value


def _remove_mask(
    scores: torch.Tensor, value: Param, mask_fn: Callable[[torch.Tensor, object], torch.Tensor]
) -> torch.Tensor:
    """The tokens to remove, ``(batch, vocab)`` bool: ``mask_fn(scores, v)`` for a scalar, row by row otherwise."""
    rows = _per_row(value, scores.shape[0])
    if rows is None:
        return mask_fn(scores, _scalar(value))
    mask = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    for r, v in enumerate(rows):
        mask[r : r + 1] = mask_fn(scores[r : r + 1], v)
    return mask


def _empty(scores: torch.Tensor) -> bool:
    return scores.numel() == 0


def _no_removal(scores: torch.Tensor) -> torch.Tensor:
    return torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)


# ---- masks: which tokens each stage removes ----------------------------------------------------------------------


def _top_k_mask(scores: torch.Tensor, k: int, min_tokens_to_keep: int = 1) -> torch.Tensor:
    # TopKLogitsWarper: top_k = max(top_k, min_tokens_to_keep) in the constructor, clipped to the vocabulary in
    # __call__; every token below the k-th largest value goes (ties with it stay).
    if k == 0 or _empty(scores):
        return _no_removal(scores)
    k = min(max(int(k), min_tokens_to_keep), scores.size(-1))
    return scores < torch.topk(scores, k)[0][..., -1, None]


def _top_p_mask(scores: torch.Tensor, p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    # TopPLogitsWarper: ascending sort, softmax, inclusive cumsum; a token goes when the mass at or below it is
    # <= 1 - top_p (the difference taken in double, the comparison in the scores' dtype); the last
    # min_tokens_to_keep stay. A NaN anywhere makes the row's softmax NaN, and NaN <= x is false: nothing goes.
    if _empty(scores):
        return _no_removal(scores)
    sorted_logits, sorted_indices = torch.sort(scores, descending=False, stable=True)
    cumulative_probs = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    sorted_indices_to_remove = cumulative_probs <= (1 - float(p))
    sorted_indices_to_remove[..., -min_tokens_to_keep:] = 0
    return sorted_indices_to_remove.scatter(1, sorted_indices, sorted_indices_to_remove)


def _min_p_mask(scores: torch.Tensor, p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    # MinPLogitsWarper: probability < min_p * top probability goes, except the min_tokens_to_keep most probable
    # (torch.topk's choice among equal probabilities).
    if _empty(scores):
        return _no_removal(scores)
    probs = torch.softmax(scores, dim=-1)
    top_probs = probs.amax(dim=-1, keepdim=True)
    tokens_to_remove = probs < float(p) * top_probs
    k = min(min_tokens_to_keep, probs.shape[-1])
    tokens_to_remove.scatter_(-1, torch.topk(probs, k, dim=-1).indices, False)
    return tokens_to_remove


def _typical_distance(scores: torch.Tensor) -> torch.Tensor:
    """``|-(log p) - entropy|`` per token, as TypicalLogitsWarper computes it, ``(batch, vocab)``."""
    normalized = torch.nn.functional.log_softmax(scores, dim=-1)
    p = torch.exp(normalized)
    ent = -(normalized * p).nansum(-1, keepdim=True)
    return torch.abs((-normalized) - ent)


def _typical_mask(scores: torch.Tensor, mass: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    # TypicalLogitsWarper: sort by distance from the entropy (ascending), keep through the first token at which
    # the cumulative probability reaches `mass` (clamped to the last token) and every token at that distance, and
    # the first min_tokens_to_keep in that order.
    if _empty(scores):
        return _no_removal(scores)
    shifted_scores = _typical_distance(scores)
    sorted_scores, sorted_indices = torch.sort(shifted_scores, descending=False, stable=True)
    sorted_logits = scores.gather(-1, sorted_indices)
    cumulative_probs = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    last_ind = (cumulative_probs < float(mass)).sum(dim=1)
    last_ind.clamp_(max=sorted_scores.shape[-1] - 1)
    sorted_indices_to_remove = sorted_scores > sorted_scores.gather(1, last_ind.view(-1, 1))
    sorted_indices_to_remove[..., :min_tokens_to_keep] = 0
    return sorted_indices_to_remove.scatter(1, sorted_indices, sorted_indices_to_remove)


def _keep_top_values(scores: torch.Tensor, min_tokens_to_keep: int) -> torch.Tensor:
    """Tokens *not* among the min_tokens_to_keep largest values (ties with the last of them count as among)."""
    k = min(min_tokens_to_keep, scores.size(-1))
    return scores < torch.topk(scores, k)[0][..., -1, None]


def _epsilon_mask(scores: torch.Tensor, eps: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    # EpsilonLogitsWarper: probability < epsilon goes, unless among the min_tokens_to_keep largest scores.
    if _empty(scores):
        return _no_removal(scores)
    probabilities = scores.softmax(dim=-1)
    return (probabilities < float(eps)) & _keep_top_values(scores, min_tokens_to_keep)


def _entropy(scores: torch.Tensor) -> torch.Tensor:
    """``Categorical(logits=scores).entropy()`` without the argument validation, ``(batch,)``."""
    logits = scores - scores.logsumexp(dim=-1, keepdim=True)
    probs = torch.softmax(logits, dim=-1)
    logits = torch.clamp(logits, min=torch.finfo(logits.dtype).min)
    return -(logits * probs).sum(-1)


def _eta_mask(scores: torch.Tensor, eps: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    # EtaLogitsWarper: probability < min(epsilon, sqrt(epsilon) * exp(-entropy)) goes, unless among the
    # min_tokens_to_keep largest scores. epsilon is a float32 0-d tensor, as transformers stores it.
    if _empty(scores):
        return _no_removal(scores)
    epsilon_t = torch.tensor(float(eps), device=scores.device)
    probabilities = scores.softmax(dim=-1)
    cutoff = torch.min(epsilon_t, torch.sqrt(epsilon_t) * torch.exp(-_entropy(scores)))[..., None]
    return (probabilities < cutoff) & _keep_top_values(scores, min_tokens_to_keep)


# ---- public stages -----------------------------------------------------------------------------------------------


def temperature(
    scores: torch.Tensor, temperature: Param, filter_value: float = -math.inf, min_tokens_to_keep: int = 1
) -> torch.Tensor:
    """``scores / temperature``, as ``TemperatureLogitsWarper``.

    Parameters
    ----------
    scores : torch.Tensor
        ``(batch, vocab)`` logits.
    temperature : float or torch.Tensor
        Strictly positive; a ``(batch,)`` tensor gives each row its own.
    filter_value, min_tokens_to_keep
        Unused; accepted so that every stage has the same signature.

    Returns
    -------
    torch.Tensor
        ``(batch, vocab)``, same dtype as ``scores``.

    Examples
    --------
    >>> temperature(torch.tensor([[1.0, 2.0]]), 0.5)
    tensor([[2., 4.]])
    """
    rows = _per_row(temperature, scores.shape[0])
    if rows is None:
        return scores / float(_scalar(temperature))
    out = torch.empty_like(scores)
    for r, t in enumerate(rows):
        out[r : r + 1] = scores[r : r + 1] / float(t)
    return out


def top_k(
    scores: torch.Tensor, top_k: Param, filter_value: float = -math.inf, min_tokens_to_keep: int = 1
) -> torch.Tensor:
    """Keeps the ``top_k`` largest scores of each row and every score equal to the ``top_k``-th, as
    ``TopKLogitsWarper``.

    ``top_k`` is raised to ``min_tokens_to_keep`` and clipped to the vocabulary size; ``top_k=0`` keeps everything.
    A NaN counts as larger than every number (``torch.topk``); since ``x < NaN`` is false, a row whose ``top_k``-th
    largest value is NaN keeps everything.

    Parameters
    ----------
    scores : torch.Tensor
        ``(batch, vocab)`` logits.
    top_k : int or torch.Tensor
        ``>= 0``; a ``(batch,)`` integer tensor gives each row its own.
    filter_value : float
        Value written to removed tokens.
    min_tokens_to_keep : int
        Lower bound for ``top_k`` (when ``top_k > 0``).

    Returns
    -------
    torch.Tensor
        ``(batch, vocab)``.

    Examples
    --------
    >>> top_k(torch.tensor([[1.0, 3.0, 2.0, 3.0]]), 1)
    tensor([[-inf, 3., -inf, 3.]])
    """
    mask = _remove_mask(scores, top_k, lambda s, k: _top_k_mask(s, int(k), min_tokens_to_keep))
    return scores.masked_fill(mask, filter_value)


def top_p(
    scores: torch.Tensor, top_p: Param, filter_value: float = -math.inf, min_tokens_to_keep: int = 1
) -> torch.Tensor:
    """Nucleus filtering, as ``TopPLogitsWarper``.

    Sorted ascending, a token is removed when the cumulative probability up to and including it is
    ``<= 1 - top_p`` (the threshold computed in double, compared in the scores' dtype); the ``min_tokens_to_keep``
    most probable tokens stay. ``top_p=1`` therefore still removes tokens whose probability underflows to 0;
    ``top_p=0`` keeps only the ``min_tokens_to_keep`` most probable. A row holding NaN or ``+inf``, or only
    ``-inf``, is left unfiltered (its softmax is NaN).

    Parameters
    ----------
    scores : torch.Tensor
        ``(batch, vocab)`` logits.
    top_p : float or torch.Tensor
        In ``[0, 1]``; a ``(batch,)`` tensor gives each row its own.
    filter_value : float
        Value written to removed tokens.
    min_tokens_to_keep : int
        Minimum number of tokens kept.

    Returns
    -------
    torch.Tensor
        ``(batch, vocab)``.

    Examples
    --------
    >>> top_p(torch.tensor([[0.0, 1.0, 3.0]]), 0.5)
    tensor([[-inf, -inf, 3.]])
    """
    mask = _remove_mask(scores, top_p, lambda s, p: _top_p_mask(s, p, min_tokens_to_keep))
    return scores.masked_fill(mask, filter_value)


def min_p(
    scores: torch.Tensor, min_p: Param, filter_value: float = -math.inf, min_tokens_to_keep: int = 1
) -> torch.Tensor:
    """Removes tokens less probable than ``min_p`` times the most probable one, as ``MinPLogitsWarper``.

    The ``min_tokens_to_keep`` most probable tokens stay (``torch.topk`` on the probabilities chooses among ties).

    Parameters
    ----------
    scores : torch.Tensor
        ``(batch, vocab)`` logits.
    min_p : float or torch.Tensor
        In ``[0, 1]``; a ``(batch,)`` tensor gives each row its own.
    filter_value : float
        Value written to removed tokens.
    min_tokens_to_keep : int
        Minimum number of tokens kept.

    Returns
    -------
    torch.Tensor
        ``(batch, vocab)``.

    Examples
    --------
    >>> min_p(torch.tensor([[0.0, 1.0, 5.0]]), 0.1)
    tensor([[-inf, -inf, 5.]])
    """
    mask = _remove_mask(scores, min_p, lambda s, p: _min_p_mask(s, p, min_tokens_to_keep))
    return scores.masked_fill(mask, filter_value)


def typical(
    scores: torch.Tensor, typical_p: Param, filter_value: float = -math.inf, min_tokens_to_keep: int = 1
) -> torch.Tensor:
    """Typical decoding, as ``TypicalLogitsWarper`` with ``mass=typical_p``.

    Tokens are ordered by ``|-(log p) - entropy|`` (ascending, stable); the first token at which the cumulative
    probability reaches ``typical_p`` (the last token if none does) sets the cut distance, every token farther away
    is removed, and the first ``min_tokens_to_keep`` in that order stay.

    Parameters
    ----------
    scores : torch.Tensor
        ``(batch, vocab)`` logits.
    typical_p : float or torch.Tensor
        The mass, in ``[0, 1]``; a ``(batch,)`` tensor gives each row its own.
    filter_value : float
        Value written to removed tokens.
    min_tokens_to_keep : int
        Minimum number of tokens kept.

    Returns
    -------
    torch.Tensor
        ``(batch, vocab)``.

    Examples
    --------
    >>> typical(torch.tensor([[0.0, 1.0, 5.0]]), 0.5)
    tensor([[-inf, -inf, 5.]])
    """
    mask = _remove_mask(scores, typical_p, lambda s, m: _typical_mask(s, m, min_tokens_to_keep))
    return scores.masked_fill(mask, filter_value)


def epsilon(
    scores: torch.Tensor, epsilon: Param, filter_value: float = -math.inf, min_tokens_to_keep: int = 1
) -> torch.Tensor:
    """Removes tokens whose probability is below ``epsilon``, as ``EpsilonLogitsWarper``.

    Tokens whose score is at least the ``min_tokens_to_keep``-th largest stay.

    Parameters
    ----------
    scores : torch.Tensor
        ``(batch, vocab)`` logits.
    epsilon : float or torch.Tensor
        In ``[0, 1]``; a ``(batch,)`` tensor gives each row its own.
    filter_value : float
        Value written to removed tokens.
    min_tokens_to_keep : int
        Minimum number of tokens kept.

    Returns
    -------
    torch.Tensor
        ``(batch, vocab)``.

    Examples
    --------
    >>> epsilon(torch.tensor([[0.0, 1.0, 5.0]]), 0.1)
    tensor([[-inf, -inf, 5.]])
    """
    mask = _remove_mask(scores, epsilon, lambda s, e: _epsilon_mask(s, e, min_tokens_to_keep))
    return scores.masked_fill(mask, filter_value)


def eta(scores: torch.Tensor, eta: Param, filter_value: float = -math.inf, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Eta sampling, as ``EtaLogitsWarper(epsilon=eta)``.

    Removes tokens whose probability is below ``min(eta, sqrt(eta) * exp(-entropy))``; tokens whose score is at
    least the ``min_tokens_to_keep``-th largest stay. A row holding NaN, ``+inf`` or only ``-inf`` is left
    unfiltered (transformers raises there).

    Parameters
    ----------
    scores : torch.Tensor
        ``(batch, vocab)`` logits.
    eta : float or torch.Tensor
        The ``epsilon`` of ``EtaLogitsWarper``, in ``[0, 1]``; a ``(batch,)`` tensor gives each row its own.
    filter_value : float
        Value written to removed tokens.
    min_tokens_to_keep : int
        Minimum number of tokens kept.

    Returns
    -------
    torch.Tensor
        ``(batch, vocab)``.

    Examples
    --------
    >>> eta(torch.tensor([[0.0, 1.0, 5.0]]), 0.1)
    tensor([[-inf, -inf, 5.]])
    """
    mask = _remove_mask(scores, eta, lambda s, e: _eta_mask(s, e, min_tokens_to_keep))
    return scores.masked_fill(mask, filter_value)


# name of the warp_logits keyword -> (mask function, whether min_tokens_to_keep applies), in generate()'s order.
_MASKS = {
    "top_k": _top_k_mask,
    "top_p": _top_p_mask,
    "min_p": _min_p_mask,
    "typical_p": _typical_mask,
    "epsilon": _epsilon_mask,
    "eta": _eta_mask,
}
#: The stages of :func:`warp_logits` in the order it applies them (the order of ``generate()``).
STAGES = STAGE_NAMES


def warp_logits(
    scores: torch.Tensor,
    *,
    temperature: Optional[Param] = None,
    top_k: Optional[Param] = None,
    top_p: Optional[Param] = None,
    min_p: Optional[Param] = None,
    typical_p: Optional[Param] = None,
    epsilon: Optional[Param] = None,
    eta: Optional[Param] = None,
    min_tokens_to_keep: int = 1,
    filter_value: float = -math.inf,
) -> torch.Tensor:
    """Reference for :func:`pysample.warp_logits`: the stages one after the other, in generate()'s order.

    Each stage runs when its parameter is not None. Later stages see the tokens removed by earlier ones as
    ``-inf`` (probability 0) whatever ``filter_value`` is; removed tokens are set to ``filter_value`` at the end.
    For the default ``filter_value=-inf`` this is exactly applying the transformers warpers in order.
    ``min_tokens_to_keep`` applies to top-p, min-p, typical, epsilon and eta, not to top-k (whose drop-in class
    folds it into ``top_k`` when constructed).

    Parameters
    ----------
    scores : torch.Tensor
        ``(batch, vocab)`` logits, float32, float16 or bfloat16.
    temperature, top_k, top_p, min_p, typical_p, epsilon, eta : number or torch.Tensor, optional
        Each stage's parameter: a number, a 0-d tensor or a ``(batch,)`` tensor; None skips the stage.
    min_tokens_to_keep : int
        Minimum number of tokens kept by the probability stages.
    filter_value : float
        Value written to removed tokens.

    Returns
    -------
    torch.Tensor
        ``(batch, vocab)`` warped logits, same dtype as ``scores``.

    Examples
    --------
    >>> warp_logits(torch.tensor([[1.0, 2.0, 3.0]]), temperature=0.5, top_k=2)
    tensor([[-inf, 4., 6.]])
    """
    params = dict(top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p, epsilon=epsilon, eta=eta)
    work = scores if temperature is None else globals()["temperature"](scores, temperature)
    scaled = work
    removed = _no_removal(scores)
    for name, mask_fn in _MASKS.items():
        value = params[name]
        if value is None:
            continue
        keep = 1 if name == "top_k" else min_tokens_to_keep
        mask = _remove_mask(work, value, lambda s, v, fn=mask_fn, keep=keep: fn(s, v, keep))
        removed |= mask
        work = work.masked_fill(mask, -math.inf)
    return scaled.masked_fill(removed, filter_value)


# ---- sampling: pysample.sample, bit for bit ------------------------------------------------------------------
#
# A statement in Python of the rules of csrc/include/pysample/sample.h (the header's comment lists them): the same
# Philox4x32-10 counter-based generator, the same float32 exp in the same order of operations (numpy float32
# arithmetic is IEEE single precision, one rounding per operation, no fused multiply-add), the same fixed-point
# weights and the same keep rules, so that :func:`sample` returns the op's tokens exactly. It sorts the vocabulary
# where the kernel does not: it is a reference, not a kernel.

_MASK32 = 0xFFFFFFFF
_MASK64 = 0xFFFFFFFFFFFFFFFF
PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57  # multipliers of counter words 0 and 2
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85  # Weyl increments of key words 0 and 1
#: Fixed-point scale of the weights (the max's weight) and the shift whose addition rounds a double to an integer.
WEIGHT_SCALE = 2.0**40
ROUNDING_SHIFT = 2.0**52
_ROUNDING_SHIFT_BITS = int(np.float64(ROUNDING_SHIFT).view(np.uint64))


def philox4x32_10(counter, key):
    """Philox4x32-10 of Random123 on Python ints: ``counter`` four 32-bit words, ``key`` two; returns four words.

    Examples
    --------
    >>> [hex(w) for w in philox4x32_10((0, 0, 0, 0), (0, 0))]
    ['0x6627e8d5', '0xe169c58d', '0xbc57ac4c', '0x9b00dbd8']
    """
    x0, x1, x2, x3 = (int(w) & _MASK32 for w in counter)
    k0, k1 = (int(w) & _MASK32 for w in key)
    for _ in range(10):
        p0, p1 = PHILOX_M0 * x0, PHILOX_M1 * x2
        x0, x1, x2, x3 = (p1 >> 32) ^ x1 ^ k0, p1 & _MASK32, (p0 >> 32) ^ x3 ^ k1, p0 & _MASK32
        k0, k1 = (k0 + PHILOX_W0) & _MASK32, (k1 + PHILOX_W1) & _MASK32
    return x0, x1, x2, x3


def draw_bits(seed: int, step: int, draw: int) -> int:
    """The 64 random bits of draw ``draw`` of a row: Philox of counter (draw, 0, step low, step high) under the key
    (seed low, seed high), words 0 and 1 as the high and low halves. ``seed`` and ``step`` are taken modulo 2^64 (an
    int64 tensor's negative values are the same bits)."""
    seed, step = int(seed) & _MASK64, int(step) & _MASK64
    r = philox4x32_10((int(draw) & _MASK32, 0, step & _MASK32, step >> 32), (seed & _MASK32, seed >> 32))
    return (r[0] << 32) | r[1]


def _mulhilo_np(multiplier: int, x: np.ndarray):
    product = np.uint64(multiplier) * x.astype(np.uint64)  # < 2^64: exact
    return (product >> np.uint64(32)).astype(np.uint32), (product & np.uint64(_MASK32)).astype(np.uint32)


def draw_bits_array(seed: int, step: int, draws) -> np.ndarray:
    """:func:`draw_bits` for many draws of one row at once (numpy uint64 array), the same values."""
    seed, step = int(seed) & _MASK64, int(step) & _MASK64
    x0 = np.asarray(draws, dtype=np.uint32)
    x1 = np.zeros_like(x0)
    x2 = np.full_like(x0, step & _MASK32)
    x3 = np.full_like(x0, step >> 32)
    k0, k1 = seed & _MASK32, seed >> 32
    for _ in range(10):
        h0, l0 = _mulhilo_np(PHILOX_M0, x0)
        h1, l1 = _mulhilo_np(PHILOX_M1, x2)
        x0, x1, x2, x3 = h1 ^ x1 ^ np.uint32(k0), l1, h0 ^ x3 ^ np.uint32(k1), l0
        k0, k1 = (k0 + PHILOX_W0) & _MASK32, (k1 + PHILOX_W1) & _MASK32
    return (x0.astype(np.uint64) << np.uint64(32)) | x1.astype(np.uint64)


def draw_target(bits: int, total: int) -> int:
    """The draw's point in ``[0, total)``: the high 64 bits of ``bits * total``."""
    return (int(bits) * int(total)) >> 64


_F = np.float32


def _fma(a, b, c) -> np.ndarray:
    """``fmaf(a, b, c)``: ``a * b + c`` rounded once to float32. The product of two floats is exact in float64; the
    float64 sum rounds, and TwoSum gives its exact error, with which the sum is rounded to odd (its last bit set when
    inexact) so that rounding it to float32 is the single correct rounding."""
    p = np.asarray(a, dtype=np.float64) * np.asarray(b, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    s = p + c
    bp = s - c
    error = (p - bp) + (c - (s - bp))
    even = (s.view(np.int64) & 1) == 0
    s = np.where((error != 0) & even, np.nextafter(s, np.where(error > 0, np.inf, -np.inf)), s)
    return s.astype(np.float32)


def exp_nonpos(x) -> np.ndarray:
    """``exp(x)`` for ``x <= 0`` in float32, bit for bit ``exp_nonpos`` of ``csrc/include/pysample/common.h``.

    Every step is one float32 numpy operation or fused multiply-add, in the header's order; ``-inf`` gives 0 (clamped
    to -104 first).
    """
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        x = np.where(x < _F(-104.0), _F(-104.0), x).astype(np.float32)
        magic = _F(12582912.0)
        n = (x * _F(1.44269504088896341) + magic) - magic
        r = _fma(n, _F(-0.693359375), x)
        r = _fma(n, _F(2.12194440e-4), r)
        r2 = r * r
        c01 = _fma(_F(1.6666665459e-1), r, _F(5.0000001201e-1))
        c23 = _fma(_F(8.3334519073e-3), r, _F(4.1665795894e-2))
        c45 = _fma(_F(1.9875691500e-4), r, _F(1.3981999507e-3))
        p = _fma(_fma(r2, _fma(r2, c45, c23), c01), r2, r) + _F(1.0)
        scale = ((n.astype(np.int32) + 64 + 127).astype(np.uint32) << np.uint32(23)).view(np.float32)
        return ((p * scale) * _F(2.0**-64)).astype(np.float32)


def sample_weight(y, max_value) -> np.ndarray:
    """A token's fixed-point weight, as ``sample_weight`` of ``sample.h``: ``exp_nonpos(y - max)`` times 2^40, rounded
    to the nearest integer (ties to even) by adding 2^52 in double; numpy uint64 array."""
    y = np.asarray(y, dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        e = exp_nonpos((y - _F(max_value)).astype(np.float32)).astype(np.float64)
    shifted = np.asarray(e * WEIGHT_SCALE + ROUNDING_SHIFT, dtype=np.float64)
    return shifted.view(np.uint64) - np.uint64(_ROUNDING_SHIFT_BITS)


def _row_values(value, batch: int, dtype: torch.dtype) -> list:
    """One parameter's value per row as the op reads it: a Python number for every row (the op takes a scalar float
    in double), or a tensor's values converted to the op's storage type (float32 / int64) first; None when absent."""
    if value is None:
        return [None] * batch
    if isinstance(value, torch.Tensor):
        rows = value.detach().to("cpu", dtype).reshape(-1)
        if rows.numel() == 1:
            rows = rows.expand(batch)
        if rows.numel() != batch:
            raise ValueError(f"a per-row parameter must have shape ({batch},), got {tuple(value.shape)}")
        return rows.tolist()
    return [value] * batch


def _seed_rows(value, batch: int) -> list:
    if isinstance(value, torch.Tensor):
        rows = value.detach().to("cpu", torch.int64).reshape(-1)
        return (rows.expand(batch) if rows.numel() == 1 else rows).tolist()
    return [int(value)] * batch


def _scaled_row(row: torch.Tensor, temperature: float) -> np.ndarray:
    """The row's scaled logits y as float32: logits / float32(temperature) in float32, rounded to the logits' dtype
    (the logits themselves for temperature 0, greedy, and 1)."""
    x = row.detach().to("cpu")
    if temperature == 0 or temperature == 1.0:
        return x.float().numpy()
    y = (x.float() / torch.tensor(temperature, dtype=torch.float32)).to(x.dtype)
    return y.float().numpy()


def _row_weights(y: np.ndarray, top_k: int, top_p: Optional[float], min_p: Optional[float]):
    """(weight, keep) of one row whose softmax is defined, neither greedy: numpy uint64 and bool arrays."""
    vocab = y.shape[0]
    m = y.max()
    active = np.ones(vocab, dtype=bool)
    if 0 < top_k < vocab:
        kth = np.sort(y)[vocab - top_k]  # the k-th largest
        active = y >= kth
    weight = np.where(active, sample_weight(y, m), np.uint64(0)).astype(np.uint64)
    total = int(weight.sum(dtype=np.uint64))
    keep = active.copy()
    if top_p is not None and top_p < 1.0:
        order = np.lexsort((-np.arange(vocab), -y))  # descending y, ties by descending id (-0.0 == +0.0)
        order = order[active[order]]
        w = weight[order]
        before = np.concatenate([[np.uint64(0)], np.cumsum(w, dtype=np.uint64)[:-1]]).astype(np.uint64)
        keep_sorted = (before == 0) | (before.astype(np.float64) < float(top_p) * float(total))
        keep[:] = False
        keep[order] = keep_sorted
    if min_p is not None:
        keep &= weight.astype(np.float64) >= float(min_p) * WEIGHT_SCALE
    return weight, keep


def _row_setup(logits: torch.Tensor, temperature, top_k, top_p, min_p):
    """Per row: ('undefined', None), ('greedy', token) or ('draw', (weight, keep))."""
    batch, vocab = logits.shape
    temps = _row_values(temperature, batch, torch.float32)
    ks = _row_values(top_k, batch, torch.int64)
    ps = _row_values(top_p, batch, torch.float32)
    mps = _row_values(min_p, batch, torch.float32)
    out = []
    for r in range(batch):
        t = 1.0 if temps[r] is None else float(temps[r])
        k = 0 if ks[r] is None else int(ks[r])
        greedy = t == 0 or k == 1
        # sample.h, rule 1: greedy is argmax of the *scaled* logits y (for top_k = 1 with a temperature, the
        # division rounded to the logits' dtype may tie tokens): the first NaN, else the first largest.
        y = _scaled_row(logits[r], t)
        if vocab == 0:
            out.append(("undefined", None))
        elif greedy:
            out.append(("greedy", int(np.argmax(y))))  # numpy's argmax, as torch's, takes the first NaN
        elif np.isnan(y).any() or y.max() == -np.inf:
            out.append(("undefined", None))
        else:
            if y.max() == np.inf:  # rule 2, the softmax's limit: the +inf tokens share the mass
                y = np.where(y == np.inf, np.float32(0), np.float32(-np.inf))
            out.append(("draw", _row_weights(y, k, ps[r], mps[r])))
    return out


def sample(
    logits: torch.Tensor,
    temperature: Optional[Param] = 1.0,
    top_k: Optional[Param] = None,
    top_p: Optional[Param] = None,
    min_p: Optional[Param] = None,
    seed: Union[int, torch.Tensor] = 0,
    step: Union[int, torch.Tensor] = 0,
    n: int = 1,
) -> torch.Tensor:
    """Reference for :func:`pysample.sample`: the same tokens, bit for bit, for the same arguments.

    Parameters
    ----------
    logits : torch.Tensor
        ``(batch, vocab)`` float32, float16 or bfloat16.
    temperature, top_k, top_p, min_p : number or torch.Tensor, optional
        As :func:`pysample.sample`: a Python number for every row (read in double, as the op's scalar arguments),
        a 0-d or ``(batch,)`` tensor (its values converted to float32 / int64 first, as the op stores them), or None.
    seed, step : int or torch.Tensor
        Per-row (or common) Philox key and counter; the seed is required here (``None`` draws are the wrapper's).
    n : int
        Draws per row.

    Returns
    -------
    torch.Tensor
        int64 ``(batch,)`` for ``n == 1``, else ``(batch, n)``; -1 for rows whose softmax is undefined.

    Examples
    --------
    >>> sample(torch.tensor([[0.0, 5.0, 1.0], [3.0, 0.0, 3.0]]), temperature=0)
    tensor([1, 0])
    """
    batch = logits.shape[0]
    seeds, steps = _seed_rows(seed, batch), _seed_rows(step, batch)
    tokens = torch.full((batch, n), -1, dtype=torch.int64)
    for r, (kind, value) in enumerate(_row_setup(logits, temperature, top_k, top_p, min_p)):
        if kind == "greedy":
            tokens[r] = value
        elif kind == "draw":
            weight, keep = value
            running = np.cumsum(np.where(keep, weight, np.uint64(0)), dtype=np.uint64)
            kept = int(running[-1])
            bits = draw_bits_array(seeds[r], steps[r], np.arange(n))
            targets = np.array([draw_target(int(b), kept) for b in bits], dtype=np.uint64)
            # The first token whose running kept weight exceeds the target.
            tokens[r] = torch.from_numpy(np.searchsorted(running, targets, side="right").astype(np.int64))
    return tokens[:, 0] if n == 1 else tokens


def sample_distribution(
    logits: torch.Tensor,
    temperature: Optional[Param] = 1.0,
    top_k: Optional[Param] = None,
    top_p: Optional[Param] = None,
    min_p: Optional[Param] = None,
):
    """The kept set and the exact drawing probabilities of :func:`pysample.sample`, per row.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        ``keep`` ``(batch, vocab)`` bool: the tokens the rules keep (a kept token of weight 0, below 2^-41 of the
        max's, is never drawn); ``probs`` ``(batch, vocab)`` float64: the kept weights over their total, the
        probability of each token in a draw (up to 2^-64); a greedy row is one-hot, an undefined row all NaN.
    """
    batch, vocab = logits.shape
    keep = torch.zeros((batch, vocab), dtype=torch.bool)
    probs = torch.zeros((batch, vocab), dtype=torch.float64)
    for r, (kind, value) in enumerate(_row_setup(logits, temperature, top_k, top_p, min_p)):
        if kind == "undefined":
            probs[r] = math.nan
        elif kind == "greedy":
            keep[r, value] = True
            probs[r, value] = 1.0
        else:
            weight, kept = value
            w = np.where(kept, weight, np.uint64(0))
            total = int(w.sum(dtype=np.uint64))
            keep[r] = torch.from_numpy(kept.copy())
            probs[r] = torch.tensor([int(v) / total for v in w], dtype=torch.float64)
    return keep, probs


# ---- penalties ---------------------------------------------------------------------------------------------------


def _column(value: Param, batch: int, dtype: torch.dtype, device) -> torch.Tensor:
    """`value` as a ``(batch, 1)`` tensor: one value per row (a scalar repeated)."""
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype).reshape(-1, 1).expand(batch, 1)
    return torch.full((batch, 1), value, dtype=dtype, device=device)


def apply_penalties(
    scores: torch.Tensor,
    ids: torch.Tensor,
    *,
    repetition: Optional[Param] = None,
    presence: Optional[Param] = None,
    frequency: Optional[Param] = None,
    history_start: Param = 0,
    output_start: Param = 0,
    divide_by_reciprocal: bool = False,
) -> torch.Tensor:
    """Repetition (transformers' rule), then frequency and presence (OpenAI's) penalties from each row's ids.

    Counted positions: from ``history_start`` on; presence and frequency count only those from ``output_start`` on. Ids
    outside ``[0, vocab)`` are not counted. A repetition of ``s`` is ``s * p`` for ``s < 0`` else ``s / p``, once per
    distinct token, computed in float32 with float32 parameters as transformers' float32 ops compute it (float64 scores:
    in double, scalar parameters in double); then ``s - frequency * count`` and ``s - presence`` for tokens generated at
    least once. Half types are computed in float32 and rounded at the end. ``ids`` may have fewer rows than ``scores``
    when its batch divides theirs (score row ``r`` uses ids row ``r // (batch // len(ids))``); per-row starts follow the
    ids' rows. ``divide_by_reciprocal``: ``s * (1 / p)`` instead of ``s / p``, as torch divides by a scalar on CUDA (so
    transformers' CUDA result).
    """
    batch, vocab = scores.shape
    device = scores.device
    per_ids = batch // ids.shape[0] if ids.shape[0] else 1
    length = ids.shape[1]
    positions = torch.arange(length, device=device)[None, :]
    starts = _column(history_start, ids.shape[0], torch.int64, device).repeat_interleave(per_ids, 0)
    outputs = _column(output_start, ids.shape[0], torch.int64, device).repeat_interleave(per_ids, 0)
    ids = ids.to(device=device, dtype=torch.int64).repeat_interleave(per_ids, 0)
    counted = (ids >= 0) & (ids < vocab) & (positions >= starts)
    generated = counted & (positions >= outputs)
    spare = torch.full_like(ids, vocab)  # out-of-scope ids go to a spare column, dropped afterwards
    seen = torch.zeros(batch, vocab + 1, dtype=torch.bool, device=device)
    seen.scatter_(1, torch.where(counted, ids, spare), True)
    counts = torch.zeros(batch, vocab + 1, dtype=torch.int64, device=device)
    counts.scatter_add_(1, torch.where(generated, ids, spare), torch.ones_like(ids))
    seen, counts = seen[:, :vocab], counts[:, :vocab]

    computed = torch.float64 if scores.dtype == torch.float64 else torch.float32

    def parameter(value: Param) -> torch.Tensor:  # per-row tensors are stored as float32, scalars used as given
        stored = torch.float32 if isinstance(value, torch.Tensor) else computed
        return _column(value, batch, stored, device).to(computed)

    out = scores.to(computed)
    if repetition is not None:
        p = parameter(repetition)
        divided = out * (1.0 / p) if divide_by_reciprocal else out / p
        out = torch.where(seen, torch.where(out < 0, out * p, divided), out)
    if frequency is not None:
        out = torch.where(counts > 0, out - parameter(frequency) * counts.to(computed), out)
    if presence is not None:
        out = torch.where(counts > 0, out - parameter(presence), out)
    return out.to(scores.dtype)


# ---- n-gram ban and sequence bias --------------------------------------------------------------------------------


def _row_ngram_size(ngram_size: Param, row: int) -> int:
    if isinstance(ngram_size, torch.Tensor) and ngram_size.dim() == 1:
        return int(ngram_size[row])
    return int(_scalar(ngram_size))


def no_repeat_ngram(
    scores: torch.Tensor,
    ids: torch.Tensor,
    ngram_size: Param,
    lengths: Optional[torch.Tensor] = None,
    sources: Optional[torch.Tensor] = None,
    source_lengths: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Bans every token that would complete an n-gram of the row's source (its own first ``lengths[r]`` ids, or
    ``sources`` row ``r // (batch // len(sources))``): the row's last ``n - 1`` ids followed by the token occur as
    ``n`` consecutive ids of the source. ``n = 0`` bans nothing; ids outside ``[0, vocab)`` are never banned."""
    out = scores.clone()
    batch, vocab = scores.shape
    for row in range(batch):
        n = _row_ngram_size(ngram_size, row)
        tokens = ids[row, : int(lengths[row]) if lengths is not None else ids.shape[1]].tolist()
        if sources is None:
            source = tokens
        else:
            source_row = row // (batch // sources.shape[0])
            width = int(source_lengths[source_row]) if source_lengths is not None else sources.shape[1]
            source = sources[source_row, :width].tolist()
        if n == 0 or len(tokens) < n - 1:
            continue
        prefix = tokens[len(tokens) - (n - 1) :]
        for start in range(len(source) - n + 1):
            banned = source[start + n - 1]
            if source[start : start + n - 1] == prefix and 0 <= banned < vocab:
                out[row, banned] = -math.inf
    return out


def bias_sequences(
    scores: torch.Tensor,
    ids: torch.Tensor,
    sequences: list,
    biases: list,
    lengths: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Adds each sequence's bias to its last token where its other tokens end the row's ids (its first
    ``lengths[r]``). The biases of one token are summed in the order given, each partial sum rounded to the scores'
    dtype as transformers sums them in a tensor of that dtype, and the sum is added once; other tokens are left as
    they are."""
    out = scores.clone()
    for row in range(scores.shape[0]):
        tokens = ids[row, : int(lengths[row]) if lengths is not None else ids.shape[1]].tolist()
        sums: dict = {}
        for sequence, bias in zip(sequences, biases):
            prefix = list(sequence[:-1])
            if len(prefix) <= len(tokens) and tokens[len(tokens) - len(prefix) :] == prefix:
                last = sequence[-1]
                total = sums.get(last, torch.zeros((), dtype=scores.dtype))
                sums[last] = total + torch.tensor(bias, dtype=torch.float32).to(scores.dtype)
        for last, total in sums.items():
            out[row, last] = out[row, last] + total
    return out


# ---- token bitmask -------------------------------------------------------------------------------------------------


def apply_token_bitmask(
    logits: torch.Tensor,
    bitmask: torch.Tensor,
    indices: Optional[Union[torch.Tensor, list]] = None,
    vocab_size: Optional[int] = None,
) -> torch.Tensor:
    """xgrammar's ``apply_token_bitmask_inplace`` on a copy: token ``j < vocab_size`` of row ``r`` is set to
    ``-inf`` where bit ``j % 32`` of the int32 word ``bitmask[r, j // 32]`` is cleared, in every row or the rows
    listed in ``indices`` (row ``r`` by bitmask row ``r``); ``vocab_size`` defaults to
    ``min(logits.shape[1], 32 * bitmask.shape[1])``."""
    if vocab_size is None:
        vocab_size = min(logits.shape[1], 32 * bitmask.shape[1])
    # An arithmetic shift of the signed word, then its lowest bit: bit b of the word.
    bits = torch.arange(32, dtype=torch.int32, device=bitmask.device)
    allowed = ((bitmask[:, :, None] >> bits) & 1).bool().flatten(1)[:, :vocab_size]
    rows = range(logits.shape[0]) if indices is None else sorted({int(i) for i in indices})
    out = logits.clone()
    for row in rows:
        out[row, :vocab_size] = out[row, :vocab_size].masked_fill(~allowed[row], -math.inf)
    return out


# ---- token logprobs ------------------------------------------------------------------------------------------------


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, num_top: int = 0) -> tuple:
    """vLLM's logprobs on ``logits.float()``: ``(token_logprobs, ranks, top_ids, top_logprobs)``.

    ``torch.log_softmax`` of the row gathered at each token of ``tokens`` (batch, n) (-1: NaN); a token's rank, the
    number of tokens whose logit is >= its own, NaN counting above every number (a NaN token: the row's NaNs; -1: 0);
    the ``num_top`` largest logits by a stable descending sort (NaN first, ties by ascending id) with their
    log-probabilities."""
    x = logits.float()
    logprobs = torch.log_softmax(x, dim=-1)
    valid = tokens >= 0
    safe = tokens.clamp(min=0)
    chosen = logprobs.gather(1, safe).masked_fill(~valid, math.nan)
    values = x.gather(1, safe)
    nans = x.isnan().sum(1, keepdim=True)
    at_least = (x[:, None, :] >= values[:, :, None]).sum(-1) + nans
    ranks = torch.where(values.isnan(), nans, at_least).masked_fill(~valid, 0)
    top_ids = torch.sort(x, dim=-1, descending=True, stable=True).indices[:, :num_top]
    return chosen, ranks, top_ids, logprobs.gather(1, top_ids)


def beam_search_step(
    logits: torch.Tensor,
    beam_scores: torch.Tensor,
    num_beams: int,
    num_candidates: Optional[int] = None,
    log_softmax: bool = True,
):
    """transformers' beam step (``_beam_search``: log_softmax of the float32 logits, plus the running beam scores,
    then ``topk`` over each batch item's ``num_beams * vocab`` continuations) with a stable order: equal scores in
    (beam, token) order, NaN first. Returns ``(scores, tokens, beams)``, each ``(batch, num_candidates)``."""
    if num_candidates is None:
        num_candidates = 2 * num_beams
    vocab = logits.shape[-1]
    batch = logits.shape[0] // num_beams
    log_probs = logits.to(torch.float32)
    if log_softmax:
        log_probs = torch.nn.functional.log_softmax(log_probs, dim=-1)
    log_probs = log_probs.reshape(batch, num_beams, vocab) + beam_scores.reshape(batch, num_beams)[:, :, None]
    log_probs = log_probs.reshape(batch, num_beams * vocab)
    # A descending stable sort ranks NaN first and keeps equal scores (-0.0 and 0.0 included) in index order.
    order = torch.sort(log_probs, dim=-1, descending=True, stable=True).indices[:, :num_candidates]
    return torch.gather(log_probs, 1, order), order % vocab, order // vocab
