"""apply_token_bitmask_ (xgrammar's apply_token_bitmask_inplace) against pysample.reference: every logits dtype,
vocab_size within and below the row, bitmasks wider and narrower than the row, indices, strides, NaN and inf,
torch.compile, gradients, and every bad argument named."""

from __future__ import annotations

import math

import pytest
import torch

import pysample
from pysample import reference

from conftest import CUDA_SKIP
from op_inputs import random_bitmask
from test_penalties import make_scores
from warp_compare import assert_same_bits

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
INF = math.inf


def words_for(vocab: int) -> int:
    return (vocab + 31) // 32


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("allowed", [0.1, 0.9, 1.0])
@pytest.mark.parametrize("batch, vocab", [(9, 1000), (3, 128256)])
def test_matches_reference(device, seed, dtype, allowed, batch, vocab):
    logits = make_scores(batch, vocab, dtype, seed, device)
    bitmask = random_bitmask(batch, words_for(vocab), allowed, seed).to(device)
    expected = reference.apply_token_bitmask(logits.cpu(), bitmask.cpu())
    out = pysample.apply_token_bitmask_(logits, bitmask)
    assert out is logits
    assert_same_bits(out.cpu(), expected)


def test_many_rows_in_parallel(device, seed):
    logits = make_scores(33, 128256, torch.float32, seed, device)
    bitmask = random_bitmask(33, words_for(128256), 0.1, seed).to(device)
    expected = reference.apply_token_bitmask(logits.cpu(), bitmask.cpu())
    assert_same_bits(pysample.apply_token_bitmask_(logits, bitmask).cpu(), expected)


@pytest.mark.parametrize("vocab_size", [0, 1, 31, 32, 33, 64, 70, 100])
def test_tokens_past_vocab_size_are_untouched(device, vocab_size):
    logits = torch.zeros(4, 100, device=device)
    bitmask = torch.zeros(4, words_for(vocab_size), dtype=torch.int32, device=device)  # every token masked
    pysample.apply_token_bitmask_(logits, bitmask, vocab_size=vocab_size)
    assert bool((logits[:, :vocab_size] == -INF).all()) and bool((logits[:, vocab_size:] == 0).all())


def test_bitmask_wider_than_the_row(device, seed):
    """The default vocab_size is the row's: the bitmask's words past it are not read as tokens."""
    logits = make_scores(5, 100, torch.float32, seed, device)
    bitmask = random_bitmask(5, 10, 0.3, seed).to(device)
    expected = reference.apply_token_bitmask(logits.cpu(), bitmask.cpu())
    assert_same_bits(pysample.apply_token_bitmask_(logits, bitmask).cpu(), expected)
    everything = torch.zeros(5, 100, device=device)
    pysample.apply_token_bitmask_(everything, torch.zeros(5, 10, dtype=torch.int32, device=device))
    assert bool((everything == -INF).all())


def test_logits_wider_than_the_bitmask(device):
    """The default vocab_size is 32 * words: tokens past it (a model's padded vocabulary) are untouched."""
    logits = torch.zeros(3, 100, device=device)
    pysample.apply_token_bitmask_(logits, torch.zeros(3, 2, dtype=torch.int32, device=device))
    assert bool((logits[:, :64] == -INF).all()) and bool((logits[:, 64:] == 0).all())


@pytest.mark.parametrize(
    "indices",
    [[3], [4, 0, 2], (1, 1, 1), [0, 5, 0, 5, 2], [], "tensor", "int32", "repeated-tensor"],
    ids=str,
)
def test_indices(device, seed, indices):
    """Only the listed rows, row r by bitmask row r; a repeated index masks its row once (the same result)."""
    logits = make_scores(6, 300, torch.float32, seed, device)
    bitmask = random_bitmask(6, words_for(300), 0.2, seed).to(device)
    if indices == "tensor":
        indices = torch.tensor([5, 1], device=device)
    elif indices == "int32":
        indices = torch.tensor([2, 0, 3], dtype=torch.int32, device=device)
    elif indices == "repeated-tensor":
        indices = torch.tensor([1, 1, 4, 1], device=device)
    listed = indices.tolist() if isinstance(indices, torch.Tensor) else list(indices)
    expected = reference.apply_token_bitmask(logits.cpu(), bitmask.cpu(), listed)
    assert_same_bits(pysample.apply_token_bitmask_(logits, bitmask, indices).cpu(), expected)
    unlisted = [r for r in range(6) if r not in listed]
    assert_same_bits(logits[unlisted].cpu(), make_scores(6, 300, torch.float32, seed)[unlisted])


