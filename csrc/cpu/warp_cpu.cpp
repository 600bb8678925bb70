// CPU kernel of the fused warper. Rows run in parallel; within a row every stage works on the "active" tokens,
// the ones earlier stages kept, and after a stage removes tokens the survivors are compacted so that later stages
// only touch them (after top-k, top-p and min-p cost nothing). Selections (the k-th value, the top-p and typical
// boundaries) use histograms of mass by distance and radix select over order-preserving float keys: no sort of the
// vocabulary (distance_histogram.h, selection.h, top_k.h). The file reads in stage order, each stage after the
// machinery it shares with others; warp_row at the end. Design: docs/design.md#the-warper-on-the-cpu.
#include <torch/library.h>

#include "../warp_args.h"
#include "distance_histogram.h"
#include "row_scratch.h"
#include "selection.h"
#include "top_k.h"

namespace pysample {
namespace {

// ---- softmax statistics -------------------------------------------------------------------------------------------

// acc[l] += e[i] and mom[l] += e[i] * (x[i] - max) (0 for a -inf logit) over the tokens i = l mod kLanes of whole
// groups of kLanes; returns how many tokens it did. GCC vector types: beside other loops the compiler does not
// vectorize this one over the lanes.
PYSAMPLE_CPU_CLONES int64_t add_moments(const float* x, const float* e, int64_t n, float max, float* acc, float* mom) {
  static_assert(kLanes == 16);
  Floats8 a[2], m[2];
  std::memcpy(a, acc, sizeof a), std::memcpy(m, mom, sizeof m);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int h = 0; h < 2; ++h) {
      Floats8 v, w;
      std::memcpy(&v, x + i + 8 * h, sizeof v), std::memcpy(&w, e + i + 8 * h, sizeof w);
      const Floats8 shift = v - max;
      a[h] += w;
      m[h] += w * (shift > -kInf ? shift : Floats8{});
    }
  }
  std::memcpy(acc, a, sizeof a), std::memcpy(mom, m, sizeof m);
  return i;
}

// The sum of e[i] = exp(x[i] - max) and the moment sum e[i] * (x[i] - max), with 0 for -inf logits (weight 0)
// rather than 0 * -inf (lanes in float, combined in double); e is stored unless it is null. Prefetches `ahead` as it
// goes.
void exp_shifted(const float* x, int64_t n, float max, float* e, double* sum, double* moment, const Ahead& ahead) {
  float acc[kLanes] = {}, mom[kLanes] = {};
  float chunk[kCutChunk];
  for (int64_t begin = 0; begin < n; begin += kCutChunk) {
    const int64_t len = std::min(kCutChunk, n - begin);
    float* w = e != nullptr ? e + begin : chunk;
    ahead.prefetch(begin, begin + len);
    int64_t i = -1;
    if (use_avx512()) {
      i = exp_moments_avx512(x + begin, len, max, w, acc, mom);
      exps(x + begin + i, len - i, max, w + i);
    }
    if (i < 0) {
      exps(x + begin, len, max, w);
      i = add_moments(x + begin, w, len, max, acc, mom);
    }
    for (; i < len; ++i) {  // the row's last tokens
      const float shift = x[begin + i] - max;
      acc[0] += w[i];
      mom[0] += w[i] * (shift > -kInf ? shift : 0.0f);
    }
  }
  *sum = 0;
  *moment = 0;
  for (int l = 0; l < kLanes; ++l) *sum += acc[l], *moment += mom[l];
}

// The next row to prefetch during a pass of exps over `a`: taken by the first such pass over a whole row (a pass
// over few tokens would prefetch the next row all at once).
Ahead ahead_of(const Active& a, Scratch& s) { return a.index == nullptr ? std::exchange(s.ahead, {}) : Ahead{}; }

// Softmax statistics of the active tokens: whether the softmax is defined (no NaN, finite max), max, min, the sum
// of exp(x - max) and its moment (see exp_shifted), with exp(x - max) per token in `scratch.weight`.
struct Softmax {
  bool defined;
  float max, min;
  double sum, moment;
};

Softmax softmax_stats(const Active& a, Scratch& s) {
  Softmax sm{};
  bool has_nan;
  value_range(a.value, a.n, &sm.max, &sm.min, &has_nan, s.block_values.data());
  // transformers' softmax is NaN for the whole row when a value is NaN or the max is +-inf: its filters keep all.
  sm.defined = !has_nan && std::isfinite(sm.max);
  if (sm.defined) exp_shifted(a.value, a.n, sm.max, s.weight.data(), &sm.sum, &sm.moment, ahead_of(a, s));
  return sm;
}

