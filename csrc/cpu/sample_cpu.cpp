// CPU kernel of pysample.sample; the rules are in pysample/sample.h, shared with the CUDA kernel. Rows run in
// parallel. Within a row: the scaled logits, top-k through the warper's candidate gathering (row_kernels.h), top-p
// over the fixed-point weights (a histogram of weight by distance from the max finds the bin where the boundary
// lies, and only the tokens of its finer bin are put in order: split_crossing_bin), min-p, then each draw a binary
// search in the running weight of the kept tokens in token order. No sort of the vocabulary and no softmax written
// out.
#include <torch/library.h>

#include "../sample_args.h"
#include "row_kernels.h"

namespace pysample {
namespace {

// w[j] = sample_weight(x[j], max); returns their sum.
PYSAMPLE_CPU_CLONES uint64_t sample_weights(const float* x, int64_t n, float max, uint64_t* w) {
  uint64_t total = 0;
  for (int64_t j = 0; j < n; ++j) w[j] = sample_weight(x[j], max), total += w[j];
  return total;
}

// mass[b] = sum of w[j] over the tokens in top-p's distance bin b (distance max - x, row_kernels.h), b <=
// kDistanceBins. Two interleaved histograms so that consecutive adds to one bin do not wait on each other.
PYSAMPLE_CPU_CLONES void weight_histogram(const float* x, const uint64_t* w, int64_t n, DistanceBins bins,
                                          uint64_t* mass) {
  uint64_t h[2][kDistanceBins + 1] = {};
  int32_t bin[8];
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    Floats8 v;
    std::memcpy(&v, x + j, sizeof v);
    const Ints8 b = bin_of(distance_of(v, bins));
    std::memcpy(bin, &b, sizeof b);
    for (int l = 0; l < 8; l += 2) h[0][bin[l]] += w[j + l], h[1][bin[l + 1]] += w[j + l + 1];
  }
  for (; j < n; ++j) h[0][bin_of(distance_of(x[j], bins))] += w[j];
  for (int b = 0; b <= kDistanceBins; ++b) mass[b] = h[0][b] + h[1][b];
}

// Sum of w[j] over the kept j.
PYSAMPLE_CPU_CLONES uint64_t kept_weight(const uint64_t* w, const uint8_t* keep, int64_t n) {
  uint64_t total = 0;
  for (int64_t j = 0; j < n; ++j) total += keep[j] ? w[j] : 0;
  return total;
}

// The weights (sample_weight) of up to kChunk tokens, as doubles (integers below 2^41, exact), and room for a flag
// per token. Plain loops over arrays, one quantity at a time, which the compiler vectorizes (exp_nonpos included).
constexpr int64_t kChunk = 256;

struct ChunkWeights {
  float e[kChunk], before[kChunk];
  double w[kChunk];
};

// `exps`: exp(x - max) of the chunk when already known (else computed into c.e).
inline void chunk_weights(const float* x, const float* exps, int64_t n, float max, ChunkWeights& c) {
  if (exps == nullptr) {
    for (int64_t i = 0; i < n; ++i) c.e[i] = exp_nonpos(x[i] - max);
    exps = c.e;
  }
  for (int64_t i = 0; i < n; ++i) {
    c.w[i] = (static_cast<double>(exps[i]) * kWeightScale + kRoundingShift) - kRoundingShift;  // sample_weight
  }
}

// sums[c] = sum of the weights of the tokens of chunk c (kChunk tokens) whose top-p bin (distance max - x) comes
// before `crossing` and whose weight is at least min_p_scale = min_p * kWeightScale (min_p_keeps); `exps` as in
// chunk_weights, or null. Sums of up to 2^11 weights are exact in double whatever the order, so a chunk is summed on
// double lanes (vectorized).
PYSAMPLE_CPU_CLONES void kept_chunk_weights(const float* x, const float* exps, int64_t n, DistanceBins bins,
                                            int32_t crossing, double min_p_scale, uint64_t* sums) {
  ChunkWeights c;
  for (int64_t begin = 0; begin < n; begin += kChunk) {
    const int64_t len = std::min(kChunk, n - begin);
    chunk_weights(x + begin, exps != nullptr ? exps + begin : nullptr, len, bins.max, c);
    for (int64_t i = 0; i < len; ++i) c.before[i] = bin_of(distance_of(x[begin + i], bins)) < crossing ? 1.0f : 0.0f;
    double acc[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= len; i += kLanes) {
      for (int l = 0; l < kLanes; ++l) {
        const double w = c.w[i + l];
        acc[l] += (w >= min_p_scale ? w : 0.0) * static_cast<double>(c.before[i + l]);
      }
    }
    for (; i < len; ++i) acc[0] += (c.w[i] >= min_p_scale ? c.w[i] : 0.0) * static_cast<double>(c.before[i]);
    double sum = 0;
    for (int l = 0; l < kLanes; ++l) sum += acc[l];
    sums[begin / kChunk] = static_cast<uint64_t>(sum);
  }
}

// mass[b] = sum of the weights of the tokens in top-p bin b <= kDistanceBins, and exps[i] = exp(x[i] - max) for
// the passes after it; returns the total weight. Two interleaved histograms so that consecutive adds to one bin do
// not wait on each other.
PYSAMPLE_CPU_CLONES uint64_t weight_histogram_of_row(const float* x, int64_t n, DistanceBins bins, uint64_t* mass,
                                                     float* exps) {
  uint64_t h[2][kDistanceBins + 1] = {};
  ChunkWeights c;
  int32_t bin[kChunk];
  for (int64_t begin = 0; begin < n; begin += kChunk) {
    const int64_t len = std::min(kChunk, n - begin);
    chunk_weights(x + begin, nullptr, len, bins.max, c);
    for (int64_t i = 0; i < len; ++i) bin[i] = bin_of(distance_of(x[begin + i], bins)), exps[begin + i] = c.e[i];
    // Through int64 (the weights are below 2^41): one conversion instruction, where uint64 takes a branch.
    int64_t i = 0;
    for (; i + 2 <= len; i += 2) {
      h[0][bin[i]] += static_cast<int64_t>(c.w[i]);
      h[1][bin[i + 1]] += static_cast<int64_t>(c.w[i + 1]);
    }
    if (i < len) h[0][bin[i]] += static_cast<int64_t>(c.w[i]);
  }
  uint64_t total = 0;
  for (int b = 0; b <= kDistanceBins; ++b) mass[b] = h[0][b] + h[1][b], total += mass[b];
  return total;
}

struct SampleScratch {
  Scratch row;
  std::vector<uint64_t> weight;                       // per active token
  std::vector<int32_t> order;                         // active positions in token order, after top-k
  std::vector<std::pair<uint64_t, int64_t>> targets;  // (target, draw), ascending
  std::vector<int32_t> kept_members;                  // the kept tokens of top-p's crossing bin, ascending
  std::vector<float> exps;                            // exp(y - max) of the whole row, for top-p
  std::vector<uint64_t> chunk_sums;                   // kept weight per chunk of kChunk tokens

