// Top-k on the CPU: the k-th largest value of a row (all ties with it kept), through the block maxima of a whole
// row when k is small. Included by a kernel's file, in an anonymous namespace.
#pragma once

#include <algorithm>

#include "cpu_rows.h"
#include "row_scratch.h"
#include "selection.h"

namespace pysample {
namespace {

// block_max[b] = the largest key of block b. Its float maximum (NaN ignored) and whether it holds a NaN: cheaper per
// token than each token's key, and the same (ordered_key is monotonic, NaN largest).
PYSAMPLE_CPU_CLONES void block_max_keys(const float* x, int64_t n, uint32_t* block_max) {
  int64_t b = 0;
  for (; (b + 1) * kBlock <= n; ++b) {
    Floats8 m = Floats8{} - kInf;
    Ints8 nan = {};
    for (int64_t j = b * kBlock; j < (b + 1) * kBlock; j += 8) {
      Floats8 v;
      std::memcpy(&v, x + j, sizeof v);
      m = v > m ? v : m;
      nan |= v != v;
    }
    float best = m[0];
    for (int l = 1; l < 8; ++l) best = std::max(best, m[l]);
    block_max[b] = any_lane(nan) ? ordered_key(NAN) : ordered_key(best);
  }
  if (b * kBlock < n) {
    uint32_t best = 0;
    for (int64_t j = b * kBlock; j < n; ++j) best = std::max(best, ordered_key(x[j]));
    block_max[b] = best;
  }
}

// Appends to value / index, from position n on, the tokens in [begin, end) of x whose key is at least `bound`;
// returns the new count. Few tokens of a block reach it: groups of 8 are tested at once, and only a group with one
// is looked at token by token.
PYSAMPLE_CPU_CLONES int64_t gather_keys_at_least(const float* x, int64_t begin, int64_t end, uint32_t bound,
                                                 float* value, int32_t* index, int64_t n) {
  int64_t j = begin;
  for (; j + 8 <= end; j += 8) {
    Floats8 v;
    std::memcpy(&v, x + j, sizeof v);
    const Ints8 hit = reinterpret_cast<Ints8>(ordered_keys(v) >= bound);
    if (!any_lane(hit)) continue;
    for (int l = 0; l < 8; ++l) value[n] = v[l], index[n] = static_cast<int32_t>(j + l), n += hit[l] != 0;
  }
  for (; j < end; ++j) value[n] = x[j], index[n] = static_cast<int32_t>(j), n += ordered_key(x[j]) >= bound;
  return n;
}

// marks[j] = whether ordered_key(v[j]) >= key: the values at least the key's value, NaN above all.
PYSAMPLE_CPU_CLONES void mark_key_at_least(const float* v, int64_t n, uint32_t key, uint8_t* marks) {
  for (int64_t j = 0; j < n; ++j) marks[j] = ordered_key(v[j]) >= key;
}

// Whether the k-th largest of `a` is searched among the blocks whose maximum reaches the k-th largest block
// maximum (see block_max_keys): worth it for small k on a whole row.
bool select_by_blocks(const Active& a, int64_t k) {
  return a.index == nullptr && a.n >= 16384 && k * 4 * kBlock <= a.n;
}

// Gathers into scratch.value / scratch.index the tokens of the whole row `a` that can be among its k largest: those
// at least the k-th largest block maximum (see block_max_keys); returns how many.
int64_t gather_top_candidates(const Active& a, int64_t k, Scratch& s) {
  const int64_t blocks = (a.n + kBlock - 1) / kBlock;
  block_max_keys(a.value, a.n, s.block_max.data());
  s.block_rank.assign(s.block_max.begin(), s.block_max.begin() + blocks);
  std::nth_element(s.block_rank.begin(), s.block_rank.begin() + (k - 1), s.block_rank.end(), std::greater<uint32_t>());
  // -inf tokens never need gathering: with fewer than k others, the k-th largest is -inf (see kth_largest).
  const uint32_t bound = std::max(s.block_rank[k - 1], ordered_key(-kInf) + 1);
  int64_t n = 0;
  for (int64_t b = 0; b < blocks; ++b) {
    if (s.block_max[b] < bound) continue;
    n = gather_keys_at_least(a.value, b * kBlock, std::min(a.n, (b + 1) * kBlock), bound, s.value.data(),
                             s.index.data(), n);
  }
  return n;
}

// The k-th largest active value (NaN largest, as torch.topk) and its key; requires 1 <= k <= a.n. When it uses
// the blocks, the candidates stay in scratch.value / scratch.index (scratch.candidates of them).
Elem kth_largest(const Active& a, int64_t k, Scratch& s) {
  // ~key: descending values become ascending keys.
  if (!select_by_blocks(a, k)) {
    return select_by_rank(
        a.n, a.value, [&](int64_t j) { return ~ordered_key(a.value[j]); }, [](int64_t) { return 0u; }, k, s.elems,
        s.spare_elems);
  }
  s.candidates = gather_top_candidates(a, k, s);
  if (s.candidates < k) return {~ordered_key(-kInf), 0, 1.0f, -kInf};
  s.elems.clear();
  for (int64_t j = 0; j < s.candidates; ++j) s.elems.push_back({~ordered_key(s.value[j]), 0, 1.0f, s.value[j]});
  return select_by_weight(s.elems, s.spare_elems, static_cast<double>(k)).elem;
}

// Top-k: keep values >= the k-th largest (all ties with it). Nothing to do when k >= the active count (the
// removed tokens are -inf, so the k-th largest would be -inf).
Active top_k_stage(const Active& a, int64_t k, Scratch& s, KeptAs kept_as) {
  if (k <= 0 || k >= a.n) return a;
  const uint32_t kth = ~kth_largest(a, k, s).key;
  // Nothing is below a -inf k-th value, and transformers compares against a NaN one: nothing is removed.
  if (kth == ordered_key(-kInf) || kth == ordered_key(NAN)) return a;
  if (!select_by_blocks(a, k)) {
    mark_key_at_least(a.value, a.n, kth, s.keep.data());
    return narrow(a, s, kept_as);
  }
  // Every survivor is among the candidates kth_largest gathered.
  int64_t n = 0;
  for (int64_t j = 0; j < s.candidates; ++j) {
    if (ordered_key(s.value[j]) >= kth) s.value[n] = s.value[j], s.index[n] = s.index[j], ++n;
  }
  return {s.value.data(), s.index.data(), n};
}

}  // namespace
}  // namespace pysample