// log(sum) and the entropy of the active tokens' softmax, from one pass of exp.
struct Entropy {
  double log_sum, entropy;
};

Entropy softmax_entropy(const Active& a, float max) {
  double sum, moment;
  exp_shifted(a.value, a.n, max, nullptr, &sum, &moment, Ahead{});
  return {std::log(sum), entropy_from_moments(sum, moment)};
}

// ---- keeping the first tokens of an order -------------------------------------------------------------------------

// The order of (value, token) in which a stage keeps tokens from the first: top-p's descending values, typical
// decoding's ascending distances.
enum class Order { kDescending, kAscending };

// marks[j] = whether token j comes at or before the bound in `order` of (value, token), token(j) being index[j], or j
// when index is null. Float compares: -0.0 equals +0.0 as in torch, and there is no NaN here (rows holding NaN skip
// the selecting stages).
PYSAMPLE_CPU_CLONES void mark_up_to(const float* v, const int32_t* index, int64_t n, Order order, float bound,
                                    uint32_t bound_token, uint8_t* marks) {
  auto mark = [&](int64_t j, uint32_t token) {
    const float x = v[j];
    return order == Order::kDescending ? (x > bound) | ((x == bound) & (token >= bound_token))
                                       : (x < bound) | ((x == bound) & (token <= bound_token));
  };
  if (index == nullptr) {
    for (int64_t j = 0; j < n; ++j) marks[j] = mark(j, static_cast<uint32_t>(j));
  } else {
    for (int64_t j = 0; j < n; ++j) marks[j] = mark(j, static_cast<uint32_t>(index[j]));
  }
}

PYSAMPLE_CPU_CLONES int64_t count_marked(const uint8_t* marks, int64_t n) {
  int64_t count = 0;
  for (int64_t j = 0; j < n; ++j) count += marks[j];
  return count;
}

// Whether scratch.keep marks the tokens a stage keeps so far (up to its boundary), or none is marked yet.
enum class Marked { kKeptTokens, kNoneYet };

// With Marked::kKeptTokens the kept tokens are marked in scratch.keep (else none is yet): makes sure at least the
// first `min_keep` in `order` of values v[j] (ties by token id in the same direction) are kept (counted only when
// min_keep > 1: a boundary keeps one), and narrows `a` to the kept tokens.
Active keep_at_least(const Active& a, Scratch& s, KeptAs kept_as, const float* v, Order order, Marked marked,
                     int64_t min_keep) {
  uint8_t* marks = s.keep.data();
  const uint32_t flip = order == Order::kDescending ? ~0u : 0u;
  const int64_t kept = marked == Marked::kNoneYet ? 0 : (min_keep > 1 ? count_marked(marks, a.n) : 1);
  const int64_t at_least = std::min(min_keep, a.n);
  if (kept < at_least) {
    // The removed tokens are -inf: with min_keep >= the active count, transformers' forced tokens cover them all.
    if (at_least == a.n) return a;
    const Elem last_kept = select_by_rank(
        a.n, v, [&](int64_t j) { return ordered_key(v[j]) ^ flip; },
        [&](int64_t j) { return static_cast<uint32_t>(a.token(j)) ^ flip; }, at_least, s.elems, s.spare_elems);
    mark_up_to(v, a.index, a.n, order, last_kept.value, last_kept.tie ^ flip, marks);
  } else if (marked == Marked::kNoneYet) {
    return a;
  }
  return narrow(a, s, kept_as);
}

// Keeps the tokens up to `boundary` (its value and tie) in `order` of values v[j], ties by token id in the same
// direction (in descending order the tie of an element is ~token), and at least min_keep.
Active keep_up_to(const Active& a, Scratch& s, KeptAs kept_as, const float* v, Order order, Found boundary,
                  int64_t min_keep) {
  if (boundary.found) {
    const uint32_t flip = order == Order::kDescending ? ~0u : 0u;
    mark_up_to(v, a.index, a.n, order, boundary.elem.value, boundary.elem.tie ^ flip, s.keep.data());
  }
  return keep_at_least(a, s, kept_as, v, order, boundary.found ? Marked::kKeptTokens : Marked::kNoneYet, min_keep);
}

// ---- where the running mass reaches a goal (top-p, typical decoding) ----------------------------------------------

// The weights exp(x - max) of a stage's tokens, for find_crossing and near_crossing: in scratch.weight already
// (stored by softmax_stats), or to be computed.
enum class Weights { kStored, kComputeExps };

