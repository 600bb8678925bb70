"""One shared grid of inputs per op (extension-cpp's sample_inputs pattern): each function returns the raw
``torch.ops.pysample`` op's positional arguments for a device, and tests/test_ops.py drives opcheck, the fake
implementations and the comparison with pysample.reference from the same grid, so that each check sees every input.

Inputs come from fixed generators (the same on every run and device) and stay small: opcheck runs several
sub-tests per sample. No NaN in them: opcheck compares eager and traced outputs with assert_close, NaN unequal to NaN
(the op tests cover NaN rows). float64 logits only where the op accepts them (the warper on the CPU; the penalty,
n-gram and bias ops everywhere).
"""

from __future__ import annotations

import math
from typing import List, NamedTuple, Optional, Sequence

import torch

import pysample

import warp_compare as W

INF = math.inf
#: W.ROW_KINDS without NaN (see the module's docstring).
ROW_KINDS = tuple(kind for kind in W.ROW_KINDS if "nan" not in kind)


class Sample(NamedTuple):
    """One call of a raw op: ``torch.ops.pysample.<op>.default(*args)``; `id` names it in test ids."""

    op: str
    args: tuple
    id: str

    @property
    def overload(self):
        return getattr(torch.ops.pysample, self.op).default

    @property
    def mutates(self) -> bool:
        """In-place ops (name ending in ``_``) return None and write their first argument."""
        return self.op.endswith("_")


def move(value, device):
    """`value` (a tensor, or a list / tuple of them and other arguments) on `device`; non-tensors as they are."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(move(v, device) for v in value)
    return value


def _sample(op: str, args: tuple, id: str, device) -> Sample:
    return Sample(op, move(args, device), f"{op}-{id}")


def _name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _on_cpu(device) -> bool:
    return torch.device(device).type == "cpu"


# ---- warp_logits(_) ------------------------------------------------------------------------------------------------


def warp_args(logits: torch.Tensor, params: dict, min_tokens_to_keep: int = 1, filter_value: float = -INF) -> tuple:
    """The raw warper's arguments: logits, (rows, scalar) per stage in W.STAGES' order, min_tokens_to_keep and
    filter_value; a tensor parameter is per-row, anything else a scalar (None: the stage is skipped)."""
    args = [logits]
    for stage in W.STAGES:
        value = params.get(stage)
        args += [value, None] if isinstance(value, torch.Tensor) else [None, value]
    return (*args, min_tokens_to_keep, filter_value)


def _warp_rows(batch: int) -> dict:
    g = _gen(0)
    return {
        "temperature": torch.rand(batch, generator=g) + 0.5,
        "top_k": torch.randint(0, 20, (batch,), generator=g),
        "top_p": torch.rand(batch, generator=g),
        "min_p": torch.rand(batch, generator=g) * 0.2,
        "typical_p": torch.rand(batch, generator=g),
        "epsilon": torch.rand(batch, generator=g) * 1e-3,
        "eta": torch.rand(batch, generator=g) * 1e-3,
    }


# name -> (params for a batch, min_tokens_to_keep, filter_value)
WARP_CASES = {
    "nothing": (lambda b: {}, 1, -INF),
    "generate-chain": (lambda b: dict(temperature=0.7, top_k=50, top_p=0.9, min_p=0.05), 1, -INF),
    "all-scalars": (
        lambda b: dict(temperature=1.2, top_k=10, top_p=0.95, min_p=0.01, typical_p=0.9, epsilon=1e-4, eta=1e-3),
        2,
        -1e4,
    ),
    "per-row": (_warp_rows, 1, -INF),
    "mixed": (lambda b: dict(temperature=_warp_rows(b)["temperature"], top_k=5, top_p=_warp_rows(b)["top_p"]), 1, -INF),
}


def warp_logits_inputs(device) -> List[Sample]:
    """Every case in float32 and bfloat16 (float64 on the CPU), rows of every hard kind but NaN; float16,
    batch 0 and a vocabulary of 1 once; each out of place and in place."""
    dtypes = [torch.float32, torch.bfloat16] + ([torch.float64] if _on_cpu(device) else [])
    shapes = [(case, dtype, 9, 300) for case in WARP_CASES for dtype in dtypes]
    shapes += [("generate-chain", torch.float16, 9, 300), ("per-row", torch.float32, 0, 17)]
    shapes += [("all-scalars", torch.float32, 3, 1)]
    samples = []
    for seed, (case, dtype, batch, vocab) in enumerate(shapes):
        params, keep, filter_value = WARP_CASES[case]
        logits = W.make_logits(batch, vocab, dtype, seed, ROW_KINDS)
        for op in ("warp_logits", "warp_logits_"):
            args = warp_args(logits.clone(), params(batch), keep, filter_value)
            samples.append(_sample(op, args, f"{_name(dtype)}-{batch}x{vocab}-{case}", device))
    return samples


# ---- sample ------------------------------------------------------------------------------------------------------


def sample_args(logits: torch.Tensor, seed: torch.Tensor, step: torch.Tensor, n: int, params: dict) -> tuple:
    """The raw sampler's arguments: logits, (rows, scalar) for temperature, top_k, top_p and min_p, seed, step, n."""
    args = [logits]
    for name in ("temperature", "top_k", "top_p", "min_p"):
        value = params.get(name)
        args += [value, None] if isinstance(value, torch.Tensor) else [None, value]
    return (*args, seed, step, n)


