// Torch-side glue of the in-place beam reorder of KV caches, shared by the CPU and CUDA registrations: argument
// checks with messages that name the argument, and the entry point wrapped around a device's kernel.
#pragma once

#include <ATen/Tensor.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <optional>
#include <utility>
#include <vector>

#include "pysample/reorder.h"

namespace pysample {

// A device's kernel: reorders rows (dim 0) of every cache tensor by beam_idx, in place; with `filled_length`, only
// positions [0, filled_length) of dim 2 (the sequence of [rows, heads, seq, head_dim]) are moved.
using ReorderKernel = void (*)(at::TensorList caches, const at::Tensor& beam_idx, std::optional<int64_t> filled_length);

template <ReorderKernel kernel>
void reorder_kv_cache_(at::TensorList caches, const at::Tensor& beam_idx, std::optional<int64_t> filled_length) {
  TORCH_CHECK_VALUE(beam_idx.dim() == 1, "beam_idx must be 1-D (batch * beams,), got shape ", beam_idx.sizes());
  TORCH_CHECK_TYPE(beam_idx.scalar_type() == at::kLong || beam_idx.scalar_type() == at::kInt,
                   "beam_idx must be int64 or int32, got ", beam_idx.scalar_type());
  if (filled_length) TORCH_CHECK_VALUE(*filled_length >= 0, "filled_length must be >= 0, got ", *filled_length);
  const int64_t rows = beam_idx.size(0);
  for (size_t i = 0; i < caches.size(); ++i) {
    const at::Tensor& t = caches[i];
    TORCH_CHECK_VALUE(t.dim() >= 1 && t.size(0) == rows, "caches[", i, "] must have beam_idx's ", rows,
                      " rows in dim 0, got shape ", t.sizes());
    TORCH_CHECK_VALUE(t.is_contiguous(), "caches[", i, "] must be contiguous");
    TORCH_CHECK_VALUE(t.device() == caches[0].device(), "caches[", i, "] must be on caches[0]'s device ",
                      caches[0].device(), ", got ", t.device());
    if (filled_length) {
      TORCH_CHECK_VALUE(t.dim() >= 3, "filled_length needs caches of (rows, heads, sequence, ...): caches[", i,
                        "] has shape ", t.sizes());
      TORCH_CHECK_VALUE(*filled_length <= t.size(2), "filled_length (", *filled_length, ") must not exceed caches[", i,
                        "]'s dim 2 (sequence), got shape ", t.sizes());
    }
  }
  // The same tensor twice would be reordered twice, concurrently.
  std::vector<std::pair<const void*, size_t>> data;
  for (size_t i = 0; i < caches.size(); ++i) {
    if (caches[i].numel() != 0) data.emplace_back(caches[i].data_ptr(), i);
  }
  std::sort(data.begin(), data.end());
  for (size_t k = 1; k < data.size(); ++k) {
    TORCH_CHECK_VALUE(data[k].first != data[k - 1].first, "caches[", data[k - 1].second, "] and caches[",
                      data[k].second, "] share their data: each tensor may appear once");
  }
  if (caches.empty() || rows == 0) return;
  kernel(caches, beam_idx, filled_length);
}

}  // namespace pysample
