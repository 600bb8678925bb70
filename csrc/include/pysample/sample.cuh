// CUDA kernel of pysample.sample: the rules of pysample/sample.h, so the same token as the CPU kernel for the same
// logits, parameters, seed and step. One block per row, radix select on integer weights, no sort, allocation or sync.
// Per-row logic over a `Block` of primitives, so the tests run it on the host (HostBlock) too.
// Radix select after FlashInfer's RadixTopK, vLLM and PyTorch; the draw after FlashInfer's SamplingFromProb.
// Design: docs/design.md#the-sampler.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <limits>

#include "pysample/row_select.cuh"
#include "pysample/sample.h"

namespace pysample {
namespace sample_gpu {

using row_select::add;
using row_select::Bin;
using row_select::BlockScan;
using row_select::DigitCrossing;
using row_select::Goal;
using row_select::kDigits;
using row_select::kFullWarp;
using row_select::kInf;
using row_select::kThreads;
using row_select::Selection;
using row_select::Token;

constexpr int kWarps = kThreads / 32;

// ---- a row's parameters -------------------------------------------------------------------------------------

// What a row does. Per-row values the CPU rejects cannot raise on the GPU (that needs a host sync), so they are
// made usable instead: a temperature that is not 0 nor a finite number > 0 is taken as 1 (usable_temperature; 0 is
// greedy), a negative top_k as 0 (no top-k), a NaN top_p or min_p skips its stage, and other top_p / min_p are
// clamped to [0, 1] (clamp_unit).
struct RowPlan {
  bool greedy;        // temperature 0 or top_k 1: the first token of the largest value
  bool scale;         // y = apply_temperature(x, temperature), else y = x
  float temperature;
  int64_t top_k;      // 0: no top-k
  double top_p;       // 1: no top-p
  bool min_p_enabled;
  double min_p;
  uint64_t seed;
  uint64_t step;
};

__host__ __device__ inline RowPlan plan_row(const SampleParams& p, int64_t row) {
  RowPlan plan{};
  const double temperature = p.temperature.enabled ? p.temperature.at(row) : 1.0;
  const int64_t top_k = p.top_k.enabled ? p.top_k.at(row) : 0;
  plan.top_k = top_k > 0 ? top_k : 0;
  plan.greedy = temperature == 0 || plan.top_k == 1;
  const double usable = usable_temperature(temperature);
  // Greedy by top_k 1 still reads the scaled logits (rule 1); the temperature is compared in double, as the CPU.
  plan.scale = temperature != 0 && usable != 1.0;
  plan.temperature = static_cast<float>(usable);
  const double top_p = p.top_p.enabled ? p.top_p.at(row) : 1.0;
  plan.top_p = top_p == top_p ? clamp_unit(top_p) : 1.0;
  const double min_p = p.min_p.enabled ? p.min_p.at(row) : 0.0;
  plan.min_p_enabled = p.min_p.enabled && min_p == min_p;
  plan.min_p = clamp_unit(min_p);
  plan.seed = static_cast<uint64_t>(p.seed[row]);
  plan.step = static_cast<uint64_t>(p.step[row]);
  return plan;
}

// ---- a row and its kept tokens ------------------------------------------------------------------------------

// The row as the stages see it: the scaled logits y, the weights once the max is known, and the tokens kept so far.
template <typename T>
struct RowView {
  const T* logits;
  int32_t vocab;
  bool scale;
  float temperature;
  int first_tie_shift;  // the highest 8-bit digit of a token id that can be nonzero
  float max = 0.0f;
  bool limit = false;  // sample.h, rule 2: the row holds +inf
  uint64_t bound = ~uint64_t{0};  // top-k and top-p keep the composites <= bound (all tokens at first)
  bool min_p_enabled = false;
  double min_p = 0.0;

  __host__ __device__ RowView(const T* logits_, int32_t vocab_, const RowPlan& plan)
      : logits(logits_),
        vocab(vocab_),
        scale(plan.scale),
        temperature(plan.temperature),
        first_tie_shift(row_select::first_tie_shift(vocab_)) {}

