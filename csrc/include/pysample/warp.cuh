// CUDA kernel of the fused logits warper, the CPU kernel's semantics through stages.h. Framework-free. One block per
// row, no sort, allocation or host sync (graph-capturable); each stage keeps a bound in a total order, found by
// radix select over 64-bit (key, token id) composites (row_select.cuh). Radix select after FlashInfer's RadixTopK,
// vLLM's topk.cuh and PyTorch's sortingRadixSelect.cuh; `add_to_bin` after NVIDIA's warp-aggregated atomics.
// Design: docs/design.md#the-warper-on-cuda.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <limits>

#include "pysample/row_select.cuh"
#include "pysample/stages.h"

namespace pysample {
namespace warp_cuda {

using row_select::Bin;
using row_select::BlockScan;
using row_select::CombineTotals;
using row_select::DigitCrossing;
using row_select::Goal;
using row_select::kDigits;
using row_select::kInf;
using row_select::kThreads;
using row_select::no_totals;
using row_select::Selection;
using row_select::Token;
using row_select::Totals;

constexpr int kListCapacity = 4096;  // active tokens cached in shared memory once no more remain
constexpr uint32_t kNaNKey = 0xFFFFFFFFu;  // ordered_key of every NaN

// Kept tokens of the value stages: (key, id) >= (key, id) of the bound, lexicographically.
struct ValueBound {
  uint32_t key;
  int32_t id;

  __device__ bool keeps(const Token& t) const { return t.key > key || (t.key == key && t.id >= id); }
};

// Typical decoding's kept tokens: (distance key, id) <= (key, id), the distance taken with the stage's statistics.
struct TypicalCut {
  bool enabled;
  float max;
  float log_sum;
  float entropy;
  uint32_t key;
  uint32_t id;

  __device__ uint32_t distance_key(float value) const {
    return ordered_key(typical_distance(value, max, log_sum, entropy));
  }
  __device__ bool keeps(const Token& t) const {
    const uint32_t k = distance_key(t.value);
    return k < key || (k == key && static_cast<uint32_t>(t.id) <= id);
  }
};

// The orders stages select in, each as a sort key and a tie, both ascending.
// Descending (value, id), the order of top-k and top-p.
struct ValueOrder {
  int32_t vocab;

  __device__ uint32_t sort_key(const Token& t) const { return ~t.key; }
  __device__ uint32_t tie(const Token& t) const { return static_cast<uint32_t>(vocab - 1 - t.id); }
  __device__ int32_t id(uint32_t tie) const { return vocab - 1 - static_cast<int32_t>(tie); }
};

// Ascending (distance from the entropy, id), the order of typical decoding.
struct TypicalOrder {
  TypicalCut stats;

  __device__ uint32_t sort_key(const Token& t) const { return stats.distance_key(t.value); }
  __device__ uint32_t tie(const Token& t) const { return static_cast<uint32_t>(t.id); }
};

// An order as the radix select sees it: each token's composite (sort key, then tie), and the max that weights are
// relative to.
template <typename Order>
struct SelectView {
  Order order;
  float max;
  int first_tie_shift;

  __device__ uint64_t composite(const Token& t) const {
    return (static_cast<uint64_t>(order.sort_key(t)) << 32) | order.tie(t);
  }
};

// The float whose ordered key is `key` (NaN aside).
__device__ inline float key_value(uint32_t key) { return bits_float(key & 0x80000000u ? key ^ 0x80000000u : ~key); }

struct Shared : row_select::SelectShared {
  float list_value[kListCapacity];
  int32_t list_id[kListCapacity];
  union {
    typename cub::BlockReduce<Totals, kThreads>::TempStorage reduce;
    typename BlockScan<Bin>::TempStorage bin_scan;
    typename BlockScan<int>::TempStorage offset_scan;
  } temp;
};

// Softmax statistics of the active tokens at the start of a stage.
struct Softmax {
  float max;
  bool defined;  // no NaN and a finite max: transformers' softmax is NaN otherwise, and its filters keep all
  int count;     // active tokens
};

template <typename T>
class RowWarper {
 public:
  __device__ RowWarper(T* row, int32_t vocab, Shared& shared)
      : row_(row),
        vocab_(vocab),
        shared_(shared),
        first_tie_shift_(row_select::first_tie_shift(vocab)),
        // Masses are sums of exp(value - max) <= 1 over at most `vocab` tokens: this scale keeps them below 2^62.
        mass_scale_(ldexp(1.0, 62 - row_select::bit_width(static_cast<uint32_t>(vocab)))) {}

