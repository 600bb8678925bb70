"""Throughput of pysample's warpers against the transformers processors they replace (pytest-benchmark).

One benchmark group per (case, shape, device), holding ``pysample`` and ``transformers`` (applied in order, as
``generate()`` does). Run with ``scripts/bench``, which also writes ``benchmarks/RESULTS.md``; or by hand::

    python -m pytest benchmarks -q --benchmark-json=bench.json && python benchmarks/report.py bench.json

Inputs: float32 logits (float64 for the cases that say so) drawn from N(0, 3^2) with a fixed seed (the nucleus of
top-p 0.9 then holds ~2k tokens of 49152 and ~5k of 128256, in the range of a small LLM's real logits). On CUDA the
timed callable synchronizes.
"""

from __future__ import annotations

from typing import Callable, Dict, Tuple

import pytest
import torch
import transformers
from transformers import LogitsProcessorList

import pysample

LOGIT_STD = 3.0
SHAPES = [(1, 49152), (8, 128256), (64, 128256), (256, 151936)]
# transformers sorts the whole vocabulary for these; 256x151936 is kept for the headline cases only.
LARGE_SHAPE_CASES = {"TopK(50)->TopP(0.9)", "TopP(0.9)"}
# float64 logits (models run in double): the same classes, at the two smaller shapes.
FLOAT64_CASES = {"TopK(50)->TopP(0.9) float64", "MinP(0.05) float64"}
DEVICES = ["cpu", "cuda"]


def _cases(device: str) -> Dict[str, Tuple[Callable, Callable]]:
    """case name -> (pysample processor, transformers processor), built fresh."""
    return {
        "TopK(50)->TopP(0.9)": (
            lambda: pysample.fuse([pysample.TopKLogitsWarper(50), pysample.TopPLogitsWarper(0.9)]),
            lambda: LogitsProcessorList([transformers.TopKLogitsWarper(50), transformers.TopPLogitsWarper(0.9)]),
        ),
        "TopP(0.9)": (lambda: pysample.TopPLogitsWarper(0.9), lambda: transformers.TopPLogitsWarper(0.9)),
        "Typical(0.9)": (lambda: pysample.TypicalLogitsWarper(0.9), lambda: transformers.TypicalLogitsWarper(0.9)),
        "MinP(0.05)": (lambda: pysample.MinPLogitsWarper(0.05), lambda: transformers.MinPLogitsWarper(0.05)),
        "TopK(50)": (lambda: pysample.TopKLogitsWarper(50), lambda: transformers.TopKLogitsWarper(50)),
        "Temperature(0.7)": (
            lambda: pysample.TemperatureLogitsWarper(0.7),
            lambda: transformers.TemperatureLogitsWarper(0.7),
        ),
        "Epsilon(3e-4)": (lambda: pysample.EpsilonLogitsWarper(3e-4), lambda: transformers.EpsilonLogitsWarper(3e-4)),
        "Eta(3e-4)": (
            lambda: pysample.EtaLogitsWarper(3e-4, device=device),
            lambda: transformers.EtaLogitsWarper(3e-4, device=device),
        ),
        "TopK(50)->TopP(0.9) float64": (
            lambda: pysample.fuse([pysample.TopKLogitsWarper(50), pysample.TopPLogitsWarper(0.9)]),
            lambda: LogitsProcessorList([transformers.TopKLogitsWarper(50), transformers.TopPLogitsWarper(0.9)]),
        ),
        "MinP(0.05) float64": (lambda: pysample.MinPLogitsWarper(0.05), lambda: transformers.MinPLogitsWarper(0.05)),
    }


CASE_NAMES = list(_cases("cpu"))
PARAMS = [
    pytest.param(case, shape, device, impl, id=f"{case}-{shape[0]}x{shape[1]}-{device}-{impl}")
    for device in DEVICES
    for case in CASE_NAMES
    for shape in SHAPES
    if shape != SHAPES[-1] or case in LARGE_SHAPE_CASES
    if case not in FLOAT64_CASES or (shape in SHAPES[:2] and device == "cpu")  # float64: the CPU kernel only
    for impl in ("pysample", "transformers")
]

# (case, shape, device) -> position of its group in the report
PARAMS_ORDER: Dict[tuple, int] = {}
for _param in PARAMS:
    PARAMS_ORDER.setdefault(tuple(_param.values[:3]), len(PARAMS_ORDER))

_inputs: Dict[tuple, torch.Tensor] = {}


