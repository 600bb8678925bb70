// What the CPU and CUDA kernels of token_logprobs share: the order of the top tokens and a token's log-probability,
// torch.log_softmax's on logits.float(). Framework-free (no torch header). Design: docs/design.md#token-logprobs.
#pragma once

#include <cstdint>
#include <limits>

#include "pysample/common.h"

namespace pysample {

// The most top tokens a row returns (vLLM's default max_logprobs).
constexpr int64_t kMaxLogprobsTop = 20;

// A token's place in the top order as an ascending integer: descending ordered key (NaN first, as torch.topk), then
// ascending token id. Every token's composite differs, so the top n is one exact set.
PYSAMPLE_HD uint64_t top_composite(uint32_t key, uint32_t id) { return (static_cast<uint64_t>(~key) << 32) | id; }

PYSAMPLE_HD uint32_t composite_id(uint64_t composite) { return static_cast<uint32_t>(composite); }

// log(sum exp(x - max)) from the sum, NaN where torch's log_softmax is NaN throughout: a NaN in the row, a +inf, or
// only -inf (max ignores NaN here).
PYSAMPLE_HD float row_log_sum(float max, bool has_nan, double sum) {
  const bool defined =
      !has_nan && max > -std::numeric_limits<float>::infinity() && max < std::numeric_limits<float>::infinity();
  return defined ? static_cast<float>(log(sum)) : std::numeric_limits<float>::quiet_NaN();
}

// torch's log_softmax of one value, in its order of operations: (x - max) - log_sum.
PYSAMPLE_HD float token_logprob(float x, float max, float log_sum) { return (x - max) - log_sum; }

}  // namespace pysample
