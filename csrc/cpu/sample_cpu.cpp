// CPU kernel of pysample.sample; the rules are in pysample/sample.h, shared with the CUDA kernel. Rows run in
// parallel. Within a row: the scaled logits, top-k through the warper's candidate gathering (top_k.h), or on
// the whole row top-p's gathering of the tokens near its crossing (distance_histogram.h); top-p over the fixed-point
// weights of those candidates (a histogram of weight by distance from the max finds the bin where the boundary lies,
// and only the tokens of its finer bin are put in order: split_crossing_bin), min-p, then each draw a walk along the
// running weight of the kept tokens in token order. No sort of the vocabulary and no softmax written out.
#include <torch/library.h>

#include "../sample_args.h"
#include "distance_histogram.h"
#include "row_scratch.h"
#include "selection.h"
#include "top_k.h"

namespace pysample {
namespace {

// w[j] = sample_weight(x[j], max); returns their sum.
PYSAMPLE_CPU_CLONES uint64_t sample_weights(const float* x, int64_t n, float max, uint64_t* w) {
  uint64_t total = 0;
  for (int64_t j = 0; j < n; ++j) w[j] = sample_weight(x[j], max), total += w[j];
  return total;
}

// Sum of w[j] over the kept j.
PYSAMPLE_CPU_CLONES uint64_t kept_weight(const uint64_t* w, const uint8_t* keep, int64_t n) {
  uint64_t total = 0;
  for (int64_t j = 0; j < n; ++j) total += keep[j] ? w[j] : 0;
  return total;
}

// w[i] = sample_weight of the token whose exp is e[i], as a double (an integer below 2^41, exact). A plain loop, which
// the compiler vectorizes.
constexpr int64_t kChunk = kCutChunk;

inline void fixed_point_weights(const float* e, int64_t n, double* w) {
  for (int64_t i = 0; i < n; ++i) {
    w[i] = (static_cast<double>(e[i]) * kWeightScale + kRoundingShift) - kRoundingShift;  // sample_weight
  }
}

// The sum of up to kChunk fixed_point_weights: exact in double whatever the order, so summed on double lanes.
template <typename Keep>
[[gnu::always_inline]] inline uint64_t sum_of(const double* w, int64_t n, Keep keep) {
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += keep(w[i + l]) ? w[i + l] : 0.0;
  }
  for (; i < n; ++i) acc[0] += keep(w[i]) ? w[i] : 0.0;
  double sum = 0;
  for (int l = 0; l < kLanes; ++l) sum += acc[l];
  return static_cast<uint64_t>(sum);
}

// sums[c] = sum of the weights of the tokens of chunk c (kChunk tokens) that are at least min_p_scale = min_p *
// kWeightScale (min_p_keeps). Prefetches `ahead` as it goes.
PYSAMPLE_CPU_CLONES void kept_chunk_weights(const float* x, int64_t n, float max, double min_p_scale, uint64_t* sums,
                                            const Ahead& ahead) {
  float e[kChunk];
  double w[kChunk];
  for (int64_t begin = 0; begin < n; begin += kChunk) {
    const int64_t len = std::min(kChunk, n - begin);
    ahead.prefetch(begin, begin + len);
    exps(x + begin, len, max, e);
    fixed_point_weights(e, len, w);
    sums[begin / kChunk] = sum_of(w, len, [=](double weight) { return weight >= min_p_scale; });
  }
}

struct SampleScratch {
  Scratch row;
  std::vector<uint64_t> weight;                       // per active token
  std::vector<int32_t> order;                         // active positions in token order, after top-k
  std::vector<std::pair<uint64_t, int64_t>> targets;  // (target, draw), ascending
  std::vector<uint64_t> chunk_sums;                   // kept weight per chunk of kChunk tokens