  // Top-k: keep values >= the k-th largest (all ties with it). It runs first, so every token is active; nothing to
  // do when k >= vocab, and k <= 0 means no top-k (a negative per-row k, which the GPU cannot reject, included).
  __device__ void top_k(int64_t k) {
    if (k <= 0 || k >= vocab_) return;
    const uint32_t kth_key = ~select(ValueOrder{vocab_}, Goal{false, static_cast<double>(k), false}, false, 0.0f).key();
    if (kth_key == kNaNKey) return;  // transformers compares against a NaN k-th value: nothing is removed
    raise_bound({kth_key, 0});
  }

  // Top-p: keep, in descending (value, id) order, the tokens while the mass above them is below keep_mass, and at
  // least min_keep of them.
  __device__ void top_p(double top_p, int64_t min_keep) {
    const Softmax sm = softmax_stats();
    if (!sm.defined) return;
    const ValueOrder order{vocab_};
    const double keep_fraction = top_p_keep_mass(top_p);
    ValueBound last{0, 0};
    int64_t kept = 0;
    if (keep_fraction >= 1.0) {
      // top_p = 1: every token whose probability is not 0 stays (a prefix of the order: probability is monotone).
      // transformers' softmax runs in the logits' dtype, so 0 is what rounds to 0 in T: at most half T's smallest
      // subnormal (2^-25 for float16, 2^-134 for bfloat16).
      const float inv_sum = static_cast<float>(1.0 / exp_sums(sm.max).sum);
      Totals mine = no_totals();
      for_each_token([&](bool active, const Token& t) {
        const float p = probability(exp_nonpos(t.value - sm.max), inv_sum);
        if (!active || !(static_cast<float>(static_cast<T>(p)) > 0.0f)) return;
        ++mine.count;
        mine.min_key = t.key < mine.min_key ? t.key : mine.min_key;
      });
      const Totals positive = all_reduce(mine);
      last = {positive.min_key, 0};
      kept = positive.count;
    } else if (keep_fraction > 0.0) {
      const Selection crossing = select(order, Goal{true, keep_fraction, true}, true, sm.max);
      if (!crossing.found) return;  // rounding: the mass never reached keep_fraction, every token stays
      last = {~crossing.key(), order.id(crossing.tie())};
      kept = crossing.before + 1;
    }
    const int64_t at_least = min_keep < sm.count ? min_keep : sm.count;
    if (kept < at_least) {
      if (at_least == sm.count) return;
      const Selection rank = select(order, Goal{false, static_cast<double>(at_least), false}, true, sm.max);
      last = {~rank.key(), order.id(rank.tie())};
      kept = at_least;
    }
    if (kept >= sm.count) return;
    raise_bound(last);  // everything at or above the last kept token in (value, id) order stays
  }

  // Min-p (cut-off min_p times the top probability), epsilon and eta: remove the tokens whose probability is below
  // the cut-off unless they are among the min_keep largest values (all ties with the min_keep-th kept). Compared in
  // log space, as the CPU: p >= cut-off is value - max >= log(cut-off / top probability).
  __device__ void min_p(double min_p, int64_t min_keep) { probability_cut(Cutoff::kMinP, min_p, min_keep); }
  __device__ void epsilon(double epsilon, int64_t min_keep) { probability_cut(Cutoff::kEpsilon, epsilon, min_keep); }
  __device__ void eta(double eta, int64_t min_keep) { probability_cut(Cutoff::kEta, eta, min_keep); }

