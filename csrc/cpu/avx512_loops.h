// The CPU kernels' loops written for AVX-512, each the same operations on the same lanes as the portable loop it
// stands in for (the same bits), for the whole groups of 16 tokens: the portable loop calls it when use_avx512(),
// then does the tokens it left. Where the compiler has no AVX-512 (PYSAMPLE_HAS_EXP_AVX512, exp_avx512.h), each is a
// stand-in that does nothing and returns 0, and use_avx512() is false, so that the portable code has no #if.
// Included through cpu_rows.h, in an anonymous namespace.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "pysample/exp_avx512.h"
#include "row_types.h"

namespace pysample {
namespace {

#if defined(PYSAMPLE_HAS_EXP_AVX512)
PYSAMPLE_AVX512_BEGIN

// Whether to run the loops written for AVX-512: when the CPU has it, unless torch's ATEN_CPU_CAPABILITY asks torch's
// own kernels for less ("default", "avx2"), which also lets the tests run the other path on an AVX-512 machine.
inline bool use_avx512() {
  static const bool use = [] {
    const char* capability = std::getenv("ATEN_CPU_CAPABILITY");
    const bool less =
        capability != nullptr && (std::strcmp(capability, "default") == 0 || std::strcmp(capability, "avx2") == 0);
    return __builtin_cpu_supports("avx512f") && !less;
  }();
  return use;
}

// ---- cpu_rows.h's loops -------------------------------------------------------------------------------------

// exps's loop for AVX-512: the whole groups of 16 tokens; returns how many it did.
__attribute__((target("avx512f"))) inline int64_t exps_avx512(const float* x, int64_t n, float max, float* out) {
  const __m512 top = _mm512_set1_ps(max);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, exp_nonpos16(_mm512_sub_ps(_mm512_loadu_ps(x + i), top)));
  return i;
}

// value_range's loop over a block on 16 lanes, for whole groups of 32 tokens: the largest and smallest of x[0, n)
// (NaN ignored: max and min return their second operand for NaN) and whether one is NaN; returns how many tokens it
// did. Two running maxima and minima, each waiting only on its own previous value: one alone would bound the loop
// by the instruction's latency rather than its throughput.
__attribute__((target("avx512f"))) inline int64_t block_range_avx512(const float* x, int64_t n, float* max, float* min,
                                                                     bool* has_nan) {
  __m512 hi[2] = {_mm512_set1_ps(-kInf), _mm512_set1_ps(-kInf)}, lo[2] = {_mm512_set1_ps(kInf), _mm512_set1_ps(kInf)};
  __mmask16 nan = 0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int c = 0; c < 2; ++c) {
      const __m512 v = _mm512_loadu_ps(x + i + 16 * c);
      hi[c] = _mm512_max_ps(v, hi[c]);
      lo[c] = _mm512_min_ps(v, lo[c]);
      nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    }
  }
  *max = _mm512_reduce_max_ps(_mm512_max_ps(hi[0], hi[1]));
  *min = _mm512_reduce_min_ps(_mm512_min_ps(lo[0], lo[1]));
  *has_nan = nan != 0;
  return i;
}

// ---- the loops of distance_histogram.h and row_scratch.h --------------------------------------------------

// distance_of on 16 lanes with AVX-512 (the same operations: the same bits).
__attribute__((target("avx512f"))) inline __m512 distance16(__m512 v, const DistanceBins& d) {
  if (!d.centered) return _mm512_sub_ps(_mm512_set1_ps(d.max), v);
  // |-((x - max) - a) - b|
  const __m512 u = _mm512_sub_ps(_mm512_sub_ps(v, _mm512_set1_ps(d.max)), _mm512_set1_ps(d.a));
  const __m512i sign = _mm512_set1_epi32(static_cast<int32_t>(0x80000000u)), magnitude = _mm512_set1_epi32(0x7FFFFFFF);
  const __m512 t =
      _mm512_sub_ps(_mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(u), sign)), _mm512_set1_ps(d.b));
  return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(t), magnitude));
}

// The ids of tokens j .. j + 15.
__attribute__((target("avx512f"))) inline __m512i ids16(int64_t j) {
  return _mm512_add_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                          _mm512_set1_epi32(static_cast<int32_t>(j)));
}

