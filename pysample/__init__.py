"""pysample: fused C++/CUDA kernels for the hot loop of LLM decoding, drop-in for transformers' logits processors."""

from . import ops
from .accelerate import accelerate
from .cache import BeamCache, BeamStaticCache, reorder_kv_cache_
from .ops import (
    apply_penalties,
    apply_penalties_,
    beam_search_step,
    bias_sequences_,
    no_repeat_ngram,
    no_repeat_ngram_,
    sample,
    warp_logits,
    warp_logits_,
)
from .penalties import PenaltyState
from .processors import (
    EncoderNoRepeatNGramLogitsProcessor,
    EncoderRepetitionPenaltyLogitsProcessor,
    EpsilonLogitsWarper,
    EtaLogitsWarper,
    FusedLogitsProcessor,
    MinPLogitsWarper,
    NoBadWordsLogitsProcessor,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    SequenceBiasLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
    fuse,
)

__all__ = [
    "accelerate",
    "BeamCache",
    "BeamStaticCache",
    "EncoderNoRepeatNGramLogitsProcessor",
    "EncoderRepetitionPenaltyLogitsProcessor",
    "EpsilonLogitsWarper",
    "EtaLogitsWarper",
    "FusedLogitsProcessor",
    "MinPLogitsWarper",
    "NoBadWordsLogitsProcessor",
    "NoRepeatNGramLogitsProcessor",
    "PenaltyState",
    "RepetitionPenaltyLogitsProcessor",
    "SequenceBiasLogitsProcessor",
    "TemperatureLogitsWarper",
    "TopKLogitsWarper",
    "TopPLogitsWarper",
    "TypicalLogitsWarper",
    "apply_penalties",
    "apply_penalties_",
    "beam_search_step",
    "bias_sequences_",
    "fuse",
    "no_repeat_ngram",
    "no_repeat_ngram_",
    "ops",
    "reorder_kv_cache_",
    "sample",
    "warp_logits",
    "warp_logits_",
]
__version__ = "0.1.0"
