"""Throughput of ``pysample.sample`` against the sampling step of transformers' ``generate()`` (pytest-benchmark).

One benchmark group per (case, shape, device), holding three implementations that each turn a batch of logits into
one token id per row:

- ``pysample``: ``pysample.sample(logits, ..., seed=<fixed (batch,) int64 tensor>, step=0)``;
- ``transformers``: what ``generate()`` does when sampling: the case's warpers as a ``LogitsProcessorList`` (in
  transformers' order: Temperature, TopK, TopP, MinP), then ``torch.softmax`` and
  ``torch.multinomial(num_samples=1)``;
- ``multinomial``: plain ``torch.softmax`` + ``torch.multinomial(num_samples=1)`` on the raw logits, no warper
  (the floor of any sort-based sampler: the same in every case of a shape).

Inputs are the warper benchmarks' fixed float32 N(0, 3^2) logits (``test_bench_warpers.logits_for``). Once per
pysample case, untimed, the tokens it draws (the timed call's step and a few more) are checked against the set of
tokens transformers' warpers keep; the fraction is in ``extra_info["tokens_in_kept"]`` (1.0 up to the fixed-point
rounding at a top-p / min-p threshold). Run with ``scripts/bench``, or by hand::

    python -m pytest benchmarks/test_bench_sample.py -q --benchmark-json=s.json && python benchmarks/report.py s.json
"""

from __future__ import annotations

from typing import Dict, Tuple

import pytest
import torch
import transformers
from test_bench_warpers import logits_for, skip_without, timed
from transformers import LogitsProcessorList

import pysample

SHAPES = [(1, 128256), (8, 128256), (64, 128256), (256, 151936)]
DEVICES = ["cpu", "cuda"]
IMPLS = ("pysample", "transformers", "multinomial")

# case name -> pysample.sample's keyword arguments; the transformers chain is built from the same ones.
CASES: Dict[str, dict] = {
    "TopK(50)->TopP(0.9)": dict(top_k=50, top_p=0.9),
    "TopP(0.95)": dict(top_p=0.95),
    "MinP(0.05)": dict(min_p=0.05),
    "Temperature(0.7)->TopP(0.9)": dict(temperature=0.7, top_p=0.9),
    "no filter": dict(),
}
# transformers sorts the whole vocabulary for these; 256x151936 is kept for them only (the run stays short).
LARGE_SHAPE_CASES = {"TopK(50)->TopP(0.9)", "TopP(0.95)"}
# Minimum speed-up over the transformers path, where the op has one (shown in the report).
BARS: Dict[Tuple[str, Tuple[int, int]], float] = {
    ("TopK(50)->TopP(0.9)", (8, 128256)): 50.0,
    ("TopP(0.95)", (64, 128256)): 100.0,
}
CHECK_STEPS = 16  # draws per row in the untimed kept-set check: steps 0 (the timed one) .. 15

PARAMS = [
    pytest.param(case, shape, device, impl, id=f"{case}-{shape[0]}x{shape[1]}-{device}-{impl}")
    for device in DEVICES
    for case in CASES
    for shape in SHAPES
    if shape != SHAPES[-1] or case in LARGE_SHAPE_CASES
    for impl in IMPLS
]

# (case, shape, device) -> position of its group in the report
PARAMS_ORDER: Dict[tuple, int] = {}
for _param in PARAMS:
    PARAMS_ORDER.setdefault(tuple(_param.values[:3]), len(PARAMS_ORDER))


def transformers_warpers(params: dict) -> LogitsProcessorList:
    """transformers' warpers for `params`, in the order generate() builds them."""
    chain = LogitsProcessorList()
    if params.get("temperature", 1.0) != 1.0:
        chain.append(transformers.TemperatureLogitsWarper(params["temperature"]))
    if params.get("top_k") is not None:
        chain.append(transformers.TopKLogitsWarper(params["top_k"]))
    if params.get("top_p") is not None:
        chain.append(transformers.TopPLogitsWarper(params["top_p"]))
    if params.get("min_p") is not None:
        chain.append(transformers.MinPLogitsWarper(params["min_p"]))
    return chain


def fixed_seed(batch: int, device: str) -> torch.Tensor:
    return torch.arange(batch, dtype=torch.int64, device=device) * 1_000_003 + 0x5EED


def fraction_in_kept(kept: torch.Tensor, tokens: torch.Tensor) -> float:
    """Fraction of `tokens` ((batch, draws) ids) where `kept` ((batch, vocab) bool) is true; -1 counts as outside."""
    valid = tokens >= 0
    inside = kept.gather(1, tokens.clamp(min=0)) & valid
    return float(inside.sum()) / tokens.numel()


# Per-call times run from ~50 us (pysample, 1 row) to seconds (transformers' sort of 256x151936): pytest-benchmark's
# defaults (1 s per benchmark, at least 5 rounds) would spend a minute on the largest group alone. 0.5 s and at
# least 3 rounds per benchmark; the slow baselines (64 rows and more) run exactly SLOW_ROUNDS rounds through
# benchmark.pedantic, which also skips the calibration call. Their spread is small next to the ratios.
SLOW_ROUNDS = 3


@pytest.mark.benchmark(max_time=0.5, min_rounds=3)
@pytest.mark.parametrize("case,shape,device,impl", PARAMS)
def test_sample(benchmark, case: str, shape: Tuple[int, int], device: str, impl: str) -> None:
    skip_without(device)
    params = CASES[case]
    scores = logits_for(shape, device)
    batch = shape[0]

    if impl == "pysample":
        seed = fixed_seed(batch, device)

        def fn():
            return pysample.sample(scores, seed=seed, step=0, **params)

    elif impl == "transformers":
        chain = transformers_warpers(params)
        input_ids = torch.zeros((batch, 1), dtype=torch.long, device=device)

        def fn():
            probs = torch.softmax(chain(input_ids, scores), dim=-1)
            return torch.multinomial(probs, num_samples=1).squeeze(1)

    else:

        def fn():
            return torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)

    benchmark.group = f"sample {case} {batch}x{shape[1]} {device}"
    benchmark.extra_info.update(
        kind="sample",
        case=case,
        batch=batch,
        vocab=shape[1],
        device=device,
        impl=impl,
        order=PARAMS_ORDER[(case, shape, device)],
    )
    bar = BARS.get((case, shape))
    if bar is not None:
        benchmark.extra_info["bar_ratio_vs_transformers"] = bar
    if impl == "pysample":  # one untimed check against transformers' kept set: a broken kernel shows in the report
        kept = transformers_warpers(params)(torch.zeros((batch, 1), dtype=torch.long, device=device), scores)
        kept = kept > -torch.inf
        tokens = torch.stack(
            [pysample.sample(scores, seed=seed, step=step, **params) for step in range(CHECK_STEPS)], dim=1
        )
        benchmark.extra_info["tokens_in_kept"] = fraction_in_kept(kept, tokens)
        benchmark.extra_info["tokens_checked"] = tokens.numel()
        del kept, tokens

    if impl != "pysample" and batch >= 64:
        out = benchmark.pedantic(timed(fn, device), rounds=SLOW_ROUNDS, iterations=1)
    else:
        out = benchmark(timed(fn, device))
    assert out.shape == (batch,) and out.dtype == torch.int64
