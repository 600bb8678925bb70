// Torch-side glue of the penalty ops, shared by the CPU and CUDA registrations: argument checks with messages that
// name the argument, and the entry points wrapped around a device's kernels.
#pragma once

#include <ATen/Functions.h>
#include <ATen/MemoryOverlap.h>
#include <ATen/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <optional>

#include "common_args.h"
#include "pysample/penalty.h"

namespace pysample {

// Token ids (batch of ids, length) on the scores' device. A batch of ids may serve several rows of scores (beams
// sharing their source row): it must then divide the scores' batch.
inline void check_ids(const at::Tensor& ids, const at::Tensor& scores, const char* scores_name) {
  check_token_ids(ids, "ids", scores, scores_name);
  const int64_t batch = scores.size(0);
  TORCH_CHECK_VALUE(ids.size(0) == batch || (ids.size(0) > 0 && batch % ids.size(0) == 0), "ids' batch (", ids.size(0),
                    ") must equal or divide the ", scores_name, "' batch (", batch, ")");
}

inline PenaltyParams make_penalty_params(const at::Tensor& scores, const std::optional<at::Tensor>& repetition_rows,
                                         std::optional<double> repetition,
                                         const std::optional<at::Tensor>& presence_rows, std::optional<double> presence,
                                         const std::optional<at::Tensor>& frequency_rows,
                                         std::optional<double> frequency) {
  check_scores(scores);
  PenaltyParams p;
  // repetition 0 or inf: transformers' rule as it stands (EncoderRepetitionPenalty(inf) stores 1 / inf)
  p.repetition =
      checked_param<float, double>(repetition_rows, repetition, scores, "repetition", ValueRange::kNonNegative);
  p.presence = checked_param<float, double>(presence_rows, presence, scores, "presence", ValueRange::kFinite);
  p.frequency = checked_param<float, double>(frequency_rows, frequency, scores, "frequency", ValueRange::kFinite);
  return p;
}

// `rows_of` is the tensor whose batch the per-row starts follow (the ids').
inline HistoryScope make_history_scope(const at::Tensor& rows_of, const std::optional<at::Tensor>& history_start_rows,
                                       int64_t history_start, const std::optional<at::Tensor>& output_start_rows,
                                       int64_t output_start) {
  HistoryScope h;
  h.history_start =
      checked_param<int64_t, int64_t>(history_start_rows, scalar_unless(history_start_rows, history_start), rows_of,
                                      "history_start", ValueRange::kNonNegative);
  h.output_start = checked_param<int64_t, int64_t>(output_start_rows, scalar_unless(output_start_rows, output_start),
                                                   rows_of, "output_start", ValueRange::kNonNegative);
  return h;
}

// Slot of each row of scores in a counts table (slots, vocab): `slots` (batch,) int64, or row r -> slot r.
inline void check_counts(const at::Tensor& counts, const std::optional<at::Tensor>& slots, int64_t batch, int64_t vocab,
                         const at::Tensor& device_of, const char* batch_name) {
  TORCH_CHECK_VALUE(counts.dim() == 2, "counts must be 2-D (slots, vocab), got shape ", counts.sizes());
  TORCH_CHECK_TYPE(counts.scalar_type() == at::kInt, "counts must be int32, got ", counts.scalar_type());
  TORCH_CHECK_VALUE(counts.is_contiguous(), "counts must be contiguous");
  TORCH_CHECK_VALUE(counts.device() == device_of.device(), "counts must be on the ", batch_name, "' device ",
                    device_of.device(), ", got ", counts.device());
  if (vocab >= 0) {
    TORCH_CHECK_VALUE(counts.size(1) == vocab, "counts must have the scores' vocab size ", vocab, ", got ",
                      counts.size(1));
  }
  if (slots) {
    TORCH_CHECK_VALUE(slots->dim() == 1 && slots->size(0) == batch, "slots must have shape (batch,) = (", batch,
                      ",), got ", slots->sizes());
    TORCH_CHECK_TYPE(slots->scalar_type() == at::kLong, "slots must be int64, got ", slots->scalar_type());
    TORCH_CHECK_VALUE(slots->is_contiguous(), "slots must be contiguous");
    TORCH_CHECK_VALUE(slots->device() == counts.device(), "slots must be on the counts' device ", counts.device(),
                      ", got ", slots->device());
  } else {
    TORCH_CHECK_VALUE(counts.size(0) == batch, "without slots, counts must have one slot per row: ", batch, " rows, ",
                      counts.size(0), " slots");
  }
}

// The seen table beside a counts table: int32 words of seen bits (penalty.h), (slots, seen_words(vocab)), on the
// counts' device, contiguous.
inline void check_seen(const at::Tensor& seen, const at::Tensor& counts) {
  TORCH_CHECK_TYPE(seen.scalar_type() == at::kInt, "seen must be int32, got ", seen.scalar_type());
  const std::vector<int64_t> shape{counts.size(0), seen_words(counts.size(1))};
  TORCH_CHECK_VALUE(seen.sizes() == at::IntArrayRef(shape), "seen must have shape ", at::IntArrayRef(shape),
                    " (a bit per token of counts ", counts.sizes(), "), got ", seen.sizes());
  TORCH_CHECK_VALUE(seen.is_contiguous(), "seen must be contiguous");
  TORCH_CHECK_VALUE(seen.device() == counts.device(), "seen must be on the counts' device ", counts.device(), ", got ",
                    seen.device());
}

// A device's kernels. `scores` may have any strides (no internal overlap); ids, counts, seen and slots are
// contiguous.
// PenaltyKernel reads `in` and writes the penalised rows to `out` (the same tensor when in place).
using PenaltyKernel = void (*)(const at::Tensor& in, const at::Tensor& out, const at::Tensor& ids,
                               const PenaltyParams& params, const HistoryScope& scope);
using CountKernel = void (*)(const at::Tensor& counts, const at::Tensor& seen, const at::Tensor& ids,
                             const std::optional<at::Tensor>& slots, const HistoryScope& scope);
using CountsPenaltyKernel = void (*)(const at::Tensor& scores, const at::Tensor& counts, const at::Tensor& seen,
                                     const std::optional<at::Tensor>& slots, const PenaltyParams& params);

#define PYSAMPLE_PENALTY_PARAMETERS                                                  \
  const std::optional<at::Tensor>&repetition_rows, std::optional<double> repetition, \
      const std::optional<at::Tensor>&presence_rows, std::optional<double> presence, \
      const std::optional<at::Tensor>&frequency_rows, std::optional<double> frequency
#define PYSAMPLE_PENALTY_ARGUMENTS repetition_rows, repetition, presence_rows, presence, frequency_rows, frequency
#define PYSAMPLE_SCOPE_PARAMETERS                                            \
  const std::optional<at::Tensor>&history_start_rows, int64_t history_start, \
      const std::optional<at::Tensor>&output_start_rows, int64_t output_start
#define PYSAMPLE_SCOPE_ARGUMENTS history_start_rows, history_start, output_start_rows, output_start

template <PenaltyKernel kernel>
void apply_penalties_inplace(at::Tensor scores, const at::Tensor& ids, PYSAMPLE_PENALTY_PARAMETERS,
                             PYSAMPLE_SCOPE_PARAMETERS) {
  const PenaltyParams params = make_penalty_params(scores, PYSAMPLE_PENALTY_ARGUMENTS);
  check_ids(ids, scores, "scores");
  const HistoryScope scope = make_history_scope(ids, PYSAMPLE_SCOPE_ARGUMENTS);
  at::assert_no_internal_overlap(scores);  // a token shared by two rows would be penalised twice
  if (scores.numel() == 0 || ids.size(1) == 0) return;
  kernel(scores, scores, ids.contiguous(), params, scope);
}

template <PenaltyKernel kernel>
at::Tensor apply_penalties(const at::Tensor& scores, const at::Tensor& ids, PYSAMPLE_PENALTY_PARAMETERS,
                           PYSAMPLE_SCOPE_PARAMETERS) {
  const PenaltyParams params = make_penalty_params(scores, PYSAMPLE_PENALTY_ARGUMENTS);
  check_ids(ids, scores, "scores");
  const HistoryScope scope = make_history_scope(ids, PYSAMPLE_SCOPE_ARGUMENTS);
  at::Tensor out = at::empty_like(scores, at::MemoryFormat::Contiguous);
  if (scores.numel() != 0) kernel(scores, out, ids.contiguous(), params, scope);
  return out;
}

template <CountKernel kernel>
void count_tokens_(at::Tensor counts, at::Tensor seen, const at::Tensor& ids, const std::optional<at::Tensor>& slots,
                   PYSAMPLE_SCOPE_PARAMETERS) {
  check_token_ids(ids, "ids", counts, "counts");
  check_counts(counts, slots, ids.size(0), -1, ids, "ids");
  check_seen(seen, counts);
  const HistoryScope scope = make_history_scope(ids, PYSAMPLE_SCOPE_ARGUMENTS);
  if (ids.numel() == 0 || counts.size(1) == 0) return;
  kernel(counts, seen, ids.contiguous(), slots, scope);
}

template <CountsPenaltyKernel kernel>
void apply_penalty_counts_(at::Tensor scores, const at::Tensor& counts, const at::Tensor& seen,
                           const std::optional<at::Tensor>& slots, PYSAMPLE_PENALTY_PARAMETERS) {
  const PenaltyParams params = make_penalty_params(scores, PYSAMPLE_PENALTY_ARGUMENTS);
  check_counts(counts, slots, scores.size(0), scores.size(1), scores, "scores");
  check_seen(seen, counts);
  at::assert_no_internal_overlap(scores);
  if (scores.numel() == 0) return;
  kernel(scores, counts, seen, slots, params);
}

}  // namespace pysample
