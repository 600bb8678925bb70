// CPU kernel of the in-place beam reorder: the plan (pysample/reorder.h) is made once from beam_idx, then every
// cache tensor follows it, tensors in parallel. A row is copied whole, or as one block of the filled sequence
// positions per head.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>
#include <vector>

#include "../reorder_args.h"
#include "pysample/reorder.h"

namespace pysample {
namespace {

// Where the moved bytes of a tensor's row lie: `blocks` blocks of `block_bytes`, `block_stride` bytes apart.
struct RowLayout {
  int64_t row_bytes;
  int64_t blocks;
  int64_t block_bytes;
  int64_t block_stride;
};

RowLayout row_layout(const at::Tensor& t, std::optional<int64_t> filled_length) {
  const int64_t element = t.element_size();
  const int64_t row_bytes = t.stride(0) * element;
  if (!filled_length) return {row_bytes, 1, row_bytes, row_bytes};
  // [rows, heads, seq, ...]: per head, the first filled_length positions, contiguous
  return {row_bytes, t.size(1), *filled_length * t.stride(2) * element, t.stride(1) * element};
}

void reorder_kv_cache_cpu(at::TensorList caches, const at::Tensor& beam_idx, std::optional<int64_t> filled_length) {
  TORCH_CHECK_VALUE(caches[0].device().is_cpu(), "caches must be on the CPU for the CPU kernel");
  const at::Tensor index = beam_idx.to(at::kCPU, at::kLong).contiguous();
  const int64_t rows = index.size(0);
  const int64_t* parent = index.const_data_ptr<int64_t>();
  for (int64_t i = 0; i < rows; ++i) {
    TORCH_CHECK_INDEX(parent[i] >= 0 && parent[i] < rows, "beam_idx[", i, "] = ", parent[i],
                      " is out of range for ", rows, " rows");
  }
  std::vector<int64_t> work(2 * rows);
  std::vector<ReorderStep> steps(rows + rows / 2);
  const int64_t count = plan_reorder(parent, rows, work.data(), steps.data());
  if (count == 0) return;  // the identity: nothing moves

  at::parallel_for(0, static_cast<int64_t>(caches.size()), 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<uint8_t> scratch;
    for (int64_t i = begin; i < end; ++i) {
      const at::Tensor& t = caches[i];
      const RowLayout layout = row_layout(t, filled_length);
      if (layout.block_bytes == 0) continue;
      auto* base = static_cast<uint8_t*>(t.data_ptr());
      scratch.resize(layout.blocks * layout.block_bytes);
      // Block b of a row, or of the scratch row (its blocks side by side).
      auto block = [&](int64_t row, int64_t b) {
        return row == kScratchRow ? scratch.data() + b * layout.block_bytes
                                  : base + row * layout.row_bytes + b * layout.block_stride;
      };
      for (int64_t s = 0; s < count; ++s) {
        for (int64_t b = 0; b < layout.blocks; ++b) {
          std::memcpy(block(steps[s].dest, b), block(steps[s].src, b), layout.block_bytes);
        }
      }
    }
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(pysample, CPU, m) { m.impl("reorder_kv_cache_", &reorder_kv_cache_<reorder_kv_cache_cpu>); }

}  // namespace pysample
