// CUDA registration of the fused beam search step: the torch glue around the framework-free kernels in
// pysample/beam.cuh (device guard, current stream, the workspace, one dispatch on the logits' dtype). Argument
// checks and the outputs are shared with the CPU (beam_args.h).
#include <ATen/Functions.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../beam_args.h"
#include "../common_args.h"
#include "pysample/beam.cuh"

namespace pysample {
namespace {

void beam_search_step_cuda(const at::Tensor& logits, const at::Tensor& beam_scores, int64_t num_beams, bool normalize,
                           const at::Tensor& scores, const at::Tensor& tokens, const at::Tensor& beams) {
  TORCH_CHECK_VALUE(logits.is_cuda(), "logits must be on a CUDA device for the CUDA kernel");
  const c10::cuda::CUDAGuard device_guard(logits.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t rows = logits.size(0);
  const int64_t vocab = logits.size(1);
  const int64_t num_candidates = scores.size(1);
  // Each row's best ranks and its stats, between the two launches (the caching allocator makes this cheap).
  const at::Tensor workspace =
      at::empty({beam_search_workspace_size(rows, vocab, num_candidates)}, logits.options().dtype(at::kLong));
  dispatch_logits(logits, [&](auto zero) {
    using scalar_t = decltype(zero);
    C10_CUDA_CHECK(launch_beam_search_step<scalar_t>(
        logits.const_data_ptr<scalar_t>(), logits.stride(0), rows / num_beams, num_beams, vocab,
        beam_scores.const_data_ptr<float>(), normalize, num_candidates, workspace.data_ptr<int64_t>(),
        scores.data_ptr<float>(), tokens.data_ptr<int64_t>(), beams.data_ptr<int64_t>(), stream));
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(pysample, CUDA, m) { m.impl("beam_search_step", &beam_search_step<beam_search_step_cuda>); }

}  // namespace pysample
