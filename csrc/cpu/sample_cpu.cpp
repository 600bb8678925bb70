// CPU kernel of pysample.sample; the rules are in pysample/sample.h, shared with the CUDA kernel. Rows run in
// parallel. Within a row: the scaled logits, top-k through the warper's candidate gathering (row_kernels.h), top-p
// over the fixed-point weights (a histogram of weight by distance from the max finds the bin where the boundary
// lies, and only that bin's tokens are put in order), min-p, then each draw a binary search in the running weight
// of the kept tokens in token order. No sort of the vocabulary and no softmax written out.
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

// keep[j] &= (w[j] >= min_p * kWeightScale), as min_p_keeps.
PYSAMPLE_CPU_CLONES void keep_min_p(const uint64_t* w, int64_t n, double min_p, uint8_t* keep) {
  for (int64_t j = 0; j < n; ++j) keep[j] &= min_p_keeps(w[j], min_p);
}

// Sum of w[j] over the kept j.
PYSAMPLE_CPU_CLONES uint64_t kept_weight(const uint64_t* w, const uint8_t* keep, int64_t n) {
  uint64_t total = 0;
  for (int64_t j = 0; j < n; ++j) total += keep[j] ? w[j] : 0;
  return total;
}

struct SampleScratch {
  Scratch row;
  std::vector<uint64_t> weight;                       // per active token
  std::vector<int32_t> order;                         // active positions in token order, after top-k
  std::vector<std::pair<uint64_t, int64_t>> targets;  // (target, draw), ascending

  void reserve(int64_t vocab) {
    row.reserve(vocab);
    if (static_cast<int64_t>(weight.size()) < vocab) weight.resize(vocab), order.resize(vocab);
  }
};

// Marks in scratch.keep the active tokens top-p keeps (top_p_keeps), given their weights and total.
void top_p_marks(const Active& a, const uint64_t* weight, uint64_t total, float max, double top_p, SampleScratch& ss) {
  Scratch& s = ss.row;
  const double goal = top_p * static_cast<double>(total);
  // The bins of distance max - y hold the tokens in descending y: the bins before the one in which the running
  // weight reaches the goal stay whole, and later ones go (the weight before their tokens is past the goal).
  const DistanceBins bins{max, 0.0f, 0.0f, false};
  uint64_t mass[kDistanceBins + 1];
  weight_histogram(a.value, weight, a.n, bins, mass);
  uint64_t before = 0;
  int32_t crossing = 0;
  while (crossing < kDistanceBins && static_cast<double>(before + mass[crossing]) < goal) before += mass[crossing++];
  const int64_t count = mark_bins_before(a.value, a.n, bins, crossing, s.keep.data(), s.members.data());
  // The crossing bin's tokens in descending y, ties by ascending token id.
  int32_t* members = s.members.data();
  std::sort(members, members + count, [&](int32_t i, int32_t j) {
    return a.value[i] > a.value[j] || (a.value[i] == a.value[j] && a.token(i) < a.token(j));
  });
  for (int64_t m = 0; m < count; ++m) {
    s.keep[members[m]] = top_p_keeps(before, total, top_p);
    before += weight[members[m]];
  }
}

