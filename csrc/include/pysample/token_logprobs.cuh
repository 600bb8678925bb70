// CUDA kernel of token_logprobs, the CPU kernel's results through token_logprobs.h. One thread block per row, the row
// read from global memory (L2) by each pass: the max and the sum of exps by block reductions, a token's rank by a
// block count, the top n by row_select's radix select of the n-th composite, then the tokens at or above it gathered
// in shared memory and put in order. No allocation, no host sync (graph-capturable). Design:
// docs/design.md#token-logprobs.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cub/block/block_reduce.cuh>
#include <limits>

#include "pysample/row_select.cuh"
#include "pysample/score_rows.cuh"
#include "pysample/token_logprobs.h"

namespace pysample {
namespace logprobs_cuda {

using row_select::Bin;
using row_select::DigitCrossing;
using row_select::Goal;
using row_select::kDigits;
using row_select::kInf;
using row_select::kThreads;

// A row as logits.float(), and its tokens' top composites (what row_select::select reads).
template <typename T>
struct RowView {
  const T* row;
  int64_t stride;
  int32_t vocab;
  int first_tie_shift;  // the highest 8-bit digit of a token id that can be nonzero

  __device__ float value(int32_t i) const { return static_cast<float>(row[i * stride]); }
  __device__ uint64_t composite(int32_t i) const { return top_composite(ordered_key(value(i)), i); }
};

struct Shared : row_select::SelectShared {
  uint64_t top[kMaxLogprobsTop];  // the top composites, in no order
  int taken;
  float max;
  int has_nan;
  double sum;
  int count;
  union {
    typename cub::BlockReduce<row_select::Totals, kThreads>::TempStorage totals;
    typename cub::BlockReduce<double, kThreads>::TempStorage sum;
    typename cub::BlockReduce<int, kThreads>::TempStorage count;
    typename row_select::BlockScan<Bin>::TempStorage bin_scan;
  } temp;
};

// An int sum that cub does not turn into redux.sync (its Sum of ints does on sm_80, which GPGPU-Sim cannot run).
struct AddCounts {
  __device__ int operator()(int a, int b) const { return a + b; }
};

// The primitives row_select::select needs, on counts only (no weights): a digit's histogram and the lone token.
class CountBlock {
 public:
  __device__ explicit CountBlock(Shared& shared) : shared_(shared) {}

  template <typename View>
  __device__ DigitCrossing cross(const View& view, uint64_t prefix, uint64_t mask, int shift, const Goal& goal,
                                 const Bin& before) {
    shared_.clear_histogram();
    for (int32_t i = threadIdx.x; i < view.vocab; i += kThreads) {
      const uint64_t c = view.composite(i);
      if ((c & mask) == prefix) atomicAdd(&shared_.bin_count[static_cast<uint32_t>(c >> shift) & (kDigits - 1)], 1);
    }
    return shared_.crossing(goal, before, shared_.temp.bin_scan);
  }

  template <typename View>
  __device__ uint64_t find_lone(const View& view, uint64_t prefix, uint64_t mask) {
    for (int32_t i = threadIdx.x; i < view.vocab; i += kThreads) {
      const uint64_t c = view.composite(i);
      if ((c & mask) == prefix) shared_.lone_composite = c;
    }
    __syncthreads();
    return shared_.lone_composite;
  }

