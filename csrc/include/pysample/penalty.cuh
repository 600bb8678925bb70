// CUDA kernels of the penalties, the CPU kernels' semantics through penalty.h. Framework-free, no allocation (the
// table is the caller's), no host sync: input the CPU rejects is ignored or clamped. Entries are built with atomics
// and taken by atomic exchange, so each distinct token is penalised once; division as torch on CUDA (reciprocal).
// Design: docs/design.md#penalties.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "pysample/penalty.h"
#include "pysample/score_rows.cuh"

namespace pysample {
namespace penalty_cuda {

constexpr int kThreads = 256;

// float16 and bfloat16 scores are penalised in float32 and rounded once, float64 ones in double, as on the CPU.
template <typename T>
__device__ void penalize_score(T& score, uint32_t entry, const RowPenalty<computed_t<T>>& penalty) {
  score = static_cast<T>(penalize<true>(static_cast<computed_t<T>>(score), entry, penalty));
}

// row_penalty, except that a per-row repetition the CPU rejects (< 0 or NaN, compared in double as the CPU does)
// leaves the row unpenalised by repetition.
template <typename T>
__device__ RowPenalty<T> usable_row_penalty(const PenaltyParams& params, int64_t row) {
  RowPenalty<T> penalty = row_penalty<T>(params, row);
  penalty.has_repetition = penalty.has_repetition && params.repetition.at(row) >= 0;
  return penalty;
}

// add_contribution on an entry that other threads update at the same time.
__device__ inline void add_contribution_atomic(uint32_t* entry, uint32_t contribution) {
  if (contribution == kPromptSeen) {
    atomicOr(entry, kPromptSeen);
  } else {
    atomicAdd(entry, contribution);
  }
}

// Calls visit(position, id) for the positions first + offset, first + offset + step, ... of a row's history whose
// id is in [0, vocab). A history_start < 0 counts as 0 and one past the length visits nothing: every position read
// is in [0, length).
template <typename Id, typename Visit>
__device__ void for_each_history_id(const Id* row_ids, int64_t length, int64_t history_start, int64_t vocab,
                                    int64_t offset, int64_t step, Visit visit) {
  const int64_t first = std::min(std::max<int64_t>(history_start, 0), length);
  for (int64_t pos = first + offset; pos < length; pos += step) {
    const int64_t id = static_cast<int64_t>(row_ids[pos]);
    if (id >= 0 && id < vocab) visit(pos, id);
  }
}

// The slot of a row in a counts table, or -1 when it is out of range (the CPU raises; here the row is left alone).
__device__ inline int64_t slot_of(const int64_t* slots, int64_t row, int64_t num_slots) {
  const int64_t slot = slots != nullptr ? slots[row] : row;
  return slot >= 0 && slot < num_slots ? slot : -1;
}

// One block per row of scores (rows stride by the grid); scores row r reads ids row r / rows_per_ids and its own
// zeroed table row.
template <typename T, typename Id>
__global__ void __launch_bounds__(kThreads)
    apply_penalties_kernel(ScoreRows<T> scores, int64_t batch, int64_t vocab, const Id* ids, int64_t rows_per_ids,
                           int64_t length, PenaltyParams params, HistoryScope scope, uint32_t* tables) {
  for (int64_t row = blockIdx.x; row < batch; row += gridDim.x) {
    const int64_t ids_row = row / rows_per_ids;
    const Id* row_ids = ids + ids_row * length;
    const int64_t history_start = scope.history_start.at(ids_row);
    const int64_t output_start = scope.output_start.at(ids_row);
    uint32_t* entries = tables + row * vocab;
    for_each_history_id(row_ids, length, history_start, vocab, threadIdx.x, kThreads, [&](int64_t pos, int64_t id) {
      add_contribution_atomic(&entries[id], position_contribution(pos, history_start, output_start));
    });
    // Waits for the block's atomics of pass 1, which the barrier makes visible to the whole block, so that pass 2
    // reads complete entries. Other blocks never touch this row's table or scores.
    __syncthreads();
    const auto penalty = usable_row_penalty<computed_t<T>>(params, row);
    for_each_history_id(row_ids, length, history_start, vocab, threadIdx.x, kThreads, [&](int64_t, int64_t id) {
      const uint32_t entry = atomicExch(&entries[id], 0u);  // the token's first visitor takes its entry
      if (entry != 0) penalize_score(scores.at(row, id), entry, penalty);
    });
  }
}

// Rows of ids in y, their positions in x. Rows that share a slot add to it together.
template <typename Id>
__global__ void __launch_bounds__(kThreads)
    count_tokens_kernel(uint32_t* counts, uint32_t* seen, int64_t num_slots, int64_t vocab, const Id* ids,
                        int64_t batch, int64_t length, const int64_t* slots, HistoryScope scope) {
  const int64_t offset = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t step = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t row = blockIdx.y; row < batch; row += gridDim.y) {
    const int64_t slot = slot_of(slots, row, num_slots);
    if (slot < 0) continue;
    uint32_t* entries = counts + slot * vocab;
    uint32_t* seen_row = seen + slot * seen_words(vocab);
    const int64_t history_start = scope.history_start.at(row);
    const int64_t output_start = scope.output_start.at(row);
    for_each_history_id(ids + row * length, length, history_start, vocab, offset, step, [&](int64_t pos, int64_t id) {
      add_contribution_atomic(&entries[id], position_contribution(pos, history_start, output_start));
      atomicOr(&seen_row[id / kSeenBitsPerWord], seen_bit(id));
    });
  }
}

// Rows of scores in y, their tokens in x; a row with the repetition penalty alone reads the seen bits.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    apply_penalty_counts_kernel(ScoreRows<T> scores, int64_t batch, int64_t vocab, const uint32_t* counts,
                                const uint32_t* seen, int64_t num_slots, const int64_t* slots, PenaltyParams params) {
  const int64_t offset = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t step = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t row = blockIdx.y; row < batch; row += gridDim.y) {
    const int64_t slot = slot_of(slots, row, num_slots);
    if (slot < 0) continue;
    const uint32_t* entries = counts + slot * vocab;
    const uint32_t* seen_row = seen + slot * seen_words(vocab);
    const auto penalty = usable_row_penalty<computed_t<T>>(params, row);
    const bool by_seen = only_seen_matters(penalty);
    for (int64_t token = offset; token < vocab; token += step) {
      const uint32_t entry = by_seen ? is_seen(seen_row, token) : entries[token];
      if (entry != 0) penalize_score(scores.at(row, token), entry, penalty);  // the others keep their exact bits
    }
  }
}

}  // namespace penalty_cuda

