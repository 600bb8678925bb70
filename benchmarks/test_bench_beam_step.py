"""Throughput of ``pysample.beam_search_step`` against transformers' beam step (pytest-benchmark).

One group per (batch, beams, vocab, device): ``transformers`` runs the lines of ``GenerationMixin._beam_search`` and
``_get_top_k_continuations`` that the op replaces (log_softmax of the float32 logits, plus the running beam scores,
topk of 2 * beams over beams x vocab, then beam = index // vocab and token = index % vocab); ``pysample`` the op.
Logits are N(0, 3²) float32, beam scores drawn once. The two are checked to select the same continuations (once,
untimed). Run with ``scripts/bench``.
"""

from __future__ import annotations

from typing import Dict

import pytest
import torch
from test_bench_warpers import skip_without, timed

import pysample
from pysample.bench import transformers_beam_step as transformers_step

DEVICES = ["cpu", "cuda"]
VOCABS = (32000, 49152, 128256, 151936)
BATCH_BEAMS = ((1, 4), (1, 8), (8, 4), (32, 4))
PARAMS = [
    pytest.param(batch, beams, vocab, device, impl, id=f"{batch}x{beams}beams-{vocab}-{device}-{impl}")
    for device in DEVICES
    for batch, beams in BATCH_BEAMS
    for vocab in VOCABS
    for impl in ("transformers", "pysample")
]
GROUP_ORDER: Dict[str, int] = {}


@pytest.mark.parametrize("batch,beams,vocab,device,impl", PARAMS)
def test_beam_step(benchmark, batch, beams, vocab, device, impl) -> None:
    skip_without(device)
    benchmark.group = f"beam step {batch}x{beams} beams {vocab} {device}"
    benchmark.extra_info.update(
        kind="beam_step",
        batch=batch,
        beams=beams,
        vocab=vocab,
        device=device,
        impl=impl,
        order=GROUP_ORDER.setdefault(benchmark.group, len(GROUP_ORDER)),
    )
    generator = torch.Generator().manual_seed(vocab + batch * beams)
    logits = (torch.randn(batch * beams, vocab, generator=generator) * 3).to(device)
    running_scores = (-torch.rand(batch, beams, generator=generator) * 10).to(device)
    if impl == "transformers":
        step = lambda: transformers_step(logits, running_scores, beams)  # noqa: E731
    else:
        step = lambda: pysample.beam_search_step(logits, running_scores, beams)  # noqa: E731
        ours, theirs = step(), transformers_step(logits, running_scores, beams)
        benchmark.extra_info["same_candidates"] = bool(
            torch.equal(ours.tokens, theirs[1]) and torch.equal(ours.beams, theirs[2])
        )
    benchmark.pedantic(
        timed(step, device), rounds=20 if batch * beams * vocab > 10**7 else 100, warmup_rounds=2, iterations=1
    )
