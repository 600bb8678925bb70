// CPU kernels of the penalties. From a row's ids (apply_penalties_): the history is counted into a per-thread table
// of entries (penalty.h), then every distinct token's score is penalised once, by visiting the history again (a
// short history: O(history) per row, whatever the vocabulary) or by one vectorized pass over the row (a long one:
// the same pass copies the row when out of place), and the table is left all zero for the next row. A row with
// the repetition penalty alone records only which tokens it saw, a byte each. From the tables kept across steps
// (count_tokens_, apply_penalty_counts_: counts, and the seen bytes the repetition penalty alone reads): one
// vectorized pass over the row.
#include <torch/library.h>

#include <cstring>
#include <type_traits>
#include <vector>

#include "../penalty_args.h"
#include "cpu_rows.h"
#include "pysample/penalty.h"

namespace pysample {
namespace {

void check_row_values(const PenaltyParams& p, int64_t batch) {
  check_row_values(p.repetition, batch, "repetition", "> 0", [](double v) { return v > 0; });
  auto finite = [](double v) { return std::isfinite(v); };
  check_row_values(p.presence, batch, "presence", "a finite number", finite);
  check_row_values(p.frequency, batch, "frequency", "a finite number", finite);
}

void check_row_values(const HistoryScope& h, int64_t batch) {
  auto non_negative = [](int64_t v) { return v >= 0; };
  check_row_values(h.history_start, batch, "history_start", ">= 0", non_negative);
  check_row_values(h.output_start, batch, "output_start", ">= 0", non_negative);
}

// A row's table holds an entry per token: penalty.h's (uint32_t: seen in the prompt, times generated) or, when the
// row's penalties only ask whether a token was seen (only_seen_matters), a byte (uint8_t) that says so. The byte
// table is a quarter of the size: counting a long history into it, and the pass over the row that reads it, stay in
// the cache (and a counts table kept across steps is read a quarter as much).
template <typename Entry>
inline Entry add_to_entry(Entry entry, uint32_t contribution) {
  if constexpr (std::is_same_v<Entry, uint8_t>) {
    return 1;
  } else {
    return add_contribution(entry, contribution);
  }
}

// Adds the history of one row of ids to its table. Ids outside [0, vocab) (padding such as -1) are ignored.
template <typename Entry, typename id_t>
void count_row(Entry* entries, int64_t vocab, const id_t* ids, int64_t length, int64_t history_start,
               int64_t output_start) {
  for (int64_t pos = std::min(history_start, length); pos < length; ++pos) {
    const int64_t id = ids[pos];
    if (id < 0 || id >= vocab) continue;
    entries[id] = add_to_entry(entries[id], position_contribution(pos, history_start, output_start));
  }
}

// The tables of a thread, all zero between rows (penalize_row clears what count_row set).
struct EntryTable {
  std::vector<uint32_t> entries;
  std::vector<uint8_t> seen;
  void reserve(int64_t vocab) {
    if (static_cast<int64_t>(entries.size()) >= vocab) return;
    entries.resize(vocab);
    seen.resize(vocab);
  }
};

// A table, written to when it is cleared. Restrict: a table never overlaps the scores, which a byte table (a char
// type) would otherwise be assumed to do, and the loops over it would not vectorize.
template <bool Clear, typename Entry>
using Entries = std::conditional_t<Clear, Entry*, const Entry*> __restrict;

// out[i] = in[i], penalised where entries[i] != 0 (the others keep their exact bits); `in` may be `out`. With `Clear`
// the entries are zeroed as they are read: a table counted from ids is left clear for the next row by the same pass
// that copies and penalises the row.
template <bool Clear, typename Entry, typename scalar_t>
inline void penalize_by_entries(const scalar_t* in, int64_t in_stride, scalar_t* out, int64_t out_stride,
                                Entries<Clear, Entry> entries, int64_t vocab, const RowPenalty& penalty) {
  for (int64_t i = 0; i < vocab; ++i) {
    const scalar_t s = in[i * in_stride];
    const float penalized = penalize<false>(static_cast<float>(s), entries[i], penalty);
    out[i * out_stride] = entries[i] != 0 ? static_cast<scalar_t>(penalized) : s;
    if constexpr (Clear) entries[i] = 0;
  }
}

// Contiguous float32 rows, vectorized.
template <bool Clear, typename Entry>
PYSAMPLE_CPU_CLONES void penalize_by_entries_dense(const float* in, float* out, Entries<Clear, Entry> entries,
                                                   int64_t vocab, const RowPenalty& penalty) {
  penalize_by_entries<Clear, Entry>(in, 1, out, 1, entries, vocab, penalty);
}

template <bool Clear, typename Entry, typename scalar_t>
void penalize_row_by_entries(const scalar_t* in, int64_t in_stride, scalar_t* out, int64_t out_stride,
                             Entries<Clear, Entry> entries, int64_t vocab, const RowPenalty& penalty) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (in_stride == 1 && out_stride == 1) {
      return penalize_by_entries_dense<Clear, Entry>(in, out, entries, vocab, penalty);
    }
  }
  penalize_by_entries<Clear, Entry>(in, in_stride, out, out_stride, entries, vocab, penalty);
}

