"""pysample.warp_logits / warp_logits_ against transformers' warpers and against pysample.reference.

Inputs are random logits (a fixed seed per test, fresh ones with PYSAMPLE_TEST_SEED=random; a failure reports its
seed for replay), with rows of every hard kind: ties, -inf entries, NaN, all -inf, +inf, very peaked and
flat. Outputs are compared by the equality rule of tests/warp_compare.py: temperature and top-k bitwise, the
probability stages up to tokens within rounding of their threshold or tied with a token decided the other way.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from typing import Dict

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pysample
from pysample import reference

import warp_compare as W

DTYPES = [pytest.param(d, id=str(d).replace("torch.", "")) for d in W.DTYPES]

# Parameter values per stage, at and beyond the edges ("V" is the vocabulary size).
STAGE_VALUES = {
    "temperature": [0.05, 0.7, 1.0, 1.5, 100.0],
    "top_k": [0, 1, 2, 50, "V", "V+1"],
    "top_p": [0.0, 0.3, 0.9, 1.0],
    "min_p": [0.0, 0.05, 0.5, 1.0],
    "typical_p": [0.0, 0.2, 0.9, 0.999],
    "epsilon": [0.0, 1e-5, 3e-4, 0.1, 1.0],
    "eta": [0.0, 3e-4, 0.05, 1.0],
}
# One everyday value per stage, for the sweep over shapes.
EVERYDAY = {
    "temperature": 0.7,
    "top_k": 50,
    "top_p": 0.9,
    "min_p": 0.05,
    "typical_p": 0.9,
    "epsilon": 3e-4,
    "eta": 3e-4,
}
# (batch, vocab): big vocabularies only with small batches.
SHAPES = [(0, 17), (1, 1), (1, 17), (7, 1000), (64, 1000), (300, 17), (7, 32000), (1, 49152), (2, 128256), (1, 151936)]
CHAINS = [
    {"temperature": 0.7, "top_k": 50},
    {"temperature": 1.3, "top_k": 1},
    {"temperature": 0.7, "top_k": 50, "top_p": 0.9, "min_p": 0.05},
    {"temperature": 0.8, "top_k": 100, "top_p": 0.95, "min_p": 0.1, "typical_p": 0.9, "epsilon": 1e-4, "eta": 1e-3},
    {"top_p": 0.8, "typical_p": 0.5},
    {"min_p": 0.1, "epsilon": 3e-4, "eta": 3e-4},
    {"top_k": 5, "top_p": 0.0},
]
ONLY_EXACT_STAGES = ({"temperature"}, {"top_k"}, {"temperature", "top_k"})


def chain_id(params: Dict[str, object]) -> str:
    return "+".join(f"{k}={v}" for k, v in params.items())


def resolve(value, vocab: int):
    if value == "V":
        return vocab
    if value == "V+1":
        return vocab + 1
    return value


def device_op(device: str, inplace: bool = False):
    """warp_logits run on `device` (inputs and per-row tensors moved there), returning a CPU tensor."""

    def op(x: torch.Tensor, **kwargs) -> torch.Tensor:
        moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
        if inplace:
            y = x.to(device, copy=True)
            assert pysample.warp_logits_(y, **moved) is y
            return y.cpu()
        return pysample.warp_logits(x.to(device), **moved).cpu()

    return op


def inputs_for(batch: int, vocab: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Random ``(batch, vocab)`` logits of `dtype` whose rows cycle through every hard kind (W.ROW_KINDS)."""
    return W.make_logits(batch, vocab, dtype, seed)


