// Torch-side glue of token_logprobs, shared by the CPU and CUDA registrations: argument checks with messages that
// name the argument, the outputs, and the entry point wrapped around a device's kernel.
#pragma once

#include <ATen/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <tuple>

#include "common_args.h"
#include "pysample/token_logprobs.h"

namespace pysample {

// The op's four outputs, in schema order.
struct TokenLogprobs {
  at::Tensor token_logprobs;  // float32 (batch, n)
  at::Tensor ranks;           // int64 (batch, n)
  at::Tensor top_ids;         // int64 (batch, num_top)
  at::Tensor top_logprobs;    // float32 (batch, num_top)
};

// A device's kernel: fills `out` for logits (batch, vocab) of any strides and contiguous tokens (batch, n) int64
// (not yet range-checked).
using TokenLogprobsKernel = void (*)(const at::Tensor& logits, const at::Tensor& tokens, int64_t num_top,
                                     const TokenLogprobs& out);

inline void check_token_logprobs(const at::Tensor& logits, const at::Tensor& tokens, int64_t num_top) {
  check_scores(logits, "logits");
  TORCH_CHECK_VALUE(tokens.dim() == 2, "tokens must be 2-D (batch, n), got shape ", tokens.sizes());
  TORCH_CHECK_TYPE(tokens.scalar_type() == at::kLong, "tokens must be int64, got ", tokens.scalar_type());
  TORCH_CHECK_VALUE(tokens.device() == logits.device(), "tokens must be on the logits' device ", logits.device(),
                    ", got ", tokens.device());
  TORCH_CHECK_VALUE(tokens.size(0) == logits.size(0), "tokens must have the logits' ", logits.size(0), " rows, got ",
                    tokens.size(0));
  TORCH_CHECK_VALUE(num_top >= 0 && num_top <= kMaxLogprobsTop, "num_top must be in [0, ", kMaxLogprobsTop, "], got ",
                    num_top);
  TORCH_CHECK_VALUE(num_top <= logits.size(1), "num_top must be at most the vocabulary size ", logits.size(1), ", got ",
                    num_top);
}

template <TokenLogprobsKernel kernel>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> token_logprobs(const at::Tensor& logits,
                                                                          const at::Tensor& tokens, int64_t num_top) {
  check_token_logprobs(logits, tokens, num_top);
  const int64_t batch = logits.size(0), n = tokens.size(1);
  const auto floats = logits.options().dtype(at::kFloat), longs = logits.options().dtype(at::kLong);
  const TokenLogprobs out{at::empty({batch, n}, floats), at::empty({batch, n}, longs),
                          at::empty({batch, num_top}, longs), at::empty({batch, num_top}, floats)};
  if (batch > 0) kernel(logits, tokens.contiguous(), num_top, out);
  return {out.token_logprobs, out.ranks, out.top_ids, out.top_logprobs};
}

}  // namespace pysample
