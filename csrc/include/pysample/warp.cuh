// CUDA kernel of the fused logits warper (temperature -> top-k -> top-p -> min-p -> typical -> epsilon -> eta), the
// same semantics as the CPU kernel (csrc/cpu/warp_cpu.cpp) through the decision logic both take from warp.h.
// Framework-free: raw pointers, sizes and a stream; no torch header.
//
// One thread block per row, working on the row in global memory (read again by every pass: a row is small enough to
// stay in L2) with no sort of the vocabulary, no allocation and no host synchronisation, so it can be captured in a
// CUDA graph. What a stage keeps is a bound in a total order rather than a mask:
//   * top-k, top-p, min-p, epsilon and eta each keep an upper set of the (value, token id) order, so together they
//     are one lexicographic lower bound (`ValueBound`); min-p, epsilon and eta compare value - max with a log
//     cut-off, so their bound is the smallest key they keep;
//   * typical decoding keeps a prefix of the (distance, token id) order (`TypicalCut`).
// A token is active while it satisfies every bound set so far. The boundaries are found by radix select over 64-bit
// composites (32-bit order-preserving key, then the tie by token id): 8-bit digits, a shared-memory histogram of
// counts or of probability mass per digit, a block-wide scan for the digit at which the running count or mass
// reaches the target, and on to the next digit among that digit's tokens only. The tie digits are read only when the
// boundary's key is shared by several tokens. Once few tokens remain active they are copied to shared memory and the
// later passes read them there.
//
// Ideas taken from others, code our own: radix select over order-preserving keys with shared-memory digit histograms
// (FlashInfer's RadixTopK in include/flashinfer/sampling.cuh and vLLM's csrc/topk.cuh; PyTorch's
// sortingRadixSelect.cuh), and warp-aggregated atomics (NVIDIA's "Voting and Shuffling to Optimize Atomic
// Operations", whose peer reduction `add_mass` follows).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <limits>

#include "pysample/warp.h"

namespace pysample {
namespace warp_cuda {

constexpr int kThreads = 1024;
constexpr int kDigitBits = 8;
constexpr int kDigits = 1 << kDigitBits;
constexpr int kNoDigit = kDigits;
constexpr int kListCapacity = 4096;  // active tokens cached in shared memory once no more remain
constexpr unsigned kFullWarp = 0xFFFFFFFFu;
constexpr uint32_t kNaNKey = 0xFFFFFFFFu;  // ordered_key of every NaN
constexpr float kInf = std::numeric_limits<float>::infinity();

// A token of the row: its value after temperature, its id and the value's ordered key.
struct Token {
  float value;
  int32_t id;
  uint32_t key;
};

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

template <typename Order>
__device__ uint64_t composite(const Order& order, const Token& t) {
  return (static_cast<uint64_t>(order.sort_key(t)) << 32) | order.tie(t);
}

// The float whose ordered key is `key` (NaN aside).
__device__ inline float key_value(uint32_t key) { return bits_float(key & 0x80000000u ? key ^ 0x80000000u : ~key); }

// Totals of one pass over the active tokens; each pass fills the fields it needs.
struct Totals {
  float max;        // largest value, NaN ignored
  int has_nan;
  int count;
  double sum;     // of exp(value - max)
  double moment;  // of exp(value - max) * (value - max), for the entropy
  uint32_t min_key;
};

__device__ inline Totals no_totals() { return {-kInf, 0, 0, 0.0, 0.0, 0xFFFFFFFFu}; }

struct CombineTotals {
  __device__ Totals operator()(const Totals& a, const Totals& b) const {
    return {fmaxf(a.max, b.max), a.has_nan | b.has_nan, a.count + b.count, a.sum + b.sum, a.moment + b.moment,
            a.min_key < b.min_key ? a.min_key : b.min_key};
  }
};

// A histogram bin, or a sum of bins: token count and probability mass in fixed point (integer sums do not depend
// on the order of the additions, so the result is the same on every run).
struct Bin {
  int count;
  unsigned long long mass;
};

struct AddBins {
  __device__ Bin operator()(const Bin& a, const Bin& b) const { return {a.count + b.count, a.mass + b.mass}; }
};

// Block scans by warp scans: their storage is per warp, where the default (raking) keeps a slot per thread.
template <typename T>
using BlockScan = cub::BlockScan<T, kThreads, cub::BLOCK_SCAN_WARP_SCANS>;

// The shared memory of a radix select (here and in sample.cuh): per-digit histograms of counts and mass, the
// crossing found, and the block's totals.
struct SelectShared {
  int bin_count[kDigits];
  unsigned long long bin_mass[kDigits];
  int crossing_digit;
  Bin before_crossing;  // the bins below the crossing digit
  Bin crossing_bin;
  uint64_t lone_composite;
  Totals totals;

