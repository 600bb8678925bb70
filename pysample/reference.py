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

import torch

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
    """Keeps the ``top_k`` largest scores of each row and every score equal to the ``top_k``-th, as ``TopKLogitsWarper``.

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


def eta(
    scores: torch.Tensor, eta: Param, filter_value: float = -math.inf, min_tokens_to_keep: int = 1
) -> torch.Tensor:
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
STAGES = ("temperature", "top_k", "top_p", "min_p", "typical_p", "epsilon", "eta")


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
