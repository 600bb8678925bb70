// CUDA registration of the token bitmask: the torch glue around the framework-free kernel in
// pysample/token_bitmask.cuh (device guard, current stream, one dispatch on the dtypes). Argument checks are shared
// with the CPU (token_bitmask_args.h); an index the CPU would reject is skipped by the kernel, since raising needs a
// host sync.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../token_bitmask_args.h"
#include "pysample/token_bitmask.cuh"

namespace pysample {
namespace {

void apply_token_bitmask_cuda(const at::Tensor& logits, const at::Tensor& bitmask, const at::Tensor& indices,
                              int64_t vocab_size) {
  TORCH_CHECK_VALUE(logits.is_cuda(), "logits must be on a CUDA device for the CUDA kernel");
  const c10::cuda::CUDAGuard device_guard(logits.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch_scores(logits, [&](auto score_zero) {
    using scalar_t = decltype(score_zero);
    auto launch = [&](auto index_zero, int64_t count) {
      using index_t = decltype(index_zero);
      const index_t* index = indices.defined() ? indices.const_data_ptr<index_t>() : nullptr;
      C10_CUDA_CHECK(launch_apply_token_bitmask(logits.data_ptr<scalar_t>(), logits.stride(0), logits.stride(1),
                                                logits.size(0), bitmask.const_data_ptr<int32_t>(), bitmask.stride(0),
                                                bitmask.stride(1), index, count, vocab_size, stream));
    };
    if (indices.defined()) {
      dispatch_ids(indices, [&](auto index_zero) { launch(index_zero, indices.numel()); });
    } else {
      launch(int64_t{}, logits.size(0));
    }
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(pysample, CUDA, m) {
  m.impl("apply_token_bitmask_", &apply_token_bitmask_<apply_token_bitmask_cuda>);
}

}  // namespace pysample
