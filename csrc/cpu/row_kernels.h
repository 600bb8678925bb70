// Building blocks of the CPU kernels (the fused warper, sampling): vectorized loops over a row, histograms of mass
// by distance, radix selection over order-preserving float keys, and the per-thread scratch of one row. The hot
// loops are written over fixed lanes so that the compiler vectorizes them, and are cloned per instruction set
// (cpu_rows.h). Included by each kernel's file, in an anonymous namespace.
#pragma once

#include <ATen/Functions.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "cpu_rows.h"
#include "pysample/stages.h"

namespace pysample {
namespace {

// ---- histograms of mass by distance -------------------------------------------------------------------------

// Top-p (distance max - x) and typical decoding (|-(log p) - entropy|) keep the tokens nearest a point, up to a
// mass: a histogram of mass by distance (1/16 bins, monotone; the last, past 104, holds every farther token) finds
// the crossing bin, and only its tokens are selected exactly (kDistanceBins, DistanceBins: row_types.h). Design:
// docs/design.md#the-warper-on-the-cpu.

inline float distance_of(float x, const DistanceBins& d) {
  return d.centered ? typical_distance(x, d.max, d.a, d.b) : d.max - x;
}

inline int32_t bin_of(float distance) {
  const float t = distance * kBinsPerUnit;  // exact
  return static_cast<int32_t>(t < static_cast<float>(kDistanceBins) ? t : static_cast<float>(kDistanceBins));
}

// The same on 8 lanes, in GCC vector types (the same operations, so the same bits).
inline Floats8 distance_of(Floats8 x, const DistanceBins& d) {
  if (!d.centered) return (Floats8{} + d.max) - x;
  const Floats8 t = -((x - (Floats8{} + d.max)) - (Floats8{} + d.a)) - (Floats8{} + d.b);
  return t < Floats8{} ? -t : t;  // no NaN here
}

inline Ints8 bin_of(Floats8 distance) {
  const Floats8 t = distance * kBinsPerUnit, last = Floats8{} + static_cast<float>(kDistanceBins);
  return __builtin_convertvector(t < last ? t : last, Ints8);
}

// marks[i] = whether token i's distance bin comes before `crossing` (unless marks is null); writes to `members` the
// i in the crossing bin, and their x[i] to `values` (read once here, rather than at random later), and returns how
// many. GCC vector types: as a loop over lanes, neither the test for a member nor the narrowing of the marks to bytes
// vectorizes.
PYSAMPLE_CPU_CLONES int64_t mark_bins_before(const float* x, int64_t n, DistanceBins bins, int32_t crossing,
                                             uint8_t* marks, int32_t* members, float* values) {
  int64_t count = 0;
  int64_t i = 0;
  if (use_avx512()) i = mark_bins_before_avx512(x, n, bins, crossing, marks, members, values, &count);
  for (; i + 8 <= n; i += 8) {
    Floats8 v;
    std::memcpy(&v, x + i, sizeof v);
    const Ints8 bin = bin_of(distance_of(v, bins));
    if (marks != nullptr) {
      const Bytes8 before = low_bytes(bin < crossing) & 1;
      std::memcpy(marks + i, &before, sizeof before);
    }
    const Ints8 member = bin == crossing;
    if (!any_lane(member)) continue;
    for (int l = 0; l < 8; ++l) {
      members[count] = static_cast<int32_t>(i + l), values[count] = v[l];
      count += member[l] != 0;
    }
  }
  for (; i < n; ++i) {
    const int32_t bin = bin_of(distance_of(x[i], bins));
    if (marks != nullptr) marks[i] = bin < crossing;
    members[count] = static_cast<int32_t>(i), values[count] = x[i];
    count += bin == crossing;
  }
  return count;
}

// A crossing bin can hold thousands of tokens (a 16th of a unit of a flat row's bulk), too many to put in order one
// by one: its members are split again into kSubBins finer bins of distance, and only the finer bin in which the
// running mass reaches the goal is put in order. sub_bin_of is monotone in the distance like bin_of; the last
// bin's far tokens (+inf included) share its last finer bin.
constexpr int32_t kSubBins = 1024;

inline int32_t sub_bin_of(float distance, int32_t crossing) {
  const float t = (distance * kBinsPerUnit - static_cast<float>(crossing)) * static_cast<float>(kSubBins);
  return static_cast<int32_t>(t < static_cast<float>(kSubBins - 1) ? t : static_cast<float>(kSubBins - 1));
}

// Splits the `count` members of distance bin `crossing` (as mark_bins_before wrote them: `members` and their
// `values`): the running mass (from `before`, weight(j, value) per member j, Mass double or integer) reaches `goal` in
// one finer bin, that bin's members are moved to the front of `members` (how many is returned), and the mass of the
// finer bins before it is added to `before`. decided(j, kept) is called for the others: kept when their finer bin
// comes before. When rounding keeps the mass from reaching the goal, the last finer bin holding a member takes the
// part of the crossing one. `subs`: room for each member's finer bin.
template <typename Mass, typename Weight, typename Decided>
int64_t split_crossing_bin(const float* values, DistanceBins bins, int32_t crossing, int32_t* members, int64_t count,
                           Weight weight, double goal, Mass* before, Decided decided, int32_t* subs) {
  Mass mass[kSubBins] = {};
  int32_t last = 0;
  for (int64_t m = 0; m < count; ++m) {
    subs[m] = sub_bin_of(distance_of(values[m], bins), crossing);
    mass[subs[m]] += weight(members[m], values[m]);
    last = std::max(last, subs[m]);
  }
  int32_t split = 0;
  while (split < last && !(mass[split] > 0 && static_cast<double>(*before + mass[split]) >= goal)) {
    *before += mass[split++];
  }
  int64_t kept = 0;
  for (int64_t m = 0; m < count; ++m) {
    const int32_t j = members[m];
    if (subs[m] == split) {
      members[kept++] = j;
    } else {
      decided(j, subs[m] < split);
    }
  }
  return kept;
}

// ---- the tokens near a crossing ----------------------------------------------------------------------------

// A whole row's histogram costs a scattered add per token, though the mass crosses its goal among few: a stage
// estimates the crossing from a sample (estimate_cuts), measures the mass within a few cuts past it (CutMasses) and
// goes on with the tokens of the smallest cut that holds the goal (gather_within). A wrong estimate costs time, never
// a different result (kCuts, kCutChunk and CutMasses: row_types.h). Design: docs/design.md#the-warper-on-the-cpu.
constexpr int64_t kSampleStride = 512, kSampleRun = 16;
constexpr int kEstimateBinsPerUnit = 4;
constexpr int kEstimateBins = 32 * kEstimateBinsPerUnit;  // farther crossings are not worth narrowing down to

// distance[i] = distance_of(x[i], bins) for i < n (a plain loop for each kind, which the compiler vectorizes).
inline void distances(const float* x, int64_t n, const DistanceBins& bins, float* distance) {
  if (bins.centered) {
    for (int64_t i = 0; i < n; ++i) distance[i] = typical_distance(x[i], bins.max, bins.a, bins.b);
  } else {
    for (int64_t i = 0; i < n; ++i) distance[i] = bins.max - x[i];
  }
}

// Adds to m the weights e[i] of the n tokens x within each cut, the distance of token i being distance(x[i]), and
// unless it is null, adds them all to sum[i % kLanes]: one loop over lanes. Inlined, so that each kind of distance
// gets a loop that the compiler vectorizes for the instruction set of its caller's clone. The sum's lanes add in
// float, n / kLanes terms each (a chunk of a row: a few ulp), then in double.
template <typename Distance>
[[gnu::always_inline]] inline void add_within_cuts(const float* x, const float* e, int64_t n, Distance distance,
                                                   CutMasses& m, double* sum) {
  static_assert(kCuts == 4);
  float m0[kLanes], m1[kLanes], m2[kLanes], m3[kLanes];
  std::memcpy(m0, m.lanes[0], sizeof m0), std::memcpy(m1, m.lanes[1], sizeof m1);
  std::memcpy(m2, m.lanes[2], sizeof m2), std::memcpy(m3, m.lanes[3], sizeof m3);
  float total[kLanes] = {};
  const float cut0 = m.cut[0], cut1 = m.cut[1], cut2 = m.cut[2], cut3 = m.cut[3];
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const float d = distance(x[i + l]), weight = e[i + l];
      total[l] += weight;
      m0[l] = d <= cut0 ? m0[l] + weight : m0[l];
      m1[l] = d <= cut1 ? m1[l] + weight : m1[l];
      m2[l] = d <= cut2 ? m2[l] + weight : m2[l];
      m3[l] = d <= cut3 ? m3[l] + weight : m3[l];
    }
  }
  for (int l = 0; i < n; ++i, ++l) {
    const float d = distance(x[i]), weight = e[i];
    total[l] += weight;
    m0[l] += d <= cut0 ? weight : 0.0f, m1[l] += d <= cut1 ? weight : 0.0f;
    m2[l] += d <= cut2 ? weight : 0.0f, m3[l] += d <= cut3 ? weight : 0.0f;
  }
  std::memcpy(m.lanes[0], m0, sizeof m0), std::memcpy(m.lanes[1], m1, sizeof m1);
  std::memcpy(m.lanes[2], m2, sizeof m2), std::memcpy(m.lanes[3], m3, sizeof m3);
  if (sum != nullptr) {
    for (int l = 0; l < kLanes; ++l) sum[l] += total[l];
  }
}

