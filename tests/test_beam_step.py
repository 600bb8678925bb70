"""pysample.beam_search_step against pysample.reference.beam_search_step and transformers' own beam step.

The rule (see the op's docstring): with ``log_softmax=False`` the op is bitwise the reference, tie order included.
With the fused log-softmax, each score is torch's up to the rounding of its row's log-sum-exp, so the op's selection
must be a top-k of the reference scores up to that rounding: every score within tolerance of the reference score of
the same (beam, token), the output in descending order, and no candidate left out whose reference score exceeds a
selected one's by more than the tolerance. Equal scores come in (beam, token) order and NaN first, always.
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers.generation.utils import GenerationMixin

import pysample
from pysample import reference

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def make_logits(
    batch: int, beams: int, vocab: int, dtype: torch.dtype, seed: int, kind: str = "normal", device: str = "cpu"
) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch * beams, vocab, generator=g) * 4
    if kind == "ties":  # a coarse grid: many exact ties within and across rows
        x = (x * 2).round() / 2
    elif kind == "neg_inf":
        x[torch.rand(x.shape, generator=g) < 0.3] = -math.inf
    return x.to(dtype=dtype, device=device)


def make_beam_scores(batch: int, beams: int, seed: int, first_step: bool = False, device: str = "cpu"):
    if first_step:  # transformers' start: 0 for the first beam, -1e9 for the others
        scores = torch.full((batch, beams), -1e9)
        scores[:, 0] = 0
        return scores.to(device)
    g = torch.Generator().manual_seed(seed + 1)
    return (-torch.rand(batch, beams, generator=g) * 20).to(device)


def check_step(logits: torch.Tensor, beam_scores: torch.Tensor, num_beams: int, k: int, log_softmax: bool = True):
    """The op's result against the reference by the rule above; returns it."""
    got = pysample.beam_search_step(logits, beam_scores, num_beams, k, log_softmax=log_softmax)
    want = reference.beam_search_step(logits.cpu(), beam_scores.cpu(), num_beams, k, log_softmax=log_softmax)
    scores, tokens, beams = (t.cpu() for t in got)
    batch, vocab = logits.shape[0] // num_beams, logits.shape[1]
    assert scores.shape == tokens.shape == beams.shape == (batch, k)
    assert scores.dtype == torch.float32 and tokens.dtype == beams.dtype == torch.int64
    assert ((tokens >= 0) & (tokens < vocab)).all() and ((beams >= 0) & (beams < num_beams)).all()
    flat = beams * vocab + tokens
    # Candidates are distinct, in descending order of score, NaN first, equal scores in flat index order.
    assert all(len(set(row)) == k for row in flat.tolist())
    nan = scores.isnan()
    assert (nan[:, 1:] <= nan[:, :-1]).all(), "NaN must come first"
    a, b = scores[:, :-1], scores[:, 1:]
    both = ~nan[:, :-1] & ~nan[:, 1:]
    assert (a[both] >= b[both]).all(), "scores must descend"
    tied = (a == b) | (nan[:, :-1] & nan[:, 1:])
    assert (flat[:, :-1][tied] < flat[:, 1:][tied]).all(), "equal scores must come in (beam, token) order"

    if not log_softmax:
        assert torch.equal(tokens, want[1]) and torch.equal(beams, want[2])
        assert torch.equal(scores.view(torch.int32), want[0].view(torch.int32))
        return got
    # The reference score of every continuation, and the rounding allowed: a few ulp of the terms that make it,
    # plus the error of torch's own log-sum-exp, a float sum over the vocabulary (the op's is exact to an ulp).
    x = logits.cpu().float()
    log_probs = torch.log_softmax(x, -1)
    all_scores = (log_probs + beam_scores.cpu().reshape(-1, 1)).reshape(batch, num_beams * vocab)
    max_ = x.amax(-1, keepdim=True)
    shifted = (x - max_).nan_to_num(0, 0, 0).abs()
    exact_log_sum = torch.logsumexp(x.double() - max_.double(), -1, keepdim=True)
    torch_log_sum = -log_probs.gather(1, x.argmax(-1, keepdim=True)).double()  # (max - max) - log_sum
    sum_error = (torch_log_sum - exact_log_sum).abs().nan_to_num(0, 0, 0).float()
    magnitude = shifted + exact_log_sum.nan_to_num(0, 0, 0).float() + beam_scores.cpu().reshape(-1, 1).abs()
    tolerance = (4 * torch.finfo(torch.float32).eps * magnitude + 2 * sum_error).reshape(batch, -1)
    tolerance += 4 * torch.finfo(torch.float32).eps * all_scores.abs().nan_to_num(0, 0, 0)
    ref = all_scores.gather(1, flat)
    tol = tolerance.gather(1, flat)
    same = (scores == ref) | (scores.isnan() & ref.isnan())
    assert (same | ((scores - ref).abs() <= tol)).all(), "scores differ from torch's log_softmax beyond rounding"
    # Nothing left out that beats a selected candidate by more than the rounding.
    for row in range(batch):
        left_out = torch.ones(num_beams * vocab, dtype=torch.bool)
        left_out[flat[row]] = False
        if not left_out.any():
            continue
        if ref[row].isnan().all():
            continue
        outside = all_scores[row][left_out]
        worst = ref[row][~ref[row].isnan()]
        if worst.numel() < k:
            assert not outside.isnan().any(), "a NaN continuation was left out"
        if worst.numel():
            lowest = int(worst.argmin())
            bound = worst[lowest] + tol[row][~ref[row].isnan()][lowest] + tolerance[row][left_out]
            assert not (outside > bound).any(), f"batch item {row}: a better continuation was left out"
    # Rounding may reorder only near ties: where the tokens differ from the reference, its scores are that close.
    differ = (tokens != want[1]) | (beams != want[2])
    close = (want[0] - scores).abs() <= 2 * tol
    assert (~differ | close | (want[0].isnan() & scores.isnan())).all()
    return got


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "batch,beams,vocab,k",
    [(1, 4, 1000, 8), (3, 2, 50, 4), (2, 8, 32000, 16), (4, 1, 100, 1), (1, 5, 7, 35), (2, 3, 4, 5)],
)
@pytest.mark.parametrize("kind", ["normal", "ties", "neg_inf"])
def test_matches_reference(device, seed, dtype, batch, beams, vocab, k, kind):
    logits = make_logits(batch, beams, vocab, dtype, seed, kind, device)
    beam_scores = make_beam_scores(batch, beams, seed, device=device)
    check_step(logits, beam_scores, beams, k)
    check_step(logits, beam_scores, beams, k, log_softmax=False)


