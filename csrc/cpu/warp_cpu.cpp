// CPU kernel of the fused warper. Rows run in parallel; within a row every stage works on the "active" tokens,
// the ones earlier stages kept, and after a stage removes tokens the survivors are compacted so that later stages
// only touch them (after top-k, top-p and min-p cost nothing). Selections (the k-th value, the top-p and typical
// boundaries) use a three-level radix select over order-preserving float keys with a histogram of counts or
// probability mass per digit: no sort of the vocabulary. The hot loops are written over fixed lanes so that the
// compiler vectorizes them, and are cloned per instruction set (SSE2 / AVX2 / AVX-512) and picked at load time.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../warp_args.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PYSAMPLE_CPU_CLONES __attribute__((target_clones("default", "avx2", "avx512f")))
#else
#define PYSAMPLE_CPU_CLONES
#endif

namespace pysample {
namespace {

constexpr int kLanes = 16;
constexpr float kInf = std::numeric_limits<float>::infinity();

// ---- vectorized loops over contiguous floats ---------------------------------------------------------------

// Largest value, ignoring NaN; `has_nan` tells whether there was one.
PYSAMPLE_CPU_CLONES float max_value(const float* x, int64_t n, bool* has_nan) {
  float acc[kLanes];
  int32_t nan[kLanes];
  for (int l = 0; l < kLanes; ++l) acc[l] = -kInf, nan[l] = 0;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const float v = x[i + l];
      acc[l] = v > acc[l] ? v : acc[l];
      nan[l] |= v != v;
    }
  }
  for (; i < n; ++i) acc[0] = x[i] > acc[0] ? x[i] : acc[0], nan[0] |= x[i] != x[i];
  float m = acc[0];
  int32_t any_nan = nan[0];
  for (int l = 1; l < kLanes; ++l) m = acc[l] > m ? acc[l] : m, any_nan |= nan[l];
  *has_nan = any_nan != 0;
  return m;
}

// e[i] = exp(x[i] - max); returns the sum of e (lanes in float, combined in double).
PYSAMPLE_CPU_CLONES double exp_shifted(const float* x, int64_t n, float max, float* e) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const float v = exp_nonpos(x[i + l] - max);
      e[i + l] = v;
      acc[l] += v;
    }
  }
  for (; i < n; ++i) e[i] = exp_nonpos(x[i] - max), acc[0] += e[i];
  double sum = 0;
  for (int l = 0; l < kLanes; ++l) sum += acc[l];
  return sum;
}

// y[i] = x[i] / temperature rounded to the logits' dtype (float32 here: half types round in their loop).
PYSAMPLE_CPU_CLONES void divide(const float* x, int64_t n, float temperature, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] / temperature;
}

// The row seen as a matrix of kColumns columns (token i in column i % kColumns): a lower bound for the k-th
// largest value is the k-th largest column maximum, since k columns hold a value that large. Column maxima are an
// element-wise max down the rows, so the loop vectorizes with no horizontal reduction.
constexpr int64_t kColumns = 1024;
PYSAMPLE_CPU_CLONES void column_max_keys(const float* x, int64_t n, uint32_t* column_max) {
  for (int64_t c = 0; c < kColumns; ++c) column_max[c] = 0;
  int64_t i = 0;
  for (; i + kColumns <= n; i += kColumns) {
    for (int64_t c = 0; c < kColumns; ++c) {
      const uint32_t k = ordered_key(x[i + c]);
      column_max[c] = k > column_max[c] ? k : column_max[c];
    }
  }
  for (int64_t c = 0; i + c < n; ++c) column_max[c] = std::max(column_max[c], ordered_key(x[i + c]));
}

// ---- radix select with weights -----------------------------------------------------------------------------

// An element of a selection: its position is defined by ascending (key, tie); `weight` is its probability mass
// (1 when selecting by rank).
struct Elem {
  uint32_t key;
  uint32_t tie;
  float weight;
};

