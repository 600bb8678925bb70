// CUDA registration of the in-place beam reorder of KV caches: the torch glue around the framework-free kernels in
// pysample/reorder.cuh (device guard, current stream, the workspace, one dispatch on beam_idx's dtype). Argument
// checks are shared with the CPU (reorder_args.h); beam_idx values the CPU would reject are made harmless by the
// kernels, since raising needs a host sync.
#include <ATen/Functions.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <vector>

#include "../common_args.h"
#include "../reorder_args.h"
#include "pysample/reorder.cuh"

namespace pysample {
namespace {

CacheRows cache_rows(const at::Tensor& t, std::optional<int64_t> filled_length) {
  CacheRows rows;
  static_cast<RowLayout&>(rows) =
      row_layout(t.element_size(), t.sizes().data(), t.strides().data(), filled_length.value_or(-1));
  rows.data = static_cast<uint8_t*>(t.data_ptr());
  return rows;
}

void reorder_kv_cache_cuda(at::TensorList caches, const at::Tensor& beam_idx, std::optional<int64_t> filled_length) {
  TORCH_CHECK_VALUE(caches[0].is_cuda(), "caches must be on a CUDA device for the CUDA kernel");
  const c10::cuda::CUDAGuard device_guard(caches[0].device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  std::vector<CacheRows> moved;
  moved.reserve(caches.size());
  for (const at::Tensor& t : caches) {
    if (t.numel() == 0) continue;  // nothing to move, and its data pointer may be null
    const CacheRows layout = cache_rows(t, filled_length);
    if (layout.span_bytes > 0) moved.push_back(layout);
  }
  if (moved.empty()) return;
  // Read on the device only; a beam_idx from elsewhere (the CPU) is copied there first.
  const at::Tensor index = beam_idx.to(caches[0].device());
  // The plan's steps (the caching allocator makes this cheap).
  const at::Tensor workspace = at::empty({reorder_workspace_size(index.size(0))}, index.options().dtype(at::kLong));
  dispatch_ids(index, [&](auto id_zero) {
    using id_t = decltype(id_zero);
    C10_CUDA_CHECK(launch_reorder_kv_cache(moved.data(), static_cast<int64_t>(moved.size()),
                                           index.const_data_ptr<id_t>(), index.stride(0), index.size(0),
                                           workspace.data_ptr<int64_t>(), stream));
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(pysample, CUDA, m) { m.impl("reorder_kv_cache_", &reorder_kv_cache_<reorder_kv_cache_cuda>); }

}  // namespace pysample
