"""float64 scores on the CPU: the drop-in classes and fuse return transformers' float64 results (the token editors
compute in double; the warpers decide on the values rounded to float32 and exactly where transformers' decision is
exact: temperature, top-k, min-p, epsilon), and keep the exact values; sample refuses float64 and says so."""

from __future__ import annotations

import math

import pytest
import torch
import transformers

import pysample
from pysample import reference

import warp_compare as W

VOCAB = 300


def scores64(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, VOCAB, generator=g, dtype=torch.float64) * 3
    x[0, :6] = torch.tensor([0.0, -0.0, math.inf, -math.inf, 1e-300, -1e-300], dtype=torch.float64)
    x[1, 7] = 1.0 + 2.0**-40  # a value float32 cannot hold
    return x


def assert_same_bits(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.dtype == torch.float64
    W.assert_same_bits(actual, expected)


def editor_pairs(ids: torch.Tensor, encoder_ids: torch.Tensor):
    last = ids[:, -1].tolist()
    specs = [
        ("RepetitionPenaltyLogitsProcessor", (1.3,)),
        ("RepetitionPenaltyLogitsProcessor", (0.7,)),
        ("NoRepeatNGramLogitsProcessor", (2,)),
        ("SequenceBiasLogitsProcessor", ({(7,): -2.1, (last[0], 9): 3.3, (11,): 0.1, (last[1], 11): 1e-3},)),
        ("NoBadWordsLogitsProcessor", ([[13], [last[1], 15]],)),
    ]
    for name, args in specs:
        yield name, getattr(pysample, name)(*args), getattr(transformers, name)(*args)
    for name, args in (
        ("EncoderRepetitionPenaltyLogitsProcessor", (1.7, encoder_ids)),
        ("EncoderNoRepeatNGramLogitsProcessor", (2, encoder_ids)),
    ):
        yield name, getattr(pysample, name)(*args), getattr(transformers, name)(*args)


@pytest.mark.parametrize("seed", [0, 1])
def test_editors_are_transformers_bit_for_bit(seed):
    g = torch.Generator().manual_seed(seed + 10)
    ids = torch.randint(0, VOCAB, (4, 40), generator=g)
    encoder_ids = torch.randint(0, VOCAB, (4, 30), generator=g)
    x = scores64(seed)
    for _name, ours, theirs in editor_pairs(ids, encoder_ids):
        assert_same_bits(ours(ids, x.clone()), theirs(ids, x.clone()))
    chain = [
        transformers.RepetitionPenaltyLogitsProcessor(1.2),
        transformers.NoRepeatNGramLogitsProcessor(3),
        transformers.SequenceBiasLogitsProcessor({(5,): 2.5}),
    ]
    assert_same_bits(pysample.fuse(chain)(ids, x.clone()), transformers.LogitsProcessorList(chain)(ids, x.clone()))


def test_ops_compute_in_double():
    x = scores64()
    ids = torch.randint(0, VOCAB, (4, 50), generator=torch.Generator().manual_seed(3))
    kwargs = dict(repetition=1.0 + 1e-12, presence=torch.tensor([0.5, 0.0, 1.0, 2.0]), frequency=0.1, output_start=20)
    out = pysample.apply_penalties(x, ids, **kwargs)
    assert_same_bits(out, reference.apply_penalties(x, ids, **kwargs))
    assert (out != x.float().double()).any()  # not rounded through float32
    assert_same_bits(pysample.apply_penalties_(x.clone(), ids, **kwargs), out)
    state = pysample.PenaltyState(4, VOCAB)
    state.reset(prompt_ids=ids[:, :20])
    state.append(ids[:, 20:])
    penalties = {k: v for k, v in kwargs.items() if k != "output_start"}  # the state counts the prompt apart
    assert_same_bits(state.apply_(x.clone(), **penalties), out)


# The stages whose decision transformers makes exactly (no sum over the row decides it): pysample makes it on the
# exact values too. The others decide on the values rounded to float32, within the same tolerance as for float32
# rows, and count values that round to the same float32 as tied (README, Semantics).
EXACT = [
    ("TemperatureLogitsWarper", (0.7,)),
    ("TopKLogitsWarper", (1,)),
    ("TopKLogitsWarper", (7,)),
    ("TopKLogitsWarper", (50, -math.inf, 60)),
    ("MinPLogitsWarper", (0.05,)),
    ("MinPLogitsWarper", (0.3, -math.inf, 4)),
    ("EpsilonLogitsWarper", (3e-4,)),
]
ROUNDED = [
    ("TopPLogitsWarper", (0.8,)),
    ("TopPLogitsWarper", (0.3, -5.0, 3)),
    ("TypicalLogitsWarper", (0.8,)),
    ("EpsilonLogitsWarper", (0.01, -math.inf, 5)),
    ("EtaLogitsWarper", (3e-4,)),
]


def warper_rows(seed: int, vocab: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(6, vocab, generator=g, dtype=torch.float64) * 3
    x[0, 5] = -math.inf
    x[1, 10] = x[1].max() + 1
    x[1, 11] = x[1, 10] + 2.0**-40  # larger in double, the same float32
    x[2, 3] = x[2, 4] = x[2].max() + 0.5  # an exact tie at the top
    x[3, 100:] = -math.inf
    x[4, 7] = math.inf  # transformers' filters keep such a row whole (its eta raises)
    x[5] = x[5] * 1e-9 + 1.0  # values float32 cannot tell apart
    return x


@pytest.mark.parametrize("vocab", [300, 20000])
@pytest.mark.parametrize("seed", [0, 1])
def test_warpers_are_transformers_bit_for_bit(seed, vocab):
    x = warper_rows(seed, vocab)
    for name, args in EXACT + ROUNDED:
        rows = x if (name, args) in EXACT else x[:4] if name == "EtaLogitsWarper" else x[:5]
        expected = getattr(transformers, name)(*args)(None, rows.clone())
        assert_same_bits(getattr(pysample, name)(*args)(None, rows.clone()), expected)
    chain = [
        transformers.RepetitionPenaltyLogitsProcessor(1.3),
        transformers.TemperatureLogitsWarper(0.6),
        transformers.TopKLogitsWarper(40),
        transformers.TopPLogitsWarper(0.9),
        transformers.MinPLogitsWarper(0.02),
    ]
    ids = torch.randint(0, vocab, (5, 30), generator=torch.Generator().manual_seed(seed))
    rows = x[:5]
    assert_same_bits(
        pysample.fuse(chain)(ids, rows.clone()), transformers.LogitsProcessorList(chain)(ids, rows.clone())
    )


def test_warper_op_keeps_exact_values_in_place_and_per_row():
    x = warper_rows(2, 500)
    temperature = torch.tensor([0.5, 1.0, 2.0, 0.7, 1.5, 3.0])
    out = pysample.warp_logits(x, temperature=temperature, top_k=torch.tensor([1, 2, 3, 4, 6, 500]))
    kept = out > -math.inf
    scaled = x / temperature.double()[:, None]
    assert torch.equal(out[kept], scaled[kept])  # not rounded through float32
    assert_same_bits(
        pysample.warp_logits_(x.clone(), temperature=temperature, top_k=torch.tensor([1, 2, 3, 4, 6, 500])), out
    )


def test_sampler_refuses_float64():
    with pytest.raises(TypeError, match="logits must be float32, float16 or bfloat16, got Double"):
        pysample.sample(scores64(), seed=0)
