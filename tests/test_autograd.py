"""Autograd through pysample as through torch's own ops: in-place ops bump version counters and refuse what torch
refuses; the drop-in classes, fuse and the out-of-place ops give transformers' gradients; the selections (sample,
beam step) raise at backward instead of returning None."""

from __future__ import annotations

import math

import pytest
import torch
import transformers

import pysample

VOCAB = 64


def scores_with_specials(batch: int = 4, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(batch, VOCAB, generator=g) * 2
    x[0, 3] = -math.inf  # a removed token that was -inf already
    x[1, 5] = x[1, 6] = x[1].max() + 1  # a tie at the top
    return x.to(dtype)


def unique_ids(batch: int = 4, length: int = 9) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    return torch.stack([torch.randperm(VOCAB, generator=g)[:length] for _ in range(batch)])


def gradient(processor, ids, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    leaf = x.clone().requires_grad_()
    out = processor(ids, leaf * 1)  # a non-leaf input, as in a model
    out.backward(weights)
    return leaf.grad


def transformers_pairs(ids: torch.Tensor):
    """(name, pysample processor, transformers processor) with the same arguments."""
    last = ids[:, -1].tolist()
    specs = [
        ("TemperatureLogitsWarper", (0.7,)),
        ("TopKLogitsWarper", (5,)),
        ("TopPLogitsWarper", (0.8,)),
        ("MinPLogitsWarper", (0.05,)),
        ("TypicalLogitsWarper", (0.8,)),
        ("EpsilonLogitsWarper", (0.02,)),
        ("EtaLogitsWarper", (0.02,)),
        ("RepetitionPenaltyLogitsProcessor", (1.3,)),
        ("NoRepeatNGramLogitsProcessor", (1,)),
        ("SequenceBiasLogitsProcessor", ({(7,): -2.0, (last[0], 9): 3.0, (11,): math.inf},)),
        ("NoBadWordsLogitsProcessor", ([[13], [last[1], 15]],)),
    ]
    for name, args in specs:
        yield name, getattr(pysample, name)(*args), getattr(transformers, name)(*args)
    yield (
        "EncoderRepetitionPenaltyLogitsProcessor",
        pysample.EncoderRepetitionPenaltyLogitsProcessor(1.5, ids),
        transformers.EncoderRepetitionPenaltyLogitsProcessor(1.5, ids),
    )
    chain = [
        transformers.RepetitionPenaltyLogitsProcessor(1.2),
        transformers.TemperatureLogitsWarper(0.7),
        transformers.TopKLogitsWarper(10),
        transformers.TopPLogitsWarper(0.8),
        transformers.MinPLogitsWarper(0.1),
    ]
    yield "fuse", pysample.fuse(chain), transformers.LogitsProcessorList(chain)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16], ids=str)
