"""token_bitmask.cuh's launcher in the GPU simulator against the CPU op, bit for bit: apply_token_bitmask_ in every
logits dtype, vocab_size within a word and below the row, bitmasks wider than the row, indices (int64 and int32,
repeated, and out of range: skipped, where the CPU raises), transposed logits, and grids of several blocks per row
(tests/gpusim/token_bitmask_sim.cu)."""

from __future__ import annotations

import functools

import pytest
import torch

from simcase import FLOATS, Arrays, outputs_or_error, run_program, scores_with_edges
from warp_compare import assert_same_bits

ops = torch.ops.pysample


def make_case(
    seed: int, dtype=torch.float32, batch=4, vocab=300, words=None, allowed=0.3, indices=None, vocab_size=None
) -> Arrays:
    g = torch.Generator().manual_seed(seed)
    words = (vocab + 31) // 32 if words is None else words
    bits = (torch.rand(batch, words, 32, generator=g) < allowed).long()
    packed = (bits << torch.arange(32)).sum(-1)
    bitmask = (packed - (packed >= 2**31).long() * 2**32).to(torch.int32)
    bitmask[:, :1] = -1  # a word of all ones: nothing written
    case = {"logits": scores_with_edges(batch, vocab, dtype, g), "bitmask": bitmask}
    if indices is not None:
        case["indices"] = indices
    if vocab_size is not None:
        case["vocab_size"] = torch.tensor(vocab_size)
    return case


CASES = {
    **{f"{dtype}": make_case(1, dtype) for dtype in FLOATS},
    "vocab-size-within-a-word": make_case(2, vocab=300, vocab_size=77),
    "vocab-size-0": make_case(3, vocab_size=0),
    "wide-bitmask": make_case(4, vocab=100, words=7),
    "wide-logits": make_case(5, vocab=100, words=2),
    "indices-repeated": make_case(6, torch.bfloat16, batch=5, indices=torch.tensor([4, 1, 4, 0])),
    "indices-int32": make_case(7, torch.float16, indices=torch.tensor([3, 1], dtype=torch.int32)),
    # the CPU raises on these; CUDA cannot without a host sync and skips them
    "indices-out-of-range": make_case(8, indices=torch.tensor([2, 4, -1, 0, 1 << 40, 2])),
    "indices-out-of-range-int32": make_case(9, indices=torch.tensor([-7, 3, 2**31 - 1], dtype=torch.int32)),
    "indices-empty": make_case(10, indices=torch.zeros(0, dtype=torch.int64)),
    "all-masked": make_case(11, vocab=70, allowed=0.0),
    "column-major": {**make_case(12, torch.float16, vocab=200), "column_major": torch.tensor(1)},
    "several-blocks-per-row": make_case(13, batch=2, vocab=1500, allowed=0.1),
    "empty-batch": make_case(14, batch=0),
}


@functools.lru_cache(maxsize=None)
def simulated() -> dict:
    return run_program("token_bitmask_sim", list(CASES.items()))


@pytest.mark.parametrize("name", CASES)
def test_apply_token_bitmask(name):
    case, out = CASES[name], outputs_or_error(simulated()[name])
    expected = case["logits"].clone()
    indices = case.get("indices")
    if indices is not None:  # the CPU op on the indices CUDA does not skip
        indices = indices[(indices >= 0) & (indices < expected.shape[0])]
    vocab_size = case.get("vocab_size")
    ops.apply_token_bitmask_(expected, case["bitmask"], indices, None if vocab_size is None else int(vocab_size))
    assert_same_bits(out["masked"], expected)
