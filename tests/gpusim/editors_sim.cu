// The token editors' CUDA launchers (penalty.cuh: apply_penalties, count_tokens + apply_penalty_counts; ngram.cuh:
// the sequence bias kernel) in float32 and float64, run in the GPU simulator (../shared/gpusim) and compared bit for bit with
// the rules they share with the CPU kernels, called on the host (penalize<true>: CUDA divides by a scalar's
// reciprocal, as torch does there; add_bias). Exit status 0 when every launcher matches.
//   nvcc -std=c++20 --expt-relaxed-constexpr --fmad=false -O3 $GPUSIM_NVCC_FLAGS -Icsrc/include \
//       tests/gpusim/editors_sim.cu -o editors_sim.o -c && g++ editors_sim.o $GPUSIM_LINK -o editors_sim
#include <cuda_runtime.h>

#include <cstdio>
#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "pysample/ngram.cuh"
#include "pysample/penalty.cuh"

using namespace pysample;

#define CHECK_CUDA(call)                                                                   \
  do {                                                                                     \
    const cudaError_t error = (call);                                                      \
    if (error != cudaSuccess) {                                                            \
      std::printf("CUDA error %d at %s:%d\n", static_cast<int>(error), __FILE__, __LINE__);   \
      return 1;                                                                            \
    }                                                                                      \
  } while (0)

template <typename V>
V* to_device(const std::vector<V>& host) {
  V* device = nullptr;
  cudaMalloc(&device, host.size() * sizeof(V));
  cudaMemcpy(device, host.data(), host.size() * sizeof(V), cudaMemcpyHostToDevice);
  return device;
}

template <typename T>
int64_t mismatches(const T* device, const std::vector<T>& expected) {
  std::vector<T> out(expected.size());
  cudaMemcpy(out.data(), device, out.size() * sizeof(T), cudaMemcpyDeviceToHost);
  int64_t bad = 0;
  for (size_t i = 0; i < out.size(); ++i) bad += std::memcmp(&out[i], &expected[i], sizeof(T)) != 0;
  return bad;
}

