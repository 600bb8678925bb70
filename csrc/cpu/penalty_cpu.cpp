// CPU kernels of the penalties. From a row's ids (apply_penalties_): the history is counted into a per-thread table
// of entries (penalty.h), then every distinct token's score is penalised once, by visiting the history again (a
// short history: O(history) per row, whatever the vocabulary) or by one vectorized pass over the row (a long one:
// the same pass copies the row when out of place), and the table is left all zero for the next row. A row with
// the repetition penalty alone records only which tokens it saw, a bit each. From the tables kept across steps
// (count_tokens_, apply_penalty_counts_: counts, and seen bits): the seen bits' tokens one by one when they are few
// (a short history), else one vectorized pass over the row.
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
  check_row_values(p.repetition, batch, "repetition", ValueRange::kNonNegative);
  check_row_values(p.presence, batch, "presence", ValueRange::kFinite);
  check_row_values(p.frequency, batch, "frequency", ValueRange::kFinite);
}

void check_row_values(const HistoryScope& h, int64_t batch) {
  check_row_values(h.history_start, batch, "history_start", ValueRange::kNonNegative);
  check_row_values(h.output_start, batch, "output_start", ValueRange::kNonNegative);
}

// A row's table is one of two kinds. Entries: a uint32_t per token (penalty.h: seen in the prompt, times generated).
// Seen bits: when the row's penalties only ask whether a token was seen (only_seen_matters), a bit per token
// (penalty.h): counting a long history into it and the pass over the row that reads it stay in the L1 cache, and a
// table kept across steps is read at 1/32 of the entries' bytes.
enum class Table { kEntries, kSeen };

// A table's words. Restrict: a table never overlaps the scores, and the loops over it would not vectorize otherwise.
template <bool Clear>
using Words = std::conditional_t<Clear, uint32_t*, const uint32_t*> __restrict;

template <Table kind>
inline void add_to_table(uint32_t* table, int64_t id, uint32_t contribution) {
  if constexpr (kind == Table::kSeen) {
    table[id / kSeenBitsPerWord] |= seen_bit(id);
  } else {
    table[id] = add_contribution(table[id], contribution);
  }
}

// A token's entry (for seen bits: 1 when seen), cleared: 0 once the token was penalised, or when never counted.
template <Table kind>
inline uint32_t take_from_table(uint32_t* table, int64_t id) {
  if constexpr (kind == Table::kSeen) {
    uint32_t& word = table[id / kSeenBitsPerWord];
    const uint32_t bit = seen_bit(id);
    const bool seen = (word & bit) != 0;
    word &= ~bit;
    return seen;
  } else {
    const uint32_t entry = table[id];
    table[id] = 0;
    return entry;
  }
}

// Adds the history of one row of ids to its table. Ids outside [0, vocab) (padding such as -1) are ignored.
template <Table kind, typename id_t>
void count_row(uint32_t* table, int64_t vocab, const id_t* ids, int64_t length, int64_t history_start,
               int64_t output_start) {
  for (int64_t pos = std::min(history_start, length); pos < length; ++pos) {
    const int64_t id = ids[pos];
    if (id < 0 || id >= vocab) continue;
    add_to_table<kind>(table, id, position_contribution(pos, history_start, output_start));
  }
}

// The tables of a thread, all zero between rows (penalize_row clears what count_row set).
struct RowTables {
  std::vector<uint32_t> entries;
  std::vector<uint32_t> seen;
  void reserve(int64_t vocab) {
    if (static_cast<int64_t>(entries.size()) >= vocab) return;
    entries.resize(vocab);
    seen.resize(seen_words(vocab));
  }
  uint32_t* of(Table kind) { return kind == Table::kSeen ? seen.data() : entries.data(); }
};

// out[i] = in[i], penalised where the token's entry (kind kEntries) or bit (kSeen) is non-zero; the others keep
// their exact bits. `in` may be `out`. With `Clear` the table is zeroed as it is read: a table counted from ids is
// left clear for the next row by the same pass that copies and penalises the row.
template <bool Clear, Table kind, typename scalar_t>
inline void penalize_by_table(const scalar_t* in, int64_t in_stride, scalar_t* out, int64_t out_stride,
                              Words<Clear> table, int64_t vocab, const RowPenalty<computed_t<scalar_t>>& penalty) {
  auto penalize_one = [&](int64_t i, uint32_t entry) {
    const scalar_t s = in[i * in_stride];
    const auto penalized = penalize<false>(static_cast<computed_t<scalar_t>>(s), entry, penalty);
    out[i * out_stride] = entry != 0 ? static_cast<scalar_t>(penalized) : s;
  };
  if constexpr (kind == Table::kEntries) {
    for (int64_t i = 0; i < vocab; ++i) {
      penalize_one(i, table[i]);
      if constexpr (Clear) table[i] = 0;
    }
  } else {
    // Word by word: a whole word's 32 tokens in a loop of constant length (vectorized), the row's last word alone.
    for (int64_t w = 0; w < seen_words(vocab); ++w) {
      const uint32_t bits = table[w];
      const int64_t first = w * kSeenBitsPerWord;
      if (first + kSeenBitsPerWord <= vocab) {
        for (int64_t j = 0; j < kSeenBitsPerWord; ++j) penalize_one(first + j, (bits >> j) & 1);
      } else {
        for (int64_t j = 0; first + j < vocab; ++j) penalize_one(first + j, (bits >> j) & 1);
      }
      if constexpr (Clear) table[w] = 0;
    }
  }
}

