// CUDA registration of pysample.sample: the torch glue around the framework-free kernel in pysample/sample.cuh
// (device guard, current stream, one dispatch on the logits' dtype). Argument checks are shared with the CPU
// (sample_args.h); per-row values the CPU would reject are made usable by the kernel (see RowPlan), since raising
// needs a host sync.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../sample_args.h"
#include "pysample/sample.cuh"

namespace pysample {
namespace {

void sample_cuda(const at::Tensor& logits, const at::Tensor& tokens, const SampleParams& params) {
  TORCH_CHECK_VALUE(logits.is_cuda(), "logits must be on a CUDA device for the CUDA kernel");
  const c10::cuda::CUDAGuard device_guard(logits.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  auto launch = [&](auto zero) {
    using scalar_t = decltype(zero);
    C10_CUDA_CHECK(launch_sample<scalar_t>(logits.const_data_ptr<scalar_t>(), logits.stride(0), logits.size(0),
                                           logits.size(1), params, tokens.data_ptr<int64_t>(), stream));
  };
  dispatch_logits(logits, launch);
}

}  // namespace

TORCH_LIBRARY_IMPL(pysample, CUDA, m) { m.impl("sample", &sample<sample_cuda>); }

}  // namespace pysample