// Where a selection stands: the elements before the candidates (their count and mass) and the radix level the
// candidates agree on (their key digits above `level` are equal).
struct Progress {
  int64_t before_count = 0;
  double before_mass = 0;
  int level = 0;
};

struct Found {
  int64_t position;  // 0-based, in ascending (key, tie) order; -1 if the weights never reach the target
  Elem elem;
};

constexpr int kRadixLevels = 3;
constexpr int kDigitShift[kRadixLevels] = {21, 10, 0};
constexpr uint32_t kDigitMask[kRadixLevels] = {0x7FF, 0x7FF, 0x3FF};
constexpr int kDigits = 2048;

inline uint32_t digit(uint32_t key, int level) { return (key >> kDigitShift[level]) & kDigitMask[level]; }

// Given each digit's count and mass, the digit at which the running mass reaches `target` (-1 if it never does);
// adds the digits before it to `progress`.
int crossing_digit(const int64_t* count, const double* mass, int level, double target, Progress& progress) {
  for (uint32_t d = 0; d <= kDigitMask[level]; ++d) {
    if (count[d] == 0) continue;
    if (progress.before_mass + mass[d] >= target) return static_cast<int>(d);
    progress.before_mass += mass[d];
    progress.before_count += count[d];
  }
  return -1;
}

// The first position at which the running sum of weights, in ascending (key, tie) order, reaches `target` (> 0),
// among `elems` that follow `progress`. Radix select: a histogram of mass per 11-bit digit finds the digit the
// running sum crosses at, only that digit's elements go on to the next digit; the few left at the end are sorted.
Found select_by_weight(std::vector<Elem>& elems, std::vector<Elem>& spare, double target, Progress progress = {}) {
  std::vector<Elem>* cur = &elems;
  std::vector<Elem>* next = &spare;
  double mass[kDigits];
  int64_t count[kDigits];
  for (int level = progress.level; level < kRadixLevels && cur->size() > 64; ++level) {
    std::fill(mass, mass + kDigits, 0.0);
    std::fill(count, count + kDigits, int64_t{0});
    for (const Elem& e : *cur) {
      const uint32_t d = digit(e.key, level);
      mass[d] += e.weight;
      ++count[d];
    }
    const int d = crossing_digit(count, mass, level, target, progress);
    if (d < 0) return {-1, {}};
    next->clear();
    for (const Elem& e : *cur) {
      if (digit(e.key, level) == static_cast<uint32_t>(d)) next->push_back(e);
    }
    std::swap(cur, next);
  }
  std::sort(cur->begin(), cur->end(),
            [](const Elem& a, const Elem& b) { return a.key != b.key ? a.key < b.key : a.tie < b.tie; });
  for (size_t j = 0; j < cur->size(); ++j) {
    progress.before_mass += (*cur)[j].weight;
    if (progress.before_mass >= target) return {progress.before_count + static_cast<int64_t>(j), (*cur)[j]};
  }
  return {-1, {}};
}

// The first position at which the running weight reaches target(total weight), in ascending (key(j), tie(j))
// order over j in [0, n). The first radix level reads the values through the functions, so no element array is
// written for the whole row; only the elements of the crossing digit are gathered.
template <typename Key, typename Tie, typename Weight, typename Target>
Found select_active(int64_t n, Key key, Tie tie, Weight weight, Target target, std::vector<Elem>& elems,
                    std::vector<Elem>& spare) {
  double mass[kDigits] = {};
  int64_t count[kDigits] = {};
  for (int64_t j = 0; j < n; ++j) {
    const uint32_t d = digit(key(j), 0);
    mass[d] += weight(j);
    ++count[d];
  }
  double total = 0;
  for (int d = 0; d < kDigits; ++d) total += mass[d];
  const double goal = target(total);
  Progress progress;
  const int d = crossing_digit(count, mass, 0, goal, progress);
  if (d < 0) return {-1, {}};
  elems.clear();
  for (int64_t j = 0; j < n; ++j) {
    const uint32_t k = key(j);
    if (digit(k, 0) == static_cast<uint32_t>(d)) elems.push_back({k, tie(j), static_cast<float>(weight(j))});
  }
  progress.level = 1;
  return select_by_weight(elems, spare, goal, progress);
}

