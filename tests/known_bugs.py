"""Op bugs the tests found that are not fixed yet, in one place.

The randomized tests leave out exactly the inputs that trigger a listed bug (so that they stay strict for all
the rest), and each bug has a minimal reproducer marked ``xfail(strict=True)`` in the test files: when the op is
fixed, the reproducer passes, pytest reports it as XPASS(strict) failure, and the entry here should be removed.
Run with ``PYSAMPLE_TEST_KNOWN_BUGS=1`` to feed the randomized tests every input regardless.
"""

from __future__ import annotations

import os
from typing import Dict, Optional, Set

import torch

INCLUDE_ALL = os.environ.get("PYSAMPLE_TEST_KNOWN_BUGS") == "1"

TOP_K_NAN_KTH = (
    "op bug: top-k removes every non-NaN token when the k-th largest value is NaN (a row holding at least k NaNs); "
    "transformers keeps them all (x < NaN is false)"
)
ENTROPY_ZERO_WEIGHTS = (
    "op bug: typical and eta compute a wrong entropy on rows where some token's probability is exactly 0 "
    "(-inf logits, or logits ~104 below the max): weighted_log_probability's AVX2 clone is miscompiled by "
    "GCC 12 at -O3 -fno-trapping-math (conditional accumulate `acc += w > 0 ? w * x : 0`)"
)
HALF_TOP_P_ONE = (
    "op discrepancy: with float16/bfloat16 logits and top_p=1.0 the op keeps tokens whose probability is 0 in the "
    "logits' dtype (transformers computes the softmax in float16/bfloat16, the op in float32)"
)
MIN_KEEP_OVER_ACTIVE = (
    "op bug: top-p and typical remove EVERY token of a row when min_tokens_to_keep exceeds the number of tokens "
    "still active (min_tokens_to_keep > vocab, or e.g. top_k=2 then top_p with min_tokens_to_keep=3); "
    "transformers keeps them all (keep_up_to selects rank min_keep instead of min(min_keep, active))"
)
ROW_TENSOR_DEVICE = (
    "op bug: a per-row tensor on the meta device is not rejected: the fake kernel runs and warp_logits returns "
    "uninitialised memory (warp_logits_ silently does nothing)"
)
ROW_TENSOR_DTYPE = (
    "op bug: pysample.warp_logits converts per-row tensors of any dtype (a float top_k tensor is truncated, an "
    "integer or bool top_p tensor accepted) instead of raising TypeError"
)


def _has(params: Dict[str, object], stage: str) -> bool:
    return params.get(stage) is not None


def excluded_row_kinds(params: Dict[str, object], dtype: torch.dtype) -> Set[str]:
    """Row kinds (see warp_compare.ROW_KINDS) to leave out of random inputs for `params`, because of a known bug."""
    if INCLUDE_ALL:
        return set()
    kinds: Set[str] = set()
    if _has(params, "top_k"):
        kinds.add("nan_entry")  # TOP_K_NAN_KTH (top_k = 1 on a row with one NaN)
    if _has(params, "typical_p") or _has(params, "eta"):
        kinds |= {"neg_inf", "very_peaked"}  # ENTROPY_ZERO_WEIGHTS
    return kinds


def _contains(value, target: float) -> bool:
    if isinstance(value, torch.Tensor):
        return bool((value == target).any())
    return value == target


def _smallest_positive(value) -> Optional[int]:
    if isinstance(value, torch.Tensor):
        positive = value[value > 0]
        return int(positive.min()) if positive.numel() else None
    return int(value) if value else None


def xfail_reason(params: Dict[str, object], dtype: torch.dtype, min_tokens_to_keep: int = 1,
                 vocab: Optional[int] = None) -> Optional[str]:
    """Why `params` on `dtype` may fail because of a known bug (the random rows decide whether it does), or None."""
    if INCLUDE_ALL:
        return None
    if min_tokens_to_keep > 1 and (_has(params, "top_p") or _has(params, "typical_p")):
        k = _smallest_positive(params["top_k"]) if _has(params, "top_k") else None
        if (vocab is not None and min_tokens_to_keep > vocab) or (k is not None and k < min_tokens_to_keep) or (
                _has(params, "top_p") and _has(params, "typical_p")):
            return MIN_KEEP_OVER_ACTIVE
    # bfloat16 shares float32's exponent range: only probabilities between ~1e-45 and ~1e-40 differ, which the
    # random rows do not produce (test_bug_half_precision_top_p_one_underflow has a bfloat16 reproducer).
    if dtype == torch.float16 and _has(params, "top_p") and _contains(params["top_p"], 1.0):
        return HALF_TOP_P_ONE
    return None