  void reserve(int64_t vocab) {
    row.reserve(vocab);
    if (static_cast<int64_t>(weight.size()) >= vocab) return;
    weight.resize(vocab), order.resize(vocab), exps.resize(vocab);
    chunk_sums.resize(vocab / kChunk + 1);
  }
};

// Top-p over the fixed-point weights of the n tokens x (weight(j, x[j]) each, token(j) their ids), given `mass`, their
// histogram by distance from `max`, and their total. The bins before the one in which the running weight reaches
// top_p * total stay whole (marked in `marks` unless it is null), later ones go; decided(j, kept) is called for each
// token of that bin, of which only those of the finer bin where the weight crosses (split_crossing_bin) are put in
// order (descending x, ties by ascending id) for top_p_keeps. Returns the bin, and in `kept` the weight of every
// kept token.
template <typename Weight, typename Token, typename Decided>
int32_t top_p_crossing(const float* x, int64_t n, float max, const uint64_t* mass, uint64_t total, double top_p,
                       Weight weight, Token token, uint8_t* marks, Decided decided, Scratch& s, uint64_t* kept) {
  const DistanceBins bins{max, 0.0f, 0.0f, false};
  const double goal = top_p * static_cast<double>(total);
  uint64_t before = 0;
  int32_t crossing = 0;
  while (crossing < kDistanceBins && static_cast<double>(before + mass[crossing]) < goal) before += mass[crossing++];
  int32_t* members = s.members.data();
  float* values = s.member_values.data();
  const int64_t in_bin = mark_bins_before(x, n, bins, crossing, marks, members, values);
  const int64_t count =
      split_crossing_bin(values, bins, crossing, members, in_bin, weight, goal, &before, decided, s.member_bins.data());
  std::sort(members, members + count, [&](int32_t i, int32_t j) {
    return x[i] > x[j] || (x[i] == x[j] && token(i) < token(j));
  });
  // Once one goes, the rest do (the weight before them only grows).
  for (int64_t m = 0; m < count; ++m) {
    const bool keep = top_p_keeps(before, total, top_p);
    decided(members[m], keep);
    before += keep ? weight(members[m], x[members[m]]) : 0;
  }
  *kept = before;
  return crossing;
}

// Marks in scratch.keep the active tokens top-p keeps (top_p_keeps), given their weights and total.
void top_p_marks(const Active& a, const uint64_t* weight, uint64_t total, float max, double top_p, SampleScratch& ss) {
  Scratch& s = ss.row;
  uint64_t mass[kDistanceBins + 1], kept;
  weight_histogram(a.value, weight, a.n, DistanceBins{max, 0.0f, 0.0f, false}, mass);
  top_p_crossing(
      a.value, a.n, max, mass, total, top_p, [&](int32_t j, float) { return weight[j]; },
      [&](int32_t j) { return a.token(j); }, s.keep.data(), [&](int32_t j, bool keep) { s.keep[j] = keep; }, s,
      &kept);
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

// Sampling among the candidates top-k gathered (few): their weights are stored and put in token order.
void sample_candidates(const Active& a, float max, double top_p, double min_p_scale, const SampleParams& p,
                       int64_t row, SampleScratch& ss, int64_t* tokens) {
  uint64_t* weight = ss.weight.data();
  const uint64_t total = sample_weights(a.value, a.n, max, weight);
  uint8_t* keep = ss.row.keep.data();
  if (top_p < 1.0) {
    top_p_marks(a, weight, total, max, top_p, ss);
  } else {
    std::fill(keep, keep + a.n, 1);
  }
  for (int64_t j = 0; j < a.n; ++j) keep[j] &= static_cast<double>(weight[j]) >= min_p_scale;
  draw_targets(p, row, kept_weight(weight, keep, a.n), ss);
  int32_t* order = ss.order.data();
  for (int64_t j = 0; j < a.n; ++j) order[j] = static_cast<int32_t>(j);
  std::sort(order, order + a.n, [&](int32_t i, int32_t j) { return a.index[i] < a.index[j]; });
  uint64_t upto = 0;
  size_t next = 0;
  for (int64_t i = 0; i < a.n && next < ss.targets.size(); ++i) {
    upto += keep[order[i]] ? weight[order[i]] : 0;
    for (; next < ss.targets.size() && ss.targets[next].first < upto; ++next) {
      tokens[ss.targets[next].second] = a.index[order[i]];
    }
  }
}

// Sampling from the whole row. Top-p's histogram of weight by distance from the max finds the bin where its
// boundary lies; only the tokens of its finer bin are put in order (the kept ones of that bin: kept_members). A token
// is then kept when its bin comes before that one or it is a kept member, and its weight passes min-p. A draw finds
// its chunk of kChunk tokens from their kept weight, summed in a vectorized pass per chunk, and walks only that
// chunk. With top-p alone and one draw, the kept weight is known from top-p's own sums, so only the chunks up to the
// draw's are summed, walking from whichever end of the row its point is nearer (the token is the same either way:
// the first whose running weight from the start exceeds the point is the one at which the running weight from the
// end first reaches kept - point); otherwise every chunk is summed first.
void sample_whole_row(const float* y, int64_t vocab, float max, double top_p, double min_p_scale,
                      const SampleParams& p, int64_t row, SampleScratch& ss, int64_t* tokens) {
  const DistanceBins bins{max, 0.0f, 0.0f, false};
  auto weight = [&](int64_t i) { return sample_weight(y[i], max); };
  int32_t crossing = kDistanceBins + 1;  // without top-p every bin comes before it
  const float* exps = nullptr;
  std::vector<int32_t>& members = ss.kept_members;
  members.clear();
  uint64_t kept = 0;  // the kept weight, when top-p alone decides it
  if (top_p < 1.0) {
    uint64_t mass[kDistanceBins + 1];
    const uint64_t total = weight_histogram_of_row(y, vocab, bins, mass, ss.exps.data());
    exps = ss.exps.data();
    crossing = top_p_crossing(
        y, vocab, max, mass, total, top_p, [&](int32_t, float value) { return sample_weight(value, max); },
        [](int32_t j) { return j; }, nullptr,
        [&](int32_t i, bool keep) {
          if (keep) members.push_back(i);
        },
        ss.row, &kept);
    std::sort(members.begin(), members.end());
  }
  auto fails_min_p = [&](int32_t i) { return static_cast<double>(weight(i)) < min_p_scale; };
  members.erase(std::remove_if(members.begin(), members.end(), fails_min_p), members.end());

  // Token i's weight if it is kept, else 0 (kept members lie in the crossing bin).
  auto kept_weight = [&](int64_t i) -> uint64_t {
    const uint64_t w = weight(i);
    const int32_t bin = bin_of(distance_of(y[i], bins));
    const bool keep = bin < crossing ? static_cast<double>(w) >= min_p_scale
                                     : bin == crossing && std::binary_search(members.begin(), members.end(), i);
    return keep ? w : 0;
  };
  const int64_t chunks = (vocab + kChunk - 1) / kChunk;
  auto chunk_end = [&](int64_t c) { return std::min((c + 1) * kChunk, vocab); };
  auto chunk_weight = [&](int64_t c) {  // one chunk of what the whole row's pass below sums
    uint64_t sum;
    const int64_t begin = c * kChunk;
    kept_chunk_weights(y + begin, exps != nullptr ? exps + begin : nullptr, chunk_end(c) - begin, bins, crossing,
                       min_p_scale, &sum);
    auto first = std::lower_bound(members.begin(), members.end(), begin);
    for (auto m = first; m != members.end() && *m < chunk_end(c); ++m) sum += weight(*m);
    return sum;
  };
  uint64_t* sums = ss.chunk_sums.data();
  const bool lazy = top_p < 1.0 && min_p_scale == 0 && p.draws == 1;
  if (!lazy) {
    kept_chunk_weights(y, exps, vocab, bins, crossing, min_p_scale, sums);
    for (const int32_t i : members) sums[i / kChunk] += weight(i);
    kept = 0;
    for (int64_t c = 0; c < chunks; ++c) kept += sums[c];
  }
  draw_targets(p, row, kept, ss);

  if (lazy && ss.targets[0].first >= kept / 2) {
    const uint64_t rest = kept - ss.targets[0].first;  // the running weight from the end to reach
    uint64_t after = 0;
    int64_t c = chunks - 1;
    for (uint64_t sum; c > 0 && after + (sum = chunk_weight(c)) < rest; --c) after += sum;
    for (int64_t i = chunk_end(c) - 1; i >= c * kChunk; --i) {
      after += kept_weight(i);
      if (after >= rest) return void(tokens[0] = i);
    }
  }
  uint64_t upto = 0;
  size_t next = 0;
  for (int64_t c = 0; c < chunks && next < ss.targets.size(); ++c) {
    const uint64_t sum = lazy ? chunk_weight(c) : sums[c];
    if (upto + sum <= ss.targets[next].first) {  // no draw lands in this chunk
      upto += sum;
      continue;
    }
    for (int64_t i = c * kChunk; i < chunk_end(c) && next < ss.targets.size(); ++i) {
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
  if (top_k > 0 && !greedy) a = top_k_stage(a, top_k, s, false);
  float max, min;
  bool has_nan;
  value_range(a.value, a.n, &max, &min, &has_nan);
  if (has_nan || !(max > -kInf && max < kInf)) {  // the softmax is undefined
    std::fill(tokens, tokens + p.draws, -1);
    return;
  }
  if (greedy) {
    std::fill(tokens, tokens + p.draws, std::find(y, y + vocab, max) - y);
    return;
  }
  const double top_p = p.top_p.enabled ? p.top_p.at(row) : 1.0;
  // min_p_keeps as a bound on the weight; 0 keeps every token.
  const double min_p_scale = p.min_p.enabled ? p.min_p.at(row) * kWeightScale : 0.0;
  if (a.index != nullptr) return sample_candidates(a, max, top_p, min_p_scale, p, row, ss, tokens);
  sample_whole_row(y, vocab, max, top_p, min_p_scale, p, row, ss, tokens);
}

void check_row_values(const SampleParams& p, int64_t batch) {
  auto unit = [](double v) { return v >= 0 && v <= 1; };  // false for NaN
  check_row_values(p.temperature, batch, "temperature", "a finite number >= 0 (0: greedy)",
                   [](double v) { return std::isfinite(v) && v >= 0; });
  check_row_values(p.top_k, batch, "top_k", ">= 0", [](int64_t v) { return v >= 0; });
  check_row_values(p.top_p, batch, "top_p", "in [0, 1]", unit);
  check_row_values(p.min_p, batch, "min_p", "in [0, 1]", unit);
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
      sample_row(in + row * stride, vocab, row, params, scratch, out + row * params.draws);
    });
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(pysample, CPU, m) { m.impl("sample", &sample<sample_cpu>); }

}  // namespace pysample