@pytest.mark.parametrize("vocab", [49152, 151936])
def test_realistic_vocab(device, seed, vocab):
    logits = make_logits(2, 4, vocab, torch.float32, seed, device=device)
    check_step(logits, make_beam_scores(2, 4, seed, device=device), 4, 8)


def test_first_step_takes_every_candidate_from_the_first_beam(device, seed):
    """transformers starts with beam scores (0, -1e9, ...): the beams are copies and only the first one counts."""
    logits = make_logits(1, 4, 1000, torch.float32, seed, device=device)[:1].repeat(4, 1)
    step = check_step(logits, make_beam_scores(1, 4, seed, first_step=True, device=device), 4, 8)
    assert (step.beams == 0).all()
    assert torch.equal(step.tokens.cpu(), torch.topk(logits[0].cpu(), 8).indices[None])


def test_undefined_rows_rank_nan_first(device):
    """A row with a NaN, a +inf or only -inf has a NaN log-softmax (torch's), ranked first as torch.topk does."""
    inf, nan = math.inf, math.nan
    logits = torch.tensor(
        [
            [0.0, 1.0, 2.0, 3.0],
            [-inf, -inf, -inf, -inf],
            [0.0, nan, 1.0, 2.0],
            [inf, 0.0, 1.0, 2.0],
            [5.0, -inf, 1.0, -inf],
            [1.0, 1.0, 1.0, 1.0],
        ],
        device=device,
    )
    beam_scores = torch.zeros(6, device=device)
    step = check_step(logits, beam_scores, 6, 24)
    assert step.scores[0, :12].isnan().all() and not step.scores[0, 12:].isnan().any()
    assert step.beams[0, :12].tolist() == [1] * 4 + [2] * 4 + [3] * 4
    assert step.tokens[0, :12].tolist() == [0, 1, 2, 3] * 3
    check_step(logits, beam_scores, 6, 24, log_softmax=False)


@pytest.mark.parametrize("k", [1, 3, 8])
def test_matches_transformers_beam_step(device, seed, k):
    """transformers' own _get_top_k_continuations on its accumulated log-probs: the same continuations."""
    batch, beams, vocab, cur_len = 3, 4, 5000, 6
    logits = make_logits(batch, beams, vocab, torch.float32, seed, device=device)
    beam_scores = make_beam_scores(batch, beams, seed, device=device)
    accumulated = torch.log_softmax(logits, -1).reshape(batch, beams, vocab) + beam_scores[:, :, None]
    sequences = torch.zeros(batch, beams, cur_len + 1, dtype=torch.int64, device=device)
    beam_indices = torch.full((batch, beams, 1), -1, dtype=torch.int32, device=device)
    hf_scores, hf_sequences, hf_beam_indices = GenerationMixin._get_top_k_continuations(
        GenerationMixin,
        accumulated_log_probs=accumulated.reshape(batch, -1),
        running_sequences=sequences,
        running_beam_indices=beam_indices,
        cur_len=cur_len,
        decoder_prompt_len=cur_len,
        do_sample=False,
        beams_to_keep=k,
        num_beams=beams,
        batch_size=batch,
    )
    step = pysample.beam_search_step(logits, beam_scores, beams, k)
    offsets = torch.arange(batch, device=device)[:, None] * beams
    assert torch.equal(step.tokens, hf_sequences[:, :, cur_len])
    assert torch.equal(step.beams + offsets, hf_beam_indices[:, :, 0].long())
    torch.testing.assert_close(step.scores, hf_scores, rtol=0, atol=4e-6 * float(hf_scores.abs().max()))


