// CUDA registration of the penalty ops: the torch glue around the framework-free kernels in pysample/penalty.cuh
// (device guard, current stream, one dispatch on the dtypes). Argument checks are shared with the CPU
// (penalty_args.h); per-row values and slots the CPU would reject are made harmless by the kernels, since raising
// needs a host sync.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../penalty_args.h"
#include "pysample/penalty.cuh"

namespace pysample {
namespace {

const int64_t* slots_data(const std::optional<at::Tensor>& slots) {
  return slots ? slots->const_data_ptr<int64_t>() : nullptr;
}

void apply_penalties_cuda(const at::Tensor& in, const at::Tensor& scores, const at::Tensor& ids,
                          const PenaltyParams& params, const HistoryScope& scope) {
  TORCH_CHECK_VALUE(scores.is_cuda(), "scores must be on a CUDA device for the CUDA kernel");
  const c10::cuda::CUDAGuard device_guard(scores.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  if (!in.is_same(scores)) scores.copy_(in);  // out of place: penalise a copy
  // The kernel's table of entries, one zeroed row per row of scores (the caching allocator makes this cheap).
  const at::Tensor tables = at::zeros({scores.size(0), scores.size(1)}, scores.options().dtype(at::kInt));
  auto* table_data = reinterpret_cast<uint32_t*>(tables.data_ptr<int32_t>());
  dispatch_scores(scores, [&](auto score_zero) {
    using scalar_t = decltype(score_zero);
    dispatch_ids(ids, [&](auto id_zero) {
      using id_t = decltype(id_zero);
      C10_CUDA_CHECK(launch_apply_penalties(scores.data_ptr<scalar_t>(), scores.stride(0), scores.stride(1),
                                            scores.size(0), scores.size(1), ids.const_data_ptr<id_t>(), ids.size(0),
                                            ids.size(1), params, scope, table_data, stream));
    });
  });
}

void count_tokens_cuda(const at::Tensor& counts, const at::Tensor& seen, const at::Tensor& ids,
                       const std::optional<at::Tensor>& slots, const HistoryScope& scope) {
  TORCH_CHECK_VALUE(counts.is_cuda(), "counts must be on a CUDA device for the CUDA kernel");
  const c10::cuda::CUDAGuard device_guard(counts.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  auto* entries = reinterpret_cast<uint32_t*>(counts.data_ptr<int32_t>());
  auto* seen_bits = reinterpret_cast<uint32_t*>(seen.data_ptr<int32_t>());
  dispatch_ids(ids, [&](auto id_zero) {
    using id_t = decltype(id_zero);
    C10_CUDA_CHECK(launch_count_tokens(entries, seen_bits, counts.size(0), counts.size(1), ids.const_data_ptr<id_t>(),
                                       ids.size(0), ids.size(1), slots_data(slots), scope, stream));
  });
}

void apply_penalty_counts_cuda(const at::Tensor& scores, const at::Tensor& counts, const at::Tensor& seen,
                               const std::optional<at::Tensor>& slots, const PenaltyParams& params) {
  TORCH_CHECK_VALUE(scores.is_cuda(), "scores must be on a CUDA device for the CUDA kernel");
  const c10::cuda::CUDAGuard device_guard(scores.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const auto* entries = reinterpret_cast<const uint32_t*>(counts.const_data_ptr<int32_t>());
  const auto* seen_bits = reinterpret_cast<const uint32_t*>(seen.const_data_ptr<int32_t>());
  dispatch_scores(scores, [&](auto zero) {
    using scalar_t = decltype(zero);
    C10_CUDA_CHECK(launch_apply_penalty_counts(scores.data_ptr<scalar_t>(), scores.stride(0), scores.stride(1),
                                               scores.size(0), scores.size(1), entries, seen_bits, counts.size(0),
                                               slots_data(slots), params, stream));
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(pysample, CUDA, m) {
  m.impl("apply_penalties_", &apply_penalties_inplace<apply_penalties_cuda>);
  m.impl("apply_penalties", &apply_penalties<apply_penalties_cuda>);
  m.impl("count_tokens_", &count_tokens_<count_tokens_cuda>);
  m.impl("apply_penalty_counts_", &apply_penalty_counts_<apply_penalty_counts_cuda>);
}

}  // namespace pysample
