"""token_logprobs.cuh's launcher in the GPU simulator against the CPU op (tests/gpusim/token_logprobs_sim.cu): every
logits dtype, several tokens per row, num_top 0 / 1 / 20, ties, -inf, rows with NaN, +inf or only -inf, a
transposed row layout, and token ids the CPU rejects (NaN and rank 0 on CUDA). Ranks and the top ids are the CPU's
exactly; each device sums a row's exps in its own order, so the log-probabilities are within 2 float32 ulps of
|logprob| of the exact log_softmax (test_token_logprobs.py's bound)."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from test_token_logprobs import assert_logprobs_close, exact_logprobs

from simcase import FLOATS, Arrays, outputs_or_error, run_program

ops = torch.ops.pysample


def make_case(seed: int, dtype=torch.float32, batch=3, vocab=300, n=2, num_top=5, kind="normal") -> Arrays:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, vocab, generator=g) * 3
    if kind == "ties":  # few distinct values, and -0.0 beside 0.0
        x = (x * 0.5).round().clamp(-2, 2)
        x[:, ::7] = -0.0
    if kind == "edges":  # -inf tokens; a NaN row, a +inf row, an all -inf row
        x[:, ::5] = -math.inf
        x[0, 7], x[0, 11] = math.nan, math.nan
        x[1, 3] = math.inf
        x[2] = -math.inf
    tokens = torch.randint(0, vocab, (batch, n), generator=g)
    if batch:
        tokens[0, 0] = -1
    return {"logits": x.to(dtype), "tokens": tokens, "num_top": torch.tensor(num_top)}


CASES = {
    **{f"{dtype}": make_case(1, dtype) for dtype in FLOATS},
    "top-0": make_case(2, num_top=0),
    "top-1": make_case(3, num_top=1, n=1),
    "top-20": make_case(4, torch.bfloat16, num_top=20, n=3),
    "top-all": make_case(5, vocab=20, num_top=20),
    "ties": make_case(6, num_top=20, kind="ties"),
    "edges": make_case(7, num_top=8, kind="edges"),
    "column-major": {**make_case(8, torch.float16), "column_major": torch.tensor(1)},
    "several-passes-per-thread": make_case(9, batch=2, vocab=2500, num_top=20),
    # the CPU raises on these; CUDA cannot without a host sync: NaN and rank 0, never read
    "bad-token-ids": {**make_case(10), "tokens": torch.tensor([[300, 5], [-2, 1 << 40], [299, -1]])},
    "empty-batch": make_case(11, batch=0),
}


@functools.lru_cache(maxsize=None)
def simulated() -> dict:
    return run_program("token_logprobs_sim", list(CASES.items()))


@pytest.mark.parametrize("name", CASES)
def test_token_logprobs(name):
    case, out = CASES[name], outputs_or_error(simulated()[name])
    logits, tokens, num_top = case["logits"], case["tokens"], int(case["num_top"])
    vocab = logits.shape[1]
    bad = (tokens < -1) | (tokens >= vocab)
    expected = ops.token_logprobs(logits, tokens.masked_fill(bad, -1), num_top)  # -1 stands for a bad id
    assert torch.equal(out["ranks"], expected[1])
    assert torch.equal(out["top_ids"], expected[2])
    exact = exact_logprobs(logits)
    safe = tokens.masked_fill(bad, -1).clamp(min=0)
    want = exact.gather(1, safe).masked_fill((tokens < 0) | bad, math.nan)
    assert_logprobs_close(out["logprobs"], want, 2)
    assert_logprobs_close(out["top_logprobs"], exact.gather(1, expected[2]), 2)
    assert_logprobs_close(out["logprobs"], expected[0], 4)
    assert_logprobs_close(out["top_logprobs"], expected[3], 4)
