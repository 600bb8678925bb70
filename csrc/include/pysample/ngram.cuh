// CUDA kernels of the n-gram ban and the sequence bias, the CPU kernels' semantics through ngram.h. Framework-free,
// no host sync: input the CPU rejects is clamped or skipped. The bias sums each token's sequences in order (a stable
// CUB sort by last token, one thread per group), since the CPU's rounded partial sums depend on the order.
// Design: docs/design.md#n-gram-ban-and-sequence-bias.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cub/device/device_radix_sort.cuh>
#include <limits>

#include "pysample/ngram.h"
#include "pysample/score_rows.cuh"

namespace pysample {
namespace ngram_cuda {

constexpr int kThreads = 256;
constexpr size_t kWorkspaceAlignment = 256;

// One block per row of scores (rows stride by the grid). Scores row r reads ids row r and, with `sources`, source
// row r / rows_per_source; without, its own ids are its source.
template <typename T, typename Id>
__global__ void __launch_bounds__(kThreads)
    no_repeat_ngram_kernel(ScoreRows<T> scores, int64_t batch, int64_t vocab, const Id* ids, int64_t length,
                           const Id* sources, int64_t rows_per_source, int64_t source_width, NgramParams params) {
  const T banned = static_cast<T>(-std::numeric_limits<float>::infinity());
  for (int64_t row = blockIdx.x; row < batch; row += gridDim.x) {
    const int64_t n = params.ngram_size.at(row);
    const int64_t row_length = params.lengths != nullptr ? clamp_length(params.lengths[row], length) : length;
    if (n <= 0 || row_length < n - 1) continue;
    const Id* row_ids = ids + row * length;
    const Id* prefix = row_ids + row_length - (n - 1);
    const Id* source = row_ids;
    int64_t source_length = row_length;
    if (sources != nullptr) {
      const int64_t source_row = row / rows_per_source;
      source = sources + source_row * source_width;
      source_length = params.source_lengths != nullptr ? clamp_length(params.source_lengths[source_row], source_width)
                                                       : source_width;
    }
    for (int64_t start = threadIdx.x; start + n <= source_length; start += kThreads) {
      const int64_t id = window_ban(source, source_length, start, prefix, n, vocab);
      if (id >= 0) scores.at(row, id) = banned;
    }
  }
}

// Each sequence's sort key, its last token, or `vocab` (after every token) when the sequence is malformed; and its
// index, which the sort carries along.
// (A template only so that the header can be included by several files: nvcc ignores `inline` on a kernel.)
template <typename Key, typename Index>
__global__ void __launch_bounds__(kThreads)
    sequence_keys_kernel(const int64_t* tokens, int64_t num_tokens, const int64_t* offsets, int64_t count,
                         int64_t vocab, Key* keys, Index* order) {
  for (int64_t s = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; s < count;
       s += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t begin = offsets[s], end = offsets[s + 1];
    const int64_t last = begin >= 0 && end > begin && end <= num_tokens ? tokens[end - 1] : -1;
    keys[s] = static_cast<Key>(last >= 0 && last < vocab ? last : vocab);
    order[s] = static_cast<Index>(s);
  }
}

// One block per row of scores (rows stride by the grid); its threads over the sorted sequences, the thread at the
// start of a token's group doing the whole group.
template <typename T, typename Id>
__global__ void __launch_bounds__(kThreads)
    bias_sequences_kernel(ScoreRows<T> scores, int64_t batch, const Id* ids, int64_t length, const int64_t* lengths,
                          const int64_t* tokens, const int64_t* offsets, const float* biases, int64_t count,
                          uint32_t vocab, const uint32_t* sorted_keys, const int64_t* sorted_order) {
  for (int64_t row = blockIdx.x; row < batch; row += gridDim.x) {
    const Id* row_ids = ids + row * length;
    const int64_t row_length = lengths != nullptr ? clamp_length(lengths[row], length) : length;
    for (int64_t group = threadIdx.x; group < count; group += kThreads) {
      const uint32_t token = sorted_keys[group];
      if (token >= vocab || (group > 0 && sorted_keys[group - 1] == token)) continue;  // malformed, or not a start
      computed_t<T> sum = 0;
      bool matched = false;
      for (int64_t i = group; i < count && sorted_keys[i] == token; ++i) {
        const int64_t s = sorted_order[i];
        if (!ends_with(row_ids, row_length, tokens + offsets[s], offsets[s + 1] - offsets[s] - 1)) continue;
        sum = add_bias<T>(sum, biases[s]);
        matched = true;
      }
      if (matched) {
        T& score = scores.at(row, token);
        score = static_cast<T>(static_cast<computed_t<T>>(score) + sum);
      }
    }
  }
}

inline size_t aligned_bytes(size_t bytes) {
  return (bytes + kWorkspaceAlignment - 1) / kWorkspaceAlignment * kWorkspaceAlignment;
}

// The workspace of the sequence bias, in this order: the sequences' keys and indices before the sort, the same after
// it, then CUB's scratch; every part aligned.
struct SequenceSort {
  uint32_t* keys_in = nullptr;
  int64_t* order_in = nullptr;
  uint32_t* keys = nullptr;
  int64_t* order = nullptr;
  void* scratch = nullptr;
  size_t scratch_bytes = 0;

