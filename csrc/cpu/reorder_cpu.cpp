// CPU kernel of the in-place beam reorder: the plan (pysample/reorder.h) is made once from beam_idx, then every
// cache tensor follows it, tensors in parallel. A row is copied whole, or as one span of the filled sequence
// positions per head (RowLayout); large moves with streaming stores.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>
#include <vector>

#include "../reorder_args.h"
#include "cpu_rows.h"
#include "pysample/reorder.h"

namespace pysample {
namespace {

void reorder_kv_cache_cpu(at::TensorList caches, const at::Tensor& beam_idx, std::optional<int64_t> filled_length) {
  TORCH_CHECK_VALUE(caches[0].device().is_cpu(), "caches must be on the CPU for the CPU kernel");
  const at::Tensor index = beam_idx.to(at::kCPU, at::kLong).contiguous();
  const int64_t rows = index.size(0);
  const int64_t* parent = index.const_data_ptr<int64_t>();
  for (int64_t i = 0; i < rows; ++i) {
    TORCH_CHECK_INDEX(parent[i] >= 0 && parent[i] < rows, "beam_idx[", i, "] = ", parent[i], " is out of range for ",
                      rows, " rows");
  }
  std::vector<int64_t> work(plan_work_size(rows));
  std::vector<ReorderStep> steps(plan_steps_size(rows));
  const int64_t count = plan_reorder(parent, rows, work.data(), steps.data());
  if (count == 0) return;  // the identity: nothing moves
  // Moves larger than the cache are written with streaming stores (kStreamingBytes): no read of each destination
  // line first. (Counted in whole rows: an upper bound with filled_length.)
  int64_t moved_bytes = 0;
  for (const at::Tensor& t : caches) moved_bytes += count * (t.size(0) > 0 ? t.nbytes() / t.size(0) : 0);
  const bool stream = moved_bytes > kStreamingBytes;

  at::parallel_for(0, static_cast<int64_t>(caches.size()), 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<uint8_t> scratch;
    for (int64_t i = begin; i < end; ++i) {
      const at::Tensor& t = caches[i];
      if (t.numel() == 0) continue;  // nothing to move, and its data pointer may be null
      const RowLayout layout =
          row_layout(t.element_size(), t.sizes().data(), t.strides().data(), filled_length.value_or(-1));
      if (layout.span_bytes == 0) continue;
      auto* base = static_cast<uint8_t*>(t.data_ptr());
      scratch.resize(layout.spans * layout.span_bytes);
      // Span s of a row, or of the scratch row (its spans side by side).
      auto span = [&](int64_t row, int64_t s) {
        return row == kScratchRow ? scratch.data() + s * layout.span_bytes
                                  : base + row * layout.row_bytes + s * layout.span_stride;
      };
      for (int64_t step = 0; step < count; ++step) {
        for (int64_t s = 0; s < layout.spans; ++s) {
          copy_bytes(span(steps[step].src, s), span(steps[step].dest, s), layout.span_bytes, stream);
        }
      }
    }
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(pysample, CPU, m) { m.impl("reorder_kv_cache_", &reorder_kv_cache_<reorder_kv_cache_cpu>); }

}  // namespace pysample
