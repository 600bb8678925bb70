// Torch-side glue of the fused beam search step, shared by the CPU and CUDA registrations: argument checks with
// messages that name the argument, the outputs, and the entry point wrapped around a device's kernel.
#pragma once

#include <ATen/Functions.h>
#include <ATen/Tensor.h>
#include <c10/util/Exception.h>

#include <limits>
#include <tuple>

#include "common_args.h"
#include "pysample/beam.h"

namespace pysample {

// A device's kernel: reads `logits` (batch * beams, vocab, unit stride along vocab) and `beam_scores` (batch * beams,
// contiguous float32), writes the top num_candidates per batch item, best first: `scores` (float32), `tokens` and
// `beams` (int64), each (batch, num_candidates).
using BeamStepKernel = void (*)(const at::Tensor& logits, const at::Tensor& beam_scores, int64_t num_beams,
                                bool normalize, const at::Tensor& scores, const at::Tensor& tokens,
                                const at::Tensor& beams);

template <BeamStepKernel kernel>
std::tuple<at::Tensor, at::Tensor, at::Tensor> beam_search_step(const at::Tensor& logits, const at::Tensor& beam_scores,
                                                                int64_t num_beams, int64_t num_candidates,
                                                                bool log_softmax) {
  check_logits(logits);
  TORCH_CHECK_VALUE(num_beams >= 1, "num_beams must be >= 1, got ", num_beams);
  const int64_t rows = logits.size(0);
  const int64_t vocab = logits.size(1);
  TORCH_CHECK_VALUE(rows % num_beams == 0, "logits' ", rows,
                    " rows must be batch * num_beams, num_beams = ", num_beams);
  TORCH_CHECK_VALUE(vocab >= 1, "logits must have a vocabulary (vocab >= 1), got shape ", logits.sizes());
  // Flat indices beam * vocab + token are 32-bit (pysample/beam.h).
  TORCH_CHECK_VALUE(num_beams * vocab <= std::numeric_limits<int32_t>::max(),
                    "num_beams * vocab must be below 2^31, got ", num_beams, " * ", vocab);
  TORCH_CHECK_VALUE(num_candidates >= 1 && num_candidates <= num_beams * vocab,
                    "num_candidates must be in [1, num_beams * vocab = ", num_beams * vocab, "], got ", num_candidates);
  TORCH_CHECK_VALUE(beam_scores.dim() == 1 && beam_scores.size(0) == rows, "beam_scores must have shape (", rows,
                    ",) (batch * num_beams), got ", beam_scores.sizes());
  TORCH_CHECK_TYPE(beam_scores.scalar_type() == at::kFloat, "beam_scores must be float32, got ",
                   beam_scores.scalar_type());
  TORCH_CHECK_VALUE(beam_scores.device() == logits.device(), "beam_scores must be on the logits' device ",
                    logits.device(), ", got ", beam_scores.device());

  const int64_t batch = rows / num_beams;
  const at::TensorOptions options = logits.options();
  at::Tensor scores = at::empty({batch, num_candidates}, options.dtype(at::kFloat));
  at::Tensor tokens = at::empty({batch, num_candidates}, options.dtype(at::kLong));
  at::Tensor beams = at::empty({batch, num_candidates}, options.dtype(at::kLong));
  if (batch != 0) {
    kernel(logits.stride(1) == 1 ? logits : logits.contiguous(), beam_scores.contiguous(), num_beams, log_softmax,
           scores, tokens, beams);
  }
  return {scores, tokens, beams};
}

}  // namespace pysample