  // The scaled logit y of token i, with the CPU's operations (sample_cpu.cpp).
  __host__ __device__ float value(int32_t i) const {
    const float x = static_cast<float>(logits[i]);
    const float y = scale ? apply_temperature<T>(x, temperature) : x;
    return !limit ? y : y == kInf ? 0.0f : -kInf;
  }
  __host__ __device__ Token token(int32_t i) const {
    const float y = value(i);
    return {y, i, ordered_key(y)};
  }
  // Position in descending (value, token id), the order of top-k and top-p, as an ascending integer (the tie's
  // digits above the vocabulary's width are 0: select reads only those below).
  __host__ __device__ uint64_t composite(const Token& t) const {
    return (static_cast<uint64_t>(~t.key) << 32) | static_cast<uint32_t>(vocab - 1 - t.id);
  }
  __host__ __device__ uint64_t weight(const Token& t) const { return sample_weight(t.value, max); }
  // Kept by top-k and top-p (the weight is not needed).
  __host__ __device__ bool in_bound(const Token& t) const { return composite(t) <= bound; }
  // The token's weight if every stage keeps it, else 0: what the draws add up.
  __host__ __device__ uint64_t kept_weight(const Token& t) const {
    if (!in_bound(t)) return 0;
    const uint64_t w = weight(t);
    return !min_p_enabled || min_p_keeps(w, min_p) ? w : 0;
  }
};

// ---- selection ----------------------------------------------------------------------------------------------

// Not inlined: it has two callers per dtype, and one copy per caller multiplies the compile time (as warp.cuh).
template <typename Block, typename View>
__host__ __device__ __noinline__ Selection block_select(Block& block, const View& view, Goal goal, bool resolve_ties) {
  return row_select::select(block, view, goal, resolve_ties);
}

// ---- a row --------------------------------------------------------------------------------------------------

// Largest value (NaN ignored) and whether there is a NaN.
struct RowStats {
  float max;
  bool has_nan;
};

// Samples `draws` tokens of one row into tokens[0, draws): the rules of sample.h with the CPU kernel's operations.
// Every thread of the block calls it with the same arguments.
#pragma nv_exec_check_disable
template <typename Block, typename T>
__host__ __device__ void sample_row(Block& block, RowView<T> view, const RowPlan& plan, int64_t* tokens,
                                    int64_t draws) {
  const RowStats stats = block.stats(view);
  if (plan.greedy) {  // rule 1
    block.fill(tokens, draws, view.vocab == 0 ? -1 : block.first_index_of(view, stats.max, stats.has_nan));
    return;
  }
  if (stats.has_nan || !(stats.max > -kInf)) {  // the softmax is undefined (or vocab 0)
    block.fill(tokens, draws, -1);
    return;
  }
  view.limit = stats.max == kInf;  // rule 2
  view.max = view.limit ? 0.0f : stats.max;
  // Top-k: the k-th smallest composite's key; keep every value at least its (all ties). Nothing to do when
  // k >= vocab, or when the k-th largest is -inf (nothing is below it).
  if (plan.top_k > 0 && plan.top_k < view.vocab) {
    const Selection kth = block_select(block, view, Goal{false, static_cast<double>(plan.top_k), false}, false);
    const uint32_t kth_sort_key = static_cast<uint32_t>(kth.composite >> 32);
    if (~kth_sort_key != ordered_key(-kInf)) view.bound = (static_cast<uint64_t>(kth_sort_key) << 32) | 0xFFFFFFFFu;
  }
  // Top-p over the tokens top-k keeps: keep up to the first token at which double(running weight) >= top_p *
  // double(total); the token after it has that weight before it, which top_p_keeps rejects, and every one before
  // it is kept (the max comes first with a weight > 0, so "before == 0" changes nothing). Always found, since
  // top_p < 1; checked anyway.
  if (plan.top_p < 1.0) {
    const Selection last = block_select(block, view, Goal{true, plan.top_p, true}, true);
    if (last.found && last.composite < view.bound) view.bound = last.composite;
  }
  view.min_p_enabled = plan.min_p_enabled;
  view.min_p = plan.min_p;
  // The max's first token stays through every stage (weight 2^40, min-p <= 1), so the kept weight is > 0.
  const uint64_t kept = block.kept_weight(view);
  block.draw(view, kept, plan.seed, plan.step, tokens, draws);
}

// ---- the CUDA block -----------------------------------------------------------------------------------------

struct Shared : row_select::SelectShared {
  int first_index;
  unsigned long long segment_weight[kWarps];
  unsigned long long segment_start[kWarps + 1];  // running kept weight before each warp's segment
  union {
    typename cub::BlockReduce<row_select::Totals, kThreads>::TempStorage reduce;
    typename BlockScan<Bin>::TempStorage bin_scan;
  } temp;
};

// Each warp's segment of the row in the draws: about vocab / kWarps tokens, a multiple of 32.
struct Segment {
  int32_t begin;
  int32_t end;
};

__host__ __device__ inline Segment warp_segment(int32_t vocab, int warp) {
  const int32_t length = (vocab + kWarps * 32 - 1) / (kWarps * 32) * 32;
  const int64_t begin = static_cast<int64_t>(warp) * length;
  const int32_t b = begin < vocab ? static_cast<int32_t>(begin) : vocab;
  return {b, b + length < vocab ? b + length : vocab};
}

// The primitives of sample_row on one thread block of kThreads threads; every thread calls each of them.
class DeviceBlock {
 public:
  __device__ explicit DeviceBlock(Shared& shared) : shared_(shared) {}

