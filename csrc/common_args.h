// Torch-side glue every op shares: checks of scores, ids and per-row parameters with messages that name the
// argument, and the dispatch on their dtypes.
#pragma once

#include <ATen/Tensor.h>
#include <c10/util/Exception.h>

#include <charconv>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>

#include "pysample/common.h"

namespace pysample {

// Whether scores may be float64: where the kernels compute in double (the warper on the CPU, the token editors).
enum class Float64 { kAccepted, kRejected };

// Scores (batch, vocab), `name` in messages: float32, float16 or bfloat16, and float64 where `float64` accepts it.
inline void check_scores(const at::Tensor& scores, const char* name = "scores", Float64 float64 = Float64::kAccepted) {
  TORCH_CHECK_VALUE(scores.dim() == 2, name, " must be 2-D (batch, vocab), got shape ", scores.sizes());
  const at::ScalarType t = scores.scalar_type();
  const bool accepts_float64 = float64 == Float64::kAccepted;
  TORCH_CHECK_TYPE(t == at::kFloat || t == at::kHalf || t == at::kBFloat16 || (accepts_float64 && t == at::kDouble),
                   name,
                   accepts_float64 ? " must be float32, float64, float16 or bfloat16, got "
                                   : " must be float32, float16 or bfloat16, got ",
                   t);
  TORCH_CHECK_VALUE(scores.size(1) <= std::numeric_limits<int32_t>::max(), name, ": vocab size too large");
}

// Logits of the sampler, the beam step and the CUDA warper: float32, float16 or bfloat16.
inline void check_logits(const at::Tensor& logits) { check_scores(logits, "logits", Float64::kRejected); }

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
    case at::kFloat: return kernel(float{});
    case at::kHalf: return kernel(at::Half{});
    case at::kBFloat16: return kernel(at::BFloat16{});
    default: TORCH_CHECK_TYPE(false, "logits must be float32, float16 or bfloat16, got ", logits.scalar_type());
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

// Per-row parameter tensors are read through their data pointers: they must be contiguous.
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

// A parameter whose schema always carries a scalar beside its per-row tensor: the tensor, when given, replaces it.
template <typename Value>
std::optional<Value> scalar_unless(const std::optional<at::Tensor>& rows, Value value) {
  return rows ? std::nullopt : std::optional<Value>(value);
}

// A scalar parameter within its range; the message names it.
template <typename Value>
void check_value(const char* name, Value value, ValueRange range) {
  TORCH_CHECK_VALUE(in_range(range, static_cast<double>(value)), name, " must be ", range_text(range), ", got ",
                    shortest(value));
}

// A parameter given as a scalar or a per-row tensor (not both), checked: the kernels' RowParam. The tensor must
// outlive the kernel (it is checked contiguous, so the pointer is its own).
template <typename Stored, typename Value>
RowParam<Stored, Value> checked_param(const std::optional<at::Tensor>& rows, std::optional<Value> value,
                                      const at::Tensor& logits, const char* name, ValueRange range) {
  check_contiguous_rows({&rows});
  if (value) check_value(name, *value, range);
  return row_param<Stored, Value>(rows, value, logits, std::is_same_v<Stored, float> ? at::kFloat : at::kLong, name);
}

}  // namespace pysample
