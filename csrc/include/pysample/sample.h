// Logic of sampling a token from logits that the CPU and the CUDA kernels share: the counter-based random
// generator, a token's weight in fixed point, the keep rules of top-p and min-p on those weights, and the draw.
// Every quantity a decision depends on is computed with the same operations on both sides, and masses are sums of
// integers (exact in any order), so the same logits, parameters, seed and step give the same token on every device,
// whatever the batch size or the row's position in it. Framework-free (no torch header).
//
// A row's sampling, given its scaled logits y = logits / temperature (rounded to the logits' dtype, as
// transformers), their max m and the token weights W(y) = weight(y, m):
//   1. greedy (temperature 0, top_k 1) is torch.argmax of y: the first NaN, else the first largest y;
//   2. a row holding +inf draws from the softmax's limit: y becomes 0 at its +inf tokens, -inf elsewhere;
//   3. top-k keeps the tokens with y >= the k-th largest y (all ties with it);
//   4. top-p orders the kept tokens by descending y, ties by descending token id (the warpers' order), and keeps a
//      token while the weight of those before it is 0 or below top_p times their total (top_p_keeps);
//   5. min-p keeps the tokens with W >= min_p W(m) (min_p_keeps);
//   6. draw d of n takes 64 random bits (draw_bits) and picks, in ascending token id over the kept tokens, the first
//      whose running weight exceeds draw_target(bits, total kept weight).
// A sampled row whose softmax is undefined (a NaN, or every logit -inf) draws -1.
#pragma once

#include <cstdint>

#include "pysample/warp.h"

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
