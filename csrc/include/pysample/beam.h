// Logic of the fused beam search step that the CPU and the CUDA kernels share: a candidate's score as transformers
// computes it, and the order candidates are selected in. Framework-free (no torch header).
//
// transformers' beam step on rows (batch * beams, vocab) of float32 logits: log_probs = log_softmax(logits), then
// log_probs + running beam score, then torch.topk over each batch item's beams * vocab candidates. torch's
// log_softmax computes (x - max) - log(sum exp(x - max)), with max NaN when the row holds a NaN, so a row with a
// NaN, a +inf or only -inf is NaN throughout; torch.topk ranks NaN above every number.
#pragma once

#include <cstdint>

#include "pysample/common.h"

namespace pysample {

// The max of torch's log_softmax: NaN as soon as one value is NaN.
PYSAMPLE_HD float nan_max(float a, float b) { return (a > b || a != a) ? a : b; }

// A candidate's score: its log-probability (x - max) - log_sum, as torch rounds it, plus its beam's running score;
// with `normalize` false the logits are taken as log-probabilities already (x + running score).
PYSAMPLE_HD float beam_score(float x, float max, float log_sum, float running, bool normalize) {
  const float log_prob = normalize ? (x - max) - log_sum : x;
  return log_prob + running;
}

// A candidate's rank, larger first: the score's order-preserving key (NaN above every number, -0.0 equal to 0.0),
// then the lower flat index beam * vocab + token. All ranks differ, so "the top k" is one exact set, and equal
// scores are taken in flat index order (torch.topk leaves their order unspecified).
PYSAMPLE_HD uint64_t candidate_rank_of_key(uint32_t score_key, uint32_t flat_index) {
  return (static_cast<uint64_t>(score_key) << 32) | (0xFFFFFFFFu - flat_index);
}

PYSAMPLE_HD uint64_t candidate_rank(float score, uint32_t flat_index) {
  return candidate_rank_of_key(ordered_key(score), flat_index);
}

PYSAMPLE_HD uint32_t rank_flat_index(uint64_t rank) { return 0xFFFFFFFFu - static_cast<uint32_t>(rank); }

}  // namespace pysample