// Appends the lanes `selected` of values v and ids to value / index at *count, in order (compress: no branch per
// lane); the arrays need room for 16 past *count.
__attribute__((target("avx512f"))) inline void append16(__mmask16 selected, __m512 v, __m512i ids, float* value,
                                                        int32_t* index, int64_t* count) {
  _mm512_storeu_ps(value + *count, _mm512_maskz_compress_ps(selected, v));
  _mm512_storeu_si512(index + *count, _mm512_maskz_compress_epi32(selected, ids));
  *count += __builtin_popcount(selected);
}

// mark_bins_before's loop on 16 lanes with AVX-512's compress (no branch on whether a group holds a member, which a
// crowded crossing bin makes a coin toss), for the whole groups of 16 tokens; returns how many it did, the members'
// count in *count.
__attribute__((target("avx512f"))) inline int64_t mark_bins_before_avx512(const float* x, int64_t n,
                                                                          const DistanceBins& bins, int32_t crossing,
                                                                          uint8_t* marks, int32_t* members,
                                                                          float* values, int64_t* count) {
  const __m512 per_unit = _mm512_set1_ps(kBinsPerUnit), last = _mm512_set1_ps(static_cast<float>(kDistanceBins));
  const __m512i bin_crossing = _mm512_set1_epi32(crossing), one = _mm512_set1_epi32(1);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    // bin_of: min(t, last) is t < last ? t : last (no NaN here)
    const __m512i bin = _mm512_cvttps_epi32(_mm512_min_ps(_mm512_mul_ps(distance16(v, bins), per_unit), last));
    if (marks != nullptr) {
      const __mmask16 before = _mm512_cmplt_epi32_mask(bin, bin_crossing);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(marks + i),
                       _mm512_cvtepi32_epi8(_mm512_maskz_mov_epi32(before, one)));
    }
    append16(_mm512_cmpeq_epi32_mask(bin, bin_crossing), v, ids16(i), values, members, count);
  }
  return i;
}

// gather_within's loop on 16 lanes with AVX-512's compress: no branch per token or group of tokens, whose outcome
// the branch predictor cannot guess when a tenth of the tokens are gathered. Does the whole groups of 16 tokens;
// returns how many it gathered.
__attribute__((target("avx512f"))) inline int64_t gather_within_avx512(const float* x, const int32_t* token, int64_t n,
                                                                       const DistanceBins& bins, float cut,
                                                                       float* value, int32_t* index) {
  const __m512 bound = _mm512_set1_ps(cut);
  int64_t count = 0;
  for (int64_t j = 0; j + 16 <= n; j += 16) {
    const __m512 v = _mm512_loadu_ps(x + j);
    const __mmask16 within = _mm512_cmp_ps_mask(distance16(v, bins), bound, _CMP_LE_OQ);
    append16(within, v, token != nullptr ? _mm512_loadu_si512(token + j) : ids16(j), value, index, &count);
  }
  return count;
}

// narrow's loop on 16 lanes with AVX-512's compress, for the whole groups of 16 tokens; returns how many it did, the
// kept ones' count in *kept (from 0).
__attribute__((target("avx512f"))) inline int64_t narrow_avx512(const Active& a, const uint8_t* marks, float* value,
                                                                int32_t* index, int64_t* kept) {
  int64_t j = 0;
  for (; j + 16 <= a.n; j += 16) {
    const __m512i mark = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(marks + j)));
    const __m512i tokens = a.index != nullptr ? _mm512_loadu_si512(a.index + j) : ids16(j);
    append16(_mm512_test_epi32_mask(mark, mark), _mm512_loadu_ps(a.value + j), tokens, value, index, kept);
  }
  return j;
}

// ---- the warper's loops (warp_cpu.cpp) ----------------------------------------------------------------------

