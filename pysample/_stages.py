"""The warper's stages in the order they run (transformers' order), as ``csrc/include/pysample/stages.h`` declares
them for C++: the op arguments, the processors' fusing order, the fakes' checks and the reference's order derive
from this table. Adding a stage: a row here, one in stages.h, and its kernels."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch


class Stage(NamedTuple):
    name: str  # the op argument; its per-row tensor is ``<name>_rows``
    dtype: torch.dtype  # of the per-row tensor
    range: str  # the values the op accepts: a key of RANGES


#: What each range accepts (NaN: none) and how messages state it, as ValueRange in csrc/include/pysample/common.h.
RANGES = {
    "positive_finite": (lambda v: 0 < v < math.inf, "a finite number > 0"),
    "non_negative_finite": (lambda v: 0 <= v < math.inf, "a finite number >= 0 (0: greedy)"),
    "non_negative": (lambda v: v >= 0, ">= 0"),
    "unit_interval": (lambda v: 0 <= v <= 1, "in [0, 1]"),
}

WARP_STAGES = (
    Stage("temperature", torch.float32, "positive_finite"),
    Stage("top_k", torch.int64, "non_negative"),
    Stage("top_p", torch.float32, "unit_interval"),
    Stage("min_p", torch.float32, "unit_interval"),
    Stage("typical_p", torch.float32, "unit_interval"),
    Stage("epsilon", torch.float32, "unit_interval"),
    Stage("eta", torch.float32, "unit_interval"),
)
STAGE_NAMES = tuple(stage.name for stage in WARP_STAGES)

#: The sampler's stages: the first four, but temperature 0 is greedy.
SAMPLE_STAGES = (WARP_STAGES[0]._replace(range="non_negative_finite"),) + WARP_STAGES[1:4]