// Penalises `batch` rows of `vocab` scores (strides row_stride and stride, in elements) from `ids_batch` rows of
// `length` ids, contiguous; ids_batch divides batch, and scores row r reads ids row r / (batch / ids_batch).
// `tables` is a zeroed (batch, vocab) scratch, left zero again. Per-row parameters and starts (one per ids row)
// point to device memory. T is float, double or a 16-bit float type convertible to and from float. Returns the launch's
// error.
template <typename T, typename Id>
cudaError_t launch_apply_penalties(T* scores, int64_t row_stride, int64_t stride, int64_t batch, int64_t vocab,
                                   const Id* ids, int64_t ids_batch, int64_t length, const PenaltyParams& params,
                                   const HistoryScope& scope, uint32_t* tables, cudaStream_t stream) {
  if (batch == 0 || vocab == 0 || length == 0) return cudaSuccess;
  penalty_cuda::apply_penalties_kernel<T, Id><<<grid_size(batch, 1), penalty_cuda::kThreads, 0, stream>>>(
      ScoreRows<T>{scores, row_stride, stride}, batch, vocab, ids, batch / ids_batch, length, params, scope, tables);
  return cudaGetLastError();
}

// Adds `batch` rows of `length` ids (contiguous) to the counts table (num_slots, vocab) and marks them in the seen
// bits (num_slots, seen_words(vocab)), row r at slot slots[r] (or r when `slots` is null). Per-row starts and
// `slots` point to device memory. Returns the launch's error.
template <typename Id>
cudaError_t launch_count_tokens(uint32_t* counts, uint32_t* seen, int64_t num_slots, int64_t vocab, const Id* ids,
                                int64_t batch, int64_t length, const int64_t* slots, const HistoryScope& scope,
                                cudaStream_t stream) {
  if (batch == 0 || length == 0 || vocab == 0) return cudaSuccess;
  const dim3 grid(grid_size(length, penalty_cuda::kThreads), grid_size(batch, 1));
  penalty_cuda::count_tokens_kernel<Id>
      <<<grid, penalty_cuda::kThreads, 0, stream>>>(counts, seen, num_slots, vocab, ids, batch, length, slots, scope);
  return cudaGetLastError();
}

// Penalises `batch` rows of `vocab` scores (strides row_stride and stride, in elements) from the counts (num_slots,
// vocab) and seen bits (num_slots, seen_words(vocab)), row r reading slot slots[r] (or r when `slots` is null).
// Per-row parameters and `slots` point to device memory. T is float, double or a 16-bit float type convertible to and
// from float. Returns the launch's error.
template <typename T>
cudaError_t launch_apply_penalty_counts(T* scores, int64_t row_stride, int64_t stride, int64_t batch, int64_t vocab,
                                        const uint32_t* counts, const uint32_t* seen, int64_t num_slots,
                                        const int64_t* slots, const PenaltyParams& params, cudaStream_t stream) {
  if (batch == 0 || vocab == 0) return cudaSuccess;
  const dim3 grid(grid_size(vocab, penalty_cuda::kThreads), grid_size(batch, 1));
  penalty_cuda::apply_penalty_counts_kernel<T><<<grid, penalty_cuda::kThreads, 0, stream>>>(
      ScoreRows<T>{scores, row_stride, stride}, batch, vocab, counts, seen, num_slots, slots, params);
  return cudaGetLastError();
}

}  // namespace pysample