  void reserve(int64_t vocab) {
    row.reserve(vocab);
    if (static_cast<int64_t>(weight.size()) >= vocab) return;
    weight.resize(vocab), order.resize(vocab);
    chunk_sums.resize(vocab / kChunk + 1);
  }
};

// Marks in scratch.keep the tokens of `a` top-p keeps (top_p_keeps), given their weights and the total of which it
// keeps a fraction. The bins of their histogram by distance from `max` before the one in which the running weight
// reaches top_p * total stay whole, later ones go, and only the tokens of that bin's finer bin where the weight
// crosses (split_crossing_bin) are put in order (descending value, ties by descending id).
void top_p_marks(const Active& a, const uint64_t* weight, uint64_t total, float max, double top_p, SampleScratch& ss) {
  Scratch& s = ss.row;
  const DistanceBins bins = DistanceBins::from_max(max);
  uint64_t mass[kDistanceBins];
  distance_histogram(a.value, weight, a.n, bins, mass);
  const double goal = top_p * static_cast<double>(total);
  uint64_t before;
  int32_t crossing = crossing_bin(mass, goal, &before);
  if (crossing < 0) crossing = kDistanceBins;  // the far tokens' bin, past the others
  uint8_t* keep = s.keep.data();
  int32_t* members = s.members.data();
  float* values = s.member_values.data();
  const int64_t in_bin = mark_bins_before(a.value, a.n, bins, crossing, keep, members, values);
  const int64_t count = split_crossing_bin(
      values, bins, crossing, members, in_bin, [&](int32_t j, float) { return weight[j]; }, goal, &before,
      [&](int32_t j, bool kept) { keep[j] = kept; }, s.member_bins.data());
  const float* x = a.value;
  std::sort(members, members + count,
            [&](int32_t i, int32_t j) { return x[i] > x[j] || (x[i] == x[j] && a.token(i) > a.token(j)); });
  // Once one goes, the rest do (the weight before them only grows).
  for (int64_t m = 0; m < count; ++m) {
    keep[members[m]] = top_p_keeps(before, total, top_p);
    before += keep[members[m]] ? weight[members[m]] : 0;
  }
}

// The draws' targets for the kept weight `kept`, ascending, with the draw each belongs to.
void draw_targets(const SampleParams& p, int64_t row, uint64_t kept, SampleScratch& ss) {
  const uint64_t seed = static_cast<uint64_t>(p.seed[row]), step = static_cast<uint64_t>(p.step[row]);
  ss.targets.clear();
  for (int64_t d = 0; d < p.draws; ++d) {
    ss.targets.push_back({draw_target(draw_bits(seed, step, static_cast<uint32_t>(d)), kept), d});
  }
  std::sort(ss.targets.begin(), ss.targets.end());
}

// Sampling among candidates, `a` with their weights in ss.weight: top-k's (few), or the tokens near top-p's crossing
// (see sample_top_p). `total` is the weight of which top-p keeps a fraction: theirs, or the whole row's.
void sample_candidates(const Active& a, uint64_t total, float max, double top_p, double min_p_scale,
                       const SampleParams& p, int64_t row, SampleScratch& ss, int64_t* tokens) {
  const uint64_t* weight = ss.weight.data();
  uint8_t* keep = ss.row.keep.data();
  if (top_p < 1.0) {
    top_p_marks(a, weight, total, max, top_p, ss);
  } else {
    std::fill(keep, keep + a.n, 1);
  }
  if (min_p_scale > 0) {
    for (int64_t j = 0; j < a.n; ++j) keep[j] &= static_cast<double>(weight[j]) >= min_p_scale;
  }
  draw_targets(p, row, kept_weight(weight, keep, a.n), ss);
  // The positions in token order: as they are when gathered from the whole row.
  int32_t* order = nullptr;
  if (!std::is_sorted(a.index, a.index + a.n)) {
    order = ss.order.data();
    for (int64_t j = 0; j < a.n; ++j) order[j] = static_cast<int32_t>(j);
    std::sort(order, order + a.n, [&](int32_t i, int32_t j) { return a.index[i] < a.index[j]; });
  }
  uint64_t upto = 0;
  size_t next = 0;
  for (int64_t i = 0; i < a.n && next < ss.targets.size(); ++i) {
    const int64_t j = order != nullptr ? order[i] : i;
    upto += weight[j] * keep[j];  // branch-free: the kept tokens of top-p's crossing bin are scattered
    for (; next < ss.targets.size() && ss.targets[next].first < upto; ++next) {
      tokens[ss.targets[next].second] = a.index[j];
    }
  }
}

// Top-p on the whole row: every kept token lies within the smallest cut past an estimate of its crossing whose
// weight reaches top_p of the row's total (distance_histogram.h), or every token when none does; those tokens are
// gathered, in token order, and sampled among as candidates.
void sample_top_p(const float* y, int64_t vocab, float max, double top_p, double min_p_scale, const SampleParams& p,
                  int64_t row, SampleScratch& ss, int64_t* tokens) {
  const DistanceBins bins = DistanceBins::from_max(max);
  CutMasses m = estimate_cuts(y, nullptr, vocab, ss.row.block_values.data(), bins, top_p);
  uint64_t total = 0;
  weigh_within_cuts(y, nullptr, vocab, bins, m, std::exchange(ss.row.ahead, {}), [&](const float* e, int64_t len) {
    double w[kChunk];
    fixed_point_weights(e, len, w);
    total += sum_of(w, len, [](double) { return true; });
  });
  // The cuts sum exps; a weight is its exp times kWeightScale within 1/2.
  const double goal = (top_p * static_cast<double>(total) + 0.5 * static_cast<double>(vocab)) / kWeightScale;
  const int c = cut_reaching(m, goal, cut_mass_error(vocab), vocab);
  Scratch& s = ss.row;
  const int64_t n = gather_within(y, nullptr, vocab, bins, c < kCuts ? m.cut[c] : kInf, s.value.data(), s.index.data());
  const Active near{s.value.data(), s.index.data(), n};
  sample_weights(near.value, n, max, ss.weight.data());
  sample_candidates(near, total, max, top_p, min_p_scale, p, row, ss, tokens);
}

// Sampling from the whole row without top-p. A draw finds its chunk of kChunk tokens from their kept weight (min-p),
// summed in a vectorized pass per chunk, and walks only that chunk.
void sample_whole_row(const float* y, int64_t vocab, float max, double min_p_scale, const SampleParams& p, int64_t row,
                      SampleScratch& ss, int64_t* tokens) {
  auto kept_weight = [&](int64_t i) -> uint64_t {
    const uint64_t w = sample_weight(y[i], max);
    return static_cast<double>(w) >= min_p_scale ? w : 0;
  };
  const int64_t chunks = (vocab + kChunk - 1) / kChunk;
  uint64_t* sums = ss.chunk_sums.data();
  kept_chunk_weights(y, vocab, max, min_p_scale, sums, std::exchange(ss.row.ahead, {}));
  uint64_t kept = 0;
  for (int64_t c = 0; c < chunks; ++c) kept += sums[c];
  draw_targets(p, row, kept, ss);
  uint64_t upto = 0;
  size_t next = 0;
  for (int64_t c = 0; c < chunks && next < ss.targets.size(); ++c) {
    if (upto + sums[c] <= ss.targets[next].first) {  // no draw lands in this chunk
      upto += sums[c];
      continue;
    }
    for (int64_t i = c * kChunk; i < std::min((c + 1) * kChunk, vocab) && next < ss.targets.size(); ++i) {
      upto += kept_weight(i);
      for (; next < ss.targets.size() && ss.targets[next].first < upto; ++next) tokens[ss.targets[next].second] = i;
    }
  }
}

template <typename scalar_t>
void sample_row(const scalar_t* in, int64_t vocab, int64_t row, const SampleParams& p, SampleScratch& ss,
                int64_t* tokens) {
  Scratch& s = ss.row;
  const double temperature = p.temperature.enabled ? p.temperature.at(row) : 1.0;
  const int64_t top_k = p.top_k.enabled ? p.top_k.at(row) : 0;
  const bool greedy = temperature == 0 || top_k == 1;
  // The scaled logits (greedy by top_k 1 included: rule 1); float32 ones are read where they are unless a
  // temperature divides them.
  const bool scaled = temperature != 0 && temperature != 1.0;
  const float* y = s.y.data();
  if (std::is_same_v<scalar_t, float> && !scaled) {
    y = reinterpret_cast<const float*>(in);
  } else if (!scaled) {
    for (int64_t i = 0; i < vocab; ++i) s.y[i] = static_cast<float>(in[i]);
  } else {
    const float t = static_cast<float>(temperature);
    for (int64_t i = 0; i < vocab; ++i) s.y[i] = apply_temperature<scalar_t>(static_cast<float>(in[i]), t);
  }
  // Top-k keeps the row's largest value and every NaN: the row's value range is that of the tokens it keeps, and
  // only they are read for it (greedy draws read the whole row, for the first of its largest tokens).
  Active a{y, nullptr, vocab};
  if (top_k > 0 && !greedy) a = top_k_stage(a, top_k, s, KeptAs::kCompacted);
  float max, min;
  bool has_nan;
  value_range(a.value, a.n, &max, &min, &has_nan, s.block_values.data());
  if (greedy) {  // rule 1
    const float* first =
        has_nan ? std::find_if(y, y + vocab, [](float v) { return v != v; }) : std::find(y, y + vocab, max);
    std::fill(tokens, tokens + p.draws, vocab == 0 ? -1 : first - y);
    return;
  }
  if (has_nan || !(max > -kInf)) {  // the softmax is undefined
    std::fill(tokens, tokens + p.draws, -1);
    return;
  }
  if (max == kInf) {  // rule 2: the row becomes 0 at its +inf tokens and -inf elsewhere
    float* limit = s.y.data();
    for (int64_t i = 0; i < vocab; ++i) limit[i] = y[i] == kInf ? 0.0f : -kInf;
    y = limit;
    a = Active{y, nullptr, vocab};
    if (top_k > 0) a = top_k_stage(a, top_k, s, KeptAs::kCompacted);
    value_range(a.value, a.n, &max, &min, &has_nan, s.block_values.data());  // max 0; the blocks' maxima anew
  }
  const double top_p = p.top_p.enabled ? p.top_p.at(row) : 1.0;
  // min_p_keeps as a bound on the weight; 0 keeps every token.
  const double min_p_scale = p.min_p.enabled ? p.min_p.at(row) * kWeightScale : 0.0;
  if (a.index != nullptr) {
    const uint64_t total = sample_weights(a.value, a.n, max, ss.weight.data());
    return sample_candidates(a, total, max, top_p, min_p_scale, p, row, ss, tokens);
  }
  if (top_p < 1.0) return sample_top_p(y, vocab, max, top_p, min_p_scale, p, row, ss, tokens);
  sample_whole_row(y, vocab, max, min_p_scale, p, row, ss, tokens);
}

void check_row_values(const SampleParams& p, int64_t batch) {
  check_row_values(p.temperature, batch, "temperature", ValueRange::kNonNegativeFinite);
  check_row_values(p.top_k, batch, "top_k", ValueRange::kNonNegative);
  check_row_values(p.top_p, batch, "top_p", ValueRange::kUnitInterval);
  check_row_values(p.min_p, batch, "min_p", ValueRange::kUnitInterval);
}

void sample_cpu(const at::Tensor& logits, const at::Tensor& tokens, const SampleParams& params) {
  TORCH_CHECK_VALUE(logits.device().is_cpu(), "logits must be on the CPU for the CPU kernel");
  const int64_t batch = logits.size(0);
  const int64_t vocab = logits.size(1);
  check_row_values(params, batch);
  dispatch_logits(logits, [&](auto zero) {
    using scalar_t = decltype(zero);
    const scalar_t* in = logits.const_data_ptr<scalar_t>();
    int64_t* out = tokens.data_ptr<int64_t>();
    const int64_t stride = logits.stride(0);
    for_each_row<SampleScratch>(batch, vocab, [&](int64_t row, SampleScratch& scratch) {
      scratch.row.ahead = Ahead::after(in, row, batch, stride);
      sample_row(in + row * stride, vocab, row, params, scratch, out + row * params.draws);
    });
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(pysample, CPU, m) { m.impl("sample", &sample<sample_cpu>); }

}  // namespace pysample
