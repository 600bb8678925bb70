// exp_nonpos (common.h) on 16 lanes with AVX-512, for the CPU kernels. The same operations but two, each replaced by
// one instruction that computes the same bits: rounding to an integer (instead of adding and subtracting 1.5 * 2^23,
// which rounds to nearest even too) and scaling by 2^n (instead of multiplying by 2^(n + 64), exactly, then by
// 2^-64: both round once, gradual underflow included). Tested bit for bit against exp_nonpos.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#include <immintrin.h>

#define PYSAMPLE_HAS_EXP_AVX512 1

namespace pysample {

// GCC's intrinsics fill the lanes they leave alone from an undefined vector, which -Wall reports as uninitialized:
// code using them goes between these two.
// clang-format off: one pragma per line
#define PYSAMPLE_AVX512_BEGIN                                        \
  _Pragma("GCC diagnostic push")                                     \
  _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")        \
  _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")
// clang-format on
#define PYSAMPLE_AVX512_END _Pragma("GCC diagnostic pop")

PYSAMPLE_AVX512_BEGIN
__attribute__((target("avx512f"))) inline __m512 exp_nonpos16(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);  // x < -104 ? -104 : x (max returns its second operand for NaN)
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693359375f), x);
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
  const __m512 r2 = _mm512_mul_ps(r, r);
  // a + b * r
  auto term = [](float a, float b, __m512 r) __attribute__((target("avx512f"))) {
    return _mm512_fmadd_ps(_mm512_set1_ps(b), r, _mm512_set1_ps(a));
  };
  const __m512 c01 = term(5.0000001201e-1f, 1.6666665459e-1f, r);
  const __m512 c23 = term(4.1665795894e-2f, 8.3334519073e-3f, r);
  const __m512 c45 = term(1.3981999507e-3f, 1.9875691500e-4f, r);
  const __m512 inner = _mm512_fmadd_ps(r2, _mm512_fmadd_ps(r2, c45, c23), c01);
  const __m512 p = _mm512_add_ps(_mm512_fmadd_ps(inner, r2, r), _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}
PYSAMPLE_AVX512_END

}  // namespace pysample
#endif
