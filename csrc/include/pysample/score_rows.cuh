// What the CUDA kernels of the token editors (penalties, n-gram bans, sequence bias) share: a strided view of the
// scores and the grid size of loops that stride over the grid. Framework-free: no torch header.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace pysample {

constexpr int64_t kMaxGrid = 65535;  // the largest grid dimension y allows; the kernels' loops stride over more

// Blocks for `items` at `items_per_block` each, at most kMaxGrid.
inline unsigned grid_size(int64_t items, int64_t items_per_block) {
  return static_cast<unsigned>(std::min((items + items_per_block - 1) / items_per_block, kMaxGrid));
}

// Scores (rows, vocab) with any strides, in elements.
template <typename T>
struct ScoreRows {
  T* data;
  int64_t row_stride;
  int64_t stride;

  __device__ T& at(int64_t row, int64_t token) const { return data[row * row_stride + token * stride]; }
};

}  // namespace pysample
