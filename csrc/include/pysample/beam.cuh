// CUDA kernels of the fused beam search step: the CPU kernel's candidates in its order, through beam.h. No host sync
// and no device assert (graph-capturable). Two launches: each row's best min(K, vocab) ranks by radix select, then
// the batch item's candidates ranked against each other. Radix select after FlashInfer's RadixTopK, vLLM and
// PyTorch; shared atomics after NVIDIA's warp aggregation. Design: docs/design.md#beam-search-step.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "pysample/beam.h"
#include "pysample/score_rows.cuh"

namespace pysample {
namespace beam_cuda {

constexpr int kThreads = 1024;  // per row in the selection
constexpr int kWarps = kThreads / 32;
constexpr int kMergeThreads = 256;  // candidates per block in the merge, and the tile of candidates compared against
constexpr int kDigitBits = 8;
constexpr int kDigits = 1 << kDigitBits;
constexpr int kBinsPerLane = kDigits / 32;
constexpr unsigned kFullWarp = 0xFFFFFFFFu;
constexpr float kInf = std::numeric_limits<float>::infinity();

// What the scores of a row need besides its logits and running score (max and log_sum unused without normalize).
struct RowStats {
  float max;
  float log_sum;
};

// A row's tokens as candidates: their scores and ranks (beam.h), from the logits.
template <typename T>
struct RowCandidates {
  const T* logits;
  RowStats stats;
  float running;
  bool normalize;
  uint32_t first_index;  // flat index of token 0: beam * vocab