// ---- one row ------------------------------------------------------------------------------------------------

// Scratch buffers of one thread, grown to the vocabulary size once and reused across rows and calls.
struct Scratch {
  std::vector<float> y, value, spare_value, weight;
  std::vector<int32_t> index, spare_index;
  std::vector<uint32_t> column_max = std::vector<uint32_t>(kColumns), column_rank;
  std::vector<Elem> elems, spare_elems;
};

// The tokens still kept: `value[j]` of token `index[j]`; `index == nullptr` means every token of the row (the j-th
// value is token j).
struct Active {
  const float* value;
  const int32_t* index;
  int64_t n;
  int32_t token(int64_t j) const { return index ? index[j] : static_cast<int32_t>(j); }
};

// Softmax statistics of the active tokens: max, whether the softmax is defined (no NaN, finite max), the sum of
// exp(x - max) and exp(x - max) per token in `scratch.weight`.
struct Softmax {
  float max;
  bool defined;
  double sum;
};

Softmax softmax_stats(const Active& a, Scratch& s) {
  bool has_nan;
  const float m = max_value(a.value, a.n, &has_nan);
  // transformers' softmax is NaN for the whole row when a value is NaN or the max is +-inf: its filters keep all.
  if (has_nan || !std::isfinite(m)) return {m, false, 0};
  return {m, true, exp_shifted(a.value, a.n, m, s.weight.data())};
}

// Keeps the active tokens for which keep(j) holds.
template <typename Keep>
Active compact(const Active& a, Scratch& s, Keep keep) {
  float* value = s.spare_value.data();
  int32_t* index = s.spare_index.data();
  int64_t n = 0;
  for (int64_t j = 0; j < a.n; ++j) {
    if (keep(j)) value[n] = a.value[j], index[n] = a.token(j), ++n;
  }
  if (n == a.n) return a;
  std::swap(s.value, s.spare_value);
  std::swap(s.index, s.spare_index);
  return {s.value.data(), s.index.data(), n};
}

// Whether the k-th largest of `a` is searched among the columns whose maximum reaches the k-th largest column
// maximum (see column_max_keys): worth it for small k on a whole row.
bool select_by_columns(const Active& a, int64_t k) {
  return a.index == nullptr && k * 4 <= kColumns && a.n >= 16 * kColumns;
}

// Calls visit(j) for each token j of the columns whose maximum (in `column_max`) is at least `bound`.
template <typename Visit>
void visit_columns(const Active& a, const std::vector<uint32_t>& column_max, uint32_t bound, Visit visit) {
  for (int64_t c = 0; c < kColumns; ++c) {
    if (column_max[c] < bound) continue;
    for (int64_t j = c; j < a.n; j += kColumns) visit(j);
  }
}

// Key of the k-th largest active value (NaN largest, as torch.topk); requires 1 <= k <= a.n.
uint32_t kth_largest_key(const Active& a, int64_t k, Scratch& s) {
  // ~key: descending values become ascending keys.
  if (!select_by_columns(a, k)) {
    auto key = [&](int64_t j) { return ~ordered_key(a.value[j]); };
    auto one = [](int64_t) { return 1.0; };
    auto zero = [](int64_t) { return 0u; };
    const Found f = select_active(a.n, key, zero, one, [&](double) { return static_cast<double>(k); }, s.elems,
                                  s.spare_elems);
    return ~f.elem.key;
  }
  column_max_keys(a.value, a.n, s.column_max.data());
  s.column_rank.assign(s.column_max.begin(), s.column_max.end());
  std::nth_element(s.column_rank.begin(), s.column_rank.begin() + (k - 1), s.column_rank.end(),
                   std::greater<uint32_t>());
  const uint32_t bound = s.column_rank[k - 1];
  s.elems.clear();
  visit_columns(a, s.column_max, bound, [&](int64_t j) {
    const uint32_t key = ordered_key(a.value[j]);
    if (key >= bound) s.elems.push_back({~key, 0, 1.0f});
  });
  return ~select_by_weight(s.elems, s.spare_elems, static_cast<double>(k)).elem.key;
}

