"""Property-based fuzzing (hypothesis) of every public op against its reference.

Inputs: shapes from one row of one token to 300 rows or 200k tokens, the three dtypes (and float64 for the token
editors), NaN / ±inf / ±0 / denormal / huge scores, all-equal rows, rows sliced out of wider tensors and columns with
a stride, per-row parameter tensors with extreme values, token ids outside the vocabulary (negative, >= vocab, the
dtype's extremes). Each input must give the reference's result (the equality rules of the op's own tests), and each
bad argument a Python exception whose message names it. Examples are the same every run; PYSAMPLE_TEST_SEED=random
draws fresh ones.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pysample
from pysample import reference

import cuda_logic
import warp_compare as W
from test_beam_step import check_step

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
EDITOR_DTYPES = DTYPES + (torch.float64,)  # the token editors take float64 too
VOCABS = (1, 2, 3, 17, 64, 1000, 32000, 50257, 200_000)
SPECIALS = (math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-40, -1e-42, 3e38, -3e38, 1e-8)
INT_EXTREMES = {torch.int32: (-(2**31), 2**31 - 1), torch.int64: (-(2**63), 2**63 - 1)}


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same values bit for bit, signed zeros included; any NaN equals any NaN (payloads change with dtype casts)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if not a.is_floating_point():
        return torch.equal(a, b)
    return not W.differing(a, b).any()


def _generator(draw) -> torch.Generator:
    return torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))


@st.composite
def score_tensors(draw, max_elements: int = 400_000, dtypes=DTYPES):
    """(batch, vocab) scores of any dtype, layout and content, with at least one row."""
    vocab = draw(st.sampled_from([v for v in VOCABS if v <= max_elements]))
    batch = draw(st.integers(1, max(1, min(300, max_elements // vocab))))
    dtype = draw(st.sampled_from(dtypes))
    g = _generator(draw)
    x = torch.randn(batch, vocab, generator=g) * draw(st.sampled_from([0.1, 1.0, 3.0, 30.0]))
    content = draw(st.sampled_from(["normal", "specials", "all_equal", "ties"]))
    if content == "specials":
        mask = torch.rand(batch, vocab, generator=g) < draw(st.sampled_from([0.001, 0.05, 0.5]))
        picks = torch.tensor(SPECIALS)[torch.randint(0, len(SPECIALS), (batch, vocab), generator=g)]
        x = torch.where(mask, picks, x)
    elif content == "all_equal":
        x[:] = draw(st.sampled_from([0.0, -1.0, 7.5, -math.inf]))
    elif content == "ties":
        x = x.round()
    x = x.to(dtype)
    layout = draw(st.sampled_from(["contiguous", "sliced rows", "strided columns"]))
    if layout == "sliced rows":  # rows of a wider tensor: row stride > vocab
        wide = torch.zeros(batch, vocab + 5, dtype=dtype)
        wide[:, 2 : 2 + vocab] = x
        x = wide[:, 2 : 2 + vocab]
    elif layout == "strided columns":
        wide = torch.zeros(batch, 2 * vocab, dtype=dtype)
        wide[:, ::2] = x
        x = wide[:, ::2]
    return x


@st.composite
def token_ids(draw, batch: int, vocab: int, max_length: int = 600):
    """(batch, length) ids, mostly from a small alphabet (repeats, n-grams), some outside [0, vocab)."""
    dtype = draw(st.sampled_from([torch.int64, torch.int32]))
    length = draw(st.integers(0, max_length))
    g = _generator(draw)
    ids = torch.randint(0, max(1, min(vocab, draw(st.sampled_from([3, 20, 1000])))), (batch, length), generator=g)
    if length and draw(st.booleans()):
        low, high = INT_EXTREMES[dtype]
        bad = torch.tensor([-1, -5, vocab, vocab + 3, low, high], dtype=torch.int64)
        mask = torch.rand(batch, length, generator=g) < 0.05
        ids = torch.where(mask, bad[torch.randint(0, len(bad), (batch, length), generator=g)], ids)
    return ids.to(dtype)


def _row_or_scalar(draw, batch: int, values, dtype=torch.float32):
    """A scalar, or a (batch,) tensor of the values (per-row parameters), or None."""
    kind = draw(st.sampled_from(["none", "scalar", "rows"]))
    if kind == "none":
        return None
    if kind == "scalar":
        return draw(st.sampled_from(values))
    return torch.tensor([draw(st.sampled_from(values)) for _ in range(batch)], dtype=dtype)


# ---- warpers and sampling ------------------------------------------------------------------------------------


@settings(max_examples=30)
@given(st.data())
def test_warp_logits(data):
    x = data.draw(score_tensors(max_elements=50_000))
    batch, vocab = x.shape
    params = {
        "temperature": _row_or_scalar(data.draw, batch, [0.3, 1.0, 2.5, 1e-3]),
        "top_k": _row_or_scalar(data.draw, batch, [0, 1, 2, 50, vocab + 3, 10**12], torch.int64),
        "top_p": _row_or_scalar(data.draw, batch, [0.0, 0.3, 0.9, 1.0]),
        "min_p": _row_or_scalar(data.draw, batch, [0.0, 0.05, 1.0]),
        "typical_p": _row_or_scalar(data.draw, batch, [0.2, 0.95, 1.0]),
        "epsilon": _row_or_scalar(data.draw, batch, [0.0, 3e-4, 0.5]),
        "eta": _row_or_scalar(data.draw, batch, [0.0, 3e-4, 0.5]),
    }
    params = {k: v for k, v in params.items() if v is not None}
    keep = data.draw(st.integers(1, 3))
    op = lambda y, **kw: pysample.warp_logits(y, **kw)  # noqa: E731
    # Adversarial rows (near-flat, ties, huge scales) put many tokens within rounding of a boundary: every difference
    # must still be explained by the equality rule, but need not be rare.
    out = W.check_chain(op, x, params, W.hf_stage, keep, what="[fuzz]", rare=False)
    assert out.shape == x.shape and out.dtype == x.dtype
    inplace = x.clone()
    assert pysample.warp_logits_(inplace, **params, min_tokens_to_keep=keep) is inplace
    assert W.bitwise_equal(inplace, out)


@settings(max_examples=40)
@pytest.mark.parametrize(
    "draw_tokens",
    [
        pytest.param(pysample.sample, id="cpu"),
        pytest.param(
            cuda_logic.sample,
            id="cuda-logic",
            marks=pytest.mark.skipif(
                cuda_logic.nvcc() is None, reason="nvcc not found: the CUDA kernel's logic is built with it"
            ),
        ),
    ],
)
@given(st.data())
def test_sample(draw_tokens, data):
    """pysample.sample on the CPU, and the CUDA kernel's per-row logic run on the host (tests/cuda_logic.py)."""
    x = data.draw(score_tensors(max_elements=60_000))
    batch = x.shape[0]
    params = dict(
        temperature=_row_or_scalar(data.draw, batch, [0.0, 0.7, 1.0, 4.0]),
        top_k=_row_or_scalar(data.draw, batch, [0, 1, 50, 10**9], torch.int64),
        top_p=_row_or_scalar(data.draw, batch, [0.0, 0.5, 0.95, 1.0]),
        min_p=_row_or_scalar(data.draw, batch, [0.0, 0.1, 1.0]),
    )
    if params["temperature"] is None:
        params["temperature"] = 1.0
    g = _generator(data.draw)
    seed = torch.randint(-(2**63), 2**63 - 1, (batch,), generator=g, dtype=torch.int64)
    step = data.draw(st.sampled_from([0, 1, 2**40]))
    n = data.draw(st.integers(1, 3))
    tokens = draw_tokens(x, **params, seed=seed, step=step, n=n)
    expected = reference.sample(x, **params, seed=seed, step=step, n=n)
    assert torch.equal(tokens, expected)


