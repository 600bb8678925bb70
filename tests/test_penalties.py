"""Penalties: apply_penalties(_) and the stateful PenaltyState against pysample.reference and transformers, the
drop-in RepetitionPenalty / EncoderRepetitionPenalty processors, fuse, registration and bad arguments."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import EncoderRepetitionPenaltyLogitsProcessor as HFEncoderRepetition
from transformers import RepetitionPenaltyLogitsProcessor as HFRepetition
from transformers import TopKLogitsWarper as HFTopK

import pysample
from pysample import reference

import warp_compare as W

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
INT32_MAX = 2**31 - 1


assert_same_bits = W.assert_same_bits


def make_scores(batch: int, vocab: int, dtype: torch.dtype, seed: int, device="cpu") -> torch.Tensor:
    """Scores with every kind of value a penalty meets: negative, zero (both signs), +-inf, NaN."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(batch, vocab, generator=g) * 3
    special = torch.tensor([0.0, -0.0, math.inf, -math.inf, math.nan, 1e-40, -1e-40])
    where = torch.rand(batch, vocab, generator=g) < 0.1
    scores[where] = special[torch.randint(0, len(special), (int(where.sum()),), generator=g)]
    return scores.to(dtype=dtype, device=device)


def make_ids(
    batch: int, length: int, vocab: int, seed: int, dtype=torch.int64, device="cpu", out_of_range: bool = True
) -> torch.Tensor:
    """Ids with many repeats (a small pool per row) and, optionally, ids outside [0, vocab)."""
    g = torch.Generator().manual_seed(seed + 1)
    pool = max(1, min(vocab, length // 3 + 1))
    ids = torch.randint(0, vocab, (batch, pool), generator=g)
    ids = ids.gather(1, torch.randint(0, pool, (batch, length), generator=g))
    if out_of_range and length:
        bad = torch.tensor([-1, -5, vocab, vocab + 7, INT32_MAX, -INT32_MAX - 1])
        where = torch.rand(batch, length, generator=g) < 0.05
        ids[where] = bad[torch.randint(0, len(bad), (int(where.sum()),), generator=g)]
    return ids.to(dtype=dtype, device=device)


def expected_penalties(scores: torch.Tensor, ids: torch.Tensor, **params) -> torch.Tensor:
    """The reference on the CPU with the division rule of the scores' device (CUDA multiplies by 1 / p)."""
    params = {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in params.items()}
    return reference.apply_penalties(scores.cpu(), ids.cpu(), divide_by_reciprocal=scores.is_cuda, **params)


def hf_repetition(ids: torch.Tensor, scores: torch.Tensor, penalty: float, prompt_ignore_length=None):
    """transformers' processor on ids it accepts: negative ids (it raises on them) moved to its ignored column."""
    ids = ids.long().masked_fill(ids < 0, scores.shape[1])
    return HFRepetition(penalty, prompt_ignore_length=prompt_ignore_length)(ids, scores)


# ---- the op against the reference and transformers -------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("id_dtype", [torch.int64, torch.int32], ids=str)
# 32000 tokens with 999 / 1000 ids: the CPU kernel visits the history / makes a pass over the row (kSequentialRatio).
@pytest.mark.parametrize(
    "batch, vocab, length",
    [(0, 17, 5), (1, 17, 0), (7, 1000, 300), (64, 32000, 512), (5, 32000, 999), (5, 32000, 1000), (3, 151936, 4096)],
)
# The CPU kernel records only which tokens a row saw when presence and frequency are +0.0 (and counts them when
# either is -0.0, which turns a -0.0 score into +0.0).
@pytest.mark.parametrize(
    "presence, frequency",
    [(None, None), (0.0, 0.0), (-0.0, 0.0), (0.0, -0.0)],
    ids=["random", "repetition alone", "presence -0.0", "frequency -0.0"],
)
def test_matches_reference(device, seed, dtype, id_dtype, batch, vocab, length, presence, frequency):
    scores = make_scores(batch, vocab, dtype, seed, device)
    ids = make_ids(batch, length, vocab, seed, id_dtype, device)
    g = torch.Generator().manual_seed(seed + 2)
    params = dict(
        repetition=float(torch.empty(()).uniform_(0.5, 2.0, generator=g)),
        presence=float(torch.randn((), generator=g)) if presence is None else presence,
        frequency=float(torch.randn((), generator=g)) if frequency is None else frequency,
        history_start=int(torch.randint(0, max(length, 1), (), generator=g)),
        output_start=int(torch.randint(0, max(length, 1), (), generator=g)),
    )
    expected = expected_penalties(scores, ids, **params)
    out = pysample.apply_penalties(scores, ids, **params)
    assert_same_bits(out.cpu(), expected)
    inplace = scores.clone()
    assert pysample.apply_penalties_(inplace, ids, **params) is inplace
    assert_same_bits(inplace.cpu(), expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_per_row_parameters(device, seed, dtype):
    batch, vocab, length = 9, 5000, 700
    scores = make_scores(batch, vocab, dtype, seed, device)
    ids = make_ids(batch, length, vocab, seed, device=device)
    g = torch.Generator().manual_seed(seed)
    params = dict(
        repetition=(torch.rand(batch, generator=g) * 2 + 0.1).to(device),
        presence=torch.randn(batch, generator=g).to(device),
        frequency=torch.randn(batch, generator=g).double().to(device),  # converted to float32
        history_start=torch.randint(0, length, (batch,), generator=g).to(device),
        output_start=torch.randint(0, length, (batch,), generator=g).int().to(device),
    )
    expected = expected_penalties(scores, ids, **params)
    assert_same_bits(pysample.apply_penalties(scores, ids, **params).cpu(), expected)
    # a 0-d tensor is one value for every row
    zero_d = dict(repetition=torch.tensor(1.5, device=device), presence=torch.tensor(0.25, device=device))
    assert_same_bits(
        pysample.apply_penalties(scores, ids, **zero_d).cpu(),
        expected_penalties(scores, ids, repetition=1.5, presence=0.25),
    )


@pytest.mark.parametrize("penalty", [1.0, 1.2, 0.8, 1e-3, 1e30, math.inf])
@pytest.mark.parametrize("batch, vocab, length", [(1, 17, 40), (8, 1000, 600), (64, 128256, 4096), (2, 151936, 32768)])
def test_repetition_bitwise_equal_to_transformers(seed, penalty, batch, vocab, length):
    scores = make_scores(batch, vocab, torch.float32, seed)
    ids = make_ids(batch, length, vocab, seed)
    expected = hf_repetition(ids, scores, penalty)
    assert_same_bits(pysample.apply_penalties(scores, ids, repetition=penalty), expected)
    assert_same_bits(pysample.RepetitionPenaltyLogitsProcessor(penalty)(ids, scores), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_repetition_bitwise_equal_to_transformers_on_cuda(seed):
    """On CUDA transformers divides by multiplying with 1 / penalty (torch's scalar division there); so does
    pysample."""
    scores = make_scores(16, 32000, torch.float32, seed, "cuda")
    ids = make_ids(16, 2048, 32000, seed, device="cuda")
    for penalty in (1.2, 0.7, 3.0):
        expected = hf_repetition(ids, scores, penalty)
        assert_same_bits(pysample.RepetitionPenaltyLogitsProcessor(penalty)(ids, scores), expected)


@pytest.mark.parametrize("kind", ["int", "tensor"])
def test_prompt_ignore_length_bitwise_equal_to_transformers(seed, kind):
    batch, vocab, length = 6, 3000, 200
    scores = make_scores(batch, vocab, torch.float32, seed)
    ids = make_ids(batch, length, vocab, seed)
    g = torch.Generator().manual_seed(seed)
    ignore = 50 if kind == "int" else torch.randint(0, length + 5, (batch,), generator=g)
    expected = hf_repetition(ids, scores, 1.3, ignore)
    assert_same_bits(pysample.RepetitionPenaltyLogitsProcessor(1.3, prompt_ignore_length=ignore)(ids, scores), expected)


def test_edge_histories():
    scores = torch.tensor([[1.0, -1.0, 0.0, -0.0, math.inf, -math.inf, math.nan, 2.0]])
    # empty history: nothing changes
    assert_same_bits(
        pysample.apply_penalties(
            scores, torch.empty(1, 0, dtype=torch.long), repetition=2.0, presence=1.0, frequency=1.0
        ),
        scores,
    )
    # duplicates penalise once for repetition, count for frequency; presence once
    ids = torch.tensor([[0, 0, 0, 1, 2, 3, 4, 5, 6, -1, 8]])
    out = pysample.apply_penalties(scores, ids, repetition=2.0, frequency=0.5, presence=0.25)
    expected = torch.tensor(
        [[0.5 - 1.5 - 0.25, -2.0 - 0.75, 0.0 - 0.75, -0.0 - 0.75, math.inf, -math.inf, math.nan, 2.0]]
    )
    assert_same_bits(out, expected)
    # every position before history_start is ignored; before output_start only the repetition counts
    out = pysample.apply_penalties(scores, ids, repetition=2.0, presence=0.25, history_start=3, output_start=5)
    assert_same_bits(out, torch.tensor([[1.0, -2.0, 0.0, -0.25, math.inf, -math.inf, math.nan, 2.0]]))
    # a start beyond the history counts nothing
    assert_same_bits(pysample.apply_penalties(scores, ids, repetition=2.0, history_start=100), scores)


def test_signed_zeros_and_exact_division():
    """0.0 and -0.0 keep their signs (0 / p, -0 / p); the division is a true one (x / 3 differs from x * (1/3))."""
    x = torch.tensor([[0.0, -0.0, 1.0, 10.0, 7.0]])
    ids = torch.arange(5).unsqueeze(0)
    out = pysample.apply_penalties(x, ids, repetition=3.0)
    assert_same_bits(out, x / 3.0)
    assert not torch.equal(x / 3.0, x * (1 / 3.0))  # the inputs do tell the two apart


@pytest.mark.parametrize("id_dtype", [torch.int64, torch.int32], ids=str)
def test_ids_out_of_range_are_ignored(device, id_dtype):
    vocab = 10
    scores = torch.ones(2, vocab, device=device)
    extremes = [-1, vocab, INT32_MAX, -INT32_MAX - 1]
    if id_dtype == torch.int64:
        extremes += [2**63 - 1, -(2**63)]
    ids = torch.tensor([extremes, [3] + extremes[1:]], dtype=id_dtype, device=device)
    out = pysample.apply_penalties(scores, ids, repetition=2.0, presence=1.0, frequency=1.0)
    expected = torch.ones(2, vocab)
    expected[1, 3] = 0.5 - 1.0 - 1.0
    assert_same_bits(out.cpu(), expected)


def test_ids_shared_by_beams(device, seed):
    """ids with fewer rows than scores: each ids row serves batch // len(ids) consecutive score rows."""
    scores = make_scores(12, 500, torch.float32, seed, device)
    ids = make_ids(3, 80, 500, seed, device=device)
    expected = expected_penalties(scores, ids.repeat_interleave(4, 0), repetition=1.4, frequency=0.3)
    assert_same_bits(pysample.apply_penalties(scores, ids, repetition=1.4, frequency=0.3).cpu(), expected)


def test_inplace_on_a_strided_view(device, seed):
    storage = make_scores(8, 600, torch.float32, seed, device).t().contiguous().t()  # column-major
    view = storage[::2]  # every other row: strides (2, 8)
    ids = make_ids(4, 100, 600, seed, device=device)
    before = storage.clone()
    expected = expected_penalties(view, ids, repetition=1.7, presence=0.5)
    assert_same_bits(pysample.apply_penalties(view, ids, repetition=1.7, presence=0.5).cpu(), expected)
    pysample.apply_penalties_(view, ids, repetition=1.7, presence=0.5)
    assert_same_bits(view.cpu(), expected)
    assert_same_bits(storage[1::2], before[1::2])  # the rows between are untouched
    with pytest.raises(RuntimeError, match="more than one element"):
        pysample.apply_penalties_(torch.zeros(1, 5, device=device).expand(3, 5), ids[:3, :5], repetition=2.0)


def test_no_penalty_leaves_scores_alone(seed):
    scores = make_scores(4, 1000, torch.float32, seed)
    ids = make_ids(4, 300, 1000, seed)
    assert_same_bits(pysample.apply_penalties(scores, ids), scores)
    assert_same_bits(pysample.apply_penalties(scores, ids, presence=0.0, frequency=0.0), scores)
    assert_same_bits(pysample.apply_penalties(scores, ids, repetition=1.0), hf_repetition(ids, scores, 1.0))


# ---- the drop-in classes ---------------------------------------------------------------------------------------


def test_encoder_repetition_bitwise_equal_to_transformers(seed):
    scores = make_scores(8, 2000, torch.float32, seed)
    encoder_ids = make_ids(2, 50, 2000, seed, out_of_range=False)
    for penalty in (1.3, 0.6, 1.0):
        expected = HFEncoderRepetition(penalty, encoder_ids)(None, scores)  # 4 beams per encoder row
        actual = pysample.EncoderRepetitionPenaltyLogitsProcessor(penalty, encoder_ids)(None, scores)
        assert_same_bits(actual, expected)
        assert pysample.EncoderRepetitionPenaltyLogitsProcessor(penalty, encoder_ids).penalty == 1 / penalty


@pytest.mark.parametrize("penalty", [0.0, -1.0, 1, "1.2", None, math.nan])
def test_constructor_errors_match_transformers(penalty):
    for ours, theirs in (
        (lambda: pysample.RepetitionPenaltyLogitsProcessor(penalty), lambda: HFRepetition(penalty)),
        (
            lambda: pysample.EncoderRepetitionPenaltyLogitsProcessor(penalty, torch.zeros(1, 2).long()),
            lambda: HFEncoderRepetition(penalty, torch.zeros(1, 2).long()),
        ),
    ):
        with pytest.raises(ValueError) as theirs_error:
            theirs()
        with pytest.raises(ValueError, match="penalty") as ours_error:
            ours()
        assert str(ours_error.value) == str(theirs_error.value)


def test_prompt_ignore_length_errors_match_transformers():
    for bad in (-1, torch.zeros(2, 2).long()):
        with pytest.raises(ValueError) as theirs:
            HFRepetition(1.2, prompt_ignore_length=bad)
        with pytest.raises(ValueError) as ours:
            pysample.RepetitionPenaltyLogitsProcessor(1.2, prompt_ignore_length=bad)
        assert str(ours.value) == str(theirs.value)
    processor = pysample.RepetitionPenaltyLogitsProcessor(1.2, prompt_ignore_length=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="Incompatible `prompt_ignore_length` batch size"):
        processor(torch.zeros(2, 4).long(), torch.zeros(2, 10))


def test_one_dimensional_input_ids_like_transformers(seed):
    scores = make_scores(5, 100, torch.float32, seed)
    ids = torch.tensor([3, 7, 7, 99, 0])
    assert_same_bits(pysample.RepetitionPenaltyLogitsProcessor(1.5)(ids, scores), HFRepetition(1.5)(ids, scores))


def test_fuse_runs_penalties_in_place_on_its_copy(seed):
    scores = make_scores(6, 3000, torch.float32, seed)
    before = scores.clone()
    ids = make_ids(6, 400, 3000, seed, out_of_range=False)
    encoder_ids = make_ids(3, 30, 3000, seed + 5, out_of_range=False)
    chain = [
        HFRepetition(1.3),
        HFEncoderRepetition(1.1, encoder_ids),
        HFTopK(20),
        pysample.RepetitionPenaltyLogitsProcessor(0.9),
    ]
    expected = scores
    for processor in chain:
        expected = processor(ids, expected)
    fused = pysample.fuse(chain)
    assert sum(isinstance(step, pysample.processors._Penalty) for step in fused._steps) == 3
    assert_same_bits(fused(ids, scores), expected)
    assert_same_bits(scores, before)


def test_three_dimensional_scores_are_rejected():
    with pytest.raises(ValueError, match="2-D"):
        pysample.RepetitionPenaltyLogitsProcessor(1.2)(torch.zeros(1, 3).long(), torch.zeros(1, 1, 10))


# ---- the stateful form -----------------------------------------------------------------------------------------


def seen_tokens(state: pysample.PenaltyState) -> torch.Tensor:
    """The state's seen bits as a bool ``(slots, vocab)`` table: token t is bit t % 32 of word t // 32."""
    bits = (state.seen.unsqueeze(-1) >> torch.arange(32, dtype=torch.int32, device=state.seen.device)) & 1
    return bits.reshape(state.seen.shape[0], -1)[:, : state.counts.shape[1]].bool()


# Rows with the repetition penalty alone read the seen table, the others the counts: presence and frequency per
# row, some +0.0 (seen), some -0.0 (counts).
STATE_PARAMS = {
    "all three": (0.4, [0.0, 0.5, -0.2, 1.0, 0.1]),
    "repetition alone": (None, None),
    "mixed rows": ([0.0, 0.4, 0.0, -0.0, 0.0], [0.0, 0.0, 0.5, 0.0, -0.0]),
}


@pytest.mark.parametrize("penalties", STATE_PARAMS)
def test_state_matches_stateless_over_steps(device, seed, penalties):
    """A serving loop: slots start with prompts at different times; every step equals the stateless op on each
    slot's whole history with output_start at its prompt's end."""
    slots, vocab, steps = 5, 4001, 12  # a partial last word of seen bits
    g = torch.Generator().manual_seed(seed)
    state = pysample.PenaltyState(slots, vocab, device=device)
    histories, prompt_lengths = [None] * slots, [0] * slots
    presence, frequency = (
        torch.tensor(v, device=device) if isinstance(v, list) else v for v in STATE_PARAMS[penalties]
    )
    params = dict(
        repetition=torch.tensor([1.1, 1.3, 0.8, 1.0, 2.0], device=device), presence=presence, frequency=frequency
    )

    def row_value(value, s):
        return value[s].item() if isinstance(value, torch.Tensor) else value

    for step in range(steps):
        # (re)start some slots with new prompts of their own lengths
        starting = [s for s in range(slots) if histories[s] is None or torch.rand((), generator=g) < 0.1]
        for s in starting:
            prompt_lengths[s] = int(torch.randint(1, 300, (), generator=g))
            histories[s] = torch.randint(0, vocab, (prompt_lengths[s],), generator=g)
            state.reset([s], histories[s].unsqueeze(0).to(device))
        scores = make_scores(slots, vocab, torch.float32, seed + step, device)
        expected = torch.stack(
            [
                expected_penalties(
                    scores[s : s + 1],
                    histories[s].unsqueeze(0),
                    repetition=params["repetition"][s].item(),
                    presence=row_value(presence, s),
                    frequency=row_value(frequency, s),
                    output_start=prompt_lengths[s],
                )[0]
                for s in range(slots)
            ]
        )
        assert_same_bits(state.apply_(scores.clone(), **params).cpu(), expected)
        assert torch.equal(seen_tokens(state), state.counts != 0)
        new_tokens = torch.randint(0, vocab, (slots,), generator=g)
        new_tokens[step % slots] = histories[step % slots][0]  # a prompt token generated again
        state.append(new_tokens.to(device))
        histories = [torch.cat([h, new_tokens[s : s + 1]]) for s, h in enumerate(histories)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("strided", [False, True], ids=["contiguous", "strided"])
@pytest.mark.parametrize("penalties", ["repetition alone", "all three"])
def test_state_sparse_and_dense_histories(device, seed, dtype, strided, penalties):
    """Slots whose seen tokens are fewer than vocab / 32 (the CPU kernel penalises them one by one), exactly that many
    (one pass over the row), many, or none: each row equals the stateless op on its slot's history."""
    vocab = 4001  # 125 words of seen bits and a partial last one
    lengths = [0, 40, 124, 125, 3000]
    g = torch.Generator().manual_seed(seed)
    # distinct ids, so that a slot sees exactly its length in tokens
    histories = [torch.randperm(vocab, generator=g)[:length].unsqueeze(0) for length in lengths]
    state = pysample.PenaltyState(len(lengths), vocab, device=device)
    for slot, history in enumerate(histories):
        state.reset([slot], history.to(device), output_start=0)
    params = (
        dict(repetition=1.3) if penalties == "repetition alone" else dict(repetition=1.3, presence=0.5, frequency=-0.25)
    )
    scores = make_scores(len(lengths), vocab * (2 if strided else 1), dtype, seed, device)
    scores = scores[:, ::2] if strided else scores
    expected = torch.cat(
        [expected_penalties(scores[s : s + 1], history, **params) for s, history in enumerate(histories)]
    )
    assert_same_bits(state.apply_(scores.clone() if not strided else scores, **params).cpu(), expected)


def test_state_ignores_seen_bits_past_the_vocabulary(device):
    """Bits of the last seen word past the vocabulary name no token: nothing is written past the row (with few seen
    tokens, which the CPU kernel penalises one by one, and with many)."""
    vocab = 4008  # the last word's bits 8..31 are past it
    state = pysample.PenaltyState(2, vocab, device=device)
    state.reset([0], torch.tensor([[3, 4007]], device=device), output_start=0)
    state.reset([1], torch.arange(0, vocab, 2, device=device).unsqueeze(0), output_start=0)
    state.seen[:, -1] |= torch.tensor(-256, dtype=torch.int32, device=device)
    buffer = torch.ones(2, vocab + 32, device=device)
    state.apply_(buffer[:, :vocab], repetition=2.0)
    expected = torch.ones(2, vocab + 32)
    expected[0, [3, 4007]] = 0.5
    expected[1, 0:vocab:2] = 0.5
    assert torch.equal(buffer.cpu(), expected)


def test_state_slots_map_rows(device, seed):
    vocab = 300
    state = pysample.PenaltyState(4, vocab, device=device)
    prompts = make_ids(4, 50, vocab, seed, device=device)
    state.reset(prompt_ids=prompts, output_start=0)  # the prompt counts as output too
    rows = torch.tensor([2, 0, 2], device=device)  # two rows of one slot (e.g. n > 1 samples)
    scores = make_scores(3, vocab, torch.float32, seed, device)
    expected = expected_penalties(scores, prompts[rows], repetition=1.5, frequency=0.5)
    assert_same_bits(state.apply_(scores.clone(), repetition=1.5, frequency=0.5, slots=rows).cpu(), expected)
    # appending for two rows of one slot adds both
    state.append(torch.tensor([7, 9, 7], device=device), slots=rows)
    counts = state.counts.cpu()
    history = torch.cat([prompts[2].cpu(), torch.tensor([7, 7])])
    valid = history[(history >= 0) & (history < vocab)]
    assert counts[2, 7] == 2 * int((valid == 7).sum())
    assert counts[0, 9] == 2 * int((prompts[0].cpu() == 9).sum()) + 2
    assert torch.equal(seen_tokens(state).cpu(), counts != 0)
    # the repetition penalty alone reads the seen table
    slot_history = {2: history, 0: torch.cat([prompts[0].cpu(), torch.tensor([9])])}
    expected = torch.cat(
        [
            expected_penalties(scores[r : r + 1], slot_history[s].unsqueeze(0), repetition=1.5)
            for r, s in enumerate(rows.tolist())
        ]
    )
    assert_same_bits(state.apply_(scores.clone(), repetition=1.5, slots=rows).cpu(), expected)


def test_state_reset_clears_only_its_slots(device):
    state = pysample.PenaltyState(3, 10, device=device)
    state.reset(prompt_ids=torch.tensor([[1, 2], [3, 4], [5, 6]], device=device))
    state.append(torch.tensor([9, 9, 9], device=device))
    state.reset([1])
    counts = state.counts.cpu()
    assert counts[1].eq(0).all()
    assert counts[0, 1] == 1 and counts[0, 9] == 2 and counts[2, 6] == 1 and counts[2, 9] == 2
    assert torch.equal(seen_tokens(state).cpu(), counts != 0)


# ---- registration and bad arguments ----------------------------------------------------------------------------


def test_compile_fullgraph(device, seed):
    scores = make_scores(4, 1000, torch.float32, seed, device).nan_to_num()
    ids = make_ids(4, 64, 1000, seed, device=device)
    state = pysample.PenaltyState(4, 1000, device=device)
    state.reset(prompt_ids=ids)

    def step(scores, ids, tokens):
        out = pysample.apply_penalties(scores, ids, repetition=1.2, frequency=0.5, output_start=32)
        state.append(tokens)
        return state.apply_(out, presence=0.25)

    tokens = torch.tensor([1, 2, 3, 4], device=device)
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    expected_state = pysample.PenaltyState(4, 1000, device=device)
    expected_state.reset(prompt_ids=ids)
    expected_state.append(tokens)
    expected = expected_state.apply_(
        pysample.apply_penalties(scores, ids, repetition=1.2, frequency=0.5, output_start=32), presence=0.25
    )
    assert_same_bits(compiled(scores, ids, tokens), expected)


BAD_ARGUMENTS = {
    "scores 1-D": (dict(scores=torch.zeros(5)), ValueError, "scores must be 2-D"),
    "scores int": (dict(scores=torch.zeros(2, 5, dtype=torch.int64)), TypeError, "scores must be float32"),
    "ids 1-D": (dict(ids=torch.zeros(3, dtype=torch.long)), ValueError, "ids must be 2-D"),
    "ids float": (dict(ids=torch.zeros(2, 3)), TypeError, "ids must be int64 or int32"),
    "ids batch": (dict(ids=torch.zeros(3, 3, dtype=torch.long)), ValueError, "ids' batch"),
    "repetition < 0": (dict(repetition=-0.5), ValueError, "repetition must be >= 0, got -0.5"),
    "repetition NaN": (dict(repetition=math.nan), ValueError, "repetition must be >= 0"),
    "presence NaN": (dict(presence=math.nan), ValueError, "presence must be a finite"),
    "frequency inf": (dict(frequency=math.inf), ValueError, "frequency must be a finite"),
    "repetition row NaN": (dict(repetition=torch.tensor([1.0, math.nan])), ValueError, r"repetition\[1\]"),
    "presence row inf": (dict(presence=torch.tensor([math.inf, 1.0])), ValueError, r"presence\[0\]"),
    "repetition rows shape": (dict(repetition=torch.ones(3)), ValueError, "repetition must have shape"),
    "repetition int tensor": (dict(repetition=torch.ones(2, dtype=torch.long)), TypeError, "repetition must be"),
    "history_start negative": (dict(history_start=-1), ValueError, "history_start must be >= 0"),
    "output_start row negative": (dict(output_start=torch.tensor([0, -3])), ValueError, r"output_start\[1\]"),
    "history_start float": (dict(history_start=1.5), TypeError, "history_start must be an int"),
}


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS))
def test_bad_arguments(case):
    overrides, error, message = BAD_ARGUMENTS[case]
    args = dict(scores=torch.zeros(2, 5), ids=torch.zeros(2, 3, dtype=torch.long), repetition=1.2)
    args.update(overrides)
    with pytest.raises(error, match=message):
        pysample.apply_penalties_(args.pop("scores"), args.pop("ids"), **args)


def test_state_bad_arguments():
    state = pysample.PenaltyState(2, 5)
    with pytest.raises(IndexError, match="slots"):
        state.apply_(torch.zeros(1, 5), repetition=1.2, slots=[2])
    with pytest.raises(IndexError, match="slots"):
        state.append(torch.tensor([1]), slots=[-1])
    with pytest.raises(ValueError, match="vocab size"):
        state.apply_(torch.zeros(2, 6), repetition=1.2)
    with pytest.raises(ValueError, match="one slot per row"):
        state.append(torch.tensor([1, 2, 3]))
    penalty_args = (None, 1.2, None, None, None, None)
    with pytest.raises(TypeError, match="counts must be int32"):
        torch.ops.pysample.apply_penalty_counts_(torch.zeros(2, 5), torch.zeros(2, 5), state.seen, None, *penalty_args)
    with pytest.raises(TypeError, match="seen must be int32"):
        torch.ops.pysample.apply_penalty_counts_(
            torch.zeros(2, 5), state.counts, state.seen.to(torch.uint8), None, *penalty_args
        )
    with pytest.raises(ValueError, match=r"seen must have shape \[2, 1\]"):  # a bit per token: 5 bits a row
        torch.ops.pysample.count_tokens_(
            state.counts, state.counts, torch.zeros(2, 1, dtype=torch.long), None, None, 0, None, 0
        )
    with pytest.raises(TypeError, match="slots must be an integer"):
        state.append(torch.tensor([1]), slots=torch.tensor([0.0]))
    assert state.counts.eq(0).all() and state.seen.eq(0).all()  # nothing was written by the failed calls


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_device_mismatch():
    with pytest.raises(ValueError, match="ids must be on"):
        pysample.apply_penalties(torch.zeros(2, 5, device="cuda"), torch.zeros(2, 3, dtype=torch.long), repetition=1.2)
