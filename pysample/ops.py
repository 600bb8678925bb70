"""Python entry points of the ``torch.ops.pysample`` ops, and their fake (meta) implementations.

Where arguments are checked, once per layer: the functions here check only what Python alone sees (a parameter's
Python type, and a per-row tensor's dtype and device before they convert it); the ops check everything else and
raise ``ValueError`` / ``TypeError`` naming the argument, so that C++ callers get the same checks; the fakes repeat
the ops' checks that fake tensors allow, from the same stage table (``_stages.py``).
"""

from __future__ import annotations

import math
import operator
from typing import NamedTuple, Optional, Sequence, Tuple, Union

import torch

from . import _C  # noqa: F401  (loads the library: registers torch.ops.pysample)
from ._stages import RANGES, SAMPLE_STAGES, WARP_STAGES, Stage


def _records_grad(tensor: torch.Tensor) -> bool:
    """Whether autograd records an in-place change of `tensor`: the in-place ops then run as their differentiable
    out-of-place form followed by ``copy_`` (the raw in-place ops refuse such tensors)."""
    return torch.is_grad_enabled() and tensor.requires_grad


FloatParam = Union[float, torch.Tensor, None]
IntParam = Union[int, torch.Tensor, None]


def _split(
    name: str, value, dtype: torch.dtype, logits: torch.Tensor, what: str = "logits"
) -> Tuple[Optional[torch.Tensor], object]:
    """A parameter as the op takes it: (per-row tensor, None), (None, scalar) or (None, None); the per-row tensor
    follows the rows of ``logits`` (called ``what`` in messages)."""
    if value is None:
        return None, None
    if isinstance(value, torch.Tensor):
        integral = not value.dtype.is_floating_point and not value.dtype.is_complex and value.dtype != torch.bool
        if (dtype == torch.int64 and not integral) or (dtype != torch.int64 and not value.dtype.is_floating_point):
            kind = "an integer" if dtype == torch.int64 else "a floating-point"
            raise TypeError(f"{name} must be {kind} tensor, got {value.dtype}")
        if value.device != logits.device:
            raise ValueError(f"{name} must be on the {what}' device {logits.device}, got {value.device}")
        if value.dim() == 0:  # one value for every row, without reading it on the host
            value = value.reshape(1).expand(logits.shape[0])
        stored = value.to(dtype=dtype).contiguous()
        if dtype == torch.float32 and value.dtype == torch.float64 and value.device.type == "cpu":
            _check_stored_in_range(name, value, stored)
        return stored, None
    if dtype == torch.int64:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int or a tensor, got {type(value).__name__}")
        return None, value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float or a tensor, got {type(value).__name__}")
    return None, float(value)


def _check_stored_in_range(name: str, value: torch.Tensor, stored: torch.Tensor) -> None:
    """A float64 per-row value must not move into a parameter's range (whose ends are 0, 1 and infinity) when
    rounded to the float32 the op stores, as 1.00000001 would to 1.0: the op would accept a value that its scalar
    form rejects. CPU tensors only (a device tensor is not read on the host)."""
    wide = stored.double()
    moved = ((wide > 1) != (value > 1)) | ((wide < 0) != (value < 0)) | ((wide > 0) != (value > 0))
    moved |= torch.isfinite(wide) != torch.isfinite(value)
    if moved.any():
        row = int(moved.nonzero()[0, 0])
        raise ValueError(
            f"{name}[{row}] = {value[row].item()!r} crosses a range end (0, 1 or infinity) when "
            f"rounded to the float32 the op stores ({stored[row].item()!r})"
        )


def _stage_arguments(logits: torch.Tensor, params: dict, stages: Sequence[Stage] = WARP_STAGES) -> list:
    """The stages' keyword arguments as the op takes them after the logits: each stage's (per-row tensor, scalar)."""
    args = []
    for stage in stages:
        args.extend(_split(stage.name, params[stage.name], stage.dtype, logits))
    return args


def warp_logits_(
    logits: torch.Tensor,
    *,
    temperature: FloatParam = None,
    top_k: IntParam = None,
    top_p: FloatParam = None,
    min_p: FloatParam = None,
    typical_p: FloatParam = None,
    epsilon: FloatParam = None,
    eta: FloatParam = None,
    min_tokens_to_keep: int = 1,
    filter_value: float = -math.inf,
) -> torch.Tensor:
    """Applies temperature, top-k, top-p, min-p, typical, epsilon and eta to ``logits`` in place, in one call.

    The stages run in transformers' order (Temperature, TopK, TopP, MinP, Typical, Epsilon, Eta) with the semantics
    of its warpers; each is skipped when its parameter is ``None``. Every parameter is a Python scalar, a ``(batch,)``
    tensor with one value per row (requests in a serving batch), or a 0-d tensor. No sort of the vocabulary and no
    host synchronisation.

    Parameters
    ----------
    logits : torch.Tensor
        ``(batch, vocab)`` float32, float16 or bfloat16 scores, or float64 on the CPU; modified in place.
    temperature : float or Tensor, optional
        Divides the logits (> 0).
    top_k : int or Tensor, optional
        Keeps the ``top_k`` largest values and every value tied with the last; 0 keeps everything.
    top_p : float or Tensor, optional
        Keeps the smallest set of most probable tokens whose probability reaches ``top_p`` (in [0, 1]).
    min_p : float or Tensor, optional
        Removes tokens less probable than ``min_p`` times the most probable one.
    typical_p : float or Tensor, optional
        Typical decoding mass (in [0, 1]).
    epsilon : float or Tensor, optional
        Removes tokens whose probability is below ``epsilon``.
    eta : float or Tensor, optional
        Eta-sampling's epsilon: removes tokens below ``min(eta, sqrt(eta) * exp(-entropy))``.
    min_tokens_to_keep : int
        Top-p, min-p, typical, epsilon and eta keep at least this many tokens.
    filter_value : float
        Value written to removed tokens. Later stages treat removed tokens as having probability 0, which is what
        running the warpers one after the other gives for the default ``-inf``.

    Returns
    -------
    torch.Tensor
        ``logits`` itself.

    Examples
    --------
    >>> logits = torch.randn(4, 32000)
    >>> _ = pysample.ops.warp_logits_(logits, temperature=0.7, top_k=50, top_p=0.9)
    >>> int((logits > -math.inf).sum(-1).max()) <= 50
    True
    """
    params = dict(
        temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p, epsilon=epsilon, eta=eta
    )
    args = (*_stage_arguments(logits, params), min_tokens_to_keep, filter_value)
    if _records_grad(logits):  # the out-of-place op's gradient, written in place as torch's own in-place ops
        return logits.copy_(torch.ops.pysample.warp_logits(logits.clone(), *args))
    torch.ops.pysample.warp_logits_(logits, *args)
    return logits


