// CPU kernel of the fused beam search step (rules in pysample/beam.h). Rows (beams) run in parallel: a row's max,
// then log(sum exp(x - max)), then one pass that scores every token and keeps the row's best num_candidates ranks
// in a min-heap (a token enters only when it beats the heap's least, rare after the first few). Each batch item
// then merges its beams' candidates. No log-probability tensor is written.
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "../beam_args.h"
#include "cpu_rows.h"

namespace pysample {
namespace {

// sum exp(x - max) for a finite max, accumulated in double: a float sum of a large vocabulary drifts by several
// ulp, which would move every score of the row.
PYSAMPLE_CPU_CLONES double exp_sum(const float* x, int64_t n, float max) {
  constexpr int64_t kChunk = 256;
  static_assert(kChunk % kLanes == 0);
  double acc[kLanes] = {};
  float e[kChunk];
  for (int64_t begin = 0; begin < n; begin += kChunk) {
    const int64_t len = std::min(kChunk, n - begin);
    exps(x + begin, len, max, e);
    int64_t i = 0;
    for (; i + kLanes <= len; i += kLanes) {
      for (int l = 0; l < kLanes; ++l) acc[l] += e[i + l];
    }
    for (; i < len; ++i) acc[0] += e[i];
  }
  double sum = 0;
  for (int l = 0; l < kLanes; ++l) sum += acc[l];
  return sum;
}

// The order-preserving keys of the scores of tokens [0, n) of a row; returns the largest. GCC vector types, the
// same operations as beam_score and ordered_key (the same bits): as a plain loop it does not vectorize.
PYSAMPLE_CPU_CLONES uint32_t chunk_keys(const float* x, int64_t n, float max, float log_sum, float running,
                                        bool normalize, uint32_t* keys) {
  Uints8 top = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    Floats8 v;
    std::memcpy(&v, x + i, sizeof v);
    const Floats8 log_prob = normalize ? (v - max) - log_sum : v;
    const Uints8 key = ordered_keys(log_prob + running);
    std::memcpy(keys + i, &key, sizeof key);
    top = key > top ? key : top;
  }
  uint32_t largest = 0;
  for (int l = 0; l < 8; ++l) largest = top[l] > largest ? top[l] : largest;
  for (; i < n; ++i) {
    keys[i] = ordered_key(beam_score(x[i], max, log_sum, running, normalize));
    largest = keys[i] > largest ? keys[i] : largest;
  }
  return largest;
}

struct RowStats {
  float max, log_sum;
};

// A row's scratch: its logits as floats (half types), and the min-heap of its best ranks.
struct BeamScratch {
  std::vector<float> x;
  std::vector<uint64_t> heap;
  void reserve(int64_t vocab) { x.reserve(vocab); }
};

// Keeps the `keep` largest ranks of the row's tokens in `heap` (a min-heap, the least in front). Tokens come in
// index order, so a later token with the key of the heap's least ranks below it: only a larger key enters, and a
// chunk whose keys are all below that is skipped whole (most of them, once the heap is full).
void best_ranks(const float* x, int64_t vocab, RowStats stats, float running, bool normalize, uint32_t first_index,
                int64_t keep, std::vector<uint64_t>& heap) {
  constexpr int64_t kChunk = 64;
  uint32_t keys[kChunk];
  heap.clear();
  for (int64_t start = 0; start < vocab; start += kChunk) {
    const int64_t n = std::min(kChunk, vocab - start);
    const uint32_t largest = chunk_keys(x + start, n, stats.max, stats.log_sum, running, normalize, keys);
    const bool full = static_cast<int64_t>(heap.size()) == keep;
    if (full && largest <= static_cast<uint32_t>(heap.front() >> 32)) continue;
    for (int64_t i = 0; i < n; ++i) {
      const uint64_t rank = candidate_rank_of_key(keys[i], first_index + static_cast<uint32_t>(start + i));
      if (static_cast<int64_t>(heap.size()) < keep) {
        heap.push_back(rank);
        std::push_heap(heap.begin(), heap.end(), std::greater<>());
      } else if (rank > heap.front()) {
        std::pop_heap(heap.begin(), heap.end(), std::greater<>());
        heap.back() = rank;
        std::push_heap(heap.begin(), heap.end(), std::greater<>());
      }
    }
  }
}

void beam_search_step_cpu(const at::Tensor& logits, const at::Tensor& beam_scores, int64_t num_beams, bool normalize,
                          const at::Tensor& scores, const at::Tensor& tokens, const at::Tensor& beams) {
  TORCH_CHECK_VALUE(logits.device().is_cpu(), "logits must be on the CPU for the CPU kernel");
  const int64_t rows = logits.size(0);
  const int64_t vocab = logits.size(1);
  const int64_t batch = rows / num_beams;
  const int64_t keep = scores.size(1);
  const int64_t per_row = std::min(keep, vocab);  // candidates a row can contribute
  const float* running = beam_scores.const_data_ptr<float>();
  std::vector<RowStats> stats(rows);
  std::vector<uint64_t> candidates(rows * per_row);

  dispatch_logits(logits, [&](auto zero) {
    using scalar_t = decltype(zero);
    const scalar_t* data = logits.const_data_ptr<scalar_t>();
    const int64_t stride = logits.stride(0);
    for_each_row<BeamScratch>(rows, vocab, [&](int64_t row, BeamScratch& s) {
      const float* x;
      if constexpr (std::is_same_v<scalar_t, float>) {
        x = data + row * stride;
      } else {
        s.x.resize(vocab);
        for (int64_t i = 0; i < vocab; ++i) s.x[i] = static_cast<float>(data[row * stride + i]);
        x = s.x.data();
      }
      RowStats& st = stats[row];
      st = {0.0f, 0.0f};
      if (normalize) {
        float min;
        bool has_nan;
        value_range(x, vocab, &st.max, &min, &has_nan);
        // torch's log_softmax is NaN throughout a row with a NaN, a +inf or only -inf (x - max is NaN somewhere, so
        // is the sum): no exp needed.
        st.log_sum = has_nan || !std::isfinite(st.max) ? std::numeric_limits<float>::quiet_NaN()
                                                       : static_cast<float>(std::log(exp_sum(x, vocab, st.max)));
      }
      const uint32_t first_index = static_cast<uint32_t>((row % num_beams) * vocab);
      best_ranks(x, vocab, st, running[row], normalize, first_index, per_row, s.heap);
      std::copy(s.heap.begin(), s.heap.end(), candidates.begin() + row * per_row);
    });

    float* out_scores = scores.data_ptr<float>();
    int64_t* out_tokens = tokens.data_ptr<int64_t>();
    int64_t* out_beams = beams.data_ptr<int64_t>();
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        uint64_t* first = candidates.data() + b * num_beams * per_row;
        uint64_t* last = first + num_beams * per_row;
        std::partial_sort(first, first + keep, last, std::greater<>());
        for (int64_t j = 0; j < keep; ++j) {
          const uint32_t flat = rank_flat_index(first[j]);
          const int64_t beam = flat / vocab;
          const int64_t token = flat % vocab;
          const int64_t row = b * num_beams + beam;
          const RowStats st = stats[row];
          // The score again from its logit: the rank keeps its order, not its bits (NaN payload, -0.0).
          const float x = static_cast<float>(data[row * stride + token]);
          out_scores[b * keep + j] = beam_score(x, st.max, st.log_sum, running[row], normalize);
          out_tokens[b * keep + j] = token;
          out_beams[b * keep + j] = beam;
        }
      }
    });
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(pysample, CPU, m) { m.impl("beam_search_step", &beam_search_step<beam_search_step_cpu>); }

}  // namespace pysample