  // Zeroes the histograms and the crossing for the next digit, once every thread has read the previous ones.
  __device__ void clear_histogram() {
    __syncthreads();
    for (int d = threadIdx.x; d < kDigits; d += kThreads) {
      bin_count[d] = 0;
      bin_mass[d] = 0;
    }
    if (threadIdx.x == 0) crossing_digit = kNoDigit;
    __syncthreads();
  }
};

struct Shared : SelectShared {
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

// The result of a selection: the first element, in ascending (sort key, tie) order, at which the running weight
// reaches the target.
struct Selection {
  bool found;
  uint32_t key;       // its sort key
  uint32_t tie;       // its tie, when the ties were resolved (or the key is its own)
  int before;         // active elements before it: of a smaller key, or once ties are resolved a smaller (key, tie)
  int group;          // active elements of its key (1 once ties are resolved)
};

// Adds one token (count and mass) to its digit's bin in shared memory (the sampler shares it). The lanes of a warp
// that share a digit are summed first, a pairwise tree over their ranks: shared memory has no native 64-bit atomic
// add (it is a compare-and-swap loop) and most tokens fall in a few digits. Every lane of the warp must call it.
__device__ inline void add_to_bin(int* bin_count, unsigned long long* bin_mass, bool candidate, uint32_t digit,
                                  unsigned long long units) {
  const unsigned lane = threadIdx.x % 32;
  const unsigned lane_bit = 1u << lane;
  const unsigned same_digit = __match_any_sync(kFullWarp, candidate ? digit : kDigits + lane);
  const bool leader = (same_digit & (lane_bit - 1)) == 0;
  unsigned rank = __popc(same_digit & (lane_bit - 1));
  unsigned higher = same_digit & ~(lane_bit | (lane_bit - 1));  // the peers above this lane still summing
  while (__any_sync(kFullWarp, higher != 0)) {
    const int next = higher != 0 ? __ffs(higher) - 1 : static_cast<int>(lane);
    const unsigned long long partial = __shfl_sync(kFullWarp, units, next);
    if (higher != 0) units += partial;
    // The peers at odd ranks of this round have been added to their predecessor: they drop out.
    higher &= ~__ballot_sync(kFullWarp, rank & 1);
    rank >>= 1;
  }
  if (candidate && leader) {
    atomicAdd(&bin_count[digit], __popc(same_digit));
    atomicAdd(&bin_mass[digit], units);
  }
}

PYSAMPLE_HD int bit_width(uint32_t v) {
  int bits = 0;
  for (; v != 0; v >>= 1) ++bits;
  return bits;
}

template <typename T>
class RowWarper {
 public:
  __device__ RowWarper(T* row, int32_t vocab, Shared& shared)
      : row_(row),
        vocab_(vocab),
        shared_(shared),
        tie_bits_(bit_width(static_cast<uint32_t>(vocab - 1))),
        // Masses are sums of exp(value - max) <= 1 over at most `vocab` tokens: this scale keeps them below 2^62.
        mass_scale_(ldexp(1.0, 62 - bit_width(static_cast<uint32_t>(vocab)))) {}

