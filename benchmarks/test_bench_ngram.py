"""Throughput of pysample's n-gram bans and sequence biases against the transformers processors (pytest-benchmark).

Groups (case, shape, history length, device), each holding some of:

- ``transformers``: the transformers 5.23 processor (NoRepeatNGram is vectorized there, PR #47571);
- ``legacy``: transformers 4.x's NoRepeatNGram (a Python dict of every n-gram per row, then a loop over the rows),
  rebuilt here from the helpers 5.23 still ships (``_get_ngrams``, ``_get_generated_ngrams``);
- ``pysample``: the drop-in processor (a new tensor, like transformers);
- ``inplace``: the op itself (``pysample.no_repeat_ngram_``) on the scores in place, restored before each round
  (untimed).

Histories: ids drawn from 50 tokens, so that n-grams repeat and bans happen. Run with ``scripts/bench``.
"""

from __future__ import annotations

from typing import Dict, Tuple

import pytest
import torch
import transformers
from test_bench_penalties import _restoring
from test_bench_warpers import logits_for, skip_without, timed
from transformers.generation.logits_process import _get_generated_ngrams, _get_ngrams

import pysample

DEVICES = ["cpu", "cuda"]
SHAPES = [(8, 128256), (64, 128256)]
HISTORIES = [512, 4096]
NGRAM_SIZES = [2, 3, 4]
POOL = 50
# (case, shape, history) -> {implementation: minimum speed-up over transformers}
BARS: Dict[Tuple[str, Tuple[int, int], int], Dict[str, float]] = {
    ("NoRepeatNGram(3)", (64, 128256), 4096): {"inplace": 20.0, "pysample": 5.0},
    ("EncoderNoRepeatNGram(3)", (64, 128256), 64): {"pysample": 10.0},
    ("EncoderNoRepeatNGram(3)", (64, 32000), 64): {"pysample": 10.0},
}


def ids_for(batch: int, length: int, seed: int, device: str) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed + batch + length)
    return torch.randint(0, POOL, (batch, length), generator=generator).to(device)


