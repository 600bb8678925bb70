"""pysample: fused C++/CUDA kernels for the hot loop of LLM decoding, drop-in for transformers' logits processors."""

from . import ops
from .accelerate import accelerate
from .cache import reorder_kv_cache_
from .ops import (
    TokenLogprobs,
    apply_penalties,
    apply_penalties_,
    apply_token_bitmask_,
    beam_search_step,
    bias_sequences_,
    no_repeat_ngram,
    no_repeat_ngram_,
    sample,
    token_logprobs,
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

# BeamCache and BeamStaticCache are transformers caches: loaded on first use (__getattr__), so that `import pysample`
# and `from pysample import *` need torch alone.
__all__ = [
    "accelerate",
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
    "TokenLogprobs",
    "TopKLogitsWarper",
    "TopPLogitsWarper",
    "TypicalLogitsWarper",
    "apply_penalties",
    "apply_penalties_",
    "apply_token_bitmask_",
    "beam_search_step",
    "bias_sequences_",
    "fuse",
    "no_repeat_ngram",
    "no_repeat_ngram_",
    "ops",
    "reorder_kv_cache_",
    "sample",
    "token_logprobs",
    "warp_logits",
    "warp_logits_",
]
__version__ = "0.1.0"

_NEED_TRANSFORMERS = {"BeamCache", "BeamStaticCache"}


def __getattr__(name: str):
    if name in _NEED_TRANSFORMERS:
        try:
            from . import beam_cache
        except ModuleNotFoundError as error:
            if error.name is None or error.name.split(".")[0] != "transformers":
                raise
            raise ImportError(
                f"pysample.{name} is a transformers cache and needs transformers: pip install 'pysample[transformers]'"
            ) from error
        return getattr(beam_cache, name)
    raise AttributeError(f"module 'pysample' has no attribute {name!r}")