// Top-k: keep values >= the k-th largest (all ties with it). Nothing to do when k >= the active count (the
// removed tokens are -inf, so the k-th largest would be -inf).
Active top_k_stage(const Active& a, int64_t k, Scratch& s) {
  if (k <= 0 || k >= a.n) return a;
  const uint32_t kth = kth_largest_key(a, k, s);
  if (!select_by_columns(a, k)) return compact(a, s, [&](int64_t j) { return ordered_key(a.value[j]) >= kth; });
  // Every survivor lies in a column whose maximum reaches the k-th largest: only those columns are read.
  int64_t n = 0;
  visit_columns(a, s.column_max, kth, [&](int64_t j) {
    if (ordered_key(a.value[j]) >= kth) s.value[n] = a.value[j], s.index[n] = static_cast<int32_t>(j), ++n;
  });
  return {s.value.data(), s.index.data(), n};
}

// Top-p: keep, in descending (value, token) order, the tokens while the mass above them is below keep_mass, and at
// least min_keep of them; never a token whose probability is 0.
Active top_p_stage(const Active& a, double top_p, int64_t min_keep, Scratch& s) {
  const Softmax sm = softmax_stats(a, s);
  if (!sm.defined) return a;
  const double keep_fraction = top_p_keep_mass(top_p);
  const float inv_sum = static_cast<float>(1.0 / sm.sum);
  int64_t positive = 0;
  for (int64_t j = 0; j < a.n; ++j) positive += probability(s.weight[j], inv_sum) > 0.0f;
  // Descending (value, token) = ascending (~key, ~token).
  auto key = [&](int64_t j) { return ~ordered_key(a.value[j]); };
  auto tie = [&](int64_t j) { return ~static_cast<uint32_t>(a.token(j)); };
  auto mass = [&](int64_t j) { return static_cast<double>(s.weight[j]); };
  auto one = [](int64_t) { return 1.0; };
  int64_t by_mass = 0;
  Elem last{};
  if (keep_fraction >= 1.0) {
    by_mass = a.n;  // top_p = 1: every token whose probability is not 0 stays
  } else if (keep_fraction > 0.0) {
    const Found f = select_active(a.n, key, tie, mass, [&](double total) { return keep_fraction * total; },
                                  s.elems, s.spare_elems);
    by_mass = f.position < 0 ? a.n : f.position + 1;
    last = f.elem;
  }
  const int64_t keep = std::max(std::min(by_mass, positive), std::min(min_keep, a.n));
  if (keep >= a.n) return a;
  if (keep != by_mass) {
    const double rank = static_cast<double>(keep);
    last = select_active(a.n, key, tie, one, [&](double) { return rank; }, s.elems, s.spare_elems).elem;
  }
  // Everything at or above the last kept token in (value, token) order stays.
  return compact(a, s, [&](int64_t j) {
    const uint32_t k = key(j);
    return k < last.key || (k == last.key && tie(j) <= last.tie);
  });
}

// Min-p, epsilon and eta: remove tokens whose probability is below `cutoff(...)` unless they are among the
// min_keep largest values. For min-p transformers keeps the min_keep largest *probabilities* through topk, whose
// choice among tied values is unspecified; here every value tied with the min_keep-th largest is kept.
template <typename Cutoff>
Active probability_stage(const Active& a, int64_t min_keep, Scratch& s, Cutoff cutoff) {
  const Softmax sm = softmax_stats(a, s);
  if (!sm.defined) return a;
  // With fewer active tokens than min_keep, the min_keep-th largest is a removed (-inf) token: nothing goes.
  if (min_keep > a.n) return a;
  const float inv_sum = static_cast<float>(1.0 / sm.sum);
  const float threshold = cutoff(a, sm, inv_sum);
  const uint32_t protect = min_keep == 1 ? ordered_key(sm.max) : kth_largest_key(a, min_keep, s);
  return compact(a, s, [&](int64_t j) {
    return !(probability(s.weight[j], inv_sum) < threshold) || ordered_key(a.value[j]) >= protect;
  });
}

