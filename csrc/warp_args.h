// Torch-side glue of the fused warper, shared by the CPU and CUDA registrations: argument checks with messages
// that name the argument, and the in-place / out-of-place entry points wrapped around a device's kernel.
#pragma once

#include <ATen/Functions.h>
#include <ATen/MemoryOverlap.h>
#include <ATen/Tensor.h>
#include <c10/util/Exception.h>

#include <charconv>
#include <cmath>
#include <optional>
#include <string>

#include "pysample/warp.h"

namespace pysample {

// Scores (batch, vocab), `name` in messages: float32, float16 or bfloat16, and float64 where the kernels compute in
// double (`float64`: the warper on the CPU, the token editors).
inline void check_scores(const at::Tensor& scores, const char* name = "scores", bool float64 = true) {
  TORCH_CHECK_VALUE(scores.dim() == 2, name, " must be 2-D (batch, vocab), got shape ", scores.sizes());
  const at::ScalarType t = scores.scalar_type();
  TORCH_CHECK_TYPE(t == at::kFloat || t == at::kHalf || t == at::kBFloat16 || (float64 && t == at::kDouble), name,
                   float64 ? " must be float32, float64, float16 or bfloat16, got "
                           : " must be float32, float16 or bfloat16, got ",
                   t);
  TORCH_CHECK_VALUE(scores.size(1) <= std::numeric_limits<int32_t>::max(), name, ": vocab size too large");
}

// Logits of the sampler, the beam step and the CUDA warper: float32, float16 or bfloat16.
inline void check_logits(const at::Tensor& logits) { check_scores(logits, "logits", false); }

// A per-row parameter tensor: (batch,) of `dtype` on the device of the rows it parameterises.
inline void check_rows(const at::Tensor& rows, const at::Tensor& logits, at::ScalarType dtype, const char* name) {
  TORCH_CHECK_VALUE(rows.dim() == 1 && rows.size(0) == logits.size(0), name, " must have shape (batch,) = (",
                    logits.size(0), ",), got ", rows.sizes());
  TORCH_CHECK_TYPE(rows.scalar_type() == dtype, name, " must be ", dtype, ", got ", rows.scalar_type());
  TORCH_CHECK_VALUE(rows.device() == logits.device(), name, " must be on the logits' device ", logits.device(),
                    ", got ", rows.device());
}

// Calls kernel(scalar_t{}) for the logits' dtype: float32, float16 or bfloat16 (check_logits rejects the others).
template <typename Kernel>
void dispatch_logits(const at::Tensor& logits, Kernel kernel) {
  switch (logits.scalar_type()) {
    case at::kFloat:
      return kernel(float{});
    case at::kHalf:
      return kernel(at::Half{});
    case at::kBFloat16:
      return kernel(at::BFloat16{});
    default:
      TORCH_CHECK_TYPE(false, "logits must be float32, float16 or bfloat16, got ", logits.scalar_type());
  }
}

// A value as messages show it: the shortest digits that read back as it (1.0000001, not the stream's 1).
template <typename T>
std::string shortest(T value) {
  char digits[32];
  return std::string(digits, std::to_chars(digits, digits + sizeof digits, value).ptr);
}

// Calls kernel(scalar_t{}) for the scores' dtype: dispatch_logits' and double (check_scores rejects the others).
template <typename Kernel>
void dispatch_scores(const at::Tensor& scores, Kernel kernel) {
  if (scores.scalar_type() == at::kDouble) return kernel(double{});
  dispatch_logits(scores, kernel);
}

// Checks a value and the range it must lie in ([low, high], the ends included when `closed`).
inline void check_range(double value, double low, double high, bool low_closed, const char* name) {
  TORCH_CHECK_VALUE(!std::isnan(value) && (low_closed ? value >= low : value > low) && value <= high, name,
                    " must be in ", low_closed ? "[" : "(", low, ", ", high, "], got ", shortest(value));
}

// Token ids (rows, length), int32 or int64, on the device of `scores` (named `scores_name` in messages).
inline void check_token_ids(const at::Tensor& ids, const char* name, const at::Tensor& scores,
                            const char* scores_name) {
  TORCH_CHECK_VALUE(ids.dim() == 2, name, " must be 2-D (batch, length), got shape ", ids.sizes());
  TORCH_CHECK_TYPE(ids.scalar_type() == at::kLong || ids.scalar_type() == at::kInt, name,
                   " must be int64 or int32, got ", ids.scalar_type());
  TORCH_CHECK_VALUE(ids.device() == scores.device(), name, " must be on the ", scores_name, "' device ",
                    scores.device(), ", got ", ids.device());
}

// Calls kernel(id_t{}) for the ids' dtype (int32 or int64: check_token_ids rejects the others).
template <typename Kernel>
void dispatch_ids(const at::Tensor& ids, Kernel kernel) {
  if (ids.scalar_type() == at::kInt) return kernel(int32_t{});
  TORCH_CHECK_TYPE(ids.scalar_type() == at::kLong, "ids must be int64 or int32, got ", ids.scalar_type());
  kernel(int64_t{});
}

inline void check_contiguous_rows(std::initializer_list<const std::optional<at::Tensor>*> rows) {
  for (const auto* r : rows) {
    TORCH_CHECK_VALUE(!r->has_value() || (*r)->is_contiguous(), "per-row parameters must be contiguous");
  }
}

template <typename Stored, typename Value>
RowParam<Stored, Value> row_param(const std::optional<at::Tensor>& rows, std::optional<Value> value,
                                  const at::Tensor& logits, at::ScalarType dtype, const char* name) {
  RowParam<Stored, Value> param;
  TORCH_CHECK_VALUE(!(rows.has_value() && value.has_value()), name, ": pass a value or a per-row tensor, not both");
  if (rows.has_value()) {
    check_rows(*rows, logits, dtype, name);
    param.rows = rows->contiguous().data_ptr<Stored>();
    param.enabled = true;
  } else if (value.has_value()) {
    param.value = *value;
    param.enabled = true;
  }
  return param;
}

// Per-row tensors must stay alive while the kernel runs: they are checked contiguous (1-D) so data_ptr is theirs.
inline WarpParams make_warp_params(const at::Tensor& logits, const std::optional<at::Tensor>& temperature_rows,
                                   std::optional<double> temperature, const std::optional<at::Tensor>& top_k_rows,
                                   std::optional<int64_t> top_k, const std::optional<at::Tensor>& top_p_rows,
                                   std::optional<double> top_p, const std::optional<at::Tensor>& min_p_rows,
                                   std::optional<double> min_p, const std::optional<at::Tensor>& typical_p_rows,
                                   std::optional<double> typical_p, const std::optional<at::Tensor>& epsilon_rows,
                                   std::optional<double> epsilon, const std::optional<at::Tensor>& eta_rows,
                                   std::optional<double> eta, int64_t min_tokens_to_keep, double filter_value) {
  check_scores(logits, "logits");
  for (const auto* rows : {&temperature_rows, &top_k_rows, &top_p_rows, &min_p_rows, &typical_p_rows,
                           &epsilon_rows, &eta_rows}) {
    TORCH_CHECK_VALUE(!rows->has_value() || (*rows)->is_contiguous(), "per-row parameters must be contiguous");
  }
  if (temperature) {
    TORCH_CHECK_VALUE(std::isfinite(*temperature) && *temperature > 0, "temperature must be a finite number > 0, got ",
                      shortest(*temperature));
  }
  if (top_k) TORCH_CHECK_VALUE(*top_k >= 0, "top_k must be >= 0, got ", *top_k);
  if (top_p) check_range(*top_p, 0, 1, true, "top_p");
  if (min_p) check_range(*min_p, 0, 1, true, "min_p");
  if (typical_p) check_range(*typical_p, 0, 1, true, "typical_p");
  if (epsilon) check_range(*epsilon, 0, 1, true, "epsilon");
  if (eta) check_range(*eta, 0, 1, true, "eta");
  TORCH_CHECK_VALUE(min_tokens_to_keep >= 1, "min_tokens_to_keep must be >= 1, got ", min_tokens_to_keep);
  TORCH_CHECK_VALUE(!std::isnan(filter_value), "filter_value must not be NaN");

  WarpParams p;
  p.temperature = row_param<float, double>(temperature_rows, temperature, logits, at::kFloat, "temperature");
  p.top_k = row_param<int64_t, int64_t>(top_k_rows, top_k, logits, at::kLong, "top_k");
  p.top_p = row_param<float, double>(top_p_rows, top_p, logits, at::kFloat, "top_p");
  p.min_p = row_param<float, double>(min_p_rows, min_p, logits, at::kFloat, "min_p");
  p.typical_p = row_param<float, double>(typical_p_rows, typical_p, logits, at::kFloat, "typical_p");
  p.epsilon = row_param<float, double>(epsilon_rows, epsilon, logits, at::kFloat, "epsilon");
  p.eta = row_param<float, double>(eta_rows, eta, logits, at::kFloat, "eta");
  p.min_tokens_to_keep = min_tokens_to_keep;
  p.filter_value = static_cast<float>(filter_value);
  return p;
}

// A device's kernel: reads `in` (batch, vocab) and writes the warped rows to `out` (same shape, may alias `in`).
using WarpKernel = void (*)(const at::Tensor& in, const at::Tensor& out, const WarpParams& params);

#define PYSAMPLE_WARP_PARAMETERS                                                                                 \
  const std::optional<at::Tensor>&temperature_rows, std::optional<double> temperature,                           \
      const std::optional<at::Tensor>&top_k_rows, std::optional<int64_t> top_k,                                  \
      const std::optional<at::Tensor>&top_p_rows, std::optional<double> top_p,                                   \
      const std::optional<at::Tensor>&min_p_rows, std::optional<double> min_p,                                   \
      const std::optional<at::Tensor>&typical_p_rows, std::optional<double> typical_p,                           \
      const std::optional<at::Tensor>&epsilon_rows, std::optional<double> epsilon,                               \
      const std::optional<at::Tensor>&eta_rows, std::optional<double> eta, int64_t min_tokens_to_keep,           \
      double filter_value
#define PYSAMPLE_WARP_ARGUMENTS                                                                                  \
  temperature_rows, temperature, top_k_rows, top_k, top_p_rows, top_p, min_p_rows, min_p, typical_p_rows,        \
      typical_p, epsilon_rows, epsilon, eta_rows, eta, min_tokens_to_keep, filter_value

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