// The tokens of `a` within the smallest cut of m whose mass reaches `goal`, if it holds at least min_keep of them:
// gathered into scratch.value / scratch.index, with their weights exp(x - max) in scratch.weight (recomputed: cheaper
// for the few gathered tokens than gathering stored ones). Otherwise `a` itself, its weights in scratch.weight: there
// already with Weights::kStored, else computed here.
Active near_crossing(const Active& a, DistanceBins bins, const CutMasses& m, double goal, int64_t min_keep,
                     Weights weights, Scratch& s) {
  const int c = cut_reaching(m, goal, cut_mass_error(a.n), a.n);
  if (c < kCuts && a.n > static_cast<int64_t>(kSortDirectly)) {
    const int64_t n = gather_within(a.value, a.index, a.n, bins, m.cut[c], s.spare_value.data(), s.spare_index.data());
    if (n >= min_keep) {
      std::swap(s.value, s.spare_value);
      std::swap(s.index, s.spare_index);
      exps(s.value.data(), n, bins.max, s.weight.data());
      return {s.value.data(), s.index.data(), n};
    }
  }
  if (weights == Weights::kComputeExps) exps(a.value, a.n, bins.max, s.weight.data());
  return a;
}

// Where the running mass of a stage's tokens, in order of distance, reaches its goal (find_crossing).
struct Crossing {
  Active a;        // the tokens that go on: those near the crossing (see near_crossing), or all
  const float* w;  // their weights
  int64_t members;  // in scratch.members (see crossing_members); -1 when the mass never reaches the goal (rounding)
  double goal, before;
};

// Where the running mass of the tokens of `a` (weights w), in order of distance, reaches `goal`: the tokens of the
// finer distance bin (split_crossing_bin) in which it does are in scratch.members, those before them marked in
// scratch.keep and the others not; `before` is the mass of the tokens before the members. Few tokens are all taken as
// members, without a histogram. Returns how many members, or -1 when the mass never reaches the goal.
int64_t crossing_members(const Active& a, const float* w, const DistanceBins& bins, double goal, Scratch& s,
                         double* before) {
  *before = 0;
  if (a.n <= static_cast<int64_t>(kSortDirectly)) {
    for (int64_t j = 0; j < a.n; ++j) s.members[j] = static_cast<int32_t>(j), s.keep[j] = 0;
    return a.n;
  }
  double mass[kDistanceBins];
  distance_histogram(a.value, w, a.n, bins, mass);
  const int32_t crossing = crossing_bin(mass, goal, before);
  if (crossing < 0) return -1;
  uint8_t* keep = s.keep.data();
  const int64_t count = mark_bins_before(a.value, a.n, bins, crossing, keep, s.members.data(), s.member_values.data());
  return split_crossing_bin(
      s.member_values.data(), bins, crossing, s.members.data(), count, [&](int32_t j, float) { return w[j]; }, goal,
      before, [&](int32_t j, bool kept) { keep[j] = kept; }, s.member_bins.data());
}

// The crossing of `fraction` of the mass of `a` by distance (bins), among the tokens near it, which it returns with
// their weights exp(x - max) (scratch.weight: computed here with Weights::kComputeExps, else there already). The
// block maxima of `a` are in scratch.block_values (value_range).
Crossing find_crossing(const Active& a, const DistanceBins& bins, double fraction, Weights weights, int64_t min_keep,
                       Scratch& s) {
  const bool compute = weights == Weights::kComputeExps;
  const float* stored = compute ? nullptr : s.weight.data();
  CutMasses m = estimate_cuts(a.value, stored, a.n, s.block_values.data(), bins, fraction);
  const double total = weigh_within_cuts(a.value, stored, a.n, bins, m, compute ? ahead_of(a, s) : Ahead{});
  Crossing x{near_crossing(a, bins, m, fraction * total, min_keep, weights, s), nullptr, -1, fraction * total, 0};
  x.w = s.weight.data();
  x.members = crossing_members(x.a, x.w, bins, x.goal, s, &x.before);
  return x;
}

// ---- top-k on float64 rows ----------------------------------------------------------------------------------------

// The k-th largest of `values` (1 <= k <= size), which it reorders.
double kth_largest_of(std::vector<double>& values, int64_t k) {
  std::nth_element(values.begin(), values.begin() + (k - 1), values.end(), std::greater<>());
  return values[k - 1];
}