// The same, at the distance of `bins`.
[[gnu::always_inline]] inline void add_within_cuts(const float* x, const float* e, int64_t n, const DistanceBins& bins,
                                                   CutMasses& m, double* sum) {
  const float max = bins.max, a = bins.a, b = bins.b;
  if (bins.centered) return add_within_cuts(x, e, n, [=](float v) { return typical_distance(v, max, a, b); }, m, sum);
  add_within_cuts(x, e, n, [=](float v) { return max - v; }, m, sum);
}

// The cuts past an estimate of the distance within which the mass reaches `fraction` of the total, from a sample of
// the row: the largest token of each block of kValueBlock (block_max, from value_range), which hold a peaked row's
// mass, each standing for itself, and the other tokens among the first kSampleRun of every kSampleStride, each
// standing for kSampleStride / kSampleRun tokens (runs rather than single tokens, so that the sample reads a 32nd
// of the row's cache lines). w[i] is token i's weight, or exp(x[i] - max) when w is null. No cut when the estimate
// lies past the sample's farthest bin.
PYSAMPLE_CPU_CLONES CutMasses estimate_cuts(const float* x, const float* w, int64_t n, const float* block_max,
                                            DistanceBins bins, double fraction) {
  // Mass and tokens by distance; two interleaved mass histograms: a run's tokens often share a bin, and adds to one
  // would wait on each other.
  double h[2][kEstimateBins + 1] = {}, tokens[kEstimateBins + 1] = {};
  auto bin = [](float distance) {
    const float t = distance * kEstimateBinsPerUnit;
    return t < kEstimateBins ? static_cast<int>(t) : kEstimateBins;
  };
  float distance[kCutChunk], weight[kCutChunk];
  const int64_t blocks = (n + kValueBlock - 1) / kValueBlock;
  for (int64_t begin = 0; begin < blocks; begin += kCutChunk) {
    const int64_t len = std::min(kCutChunk, blocks - begin);
    for (int64_t i = 0; i < len; ++i) weight[i] = exp_nonpos(block_max[begin + i] - bins.max);
    distances(block_max + begin, len, bins, distance);
    for (int64_t i = 0; i < len; ++i) {
      const int b = bin(distance[i]);
      h[i % 2][b] += weight[i], tokens[b] += 1;
    }
  }
  constexpr float kStands = static_cast<float>(kSampleStride) / kSampleRun;
  static_assert(kSampleStride % kValueBlock == 0 && kSampleRun <= kValueBlock, "a run lies in one block");
  for (int64_t begin = 0; begin + kSampleRun <= n; begin += kSampleStride) {
    if (w != nullptr) {
      std::memcpy(weight, w + begin, kSampleRun * sizeof(float));
    } else {
      for (int64_t i = 0; i < kSampleRun; ++i) weight[i] = exp_nonpos(x[begin + i] - bins.max);
    }
    distances(x + begin, kSampleRun, bins, distance);
    const float largest = block_max[begin / kValueBlock];
    for (int64_t i = 0; i < kSampleRun; ++i) {
      const int b = bin(distance[i]);
      const float stands = x[begin + i] == largest ? 0.0f : kStands;  // counted with the block maxima
      h[i % 2][b] += stands * weight[i], tokens[b] += stands;
    }
  }
  double mass[kEstimateBins + 1], total = 0;
  for (int b = 0; b <= kEstimateBins; ++b) mass[b] = h[0][b] + h[1][b], total += mass[b];
  int crossing = 0;  // the estimate is the far edge of this bin
  for (double running = mass[0]; crossing < kEstimateBins && running < fraction * total;) running += mass[++crossing];
  CutMasses m;
  for (int c = 0; c < kCuts; ++c) {
    m.cut[c] = static_cast<float>(crossing + 1) / kEstimateBinsPerUnit + kCutMargins[c];
    // Bins of 1/4 and margins of whole quarters: a cut ends at a bin's far edge.
    const int last = std::min(crossing + static_cast<int>(kCutMargins[c] * kEstimateBinsPerUnit), kEstimateBins);
    m.expected[c] = 0;
    for (int b = 0; b <= last; ++b) m.expected[c] += tokens[b];
    if (crossing == kEstimateBins) m.cut[c] = kInf, m.expected[c] = static_cast<double>(n);
  }
  return m;
}

