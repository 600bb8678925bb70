// The types and constants that the CPU kernels' loops over a row share, the portable ones (cpu_rows.h,
// distance_histogram.h, row_scratch.h, top_k.h, the kernels' files) and those written for AVX-512 (avx512_loops.h),
// which take them as arguments. Included through cpu_rows.h, in an anonymous namespace.
#pragma once

#include <cstdint>
#include <limits>

namespace pysample {
namespace {

constexpr int kLanes = 16;  // float accumulators of a sum loop, so that it vectorizes
constexpr float kInf = std::numeric_limits<float>::infinity();

// ---- top-k (top_k.h) ----------------------------------------------------------------------------------------

// The row seen as blocks of kBlock consecutive tokens: a lower bound for the k-th largest value is the k-th largest
// block maximum, since k blocks hold a value that large. Contiguous blocks keep the later visit of the few blocks
// that can hold the k largest a sequential read (strided columns would touch a cache line, and a page, per token).
constexpr int64_t kBlock = 128;

// ---- histograms of mass by distance (distance_histogram.h) ---------------------------------------------------------

// The bins of top-p's and typical decoding's histograms of mass by distance: 1/16 of a unit each, the last (past
// 104) holding every farther token.
constexpr int kDistanceBins = 1664;
constexpr float kBinsPerUnit = 16.0f;

struct DistanceBins {
  float max, a, b;
  bool centered;  // false: a = b = 0, where the distance is max - x exactly (fewer operations)

  // Top-p's distance: max - x.
  static DistanceBins from_max(float max) { return {max, 0.0f, 0.0f, false}; }
  // Typical decoding's distance: |-(log p) - entropy| = |-((x - max) - log_sum) - entropy| (typical_distance).
  static DistanceBins typical(float max, float log_sum, float entropy) { return {max, log_sum, entropy, true}; }
};

// ---- the tokens near a crossing (distance_histogram.h) ------------------------------------------------------

// The cuts past an estimate of a crossing at which a pass measures the mass, and the tokens it goes through at once.
constexpr int kCuts = 4;
constexpr float kCutMargins[kCuts] = {0.0f, 0.5f, 2.0f, 8.0f};  // past the estimate, in units of distance
constexpr int64_t kCutChunk = 256;                               // tokens whose quantities a pass keeps in arrays

// Cut distances past an estimate of a crossing (see estimate_cuts), how many tokens the sample suggests lie within
// each, and the weight of the tokens within each, summed on float lanes: an estimate (relative error below
// (n / kLanes + kLanes) 2^-24 for n tokens), to choose a cut by.
struct CutMasses {
  float cut[kCuts];
  double expected[kCuts];  // tokens within the cut, from the sample
  float lanes[kCuts][kLanes] = {};

  float within(int c) const {
    float sum = 0;
    for (int l = 0; l < kLanes; ++l) sum += lanes[c][l];
    return sum;
  }
};

// ---- one row ------------------------------------------------------------------------------------------------

// The next row a thread will work on, prefetched a slice at a time by a pass over the current whole row that computes
// enough to hide it, so that the next row's read from memory (a large batch's rows come from DRAM) overlaps that work
// instead of following it.
struct Ahead {
  const char* row = nullptr;
  int64_t token_bytes = 0;

  // The row after `row` of a batch of rows `stride` elements apart, if any.
  template <typename T>
  static Ahead after(const T* rows, int64_t row, int64_t batch, int64_t stride) {
    return row + 1 < batch ? Ahead{reinterpret_cast<const char*>(rows + (row + 1) * stride), sizeof(T)} : Ahead{};
  }

  // Prefetches the cache lines of tokens [begin, end) of the next row.
  void prefetch(int64_t begin, int64_t end) const {
    if (row == nullptr) return;
    for (int64_t b = begin * token_bytes / 64 * 64; b < end * token_bytes; b += 64) __builtin_prefetch(row + b);
  }
};

// The tokens still kept: `value[j]` of token `index[j]`, or with `index == nullptr` the whole row (the j-th value
// is token j) where, if `keep` is set, only tokens with keep[j] != 0 are kept (the last stage marks rather than
// compacts the whole row).
struct Active {
  const float* value;
  const int32_t* index;
  int64_t n;
  const uint8_t* keep = nullptr;
  int32_t token(int64_t j) const { return index ? index[j] : static_cast<int32_t>(j); }
};

}  // namespace
}  // namespace pysample
