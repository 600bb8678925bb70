// What every op's kernels share, on the host and the device alike (framework-free: no torch header): per-row
// parameters and their ranges, float bits and the order-preserving key, the type scores compute in, and the exp of
// probabilities.
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

// A per-row parameter: a value per row (`rows`), one value for every row, or absent (`enabled == false`).
template <typename Stored, typename Value>
struct RowParam {
  const Stored* rows = nullptr;
  Value value = Value();
  bool enabled = false;

  PYSAMPLE_HD Value at(int64_t row) const { return rows ? static_cast<Value>(rows[row]) : value; }
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

// The values a parameter accepts; NaN is in none of them.
enum class ValueRange { kFinite, kPositiveFinite, kNonNegativeFinite, kNonNegative, kUnitInterval };

PYSAMPLE_HD bool in_range(ValueRange range, double value) {
  switch (range) {
    case ValueRange::kFinite:
      return value >= -std::numeric_limits<double>::max() && value <= std::numeric_limits<double>::max();
    case ValueRange::kPositiveFinite: return value > 0 && value <= std::numeric_limits<double>::max();
    case ValueRange::kNonNegativeFinite: return value >= 0 && value <= std::numeric_limits<double>::max();
    case ValueRange::kNonNegative: return value >= 0;
    case ValueRange::kUnitInterval: return value >= 0 && value <= 1;
  }
  return false;
}

// The range as messages state it: "<name> must be <range_text>, got <value>".
inline const char* range_text(ValueRange range) {
  switch (range) {
    case ValueRange::kFinite: return "a finite number";
    case ValueRange::kPositiveFinite: return "a finite number > 0";
    case ValueRange::kNonNegativeFinite: return "a finite number >= 0 (0: greedy)";
    case ValueRange::kNonNegative: return ">= 0";
    case ValueRange::kUnitInterval: return "in [0, 1]";
  }
  return "";
}

}  // namespace pysample