// The first cut whose mass, known within `error` of itself, surely reaches `goal`; kCuts when none does, or when the
// sample suggests it holds more than half of the n tokens (gathering them would cost more than it saves).
inline int cut_reaching(const CutMasses& m, double goal, double error, int64_t n) {
  int c = 0;
  while (c < kCuts && !(m.within(c) >= goal * (1 + 2 * error))) ++c;
  return c < kCuts && m.expected[c] <= n / 2 ? c : kCuts;
}

inline double cut_mass_error(int64_t n) { return static_cast<double>(n / kLanes + kLanes) * 0x1p-24; }

// Writes to value / index the tokens j < n (token[j] each, or j when token is null) whose distance is at most `cut`,
// in order; returns how many. The outputs have room for n tokens.
PYSAMPLE_CPU_CLONES int64_t gather_within(const float* x, const int32_t* token, int64_t n, DistanceBins bins, float cut,
                                          float* value, int32_t* index) {
  int64_t count = 0;
  int64_t j = 0;
  if (use_avx512()) {
    count = gather_within_avx512(x, token, n, bins, cut, value, index);
    j = n / 16 * 16;
  }
  for (; j < n; ++j) {
    value[count] = x[j], index[count] = token != nullptr ? token[j] : static_cast<int32_t>(j);
    count += distance_of(x[j], bins) <= cut;
  }
  return count;
}

