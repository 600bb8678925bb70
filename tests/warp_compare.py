"""Test helpers: random logits with hard rows, and the equality rule for warped logits.

The equality rule (docs/design.md#cpu-vs-cuda): temperature and top-k must be bitwise equal to transformers, and so
must min-p and epsilon on float32 logits on the CPU (the kernel decides tokens near their threshold with torch's own
softmax). The stages that compare softmax probabilities with a threshold (top-p, min-p, typical, epsilon, eta) may
otherwise decide a token differently only when

* the quantity the stage compares, recomputed in float64, lies within rounding of the threshold (top-p: the
  cumulative probability in ascending order vs ``1 - top_p``; min-p: the probability vs ``min_p`` times the top
  probability; epsilon: the probability vs ``epsilon``; eta: the probability vs ``min(eta, sqrt(eta) e^-H)``;
  typical: the cumulative mass in distance order vs the mass, or the distance vs the cut distance), or
* the token is exactly tied, in the key transformers sorts or selects by, with a token that one of the two sides
  decided the other way (transformers' unstable sort and ``topk`` pick an arbitrary subset of tied tokens).

Rounding mismatches must also be rare. Every mismatch is printed.
"""

from __future__ import annotations

import math
import os
import zlib
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import transformers

from pysample import reference

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
PROBABILITY_STAGES = ("top_p", "min_p", "typical_p", "epsilon", "eta")
STAGES = reference.STAGES  # temperature, top_k, top_p, min_p, typical_p, epsilon, eta
# Stages with no rounding allowance on float32 logits on the CPU (ties in min_tokens_to_keep's topk stay allowed).
EXACT_CPU_FLOAT32_STAGES = ("min_p", "epsilon")

# Relative tolerance of "within rounding of the threshold", per dtype: transformers computes the softmax, the
# cumulative sums and the entropy in the logits' dtype (float16 and bfloat16 with 11 and 8 significant bits). float64
# logits (the CPU warper) are decided on their values rounded to float32 (README, Semantics): float32's tolerance.
RTOL = {torch.float32: 1e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2, torch.float64: 1e-5}


def smallest_subnormal(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).smallest_normal) * float(torch.finfo(dtype).eps)


def seed_for_test(test_id: str) -> int:
    """The seed of one test's random inputs: fixed per test by default, so that every run (CI's included) checks the
    same inputs; ``PYSAMPLE_TEST_SEED=random`` draws fresh ones (``scripts/soak``), ``PYSAMPLE_TEST_SEED=<n>`` replays
    a printed seed."""
    value = os.environ.get("PYSAMPLE_TEST_SEED", "")
    if value == "random":
        return int.from_bytes(os.urandom(4), "little")
    return int(value) if value else zlib.crc32(test_id.encode())


# ---- inputs ------------------------------------------------------------------------------------------------------

ROW_KINDS = (
    "normal",  # randn times a random scale
    "ties",  # rounded to a coarse grid: many exact ties
    "neg_inf",  # some entries -inf
    "peaked",  # one token far above the rest (tiny probabilities, underflow in float16)
    "very_peaked",  # one token 200 above the rest: every other probability underflows to 0 in float32
    "flat",  # every logit equal
    "near_flat",  # tiny noise around a constant
    "nan_entry",  # one NaN
    "all_nan",
    "all_neg_inf",
    "pos_inf",  # one +inf
)
FINITE_KINDS = ("normal", "ties", "neg_inf", "peaked", "very_peaked", "flat", "near_flat")


