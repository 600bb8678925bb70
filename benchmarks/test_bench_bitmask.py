"""Throughput of pysample's token bitmask (``apply_token_bitmask_``) against xgrammar's torch-native masking
(pytest-benchmark).

Groups (mask, shape, device), each holding:

- ``xgrammar_torch``: the torch-native path of xgrammar's ``apply_token_bitmask_inplace`` (its idea, our code):
  each int32 word repeated 32 times, shifted right by the bit's position, the lowest bit kept, then ``masked_fill_``
  of the cleared ones with ``-inf``; run eagerly (xgrammar wraps it in ``torch.compile``);
- ``pysample``: the op ``pysample.apply_token_bitmask_``.

Both run in place on the logits, restored before each round (untimed). Masks: a random 10% of the tokens allowed
(a grammar state that allows many tokens; few allowed costs the same), and every token allowed. Run with
``scripts/bench``.
"""

from __future__ import annotations

from typing import Dict

import pytest
import torch
from test_bench_penalties import _restoring
from test_bench_warpers import logits_for, rows_equal, skip_without

import pysample
from pysample import reference

DEVICES = ["cpu", "cuda"]
SHAPES = [(8, 128256), (64, 128256)]
MASKS = {"10% allowed": 0.1, "all allowed": 1.0}
IMPLS = ("xgrammar_torch", "pysample")
GROUP_ORDER: Dict[tuple, int] = {}


def xgrammar_torch(logits: torch.Tensor, bitmask: torch.Tensor) -> torch.Tensor:
    """xgrammar's torch-native token bitmask (after ``apply_token_bitmask_inplace_torch_compile``, xgrammar,
    Apache-2.0), written here from its idea: every word expanded to its 32 tokens, bit j of word w tested by a shift
    of w by j, the tokens whose bit is cleared set to -inf."""
    vocab_size = min(logits.shape[-1], 32 * bitmask.shape[-1])
    expanded = torch.repeat_interleave(bitmask, 32, dim=-1)
    shifts = torch.arange(32, dtype=torch.int32, device=bitmask.device).repeat(bitmask.shape[-1])
    allowed = ((expanded >> shifts) & 1)[:, :vocab_size]
    return logits[:, :vocab_size].masked_fill_(allowed == 0, float("-inf"))


def bitmask_for(batch: int, vocab: int, allowed: float, device: str) -> torch.Tensor:
    words = (vocab + 31) // 32
    if allowed >= 1.0:
        return torch.full((batch, words), -1, dtype=torch.int32, device=device)
    generator = torch.Generator().manual_seed(5 + batch)
    bits = (torch.rand(batch, words, 32, generator=generator) < allowed).long()
    packed = (bits << torch.arange(32)).sum(-1)
    return (packed - (packed >= 2**31).long() * 2**32).to(torch.int32).to(device)


PARAMS = [
    pytest.param(
        mask, shape, device, impl, id=f"{mask.split('%')[0].replace(' ', '-')}-{shape[0]}x{shape[1]}-{device}-{impl}"
    )
    for device in DEVICES
    for mask in MASKS
    for shape in SHAPES
    for impl in IMPLS
]


@pytest.mark.parametrize("mask,shape,device,impl", PARAMS)
def test_token_bitmask(benchmark, mask, shape, device, impl) -> None:
    skip_without(device)
    pristine = logits_for(shape, device)
    bitmask = bitmask_for(shape[0], shape[1], MASKS[mask], device)
    group = (mask, shape, device)
    benchmark.group = f"TokenBitmask({mask}) {shape[0]}x{shape[1]} {device}"
    benchmark.extra_info.update(
        kind="token_bitmask",
        case=mask,
        batch=shape[0],
        vocab=shape[1],
        device=device,
        impl=impl,
        order=GROUP_ORDER.setdefault(group, len(GROUP_ORDER)),
    )
    logits = pristine.clone()
    call = {
        "xgrammar_torch": lambda: xgrammar_torch(logits, bitmask),
        "pysample": lambda: pysample.apply_token_bitmask_(logits, bitmask),
    }[impl]
    rounds = max(5, min(200, int(2e8 // (shape[0] * shape[1]))))
    _restoring(benchmark, call, logits, pristine, device, rounds)
    expected = reference.apply_token_bitmask(pristine.cpu(), bitmask.cpu())
    benchmark.extra_info["rows_equal"] = rows_equal(logits.cpu(), expected)