// The row seen as blocks of kBlock consecutive tokens: a lower bound for the k-th largest value is the k-th largest
// block maximum, since k blocks hold a value that large. Contiguous blocks keep the later visit of the few blocks
// that can hold the k largest a sequential read (strided columns would touch a cache line, and a page, per token).
constexpr int64_t kBlock = 128;

// block_max[b] = the largest key of block b. Its float maximum (NaN ignored) and whether it holds a NaN: cheaper per
// token than each token's key, and the same (ordered_key is monotonic, NaN largest).
PYSAMPLE_CPU_CLONES void block_max_keys(const float* x, int64_t n, uint32_t* block_max) {
  int64_t b = 0;
  for (; (b + 1) * kBlock <= n; ++b) {
    Floats8 m = Floats8{} - kInf;
    Ints8 nan = {};
    for (int64_t j = b * kBlock; j < (b + 1) * kBlock; j += 8) {
      Floats8 v;
      std::memcpy(&v, x + j, sizeof v);
      m = v > m ? v : m;
      nan |= v != v;
    }
    float best = m[0];
    for (int l = 1; l < 8; ++l) best = std::max(best, m[l]);
    block_max[b] = any_lane(nan) ? ordered_key(NAN) : ordered_key(best);
  }
  if (b * kBlock < n) {
    uint32_t best = 0;
    for (int64_t j = b * kBlock; j < n; ++j) best = std::max(best, ordered_key(x[j]));
    block_max[b] = best;
  }
}