def warp_logits(
    logits: torch.Tensor,
    *,
    temperature: FloatParam = None,
    top_k: IntParam = None,
    top_p: FloatParam = None,
    min_p: FloatParam = None,
    typical_p: FloatParam = None,
    epsilon: FloatParam = None,
    eta: FloatParam = None,
    min_tokens_to_keep: int = 1,
    filter_value: float = -math.inf,
) -> torch.Tensor:
    """Out-of-place :func:`warp_logits_`: returns new warped logits ``(batch, vocab)``, ``logits`` untouched.

    Examples
    --------
    >>> logits = torch.tensor([[1.0, 2.0, 3.0]])
    >>> pysample.ops.warp_logits(logits, top_k=2)
    tensor([[-inf, 2., 3.]])
    """
    params = dict(
        temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p, epsilon=epsilon, eta=eta
    )
    return torch.ops.pysample.warp_logits(logits, *_stage_arguments(logits, params), min_tokens_to_keep, filter_value)


_INT64_MIN, _UINT64_END = -(2**63), 2**64


def _per_row_int64(name: str, value, logits: torch.Tensor) -> torch.Tensor:
    """seed / step as the op takes them: an int64 ``(batch,)`` tensor on the logits' device."""
    batch = logits.shape[0]
    if isinstance(value, torch.Tensor):
        if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
            raise TypeError(f"{name} must be an integer tensor, got {value.dtype}")
        if value.device != logits.device:
            raise ValueError(f"{name} must be on the logits' device {logits.device}, got {value.device}")
        if value.dim() == 0:
            value = value.reshape(1).expand(batch)
        return value.to(torch.int64).contiguous()
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or an integer tensor, got {type(value).__name__}")
    if not _INT64_MIN <= value < _UINT64_END:
        raise ValueError(f"{name} must fit in 64 bits, got {value}")
    if value >= 2**63:  # a uint64 seed: the same bits as int64
        value -= _UINT64_END
    return torch.full((batch,), value, dtype=torch.int64, device=logits.device)


def sample(
    logits: torch.Tensor,
    *,
    temperature: FloatParam = 1.0,
    top_k: IntParam = None,
    top_p: FloatParam = None,
    min_p: FloatParam = None,
    seed: Union[int, torch.Tensor, None] = None,
    step: Union[int, torch.Tensor] = 0,
    n: int = 1,
    logprobs: Optional[int] = None,
) -> Union[torch.Tensor, Tuple[torch.Tensor, "TokenLogprobs"]]:
    """Draws token ids from ``logits`` after temperature, top-k, top-p and min-p, in one call per batch.

    Each row keeps the tokens that transformers' Temperature -> TopK -> TopP -> MinP warpers keep (up to the
    rounding at a top-p or min-p threshold: weights are exact fixed-point numbers, see
    ``csrc/include/pysample/sample.h``) and draws from their softmax. No sort of the vocabulary, no softmax written
    out, no host synchronisation. A row's draw depends only on its logits, its parameters, its seed and its step:
    not on the batch it is in, its position there or the device (the same token on CPU and CUDA).

    Parameters
    ----------
    logits : torch.Tensor
        ``(batch, vocab)`` float32, float16 or bfloat16.
    temperature : float or Tensor
        Divides the logits (>= 0); 0 is greedy: the first token of largest logit.
    top_k : int or Tensor, optional
        Keeps the ``top_k`` largest logits and every one tied with the last; 0 keeps everything, 1 is greedy.
    top_p : float or Tensor, optional
        Keeps the most probable tokens (ties: the higher token ids first, as the warper) while the probability
        before them is below ``top_p`` (in [0, 1]).
    min_p : float or Tensor, optional
        Removes tokens less probable than ``min_p`` times the most probable one.
    seed : int or Tensor, optional
        The Philox key per row (64 bits). ``None`` draws one per row from torch's default generator of the
        logits' device (one ``torch.randint`` call, so ``torch.manual_seed`` makes it reproducible).
    step : int or Tensor
        The Philox counter per row, e.g. the decoding step: the same seed with another step draws anew.
    n : int
        Draws per row, with replacement.
    logprobs : int, optional
        ``k >= 0`` (at most 20): also return the drawn tokens' log-probabilities, ranks and the ``k`` most likely
        tokens, through :func:`token_logprobs` on the ``logits`` given here (vLLM's "raw" logprobs: before
        temperature and the other stages).

    Every parameter but ``n`` is a Python scalar, a ``(batch,)`` tensor with one value per row, or a 0-d tensor;
    tensors for ``seed`` and ``step`` let a captured CUDA graph replay with new values.

    Returns
    -------
    torch.Tensor
        int64 token ids, ``(batch,)`` for ``n == 1``, else ``(batch, n)``. Greedy rows take ``torch.argmax`` (the
        first NaN, else the first largest, ``+inf`` included). A sampled row holding ``+inf`` draws among its
        ``+inf`` tokens with equal probability (the softmax's limit); one holding NaN, or only ``-inf``, draws -1.
        With ``logprobs``: ``(tokens, TokenLogprobs)``, the second as :func:`token_logprobs` returns it for these
        tokens (its ``token_logprobs`` and ``ranks`` shaped like the tokens).

    Examples
    --------
    >>> logits = torch.tensor([[0.0, 5.0, 1.0], [3.0, 0.0, 3.0]])
    >>> pysample.sample(logits, temperature=0)
    tensor([1, 0])
    >>> pysample.sample(logits, top_k=1, seed=7, n=3)
    tensor([[1, 1, 1],
            [0, 0, 0]])
    >>> tokens, logprobs = pysample.sample(logits, temperature=0, logprobs=1)
    >>> logprobs.token_logprobs, logprobs.top_ids
    (tensor([-0.0247, -0.7177]), tensor([[1],
            [0]]))
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if logprobs is not None and (isinstance(logprobs, bool) or not isinstance(logprobs, int) or logprobs < 0):
        raise ValueError(f"logprobs must be None or an int >= 0, got {logprobs!r}")
    params = dict(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, seed=seed, step=step)
    tokens = torch.ops.pysample.sample(logits, *_sample_arguments(logits, params), n)
    tokens = tokens[:, 0] if n == 1 else tokens
    return tokens if logprobs is None else (tokens, token_logprobs(logits, tokens, logprobs))


def _sample_arguments(logits: torch.Tensor, params: dict) -> list:
    """sample's keyword arguments (temperature, top_k, top_p, min_p, seed, step) as the op takes them, after the
    logits: each stage's (per-row tensor, scalar), then the seed and step tensors (seed None: one torch.randint)."""
    args = _stage_arguments(logits, params, SAMPLE_STAGES)
    seed = params["seed"]
    if seed is None:
        seed = torch.randint(_INT64_MIN, 2**63 - 1, (logits.shape[0],), dtype=torch.int64, device=logits.device)
    return args + [_per_row_int64("seed", seed, logits), _per_row_int64("step", params["step"], logits)]