def test_beam_scores_of_shape_batch_beams_or_flat(device, seed):
    logits = make_logits(2, 3, 100, torch.float32, seed, device=device)
    beam_scores = make_beam_scores(2, 3, seed, device=device)
    a = pysample.beam_search_step(logits, beam_scores, 3)
    b = pysample.beam_search_step(logits, beam_scores.reshape(-1), 3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert a.scores.shape == (2, 6)  # default: 2 * num_beams


def test_non_contiguous_logits(device, seed):
    logits = make_logits(2, 3, 64, torch.float32, seed, device=device)
    wide = torch.zeros(6, 128, device=device)
    wide[:, ::2] = logits
    beam_scores = make_beam_scores(2, 3, seed, device=device)
    a = pysample.beam_search_step(wide[:, ::2], beam_scores, 3)
    b = pysample.beam_search_step(logits, beam_scores, 3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_empty_batch(device):
    step = pysample.beam_search_step(torch.zeros(0, 10, device=device), torch.zeros(0, device=device), 2)
    assert step.scores.shape == (0, 4)


BAD_ARGUMENTS = {
    "num_beams": (dict(num_beams=0), ValueError, "num_beams must be >= 1"),
    "rows": (dict(num_beams=4), ValueError, "rows must be batch \\* num_beams"),
    "num_candidates zero": (dict(num_candidates=0), ValueError, "num_candidates must be in"),
    "num_candidates too many": (dict(num_candidates=3 * 10 + 1), ValueError, "num_candidates must be in"),
    "beam_scores dtype": (
        dict(beam_scores=torch.zeros(6, dtype=torch.float64)),
        TypeError,
        "beam_scores must be float32",
    ),
    "beam_scores shape": (dict(beam_scores=torch.zeros(5)), ValueError, "beam_scores must have shape"),
    "logits dtype": (dict(logits=torch.zeros(6, 10, dtype=torch.int32)), TypeError, "logits must be float32"),
    "logits dim": (dict(logits=torch.zeros(60)), ValueError, "logits must be 2-D"),
    "logits vocab": (dict(logits=torch.zeros(6, 0)), ValueError, "logits must have a vocabulary"),
}


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS))
def test_bad_arguments_raise_naming_the_argument(device, case):
    overrides, error, message = BAD_ARGUMENTS[case]
    args = dict(logits=torch.zeros(6, 10), beam_scores=torch.zeros(6), num_beams=3, num_candidates=4)
    args.update(overrides)
    for name in ("logits", "beam_scores"):
        args[name] = args[name].to(device)
    with pytest.raises(error, match=message):
        pysample.beam_search_step(args["logits"], args["beam_scores"], args["num_beams"], args["num_candidates"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_beam_scores_on_another_device_raises():
    with pytest.raises(ValueError, match="beam_scores must be on the logits' device"):
        pysample.beam_search_step(torch.zeros(6, 10, device="cuda"), torch.zeros(6), 3)


def test_compile_fullgraph(device, seed):
    logits = make_logits(2, 3, 50, torch.float32, seed, device=device)
    beam_scores = make_beam_scores(2, 3, seed, device=device)

    def step(logits, beam_scores):
        scores, tokens, beams = pysample.beam_search_step(logits * 1.0, beam_scores, 3)
        return scores + 0, tokens, beams

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")(logits, beam_scores)
    assert all(torch.equal(a, b) for a, b in zip(compiled, step(logits, beam_scores)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_matches_cpu_and_graph_replays(seed):
    """The same continuations on both devices, and a captured CUDA graph replays with new inputs (no host sync)."""
    logits = make_logits(4, 4, 32000, torch.float32, seed)
    beam_scores = make_beam_scores(4, 4, seed)
    cpu = pysample.beam_search_step(logits, beam_scores, 4)
    static_logits, static_scores = logits.cuda(), beam_scores.cuda()
    cuda = pysample.beam_search_step(static_logits, static_scores, 4)
    assert torch.equal(cuda.tokens.cpu(), cpu.tokens) and torch.equal(cuda.beams.cpu(), cpu.beams)
    torch.testing.assert_close(cuda.scores.cpu(), cpu.scores, rtol=0, atol=1e-5)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = pysample.beam_search_step(static_logits, static_scores, 4)
    new_logits = make_logits(4, 4, 32000, torch.float32, seed + 7)
    static_logits.copy_(new_logits)
    graph.replay()
    expected = pysample.beam_search_step(new_logits, beam_scores, 4)
    assert torch.equal(captured.tokens.cpu(), expected.tokens) and torch.equal(captured.beams.cpu(), expected.beams)
