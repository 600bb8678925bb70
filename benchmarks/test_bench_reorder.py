"""Throughput of pysample's in-place KV-cache reorder against transformers' ``DynamicCache.reorder_cache``
(pytest-benchmark).

One group per (layers, beams, sequence length, dtype, beam_idx pattern, device): ``transformers`` reorders a
``DynamicCache`` (one allocating ``index_select`` per tensor), ``pysample`` a ``pysample.BeamCache`` holding the same
tensors (``reorder_kv_cache_``: all tensors in one call, in place). Layers are ``[beams, 4, seq, 64]`` keys and values
(batch 1). Patterns: ``identity`` (nothing moves), ``one change`` (beam 1 replaced by a copy of beam 0: a typical
step), ``random`` (beam_idx drawn uniformly, fixed seed). Run with ``scripts/bench``.
"""

from __future__ import annotations

from typing import Dict

import pytest
import torch
from test_bench_warpers import skip_without, timed
from transformers import DynamicCache

import pysample

DEVICES = ["cpu", "cuda"]
HEADS, HEAD_DIM = 4, 64
PATTERNS = ("identity", "one change", "random")
# (layers, beams, seq): the grid of the issue, and the shape of the bars
SHAPES = [(layers, beams, seq) for layers in (30, 80) for beams in (4, 8) for seq in (512, 4096)] + [(30, 4, 2048)]
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
BARS: Dict[tuple, float] = {
    ((30, 4, 2048), "bf16", "one change"): 3.0,
    ((30, 4, 2048), "bf16", "identity"): 50.0,
    ((30, 4, 2048), "bf16", "random"): 1.0,
}

PARAMS = [
    pytest.param(
        shape,
        dtype,
        pattern,
        device,
        impl,
        id=f"{shape[0]}layers-{shape[1]}beams-seq{shape[2]}-{dtype}-{pattern}-{device}-{impl}",
    )
    for device in DEVICES
    for shape in SHAPES
    for dtype in DTYPES
    for pattern in PATTERNS
    for impl in ("transformers", "pysample")
]
GROUP_ORDER: Dict[str, int] = {}


def beam_idx_for(pattern: str, beams: int, device: str) -> torch.Tensor:
    if pattern == "identity":
        idx = torch.arange(beams)
    elif pattern == "one change":
        idx = torch.arange(beams)
        idx[1] = 0
    else:
        idx = torch.randint(0, beams, (beams,), generator=torch.Generator().manual_seed(beams))
    return idx.to(device=device, dtype=torch.int32)  # generate() passes int32


def filled_cache(cls, layers: int, beams: int, seq: int, dtype: torch.dtype, device: str):
    cache = cls()
    generator = torch.Generator().manual_seed(layers * 100 + beams)
    keys = torch.randn(beams, HEADS, seq, HEAD_DIM, generator=generator).to(dtype=dtype, device=device)
    for layer in range(layers):
        cache.update(keys.clone(), keys.clone(), layer_idx=layer)
    return cache


@pytest.mark.parametrize("shape,dtype,pattern,device,impl", PARAMS)
def test_reorder(benchmark, shape, dtype, pattern, device, impl) -> None:
    skip_without(device)
    layers, beams, seq = shape
    benchmark.group = f"reorder {layers} layers {beams} beams seq {seq} {dtype} {pattern} {device}"
    benchmark.extra_info.update(
        kind="reorder",
        layers=layers,
        beams=beams,
        seq=seq,
        dtype=dtype,
        pattern=pattern,
        device=device,
        impl=impl,
        order=GROUP_ORDER.setdefault(benchmark.group, len(GROUP_ORDER)),
    )
    if (shape, dtype, pattern) in BARS:
        benchmark.extra_info["bar_pysample"] = BARS[(shape, dtype, pattern)]
    cache = filled_cache(
        DynamicCache if impl == "transformers" else pysample.BeamCache, layers, beams, seq, DTYPES[dtype], device
    )
    beam_idx = beam_idx_for(pattern, beams, device)
    # 80 layers of 8 beams at seq 4096 in fp32 are 5.4 GB of cache (and transformers copies it): fewer rounds.
    cache_bytes = 2 * layers * beams * HEADS * seq * HEAD_DIM * DTYPES[dtype].itemsize
    benchmark.pedantic(
        timed(lambda: cache.reorder_cache(beam_idx), device),
        rounds=30 if seq < 4096 else (10 if cache_bytes < 2**31 else 4),
        warmup_rounds=1,
        iterations=1,
    )