template <typename scalar_t>
void sample_row(const scalar_t* in, int64_t vocab, int64_t row, const SampleParams& p, SampleScratch& ss,
                int64_t* tokens) {
  Scratch& s = ss.row;
  const double temperature = p.temperature.enabled ? p.temperature.at(row) : 1.0;
  const int64_t top_k = p.top_k.enabled ? p.top_k.at(row) : 0;
  const bool greedy = temperature == 0 || top_k == 1;
  // The scaled logits: float32 ones are read where they are unless a temperature divides them.
  const float* y = s.y.data();
  if (std::is_same_v<scalar_t, float> && (greedy || temperature == 1.0)) {
    y = reinterpret_cast<const float*>(in);
  } else if (greedy || temperature == 1.0) {
    for (int64_t i = 0; i < vocab; ++i) s.y[i] = static_cast<float>(in[i]);
  } else {
    const float t = static_cast<float>(temperature);
    for (int64_t i = 0; i < vocab; ++i) s.y[i] = apply_temperature<scalar_t>(static_cast<float>(in[i]), t);
  }
  float max, min;
  bool has_nan;
  value_range(y, vocab, &max, &min, &has_nan);
  if (has_nan || !(max > -kInf && max < kInf)) {  // the softmax is undefined
    std::fill(tokens, tokens + p.draws, -1);
    return;
  }
  if (greedy) {
    std::fill(tokens, tokens + p.draws, std::find(y, y + vocab, max) - y);
    return;
  }

  Active a{y, nullptr, vocab};
  if (top_k > 0) a = top_k_stage(a, top_k, s, false);
  uint64_t* weight = ss.weight.data();
  const uint64_t total = sample_weights(a.value, a.n, max, weight);
  uint8_t* keep = s.keep.data();
  const double top_p = p.top_p.enabled ? p.top_p.at(row) : 1.0;
  if (top_p < 1.0) {
    top_p_marks(a, weight, total, max, top_p, ss);
  } else {
    std::fill(keep, keep + a.n, 1);
  }
  if (p.min_p.enabled) keep_min_p(weight, a.n, p.min_p.at(row), keep);
  const uint64_t kept = kept_weight(weight, keep, a.n);

  // The draws, in ascending target: one walk over the kept tokens in token order.
  const uint64_t seed = static_cast<uint64_t>(p.seed[row]), step = static_cast<uint64_t>(p.step[row]);
  ss.targets.clear();
  for (int64_t d = 0; d < p.draws; ++d) {
    ss.targets.push_back({draw_target(draw_bits(seed, step, static_cast<uint32_t>(d)), kept), d});
  }
  std::sort(ss.targets.begin(), ss.targets.end());
  // After top-k the active tokens are out of order: sort their positions by token.
  int32_t* order = ss.order.data();
  if (a.index != nullptr) {
    for (int64_t j = 0; j < a.n; ++j) order[j] = static_cast<int32_t>(j);
    std::sort(order, order + a.n, [&](int32_t i, int32_t j) { return a.index[i] < a.index[j]; });
  }
  uint64_t upto = 0;
  size_t next = 0;
  auto walk = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end && next < ss.targets.size(); ++i) {
      const int64_t j = a.index != nullptr ? order[i] : i;
      upto += keep[j] ? weight[j] : 0;
      for (; next < ss.targets.size() && ss.targets[next].first < upto; ++next) {
        tokens[ss.targets[next].second] = a.token(j);
      }
    }
  };
  if (a.index != nullptr) return walk(0, a.n);
  // On the whole row, blocks whose weight does not reach the next target are skipped by their vectorized sum.
  constexpr int64_t kBlock = 256;
  for (int64_t begin = 0; begin < a.n && next < ss.targets.size(); begin += kBlock) {
    const int64_t end = std::min(begin + kBlock, a.n);
    const uint64_t block = kept_weight(weight + begin, keep + begin, end - begin);
    if (upto + block <= ss.targets[next].first) {
      upto += block;
    } else {
      walk(begin, end);
    }
  }
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
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "sample_cpu", [&] {
    const scalar_t* in = logits.const_data_ptr<scalar_t>();
    int64_t* out = tokens.data_ptr<int64_t>();
    const int64_t stride = logits.stride(0);
    const int64_t rows_per_task = std::max<int64_t>(1, 65536 / std::max<int64_t>(vocab, 1));
    at::parallel_for(0, batch, rows_per_task, [&](int64_t begin, int64_t end) {
      thread_local SampleScratch scratch;
      scratch.reserve(vocab);
      for (int64_t row = begin; row < end; ++row) {
        sample_row(in + row * stride, vocab, row, params, scratch, out + row * params.draws);
      }
    });
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(pysample, CPU, m) { m.impl("sample", &sample<sample_cpu>); }

}  // namespace pysample