// Penalises the tokens of a row's history, once each, visiting the history again: clears each entry as it goes.
// The visits miss the cache when the row is not in it (in place, a large batch): the score of the token a few
// positions ahead is requested early so that the misses overlap.
constexpr int64_t kPrefetchDistance = 16;

template <typename Entry, typename scalar_t, typename id_t>
void penalize_history(scalar_t* scores, int64_t stride, int64_t vocab, const id_t* ids, int64_t length,
                      int64_t history_start, const RowPenalty& penalty, Entry* entries) {
  for (int64_t pos = std::min(history_start, length); pos < length; ++pos) {
    if (pos + kPrefetchDistance < length) {
      const int64_t ahead = ids[pos + kPrefetchDistance];
      if (ahead >= 0 && ahead < vocab) __builtin_prefetch(&scores[ahead * stride], 1);
    }
    const int64_t id = ids[pos];
    if (id < 0 || id >= vocab) continue;
    const uint32_t entry = entries[id];
    if (entry == 0) continue;  // out of scope, or already penalised: each distinct token once
    entries[id] = 0;
    scalar_t& s = scores[id * stride];
    s = static_cast<scalar_t>(penalize<false>(static_cast<float>(s), entry, penalty));
  }
}

// A history longer than vocab / kSequentialRatio is penalised by one pass over the row rather than by visiting its
// tokens: the visits hit the row at random, and once they touch most of its cache lines a sequential pass (which
// also copies the row when out of place, and clears the table) is faster.
constexpr int64_t kSequentialRatio = 32;

// One row: `in` copied to `out` (unless they are the same row: in place), then penalised from `ids`.
template <typename Entry, typename scalar_t, typename id_t>
void penalize_row(const scalar_t* in, int64_t in_stride, scalar_t* out, int64_t out_stride, int64_t vocab,
                  const id_t* ids, int64_t length, int64_t history_start, int64_t output_start,
                  const RowPenalty& penalty, Entry* entries) {
  count_row(entries, vocab, ids, length, history_start, output_start);
  if (length * kSequentialRatio >= vocab) {
    return penalize_row_by_entries<true, Entry>(in, in_stride, out, out_stride, entries, vocab, penalty);
  }
  if (in != out) {  // copied row by row, so that the penalties find it in the cache
    if (in_stride == 1 && out_stride == 1) {
      std::memcpy(out, in, vocab * sizeof(scalar_t));
    } else {
      for (int64_t i = 0; i < vocab; ++i) out[i * out_stride] = in[i * in_stride];
    }
  }
  penalize_history(out, out_stride, vocab, ids, length, history_start, penalty, entries);
}

void apply_penalties_cpu(const at::Tensor& in, const at::Tensor& out, const at::Tensor& ids,
                         const PenaltyParams& params, const HistoryScope& scope) {
  TORCH_CHECK_VALUE(in.device().is_cpu(), "scores must be on the CPU for the CPU kernel");
  const int64_t batch = in.size(0), vocab = in.size(1);
  const int64_t rows_per_ids = batch / ids.size(0), length = ids.size(1);
  check_row_values(params, batch);
  check_row_values(scope, ids.size(0));
  dispatch_logits(in, [&](auto score_zero) {
    using scalar_t = decltype(score_zero);
    dispatch_ids(ids, [&](auto id_zero) {
      using id_t = decltype(id_zero);
      const scalar_t* in_data = in.const_data_ptr<scalar_t>();
      scalar_t* out_data = out.data_ptr<scalar_t>();
      const id_t* id_data = ids.const_data_ptr<id_t>();
      for_each_row<EntryTable>(batch, vocab, [&](int64_t row, EntryTable& table) {
        const int64_t ids_row = row / rows_per_ids;
        const RowPenalty penalty = row_penalty(params, row);
        auto penalize_with = [&](auto* entries) {
          penalize_row(in_data + row * in.stride(0), in.stride(1), out_data + row * out.stride(0), out.stride(1),
                       vocab, id_data + ids_row * length, length, scope.history_start.at(ids_row),
                       scope.output_start.at(ids_row), penalty, entries);
        };
        if (only_seen_matters(penalty)) {
          penalize_with(table.seen.data());
        } else {
          penalize_with(table.entries.data());
        }
      });
    });
  });
}

