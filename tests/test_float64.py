"""float64 scores: the token editors (penalties, n-gram bans, bad words, sequence biases) compute in double and
return transformers' float64 results bit for bit; the warpers and the sampler do not take float64 yet and say so."""

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
    assert actual.dtype == expected.dtype == torch.float64
    diff = W.differing(actual, expected)
    assert not diff.any(), f"{int(diff.sum())} differ, first at {diff.nonzero()[:5].tolist()}"


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
    for name, args in (("EncoderRepetitionPenaltyLogitsProcessor", (1.7, encoder_ids)),
                       ("EncoderNoRepeatNGramLogitsProcessor", (2, encoder_ids))):
        yield name, getattr(pysample, name)(*args), getattr(transformers, name)(*args)


@pytest.mark.parametrize("seed", [0, 1])
def test_editors_are_transformers_bit_for_bit(seed):
    g = torch.Generator().manual_seed(seed + 10)
    ids = torch.randint(0, VOCAB, (4, 40), generator=g)
    encoder_ids = torch.randint(0, VOCAB, (4, 30), generator=g)
    x = scores64(seed)
    for name, ours, theirs in editor_pairs(ids, encoder_ids):
        assert_same_bits(ours(ids, x.clone()), theirs(ids, x.clone()))
    chain = [transformers.RepetitionPenaltyLogitsProcessor(1.2), transformers.NoRepeatNGramLogitsProcessor(3),
             transformers.SequenceBiasLogitsProcessor({(5,): 2.5})]
    assert_same_bits(pysample.fuse(chain)(ids, x.clone()), transformers.LogitsProcessorList(chain)(ids, x.clone()))


def test_ops_compute_in_double():
    x = scores64()
    ids = torch.randint(0, VOCAB, (4, 50), generator=torch.Generator().manual_seed(3))
    kwargs = dict(repetition=1.0 + 1e-12, presence=torch.tensor([0.5, 0.0, 1.0, 2.0]), frequency=0.1,
                  output_start=20)
    out = pysample.apply_penalties(x, ids, **kwargs)
    assert_same_bits(out, reference.apply_penalties(x, ids, **kwargs))
    assert (out != x.float().double()).any()  # not rounded through float32
    assert_same_bits(pysample.apply_penalties_(x.clone(), ids, **kwargs), out)
    state = pysample.PenaltyState(4, VOCAB)
    state.reset(prompt_ids=ids[:, :20])
    state.append(ids[:, 20:])
    penalties = {k: v for k, v in kwargs.items() if k != "output_start"}  # the state counts the prompt apart
    assert_same_bits(state.apply_(x.clone(), **penalties), out)


def test_warpers_and_sampler_refuse_float64():
    x = scores64()
    for call in (lambda: pysample.TopKLogitsWarper(5)(None, x), lambda: pysample.warp_logits(x, top_p=0.9),
                 lambda: pysample.sample(x, seed=0)):
        with pytest.raises(TypeError, match="got Double"):
            call()