def _penalty_arguments(scores: torch.Tensor, repetition, presence, frequency) -> list:
    args = []
    for name, value in (("repetition", repetition), ("presence", presence), ("frequency", frequency)):
        args.extend(_split(name, value, torch.float32, scores, "scores"))
    return args


def _scope_arguments(ids: torch.Tensor, history_start, output_start) -> list:
    args = []
    for name, value in (("history_start", history_start), ("output_start", output_start)):
        rows, scalar = _split(name, value, torch.int64, ids, "ids")
        args += [rows, 0 if scalar is None else scalar]
    return args


def apply_penalties_(
    scores: torch.Tensor,
    ids: torch.Tensor,
    *,
    repetition: FloatParam = None,
    presence: FloatParam = None,
    frequency: FloatParam = None,
    history_start: IntParam = 0,
    output_start: IntParam = 0,
) -> torch.Tensor:
    """Applies repetition, frequency and presence penalties to ``scores`` in place, from each row's token ids.

    Every distinct token of a row's history gets, once: the repetition penalty with transformers' rule
    (``s < 0 ? s * repetition : s / repetition``), then ``s -= frequency * count`` and ``s -= presence`` (OpenAI's
    rule, counting only output positions). Each penalty is optional. Cost: O(history) per row, the vocabulary is
    never scanned; no host synchronisation.

    Parameters
    ----------
    scores : torch.Tensor
        ``(batch, vocab)`` float32, float64, float16 or bfloat16; modified in place. float64 is penalised in double,
        half types in float32 and rounded once.
    ids : torch.Tensor
        ``(batch, length)`` int64 or int32 history, e.g. generate()'s ``input_ids``. Its batch may also divide
        ``batch`` (beams sharing their source row: score row ``r`` uses ids row ``r // (batch // len(ids))``). Ids
        outside ``[0, vocab)`` (padding such as -1, ids the output layer does not have) are ignored.
    repetition : float or Tensor, optional
        >= 0; 1 leaves scores as they are, > 1 discourages repetition. 0 and inf apply transformers' rule as
        written (``EncoderRepetitionPenaltyLogitsProcessor(inf)`` stores 0).
    presence, frequency : float or Tensor, optional
        Finite; subtracted once (presence) or once per occurrence (frequency) for tokens at output positions.
    history_start : int or Tensor
        Positions before it are not counted (left padding; transformers' ``prompt_ignore_length``). Per-row tensors
        follow the ids' rows.
    output_start : int or Tensor
        Positions from it on are output, the only ones presence and frequency count (0: the whole history, as the
        repetition penalty counts it; the prompt length: OpenAI's and vLLM's counting).

    Every parameter is a Python scalar, a ``(batch,)`` tensor or a 0-d tensor.

    Returns
    -------
    torch.Tensor
        ``scores`` itself.

    Examples
    --------
    >>> scores = torch.tensor([[2.0, -2.0, 1.0, 0.5]])
    >>> ids = torch.tensor([[0, 1, 1, 3]])
    >>> pysample.apply_penalties_(scores, ids, repetition=2.0, frequency=0.25, output_start=2)
    tensor([[ 1.0000, -4.2500,  1.0000,  0.0000]])
    """
    args = (
        *_penalty_arguments(scores, repetition, presence, frequency),
        *_scope_arguments(ids, history_start, output_start),
    )
    if _records_grad(scores):
        return scores.copy_(torch.ops.pysample.apply_penalties(scores.clone(), ids, *args))
    torch.ops.pysample.apply_penalties_(scores, ids, *args)
    return scores


def apply_penalties(
    scores: torch.Tensor,
    ids: torch.Tensor,
    *,
    repetition: FloatParam = None,
    presence: FloatParam = None,
    frequency: FloatParam = None,
    history_start: IntParam = 0,
    output_start: IntParam = 0,
) -> torch.Tensor:
    """Out-of-place :func:`apply_penalties_`: returns new penalised scores ``(batch, vocab)``, ``scores`` untouched.

    Examples
    --------
    >>> pysample.apply_penalties(torch.tensor([[1.0, -1.0, 3.0]]), torch.tensor([[0, 1]]), repetition=2.0)
    tensor([[ 0.5000, -2.0000,  3.0000]])
    """
    return torch.ops.pysample.apply_penalties(
        scores,
        ids,
        *_penalty_arguments(scores, repetition, presence, frequency),
        *_scope_arguments(ids, history_start, output_start),
    )


