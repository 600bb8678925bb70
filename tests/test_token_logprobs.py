"""token_logprobs against the pure-torch reference (vLLM's log_softmax, gather, rank and topk): every dtype, several
tokens per row, num_top 0 / 1 / 20, ties, -inf, +inf and NaN rows, -1 tokens, strided logits, sample's logprobs,
torch.compile, and every bad argument named.

Precision: a log-probability is within 2 float32 ulps of |logprob| (2 * 2^-23 * |logprob|; measured: under 0.75) of
the exact value of log_softmax(logits.float()), computed in float64. torch.log_softmax's own float32 result is further
off, its float sum of the row erring by up to ~2^-15 at 128256 tokens (700 ulps of a small |logprob|): against it the
bound is 8 ulps of |logprob| plus 2^-14."""

from __future__ import annotations

import math

import pytest
import torch

import pysample
from pysample import reference

from conftest import CUDA_SKIP
from test_penalties import make_scores

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
INF = math.inf
ULP = 2.0**-23  # of a float32 in [1, 2): a value v's ulp is at most ULP * |v|
TORCH_ATOL = 2.0**-14  # torch.log_softmax's float32 sum of a row, against the exact log-sum-exp


def random_logits(batch: int, vocab: int, dtype, seed: int, device="cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, vocab, generator=g) * 3).to(dtype=dtype, device=device)


def random_tokens(batch: int, n: int, vocab: int, seed: int, device="cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 11)
    tokens = torch.randint(0, vocab, (batch, n), generator=g)
    tokens[torch.rand(batch, n, generator=g) < 0.2] = -1
    return tokens.to(device)


def assert_logprobs_close(actual: torch.Tensor, expected: torch.Tensor, ulps: float, atol: float = 0.0) -> None:
    """The same NaN and infinities; finite values within `ulps` float32 ulps of |expected| plus `atol`."""
    actual, expected = actual.cpu().double(), expected.cpu().double()
    assert actual.shape == expected.shape
    assert torch.equal(actual.isnan(), expected.isnan())
    infinite = expected.isinf()
    assert torch.equal(actual[infinite], expected[infinite])
    finite = expected.isfinite()
    error = (actual[finite] - expected[finite]).abs()
    bound = ulps * ULP * expected[finite].abs() + atol
    assert bool((error <= bound).all()), f"worst error {float((error - bound).max())} past the bound"


def exact_logprobs(logits: torch.Tensor) -> torch.Tensor:
    """log_softmax of logits.float(), computed in float64."""
    return torch.log_softmax(logits.cpu().float().double(), dim=-1)


def assert_matches_reference(logits: torch.Tensor, tokens: torch.Tensor, num_top: int) -> pysample.TokenLogprobs:
    out = pysample.token_logprobs(logits, tokens, num_top)
    chosen, ranks, top_ids, top_logprobs = reference.token_logprobs(logits.cpu(), tokens.cpu(), num_top)
    assert out.token_logprobs.dtype == torch.float32 and out.top_logprobs.dtype == torch.float32
    assert out.ranks.dtype == torch.int64 and out.top_ids.dtype == torch.int64
    assert torch.equal(out.ranks.cpu(), ranks)
    assert torch.equal(out.top_ids.cpu(), top_ids)
    assert_logprobs_close(out.token_logprobs, chosen, 8, TORCH_ATOL)
    assert_logprobs_close(out.top_logprobs, top_logprobs, 8, TORCH_ATOL)
    exact = exact_logprobs(logits)
    safe = tokens.cpu().clamp(min=0)
    assert_logprobs_close(out.token_logprobs, exact.gather(1, safe).masked_fill(tokens.cpu() < 0, math.nan), 2)
    assert_logprobs_close(out.top_logprobs, exact.gather(1, top_ids), 2)
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("num_top", [0, 1, 20])
@pytest.mark.parametrize("batch, vocab, n", [(9, 1000, 1), (5, 3000, 3), (3, 128256, 2)])
def test_matches_reference(device, seed, dtype, num_top, batch, vocab, n):
    logits = random_logits(batch, vocab, dtype, seed, device)
    assert_matches_reference(logits, random_tokens(batch, n, vocab, seed, device), num_top)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("num_top", [1, 20])
def test_nan_inf_and_zeros(device, seed, dtype, num_top):
    """make_scores' rows hold NaN, +-inf, +-0.0 and denormals: NaN rows throughout, NaN first in the top."""
    logits = make_scores(8, 700, dtype, seed, device)
    tokens = random_tokens(8, 4, 700, seed, device)
    tokens[:, 0] = logits.cpu().float().isnan().int().argmax(1).to(device)  # a NaN token where the row has one
    assert_matches_reference(logits, tokens, num_top)


def test_edge_rows(device):
    """-inf logits (-inf logprobs), a row all -inf or with +inf (NaN throughout), ties (ranks count them against
    the token; the top in ascending id), -0.0 tied with 0.0, a row of one NaN."""
    logits = torch.tensor(
        [
            [0.0, -INF, 1.0, -INF, 1.0, 0.5],
            [-INF] * 6,
            [0.0, INF, 1.0, INF, -INF, 2.0],
            [3.0] * 6,
            [-0.0, 0.0, -1.0, -0.0, 0.0, -2.0],
            [1.0, math.nan, 2.0, -INF, math.nan, 0.0],
        ],
        device=device,
    )
    tokens = torch.tensor([[1, 4, 0], [0, 5, -1], [1, 2, 4], [0, 5, 3], [1, 3, 2], [1, 2, 3]], device=device)
    out = assert_matches_reference(logits, tokens, 4)
    assert out.token_logprobs[0, 0].item() == -INF
    assert out.ranks.cpu().tolist() == [[6, 2, 4], [6, 6, 0], [2, 4, 6], [6, 6, 6], [4, 4, 5], [2, 3, 6]]
    assert out.top_ids.cpu().tolist() == [
        [2, 4, 5, 0],
        [0, 1, 2, 3],
        [1, 3, 5, 2],
        [0, 1, 2, 3],
        [0, 1, 3, 4],
        [1, 4, 2, 0],
    ]
    assert bool(out.token_logprobs[1:3].isnan().all()) and bool(out.token_logprobs[5].isnan().all())
    torch.testing.assert_close(out.token_logprobs[3].cpu(), torch.full((3,), -math.log(6)))


def test_many_ties(device):
    """A row of few distinct values: the bounded top-n meets many equal candidates."""
    logits = (torch.arange(5000, device=device) % 7).float().reshape(2, 2500)
    assert_matches_reference(logits, torch.tensor([[6, 0], [13, 2499]], device=device), 20)


@pytest.mark.parametrize("layout", ["column-slice", "column-major", "every-other"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_strided_logits(device, seed, layout, dtype):
    base = random_logits(6, 1200, dtype, seed, device)
    logits = {
        "column-slice": base[:, 100:1100],
        "column-major": base.t().contiguous().t(),
        "every-other": base[:, ::2],
    }[layout]
    assert not logits.is_contiguous()
    assert_matches_reference(logits, random_tokens(6, 2, logits.shape[1], seed, device), 5)


def test_one_token_per_row_and_small_shapes(device, seed):
    logits = random_logits(4, 20, torch.float32, seed, device)
    tokens = torch.tensor([3, -1, 19, 0], device=device)
    out = pysample.token_logprobs(logits, tokens, 20)  # num_top = vocab: every token, in order
    whole = pysample.token_logprobs(logits, tokens[:, None], 20)
    assert out.token_logprobs.shape == (4,) and out.ranks.shape == (4,)
    assert torch.equal(out.ranks, whole.ranks[:, 0]) and torch.equal(out.top_ids, whole.top_ids)
    assert torch.equal(out.top_ids.cpu(), logits.cpu().sort(dim=-1, descending=True, stable=True).indices)
    one = pysample.token_logprobs(torch.tensor([[2.5]], device=device), torch.tensor([[0, -1]], device=device), 1)
    assert one.token_logprobs.cpu().tolist()[0][0] == 0.0 and one.ranks.cpu().tolist() == [[1, 0]]
    assert one.top_ids.cpu().tolist() == [[0]]
    empty = pysample.token_logprobs(logits[:0], tokens[:0, None], 3)
    assert empty.top_ids.shape == (0, 3) and empty.token_logprobs.shape == (0, 1)
    none = pysample.token_logprobs(logits, torch.zeros(4, 0, dtype=torch.int64, device=device), 2)
    assert none.ranks.shape == (4, 0) and none.top_ids.shape == (4, 2)


def test_many_rows_in_parallel(device, seed):
    logits = random_logits(300, 500, torch.float32, seed, device)
    assert_matches_reference(logits, random_tokens(300, 2, 500, seed, device), 3)


def test_sample_logprobs(device, seed):
    logits = random_logits(6, 2000, torch.float32, seed, device)
    plain = pysample.sample(logits, top_k=50, seed=seed)
    tokens, logprobs = pysample.sample(logits, top_k=50, seed=seed, logprobs=5)
    assert torch.equal(tokens, plain)  # the same draws with logprobs
    expected = pysample.token_logprobs(logits, tokens, 5)
    assert isinstance(logprobs, pysample.TokenLogprobs)
    for got, want in zip(logprobs, expected):
        assert torch.equal(got, want)
    assert logprobs.token_logprobs.shape == (6,)
    draws, many = pysample.sample(logits, temperature=0.7, seed=seed, n=3, logprobs=0)
    assert draws.shape == (6, 3) and many.ranks.shape == (6, 3) and many.top_ids.shape == (6, 0)
    assert torch.equal(many.ranks, pysample.token_logprobs(logits, draws).ranks)
    greedy, top = pysample.sample(logits, temperature=0, logprobs=1)
    assert torch.equal(top.top_ids[:, 0], greedy) and bool((top.ranks == 1).all())
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="logprobs must be None or an int >= 0"):
            pysample.sample(logits, logprobs=bad)
    with pytest.raises(ValueError, match=r"num_top must be in \[0, 20\]"):
        pysample.sample(logits, logprobs=21)


def test_compile_fullgraph(device, seed):
    torch._dynamo.reset()
    logits = random_logits(6, 500, torch.float32, seed, device)
    tokens = random_tokens(6, 2, 500, seed, device)

    def step(logits, tokens):
        scaled = logits * 0.5  # something for the compiler to fuse around the op (exact, like eager)
        out = pysample.token_logprobs(scaled, tokens, 3)
        return out.token_logprobs.exp(), out.ranks, out.top_ids, out.top_logprobs

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    for _ in range(2):  # the second call reuses the graph
        for got, want in zip(compiled(logits, tokens), step(logits, tokens)):
            torch.testing.assert_close(got, want, equal_nan=True, rtol=0, atol=0)


def test_no_gradient():
    logits = torch.randn(2, 10, requires_grad=True)
    out = pysample.token_logprobs(logits, torch.tensor([[1], [2]]), 2)
    with pytest.raises(RuntimeError):
        out.token_logprobs.sum().backward()


@CUDA_SKIP
def test_cuda_bad_token_ids_are_harmless():
    """CUDA cannot raise without a host sync: a token outside [-1, vocab) gets NaN and rank 0, never read."""
    logits = torch.randn(2, 100, device="cuda")
    out = pysample.token_logprobs(logits, torch.tensor([[100, 5], [-7, 1 << 40]], device="cuda"), 2)
    assert out.token_logprobs.isnan().cpu().tolist() == [[True, False], [True, True]]
    assert out.ranks.cpu().tolist()[1] == [0, 0] and out.ranks[0, 0].item() == 0


@CUDA_SKIP
def test_cuda_graph_replays_with_new_inputs(seed):
    logits = torch.zeros(4, 1000, device="cuda")
    tokens = torch.zeros(4, 2, dtype=torch.int64, device="cuda")
    pysample.token_logprobs(logits, tokens, 5)  # warm-up outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = pysample.token_logprobs(logits, tokens, 5)
    for step in range(3):
        fresh = random_logits(4, 1000, torch.float32, seed + step, "cuda")
        new_tokens = random_tokens(4, 2, 1000, seed + step, "cuda")
        logits.copy_(fresh), tokens.copy_(new_tokens)
        graph.replay()
        eager = pysample.token_logprobs(fresh, new_tokens, 5)
        for got, want in zip(out, eager):
            torch.testing.assert_close(got, want, equal_nan=True, rtol=0, atol=0)


# ---- bad arguments ---------------------------------------------------------------------------------------------

BAD_ARGUMENTS = {
    "logits int": (dict(logits=torch.zeros(2, 100, dtype=torch.int32)), TypeError, "logits must be float32"),
    "logits 1-D": (dict(logits=torch.zeros(100)), ValueError, "logits must be 2-D"),
    "tokens int32": (dict(tokens=torch.zeros(2, 1, dtype=torch.int32)), TypeError, "tokens must be int64"),
    "tokens float": (dict(tokens=torch.zeros(2, 1)), TypeError, "tokens must be int64"),
    "tokens 3-D": (dict(tokens=torch.zeros(2, 1, 1, dtype=torch.int64)), ValueError, "tokens must be 2-D"),
    "tokens list": (dict(tokens=[[0], [1]]), TypeError, "tokens must be a tensor"),
    "tokens rows": (dict(tokens=torch.zeros(3, 1, dtype=torch.int64)), ValueError, "tokens must have the logits' 2"),
    "tokens device": (dict(tokens=torch.zeros(2, 1, dtype=torch.int64, device="meta")), ValueError, "tokens must"),
    "token past the vocabulary": (
        dict(tokens=torch.tensor([[0, 1], [100, 2]])),
        IndexError,
        r"tokens\[1, 0\] = 100 is out of range for a vocabulary of 100",
    ),
    "token below -1": (dict(tokens=torch.tensor([[0], [-2]])), IndexError, r"tokens\[1, 0\] = -2 is out of range"),
    "num_top 21": (dict(num_top=21), ValueError, r"num_top must be in \[0, 20\], got 21"),
    "num_top negative": (dict(num_top=-1), ValueError, r"num_top must be in \[0, 20\], got -1"),
    "num_top past the vocabulary": (
        dict(logits=torch.zeros(2, 5), num_top=6),
        ValueError,
        "num_top must be at most the vocabulary size 5, got 6",
    ),
    "num_top float": (dict(num_top=2.0), TypeError, "num_top must be an int"),
}


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS))
def test_bad_arguments_raise_naming_the_argument(case):
    overrides, error, message = BAD_ARGUMENTS[case]
    args = dict(logits=torch.zeros(2, 100), tokens=torch.zeros(2, 1, dtype=torch.int64), num_top=0)
    args.update(overrides)
    with pytest.raises(error, match=message):
        pysample.token_logprobs(args.pop("logits"), args.pop("tokens"), **args)
