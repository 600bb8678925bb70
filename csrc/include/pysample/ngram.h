// Matching rules of n-gram blocking and sequence bias that the CPU and CUDA kernels share. Framework-free (no torch
// header) so that it compiles for host and device alike.
// N-gram ban: a window of the source whose first n - 1 ids equal the row's last n - 1 bans its last id. Sequence
// bias: a sequence whose all-but-last tokens end the row adds its bias to its last token, in the order given.
// Design: docs/design.md#n-gram-ban-and-sequence-bias.
#pragma once

#include <cstdint>

#include "pysample/common.h"

namespace pysample {

// Per-row parameters of the n-gram ban: n (0 disables the row), the rows' valid lengths and the source's.
struct NgramParams {
  RowParam<int64_t, int64_t> ngram_size;
  const int64_t* lengths = nullptr;         // (batch,) valid ids per row, or null: all of them
  const int64_t* source_lengths = nullptr;  // (sources,) valid ids per source row, or null: all of them
};

// `count` ids of `a` and of `b` are equal (ids compare as raw integers: padding matches padding).
template <typename A, typename B>
PYSAMPLE_HD bool same_ids(const A* a, const B* b, int64_t count) {
  for (int64_t i = count - 1; i >= 0; --i) {  // from the end: the last id rejects most windows at once
    if (static_cast<int64_t>(a[i]) != static_cast<int64_t>(b[i])) return false;
  }
  return true;
}

// The id a window starting at `start` of the source bans, or -1: the window must fit in the source, its first
// n - 1 ids equal the prefix, and its last id be a token of the vocabulary. n >= 1 (callers skip n = 0).
template <typename Id>
PYSAMPLE_HD int64_t window_ban(const Id* source, int64_t source_length, int64_t start, const Id* prefix,
                               int64_t ngram_size, int64_t vocab) {
  if (start + ngram_size > source_length || !same_ids(source + start, prefix, ngram_size - 1)) return -1;
  const int64_t id = static_cast<int64_t>(source[start + ngram_size - 1]);
  return id >= 0 && id < vocab ? id : -1;
}

// A length clamped to [0, limit] (on CUDA a bad length cannot raise: it is made harmless).
PYSAMPLE_HD int64_t clamp_length(int64_t length, int64_t limit) {
  return length < 0 ? 0 : (length > limit ? limit : length);
}

// Whether the sequence `tokens[0, count)` (its prefix: all but the last token) ends the row's first `length` ids.
template <typename Id>
PYSAMPLE_HD bool ends_with(const Id* ids, int64_t length, const int64_t* prefix, int64_t count) {
  return count <= length && same_ids(ids + (length - count), prefix, count);
}

// A token's running sum of biases plus one more, kept in the scores' dtype T: transformers adds the biases into a
// tensor of that dtype, rounding each one and each partial sum to it.
template <typename T>
PYSAMPLE_HD computed_t<T> add_bias(computed_t<T> sum, float bias) {
  using Computed = computed_t<T>;
  return static_cast<Computed>(static_cast<T>(sum + static_cast<Computed>(static_cast<T>(bias))));
}

}  // namespace pysample
