"""reorder.cuh's launcher in the GPU simulator against the CPU op, byte for byte: identity, cyclic, fan-out and
random reorders, with and without a filled length, every element size, the plan in global memory (rows beyond
shared memory) and more tensors than one launch takes (tests/gpusim/reorder_sim.cu)."""

from __future__ import annotations

import functools

import pytest
import torch

from simcase import Arrays, outputs_or_error, run_program

ops = torch.ops.pysample


def caches(g: torch.Generator, rows: int, shapes, dtypes) -> Arrays:
    out = {}
    for i, (shape, dtype) in enumerate(zip(shapes, dtypes)):
        values = torch.randint(-100, 100, (rows, *shape), generator=g)
        out[f"cache{i:03d}"] = values.to(dtype)
    return out


def make_case(
    seed: int, beam_idx, shapes=((2, 5, 3),), dtypes=(torch.float32,), filled_length=None, index_dtype=torch.int64
) -> Arrays:
    g = torch.Generator().manual_seed(seed)
    beam_idx = torch.as_tensor(beam_idx, dtype=index_dtype)
    case = {"beam_idx": beam_idx, **caches(g, len(beam_idx), shapes, dtypes)}
    if filled_length is not None:
        case["filled_length"] = torch.tensor(filled_length)
    return case


KV = ((4, 6, 8), (4, 6, 3))  # [heads, seq, head_dim]: 32- and 12-byte positions in float32
ALL_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.uint8)
g = torch.Generator().manual_seed(0)
CASES = {
    "identity": make_case(1, range(6), KV, (torch.float32, torch.float16)),
    "cyclic": make_case(2, [1, 2, 3, 4, 5, 0], KV, (torch.float32, torch.float16)),
    "swap-pairs-int32": make_case(3, [1, 0, 3, 2], KV, (torch.bfloat16, torch.float32), index_dtype=torch.int32),
    "fan-out": make_case(4, [0, 0, 0, 3, 3, 5, 5, 5], KV, (torch.float32, torch.float16)),
    "random": make_case(5, torch.randint(0, 8, (8,), generator=g), KV, (torch.float32, torch.float16)),
    "random-permutation": make_case(6, torch.randperm(8, generator=g), KV, (torch.float32, torch.float16)),
    "filled-length": make_case(7, [2, 0, 1, 1], KV, (torch.float32, torch.float16), filled_length=4),
    "filled-length-zero": make_case(8, [1, 0], KV, (torch.float32, torch.float16), filled_length=0),
    "filled-length-full": make_case(9, [3, 3, 0, 1], KV, (torch.float32, torch.float16), filled_length=6),
    "every-dtype": make_case(10, [2, 0, 1, 0], [(3, 7)] * 6, ALL_DTYPES),
    "odd-row-bytes": make_case(11, [1, 2, 0], [(5,), (1,), (17,)], (torch.uint8, torch.float16, torch.bfloat16)),
    "plan-in-global-memory": make_case(12, torch.randint(0, 2000, (2000,), generator=g), [(3,)], (torch.float16,)),
    "more-tensors-than-a-launch": make_case(13, [3, 0, 1, 1], [(2,)] * 300, (torch.float32,) * 300),
    "empty-batch": make_case(14, [], KV, (torch.float32, torch.float16)),
}


@functools.lru_cache(maxsize=None)
def simulated() -> dict:
    return run_program("reorder_sim", list(CASES.items()))


@pytest.mark.parametrize("name", CASES)
def test_reorder_kv_cache(name):
    case, out = CASES[name], outputs_or_error(simulated()[name])
    names = sorted(k for k in case if k.startswith("cache"))
    expected = [case[k].clone() for k in names]
    filled = case.get("filled_length")
    ops.reorder_kv_cache_(expected, case["beam_idx"], None if filled is None else int(filled))
    for k, want in zip(names, expected):
        assert torch.equal(out[k].view(torch.uint8), want.view(torch.uint8)), k