def no_repeat_ngram_(
    scores: torch.Tensor,
    ids: torch.Tensor,
    *,
    ngram_size: IntParam,
    lengths: Optional[torch.Tensor] = None,
    sources: Optional[torch.Tensor] = None,
    source_lengths: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Bans (sets to ``-inf``) in place every token that would complete an n-gram already seen.

    A row's prefix is its last ``n - 1`` ids; every window of ``n`` consecutive ids of its source whose first
    ``n - 1`` ids equal the prefix bans its last id. The source is the row's own ids (transformers'
    ``NoRepeatNGramLogitsProcessor``) or, with ``sources``, the encoder's ids (``EncoderNoRepeatNGramLogitsProcessor``;
    beams share their source row). A row shorter than ``n - 1`` bans nothing; ``n = 1`` bans every id of the source;
    ``n = 0`` disables the row. Ids compare as raw integers (padding included); a banned id outside ``[0, vocab)`` is
    ignored. O(length) per row, no host synchronisation.

    Parameters
    ----------
    scores : torch.Tensor
        ``(batch, vocab)`` float32, float64, float16 or bfloat16; modified in place.
    ids : torch.Tensor
        ``(batch, length)`` int64 or int32, e.g. generate()'s ``input_ids``.
    ngram_size : int or Tensor
        ``n`` (>= 0) for every row, or an int64 ``(batch,)`` tensor.
    lengths : Tensor, optional
        int64 ``(batch,)``: each row's valid ids (right-padded batches); default all ``length``.
    sources : Tensor, optional
        ``(sources, source_length)`` ids of the ids' dtype, ``sources`` dividing ``batch``: score row ``r`` uses
        source row ``r // (batch // sources)``.
    source_lengths : Tensor, optional
        int64 ``(sources,)``: each source row's valid ids.

    Returns
    -------
    torch.Tensor
        ``scores`` itself.

    Examples
    --------
    >>> scores = torch.zeros(1, 5)
    >>> pysample.no_repeat_ngram_(scores, torch.tensor([[1, 2, 3, 1, 2]]), ngram_size=3)
    tensor([[0., 0., 0., -inf, 0.]])
    """
    rows, scalar = _split("ngram_size", ngram_size, torch.int64, scores, "scores")
    args = (ids, lengths, sources, source_lengths, rows, 0 if scalar is None else scalar)
    if _records_grad(scores):
        return scores.copy_(torch.ops.pysample.no_repeat_ngram(scores, *args))
    torch.ops.pysample.no_repeat_ngram_(scores, *args)
    return scores


def no_repeat_ngram(
    scores: torch.Tensor,
    ids: torch.Tensor,
    *,
    ngram_size: IntParam,
    lengths: Optional[torch.Tensor] = None,
    sources: Optional[torch.Tensor] = None,
    source_lengths: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """:func:`no_repeat_ngram_` on a new (contiguous) tensor: each row is copied and banned in one pass, which
    costs about what ``scores.clone()`` alone does.

    Examples
    --------
    >>> scores = torch.zeros(1, 5)
    >>> pysample.no_repeat_ngram(scores, torch.tensor([[1, 2, 3, 1, 2]]), ngram_size=3)
    tensor([[0., 0., 0., -inf, 0.]])
    >>> scores
    tensor([[0., 0., 0., 0., 0.]])
    """
    rows, scalar = _split("ngram_size", ngram_size, torch.int64, scores, "scores")
    return torch.ops.pysample.no_repeat_ngram(
        scores, ids, lengths, sources, source_lengths, rows, 0 if scalar is None else scalar
    )


class PackedSequences(NamedTuple):
    """Token sequences and their biases packed for :func:`bias_sequences_`, on one device.

    ``tokens``: int64, every sequence one after the other; ``offsets``: int64 ``(count + 1,)``, sequence ``s`` is
    ``tokens[offsets[s]:offsets[s + 1]]``; ``biases``: float32 ``(count,)``.
    """

    tokens: torch.Tensor
    offsets: torch.Tensor
    biases: torch.Tensor


def pack_sequences(
    sequences: Sequence[Sequence[int]], biases: Sequence[float], device: Union[torch.device, str, None] = None
) -> PackedSequences:
    """Packs ``sequences`` (non-empty lists of token ids) and one bias each for :func:`bias_sequences_`.

    Examples
    --------
    >>> pysample.ops.pack_sequences([[5], [1, 2]], [-1.0, 2.0]).offsets
    tensor([0, 1, 3])
    """
    if len(sequences) != len(biases):
        raise ValueError(f"{len(sequences)} sequences but {len(biases)} biases")
    if any(len(sequence) == 0 for sequence in sequences):
        raise ValueError("every sequence needs at least one token")
    lengths = torch.tensor([0] + [len(sequence) for sequence in sequences], dtype=torch.int64)
    tokens = torch.tensor([token for sequence in sequences for token in sequence], dtype=torch.int64)
    return PackedSequences(
        tokens.to(device), lengths.cumsum(0).to(device), torch.tensor(list(biases), dtype=torch.float32, device=device)
    )


def bias_sequences_(
    scores: torch.Tensor, ids: torch.Tensor, sequences: PackedSequences, *, lengths: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Adds, in place, each sequence's bias to its last token where its other tokens end the row's ids.

    transformers' ``SequenceBiasLogitsProcessor`` (and ``NoBadWordsLogitsProcessor``: biases of ``-inf``) without its
    pass over the whole row: a single-token sequence always applies; a longer one when its all-but-last tokens are
    the row's last ids. Biases of one token add up in the order of ``sequences``, in the scores' dtype (so
    ``inf + -inf`` is NaN, as in transformers), and the sum is added to the score once. Only biased tokens are
    written: unlike transformers' ``scores + bias``, a ``-0.0`` elsewhere stays ``-0.0``. No host synchronisation.

    Parameters
    ----------
    scores : torch.Tensor
        ``(batch, vocab)`` float32, float64, float16 or bfloat16; modified in place.
    ids : torch.Tensor
        ``(batch, length)`` int64 or int32.
    sequences : PackedSequences
        From :func:`pack_sequences`, on the scores' device; every last token in ``[0, vocab)``.
    lengths : Tensor, optional
        int64 ``(batch,)``: each row's valid ids (right-padded batches).

    Examples
    --------
    >>> packed = pysample.ops.pack_sequences([[4], [1, 2]], [-1.0, 5.0])
    >>> pysample.bias_sequences_(torch.zeros(2, 5), torch.tensor([[0, 1], [1, 0]]), packed)
    tensor([[ 0.,  0.,  5.,  0., -1.],
            [ 0.,  0.,  0.,  0., -1.]])
    """
    if _records_grad(scores):  # a constant added: the gradient passes unchanged
        biased = scores.clone()
        with torch.no_grad():
            torch.ops.pysample.bias_sequences_(biased, ids, lengths, *sequences)
        return scores.copy_(biased)
    torch.ops.pysample.bias_sequences_(scores, ids, lengths, *sequences)
    return scores