  // Typical decoding: order tokens by |-(log p) - entropy|, keep the shortest prefix whose mass reaches typical_p
  // (with every token tied with its last one) and at least the first min_keep.
  __device__ void typical(double typical_p, int64_t min_keep) {
    if (typical_keeps_all(typical_p)) return;
    const Softmax sm = softmax_stats();
    if (!sm.defined) return;
    const Totals sums = exp_sums(sm.max);
    const float log_sum = static_cast<float>(log(sums.sum));
    const float entropy = static_cast<float>(entropy_from_moments(sums.sum, sums.moment));
    TypicalCut cut{true, sm.max, log_sum, entropy, 0u, 0xFFFFFFFFu};
    const TypicalOrder order{cut};
    const Selection boundary = select(order, Goal{true, typical_p, true}, false, sm.max);
    // transformers keeps every token when the mass never reaches typical_p.
    if (!boundary.found) return;
    cut.key = boundary.key();
    int64_t kept = boundary.before + boundary.group;  // every token at or below the boundary distance
    if (kept < min_keep) {
      if (min_keep >= sm.count) return;
      const Selection last = select(order, Goal{false, static_cast<double>(min_keep), false}, true, sm.max);
      cut.key = last.key();
      cut.id = last.tie();
      kept = min_keep;
    }
    if (kept >= sm.count) return;
    typical_ = cut;
  }

  // Writes filter_value over every removed token; the kept ones already hold their value.
  __device__ void write_removed(float filter_value) {
    if (bound_.key == 0 && bound_.id == 0 && !typical_.enabled) return;  // nothing removed
    const T fill = static_cast<T>(filter_value);
    for (int32_t i = threadIdx.x; i < vocab_; i += kThreads) {
      if (!is_active(load_row(i))) row_[i] = fill;
    }
  }

 private:
  T* row_;
  int32_t vocab_;
  Shared& shared_;
  int first_tie_shift_;
  double mass_scale_;
  ValueBound bound_{0, 0};  // every key is >= 0: every token
  TypicalCut typical_{false, 0.0f, 0.0f, 0.0f, 0u, 0u};
  int list_size_ = -1;  // active tokens cached in shared memory, -1 while they are not

  __device__ Token load_row(int32_t i) const {
    const float value = static_cast<float>(row_[i]);
    return {value, i, ordered_key(value)};
  }

  __device__ bool is_active(const Token& t) const {
    return bound_.keeps(t) && (!typical_.enabled || typical_.keeps(t));
  }

  __device__ void raise_bound(ValueBound b) {
    if (b.key > bound_.key || (b.key == bound_.key && b.id > bound_.id)) bound_ = b;
  }

  // Calls visit(active, token) for every token of the row, or of the cache. Every lane of a warp runs the same
  // iterations, so that visit may use warp-wide operations.
  template <typename Visit>
  __device__ void for_each_token(Visit&& visit) const {
    const int32_t n = list_size_ >= 0 ? list_size_ : vocab_;
    for (int32_t base = 0; base < n; base += kThreads) {
      const int32_t i = base + static_cast<int32_t>(threadIdx.x);
      Token t{0.0f, 0, 0u};
      bool active = false;
      if (i < n) {
        if (list_size_ >= 0) {
          t = {shared_.list_value[i], shared_.list_id[i], ordered_key(shared_.list_value[i])};
        } else {
          t = load_row(i);
        }
        active = is_active(t);
      }
      visit(active, t);
    }
  }

  // The block's totals, in every thread.
  __device__ Totals all_reduce(const Totals& mine) {
    const Totals total = cub::BlockReduce<Totals, kThreads>(shared_.temp.reduce).Reduce(mine, CombineTotals{});
    if (threadIdx.x == 0) shared_.totals = total;
    __syncthreads();
    const Totals result = shared_.totals;
    __syncthreads();  // before the next reduction reuses the storage
    return result;
  }

  // Max, NaN and count of the active tokens; copies them to shared memory the first time they fit.
  __device__ Softmax softmax_stats() {
    Totals mine = no_totals();
    for_each_token([&](bool active, const Token& t) {
      if (!active) return;
      mine.max = fmaxf(mine.max, t.value);
      mine.has_nan |= t.value != t.value;
      ++mine.count;
    });
    const Totals all = all_reduce(mine);
    if (list_size_ < 0 && all.count <= kListCapacity) cache_active(mine.count);
    return {all.max, all.has_nan == 0 && all.max > -kInf && all.max < kInf, all.count};
  }

