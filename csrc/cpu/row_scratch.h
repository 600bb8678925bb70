// One row of a selecting kernel (the warper, the sampler): its thread's scratch and the compaction of the tokens a
// stage keeps. Included by a kernel's file, in an anonymous namespace.
#pragma once

#include <utility>
#include <vector>

#include "cpu_rows.h"
#include "selection.h"

namespace pysample {
namespace {

// ---- one row ------------------------------------------------------------------------------------------------

// Scratch buffers of one thread, grown to the vocabulary size once and reused across rows and calls.
struct Scratch {
  std::vector<float> y, value, spare_value, weight, distance, row, probs, member_values;
  std::vector<int32_t> index, spare_index, members, member_bins;
  std::vector<uint8_t> keep;
  std::vector<uint32_t> block_max, block_rank;
  std::vector<float> block_values;  // value_range's block maxima
  std::vector<Elem> elems, spare_elems;
  std::vector<double> exact, exact_row, exact_probs, exact_tied;  // float64 rows (warper)
  int64_t candidates = 0;  // tokens gathered by kth_largest from the blocks
  Ahead ahead;             // set by the caller for each row; the first pass of exps over the whole row takes it

  void reserve(int64_t vocab) {
    if (static_cast<int64_t>(y.size()) >= vocab) return;
    for (auto* v : {&y, &value, &spare_value, &weight, &distance, &row, &probs, &member_values}) {
      v->resize(vocab);
    }
    for (auto* v : {&index, &spare_index, &members, &member_bins}) v->resize(vocab);
    keep.resize(vocab);
    block_max.resize(vocab / kBlock + 1);
    block_values.resize(vocab / kValueBlock + 1);
  }

  void reserve_exact(int64_t vocab) {
    if (static_cast<int64_t>(exact.size()) >= vocab) return;
    for (auto* v : {&exact, &exact_row, &exact_probs}) v->resize(vocab);
  }
};

// How a stage hands on the tokens it keeps: compacted into scratch (value / index), or, where the stage ran on the
// whole row, left marked in scratch.keep (the last stage of the warper: the output pass then reads the marks).
enum class KeptAs { kCompacted, kMarkedIfWholeRow };

// Narrows `a` to the tokens whose mark in `scratch.keep` is set, handed on as `kept_as` says.
Active narrow(const Active& a, Scratch& s, KeptAs kept_as) {
  const uint8_t* marks = s.keep.data();
  if (kept_as == KeptAs::kMarkedIfWholeRow && a.index == nullptr) return {a.value, nullptr, a.n, marks};
  float* value = s.spare_value.data();
  int32_t* index = s.spare_index.data();
  int64_t n = 0, j = 0;
  if (use_avx512()) j = narrow_avx512(a, marks, value, index, &n);
  // Branch-free: whether a token stays is as hard to predict as a coin toss when a stage keeps half of them.
  for (; j < a.n; ++j) value[n] = a.value[j], index[n] = a.token(j), n += marks[j] != 0;
  if (n == a.n) return a;
  std::swap(s.value, s.spare_value);
  std::swap(s.index, s.spare_index);
  return {s.value.data(), s.index.data(), n};
}

}  // namespace
}  // namespace pysample