def apply_token_bitmask_(
    logits: torch.Tensor,
    bitmask: torch.Tensor,
    indices: Union[torch.Tensor, Sequence[int], None] = None,
    vocab_size: Optional[int] = None,
) -> torch.Tensor:
    """Sets to ``-inf``, in place, every token a grammar's bitmask disallows: xgrammar's
    ``apply_token_bitmask_inplace``, with its layout and semantics.

    Token ``j`` of row ``r`` is allowed where bit ``j % 32`` of ``bitmask[r, j // 32]`` is set; a cleared bit sets
    ``logits[r, j]`` to ``-inf`` (a NaN too), and allowed tokens keep their bits. Tokens at or past ``vocab_size``
    are left alone. With ``indices``, only the listed rows are masked, row ``r`` by bitmask row ``r`` (a repeated
    index masks its row again, to the same result). No host synchronisation on CUDA: a CUDA graph can capture it,
    with ``indices`` a device tensor.

    Parameters
    ----------
    logits : torch.Tensor
        ``(batch, vocab)`` float32, float64, float16 or bfloat16, any strides; modified in place.
    bitmask : torch.Tensor
        int32 ``(batch, words)`` on the logits' device, ``words >= ceil(vocab_size / 32)``.
    indices : Tensor or sequence of int, optional
        The rows to mask: a 1-D int64 or int32 tensor on the logits' device, or a list (copied to the device).
        Default: every row. An index outside ``[0, batch)`` raises ``IndexError`` on the CPU; on CUDA, which cannot
        raise without a host synchronisation, it is skipped (nothing is written for it).
    vocab_size : int, optional
        Tokens ``[0, vocab_size)`` are masked, ``vocab_size`` in ``[0, vocab]``; default ``min(vocab, 32 * words)``.

    Returns
    -------
    torch.Tensor
        ``logits`` itself.

    Examples
    --------
    >>> bitmask = torch.tensor([[0b10110], [-1]], dtype=torch.int32)  # row 0 allows tokens 1, 2 and 4; row 1 all
    >>> pysample.apply_token_bitmask_(torch.zeros(2, 5), bitmask)
    tensor([[-inf, 0., 0., -inf, 0.],
            [0., 0., 0., 0., 0.]])
    >>> pysample.apply_token_bitmask_(torch.zeros(2, 5), bitmask.flip(0), indices=[1], vocab_size=3)
    tensor([[0., 0., 0., 0., 0.],
            [-inf, 0., 0., 0., 0.]])
    """
    if vocab_size is not None and (isinstance(vocab_size, bool) or not isinstance(vocab_size, int)):
        raise TypeError(f"vocab_size must be an int or None, got {type(vocab_size).__name__}")
    if indices is not None and not isinstance(indices, torch.Tensor):
        try:
            rows = [operator.index(i) for i in indices]
        except TypeError:
            raise TypeError(f"indices must be a tensor or a sequence of ints, got {indices!r}") from None
        indices = torch.tensor(rows, dtype=torch.int64, device=logits.device)
    if _records_grad(logits):  # as masked_fill_: the masked tokens get no gradient
        with torch.no_grad():
            probe = torch.zeros(logits.shape, dtype=torch.float32, device=logits.device)
            torch.ops.pysample.apply_token_bitmask_(probe, bitmask, indices, vocab_size)
        return logits.masked_fill_(probe == -math.inf, -math.inf)
    torch.ops.pysample.apply_token_bitmask_(logits, bitmask, indices, vocab_size)
    return logits


