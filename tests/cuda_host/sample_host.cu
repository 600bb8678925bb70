// The CUDA sampler's per-row logic run on the host, so that tests can compare it with the CPU kernel on a machine
// without a GPU (tests/test_sample_cuda_logic.py builds this file with nvcc and calls it through ctypes).
//
// pysample/sample.cuh writes a row's sampling once, sample_gpu::sample_row over a `Block` of primitives: the
// launch parameters (plan_row), the row view with its scaled logits, composites and weights (RowView), the radix
// select of top-k and top-p (select) and the order of the stages are all that kernel's own code. HostBlock below
// gives the primitives the results DeviceBlock computes with a thread block, on one host thread: the row's max
// (NaN ignored), the first index of a value, one digit's histogram of counts (and of weights for a goal by mass)
// with the digit where the running total reaches the goal, the only token left by a prefix, the kept weight, and
// each draw's token, the first in token order whose running kept weight exceeds the draw's target. What runs only
// on the GPU, and so is not checked here, is how DeviceBlock computes those: its atomics, scans and warp shuffles.
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstdint>

#include "pysample/sample.cuh"

namespace {

using namespace pysample;
using namespace pysample::sample_gpu;
using pysample::row_select::kNoDigit;

class HostBlock {
 public:
  template <typename View>
  RowStats stats(const View& view) {
    RowStats s{-kInf, false};
    for (int32_t i = 0; i < view.vocab; ++i) {
      const float y = view.value(i);
      s.max = std::fmax(s.max, y);
      s.has_nan |= y != y;
    }
    return s;
  }

  template <typename View>
  int32_t first_index_of(const View& view, float max, bool nan) {
    for (int32_t i = 0; i < view.vocab; ++i) {
      const float y = view.value(i);
      if (nan ? y != y : y == max) return i;
    }
    return view.vocab;
  }

  void fill(int64_t* tokens, int64_t draws, int64_t token) {
    for (int64_t d = 0; d < draws; ++d) tokens[d] = token;
  }

  template <typename View>
  DigitCrossing cross(const View& view, uint64_t prefix, uint64_t mask, int shift, const Goal& goal,
                      const Bin& before) {
    Bin bins[kDigits] = {};
    for (int32_t i = 0; i < view.vocab; ++i) {
      const Token t = view.token(i);
      const uint64_t c = view.composite(t);
      if (!view.in_bound(t) || (c & mask) != prefix) continue;
      Bin& bin = bins[(c >> shift) & (kDigits - 1)];
      bin.count += 1;
      if (goal.by_mass) bin.mass += view.weight(t);  // counts only otherwise, as on the device
    }
    Bin all{0, 0ull};
    for (const Bin& bin : bins) all = add(all, bin);
    const double target = goal.target(all);
    Bin below{0, 0ull};
    for (int digit = 0; digit < kDigits; ++digit) {
      if (bins[digit].count > 0 && goal.reached(add(add(before, below), bins[digit]), target)) {
        return {digit, below, bins[digit], all};
      }
      below = add(below, bins[digit]);
    }
    return {kNoDigit, below, Bin{0, 0ull}, all};
  }

  template <typename View>
  uint64_t find_lone(const View& view, uint64_t prefix, uint64_t mask) {
    uint64_t lone = 0;
    for (int32_t i = 0; i < view.vocab; ++i) {
      const Token t = view.token(i);
      if (view.in_bound(t) && (view.composite(t) & mask) == prefix) lone = view.composite(t);
    }
    return lone;
  }

  template <typename View>
  uint64_t kept_weight(const View& view) {
    uint64_t kept = 0;
    for (int32_t i = 0; i < view.vocab; ++i) kept += view.kept_weight(view.token(i));
    return kept;
  }

  template <typename View>
  void draw(const View& view, uint64_t kept, uint64_t seed, uint64_t step, int64_t* tokens, int64_t draws) {
    for (int64_t d = 0; d < draws; ++d) {
      const uint64_t target = draw_target(draw_bits(seed, step, static_cast<uint32_t>(d)), kept);
      uint64_t running = 0;
      for (int32_t i = 0; i < view.vocab; ++i) {
        running += view.kept_weight(view.token(i));
        if (running > target) {
          tokens[d] = i;
          break;
        }
      }
    }
  }
};

template <typename T>
void sample_rows(const void* logits, int64_t stride, int64_t batch, int64_t vocab, const SampleParams& params,
                 int64_t* tokens) {
  for (int64_t row = 0; row < batch; ++row) {
    const RowPlan plan = plan_row(params, row);
    HostBlock block;
    sample_row(block, RowView<T>(static_cast<const T*>(logits) + row * stride, static_cast<int32_t>(vocab), plan), plan,
               tokens + row * params.draws, params.draws);
  }
}

template <typename Stored, typename Value>
RowParam<Stored, Value> row_param(const Stored* rows, Value value, bool enabled) {
  RowParam<Stored, Value> p;
  p.rows = rows;
  p.value = value;
  p.enabled = enabled;
  return p;
}

}  // namespace

// sample_kernel's work on the host: `logits` (batch, vocab) of dtype 0 float32, 1 float16, 2 bfloat16, row stride
// `stride` elements; each parameter per row (`*_rows`, or null for the scalar) and whether its stage is enabled, as
// in SampleParams; `tokens` (batch, draws).
extern "C" void sample_rows_on_host(int dtype, const void* logits, int64_t stride, int64_t batch, int64_t vocab,
                                    const float* temperature_rows, double temperature, bool temperature_enabled,
                                    const int64_t* top_k_rows, int64_t top_k, bool top_k_enabled,
                                    const float* top_p_rows, double top_p, bool top_p_enabled, const float* min_p_rows,
                                    double min_p, bool min_p_enabled, const int64_t* seed, const int64_t* step,
                                    int64_t draws, int64_t* tokens) {
  SampleParams params;
  params.temperature = row_param(temperature_rows, temperature, temperature_enabled);
  params.top_k = row_param(top_k_rows, top_k, top_k_enabled);
  params.top_p = row_param(top_p_rows, top_p, top_p_enabled);
  params.min_p = row_param(min_p_rows, min_p, min_p_enabled);
  params.seed = seed;
  params.step = step;
  params.draws = draws;
  if (dtype == 0) return sample_rows<float>(logits, stride, batch, vocab, params, tokens);
  if (dtype == 1) return sample_rows<c10::Half>(logits, stride, batch, vocab, params, tokens);
  sample_rows<c10::BFloat16>(logits, stride, batch, vocab, params, tokens);
}
