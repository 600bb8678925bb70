// What every CPU kernel file uses: the instruction-set clones of hot loops, a row's value range, rows in parallel
// with a per-thread scratch, and the check of per-row parameter tensors. The loops written for AVX-512 are in
// avx512_loops.h, the types they share with the portable ones in row_types.h. Included by each kernel's file, in an
// anonymous namespace.
#pragma once

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "../common_args.h"
#include "avx512_loops.h"
#include "pysample/common.h"
#include "row_types.h"
#include "streaming_copy.h"

// Hot loops are cloned per instruction set (SSE2 / AVX2 with FMA / AVX-512), the clone picked at load time. (The
// SSE2 clone calls libm for exp_nonpos's fused multiply-adds: correct, and slow.)
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PYSAMPLE_CPU_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "avx512f")))
#else
#define PYSAMPLE_CPU_CLONES
#endif

namespace pysample {
namespace {

// GCC vector types, for loops the compiler does not vectorize on its own.
typedef float Floats8 __attribute__((vector_size(32)));
typedef int32_t Ints8 __attribute__((vector_size(32)));
typedef uint32_t Uints8 __attribute__((vector_size(32)));

typedef int8_t Bytes8 __attribute__((vector_size(8)));
typedef int8_t Bytes32 __attribute__((vector_size(32)));

// The lowest byte of each lane (a comparison's result narrowed to 0 / -1 bytes).
inline Bytes8 low_bytes(Ints8 v) {
  Bytes32 bytes;
  std::memcpy(&bytes, &v, sizeof bytes);
  return __builtin_shufflevector(bytes, bytes, 0, 4, 8, 12, 16, 20, 24, 28);
}

// Whether any lane of a vector comparison's result is set.
inline bool any_lane(Ints8 mask) {
  uint64_t words[4];
  std::memcpy(words, &mask, sizeof words);
  return (words[0] | words[1] | words[2] | words[3]) != 0;
}

// ordered_key on 8 lanes (GCC vector types: the compiler does not vectorize loops over ordered_key on its own).
inline Uints8 ordered_keys(Floats8 x) {
  Uints8 u;
  const Floats8 zeroed = x + 0.0f;  // -0.0 + 0.0 = +0.0
  std::memcpy(&u, &zeroed, sizeof u);
  const Uints8 key = u ^ (reinterpret_cast<Uints8>(reinterpret_cast<Ints8>(u) >> 31) | 0x80000000u);
  return x != x ? Uints8{} + 0xFFFFFFFFu : key;
}

// out[i] = exp_nonpos(x[i] - max) for i < n: with AVX-512's exp_nonpos16 where the CPU has it (the same bits), else
// a loop the compiler vectorizes. (Not every file uses it.)
[[maybe_unused]] PYSAMPLE_CPU_CLONES void exps(const float* x, int64_t n, float max, float* out) {
  int64_t i = 0;
  if (use_avx512()) i = exps_avx512(x, n, max, out);
  for (; i < n; ++i) out[i] = exp_nonpos(x[i] - max);
}

// Tokens per block of value_range's block maxima.
constexpr int64_t kValueBlock = 512;

// Largest and smallest value, ignoring NaN; `has_nan` tells whether there was one; and unless block_max is null, the
// largest of each block of kValueBlock tokens (ignoring NaN; -inf for a block of NaN alone). (Not every file uses
// it.)
[[maybe_unused]] PYSAMPLE_CPU_CLONES void value_range(const float* x, int64_t n, float* max, float* min, bool* has_nan,
                                                      float* block_max = nullptr) {
  Floats8 top, lo;
  Ints8 nan = {};
  for (int l = 0; l < 8; ++l) top[l] = -kInf, lo[l] = kInf;
  for (int64_t begin = 0; begin < n; begin += kValueBlock) {
    const int64_t end = std::min(begin + kValueBlock, n);
    Floats8 hi = Floats8{} - kInf;
    int64_t i = begin;
    if (use_avx512()) {
      float block_hi, block_lo;
      bool block_nan;
      i += block_range_avx512(x + begin, end - begin, &block_hi, &block_lo, &block_nan);
      hi[0] = block_hi, lo[0] = block_lo < lo[0] ? block_lo : lo[0], nan[0] |= block_nan;
    }
    for (; i + 8 <= end; i += 8) {
      Floats8 v;
      std::memcpy(&v, x + i, sizeof v);
      hi = v > hi ? v : hi;
      lo = v < lo ? v : lo;
      nan |= v != v;
    }
    for (int l = 0; i < end; ++i, ++l) {
      hi[l] = x[i] > hi[l] ? x[i] : hi[l];
      lo[l] = x[i] < lo[l] ? x[i] : lo[l];
      nan[l] |= x[i] != x[i];
    }
    if (block_max != nullptr) {
      float block = hi[0];
      for (int l = 1; l < 8; ++l) block = hi[l] > block ? hi[l] : block;
      block_max[begin / kValueBlock] = block;
    }
    top = hi > top ? hi : top;
  }
  for (int l = 1; l < 8; ++l) {
    top[0] = top[l] > top[0] ? top[l] : top[0];
    lo[0] = lo[l] < lo[0] ? lo[l] : lo[0];
    nan[0] |= nan[l];
  }
  *max = top[0];
  *min = lo[0];
  *has_nan = nan[0] != 0;
}

// Calls row(r, scratch) for every row r of a batch: rows in parallel, but only when a task gets enough tokens to
// pay for waking a thread; each thread keeps its scratch (reserved for the vocabulary) across rows and calls.
template <typename RowScratch, typename Row>
void for_each_row(int64_t batch, int64_t vocab, Row row) {
  const int64_t rows_per_task = std::max<int64_t>(1, 65536 / std::max<int64_t>(vocab, 1));
  auto rows = [&](int64_t begin, int64_t end) {
    thread_local RowScratch scratch;
    scratch.reserve(vocab);
    for (int64_t r = begin; r < end; ++r) row(r, scratch);
  };
  // One task runs on the calling thread: at::parallel_for would still open a parallel region (and wake a thread)
  // when the batch equals the grain, as a single large row does.
  if (batch <= rows_per_task) return rows(0, batch);
  at::parallel_for(0, batch, rows_per_task, rows);
}

// The scratch of a kernel that needs none.
struct NoScratch {
  void reserve(int64_t) {}
};

// An output larger than this is written with streaming (non-temporal) stores: with its input it cannot stay in a
// 32 MB last-level cache anyway, and a streaming store skips reading each cache line before writing it (glibc's
// memcpy does the same for large copies). Smaller outputs stay in the cache for whatever reads them next.
constexpr int64_t kStreamingBytes = int64_t{16} << 20;

// Copies `bytes` bytes from `in` to `out` (not overlapping), through streaming stores when `stream` (and the CPU
// has them: streaming_copy.h).
inline void copy_bytes(const void* in, void* out, int64_t bytes, bool stream) {
  if (stream && stream_copy(in, out, bytes)) return;
  std::memcpy(out, in, bytes);
}

// Per-row parameter tensors are read before any row runs, so that a bad value raises (naming the row) instead of
// being used.
template <typename Stored, typename Value>
void check_row_values(const RowParam<Stored, Value>& param, int64_t batch, const char* name, ValueRange range) {
  if (param.rows == nullptr) return;
  for (int64_t r = 0; r < batch; ++r) {
    TORCH_CHECK_VALUE(in_range(range, static_cast<double>(param.at(r))), name, "[", r, "] must be ", range_text(range),
                      ", got ", shortest(param.rows[r]));
  }
}

}  // namespace
}  // namespace pysample
