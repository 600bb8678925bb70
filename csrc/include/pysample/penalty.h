// Logic of the penalties that the CPU and CUDA kernels share: how a row's history is counted and how a count
// changes a score. Framework-free (no torch header) so that it compiles for host and device alike.
//
// A token's history is summarised in one unsigned entry: 2 * (occurrences at output positions) + (1 if it occurred
// at a prompt position). Every counted position is in the repetition penalty's scope; positions at or after the
// output start are also counted by the presence and frequency penalties (OpenAI's rule: generated tokens only).
// Entries combine with `|` and `+` only, so atomics build them in any order on the GPU.
#pragma once

#include <cstdint>

#include "pysample/common.h"

namespace pysample {

constexpr uint32_t kPromptSeen = 1;    // or-ed in for a prompt position
constexpr uint32_t kOutputCount = 2;   // added for an output position

// Every penalty is optional: an absent one (`enabled == false`) leaves the scores as they are.
struct PenaltyParams {
  RowParam<float, double> repetition;  // transformers' rule: s < 0 ? s * p : s / p, once per distinct token
  RowParam<float, double> presence;    // s -= presence for a token generated at least once
  RowParam<float, double> frequency;   // s -= frequency * (times generated)
};

// Where each row's history starts to count: positions before `history_start` are ignored (left padding, or a
// prompt the caller wants ignored: transformers' prompt_ignore_length); positions from `output_start` on are output.
struct HistoryScope {
  RowParam<int64_t, int64_t> history_start;
  RowParam<int64_t, int64_t> output_start;
};

// What a position contributes to its token's entry: 0 outside the history, else kPromptSeen or kOutputCount.
PYSAMPLE_HD uint32_t position_contribution(int64_t position, int64_t history_start, int64_t output_start) {
  if (position < history_start) return 0;
  return position < output_start ? kPromptSeen : kOutputCount;
}

PYSAMPLE_HD uint32_t add_contribution(uint32_t entry, uint32_t contribution) {
  return contribution == kPromptSeen ? (entry | kPromptSeen) : entry + contribution;
}

// One row's penalties, in the type T scores are computed in (computed_t: float16/bfloat16 scores are penalised in
// float32 and rounded once, float64 ones in double).
template <typename T>
struct RowPenalty {
  T repetition = 1;
  T presence = 0;
  T frequency = 0;
  bool has_repetition = false;
};

template <typename T>
PYSAMPLE_HD RowPenalty<T> row_penalty(const PenaltyParams& p, int64_t row) {
  RowPenalty<T> r;
  r.has_repetition = p.repetition.enabled;
  if (p.repetition.enabled) r.repetition = static_cast<T>(p.repetition.at(row));
  if (p.presence.enabled) r.presence = static_cast<T>(p.presence.at(row));
  if (p.frequency.enabled) r.frequency = static_cast<T>(p.frequency.at(row));
  return r;
}

// Whether a row's penalties depend only on whether a token was seen (the repetition penalty alone), so that a table
// of one bit per token, set where the entry is non-zero, can stand for the entries. Presence and frequency must be
// +0.0 exactly: s - (-0.0) would turn a score of -0.0 into +0.0.
template <typename T>
PYSAMPLE_HD bool only_seen_matters(const RowPenalty<T>& penalty) {
  return is_plus_zero(penalty.presence) && is_plus_zero(penalty.frequency);
}

// A seen table: one bit per token, token t at bit t % 32 of word t / 32 (1/32 of the entries' bytes).
constexpr int64_t kSeenBitsPerWord = 32;

PYSAMPLE_HD int64_t seen_words(int64_t vocab) { return (vocab + kSeenBitsPerWord - 1) / kSeenBitsPerWord; }

PYSAMPLE_HD uint32_t seen_bit(int64_t token) { return 1u << (token % kSeenBitsPerWord); }

PYSAMPLE_HD bool is_seen(const uint32_t* words, int64_t token) {
  return (words[token / kSeenBitsPerWord] & seen_bit(token)) != 0;
}

// The score of a token whose entry is non-zero: repetition first (transformers' rule), then frequency, then
// presence (vLLM's order), each rounded to T as torch's ops round them. `DivideByReciprocal` is
// how torch divides a tensor by a scalar on CUDA (x * (1 / p)); the CPU divides truly. Matching each device's
// transformers result bit for bit needs both.
template <bool DivideByReciprocal, typename T>
PYSAMPLE_HD T penalize(T score, uint32_t entry, const RowPenalty<T>& r) {
  if (r.has_repetition) {
    if (score < 0) {
      score = score * r.repetition;
    } else {
      score = DivideByReciprocal ? score * (T{1} / r.repetition) : score / r.repetition;
    }
  }
  const int32_t generated = static_cast<int32_t>(entry / kOutputCount);  // signed converts faster (AVX2)
  if (generated != 0) {
    score = score - r.frequency * static_cast<T>(generated);
    score = score - r.presence;
  }
  return score;
}

}  // namespace pysample
