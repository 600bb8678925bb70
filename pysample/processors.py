"""Drop-in replacements for transformers' logits warpers and penalty processors, and :func:`fuse` to run a chain of
them with as few kernel calls and copies as possible.

Each class takes the same constructor arguments as the transformers class of the same name, raises the same
errors for invalid ones (and also rejects NaN), and ``__call__(input_ids, scores)`` returns a new tensor equal to
what transformers returns. Any of them works in ``model.generate(logits_processor=LogitsProcessorList([...]))``.

Semantics notes (the only places where outputs may differ from transformers for float32 scores):

* Min-p and epsilon are bitwise equal on the CPU (tokens near the threshold are decided with torch's own
  softmax); on CUDA and for float16/bfloat16 scores they follow the rule below.
* Top-p, typical and eta (and min-p / epsilon on CUDA) compare softmax probabilities against a threshold. pysample
  computes them without sorting and sums in another order (partly in double where transformers sums in float32),
  so a token whose probability, cumulative probability or typical distance lies within the float32 accumulation
  error of the threshold may be decided differently. That error grows with the vocabulary: at 128k tokens
  transformers' own float32 entropy (typical, eta) is off by about 1e-4 relative. transformers itself decides such
  tokens differently on CPU and CUDA.
* Among tokens with exactly equal scores at the top-p boundary, pysample keeps the higher token ids (the order of
  a stable ascending sort); transformers' unstable CPU sort keeps an arbitrary subset of them. Likewise min-p keeps
  every token tied with the ``min_tokens_to_keep``-th most probable one, where transformers' topk picks some.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, Iterable, List, Optional, Sequence, Tuple, Union

import torch

from . import ops
from ._stages import STAGE_NAMES

_INF = math.inf


def _check_min_tokens_to_keep(min_tokens_to_keep) -> None:
    if not isinstance(min_tokens_to_keep, int) or min_tokens_to_keep < 1:
        raise ValueError(f"`min_tokens_to_keep` has to be a positive integer, but is {min_tokens_to_keep}")


class _Warper:
    """One stage of the fused warper. ``stage`` names it, ``params`` are its op arguments."""

    stage: str

    def params(self) -> dict:
        raise NotImplementedError

    def __call__(self, input_ids: Optional[torch.LongTensor], scores: torch.Tensor) -> torch.Tensor:
        """Returns the warped ``scores`` ``(batch, vocab)`` as a new tensor; ``input_ids`` is not used."""
        return ops.warp_logits(scores, **self.params())


class _Filter(_Warper):
    """A stage that removes tokens: its parameter is the attribute named `attribute` (as in transformers' class)."""

    attribute: str

    def params(self) -> dict:
        return {
            self.stage: float(getattr(self, self.attribute)),
            "filter_value": self.filter_value,
            "min_tokens_to_keep": self.min_tokens_to_keep,
        }


class TemperatureLogitsWarper(_Warper):
    """Divides the scores by ``temperature``; replaces ``transformers.TemperatureLogitsWarper``.

    Parameters
    ----------
    temperature : float
        Strictly positive float.

    Examples
    --------
    >>> pysample.TemperatureLogitsWarper(0.5)(None, torch.tensor([[1.0, 2.0]]))
    tensor([[2., 4.]])
    """

    stage = "temperature"

    def __init__(self, temperature: float):
        if not isinstance(temperature, float) or not (temperature > 0) or math.isinf(temperature):
            message = (
                f"`temperature` (={temperature}) has to be a strictly positive float, otherwise your next token "
                "scores will be invalid."
            )
            if isinstance(temperature, float) and temperature == 0.0:
                message += " If you're looking for greedy decoding strategies, set `do_sample=False`."
            raise ValueError(message)
        self.temperature = temperature

    def params(self) -> dict:
        return {"temperature": self.temperature}

    def __call__(self, input_ids: Optional[torch.LongTensor], scores: torch.Tensor) -> torch.Tensor:
        """Returns ``scores / temperature`` (a new tensor). Alone, one division is all there is to do, and torch's
        is as fast as it gets; :func:`fuse` folds the temperature into the fused warper call."""
        return scores / self.temperature


class TopKLogitsWarper(_Warper):
    """Keeps the ``top_k`` highest scores (and every score tied with the last); replaces
    ``transformers.TopKLogitsWarper``.

    Parameters
    ----------
    top_k : int
        Strictly positive; raised to ``min_tokens_to_keep``.
    filter_value : float
        Value of removed tokens.
    min_tokens_to_keep : int
        Minimum number of tokens kept.

    Examples
    --------
    >>> pysample.TopKLogitsWarper(2)(None, torch.tensor([[1.0, 3.0, 2.0, 3.0]]))
    tensor([[-inf, 3., -inf, 3.]])
    """

    stage = "top_k"

    def __init__(self, top_k: int, filter_value: float = -_INF, min_tokens_to_keep: int = 1):
        if not isinstance(top_k, int) or top_k <= 0:
            raise ValueError(f"`top_k` has to be a strictly positive integer, but is {top_k}")
        self.top_k = max(top_k, min_tokens_to_keep)
        self.filter_value = filter_value
        self.min_tokens_to_keep = min_tokens_to_keep

    def params(self) -> dict:
        return {"top_k": self.top_k, "filter_value": self.filter_value}


class TopPLogitsWarper(_Filter):
    """Nucleus filtering; replaces ``transformers.TopPLogitsWarper``, without sorting the vocabulary.

    Keeps the most probable tokens whose cumulative probability reaches ``top_p`` (at least ``min_tokens_to_keep``);
    ``top_p=1.0`` still removes tokens whose probability underflows to 0, a row holding NaN is left unfiltered.

    Parameters
    ----------
    top_p : float
        In [0, 1].
    filter_value : float
        Value of removed tokens.
    min_tokens_to_keep : int
        Minimum number of tokens kept.

    Examples
    --------
    >>> pysample.TopPLogitsWarper(0.5)(None, torch.tensor([[0.0, 1.0, 3.0]]))
    tensor([[-inf, -inf, 3.]])
    """

    stage = "top_p"
    attribute = "top_p"

    def __init__(self, top_p: float, filter_value: float = -_INF, min_tokens_to_keep: int = 1):
        top_p = float(top_p)
        if not (0 <= top_p <= 1.0):
            raise ValueError(f"`top_p` has to be a float > 0 and < 1, but is {top_p}")
        _check_min_tokens_to_keep(min_tokens_to_keep)
        self.top_p = top_p
        self.filter_value = filter_value
        self.min_tokens_to_keep = min_tokens_to_keep


class MinPLogitsWarper(_Filter):
    """Removes tokens less probable than ``min_p`` times the top token; replaces ``transformers.MinPLogitsWarper``.

    Parameters
    ----------
    min_p : float
        In [0, 1].
    filter_value : float
        Value of removed tokens.
    min_tokens_to_keep : int
        Minimum number of tokens kept.

    Examples
    --------
    >>> pysample.MinPLogitsWarper(0.1)(None, torch.tensor([[0.0, 1.0, 5.0]]))
    tensor([[-inf, -inf, 5.]])
    """

    stage = "min_p"
    attribute = "min_p"

    def __init__(self, min_p: float, filter_value: float = -_INF, min_tokens_to_keep: int = 1):
        if not (0 <= min_p <= 1.0):
            raise ValueError(f"`min_p` has to be a float in the [0, 1] interval, but is {min_p}")
        _check_min_tokens_to_keep(min_tokens_to_keep)
        self.min_p = min_p
        self.filter_value = filter_value
        self.min_tokens_to_keep = min_tokens_to_keep


class TypicalLogitsWarper(_Filter):
    """Typical decoding; replaces ``transformers.TypicalLogitsWarper``, without sorting the vocabulary.

    Parameters
    ----------
    mass : float
        typical_p, in (0, 1).
    filter_value : float
        Value of removed tokens.
    min_tokens_to_keep : int
        Minimum number of tokens kept.

    Examples
    --------
    >>> pysample.TypicalLogitsWarper(0.5)(None, torch.tensor([[0.0, 1.0, 5.0]]))
    tensor([[-inf, -inf, 5.]])
    """

    stage = "typical_p"
    attribute = "mass"

    def __init__(self, mass: float = 0.9, filter_value: float = -_INF, min_tokens_to_keep: int = 1):
        mass = float(mass)
        if not (mass > 0 and mass < 1):
            raise ValueError(f"`typical_p` has to be a float > 0 and < 1, but is {mass}")
        _check_min_tokens_to_keep(min_tokens_to_keep)
        self.mass = mass
        self.filter_value = filter_value
        self.min_tokens_to_keep = min_tokens_to_keep


class EpsilonLogitsWarper(_Filter):
    """Removes tokens whose probability is below ``epsilon``; replaces ``transformers.EpsilonLogitsWarper``.

    Parameters
    ----------
    epsilon : float
        In (0, 1).
    filter_value : float
        Value of removed tokens.
    min_tokens_to_keep : int
        Minimum number of tokens kept.

    Examples
    --------
    >>> pysample.EpsilonLogitsWarper(0.1)(None, torch.tensor([[0.0, 1.0, 5.0]]))
    tensor([[-inf, -inf, 5.]])
    """

    stage = "epsilon"
    attribute = "epsilon"

    def __init__(self, epsilon: float, filter_value: float = -_INF, min_tokens_to_keep: int = 1):
        epsilon = float(epsilon)
        if not (0 < epsilon < 1):
            raise ValueError(f"`epsilon_cutoff` has to be a float > 0 and < 1, but is {epsilon}")
        min_tokens_to_keep = int(min_tokens_to_keep)
        if min_tokens_to_keep < 1:
            raise ValueError(f"`min_tokens_to_keep` has to be a strictly positive integer, but is {min_tokens_to_keep}")
        self.epsilon = epsilon
        self.filter_value = filter_value
        self.min_tokens_to_keep = min_tokens_to_keep


class EtaLogitsWarper(_Filter):
    """Eta-sampling; replaces ``transformers.EtaLogitsWarper`` without its host synchronisation.

    A row holding NaN is left unfiltered (transformers raises there, from ``torch.distributions``).

    Parameters
    ----------
    epsilon : float
        In (0, 1).
    filter_value : float
        Value of removed tokens.
    min_tokens_to_keep : int
        Minimum number of tokens kept.
    device : str
        Accepted for compatibility; unused.

    Examples
    --------
    >>> pysample.EtaLogitsWarper(0.1)(None, torch.tensor([[0.0, 1.0, 5.0]]))
    tensor([[-inf, -inf, 5.]])
    """

    stage = "eta"
    attribute = "epsilon"

    def __init__(self, epsilon: float, filter_value: float = -_INF, min_tokens_to_keep: int = 1, device: str = "cpu"):
        epsilon = float(epsilon)
        if not (0 < epsilon < 1):
            raise ValueError(f"`eta_cutoff` has to be a float > 0 and < 1, but is {epsilon}")
        min_tokens_to_keep = int(min_tokens_to_keep)
        if min_tokens_to_keep < 1:
            raise ValueError(f"`min_tokens_to_keep` has to be a strictly positive integer, but is {min_tokens_to_keep}")
        self.epsilon = epsilon
        self.filter_value = filter_value
        self.min_tokens_to_keep = min_tokens_to_keep


def _check_2d(scores: torch.Tensor) -> None:
    if scores.dim() != 2:
        raise ValueError(f"scores must be 2-D (batch, vocab), got shape {tuple(scores.shape)}")


class _TokenEditor:
    """A processor that changes a few tokens of each row (penalties, bans, biases). ``__call__`` returns new scores;
    :class:`FusedLogitsProcessor` applies it in place on the copy the chain owns (``in_place=True``)."""

    def apply(self, input_ids: torch.Tensor, scores: torch.Tensor, in_place: bool) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Returns the processed ``scores`` ``(batch, vocab)`` as a new tensor."""
        return self.apply(input_ids, scores, in_place=False)


class _Penalty(_TokenEditor):
    """A penalty processor: one call of :func:`pysample.apply_penalties` (or its in-place form)."""

    def penalty_arguments(self, input_ids: torch.Tensor, scores: torch.Tensor) -> Tuple[torch.Tensor, dict]:
        """The ids and keyword arguments of :func:`pysample.apply_penalties` for these scores."""
        raise NotImplementedError

    def apply(self, input_ids: torch.Tensor, scores: torch.Tensor, in_place: bool) -> torch.Tensor:
        _check_2d(scores)
        ids, params = self.penalty_arguments(input_ids, scores)
        return (ops.apply_penalties_ if in_place else ops.apply_penalties)(scores, ids, **params)


def _check_penalty(penalty) -> None:
    if not isinstance(penalty, float) or not (penalty > 0):
        raise ValueError(f"`penalty` has to be a strictly positive float, but is {penalty}")


class RepetitionPenaltyLogitsProcessor(_Penalty):
    """Penalises every token of a row's ids once; replaces ``transformers.RepetitionPenaltyLogitsProcessor``.

    A score ``s`` of a token in ``input_ids`` becomes ``s * penalty`` if ``s < 0``, else ``s / penalty`` (a true
    division on the CPU; on CUDA a multiplication by ``1 / penalty``, as torch divides by a scalar there), once
    however often the token occurs. O(length) per row: the vocabulary is not scanned. Differences from
    transformers: ids outside ``[0, vocab)`` (negative padding ids included) are ignored where transformers raises
    for negative ones; only 2-D scores (transformers' 3-D form serves continuous batching, which this processor
    does not support there either).

    Parameters
    ----------
    penalty : float
        Strictly positive; above 1 discourages repetition, below 1 encourages it.
    prompt_ignore_length : int or Tensor, optional
        Leading ids of each row not counted (generate() passes the left-padding lengths), one for every row or a
        1-D tensor with one per row.

    Examples
    --------
    >>> processor = pysample.RepetitionPenaltyLogitsProcessor(2.0)
    >>> processor(torch.tensor([[0, 2, 2]]), torch.tensor([[1.0, 1.0, -1.0]]))
    tensor([[ 0.5000,  1.0000, -2.0000]])
    """

    def __init__(self, penalty: float, prompt_ignore_length: Optional[Union[int, torch.Tensor]] = None):
        _check_penalty(penalty)
        if isinstance(prompt_ignore_length, int) and prompt_ignore_length < 0:
            raise ValueError(f"`prompt_ignore_length` has to be a positive integer, but is {prompt_ignore_length}")
        if isinstance(prompt_ignore_length, torch.Tensor) and prompt_ignore_length.dim() != 1:
            raise ValueError("`prompt_ignore_length` must be 1D")
        self.penalty = penalty
        self.prompt_ignore_length = prompt_ignore_length

    def penalty_arguments(self, input_ids: torch.Tensor, scores: torch.Tensor) -> Tuple[torch.Tensor, dict]:
        if input_ids.dim() == 1:
            input_ids = input_ids.unsqueeze(1)
        history_start = self.prompt_ignore_length
        if isinstance(history_start, torch.Tensor):
            if input_ids.shape[0] != history_start.shape[0]:
                raise ValueError("Incompatible `prompt_ignore_length` batch size")
            self.prompt_ignore_length = history_start = history_start.to(input_ids.device)
        return input_ids, {"repetition": self.penalty, "history_start": 0 if history_start is None else history_start}


class EncoderRepetitionPenaltyLogitsProcessor(_Penalty):
    """Rewards the tokens of the encoder input; replaces ``transformers.EncoderRepetitionPenaltyLogitsProcessor``.

    Like transformers it stores ``1 / penalty`` as ``self.penalty`` and applies the repetition rule with it, so a
    ``penalty`` above 1 *raises* the scores of the encoder's tokens. Rows of beams share their source row's encoder
    ids (the scores' batch a multiple of the ids' batch) without copying them. Encoder ids outside ``[0, vocab)``
    are ignored where transformers raises.

    Parameters
    ----------
    penalty : float
        Strictly positive.
    encoder_input_ids : torch.LongTensor
        ``(batch, length)`` ids of the encoder input.

    Examples
    --------
    >>> processor = pysample.EncoderRepetitionPenaltyLogitsProcessor(2.0, torch.tensor([[0, 2]]))
    >>> processor(None, torch.tensor([[1.0, 1.0, -1.0]]))
    tensor([[ 2.0000,  1.0000, -0.5000]])
    """

    def __init__(self, penalty: float, encoder_input_ids: torch.LongTensor):
        _check_penalty(penalty)
        self.penalty = 1 / penalty
        self.encoder_input_ids = encoder_input_ids

    def penalty_arguments(self, input_ids: torch.Tensor, scores: torch.Tensor) -> Tuple[torch.Tensor, dict]:
        return self.encoder_input_ids, {"repetition": self.penalty}


class NoRepeatNGramLogitsProcessor(_TokenEditor):
    """Bans tokens that would repeat an n-gram of the row; replaces ``transformers.NoRepeatNGramLogitsProcessor``.

    Windows run over the whole ``input_ids`` (prompt and padding included), as in transformers. O(length) per row,
    no host synchronisation; ids outside ``[0, vocab)`` are never banned (transformers raises on negative ones).

    Parameters
    ----------
    ngram_size : int
        Strictly positive: n-grams of this size occur at most once.

    Examples
    --------
    >>> processor = pysample.NoRepeatNGramLogitsProcessor(2)
    >>> processor(torch.tensor([[3, 1, 3]]), torch.zeros(1, 4))
    tensor([[0., -inf, 0., 0.]])
    """

    def __init__(self, ngram_size: int):
        if not isinstance(ngram_size, int) or ngram_size <= 0:
            raise ValueError(f"`ngram_size` has to be a strictly positive integer, but is {ngram_size}")
        self.ngram_size = ngram_size

    def apply(self, input_ids: torch.Tensor, scores: torch.Tensor, in_place: bool) -> torch.Tensor:
        _check_2d(scores)
        if input_ids.shape[-1] < self.ngram_size:  # no complete n-gram yet: transformers returns the scores as given
            return scores
        ban = ops.no_repeat_ngram_ if in_place else ops.no_repeat_ngram
        return ban(scores, input_ids, ngram_size=self.ngram_size)


class EncoderNoRepeatNGramLogitsProcessor(_TokenEditor):
    """Bans tokens that would repeat an n-gram of the encoder input; replaces
    ``transformers.EncoderNoRepeatNGramLogitsProcessor`` without its per-row Python loop and host synchronisation.

    Beams share their source row's encoder ids (``num_beams = batch // encoder batch``). A row bans once it holds
    ``n - 1`` ids. Encoder ids outside ``[0, vocab)`` are never banned (transformers indexes with them: a negative id
    bans a token counted from the end of the vocabulary).

    Parameters
    ----------
    encoder_ngram_size : int
        Strictly positive.
    encoder_input_ids : torch.LongTensor
        ``(batch, length)`` (or ``(length,)``) ids of the encoder input.

    Examples
    --------
    >>> processor = pysample.EncoderNoRepeatNGramLogitsProcessor(2, torch.tensor([[1, 2, 1, 3]]))
    >>> processor(torch.tensor([[0, 1]]), torch.zeros(1, 4))
    tensor([[0., 0., -inf, -inf]])
    """

    def __init__(self, encoder_ngram_size: int, encoder_input_ids: torch.LongTensor):
        if not isinstance(encoder_ngram_size, int) or encoder_ngram_size <= 0:
            raise ValueError(f"`encoder_ngram_size` has to be a strictly positive integer, but is {encoder_ngram_size}")
        self.ngram_size = encoder_ngram_size
        if len(encoder_input_ids.shape) == 1:
            encoder_input_ids = encoder_input_ids.unsqueeze(0)
        self.batch_size = encoder_input_ids.shape[0]
        self.encoder_input_ids = encoder_input_ids

    def apply(self, input_ids: torch.Tensor, scores: torch.Tensor, in_place: bool) -> torch.Tensor:
        _check_2d(scores)
        if self.encoder_input_ids.device != scores.device or self.encoder_input_ids.dtype != input_ids.dtype:
            self.encoder_input_ids = self.encoder_input_ids.to(device=scores.device, dtype=input_ids.dtype)
        ban = ops.no_repeat_ngram_ if in_place else ops.no_repeat_ngram
        return ban(scores, input_ids, ngram_size=self.ngram_size, sources=self.encoder_input_ids)


def _is_token_id(token_id) -> bool:
    return (
        isinstance(token_id, numbers.Integral) and token_id >= 0
    )  # transformers checks (int, np.integer): both are Integral (bool passes)


class SequenceBiasLogitsProcessor(_TokenEditor):
    """Adds a bias to the last token of each sequence the next token can complete; replaces
    ``transformers.SequenceBiasLogitsProcessor``.

    A single-token sequence is always biased; a longer one when its other tokens end the row's ids. Biases of one
    token add up (``inf + -inf`` is NaN) in transformers' order: single tokens first, then longer sequences grouped
    by length. Like transformers (``scores + bias``), the result has no ``-0.0``. The vocabulary is checked and the
    sequences packed on the device at the first call.

    Parameters
    ----------
    sequence_bias : list of [list of int, float], or dict of tuple of int to float
        The sequences and their biases, e.g. ``[[[10, 45], -2.0], [[64], -7.5]]``.

    Examples
    --------
    >>> processor = pysample.SequenceBiasLogitsProcessor([[[1, 2], 5.0], [[3], -1.0]])
    >>> processor(torch.tensor([[0, 1]]), torch.zeros(1, 4))
    tensor([[ 0.,  0.,  5., -1.]])
    """

    def __init__(self, sequence_bias):
        self.sequence_bias = sequence_bias
        self._validate_arguments()
        if isinstance(sequence_bias, list):
            self.sequence_bias = {tuple(sequence): bias for sequence, bias in sequence_bias}
        self._packed: Optional[ops.PackedSequences] = None

    def _validate_arguments(self) -> None:
        sequence_bias = self.sequence_bias
        if not isinstance(sequence_bias, (dict, list)) or len(sequence_bias) == 0:
            raise ValueError(
                f"`sequence_bias` has to be a non-empty dictionary, or non-empty list of lists but is {sequence_bias}."
            )
        if isinstance(sequence_bias, dict):
            if any(not isinstance(sequence, tuple) for sequence in sequence_bias):
                raise ValueError(f"`sequence_bias` has to be a dict with tuples as keys, but is {sequence_bias}.")
            if any(len(sequence) == 0 or not all(map(_is_token_id, sequence)) for sequence in sequence_bias):
                raise ValueError(
                    "Each key in `sequence_bias` has to be a non-empty tuple of positive integers, but is "
                    f"{sequence_bias}."
                )
            if any(not isinstance(bias, float) for bias in sequence_bias.values()):
                raise ValueError(f"`sequence_bias` has to be a dict with floats as values, but is {sequence_bias}.")
            return

        def valid_pair(pair) -> bool:
            return (
                len(pair) != 0
                and isinstance(pair[0], list)
                and all(map(_is_token_id, pair[0]))
                and isinstance(pair[1], float)
            )

        if any(not valid_pair(pair) for pair in sequence_bias):
            raise ValueError(
                "Each element in `sequence_bias` has to be a non-empty list of lists of positive integers and float, "
                f"but is {sequence_bias}."
            )

    def _pack(self, scores: torch.Tensor) -> ops.PackedSequences:
        vocab = scores.shape[-1]
        invalid = [token for sequence in self.sequence_bias for token in sequence if token >= vocab]
        if invalid:
            raise ValueError(
                f"The model vocabulary size is {vocab}, but the following tokens were being biased: {invalid}"
            )
        # transformers' order of accumulation: single tokens, then longer sequences grouped by length in order of
        # first appearance, each group in dict order.
        singles = [(list(sequence), bias) for sequence, bias in self.sequence_bias.items() if len(sequence) == 1]
        by_length: dict = {}
        for sequence, bias in self.sequence_bias.items():
            if len(sequence) > 1:
                by_length.setdefault(len(sequence), []).append((list(sequence), bias))
        ordered = singles + [pair for group in by_length.values() for pair in group]
        return ops.pack_sequences([s for s, _ in ordered], [b for _, b in ordered], device=scores.device)

    def apply(self, input_ids: torch.Tensor, scores: torch.Tensor, in_place: bool) -> torch.Tensor:
        _check_2d(scores)
        if self._packed is None or self._packed.tokens.device != scores.device:
            self._packed = self._pack(scores)
        scores = scores.add_(0.0) if in_place else scores + 0.0  # transformers' scores + bias turns -0.0 into 0.0
        return ops.bias_sequences_(scores, input_ids, self._packed)


class NoBadWordsLogitsProcessor(SequenceBiasLogitsProcessor):
    """Bans every sequence of ``bad_words_ids`` (a bias of ``-inf`` on the token that would complete it); replaces
    ``transformers.NoBadWordsLogitsProcessor``.

    Parameters
    ----------
    bad_words_ids : list of list of int
        The banned sequences.
    eos_token_id : int, list of int or Tensor, optional
        End-of-sequence token(s): a banned single token equal to one of them is dropped from the list.

    Examples
    --------
    >>> processor = pysample.NoBadWordsLogitsProcessor([[1, 2], [3]], eos_token_id=0)
    >>> processor(torch.tensor([[0, 1]]), torch.zeros(1, 4))
    tensor([[0., 0., -inf, -inf]])
    """

    def __init__(self, bad_words_ids, eos_token_id=None):
        self.bad_word_ids = bad_words_ids
        self._validate_arguments()
        if eos_token_id is not None:
            if isinstance(eos_token_id, torch.Tensor):
                eos_token_id = eos_token_id.tolist()
            eos = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
            bad_words_ids = [sequence for sequence in bad_words_ids if all(sequence != [i] for i in eos)]
        # Validated as bad words (this class's _validate_arguments), so that an empty list after removing the end of
        # sequence tokens is accepted, as in transformers.
        super().__init__({tuple(sequence): -_INF for sequence in bad_words_ids})

    def _validate_arguments(self) -> None:
        bad_words_ids = self.bad_word_ids
        if not isinstance(bad_words_ids, list) or len(bad_words_ids) == 0:
            raise ValueError(f"`bad_words_ids` has to be a non-empty list, but is {bad_words_ids}.")
        if any(not isinstance(bad_word_ids, list) for bad_word_ids in bad_words_ids):
            raise ValueError(f"`bad_words_ids` has to be a list of lists, but is {bad_words_ids}.")
        if any(not all(map(_is_token_id, bad_word_ids)) for bad_word_ids in bad_words_ids):
            raise ValueError(
                f"Each list in `bad_words_ids` has to be a list of positive integers, but is {bad_words_ids}."
            )


def _same_attributes(cls):
    """Converts a transformers processor into `cls`, whose attributes have the same names and meanings."""

    def convert(processor):
        editor = cls.__new__(cls)
        editor.__dict__.update(processor.__dict__)
        return editor

    return convert


# transformers' token editors fuse can run in place, by class name. EncoderNoRepeatNGram is not among them: it keeps
# only a dict of the encoder's n-grams, not its ids.
_TRANSFORMERS_EDITORS = {
    "RepetitionPenaltyLogitsProcessor": _same_attributes(RepetitionPenaltyLogitsProcessor),
    "EncoderRepetitionPenaltyLogitsProcessor": _same_attributes(EncoderRepetitionPenaltyLogitsProcessor),  # 1/p
    "NoRepeatNGramLogitsProcessor": lambda p: NoRepeatNGramLogitsProcessor(p.ngram_size),
    "SequenceBiasLogitsProcessor": lambda p: SequenceBiasLogitsProcessor(dict(p.sequence_bias)),
    "NoBadWordsLogitsProcessor": lambda p: SequenceBiasLogitsProcessor(dict(p.sequence_bias)),  # biases of -inf
}


def _as_editor(processor) -> Optional[_TokenEditor]:
    """pysample's token editor for `processor` (pysample's, or a transformers processor it replaces), or None."""
    if isinstance(processor, _TokenEditor):
        return processor
    convert = _TRANSFORMERS_EDITORS.get(type(processor).__name__)
    if convert is None or not type(processor).__module__.startswith("transformers."):
        return None
    return convert(processor)


_PYSAMPLE_WARPERS = {
    cls.__name__: cls
    for cls in (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
        MinPLogitsWarper,
        TypicalLogitsWarper,
        EpsilonLogitsWarper,
        EtaLogitsWarper,
    )
}


def _as_stage(processor) -> Optional[_Warper]:
    """pysample's warper for `processor` (a pysample or transformers warper), or None if it is something else."""
    if isinstance(processor, _Warper):
        return processor
    cls = _PYSAMPLE_WARPERS.get(type(processor).__name__)
    if cls is None or not type(processor).__module__.startswith("transformers."):
        return None
    warper = cls.__new__(cls)
    warper.__dict__.update(processor.__dict__)  # same attribute names; params() reads them as floats
    return warper


