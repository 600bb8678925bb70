"""pysample: fused C++/CUDA kernels for the hot loop of LLM decoding, drop-in for transformers' logits processors."""

from . import ops
from .ops import apply_penalties, apply_penalties_, sample, warp_logits, warp_logits_
from .penalties import PenaltyState
from .processors import (
    EncoderRepetitionPenaltyLogitsProcessor,
    EpsilonLogitsWarper,
    EtaLogitsWarper,
    FusedLogitsProcessor,
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
    fuse,
)

__all__ = [
    "EncoderRepetitionPenaltyLogitsProcessor",
    "EpsilonLogitsWarper",
    "EtaLogitsWarper",
    "FusedLogitsProcessor",
    "MinPLogitsWarper",
    "PenaltyState",
    "RepetitionPenaltyLogitsProcessor",
    "TemperatureLogitsWarper",
    "TopKLogitsWarper",
    "TopPLogitsWarper",
    "TypicalLogitsWarper",
    "apply_penalties",
    "apply_penalties_",
    "fuse",
    "ops",
    "sample",
    "warp_logits",
    "warp_logits_",
]
__version__ = "0.1.0"
