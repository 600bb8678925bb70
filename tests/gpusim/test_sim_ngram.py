"""ngram.cuh's launchers in the GPU simulator against the CPU ops, bit for bit: no_repeat_ngram_ (own ids, encoder
sources, per-row n and lengths) and bias_sequences_ (tests/gpusim/ngram_sim.cu)."""

from __future__ import annotations

import functools

import pytest
import torch

from simcase import FLOATS, Arrays, outputs_or_error, param_args, run_program, scores_with_edges
from warp_compare import assert_same_bits

ops = torch.ops.pysample


def make_case(
    seed: int,
    dtype=torch.float32,
    id_dtype=torch.int64,
    batch=4,
    vocab=500,
    length=40,
    n=(2, 3),
    per_row_n=False,
    lengths=False,
    sources=None,
    bias=True,
) -> Arrays:
    g = torch.Generator().manual_seed(seed)
    # few distinct ids, so that n-grams repeat; some out of range, which ban nothing
    ids = torch.randint(-2, 12, (batch, length), generator=g)
    case = {"scores": scores_with_edges(batch, vocab, dtype, g), "ids": ids.to(id_dtype)}
    if n is not None:
        case["ngram_size"] = (
            torch.tensor(n)[torch.randint(0, len(n), (batch,), generator=g)] if per_row_n else torch.tensor(n[0])
        )
    if lengths:
        case["lengths"] = torch.randint(0, length + 1, (batch,), generator=g)
    if sources is not None:
        case["sources"] = torch.randint(0, 12, (sources, 30), generator=g).to(id_dtype)
        case["source_lengths"] = torch.randint(0, 31, (sources,), generator=g)
    if bias:
        last = ids[:, -1].tolist() if ids.numel() else [0]
        sequences = [[5], [last[0], 7], [5], [3, last[-1], 5], [vocab - 1], [9, 9], [last[0], 2, 7], [7]]
        case["sequence_tokens"] = torch.tensor([t for s in sequences for t in s])
        case["sequence_offsets"] = torch.tensor([0] + [len(s) for s in sequences]).cumsum(0)
        case["sequence_biases"] = torch.tensor([-1.5, 2.25, 0.125, 1e-3, -7.0, 4.0, -float("inf"), 0.5])
    return case


def many_sequences(seed: int, count: int, batch=2, vocab=4096) -> Arrays:
    """Single- and two-token sequences on few last tokens (long groups to sum in order), biases in both signs."""
    g = torch.Generator().manual_seed(seed)
    case = make_case(seed, batch=batch, vocab=vocab, n=None, bias=False)
    last = torch.randint(0, 64, (count,), generator=g)
    first = torch.where(torch.rand(count, generator=g) < 0.5, case["ids"][0, -1].long(), torch.full((count,), -1))
    sequences = [[int(a), int(b)] if a >= 0 else [int(b)] for a, b in zip(first, last)]
    case["sequence_tokens"] = torch.tensor([t for s in sequences for t in s])
    case["sequence_offsets"] = torch.tensor([0] + [len(s) for s in sequences]).cumsum(0)
    case["sequence_biases"] = torch.randn(count, generator=g)
    return case


CASES = {
    **{
        f"{dtype}-{id_dtype}": make_case(1, dtype, id_dtype)
        for dtype in FLOATS
        for id_dtype in (torch.int64, torch.int32)
    },
    **{f"n-{n}": make_case(2, n=(n,), bias=False) for n in (1, 4, 41)},
    "n-zero": make_case(3, n=(0,), bias=False),
    "per-row-n-and-lengths": make_case(4, n=(0, 1, 2, 3, 5), per_row_n=True, lengths=True),
    "encoder-sources": make_case(5, batch=6, sources=2, n=(2,), bias=False),
    "encoder-sources-per-row": make_case(6, batch=4, sources=4, n=(1, 2, 3), per_row_n=True, lengths=True, bias=False),
    "float16-encoder": make_case(7, torch.float16, torch.int32, batch=4, sources=2, bias=False),
    "vocab-4096-batch-8": make_case(8, vocab=4096, batch=8, length=300),
    "vocab-7": make_case(9, vocab=13, batch=2, length=10),
    # more sequences than CUB's single-tile sort takes: its histogram, scan and onesweep kernels (bmsk, bar.red.or,
    # %lanemask_*, 64-bit warp scans) sort them in two passes of one tile; two tiles or more (about 4000 keys) go
    # wrong in the simulator (docs/development.md, Status)
    "onesweep-sort": many_sequences(12, 3000),
    # the scores transposed in memory (row stride 1, token stride batch), as a strided view reaches the kernels
    "column-major": {
        **make_case(13, torch.float16, per_row_n=True, n=(1, 2, 3), lengths=True),
        "column_major": torch.tensor(1),
    },
    "empty-batch": make_case(10, batch=0),
    "no-ids": make_case(11, length=0),
}


@functools.lru_cache(maxsize=None)
def simulated() -> dict:
    return run_program("ngram_sim", list(CASES.items()))


@pytest.mark.parametrize("name", [name for name, case in CASES.items() if "ngram_size" in case])
def test_no_repeat_ngram(name):
    case, out = CASES[name], outputs_or_error(simulated()[name])
    expected = ops.no_repeat_ngram(
        case["scores"],
        case["ids"],
        case.get("lengths"),
        case.get("sources"),
        case.get("source_lengths"),
        *param_args(case, "ngram_size", 0),
    )
    assert_same_bits(out["banned"], expected)


@pytest.mark.parametrize("name", [name for name, case in CASES.items() if "sequence_tokens" in case])
def test_bias_sequences(name):
    case, out = CASES[name], outputs_or_error(simulated()[name])
    expected = case["scores"].clone()
    ops.bias_sequences_(
        expected,
        case["ids"],
        case.get("lengths"),
        case["sequence_tokens"],
        case["sequence_offsets"],
        case["sequence_biases"],
    )
    assert_same_bits(out["biased"], expected)
