"""warp.cuh's launcher in the GPU simulator against the CPU op (tests/gpusim/warp_sim.cu), stage by stage by the
equality rule of tests/warp_compare.py: temperature and top-k bit for bit; a probability stage may decide a token
differently only at a tie or within rounding of its threshold. A chain is checked one stage at a time: each stage's
simulated output against the CPU op's same stage applied to the simulated output of the stages before it."""

from __future__ import annotations

import functools
import math
from typing import Dict, List, Tuple

import pytest
import torch

import pysample

import warp_compare as W
from simcase import Arrays, outputs_or_error, run_program, stage_arrays


def logits(seed: int, batch: int, vocab: int, dtype=torch.float32, kinds=W.ROW_KINDS) -> torch.Tensor:
    return W.make_logits(batch, vocab, dtype, seed, kinds)


# (name, logits, stage parameters, min_tokens_to_keep, filter_value). A parameter is a scalar (every row) or a
# (batch,) tensor; rows cycle through every hard kind (ties, -inf, NaN, +inf, flat, peaked).
CASES: List[Tuple[str, torch.Tensor, Dict[str, object], int, float]] = [
    ("temperature", logits(1, 8, 1000), {"temperature": 0.7}, 1, -math.inf),
    ("top_k-50", logits(2, 8, 1000), {"top_k": 50}, 1, -math.inf),
    ("top_k-1", logits(3, 8, 1000), {"top_k": 1}, 1, -math.inf),
    ("top_k-vocab", logits(4, 4, 300), {"top_k": 300}, 1, -math.inf),
    ("top_k-beyond-vocab", logits(4, 4, 300), {"top_k": 301}, 1, -math.inf),
    ("top_p-0.9", logits(5, 8, 1000), {"top_p": 0.9}, 1, -math.inf),
    ("top_p-0.3-keep-3", logits(6, 8, 1000), {"top_p": 0.3}, 3, -math.inf),
    ("top_p-1", logits(7, 8, 1000), {"top_p": 1.0}, 1, -math.inf),
    ("min_p-0.05", logits(8, 8, 1000), {"min_p": 0.05}, 1, -math.inf),
    ("min_p-0.5-keep-3", logits(9, 8, 1000), {"min_p": 0.5}, 3, -math.inf),
    ("typical_p-0.9", logits(10, 8, 1000), {"typical_p": 0.9}, 1, -math.inf),
    ("typical_p-0.2-keep-3", logits(11, 8, 1000), {"typical_p": 0.2}, 3, -math.inf),
    ("epsilon-3e-4", logits(12, 8, 1000), {"epsilon": 3e-4}, 1, -math.inf),
    ("eta-3e-4", logits(13, 8, 1000), {"eta": 3e-4}, 1, -math.inf),
    (
        "per-row",
        logits(14, 6, 1000),
        {
            "temperature": torch.tensor([0.5, 1.0, 2.0, 0.7, 1.3, 1.0]),
            "top_k": torch.tensor([0, 1, 5, 50, 999, 2000]),
            "top_p": torch.tensor([1.0, 0.9, 0.5, 0.0, 0.95, 0.7]),
        },
        1,
        -math.inf,
    ),
    (
        "chain-everyday",
        logits(15, 8, 1000),
        {"temperature": 0.7, "top_k": 50, "top_p": 0.9, "min_p": 0.05},
        1,
        -math.inf,
    ),
    (
        "chain-every-stage",
        logits(16, 8, 1000),
        {"temperature": 0.8, "top_k": 100, "top_p": 0.95, "min_p": 0.1, "typical_p": 0.9, "epsilon": 1e-4, "eta": 1e-3},
        2,
        -math.inf,
    ),
    (
        "vocab-4096-ties",
        logits(17, 4, 4096, kinds=("ties", "flat", "near_flat", "normal")),
        {"top_k": 300, "top_p": 0.8, "typical_p": 0.5},
        1,
        -math.inf,
    ),
    ("vocab-4096-list", logits(18, 2, 4096), {"top_p": 0.99, "min_p": 0.01}, 1, -math.inf),
    ("float16", logits(19, 8, 1000, torch.float16), {"temperature": 0.7, "top_k": 50, "top_p": 0.9}, 1, -math.inf),
    ("bfloat16", logits(20, 8, 1000, torch.bfloat16), {"top_p": 0.9, "typical_p": 0.9}, 1, -math.inf),
    ("float16-top_p-1", logits(21, 8, 1000, torch.float16), {"top_p": 1.0}, 1, -math.inf),
    ("filter-value", logits(22, 4, 500), {"top_p": 0.5}, 1, -1e4),
    ("vocab-1", logits(23, 3, 1), {"top_k": 1, "top_p": 0.5, "min_p": 0.5}, 1, -math.inf),
    ("out-of-place-padded-input", logits(25, 4, 700), {"top_k": 40, "top_p": 0.9}, 1, -math.inf),
    ("empty-batch", logits(24, 0, 100), {"top_k": 5, "top_p": 0.5}, 1, -math.inf),
]


def enabled(params: Dict[str, object]) -> List[str]:
    return [s for s in W.STAGES if params.get(s) is not None]


def case_arrays(name: str, x: torch.Tensor, params: Dict[str, object], keep: int, filter_value: float) -> Arrays:
    arrays = {
        "logits": x,
        "min_tokens_to_keep": torch.tensor(keep),
        "filter_value": torch.tensor(filter_value, dtype=torch.float64),
        **stage_arrays(params),
    }
    if "padded-input" in name:  # out of place, from input rows with padding between them (warp_sim.cu)
        arrays["padded_input"] = torch.tensor(1)
    return arrays


def prefixes():
    """Every case's stage prefixes: (case, number of stages) -> simulator inputs."""
    for name, x, params, keep, filter_value in CASES:
        stages = enabled(params)
        for n in range(1, len(stages) + 1):
            yield (name, n), case_arrays(name, x, {s: params[s] for s in stages[:n]}, keep, filter_value)


@functools.lru_cache(maxsize=None)
def simulated() -> dict:
    runs = list(prefixes())
    # the slowest program (1024 threads a row): two simulator processes
    results = run_program("warp_sim", [(f"{name}:{n}", arrays) for (name, n), arrays in runs], processes=2)
    return {key: outputs_or_error(results[f"{key[0]}:{key[1]}"])["warped"] for key, _ in runs}


@pytest.mark.parametrize("name", [case[0] for case in CASES])
def test_warp_logits_stage_by_stage(name):
    _, x, params, keep, filter_value = next(case for case in CASES if case[0] == name)
    previous = x
    for n, stage in enumerate(enabled(params), start=1):
        actual = simulated()[(name, n)]
        expected = pysample.warp_logits(
            previous, **{stage: params[stage]}, min_tokens_to_keep=keep, filter_value=filter_value
        )
        report = W.check_stage(
            stage, previous, params[stage], actual, expected, filter_value, device="cuda", min_tokens_to_keep=keep
        )
        W.assert_report(report, x.numel(), x.dtype, f"{name} stage {n}")
        previous = actual
