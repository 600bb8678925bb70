// What the CUDA warper and sampler share: a row's tokens, a block's totals, and the radix select that finds their
// boundaries over 64-bit composites (a 32-bit sort key, then a tie by token id). Design: docs/design.md.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <limits>

#include "pysample/common.h"

namespace pysample {
namespace row_select {

constexpr int kThreads = 1024;  // one block of kThreads per row
constexpr int kDigitBits = 8;
constexpr int kDigits = 1 << kDigitBits;
constexpr int kNoDigit = kDigits;
constexpr unsigned kFullWarp = 0xFFFFFFFFu;
constexpr float kInf = std::numeric_limits<float>::infinity();

// A token of the row: its value after temperature, its id and the value's ordered key.
struct Token {
  float value;
  int32_t id;
  uint32_t key;
};

// Totals of one pass over a row's tokens; each pass fills the fields it needs.
struct Totals {
  float max;  // largest value, NaN ignored
  int has_nan;
  int count;
  double sum;     // of exp(value - max)
  double moment;  // of exp(value - max) * (value - max), for the entropy
  uint32_t min_key;
};

__device__ inline Totals no_totals() { return {-kInf, 0, 0, 0.0, 0.0, 0xFFFFFFFFu}; }

struct CombineTotals {
  __device__ Totals operator()(const Totals& a, const Totals& b) const {
    return {fmaxf(a.max, b.max), a.has_nan | b.has_nan, a.count + b.count,
            a.sum + b.sum,       a.moment + b.moment,   a.min_key < b.min_key ? a.min_key : b.min_key};
  }
};

// A histogram bin, or a sum of bins: token count and weight in fixed point (integer sums do not depend on the order
// of the additions, so the result is the same on every run).
struct Bin {
  int count;
  unsigned long long mass;
};

PYSAMPLE_HD Bin add(const Bin& a, const Bin& b) { return {a.count + b.count, a.mass + b.mass}; }

struct AddBins {
  __device__ Bin operator()(const Bin& a, const Bin& b) const { return add(a, b); }
};

// Block scans by warp scans: their storage is per warp, where the default (raking) keeps a slot per thread.
template <typename T>
using BlockScan = cub::BlockScan<T, kThreads, cub::BLOCK_SCAN_WARP_SCANS>;

PYSAMPLE_HD int bit_width(uint32_t v) {
  int bits = 0;
  for (; v != 0; v >>= 1) ++bits;
  return bits;
}

// The shift of the highest 8-bit digit of a token id that can be nonzero, for ids below `vocab`.
PYSAMPLE_HD int first_tie_shift(int32_t vocab) {
  const int tie_bits = bit_width(static_cast<uint32_t>(vocab > 1 ? vocab - 1 : 1));
  return (tie_bits + kDigitBits - 1) / kDigitBits * kDigitBits - kDigitBits;
}

// What a selection looks for: the first element, in ascending composite order, whose running count reaches `value`
// (a rank), or (by_mass) whose running weight, converted to double, reaches `value`, times the total weight when
// `of_total` (a fraction; the first digit's histogram sees every element).
struct Goal {
  bool by_mass;
  double value;
  bool of_total;

  PYSAMPLE_HD double target(const Bin& all) const { return of_total ? value * static_cast<double>(all.mass) : value; }
  // Whether the running count or weight (integers, converted as the CPU does) reaches the target.
  PYSAMPLE_HD bool reached(const Bin& running, double target) const {
    return (by_mass ? static_cast<double>(running.mass) : static_cast<double>(running.count)) >= target;
  }
};

// One digit of a selection: the first digit whose bin is not empty and at which the running weight reaches the
// target (kNoDigit if none), the bins below it and its own, and the total over every digit.
struct DigitCrossing {
  int digit;
  Bin below;
  Bin bin;
  Bin all;
};

// The shared memory of a radix select: per-digit histograms of counts and weights, and the crossing found.
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

  // The crossing of the histogram just built, the elements below its candidates being `before`.
  __device__ DigitCrossing crossing(const Goal& goal, const Bin& before, typename BlockScan<Bin>::TempStorage& scan) {
    __syncthreads();
    const Bin bin = threadIdx.x < kDigits ? Bin{bin_count[threadIdx.x], bin_mass[threadIdx.x]} : Bin{0, 0ull};
    Bin below;
    Bin all;
    BlockScan<Bin>(scan).ExclusiveScan(bin, below, Bin{0, 0ull}, AddBins{}, all);
    const double target = goal.target(all);
    if (bin.count > 0 && goal.reached(add(add(before, below), bin), target)) {
      atomicMin(&crossing_digit, static_cast<int>(threadIdx.x));
    }
    __syncthreads();
    const int digit = crossing_digit;
    if (static_cast<int>(threadIdx.x) == digit) {
      before_crossing = below;
      crossing_bin = bin;
    }
    __syncthreads();
    return {digit, before_crossing, crossing_bin, all};
  }
};

// Adds one token (count and weight) to its digit's bin in shared memory. The lanes of a warp that share a digit are
// summed first, a pairwise tree over their ranks: shared memory has no native 64-bit atomic add (it is a
// compare-and-swap loop) and most tokens fall in a few digits. Every lane of the warp must call it.
__device__ inline void add_to_bin(SelectShared& shared, bool candidate, uint32_t digit, unsigned long long units) {
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
    atomicAdd(&shared.bin_count[digit], __popc(same_digit));
    atomicAdd(&shared.bin_mass[digit], units);
  }
}

struct Selection {
  bool found;
  uint64_t composite;  // the element's composite (its key digits only unless ties were resolved)
  int before;          // elements before it: of a smaller key, or once ties are resolved a smaller composite
  int group;           // elements of its key (1 once ties are resolved)

  PYSAMPLE_HD uint32_t key() const { return static_cast<uint32_t>(composite >> 32); }
  PYSAMPLE_HD uint32_t tie() const { return static_cast<uint32_t>(composite); }
};

// Radix select, 8-bit digits from the top of the composite: only the elements of the crossing digit go on to the
// next digit. The tie digits (token id) are read only when resolve_ties asks and several elements share the key;
// once one element is left its whole composite is read. `block` builds each digit's histogram over the elements
// of `view` (cross) and finds the lone element (find_lone).
#pragma nv_exec_check_disable
template <typename Block, typename View>
PYSAMPLE_HD Selection select(Block& block, const View& view, Goal goal, bool resolve_ties) {
  uint64_t prefix = 0;  // the digits fixed so far
  uint64_t mask = 0;
  Bin before{0, 0ull};  // the elements below the candidates
  const int last_shift = resolve_ties ? 0 : 32;
  for (int shift = 64 - kDigitBits;;) {
    const DigitCrossing c = block.cross(view, prefix, mask, shift, goal, before);
    if (c.digit == kNoDigit) return {false, 0, 0, 0};  // the weights never reach the target
    goal = {goal.by_mass, goal.target(c.all), false};  // fixed by the first digit's total
    before = add(before, c.below);
    prefix |= static_cast<uint64_t>(c.digit) << shift;
    mask |= static_cast<uint64_t>(kDigits - 1) << shift;
    if (c.bin.count == 1 && shift > last_shift) return {true, block.find_lone(view, prefix, mask), before.count, 1};
    if (shift == last_shift) return {true, prefix, before.count, c.bin.count};
    // After the key, the tie's digits: only those below the vocabulary's width can differ.
    shift = shift == 32 ? view.first_tie_shift : shift - kDigitBits;
  }
}

}  // namespace row_select
}  // namespace pysample
