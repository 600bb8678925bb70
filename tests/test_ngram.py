"""N-gram blocking and sequence bias: no_repeat_ngram_ and bias_sequences_ against pysample.reference and
transformers, the four drop-in processors, fuse, registration and bad arguments."""

from __future__ import annotations

import math

import pytest
import torch
import transformers as T

import pysample
from pysample import reference

from test_penalties import assert_same_bits, make_scores

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


def repetitive_ids(batch: int, length: int, pool: int, seed: int, dtype=torch.int64, device="cpu") -> torch.Tensor:
    """Ids drawn from a small pool, so that n-grams repeat often."""
    g = torch.Generator().manual_seed(seed + 3)
    return torch.randint(0, pool, (batch, length), generator=g).to(dtype=dtype, device=device)


# ---- no_repeat_ngram_ ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize(
    "batch, vocab, length", [(0, 17, 5), (1, 17, 0), (7, 100, 60), (64, 32000, 512), (2, 128256, 32768)]
)
def test_no_repeat_ngram_bitwise_equal_to_transformers(seed, n, batch, vocab, length):
    scores = make_scores(batch, vocab, torch.float32, seed)
    ids = repetitive_ids(batch, length, 4 if length > 1000 else 6, seed)
    ids[:, ::7] += vocab  # ids beyond the vocabulary (a larger embedding): never banned, still matched
    expected = T.NoRepeatNGramLogitsProcessor(n)(ids, scores)
    assert_same_bits(pysample.NoRepeatNGramLogitsProcessor(n)(ids, scores), expected)


