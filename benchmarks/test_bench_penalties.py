"""Throughput of pysample's penalties against transformers' ``RepetitionPenaltyLogitsProcessor`` (pytest-benchmark).

One benchmark group per (shape, history length, device), holding:

- ``transformers``: ``RepetitionPenaltyLogitsProcessor(1.2)(input_ids, scores)`` (a new tensor);
- ``pysample``: the drop-in ``pysample.RepetitionPenaltyLogitsProcessor(1.2)``, same call, same output;
- ``inplace``: the op ``pysample.apply_penalties_(scores, input_ids, repetition=1.2)`` on the scores in place;
- ``stateful``: one serving step of ``pysample.PenaltyState`` holding the same histories: ``append`` of the step's
  new tokens, then ``apply_(scores, repetition=1.2)`` in place (its cost does not grow with the history).

In-place implementations restore the scores from a pristine copy before each round (untimed). A further group
times repetition + presence + frequency at batch 1 against the bar of one fifth of llama.cpp's ~0.5 ms.
Histories: uniform random ids (the worst case for the stateful form: ~23% of a 128256 vocabulary is in a 32768
history). Run with ``scripts/bench``.
"""

from __future__ import annotations

from typing import Callable, Dict, Tuple

import pytest
import torch
import transformers
from test_bench_warpers import logits_for, skip_without, timed

import pysample

SHAPES = [(1, 128256), (8, 128256), (64, 128256), (256, 151936)]
HISTORIES = [512, 4096, 32768]
DEVICES = ["cpu", "cuda"]
IMPLS = ("transformers", "pysample", "inplace", "stateful")
PENALTY = 1.2
# (implementation, shape, history) -> minimum speed-up over transformers
BARS: Dict[Tuple[str, Tuple[int, int], int], float] = {
    ("pysample", (64, 128256), 4096): 5.0,
    ("stateful", (64, 128256), 32768): 20.0,
}

PARAMS = [
    pytest.param(shape, history, device, impl, id=f"{shape[0]}x{shape[1]}-L{history}-{device}-{impl}")
    for device in DEVICES
    for shape in SHAPES
    for history in HISTORIES
    for impl in IMPLS
]
GROUP_ORDER: Dict[tuple, int] = {}
for _param in PARAMS:
    GROUP_ORDER.setdefault(tuple(_param.values[:3]), len(GROUP_ORDER))


def history_for(shape: Tuple[int, int], history: int, device: str) -> torch.Tensor:
    generator = torch.Generator().manual_seed(99 + shape[0] + history)
    return torch.randint(0, shape[1], (shape[0], history), generator=generator).to(device)


def _restoring(benchmark, fn: Callable, scores: torch.Tensor, pristine: torch.Tensor, device: str, rounds: int):
    """Times fn() with the scores restored before each round (untimed)."""

    def restore():
        scores.copy_(pristine)
        if device == "cuda":
            torch.cuda.synchronize()

    return benchmark.pedantic(timed(fn, device), setup=restore, rounds=rounds, warmup_rounds=2, iterations=1)


@pytest.mark.parametrize("shape,history,device,impl", PARAMS)
def test_repetition_penalty(benchmark, shape, history, device, impl) -> None:
    skip_without(device)
    pristine = logits_for(shape, device)
    input_ids = history_for(shape, history, device)
    benchmark.group = f"RepetitionPenalty({PENALTY}) {shape[0]}x{shape[1]} L{history} {device}"
    benchmark.extra_info.update(
        kind="penalty",
        case=f"RepetitionPenalty({PENALTY})",
        batch=shape[0],
        vocab=shape[1],
        history=history,
        device=device,
        impl=impl,
        order=GROUP_ORDER[(shape, history, device)],
    )
    for bar_impl in ("pysample", "stateful"):
        if (bar_impl, shape, history) in BARS:
            benchmark.extra_info[f"bar_{bar_impl}"] = BARS[(bar_impl, shape, history)]
    expected = transformers.RepetitionPenaltyLogitsProcessor(PENALTY)(input_ids, pristine)
    # fewer rounds where one call takes long (the big in-place cases restore 155 MB per round)
    rounds = max(5, min(200, int(2e8 // (shape[0] * shape[1]))))

    if impl == "transformers":
        processor = transformers.RepetitionPenaltyLogitsProcessor(PENALTY)
        out = benchmark(timed(lambda: processor(input_ids, pristine), device))
    elif impl == "pysample":
        processor = pysample.RepetitionPenaltyLogitsProcessor(PENALTY)
        out = benchmark(timed(lambda: processor(input_ids, pristine), device))
    elif impl == "inplace":
        scores = pristine.clone()
        _restoring(
            benchmark,
            lambda: pysample.apply_penalties_(scores, input_ids, repetition=PENALTY),
            scores,
            pristine,
            device,
            rounds,
        )
        out = scores
    else:
        state = pysample.PenaltyState(shape[0], shape[1], device=device)
        state.reset(prompt_ids=input_ids, output_start=0)
        scores = pristine.clone()
        new_tokens = torch.full((shape[0],), -1, device=device)  # padding: the histories stay the checked ones

        def step():
            state.append(new_tokens)
            return state.apply_(scores, repetition=PENALTY)

        _restoring(benchmark, step, scores, pristine, device, rounds)
        out = scores
    benchmark.extra_info["rows_equal"] = int((out == expected).all(dim=1).sum())  # the inputs hold no NaN


BATCH_ONE = (1, 128256)


@pytest.mark.parametrize("device", DEVICES)
def test_all_penalties_batch_one(benchmark, device) -> None:
    """repetition 1.2 + presence 0.5 + frequency 0.5 over the last 512 tokens, one row, in place: bar <= 100 us."""
    skip_without(device)
    pristine = logits_for(BATCH_ONE, device)
    scores = pristine.clone()
    input_ids = history_for(BATCH_ONE, 512, device)
    benchmark.group = f"repetition+presence+frequency {BATCH_ONE[0]}x{BATCH_ONE[1]} L512 {device}"
    benchmark.extra_info.update(
        kind="penalty_row",
        case="repetition 1.2 + presence 0.5 + frequency 0.5, in place",
        batch=1,
        vocab=BATCH_ONE[1],
        history=512,
        device=device,
        impl="inplace",
        bar_us_per_row=100.0,
    )
    _restoring(
        benchmark,
        lambda: pysample.apply_penalties_(scores, input_ids, repetition=1.2, presence=0.5, frequency=0.5),
        scores,
        pristine,
        device,
        2000,
    )