class TokenLogprobs(NamedTuple):
    """Log-probabilities of given tokens and of each row's most likely ones (:func:`token_logprobs`).

    Examples
    --------
    >>> out = pysample.token_logprobs(torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([0]), num_top=1)
    >>> out.token_logprobs.exp(), out.ranks, out.top_ids
    (tensor([0.2500]), tensor([2]), tensor([[1]]))
    """

    token_logprobs: torch.Tensor  #: float32 ``(batch, n)``: each token's ``log_softmax(logits.float())``; NaN for -1
    ranks: torch.Tensor  #: int64 ``(batch, n)``: the tokens whose logit is >= the token's (1: the top); 0 for -1
    top_ids: torch.Tensor  #: int64 ``(batch, num_top)``: the largest logits' ids, descending, ties by ascending id
    top_logprobs: torch.Tensor  #: float32 ``(batch, num_top)``: their log-probabilities


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, num_top: int = 0) -> TokenLogprobs:
    """The log-probabilities and ranks of given tokens (e.g. the ones sampled) and each row's ``num_top`` most
    likely tokens with theirs, in one pass over each row: no ``(batch, vocab)`` log-softmax is written (vLLM's
    logprobs without its ``log_softmax`` of the batch, ``topk``, ``gather`` and rank comparison).

    A log-probability is ``torch.log_softmax(logits.float(), -1)``'s value, ``(x - max) - log(sum(exp(x - max)))``,
    up to the rounding of the row's sum (a few float32 ulps of ``|logprob|``; the CPU sums in double). As there, a
    row holding a NaN or ``+inf``, or only ``-inf``, has NaN log-probabilities throughout, and a ``-inf`` logit a
    ``-inf`` log-probability. Ranks and the top tokens follow the logits' order (of ``logits.float()``) with NaN
    above every number, as ``torch.topk``: a NaN token's rank is the number of NaNs in its row, and NaN logits
    come first in ``top_ids`` (ties, ``-0.0`` equal to ``0.0`` included, by ascending id). No host synchronisation
    on CUDA (a CUDA graph can capture it).

    Parameters
    ----------
    logits : torch.Tensor
        ``(batch, vocab)`` float32, float64, float16 or bfloat16, any strides.
    tokens : torch.Tensor
        int64 ``(batch, n)`` or ``(batch,)`` (``pysample.sample``'s output) on the logits' device; -1 is "no
        token". An id outside ``[-1, vocab)`` raises ``IndexError`` on the CPU; on CUDA, which cannot raise without
        a host synchronisation, it is treated as -1.
    num_top : int
        The most likely tokens returned per row, in ``[0, 20]`` (vLLM's default maximum) and at most ``vocab``.

    Returns
    -------
    TokenLogprobs
        ``(token_logprobs, ranks, top_ids, top_logprobs)``: ``token_logprobs`` float32 and ``ranks`` int64 shaped
        like ``tokens``, the number of tokens whose logit is >= the token's (vLLM's rank: 1 is the top, ties count
        against it), NaN and 0 for -1; ``top_ids`` int64 and ``top_logprobs`` float32 ``(batch, num_top)``.

    Examples
    --------
    >>> logits = torch.tensor([[0.0, 2.0, 1.0, 2.0], [1.0, 1.0, -math.inf, 0.0]])
    >>> out = pysample.token_logprobs(logits, torch.tensor([[3, 0], [2, -1]]), num_top=2)
    >>> out.token_logprobs
    tensor([[-0.9176, -2.9176],
            [   -inf,     nan]])
    >>> out.ranks
    tensor([[2, 4],
            [4, 0]])
    >>> out.top_ids
    tensor([[1, 3],
            [0, 1]])
    >>> out.top_logprobs
    tensor([[-0.9176, -0.9176],
            [-0.8620, -0.8620]])
    """
    if isinstance(num_top, bool) or not isinstance(num_top, int):
        raise TypeError(f"num_top must be an int, got {type(num_top).__name__}")
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"tokens must be a tensor, got {type(tokens).__name__}")
    one_per_row = tokens.dim() == 1
    out = torch.ops.pysample.token_logprobs(logits, tokens[:, None] if one_per_row else tokens, num_top)
    if one_per_row:
        return TokenLogprobs(out[0][:, 0], out[1][:, 0], out[2], out[3])
    return TokenLogprobs(*out)


class BeamCandidates(NamedTuple):
    """The best continuations of each batch item, best first, each ``(batch, num_candidates)``."""

    scores: torch.Tensor  #: float32: the beam's running score plus the token's log-probability
    tokens: torch.Tensor  #: int64: the token id
    beams: torch.Tensor  #: int64: the source beam, in ``[0, num_beams)`` within its batch item


def beam_search_step(
    logits: torch.Tensor,
    beam_scores: torch.Tensor,
    num_beams: int,
    num_candidates: Optional[int] = None,
    *,
    log_softmax: bool = True,
) -> BeamCandidates:
    """One beam search step: the best ``num_candidates`` continuations of each batch item, in one call.

    What transformers' beam search computes each step, ``log_softmax(logits)`` plus each beam's running score, then
    ``torch.topk`` over the ``num_beams * vocab`` continuations of each batch item, with the log-softmax fused: no
    ``(batch * num_beams, vocab)`` log-probability tensor is written. Scores are torch's float32 log-softmax values
    up to the rounding of each row's log-sum-exp (a few ulp), so the selection is transformers' except between
    continuations whose scores lie within that rounding of each other. Equal scores are taken in (beam, token)
    order, where ``torch.topk`` leaves their order unspecified; NaN ranks above every number, as in ``torch.topk``
    (a row with a NaN, a ``+inf`` or only ``-inf`` logits has a NaN log-softmax throughout).

    Parameters
    ----------
    logits : torch.Tensor
        ``(batch * num_beams, vocab)`` float32, float16 or bfloat16 next-token logits, rows beam-major within each
        batch item (transformers' layout).
    beam_scores : torch.Tensor
        float32 running beam scores, ``(batch, num_beams)`` or ``(batch * num_beams,)``; transformers starts with 0
        for the first beam and -1e9 for the others.
    num_beams : int
        Beams per batch item.
    num_candidates : int, optional
        Continuations kept per batch item; default ``2 * num_beams`` (transformers keeps
        ``max(2, 1 + number of EOS tokens) * num_beams``).
    log_softmax : bool
        False when ``logits`` already hold the log-probabilities (e.g. after logits processors, which transformers
        applies to the log-softmax): the scores are then ``logits + beam_scores``, bitwise transformers'.

    Returns
    -------
    BeamCandidates
        ``(scores, tokens, beams)``.

    Examples
    --------
    >>> logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]])
    >>> step = pysample.beam_search_step(logits, torch.tensor([0.0, -1.0]), num_beams=2, num_candidates=3)
    >>> step.tokens, step.beams
    (tensor([[1, 0, 2]]), tensor([[0, 1, 0]]))
    >>> step.scores
    tensor([[-0.4076, -1.0949, -1.4076]])
    """
    if num_candidates is None:
        num_candidates = 2 * num_beams
    if isinstance(beam_scores, torch.Tensor) and beam_scores.dim() == 2:
        beam_scores = beam_scores.reshape(-1)
    return BeamCandidates(
        *torch.ops.pysample.beam_search_step(logits, beam_scores, num_beams, num_candidates, log_softmax)
    )


def _check_fake_devices(what: str, first: torch.Tensor, **tensors) -> None:
    """The real kernels' device check, where tensors on different devices (the meta device among them) dispatch to
    the fake implementation: each named tensor (or list of them; None skipped) on the device of `first`, called
    `what` in messages."""
    for name, value in tensors.items():
        for t in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(t, torch.Tensor):
                torch._check_value(
                    t.device == first.device,
                    lambda: f"{name} must be on the {what}' device {first.device}, got {t.device}",
                )