  // Copies the active tokens to shared memory, each thread's at its own offset and in its own order: the same
  // list on every run.
  __device__ void cache_active(int my_count) {
    int offset;
    int total;
    BlockScan<int>(shared_.temp.offset_scan).ExclusiveSum(my_count, offset, total);
    for_each_token([&](bool active, const Token& t) {
      if (!active) return;
      shared_.list_value[offset] = t.value;
      shared_.list_id[offset] = t.id;
      ++offset;
    });
    __syncthreads();
    list_size_ = total;
  }

  // Sum of exp(value - max) and of exp(value - max) * (value - max) over the active tokens.
  __device__ Totals exp_sums(float max) {
    Totals mine = no_totals();
    for_each_token([&](bool active, const Token& t) {
      if (!active) return;
      const float w = exp_nonpos(t.value - max);
      mine.sum += w;
      // Zero-probability tokens add nothing (their value - max may be -inf).
      if (w > 0.0f) mine.moment += static_cast<double>(w) * (static_cast<double>(t.value) - max);
    });
    return all_reduce(mine);
  }

  enum class Cutoff { kMinP, kEpsilon, kEta };

  __device__ void probability_cut(Cutoff cutoff, double parameter, int64_t min_keep) {
    const Softmax sm = softmax_stats();
    // With fewer active tokens than min_keep, the min_keep-th largest is a removed token: nothing goes.
    if (!sm.defined || min_keep > sm.count) return;
    float log_cutoff;  // for value - max
    if (cutoff == Cutoff::kMinP) {
      log_cutoff = static_cast<float>(log(parameter));  // p / p_top >= min_p
    } else {
      // p >= cut-off, i.e. p / p_top >= cut-off * sum.
      const Totals sums = exp_sums(sm.max);
      const double cut = cutoff == Cutoff::kEpsilon
                             ? parameter
                             : static_cast<double>(eta_cutoff(parameter, entropy_from_moments(sums.sum, sums.moment)));
      log_cutoff = static_cast<float>(log(cut) + log(sums.sum));
    }
    const Goal rank{false, static_cast<double>(min_keep), false};
    const uint32_t protect =
        min_keep == 1 ? ordered_key(sm.max) : ~select(ValueOrder{vocab_}, rank, false, sm.max).key();
    Totals mine = no_totals();
    for_each_token([&](bool active, const Token& t) {
      if (!active) return;
      if (t.value - sm.max >= log_cutoff || t.key >= protect) {
        mine.min_key = t.key < mine.min_key ? t.key : mine.min_key;
      }
    });
    raise_bound({all_reduce(mine).min_key, 0});
  }

  // The first element, in ascending (sort key, tie) order of `order` over the active tokens, at which the running
  // count or weight exp(value - max) reaches the goal. Not inlined: it has several callers, and one copy per caller
  // multiplies the compile time.
  template <typename Order>
  __device__ __noinline__ Selection select(const Order& order, Goal goal, bool resolve_ties, float max) {
    return row_select::select(*this, SelectView<Order>{order, max, first_tie_shift_}, goal, resolve_ties);
  }

 public:  // row_select::select's primitives
  // The histogram of the digit at `shift` of the active tokens whose composite matches `prefix` under `mask`
  // (counts, and weights when by_mass), then its crossing.
  template <typename Order>
  __device__ DigitCrossing cross(const SelectView<Order>& view, uint64_t prefix, uint64_t mask, int shift,
                                 const Goal& goal, const Bin& before) {
    shared_.clear_histogram();
    for_each_token([&](bool active, const Token& t) {
      const uint64_t c = view.composite(t);
      const bool candidate = active && (c & mask) == prefix;
      const uint32_t digit = static_cast<uint32_t>(c >> shift) & (kDigits - 1);
      if (goal.by_mass) {
        const unsigned long long units =
            candidate ? static_cast<unsigned long long>(exp_nonpos(t.value - view.max) * mass_scale_ + 0.5) : 0ull;
        row_select::add_to_bin(shared_, candidate, digit, units);
      } else if (candidate) {
        atomicAdd(&shared_.bin_count[digit], 1);
      }
    });
    return shared_.crossing(goal, before, shared_.temp.bin_scan);
  }

