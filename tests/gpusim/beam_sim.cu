// beam.cuh's launcher in the simulator: launch_beam_search_step on "logits" (batch * num_beams rows) and
// "beam_scores" with "num_beams", "num_candidates" and "log_softmax" (the op beam_search_step), for
// tests/gpusim/test_sim_beam.py to compare with the CPU op.
#include "pysample/beam.cuh"
#include "sim_case.h"

namespace sim {

Case run(const Case& in) {
  Device device;
  const Array& logits = need(in, "logits");
  const int64_t num_beams = need(in, "num_beams").item<int64_t>();
  const int64_t num_candidates = need(in, "num_candidates").item<int64_t>();
  const bool normalize = need(in, "log_softmax").item<int64_t>() != 0;
  const int64_t rows = logits.size(0), vocab = logits.size(1), batch = rows / num_beams;
  Array scores_like{Dtype::f32, {batch, num_candidates}, std::vector<unsigned char>(batch * num_candidates * 4)};
  Array index_like{Dtype::i64, {batch, num_candidates}, std::vector<unsigned char>(batch * num_candidates * 8)};
  auto* scores = device.zeros<float>(batch * num_candidates);
  auto* tokens = device.zeros<int64_t>(batch * num_candidates);
  auto* beams = device.zeros<int64_t>(batch * num_candidates);
  auto* workspace = device.zeros<int64_t>(pysample::beam_search_workspace_size(rows, vocab, num_candidates));
  const float* beam_scores = device.copy<float>(need(in, "beam_scores"));
  dispatch_logits(logits.dtype, [&](auto zero) {
    using T = decltype(zero);
    check(pysample::launch_beam_search_step<T>(device.copy<T>(logits), vocab, batch, num_beams, vocab, beam_scores,
                                               normalize, num_candidates, workspace, scores, tokens, beams, nullptr),
          "launch_beam_search_step");
  });
  return {{"scores", Device::result(scores, scores_like)},
          {"tokens", Device::result(tokens, index_like)},
          {"beams", Device::result(beams, index_like)}};
}

}  // namespace sim