def _can_join(group: List[_Warper], warper: _Warper) -> bool:
    """Whether `warper` can run in the same fused call as `group`, giving the output of applying them in order."""
    if not group:
        return True
    if STAGE_NAMES.index(warper.stage) <= STAGE_NAMES.index(group[-1].stage):  # generate()'s order
        return False
    masking = [w for w in group if w.stage != "temperature"]
    if warper.stage == "temperature" or not masking:
        return True
    params = warper.params()
    first = masking[0].params()
    # Later stages see removed tokens as -inf (probability 0): exact only for the default filter value.
    if params["filter_value"] != -_INF or first["filter_value"] != -_INF:
        return False
    keeps = {w.params().get("min_tokens_to_keep") for w in masking + [warper]} - {None}
    return len(keeps) <= 1


class FusedLogitsProcessor:
    """A chain of logits processors applied with as few fused calls as possible; build it with :func:`fuse`.

    ``__call__(input_ids, scores)`` returns what applying the processors one after the other returns.

    Examples
    --------
    >>> chain = pysample.fuse([pysample.RepetitionPenaltyLogitsProcessor(2.0), pysample.TopKLogitsWarper(2)])
    >>> chain(torch.tensor([[0]]), torch.tensor([[4.0, 3.0, 1.0]]))
    tensor([[2., 3., -inf]])
    """

    def __init__(self, processors: Sequence):
        self.processors = list(processors)
        self._steps: List[Callable] = []
        group: List[_Warper] = []
        for processor in self.processors:
            warper = _as_stage(processor)
            if warper is not None and _can_join(group, warper):
                group.append(warper)
                continue
            if group:
                self._steps.append(self._fused_step(group))
            group = [warper] if warper is not None else []
            if warper is None:
                self._steps.append(_as_editor(processor) or processor)
        if group:
            self._steps.append(self._fused_step(group))

    @staticmethod
    def _fused_step(group: List[_Warper]) -> dict:
        params: dict = {}
        for warper in group:
            params.update(warper.params())
        return params

    def __call__(self, input_ids: Optional[torch.LongTensor], scores: torch.Tensor) -> torch.Tensor:
        """Returns the processed ``scores`` ``(batch, vocab)`` as a new tensor."""
        owned = False  # whether `scores` is a tensor this call made, which it may then change in place
        for step in self._steps:
            if isinstance(step, dict):
                scores = ops.warp_logits_(scores, **step) if owned else ops.warp_logits(scores, **step)
                owned = True
            elif isinstance(step, _TokenEditor):
                scores = step.apply(input_ids, scores, in_place=owned)
                owned = True
            else:
                scores = step(input_ids, scores)
                owned = False
        return scores

    def __repr__(self) -> str:
        return f"FusedLogitsProcessor({self.processors!r})"


def fuse(processors: Iterable) -> FusedLogitsProcessor:
    """One processor applying `processors` (pysample's or transformers' warpers, or any other processor) in order.

    Consecutive warpers that follow generate()'s order (temperature, top-k, top-p, min-p, typical, epsilon, eta)
    run as one fused kernel call. Repetition penalties (pysample's or transformers', the encoder form too) touch only
    their history's tokens: they run in place on the chain's one copy of the scores, so a penalty followed by
    warpers costs one pass over the vocabulary for the copy and one for the warpers. Anything else runs as given, in
    its place.

    Parameters
    ----------
    processors : iterable
        Callables ``(input_ids, scores) -> scores``, e.g. a ``transformers.LogitsProcessorList``.

    Examples
    --------
    >>> from transformers import TopKLogitsWarper, TopPLogitsWarper
    >>> chain = pysample.fuse([TopKLogitsWarper(50), TopPLogitsWarper(0.9)])
    >>> chain(None, torch.randn(2, 1000)).shape
    torch.Size([2, 1000])
    """
    return FusedLogitsProcessor(list(processors))