@pytest.mark.parametrize("n", [5, 6, 7])
def test_no_repeat_ngram_n_around_the_length(seed, n):
    """n = length + 1 (nothing yet), n = length (one window, never matching the prefix after it), n < length."""
    scores = make_scores(3, 20, torch.float32, seed)
    ids = torch.tensor([[1, 2, 1, 2, 1, 2], [3, 3, 3, 3, 3, 3], [0, 1, 2, 3, 4, 5]])
    assert_same_bits(
        pysample.NoRepeatNGramLogitsProcessor(n)(ids, scores), T.NoRepeatNGramLogitsProcessor(n)(ids, scores)
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("id_dtype", [torch.int64, torch.int32], ids=str)
def test_no_repeat_ngram_matches_reference(device, seed, dtype, id_dtype):
    batch, vocab, length = 9, 50, 80
    scores = make_scores(batch, vocab, dtype, seed, device)
    ids = repetitive_ids(batch, length, 5, seed, id_dtype, device)
    ids[0, 3] = -1  # padding ids match padding and are never banned
    ids[0, 10] = -1
    g = torch.Generator().manual_seed(seed)
    ngram_size = torch.randint(0, 5, (batch,), generator=g).to(device)
    lengths = torch.randint(0, length + 1, (batch,), generator=g).to(device)
    expected = reference.no_repeat_ngram(scores.cpu(), ids.cpu(), ngram_size.cpu(), lengths=lengths.cpu())
    out = pysample.no_repeat_ngram_(scores.clone(), ids, ngram_size=ngram_size, lengths=lengths)
    assert_same_bits(out.cpu(), expected)


def test_no_repeat_ngram_zero_disables_and_int_ids_out_of_range(device):
    scores = torch.zeros(2, 4, device=device)
    ids = torch.tensor([[2**31 - 1, 5, 2**31 - 1, 5, 2**31 - 1], [1, -3, 1, -3, 1]], dtype=torch.int32, device=device)
    pysample.no_repeat_ngram_(scores, ids, ngram_size=2)
    assert torch.equal(scores.cpu(), torch.zeros(2, 4))  # the would-be bans (5, -3) lie outside the vocabulary
    pysample.no_repeat_ngram_(
        scores,
        torch.tensor([[1, 2, 1]], device=device).expand(2, 3).contiguous(),
        ngram_size=torch.tensor([0, 2], device=device),
    )
    assert torch.equal(scores.cpu(), torch.tensor([[0.0, 0, 0, 0], [0, 0, -math.inf, 0]]))


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("beams", [1, 4])
@pytest.mark.parametrize("decoded", [0, 1, 2, 9])
def test_encoder_no_repeat_ngram_bitwise_equal_to_transformers(seed, n, beams, decoded):
    batch, vocab = 3, 40
    encoder_ids = repetitive_ids(batch, 25, 6, seed)
    ids = repetitive_ids(batch * beams, decoded, 6, seed + 1)
    scores = make_scores(batch * beams, vocab, torch.float32, seed)
    expected = T.EncoderNoRepeatNGramLogitsProcessor(n, encoder_ids)(ids, scores)
    actual = pysample.EncoderNoRepeatNGramLogitsProcessor(n, encoder_ids)(ids, scores)
    assert_same_bits(actual, expected)


def test_encoder_sources_match_reference(device, seed):
    scores = make_scores(8, 30, torch.float32, seed, device)
    ids = repetitive_ids(8, 12, 4, seed, device=device)
    sources = repetitive_ids(2, 20, 4, seed + 9, device=device)
    source_lengths = torch.tensor([20, 7], device=device)
    lengths = torch.tensor([12, 0, 1, 2, 3, 5, 8, 12], device=device)
    expected = reference.no_repeat_ngram(
        scores.cpu(), ids.cpu(), 3, lengths=lengths.cpu(), sources=sources.cpu(), source_lengths=source_lengths.cpu()
    )
    out = pysample.no_repeat_ngram_(
        scores.clone(), ids, ngram_size=3, lengths=lengths, sources=sources, source_lengths=source_lengths
    )
    assert_same_bits(out.cpu(), expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "shape, layout", [((9, 50), "contiguous"), ((9, 50), "strided"), ((8, 30), "sources"), ((33, 128256), "streamed")]
)
def test_out_of_place_equals_in_place(device, seed, dtype, shape, layout):
    """no_repeat_ngram copies and bans in one pass: the in-place op's result on a copy, the input untouched. Strided
    scores (a column slice), sources with per-row n, and an output over 16 MiB (float32: written with streaming
    stores on the CPU) included."""
    batch, vocab = shape
    scores = make_scores(batch, vocab + (3 if layout == "strided" else 0), dtype, seed, device)
    if layout == "strided":
        scores = scores[:, 1:-2]
    ids = repetitive_ids(batch, 60, 5, seed, device=device)
    kwargs = dict(ngram_size=3)
    if layout == "sources":
        kwargs = dict(
            ngram_size=torch.tensor([1, 2, 3, 0, 2, 3, 4, 2], device=device),
            sources=repetitive_ids(2, 25, 5, seed + 1, device=device),
        )
    before = scores.clone()
    out = pysample.no_repeat_ngram(scores, ids, **kwargs)
    assert out.is_contiguous() and out.data_ptr() != scores.data_ptr()
    assert_same_bits(out, pysample.no_repeat_ngram_(scores.clone(), ids, **kwargs))
    assert_same_bits(scores, before)
    assert bool((out == -math.inf).any())  # something was banned


# ---- bias_sequences_ -------------------------------------------------------------------------------------------


def random_sequence_bias(vocab: int, seed: int, count: int = 30, special: bool = True) -> list:
    """Sequences of 1-4 tokens from a small pool (so they match and share last tokens), some biases +-inf."""
    g = torch.Generator().manual_seed(seed + 5)
    pairs, seen = [], set()
    while len(pairs) < count:
        length = int(torch.randint(1, 5, (), generator=g))
        sequence = torch.randint(0, min(vocab, 6), (length,), generator=g).tolist()
        if tuple(sequence) in seen:
            continue
        seen.add(tuple(sequence))
        bias = float(torch.randn((), generator=g)) * 3
        if special and torch.rand((), generator=g) < 0.15:
            bias = math.inf if torch.rand((), generator=g) < 0.5 else -math.inf
        pairs.append([sequence, bias])
    return pairs


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("batch, vocab, length", [(0, 10, 4), (1, 10, 0), (16, 10, 8), (64, 32000, 512)])
def test_sequence_bias_bitwise_equal_to_transformers(seed, dtype, batch, vocab, length):
    scores = make_scores(batch, vocab, dtype, seed)
    ids = repetitive_ids(batch, length, 6, seed)
    sequence_bias = random_sequence_bias(vocab, seed)
    expected = T.SequenceBiasLogitsProcessor(sequence_bias)(ids, scores)
    assert_same_bits(pysample.SequenceBiasLogitsProcessor(sequence_bias)(ids, scores), expected)


def test_sequence_bias_quirks():
    """+inf and -inf biases on one token sum to NaN; -0.0 scores come out as 0.0 (transformers' scores + bias)."""
    scores = torch.tensor([[-0.0, 1.0, -0.0, 2.0]])
    ids = torch.tensor([[3, 1]])
    sequence_bias = [[[1], math.inf], [[3, 1, 1], -math.inf], [[1, 1], 0.5], [[2, 1], -0.0]]
    out = pysample.SequenceBiasLogitsProcessor(sequence_bias)(ids, scores)
    expected = T.SequenceBiasLogitsProcessor(sequence_bias)(ids, scores)
    assert_same_bits(out, expected)
    assert out[0, 1].isnan() and not torch.signbit(out[0, 0]) and not torch.signbit(out[0, 2])


def test_bad_words_bitwise_equal_to_transformers(seed):
    scores = make_scores(12, 50, torch.float32, seed)
    ids = repetitive_ids(12, 30, 6, seed)
    bad_words = [[1, 2], [3], [0], [4, 4, 4], [2, 5, 1], [5]]
    for eos in (None, 0, [0, 3], torch.tensor([5])):
        expected = T.NoBadWordsLogitsProcessor(bad_words, eos_token_id=eos)(ids, scores)
        assert_same_bits(pysample.NoBadWordsLogitsProcessor(bad_words, eos_token_id=eos)(ids, scores), expected)
    # every bad word is an end-of-sequence token: nothing is banned (transformers accepts it)
    for eos in ([0, 3, 5], torch.tensor([0, 3, 5])):
        bad_words = [[0], [3], [5]]
        expected = T.NoBadWordsLogitsProcessor(bad_words, eos_token_id=eos)(ids, scores)
        assert_same_bits(pysample.NoBadWordsLogitsProcessor(bad_words, eos_token_id=eos)(ids, scores), expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_bias_sequences_matches_reference(device, seed, dtype):
    batch, vocab, length = 10, 12, 9
    scores = make_scores(batch, vocab, dtype, seed, device)
    ids = repetitive_ids(batch, length, 6, seed, torch.int32, device)
    pairs = random_sequence_bias(vocab, seed)
    lengths = torch.randint(0, length + 1, (batch,), generator=torch.Generator().manual_seed(seed)).to(device)
    packed = pysample.ops.pack_sequences([s for s, _ in pairs], [b for _, b in pairs], device=device)
    expected = reference.bias_sequences(
        scores.cpu(), ids.cpu(), [s for s, _ in pairs], [b for _, b in pairs], lengths=lengths.cpu()
    )
    out = pysample.bias_sequences_(scores.clone(), ids, packed, lengths=lengths)
    assert_same_bits(out.cpu(), expected)
    # unlike transformers' processor the op writes only biased tokens: a -0.0 elsewhere stays
    zeros = torch.full((1, vocab), -0.0, dtype=dtype, device=device)
    single = pysample.ops.pack_sequences([[0]], [1.0], device=device)
    assert torch.signbit(pysample.bias_sequences_(zeros, ids[:1], single)[0, 1:]).all()


# ---- drop-in details and fuse ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda m: m.NoRepeatNGramLogitsProcessor(0),
        lambda m: m.NoRepeatNGramLogitsProcessor(2.0),
        lambda m: m.EncoderNoRepeatNGramLogitsProcessor(-1, torch.zeros(1, 3, dtype=torch.long)),
        lambda m: m.SequenceBiasLogitsProcessor([]),
        lambda m: m.SequenceBiasLogitsProcessor({(1,): 1}),
        lambda m: m.SequenceBiasLogitsProcessor({(1, -2): 1.0}),
        lambda m: m.SequenceBiasLogitsProcessor({(): 1.0}),
        lambda m: m.SequenceBiasLogitsProcessor({1: 1.0}),
        lambda m: m.SequenceBiasLogitsProcessor([[[1], 1]]),
        lambda m: m.NoBadWordsLogitsProcessor([]),
        lambda m: m.NoBadWordsLogitsProcessor([1, 2]),
        lambda m: m.NoBadWordsLogitsProcessor([[1, -2]]),
    ],
)
def test_constructor_errors_match_transformers(make):
    with pytest.raises(ValueError) as theirs:
        make(T)
    with pytest.raises(ValueError) as ours:
        make(pysample)
    assert str(ours.value) == str(theirs.value)


