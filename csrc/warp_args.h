// Torch-side glue of the fused warper, shared by the CPU and CUDA registrations: its op arguments, derived from the
// stage table (pysample/stages.h), checked into WarpParams, and the in-place / out-of-place entry points wrapped
// around a device's kernel.
#pragma once

#include <ATen/Functions.h>
#include <ATen/MemoryOverlap.h>
#include <ATen/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <optional>

#include "common_args.h"
#include "pysample/stages.h"

// The warper's C++ parameters and arguments after the logits, in the schema's order (PYSAMPLE_WARP_SCHEMA).
#define PYSAMPLE_STAGE_PARAMETER(name, Stored, Value, schema_type, range) \
  const std::optional<at::Tensor>&name##_rows, std::optional<Value> name,
#define PYSAMPLE_WARP_PARAMETERS \
  PYSAMPLE_WARP_STAGES(PYSAMPLE_STAGE_PARAMETER) int64_t min_tokens_to_keep, double filter_value
#define PYSAMPLE_STAGE_ARGUMENT(name, Stored, Value, schema_type, range) name##_rows, name,
#define PYSAMPLE_WARP_ARGUMENTS PYSAMPLE_WARP_STAGES(PYSAMPLE_STAGE_ARGUMENT) min_tokens_to_keep, filter_value

namespace pysample {

// Per-row tensors must stay alive while the kernel runs: they are checked contiguous (1-D) so data_ptr is theirs.
inline WarpParams make_warp_params(const at::Tensor& logits, PYSAMPLE_WARP_PARAMETERS) {
  check_scores(logits, "logits");
  WarpParams p;
#define PYSAMPLE_CHECK_STAGE(name, Stored, Value, schema_type, range) \
  p.name = checked_param<Stored, Value>(name##_rows, name, logits, #name, ValueRange::range);
  PYSAMPLE_WARP_STAGES(PYSAMPLE_CHECK_STAGE)
#undef PYSAMPLE_CHECK_STAGE
  TORCH_CHECK_VALUE(min_tokens_to_keep >= 1, "min_tokens_to_keep must be >= 1, got ", min_tokens_to_keep);
  TORCH_CHECK_VALUE(!std::isnan(filter_value), "filter_value must not be NaN");
  p.min_tokens_to_keep = min_tokens_to_keep;
  p.filter_value = static_cast<float>(filter_value);
  return p;
}

// A device's kernel: reads `in` (batch, vocab) and writes the warped rows to `out` (same shape, may alias `in`).
using WarpKernel = void (*)(const at::Tensor& in, const at::Tensor& out, const WarpParams& params);

template <WarpKernel kernel>
void warp_logits_inplace(at::Tensor logits, PYSAMPLE_WARP_PARAMETERS) {
  const WarpParams params = make_warp_params(logits, PYSAMPLE_WARP_ARGUMENTS);
  at::assert_no_internal_overlap(logits);  // rows sharing memory would be warped once per row
  if (logits.numel() == 0) return;
  if (logits.stride(1) == 1) {
    kernel(logits, logits, params);
  } else {
    at::Tensor dense = logits.contiguous();
    kernel(dense, dense, params);
    logits.copy_(dense);
  }
}

template <WarpKernel kernel>
at::Tensor warp_logits(const at::Tensor& logits, PYSAMPLE_WARP_PARAMETERS) {
  const WarpParams params = make_warp_params(logits, PYSAMPLE_WARP_ARGUMENTS);
  const at::Tensor in = logits.stride(1) == 1 ? logits : logits.contiguous();
  at::Tensor out = at::empty_like(logits, at::MemoryFormat::Contiguous);
  if (logits.numel() != 0) kernel(in, out, params);
  return out;
}

}  // namespace pysample