  template <typename View>
  __device__ RowStats stats(const View& view) {
    row_select::Totals mine = row_select::no_totals();
    for (int32_t i = threadIdx.x; i < view.vocab; i += kThreads) {
      const float y = view.value(i);
      mine.max = fmaxf(mine.max, y);  // NaN ignored
      mine.has_nan |= y != y;
    }
    const row_select::Totals all =
        cub::BlockReduce<row_select::Totals, kThreads>(shared_.temp.reduce).Reduce(mine, row_select::CombineTotals{});
    if (threadIdx.x == 0) shared_.totals = all;
    __syncthreads();
    const RowStats result{shared_.totals.max, shared_.totals.has_nan != 0};
    __syncthreads();  // before the storage is used again
    return result;
  }

  // The first NaN if `nan`, else the first token of value `max`.
  template <typename View>
  __device__ int32_t first_index_of(const View& view, float max, bool nan) {
    if (threadIdx.x == 0) shared_.first_index = view.vocab;
    __syncthreads();
    for (int32_t i = threadIdx.x; i < view.vocab; i += kThreads) {
      const float y = view.value(i);
      if (nan ? y != y : y == max) {  // this thread's first: the block's first is the smallest of them
        atomicMin(&shared_.first_index, i);
        break;
      }
    }
    __syncthreads();
    return shared_.first_index;
  }

  __device__ void fill(int64_t* tokens, int64_t draws, int64_t token) {
    for (int64_t d = threadIdx.x; d < draws; d += kThreads) tokens[d] = token;
  }

  // The histogram of the digit at `shift` of the tokens in bound whose composite matches `prefix` under `mask`
  // (counts, and weights when by_mass), then its crossing.
  template <typename View>
  __device__ DigitCrossing cross(const View& view, uint64_t prefix, uint64_t mask, int shift, const Goal& goal,
                                 const Bin& before) {
    shared_.clear_histogram();
    // Every lane of a warp runs the same iterations: add_to_bin is warp-wide.
    for (int32_t base = 0; base < view.vocab; base += kThreads) {
      const int32_t i = base + static_cast<int32_t>(threadIdx.x);
      bool candidate = false;
      uint32_t digit = 0;
      Token t{0.0f, 0, 0u};
      if (i < view.vocab) {
        t = view.token(i);
        const uint64_t c = view.composite(t);
        candidate = view.in_bound(t) && (c & mask) == prefix;
        digit = static_cast<uint32_t>(c >> shift) & (kDigits - 1);
      }
      if (goal.by_mass) {
        row_select::add_to_bin(shared_, candidate, digit, candidate ? view.weight(t) : 0ull);
      } else if (candidate) {
        atomicAdd(&shared_.bin_count[digit], 1);
      }
    }
    return shared_.crossing(goal, before, shared_.temp.bin_scan);
  }

