"""Errors name what the user passed: the argument and its value as given, never an internal name or a rounded one;
inputs transformers accepts are accepted."""

from __future__ import annotations

import math

import pytest
import torch
import transformers

import pysample


def test_encoder_repetition_penalty_of_inf_runs_as_transformers():
    # transformers stores 1 / penalty = 0 and applies its rule with it: s * 0, s / 0.
    ids = torch.tensor([[0, 1, 2]])
    scores = torch.tensor([[-1.0, 0.0, 2.0, 3.0]])
    expected = transformers.EncoderRepetitionPenaltyLogitsProcessor(math.inf, ids)(None, scores)
    got = pysample.EncoderRepetitionPenaltyLogitsProcessor(math.inf, ids)(None, scores)
    torch.testing.assert_close(got, expected, rtol=0, atol=0, equal_nan=True)
    assert got[0, 0].item() == 0.0 and math.copysign(1, got[0, 0].item()) == -1  # -0.0 as transformers
    expected = transformers.RepetitionPenaltyLogitsProcessor(math.inf)(ids, scores)
    assert torch.equal(pysample.RepetitionPenaltyLogitsProcessor(math.inf)(ids, scores), expected)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: pysample.warp_logits(torch.zeros(1, 5), top_p=1.0000001), "top_p must be in [0, 1], got 1.0000001"),
        (lambda: pysample.sample(torch.zeros(1, 5), min_p=-1e-9), "min_p must be in [0, 1], got -1e-09"),
        (
            lambda: pysample.warp_logits(torch.zeros(1, 5), temperature=1e-320 * 0),
            "temperature must be a finite number > 0, got 0",
        ),
        (
            lambda: pysample.apply_penalties(torch.zeros(1, 5), torch.tensor([[1]]), presence=math.inf),
            "presence must be a finite number, got inf",
        ),
        (
            lambda: pysample.apply_penalties(torch.zeros(1, 5), torch.tensor([[1]]), repetition=-0.1),
            "repetition must be >= 0, got -0.1",
        ),
        (
            lambda: pysample.warp_logits(torch.zeros(2, 5), typical_p=torch.tensor([0.5, 1.0000001])),
            "typical_p[1] must be in [0, 1], got 1.0000001",
        ),
    ],
)
def test_values_in_messages_are_the_values_passed(call, message):
    with pytest.raises(
        ValueError,
        match=message.replace("[", r"\[")
        .replace("]", r"\]")
        .replace("(", r"\(")
        .replace(")", r"\)")
        .replace(".", r"\."),
    ):
        call()


@pytest.mark.parametrize("name", ["top_p", "min_p", "typical_p", "epsilon", "eta"])
def test_float64_rows_are_checked_before_rounding(name):
    # 1.00000001 rounds to float32 1.0: the same value as a scalar is rejected, so is it per row.
    logits = torch.zeros(2, 5)
    with pytest.raises(ValueError, match="must be in"):
        pysample.warp_logits(logits, **{name: 1.00000001})
    with pytest.raises(ValueError, match=rf"{name}\[1\] = 1.00000001 crosses a range end"):
        pysample.warp_logits(logits, **{name: torch.tensor([0.5, 1.00000001], dtype=torch.float64)})
    pysample.warp_logits(logits, **{name: torch.tensor([0.3, 1.0], dtype=torch.float64)})  # in range: fine


def test_float64_rows_checked_for_sample_and_penalties():
    with pytest.raises(ValueError, match=r"temperature\[0\] = -1e-50 crosses a range end"):
        pysample.sample(torch.zeros(1, 5), temperature=torch.tensor([-1e-50], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"presence\[0\] = 1e\+39 crosses a range end"):
        pysample.apply_penalties(
            torch.zeros(1, 5), torch.tensor([[1]]), presence=torch.tensor([1e39], dtype=torch.float64)
        )


def test_penalty_state_slots_named():
    state = pysample.PenaltyState(4, 100)
    with pytest.raises(IndexError, match=r"slots must be in \[0, 4\) \(the state's slots\), got 4"):
        state.reset([4], torch.tensor([[1, 2]]))
    with pytest.raises(IndexError, match="got -1"):
        state.append(torch.tensor([3]), slots=torch.tensor([-1]))
    with pytest.raises(IndexError, match="got 7"):
        state.apply_(torch.zeros(1, 100), repetition=1.5, slots=[7])


def test_reorder_filled_length_needs_a_sequence_dim():
    with pytest.raises(
        ValueError,
        match=r"filled_length needs caches of \(rows, heads, sequence, ...\): caches\[0\] "
        r"has shape \[4, 3\]",
    ):
        pysample.reorder_kv_cache_([torch.zeros(4, 3)], torch.tensor([1, 0, 2, 3]), 2)