def test_vocabulary_checked_at_first_call_like_transformers():
    sequence_bias = [[[1, 12], 1.0], [[15], -1.0]]
    with pytest.raises(ValueError) as theirs:
        T.SequenceBiasLogitsProcessor(sequence_bias)(torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 10))
    with pytest.raises(ValueError) as ours:
        pysample.SequenceBiasLogitsProcessor(sequence_bias)(torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 10))
    assert str(ours.value) == str(theirs.value)


def test_fuse_runs_bans_and_biases_in_place_on_its_copy(seed):
    scores = make_scores(6, 40, torch.float32, seed)
    before = scores.clone()
    ids = repetitive_ids(6, 50, 6, seed)
    encoder_ids = repetitive_ids(3, 20, 6, seed + 1)
    chain = [
        T.SequenceBiasLogitsProcessor([[[1, 2], 4.0], [[3], -2.0]]),
        T.RepetitionPenaltyLogitsProcessor(1.3),
        T.NoRepeatNGramLogitsProcessor(3),
        pysample.EncoderNoRepeatNGramLogitsProcessor(2, encoder_ids),
        T.NoBadWordsLogitsProcessor([[2, 5], [4]]),
        T.TopKLogitsWarper(10),
    ]
    expected = scores
    for processor in chain:
        expected = processor(ids, expected)
    fused = pysample.fuse(chain)
    assert sum(isinstance(step, pysample.processors._TokenEditor) for step in fused._steps) == 5
    assert_same_bits(fused(ids, scores), expected)
    assert_same_bits(scores, before)