// Entropy -sum p log p of the active tokens, log p = x - max - log(sum); zero-probability tokens add nothing.
double entropy(const Active& a, const Softmax& sm, const Scratch& s) {
  const double log_sum = std::log(sm.sum);
  double h = 0;
  for (int64_t j = 0; j < a.n; ++j) {
    const double w = s.weight[j];
    if (w > 0) h -= (w / sm.sum) * ((static_cast<double>(a.value[j]) - sm.max) - log_sum);
  }
  return h;
}

// Typical decoding: order tokens by |-(log p) - entropy|, keep the shortest prefix whose mass reaches typical_p
// (with every token tied with its last one) and at least the first min_keep.
Active typical_stage(const Active& a, double typical_p, int64_t min_keep, Scratch& s) {
  const Softmax sm = softmax_stats(a, s);
  if (!sm.defined) return a;
  const float log_sum = static_cast<float>(std::log(sm.sum));
  const float ent = static_cast<float>(entropy(a, sm, s));
  auto key = [&](int64_t j) { return ordered_key(typical_distance(a.value[j], sm.max, log_sum, ent)); };
  auto tie = [&](int64_t j) { return static_cast<uint32_t>(a.token(j)); };
  auto mass = [&](int64_t j) { return static_cast<double>(s.weight[j]); };
  const Found f = select_active(a.n, key, tie, mass, [&](double total) { return typical_p * total; }, s.elems,
                                s.spare_elems);
  // Everything at or below the boundary distance stays (transformers clamps to the last token when the mass
  // never reaches typical_p), and at least the first min_keep tokens.
  uint32_t cut_key = f.position < 0 ? 0xFFFFFFFFu : f.elem.key;
  uint32_t cut_tie = 0xFFFFFFFFu;
  int64_t kept = 0;
  for (int64_t j = 0; j < a.n; ++j) kept += key(j) <= cut_key;
  if (kept < std::min(min_keep, a.n)) {
    const double rank = static_cast<double>(min_keep);
    const Elem last = select_active(a.n, key, tie, [](int64_t) { return 1.0; }, [&](double) { return rank; },
                                    s.elems, s.spare_elems).elem;
    cut_key = last.key;
    cut_tie = last.tie;
    kept = min_keep;
  }
  if (kept >= a.n) return a;
  return compact(a, s, [&](int64_t j) {
    const uint32_t k = key(j);
    return k < cut_key || (k == cut_key && tie(j) <= cut_tie);
  });
}