  __device__ float score(int32_t token) const {
    return beam_score(static_cast<float>(logits[token]), stats.max, stats.log_sum, running, normalize);
  }
  __device__ uint64_t rank(int32_t token) const {
    return candidate_rank(score(token), first_index + static_cast<uint32_t>(token));
  }
};

struct SelectShared {
  int bin_count[kDigits];
  float warp_max[kWarps];
  double warp_sum[kWarps];
  int crossing_digit;
  int crossing_above;  // candidates in the bins above the crossing digit
  int crossing_count;  // candidates in the crossing digit's bin
  int taken;           // ranks written to the row's slots so far
};

// `value` combined by `op` over the block; every thread gets the same result (the partials are combined in one order).
// Returns once every thread has read the warps' partials, so `warp_values` can be written again.
template <typename V, typename Op>
__device__ V block_reduce(V value, Op op, V* warp_values) {
  for (int offset = 16; offset > 0; offset /= 2) value = op(value, __shfl_xor_sync(kFullWarp, value, offset));
  if (threadIdx.x % 32 == 0) warp_values[threadIdx.x / 32] = value;
  __syncthreads();
  V total = warp_values[0];
  for (int w = 1; w < kWarps; ++w) total = op(total, warp_values[w]);
  __syncthreads();
  return total;
}

// The row's max (NaN as soon as one value is NaN) and log(sum exp(x - max)), NaN where torch's log_softmax is NaN
// throughout (a NaN, a +inf, or only -inf): no exp is needed then. Like the CPU, the sum runs in float per thread and
// is combined in double.
template <typename T>
__device__ RowStats row_stats(SelectShared& shared, const T* logits, int32_t vocab) {
  float max = -kInf;
  for (int32_t i = threadIdx.x; i < vocab; i += kThreads) max = nan_max(max, static_cast<float>(logits[i]));
  max = block_reduce(max, [](float a, float b) { return nan_max(a, b); }, shared.warp_max);
  if (!(max > -kInf && max < kInf)) return {max, std::numeric_limits<float>::quiet_NaN()};
  float sum = 0.0f;
  for (int32_t i = threadIdx.x; i < vocab; i += kThreads) sum += exp_nonpos(static_cast<float>(logits[i]) - max);
  const double total =
      block_reduce(static_cast<double>(sum), [](double a, double b) { return a + b; }, shared.warp_sum);
  return {max, static_cast<float>(log(total))};
}

// Warp 0 finds the digit at which the count of candidates from the top (digit 255 down) reaches `wanted`: each lane
// holds 8 consecutive bins, a warp scan gives the count above each lane's bins, and the lane where the count is
// reached walks its own. The histogram holds at least `wanted` candidates, so the digit exists and its bin is not
// empty.
__device__ inline void find_crossing(SelectShared& shared, int wanted) {
  const int lane = static_cast<int>(threadIdx.x);
  int counts[kBinsPerLane];
  int lane_count = 0;
  for (int j = 0; j < kBinsPerLane; ++j) {
    counts[j] = shared.bin_count[kDigits - 1 - lane * kBinsPerLane - j];
    lane_count += counts[j];
  }
  int through = lane_count;  // candidates in this lane's bins and every bin above them
  for (int offset = 1; offset < 32; offset *= 2) {
    const int above = __shfl_up_sync(kFullWarp, through, offset);
    if (lane >= offset) through += above;
  }
  const unsigned reached = __ballot_sync(kFullWarp, through >= wanted);
  if (lane != __ffs(reached) - 1) return;
  int above = through - lane_count;
  for (int j = 0; j < kBinsPerLane; ++j) {
    if (above + counts[j] >= wanted) {
      shared.crossing_digit = kDigits - 1 - lane * kBinsPerLane - j;
      shared.crossing_above = above;
      shared.crossing_count = counts[j];
      return;
    }
    above += counts[j];
  }
}

// The smallest of the row's `wanted` (< vocab) largest ranks, its digits below the last one read set to 0: the row's
// best `wanted` ranks are exactly those >= the result.
template <typename T>
__device__ uint64_t select_threshold(SelectShared& shared, const RowCandidates<T>& row, int32_t vocab, int wanted) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  uint64_t prefix = 0;  // the digits fixed so far
  uint64_t mask = 0;    // and where they lie
  for (int shift = 64 - kDigitBits;; shift -= kDigitBits) {
    for (int d = threadIdx.x; d < kDigits; d += kThreads) shared.bin_count[d] = 0;
    __syncthreads();
    // Every lane of a warp runs the same iterations: the lanes that share a digit add to its bin once, together
    // (a row's ranks crowd into a few digits, and shared atomics on one address serialize).
    for (int32_t base = 0; base < vocab; base += kThreads) {
      const int32_t i = base + static_cast<int32_t>(threadIdx.x);
      bool candidate = false;
      unsigned digit = 0;
      if (i < vocab) {
        const uint64_t rank = row.rank(i);
        candidate = (rank & mask) == prefix;
        digit = static_cast<unsigned>(rank >> shift) & (kDigits - 1);
      }
      const unsigned peers = __match_any_sync(kFullWarp, candidate ? digit : kDigits + lane);
      if (candidate && (peers & ((1u << lane) - 1)) == 0) atomicAdd(&shared.bin_count[digit], __popc(peers));
    }
    __syncthreads();
    if (threadIdx.x < 32) find_crossing(shared, wanted);
    __syncthreads();
    wanted -= shared.crossing_above;
    prefix |= static_cast<uint64_t>(shared.crossing_digit) << shift;
    mask |= static_cast<uint64_t>(kDigits - 1) << shift;
    // Ranks differ, so at the last digit the crossing bin holds one candidate, the one wanted.
    if (shared.crossing_count == wanted || shift == 0) return prefix;
  }
}

// One block per row (rows stride by the grid): the row's stats and its best `per_row` ranks into
// candidates[row * per_row, (row + 1) * per_row).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    row_candidates_kernel(const T* __restrict__ logits, int64_t row_stride, int64_t rows, int32_t vocab,
                          int32_t num_beams, const float* __restrict__ beam_scores, bool normalize, int32_t per_row,
                          uint64_t* __restrict__ candidates, RowStats* __restrict__ stats) {
  __shared__ SelectShared shared;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    __syncthreads();  // the previous row's shared values are read
    if (threadIdx.x == 0) shared.taken = 0;
    const T* x = logits + r * row_stride;
    const RowStats st = normalize ? row_stats(shared, x, vocab) : RowStats{0.0f, 0.0f};
    if (threadIdx.x == 0) stats[r] = st;
    const RowCandidates<T> row{x, st, beam_scores[r], normalize, static_cast<uint32_t>(r % num_beams * vocab)};
    // Every token is a candidate when per_row == vocab.
    const uint64_t threshold = per_row < vocab ? select_threshold(shared, row, vocab, per_row) : 0;
    __syncthreads();  // `taken` is 0
    uint64_t* slots = candidates + r * per_row;
    for (int32_t i = threadIdx.x; i < vocab; i += kThreads) {
      const uint64_t rank = row.rank(i);
      if (rank < threshold) continue;
      const int slot = atomicAdd(&shared.taken, 1);
      if (slot < per_row) slots[slot] = rank;  // exactly per_row ranks pass; the test keeps the slots in bounds anyway
    }
  }
}

