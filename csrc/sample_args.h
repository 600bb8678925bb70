// Torch-side glue of pysample.sample, shared by the CPU and CUDA registrations: argument checks with messages that
// name the argument, and the entry point wrapped around a device's kernel.
#pragma once

#include <ATen/Functions.h>
#include <ATen/Tensor.h>
#include <c10/util/Exception.h>

#include "pysample/sample.h"
#include "warp_args.h"

namespace pysample {

#define PYSAMPLE_SAMPLE_PARAMETERS                                                                               \
  const std::optional<at::Tensor>&temperature_rows, std::optional<double> temperature,                           \
      const std::optional<at::Tensor>&top_k_rows, std::optional<int64_t> top_k,                                  \
      const std::optional<at::Tensor>&top_p_rows, std::optional<double> top_p,                                   \
      const std::optional<at::Tensor>&min_p_rows, std::optional<double> min_p, const at::Tensor &seed,           \
      const at::Tensor &step, int64_t draws

// The parameters, checked; per-row tensors must outlive the kernel (they are checked contiguous).
inline SampleParams make_sample_params(const at::Tensor& logits, PYSAMPLE_SAMPLE_PARAMETERS) {
  check_logits(logits);
  TORCH_CHECK_VALUE(logits.size(1) <= kMaxSampleVocab, "logits: vocab size above ", kMaxSampleVocab,
                    " is not supported for sampling, got ", logits.size(1));
  for (const auto* rows : {&temperature_rows, &top_k_rows, &top_p_rows, &min_p_rows}) {
    TORCH_CHECK_VALUE(!rows->has_value() || (*rows)->is_contiguous(), "per-row parameters must be contiguous");
  }
  if (temperature) {
    TORCH_CHECK_VALUE(std::isfinite(*temperature) && *temperature >= 0,
                      "temperature must be a finite number >= 0 (0: greedy), got ", shortest(*temperature));
  }
  if (top_k) TORCH_CHECK_VALUE(*top_k >= 0, "top_k must be >= 0, got ", *top_k);
  if (top_p) check_range(*top_p, 0, 1, true, "top_p");
  if (min_p) check_range(*min_p, 0, 1, true, "min_p");
  TORCH_CHECK_VALUE(draws >= 1, "n must be >= 1, got ", draws);
  for (const auto& [tensor, name] : {std::pair{&seed, "seed"}, std::pair{&step, "step"}}) {
    check_rows(*tensor, logits, at::kLong, name);
    TORCH_CHECK_VALUE(tensor->is_contiguous(), name, " must be contiguous");
  }

  SampleParams p;
  p.temperature = row_param<float, double>(temperature_rows, temperature, logits, at::kFloat, "temperature");
  p.top_k = row_param<int64_t, int64_t>(top_k_rows, top_k, logits, at::kLong, "top_k");
  p.top_p = row_param<float, double>(top_p_rows, top_p, logits, at::kFloat, "top_p");
  p.min_p = row_param<float, double>(min_p_rows, min_p, logits, at::kFloat, "min_p");
  p.seed = seed.const_data_ptr<int64_t>();
  p.step = step.const_data_ptr<int64_t>();
  p.draws = draws;
  return p;
}

// A device's kernel: reads `logits` (batch, vocab, unit stride along vocab) and writes `tokens` (batch, draws).
using SampleKernel = void (*)(const at::Tensor& logits, const at::Tensor& tokens, const SampleParams& params);

template <SampleKernel kernel>
at::Tensor sample(const at::Tensor& logits, PYSAMPLE_SAMPLE_PARAMETERS) {
  const SampleParams params = make_sample_params(logits, temperature_rows, temperature, top_k_rows, top_k,
                                                 top_p_rows, top_p, min_p_rows, min_p, seed, step, draws);
  at::Tensor tokens = at::empty({logits.size(0), draws}, logits.options().dtype(at::kLong));
  if (logits.size(0) != 0) kernel(logits.stride(1) == 1 ? logits : logits.contiguous(), tokens, params);
  return tokens;
}

}  // namespace pysample
