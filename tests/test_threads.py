"""Thread safety and reentrancy on the CPU: every op called at once from several Python threads, each on its own
tensors, returns what it returns called alone (the kernels keep per-thread scratch and may run their own
at::parallel_for inside each call)."""

from __future__ import annotations

import threading
from typing import Callable, Dict, List

import pytest
import torch

import pysample

THREADS = 8
ROUNDS = 5


def _inputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(6, 5000, generator=g) * 3
    ids = torch.randint(0, 40, (6, 300), generator=g)
    caches = [torch.randn(6, 2, 16, 8, generator=g) for _ in range(4)]
    beam_idx = torch.randint(0, 6, (6,), generator=g)
    return logits, ids, caches, beam_idx


def _reorder(caches, beam_idx):
    caches = [t.clone() for t in caches]
    pysample.reorder_kv_cache_(caches, beam_idx)
    return caches


def _penalty_state(logits, ids):
    state = pysample.PenaltyState(6, logits.shape[1])
    state.reset(list(range(6)), ids)
    scores = logits.clone()
    state.apply_(scores, repetition=1.3, presence=0.2, frequency=0.1)
    return scores


# name -> op(logits, ids, caches, beam_idx): a result made only of the call's own tensors.
OPS: Dict[str, Callable] = {
    "warp_logits": lambda x, ids, c, b: pysample.warp_logits(
        x, temperature=0.7, top_k=50, top_p=0.9, min_p=0.02, typical_p=0.95, epsilon=1e-5, eta=1e-4
    ),
    "sample": lambda x, ids, c, b: pysample.sample(x, top_k=50, top_p=0.9, seed=torch.arange(6), n=4),
    "apply_penalties": lambda x, ids, c, b: pysample.apply_penalties(
        x, ids, repetition=1.3, presence=0.2, frequency=0.1
    ),
    "penalty_state": lambda x, ids, c, b: _penalty_state(x, ids),
    "no_repeat_ngram": lambda x, ids, c, b: pysample.no_repeat_ngram_(x.clone(), ids, ngram_size=2),
    "bias_sequences": lambda x, ids, c, b: pysample.bias_sequences_(
        x.clone(), ids, pysample.ops.pack_sequences([[int(ids[0, -1]), 7], [3]], [2.0, -1.0])
    ),
    "apply_token_bitmask": lambda x, ids, c, b: pysample.apply_token_bitmask_(
        x.clone(), (ids[:, : (x.shape[1] + 31) // 32] * 0x01010101).int(), b.tolist()
    ),
    "token_logprobs": lambda x, ids, c, b: pysample.token_logprobs(x, ids[:, :3].clamp(-1, x.shape[1] - 1), 20),
    "reorder_kv_cache": lambda x, ids, c, b: _reorder(c, b),
    "beam_search_step": lambda x, ids, c, b: pysample.beam_search_step(x, torch.zeros(6), 3, 6),
}


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values, NaN equal to NaN (masked logits may hold NaN rows)."""
    if a.is_floating_point():
        return torch.allclose(a, b, rtol=0, atol=0, equal_nan=True)
    return torch.equal(a, b)


def _flat(result) -> List[torch.Tensor]:
    return list(result) if isinstance(result, (list, tuple)) else [result]


@pytest.mark.parametrize("name", list(OPS))
def test_concurrent_calls_match_serial_ones(name):
    op = OPS[name]
    inputs = [_inputs(seed) for seed in range(THREADS)]
    expected = [_flat(op(*args)) for args in inputs]
    failures: List[str] = []
    start = threading.Barrier(THREADS)

    def worker(i: int) -> None:
        start.wait()  # every thread calls at the same moment
        for _ in range(ROUNDS):
            got = _flat(op(*inputs[i]))
            if not all(_same(a, b) for a, b in zip(got, expected[i])):
                failures.append(f"thread {i}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