def test_drop_in_gradients_are_transformers(dtype):
    x = scores_with_specials(dtype=dtype)
    ids = unique_ids()
    weights = torch.randn(x.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    for name, ours, theirs in transformers_pairs(ids):
        expected = gradient(theirs, ids, x, weights)
        got = gradient(ours, ids, x, weights)
        assert got is not None, name
        assert torch.equal(got, expected), f"{name}: {(got != expected).sum()} gradients differ"
        assert (got == 0).any() or name in (
            "TemperatureLogitsWarper",
            "SequenceBiasLogitsProcessor",
            "NoBadWordsLogitsProcessor",
            "RepetitionPenaltyLogitsProcessor",
            "EncoderRepetitionPenaltyLogitsProcessor",
        ), name


def test_repetition_penalty_gradient_counts_each_token_once():
    # transformers' gather/scatter adds the factor once per occurrence of a repeated id (an artifact of scatter's
    # backward with duplicate indices); the penalty applies once per distinct token, and so does its gradient.
    x = torch.tensor([[2.0, -3.0, 1.0, 4.0]])
    ids = torch.tensor([[0, 1, 1, 1]])
    leaf = x.clone().requires_grad_()
    pysample.RepetitionPenaltyLogitsProcessor(2.0)(ids, leaf).sum().backward()
    assert leaf.grad.tolist() == [[0.5, 2.0, 1.0, 1.0]]


def test_ops_gradients_per_row_parameters():
    x = scores_with_specials()
    leaf = x.clone().requires_grad_()
    temperature = torch.tensor([0.5, 1.0, 2.0, 4.0])
    out = pysample.warp_logits(leaf, temperature=temperature, top_k=torch.tensor([1, 3, 0, 64]))
    out.backward(torch.ones_like(out))
    kept = out.detach() > -math.inf
    assert torch.equal(leaf.grad, torch.where(kept, 1 / temperature[:, None], 0.0))

    leaf = x.clone().requires_grad_()
    ids = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 7, 8], [0, 0, 0]])
    out = pysample.apply_penalties(
        leaf,
        ids,
        repetition=torch.tensor([2.0, 4.0, 1.0, 0.5]),
        frequency=0.5,
        presence=torch.tensor([1.0, 0.0, 0.0, 2.0]),
        history_start=1,
    )
    out.backward(torch.ones_like(out))
    factor = torch.tensor([2.0, 4.0, 1.0, 0.5])[:, None]
    expected = torch.ones_like(x)
    for row, tokens in enumerate(ids[:, 1:].tolist()):
        for t in set(tokens):
            expected[row, t] = factor[row, 0] if x[row, t] < 0 else 1 / factor[row, 0]
    assert torch.equal(leaf.grad, expected)

    leaf = x.clone().requires_grad_()
    out = pysample.no_repeat_ngram(leaf, torch.tensor([[1, 2, 1]] * 4), ngram_size=2)
    out.backward(torch.ones_like(out))
    expected = torch.ones_like(x)
    expected[:, 2] = 0
    assert torch.equal(leaf.grad, expected)


# Token bitmask words of a (4, VOCAB) tensor: some tokens of each row allowed, row 2's first 32 none.
BITMASK = torch.tensor([[0x0F0F0F0F, -1], [-1, 0x00FFFF00], [0, -1], [0x12345678, -2]], dtype=torch.int32)


def in_place_calls():
    """(name, call(tensor)) for every in-place op on a (4, VOCAB) float32 tensor, through the Python functions."""
    ids = unique_ids()
    packed = pysample.ops.pack_sequences([[3], [ids[0, -1].item(), 4]], [-1.0, 2.0])
    return [
        ("warp_logits_", lambda t: pysample.warp_logits_(t, temperature=0.5, top_k=5, top_p=0.9)),
        ("apply_penalties_", lambda t: pysample.apply_penalties_(t, ids, repetition=1.5, presence=0.5)),
        ("no_repeat_ngram_", lambda t: pysample.no_repeat_ngram_(t, ids, ngram_size=1)),
        ("bias_sequences_", lambda t: pysample.bias_sequences_(t, ids, packed)),
        ("apply_token_bitmask_", lambda t: pysample.apply_token_bitmask_(t, BITMASK, [0, 2, 3])),
    ]


@pytest.mark.parametrize("index", range(5))
def test_in_place_functions_record_gradients(index):
    name, call = in_place_calls()[index]
    x = scores_with_specials()
    weights = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_a = a * 2
    assert call(out_a) is out_a
    out_b = call((b * 2).detach().requires_grad_(False))  # the values, without autograd
    assert torch.equal(out_a.detach(), out_b), name
    out_a.backward(weights)
    assert a.grad is not None and (a.grad != 0).any(), name
    # The same gradient as the out-of-place form (drop-in classes) of the same op.
    c = x.clone().requires_grad_()
    out_c = call((c * 2).clone())
    out_c.backward(weights)
    assert torch.equal(a.grad, c.grad), name


