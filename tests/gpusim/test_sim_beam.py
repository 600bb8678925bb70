"""beam.cuh's launcher in the GPU simulator against the CPU op (tests/gpusim/beam_sim.cu). Without log_softmax
the step is exact: the same scores, tokens and beams bit for bit. With it, each device rounds its row's log-sum-exp
in its own order: the same continuations, and scores within a few float32 ulp of the CPU's (beam.h)."""

from __future__ import annotations

import functools
import math
from typing import Dict

import pytest
import torch

from simcase import Arrays, outputs_or_error, run_program
from test_beam_step import make_beam_scores, make_logits

ops = torch.ops.pysample


def make_case(
    seed: int,
    batch: int,
    beams: int,
    vocab: int,
    k: int,
    dtype=torch.float32,
    kind="normal",
    log_softmax=True,
    first_step=False,
) -> Arrays:
    x = make_logits(batch, beams, vocab, torch.float32, seed, "normal" if kind == "undefined" else kind)
    if kind == "undefined" and x.numel():  # rows with a NaN, a +inf, only -inf: NaN scores, ranked first
        x[0, 3], x[-1, 0] = float("nan"), float("inf")
        x[beams // 2] = -math.inf
    beam_scores = make_beam_scores(batch, beams, seed, first_step)
    return {
        "logits": x.to(dtype),
        "beam_scores": beam_scores.reshape(-1),
        "num_beams": torch.tensor(beams),
        "num_candidates": torch.tensor(k),
        "log_softmax": torch.tensor(int(log_softmax)),
    }


CASES: Dict[str, Arrays] = {
    **{
        f"{dtype}-{shape}": make_case(i, *shape, dtype=dtype)
        for i, (dtype, shape) in enumerate(
            (d, s)
            for d in (torch.float32, torch.float16, torch.bfloat16)
            for s in ((1, 4, 1000, 8), (3, 2, 50, 4), (1, 5, 7, 35))
        )
    },
    "vocab-4096": make_case(10, 2, 4, 4096, 16),
    "one-beam-k-1": make_case(11, 4, 1, 100, 1),
    "k-beyond-vocab": make_case(12, 2, 3, 4, 5),
    "ties": make_case(13, 2, 4, 500, 8, kind="ties"),
    "neg-inf": make_case(14, 2, 4, 500, 8, kind="neg_inf"),
    "undefined-rows": make_case(15, 2, 4, 300, 8, kind="undefined"),
    "first-step": make_case(16, 2, 4, 500, 8, first_step=True),
    "logits-as-log-probs": make_case(17, 2, 4, 1000, 8, log_softmax=False),
    "logits-as-log-probs-ties": make_case(18, 2, 4, 500, 8, kind="ties", log_softmax=False),
    "empty-batch": make_case(19, 0, 4, 100, 8),
}


@functools.lru_cache(maxsize=None)
def simulated() -> dict:
    return run_program("beam_sim", list(CASES.items()))


@pytest.mark.parametrize("name", CASES)
def test_beam_search_step(name):
    case, out = CASES[name], outputs_or_error(simulated()[name])
    scores, tokens, beams = ops.beam_search_step(
        case["logits"],
        case["beam_scores"],
        int(case["num_beams"]),
        int(case["num_candidates"]),
        bool(case["log_softmax"]),
    )
    assert torch.equal(out["tokens"], tokens) and torch.equal(out["beams"], beams)
    if case["log_softmax"]:
        both_nan = out["scores"].isnan() & scores.isnan()
        close = (out["scores"] - scores).abs() <= 8 * torch.finfo(torch.float32).eps * (scores.abs() + 1)
        assert (both_nan | close).all(), (out["scores"] - scores).abs().max()
    else:
        assert torch.equal(out["scores"].view(torch.int32), scores.view(torch.int32))