// Contiguous float32 rows, vectorized.
template <bool Clear, Table kind>
PYSAMPLE_CPU_CLONES void penalize_by_table_dense(const float* in, float* out, Words<Clear> table, int64_t vocab,
                                                 const RowPenalty<float>& penalty) {
  penalize_by_table<Clear, kind>(in, 1, out, 1, table, vocab, penalty);
}

template <bool Clear, Table kind, typename scalar_t>
void penalize_row_by_table(const scalar_t* in, int64_t in_stride, scalar_t* out, int64_t out_stride, Words<Clear> table,
                           int64_t vocab, const RowPenalty<computed_t<scalar_t>>& penalty) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (in_stride == 1 && out_stride == 1) return penalize_by_table_dense<Clear, kind>(in, out, table, vocab, penalty);
  }
  penalize_by_table<Clear, kind>(in, in_stride, out, out_stride, table, vocab, penalty);
}

// Penalises the tokens of a row's history, once each, visiting the history again: clears each entry as it goes.
// The visits miss the cache when the row is not in it (in place, a large batch): the score of the token a few
// positions ahead is requested early so that the misses overlap.
constexpr int64_t kPrefetchDistance = 16;

template <Table kind, typename scalar_t, typename id_t>
void penalize_history(scalar_t* scores, int64_t stride, int64_t vocab, const id_t* ids, int64_t length,
                      int64_t history_start, const RowPenalty<computed_t<scalar_t>>& penalty, uint32_t* table) {
  for (int64_t pos = std::min(history_start, length); pos < length; ++pos) {
    if (pos + kPrefetchDistance < length) {
      const int64_t ahead = ids[pos + kPrefetchDistance];
      if (ahead >= 0 && ahead < vocab) __builtin_prefetch(&scores[ahead * stride], 1);
    }
    const int64_t id = ids[pos];
    if (id < 0 || id >= vocab) continue;
    const uint32_t entry = take_from_table<kind>(table, id);
    if (entry == 0) continue;  // out of scope, or already penalised: each distinct token once
    scalar_t& s = scores[id * stride];
    s = static_cast<scalar_t>(penalize<false>(static_cast<computed_t<scalar_t>>(s), entry, penalty));
  }
}

// A history longer than vocab / kSequentialRatio is penalised by one pass over the row rather than by visiting its
// tokens: the visits hit the row at random, and once they touch most of its cache lines a sequential pass (which
// also copies the row when out of place, and clears the table) is faster.
constexpr int64_t kSequentialRatio = 32;

// One row: `in` copied to `out` (unless they are the same row: in place), then penalised from `ids`.
template <Table kind, typename scalar_t, typename id_t>
void penalize_row(const scalar_t* in, int64_t in_stride, scalar_t* out, int64_t out_stride, int64_t vocab,
                  const id_t* ids, int64_t length, int64_t history_start, int64_t output_start,
                  const RowPenalty<computed_t<scalar_t>>& penalty, uint32_t* table) {
  count_row<kind>(table, vocab, ids, length, history_start, output_start);
  if (length * kSequentialRatio >= vocab) {
    return penalize_row_by_table<true, kind>(in, in_stride, out, out_stride, table, vocab, penalty);
  }
  if (in != out) {  // copied row by row, so that the penalties find it in the cache
    if (in_stride == 1 && out_stride == 1) {
      std::memcpy(out, in, vocab * sizeof(scalar_t));
    } else {
      for (int64_t i = 0; i < vocab; ++i) out[i * out_stride] = in[i * in_stride];
    }
  }
  penalize_history<kind>(out, out_stride, vocab, ids, length, history_start, penalty, table);
}

// The tokens of a row's seen bits (set exactly where its entries are non-zero), when fewer than vocab /
// kSequentialRatio, are penalised in place one by one, like a short history's (penalize_history): the scores (and
// entries) of the token kPrefetchDistance ahead are requested early so that the cache misses overlap.
struct SeenTokens {
  std::vector<int32_t> tokens;  // room enough: a row's list is made only when it has fewer bits set than that
  void reserve(int64_t vocab) { tokens.resize(vocab / kSequentialRatio + 1); }
};

PYSAMPLE_CPU_CLONES int64_t count_seen(const uint32_t* seen, int64_t words) {
  int64_t count = 0;
  for (int64_t w = 0; w < words; ++w) count += __builtin_popcount(seen[w]);
  return count;
}

