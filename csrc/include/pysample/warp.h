// Logic of the fused logits warper (temperature -> top-k -> top-p -> min-p -> typical -> epsilon -> eta) that the
// CPU and the CUDA kernels share: parameters, the order-preserving float key, the exp used for probabilities and
// each stage's keep rule. Framework-free (no torch header) so that it compiles for host and device alike.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#ifdef __CUDACC__
#define PYSAMPLE_HD __host__ __device__ __forceinline__
#else
#define PYSAMPLE_HD inline
#endif

namespace pysample {

// One warper parameter: a value per row (`rows`), one value for every row, or absent (`enabled == false`).
template <typename Stored, typename Value>
struct RowParam {
  const Stored* rows = nullptr;
  Value value = Value();
  bool enabled = false;

  PYSAMPLE_HD Value at(int64_t row) const { return rows ? static_cast<Value>(rows[row]) : value; }
};

// Every stage of the chain. A stage applies to a row when it is enabled; the Python layer turns a warper's
// "disabled" value (top_k = 0, ...) into `enabled == false`.
struct WarpParams {
  RowParam<float, double> temperature;
  RowParam<int64_t, int64_t> top_k;
  RowParam<float, double> top_p;
  RowParam<float, double> min_p;
  RowParam<float, double> typical_p;
  RowParam<float, double> epsilon;
  RowParam<float, double> eta;
  int64_t min_tokens_to_keep = 1;
  float filter_value = -std::numeric_limits<float>::infinity();
};

PYSAMPLE_HD uint64_t double_bits(double x) {
#ifdef __CUDA_ARCH__
  return static_cast<uint64_t>(__double_as_longlong(x));
#else
  uint64_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}

PYSAMPLE_HD uint32_t float_bits(float x) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}

// +0.0 exactly (not -0.0): subtracting it leaves every value's bits as they are.
PYSAMPLE_HD bool is_plus_zero(float x) { return float_bits(x) == 0; }
PYSAMPLE_HD bool is_plus_zero(double x) { return double_bits(x) == 0; }

// The type a score of type T is computed in: float for float32 and the 16-bit types (computed in float32 and rounded
// once to their own), double for float64, as torch's opmath.
template <typename T>
struct Computed {
  using type = float;
};
template <>
struct Computed<double> {
  using type = double;
};
template <typename T>
using computed_t = typename Computed<T>::type;

PYSAMPLE_HD float bits_float(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}

// An unsigned key whose order is the order of the floats, with the comparisons torch uses: -0.0 equals +0.0, and
// NaN is above everything (torch.topk and torch.sort put NaN first among the largest). Branch-free: it vectorizes.
PYSAMPLE_HD uint32_t ordered_key(float x) {
  const uint32_t u = float_bits(x + 0.0f);  // -0.0 + 0.0 = +0.0
  const uint32_t key = u ^ (static_cast<uint32_t>(static_cast<int32_t>(u) >> 31) | 0x80000000u);
  return x != x ? 0xFFFFFFFFu : key;
}

// exp(x) for x <= 0 (the argument is always `logit - max`), -inf giving 0. Branch-free so that loops over it
// vectorize, gradual underflow like torch's softmax (denormals down to about exp(-103.97)), within 2 ulp of
// the true value. Cody-Waite range reduction x = n ln2 + r and the Cephes polynomial for e^r. Explicit fused
// multiply-adds (fewer operations, and one rounding each: the same bits on every CPU with FMA and on the GPU).
PYSAMPLE_HD float exp_nonpos(float x) {
  x = x < -104.0f ? -104.0f : x;
  const float round_magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (x * 1.44269504088896341f + round_magic) - round_magic;
  float r = fmaf(n, -0.693359375f, x);
  r = fmaf(n, 2.12194440e-4f, r);
  // Estrin's scheme: independent pairs of terms, a shorter dependency chain than Horner's.
  const float r2 = r * r;
  const float c01 = fmaf(1.6666665459e-1f, r, 5.0000001201e-1f);
  const float c23 = fmaf(8.3334519073e-3f, r, 4.1665795894e-2f);
  const float c45 = fmaf(1.9875691500e-4f, r, 1.3981999507e-3f);
  const float p = fmaf(fmaf(r2, fmaf(r2, c45, c23), c01), r2, r) + 1.0f;
  // 2^n with n in [-150, 0] as 2^(n + 64) * 2^-64, both normal: the first product is exact, the second rounds once,
  // underflowing gradually.
  const float scale = bits_float(static_cast<uint32_t>(static_cast<int32_t>(n) + 64 + 127) << 23);
  return (p * scale) * 5.42101086e-20f;  // 2^-64
}

