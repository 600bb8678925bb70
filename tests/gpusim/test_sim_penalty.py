"""penalty.cuh's launchers in the GPU simulator against the CPU ops, bit for bit: apply_penalties_, and
count_tokens_ then apply_penalty_counts_ (tests/gpusim/penalty_sim.cu). The one documented difference between the
devices: the repetition penalty divides by the reciprocal on CUDA (x * (1 / p), as torch divides by a scalar there,
so that each device gives transformers' result on it); the expected CUDA scores are the reference's with that
division, the reference checked against the CPU op on the same inputs with true division."""

from __future__ import annotations

import functools

import pytest
import torch

from pysample import reference

from simcase import FLOATS, Arrays, outputs_or_error, param_args, run_program, scores_with_edges
from warp_compare import assert_same_bits

ops = torch.ops.pysample


def make_case(
    seed: int,
    dtype=torch.float32,
    id_dtype=torch.int64,
    batch=4,
    vocab=1000,
    length=48,
    ids_batch=None,
    per_row=False,
    params=("repetition", "presence", "frequency"),
    per_row_scope=False,
    slots=None,
    counts=True,
) -> Arrays:
    g = torch.Generator().manual_seed(seed)
    ids_batch = batch if ids_batch is None else ids_batch
    case = {
        "scores": scores_with_edges(batch, vocab, dtype, g),
        # a few ids out of range, which every device ignores; repeats, so that counts exceed 1
        "ids": torch.randint(-3, min(vocab, 60) + 3, (ids_batch, length), generator=g).to(id_dtype),
    }
    values = {
        "repetition": (1.3, lambda: 1 + torch.rand(batch, generator=g)),
        "presence": (0.5, lambda: torch.randn(batch, generator=g)),
        "frequency": (-0.25, lambda: torch.randn(batch, generator=g)),
    }
    for name in params:
        scalar, rows = values[name]
        case[name] = rows().float() if per_row else torch.tensor(scalar, dtype=torch.float64)
    if per_row_scope:
        case["history_start"] = torch.randint(0, length + 2, (ids_batch,), generator=g)
        case["output_start"] = torch.randint(0, length + 2, (ids_batch,), generator=g)
    else:
        case["history_start"], case["output_start"] = torch.tensor(3), torch.tensor(length // 2)
    if counts:
        num_slots = batch if slots is None else batch + 2
        if slots is not None:
            case["slots"] = torch.randperm(num_slots, generator=g)[:batch]
        # the tables as count_tokens_ left them at an earlier step
        case["counts"] = torch.zeros(num_slots, vocab, dtype=torch.int32)
        case["seen"] = torch.zeros(num_slots, (vocab + 31) // 32, dtype=torch.int32)
        earlier = torch.randint(0, vocab, (batch, 5), generator=g)
        ops.count_tokens_(case["counts"], case["seen"], earlier, case.get("slots"), None, 0, None, 0)
    return case


CASES = {
    **{
        f"{dtype}-{id_dtype}": make_case(1, dtype, id_dtype)
        for dtype in FLOATS
        for id_dtype in (torch.int64, torch.int32)
    },
    **{f"{dtype}-per-row": make_case(2, dtype, per_row=True, per_row_scope=True, slots=True) for dtype in FLOATS},
    "repetition-only": make_case(3, params=("repetition",)),
    "presence-frequency-only": make_case(4, params=("presence", "frequency"), per_row=True),
    "repetition-zero": {**make_case(5, params=()), "repetition": torch.tensor(0.0, dtype=torch.float64)},
    "repetition-inf": {**make_case(6, params=()), "repetition": torch.tensor(float("inf"), dtype=torch.float64)},
    "ids-shared-by-beams": make_case(7, batch=6, ids_batch=2, counts=False),
    "vocab-7": make_case(8, vocab=7, length=20, batch=3),
    "vocab-4096-batch-8": make_case(9, vocab=4096, batch=8, length=300, per_row=True),
    "empty-batch": make_case(10, batch=0, vocab=50),
    "no-ids": make_case(11, length=0),
    "one-token": make_case(12, vocab=1, batch=2, length=5),
    # the scores transposed in memory (row stride 1, token stride batch), as a strided view reaches the kernels
    "column-major": {**make_case(13, per_row=True, per_row_scope=True, slots=True), "column_major": torch.tensor(1)},
}


@functools.lru_cache(maxsize=None)
def simulated() -> dict:
    return run_program("penalty_sim", list(CASES.items()))


def penalty_args(case: Arrays):
    return [*param_args(case, "repetition"), *param_args(case, "presence"), *param_args(case, "frequency")]


def scope_args(case: Arrays):
    return [*param_args(case, "history_start", 0), *param_args(case, "output_start", 0)]


def expected_on_cuda(case: Arrays, cpu: torch.Tensor) -> torch.Tensor:
    """The reference's scores with CUDA's division, after checking that with the CPU's they are `cpu`, the CPU op's
    answer on the same inputs."""

    def value(name, default=None):
        rows, scalar = param_args(case, name, default)
        return rows if rows is not None else scalar

    kwargs = {name: value(name) for name in ("repetition", "presence", "frequency")}
    kwargs.update(history_start=value("history_start", 0), output_start=value("output_start", 0))
    assert_same_bits(reference.apply_penalties(case["scores"], case["ids"], **kwargs), cpu)
    return reference.apply_penalties(case["scores"], case["ids"], **kwargs, divide_by_reciprocal=True)


def history_of(case: Arrays, counts: torch.Tensor) -> Arrays:
    """The case with ids and scope equivalent to each row's counts table (penalty.h: an entry is 2 x output
    occurrences + 1 if seen in the prompt): prompt-only tokens, then each output token as often as it occurred."""
    entries = counts[case["slots"]] if "slots" in case else counts
    rows, starts = [], []
    for entry in entries.tolist():
        prompt = [t for t, e in enumerate(entry) if e == 1]
        output = [t for t, e in enumerate(entry) for _ in range(e // 2)]
        rows.append(prompt + output)
        starts.append(len(prompt))
    width = max(map(len, rows), default=0)
    ids = torch.tensor([row + [-1] * (width - len(row)) for row in rows], dtype=torch.int64).reshape(len(rows), width)
    return {**case, "ids": ids, "history_start": torch.tensor(0), "output_start": torch.tensor(starts)}


@pytest.mark.parametrize("name", CASES)
def test_apply_penalties(name):
    case, out = CASES[name], outputs_or_error(simulated()[name])
    cpu = ops.apply_penalties(case["scores"], case["ids"], *penalty_args(case), *scope_args(case))
    assert_same_bits(out["penalized"], expected_on_cuda(case, cpu))


@pytest.mark.parametrize("name", [name for name, case in CASES.items() if "counts" in case])
def test_count_tokens_and_apply_penalty_counts(name):
    case, out = CASES[name], outputs_or_error(simulated()[name])
    counts, seen = case["counts"].clone(), case["seen"].clone()
    ops.count_tokens_(counts, seen, case["ids"], case.get("slots"), *scope_args(case))
    assert torch.equal(out["counts"], counts)
    assert torch.equal(out["seen"], seen)
    cpu = case["scores"].clone()
    ops.apply_penalty_counts_(cpu, counts, seen, case.get("slots"), *penalty_args(case))
    assert_same_bits(out["penalized_from_counts"], expected_on_cuda(history_of(case, counts), cpu))