@pytest.mark.parametrize("index", range(5))
def test_in_place_on_saved_tensor_raises_at_backward(index):
    # The case: exp saves its output for backward; changing it in place must not give a wrong gradient.
    name, call = in_place_calls()[index]
    x = torch.randn(4, VOCAB, requires_grad=True)
    y = x.exp()
    call(y)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def raw_in_place_ops():
    """(name, call(tensor), written tensors(tensor)) for the raw torch.ops.pysample in-place ops."""
    ops = torch.ops.pysample
    ids = unique_ids()
    none14 = (None,) * 14
    counts = torch.zeros(4, VOCAB, dtype=torch.int32)
    seen = torch.zeros(4, 2, dtype=torch.int32)
    packed = pysample.ops.pack_sequences([[3]], [-1.0])
    return [
        ("warp_logits_", lambda t: ops.warp_logits_(t, *none14, 1, -math.inf)),
        (
            "apply_penalties_",
            lambda t: ops.apply_penalties_(t, ids, None, 1.5, None, None, None, None, None, 0, None, 0),
        ),
        (
            "apply_penalty_counts_",
            lambda t: ops.apply_penalty_counts_(t, counts, seen, None, None, 1.5, None, None, None, None),
        ),
        ("no_repeat_ngram_", lambda t: ops.no_repeat_ngram_(t, ids, None, None, None, None, 1)),
        ("bias_sequences_", lambda t: ops.bias_sequences_(t, ids, None, *packed)),
        ("apply_token_bitmask_", lambda t: ops.apply_token_bitmask_(t, BITMASK, None, None)),
        ("reorder_kv_cache_", lambda t: ops.reorder_kv_cache_([t], torch.tensor([1, 0, 2, 3]), None)),
    ]


@pytest.mark.parametrize("index", range(7))
def test_raw_in_place_ops_behave_as_torch_in_place_ops(index):
    name, call = raw_in_place_ops()[index]
    t = torch.randn(4, VOCAB)
    before = t._version
    call(t)
    assert t._version > before, f"{name} did not bump the version counter"

    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        call(torch.randn(4, VOCAB, requires_grad=True))
    with pytest.raises(RuntimeError, match=f"{name} writes to a tensor that requires grad"):
        call(torch.randn(4, VOCAB, requires_grad=True) * 1)
    with torch.no_grad():  # as torch: allowed without grad mode, and the leaf keeps no history
        leaf = torch.randn(4, VOCAB, requires_grad=True)
        call(leaf)
    assert leaf.grad_fn is None

    with torch.inference_mode():
        inference = torch.randn(4, VOCAB)
        call(inference)  # fine inside inference mode
    with pytest.raises(RuntimeError, match="Inplace update to inference tensor outside InferenceMode"):
        call(inference)


def test_count_tokens_bumps_both_tables():
    counts = torch.zeros(2, VOCAB, dtype=torch.int32)
    seen = torch.zeros(2, 2, dtype=torch.int32)
    torch.ops.pysample.count_tokens_(counts, seen, torch.tensor([[1, 2], [3, 4]]), None, None, 0, None, 0)
    assert counts._version > 0 and seen._version > 0


def test_selections_have_no_gradient():
    x = torch.randn(2, 3 * 16, requires_grad=True)
    step = pysample.beam_search_step(x * 1, torch.zeros(2), num_beams=2, num_candidates=4)
    with pytest.raises(RuntimeError, match="beam_search_step is not implemented"):
        step.scores.sum().backward()
    tokens = pysample.sample(x * 1, seed=0)
    assert tokens.dtype == torch.int64 and not tokens.requires_grad  # as torch.argmax and torch.multinomial


def test_no_graph_without_grad():
    x = torch.randn(2, VOCAB, requires_grad=True)
    with torch.no_grad():
        assert not pysample.warp_logits(x, top_k=3).requires_grad
    assert not pysample.warp_logits(x.detach(), top_k=3).requires_grad
    out = pysample.apply_penalties(x * 1, torch.tensor([[1, 2]]), repetition=1.5)
    assert out.requires_grad and out.grad_fn is not None
