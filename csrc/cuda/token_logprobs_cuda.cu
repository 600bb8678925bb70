// CUDA registration of token_logprobs: the torch glue around the framework-free kernel in pysample/token_logprobs.cuh
// (device guard, current stream, one dispatch on the dtype). Argument checks are shared with the CPU
// (token_logprobs_args.h); a token id the CPU would reject gets a NaN log-probability and rank 0, since raising needs
// a host sync.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../token_logprobs_args.h"
#include "pysample/token_logprobs.cuh"

namespace pysample {
namespace {

void token_logprobs_cuda(const at::Tensor& logits, const at::Tensor& tokens, int64_t num_top,
                         const TokenLogprobs& out) {
  TORCH_CHECK_VALUE(logits.is_cuda(), "logits must be on a CUDA device for the CUDA kernel");
  const c10::cuda::CUDAGuard device_guard(logits.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch_scores(logits, [&](auto score_zero) {
    using T = decltype(score_zero);
    C10_CUDA_CHECK(launch_token_logprobs(logits.const_data_ptr<T>(), logits.stride(0), logits.stride(1), logits.size(0),
                                         logits.size(1), tokens.const_data_ptr<int64_t>(), tokens.size(1), num_top,
                                         out.token_logprobs.data_ptr<float>(), out.ranks.data_ptr<int64_t>(),
                                         out.top_ids.data_ptr<int64_t>(), out.top_logprobs.data_ptr<float>(), stream));
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(pysample, CUDA, m) { m.impl("token_logprobs", &token_logprobs<token_logprobs_cuda>); }

}  // namespace pysample