template <typename scalar_t>
void warp_row(const scalar_t* in, scalar_t* out, int64_t vocab, int64_t row, const WarpParams& p, Scratch& s) {
  const float* y = s.y.data();
  const bool scaled = p.temperature.enabled;
  const float temperature = scaled ? static_cast<float>(p.temperature.at(row)) : 1.0f;
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (scaled) {
      divide(in, vocab, temperature, s.y.data());
    } else {
      y = in;  // read float32 logits where they are
    }
  } else {
    for (int64_t i = 0; i < vocab; ++i) {
      const float x = static_cast<float>(in[i]);
      s.y[i] = scaled ? apply_temperature<scalar_t>(x, temperature) : x;
    }
  }

  Active a{y, nullptr, vocab};
  const int64_t min_keep = p.min_tokens_to_keep;
  if (p.top_k.enabled) a = top_k_stage(a, p.top_k.at(row), s);
  if (p.top_p.enabled) a = top_p_stage(a, p.top_p.at(row), min_keep, s);
  if (p.min_p.enabled) {
    const double min_p = p.min_p.at(row);
    a = probability_stage(a, min_keep, s, [&](const Active&, const Softmax&, float inv_sum) {
      return static_cast<float>(min_p) * inv_sum;  // min_p * top probability, the top probability being 1 * inv
    });
  }
  if (p.typical_p.enabled) a = typical_stage(a, p.typical_p.at(row), min_keep, s);
  if (p.epsilon.enabled) {
    const double epsilon = p.epsilon.at(row);
    a = probability_stage(a, min_keep, s, [&](const Active&, const Softmax&, float) { return static_cast<float>(epsilon); });
  }
  if (p.eta.enabled) {
    const double eta = p.eta.at(row);
    a = probability_stage(a, min_keep, s,
                          [&](const Active& active, const Softmax& sm, float) {
                            return eta_cutoff(eta, entropy(active, sm, s));
                          });
  }

  if (a.index == nullptr) {
    for (int64_t i = 0; i < vocab; ++i) out[i] = static_cast<scalar_t>(y[i]);
  } else {
    const scalar_t fill = static_cast<scalar_t>(p.filter_value);
    std::fill(out, out + vocab, fill);
    for (int64_t j = 0; j < a.n; ++j) out[a.index[j]] = static_cast<scalar_t>(a.value[j]);
  }
}

// Per-row parameter tensors are read here before any row runs, so that a bad value raises instead of being used.
template <typename Stored, typename Value, typename Valid>
void check_row_values(const RowParam<Stored, Value>& param, int64_t batch, const char* name, const char* rule,
                      Valid valid) {
  if (param.rows == nullptr) return;
  for (int64_t r = 0; r < batch; ++r) {
    const Value v = param.at(r);
    TORCH_CHECK_VALUE(valid(v), name, "[", r, "] must be ", rule, ", got ", v);
  }
}

void check_row_values(const WarpParams& p, int64_t batch) {
  auto unit = [](double v) { return v >= 0 && v <= 1; };  // false for NaN
  check_row_values(p.temperature, batch, "temperature", "a finite number > 0",
                   [](double v) { return std::isfinite(v) && v > 0; });
  check_row_values(p.top_k, batch, "top_k", ">= 0", [](int64_t v) { return v >= 0; });
  check_row_values(p.top_p, batch, "top_p", "in [0, 1]", unit);
  check_row_values(p.min_p, batch, "min_p", "in [0, 1]", unit);
  check_row_values(p.typical_p, batch, "typical_p", "in [0, 1]", unit);
  check_row_values(p.epsilon, batch, "epsilon", "in [0, 1]", unit);
  check_row_values(p.eta, batch, "eta", "in [0, 1]", unit);
}

void warp_logits_cpu(const at::Tensor& in, const at::Tensor& out, const WarpParams& params) {
  TORCH_CHECK_VALUE(in.device().is_cpu(), "logits must be on the CPU for the CPU kernel");
  const int64_t batch = in.size(0);
  const int64_t vocab = in.size(1);
  check_row_values(params, batch);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.scalar_type(), "warp_logits_cpu", [&] {
    const scalar_t* in_data = in.const_data_ptr<scalar_t>();
    scalar_t* out_data = out.data_ptr<scalar_t>();
    const int64_t in_stride = in.stride(0);
    const int64_t out_stride = out.stride(0);
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
      thread_local Scratch scratch;
      if (static_cast<int64_t>(scratch.y.size()) < vocab) {
        for (auto* v : {&scratch.y, &scratch.value, &scratch.spare_value, &scratch.weight}) v->resize(vocab);
        for (auto* v : {&scratch.index, &scratch.spare_index}) v->resize(vocab);
      }
      for (int64_t row = begin; row < end; ++row) {
        warp_row(in_data + row * in_stride, out_data + row * out_stride, vocab, row, params, scratch);
      }
    });
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(pysample, CPU, m) {
  m.impl("warp_logits_", &warp_logits_inplace<warp_logits_cpu>);
  m.impl("warp_logits", &warp_logits<warp_logits_cpu>);
}

}  // namespace pysample