SAMPLE_CASES = {
    "nothing": lambda b, g: {},
    "chain": lambda b, g: dict(temperature=0.7, top_k=50, top_p=0.9, min_p=0.05),
    "greedy": lambda b, g: dict(temperature=0.0),
    "per-row": lambda b, g: dict(
        temperature=torch.rand(b, generator=g) + 0.5,
        top_k=torch.randint(0, 20, (b,), generator=g),
        top_p=torch.rand(b, generator=g),
        min_p=torch.rand(b, generator=g) * 0.2,
    ),
}


def sample_inputs(device) -> List[Sample]:
    """Every case in float32 and bfloat16 with 1 and 3 draws a row, rows of every hard kind but NaN; float16, batch 0
    and a vocabulary of 1 once."""
    dtypes = (torch.float32, torch.bfloat16)
    shapes = [(case, dtype, n, 9, 300) for case in SAMPLE_CASES for dtype in dtypes for n in (1, 3)]
    shapes += [
        ("chain", torch.float16, 2, 9, 300),
        ("per-row", torch.float32, 2, 0, 17),
        ("nothing", torch.float32, 4, 3, 1),
    ]
    samples = []
    for seed, (case, dtype, n, batch, vocab) in enumerate(shapes):
        g = _gen(seed)
        logits = W.make_logits(batch, vocab, dtype, seed, ROW_KINDS)
        seeds = torch.randint(-(2**63), 2**63 - 1, (batch,), generator=g)
        step = torch.arange(batch) * 1000
        args = sample_args(logits, seeds, step, n, SAMPLE_CASES[case](batch, g))
        samples.append(_sample("sample", args, f"{_name(dtype)}-{batch}x{vocab}-{case}-n{n}", device))
    return samples


# ---- penalties ---------------------------------------------------------------------------------------------------


