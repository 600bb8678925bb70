// Torch-side glue of the token bitmask, shared by the CPU and CUDA registrations: argument checks with messages that
// name the argument, and the entry point wrapped around a device's kernel.
#pragma once

#include <ATen/MemoryOverlap.h>
#include <ATen/Tensor.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <optional>

#include "common_args.h"
#include "pysample/token_bitmask.h"

namespace pysample {

// A device's kernel: the masked tokens [0, vocab_size) of `logits` (any strides, no internal overlap) set to -inf, in
// the rows listed in `indices` (1-D int64 or int32, contiguous; not yet range-checked) or, undefined, every row.
using TokenBitmaskKernel = void (*)(const at::Tensor& logits, const at::Tensor& bitmask, const at::Tensor& indices,
                                    int64_t vocab_size);

// The checked vocab_size: by default every token both the logits and the bitmask cover.
inline int64_t checked_bitmask(const at::Tensor& logits, const at::Tensor& bitmask,
                               const std::optional<at::Tensor>& indices, std::optional<int64_t> vocab_size) {
  check_scores(logits, "logits");
  TORCH_CHECK_VALUE(bitmask.dim() == 2, "bitmask must be 2-D (batch, words), got shape ", bitmask.sizes());
  TORCH_CHECK_TYPE(bitmask.scalar_type() == at::kInt, "bitmask must be int32, got ", bitmask.scalar_type());
  TORCH_CHECK_VALUE(bitmask.device() == logits.device(), "bitmask must be on the logits' device ", logits.device(),
                    ", got ", bitmask.device());
  TORCH_CHECK_VALUE(bitmask.size(0) == logits.size(0), "bitmask must have the logits' ", logits.size(0), " rows, got ",
                    bitmask.size(0));
  const int64_t vocab = logits.size(1), words = bitmask.size(1);
  const int64_t size = vocab_size.value_or(std::min(vocab, words * kBitmaskBitsPerWord));
  TORCH_CHECK_VALUE(size >= 0 && size <= vocab, "vocab_size must be in [0, ", vocab, "] (the logits' width), got ",
                    size);
  TORCH_CHECK_VALUE(bitmask_words(size) <= words,
                    "bitmask must have at least ceil(vocab_size / 32) = ", bitmask_words(size),
                    " words per row for vocab_size ", size, ", got ", words);
  if (indices) {
    TORCH_CHECK_VALUE(indices->dim() == 1, "indices must be 1-D, got shape ", indices->sizes());
    TORCH_CHECK_TYPE(indices->scalar_type() == at::kLong || indices->scalar_type() == at::kInt,
                     "indices must be int64 or int32, got ", indices->scalar_type());
    TORCH_CHECK_VALUE(indices->device() == logits.device(), "indices must be on the logits' device ", logits.device(),
                      ", got ", indices->device());
  }
  return size;
}

template <TokenBitmaskKernel kernel>
void apply_token_bitmask_(at::Tensor logits, const at::Tensor& bitmask, const std::optional<at::Tensor>& indices,
                          std::optional<int64_t> vocab_size) {
  const int64_t size = checked_bitmask(logits, bitmask, indices, vocab_size);
  at::assert_no_internal_overlap(logits);
  if ((indices ? indices->numel() : logits.size(0)) == 0) return;  // no row to mask (nor index to check)
  kernel(logits, bitmask, indices ? indices->contiguous() : at::Tensor(), size);
}

}  // namespace pysample