@pytest.mark.parametrize("layout", ["column-slice", "column-major", "strided-bitmask", "transposed-bitmask"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_strided_logits_and_bitmask(device, seed, layout, dtype):
    batch, vocab = 5, 250
    storage = make_scores(batch, vocab + 7, dtype, seed, device)
    logits = storage[:, 3 : 3 + vocab]
    if layout == "column-major":
        logits = make_scores(vocab, batch, dtype, seed, device).t()
    bitmask = random_bitmask(batch, 2 * words_for(vocab), 0.3, seed).to(device)
    if layout == "strided-bitmask":
        bitmask = bitmask[:, ::2]
    elif layout == "transposed-bitmask":
        bitmask = bitmask.t().contiguous().t()
    before = storage.clone()
    expected = reference.apply_token_bitmask(logits.cpu(), bitmask.cpu(), vocab_size=vocab - 3)
    pysample.apply_token_bitmask_(logits, bitmask, [4, 0, 2, 1, 3], vocab - 3)
    assert_same_bits(logits.cpu(), expected)
    if layout != "column-major":  # the storage around the slice is untouched
        assert_same_bits(storage[:, :3].cpu(), before[:, :3].cpu())
        assert_same_bits(storage[:, 3 + vocab :].cpu(), before[:, 3 + vocab :].cpu())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_nan_and_inf(device, dtype):
    """A masked token becomes -inf whatever it held (NaN, +inf); an allowed one keeps its bits (NaN, -0.0)."""
    values = [math.nan, INF, -INF, -0.0, 0.0, 1.5, math.nan, INF, -0.0, 2.0]
    logits = torch.tensor([values], dtype=dtype, device=device)
    bitmask = torch.tensor([[0b0000111111]], dtype=torch.int32, device=device)  # tokens 0-5 allowed
    pysample.apply_token_bitmask_(logits, bitmask)
    out = logits[0].cpu()
    assert out[0].isnan() and out[1] == INF and out[2] == -INF and torch.signbit(out[3]) and out[5] == 1.5
    assert bool((out[6:] == -INF).all())


def test_all_allowed_changes_nothing(device, seed):
    logits = make_scores(7, 1000, torch.float16, seed, device)
    before = logits.clone()
    pysample.apply_token_bitmask_(logits, torch.full((7, 40), -1, dtype=torch.int32, device=device))
    assert torch.equal(logits.view(torch.int16), before.view(torch.int16))


def test_raw_op(device, seed):
    logits = make_scores(4, 100, torch.float32, seed, device)
    bitmask = random_bitmask(4, 4, 0.5, seed).to(device)
    expected = pysample.apply_token_bitmask_(logits.clone(), bitmask, [2, 3], 90)
    assert torch.ops.pysample.apply_token_bitmask_(logits, bitmask, torch.tensor([2, 3], device=device), 90) is None
    assert_same_bits(logits, expected)


def test_gradient_is_masked_fills(seed):
    """Where autograd records the change, the masked tokens get no gradient, the others it unchanged."""
    x = torch.randn(4, 100, generator=torch.Generator().manual_seed(seed), requires_grad=True)
    bitmask = random_bitmask(4, 4, 0.5, seed)
    out = pysample.apply_token_bitmask_(x * 2, bitmask, [0, 2], 90)
    out.backward(torch.ones_like(out))
    expected = reference.apply_token_bitmask(torch.ones(4, 100), bitmask, [0, 2], 90)
    assert torch.equal(x.grad, torch.where(expected == -INF, 0.0, 2.0))
    assert_same_bits(out.detach(), reference.apply_token_bitmask(x.detach() * 2, bitmask, [0, 2], 90))


def test_compile_fullgraph(device, seed):
    torch._dynamo.reset()
    logits = make_scores(6, 500, torch.float32, seed, device).nan_to_num()
    bitmask = random_bitmask(6, words_for(500), 0.2, seed).to(device)
    indices = torch.tensor([0, 3, 5], device=device)

    def step(logits, bitmask, indices):
        scaled = logits * 0.5  # something for the compiler to fuse around the op (exact, like eager)
        pysample.apply_token_bitmask_(scaled, bitmask, indices, 480)
        return scaled, torch.softmax(scaled, -1)

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    for _ in range(2):  # the second call reuses the graph
        (masked, probs), (eager_masked, eager_probs) = (
            compiled(logits, bitmask, indices),
            step(logits, bitmask, indices),
        )
        assert_same_bits(masked, eager_masked)
        torch.testing.assert_close(probs, eager_probs)


def test_compile_fullgraph_on_graph_input(device, seed):
    """On an input of the compiled function the op mutates that input, as in eager mode."""
    torch._dynamo.reset()

    def step(logits, bitmask):
        pysample.apply_token_bitmask_(logits, bitmask)
        return logits.amax(-1)

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    logits = make_scores(4, 100, torch.float32, seed, device)
    bitmask = random_bitmask(4, 4, 0.5, seed).to(device)
    eager = logits.clone()
    step(eager, bitmask)
    compiled(logits, bitmask)
    assert_same_bits(logits, eager)


@CUDA_SKIP
def test_cuda_skips_out_of_range_indices():
    """CUDA cannot raise without a host sync: an index outside [0, batch) is skipped, nothing written for it."""
    logits = torch.zeros(3, 100, device="cuda")
    bitmask = torch.zeros(3, 4, dtype=torch.int32, device="cuda")
    pysample.apply_token_bitmask_(logits, bitmask, torch.tensor([3, 0, -1, 2, 1 << 40], device="cuda"))
    assert bool((logits[[0, 2]] == -INF).all()) and bool((logits[1] == 0).all())


@CUDA_SKIP
def test_cuda_graph_replays_with_new_masks(seed):
    logits = torch.zeros(4, 1000, device="cuda")
    bitmask = torch.zeros(4, words_for(1000), dtype=torch.int32, device="cuda")
    indices = torch.tensor([0, 1, 2, 3], device="cuda")
    pysample.apply_token_bitmask_(logits, bitmask, indices)  # warm-up outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        pysample.apply_token_bitmask_(logits, bitmask, indices)
    for step in range(3):
        fresh = make_scores(4, 1000, torch.float32, seed + step, "cuda")
        new_mask = random_bitmask(4, words_for(1000), 0.3, seed + step).to("cuda")
        logits.copy_(fresh), bitmask.copy_(new_mask), indices.copy_(torch.tensor([3, step, 1, 3]))
        graph.replay()
        expected = reference.apply_token_bitmask(fresh.cpu(), new_mask.cpu(), [3, step, 1])
        assert_same_bits(logits.cpu(), expected)


# ---- bad arguments ---------------------------------------------------------------------------------------------

BAD_ARGUMENTS = {
    "logits int": (dict(logits=torch.zeros(2, 100, dtype=torch.int32)), TypeError, "logits must be float32"),
    "logits 1-D": (dict(logits=torch.zeros(100)), ValueError, "logits must be 2-D"),
    "bitmask int64": (dict(bitmask=torch.zeros(2, 4, dtype=torch.int64)), TypeError, "bitmask must be int32"),
    "bitmask uint8": (dict(bitmask=torch.zeros(2, 16, dtype=torch.uint8)), TypeError, "bitmask must be int32"),
    "bitmask 1-D": (dict(bitmask=torch.zeros(4, dtype=torch.int32)), ValueError, "bitmask must be 2-D"),
    "bitmask rows": (dict(bitmask=torch.zeros(3, 4, dtype=torch.int32)), ValueError, "bitmask must have the logits' 2"),
    "bitmask narrow": (
        dict(bitmask=torch.zeros(2, 3, dtype=torch.int32), vocab_size=97),
        ValueError,
        r"bitmask must have at least ceil\(vocab_size / 32\) = 4 words per row for vocab_size 97, got 3",
    ),
    "bitmask device": (dict(bitmask=torch.zeros(2, 4, dtype=torch.int32, device="meta")), ValueError, "bitmask must"),
    "vocab_size past the row": (dict(vocab_size=101), ValueError, r"vocab_size must be in \[0, 100\].*got 101"),
    "vocab_size negative": (dict(vocab_size=-1), ValueError, r"vocab_size must be in \[0, 100\].*got -1"),
    "vocab_size float": (dict(vocab_size=90.0), TypeError, "vocab_size must be an int"),
    "index past the batch": (dict(indices=[0, 2]), IndexError, r"indices\[1\] = 2 is out of range for logits with 2"),
    "index negative": (dict(indices=torch.tensor([-1])), IndexError, r"indices\[0\] = -1 is out of range"),
    "index int32 past": (dict(indices=torch.tensor([1, 0, 5], dtype=torch.int32)), IndexError, r"indices\[2\] = 5"),
    "indices float": (dict(indices=torch.tensor([0.0])), TypeError, "indices must be int64 or int32"),
    "indices 2-D": (dict(indices=torch.tensor([[0]])), ValueError, "indices must be 1-D"),
    "indices list of floats": (dict(indices=[0.5]), TypeError, "indices must be a tensor or a sequence of ints"),
    "indices device": (dict(indices=torch.tensor([0], device="meta")), ValueError, "indices must be on the logits'"),
}


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS))
def test_bad_arguments_raise_naming_the_argument(case):
    overrides, error, message = BAD_ARGUMENTS[case]
    args = dict(logits=torch.zeros(2, 100), bitmask=torch.zeros(2, 4, dtype=torch.int32))
    args.update(overrides)
    logits = args.pop("logits")
    before = logits.clone()
    with pytest.raises(error, match=message):
        pysample.apply_token_bitmask_(logits, args.pop("bitmask"), **args)
    assert torch.equal(logits, before)  # nothing written: every index is checked first