// Appends to value / index, from position n on, the tokens in [begin, end) of x whose key is at least `bound`;
// returns the new count. Few tokens of a block reach it: groups of 8 are tested at once, and only a group with one
// is looked at token by token.
PYSAMPLE_CPU_CLONES int64_t gather_keys_at_least(const float* x, int64_t begin, int64_t end, uint32_t bound,
                                                 float* value, int32_t* index, int64_t n) {
  int64_t j = begin;
  for (; j + 8 <= end; j += 8) {
    Floats8 v;
    std::memcpy(&v, x + j, sizeof v);
    const Ints8 hit = reinterpret_cast<Ints8>(ordered_keys(v) >= bound);
    if (!any_lane(hit)) continue;
    for (int l = 0; l < 8; ++l) value[n] = v[l], index[n] = static_cast<int32_t>(j + l), n += hit[l] != 0;
  }
  for (; j < end; ++j) value[n] = x[j], index[n] = static_cast<int32_t>(j), n += ordered_key(x[j]) >= bound;
  return n;
}

// marks[j] = whether ordered_key(v[j]) >= key: the values at least the key's value, NaN above all.
PYSAMPLE_CPU_CLONES void mark_key_at_least(const float* v, int64_t n, uint32_t key, uint8_t* marks) {
  for (int64_t j = 0; j < n; ++j) marks[j] = ordered_key(v[j]) >= key;
}

// ---- selection ---------------------------------------------------------------------------------------------

// An element of a selection, ordered by ascending (key, tie); `weight` is its probability mass (1 when selecting
// by rank) and `value` the float its key was made from.
struct Elem {
  uint32_t key;
  uint32_t tie;
  float weight;
  float value;
};

struct Found {
  bool found;  // false when the weights never reach the target
  Elem elem;
};

// Branch-free, so that loops marking the elements up to a bound vectorize.
bool operator<=(const Elem& a, const Elem& b) { return (a.key < b.key) | ((a.key == b.key) & (a.tie <= b.tie)); }

constexpr int kRadixLevels = 3;
constexpr int kRadixDigits = 2048;      // 11-bit digits
constexpr size_t kSortDirectly = 256;  // below this many elements a sort beats a histogram of the digits
constexpr int kDigitShift[kRadixLevels] = {21, 10, 0};
constexpr uint32_t kDigitMask[kRadixLevels] = {0x7FF, 0x7FF, 0x3FF};

inline uint32_t digit(uint32_t key, int level) { return (key >> kDigitShift[level]) & kDigitMask[level]; }

// hist[d] = sum of weight(i) over i in [0, n) with digit(i) == d. On long inputs, four interleaved histograms, so
// that a run of one digit (ties, such as a row's many -inf) does not make every add wait on the previous one; short
// ones do not pay for clearing and adding them.
template <typename T, typename Digit, typename Weight>
void digit_histogram(int64_t n, Digit digit, Weight weight, T* hist) {
  std::fill(hist, hist + kRadixDigits, T{});
  if (n < 16 * kRadixDigits) {
    for (int64_t i = 0; i < n; ++i) hist[digit(i)] += weight(i);
    return;
  }
  T part[3][kRadixDigits] = {};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    hist[digit(i)] += weight(i);
    for (int l = 1; l < 4; ++l) part[l - 1][digit(i + l)] += weight(i + l);
  }
  for (; i < n; ++i) hist[digit(i)] += weight(i);
  for (int d = 0; d < kRadixDigits; ++d) hist[d] += (part[0][d] + part[1][d]) + part[2][d];
}

// The first element at which the running weight, in ascending (key, tie) order, reaches `target` > 0, given the
// weight `before` of everything ordered before `elems`. Radix select: a histogram of mass per 11-bit digit of the
// key finds the digit the running weight crosses at, only that digit's elements go on to the next digit; the few
// left at the end are sorted.
Found select_by_weight(std::vector<Elem>& elems, std::vector<Elem>& spare, double target, double before = 0) {
  std::vector<Elem>* cur = &elems;
  std::vector<Elem>* next = &spare;
  double mass[kRadixDigits];
  for (int level = 0; level < kRadixLevels && cur->size() > kSortDirectly; ++level) {
    const Elem* e = cur->data();
    digit_histogram(
        static_cast<int64_t>(cur->size()), [&](int64_t i) { return digit(e[i].key, level); },
        [&](int64_t i) { return static_cast<double>(e[i].weight); }, mass);
    int crossing = -1;
    for (uint32_t d = 0; d <= kDigitMask[level]; ++d) {
      if (mass[d] > 0 && before + mass[d] >= target) {
        crossing = static_cast<int>(d);
        break;
      }
      before += mass[d];
    }
    if (crossing < 0) return {false, {}};
    next->clear();
    for (const Elem& e : *cur) {
      if (digit(e.key, level) == static_cast<uint32_t>(crossing)) next->push_back(e);
    }
    std::swap(cur, next);
  }
  auto in_order = [](const Elem& a, const Elem& b) { return !(b <= a); };
  if (cur->size() > kSortDirectly) {
    // The digits cover the whole key: the elements left are ties (one value, one weight), often a row's many -inf.
    // Only their tie order matters, and only at the element where the running weight crosses: no sort.
    for (size_t i = 0; i < cur->size(); ++i) {
      before += (*cur)[i].weight;
      if (before >= target) {
        std::nth_element(cur->begin(), cur->begin() + i, cur->end(), in_order);
        return {true, (*cur)[i]};
      }
    }
    return {false, {}};
  }
  std::sort(cur->begin(), cur->end(), in_order);
  for (const Elem& e : *cur) {
    before += e.weight;
    if (before >= target) return {true, e};
  }
  return {false, {}};
}