  // Top-k: keep values >= the k-th largest (all ties with it). It runs first, so every token is active; nothing to
  // do when k >= vocab, and k <= 0 means no top-k (a negative per-row k, which the GPU cannot reject, included).
  __device__ void top_k(int64_t k) {
    if (k <= 0 || k >= vocab_) return;
    const uint32_t kth_key = ~select(ValueOrder{vocab_}, false, static_cast<double>(k), false, 0.0f).key;
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
      const Selection crossing = select(order, true, keep_fraction, true, sm.max);
      if (!crossing.found) return;  // rounding: the mass never reached keep_fraction, every token stays
      last = {~crossing.key, order.id(crossing.tie)};
      kept = crossing.before + 1;
    }
    const int64_t at_least = min_keep < sm.count ? min_keep : sm.count;
    if (kept < at_least) {
      if (at_least == sm.count) return;
      const Selection rank = select(order, false, static_cast<double>(at_least), true, sm.max);
      last = {~rank.key, order.id(rank.tie)};
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
    TypicalCut cut{true, sm.max, static_cast<float>(log(sums.sum)),
                   static_cast<float>(entropy_from_moments(sums.sum, sums.moment)), 0u, 0xFFFFFFFFu};
    const TypicalOrder order{cut};
    const Selection boundary = select(order, true, typical_p, false, sm.max);
    // transformers keeps every token when the mass never reaches typical_p.
    if (!boundary.found) return;
    cut.key = boundary.key;
    int64_t kept = boundary.before + boundary.group;  // every token at or below the boundary distance
    if (kept < min_keep) {
      if (min_keep >= sm.count) return;
      const Selection last = select(order, false, static_cast<double>(min_keep), true, sm.max);
      cut.key = last.key;
      cut.id = last.tie;
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
  int tie_bits_;
  double mass_scale_;
  ValueBound bound_{0, 0};  // every key is >= 0: every token
  TypicalCut typical_{false, 0.0f, 0.0f, 0.0f, 0u, 0u};
  int list_size_ = -1;      // active tokens cached in shared memory, -1 while they are not

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
    const uint32_t protect = min_keep == 1 ? ordered_key(sm.max)
                                           : ~select(ValueOrder{vocab_}, false, static_cast<double>(min_keep),
                                                     false, sm.max)
                                                  .key;
    Totals mine = no_totals();
    for_each_token([&](bool active, const Token& t) {
      if (!active) return;
      if (t.value - sm.max >= log_cutoff || t.key >= protect) {
        mine.min_key = t.key < mine.min_key ? t.key : mine.min_key;
      }
    });
    raise_bound({all_reduce(mine).min_key, 0});
  }

  // First element, in ascending (sort key, tie) order of `order` over the active tokens, at which the running weight
  // reaches the goal: a rank (count) or, by_mass, a fraction of the total of exp(value - max). Ties are read only
  // when resolve_ties asks for them and several tokens share the boundary's key. Not inlined: it has several
  // callers, and one copy per caller multiplies the compile time.
  template <typename Order>
  __device__ __noinline__ Selection select(const Order& order, bool by_mass, double goal, bool resolve_ties,
                                          float max) {
    Selection result{false, 0u, 0u, 0, 0};
    uint64_t prefix = 0;  // the composite's digits fixed so far
    uint64_t mask = 0;
    Bin before{0, 0ull};  // the elements below the candidates
    double target = goal;
    const int last_shift = resolve_ties ? 0 : 32;
    for (int shift = 64 - kDigitBits;;) {
      histogram(order, prefix, mask, shift, by_mass, max);
      const Bin bin = threadIdx.x < kDigits ? Bin{shared_.bin_count[threadIdx.x], shared_.bin_mass[threadIdx.x]}
                                           : Bin{0, 0ull};
      Bin below;
      Bin all;
      BlockScan<Bin>(shared_.temp.bin_scan).ExclusiveScan(bin, below, Bin{0, 0ull}, AddBins{}, all);
      if (by_mass && mask == 0) target = goal * static_cast<double>(all.mass);  // the first digit sees them all
      const double reached = by_mass ? static_cast<double>(before.mass + below.mass + bin.mass)
                                     : static_cast<double>(before.count + below.count + bin.count);
      if (bin.count > 0 && reached >= target) atomicMin(&shared_.crossing_digit, static_cast<int>(threadIdx.x));
      __syncthreads();
      const int digit = shared_.crossing_digit;
      if (static_cast<int>(threadIdx.x) == digit) {
        shared_.before_crossing = below;
        shared_.crossing_bin = bin;
      }
      __syncthreads();
      if (digit == kNoDigit) return result;  // the weights never reach the target
      before = AddBins{}(before, shared_.before_crossing);
      const int group = shared_.crossing_bin.count;
      prefix |= static_cast<uint64_t>(digit) << shift;
      mask |= static_cast<uint64_t>(kDigits - 1) << shift;
      if (group == 1 && shift > last_shift) {
        prefix = find_lone(order, prefix, mask);  // the whole composite of the only candidate left
        result.group = 1;
        break;
      }
      if (shift == last_shift) {
        result.group = group;
        break;
      }
      // After the key, the tie's digits: only those below the vocabulary's width can differ.
      shift = shift == 32 ? (tie_bits_ + kDigitBits - 1) / kDigitBits * kDigitBits - kDigitBits : shift - kDigitBits;
    }
    result.found = true;
    result.key = static_cast<uint32_t>(prefix >> 32);
    result.tie = static_cast<uint32_t>(prefix);
    result.before = before.count;
    return result;
  }

  // Counts (and masses) per digit at `shift` of the active elements whose composite matches `prefix` under `mask`.
  template <typename Order>
  __device__ void histogram(const Order& order, uint64_t prefix, uint64_t mask, int shift, bool by_mass, float max) {
    shared_.clear_histogram();
    for_each_token([&](bool active, const Token& t) {
      const uint64_t c = composite(order, t);
      const bool candidate = active && (c & mask) == prefix;
      const uint32_t digit = static_cast<uint32_t>(c >> shift) & (kDigits - 1);
      if (by_mass) {
        const unsigned long long units =
            candidate ? static_cast<unsigned long long>(exp_nonpos(t.value - max) * mass_scale_ + 0.5) : 0ull;
        add_mass(candidate, digit, units);
      } else if (candidate) {
        atomicAdd(&shared_.bin_count[digit], 1);
      }
    });
    __syncthreads();
  }

  __device__ void add_mass(bool candidate, uint32_t digit, unsigned long long units) {
    add_to_bin(shared_.bin_count, shared_.bin_mass, candidate, digit, units);
  }

  // The composite of the only active element matching `prefix` under `mask`.
  template <typename Order>
  __device__ uint64_t find_lone(const Order& order, uint64_t prefix, uint64_t mask) {
    for_each_token([&](bool active, const Token& t) {
      const uint64_t c = composite(order, t);
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
cudaError_t launch_warp_logits(const T* in, int64_t in_stride, T* out, int64_t out_stride, int64_t batch,
                               int64_t vocab, const WarpParams& params, cudaStream_t stream) {
  if (batch == 0 || vocab == 0) return cudaSuccess;
  if (batch > std::numeric_limits<int32_t>::max() || vocab > std::numeric_limits<int32_t>::max()) {
    return cudaErrorInvalidValue;
  }
  warp_cuda::warp_logits_kernel<T><<<static_cast<unsigned>(batch), warp_cuda::kThreads, 0, stream>>>(
      in, in_stride, out, out_stride, static_cast<int32_t>(vocab), params);
  return cudaGetLastError();
}

}  // namespace pysample