# ---- registration and bad arguments ----------------------------------------------------------------------------


def test_compile_fullgraph(device, seed):
    scores = make_scores(4, 30, torch.float32, seed, device).nan_to_num()
    ids = repetitive_ids(4, 20, 5, seed, device=device)
    packed = pysample.ops.pack_sequences([[1], [2, 3]], [1.0, -2.0], device=device)

    def step(scores, ids):
        out = pysample.no_repeat_ngram(scores, ids, ngram_size=2)
        pysample.no_repeat_ngram_(out, ids, ngram_size=3)
        return pysample.bias_sequences_(out, ids, packed)

    expected = step(scores, ids)
    assert_same_bits(torch.compile(step, fullgraph=True, backend="aot_eager")(scores, ids), expected)


NGRAM_BAD_ARGUMENTS = {
    "ngram_size negative": (dict(ngram_size=-1), ValueError, "ngram_size must be >= 0"),
    "ngram_size row negative": (dict(ngram_size=torch.tensor([1, -2])), ValueError, r"ngram_size\[1\]"),
    "ngram_size float": (dict(ngram_size=2.0), TypeError, "ngram_size must be an int"),
    "ids 1-D": (dict(ids=torch.zeros(4, dtype=torch.long)), ValueError, "ids must be 2-D"),
    "ids batch": (dict(ids=torch.zeros(3, 4, dtype=torch.long)), ValueError, "ids must have the scores' batch"),
    "ids float": (dict(ids=torch.zeros(2, 4)), TypeError, "ids must be int64 or int32"),
    "lengths too long": (dict(lengths=torch.tensor([4, 5])), ValueError, r"lengths\[1\] must be in \[0, 4\]"),
    "lengths int32": (dict(lengths=torch.tensor([1, 2], dtype=torch.int32)), TypeError, "lengths must be int64"),
    "sources dtype": (dict(sources=torch.zeros(1, 3, dtype=torch.int32)), TypeError, "sources must have the ids'"),
    "sources batch": (dict(sources=torch.zeros(3, 3, dtype=torch.long)), ValueError, "sources' batch"),
    "source_lengths alone": (dict(source_lengths=torch.tensor([1, 1])), ValueError, "source_lengths needs sources"),
    "source_lengths too long": (
        dict(sources=torch.zeros(1, 3, dtype=torch.long), source_lengths=torch.tensor([4])),
        ValueError,
        r"source_lengths\[0\]",
    ),
    "scores int": (dict(scores=torch.zeros(2, 5, dtype=torch.long)), TypeError, "scores must be float32"),
}