// Top-k on a float64 row: the stage on its values rounded to float32 keeps every token at least the exact k-th
// largest (rounding is monotone) and the others that round to the same float32 as it; those are decided on their
// exact values.
Active exact_top_k(const Active& a, int64_t k, const double* exact, Scratch& s, KeptAs kept_as) {
  if (k <= 0 || k >= a.n) return a;
  const Active kept = top_k_stage(a, k, s, KeptAs::kCompacted);
  float bottom = kInf;
  for (int64_t j = 0; j < kept.n; ++j) bottom = kept.value[j] < bottom ? kept.value[j] : bottom;
  if (!(bottom > -kInf)) return kept;  // nothing is below a -inf k-th value
  int64_t above = 0;  // NaN included: the largest, as torch.topk
  s.exact_tied.clear();
  for (int64_t j = 0; j < kept.n; ++j) {
    if (kept.value[j] == bottom) {
      s.exact_tied.push_back(exact[kept.token(j)]);
    } else {
      ++above;
    }
  }
  const int64_t rank = k - above;  // of the exact k-th largest among the tied
  if (rank <= 0 || rank >= static_cast<int64_t>(s.exact_tied.size())) return kept;
  const double kth = kth_largest_of(s.exact_tied, rank);
  for (int64_t j = 0; j < kept.n; ++j) s.keep[j] = kept.value[j] != bottom || exact[kept.token(j)] >= kth;
  return narrow(kept, s, kept_as);
}

// ---- top-p --------------------------------------------------------------------------------------------------------

// Narrows `a` to the tokens top-p keeps: in descending (value, token) order, those up to the first at which the mass
// up to it reaches keep_fraction of the total, and at least min_keep. Returns `a` when rounding kept the mass from
// ever reaching the goal.
Active top_p_keep(const Active& a, float max, double keep_fraction, int64_t min_keep, Scratch& s, KeptAs kept_as) {
  const Crossing x = find_crossing(a, DistanceBins::from_max(max), keep_fraction, Weights::kComputeExps, min_keep, s);
  if (x.members < 0) return a;
  // Descending (value, token) = ascending (~key, ~token).
  auto elem = [&](int32_t j) -> Elem {
    return {~ordered_key(x.a.value[j]), ~static_cast<uint32_t>(x.a.token(j)), x.w[j], x.a.value[j]};
  };
  s.elems.clear();
  for (int64_t m = 0; m < x.members; ++m) s.elems.push_back(elem(s.members[m]));
  const Found boundary = select_by_weight(s.elems, s.spare_elems, x.goal, x.before);
  if (!boundary.found) return a;
  for (int64_t m = 0; m < x.members; ++m) s.keep[s.members[m]] = elem(s.members[m]) <= boundary.elem;
  return keep_at_least(x.a, s, kept_as, x.a.value, Order::kDescending, Marked::kKeptTokens, min_keep);
}

// Top-p: keep, in descending (value, token) order, the tokens while the mass above them is below keep_mass, and at
// least min_keep of them; never a token whose probability is 0.
Active top_p_stage(const Active& a, double top_p, int64_t min_keep, float zero_probability, Scratch& s,
                   KeptAs kept_as) {
  const double keep_fraction = top_p_keep_mass(top_p);
  Found boundary{false, {}};
  if (keep_fraction >= 1.0) {
    // top_p = 1: every token whose probability is not 0 (in the logits' dtype) stays; the last is the smallest.
    const Softmax sm = softmax_stats(a, s);
    if (!sm.defined) return a;
    const float inv_sum = static_cast<float>(1.0 / sm.sum);
    float smallest = sm.max;
    for (int64_t j = 0; j < a.n; ++j) {
      smallest = probability(s.weight[j], inv_sum) > zero_probability && a.value[j] < smallest ? a.value[j] : smallest;
    }
    boundary = {true, {~ordered_key(smallest), ~0u, 0, smallest}};  // tie ~0: every token with that value
  } else {
    float max, min;
    bool has_nan;
    value_range(a.value, a.n, &max, &min, &has_nan, s.block_values.data());
    // transformers' softmax is NaN for the whole row when a value is NaN or the max is +-inf: its filters keep all.
    if (has_nan || !std::isfinite(max)) return a;
    if (keep_fraction > 0.0) return top_p_keep(a, max, keep_fraction, min_keep, s, kept_as);
  }
  return keep_up_to(a, s, kept_as, a.value, Order::kDescending, boundary, min_keep);
}

// ---- min-p, epsilon and eta ---------------------------------------------------------------------------------------

// The cut-off of min-p, epsilon and eta: keep a token when x - max >= log_cutoff = log(cutoff / p_top). Within `band`
// of it (log space) the kernel's rounding may decide a token differently from transformers, so a row with a token
// there is decided by torch's softmax (mark_like_torch); band 0: never (eta), infinite: always. transformers then
// removes a token when probs < factor * (relative_to_top ? probs.max() : 1), in float32.
struct Cutoff {
  double log_cutoff, band;
  double factor;  // in the scores' computed type (float32 scores: a float)
  bool relative_to_top;
};