// Blocks of kMergeThreads candidates of a batch item in x, batch items in y (both stride by the grid). Each thread
// counts the item's candidates above its own, a tile at a time from shared memory.
template <typename T>
__global__ void __launch_bounds__(kMergeThreads)
    merge_candidates_kernel(const T* __restrict__ logits, int64_t row_stride, int64_t batch, int32_t vocab,
                            int32_t num_beams, const float* __restrict__ beam_scores, bool normalize, int32_t per_row,
                            const uint64_t* __restrict__ candidates, const RowStats* __restrict__ stats,
                            int64_t num_candidates, float* __restrict__ scores, int64_t* __restrict__ tokens,
                            int64_t* __restrict__ beams) {
  __shared__ uint64_t tile[kMergeThreads];
  const int64_t count = static_cast<int64_t>(num_beams) * per_row;  // the batch item's candidates
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const uint64_t* item = candidates + b * count;
    for (int64_t first = blockIdx.x * int64_t{kMergeThreads}; first < count;
         first += int64_t{gridDim.x} * kMergeThreads) {
      const int64_t mine = first + threadIdx.x;
      const uint64_t rank = mine < count ? item[mine] : 0;
      int64_t position = 0;  // candidates ranked above this one
      for (int64_t start = 0; start < count; start += kMergeThreads) {
        __syncthreads();  // the previous tile is read
        if (start + threadIdx.x < count) tile[threadIdx.x] = item[start + threadIdx.x];
        __syncthreads();
        const int in_tile = static_cast<int>(std::min<int64_t>(kMergeThreads, count - start));
        for (int j = 0; j < in_tile; ++j) position += tile[j] > rank;
      }
      if (mine >= count || position >= num_candidates) continue;
      const uint32_t flat = rank_flat_index(rank);
      const int32_t beam = static_cast<int32_t>(flat / static_cast<uint32_t>(vocab));
      const int32_t token = static_cast<int32_t>(flat % static_cast<uint32_t>(vocab));
      if (beam >= num_beams) continue;  // cannot happen (the ranks come from kernel 1); keeps the reads in bounds
      const int64_t r = b * num_beams + beam;
      const RowCandidates<T> row{logits + r * row_stride, stats[r], beam_scores[r], normalize, 0};
      const int64_t out = b * num_candidates + position;
      scores[out] = row.score(token);
      tokens[out] = token;
      beams[out] = beam;
    }
  }
}

}  // namespace beam_cuda

// The int64 values of device memory that launch_beam_search_step needs as its workspace: each row's best
// min(num_candidates, vocab) ranks, and its RowStats.
inline int64_t beam_search_workspace_size(int64_t rows, int64_t vocab, int64_t num_candidates) {
  static_assert(sizeof(beam_cuda::RowStats) == sizeof(int64_t));
  return rows * (std::min(num_candidates, vocab) + 1);
}

// One beam search step over logits (batch * num_beams rows of `vocab`, row stride `row_stride` elements, unit stride
// along the vocabulary) and the running beam scores (batch * num_beams floats): the best num_candidates of each batch
// item's num_beams * vocab continuations, best first, into scores, tokens and beams (batch, num_candidates each).
// With `normalize` the logits go through log_softmax first (pysample/beam.h). Every pointer is device memory;
// `workspace` holds beam_search_workspace_size(batch * num_beams, vocab, num_candidates) int64. T is float or a
// 16-bit float type convertible to float. Returns the first launch error.
template <typename T>
cudaError_t launch_beam_search_step(const T* logits, int64_t row_stride, int64_t batch, int64_t num_beams,
                                    int64_t vocab, const float* beam_scores, bool normalize, int64_t num_candidates,
                                    int64_t* workspace, float* scores, int64_t* tokens, int64_t* beams,
                                    cudaStream_t stream) {
  using namespace beam_cuda;
  if (batch == 0) return cudaSuccess;
  // Flat indices beam * vocab + token are 32-bit (beam.h).
  if (num_beams < 1 || vocab < 1 || num_beams * vocab > std::numeric_limits<int32_t>::max() || num_candidates < 1 ||
      num_candidates > num_beams * vocab) {
    return cudaErrorInvalidValue;
  }
  const int64_t rows = batch * num_beams;
  const int32_t per_row = static_cast<int32_t>(std::min(num_candidates, vocab));
  auto* candidates = reinterpret_cast<uint64_t*>(workspace);
  auto* stats = reinterpret_cast<RowStats*>(workspace + rows * per_row);
  row_candidates_kernel<T><<<grid_size(rows, 1), kThreads, 0, stream>>>(
      logits, row_stride, rows, static_cast<int32_t>(vocab), static_cast<int32_t>(num_beams), beam_scores, normalize,
      per_row, candidates, stats);
  cudaError_t error = cudaGetLastError();
  if (error != cudaSuccess) return error;
  const dim3 grid(grid_size(num_beams * per_row, kMergeThreads), grid_size(batch, 1));
  merge_candidates_kernel<T><<<grid, kMergeThreads, 0, stream>>>(
      logits, row_stride, batch, static_cast<int32_t>(vocab), static_cast<int32_t>(num_beams), beam_scores, normalize,
      per_row, candidates, stats, num_candidates, scores, tokens, beams);
  return cudaGetLastError();
}

}  // namespace pysample
