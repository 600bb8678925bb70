// CPU kernel of token_logprobs (rules in pysample/token_logprobs.h): rows in parallel, each read once from memory, a
// block of kLogprobBlock tokens at a time while it is in L1: the block's max (an online log-sum-exp, the running sum
// rescaled when the max grows), its exps summed in double, the sampled tokens' rank counts and the top-n candidates.
// Design: docs/design.md#token-logprobs.
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "../token_logprobs_args.h"
#include "cpu_rows.h"
#include "pysample/token_logprobs.h"

namespace pysample {
namespace {

// 8 KB of floats: a block stays in L1 through its passes. Measured at 128256 tokens, one thread: 3-6% faster than the
// row's max first, then these passes over a row still in L2.
constexpr int64_t kLogprobBlock = 2048;

struct LogprobScratch {
  std::vector<float> values;  // a block as float, unless the row is contiguous float32
  std::vector<float> exps;
  void reserve(int64_t vocab) {
    const size_t size = static_cast<size_t>(std::min(vocab, kLogprobBlock));
    if (values.size() < size) values.resize(size), exps.resize(size);
  }
};

// sum exp_nonpos(x - max) over a block, accumulated in double lanes (in one order: the same sum on every machine).
PYSAMPLE_CPU_CLONES double block_sum(const float* x, int64_t n, float max, float* scratch) {
  exps(x, n, max, scratch);
  double lanes[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; ++l) lanes[l] += scratch[i + l];
  }
  for (int l = 0; i < n; ++i, ++l) lanes[l] += scratch[i];
  double sum = 0.0;
  for (double lane : lanes) sum += lane;
  return sum;
}

// Tokens of a block with a value >= t (none for t NaN).
PYSAMPLE_CPU_CLONES int64_t count_at_least(const float* x, int64_t n, float t) {
  int32_t count = 0;
  for (int64_t i = 0; i < n; ++i) count += x[i] >= t;
  return count;
}

// The best `capacity` tokens seen so far, ascending top_composite (best first): a bounded insertion, cheap since
// once it is full few tokens beat its last.
struct TopTokens {
  uint64_t composite[kMaxLogprobsTop];
  float value[kMaxLogprobsTop];
  int count = 0;
  int capacity = 0;
  float bar = -kInf;  // a token can enter only if its value >= bar (false for NaN: NaN rows go through offer)

  void offer(float x, int64_t id) {
    const uint64_t c = top_composite(ordered_key(x), static_cast<uint32_t>(id));
    if (count == capacity && c >= composite[capacity - 1]) return;
    int pos = count < capacity ? count++ : capacity - 1;
    for (; pos > 0 && composite[pos - 1] > c; --pos) composite[pos] = composite[pos - 1], value[pos] = value[pos - 1];
    composite[pos] = c;
    value[pos] = x;
    // A later token equal to the last has a larger id and cannot enter.
    if (count == capacity) bar = std::nextafter(value[capacity - 1], kInf);
  }
};

// Offers the tokens of a block (ids from first_id) that reach the bar, 8 lanes compared at a time.
PYSAMPLE_CPU_CLONES void offer_block(TopTokens& top, const float* x, int64_t n, int64_t first_id) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    Floats8 v;
    std::memcpy(&v, x + i, sizeof v);
    if (!any_lane(v >= top.bar)) continue;
    for (int l = 0; l < 8; ++l) {
      if (x[i + l] >= top.bar) top.offer(x[i + l], first_id + i + l);
    }
  }
  for (; i < n; ++i) {
    if (x[i] >= top.bar) top.offer(x[i], first_id + i);
  }
}

// A row's outputs: token_logprobs and ranks (n each), top_ids and top_logprobs (num_top each).
struct RowOut {
  float* logprobs;
  int64_t* ranks;
  int64_t* top_ids;
  float* top_logprobs;
};

