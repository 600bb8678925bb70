// Sampling logic the CPU and CUDA kernels share (Philox, fixed-point weights, the top-p / min-p keep rules, the
// draw), computed with the same operations on both and summed as integers, so the same logits, parameters, seed and
// step give the same token on every device and batch. Framework-free (no torch header).
// The numbered rules (greedy, +inf rows, top-k, top-p, min-p, the draw; -1 for an undefined softmax):
// docs/design.md#the-sampler.
#pragma once

#include <cstdint>

#include "pysample/stages.h"

namespace pysample {

// ---- Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2, 3", SC 2011), with the
// constants of the paper's Random123 library, whose known-answer vectors the tests check. -------------------------

struct Philox4x32 {
  uint32_t x[4];
};

PYSAMPLE_HD uint32_t mulhilo32(uint32_t a, uint32_t b, uint32_t* high) {
  const uint64_t product = static_cast<uint64_t>(a) * b;
  *high = static_cast<uint32_t>(product >> 32);
  return static_cast<uint32_t>(product);
}

PYSAMPLE_HD Philox4x32 philox4x32_10(Philox4x32 counter, uint32_t key0, uint32_t key1) {
  for (int round = 0; round < 10; ++round) {
    uint32_t high0, high1;
    const uint32_t low0 = mulhilo32(0xD2511F53u, counter.x[0], &high0);
    const uint32_t low1 = mulhilo32(0xCD9E8D57u, counter.x[2], &high1);
    counter = {{high1 ^ counter.x[1] ^ key0, low1, high0 ^ counter.x[3] ^ key1, low0}};
    key0 += 0x9E3779B9u;
    key1 += 0xBB67AE85u;
  }
  return counter;
}

// The 64 random bits of draw `draw` of a row: counter (draw, 0, step low, step high), key seed (low, high).
PYSAMPLE_HD uint64_t draw_bits(uint64_t seed, uint64_t step, uint32_t draw) {
  const Philox4x32 counter{{draw, 0u, static_cast<uint32_t>(step), static_cast<uint32_t>(step >> 32)}};
  const Philox4x32 r = philox4x32_10(counter, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  return (static_cast<uint64_t>(r.x[0]) << 32) | r.x[1];
}

// ---- parameters ---------------------------------------------------------------------------------------------

// The parameters of pysample.sample: each a value per row, one value for every row, or absent (stage skipped).
// seed and step are per row, on the logits' device. Temperature 0 and top_k 1 are greedy, top_k 0 is no top-k.
struct SampleParams {
  RowParam<float, double> temperature;
  RowParam<int64_t, int64_t> top_k;
  RowParam<float, double> top_p;
  RowParam<float, double> min_p;
  const int64_t* seed = nullptr;
  const int64_t* step = nullptr;
  int64_t draws = 1;
};

// ---- weights ------------------------------------------------------------------------------------------------

// A token's weight: exp(y - max) in fixed point, kWeightScale for the max, rounded to the nearest integer by adding
// 2^52 (where a double's unit in the last place is 1): the same rounding on every device, and vector instructions on
// the CPU. The sum of a row's weights stays below 2^64 for rows of up to kMaxSampleVocab tokens. Weights below
// 2^-41 of the max's round to 0: such tokens are never drawn (less than 2^-17 of the mass altogether, far below what
// any test of the distribution sees).
constexpr double kWeightScale = 1099511627776.0;  // 2^40
constexpr double kRoundingShift = 4503599627370496.0;  // 2^52
constexpr int64_t kMaxSampleVocab = int64_t{1} << 23;

PYSAMPLE_HD uint64_t sample_weight(float y, float max) {
  return double_bits(static_cast<double>(exp_nonpos(y - max)) * kWeightScale + kRoundingShift) -
         double_bits(kRoundingShift);
}

// top-p: a token stays while the weight of the tokens before it (descending y, ties by descending id) is 0 or below
// top_p times their total.
PYSAMPLE_HD bool top_p_keeps(uint64_t before, uint64_t total, double top_p) {
  return before == 0 || static_cast<double>(before) < top_p * static_cast<double>(total);
}

// min-p: a token stays when its weight is at least min_p times the max's.
PYSAMPLE_HD bool min_p_keeps(uint64_t weight, double min_p) {
  return static_cast<double>(weight) >= min_p * kWeightScale;
}

// The draw's point in [0, total): the high 64 bits of bits * total, uniform up to 2^-64.
PYSAMPLE_HD uint64_t draw_target(uint64_t bits, uint64_t total) {
#ifdef __CUDA_ARCH__
  return __umul64hi(bits, total);
#else
  return static_cast<uint64_t>((static_cast<unsigned __int128>(bits) * total) >> 64);
#endif
}

}  // namespace pysample