// Temperature as transformers applies it: `scores / temperature` in float, rounded to the logits' dtype.
template <typename scalar_t>
PYSAMPLE_HD float apply_temperature(float logit, float temperature) {
  return static_cast<float>(static_cast<scalar_t>(logit / temperature));
}

// transformers' top-p removes a token when the probability mass at or below it (ascending order) is <= 1 - top_p,
// the threshold computed in double and compared in float. Seen from the top, a token is kept while the mass of
// the tokens above it is below `keep_mass = 1 - float(1 - top_p)` (times the softmax normaliser).
PYSAMPLE_HD double top_p_keep_mass(double top_p) {
  return 1.0 - static_cast<double>(static_cast<float>(1.0 - top_p));
}

// The float probabilities transformers compares in min-p, epsilon and eta: softmax = exp(x - max) * (1 / sum).
PYSAMPLE_HD float probability(float exp_shifted, float inv_sum) { return exp_shifted * inv_sum; }

// transformers computes softmax in the logits' dtype, where a probability at or below half the dtype's smallest
// subnormal rounds to 0; top-p with top_p = 1 removes exactly the tokens whose probability is 0. (float32: 0.)
constexpr float kFloat16ZeroProbability = 2.98023224e-8f;    // 2^-25
constexpr float kBFloat16ZeroProbability = 4.59177481e-41f;  // 2^-134

// The entropy -sum p log p of a softmax from sum = sum exp(x - max) and moment = sum exp(x - max) * (x - max):
// log p = (x - max) - log(sum), so the entropy is log(sum) - moment / sum.
PYSAMPLE_HD double entropy_from_moments(double sum, double moment) { return log(sum) - moment / sum; }

// eta-sampling's cut-off: min(epsilon, sqrt(epsilon) * exp(-entropy)), in float like transformers.
PYSAMPLE_HD float eta_cutoff(double epsilon, double entropy) {
  const float eps = static_cast<float>(epsilon);
  const float dynamic = sqrtf(eps) * expf(static_cast<float>(-entropy));
  return dynamic < eps ? dynamic : eps;
}

// typical_p = 1 keeps every token, as transformers (whose warper rejects a mass >= 1: generate() adds none) would:
// the mass of a rounded softmax may reach 1 before its last tokens. A NaN also skips the stage (CUDA cannot raise).
PYSAMPLE_HD bool typical_keeps_all(double typical_p) { return !(typical_p < 1.0); }

// Typical decoding's distance of a token from the entropy: |-(log p) - entropy| with log p = x - max - log(sum).
PYSAMPLE_HD float typical_distance(float x, float max, float log_sum, float entropy) {
  return fabsf(-((x - max) - log_sum) - entropy);
}

// ---- Per-row parameters on the GPU, where a value the CPU rejects cannot raise (that needs a host sync) ----------

// A temperature that is not a finite number > 0 is taken as 1.
PYSAMPLE_HD double usable_temperature(double temperature) {
  return temperature > 0 && temperature <= std::numeric_limits<double>::max() ? temperature : 1.0;
}

// top_p, min_p, typical_p, epsilon and eta are clamped to [0, 1] (a NaN stays NaN: the kernel skips the stage).
PYSAMPLE_HD double clamp_unit(double value) { return value < 0 ? 0.0 : (value > 1 ? 1.0 : value); }

}  // namespace pysample
