// CUDA registration of the fused warper: the torch glue around the framework-free kernel in pysample/warp.cuh
// (device guard, current stream, one dispatch on the logits' dtype). Argument checks are shared with the CPU
// (warp_args.h); per-row values the CPU would reject are clamped by the kernel, since raising needs a host sync.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../warp_args.h"
#include "pysample/warp.cuh"

namespace pysample {
namespace {

void warp_logits_cuda(const at::Tensor& in, const at::Tensor& out, const WarpParams& params) {
  TORCH_CHECK_VALUE(in.is_cuda(), "logits must be on a CUDA device for the CUDA kernel");
  const c10::cuda::CUDAGuard device_guard(in.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  auto launch = [&](auto zero) {
    using scalar_t = decltype(zero);
    C10_CUDA_CHECK(launch_warp_logits<scalar_t>(in.const_data_ptr<scalar_t>(), in.stride(0), out.data_ptr<scalar_t>(),
                                                out.stride(0), in.size(0), in.size(1), params, stream));
  };
  dispatch_logits(in, launch);
}

}  // namespace

TORCH_LIBRARY_IMPL(pysample, CUDA, m) {
  m.impl("warp_logits_", &warp_logits_inplace<warp_logits_cuda>);
  m.impl("warp_logits", &warp_logits<warp_logits_cuda>);
}

}  // namespace pysample
