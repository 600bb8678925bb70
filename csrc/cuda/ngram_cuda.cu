// CUDA registration of the n-gram ban and the sequence bias: the torch glue around the framework-free kernels in
// pysample/ngram.cuh (device guard, current stream, one dispatch on the dtypes). Argument checks are shared with the
// CPU (ngram_args.h); lengths, n-gram sizes and packed sequences the CPU would reject are made harmless by the
// kernels, since raising needs a host sync.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../ngram_args.h"
#include "pysample/ngram.cuh"

namespace pysample {
namespace {

void no_repeat_ngram_cuda(const at::Tensor& in, const at::Tensor& scores, const at::Tensor& ids,
                          const at::Tensor& sources, const NgramParams& params) {
  TORCH_CHECK_VALUE(in.is_cuda(), "scores must be on a CUDA device for the CUDA kernel");
  const c10::cuda::CUDAGuard device_guard(in.device());
  if (!in.is_same(scores)) scores.copy_(in);  // then in place on the copy
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const bool own = !sources.defined();
  // Sources without ids ban nothing; the kernel would take their null data pointer for the rows' own ids.
  if (!own && sources.numel() == 0) return;
  dispatch_scores(scores, [&](auto score_zero) {
    using scalar_t = decltype(score_zero);
    dispatch_ids(ids, [&](auto id_zero) {
      using id_t = decltype(id_zero);
      const id_t* source_data = own ? nullptr : sources.const_data_ptr<id_t>();
      C10_CUDA_CHECK(launch_no_repeat_ngram(scores.data_ptr<scalar_t>(), scores.stride(0), scores.stride(1),
                                            scores.size(0), scores.size(1), ids.const_data_ptr<id_t>(), ids.size(1),
                                            source_data, own ? 0 : sources.size(0), own ? 0 : sources.size(1), params,
                                            stream));
    });
  });
}

void bias_sequences_cuda(const at::Tensor& scores, const at::Tensor& ids, const int64_t* lengths,
                         const at::Tensor& tokens, const at::Tensor& offsets, const at::Tensor& biases) {
  TORCH_CHECK_VALUE(scores.is_cuda(), "scores must be on a CUDA device for the CUDA kernel");
  const c10::cuda::CUDAGuard device_guard(scores.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t count = biases.size(0);
  size_t workspace_bytes = 0;
  C10_CUDA_CHECK(bias_sequences_workspace_bytes(count, scores.size(1), workspace_bytes));
  // The sequences sorted by last token (the caching allocator's blocks are 512-byte aligned).
  const at::Tensor workspace = at::empty({static_cast<int64_t>(workspace_bytes)}, scores.options().dtype(at::kByte));
  dispatch_scores(scores, [&](auto score_zero) {
    using scalar_t = decltype(score_zero);
    dispatch_ids(ids, [&](auto id_zero) {
      using id_t = decltype(id_zero);
      C10_CUDA_CHECK(launch_bias_sequences(scores.data_ptr<scalar_t>(), scores.stride(0), scores.stride(1),
                                           scores.size(0), scores.size(1), ids.const_data_ptr<id_t>(), ids.size(1),
                                           lengths, tokens.const_data_ptr<int64_t>(), tokens.size(0),
                                           offsets.const_data_ptr<int64_t>(), biases.const_data_ptr<float>(), count,
                                           workspace.data_ptr(), workspace_bytes, stream));
    });
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(pysample, CUDA, m) {
  m.impl("no_repeat_ngram_", &no_repeat_ngram_<no_repeat_ngram_cuda>);
  m.impl("no_repeat_ngram", &no_repeat_ngram<no_repeat_ngram_cuda>);
  m.impl("bias_sequences_", &bias_sequences_<bias_sequences_cuda>);
}

}  // namespace pysample