_LOGITS_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _check_fake_logits(logits: torch.Tensor, dtypes: tuple = _LOGITS_DTYPES) -> None:
    torch._check(logits.dim() == 2, lambda: f"logits must be 2-D (batch, vocab), got shape {tuple(logits.shape)}")
    names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
    torch._check(logits.dtype in dtypes, lambda: f"logits must be one of {names}, got {logits.dtype}")


def _check_fake_stages(logits: torch.Tensor, args: tuple, stages: Sequence[Stage]) -> None:
    """The op's checks of the stages' arguments (each a per-row tensor and a scalar) that fake tensors allow: the
    tensors' shapes, dtypes and devices, and the scalars' ranges."""
    for stage, rows, value in zip(stages, args[0::2], args[1::2]):
        if rows is not None:
            torch._check(
                rows.dim() == 1 and rows.shape[0] == logits.shape[0],
                lambda: f"{stage.name} must have shape (batch,), got {tuple(rows.shape)}",
            )
            torch._check(rows.dtype == stage.dtype, lambda: f"{stage.name} must be {stage.dtype}, got {rows.dtype}")
            _check_fake_devices("logits", logits, **{stage.name: rows})
        if value is not None:
            accepts, text = RANGES[stage.range]
            torch._check_value(accepts(value), lambda: f"{stage.name} must be {text}, got {value!r}")


_WARP_DTYPES = _LOGITS_DTYPES + (torch.float64,)  # float64 on the CPU kernel only


@torch.library.register_fake("pysample::warp_logits_")
def _warp_logits_inplace_fake(logits, *args):
    _check_fake_logits(logits, _WARP_DTYPES)
    _check_fake_stages(logits, args, WARP_STAGES)
    return None


@torch.library.register_fake("pysample::warp_logits")
def _warp_logits_fake(logits, *args):
    _check_fake_logits(logits, _WARP_DTYPES)
    _check_fake_stages(logits, args, WARP_STAGES)
    return torch.empty_like(logits, memory_format=torch.contiguous_format)


@torch.library.register_fake("pysample::sample")
def _sample_fake(
    logits, temperature_rows, temperature, top_k_rows, top_k, top_p_rows, top_p, min_p_rows, min_p, seed, step, n
):
    _check_fake_logits(logits)
    _check_fake_stages(
        logits, (temperature_rows, temperature, top_k_rows, top_k, top_p_rows, top_p, min_p_rows, min_p), SAMPLE_STAGES
    )
    _check_fake_devices("logits", logits, seed=seed, step=step)
    for name, rows in (("seed", seed), ("step", step)):
        torch._check(
            rows.dim() == 1 and rows.shape[0] == logits.shape[0],
            lambda: f"{name} must have shape (batch,), got {tuple(rows.shape)}",
        )
        torch._check(rows.dtype == torch.int64, lambda: f"{name} must be torch.int64, got {rows.dtype}")
    torch._check(n >= 1, lambda: f"n must be >= 1, got {n}")
    return logits.new_empty((logits.shape[0], n), dtype=torch.int64)


def _check_fake_scores(scores: torch.Tensor, args: tuple) -> None:
    torch._check(scores.dim() == 2, lambda: f"scores must be 2-D (batch, vocab), got shape {tuple(scores.shape)}")
    torch._check(
        scores.dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16),
        lambda: f"scores must be float32, float64, float16 or bfloat16, got {scores.dtype}",
    )
    for name, rows in zip(("repetition", "presence", "frequency"), args[0::2]):
        if rows is not None:
            torch._check(
                rows.shape == (scores.shape[0],) and rows.dtype == torch.float32,
                lambda: f"{name} must be float32 of shape (batch,), got {rows.dtype} {tuple(rows.shape)}",
            )


def _check_fake_ids(ids: torch.Tensor) -> None:
    torch._check(ids.dim() == 2, lambda: f"ids must be 2-D (batch, length), got shape {tuple(ids.shape)}")
    torch._check(ids.dtype in (torch.int64, torch.int32), lambda: f"ids must be int64 or int32, got {ids.dtype}")


@torch.library.register_fake("pysample::apply_penalties_")
def _apply_penalties_inplace_fake(scores, ids, *args):
    _check_fake_devices("scores", scores, ids=ids, per_row_parameters=args)
    _check_fake_scores(scores, args[:6])
    _check_fake_ids(ids)
    return None


@torch.library.register_fake("pysample::apply_penalties")
def _apply_penalties_fake(scores, ids, *args):
    _check_fake_devices("scores", scores, ids=ids, per_row_parameters=args)
    _check_fake_scores(scores, args[:6])
    _check_fake_ids(ids)
    return torch.empty_like(scores, memory_format=torch.contiguous_format)


def _seen_words(vocab: int) -> int:
    """Width of a seen table (``PenaltyState.seen``): int32 words of one bit per token, as penalty.h packs them."""
    return (vocab + 31) // 32


def _check_fake_tables(counts: torch.Tensor, seen: torch.Tensor) -> None:
    torch._check(
        counts.dim() == 2 and counts.dtype == torch.int32,
        lambda: f"counts must be 2-D int32, got {counts.dtype} {tuple(counts.shape)}",
    )
    torch._check(seen.dtype == torch.int32, lambda: f"seen must be int32, got {seen.dtype}")
    shape = (counts.shape[0], _seen_words(counts.shape[1]))
    torch._check(tuple(seen.shape) == shape, lambda: f"seen must have shape {shape}, got {tuple(seen.shape)}")


@torch.library.register_fake("pysample::count_tokens_")
def _count_tokens_fake(counts, seen, ids, slots, *scope):
    _check_fake_devices("ids", ids, counts=counts, seen=seen, slots=slots, history_scope=scope)
    _check_fake_ids(ids)
    _check_fake_tables(counts, seen)
    return None


@torch.library.register_fake("pysample::apply_penalty_counts_")
def _apply_penalty_counts_fake(scores, counts, seen, slots, *args):
    _check_fake_devices("scores", scores, counts=counts, seen=seen, slots=slots, per_row_parameters=args)
    _check_fake_scores(scores, args)
    _check_fake_tables(counts, seen)
    return None


