"""sample.cuh's launcher in the GPU simulator against the CPU op: the same tokens, bit for bit, for the same logits,
parameters, seeds and steps (sample.h: every decision is computed the same way on both devices), including greedy
rows, +inf rows (the softmax's limit) and rows whose softmax is undefined (-1) (tests/gpusim/sample_sim.cu)."""

from __future__ import annotations

import functools
from typing import Dict

import pytest
import torch

import warp_compare as W
from simcase import Arrays, outputs_or_error, param_args, run_program, stage_arrays

ops = torch.ops.pysample


def make_case(
    seed: int, batch=8, vocab=1000, dtype=torch.float32, kinds=W.ROW_KINDS, draws=2, **params: object
) -> Arrays:
    g = torch.Generator().manual_seed(seed)
    case = {
        "logits": W.make_logits(batch, vocab, dtype, seed, kinds),
        # seeds over the whole 64 bits (negative int64: the high bit set), steps beyond 32 bits
        "seed": torch.randint(-(2**63), 2**63 - 1, (batch,), generator=g),
        "step": torch.randint(0, 2**40, (batch,), generator=g),
        "draws": torch.tensor(draws),
    }
    return {**case, **stage_arrays(params)}


CASES: Dict[str, Arrays] = {
    "greedy": make_case(1, temperature=0.0),
    "top_k-1": make_case(2, top_k=1),
    "temperature": make_case(3, temperature=0.7, draws=4),
    "no-stage": make_case(4),
    "top_k-50": make_case(5, temperature=1.0, top_k=50),
    "top_p-0.9": make_case(6, top_p=0.9),
    "min_p-0.05": make_case(7, min_p=0.05),
    "chain": make_case(8, temperature=0.7, top_k=50, top_p=0.9, min_p=0.05, draws=4),
    "per-row": make_case(
        9,
        batch=6,
        temperature=torch.tensor([0.0, 0.5, 1.0, 1.5, 0.7, 1.0]),
        top_k=torch.tensor([0, 1, 5, 50, 999, 2000]),
        top_p=torch.tensor([1.0, 0.9, 0.5, 0.0, 0.95, 0.7]),
        min_p=torch.tensor([0.0, 0.1, 0.0, 0.5, 0.05, 1.0]),
    ),
    "float16": make_case(10, dtype=torch.float16, temperature=0.7, top_k=50, top_p=0.9),
    "bfloat16": make_case(11, dtype=torch.bfloat16, top_p=0.8, min_p=0.02),
    "vocab-4096": make_case(
        12, batch=4, vocab=4096, kinds=("normal", "ties", "flat", "near_flat"), top_p=0.95, draws=3
    ),
    "vocab-1": make_case(13, batch=3, vocab=1, kinds=("normal",), top_k=1, top_p=0.5),
    "empty-batch": make_case(14, batch=0, vocab=100, top_p=0.5),
}


@functools.lru_cache(maxsize=None)
def simulated() -> dict:
    return run_program("sample_sim", list(CASES.items()))


@pytest.mark.parametrize("name", CASES)
def test_sample_same_tokens(name):
    case, out = CASES[name], outputs_or_error(simulated()[name])
    args = [arg for stage in ("temperature", "top_k", "top_p", "min_p") for arg in param_args(case, stage)]
    expected = ops.sample(case["logits"], *args, case["seed"], case["step"], int(case["draws"]))
    assert torch.equal(out["tokens"], expected), (out["tokens"] != expected).nonzero()[:8].tolist()
    if case["logits"].numel():  # the grid has draws, not only -1
        assert (expected >= 0).any()