def logits_for(shape: Tuple[int, int], device: str) -> torch.Tensor:
    """Fixed random logits of `shape` on `device` (cached: the large ones take a while to draw)."""
    key = (shape, device)
    if key not in _inputs:
        _inputs.clear()  # keep one shape at a time: 256x151936 is 155 MB
        generator = torch.Generator().manual_seed(1234 + shape[0] * 7 + shape[1])
        _inputs[key] = (torch.randn(shape, generator=generator) * LOGIT_STD).to(device)
    return _inputs[key]


def skip_without(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA is not available")


def timed(fn: Callable, device: str) -> Callable:
    if device == "cuda":

        def run():
            out = fn()
            torch.cuda.synchronize()
            return out

        return run
    return fn


def rows_equal(a: torch.Tensor, b: torch.Tensor) -> int:
    """Number of rows of `a` and `b` that are bitwise equal (NaN equal to NaN)."""
    same = (a == b) | (torch.isnan(a) & torch.isnan(b))
    return int(same.all(dim=-1).sum())


@pytest.mark.parametrize("case,shape,device,impl", PARAMS)
def test_warper(benchmark, case: str, shape: Tuple[int, int], device: str, impl: str) -> None:
    skip_without(device)
    make_pysample, make_transformers = _cases(device)[case]
    processor = make_pysample() if impl == "pysample" else make_transformers()
    scores = logits_for(shape, device)
    if case in FLOAT64_CASES:
        scores = scores.double()
    input_ids = torch.zeros((shape[0], 1), dtype=torch.long, device=device)

    benchmark.group = f"{case} {shape[0]}x{shape[1]} {device}"
    benchmark.extra_info.update(
        case=case, batch=shape[0], vocab=shape[1], device=device, impl=impl, order=PARAMS_ORDER[(case, shape, device)]
    )
    if impl == "pysample":  # one untimed comparison against transformers: a broken kernel shows in the report
        expected = make_transformers()(input_ids, scores)
        benchmark.extra_info["rows_equal"] = rows_equal(processor(input_ids, scores), expected)
        del expected

    out = benchmark(timed(lambda: processor(input_ids, scores), device))
    assert out.shape == scores.shape


RAW_SHAPE = (1, 128256)


# How each round restores the row (untimed): "timing thread", copied by the thread that then runs the op (numpy's
# copy), or "torch copy_", torch's copy, which splits a 128256-float row between both threads (as a multi-threaded
# lm_head would write it). Both are timed so that a cost of where the row sits would show; in plain timing loops on
# this machine they measure the same, and in benchmark runs either one is sometimes slower (the shared machine).
RESTORES = {"cpu": ["timing thread", "torch copy_"], "cuda": ["torch copy_"]}
RAW_PARAMS = [(device, restore) for device in DEVICES for restore in RESTORES[device]]


@pytest.mark.parametrize("device, restore", RAW_PARAMS)
@pytest.mark.parametrize("impl", ["pysample", "transformers"])
def test_warp_logits_inplace(benchmark, device: str, restore: str, impl: str) -> None:
    """The raw op ``pysample.warp_logits_`` (top_k=50, top_p=0.9) on one row, in place; the bar is <= 60 us a row.

    Each round first restores the row from a pristine copy (untimed, see RESTORES). transformers' TopK -> TopP chain
    on the same row is the baseline.
    """
    skip_without(device)
    pristine = logits_for(RAW_SHAPE, device)
    scores = pristine.clone()
    input_ids = torch.zeros((RAW_SHAPE[0], 1), dtype=torch.long, device=device)
    if impl == "pysample":

        def fn():
            return pysample.warp_logits_(scores, top_k=50, top_p=0.9)

    else:
        chain = LogitsProcessorList([transformers.TopKLogitsWarper(50), transformers.TopPLogitsWarper(0.9)])

        def fn():
            return chain(input_ids, scores)

    if restore == "timing thread":
        pristine_array, scores_array = pristine.numpy(), scores.numpy()  # numpy copies on the calling thread

        def restore_row():
            scores_array[...] = pristine_array

    else:

        def restore_row():
            scores.copy_(pristine)
            if device == "cuda":
                torch.cuda.synchronize()

    benchmark.group = f"warp_logits_ in place, top_k=50 top_p=0.9 {RAW_SHAPE[0]}x{RAW_SHAPE[1]} {device}, {restore}"
    benchmark.extra_info.update(
        case="warp_logits_ (in place) top_k=50, top_p=0.9",
        batch=RAW_SHAPE[0],
        vocab=RAW_SHAPE[1],
        device=device,
        impl=impl,
        restore=restore,
        order=len(PARAMS_ORDER) + RAW_PARAMS.index((device, restore)),
        bar_us_per_row=60.0,
    )
    rounds = 2000 if impl == "pysample" else 200
    benchmark.pedantic(timed(fn, device), setup=restore_row, rounds=rounds, warmup_rounds=20, iterations=1)