  static size_t arrays_bytes(int64_t count) {
    return 2 * (aligned_bytes(count * sizeof(uint32_t)) + aligned_bytes(count * sizeof(int64_t)));
  }

  SequenceSort() = default;
  SequenceSort(void* workspace, size_t workspace_bytes, int64_t count) {
    char* part = static_cast<char*>(workspace);
    keys_in = reinterpret_cast<uint32_t*>(part);
    part += aligned_bytes(count * sizeof(uint32_t));
    order_in = reinterpret_cast<int64_t*>(part);
    part += aligned_bytes(count * sizeof(int64_t));
    keys = reinterpret_cast<uint32_t*>(part);
    part += aligned_bytes(count * sizeof(uint32_t));
    order = reinterpret_cast<int64_t*>(part);
    scratch = part + aligned_bytes(count * sizeof(int64_t));
    scratch_bytes = workspace_bytes - arrays_bytes(count);
  }

  // Sorts the keys and indices by key, stably; without a scratch, only sets the scratch's size. Keys are at most
  // `vocab`, so only the bits that can differ are sorted.
  cudaError_t sort(int64_t count, int64_t vocab, cudaStream_t stream) {
    int key_bits = 1;
    while ((int64_t{1} << key_bits) <= vocab) ++key_bits;
    return cub::DeviceRadixSort::SortPairs(scratch, scratch_bytes, keys_in, keys, order_in, order, count, 0, key_bits,
                                           stream);
  }
};

}  // namespace ngram_cuda

// Bans repeated n-grams in `batch` rows of `vocab` scores (strides row_stride and stride, in elements) from `length`
// ids per row, contiguous. `sources` (sources_batch rows of source_width ids, contiguous; sources_batch divides
// batch) is the row's source of n-grams, or null for the row's own ids (sources without ids ban nothing: launch
// nothing for them, since their data pointer may be null). Per-row values in `params` point to device memory. T is
// float, double or a 16-bit float type. Returns the launch's error.
template <typename T, typename Id>
cudaError_t launch_no_repeat_ngram(T* scores, int64_t row_stride, int64_t stride, int64_t batch, int64_t vocab,
                                   const Id* ids, int64_t length, const Id* sources, int64_t sources_batch,
                                   int64_t source_width, const NgramParams& params, cudaStream_t stream) {
  if (batch == 0 || vocab == 0) return cudaSuccess;
  const int64_t rows_per_source = sources != nullptr ? batch / sources_batch : 1;
  ngram_cuda::no_repeat_ngram_kernel<T, Id><<<grid_size(batch, 1), ngram_cuda::kThreads, 0, stream>>>(
      ScoreRows<T>{scores, row_stride, stride}, batch, vocab, ids, length, sources, rows_per_source, source_width,
      params);
  return cudaGetLastError();
}

// The size of launch_bias_sequences' workspace for `count` sequences and `vocab` tokens. Returns CUB's error.
inline cudaError_t bias_sequences_workspace_bytes(int64_t count, int64_t vocab, size_t& bytes) {
  ngram_cuda::SequenceSort sizing;
  const cudaError_t error = sizing.sort(count, vocab, nullptr);
  bytes = ngram_cuda::SequenceSort::arrays_bytes(count) + sizing.scratch_bytes;
  return error;
}

// Adds the biases of the `count` sequences that end a row's ids to `batch` rows of `vocab` scores (strides
// row_stride and stride, in elements); ids (batch, length) contiguous, row r valid up to lengths[r] (or `length`
// when `lengths` is null). Sequence s is tokens[offsets[s], offsets[s + 1]) with bias biases[s]; `num_tokens`
// tokens. Every pointer is to device memory; `workspace` holds bias_sequences_workspace_bytes(count, vocab) bytes,
// 256-byte aligned. T is float, double or a 16-bit float type. Returns the first error.
template <typename T, typename Id>
cudaError_t launch_bias_sequences(T* scores, int64_t row_stride, int64_t stride, int64_t batch, int64_t vocab,
                                  const Id* ids, int64_t length, const int64_t* lengths, const int64_t* tokens,
                                  int64_t num_tokens, const int64_t* offsets, const float* biases, int64_t count,
                                  void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  if (batch == 0 || vocab == 0 || count == 0) return cudaSuccess;
  if (vocab > std::numeric_limits<uint32_t>::max()) return cudaErrorInvalidValue;  // keys, `vocab` too, are 32-bit
  ngram_cuda::SequenceSort sequences(workspace, workspace_bytes, count);
  ngram_cuda::sequence_keys_kernel<<<grid_size(count, ngram_cuda::kThreads), ngram_cuda::kThreads, 0, stream>>>(
      tokens, num_tokens, offsets, count, vocab, sequences.keys_in, sequences.order_in);
  cudaError_t error = cudaGetLastError();
  if (error == cudaSuccess) error = sequences.sort(count, vocab, stream);
  if (error != cudaSuccess) return error;
  ngram_cuda::bias_sequences_kernel<T, Id><<<grid_size(batch, 1), ngram_cuda::kThreads, 0, stream>>>(
      ScoreRows<T>{scores, row_stride, stride}, batch, ids, length, lengths, tokens, offsets, biases, count,
      static_cast<uint32_t>(vocab), sequences.keys, sequences.order);
  return cudaGetLastError();
}

}  // namespace pysample