template <Table kind, typename scalar_t>
void penalize_seen_tokens(scalar_t* row, int64_t stride, const uint32_t* seen, const uint32_t* entries, int64_t vocab,
                          const RowPenalty<computed_t<scalar_t>>& penalty, int32_t* tokens) {
  int64_t n = 0;
  for (int64_t w = 0; w < seen_words(vocab); ++w) {
    for (uint32_t bits = seen[w]; bits != 0; bits &= bits - 1) {
      tokens[n++] = static_cast<int32_t>(w * kSeenBitsPerWord + __builtin_ctz(bits));
    }
  }
  while (n > 0 && tokens[n - 1] >= vocab) --n;  // bits past the vocabulary in the last word: no tokens
  for (int64_t t = 0; t < n; ++t) {
    if (t + kPrefetchDistance < n) {
      const int64_t ahead = tokens[t + kPrefetchDistance];
      __builtin_prefetch(&row[ahead * stride], 1);
      if constexpr (kind == Table::kEntries) __builtin_prefetch(&entries[ahead]);
    }
    const int64_t i = tokens[t];
    const uint32_t entry = kind == Table::kSeen ? 1 : entries[i];
    using computed = computed_t<scalar_t>;
    row[i * stride] = static_cast<scalar_t>(penalize<false>(static_cast<computed>(row[i * stride]), entry, penalty));
  }
}

void apply_penalties_cpu(const at::Tensor& in, const at::Tensor& out, const at::Tensor& ids,
                         const PenaltyParams& params, const HistoryScope& scope) {
  TORCH_CHECK_VALUE(in.device().is_cpu(), "scores must be on the CPU for the CPU kernel");
  const int64_t batch = in.size(0), vocab = in.size(1);
  const int64_t rows_per_ids = batch / ids.size(0), length = ids.size(1);
  check_row_values(params, batch);
  check_row_values(scope, ids.size(0));
  dispatch_scores(in, [&](auto score_zero) {
    using scalar_t = decltype(score_zero);
    dispatch_ids(ids, [&](auto id_zero) {
      using id_t = decltype(id_zero);
      const scalar_t* in_data = in.const_data_ptr<scalar_t>();
      scalar_t* out_data = out.data_ptr<scalar_t>();
      const id_t* id_data = ids.const_data_ptr<id_t>();
      for_each_row<RowTables>(batch, vocab, [&](int64_t row, RowTables& tables) {
        const int64_t ids_row = row / rows_per_ids;
        const auto penalty = row_penalty<computed_t<scalar_t>>(params, row);
        auto penalize_with = [&](auto kind) {
          penalize_row<decltype(kind)::value>(
              in_data + row * in.stride(0), in.stride(1), out_data + row * out.stride(0), out.stride(1), vocab,
              id_data + ids_row * length, length, scope.history_start.at(ids_row), scope.output_start.at(ids_row),
              penalty, tables.of(decltype(kind)::value));
        };
        if (only_seen_matters(penalty)) {
          penalize_with(std::integral_constant<Table, Table::kSeen>{});
        } else {
          penalize_with(std::integral_constant<Table, Table::kEntries>{});
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
  auto* seen_data = reinterpret_cast<uint32_t*>(seen.data_ptr<int32_t>());
  dispatch_ids(ids, [&](auto id_zero) {
    using id_t = decltype(id_zero);
    const id_t* id_data = ids.const_data_ptr<id_t>();
    for (int64_t r = 0; r < batch; ++r) {
      const id_t* row_ids = id_data + r * length;
      const int64_t history_start = scope.history_start.at(r), output_start = scope.output_start.at(r);
      count_row<Table::kEntries>(entries + slot[r] * vocab, vocab, row_ids, length, history_start, output_start);
      count_row<Table::kSeen>(seen_data + slot[r] * seen_words(vocab), vocab, row_ids, length, history_start,
                              output_start);
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
  const auto* seen_data = reinterpret_cast<const uint32_t*>(seen.const_data_ptr<int32_t>());
  dispatch_scores(scores, [&](auto zero) {
    using scalar_t = decltype(zero);
    scalar_t* data = scores.data_ptr<scalar_t>();
    const int64_t stride = scores.stride(1);
    for_each_row<SeenTokens>(batch, vocab, [&](int64_t row, SeenTokens& scratch) {
      scalar_t* row_scores = data + row * scores.stride(0);
      const auto penalty = row_penalty<computed_t<scalar_t>>(params, row);
      const uint32_t* row_seen = seen_data + slot[row] * seen_words(vocab);
      const uint32_t* row_entries = entries + slot[row] * vocab;
      auto penalize_with = [&](auto kind) {
        constexpr Table table = decltype(kind)::value;
        if (count_seen(row_seen, seen_words(vocab)) * kSequentialRatio < vocab) {
          return penalize_seen_tokens<table>(row_scores, stride, row_seen, row_entries, vocab, penalty,
                                             scratch.tokens.data());
        }
        penalize_row_by_table<false, table>(row_scores, stride, row_scores, stride,
                                            table == Table::kSeen ? row_seen : row_entries, vocab, penalty);
      };
      if (only_seen_matters(penalty)) {
        penalize_with(std::integral_constant<Table, Table::kSeen>{});
      } else {
        penalize_with(std::integral_constant<Table, Table::kEntries>{});
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
