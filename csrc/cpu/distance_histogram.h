// Histograms of mass by distance, for the selections of top-p and typical decoding (and the sampler's top-p): the
// tokens nearest a point up to a mass, without a sort. Included by a kernel's file, in an anonymous namespace.
#pragma once

#include <algorithm>
#include <cstring>
#include <type_traits>

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

// Distance histograms go through chunks of kHistogramChunk tokens: each token's bin is computed on vector lanes
// into an array, then its weight added to one of two interleaved histograms (in L1), so that consecutive adds to one
// bin do not wait on each other. Double or integer masses: a bin can hold thousands of tokens whose float sum would
// drift past the accuracy the boundary needs.
constexpr int64_t kHistogramChunk = 256;

// mass[b] = sum of w[i] over the tokens i in distance bin b < kDistanceBins (Weight float or the sampler's fixed-point
// weights, Mass double or integer).
template <typename Weight, typename Mass>
PYSAMPLE_CPU_CLONES void distance_histogram(const float* x, const Weight* w, int64_t n, DistanceBins bins, Mass* mass) {
  Mass h[2][kDistanceBins + 1] = {};
  int32_t bin[kHistogramChunk];
  for (int64_t begin = 0; begin < n; begin += kHistogramChunk) {
    const int64_t len = std::min(kHistogramChunk, n - begin);
    int64_t i = 0;
    for (; i + 8 <= len; i += 8) {
      Floats8 v;
      std::memcpy(&v, x + begin + i, sizeof v);
      const Ints8 b = bin_of(distance_of(v, bins));
      std::memcpy(bin + i, &b, sizeof b);
    }
    for (; i < len; ++i) bin[i] = bin_of(distance_of(x[begin + i], bins));
    const Weight* weight = w + begin;
    for (i = 0; i + 2 <= len; i += 2) h[0][bin[i]] += weight[i], h[1][bin[i + 1]] += weight[i + 1];
    if (i < len) h[0][bin[i]] += weight[i];
  }
  for (int b = 0; b < kDistanceBins; ++b) mass[b] = h[0][b] + h[1][b];
}

// The bin in which the running mass first reaches `goal`, with the mass of the bins before it in `before`; -1 when
// it never does (rounding), `before` then holding the mass of every bin.
template <typename Mass>
int32_t crossing_bin(const Mass* mass, double goal, Mass* before) {
  *before = 0;
  for (int32_t b = 0; b < kDistanceBins; ++b) {
    if (mass[b] > 0 && static_cast<double>(*before + mass[b]) >= goal) return b;
    *before += mass[b];
  }
  return -1;
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

struct NoChunkVisitor {
  void operator()(const float*, int64_t) const {}
};

// The total weight (double) and the weight within each cut of m, of the n tokens x: w[i], or exp(x[i] - max) when w
// is null (not stored: the tokens that go on are few, and a row's weights would push the row out of the L2 cache),
// prefetching `ahead` as this pass of exps goes. visit(e, len), when given, sees each chunk's weights (the sampler
// sums its fixed-point weights from them) and the loop stays portable.
template <typename ChunkVisitor = NoChunkVisitor>
PYSAMPLE_CPU_CLONES double weigh_within_cuts(const float* x, const float* w, int64_t n, DistanceBins bins, CutMasses& m,
                                             const Ahead& ahead, ChunkVisitor visit = {}) {
  double sum[kLanes] = {};
  int64_t begin = 0;
  if (std::is_same_v<ChunkVisitor, NoChunkVisitor> && use_avx512()) {
    begin = weigh_within_cuts_avx512(x, w, n, bins, m, sum, ahead);
  }
  float chunk[kCutChunk];
  for (; begin < n; begin += kCutChunk) {
    const int64_t len = std::min(kCutChunk, n - begin);
    if (w == nullptr) {
      ahead.prefetch(begin, begin + len);
      exps(x + begin, len, bins.max, chunk);
    }
    const float* e = w != nullptr ? w + begin : chunk;
    add_within_cuts(x + begin, e, len, bins, m, sum);
    visit(e, len);
  }
  double total = 0;
  for (int l = 0; l < kLanes; ++l) total += sum[l];
  return total;
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

}  // namespace
}  // namespace pysample