// The band for float32 logits: the most torch's softmax (Sleef exp, float sum, roundings) and the kernel's log-space
// test can differ, 2^-19 for min-p and epsilon_band(n) for epsilon; thresholds below 2^-90 go to torch.
// Derivation: docs/design.md#error-bands.
constexpr double kUnit = 0x1p-24;
constexpr double kMinPBand = 0x1p-19;
constexpr float kSmallestThreshold = 0x1p-90f;

double epsilon_band(int64_t n) {
  const double sums = static_cast<double>(n + n / kLanes + 4) * kUnit;
  return sums < 0.01 ? 1.1 * (sums + 0x1p-20 + 0x1p-22) : kInf;
}

// marks[j] = whether x[j] - max >= cut (the token's probability relative to the top one reaches the cut-off) or
// x[j] >= protect; returns whether an unprotected token has lo <= x[j] - max < hi. No NaN here.
PYSAMPLE_CPU_CLONES bool mark_probable(const float* x, int64_t n, float max, float cut, float lo, float hi,
                                       float protect, uint8_t* marks) {
  int32_t borderline = 0;  // an OR rather than a count: it stays in 32-bit lanes with the float compares
  for (int64_t j = 0; j < n; ++j) {
    const float d = x[j] - max;
    const bool protected_token = x[j] >= protect;
    marks[j] = (d >= cut) | protected_token;
    borderline |= (d >= lo) & (d < hi) & !protected_token;
  }
  return borderline != 0;
}

// marks[j] = whether p[j] is not below threshold (as transformers compares: !(p < threshold)) or x[j] >= protect.
PYSAMPLE_CPU_CLONES void mark_not_below(const float* p, const float* x, int64_t n, float threshold, float protect,
                                        uint8_t* marks) {
  for (int64_t j = 0; j < n; ++j) marks[j] = !(p[j] < threshold) | (x[j] >= protect);
}

// transformers' decision, made on torch's own softmax of the row exactly as its warper sees it (the stage's input:
// the active values at their tokens, -inf elsewhere), so that torch's exp and summation order decide the tokens at
// the threshold. The factor is float32 as torch rounds a Python float against a float32 tensor.
void mark_like_torch(const Active& a, int64_t vocab, const Cutoff& c, float protect, Scratch& s) {
  const float* row = a.value;
  if (a.index != nullptr) {
    std::fill(s.row.begin(), s.row.begin() + vocab, -kInf);
    for (int64_t j = 0; j < a.n; ++j) s.row[a.index[j]] = a.value[j];
    row = s.row.data();
  }
  const auto options = at::TensorOptions().dtype(at::kFloat);
  at::Tensor probs = at::from_blob(s.probs.data(), {1, vocab}, options);
  at::_softmax_out(probs, at::from_blob(const_cast<float*>(row), {1, vocab}, options), 1, false);
  const float* p = s.probs.data();
  const float top = c.relative_to_top ? *std::max_element(p, p + vocab) : 1.0f;
  if (a.index != nullptr) {
    for (int64_t j = 0; j < a.n; ++j) s.weight[j] = p[a.index[j]];
    p = s.weight.data();
  }
  mark_not_below(p, a.value, a.n, static_cast<float>(c.factor) * top, protect, s.keep.data());
}

// mark_like_torch for a float64 row, on its exact values in double; the tokens at least its min_keep-th largest
// exact value are kept.
void mark_like_torch_exact(const Active& a, int64_t vocab, const Cutoff& c, int64_t min_keep, const double* exact,
                           Scratch& s) {
  std::fill(s.exact_row.begin(), s.exact_row.begin() + vocab, -kInf);
  s.exact_tied.clear();
  for (int64_t j = 0; j < a.n; ++j) {
    const double value = exact[a.token(j)];
    s.exact_row[a.token(j)] = value;
    s.exact_tied.push_back(value);
  }
  const double protect = kth_largest_of(s.exact_tied, min_keep);
  const auto options = at::TensorOptions().dtype(at::kDouble);
  at::Tensor probs = at::from_blob(s.exact_probs.data(), {1, vocab}, options);
  at::_softmax_out(probs, at::from_blob(s.exact_row.data(), {1, vocab}, options), 1, false);
  const double* p = s.exact_probs.data();
  const double threshold = c.factor * (c.relative_to_top ? *std::max_element(p, p + vocab) : 1.0);
  for (int64_t j = 0; j < a.n; ++j) {
    s.keep[j] = !(p[a.token(j)] < threshold) || s.exact_row[a.token(j)] >= protect;
  }
}