def make_row(kind: str, vocab: int, g: torch.Generator) -> torch.Tensor:
    """One row of float32 logits of the given kind, ``(vocab,)``."""

    def randn() -> torch.Tensor:
        return torch.randn(vocab, generator=g)

    def pick(n: int = 1) -> torch.Tensor:
        return torch.randint(0, vocab, (n,), generator=g)

    scale = float(torch.empty(()).uniform_(0.5, 4.0, generator=g))
    if kind == "normal":
        return randn() * scale
    if kind == "ties":
        return (randn() * 2).round() / 2
    if kind == "neg_inf":
        row = randn() * scale
        row[torch.rand(vocab, generator=g) < 0.2] = -math.inf
        return row
    if kind == "peaked":
        row = randn()
        row[pick()] = 25.0
        return row
    if kind == "very_peaked":
        row = randn()
        row[pick()] = 200.0
        return row
    if kind == "flat":
        return torch.full((vocab,), float(torch.randn((), generator=g)))
    if kind == "near_flat":
        return 3.0 + randn() * 1e-3
    if kind == "nan_entry":
        row = randn() * scale
        row[pick()] = math.nan
        return row
    if kind == "all_nan":
        return torch.full((vocab,), math.nan)
    if kind == "all_neg_inf":
        return torch.full((vocab,), -math.inf)
    if kind == "pos_inf":
        row = randn() * scale
        row[pick()] = math.inf
        return row
    raise ValueError(kind)


def make_logits(
    batch: int,
    vocab: int,
    dtype: torch.dtype,
    seed: int,
    kinds: Sequence[str] = ROW_KINDS,
) -> torch.Tensor:
    """``(batch, vocab)`` logits of `dtype` whose rows cycle through `kinds` in a random order."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(kinds), generator=g).tolist()
    rows = [make_row(kinds[order[r % len(kinds)]], vocab, g) for r in range(batch)]
    logits = torch.stack(rows) if rows else torch.empty(0, vocab)
    return logits.to(dtype)


def crowded_rows(seed: int, vocab: int = 40000) -> torch.Tensor:
    """Rows whose bulk lies in one distance bin of top-p's histogram (1/16 wide, distance_histogram.h), so that its
    crossing bin holds nearly every token and is split into finer bins: rows 0 and 2 on 16 values 2^-12 apart
    (thousands of ties each, the boundary among tied tokens), rows 1 and 3 spread by noise of 2^-10 (no ties, some
    tokens in the bin before)."""
    g = torch.Generator().manual_seed(seed)
    x = -1.0 - torch.randint(0, 16, (4, vocab), generator=g).float() * 2.0**-12
    x[1::2] += torch.randn(2, vocab, generator=g) * 2.0**-10
    x[:, 0] = 0.5  # the max, 1.5 from the bulk
    return x


def unsampled_mass_rows(seed: int, vocab: int = 40000) -> torch.Tensor:
    """Rows whose mass lies where the CPU kernel's sample of a row mostly does not look (estimate_cuts in
    distance_histogram.h reads the first 16 tokens of every 512 and the largest of each 512): a max at 10, 600 tokens
    at 7 (mass 30 times the max's) away from the sampled runs, the rest near -10; of the 600 only the largest of a
    block enters the estimate. Rows 1 and 3 spread the 600 by noise of 0.1."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, vocab, generator=g) - 10.0
    unsampled = torch.arange(vocab) % 512 >= 16
    heavy = unsampled.nonzero().flatten()[torch.randperm(int(unsampled.sum()), generator=g)[:600]]
    x[:, heavy] = 7.0
    x[1::2, heavy] += torch.randn(2, 600, generator=g) * 0.1
    x[:, 100] = 10.0
    return x


def finite_softmax_rows(x: torch.Tensor) -> torch.Tensor:
    """``(batch,)`` bool: rows whose softmax is defined (no NaN, a finite maximum)."""
    if x.numel() == 0:
        return torch.zeros(x.shape[0], dtype=torch.bool)
    return ~x.isnan().any(-1) & x.amax(-1).isfinite()


# ---- expected single stages --------------------------------------------------------------------------------------

_HF_CLASSES = {
    "temperature": lambda v, fv, k: transformers.TemperatureLogitsWarper(float(v)),
    "top_k": lambda v, fv, k: transformers.TopKLogitsWarper(int(v), filter_value=fv, min_tokens_to_keep=k),
    "top_p": lambda v, fv, k: transformers.TopPLogitsWarper(float(v), filter_value=fv, min_tokens_to_keep=k),
    "min_p": lambda v, fv, k: transformers.MinPLogitsWarper(float(v), filter_value=fv, min_tokens_to_keep=k),
    "typical_p": lambda v, fv, k: transformers.TypicalLogitsWarper(float(v), filter_value=fv, min_tokens_to_keep=k),
    "epsilon": lambda v, fv, k: transformers.EpsilonLogitsWarper(float(v), filter_value=fv, min_tokens_to_keep=k),
    "eta": lambda v, fv, k: transformers.EtaLogitsWarper(float(v), filter_value=fv, min_tokens_to_keep=k),
}
_REF_FUNCTIONS = {
    "temperature": reference.temperature,
    "top_k": reference.top_k,
    "top_p": reference.top_p,
    "min_p": reference.min_p,
    "typical_p": reference.typical,
    "epsilon": reference.epsilon,
    "eta": reference.eta,
}


def hf_accepts(stage: str, value) -> bool:
    """Whether transformers' class for `stage` accepts the scalar `value` (it rejects some 'disabled' values)."""
    try:
        _HF_CLASSES[stage](value, -math.inf, 1)
    except ValueError:
        return False
    return True


def hf_warper(stage: str, value, filter_value: float = -math.inf, min_tokens_to_keep: int = 1):
    """The transformers warper for one stage (top-k without min_tokens_to_keep: warp_logits does not apply it)."""
    keep = 1 if stage == "top_k" else min_tokens_to_keep
    return _HF_CLASSES[stage](value, filter_value, keep)


def hf_stage(
    stage: str, x: torch.Tensor, value, filter_value: float = -math.inf, min_tokens_to_keep: int = 1
) -> torch.Tensor:
    """One stage as transformers computes it, on `x` ``(batch, vocab)``.

    A per-row tensor `value`, a value the transformers class rejects, and eta's rows that transformers cannot
    handle (it raises on a NaN softmax) fall back to :mod:`pysample.reference` for the rows concerned.
    """
    if isinstance(value, torch.Tensor) and value.dim() == 1:
        out = torch.empty_like(x)
        for r in range(x.shape[0]):
            out[r : r + 1] = hf_stage(stage, x[r : r + 1], value[r].item(), filter_value, min_tokens_to_keep)
        return out
    if isinstance(value, torch.Tensor):
        value = value.item()
    if stage == "top_k" and value == 0 or not hf_accepts(stage, value) or x.numel() == 0:
        keep = 1 if stage == "top_k" else min_tokens_to_keep
        return _REF_FUNCTIONS[stage](x, value, filter_value, keep)
    warper = hf_warper(stage, value, filter_value, min_tokens_to_keep)
    if stage != "eta":
        return warper(None, x)
    ok = finite_softmax_rows(x)
    out = reference.eta(x, value, filter_value, min_tokens_to_keep)
    if ok.any():
        out[ok] = warper(None, x[ok])
    return out


def ref_stage(
    stage: str, x: torch.Tensor, value, filter_value: float = -math.inf, min_tokens_to_keep: int = 1
) -> torch.Tensor:
    keep = 1 if stage == "top_k" else min_tokens_to_keep
    return _REF_FUNCTIONS[stage](x, value, filter_value, keep)


def hf_chain(
    x: torch.Tensor, params: Dict[str, object], filter_value: float = -math.inf, min_tokens_to_keep: int = 1
) -> torch.Tensor:
    """transformers' warpers applied in generate()'s order (stages whose parameter is None skipped)."""
    for stage in STAGES:
        if params.get(stage) is not None:
            x = hf_stage(stage, x, params[stage], filter_value, min_tokens_to_keep)
    return x


# ---- the equality rule -------------------------------------------------------------------------------------------


def bitwise_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0)))


