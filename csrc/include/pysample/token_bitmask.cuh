// CUDA kernel of the token bitmask, the CPU kernel's semantics through token_bitmask.h. Framework-free, no host sync,
// no atomics: an index outside the batch (which the CPU rejects) is skipped. Semantics and layout after xgrammar's
// apply_token_bitmask_inplace. Design: docs/design.md#token-bitmask.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <limits>

#include "pysample/score_rows.cuh"
#include "pysample/token_bitmask.h"

namespace pysample {
namespace token_bitmask_cuda {

constexpr int kThreads = 256;  // a multiple of 32: each warp covers whole words, one word per pass

// Listed rows in y (index i: row indices[i], or i), tokens in x, one thread per token: a warp reads one word (a
// broadcast) and writes its masked tokens, coalesced; a word of all ones writes nothing. Logits are never read.
template <typename T, typename Index>
__global__ void __launch_bounds__(kThreads)
    apply_token_bitmask_kernel(ScoreRows<T> logits, int64_t batch, const uint32_t* bitmask, int64_t bitmask_row_stride,
                               int64_t word_stride, const Index* indices, int64_t count, int64_t vocab_size) {
  const T masked = static_cast<T>(-std::numeric_limits<float>::infinity());
  const int64_t offset = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t step = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t i = blockIdx.y; i < count; i += gridDim.y) {
    const int64_t row = indices != nullptr ? static_cast<int64_t>(indices[i]) : i;
    if (row < 0 || row >= batch) continue;
    const uint32_t* words = bitmask + row * bitmask_row_stride;
    for (int64_t token = offset; token < vocab_size; token += step) {
      const uint32_t word = words[(token / kBitmaskBitsPerWord) * word_stride];
      if (((word >> (token % kBitmaskBitsPerWord)) & 1) == 0) logits.at(row, token) = masked;
    }
  }
}

}  // namespace token_bitmask_cuda

// Sets to -inf the tokens [0, vocab_size) of `batch` rows of logits (strides row_stride and stride, in elements)
// whose bit is cleared in the row's words of `bitmask` (strides bitmask_row_stride and word_stride, in words; at
// least bitmask_words(vocab_size) words a row). Only the rows listed in `indices` (`count` of them; an index outside
// [0, batch) is skipped, a duplicate masks its row again, harmlessly), or every row when `indices` is null (count =
// batch). Pointers to device memory; T is float, double or a 16-bit float type. Returns the launch's error.
template <typename T, typename Index>
cudaError_t launch_apply_token_bitmask(T* logits, int64_t row_stride, int64_t stride, int64_t batch,
                                       const int32_t* bitmask, int64_t bitmask_row_stride, int64_t word_stride,
                                       const Index* indices, int64_t count, int64_t vocab_size, cudaStream_t stream) {
  if (count == 0 || vocab_size == 0) return cudaSuccess;
  const dim3 grid(grid_size(vocab_size, token_bitmask_cuda::kThreads), grid_size(count, 1));
  token_bitmask_cuda::apply_token_bitmask_kernel<T, Index><<<grid, token_bitmask_cuda::kThreads, 0, stream>>>(
      ScoreRows<T>{logits, row_stride, stride}, batch, reinterpret_cast<const uint32_t*>(bitmask), bitmask_row_stride,
      word_stride, indices, count, vocab_size);
  return cudaGetLastError();
}

}  // namespace pysample