template <typename T>
int run(const char* dtype, int64_t batch, int64_t vocab) {
  constexpr int64_t length = 64;
  std::mt19937 rng(1234);
  std::uniform_real_distribution<double> value(-5, 5);
  std::uniform_int_distribution<int64_t> token(-3, vocab + 2);  // a few out of range, which are ignored
  std::vector<T> scores(batch * vocab);
  for (auto& s : scores) s = static_cast<T>(value(rng));
  scores[1] = static_cast<T>(-0.0);
  std::vector<int64_t> ids(batch * length);
  for (auto& t : ids) t = token(rng);
  std::vector<float> repetition(batch), presence(batch), frequency(batch);
  std::vector<int64_t> history_start(batch), output_start(batch);
  for (int64_t r = 0; r < batch; ++r) {
    repetition[r] = 1.1f + 0.1f * r, presence[r] = 0.5f, frequency[r] = 0.25f * r;
    history_start[r] = r, output_start[r] = 20 + r;
  }

  // The penalties' rule on the host.
  std::vector<T> expected = scores;
  for (int64_t r = 0; r < batch; ++r) {
    std::vector<uint32_t> entry(vocab, 0);
    for (int64_t p = history_start[r]; p < length; ++p) {
      const int64_t id = ids[r * length + p];
      if (id >= 0 && id < vocab) {
        entry[id] = add_contribution(entry[id], position_contribution(p, history_start[r], output_start[r]));
      }
    }
    RowPenalty<computed_t<T>> penalty;
    penalty.repetition = repetition[r], penalty.presence = presence[r], penalty.frequency = frequency[r];
    penalty.has_repetition = true;
    for (int64_t t = 0; t < vocab; ++t) {
      T& s = expected[r * vocab + t];
      if (entry[t] != 0) s = static_cast<T>(penalize<true>(static_cast<computed_t<T>>(s), entry[t], penalty));
    }
  }

  T* d_scores = to_device(scores);
  int64_t* d_ids = to_device(ids);
  PenaltyParams params;
  params.repetition = {to_device(repetition), 0.0, true};
  params.presence = {to_device(presence), 0.0, true};
  params.frequency = {to_device(frequency), 0.0, true};
  HistoryScope scope;
  scope.history_start = {to_device(history_start), 0, true};
  scope.output_start = {to_device(output_start), 0, true};
  uint32_t* tables = to_device(std::vector<uint32_t>(batch * vocab, 0));
  uint32_t* counts = to_device(std::vector<uint32_t>(batch * vocab, 0));
  uint32_t* seen = to_device(std::vector<uint32_t>(batch * seen_words(vocab), 0));

  int failed = 0;
  auto report = [&](const char* name, int64_t bad) {
    std::printf("%-34s %-7s %lldx%lld: %lld mismatches\n", name, dtype, static_cast<long long>(batch),
                static_cast<long long>(vocab), static_cast<long long>(bad));
    failed += bad != 0;
  };
  CHECK_CUDA((launch_apply_penalties<T, int64_t>(d_scores, vocab, 1, batch, vocab, d_ids, batch, length, params, scope,
                                                  tables, nullptr)));
  CHECK_CUDA(cudaDeviceSynchronize());
  report("launch_apply_penalties", mismatches(d_scores, expected));

  CHECK_CUDA(cudaMemcpy(d_scores, scores.data(), scores.size() * sizeof(T), cudaMemcpyHostToDevice));
  CHECK_CUDA((launch_count_tokens<int64_t>(counts, seen, batch, vocab, d_ids, batch, length, nullptr, scope, nullptr)));
  CHECK_CUDA((launch_apply_penalty_counts<T>(d_scores, vocab, 1, batch, vocab, counts, seen, batch, nullptr, params,
                                              nullptr)));
  CHECK_CUDA(cudaDeviceSynchronize());
  report("count_tokens + apply_penalty_counts", mismatches(d_scores, expected));

  // Sequence bias: single tokens always, longer sequences where their prefix ends the row's ids; sums in order.
  const std::vector<std::vector<int64_t>> sequences = {
      {5}, {ids[length - 1], 7}, {5}, {ids[2 * length - 1], 5}, {vocab - 1}, {3, 9}};
  const std::vector<float> biases = {-1.5f, 2.25f, 0.125f, 1e-3f, -7.0f, 4.0f};
  std::vector<int64_t> tokens, offsets = {0};
  for (const auto& sequence : sequences) {
    tokens.insert(tokens.end(), sequence.begin(), sequence.end());
    offsets.push_back(static_cast<int64_t>(tokens.size()));
  }
  expected = scores;
  for (int64_t r = 0; r < batch; ++r) {
    std::vector<computed_t<T>> sum(vocab, 0);
    std::vector<bool> touched(vocab, false);
    for (size_t s = 0; s < sequences.size(); ++s) {
      const int64_t prefix = static_cast<int64_t>(sequences[s].size()) - 1;
      if (!ends_with(ids.data() + r * length, length, sequences[s].data(), prefix)) continue;
      const int64_t t = sequences[s].back();
      sum[t] = add_bias<T>(sum[t], biases[s]), touched[t] = true;
    }
    for (int64_t t = 0; t < vocab; ++t) {
      T& s = expected[r * vocab + t];
      if (touched[t]) s = static_cast<T>(static_cast<computed_t<T>>(s) + sum[t]);
    }
  }
  // launch_bias_sequences sorts the sequences by last token with CUB's DeviceRadixSort, whose setup fails in the
  // simulator (cudaErrorInvalidDeviceFunction, 98, before any kernel runs): the sorted keys come from the host here
  // (a stable sort, as CUB's), and the bias kernel runs on them.
  const int64_t count = static_cast<int64_t>(sequences.size());
  std::vector<int64_t> order(count);
  for (int64_t s = 0; s < count; ++s) order[s] = s;
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return sequences[a].back() < sequences[b].back(); });
  std::vector<uint32_t> keys(count);
  for (int64_t i = 0; i < count; ++i) keys[i] = static_cast<uint32_t>(sequences[order[i]].back());
  CHECK_CUDA(cudaMemcpy(d_scores, scores.data(), scores.size() * sizeof(T), cudaMemcpyHostToDevice));
  ngram_cuda::bias_sequences_kernel<T, int64_t><<<static_cast<unsigned>(batch), ngram_cuda::kThreads>>>(
      ScoreRows<T>{d_scores, vocab, 1}, batch, d_ids, length, nullptr, to_device(tokens), to_device(offsets),
      to_device(biases), count, static_cast<uint32_t>(vocab), to_device(keys), to_device(order));
  CHECK_CUDA(cudaGetLastError());
  CHECK_CUDA(cudaDeviceSynchronize());
  report("bias_sequences_kernel", mismatches(d_scores, expected));
  return failed;
}

int main() {
  const int failed = run<float>("float32", 4, 1000) + run<double>("float64", 4, 1000);
  std::printf("%s\n", failed == 0 ? "all launchers match" : "MISMATCH");
  return failed != 0;
}