 private:
  Shared& shared_;
};

// One block per row (rows stride by the grid). A token outside [0, vocab) (the CPU raises unless it is -1) gets a
// NaN log-probability and rank 0, and is never read.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    token_logprobs_kernel(const T* __restrict__ logits, int64_t row_stride, int64_t stride, int64_t batch,
                          int32_t vocab, const int64_t* __restrict__ tokens, int64_t n, int num_top,
                          float* __restrict__ logprobs, int64_t* __restrict__ ranks, int64_t* __restrict__ top_ids,
                          float* __restrict__ top_logprobs) {
  __shared__ Shared shared;
  for (int64_t r = blockIdx.x; r < batch; r += gridDim.x) {
    const RowView<T> view{logits + r * row_stride, stride, vocab, row_select::first_tie_shift(vocab)};
    row_select::Totals mine = row_select::no_totals();
    for (int32_t i = threadIdx.x; i < vocab; i += kThreads) {
      const float x = view.value(i);
      mine.max = fmaxf(mine.max, x);  // NaN ignored
      mine.has_nan |= x != x;
    }
    const row_select::Totals all =
        cub::BlockReduce<row_select::Totals, kThreads>(shared.temp.totals).Reduce(mine, row_select::CombineTotals{});
    if (threadIdx.x == 0) shared.max = all.max, shared.has_nan = all.has_nan;
    __syncthreads();
    const float max = shared.max;
    const bool has_nan = shared.has_nan != 0;
    double sum = 0.0;
    if (!has_nan && max > -kInf && max < kInf) {
      double partial = 0.0;  // in double, as the CPU
      for (int32_t i = threadIdx.x; i < vocab; i += kThreads) partial += exp_nonpos(view.value(i) - max);
      const double total = cub::BlockReduce<double, kThreads>(shared.temp.sum).Sum(partial);
      if (threadIdx.x == 0) shared.sum = total;
      __syncthreads();
      sum = shared.sum;
    }
    const float log_sum = row_log_sum(max, has_nan, sum);
    for (int64_t j = 0; j < n; ++j) {
      const int64_t token = tokens[r * n + j];
      float logprob = std::numeric_limits<float>::quiet_NaN();
      int rank = 0;
      if (token >= 0 && token < vocab) {  // the same for every thread
        const float x = view.value(static_cast<int32_t>(token));
        const uint32_t key = ordered_key(x);
        int count = 0;
        for (int32_t i = threadIdx.x; i < vocab; i += kThreads) count += ordered_key(view.value(i)) >= key;
        __syncthreads();  // the temp storage's last use is over
        rank = cub::BlockReduce<int, kThreads>(shared.temp.count).Reduce(count, AddCounts{});
        logprob = token_logprob(x, max, log_sum);
      }
      if (threadIdx.x == 0) logprobs[r * n + j] = logprob, ranks[r * n + j] = rank;
    }
    if (num_top > 0) {
      __syncthreads();
      CountBlock block(shared);
      // Composites all differ: exactly num_top tokens are at or below the num_top-th.
      const row_select::Selection last =
          row_select::select(block, view, Goal{false, static_cast<double>(num_top), false}, true);
      const uint64_t bound = last.found ? last.composite : ~uint64_t{0};
      if (threadIdx.x == 0) shared.taken = 0;
      __syncthreads();
      for (int32_t i = threadIdx.x; i < vocab; i += kThreads) {
        const uint64_t c = view.composite(i);
        if (c > bound) continue;
        const int slot = atomicAdd(&shared.taken, 1);
        if (slot < num_top) shared.top[slot] = c;
      }
      __syncthreads();
      const int taken = shared.taken < num_top ? shared.taken : num_top;
      if (static_cast<int>(threadIdx.x) < taken) {
        const uint64_t c = shared.top[threadIdx.x];
        int position = 0;  // composites below this one: its place in the order, whatever the slots' order
        for (int k = 0; k < taken; ++k) position += shared.top[k] < c;
        const int32_t id = static_cast<int32_t>(composite_id(c));
        top_ids[r * num_top + position] = id;
        top_logprobs[r * num_top + position] = token_logprob(view.value(id), max, log_sum);
      }
    }
    __syncthreads();  // the next row writes the shared values again
  }
}

}  // namespace logprobs_cuda

// token_logprobs of `batch` rows of `vocab` logits (strides row_stride and stride, in elements) for the tokens (batch,
// n) int64, contiguous: into logprobs and ranks (batch, n) and top_ids and top_logprobs (batch, num_top), num_top in
// [0, min(kMaxLogprobsTop, vocab)]. Every pointer is device memory; T is float, double or a 16-bit float type
// convertible to float. Returns the launch's error.
template <typename T>
cudaError_t launch_token_logprobs(const T* logits, int64_t row_stride, int64_t stride, int64_t batch, int64_t vocab,
                                  const int64_t* tokens, int64_t n, int64_t num_top, float* logprobs, int64_t* ranks,
                                  int64_t* top_ids, float* top_logprobs, cudaStream_t stream) {
  if (batch == 0) return cudaSuccess;
  if (vocab > std::numeric_limits<int32_t>::max() || num_top < 0 || num_top > kMaxLogprobsTop || num_top > vocab) {
    return cudaErrorInvalidValue;
  }
  logprobs_cuda::token_logprobs_kernel<T><<<grid_size(batch, 1), logprobs_cuda::kThreads, 0, stream>>>(
      logits, row_stride, stride, batch, static_cast<int32_t>(vocab), tokens, n, static_cast<int>(num_top), logprobs,
      ranks, top_ids, top_logprobs);
  return cudaGetLastError();
}

}  // namespace pysample