def legacy_no_repeat_ngram(ngram_size: int):
    """transformers 4.x's NoRepeatNGramLogitsProcessor.__call__."""

    def call(input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        num_hypos, cur_len = scores.shape[0], input_ids.shape[-1]
        scores_processed = scores.clone()
        if cur_len + 1 < ngram_size:
            return scores_processed
        generated = _get_ngrams(ngram_size, input_ids, num_hypos)
        for i in range(num_hypos):
            scores_processed[i, _get_generated_ngrams(generated[i], input_ids[i], ngram_size, cur_len)] = -float("inf")
        return scores_processed

    return call


GROUP_ORDER: Dict[str, int] = {}  # groups in the order their first benchmark runs


def _describe(benchmark, case, shape, history, device, impl) -> None:
    benchmark.group = f"{case} {shape[0]}x{shape[1]} L{history} {device}"
    benchmark.extra_info.update(
        kind="token_editor",
        case=case,
        batch=shape[0],
        vocab=shape[1],
        history=history,
        device=device,
        impl=impl,
        order=GROUP_ORDER.setdefault(benchmark.group, len(GROUP_ORDER)),
    )
    for bar_impl, bar in BARS.get((case, shape, history), {}).items():
        benchmark.extra_info[f"bar_{bar_impl}"] = bar


NGRAM_PARAMS = [
    pytest.param(shape, history, n, device, impl, id=f"n{n}-{shape[0]}x{shape[1]}-L{history}-{device}-{impl}")
    for device in DEVICES
    for shape in SHAPES
    for history in HISTORIES
    for n in NGRAM_SIZES
    for impl in ("transformers", "legacy", "pysample", "inplace")
]


@pytest.mark.parametrize("shape,history,n,device,impl", NGRAM_PARAMS)
def test_no_repeat_ngram(benchmark, shape, history, n, device, impl) -> None:
    skip_without(device)
    pristine = logits_for(shape, device)
    input_ids = ids_for(shape[0], history, n, device)
    _describe(benchmark, f"NoRepeatNGram({n})", shape, history, device, impl)
    expected = transformers.NoRepeatNGramLogitsProcessor(n)(input_ids, pristine)
    if impl == "inplace":
        scores = pristine.clone()
        rounds = max(5, min(200, int(2e8 // (shape[0] * shape[1]))))
        _restoring(
            benchmark,
            lambda: pysample.no_repeat_ngram_(scores, input_ids, ngram_size=n),
            scores,
            pristine,
            device,
            rounds,
        )
        out = scores
    else:
        processor = {
            "transformers": transformers.NoRepeatNGramLogitsProcessor(n),
            "legacy": legacy_no_repeat_ngram(n),
            "pysample": pysample.NoRepeatNGramLogitsProcessor(n),
        }[impl]
        out = benchmark(timed(lambda: processor(input_ids, pristine), device))
    benchmark.extra_info["rows_equal"] = int((out == expected).all(dim=1).sum())


ENCODER_SHAPES = [(64, 32000), (64, 128256)]
BEAMS = 4
ENCODER_LENGTH = 512
DECODED = 64
ENCODER_PARAMS = [
    pytest.param(shape, device, impl, id=f"{shape[0]}x{shape[1]}-{device}-{impl}")
    for device in DEVICES
    for shape in ENCODER_SHAPES
    for impl in ("transformers", "pysample")
]


@pytest.mark.parametrize("shape,device,impl", ENCODER_PARAMS)
def test_encoder_no_repeat_ngram(benchmark, shape, device, impl) -> None:
    """64 hypotheses = 16 encoder rows x 4 beams; encoder ids 512, decoded ids 64; n = 3."""
    skip_without(device)
    pristine = logits_for(shape, device)
    encoder_ids = ids_for(shape[0] // BEAMS, ENCODER_LENGTH, 7, device)
    input_ids = ids_for(shape[0], DECODED, 8, device)
    _describe(benchmark, "EncoderNoRepeatNGram(3)", shape, DECODED, device, impl)
    cls = (
        transformers.EncoderNoRepeatNGramLogitsProcessor
        if impl == "transformers"
        else pysample.EncoderNoRepeatNGramLogitsProcessor
    )
    processor = cls(3, encoder_ids)
    expected = transformers.EncoderNoRepeatNGramLogitsProcessor(3, encoder_ids)(input_ids, pristine)
    out = benchmark(timed(lambda: processor(input_ids, pristine), device))
    benchmark.extra_info["rows_equal"] = int((out == expected).all(dim=1).sum())


SEQUENCE_CASES = {
    # 200 sequences of 1 to 4 tokens from the history's 50 tokens: many match.
    "SequenceBias(200 sequences)": lambda seqs: (
        transformers.SequenceBiasLogitsProcessor(seqs),
        pysample.SequenceBiasLogitsProcessor(seqs),
    ),
    "NoBadWords(200 sequences)": lambda seqs: (
        transformers.NoBadWordsLogitsProcessor([s for s, _ in seqs]),
        pysample.NoBadWordsLogitsProcessor([s for s, _ in seqs]),
    ),
}
SEQUENCE_PARAMS = [
    pytest.param(case, shape, device, impl, id=f"{case}-{shape[0]}x{shape[1]}-{device}-{impl}")
    for device in DEVICES
    for case in SEQUENCE_CASES
    for shape in SHAPES
    for impl in ("transformers", "pysample")
]


def sequences_for(count: int = 200) -> list:
    generator = torch.Generator().manual_seed(11)
    pairs, seen = [], set()
    while len(pairs) < count:
        length = int(torch.randint(1, 5, (), generator=generator))
        sequence = torch.randint(0, POOL, (length,), generator=generator).tolist()
        if tuple(sequence) not in seen:
            seen.add(tuple(sequence))
            pairs.append([sequence, float(torch.randn((), generator=generator))])
    return pairs


@pytest.mark.parametrize("case,shape,device,impl", SEQUENCE_PARAMS)
def test_sequence_bias(benchmark, case, shape, device, impl) -> None:
    skip_without(device)
    pristine = logits_for(shape, device)
    input_ids = ids_for(shape[0], 512, 9, device)
    _describe(benchmark, case, shape, 512, device, impl)
    theirs, ours = SEQUENCE_CASES[case](sequences_for())
    expected = theirs(input_ids, pristine)
    processor = theirs if impl == "transformers" else ours
    out = benchmark(timed(lambda: processor(input_ids, pristine), device))
    benchmark.extra_info["rows_equal"] = int(((out == expected) | (out.isnan() & expected.isnan())).all(dim=1).sum())
