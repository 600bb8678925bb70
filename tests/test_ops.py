"""Every raw op on its shared input grid (tests/op_inputs.py): torch.library.opcheck, the fake (meta)
implementation against the real op, and the result against pysample.reference, so that the three checks see the
same inputs and one grid per op says what is covered."""

from __future__ import annotations

import math

import pytest
import torch

from pysample import reference

import op_inputs
import warp_compare as W
from conftest import CUDA_SKIP
from test_beam_step import check_step
from test_penalties import expected_penalties


def _params(device: str) -> list:
    return [pytest.param(device, s, id=f"{device}-{s.id}") for inputs in op_inputs.ALL_INPUTS for s in inputs(device)]


# The grids are built once, at collection (CUDA's only where a GPU is present); each test works on copies.
SAMPLES = _params("cpu") + (
    _params("cuda") if torch.cuda.is_available() else [pytest.param("cuda", None, id="cuda", marks=CUDA_SKIP)]
)


def clone(value):
    """A copy of a sample's arguments (tensors cloned, lists of them too), so that no test sees another's writes."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, (list, tuple)):
        return type(value)(clone(v) for v in value)
    return value


def _outputs(result) -> list:
    return list(result) if isinstance(result, (list, tuple)) else [result]


@pytest.mark.parametrize("device, sample", SAMPLES)
def test_opcheck(device, sample):
    torch.library.opcheck(sample.overload, clone(sample.args))


@pytest.mark.parametrize("device, sample", SAMPLES)
def test_fake_matches_real(device, sample):
    """The fake implementation, run on meta copies of the arguments, gives the real outputs' shapes, dtypes and
    strides (None for in-place ops, which return nothing)."""
    real = sample.overload(*clone(sample.args))
    fake = sample.overload(*op_inputs.move(sample.args, torch.device("meta")))
    if sample.mutates:
        assert real is None and fake is None
        return
    assert len(_outputs(real)) == len(_outputs(fake))
    for r, f in zip(_outputs(real), _outputs(fake)):
        assert f.device.type == "meta"
        assert (f.shape, f.dtype, f.stride()) == (r.shape, r.dtype, r.stride())


# ---- against the references: one adapter per op, from the raw op's arguments -----------------------------------


def _param(rows, scalar):
    """A (rows, scalar) pair of the raw ops as the references take it: the CPU rows, else the scalar."""
    return rows.cpu() if rows is not None else scalar


def _run(sample: op_inputs.Sample, args: tuple):
    """The sample's op on `args`: the result, or the written first argument of an in-place op (which returns None)."""
    if sample.mutates:
        assert sample.overload(*args) is None
        return args[0]
    return sample.overload(*args)


def _check_warp(device: str, sample: op_inputs.Sample) -> None:
    """Stage by stage against the reference by warp_compare's equality rule (as test_warp_ops.py); a filter_value
    other than -inf changes exactly the removed tokens to it."""
    logits, *stage_args, keep, filter_value = sample.args
    params = {s: _param(r, v) for s, r, v in zip(W.STAGES, stage_args[0::2], stage_args[1::2])}
    params = {s: v for s, v in params.items() if v is not None}

    def op(x: torch.Tensor, min_tokens_to_keep: int, filter_value: float = -math.inf, **stages) -> torch.Tensor:
        args = op_inputs.warp_args(
            x.to(device, copy=True), op_inputs.move(stages, device), min_tokens_to_keep, filter_value
        )
        return _run(sample, args).cpu()

    x = logits.cpu()
    with_inf = W.check_chain(op, x, params, W.ref_stage, keep, what=f"[{sample.id}]", device=device)
    if filter_value != -math.inf:
        out = op(x, keep, filter_value, **params)
        scaled = x if "temperature" not in params else W.ref_stage("temperature", x, params["temperature"])
        removed = W.differing(with_inf, scaled)
        changed = W.differing(out, with_inf)
        fv = torch.tensor(filter_value, dtype=x.dtype)
        assert bool((out[removed] == fv).all()) and bool((out[changed] == fv).all())
        assert not bool((changed & ~removed & ~(scaled == -math.inf)).any())