@pytest.mark.parametrize("op", ["no_repeat_ngram_", "no_repeat_ngram"])
@pytest.mark.parametrize("case", list(NGRAM_BAD_ARGUMENTS))
def test_no_repeat_ngram_bad_arguments(case, op):
    overrides, error, message = NGRAM_BAD_ARGUMENTS[case]
    args = dict(scores=torch.zeros(2, 5), ids=torch.zeros(2, 4, dtype=torch.long), ngram_size=2)
    args.update(overrides)
    scores = args.pop("scores")
    before = scores.clone()
    with pytest.raises(error, match=message):
        getattr(pysample, op)(scores, args.pop("ids"), **args)
    assert torch.equal(scores, before)


def _packed(tokens, offsets, biases):
    return pysample.ops.PackedSequences(torch.tensor(tokens), torch.tensor(offsets), torch.tensor(biases))


BIAS_BAD_ARGUMENTS = {
    "last token beyond vocab": (_packed([1, 5], [0, 2], [1.0]), ValueError, "last token 5 is not in the vocabulary"),
    "last token negative": (_packed([1, -1], [0, 2], [1.0]), ValueError, "last token -1"),
    "empty sequence": (_packed([1, 2], [0, 0, 2], [1.0, 1.0]), ValueError, "sequence 0: sequence_offsets must incr"),
    "offsets past tokens": (_packed([1, 2], [0, 3], [1.0]), ValueError, "stay within sequence_tokens"),
    "offsets negative start": (_packed([1, 2], [-1, 1], [1.0]), ValueError, r"sequence_offsets\[0\] must be >= 0"),
    "offsets count": (_packed([1, 2], [0, 1, 2], [1.0]), ValueError, "one more entry"),
    "biases float64": (
        _packed([1], [0, 1], [1.0])._replace(biases=torch.tensor([1.0], dtype=torch.float64)),
        TypeError,
        "sequence_biases must be",
    ),
    "tokens int32": (
        _packed([1], [0, 1], [1.0])._replace(tokens=torch.tensor([1], dtype=torch.int32)),
        TypeError,
        "sequence_tokens must be",
    ),
}


@pytest.mark.parametrize("case", list(BIAS_BAD_ARGUMENTS))
def test_bias_sequences_bad_arguments(case):
    packed, error, message = BIAS_BAD_ARGUMENTS[case]
    scores = torch.zeros(2, 5)
    with pytest.raises(error, match=message):
        pysample.bias_sequences_(scores, torch.zeros(2, 3, dtype=torch.long), packed)
    assert scores.eq(0).all()
