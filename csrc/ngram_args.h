// Torch-side glue of the n-gram ban and the sequence bias, shared by the CPU and CUDA registrations: argument checks
// with messages that name the argument, and the entry points wrapped around a device's kernels.
#pragma once

#include <ATen/Functions.h>
#include <ATen/MemoryOverlap.h>
#include <ATen/Tensor.h>
#include <c10/util/Exception.h>

#include <optional>

#include "common_args.h"
#include "pysample/ngram.h"

namespace pysample {

// An int64 (rows,) tensor on `like`'s device, contiguous.
inline void check_row_lengths(const std::optional<at::Tensor>& lengths, int64_t rows, const at::Tensor& like,
                              const char* name) {
  if (!lengths) return;
  TORCH_CHECK_VALUE(lengths->dim() == 1 && lengths->size(0) == rows, name, " must have shape (", rows, ",), got ",
                    lengths->sizes());
  TORCH_CHECK_TYPE(lengths->scalar_type() == at::kLong, name, " must be int64, got ", lengths->scalar_type());
  TORCH_CHECK_VALUE(lengths->device() == like.device(), name, " must be on the scores' device ", like.device(),
                    ", got ", lengths->device());
  TORCH_CHECK_VALUE(lengths->is_contiguous(), name, " must be contiguous");
}

// A 1-D contiguous tensor of `dtype` on the scores' device.
inline void check_flat(const at::Tensor& t, at::ScalarType dtype, const at::Tensor& scores, const char* name) {
  TORCH_CHECK_VALUE(t.dim() == 1, name, " must be 1-D, got shape ", t.sizes());
  TORCH_CHECK_TYPE(t.scalar_type() == dtype, name, " must be ", dtype, ", got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.device() == scores.device(), name, " must be on the scores' device ", scores.device(), ", got ",
                    t.device());
  TORCH_CHECK_VALUE(t.is_contiguous(), name, " must be contiguous");
}

// A device's kernels. The n-gram ban writes `in` with the bans to `out` (the same tensor: in place; any strides, no
// internal overlap); the other tensors are contiguous. `sources` is undefined for the row's own ids.
using NgramKernel = void (*)(const at::Tensor& in, const at::Tensor& out, const at::Tensor& ids,
                             const at::Tensor& sources, const NgramParams& params);
using SequenceBiasKernel = void (*)(const at::Tensor& scores, const at::Tensor& ids, const int64_t* lengths,
                                    const at::Tensor& tokens, const at::Tensor& offsets, const at::Tensor& biases);

// The n-gram ops' arguments after the scores.
#define PYSAMPLE_NGRAM_PARAMETERS                                                                          \
  const at::Tensor &ids, const std::optional<at::Tensor>&lengths, const std::optional<at::Tensor>&sources, \
      const std::optional<at::Tensor>&source_lengths, const std::optional<at::Tensor>&ngram_size_rows,     \
      int64_t ngram_size
#define PYSAMPLE_NGRAM_ARGUMENTS ids, lengths, sources, source_lengths, ngram_size_rows, ngram_size

// The checked parameters of an n-gram ban on `scores`.
inline NgramParams make_ngram_params(const at::Tensor& scores, PYSAMPLE_NGRAM_PARAMETERS) {
  check_scores(scores);
  check_token_ids(ids, "ids", scores, "scores");
  const int64_t batch = scores.size(0);
  TORCH_CHECK_VALUE(ids.size(0) == batch, "ids must have the scores' batch ", batch, ", got ", ids.size(0));
  check_row_lengths(lengths, batch, scores, "lengths");
  if (sources) {
    check_token_ids(*sources, "sources", scores, "scores");
    TORCH_CHECK_TYPE(sources->scalar_type() == ids.scalar_type(), "sources must have the ids' dtype ",
                     ids.scalar_type(), ", got ", sources->scalar_type());
    TORCH_CHECK_VALUE(sources->size(0) == batch || (sources->size(0) > 0 && batch % sources->size(0) == 0),
                      "sources' batch (", sources->size(0), ") must equal or divide the scores' batch (", batch, ")");
    check_row_lengths(source_lengths, sources->size(0), scores, "source_lengths");
  } else {
    TORCH_CHECK_VALUE(!source_lengths, "source_lengths needs sources");
  }
  NgramParams params;
  params.ngram_size = checked_param<int64_t, int64_t>(ngram_size_rows, scalar_unless(ngram_size_rows, ngram_size),
                                                      scores, "ngram_size", ValueRange::kNonNegative);
  params.lengths = lengths ? lengths->const_data_ptr<int64_t>() : nullptr;
  params.source_lengths = source_lengths ? source_lengths->const_data_ptr<int64_t>() : nullptr;
  return params;
}

template <NgramKernel kernel>
void no_repeat_ngram_(at::Tensor scores, PYSAMPLE_NGRAM_PARAMETERS) {
  const NgramParams params = make_ngram_params(scores, PYSAMPLE_NGRAM_ARGUMENTS);
  at::assert_no_internal_overlap(scores);
  if (scores.numel() == 0) return;
  kernel(scores, scores, ids.contiguous(), sources ? sources->contiguous() : at::Tensor(), params);
}

template <NgramKernel kernel>
at::Tensor no_repeat_ngram(const at::Tensor& scores, PYSAMPLE_NGRAM_PARAMETERS) {
  const NgramParams params = make_ngram_params(scores, PYSAMPLE_NGRAM_ARGUMENTS);
  at::Tensor out = at::empty_like(scores, at::MemoryFormat::Contiguous);
  if (scores.numel() == 0) return out;
  kernel(scores, out, ids.contiguous(), sources ? sources->contiguous() : at::Tensor(), params);
  return out;
}

template <SequenceBiasKernel kernel>
void bias_sequences_(at::Tensor scores, const at::Tensor& ids, const std::optional<at::Tensor>& lengths,
                     const at::Tensor& tokens, const at::Tensor& offsets, const at::Tensor& biases) {
  check_scores(scores);
  check_token_ids(ids, "ids", scores, "scores");
  TORCH_CHECK_VALUE(ids.size(0) == scores.size(0), "ids must have the scores' batch ", scores.size(0), ", got ",
                    ids.size(0));
  check_row_lengths(lengths, scores.size(0), scores, "lengths");
  check_flat(tokens, at::kLong, scores, "sequence_tokens");
  check_flat(offsets, at::kLong, scores, "sequence_offsets");
  check_flat(biases, at::kFloat, scores, "sequence_biases");
  TORCH_CHECK_VALUE(offsets.size(0) == biases.size(0) + 1, "sequence_offsets must have one more entry (",
                    offsets.size(0), ") than sequence_biases (", biases.size(0), ")");
  at::assert_no_internal_overlap(scores);
  if (scores.numel() == 0 || biases.size(0) == 0) return;
  kernel(scores, ids.contiguous(), lengths ? lengths->const_data_ptr<int64_t>() : nullptr, tokens, offsets, biases);
}

}  // namespace pysample
