"""pysample: fused C++/CUDA kernels for the hot loop of LLM decoding, drop-in for transformers' logits processors."""

from . import ops
from .ops import sample, warp_logits, warp_logits_
from .processors import (
    EpsilonLogitsWarper,
    EtaLogitsWarper,
    FusedLogitsProcessor,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
    fuse,
)

__all__ = [
    "EpsilonLogitsWarper",
    "EtaLogitsWarper",
    "FusedLogitsProcessor",
    "MinPLogitsWarper",
    "TemperatureLogitsWarper",
    "TopKLogitsWarper",
    "TopPLogitsWarper",
    "TypicalLogitsWarper",
    "fuse",
    "ops",
    "sample",
    "warp_logits",
    "warp_logits_",
]
__version__ = "0.1.0"
