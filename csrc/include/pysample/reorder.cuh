// CUDA kernels of the in-place beam reorder of KV caches, the CPU kernel's result through reorder.h's plan. No host
// sync: the plan is made on the device (one thread), then each thread replays it on its own 16-byte units, so no
// barrier is needed. A beam_idx[i] outside [0, rows) counts as i. Design: docs/design.md#beam-reorder-of-kv-caches.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "pysample/reorder.h"
#include "pysample/score_rows.cuh"

namespace pysample {

// One cache tensor: its data and where its rows' moved bytes lie (reorder.h).
struct CacheRows : RowLayout {
  uint8_t* data;
};

namespace reorder_cuda {

constexpr int kThreads = 256;
constexpr int kUnitsPerThread = 4;  // a thread's loads of one step, in flight together
constexpr int64_t kTileUnits = int64_t{kThreads} * kUnitsPerThread;  // a thread block's units of a span at a time
// The tensors of one copy launch, passed by value: kernel parameters take up to 32764 bytes on sm_70 and later with
// CUDA 12.1 and later, and need no copy to the device before the launch.
constexpr int kMaxCachesPerLaunch = 256;
// Rows whose plan arrays (beam_idx and plan_reorder's work: 4 int64 per row) fit in the 48 KiB of dynamic shared
// memory a launch gets without opting in.
constexpr int64_t kMaxSharedPlanRows = 48 * 1024 / (4 * sizeof(int64_t));

struct CacheChunk {
  CacheRows caches[kMaxCachesPerLaunch];
};

// The tiles (kTileUnits units each, the last one partial) of one span.
template <typename Unit>
__host__ __device__ int64_t tiles_per_span(const CacheRows& cache) {
  return (cache.span_bytes / static_cast<int64_t>(sizeof(Unit)) + kTileUnits - 1) / kTileUnits;
}

// One thread block. Its threads copy beam_idx, values out of range replaced by their row, into `parents`; thread 0
// then writes the plan. `parents` and plan_reorder's work lie in `global_arrays` (rows + plan_work_size(rows)
// int64) or, when it is null, in the dynamic shared memory (as much).
template <typename Index>
__global__ void __launch_bounds__(kThreads)
    plan_reorder_kernel(const Index* beam_idx, int64_t beam_idx_stride, int64_t rows, int64_t* global_arrays,
                        ReorderStep* steps, int64_t* step_count) {
  extern __shared__ int64_t shared_arrays[];
  int64_t* const parents = global_arrays != nullptr ? global_arrays : shared_arrays;
  for (int64_t row = threadIdx.x; row < rows; row += kThreads) {
    const int64_t parent = static_cast<int64_t>(beam_idx[row * beam_idx_stride]);
    parents[row] = parent >= 0 && parent < rows ? parent : row;
  }
  __syncthreads();
  if (threadIdx.x == 0) *step_count = plan_reorder(parents, rows, parents + rows, steps);
}

// The tensors of the chunk in y, the tiles of each in x (a tensor's spans one after the other). Unit divides every
// tensor's data address, row_bytes, span_bytes and span_stride.
template <typename Unit>
__global__ void __launch_bounds__(kThreads)
    reorder_rows_kernel(const __grid_constant__ CacheChunk chunk, const ReorderStep* __restrict__ steps,
                        const int64_t* __restrict__ step_count) {
  const CacheRows& cache = chunk.caches[blockIdx.y];
  const int64_t span_units = cache.span_bytes / static_cast<int64_t>(sizeof(Unit));
  const int64_t tiles = tiles_per_span<Unit>(cache);
  const int64_t count = *step_count;
  for (int64_t tile = blockIdx.x; tile < cache.spans * tiles; tile += gridDim.x) {
    uint8_t* const span_of_row_0 = cache.data + tile / tiles * cache.span_stride;
    const auto span_of = [&](int64_t row) { return reinterpret_cast<Unit*>(span_of_row_0 + row * cache.row_bytes); };
    const int64_t first = tile % tiles * kTileUnits + threadIdx.x;  // then every kThreads units
    Unit scratch[kUnitsPerThread];
    for (int64_t s = 0; s < count; ++s) {
      const ReorderStep step = steps[s];
      // All the loads of the step before its stores: the compiler may not move a load above a store that could
      // write the same address, so interleaved they would wait for each other.
      Unit values[kUnitsPerThread];
#pragma unroll
      for (int k = 0; k < kUnitsPerThread; ++k) {
        const int64_t unit = first + k * kThreads;
        if (unit >= span_units) break;
        if (step.src == kScratchRow) {
          values[k] = scratch[k];
        } else {
          values[k] = span_of(step.src)[unit];
        }
      }
#pragma unroll
      for (int k = 0; k < kUnitsPerThread; ++k) {
        const int64_t unit = first + k * kThreads;
        if (unit >= span_units) break;
        if (step.dest == kScratchRow) {
          scratch[k] = values[k];
        } else {
          span_of(step.dest)[unit] = values[k];
        }
      }
    }
  }
}

// Calls launch(Unit{}) with the widest unit (16, 8, 4, 2 or 1 bytes) that divides `alignment`.
template <typename Launch>
cudaError_t with_unit(uint64_t alignment, Launch launch) {
  if (alignment % 16 == 0) return launch(uint4{});
  if (alignment % 8 == 0) return launch(uint2{});
  if (alignment % 4 == 0) return launch(uint32_t{});
  if (alignment % 2 == 0) return launch(uint16_t{});
  return launch(uint8_t{});
}

// Copies the moved bytes of `count` (at most kMaxCachesPerLaunch) tensors along the plan, in units as wide as all of
// them allow (KV caches allow 16 bytes).
inline cudaError_t launch_reorder_rows(const CacheRows* caches, int64_t count, const ReorderStep* steps,
                                       const int64_t* step_count, cudaStream_t stream) {
  CacheChunk chunk;
  uint64_t alignment = 0;
  for (int64_t i = 0; i < count; ++i) {
    const CacheRows& cache = caches[i];
    chunk.caches[i] = cache;
    alignment |= reinterpret_cast<uintptr_t>(cache.data) | cache.row_bytes | cache.span_bytes | cache.span_stride;
  }
  return with_unit(alignment, [&](auto unit_zero) {
    using Unit = decltype(unit_zero);
    int64_t max_tiles = 0;
    for (int64_t i = 0; i < count; ++i) {
      max_tiles = std::max(max_tiles, caches[i].spans * tiles_per_span<Unit>(caches[i]));
    }
    if (max_tiles == 0) return cudaSuccess;
    const dim3 grid(grid_size(max_tiles, 1), static_cast<unsigned>(count));
    reorder_rows_kernel<Unit><<<grid, kThreads, 0, stream>>>(chunk, steps, step_count);
    return cudaGetLastError();
  });
}

}  // namespace reorder_cuda

// The int64 values of device memory that launch_reorder_kv_cache needs as its workspace for `rows` rows: the plan's
// steps and their count, and the plan's arrays where they do not fit in shared memory.
inline int64_t reorder_workspace_size(int64_t rows) {
  const int64_t plan = 2 * plan_steps_size(rows) + 1;  // a ReorderStep is two int64
  return plan + (rows <= reorder_cuda::kMaxSharedPlanRows ? 0 : rows + plan_work_size(rows));
}

// Reorders the rows of `num_caches` tensors in place: row i of each becomes its old row beam_idx[i], as far as the
// tensor's CacheRows say (`caches` is a host array; the tensors have `rows` rows, on the device). beam_idx
// (`rows` values `beam_idx_stride` apart) and `workspace` (reorder_workspace_size(rows) int64) are device memory.
// Returns the first launch error.
template <typename Index>
cudaError_t launch_reorder_kv_cache(const CacheRows* caches, int64_t num_caches, const Index* beam_idx,
                                    int64_t beam_idx_stride, int64_t rows, int64_t* workspace, cudaStream_t stream) {
  using namespace reorder_cuda;
  if (num_caches == 0 || rows == 0) return cudaSuccess;
  auto* steps = reinterpret_cast<ReorderStep*>(workspace);
  int64_t* const step_count = workspace + 2 * plan_steps_size(rows);
  const bool shared_plan = rows <= kMaxSharedPlanRows;
  const size_t shared_bytes = shared_plan ? (rows + plan_work_size(rows)) * sizeof(int64_t) : 0;
  plan_reorder_kernel<Index><<<1, kThreads, shared_bytes, stream>>>(
      beam_idx, beam_idx_stride, rows, shared_plan ? nullptr : step_count + 1, steps, step_count);
  cudaError_t error = cudaGetLastError();
  for (int64_t first = 0; first < num_caches && error == cudaSuccess; first += kMaxCachesPerLaunch) {
    const int64_t count = std::min<int64_t>(num_caches - first, kMaxCachesPerLaunch);
    error = launch_reorder_rows(caches + first, count, steps, step_count, stream);
  }
  return error;
}

}  // namespace pysample