// exps and add_moments in one loop on 16 lanes (the same operations on the same lanes: the same bits), for whole
// groups of 16 tokens: each token's exp and moment from one load and one subtraction. Returns how many it did.
__attribute__((target("avx512f"))) inline int64_t exp_moments_avx512(const float* x, int64_t n, float max, float* e,
                                                                     float* acc, float* mom) {
  const __m512 top = _mm512_set1_ps(max), none = _mm512_set1_ps(-kInf);
  __m512 a = _mm512_loadu_ps(acc), m = _mm512_loadu_ps(mom);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 shift = _mm512_sub_ps(_mm512_loadu_ps(x + i), top);
    const __m512 w = exp_nonpos16(shift);
    _mm512_storeu_ps(e + i, w);
    a = _mm512_add_ps(a, w);
    // m + w * 0 for a -inf logit leaves m as it is (m is never -0.0: it starts at +0.0)
    m = _mm512_mask_add_ps(m, _mm512_cmp_ps_mask(shift, none, _CMP_GT_OQ), m, _mm512_mul_ps(w, shift));
  }
  _mm512_storeu_ps(acc, a);
  _mm512_storeu_ps(mom, m);
  return i;
}

// weigh_within_cuts' loop on 16 lanes, for the whole chunks of the n tokens: the weights w[i] (or their exps, when w
// is null) and add_within_cuts in one loop, the same operations on the same lanes (the same bits), the cut masses
// held in registers across the row. Returns how many tokens it did.
__attribute__((target("avx512f"))) inline int64_t weigh_within_cuts_avx512(const float* x, const float* w, int64_t n,
                                                                           const DistanceBins& bins, CutMasses& m,
                                                                           double* sum, const Ahead& ahead) {
  static_assert(kCuts == 4 && kLanes == 16 && kCutChunk % 16 == 0);
  const __m512 top = _mm512_set1_ps(bins.max);
  __m512 cut[kCuts], mass[kCuts];
  for (int c = 0; c < kCuts; ++c) cut[c] = _mm512_set1_ps(m.cut[c]), mass[c] = _mm512_loadu_ps(m.lanes[c]);
  __m512d sum_low = _mm512_loadu_pd(sum), sum_high = _mm512_loadu_pd(sum + 8);
  int64_t begin = 0;
  for (; begin + kCutChunk <= n; begin += kCutChunk) {
    ahead.prefetch(begin, begin + kCutChunk);
    __m512 total = _mm512_setzero_ps();
    for (int64_t i = begin; i < begin + kCutChunk; i += 16) {
      const __m512 v = _mm512_loadu_ps(x + i);
      const __m512 e = w != nullptr ? _mm512_loadu_ps(w + i) : exp_nonpos16(_mm512_sub_ps(v, top));
      const __m512 distance = distance16(v, bins);
      total = _mm512_add_ps(total, e);
      for (int c = 0; c < kCuts; ++c) {
        mass[c] = _mm512_mask_add_ps(mass[c], _mm512_cmp_ps_mask(distance, cut[c], _CMP_LE_OQ), mass[c], e);
      }
    }
    sum_low = _mm512_add_pd(sum_low, _mm512_cvtps_pd(_mm512_castps512_ps256(total)));
    const __m256 high = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(total), 1));
    sum_high = _mm512_add_pd(sum_high, _mm512_cvtps_pd(high));
  }
  for (int c = 0; c < kCuts; ++c) _mm512_storeu_ps(m.lanes[c], mass[c]);
  _mm512_storeu_pd(sum, sum_low);
  _mm512_storeu_pd(sum + 8, sum_high);
  return begin;
}

PYSAMPLE_AVX512_END
#else

// No AVX-512 from this compiler: the portable loops do every token.
inline bool use_avx512() { return false; }
inline int64_t exps_avx512(const float*, int64_t, float, float*) { return 0; }
inline int64_t block_range_avx512(const float*, int64_t, float* max, float* min, bool* has_nan) {
  *max = -kInf, *min = kInf, *has_nan = false;  // the range of no token
  return 0;
}
inline int64_t mark_bins_before_avx512(const float*, int64_t, const DistanceBins&, int32_t, uint8_t*, int32_t*, float*,
                                       int64_t*) {
  return 0;
}
inline int64_t gather_within_avx512(const float*, const int32_t*, int64_t, const DistanceBins&, float, float*,
                                    int32_t*) {
  return 0;
}
inline int64_t narrow_avx512(const Active&, const uint8_t*, float*, int32_t*, int64_t*) { return 0; }
inline int64_t exp_moments_avx512(const float*, int64_t, float, float*, float*, float*) { return 0; }
inline int64_t weigh_within_cuts_avx512(const float*, const float*, int64_t, const DistanceBins&, CutMasses&, double*,
                                        const Ahead&) {
  return 0;
}

#endif

}  // namespace
}  // namespace pysample