def _scores(batch: int, vocab: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Scores with the values a penalty treats apart: negative, zero (both signs), +-inf."""
    g = _gen(seed)
    scores = torch.randn(batch, vocab, generator=g) * 3
    special = torch.tensor([0.0, -0.0, INF, -INF])
    where = torch.rand(batch, vocab, generator=g) < 0.1
    scores[where] = special[torch.randint(0, len(special), (int(where.sum()),), generator=g)]
    return scores.to(dtype)


def _ids(batch: int, length: int, vocab: int, seed: int, dtype=torch.int64) -> torch.Tensor:
    """Ids with repeats (a small pool per row) and some outside [0, vocab)."""
    g = _gen(seed + 1)
    pool = torch.randint(0, vocab, (batch, max(1, length // 3)), generator=g)
    ids = pool.gather(1, torch.randint(0, pool.shape[1], (batch, length), generator=g))
    bad = torch.tensor([-2, -1, vocab, vocab + 9])
    where = torch.rand(batch, length, generator=g) < 0.1
    ids[where] = bad[torch.randint(0, len(bad), (int(where.sum()),), generator=g)]
    return ids.to(dtype)


def _split(value) -> list:
    """A parameter as the raw ops take it: [rows, None] for a tensor, [None, value] otherwise."""
    return [value, None] if isinstance(value, torch.Tensor) else [None, value]


def _scope(value) -> list:
    """history_start / output_start as the raw ops take them: [rows, 0] for a tensor, [None, value] otherwise."""
    return [value, 0] if isinstance(value, torch.Tensor) else [None, value]


def penalty_args(scores, ids, repetition=None, presence=None, frequency=None, history_start=0, output_start=0):
    """apply_penalties(_)'s raw arguments."""
    args = [scores, ids] + _split(repetition) + _split(presence) + _split(frequency)
    return (*args, *_scope(history_start), *_scope(output_start))


def _penalty_rows(batch: int, seed: int) -> dict:
    g = _gen(seed)
    return dict(
        repetition=torch.rand(batch, generator=g) + 0.5,
        presence=torch.randn(batch, generator=g),
        frequency=torch.randn(batch, generator=g),
    )


PENALTY_SCALARS = dict(repetition=1.3, presence=0.5, frequency=0.25)


def penalty_inputs(device) -> List[Sample]:
    """apply_penalties and apply_penalties_: scalar and per-row parameters in every scores dtype; the repetition
    penalty alone, presence and frequency -0.0, no penalty, int32 ids shared by several rows, batch 0 and a
    vocabulary of 1."""
    cases = []  # (id, scores shape, dtype, ids rows, id dtype, params)
    for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
        cases.append(
            ("scalars", (6, 300), dtype, 6, torch.int64, dict(PENALTY_SCALARS, history_start=3, output_start=10))
        )
        rows = dict(_penalty_rows(6, 1), history_start=torch.arange(6), output_start=torch.arange(6) * 5)
        cases.append(("per-row", (6, 300), dtype, 6, torch.int64, rows))
    cases += [
        (
            "repetition-alone",
            (6, 300),
            torch.float32,
            6,
            torch.int64,
            dict(repetition=0.8, presence=0.0, frequency=0.0),
        ),
        ("signed-zeros", (6, 300), torch.float32, 6, torch.int64, dict(repetition=1.0, presence=-0.0, frequency=0.0)),
        ("none", (6, 300), torch.float32, 6, torch.int64, {}),
        (
            "shared-ids",
            (6, 300),
            torch.float32,
            2,
            torch.int32,
            dict(PENALTY_SCALARS, history_start=torch.tensor([0, 4])),
        ),
        ("batch0", (0, 17), torch.float32, 0, torch.int64, dict(PENALTY_SCALARS, output_start=2)),
        ("vocab1", (3, 1), torch.float32, 3, torch.int64, dict(_penalty_rows(3, 2), output_start=5)),
    ]
    samples = []
    for seed, (case, (batch, vocab), dtype, id_rows, id_dtype, params) in enumerate(cases):
        scores = _scores(batch, vocab, dtype, seed)
        ids = _ids(id_rows, 40, vocab, seed, id_dtype)
        name = f"{_name(dtype)}-{case}"
        for op in ("apply_penalties", "apply_penalties_"):
            samples.append(_sample(op, penalty_args(scores.clone(), ids, **params), name, device))
    return samples


def seen_table(counts: torch.Tensor) -> torch.Tensor:
    """The seen table of `counts`: token t is bit t % 32 of int32 word t / 32, set where its entry is non-zero."""
    slots, vocab = counts.shape
    words = (vocab + 31) // 32
    bits = torch.zeros(slots, words * 32, dtype=torch.int64)
    bits[:, :vocab] = (counts != 0).long()
    packed = (bits.reshape(slots, words, 32) << torch.arange(32)).sum(-1)
    return (packed - (packed >= 2**31).long() * 2**32).to(torch.int32)


def _row_values(value, rows: int) -> list:
    return value.tolist() if isinstance(value, torch.Tensor) else [value] * rows


def count_entries(
    counts: torch.Tensor,
    ids: torch.Tensor,
    slots: Optional[torch.Tensor] = None,
    history_start=0,
    output_start=0,
) -> torch.Tensor:
    """`counts` (CPU) plus the entries of `ids`, as pysample/penalty.h states them: for each counted position
    (from history_start on, id in [0, vocab)), 2 per output position (from output_start on), or-ed 1 per prompt
    position, at row r's slot (slots[r], or r)."""
    out = counts.clone()
    vocab = counts.shape[1]
    ids = ids.cpu()
    starts, outputs = _row_values(history_start, ids.shape[0]), _row_values(output_start, ids.shape[0])
    for r in range(ids.shape[0]):
        slot = int(slots[r]) if slots is not None else r
        for position, token in enumerate(ids[r].tolist()):
            if position < starts[r] or not 0 <= token < vocab:
                continue
            if position < outputs[r]:
                out[slot, token] |= 1
            else:
                out[slot, token] += 2
    return out


def count_tokens_inputs(device) -> List[Sample]:
    """count_tokens_ into empty and filled tables: scalar and per-row scopes, int32 ids, slots mapping fewer rows,
    batch 0 and a vocabulary of 1."""
    cases = [  # (id, slots, vocab, ids rows, id dtype, row -> slot, history_start, output_start, filled)
        ("empty-scalars", 6, 300, 6, torch.int64, None, 2, 20, False),
        ("per-row-slots", 6, 300, 6, torch.int32, torch.arange(6).flip(0), torch.arange(6), torch.arange(6) * 5, False),
        ("filled", 6, 300, 6, torch.int64, None, 0, 10, True),
        ("fewer-rows", 6, 300, 2, torch.int64, torch.tensor([4, 1]), 0, 0, True),
        ("batch0", 3, 17, 0, torch.int64, torch.zeros(0, dtype=torch.int64), 0, 0, True),
        ("vocab1", 3, 1, 3, torch.int64, None, 0, 2, False),
    ]
    samples = []
    for seed, (case, slots, vocab, rows, id_dtype, slot_of, history, output, filled) in enumerate(cases):
        counts = torch.zeros(slots, vocab, dtype=torch.int32)
        if filled:
            counts = count_entries(counts, _ids(slots, 30, vocab, seed + 100), None, 0, 12)
        ids = _ids(rows, 40, vocab, seed, id_dtype)
        args = (counts, seen_table(counts), ids, slot_of, *_scope(history), *_scope(output))
        samples.append(_sample("count_tokens_", args, case, device))
    return samples


def apply_penalty_counts_inputs(device) -> List[Sample]:
    """apply_penalty_counts_ on tables count_tokens_ would keep (prompt and output entries): the three penalties and
    the repetition penalty alone (the seen table's path), scalar and per-row, in every scores dtype; no slots, batch
    0 and a vocabulary of 1."""
    cases = []  # (id, dtype, batch, slots, vocab, slots tensor, penalties)
    for dtype in (torch.float32, torch.bfloat16):
        for rows in (False, True):
            every = _penalty_rows(6, 3) if rows else PENALTY_SCALARS
            alone = {"repetition": every["repetition"]}
            kind = "per-row" if rows else "scalars"
            cases.append((f"{kind}", dtype, 6, 8, 300, torch.tensor([7, 0, 3, 3, 5, 1]), every))
            cases.append((f"{kind}-repetition-alone", dtype, 6, 8, 300, torch.tensor([7, 0, 3, 3, 5, 1]), alone))
    cases += [
        ("scalars", torch.float16, 6, 6, 300, torch.arange(6).flip(0), PENALTY_SCALARS),
        ("per-row", torch.float64, 6, 6, 300, torch.arange(6).flip(0), _penalty_rows(6, 4)),
        ("no-slots", torch.float32, 6, 6, 300, None, dict(repetition=1.3, presence=-0.0)),
        ("batch0", torch.float32, 0, 3, 17, torch.zeros(0, dtype=torch.int64), PENALTY_SCALARS),
        ("vocab1", torch.float32, 3, 3, 1, None, _penalty_rows(3, 5)),
    ]
    samples = []
    for seed, (case, dtype, batch, slots, vocab, slot_of, params) in enumerate(cases):
        counts = count_entries(
            torch.zeros(slots, vocab, dtype=torch.int32), _ids(slots, 40, vocab, seed + 200), None, 0, 15
        )
        penalties = [x for name in ("repetition", "presence", "frequency") for x in _split(params.get(name))]
        args = (_scores(batch, vocab, dtype, seed), counts, seen_table(counts), slot_of, *penalties)
        samples.append(_sample("apply_penalty_counts_", args, f"{_name(dtype)}-{case}", device))
    return samples


# ---- n-gram ban and sequence bias --------------------------------------------------------------------------------


def _repetitive_ids(batch: int, length: int, pool: int, seed: int, dtype=torch.int64) -> torch.Tensor:
    """Ids from a small pool (n-grams repeat often), with padding (-1) and ids beyond a vocabulary of 30."""
    g = _gen(seed + 3)
    ids = torch.randint(0, pool, (batch, length), generator=g)
    ids[torch.rand(batch, length, generator=g) < 0.05] = -1
    ids[torch.rand(batch, length, generator=g) < 0.05] = 33
    return ids.to(dtype)


def ngram_inputs(device) -> List[Sample]:
    """no_repeat_ngram_ and no_repeat_ngram: lengths, sources with per-row n (0 included), source lengths, n = 1
    and n = 3 on whole rows, in every scores dtype; int32 ids, batch 0 and a vocabulary of 1."""
    cases = []  # (id, dtype, scores (batch, vocab), id dtype, arguments after scores and ids)
    lengths = torch.arange(6) * 7
    sources = _repetitive_ids(3, 10, 6, 7)
    per_row_n = torch.tensor([1, 2, 3, 0, 2, 2])
    for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
        cases.append(("lengths-n2", dtype, (6, 30), torch.int64, (lengths, None, None, None, 2)))
        cases.append(("sources-per-row", dtype, (6, 30), torch.int64, (None, sources, None, per_row_n, 0)))
    cases += [
        (
            "source-lengths-n1",
            torch.float32,
            (6, 30),
            torch.int64,
            (lengths, sources, torch.tensor([10, 0, 4]), None, 1),
        ),
        ("int32-n3", torch.float32, (6, 30), torch.int32, (None, sources.int(), None, None, 3)),
        ("whole-rows-n3", torch.float32, (6, 30), torch.int64, (None, None, None, None, 3)),
        ("batch0", torch.float32, (0, 17), torch.int64, (None, None, None, None, 2)),
        ("vocab1", torch.float32, (3, 1), torch.int64, (None, None, None, torch.tensor([1, 2, 0]), 0)),
    ]
    samples = []
    for seed, (case, dtype, (batch, vocab), id_dtype, rest) in enumerate(cases):
        scores = _scores(batch, vocab, dtype, seed)
        ids = _repetitive_ids(batch, 40, min(vocab, 6) if vocab > 1 else 2, seed, id_dtype)
        for op in ("no_repeat_ngram_", "no_repeat_ngram"):
            samples.append(_sample(op, (scores.clone(), ids, *rest), f"{_name(dtype)}-{case}", device))
    return samples


def packed(sequences: Sequence[Sequence[int]], biases: Sequence[float]) -> tuple:
    """bias_sequences_'s (tokens, offsets, biases) on the CPU."""
    return tuple(pysample.ops.pack_sequences(sequences, biases))


def bias_sequences_inputs(device) -> List[Sample]:
    """bias_sequences_ in every scores dtype with lengths; no lengths, int32 ids, biases of one token that add up
    (-inf and +inf among them), batch 0 and a vocabulary of 1."""
    three = packed([[1], [2, 3], [4, 5, 6]], [1.0, -INF, 0.5])
    summed = packed([[3], [0, 3], [3], [5, 1], [1], [2, 2, 1]], [0.25, 1.5, -INF, INF, 1e-3, -2.0])
    lengths = torch.arange(6) * 7
    dtypes = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
    cases = [("lengths", dtype, (6, 30), torch.int64, lengths, three) for dtype in dtypes]
    cases += [
        ("summed", torch.float32, (6, 30), torch.int64, None, summed),
        ("summed", torch.bfloat16, (6, 30), torch.int32, lengths, summed),
        ("batch0", torch.float32, (0, 17), torch.int64, None, three),
        ("vocab1", torch.float32, (3, 1), torch.int64, None, packed([[0], [0, 0], [1, 0]], [2.0, -1.0, 0.5])),
    ]
    samples = []
    for seed, (case, dtype, (batch, vocab), id_dtype, lengths_arg, sequences) in enumerate(cases):
        scores = _scores(batch, vocab, dtype, seed)
        ids = _repetitive_ids(batch, 40, min(vocab, 7) if vocab > 1 else 2, seed, id_dtype)
        suffix = "" if id_dtype == torch.int64 else "-int32"
        args = (scores, ids, lengths_arg, *sequences)
        samples.append(_sample("bias_sequences_", args, f"{_name(dtype)}-{case}{suffix}", device))
    return samples


# ---- apply_token_bitmask_ ----------------------------------------------------------------------------------------


def random_bitmask(rows: int, words: int, allowed: float, seed: int) -> torch.Tensor:
    """int32 words (rows, words), each bit set (its token allowed) with probability `allowed`."""
    g = _gen(seed + 7)
    bits = (torch.rand(rows, words, 32, generator=g) < allowed).long()
    packed = (bits << torch.arange(32)).sum(-1)
    return (packed - (packed >= 2**31).long() * 2**32).to(torch.int32)


def token_bitmask_inputs(device) -> List[Sample]:
    """apply_token_bitmask_ in every logits dtype; a vocab_size within the bitmask's last word and 0, a bitmask wider
    than the logits and logits wider than the bitmask, int64 indices with repeats, int32 ones, none, batch 0 and a
    vocabulary of 1."""
    cases = []  # (id, dtype, (batch, vocab), words, indices, vocab_size)
    for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
        cases.append(("all-rows", dtype, (6, 100), 4, None, None))
    cases += [
        ("vocab-size-70", torch.float32, (6, 100), 3, None, 70),
        ("vocab-size-0", torch.float32, (6, 100), 0, None, 0),
        ("wide-bitmask", torch.float32, (6, 100), 6, None, None),
        ("wide-logits", torch.float32, (6, 100), 2, None, None),  # vocab_size 64 by default
        ("indices-repeated", torch.bfloat16, (6, 100), 4, torch.tensor([4, 1, 4, 0]), None),
        ("indices-int32", torch.float32, (6, 100), 4, torch.tensor([5, 2], dtype=torch.int32), 97),
        ("indices-empty", torch.float32, (6, 100), 4, torch.zeros(0, dtype=torch.int64), None),
        ("batch0", torch.float32, (0, 17), 1, None, None),
        ("vocab1", torch.float32, (3, 1), 1, None, None),
    ]
    samples = []
    for seed, (case, dtype, (batch, vocab), words, indices, vocab_size) in enumerate(cases):
        args = (_scores(batch, vocab, dtype, seed), random_bitmask(batch, words, 0.4, seed), indices, vocab_size)
        samples.append(_sample("apply_token_bitmask_", args, f"{_name(dtype)}-{case}", device))
    return samples


# ---- token_logprobs -----------------------------------------------------------------------------------------------


def _finite_rows(batch: int, vocab: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """_scores without +inf: opcheck compares outputs without equal_nan, and a +inf row is NaN throughout."""
    scores = _scores(batch, vocab, dtype, seed)
    return scores.masked_fill(scores == INF, -INF)


def token_logprobs_inputs(device) -> List[Sample]:
    """token_logprobs in every logits dtype with num_top 0, 1 and 20, several tokens per row, -inf logits, a row of
    ties, strided logits, num_top = vocab, batch 0, n = 0 and a vocabulary of 1. No NaN output (no -1 token, NaN or
    +inf row): opcheck compares without equal_nan; test_token_logprobs.py covers those."""
    cases = []  # (id, logits, tokens, num_top)
    for seed, dtype in enumerate((torch.float32, torch.bfloat16, torch.float16, torch.float64)):
        for num_top in (0, 1, 20):
            logits = _finite_rows(5, 300, dtype, seed)
            tokens = torch.randint(0, 300, (5, 3), generator=_gen(seed + num_top))
            cases.append((f"{_name(dtype)}-top{num_top}", logits, tokens, num_top))
    ties = torch.tensor([[1.0, 2.0, 2.0, -INF, 2.0, 0.0], [0.0, -0.0, 0.0, 1.0, 1.0, -INF]])
    cases += [
        ("ties", ties, torch.tensor([[2, 3], [1, 0]]), 4),
        (
            "strided",
            _finite_rows(8, 400, torch.float32, 9)[:, ::2],
            torch.randint(0, 200, (8, 2), generator=_gen(9)),
            5,
        ),
        ("top-all", _finite_rows(3, 20, torch.float32, 10), torch.tensor([[0], [19], [5]]), 20),
        ("batch0", _finite_rows(0, 17, torch.float32, 11), torch.zeros(0, 1, dtype=torch.int64), 2),
        ("n0", _finite_rows(2, 17, torch.float32, 12), torch.zeros(2, 0, dtype=torch.int64), 2),
        ("vocab1", torch.tensor([[0.5], [-3.0], [2.0]]), torch.tensor([[0], [0], [0]]), 1),
    ]
    return [
        _sample("token_logprobs", (logits, tokens, num_top), case, device) for case, logits, tokens, num_top in cases
    ]


# ---- reorder_kv_cache_ -------------------------------------------------------------------------------------------


def reorder_kv_cache_inputs(device) -> List[Sample]:
    """Fan-outs, cycles, the identity, int32 indices, filled_length (0 included), every cache dtype, an empty cache
    tensor beside a filled one, and a single row."""
    cases = [  # (id, dtype, beam_idx, index dtype, filled_length, shape after rows)
        ("fan-out", torch.float32, [1, 1, 0, 2], torch.int64, None, (3, 10, 4)),
        ("reversed-filled4", torch.float32, [3, 2, 1, 0], torch.int64, 4, (3, 10, 4)),
        ("cycle-int32", torch.bfloat16, [1, 2, 3, 0], torch.int32, None, (2, 6, 4)),
        ("swap-filled0", torch.float16, [1, 0, 2, 3], torch.int64, 0, (2, 6, 4)),
        ("identity", torch.float32, [0, 1, 2, 3], torch.int64, 6, (2, 6, 4)),
        ("one-row", torch.float32, [0], torch.int64, None, (2, 6, 4)),
    ]
    samples = []
    for seed, (case, dtype, index, index_dtype, filled, shape) in enumerate(cases):
        g = _gen(seed)
        rows = len(index)
        caches = [torch.randn(rows, *shape, generator=g).to(dtype) for _ in range(4)]
        args = (caches, torch.tensor(index, dtype=index_dtype), filled)
        samples.append(_sample("reorder_kv_cache_", args, f"{_name(dtype)}-{case}", device))
    g = _gen(len(cases))
    empty = [torch.empty(4, 0, 3), torch.randn(4, 2, 5, 3, generator=g)]
    samples.append(_sample("reorder_kv_cache_", (empty, torch.tensor([2, 0, 0, 1]), None), "empty-tensor", device))
    return samples


# ---- beam_search_step --------------------------------------------------------------------------------------------


def _beam_logits(rows: int, vocab: int, dtype: torch.dtype, seed: int, kind: str) -> torch.Tensor:
    g = _gen(seed)
    x = torch.randn(rows, vocab, generator=g) * 4
    if kind == "ties":  # many exact ties within and across rows
        x = (x * 2).round() / 2
    elif kind == "neg_inf":
        x[torch.rand(x.shape, generator=g) < 0.3] = -INF
    return x.to(dtype)


def beam_search_step_inputs(device) -> List[Sample]:
    """With and without the fused log-softmax: 3 beams in every logits dtype, ties, -inf entries, the first step's
    scores (-1e9), one candidate and every candidate, one beam, batch 0 and a vocabulary of 1."""
    cases = []  # (id, dtype, batch, beams, vocab, candidates, logits kind, first step)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        cases.append(("normal", dtype, 2, 3, 50, 6, "normal", False))
    cases += [
        ("ties", torch.float32, 2, 3, 50, 6, "ties", False),
        ("neg-inf-first-step", torch.float32, 2, 3, 50, 6, "neg_inf", True),
        ("one-candidate", torch.float32, 3, 2, 20, 1, "normal", False),
        ("every-candidate", torch.float32, 2, 2, 10, 20, "ties", False),
        ("one-beam", torch.float32, 3, 1, 50, 2, "normal", False),
        ("batch0", torch.float32, 0, 3, 17, 4, "normal", False),
        ("vocab1", torch.float32, 2, 2, 1, 2, "normal", False),
    ]
    samples = []
    for seed, (case, dtype, batch, beams, vocab, k, kind, first) in enumerate(cases):
        logits = _beam_logits(batch * beams, vocab, dtype, seed, kind)
        if first:
            scores = torch.full((batch, beams), -1e9)
            scores[:, 0] = 0
        else:
            scores = -torch.rand(batch, beams, generator=_gen(seed + 1)) * 20
        for log_softmax in (True, False):
            args = (logits, scores.reshape(-1), beams, k, log_softmax)
            name = f"{_name(dtype)}-{case}-{'log_softmax' if log_softmax else 'log_probs'}"
            samples.append(_sample("beam_search_step", args, name, device))
    return samples


#: Every op family's grid, in the order of csrc/ops.cpp.
ALL_INPUTS = (
    warp_logits_inputs,
    sample_inputs,
    penalty_inputs,
    count_tokens_inputs,
    apply_penalty_counts_inputs,
    ngram_inputs,
    bias_sequences_inputs,
    token_bitmask_inputs,
    token_logprobs_inputs,
    reorder_kv_cache_inputs,
    beam_search_step_inputs,
)