def differing(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(batch, vocab)`` bool: positions where `a` and `b` differ (NaN equals NaN; -0.0 differs from 0.0)."""
    if a.dtype != torch.float64:
        a, b = a.float(), b.float()  # exact for the 16-bit dtypes, and much faster than half-precision kernels
    same_value = (a == b) & (torch.signbit(a) == torch.signbit(b))
    return ~(same_value | (a.isnan() & b.isnan()))


def assert_same_bits(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal values, -0.0 distinct from 0.0, any NaN equal to any NaN."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    diff = differing(actual, expected)
    assert not diff.any(), f"{int(diff.sum())} differ, first at {diff.nonzero()[:5].tolist()}"


@dataclass
class StageReport:
    """The differing tokens of one stage: counts by explanation, and the first few described."""

    stage: str
    differing: int = 0
    ties: int = 0
    rounding: int = 0  # tokens
    rounding_groups: int = 0  # (row, value) pairs: a tied group decided by rounding counts once
    unexplained: int = 0
    examples: List[str] = field(default_factory=list)
    unexplained_examples: List[str] = field(default_factory=list)


def _group_mixed(key: torch.Tensor, flag: torch.Tensor) -> torch.Tensor:
    """Per token: whether the tokens with exactly its key (one row) do not all have the same `flag`."""
    _, inverse = torch.unique(key, return_inverse=True)
    groups = int(inverse.max()) + 1 if inverse.numel() else 0
    total = torch.bincount(inverse, minlength=groups)
    flagged = torch.bincount(inverse, weights=flag.double(), minlength=groups)
    mixed = (flagged > 0) & (flagged < total)
    return mixed[inverse]


def _tie_key(stage: str, x: torch.Tensor) -> torch.Tensor:
    """What transformers sorts or selects by in `stage`, computed as it does, ``(batch, vocab)``."""
    if stage == "min_p":
        return torch.softmax(x, dim=-1)  # topk over the probabilities
    if stage == "typical_p":
        return reference._typical_distance(x)  # sort by distance
    return x  # top-p sorts the scores; epsilon and eta's min_tokens_to_keep use topk over the scores


def _near(q: torch.Tensor, threshold, rtol: float, atol: float) -> torch.Tensor:
    return (q - threshold).abs() <= rtol * abs(threshold) + atol


def _near_threshold(
    stage: str, x_row: torch.Tensor, value: float, dtype: torch.dtype, tokens: torch.Tensor, min_tokens_to_keep: int = 1
) -> Tuple[torch.Tensor, List[str]]:
    """For each of `tokens` of one row: whether the compared quantity is within rounding of the threshold."""
    vocab = x_row.numel()
    rtol = RTOL[dtype]
    tiny = smallest_subnormal(dtype)
    x64 = x_row.double()
    p = torch.softmax(x64, dim=-1)
    # A sum of `vocab` probabilities, each rounded in `dtype` (transformers' softmax and cumsum run in the logits'
    # dtype): absolute error up to vocab * half the smallest subnormal (doubled here), plus the relative rounding.
    atol_sum = vocab * tiny + 1e-12
    atol_prob = 2 * tiny
    if stage == "top_p":
        order = torch.sort(x64, stable=True).indices
        cum = torch.empty_like(p)
        cum[order] = torch.cumsum(p[order], 0)
        threshold = 1.0 - value
        q = cum[tokens]
        return _near(q, threshold, rtol, atol_sum), [f"cum={c:.10g} vs 1-top_p={threshold:.10g}" for c in q.tolist()]
    if stage in ("min_p", "epsilon", "eta"):
        if stage == "min_p":
            threshold = value * float(p.max())
            tol = rtol
        elif stage == "epsilon":
            threshold = value
            tol = rtol
        else:
            logp = torch.log_softmax(x64, -1)
            entropy = float(-(torch.where(p > 0, p * logp, torch.zeros_like(p))).sum())
            threshold = min(value, math.sqrt(value) * math.exp(-entropy))
            # exp(-entropy) with the entropy computed in `dtype`: relative error about entropy * eps, plus the error
            # of transformers' own entropy, a sum of `vocab` rounded terms (measured: 1.2e-4 at 151936 in float32).
            entropy_t = float(reference._entropy(x_row.to(dtype)[None])[0])
            tol = rtol + 4 * (abs(entropy) + 1) * float(torch.finfo(dtype).eps) + 2 * abs(entropy_t - entropy)
        q = p[tokens]
        return _near(q, threshold, tol, atol_prob), [f"p={v:.10g} vs threshold={threshold:.10g}" for v in q.tolist()]
    if stage == "typical_p":
        logp = torch.log_softmax(x64, -1)
        entropy = float(-(torch.where(p > 0, p * logp, torch.zeros_like(p))).sum())
        distance = (-logp - entropy).abs()
        order = torch.sort(distance, stable=True).indices
        cum = torch.empty_like(p)
        cum[order] = torch.cumsum(p[order], 0)
        before = cum - p
        reached = (cum[order] >= value).nonzero()
        # The last token kept: where the mass reaches the value, or the min_tokens_to_keep-th in distance order.
        position = max(int(reached[0]) if reached.numel() else vocab - 1, min_tokens_to_keep - 1)
        cut = order[min(position, vocab - 1)]
        cut_distance = float(distance[cut])
        # Distances carry the rounding of log p (|log p| + entropy in magnitude), the token's and the cut's.
        magnitude = logp[tokens].abs().nan_to_num(0.0, posinf=0.0, neginf=0.0) + abs(float(logp[cut]))
        d_tol = rtol * (magnitude + 2 * abs(entropy) + 2.0)
        near_d = (distance[tokens] - cut_distance).abs() <= d_tol
        near_mass = _near(before[tokens], value, rtol, atol_sum) | _near(cum[tokens], value, rtol, atol_sum)
        details = [
            f"distance={d:.10g} vs cut {cut_distance:.10g}; mass before={b:.10g}, through={c:.10g} vs {value}"
            for d, b, c in zip(distance[tokens].tolist(), before[tokens].tolist(), cum[tokens].tolist())
        ]
        return near_d | near_mass, details
    return torch.zeros(tokens.shape, dtype=torch.bool), ["" for _ in tokens.tolist()]


def _row_value(value, row: int):
    if isinstance(value, torch.Tensor):
        return (value[row] if value.dim() == 1 else value).item()
    return value


def check_stage(
    stage: str,
    x: torch.Tensor,
    value,
    actual: torch.Tensor,
    expected: torch.Tensor,
    filter_value: float = -math.inf,
    device: str = "cpu",
    min_tokens_to_keep: int = 1,
) -> StageReport:
    """Checks one stage's output `actual` against `expected` (both computed from `x`) by the equality rule.

    Temperature and top-k must match bitwise. For the probability stages, a differing position must be a token
    that one side kept (its input value) and the other removed (`filter_value`), explained by a tie or by
    rounding at the threshold (not by rounding for min-p and epsilon on float32 logits when `actual` was computed
    on the CPU: `device`). Returns the report; :func:`assert_report` turns it into assertions.
    """
    report = StageReport(stage)
    diff = differing(actual, expected)
    report.differing = int(diff.sum())
    if not report.differing:
        return report
    if stage in ("temperature", "top_k"):
        report.unexplained = report.differing
        for r, t in diff.nonzero().tolist()[:20]:
            report.unexplained_examples.append(
                f"row {r} token {t}: input={float(x[r, t])!r} actual={float(actual[r, t])!r} "
                f"expected={float(expected[r, t])!r} (must be bitwise equal)"
            )
        return report
    fv = float(torch.tensor(filter_value, dtype=x.dtype))
    exact = stage in EXACT_CPU_FLOAT32_STAGES and x.dtype == torch.float32 and device == "cpu"
    keys = _tie_key(stage, x)
    kept_actual = ~differing(actual, x)
    kept_expected = ~differing(expected, x)
    actual, expected = actual.float(), expected.float()
    # Each differing position must be a keep/remove difference: one side the input, the other filter_value.
    shape_ok = (kept_actual & (expected == fv)) | (kept_expected & (actual == fv))
    for r in diff.any(-1).nonzero().flatten().tolist():
        tokens = diff[r].nonzero().flatten()
        value_r = float(_row_value(value, r))
        mixed = (_group_mixed(keys[r], kept_expected[r]) | _group_mixed(keys[r], kept_actual[r]))[tokens]
        near, details = _near_threshold(stage, x[r], value_r, x.dtype, tokens, min_tokens_to_keep)
        if exact:
            near = torch.zeros_like(near)
            details = [f"{d} (must be exact)" for d in details]
        ok = shape_ok[r, tokens]
        rounding = ok & ~mixed & near
        bad = ~ok | (~mixed & ~near)
        report.ties += int((ok & mixed).sum())
        report.rounding += int(rounding.sum())
        report.rounding_groups += int(torch.unique(x[r, tokens[rounding]]).numel())
        report.unexplained += int(bad.sum())
        for i, t in enumerate(tokens.tolist()):
            if len(report.examples) >= 30 and not bool(bad[i]):
                continue
            side = "kept by pysample only" if bool(kept_actual[r, t]) else "removed by pysample only"
            reason = (
                "UNEXPLAINED: not a keep/remove difference"
                if not bool(ok[i])
                else "tie"
                if bool(mixed[i])
                else "rounding"
                if bool(near[i])
                else "UNEXPLAINED: not near the threshold"
            )
            line = (
                f"row {r} token {t} input={float(x[r, t])!r} actual={float(actual[r, t])!r} "
                f"expected={float(expected[r, t])!r}: {side}: {reason} [{stage}={value_r}] {details[i]}"
            )
            if bool(bad[i]):
                if len(report.unexplained_examples) < 20:
                    report.unexplained_examples.append(line)
            elif len(report.examples) < 30:
                report.examples.append(line)
    return report


# Each difference must be explained by the threshold rule above; these caps only say "rare". transformers sums
# bfloat16 probabilities with an 8-bit mantissa, so with a mass threshold near 1 (typical_p=0.999) every tail token
# whose cumulative mass is within ~0.4% of it is ambiguous: a few percent of the row (seen: 2.4%).
MAX_ROUNDING_FRACTION = {torch.float32: 1e-3, torch.float16: 1e-2, torch.bfloat16: 5e-2, torch.float64: 1e-3}


def assert_report(
    report: StageReport, numel: int, dtype: torch.dtype = torch.float32, what: str = "", rare: bool = True
) -> None:
    """Fails on any unexplained difference, or (`rare`) when rounding differences are not rare; prints them."""
    if report.differing:
        print(
            f"{what} {report.stage}: {report.differing} differing tokens: {report.ties} ties, {report.rounding} "
            f"rounding ({report.rounding_groups} groups), {report.unexplained} unexplained"
        )
        for line in report.unexplained_examples + report.examples:
            print("   ", line)
    assert not report.unexplained, (
        f"{what} {report.stage}: {report.unexplained} unexplained differences, e.g. {report.unexplained_examples[0]}"
    )
    allowed = MAX_ROUNDING_FRACTION[dtype] * numel + 2
    assert not rare or report.rounding_groups <= allowed, (
        f"{what} {report.stage}: {report.rounding_groups} differences by rounding, more than the {allowed:.0f} allowed"
    )


def op_params(params: Dict[str, object], upto: Optional[str] = None) -> Dict[str, object]:
    """The warp_logits keyword arguments of `params` restricted to the stages up to and including `upto`."""
    out = {}
    for stage in STAGES:
        if params.get(stage) is not None:
            out[stage] = params[stage]
        if stage == upto:
            break
    return out


def check_chain(
    op: Callable[..., torch.Tensor],
    x: torch.Tensor,
    params: Dict[str, object],
    expected_stage: Callable = hf_stage,
    min_tokens_to_keep: int = 1,
    what: str = "",
    device: str = "cpu",
    rare: bool = True,
) -> torch.Tensor:
    """Checks ``op(x, **params)`` (run on `device`) stage by stage against `expected_stage` (transformers by default).
    `rare`: rounding differences must also be rare (see assert_report).

    For each enabled stage i, ``op`` run with the stages up to i is compared with `expected_stage` applied to the
    output of ``op`` with the stages before i; every comparison follows the equality rule. So a legitimate
    rounding difference at one stage does not make later stages look wrong. Also checks that the full call equals
    the last prefix call bitwise (the fused call is deterministic). Returns the full output.
    """
    enabled = [s for s in STAGES if params.get(s) is not None]
    previous = x
    for stage in enabled:
        kwargs = op_params(params, upto=stage)
        actual = op(x, **kwargs, min_tokens_to_keep=min_tokens_to_keep)
        expected = expected_stage(stage, previous, params[stage], -math.inf, min_tokens_to_keep)
        report = check_stage(
            stage, previous, params[stage], actual, expected, device=device, min_tokens_to_keep=min_tokens_to_keep
        )
        assert_report(report, x.numel(), x.dtype, what, rare)
        previous = actual
    full = op(x, **op_params(params), min_tokens_to_keep=min_tokens_to_keep)
    assert bitwise_equal(full, previous)
    return full