// Min-p, epsilon and eta: remove tokens whose probability is below a cut-off unless among the min_keep largest
// values (all ties with the min_keep-th kept). Compared in log space, exp(x - max) >= cutoff / p_top, so only
// epsilon and eta need a pass of exp; rows near the cut-off are decided by torch (Cutoff), float64 rows (`exact`) on
// their exact values where band > 0. `cutoff(a, max)` returns the Cutoff. Design: docs/design.md#error-bands.
template <typename MakeCutoff>
Active probability_stage(const Active& a, int64_t vocab, int64_t min_keep, const double* exact, Scratch& s,
                         KeptAs kept_as, MakeCutoff cutoff) {
  float max, min;
  bool has_nan;
  value_range(a.value, a.n, &max, &min, &has_nan);
  // transformers' softmax is NaN for the whole row when a value is NaN or the max is +-inf: its filters keep all.
  if (has_nan || !std::isfinite(max)) return a;
  // With fewer active tokens than min_keep, the min_keep-th largest is a removed (-inf) token: nothing goes.
  if (min_keep > a.n) return a;
  const float protect = min_keep == 1 ? max : kth_largest(a, min_keep, s).value;
  Cutoff c = cutoff(a, max);
  // A float64 row is decided on its exact values where float32 cannot: a token within the band, widened by the
  // rounding of x - max and of the log-sum to float32 (2^-24 of the values and of the exps' distances, < 128), or
  // several tokens rounding to the protected value (the exact values protect fewer).
  const bool by_exact = exact != nullptr && c.band > 0;
  if (by_exact) c.band += 0x1p-21 * (std::abs(double{max}) + std::abs(c.log_cutoff) + 128);
  if (by_exact && (c.band == kInf || std::count(a.value, a.value + a.n, protect) > 1)) {
    mark_like_torch_exact(a, vocab, c, min_keep, exact, s);
    return narrow(a, s, kept_as);
  }
  if (c.band == kInf) {
    mark_like_torch(a, vocab, c, protect, s);
    return narrow(a, s, kept_as);
  }
  // Float bounds rounded outwards, so that a token outside [lo, hi) is outside the band (empty for band 0).
  float lo = static_cast<float>(c.log_cutoff - c.band), hi = static_cast<float>(c.log_cutoff + c.band);
  if (c.band > 0 && lo > c.log_cutoff - c.band) lo = std::nextafter(lo, -kInf);
  if (c.band > 0 && hi < c.log_cutoff + c.band) hi = std::nextafter(hi, kInf);
  if (mark_probable(a.value, a.n, max, static_cast<float>(c.log_cutoff), lo, hi, protect, s.keep.data())) {
    by_exact ? mark_like_torch_exact(a, vocab, c, min_keep, exact, s) : mark_like_torch(a, vocab, c, protect, s);
  }
  return narrow(a, s, kept_as);
}

// ---- typical decoding ---------------------------------------------------------------------------------------------

// Typical decoding: order tokens by |-(log p) - entropy|, keep the shortest prefix whose mass reaches typical_p
// (with every token tied with its last one) and at least the first min_keep.
Active typical_stage(const Active& a, double typical_p, int64_t min_keep, Scratch& s, KeptAs kept_as) {
  if (typical_keeps_all(typical_p)) return a;
  const Softmax sm = softmax_stats(a, s);
  if (!sm.defined) return a;
  const float log_sum = static_cast<float>(std::log(sm.sum));
  const float ent = static_cast<float>(entropy_from_moments(sm.sum, sm.moment));
  const DistanceBins bins = DistanceBins::typical(sm.max, log_sum, ent);
  const Crossing x = find_crossing(a, bins, typical_p, Weights::kStored, min_keep, s);
  // When the mass never reaches typical_p, transformers clamps to the last token: everything stays.
  if (x.members < 0) return a;
  auto elem = [&](int32_t j) -> Elem {
    const float distance = distance_of(x.a.value[j], bins);
    return {ordered_key(distance), static_cast<uint32_t>(x.a.token(j)), x.w[j], distance};
  };
  s.elems.clear();
  for (int64_t m = 0; m < x.members; ++m) s.elems.push_back(elem(s.members[m]));
  const Found boundary = select_by_weight(s.elems, s.spare_elems, x.goal, x.before);
  if (!boundary.found) return a;
  // Every token tied with the boundary distance stays.
  for (int64_t m = 0; m < x.members; ++m) s.keep[s.members[m]] = elem(s.members[m]).key <= boundary.elem.key;
  // min_keep counts tokens in order of distance: only then are the distances needed one by one.
  if (min_keep > 1) distances(x.a.value, x.a.n, bins, s.distance.data());
  return keep_at_least(x.a, s, kept_as, s.distance.data(), Order::kAscending, Marked::kKeptTokens, min_keep);
}

