"""Throughput of pysample's ``token_logprobs`` against vLLM's torch path for logprobs (pytest-benchmark).

Groups (num_top, shape, device), each holding:

- ``vllm_torch``: vLLM's idea of a sampler's logprobs (vllm/v1/sample/sampler.py, Apache-2.0), written here in our
  own code: ``log_softmax`` of the whole batch in float32, ``topk`` of it, ``gather`` of the sampled tokens, and
  their ranks by ``(logprobs >= token's logprob).sum(-1)``;
- ``pysample``: the op ``pysample.token_logprobs``, one read of each row and no ``(batch, vocab)`` temporary.

One sampled token per row (n = 1). Run with ``scripts/bench``.
"""

from __future__ import annotations

from typing import Dict

import pytest
import torch
from test_bench_warpers import logits_for, skip_without, timed

import pysample
from pysample import reference

DEVICES = ["cpu", "cuda"]
SHAPES = [(8, 128256), (64, 128256)]
NUM_TOPS = [5, 20]
IMPLS = ("vllm_torch", "pysample")
GROUP_ORDER: Dict[tuple, int] = {}


def vllm_torch(logits: torch.Tensor, tokens: torch.Tensor, num_top: int):
    """vLLM's logprobs path (after its Sampler.compute_logprobs / gather_logprobs, Apache-2.0), from its idea."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    top_logprobs, top_ids = torch.topk(logprobs, num_top, dim=-1)
    token_logprobs = logprobs.gather(-1, tokens)
    ranks = (logprobs >= token_logprobs).sum(-1)
    return token_logprobs, ranks, top_ids, top_logprobs


PARAMS = [
    pytest.param(num_top, shape, device, impl, id=f"top{num_top}-{shape[0]}x{shape[1]}-{device}-{impl}")
    for device in DEVICES
    for num_top in NUM_TOPS
    for shape in SHAPES
    for impl in IMPLS
]


@pytest.mark.parametrize("num_top,shape,device,impl", PARAMS)
def test_token_logprobs(benchmark, num_top, shape, device, impl) -> None:
    skip_without(device)
    logits = logits_for(shape, device)
    tokens = pysample.sample(logits, seed=7)[:, None]
    group = (num_top, shape, device)
    benchmark.group = f"TokenLogprobs(top {num_top}) {shape[0]}x{shape[1]} {device}"
    benchmark.extra_info.update(
        kind="token_logprobs",
        case=f"n=1, top {num_top}",
        batch=shape[0],
        vocab=shape[1],
        device=device,
        impl=impl,
        order=GROUP_ORDER.setdefault(group, len(GROUP_ORDER)),
    )
    call = {
        "vllm_torch": lambda: vllm_torch(logits, tokens, num_top),
        "pysample": lambda: pysample.token_logprobs(logits, tokens, num_top),
    }[impl]
    rounds = max(5, min(200, int(2e8 // (shape[0] * shape[1]))))
    benchmark.pedantic(timed(call, device), rounds=rounds, warmup_rounds=2, iterations=1)
    # Rows whose ranks and top ids are the reference's (vLLM's ranks compare rounded logprobs: ties may differ).
    _, ranks, top_ids, _ = (t.cpu() for t in call())
    _, want_ranks, want_ids, _ = reference.token_logprobs(logits.cpu(), tokens.cpu(), num_top)
    same = (ranks.reshape(-1, 1) == want_ranks.reshape(-1, 1)).all(-1) & (top_ids == want_ids).all(-1)
    benchmark.extra_info["rows_equal"] = int(same.sum())