def check_against_transformers(device: str, x: torch.Tensor, params, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """The op on `device` against transformers, stage by stage (see W.check_chain); on CUDA also against the CPU op."""
    out = W.check_chain(device_op(device), x, params, W.hf_stage, min_tokens_to_keep, what=f"[{device}]", device=device)
    if set(k for k, v in params.items() if v is not None) in ONLY_EXACT_STAGES and x.dtype == torch.float32:
        assert W.bitwise_equal(out, W.hf_chain(x, params)), "temperature/top-k must be bitwise equal to transformers"
    if device != "cpu":
        cpu = pysample.warp_logits(x, **params, min_tokens_to_keep=min_tokens_to_keep)
        last = [s for s in W.STAGES if params.get(s) is not None][-1]
        before = (
            pysample.warp_logits(
                x, **W.op_params(params, upto=W.STAGES[W.STAGES.index(last) - 1]), min_tokens_to_keep=min_tokens_to_keep
            )
            if len(params) > 1
            else x
        )
        report = W.check_stage(last, before, params[last], out, cpu, device=device)
        W.assert_report(report, x.numel(), x.dtype, "cuda vs cpu")
    return out


# ---- single stages -------------------------------------------------------------------------------------------


SINGLE_STAGE_CASES = [
    pytest.param(stage, value, keep, id=f"{stage}={value}-keep{keep}")
    for stage, values in STAGE_VALUES.items()
    for value in values
    for keep in ((1,) if stage in ("temperature", "top_k") else (1, 3, 20))
    if keep != 20 or value == values[1]  # min_tokens_to_keep beyond the vocabulary of 17, once per stage
]


@pytest.mark.parametrize("stage, value, min_tokens_to_keep", SINGLE_STAGE_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_single_stage_vs_transformers(device, seed, stage, value, min_tokens_to_keep, dtype):
    vocab = 17 if min_tokens_to_keep == 20 else 1000
    params = {stage: resolve(value, vocab)}
    x = inputs_for(2 * len(W.ROW_KINDS), vocab, dtype, seed)
    out = check_against_transformers(device, x, params, min_tokens_to_keep)
    assert out.shape == x.shape and out.dtype == x.dtype


# Every shape in float32; float16 and bfloat16 (transformers is slow there) skip the costliest middle ones.
HALF_SKIPPED_SHAPES = {(64, 1000), (1, 49152), (2, 128256)}
SHAPE_CASES = [
    pytest.param(batch, vocab, dtype, id=f"{str(dtype).replace('torch.', '')}-{batch}x{vocab}")
    for dtype in W.DTYPES
    for batch, vocab in SHAPES
    if dtype == torch.float32 or (batch, vocab) not in HALF_SKIPPED_SHAPES
]


@pytest.mark.parametrize("stage", list(EVERYDAY))
@pytest.mark.parametrize("batch, vocab, dtype", SHAPE_CASES)
def test_shapes_vs_transformers(device, seed, stage, batch, vocab, dtype):
    params = {stage: EVERYDAY[stage]}
    x = inputs_for(batch, vocab, dtype, seed)
    out = check_against_transformers(device, x, params)
    assert out.shape == (batch, vocab) and out.dtype == dtype


@pytest.mark.parametrize("vocab", [17, 1000])
def test_top_k_edges_are_exact(seed, vocab):
    """k = 0 and k >= V keep everything; k = 1 keeps the maximum and its ties; bitwise as transformers."""
    x = inputs_for(12, vocab, torch.float32, seed)
    assert W.bitwise_equal(pysample.warp_logits(x, top_k=0), x)
    assert W.bitwise_equal(pysample.warp_logits(x, top_k=vocab), x)
    assert W.bitwise_equal(pysample.warp_logits(x, top_k=vocab + 1), x)
    assert W.bitwise_equal(pysample.warp_logits(x, top_k=10**12), x)
    one = pysample.warp_logits(x, top_k=1)
    assert W.bitwise_equal(one, W.hf_stage("top_k", x, 1))
    finite = W.finite_softmax_rows(x)
    kept = one[finite] > -math.inf
    assert torch.equal(kept, x[finite] == x[finite].amax(-1, keepdim=True))


@pytest.mark.parametrize("params", [{"top_p": 0.3}, {"top_p": 0.9}, {"typical_p": 0.5}])
def test_crowded_crossing_bin(device, seed, params):
    """Top-p and typical decoding where the bin their mass crosses in holds nearly the whole row (W.crowded_rows): as
    transformers."""
    check_against_transformers(device, W.crowded_rows(seed), params)


@pytest.mark.parametrize(
    "params",
    [{"top_p": 0.9}, {"top_p": 0.5, "typical_p": 0.9}, {"typical_p": 0.9}],
    ids=["top_p", "top_p+typical_p", "typical_p"],
)
@pytest.mark.parametrize("min_tokens_to_keep", [1, 700])
def test_mass_away_from_the_sample(device, seed, params, min_tokens_to_keep):
    """Rows whose mass lies where the CPU kernel's sample of the row mostly does not look (W.unsampled_mass_rows), and
    min_tokens_to_keep beyond the tokens near the crossing: as transformers."""
    check_against_transformers(device, W.unsampled_mass_rows(seed), params, min_tokens_to_keep)


AVX512_OFF_SCRIPT = """
import sys, torch, pysample
x = torch.load(sys.argv[1])
torch.save([pysample.warp_logits(x, **params) for params in eval(sys.argv[2])], sys.argv[3])
"""


def test_same_output_without_avx512(tmp_path, seed):
    """The kernel's loops written for AVX-512 give what the portable ones do (a process with ATEN_CPU_CAPABILITY=avx2
    runs the portable ones; on a CPU without AVX-512 both are). Rows of 30001 tokens: not a whole number of vectors."""
    x = torch.cat([inputs_for(40, 30001, torch.float32, seed), W.unsampled_mass_rows(seed, 30001)])
    chains = [
        {"top_p": 0.9},
        {"typical_p": 0.9},
        {"top_p": 0.95, "typical_p": 0.5},
        {"top_k": 2000, "top_p": 0.9},
        {"eta": 3e-4},
        {"top_k": 3000, "epsilon": 3e-4},
    ]
    torch.save(x, tmp_path / "x.pt")
    env = dict(os.environ, ATEN_CPU_CAPABILITY="avx2")
    subprocess.run(
        [sys.executable, "-c", AVX512_OFF_SCRIPT, str(tmp_path / "x.pt"), repr(chains), str(tmp_path / "out.pt")],
        env=env,
        check=True,
        timeout=300,
    )
    portable = torch.load(tmp_path / "out.pt")
    for params, expected in zip(chains, portable):
        assert W.bitwise_equal(pysample.warp_logits(x, **params), expected), params


@pytest.mark.parametrize("k", [1, 7, 50])
def test_top_k_by_blocks_on_every_row_kind(device, seed, k):
    """Small k on long rows searches only the blocks whose maximum reaches the k-th largest block maximum (a block's
    maximum from its float maximum and a NaN flag, then its tokens tested 8 at a time): every row kind, including a
    NaN, +inf, -0.0 / +0.0 ties and -inf entries, bitwise as transformers."""
    x = inputs_for(2 * len(W.ROW_KINDS), 40000, torch.float32, seed)
    g = torch.Generator().manual_seed(seed)
    zeros = torch.randint(0, 40000, (4,), generator=g)
    x[0, zeros[:2]], x[0, zeros[2:]] = 50.0, 0.0  # ties at the top...
    x[1, zeros[:2]], x[1, zeros[2:]] = 0.0, -0.0  # ...and signed zeros as the largest values of a -inf row
    x[1, x[1] != 0] = -math.inf
    check_against_transformers(device, x, {"top_k": k})


def test_top_k_ignores_min_tokens_to_keep(seed):
    """warp_logits applies min_tokens_to_keep to the probability stages only (the drop-in class folds it in)."""
    x = inputs_for(11, 1000, torch.float32, seed)
    assert W.bitwise_equal(pysample.warp_logits(x, top_k=2, min_tokens_to_keep=5), pysample.warp_logits(x, top_k=2))


# ---- chains --------------------------------------------------------------------------------------------------


CHAIN_SHAPES = (
    [pytest.param(11, 1000, 1, dtype, id=f"{str(dtype).replace('torch.', '')}-11x1000-keep1") for dtype in W.DTYPES]
    + [pytest.param(11, 1000, 4, dtype, id=f"{str(dtype).replace('torch.', '')}-11x1000-keep4") for dtype in W.DTYPES]
    + [pytest.param(3, 32000, 1, torch.float32, id="float32-3x32000-keep1")]
)


@pytest.mark.parametrize("params", CHAINS, ids=[chain_id(c) for c in CHAINS])
@pytest.mark.parametrize("batch, vocab, min_tokens_to_keep, dtype", CHAIN_SHAPES)
def test_chain_vs_transformers(device, seed, params, batch, vocab, min_tokens_to_keep, dtype):
    x = inputs_for(batch, vocab, dtype, seed)
    check_against_transformers(device, x, params, min_tokens_to_keep)


@pytest.mark.parametrize("params", CHAINS, ids=[chain_id(c) for c in CHAINS])
@pytest.mark.parametrize("dtype", DTYPES)
def test_chain_vs_reference(seed, params, dtype):
    x = inputs_for(22, 1000, dtype, seed)
    out = W.check_chain(device_op("cpu"), x, params, W.ref_stage, min_tokens_to_keep=2, what="[reference]")
    # The reference's own chain is its stages one after the other.
    staged = x
    for stage in W.STAGES:
        if params.get(stage) is not None:
            staged = W.ref_stage(stage, staged, params[stage], -math.inf, 2)
    assert W.bitwise_equal(reference.warp_logits(x, **params, min_tokens_to_keep=2), staged)
    assert out.shape == x.shape


@pytest.mark.parametrize("filter_value", [-1e4, 0.0, -math.inf, math.inf], ids=["-1e4", "0", "-inf", "inf"])
@pytest.mark.parametrize("params", CHAINS[2:4], ids=[chain_id(c) for c in CHAINS[2:4]])
@pytest.mark.parametrize("dtype", DTYPES)
def test_filter_value(device, seed, params, filter_value, dtype):
    """Removed tokens get filter_value; later stages still see them as removed (probability 0), as the reference."""
    x = inputs_for(22, 1000, dtype, seed)
    op = device_op(device)
    with_inf = op(x, **params)
    out = op(x, **params, filter_value=filter_value)
    scaled = x if params.get("temperature") is None else W.hf_stage("temperature", x, params["temperature"])
    removed = W.differing(with_inf, scaled)  # removed tokens that were not already -inf
    changed = W.differing(out, scaled)
    fv = torch.tensor(filter_value, dtype=dtype)
    assert bool((out[removed] == fv).all())
    assert not bool((changed & ~removed & ~(scaled == -math.inf)).any())
    assert bool((out[changed] == fv).all())
    # The reference has the same semantics.
    ref = reference.warp_logits(x, **params, filter_value=filter_value)
    ref_inf = reference.warp_logits(x, **params)
    ref_removed = W.differing(ref_inf, scaled)
    assert bool((ref[ref_removed] == fv).all())
    assert not bool((W.differing(ref, scaled) & ~ref_removed & ~(scaled == -math.inf)).any())


@pytest.mark.parametrize("stage", [s for s in STAGE_VALUES])
@pytest.mark.parametrize("dtype", DTYPES)
def test_reference_is_transformers(seed, stage, dtype):
    """pysample.reference computes what transformers computes: the same bits, except which of several tokens with
    equal scores sit on either side of a boundary (its sorts are stable, transformers' are not)."""
    x = inputs_for(len(W.ROW_KINDS), 1000, dtype, seed)
    for value in STAGE_VALUES[stage]:
        value = resolve(value, x.shape[1])
        for keep in (1, 3):
            ours = W.ref_stage(stage, x, value, -math.inf, keep)
            theirs = W.hf_stage(stage, x, value, -math.inf, keep)
            report = W.check_stage(stage, x, value, ours, theirs)
            W.assert_report(report, x.numel(), dtype, f"reference {stage}={value} keep={keep}")
            assert report.rounding == 0, "the reference must differ from transformers by ties only"


# ---- per-row parameters --------------------------------------------------------------------------------------

# Mixed values per row, including each stage's disabled equivalent (top_k 0, min_p/epsilon/eta 0, temperature 1).
ROW_VALUES = {
    "temperature": [0.5, 1.0, 2.0, 0.7, 1e-2],
    "top_k": [0, 1, 5, "V", "V+1", 50],
    "top_p": [1.0, 0.0, 0.5, 0.9, 0.95],
    "min_p": [0.0, 0.1, 1.0, 0.05],
    "typical_p": [0.999, 0.5, 0.9, 0.0],
    "epsilon": [0.0, 1e-4, 0.5],
    "eta": [0.0, 1e-3, 0.5],
}
ROW_CASES = [[stage] for stage in ROW_VALUES] + [["temperature", "top_k", "top_p", "min_p"], list(ROW_VALUES)]


def row_tensor(stage: str, batch: int, vocab: int, offset: int = 0) -> torch.Tensor:
    values = [resolve(v, vocab) for v in ROW_VALUES[stage]]
    picked = [values[(r + offset) % len(values)] for r in range(batch)]
    return torch.tensor(picked, dtype=torch.int64 if stage == "top_k" else torch.float32)


@pytest.mark.parametrize("stages", ROW_CASES, ids=["+".join(s) if len(s) < 7 else "all" for s in ROW_CASES])
@pytest.mark.parametrize("dtype", DTYPES)
def test_per_row_equals_scalar_row_by_row(device, seed, stages, dtype):
    batch, vocab = 15, 500
    rows = {s: row_tensor(s, batch, vocab, offset=i) for i, s in enumerate(stages)}
    x = inputs_for(batch, vocab, dtype, seed)
    op = device_op(device)
    out = op(x, **rows, min_tokens_to_keep=2)
    for r in range(batch):
        scalars = {s: t[r].item() for s, t in rows.items()}
        assert W.bitwise_equal(out[r : r + 1], op(x[r : r + 1], **scalars, min_tokens_to_keep=2)), f"row {r}: {scalars}"
    # And the per-row values against transformers, stage by stage.
    check_against_transformers(device, x, rows, min_tokens_to_keep=2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_per_row_against_reference(seed, dtype):
    batch, vocab = 15, 500
    rows = {s: row_tensor(s, batch, vocab, offset=i) for i, s in enumerate(ROW_VALUES)}
    x = inputs_for(batch, vocab, dtype, seed)
    W.check_chain(device_op("cpu"), x, rows, W.ref_stage, min_tokens_to_keep=1, what="[reference]")


def test_zero_dim_tensor_equals_scalar(device, seed):
    params = {
        "temperature": 0.7,
        "top_k": 40,
        "top_p": 0.9,
        "min_p": 0.05,
        "typical_p": 0.95,
        "epsilon": 1e-5,
        "eta": 1e-4,
    }
    x = inputs_for(11, 1000, torch.float32, seed)
    op = device_op(device)
    as_tensors = {k: torch.tensor(v) for k, v in params.items()}
    # A 0-d tensor is read as float32 (int64 for top_k): compare with the scalars it holds.
    scalars = {k: t.to(torch.int64 if k == "top_k" else torch.float32).item() for k, t in as_tensors.items()}
    assert W.bitwise_equal(op(x, **as_tensors), op(x, **scalars))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16], ids=str)
def test_per_row_tensor_of_other_float_dtype(seed, dtype):
    """A per-row tensor of another floating dtype is used as its float32 values."""
    x = inputs_for(6, 300, torch.float32, seed)
    top_p = torch.tensor([0.9, 0.5, 1.0, 0.0, 0.75, 0.3], dtype=dtype)
    assert W.bitwise_equal(pysample.warp_logits(x, top_p=top_p), pysample.warp_logits(x, top_p=top_p.float()))


def test_per_row_top_k_int32(seed):
    x = inputs_for(6, 300, torch.float32, seed)
    k = torch.tensor([0, 1, 3, 300, 301, 7], dtype=torch.int32)
    assert W.bitwise_equal(pysample.warp_logits(x, top_k=k), pysample.warp_logits(x, top_k=k.long()))


@pytest.mark.parametrize(
    "stage, disabled", [("temperature", 1.0), ("top_k", 0), ("min_p", 0.0), ("epsilon", 0.0), ("eta", 0.0)]
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_disabled_values_change_nothing(device, seed, stage, disabled, dtype):
    """Each stage's disabled value leaves the logits bitwise unchanged, alone or inside a chain, scalar or per row."""
    x = inputs_for(22, 1000, dtype, seed)
    op = device_op(device)
    assert W.bitwise_equal(op(x, **{stage: disabled}), x)
    chain = {"temperature": 0.9, "top_k": 200, "top_p": 0.95, "min_p": 0.02}
    with_disabled = dict(chain, **{stage: disabled})
    without = {k: v for k, v in chain.items() if k != stage}
    assert W.bitwise_equal(op(x, **with_disabled), op(x, **without))
    rows = torch.full((x.shape[0],), disabled, dtype=torch.int64 if stage == "top_k" else torch.float32)
    assert W.bitwise_equal(op(x, **dict(chain, **{stage: rows})), op(x, **without))


# ---- in place, strides, poison -------------------------------------------------------------------------------

POISON = 1234.5


@pytest.mark.parametrize("params", CHAINS[:4], ids=[chain_id(c) for c in CHAINS[:4]])
@pytest.mark.parametrize("dtype", DTYPES)
def test_inplace_equals_out_of_place(device, seed, params, dtype):
    x = inputs_for(11, 1000, dtype, seed)
    before = x.clone()
    out = device_op(device)(x, **params)
    assert W.bitwise_equal(x, before), "out-of-place call modified its input"
    assert W.bitwise_equal(device_op(device, inplace=True)(x, **params), out)
    # In place inside a poisoned buffer: a row-strided view, the columns around it must stay poisoned.
    buffer = torch.full((x.shape[0], x.shape[1] + 9), POISON, dtype=dtype, device=device)
    view = buffer[:, 4 : 4 + x.shape[1]]
    view.copy_(x)
    moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in params.items()}
    assert pysample.warp_logits_(view, **moved) is view
    assert W.bitwise_equal(view.cpu(), out)
    assert bool((buffer[:, :4] == POISON).all()) and bool((buffer[:, 4 + x.shape[1] :] == POISON).all())


@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_inputs(device, seed, dtype):
    params = {"temperature": 0.7, "top_k": 30, "top_p": 0.9, "min_p": 0.05}
    x = inputs_for(12, 777, dtype, seed).to(device)
    expected = pysample.warp_logits(x, **params)
    # Row-strided slices: every other row, and a column window of a wider tensor.
    assert W.bitwise_equal(pysample.warp_logits(x[::2], **params).cpu(), expected[::2].cpu())
    wide = torch.full((12, 800), POISON, dtype=dtype, device=device)
    wide[:, 5:782] = x
    assert W.bitwise_equal(pysample.warp_logits(wide[:, 5:782], **params).cpu(), expected.cpu())
    # Transposed storage (stride(1) != 1): handled, out of place and in place.
    transposed = x.t().contiguous().t()
    assert transposed.stride(1) != 1
    out = pysample.warp_logits(transposed, **params)
    assert W.bitwise_equal(out.cpu(), expected.cpu()) and out.is_contiguous()
    storage = torch.full((777 + 3, 12), POISON, dtype=dtype, device=device)
    view = storage[:777].t()
    view.copy_(x)
    assert pysample.warp_logits_(view, **params) is view
    assert W.bitwise_equal(view.cpu(), expected.cpu())
    assert bool((storage[777:] == POISON).all())
    # A non-contiguous per-row tensor.
    top_p = torch.tensor([0.9, 0.0] * 12, device=device)[::2]
    assert W.bitwise_equal(pysample.warp_logits(x, top_p=top_p).cpu(), pysample.warp_logits(x, top_p=0.9).cpu())


def test_out_of_place_on_overlapping_memory():
    """An expanded (stride 0) input is fine out of place: every row is the same row."""
    row = torch.randn(1, 100)
    out = pysample.warp_logits(row.expand(8, 100), temperature=2.0, top_k=3)
    assert W.bitwise_equal(out, pysample.warp_logits(row, temperature=2.0, top_k=3).expand(8, 100))


def test_inplace_on_overlapping_memory_raises():
    """Rows sharing memory (expand) would be warped once per row: refused, as torch's own in-place ops do."""
    row = torch.tensor([[1.0, 2.0, 4.0]])
    with pytest.raises((RuntimeError, ValueError)):
        pysample.warp_logits_(row.expand(4, 3), temperature=2.0)
    assert W.bitwise_equal(row, torch.tensor([[1.0, 2.0, 4.0]]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("vocab", [0, 17])
def test_empty(device, dtype, vocab):
    x = torch.empty(0, vocab, dtype=dtype, device=device)
    params = {"temperature": 0.5, "top_k": 3, "top_p": 0.5, "min_p": 0.1, "typical_p": 0.5, "epsilon": 0.1, "eta": 0.1}
    out = pysample.warp_logits(x, **params)
    assert out.shape == (0, vocab) and out.dtype == dtype
    assert pysample.warp_logits_(x, **params) is x
    rows = {k: torch.empty(0, dtype=torch.int64 if k == "top_k" else torch.float32, device=device) for k in params}
    assert pysample.warp_logits(x, **rows).shape == (0, vocab)


def test_empty_vocab_rows():
    """A (batch, 0) input: nothing to warp, no error."""
    x = torch.empty(3, 0)
    assert pysample.warp_logits(x, top_k=1, top_p=0.5, min_p=0.5, typical_p=0.5, epsilon=0.5, eta=0.5).shape == (3, 0)


# ---- property-based: small rows with many ties ---------------------------------------------------------------

_VALUES = st.sampled_from([-math.inf, -3.0, -1.0, -0.5, 0.0, 0.0, 0.25, 1.0, 1.0, 2.0, 5.0, 30.0])


@st.composite
def _cases(draw):
    batch = draw(st.integers(1, 4))
    vocab = draw(st.integers(1, 24))
    rows = [draw(st.lists(_VALUES, min_size=vocab, max_size=vocab)) for _ in range(batch)]
    params = {}
    if draw(st.booleans()):
        params["temperature"] = draw(st.sampled_from([0.5, 1.0, 3.0]))
    if draw(st.booleans()):
        params["top_k"] = draw(st.integers(0, vocab + 2))
    for stage, values in (
        ("top_p", [0.0, 0.3, 0.9, 1.0]),
        ("min_p", [0.0, 0.2, 1.0]),
        ("typical_p", [0.0, 0.5, 0.95, 0.999]),
        ("epsilon", [0.0, 0.05, 0.5]),
        ("eta", [0.0, 0.05, 0.5]),
    ):
        if draw(st.booleans()):
            params[stage] = draw(st.sampled_from(values))
    keep = draw(st.integers(1, 4))
    return torch.tensor(rows, dtype=torch.float32), params, keep


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cases())
def test_small_rows_property(case):
    x, params, keep = case
    # Against transformers (the reference where transformers rejects a value, e.g. top_k=0, epsilon=0).
    out = W.check_chain(device_op("cpu"), x, params, W.hf_stage, keep, what="[property]")
    assert out.shape == x.shape


# ---- min-p and epsilon at their thresholds: bitwise on float32 -------------------------------------------------


def threshold_rows(stage: str, value: float, batch: int, vocab: int, seed: int, span: int = 12) -> torch.Tensor:
    """``(batch, vocab)`` float32 logits with 2 * span + 1 tokens per row placed at the threshold of `stage` and at
    1..span float steps on either side of it (for epsilon, of the probability's log), over a background far below.
    The top token is 0, so that x - max is the token's value."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, vocab, generator=g, dtype=torch.float64) * 2 - 14
    x[:, 0] = 0.0
    steps = list(range(-span, span + 1))
    placed = torch.randperm(vocab - 1, generator=g)[: len(steps)] + 1
    v32 = float(torch.tensor(value, dtype=torch.float32))  # torch rounds the Python float to float32
    if stage == "min_p":
        center = torch.full((batch,), math.log(v32), dtype=torch.float64)
    else:  # the placed tokens' own probabilities are part of the normaliser: p = v32 exactly at the center
        background = x.exp().sum(-1) - x[:, placed].exp().sum(-1)
        center = torch.log(v32 * background / (1 - len(steps) * v32))
    center = center.float()
    for i, k in enumerate(steps):
        v = center.clone()
        for _ in range(abs(k)):
            v = torch.nextafter(v, torch.full_like(v, math.copysign(math.inf, k)))
        x[:, placed[i]] = v.double()
    return x.float()


def log_space_keeps(stage: str, value: float, x: torch.Tensor) -> torch.Tensor:
    """The decision in log space without torch's softmax: x - max >= log(min_p), or >= log(epsilon) + log(sum)."""
    shifted = x - x.amax(-1, keepdim=True)
    log_sum = 0.0 if stage == "min_p" else torch.logsumexp(x.double(), -1, keepdim=True)
    return shifted >= (math.log(value) + log_sum).float() if stage != "min_p" else shifted >= math.log(value)


# 1e-26 is just above the kernel's smallest threshold decided in log space (2^-90), 1e-30 below it.
THRESHOLD_CASES = [
    ("min_p", 0.05),
    ("min_p", 0.3),
    ("min_p", 1.0),
    ("min_p", 1e-26),
    ("min_p", 1e-30),
    ("epsilon", 3e-4),
    ("epsilon", 2e-4),
    ("epsilon", 0.01),
    ("epsilon", 1e-26),
    ("epsilon", 1e-30),
]


@pytest.mark.parametrize("stage, value", THRESHOLD_CASES)
@pytest.mark.parametrize("vocab", [64, 4096])
@pytest.mark.parametrize("min_tokens_to_keep", [1, 3])
def test_min_p_epsilon_at_threshold_bitwise(seed, stage, value, vocab, min_tokens_to_keep):
    """Tokens at and a few float steps around the min-p / epsilon threshold are decided as transformers decides
    them, on the whole row and after top-k (the kernel's compacted path), with and without temperature."""
    x = threshold_rows(stage, value, 16, vocab, seed)
    chains = ({stage: value}, {"top_k": 40, stage: value}, {"temperature": 1.0, "top_k": vocab // 2, stage: value})
    for params in chains:
        expected = W.hf_chain(x, params, min_tokens_to_keep=min_tokens_to_keep)
        out = pysample.warp_logits(x, **params, min_tokens_to_keep=min_tokens_to_keep)
        assert W.bitwise_equal(out, expected), params


@pytest.mark.parametrize("stage, value", [("min_p", 0.05), ("min_p", 1.0), ("epsilon", 3e-4), ("epsilon", 0.01)])
def test_threshold_rows_need_torch_softmax(stage, value):
    """On these rows a decision in log space differs from transformers (torch's exp and sums round), so the
    bitwise test above fails without the kernel's fallback to torch's softmax."""
    x = threshold_rows(stage, value, 64, 4096, seed=0)
    kept = W.hf_stage(stage, x, value) > -math.inf
    assert bool((log_space_keeps(stage, value, x) != kept).any())
    assert W.bitwise_equal(pysample.warp_logits(x, **{stage: value}), W.hf_stage(stage, x, value))


def test_min_p_epsilon_edges_bitwise(seed):
    """min_p 0 and 1, a min_p * top or epsilon in the subnormal range, and rows with only a few finite tokens."""
    x = W.make_logits(44, 1000, torch.float32, seed, W.FINITE_KINDS)
    few = torch.full((4, 1000), -math.inf)
    few[0, :1] = 0.5
    few[1, :2] = torch.tensor([1.0, -120.0])  # the second token's probability underflows to 0
    few[2, :3] = torch.tensor([0.0, 0.0, -1e-7])
    few[3, 10:15] = torch.tensor([3.0, 2.0, 1.0, -80.0, -90.0])
    x = torch.cat([x, few])
    for stage, values in (("min_p", [0.0, 1.0, 1e-38, 1e-44, 0.5]), ("epsilon", [1e-40, 1e-30, 0.9, 0.999])):
        for value in values:
            for keep in (1, 2):
                expected = W.hf_stage(stage, x, value, min_tokens_to_keep=keep)
                out = pysample.warp_logits(x, **{stage: value}, min_tokens_to_keep=keep)
                report = W.check_stage(stage, x, value, out, expected)
                W.assert_report(report, x.numel(), what=f"{stage}={value} keep={keep}")
                assert report.ties == 0 or (stage == "min_p" and keep > 1), report.examples


# ---- regressions: minimal cases of op bugs these tests found ------------------------------------------------


def test_regression_top_k_nan_kth_value():
    """When the k-th largest value is NaN, nothing is below it (x < NaN is false): transformers keeps every token."""
    for row, k in (([math.nan, 1.0, 2.0], 1), ([math.nan, math.nan, 1.0, 2.0], 2), ([math.nan, math.nan, 1.0, 2.0], 3)):
        x = torch.tensor([row])
        assert W.bitwise_equal(pysample.warp_logits(x, top_k=k), W.hf_stage("top_k", x, k)), (row, k)


@pytest.mark.parametrize("stage, value", [("eta", 0.05), ("eta", 0.3), ("typical_p", 0.9), ("typical_p", 0.5)])
def test_regression_entropy_with_zero_probability_tokens(stage, value):
    """The entropy (typical, eta) skips tokens of probability 0 (-inf logits, or logits more than ~104 below the
    max) wherever they sit in the row: a vectorized conditional sum once got it wrong (GCC 12, AVX2 clone)."""
    base = [0.3, -0.2, 1.1, 0.5, -1.0, 0.8, 0.1, -0.4, 0.9, 0.2, -0.7, 0.6, 0.0, 1.5, -0.3, 0.4]
    for low in (-math.inf, -200.0, -104.0):
        for count in (1, 4, 8, 12):
            x = torch.tensor([base])
            x[0, :count] = low
            expected = W.hf_stage(stage, x, value) if low != -math.inf or stage != "eta" else reference.eta(x, value)
            assert W.bitwise_equal(pysample.warp_logits(x, **{stage: value}), expected), (low, count)
    for vocab in (16, 17, 33):
        for position in range(vocab):
            x = torch.zeros(1, vocab)
            x[0, position] = 200.0  # every other probability underflows to 0
            out = pysample.warp_logits(x, **{stage: value})
            assert int((out > -math.inf).sum()) == 1, (vocab, position)


@pytest.mark.parametrize("dtype, gap", [(torch.float16, 25.0), (torch.bfloat16, 100.0)], ids=["float16", "bfloat16"])
def test_regression_half_precision_top_p_one_underflow(dtype, gap):
    """top_p=1 removes the tokens whose probability is 0 in the logits' dtype, as transformers' softmax rounds."""
    x = torch.zeros(1, 1000, dtype=dtype)
    x[0, 0] = gap  # the other probabilities are 0 in `dtype`, not in float32
    expected = W.hf_stage("top_p", x, 1.0)
    assert int((expected > -math.inf).sum()) == 1
    assert W.bitwise_equal(pysample.warp_logits(x, top_p=1.0), expected)


@pytest.mark.parametrize(
    "params",
    [
        {"top_p": 0.5},
        {"typical_p": 0.5},
        {"top_k": 2, "top_p": 0.5},
        {"top_k": 2, "typical_p": 0.5},
        {"top_p": 0.3, "typical_p": 0.5},
    ],
    ids=chain_id,
)
def test_regression_min_tokens_to_keep_above_active_tokens(params):
    """min_tokens_to_keep larger than the tokens still active keeps them all (it once removed every token)."""
    x = torch.tensor([[1.0, 2.0, 3.0, 0.5, 0.2]])
    for keep in (3, 5, 7):
        expected = W.hf_chain(x, params, min_tokens_to_keep=keep)
        assert W.bitwise_equal(pysample.warp_logits(x, **params, min_tokens_to_keep=keep), expected), keep


@pytest.mark.parametrize("finite", [0, 5, 49, 50, 60, 5000])
@pytest.mark.parametrize(
    "params", [{"top_k": 50}, {"top_k": 50, "top_p": 0.9}, {"top_p": 0.9}, {"min_p": 0.05}], ids=chain_id
)
def test_regression_rows_mostly_minus_inf(seed, finite, params):
    """A row an earlier filter already masked: 128256 tokens, `finite` of them finite, the rest -inf (ties). Top-k
    with fewer finite tokens than k removes nothing; the -inf ties once cost a sort of the whole row. (Which of the
    tokens tied at a top-p boundary stay is transformers' sort order, unspecified: check_chain allows it.)"""
    g = torch.Generator().manual_seed(seed)
    x = torch.full((2, 128256), -math.inf)
    for r in range(2):
        x[r, torch.randperm(128256, generator=g)[:finite]] = torch.randn(finite, generator=g) * 3
    x[1, : finite // 2] = 1.5  # ties among the finite ones too
    out = W.check_chain(pysample.warp_logits, x, params, W.hf_stage, 1, what="[cpu]")
    if params.keys() == {"top_k"}:
        assert W.bitwise_equal(out, W.hf_chain(x, params))


def test_typical_p_one_keeps_every_token():
    """typical_p = 1 is the stage turned off (generate() adds no typical warper then), even where the rounded mass
    reaches 1 before the last tokens (a peaked row: found by tests/test_fuzz.py)."""
    x = torch.tensor(
        [
            [
                -33.7752,
                -50.8779,
                16.9995,
                23.8053,
                17.9652,
                -46.6529,
                -10.2408,
                55.5902,
                14.0429,
                -17.5649,
                -5.2019,
                5.5043,
                41.6810,
                47.5900,
                28.3890,
                -25.3103,
                27.9548,
            ]
        ]
    )
    for dtype in W.DTYPES:
        assert W.bitwise_equal(pysample.warp_logits(x.to(dtype), typical_p=1.0), x.to(dtype))
        assert W.bitwise_equal(pysample.warp_logits(x.to(dtype), typical_p=torch.ones(1)), x.to(dtype))