// Slot of each row, every one checked in range before anything is written.
std::vector<int64_t> slots_of(const std::optional<at::Tensor>& slots, int64_t batch, int64_t num_slots) {
  std::vector<int64_t> result(batch);
  for (int64_t r = 0; r < batch; ++r) {
    result[r] = slots ? slots->const_data_ptr<int64_t>()[r] : r;
    TORCH_CHECK_INDEX(result[r] >= 0 && result[r] < num_slots, "slots[", r, "] = ", result[r],
                      " is out of range for counts with ", num_slots, " slots");
  }
  return result;
}

// Rows one after the other: two rows may share a slot (they then both add to it).
void count_tokens_cpu(const at::Tensor& counts, const at::Tensor& seen, const at::Tensor& ids,
                      const std::optional<at::Tensor>& slots, const HistoryScope& scope) {
  TORCH_CHECK_VALUE(counts.device().is_cpu(), "counts must be on the CPU for the CPU kernel");
  const int64_t batch = ids.size(0), length = ids.size(1), vocab = counts.size(1);
  check_row_values(scope, batch);
  const std::vector<int64_t> slot = slots_of(slots, batch, counts.size(0));
  auto* entries = reinterpret_cast<uint32_t*>(counts.data_ptr<int32_t>());
  uint8_t* seen_data = seen.data_ptr<uint8_t>();
  dispatch_ids(ids, [&](auto id_zero) {
    using id_t = decltype(id_zero);
    const id_t* id_data = ids.const_data_ptr<id_t>();
    for (int64_t r = 0; r < batch; ++r) {
      const id_t* row_ids = id_data + r * length;
      const int64_t history_start = scope.history_start.at(r), output_start = scope.output_start.at(r);
      count_row(entries + slot[r] * vocab, vocab, row_ids, length, history_start, output_start);
      count_row(seen_data + slot[r] * vocab, vocab, row_ids, length, history_start, output_start);
    }
  });
}

void apply_penalty_counts_cpu(const at::Tensor& scores, const at::Tensor& counts, const at::Tensor& seen,
                              const std::optional<at::Tensor>& slots, const PenaltyParams& params) {
  TORCH_CHECK_VALUE(scores.device().is_cpu(), "scores must be on the CPU for the CPU kernel");
  const int64_t batch = scores.size(0), vocab = scores.size(1);
  check_row_values(params, batch);
  const std::vector<int64_t> slot = slots_of(slots, batch, counts.size(0));
  const auto* entries = reinterpret_cast<const uint32_t*>(counts.const_data_ptr<int32_t>());
  const uint8_t* seen_data = seen.const_data_ptr<uint8_t>();
  dispatch_logits(scores, [&](auto zero) {
    using scalar_t = decltype(zero);
    scalar_t* data = scores.data_ptr<scalar_t>();
    const int64_t stride = scores.stride(1);
    for_each_row<NoScratch>(batch, vocab, [&](int64_t row, NoScratch&) {
      scalar_t* row_scores = data + row * scores.stride(0);
      const RowPenalty penalty = row_penalty(params, row);
      if (only_seen_matters(penalty)) {
        penalize_row_by_entries<false, uint8_t>(row_scores, stride, row_scores, stride, seen_data + slot[row] * vocab,
                                                vocab, penalty);
      } else {
        penalize_row_by_entries<false, uint32_t>(row_scores, stride, row_scores, stride, entries + slot[row] * vocab,
                                                 vocab, penalty);
      }
    });
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(pysample, CPU, m) {
  m.impl("apply_penalties_", &apply_penalties_inplace<apply_penalties_cpu>);
  m.impl("apply_penalties", &apply_penalties<apply_penalties_cpu>);
  m.impl("count_tokens_", &count_tokens_<count_tokens_cpu>);
  m.impl("apply_penalty_counts_", &apply_penalty_counts_<apply_penalty_counts_cpu>);
}

}  // namespace pysample
