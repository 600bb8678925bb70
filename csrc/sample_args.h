// Torch-side glue of pysample.sample, shared by the CPU and CUDA registrations: argument checks with messages that
// name the argument, and the entry point wrapped around a device's kernel.
#pragma once

#include <ATen/Functions.h>
#include <ATen/Tensor.h>
#include <c10/util/Exception.h>

#include "common_args.h"
#include "pysample/sample.h"

namespace pysample {

#define PYSAMPLE_SAMPLE_PARAMETERS                                                                     \
  const std::optional<at::Tensor>&temperature_rows, std::optional<double> temperature,                 \
      const std::optional<at::Tensor>&top_k_rows, std::optional<int64_t> top_k,                        \
      const std::optional<at::Tensor>&top_p_rows, std::optional<double> top_p,                         \
      const std::optional<at::Tensor>&min_p_rows, std::optional<double> min_p, const at::Tensor &seed, \
      const at::Tensor &step, int64_t draws

// The parameters, checked; per-row tensors must outlive the kernel (they are checked contiguous).
inline SampleParams make_sample_params(const at::Tensor& logits, PYSAMPLE_SAMPLE_PARAMETERS) {
  check_logits(logits);
  TORCH_CHECK_VALUE(logits.size(1) <= kMaxSampleVocab, "logits: vocab size above ", kMaxSampleVocab,
                    " is not supported for sampling, got ", logits.size(1));
  SampleParams p;
  // The warper stages' parameters, but temperature 0 is greedy.
  p.temperature = checked_param<float, double>(temperature_rows, temperature, logits, "temperature",
                                               ValueRange::kNonNegativeFinite);
  p.top_k = checked_param<int64_t, int64_t>(top_k_rows, top_k, logits, "top_k", ValueRange::kNonNegative);
  p.top_p = checked_param<float, double>(top_p_rows, top_p, logits, "top_p", ValueRange::kUnitInterval);
  p.min_p = checked_param<float, double>(min_p_rows, min_p, logits, "min_p", ValueRange::kUnitInterval);
  TORCH_CHECK_VALUE(draws >= 1, "n must be >= 1, got ", draws);
  for (const auto& [tensor, name] : {std::pair{&seed, "seed"}, std::pair{&step, "step"}}) {
    check_rows(*tensor, logits, at::kLong, name);
    TORCH_CHECK_VALUE(tensor->is_contiguous(), name, " must be contiguous");
  }
  p.seed = seed.const_data_ptr<int64_t>();
  p.step = step.const_data_ptr<int64_t>();
  p.draws = draws;
  return p;
}

// A device's kernel: reads `logits` (batch, vocab, unit stride along vocab) and writes `tokens` (batch, draws).
using SampleKernel = void (*)(const at::Tensor& logits, const at::Tensor& tokens, const SampleParams& params);

template <SampleKernel kernel>
at::Tensor sample(const at::Tensor& logits, PYSAMPLE_SAMPLE_PARAMETERS) {
  const SampleParams params = make_sample_params(logits, temperature_rows, temperature, top_k_rows, top_k, top_p_rows,
                                                 top_p, min_p_rows, min_p, seed, step, draws);
  at::Tensor tokens = at::empty({logits.size(0), draws}, logits.options().dtype(at::kLong));
  if (logits.size(0) != 0) kernel(logits.stride(1) == 1 ? logits : logits.contiguous(), tokens, params);
  return tokens;
}

}  // namespace pysample