// ---- a row --------------------------------------------------------------------------------------------------------

// out[i] = fill: a whole row of removed tokens, before the few kept ones are written back.
template <typename scalar_t>
PYSAMPLE_CPU_CLONES void fill_row(scalar_t* out, int64_t n, scalar_t fill) {
  std::fill(out, out + n, fill);
}

// y[i] = x[i] / temperature (float32 logits; half types round in their own loop).
PYSAMPLE_CPU_CLONES void divide(const float* x, int64_t n, float temperature, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] / temperature;
}

// out[j] = marks[j] ? y[j] : fill, for float32 output.
PYSAMPLE_CPU_CLONES void write_marked(const float* y, const uint8_t* marks, int64_t n, float fill, float* out) {
  for (int64_t j = 0; j < n; ++j) out[j] = marks[j] ? y[j] : fill;
}

// The last stage enabled, or the first (temperature, which removes nothing) when none is.
Stage last_enabled(const WarpParams& p) {
  Stage last = Stage::temperature;
#define PYSAMPLE_LAST_ENABLED(name, Stored, Value, schema_type, range) \
  if (p.name.enabled) last = Stage::name;
  PYSAMPLE_WARP_STAGES(PYSAMPLE_LAST_ENABLED)
#undef PYSAMPLE_LAST_ENABLED
  return last;
}

template <typename scalar_t>
void warp_row(const scalar_t* in, scalar_t* out, int64_t vocab, int64_t row, const WarpParams& p, Scratch& s) {
  // The temperature-scaled logits the stages read: float32 logits are scaled straight into `out` (or read where they
  // are), half types are converted into scratch. float64 ones are scaled in double into scratch.exact, and the stages
  // read them rounded to float32 (exact top-k, min-p and epsilon decide on the exact values; the kept tokens keep
  // them).
  const bool scaled = p.temperature.enabled;
  const float temperature = scaled ? static_cast<float>(p.temperature.at(row)) : 1.0f;
  const float* y;
  const double* exact = nullptr;
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (scaled) divide(in, vocab, temperature, out);
    y = scaled ? out : in;
  } else if constexpr (std::is_same_v<scalar_t, double>) {
    const double t = scaled ? p.temperature.at(row) : 1.0;
    for (int64_t i = 0; i < vocab; ++i) {
      s.exact[i] = scaled ? in[i] / t : in[i];
      s.y[i] = static_cast<float>(s.exact[i]);
    }
    y = s.y.data();
    exact = s.exact.data();
  } else {
    for (int64_t i = 0; i < vocab; ++i) {
      const float x = static_cast<float>(in[i]);
      s.y[i] = scaled ? apply_temperature<scalar_t>(x, temperature) : x;
    }
    y = s.y.data();
  }

  // The last stage that applies to this row marks its kept tokens instead of compacting them.
  const Stage last = last_enabled(p);
  auto kept_as = [&](Stage stage) { return stage == last ? KeptAs::kMarkedIfWholeRow : KeptAs::kCompacted; };
  Active a{y, nullptr, vocab};
  const int64_t min_keep = p.min_tokens_to_keep;
  if (p.top_k.enabled) {
    a = exact != nullptr ? exact_top_k(a, p.top_k.at(row), exact, s, kept_as(Stage::top_k))
                         : top_k_stage(a, p.top_k.at(row), s, kept_as(Stage::top_k));
  }
  if (p.top_p.enabled) {
    const float zero_probability = std::is_same_v<scalar_t, at::Half>       ? kFloat16ZeroProbability
                                   : std::is_same_v<scalar_t, at::BFloat16> ? kBFloat16ZeroProbability
                                                                            : 0.0f;
    a = top_p_stage(a, p.top_p.at(row), min_keep, zero_probability, s, kept_as(Stage::top_p));
  }
  // float32 and float64 rows decide min-p and epsilon exactly as transformers (see Cutoff); half types in log space
  // only. The parameters are in the computed type, as torch rounds a Python float against the scores.
  constexpr bool like_torch = std::is_same_v<computed_t<scalar_t>, scalar_t>;
  using computed = computed_t<scalar_t>;
  if (p.min_p.enabled) {
    // p / p_top >= min_p.
    const computed min_p = static_cast<computed>(p.min_p.at(row));
    const double band = !like_torch ? 0.0 : min_p < kSmallestThreshold ? kInf : kMinPBand;
    a = probability_stage(a, vocab, min_keep, exact, s, kept_as(Stage::min_p), [&](const Active&, float) {
      return Cutoff{.log_cutoff = std::log(double{min_p}), .band = band, .factor = min_p, .relative_to_top = true};
    });
  }
  if (p.typical_p.enabled) a = typical_stage(a, p.typical_p.at(row), min_keep, s, kept_as(Stage::typical_p));
  if (p.epsilon.enabled) {
    // p >= epsilon, i.e. p / p_top >= epsilon * sum. On the whole row the float sum's band would hold many tokens,
    // and torch's softmax costs about what the kernel's own pass of exp does: torch decides it.
    const computed epsilon = static_cast<computed>(p.epsilon.at(row));
    a = probability_stage(a, vocab, min_keep, exact, s, kept_as(Stage::epsilon), [&](const Active& active, float max) {
      if (like_torch && (active.index == nullptr || epsilon < kSmallestThreshold)) {
        return Cutoff{.log_cutoff = 0, .band = kInf, .factor = epsilon, .relative_to_top = false};
      }
      const double log_cutoff = std::log(double{epsilon}) + softmax_entropy(active, max).log_sum;
      return Cutoff{.log_cutoff = log_cutoff,
                    .band = like_torch ? epsilon_band(active.n) : 0.0,
                    .factor = epsilon,
                    .relative_to_top = false};
    });
  }
  if (p.eta.enabled) {
    const double eta = p.eta.at(row);
    a = probability_stage(a, vocab, min_keep, exact, s, kept_as(Stage::eta), [&](const Active& active, float max) {
      const Entropy h = softmax_entropy(active, max);
      return Cutoff{.log_cutoff = std::log(static_cast<double>(eta_cutoff(eta, h.entropy))) + h.log_sum,
                    .band = 0.0,
                    .factor = 0.0f,
                    .relative_to_top = false};
    });
  }

  // A kept token's value: y, or its exact value for float64 rows.
  auto value = [&](int64_t token, float rounded) {
    if constexpr (std::is_same_v<scalar_t, double>) {
      return exact[token];
    } else {
      return static_cast<scalar_t>(rounded);
    }
  };
  const scalar_t fill = static_cast<scalar_t>(p.filter_value);
  if (a.keep != nullptr) {
    if constexpr (std::is_same_v<scalar_t, float>) {
      write_marked(y, a.keep, vocab, fill, out);
    } else {
      for (int64_t i = 0; i < vocab; ++i) out[i] = a.keep[i] ? value(i, y[i]) : fill;
    }
  } else if (a.index == nullptr) {
    if (static_cast<const void*>(y) != static_cast<const void*>(out)) {
      for (int64_t i = 0; i < vocab; ++i) out[i] = value(i, y[i]);
    }
  } else {
    fill_row(out, vocab, fill);
    for (int64_t j = 0; j < a.n; ++j) out[a.index[j]] = value(a.index[j], a.value[j]);
  }
}