template <typename T>
void logprobs_row(const T* row, int64_t stride, int64_t vocab, const int64_t* tokens, int64_t n, int num_top,
                  LogprobScratch& scratch, const RowOut& out) {
  // The blocks as float (logits.float()): read in place when they already are.
  auto block = [&](int64_t begin, int64_t size) -> const float* {
    if constexpr (std::is_same_v<T, float>) {
      if (stride == 1) return row + begin;
    }
    for (int64_t i = 0; i < size; ++i) scratch.values[i] = static_cast<float>(row[(begin + i) * stride]);
    return scratch.values.data();
  };
  auto value_of = [&](int64_t token) { return static_cast<float>(row[token * stride]); };
  for (int64_t j = 0; j < n; ++j) out.ranks[j] = 0;
  TopTokens top;
  top.capacity = num_top;
  float max = -kInf;
  bool has_nan = false;
  double sum = 0.0;
  for (int64_t begin = 0; begin < vocab; begin += kLogprobBlock) {
    const int64_t size = std::min(kLogprobBlock, vocab - begin);
    const float* x = block(begin, size);
    float block_max, block_min;
    bool block_nan;
    value_range(x, size, &block_max, &block_min, &block_nan);
    has_nan |= block_nan;
    if (block_max > max) {
      if (sum != 0.0) sum *= std::exp(static_cast<double>(max) - static_cast<double>(block_max));
      max = block_max;
    }
    if (max > -kInf && max < kInf) sum += block_sum(x, size, max, scratch.exps.data());
    for (int64_t j = 0; j < n; ++j) {
      if (tokens[j] >= 0) out.ranks[j] += count_at_least(x, size, value_of(tokens[j]));
    }
    if (num_top > 0) offer_block(top, x, size, begin);
  }
  if (has_nan) {
    // Rare: ranks and the top again in the ordered keys' order, where NaN is above every number (as torch.topk).
    top = TopTokens();
    top.capacity = num_top;
    for (int64_t j = 0; j < n; ++j) out.ranks[j] = 0;
    for (int64_t i = 0; i < vocab; ++i) {
      const float x = value_of(i);
      const uint32_t key = ordered_key(x);
      for (int64_t j = 0; j < n; ++j) out.ranks[j] += tokens[j] >= 0 && key >= ordered_key(value_of(tokens[j]));
      if (num_top > 0) top.offer(x, i);
    }
  }
  const float log_sum = row_log_sum(max, has_nan, sum);
  for (int64_t j = 0; j < n; ++j) {
    out.logprobs[j] =
        tokens[j] >= 0 ? token_logprob(value_of(tokens[j]), max, log_sum) : std::numeric_limits<float>::quiet_NaN();
  }
  for (int k = 0; k < num_top; ++k) {
    out.top_ids[k] = composite_id(top.composite[k]);
    out.top_logprobs[k] = token_logprob(top.value[k], max, log_sum);
  }
}

void token_logprobs_cpu(const at::Tensor& logits, const at::Tensor& tokens, int64_t num_top, const TokenLogprobs& out) {
  TORCH_CHECK_VALUE(logits.device().is_cpu(), "logits must be on the CPU for the CPU kernel");
  const int64_t batch = logits.size(0), vocab = logits.size(1), n = tokens.size(1);
  const int64_t* ids = tokens.const_data_ptr<int64_t>();
  // Every token checked before any row runs; -1 is "no token".
  for (int64_t i = 0; i < batch * n; ++i) {
    TORCH_CHECK_INDEX(ids[i] >= -1 && ids[i] < vocab, "tokens[", i / n, ", ", i % n, "] = ", ids[i],
                      " is out of range for a vocabulary of ", vocab, " (-1: no token)");
  }
  const RowOut first{out.token_logprobs.data_ptr<float>(), out.ranks.data_ptr<int64_t>(),
                     out.top_ids.data_ptr<int64_t>(), out.top_logprobs.data_ptr<float>()};
  const int64_t row_stride = logits.stride(0), stride = logits.stride(1);
  dispatch_scores(logits, [&](auto score_zero) {
    using T = decltype(score_zero);
    const T* data = logits.const_data_ptr<T>();
    for_each_row<LogprobScratch>(batch, vocab, [&](int64_t r, LogprobScratch& scratch) {
      const RowOut row_out{first.logprobs + r * n, first.ranks + r * n, first.top_ids + r * num_top,
                           first.top_logprobs + r * num_top};
      logprobs_row(data + r * row_stride, stride, vocab, ids + r * n, n, static_cast<int>(num_top), scratch, row_out);
    });
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(pysample, CPU, m) { m.impl("token_logprobs", &token_logprobs<token_logprobs_cpu>); }

}  // namespace pysample