# ---- penalties and token editors -----------------------------------------------------------------------------


@settings(max_examples=60)
@given(st.data())
def test_apply_penalties(data):
    scores = data.draw(score_tensors(max_elements=200_000, dtypes=EDITOR_DTYPES))
    batch, vocab = scores.shape
    id_rows = data.draw(st.sampled_from([d for d in (1, 2, 3, batch) if batch % d == 0]))
    ids = data.draw(token_ids(id_rows, vocab))
    length = ids.shape[1]
    kwargs = dict(
        repetition=_row_or_scalar(data.draw, batch, [0.0, 1e-3, 0.7, 1.0, 1.3, 1e3, math.inf]),
        presence=_row_or_scalar(data.draw, batch, [-0.5, 0.0, 0.5, 1e30]),
        frequency=_row_or_scalar(data.draw, batch, [-0.25, 0.0, 0.5]),
        history_start=_row_or_scalar(data.draw, id_rows, [0, 1, length, length + 3], torch.int64),
        output_start=_row_or_scalar(data.draw, id_rows, [0, 2, length // 2, length + 9], torch.int64),
    )
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    out = pysample.apply_penalties(scores, ids, **kwargs)
    assert _same_bits(out, reference.apply_penalties(scores, ids, **kwargs))
    inplace = scores.clone()
    pysample.apply_penalties_(inplace, ids, **kwargs)
    assert _same_bits(inplace, out)


@settings(max_examples=60)
@given(st.data())
def test_no_repeat_ngram(data):
    scores = data.draw(score_tensors(max_elements=100_000, dtypes=EDITOR_DTYPES))
    batch, vocab = scores.shape
    ids = data.draw(token_ids(batch, vocab, max_length=200))
    length = ids.shape[1]
    n = _row_or_scalar(data.draw, batch, [0, 1, 2, 3, 5, 10**6], torch.int64)
    n = 2 if n is None else n
    lengths = None
    if data.draw(st.booleans()):
        lengths = torch.tensor([data.draw(st.integers(0, length)) for _ in range(batch)], dtype=torch.int64)
    sources = source_lengths = None
    if data.draw(st.booleans()):
        source_rows = data.draw(st.sampled_from([d for d in (1, batch) if batch % d == 0]))
        sources = data.draw(token_ids(source_rows, vocab, max_length=200)).to(ids.dtype)
        if data.draw(st.booleans()):
            source_lengths = torch.tensor([data.draw(st.integers(0, sources.shape[1])) for _ in range(source_rows)])
    kwargs = dict(ngram_size=n, lengths=lengths, sources=sources, source_lengths=source_lengths)
    out = scores.clone()
    pysample.no_repeat_ngram_(out, ids, **kwargs)
    expected = reference.no_repeat_ngram(scores, ids, n, lengths, sources, source_lengths)
    assert _same_bits(out, expected)
    assert _same_bits(pysample.no_repeat_ngram(scores, ids, **kwargs), expected)


@settings(max_examples=60)
@given(st.data())
def test_bias_sequences(data):
    scores = data.draw(score_tensors(max_elements=100_000, dtypes=EDITOR_DTYPES))
    batch, vocab = scores.shape
    ids = data.draw(token_ids(batch, vocab, max_length=50))
    alphabet = st.integers(0, max(0, min(vocab, 20) - 1))
    sequences = data.draw(st.lists(st.lists(alphabet, min_size=1, max_size=4), min_size=1, max_size=12))
    biases = [data.draw(st.sampled_from([-math.inf, -3.0, -0.5, 0.0, 2.0, 1e4])) for _ in sequences]
    out = scores.clone()
    pysample.bias_sequences_(out, ids, pysample.ops.pack_sequences(sequences, biases))
    assert _same_bits(out, reference.bias_sequences(scores, ids, sequences, biases))


# ---- beam search -------------------------------------------------------------------------------------------------


@settings(max_examples=40)
@given(st.data())
def test_reorder_kv_cache(data):
    rows = data.draw(st.integers(1, 16))
    dtype = data.draw(st.sampled_from(EDITOR_DTYPES))
    g = _generator(data.draw)
    caches = [
        torch.randn(rows, data.draw(st.integers(1, 3)), data.draw(st.integers(1, 9)), 4, generator=g).to(dtype)
        for _ in range(data.draw(st.integers(1, 5)))
    ]
    filled = data.draw(st.one_of(st.none(), st.integers(0, min(t.shape[2] for t in caches))))
    index_dtype = data.draw(st.sampled_from([torch.int64, torch.int32]))
    beam_idx = torch.randint(0, rows, (rows,), generator=g, dtype=index_dtype)
    before = [t.clone() for t in caches]
    if data.draw(st.booleans()):  # one value out of range: an IndexError naming it, nothing moved
        beam_idx[data.draw(st.integers(0, rows - 1))] = data.draw(st.sampled_from([-1, rows, 2**31 - 1]))
        with pytest.raises(IndexError, match="beam_idx"):
            pysample.reorder_kv_cache_(caches, beam_idx, filled)
        assert all(torch.equal(a, b) for a, b in zip(caches, before))
        return
    pysample.reorder_kv_cache_(caches, beam_idx, filled)
    for after, old in zip(caches, before):
        expected = old.clone()
        span = slice(None) if filled is None else slice(0, filled)
        expected[:, :, span] = old.index_select(0, beam_idx.long())[:, :, span]
        assert torch.equal(after, expected)


@settings(max_examples=40)
@given(st.data())
def test_beam_search_step(data):
    beams = data.draw(st.integers(1, 8))
    x = data.draw(score_tensors(max_elements=150_000))
    batch = max(1, x.shape[0] // beams)
    x = x[: batch * beams] if x.shape[0] >= beams else x[:1].expand(beams, -1)
    vocab = x.shape[1]
    k = data.draw(st.integers(1, min(beams * vocab, 3 * beams)))
    g = _generator(data.draw)
    beam_scores = torch.where(
        torch.rand(batch * beams, generator=g) < 0.2, torch.tensor(-1e9), -torch.rand(batch * beams, generator=g) * 30
    )
    check_step(x, beam_scores, beams, k, log_softmax=data.draw(st.booleans()))


# ---- bad arguments -----------------------------------------------------------------------------------------------

_SCORES = torch.zeros(4, 10)
_IDS = torch.zeros(4, 3, dtype=torch.int64)
BAD_CALLS = {
    "sample: float64 logits": (lambda: pysample.sample(_SCORES.double(), seed=0), "logits"),
    "warp: int logits": (lambda: pysample.warp_logits(_SCORES.int(), top_k=2), "logits"),
    "warp: 3-D logits": (lambda: pysample.warp_logits(_SCORES[None], top_k=2), "logits"),
    "warp: negative top_k": (lambda: pysample.warp_logits(_SCORES, top_k=-1), "top_k"),
    "warp: top_p above 1": (lambda: pysample.warp_logits(_SCORES, top_p=1.5), "top_p"),
    "warp: NaN min_p": (lambda: pysample.warp_logits(_SCORES, min_p=math.nan), "min_p"),
    "warp: NaN temperature row": (
        lambda: pysample.warp_logits(_SCORES, temperature=torch.tensor([1.0, math.nan, 1, 1])),
        "temperature",
    ),
    "warp: top_p rows of the wrong length": (
        lambda: pysample.warp_logits(_SCORES, top_p=torch.full((3,), 0.5)),
        "top_p",
    ),
    "warp: top_k rows of floats": (lambda: pysample.warp_logits(_SCORES, top_k=torch.full((4,), 2.0)), "top_k"),
    "sample: negative temperature": (lambda: pysample.sample(_SCORES, temperature=-1.0), "temperature"),
    "sample: n = 0": (lambda: pysample.sample(_SCORES, n=0), "n"),
    "sample: float seeds": (lambda: pysample.sample(_SCORES, seed=torch.zeros(4)), "seed"),
    "penalties: float ids": (lambda: pysample.apply_penalties(_SCORES, _IDS.float(), repetition=1.2), "ids"),
    "penalties: ids batch not dividing": (lambda: pysample.apply_penalties(_SCORES, _IDS[:3], repetition=1.2), "ids"),
    "penalties: repetition < 0": (lambda: pysample.apply_penalties(_SCORES, _IDS, repetition=-1.0), "repetition"),
    "penalties: NaN presence": (lambda: pysample.apply_penalties(_SCORES, _IDS, presence=math.nan), "presence"),
    "penalties: negative history_start": (
        lambda: pysample.apply_penalties(_SCORES, _IDS, repetition=1.2, history_start=-1),
        "history_start",
    ),
    "ngram: negative size": (lambda: pysample.no_repeat_ngram_(_SCORES.clone(), _IDS, ngram_size=-1), "ngram_size"),
    "ngram: lengths past the ids": (
        lambda: pysample.no_repeat_ngram_(_SCORES.clone(), _IDS, ngram_size=2, lengths=torch.full((4,), 9)),
        "lengths",
    ),
    "ngram: ids of another batch": (lambda: pysample.no_repeat_ngram_(_SCORES.clone(), _IDS[:2], ngram_size=2), "ids"),
    "reorder: beam_idx of floats": (lambda: pysample.reorder_kv_cache_([_SCORES.clone()], torch.zeros(4)), "beam_idx"),
    "reorder: caches of another batch": (
        lambda: pysample.reorder_kv_cache_([_SCORES.clone()], torch.zeros(3).long()),
        "caches",
    ),
    "beam step: num_beams not dividing": (lambda: pysample.beam_search_step(_SCORES, torch.zeros(4), 3), "num_beams"),
    "beam step: float64 beam_scores": (
        lambda: pysample.beam_search_step(_SCORES, torch.zeros(4).double(), 2),
        "beam_scores",
    ),
}
# Tensors on another device: the meta device stands in for a GPU here (mixing it in dispatches to the ops' fake
# implementations, which must check devices as the kernels do).
_META = torch.device("meta")
BAD_CALLS.update(
    {
        "device: warp rows": (
            lambda: pysample.warp_logits(_SCORES, top_p=torch.full((4,), 0.5, device=_META)),
            "top_p",
        ),
        "device: warp logits": (lambda: pysample.warp_logits(_SCORES.to(_META), top_k=torch.full((4,), 2)), "top_k"),
        "device: sample seeds": (
            lambda: pysample.sample(_SCORES, seed=torch.zeros(4, dtype=torch.long, device=_META)),
            "seed",
        ),
        "device: penalty ids": (lambda: pysample.apply_penalties(_SCORES, _IDS.to(_META), repetition=1.2), "ids"),
        "device: penalty scores": (lambda: pysample.apply_penalties_(_SCORES.to(_META), _IDS, repetition=1.2), "ids"),
        "device: state ids": (lambda: pysample.PenaltyState(4, 10, device=_META).append(_IDS), "counts"),
        "device: count seen": (
            lambda: torch.ops.pysample.count_tokens_(
                torch.zeros(4, 10, dtype=torch.int32),
                torch.zeros(4, 1, dtype=torch.int32, device=_META),
                _IDS,
                None,
                None,
                0,
                None,
                0,
            ),
            "seen",
        ),
        "device: state seen": (
            lambda: torch.ops.pysample.apply_penalty_counts_(
                _SCORES.clone(),
                torch.zeros(_SCORES.shape, dtype=torch.int32),
                torch.zeros(_SCORES.shape[0], (_SCORES.shape[1] + 31) // 32, dtype=torch.int32, device=_META),
                None,
                None,
                1.2,
                None,
                None,
                None,
                None,
            ),
            "seen",
        ),
        "device: ngram ids": (lambda: pysample.no_repeat_ngram(_SCORES, _IDS.to(_META), ngram_size=2), "ids"),
        "device: ngram sources": (
            lambda: pysample.no_repeat_ngram_(_SCORES.clone(), _IDS, ngram_size=2, sources=_IDS.to(_META)),
            "sources",
        ),
        "device: bias ids": (
            lambda: pysample.bias_sequences_(
                _SCORES.clone(), _IDS.to(_META), pysample.ops.pack_sequences([[1]], [1.0])
            ),
            "ids",
        ),
        "device: reorder caches": (
            lambda: pysample.reorder_kv_cache_([_SCORES.clone(), _SCORES.to(_META)], torch.zeros(4, dtype=torch.long)),
            "caches[1]",
        ),
        "device: beam scores": (
            lambda: pysample.beam_search_step(_SCORES, torch.zeros(4, device=_META), 2),
            "beam_scores",
        ),
    }
)


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_arguments_raise_naming_them(case):
    call, name = BAD_CALLS[case]
    with pytest.raises((ValueError, TypeError, IndexError)) as error:
        call()
    assert name in str(error.value), str(error.value)


# ---- drop-in classes against transformers' own ----------------------------------------------------------------


@settings(max_examples=60)
@given(st.data())
def test_drop_in_classes_match_transformers(data):
    """Each drop-in class and the transformers class it replaces, built from the same arguments, on the same float32
    scores and ids (inside the vocabulary, where transformers is defined): the same bits."""
    import transformers

    scores = data.draw(score_tensors(max_elements=100_000, dtypes=(torch.float32,)))
    batch, vocab = scores.shape
    ids = data.draw(token_ids(batch, vocab, max_length=120)).clamp(0, vocab - 1).long()
    alphabet = st.integers(0, min(vocab, 20) - 1)
    name = data.draw(
        st.sampled_from(
            [
                "RepetitionPenaltyLogitsProcessor",
                "EncoderRepetitionPenaltyLogitsProcessor",
                "NoRepeatNGramLogitsProcessor",
                "EncoderNoRepeatNGramLogitsProcessor",
                "SequenceBiasLogitsProcessor",
                "NoBadWordsLogitsProcessor",
                "TemperatureLogitsWarper",
                "TopKLogitsWarper",
            ]
        )
    )
    if name == "RepetitionPenaltyLogitsProcessor":
        args = (data.draw(st.sampled_from([0.5, 1.2, 3.0])),)
    elif name == "EncoderRepetitionPenaltyLogitsProcessor":
        args = (
            data.draw(st.sampled_from([0.5, 1.2, 3.0])),
            data.draw(token_ids(batch, vocab)).clamp(0, vocab - 1).long(),
        )
    elif name == "NoRepeatNGramLogitsProcessor":
        args = (data.draw(st.integers(1, 4)),)
    elif name == "EncoderNoRepeatNGramLogitsProcessor":
        args = (data.draw(st.integers(1, 4)), data.draw(token_ids(batch, vocab)).clamp(0, vocab - 1).long())
    elif name == "SequenceBiasLogitsProcessor":
        sequences = data.draw(
            st.lists(
                st.tuples(alphabet, alphabet).map(lambda t: t[: 1 + t[0] % 2]), min_size=1, max_size=8, unique=True
            )
        )
        args = ({seq: data.draw(st.sampled_from([-2.0, 0.5, 4.0])) for seq in sequences},)
    elif name == "NoBadWordsLogitsProcessor":
        words = data.draw(st.lists(st.lists(alphabet, min_size=1, max_size=3), min_size=1, max_size=8))
        args = ([list(w) for w in {tuple(w) for w in words}], data.draw(st.sampled_from([None, 0])))
    elif name == "TemperatureLogitsWarper":
        args = (data.draw(st.sampled_from([0.3, 0.7, 1.5])),)
    else:
        args = (data.draw(st.integers(1, vocab + 2)),)
    theirs = getattr(transformers, name)(*args)(ids, scores.clone())
    ours = getattr(pysample, name)(*args)(ids, scores.clone())
    assert _same_bits(ours, theirs), name