def _check_sample(device: str, sample: op_inputs.Sample) -> None:
    """The tokens of pysample.reference.sample, bit for bit."""
    logits, *stage_args, seed, step, n = sample.args
    names = ("temperature", "top_k", "top_p", "min_p")
    params = {s: _param(r, v) for s, r, v in zip(names, stage_args[0::2], stage_args[1::2])}
    out = sample.overload(*clone(sample.args)).cpu()
    expected = reference.sample(logits.cpu(), **params, seed=seed.cpu(), step=step.cpu(), n=n)
    assert torch.equal(out, expected.reshape(logits.shape[0], n)), params


def _penalty_params(args: tuple) -> dict:
    """apply_penalties(_)'s raw (rows, scalar) arguments after the ids as the reference's keywords."""
    names = ("repetition", "presence", "frequency", "history_start", "output_start")
    return {name: _param(args[2 * i], args[2 * i + 1]) for i, name in enumerate(names)}


def _check_penalties(device: str, sample: op_inputs.Sample) -> None:
    """The reference's bits, with the division rule of the scores' device (expected_penalties, as test_penalties)."""
    scores, ids, *rest = sample.args
    out = _run(sample, clone(sample.args))
    W.assert_same_bits(out.cpu(), expected_penalties(scores, ids, **_penalty_params(rest)))


def _check_count_tokens(device: str, sample: op_inputs.Sample) -> None:
    """The entries of penalty.h's rule (op_inputs.count_entries) added to the table, and the seen bits set where
    they are non-zero."""
    counts, seen, ids, slots, history_rows, history, output_rows, output = clone(sample.args)
    expected = op_inputs.count_entries(
        counts.cpu(),
        ids,
        None if slots is None else slots.cpu(),
        _param(history_rows, history),
        _param(output_rows, output),
    )
    assert sample.overload(counts, seen, ids, slots, history_rows, history, output_rows, output) is None
    assert torch.equal(counts.cpu(), expected)
    assert torch.equal(seen.cpu(), op_inputs.seen_table(expected))


def _histories(counts: torch.Tensor) -> tuple:
    """Ids (slots, length) whose counting gives the entries `counts` (each 2 * outputs + prompt bit), with their
    output start: a prompt of the tokens with the bit, padded with -1 (ignored), then the output tokens repeated."""
    prompts = [(row & 1).nonzero().flatten().tolist() for row in counts]
    outputs = [torch.arange(counts.shape[1]).repeat_interleave(row >> 1).tolist() for row in counts.long()]
    start = max((len(p) for p in prompts), default=0)
    length = start + max((len(o) for o in outputs), default=0)
    ids = [p + [-1] * (start - len(p)) + o + [-1] * (length - start - len(o)) for p, o in zip(prompts, outputs)]
    return torch.tensor(ids, dtype=torch.int64).reshape(len(ids), length), start


def _check_penalty_counts(device: str, sample: op_inputs.Sample) -> None:
    """apply_penalties' reference on the histories the tables stand for (row r: its slot's history)."""
    scores, counts, seen, slots, *penalties = sample.args
    histories, output_start = _histories(counts.cpu())
    rows = torch.arange(scores.shape[0]) if slots is None else slots.cpu()
    names = ("repetition", "presence", "frequency")
    params = {name: _param(penalties[2 * i], penalties[2 * i + 1]) for i, name in enumerate(names)}
    expected = expected_penalties(scores, histories[rows], **params, output_start=output_start)
    W.assert_same_bits(_run(sample, clone(sample.args)).cpu(), expected)


def _check_ngram(device: str, sample: op_inputs.Sample) -> None:
    scores, ids, lengths, sources, source_lengths, ngram_rows, ngram = (op_inputs.move(a, "cpu") for a in sample.args)
    expected = reference.no_repeat_ngram(scores, ids, _param(ngram_rows, ngram), lengths, sources, source_lengths)
    W.assert_same_bits(_run(sample, clone(sample.args)).cpu(), expected)


def _check_bias(device: str, sample: op_inputs.Sample) -> None:
    scores, ids, lengths, tokens, offsets, biases = (op_inputs.move(a, "cpu") for a in sample.args)
    bounds = offsets.tolist()
    sequences = [tokens[a:b].tolist() for a, b in zip(bounds[:-1], bounds[1:])]
    expected = reference.bias_sequences(scores, ids, sequences, biases.tolist(), lengths)
    W.assert_same_bits(_run(sample, clone(sample.args)).cpu(), expected)