@torch.library.register_fake("pysample::no_repeat_ngram_")
def _no_repeat_ngram_fake(scores, ids, lengths, sources, source_lengths, ngram_size_rows, ngram_size):
    _check_fake_devices(
        "scores",
        scores,
        ids=ids,
        lengths=lengths,
        sources=sources,
        source_lengths=source_lengths,
        ngram_size=ngram_size_rows,
    )
    _check_fake_scores(scores, ())
    _check_fake_ids(ids)
    return None


@torch.library.register_fake("pysample::no_repeat_ngram")
def _no_repeat_ngram_out_fake(scores, ids, lengths, sources, source_lengths, ngram_size_rows, ngram_size):
    _no_repeat_ngram_fake(scores, ids, lengths, sources, source_lengths, ngram_size_rows, ngram_size)
    return torch.empty_like(scores, memory_format=torch.contiguous_format)


@torch.library.register_fake("pysample::bias_sequences_")
def _bias_sequences_fake(scores, ids, lengths, tokens, offsets, biases):
    _check_fake_devices(
        "scores",
        scores,
        ids=ids,
        lengths=lengths,
        sequence_tokens=tokens,
        sequence_offsets=offsets,
        sequence_biases=biases,
    )
    _check_fake_scores(scores, ())
    _check_fake_ids(ids)
    return None


@torch.library.register_fake("pysample::apply_token_bitmask_")
def _apply_token_bitmask_fake(logits, bitmask, indices, vocab_size):
    _check_fake_devices("logits", logits, bitmask=bitmask, indices=indices)
    _check_fake_logits(logits, _WARP_DTYPES)
    torch._check(bitmask.dim() == 2, lambda: f"bitmask must be 2-D (batch, words), got shape {tuple(bitmask.shape)}")
    torch._check(bitmask.dtype == torch.int32, lambda: f"bitmask must be int32, got {bitmask.dtype}")
    torch._check(
        bitmask.shape[0] == logits.shape[0],
        lambda: f"bitmask must have the logits' {logits.shape[0]} rows, got {bitmask.shape[0]}",
    )
    vocab, words = logits.shape[1], bitmask.shape[1]
    size = min(vocab, 32 * words) if vocab_size is None else vocab_size
    torch._check(size >= 0, lambda: f"vocab_size must be in [0, {vocab}] (the logits' width), got {size}")
    torch._check(size <= vocab, lambda: f"vocab_size must be in [0, {vocab}] (the logits' width), got {size}")
    torch._check(
        (size + 31) // 32 <= words,
        lambda: f"bitmask must have at least ceil(vocab_size / 32) = {(size + 31) // 32} words per row, got {words}",
    )
    if indices is not None:
        torch._check(indices.dim() == 1, lambda: f"indices must be 1-D, got shape {tuple(indices.shape)}")
        torch._check(
            indices.dtype in (torch.int64, torch.int32), lambda: f"indices must be int64 or int32, got {indices.dtype}"
        )
    return None


@torch.library.register_fake("pysample::token_logprobs")
def _token_logprobs_fake(logits, tokens, num_top):
    _check_fake_devices("logits", logits, tokens=tokens)
    _check_fake_logits(logits, _WARP_DTYPES)
    torch._check(tokens.dim() == 2, lambda: f"tokens must be 2-D (batch, n), got shape {tuple(tokens.shape)}")
    torch._check(tokens.dtype == torch.int64, lambda: f"tokens must be int64, got {tokens.dtype}")
    torch._check(
        tokens.shape[0] == logits.shape[0],
        lambda: f"tokens must have the logits' {logits.shape[0]} rows, got {tokens.shape[0]}",
    )
    torch._check_value(0 <= num_top <= 20, lambda: f"num_top must be in [0, 20], got {num_top}")
    torch._check_value(
        num_top <= logits.shape[1],
        lambda: f"num_top must be at most the vocabulary size {logits.shape[1]}, got {num_top}",
    )
    batch, n = tokens.shape
    return (
        logits.new_empty((batch, n), dtype=torch.float32),
        logits.new_empty((batch, n), dtype=torch.int64),
        logits.new_empty((batch, num_top), dtype=torch.int64),
        logits.new_empty((batch, num_top), dtype=torch.float32),
    )


@torch.library.register_fake("pysample::reorder_kv_cache_")
def _reorder_kv_cache_fake(caches, beam_idx, filled_length):
    for i, t in enumerate(caches):
        torch._check_value(
            t.device == caches[0].device,
            lambda: f"caches[{i}] must be on caches[0]'s device {caches[0].device}, got {t.device}",
        )
    torch._check(beam_idx.dim() == 1, lambda: f"beam_idx must be 1-D, got shape {tuple(beam_idx.shape)}")
    for i, t in enumerate(caches):
        torch._check(t.shape[0] == beam_idx.shape[0], lambda: f"caches[{i}] must have beam_idx's rows in dim 0")
    return None


@torch.library.register_fake("pysample::beam_search_step")
def _beam_search_step_fake(logits, beam_scores, num_beams, num_candidates, log_softmax):
    _check_fake_logits(logits)
    _check_fake_devices("logits", logits, beam_scores=beam_scores)
    torch._check(num_beams >= 1, lambda: f"num_beams must be >= 1, got {num_beams}")
    torch._check(
        logits.shape[0] % num_beams == 0,
        lambda: f"logits' {logits.shape[0]} rows must be batch * num_beams, num_beams = {num_beams}",
    )
    torch._check(
        1 <= num_candidates <= num_beams * logits.shape[1],
        lambda: f"num_candidates must be in [1, num_beams * vocab], got {num_candidates}",
    )
    torch._check(
        beam_scores.shape == (logits.shape[0],) and beam_scores.dtype == torch.float32,
        lambda: (
            f"beam_scores must be float32 of shape ({logits.shape[0]},), got {beam_scores.dtype} "
            f"{tuple(beam_scores.shape)}"
        ),
    )
    shape = (logits.shape[0] // num_beams, num_candidates)
    return (
        logits.new_empty(shape, dtype=torch.float32),
        logits.new_empty(shape, dtype=torch.int64),
        logits.new_empty(shape, dtype=torch.int64),
    )
