"""In-place beam reordering of KV caches: reorder_kv_cache_ against index_select, and BeamCache / BeamStaticCache
inside transformers' beam search."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

import pysample
from pysample.cache import _cache_tensors

DTYPES = [torch.float32, torch.float16, torch.bfloat16]

BEAM_INDICES = {
    "identity": [0, 1, 2, 3, 4, 5, 6, 7],
    "one change": [0, 1, 1, 3, 4, 5, 6, 7],
    "swap": [1, 0, 2, 3, 4, 5, 6, 7],
    "cycle of 8": [1, 2, 3, 4, 5, 6, 7, 0],
    "two cycles and fixed points": [2, 0, 1, 3, 5, 4, 6, 7],
    "fan-out": [0, 0, 0, 3, 3, 3, 6, 6],
    "all from one": [5, 5, 5, 5, 5, 5, 5, 5],
    "tree into a cycle": [1, 0, 0, 1, 2, 2, 4, 4],
    "reversed": [7, 6, 5, 4, 3, 2, 1, 0],
}


def make_caches(rows: int, layers: int, dtype: torch.dtype, seed: int, shape=(3, 10, 4), device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(rows, *shape, generator=g).to(dtype=dtype, device=device) for _ in range(2 * layers)]


@pytest.mark.parametrize("case", list(BEAM_INDICES))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("index_dtype", [torch.int64, torch.int32], ids=str)
def test_matches_index_select(device, seed, case, dtype, index_dtype):
    caches = make_caches(8, 3, dtype, seed, device=device)
    beam_idx = torch.tensor(BEAM_INDICES[case], dtype=index_dtype, device=device)
    expected = [t.index_select(0, beam_idx) for t in caches]
    pointers = [t.data_ptr() for t in caches]
    pysample.reorder_kv_cache_(caches, beam_idx)
    for actual, wanted in zip(caches, expected):
        assert torch.equal(actual, wanted)
    assert [t.data_ptr() for t in caches] == pointers  # in place


def test_random_permutations_and_fan_outs(device, seed):
    g = torch.Generator().manual_seed(seed)
    for rows in (1, 2, 5, 16, 64):
        for _ in range(20):
            caches = make_caches(
                rows, 2, torch.float32, int(torch.randint(0, 2**31, (), generator=g)), shape=(2, 3), device=device
            )
            kind = int(torch.randint(0, 2, (), generator=g))
            beam_idx = torch.randperm(rows, generator=g) if kind else torch.randint(0, rows, (rows,), generator=g)
            beam_idx = beam_idx.to(device)
            expected = [t.index_select(0, beam_idx) for t in caches]
            pysample.reorder_kv_cache_(caches, beam_idx)
            assert all(torch.equal(a, b) for a, b in zip(caches, expected)), beam_idx.tolist()


@pytest.mark.parametrize("filled_length", [None, 1000])
def test_large_moves(device, seed, filled_length):
    """A reorder moving more than 16 MiB (the CPU kernel then writes with streaming stores), every kind of step: a
    fan-out, a cycle through the scratch row, fixed rows; odd row sizes (spans not a multiple of 16 bytes)."""
    caches = make_caches(6, 2, torch.float32, seed, shape=(3, 1101, 129), device=device)  # 6.8 MB per tensor
    beam_idx = torch.tensor([1, 2, 0, 3, 3, 4], device=device)
    before = [t.clone() for t in caches]
    pysample.reorder_kv_cache_(caches, beam_idx, filled_length=filled_length)
    for actual, old in zip(caches, before):
        expected = old.index_select(0, beam_idx)
        if filled_length is not None:
            expected[:, :, filled_length:] = old[:, :, filled_length:]
        assert torch.equal(actual, expected)


def test_filled_length_moves_only_the_filled_positions(device, seed):
    caches = make_caches(4, 2, torch.bfloat16, seed, shape=(2, 16, 8), device=device)
    beam_idx = torch.tensor([2, 2, 0, 1], device=device)
    before = [t.clone() for t in caches]
    pysample.reorder_kv_cache_(caches, beam_idx, filled_length=5)
    for actual, old in zip(caches, before):
        assert torch.equal(actual[:, :, :5], old.index_select(0, beam_idx)[:, :, :5])
        assert torch.equal(actual[:, :, 5:], old[:, :, 5:])  # the empty part of a static cache is not moved
    pysample.reorder_kv_cache_(caches, beam_idx, filled_length=0)  # nothing filled: nothing moves


def test_empty_tensors(device):
    """Tensors without elements (a layer not filled yet) are left alone, whatever their strides say."""
    caches = [torch.empty(4, 0, 3, device=device), torch.arange(4.0, device=device).reshape(4, 1)]
    pysample.reorder_kv_cache_(caches, torch.tensor([1, 0, 3, 2], device=device))
    assert caches[1].flatten().tolist() == [1.0, 0.0, 3.0, 2.0]


def test_cache_forms(seed):
    """A list, legacy ((key, value), ...) tuples and a transformers DynamicCache all reorder the same tensors."""
    beam_idx = torch.tensor([3, 3, 0, 1])
    caches = make_caches(4, 2, torch.float32, seed)
    expected = [t.index_select(0, beam_idx) for t in caches]
    legacy = ((caches[0], caches[1]), (caches[2], caches[3]))
    pysample.reorder_kv_cache_(legacy, beam_idx)
    assert all(torch.equal(a, b) for a, b in zip(caches, expected))

    dynamic = DynamicCache()
    for layer, (keys, values) in enumerate(zip(caches[0::2], caches[1::2])):
        dynamic.update(keys.clone(), values.clone(), layer_idx=layer)
    expected = [t.index_select(0, beam_idx) for t in _cache_tensors(dynamic)]
    pysample.reorder_kv_cache_(dynamic, beam_idx)
    assert all(torch.equal(a, b) for a, b in zip(_cache_tensors(dynamic), expected))


def test_beam_caches_reorder_like_transformers(seed):
    beam_idx = torch.tensor([1, 1, 3, 2], dtype=torch.int32)  # generate() passes int32
    for ours, theirs in ((pysample.BeamCache(), DynamicCache()),):
        for cache in (ours, theirs):
            for layer, (keys, values) in enumerate(zip(*[iter(make_caches(4, 3, torch.float32, seed))] * 2)):
                cache.update(keys, values, layer_idx=layer)
        ours.reorder_cache(beam_idx)
        theirs.reorder_cache(beam_idx)
        assert all(torch.equal(a, b) for a, b in zip(_cache_tensors(ours), _cache_tensors(theirs)))


BAD_ARGUMENTS = {
    "beam_idx out of range": (dict(beam_idx=torch.tensor([0, 4, 1, 2])), IndexError, r"beam_idx\[1\] = 4"),
    "beam_idx negative": (dict(beam_idx=torch.tensor([0, -1, 1, 2])), IndexError, r"beam_idx\[1\] = -1"),
    "beam_idx float": (dict(beam_idx=torch.zeros(4)), TypeError, "beam_idx must be int64 or int32"),
    "beam_idx 2-D": (dict(beam_idx=torch.zeros(2, 2, dtype=torch.long)), ValueError, "beam_idx must be 1-D"),
    "rows differ": (dict(caches=[torch.zeros(4, 2), torch.zeros(3, 2)]), ValueError, r"caches\[1\] must have"),
    "non-contiguous": (dict(caches=[torch.zeros(2, 4).t()]), ValueError, r"caches\[0\] must be contiguous"),
    "filled too long": (dict(caches=[torch.zeros(4, 1, 3, 2)], filled_length=4), ValueError, "filled_length"),
    "filled negative": (dict(caches=[torch.zeros(4, 1, 3, 2)], filled_length=-1), ValueError, "filled_length"),
    "filled without sequence dim": (
        dict(caches=[torch.zeros(4, 2)], filled_length=1),
        ValueError,
        r"needs caches of \(rows, heads, sequence",
    ),
    "one tensor twice": (dict(caches=[torch.zeros(4, 2)] * 2), ValueError, r"caches\[0\] and caches\[1\] share"),
}


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS))
def test_bad_arguments(case):
    overrides, error, message = BAD_ARGUMENTS[case]
    args = dict(caches=[torch.arange(8.0).reshape(4, 2)], beam_idx=torch.tensor([1, 0, 3, 2]))
    args.update(overrides)
    before = [t.clone() for t in args["caches"]]
    with pytest.raises(error, match=message):
        pysample.reorder_kv_cache_(args["caches"], args["beam_idx"], args.get("filled_length"))
    assert all(torch.equal(a, b) for a, b in zip(args["caches"], before))  # nothing moved


def test_compile_fullgraph(device, seed):
    caches = make_caches(4, 2, torch.float32, seed, device=device)
    expected = [t.index_select(0, torch.tensor([2, 2, 1, 0], device=device)) for t in caches]

    def step(a, b, c, d, beam_idx):
        torch.ops.pysample.reorder_kv_cache_([a, b, c, d], beam_idx, None)
        return a + 0, b + 0, c + 0, d + 0

    out = torch.compile(step, fullgraph=True, backend="aot_eager")(*caches, torch.tensor([2, 2, 1, 0], device=device))
    assert all(torch.equal(a, b) for a, b in zip(out, expected))
