"""Penalties for serving loops: :class:`PenaltyState` keeps each request's token counts on the device, so that a
decoding step costs at most one pass over the vocabulary whatever the length of the history."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from . import ops

Slots = Union[Sequence[int], torch.Tensor, None]


class PenaltyState:
    """Token counts of ``slots`` requests over a vocabulary, for repetition, presence and frequency penalties.

    Each slot holds one request: :meth:`reset` starts a request in a slot (counting its prompt), :meth:`append` counts
    each step's new tokens (O(batch)), :meth:`apply_` penalises a step's scores from the counts (at most one pass
    over each row, only the seen tokens' scores where the CPU finds them few; no host synchronisation). Rows of a
    step map to slots through ``slots`` (default: row ``r`` is slot ``r``). The result equals
    :func:`pysample.apply_penalties_` on the slot's whole history with ``output_start`` at the prompt's end.

    Parameters
    ----------
    slots : int
        Requests held at once.
    vocab_size : int
        Width of the scores.
    device : torch.device or str, optional
        Where the counts live (the scores' device).

    Attributes
    ----------
    counts : torch.Tensor
        ``(slots, vocab_size)`` int32: ``2 * (times generated) + (1 if in the prompt)`` per token.
    seen : torch.Tensor
        ``(slots, ceil(vocab_size / 32))`` int32 words of bits: token ``t``'s bit ``t % 32`` of word ``t // 32`` is
        set where ``counts`` is not 0. A step with the repetition penalty alone reads it rather than ``counts``: 1/32
        of the bytes.

    Examples
    --------
    >>> state = pysample.PenaltyState(slots=2, vocab_size=4)
    >>> state.reset(prompt_ids=torch.tensor([[0, 1], [2, 2]]))
    >>> state.append(torch.tensor([1, 3]))
    >>> state.apply_(torch.ones(2, 4), repetition=2.0, presence=0.25)
    tensor([[0.5000, 0.2500, 1.0000, 1.0000],
            [1.0000, 1.0000, 0.5000, 0.2500]])
    """

    def __init__(self, slots: int, vocab_size: int, device: Union[torch.device, str, None] = None):
        self.counts = torch.zeros(slots, vocab_size, dtype=torch.int32, device=device)
        self.seen = torch.zeros(slots, ops._seen_words(vocab_size), dtype=torch.int32, device=device)

    def _slots(self, slots: Slots) -> Optional[torch.Tensor]:
        if slots is None:
            return None
        if not isinstance(slots, torch.Tensor):
            slots = torch.tensor(list(slots), dtype=torch.int64)
        if slots.dtype.is_floating_point or slots.dtype == torch.bool:
            raise TypeError(f"slots must be an integer tensor, got {slots.dtype}")
        count = self.counts.shape[0]
        if slots.device.type == "cpu":  # device tensors are not read on the host (no synchronisation)
            outside = slots[(slots < 0) | (slots >= count)]
            if outside.numel():
                raise IndexError(f"slots must be in [0, {count}) (the state's slots), got {outside[0].item()}")
        return slots.to(device=self.counts.device, dtype=torch.int64).reshape(-1).contiguous()

    def reset(
        self,
        slots: Slots = None,
        prompt_ids: Optional[torch.Tensor] = None,
        *,
        history_start: ops.IntParam = 0,
        output_start: ops.IntParam = None,
    ) -> None:
        """Starts new requests: clears ``slots`` (default: all) and counts each one's ``prompt_ids``.

        Parameters
        ----------
        slots : sequence of int or Tensor, optional
            The slots to clear, one per row of ``prompt_ids``.
        prompt_ids : torch.Tensor, optional
            ``(len(slots), length)`` int64 or int32; ids outside the vocabulary (padding) are not counted.
        history_start : int or Tensor
            Leading positions not counted (left padding).
        output_start : int or Tensor, optional
            Positions from it on count as output for presence and frequency; default: the prompt's length (the
            prompt counts for the repetition penalty only, OpenAI's rule).
        """
        index = self._slots(slots)
        for table in (self.counts, self.seen):
            if index is None:
                table.zero_()
            else:
                table.index_fill_(0, index, 0)
        if prompt_ids is None:
            return
        if output_start is None:
            output_start = prompt_ids.shape[-1]
        torch.ops.pysample.count_tokens_(
            self.counts, self.seen, prompt_ids, index, *ops._scope_arguments(prompt_ids, history_start, output_start)
        )

    def append(self, tokens: torch.Tensor, slots: Slots = None) -> None:
        """Counts each row's new tokens as output: ``tokens`` ``(batch,)`` or ``(batch, n)``, e.g. a step's draws.

        Ids outside the vocabulary are not counted.
        """
        ids = tokens.unsqueeze(1) if tokens.dim() == 1 else tokens
        torch.ops.pysample.count_tokens_(self.counts, self.seen, ids, self._slots(slots), None, 0, None, 0)

    def apply_(
        self,
        scores: torch.Tensor,
        *,
        repetition: ops.FloatParam = None,
        presence: ops.FloatParam = None,
        frequency: ops.FloatParam = None,
        slots: Slots = None,
    ) -> torch.Tensor:
        """Penalises ``scores`` ``(batch, vocab_size)`` in place from the counts of each row's slot; returns it.

        The penalties are those of :func:`pysample.apply_penalties_` (repetition over prompt and output, presence
        and frequency over the output).
        """
        torch.ops.pysample.apply_penalty_counts_(
            scores,
            self.counts,
            self.seen,
            self._slots(slots),
            *ops._penalty_arguments(scores, repetition, presence, frequency),
        )
        return scores