// The element of rank `rank` (1-based, <= n) in ascending (key(j), tie(j)) order over j in [0, n): radix select with
// the first level read through the functions, so no element array is written for the whole row.
template <typename Key, typename Tie>
Elem select_by_rank(int64_t n, const float* value, Key key, Tie tie, int64_t rank, std::vector<Elem>& elems,
                    std::vector<Elem>& spare) {
  int64_t count[kRadixDigits];
  digit_histogram(n, [&](int64_t j) { return digit(key(j), 0); }, [](int64_t) { return int64_t{1}; }, count);
  int64_t before = 0;
  uint32_t crossing = 0;
  while (before + count[crossing] < rank) before += count[crossing++];
  elems.clear();
  for (int64_t j = 0; j < n; ++j) {
    const uint32_t k = key(j);
    if (digit(k, 0) == crossing) elems.push_back({k, tie(j), 1.0f, value[j]});
  }
  // Within the digit, unit weights: the running weight reaches `rank` exactly at the wanted element.
  return select_by_weight(elems, spare, static_cast<double>(rank), static_cast<double>(before)).elem;
}

// ---- one row ------------------------------------------------------------------------------------------------

// Scratch buffers of one thread, grown to the vocabulary size once and reused across rows and calls.
struct Scratch {
  std::vector<float> y, value, spare_value, weight, distance, row, probs, member_values;
  std::vector<int32_t> index, spare_index, members, member_bins;
  std::vector<uint8_t> keep;
  std::vector<uint32_t> block_max, block_rank;
  std::vector<float> block_values;  // value_range's block maxima
  std::vector<Elem> elems, spare_elems;
  std::vector<double> exact, exact_row, exact_probs, exact_tied;  // float64 rows (warper)
  int64_t candidates = 0;  // tokens gathered by kth_largest from the blocks
  Ahead ahead;             // set by the caller for each row; the first pass of exps over the whole row takes it

  void reserve(int64_t vocab) {
    if (static_cast<int64_t>(y.size()) >= vocab) return;
    for (auto* v : {&y, &value, &spare_value, &weight, &distance, &row, &probs, &member_values}) {
      v->resize(vocab);
    }
    for (auto* v : {&index, &spare_index, &members, &member_bins}) v->resize(vocab);
    keep.resize(vocab);
    block_max.resize(vocab / kBlock + 1);
    block_values.resize(vocab / kValueBlock + 1);
  }

  void reserve_exact(int64_t vocab) {
    if (static_cast<int64_t>(exact.size()) >= vocab) return;
    for (auto* v : {&exact, &exact_row, &exact_probs}) v->resize(vocab);
  }
};

// How a stage hands on the tokens it keeps: compacted into scratch (value / index), or, where the stage ran on the
// whole row, left marked in scratch.keep (the last stage of the warper: the output pass then reads the marks).
enum class KeptAs { kCompacted, kMarkedIfWholeRow };