void check_row_values(const WarpParams& p, int64_t batch) {
#define PYSAMPLE_CHECK_ROWS(name, Stored, Value, schema_type, range) \
  check_row_values(p.name, batch, #name, ValueRange::range);
  PYSAMPLE_WARP_STAGES(PYSAMPLE_CHECK_ROWS)
#undef PYSAMPLE_CHECK_ROWS
}

void warp_logits_cpu(const at::Tensor& in, const at::Tensor& out, const WarpParams& params) {
  TORCH_CHECK_VALUE(in.device().is_cpu(), "logits must be on the CPU for the CPU kernel");
  const int64_t batch = in.size(0);
  const int64_t vocab = in.size(1);
  check_row_values(params, batch);
  dispatch_scores(in, [&](auto zero) {
    using scalar_t = decltype(zero);
    const scalar_t* in_data = in.const_data_ptr<scalar_t>();
    scalar_t* out_data = out.data_ptr<scalar_t>();
    const int64_t in_stride = in.stride(0);
    const int64_t out_stride = out.stride(0);
    for_each_row<Scratch>(batch, vocab, [&](int64_t row, Scratch& scratch) {
      if constexpr (std::is_same_v<scalar_t, double>) scratch.reserve_exact(vocab);
      scratch.ahead = Ahead::after(in_data, row, batch, in_stride);
      warp_row(in_data + row * in_stride, out_data + row * out_stride, vocab, row, params, scratch);
    });
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(pysample, CPU, m) {
  m.impl("warp_logits_", &warp_logits_inplace<warp_logits_cpu>);
  m.impl("warp_logits", &warp_logits<warp_logits_cpu>);
}

}  // namespace pysample