  // The composite of the only token in bound matching `prefix` under `mask`.
  template <typename View>
  __device__ uint64_t find_lone(const View& view, uint64_t prefix, uint64_t mask) {
    for (int32_t i = threadIdx.x; i < view.vocab; i += kThreads) {
      const Token t = view.token(i);
      const uint64_t c = view.composite(t);
      if (view.in_bound(t) && (c & mask) == prefix) shared_.lone_composite = c;
    }
    __syncthreads();
    return shared_.lone_composite;
  }

  // The total kept weight; each warp's segment's share of it goes to shared memory for the draws.
  template <typename View>
  __device__ uint64_t kept_weight(const View& view) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const Segment s = warp_segment(view.vocab, warp);
    unsigned long long sum = 0;
    for (int32_t i = s.begin + lane; i < s.end; i += 32) sum += view.kept_weight(view.token(i));
    for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(kFullWarp, sum, offset);
    if (lane == 0) shared_.segment_weight[warp] = sum;
    __syncthreads();
    if (threadIdx.x == 0) {
      shared_.segment_start[0] = 0;
      for (int w = 0; w < kWarps; ++w) {
        shared_.segment_start[w + 1] = shared_.segment_start[w] + shared_.segment_weight[w];
      }
    }
    __syncthreads();
    return shared_.segment_start[kWarps];
  }

  // Draw d picks the first kept token, in token order, whose running weight exceeds its target: the warp whose
  // segment's running weight holds the target walks the segment 32 tokens at a time, with a warp scan. Warps
  // resolve their draws independently; every lane of a warp takes the same branches.
  template <typename View>
  __device__ void draw(const View& view, uint64_t kept, uint64_t seed, uint64_t step, int64_t* tokens, int64_t draws) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const Segment s = warp_segment(view.vocab, warp);
    const uint64_t start = shared_.segment_start[warp], end = shared_.segment_start[warp + 1];
    for (int64_t d = 0; d < draws; ++d) {
      const uint64_t target = draw_target(draw_bits(seed, step, static_cast<uint32_t>(d)), kept);
      if (target < start || target >= end) continue;
      unsigned long long running = start;
      for (int32_t base = s.begin; base < s.end; base += 32) {
        const int32_t i = base + lane;
        unsigned long long inclusive = i < s.end ? view.kept_weight(view.token(i)) : 0ull;
        for (int offset = 1; offset < 32; offset *= 2) {
          const unsigned long long lower = __shfl_up_sync(kFullWarp, inclusive, offset);
          if (lane >= offset) inclusive += lower;
        }
        inclusive += running;
        const unsigned over = __ballot_sync(kFullWarp, inclusive > target);
        if (over != 0) {  // the first such lane: the weight before it is <= target
          if (lane == __ffs(over) - 1) tokens[d] = i;
          break;
        }
        running = __shfl_sync(kFullWarp, inclusive, 31);
      }
    }
  }

 private:
  Shared& shared_;
};

template <typename T>
__global__ void __launch_bounds__(kThreads)
    sample_kernel(const T* logits, int64_t stride, int32_t vocab, SampleParams params, int64_t* tokens) {
  __shared__ Shared shared;
  const int64_t row = blockIdx.x;
  const RowPlan plan = plan_row(params, row);
  DeviceBlock block(shared);
  sample_row(block, RowView<T>(logits + row * stride, vocab, plan), plan, tokens + row * params.draws, params.draws);
}

}  // namespace sample_gpu

// Samples params.draws tokens per row of `batch` rows of `vocab` logits (row stride `stride` elements) into
// `tokens` (batch, draws) int64. Per-row parameters, seed and step in `params` point to device memory. T is float
// or a 16-bit float type convertible to and from float. Returns the launch's error.
template <typename T>
cudaError_t launch_sample(const T* logits, int64_t stride, int64_t batch, int64_t vocab, const SampleParams& params,
                          int64_t* tokens, cudaStream_t stream) {
  if (batch == 0) return cudaSuccess;
  if (batch > std::numeric_limits<int32_t>::max() || vocab > kMaxSampleVocab) return cudaErrorInvalidValue;
  sample_gpu::sample_kernel<T><<<static_cast<unsigned>(batch), sample_gpu::kThreads, 0, stream>>>(
      logits, stride, static_cast<int32_t>(vocab), params, tokens);
  return cudaGetLastError();
}

}  // namespace pysample