// Narrows `a` to the tokens whose mark in `scratch.keep` is set, handed on as `kept_as` says.
Active narrow(const Active& a, Scratch& s, KeptAs kept_as) {
  const uint8_t* marks = s.keep.data();
  if (kept_as == KeptAs::kMarkedIfWholeRow && a.index == nullptr) return {a.value, nullptr, a.n, marks};
  float* value = s.spare_value.data();
  int32_t* index = s.spare_index.data();
  int64_t n = 0, j = 0;
  if (use_avx512()) j = narrow_avx512(a, marks, value, index, &n);
  // Branch-free: whether a token stays is as hard to predict as a coin toss when a stage keeps half of them.
  for (; j < a.n; ++j) value[n] = a.value[j], index[n] = a.token(j), n += marks[j] != 0;
  if (n == a.n) return a;
  std::swap(s.value, s.spare_value);
  std::swap(s.index, s.spare_index);
  return {s.value.data(), s.index.data(), n};
}

// Whether the k-th largest of `a` is searched among the blocks whose maximum reaches the k-th largest block
// maximum (see block_max_keys): worth it for small k on a whole row.
bool select_by_blocks(const Active& a, int64_t k) {
  return a.index == nullptr && a.n >= 16384 && k * 4 * kBlock <= a.n;
}

// Gathers into scratch.value / scratch.index the tokens of the whole row `a` that can be among its k largest: those
// at least the k-th largest block maximum (see block_max_keys); returns how many.
int64_t gather_top_candidates(const Active& a, int64_t k, Scratch& s) {
  const int64_t blocks = (a.n + kBlock - 1) / kBlock;
  block_max_keys(a.value, a.n, s.block_max.data());
  s.block_rank.assign(s.block_max.begin(), s.block_max.begin() + blocks);
  std::nth_element(s.block_rank.begin(), s.block_rank.begin() + (k - 1), s.block_rank.end(), std::greater<uint32_t>());
  // -inf tokens never need gathering: with fewer than k others, the k-th largest is -inf (see kth_largest).
  const uint32_t bound = std::max(s.block_rank[k - 1], ordered_key(-kInf) + 1);
  int64_t n = 0;
  for (int64_t b = 0; b < blocks; ++b) {
    if (s.block_max[b] < bound) continue;
    n = gather_keys_at_least(a.value, b * kBlock, std::min(a.n, (b + 1) * kBlock), bound, s.value.data(),
                             s.index.data(), n);
  }
  return n;
}

// The k-th largest active value (NaN largest, as torch.topk) and its key; requires 1 <= k <= a.n. When it uses
// the blocks, the candidates stay in scratch.value / scratch.index (scratch.candidates of them).
Elem kth_largest(const Active& a, int64_t k, Scratch& s) {
  // ~key: descending values become ascending keys.
  if (!select_by_blocks(a, k)) {
    return select_by_rank(
        a.n, a.value, [&](int64_t j) { return ~ordered_key(a.value[j]); }, [](int64_t) { return 0u; }, k, s.elems,
        s.spare_elems);
  }
  s.candidates = gather_top_candidates(a, k, s);
  if (s.candidates < k) return {~ordered_key(-kInf), 0, 1.0f, -kInf};
  s.elems.clear();
  for (int64_t j = 0; j < s.candidates; ++j) s.elems.push_back({~ordered_key(s.value[j]), 0, 1.0f, s.value[j]});
  return select_by_weight(s.elems, s.spare_elems, static_cast<double>(k)).elem;
}

// Top-k: keep values >= the k-th largest (all ties with it). Nothing to do when k >= the active count (the
// removed tokens are -inf, so the k-th largest would be -inf).
Active top_k_stage(const Active& a, int64_t k, Scratch& s, KeptAs kept_as) {
  if (k <= 0 || k >= a.n) return a;
  const uint32_t kth = ~kth_largest(a, k, s).key;
  // Nothing is below a -inf k-th value, and transformers compares against a NaN one: nothing is removed.
  if (kth == ordered_key(-kInf) || kth == ordered_key(NAN)) return a;
  if (!select_by_blocks(a, k)) {
    mark_key_at_least(a.value, a.n, kth, s.keep.data());
    return narrow(a, s, kept_as);
  }
  // Every survivor is among the candidates kth_largest gathered.
  int64_t n = 0;
  for (int64_t j = 0; j < s.candidates; ++j) {
    if (ordered_key(s.value[j]) >= kth) s.value[n] = s.value[j], s.index[n] = s.index[j], ++n;
  }
  return {s.value.data(), s.index.data(), n};
}

}  // namespace
}  // namespace pysample