def _check_token_bitmask(device: str, sample: op_inputs.Sample) -> None:
    logits, bitmask, indices, vocab_size = (op_inputs.move(a, "cpu") for a in sample.args)
    expected = reference.apply_token_bitmask(logits, bitmask, indices, vocab_size)
    W.assert_same_bits(_run(sample, clone(sample.args)).cpu(), expected)


def _check_token_logprobs(device: str, sample: op_inputs.Sample) -> None:
    """Ranks and top ids exactly the reference's, log-probabilities within 8 float32 ulps of |logprob| plus 2^-14
    (torch's own float sum) of torch.log_softmax's (test_token_logprobs.py)."""
    logits, tokens, num_top = (op_inputs.move(a, "cpu") for a in sample.args)
    got = [t.cpu() for t in _run(sample, clone(sample.args))]
    want = reference.token_logprobs(logits, tokens, num_top)
    assert torch.equal(got[1], want[1]) and torch.equal(got[2], want[2])
    for g, w in ((got[0], want[0]), (got[3], want[3])):
        torch.testing.assert_close(g, w, rtol=8 * 2.0**-23, atol=2.0**-14, equal_nan=True)


def _check_reorder(device: str, sample: op_inputs.Sample) -> None:
    """index_select of the rows (of the filled positions only, with filled_length), in place."""
    caches, beam_idx, filled_length = clone(sample.args)
    pointers = [t.data_ptr() for t in caches]
    expected = []
    for t in caches:
        moved = t.index_select(0, beam_idx)
        if filled_length is not None:
            moved[:, :, filled_length:] = t[:, :, filled_length:]
        expected.append(moved)
    assert sample.overload(caches, beam_idx, filled_length) is None
    assert all(torch.equal(a, b) for a, b in zip(caches, expected))
    assert [t.data_ptr() for t in caches] == pointers


def _check_beam(device: str, sample: op_inputs.Sample) -> None:
    """test_beam_step's rule: bitwise the reference without the log-softmax, a top-k up to its rounding with it
    (check_step needs a batch item: for batch 0, the reference's empty shapes and dtypes)."""
    logits, beam_scores, num_beams, num_candidates, log_softmax = clone(sample.args)
    if logits.shape[0]:
        check_step(logits, beam_scores, num_beams, num_candidates, log_softmax)
        return
    got = sample.overload(logits, beam_scores, num_beams, num_candidates, log_softmax)
    want = reference.beam_search_step(logits.cpu(), beam_scores.cpu(), num_beams, num_candidates, log_softmax)
    assert [(t.shape, t.dtype) for t in got] == [(t.shape, t.dtype) for t in want]


CHECKS = {
    "warp_logits": _check_warp,
    "warp_logits_": _check_warp,
    "sample": _check_sample,
    "apply_penalties": _check_penalties,
    "apply_penalties_": _check_penalties,
    "count_tokens_": _check_count_tokens,
    "apply_penalty_counts_": _check_penalty_counts,
    "no_repeat_ngram": _check_ngram,
    "no_repeat_ngram_": _check_ngram,
    "bias_sequences_": _check_bias,
    "apply_token_bitmask_": _check_token_bitmask,
    "token_logprobs": _check_token_logprobs,
    "reorder_kv_cache_": _check_reorder,
    "beam_search_step": _check_beam,
}


@pytest.mark.parametrize("device, sample", SAMPLES)
def test_matches_reference(device, sample):
    CHECKS[sample.op](device, sample)


def test_every_op_has_a_grid_and_a_reference():
    """Each op of the library is in the grid and has a reference check, so that a new op cannot go unchecked."""
    ops = {s.op for inputs in op_inputs.ALL_INPUTS for s in inputs("cpu")}
    assert ops == set(CHECKS)
    packets = {name: getattr(torch.ops.pysample, name) for name in dir(torch.ops.pysample)}
    registered = {name for name, packet in packets.items() if isinstance(packet, torch._ops.OpOverloadPacket)}
    assert registered == ops