  // The composite of the only active element matching `prefix` under `mask`.
  template <typename Order>
  __device__ uint64_t find_lone(const SelectView<Order>& view, uint64_t prefix, uint64_t mask) {
    for_each_token([&](bool active, const Token& t) {
      const uint64_t c = view.composite(t);
      if (active && (c & mask) == prefix) shared_.lone_composite = c;
    });
    __syncthreads();
    return shared_.lone_composite;
  }
};

// Temperature, in `out`, which every later pass reads: out = in / temperature rounded to T, or without temperature
// a copy of `in` through float as on the CPU (the same NaN bits).
template <typename T>
__device__ void scale_row(const T* in, T* out, int32_t vocab, const WarpParams& params, int64_t row) {
  if (params.temperature.enabled) {
    const float temperature = static_cast<float>(usable_temperature(params.temperature.at(row)));
    for (int32_t i = threadIdx.x; i < vocab; i += kThreads) {
      out[i] = static_cast<T>(apply_temperature<T>(static_cast<float>(in[i]), temperature));
    }
  } else if (in != out) {
    for (int32_t i = threadIdx.x; i < vocab; i += kThreads) out[i] = static_cast<T>(static_cast<float>(in[i]));
  }
  __syncthreads();
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    warp_logits_kernel(const T* in, int64_t in_stride, T* out, int64_t out_stride, int32_t vocab, WarpParams params) {
  __shared__ Shared shared;
  const int64_t row = blockIdx.x;
  T* values = out + row * out_stride;
  scale_row(in + row * in_stride, values, vocab, params, row);

  RowWarper<T> warper(values, vocab, shared);
  const int64_t min_keep = params.min_tokens_to_keep;
  // A per-row value the CPU would reject cannot raise here (that needs a host sync): a NaN skips its stage, other
  // values are clamped to [0, 1].
  auto run = [&](const RowParam<float, double>& param, auto stage) {
    if (!param.enabled) return;
    const double value = param.at(row);
    if (value == value) stage(clamp_unit(value));
  };
  if (params.top_k.enabled) warper.top_k(params.top_k.at(row));
  run(params.top_p, [&](double top_p) { warper.top_p(top_p, min_keep); });
  run(params.min_p, [&](double min_p) { warper.min_p(min_p, min_keep); });
  run(params.typical_p, [&](double typical_p) { warper.typical(typical_p, min_keep); });
  run(params.epsilon, [&](double epsilon) { warper.epsilon(epsilon, min_keep); });
  run(params.eta, [&](double eta) { warper.eta(eta, min_keep); });
  warper.write_removed(params.filter_value);
}

}  // namespace warp_cuda

// Warps `batch` rows of `vocab` logits: reads `in` (row stride in_stride elements) and writes `out` (may alias `in`).
// Per-row parameters in `params` point to device memory. T is float or a 16-bit float type convertible to and from
// float. Returns the launch's error.
template <typename T>
cudaError_t launch_warp_logits(const T* in, int64_t in_stride, T* out, int64_t out_stride, int64_t batch, int64_t vocab,
                               const WarpParams& params, cudaStream_t stream) {
  if (batch == 0 || vocab == 0) return cudaSuccess;
  if (batch > std::numeric_limits<int32_t>::max() || vocab > std::numeric_limits<int32_t>::max()) {
    return cudaErrorInvalidValue;
  }
  warp_cuda::warp_logits_kernel<T><<<static_cast<unsigned>(batch), warp_cuda::kThreads, 0, stream>>>(
      in, in_stride, out, out_stride, static_cast<int32_t>(vocab), params);
  return cudaGetLastError();
}

}  // namespace pysample
